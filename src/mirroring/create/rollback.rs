//! Undoing a failed create: the session this attempt made, then its hold on
//! the session number and on the shared target and filter (which deletes
//! them when it was their last user and we made them), and the record of
//! what could not be undone, for the sweep; and learning what a create cut
//! off in flight made, so that it can be undone too.

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};

use super::super::release::Release;
use super::super::{now_seconds, Failure, TAG_ACTION_ID};
use super::Creates;
use super::Made;
use crate::contract::{ActionResult, CREATE};
use crate::ports::{AwsError, AwsResult, LedgerRecord, RecordStatus, SessionQuery, SharedKey};

impl Creates {
    /// Undoes what `made` lists, newest first, then records the outcome;
    /// with the time forward work kept back for it.
    pub(super) async fn roll_back(&self, record: LedgerRecord, made: Made, failure: Failure) -> ActionResult {
        let answer = failure.answer(&record.action_id, CREATE);
        crate::deadline::winding_down(self.roll_back_now(record, made, answer)).await
    }

    /// Undoes, records, and adds to the answer what the rollback did.
    async fn roll_back_now(&self, mut record: LedgerRecord, made: Made, mut failure: ActionResult) -> ActionResult {
        let leftovers = self.undo(&record, &made).await;
        record.status = Some(if leftovers.is_empty() {
            RecordStatus::Failed
        } else {
            crate::metrics::add(crate::metrics::Counter::RollbackIncomplete, 1);
            RecordStatus::RollbackIncomplete
        });
        let left = |id: Option<String>| id.filter(|id| leftovers.contains(id));
        record.session_id = left(made.session_id);
        record.filter_id = left(made.filter_created);
        record.target_id = left(made.target_created);
        record.target_created = record.target_id.is_some();
        record.rule_ids.clear();
        // EC2 remembers client tokens even for deleted resources: the next try needs new ones.
        record.attempt += 1;
        if leftovers.is_empty() {
            failure.info_message = "nothing was left behind: everything this action created was deleted".into();
        } else {
            failure.error_message.push_str(&format!(
                "; the rollback could not delete {} (recorded in the ledger for cleanup)",
                leftovers.join(", ")
            ));
        }
        record.result = Some(failure.clone());
        record.updated_at = now_seconds();
        if let Err(err) = self.records.save(&mut record).await {
            // Left pending: the sweep takes it over after its lease and undoes what it finds.
            warn!(action_id = %record.action_id, error = %err, "could not record the failed create");
        }
        failure
    }

    /// Deletes the session this attempt made, then lets go of its number and
    /// of its places among the users of the shared target and filter (which
    /// deletes them if it was their last user and we made them). Returns the
    /// ids it could not delete.
    async fn undo(&self, record: &LedgerRecord, made: &Made) -> Vec<String> {
        let mut sessions: Vec<String> = made.session_id.iter().cloned().collect();
        if made.session_outcome_unknown {
            // Sessions are never shared, so every one carrying this action's tag is this action's to undo.
            let tagged = SessionQuery::Tag(TAG_ACTION_ID.to_owned(), record.action_id.clone());
            match self.sessions.sessions(&tagged).await {
                Ok(found) => {
                    sessions.extend(found.into_iter().map(|s| s.id));
                    sessions.sort();
                    sessions.dedup();
                }
                Err(err) => {
                    warn!(action_id = %record.action_id, error = %err, "rollback: could not look for a session made in transit");
                    return vec![format!("a session of action {} that may exist", record.action_id)];
                }
            }
        }
        for id in &sessions {
            if let Err(err) = self.sessions.delete_session(id).await {
                warn!(session_id = %id, error = %err, "rollback: session not deleted");
                // The session may still stand: keep its claims until the sweep or a retry.
                return vec![id.clone()];
            }
        }
        let release = Release {
            action_id: &record.action_id,
            source_eni: record.source_eni.as_deref(),
            number: made.number,
            target: record
                .target_key
                .clone()
                .filter(|_| made.joined_target)
                .map(SharedKey::Target),
            target_created: made.target_created.as_deref(),
            filter: record
                .filter_key
                .clone()
                .filter(|_| made.joined_filter)
                .map(SharedKey::Filter),
            filter_created: made.filter_created.as_deref(),
        };
        match self.sharing.release(&release).await {
            Ok(released) => released.left(),
            Err(err) => {
                warn!(action_id = %record.action_id, error = %err, "rollback: claims not released");
                made.target_created
                    .iter()
                    .chain(&made.filter_created)
                    .cloned()
                    .collect()
            }
        }
    }
}

/// How long a failed create may spend learning what an abandoned call made:
/// the rest of the winding-down reserve is the rollback's.
const RECOVERY_TIME: Duration = Duration::from_secs(2);

/// A create that failed in doubt (cut off by the deadline in flight, or lost
/// in transit) may have made its resource all the same, and nobody but this
/// action could ever know its id. Asked again with the same client token,
/// EC2 names the resource it made (or makes it now, and a late original is
/// then answered with the same one), so that the rollback deletes it. What
/// stays unknown carries our tags, and the sweep deletes it.
pub(super) async fn recover_made(
    err: &AwsError,
    noun: &str,
    ask_again: impl Future<Output = AwsResult<String>>,
) -> Option<String> {
    if !err.in_doubt {
        return None;
    }
    let asked = crate::deadline::winding_down(tokio::time::timeout(RECOVERY_TIME, ask_again)).await;
    match asked {
        Ok(Ok(id)) => {
            info!(resource = %id, "a {noun} whose create was cut off is found, and will be rolled back");
            Some(id)
        }
        Ok(Err(again)) => {
            warn!(error = %again, "a {noun} whose create was cut off could not be looked up; the sweep deletes it if it exists");
            None
        }
        Err(_) => {
            warn!(
                "a {noun} whose create was cut off could not be looked up in time; the sweep deletes it if it exists"
            );
            None
        }
    }
}
