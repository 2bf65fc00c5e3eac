//! The time, as the ledger and the pacing read it.

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Unix seconds now.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A pseudo-random pause of up to `scale` milliseconds, different per action
/// and per call, so that waiting processes do not retry in step. No security
/// rests on it, so the clock and a hash serve.
pub fn jitter_millis(action_id: &str, scale: std::time::Duration) -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{action_id}\n{nanos}").as_bytes());
    let spread = u32::try_from(scale.as_millis()).unwrap_or(u32::MAX).max(1);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % spread
}
