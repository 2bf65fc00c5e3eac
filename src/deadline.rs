//! The invocation's deadline, carried with the work of one invocation, so
//! that a call retried after throttling stops while there is still time to
//! roll back and answer (and hand the unfinished record back to its queue).

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the time by which it must have answered.
pub async fn within<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The deadline of a Lambda invocation, given as Unix milliseconds.
pub fn from_unix_millis(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// Time left before the deadline, when the work has one.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_is_seen_inside_its_scope_only() {
        assert_eq!(remaining(), None);
        let left = within(Instant::now() + Duration::from_secs(30), async { remaining() }).await;
        assert!(left.is_some_and(|d| d > Duration::from_secs(29) && d <= Duration::from_secs(30)));
    }
}
