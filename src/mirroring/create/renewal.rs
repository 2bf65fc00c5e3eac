//! Whether a policy mirror's old success still stands: renewed when its
//! mirror is gone, so the policy makes it again instead of replaying it.

use super::*;
use crate::mirroring::release::Release;

impl Creates {
    /// A policy create's action finished before. When its mirror is gone
    /// since (removed because the policy stopped wanting it, or its session
    /// deleted by hand or by AWS), its claims are let go and its record set
    /// back to failed with a new attempt number, so that the claim admits
    /// the action again with fresh client tokens. `true` when renewed.
    pub(crate) async fn renew_if_gone(&self, action_id: &str) -> bool {
        let Ok(Some(record)) = self.records.get(action_id).await else {
            return false;
        };
        match record.status {
            Some(RecordStatus::Removed) => {}
            Some(RecordStatus::Active) => {
                let Some(session) = record.session_id.clone() else {
                    return false;
                };
                match self.sessions.sessions(&SessionQuery::Id(session)).await {
                    Ok(found) if found.is_empty() => {}
                    _ => return false,
                }
                if let Err(err) = self.sharing.release(&Release::of(&record, None)).await {
                    warn!(action_id, error = %err, "could not let go of a gone mirror's claims; not renewed");
                    return false;
                }
            }
            _ => return false,
        }
        let renewed = self
            .deployment
            .update_record(&record, |r| {
                let same = matches!(r.status, Some(RecordStatus::Removed | RecordStatus::Active))
                    && r.session_id == record.session_id;
                if same {
                    r.fail_for_retry();
                    r.session_number = None;
                    r.result = None;
                }
                same
            })
            .await;
        matches!(renewed, Ok(Some(r)) if r.status == Some(RecordStatus::Failed))
    }
}
