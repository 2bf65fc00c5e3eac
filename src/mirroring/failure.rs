//! Why an action failed, as the logic sees it: a call to AWS that failed
//! (and the step it was for), the ledger, or a rule that refused it under a
//! code of its own. Callers match on it (retryable or not, which code); it
//! becomes the wire `ActionResult` only where an answer is made (`answer`).

use crate::contract::ActionResult;
use crate::ports::{AwsError, ErrorKind, LedgerError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// AWS refused or failed a call; `step` says what the call was for.
    #[error("{step}: {error}")]
    Aws { step: String, error: AwsError },
    /// The ledger could not be read or written, changed under us, or holds
    /// an item we cannot read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A rule refused the action (one of ours, or an AWS quota checked
    /// before any change), under its own error code.
    #[error("{code}: {message}")]
    Refused {
        code: &'static str,
        message: String,
        retryable: bool,
    },
}

impl Failure {
    pub fn aws(step: impl Into<String>, error: &AwsError) -> Self {
        Failure::Aws {
            step: step.into(),
            error: error.clone(),
        }
    }

    pub fn refused(code: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        Failure::Refused {
            code,
            message: message.into(),
            retryable,
        }
    }

    /// Whether the same action, tried again later, may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Aws { error, .. } | Failure::Ledger(LedgerError::Aws(error)) => error.kind == ErrorKind::Transient,
            Failure::Ledger(LedgerError::Corrupt(..)) => false,
            // Someone else changed the record under us: deciding again may pass.
            Failure::Ledger(LedgerError::Conflict(..)) => true,
            Failure::Refused { retryable, .. } => *retryable,
        }
    }

    /// The answer callers get for an action that failed this way.
    pub fn answer(&self, action_id: &str, action_type: &str) -> ActionResult {
        match self {
            Failure::Aws { step, error } => aws_failure(action_id, action_type, step, error),
            Failure::Ledger(err) => ledger_failure(action_id, action_type, err),
            Failure::Refused {
                code,
                message,
                retryable,
            } => ActionResult::failure(action_id, action_type, code, message.clone(), *retryable),
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
        LedgerError::Conflict(..) => {
            ActionResult::failure(action_id, action_type, "LedgerConflict", err.to_string(), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_answers_with_its_code_and_says_whether_a_retry_may_pass() {
        let throttled = AwsError::new(ErrorKind::Transient, "RequestLimitExceeded", "slow down");
        let cases = [
            (
                Failure::aws("creating the session", &throttled),
                "RequestLimitExceeded",
                true,
            ),
            (
                Failure::aws(
                    "creating the session",
                    &AwsError::new(ErrorKind::Quota, "TrafficMirrorSessionsPerInterfaceLimitExceeded", "3"),
                ),
                "TrafficMirrorSessionsPerInterfaceLimitExceeded",
                false,
            ),
            (
                Failure::from(LedgerError::Aws(throttled.clone())),
                "RequestLimitExceeded",
                true,
            ),
            (Failure::from(LedgerError::Conflict("a".into())), "LedgerConflict", true),
            (
                Failure::from(LedgerError::Corrupt("a".into(), "status".into())),
                "LedgerCorrupt",
                false,
            ),
            (
                Failure::refused("SessionNumberContention", "busy", true),
                "SessionNumberContention",
                true,
            ),
        ];
        for (failure, code, retryable) in cases {
            let answer = failure.answer("act", "CreateTrafficMirroring");
            assert_eq!(
                (answer.error_code.as_deref(), answer.retryable, failure.retryable()),
                (Some(code), retryable, retryable),
                "{failure}"
            );
            assert!(!answer.success);
        }
        let answer = Failure::aws("creating the session", &throttled).answer("act", "CreateTrafficMirroring");
        assert_eq!(
            answer.error_message,
            "creating the session: slow down (temporary; retrying the action may succeed)"
        );
    }
}
