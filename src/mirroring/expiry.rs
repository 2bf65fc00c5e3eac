//! Time-boxed mirrors: a requested mirror may say when it ends
//! (`expiresAt`, `durationMinutes`, or the deployment's `MAX_MIRROR_MINUTES`),
//! and once that time has come it is removed as a remove of its session
//! would (its filter and target going with their last user), announced as
//! `TrafficMirroringExpired`. The template runs this every five minutes, and
//! every sweep runs it too, so a mirror outlives its end by five minutes at most.

use futures::stream::{self, StreamExt};
use serde::Serialize;
use tracing::{info, warn};

use super::model::{rfc3339, Accountability, MirrorRequest, RemoveRequest, Requester, RequesterBasis};
use super::now_seconds;
use crate::ports::{ActionKind, LedgerRecord, RecordStatus};

/// Expired mirrors removed at once: each remove is a few EC2 and ledger
/// calls, paced like any other.
const AT_ONCE: usize = 8;
/// Time one removal needs at the least; with less left, the rest waits for the next run.
const REMOVAL_TIME: std::time::Duration = std::time::Duration::from_secs(3);

/// What one expiry run found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryReport {
    pub dry_run: bool,
    /// Mirrors whose end had come.
    pub expired: Vec<Expired>,
    pub removed: usize,
    pub failed: usize,
    /// Left for the next run: the deadline was near.
    pub deferred: usize,
    /// Set when the index of ends could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expired {
    pub action_id: String,
    pub session_id: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    pub outcome: ExpiryOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpiryOutcome {
    /// A dry run: it would be removed.
    Planned,
    Removed,
    Deferred,
    Failed {
        code: String,
        message: String,
    },
}

/// Time-boxed mirrors ended when their time comes.
pub struct Expiry {
    pub(crate) records: std::sync::Arc<dyn crate::ports::ActionRecords>,
    pub(crate) scans: std::sync::Arc<dyn crate::ports::Scans>,
    pub(crate) actions: std::sync::Arc<crate::mirroring::Actions>,
}

impl Expiry {
    /// Removes every mirror whose end has come (a dry run only lists them),
    /// found through the ledger's index of ends.
    pub async fn expire(&self, dry_run: bool) -> ExpiryReport {
        match self.scans.ending_by(now_seconds()).await {
            Ok(ids) => self.expire_these(dry_run, ids).await,
            Err(err) => {
                warn!(error = %err, "the mirrors' ends could not be read");
                ExpiryReport {
                    dry_run,
                    error: Some(err.to_string()),
                    ..ExpiryReport::default()
                }
            }
        }
    }

    /// The sweep's turn: the records it read already name what is due, so
    /// the index is not asked again.
    pub(crate) async fn expire_from(&self, dry_run: bool, records: &[LedgerRecord]) -> ExpiryReport {
        let now = now_seconds();
        let ids = records
            .iter()
            .filter(|r| is_due(r, now))
            .map(|r| r.action_id.clone())
            .collect();
        self.expire_these(dry_run, ids).await
    }

