//! The mirroring logic: validation, create (with rollback) and remove, written
//! against the ports in `crate::ports` only.

pub mod create;
pub mod launch;
pub mod model;
mod plan;
pub(crate) mod release;
pub mod remove;
pub mod sweep;
pub mod validate;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::announce::Announcer;
use crate::contract::ActionResult;
use crate::ports::{AwsError, Claim, ErrorKind, Ledger, LedgerError, LedgerRecord, MirrorApi, Tags};

/// Tag keys that mark what we created. The IAM policy keys deletes on the first.
pub const TAG_MANAGED_BY: &str = "traffic-mirroring:managed-by";
pub const TAG_MANAGED_BY_VALUE: &str = "traffic-mirroring";
pub const TAG_ACTION_ID: &str = "traffic-mirroring:action-id";
pub const TAG_RESERVATION_ID: &str = "traffic-mirroring:reservation-id";
/// On a shared filter: the key of the rule set it holds (`model::rule_set_key`).
pub const TAG_RULE_SET: &str = "traffic-mirroring:rule-set";

/// The error code of an action another invocation is carrying out right now.
pub const IN_PROGRESS: &str = "ActionInProgress";

/// How long a claimed action may stay pending before another invocation may
/// take it over (a Lambda runs at most 15 minutes).
pub const DEFAULT_LEASE_SECONDS: u64 = 15 * 60;

pub struct Mirroring {
    pub(crate) ec2: Arc<dyn MirrorApi>,
    pub(crate) ledger: Arc<dyn Ledger>,
    pub(crate) lease_seconds: u64,
    /// Set by the `App`: creates announce themselves (see `announce`).
    pub(crate) announcer: Option<Arc<Announcer>>,
}

impl Mirroring {
    pub fn new(ec2: Arc<dyn MirrorApi>, ledger: Arc<dyn Ledger>) -> Self {
        Self {
            ec2,
            ledger,
            lease_seconds: DEFAULT_LEASE_SECONDS,
            announcer: None,
        }
    }

    pub(crate) async fn announce(&self, result: &ActionResult) {
        if let Some(announcer) = &self.announcer {
            announcer.announce(result).await;
        }
    }

    pub fn with_lease_seconds(mut self, lease_seconds: u64) -> Self {
        self.lease_seconds = lease_seconds;
        self
    }
}

pub fn is_ours(tags: &Tags) -> bool {
    crate::ports::tag_value(tags, TAG_MANAGED_BY) == Some(TAG_MANAGED_BY_VALUE)
}

pub(crate) fn ownership_tags(action_id: &str, reservation_id: Option<&str>) -> Tags {
    let mut tags = vec![
        (TAG_MANAGED_BY.to_owned(), TAG_MANAGED_BY_VALUE.to_owned()),
        (TAG_ACTION_ID.to_owned(), action_id.to_owned()),
    ];
    if let Some(reservation) = reservation_id {
        tags.push((TAG_RESERVATION_ID.to_owned(), reservation.to_owned()));
    }
    tags
}

/// An EC2 `ClientToken` for one step of one attempt of an action. The same
/// inputs always give the same token, so a call retried after a timeout returns
/// the resource the first call made; a new attempt (after a rollback) gets new
/// tokens because EC2 would otherwise hand back the deleted resource.
pub(crate) fn client_token(action_id: &str, attempt: u32, step: &str) -> String {
    let digest = Sha256::digest(format!("{action_id}\n{attempt}\n{step}").as_bytes());
    // EC2 accepts at most 64 ASCII characters.
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A pseudo-random pause of up to `scale` milliseconds, different per action
/// and per call, so that waiting processes do not retry in step. No security
/// rests on it, so the clock and a hash serve.
pub(crate) fn jitter_millis(action_id: &str, scale: std::time::Duration) -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{action_id}\n{nanos}").as_bytes());
    let spread = u32::try_from(scale.as_millis()).unwrap_or(u32::MAX).max(1);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % spread
}

pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Mirroring {
    /// Claims the record's action id. `Ok` carries the attempt number to work
    /// under; `Err` says why not, with the answer to give instead.
    pub(crate) async fn claim(&self, record: &LedgerRecord, action_type: &str) -> Result<u32, Refused> {
        let action_id = &record.action_id;
        match self.ledger.claim(record, self.lease_seconds).await {
            Ok(Claim::Granted { attempt }) => Ok(attempt),
            Ok(Claim::Finished(result)) => Err(Refused::Finished(*result)),
            Ok(Claim::InProgress) => Err(Refused::InProgress(ActionResult::failure(
                action_id,
                action_type,
                IN_PROGRESS,
                format!("action {action_id} is being carried out by another invocation right now; retry later"),
                true,
            ))),
            Err(err) => Err(Refused::LedgerUnavailable(ledger_failure(action_id, action_type, &err))),
        }
    }
}

/// Why an action could not be claimed, with the answer to give.
#[derive(Debug)]
pub(crate) enum Refused {
    /// It already finished: the recorded result.
    Finished(ActionResult),
    /// Another invocation holds it right now.
    InProgress(ActionResult),
    LedgerUnavailable(ActionResult),
}

impl Refused {
    pub(crate) fn answer(self) -> ActionResult {
        match self {
            Refused::Finished(answer) | Refused::InProgress(answer) | Refused::LedgerUnavailable(answer) => answer,
        }
    }
}

/// Turns an AWS error into a failed action result with its code kept.
pub(crate) fn aws_failure(action_id: &str, action_type: &str, context: &str, err: &AwsError) -> ActionResult {
    let retryable = err.kind == ErrorKind::Transient;
    let hint = match err.kind {
        ErrorKind::Transient => " (temporary; retrying the action may succeed)",
        ErrorKind::Quota => " (an AWS Traffic Mirroring quota)",
        _ => "",
    };
    ActionResult::failure(
        action_id,
        action_type,
        &err.code,
        format!("{context}: {}{hint}", err.message),
        retryable,
    )
}

pub(crate) fn ledger_failure(action_id: &str, action_type: &str, err: &LedgerError) -> ActionResult {
    match err {
        LedgerError::Aws(aws) => aws_failure(action_id, action_type, "the ledger could not be read or written", aws),
        LedgerError::Corrupt(..) => {
            ActionResult::failure(action_id, action_type, "LedgerCorrupt", err.to_string(), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_per_step_and_attempt() {
        let token = client_token("a", 0, "filter");
        assert_eq!(token, client_token("a", 0, "filter"));
        assert_eq!(token.len(), 64);
        assert_ne!(token, client_token("a", 1, "filter"));
        assert_ne!(token, client_token("a", 0, "session"));
        assert_ne!(token, client_token("b", 0, "filter"));
    }

    #[test]
    fn ownership_is_read_from_the_managed_by_tag() {
        assert!(is_ours(&ownership_tags("a", Some("r"))));
        assert!(!is_ours(&vec![(TAG_MANAGED_BY.into(), "someone-else".into())]));
        assert!(!is_ours(&Vec::new()));
    }
}