    /// Removes the mirrors among `ids` whose end has come.
    pub async fn expire_these(&self, dry_run: bool, ids: Vec<String>) -> ExpiryReport {
        let now = now_seconds();
        let mut report = ExpiryReport {
            dry_run,
            ..ExpiryReport::default()
        };
        // The index may lag behind a remove or a renewal: each record is read
        // again, consistently, and only a live mirror whose end has come goes.
        let records = stream::iter(ids)
            .map(|id| async move { self.records.get(&id).await })
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut due: Vec<LedgerRecord> = records
            .into_iter()
            .filter_map(|read| read.ok().flatten())
            .filter(|record| is_due(record, now))
            .collect();
        due.sort_by(|a, b| (a.ends_at, &a.action_id).cmp(&(b.ends_at, &b.action_id)));
        let outcomes = stream::iter(due.iter())
            .map(|record| async move {
                if dry_run {
                    return ExpiryOutcome::Planned;
                }
                if crate::deadline::budget().is_some_and(|left| left < REMOVAL_TIME) {
                    return ExpiryOutcome::Deferred;
                }
                let result = self.actions.run(&expiry_remove(record)).await;
                if result.success {
                    crate::metrics::add(crate::metrics::Counter::MirrorsExpired, 1);
                    ExpiryOutcome::Removed
                } else {
                    ExpiryOutcome::Failed {
                        code: result.error_code.unwrap_or_default(),
                        message: result.error_message,
                    }
                }
            })
            .buffered(AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        for (record, outcome) in due.iter().zip(outcomes) {
            match outcome {
                ExpiryOutcome::Removed => report.removed += 1,
                ExpiryOutcome::Failed { .. } => report.failed += 1,
                ExpiryOutcome::Deferred => report.deferred += 1,
                ExpiryOutcome::Planned => {}
            }
            report.expired.push(Expired {
                action_id: record.action_id.clone(),
                session_id: record.session_id.clone().unwrap_or_default(),
                expires_at: record.ends_at.map(rfc3339).unwrap_or_default(),
                requested_by: record.requested_by.as_ref().map(|r| r.principal.clone()),
                outcome,
            });
        }
        if !report.expired.is_empty() {
            info!(
                expired = report.expired.len(),
                removed = report.removed,
                failed = report.failed,
                deferred = report.deferred,
                dry_run,
                "expired mirrors"
            );
        }
        report
    }
}

/// A live, made mirror whose end has come.
fn is_due(record: &LedgerRecord, now: u64) -> bool {
    record.kind == Some(ActionKind::Create)
        && record.status == Some(RecordStatus::Active)
        && record.session_id.is_some()
        && record.ends_at.is_some_and(|end| end <= now)
}

/// The remove that ends an expired mirror: by its session, under an action
/// id of its own (a redelivery is answered from the ledger), saying whose
/// mirror it was and why it ends.
fn expiry_remove(record: &LedgerRecord) -> MirrorRequest {
    let ended = record.ends_at.map(rfc3339).unwrap_or_default();
    let asked = match (&record.requested_by, &record.reason) {
        (Some(by), Some(why)) => format!(" (asked for by {} for: {why})", by.principal),
        (Some(by), None) => format!(" (asked for by {})", by.principal),
        _ => String::new(),
    };
    MirrorRequest::Remove(RemoveRequest {
        account: None,
        action_id: format!("expire-{}", record.action_id),
        session_id: record.session_id.clone(),
        target_eni: None,
        reservation_id: None,
        instance_id: None,
        accountability: Accountability {
            requested_by: Requester::new("expiry", RequesterBasis::Expiry),
            reason: Some(format!("the mirror of {} ended at {ended}{asked}", record.action_id)),
        },
        expired: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(status: RecordStatus, ends_at: Option<u64>) -> LedgerRecord {
        LedgerRecord {
            action_id: "a".into(),
            kind: Some(ActionKind::Create),
            status: Some(status),
            session_id: Some("tms-1".into()),
            ends_at,
            ..LedgerRecord::default()
        }
    }

    #[test]
    fn only_a_live_mirror_whose_end_has_come_is_due() {
        assert!(is_due(&mirror(RecordStatus::Active, Some(100)), 100));
        assert!(!is_due(&mirror(RecordStatus::Active, Some(101)), 100), "not yet");
        assert!(!is_due(&mirror(RecordStatus::Active, None), 100), "no end");
        assert!(
            !is_due(&mirror(RecordStatus::Removing, Some(1)), 100),
            "a remove has it"
        );
        assert!(
            !is_due(&mirror(RecordStatus::Pending, Some(1)), 100),
            "still being made"
        );
    }

    #[test]
    fn the_expiry_remove_says_whose_mirror_ended_and_why() {
        let mut record = mirror(RecordStatus::Active, Some(0));
        record.requested_by = Some(Requester::new("sqs:AIDA1", RequesterBasis::SqsSender));
        record.reason = Some("INC-1234".into());
        let MirrorRequest::Remove(remove) = expiry_remove(&record) else {
            panic!("a remove");
        };
        assert_eq!(remove.action_id, "expire-a");
        assert_eq!(remove.session_id.as_deref(), Some("tms-1"));
        assert!(remove.expired);
        assert_eq!(remove.accountability.requested_by.basis, RequesterBasis::Expiry);
        assert_eq!(
            remove.accountability.reason.as_deref(),
            Some("the mirror of a ended at 1970-01-01T00:00:00Z (asked for by sqs:AIDA1 for: INC-1234)")
        );
    }
}
