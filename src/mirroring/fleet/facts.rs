//! What the policy and the creates read of EC2 and the ledger beyond their
//! own rounds: whether a policy mirror's old success still stands (renewed
//! when its mirror is gone), and a target ENI's ingress, cached a minute per
//! process.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use tracing::warn;

use super::*;

impl Mirroring {
    /// A policy create's action finished before. When its mirror is gone
    /// since (removed because the policy stopped wanting it, or its session
    /// deleted by hand or by AWS), its claims are let go and its record set
    /// back to failed with a new attempt number, so that the claim admits
    /// the action again with fresh client tokens. `true` when renewed.
    pub(crate) async fn renew_if_gone(&self, action_id: &str) -> bool {
        let Ok(Some(record)) = self.ledger.get(action_id).await else {
            return false;
        };
        match record.status {
            Some(RecordStatus::Removed) => {}
            Some(RecordStatus::Active) => {
                let Some(session) = record.session_id.clone() else {
                    return false;
                };
                match self.ec2.sessions(&SessionQuery::Id(session)).await {
                    Ok(found) if found.is_empty() => {}
                    _ => return false,
                }
                if let Err(err) = self.release(&Release::of(&record, None)).await {
                    warn!(action_id, error = %err, "could not let go of a gone mirror's claims; not renewed");
                    return false;
                }
            }
            _ => return false,
        }
        let renewed = self
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

    /// A target ENI's ingress rules, read at most once a minute per process
    /// (rules change rarely; a warning a minute late is still a warning).
    pub(crate) async fn ingress_of(&self, eni: &str) -> AwsResult<Option<Ingress>> {
        let fresh = self.ingress_read.lock().ok().and_then(|read| {
            read.get(eni)
                .filter(|(at, _)| at.elapsed() < INGRESS_FRESH_FOR)
                .map(|(_, ingress)| ingress.clone())
        });
        if let Some(ingress) = fresh {
            return Ok(ingress);
        }
        let ingress = self.ec2.ingress(eni).await?;
        if let Ok(mut read) = self.ingress_read.lock() {
            read.insert(eni.to_owned(), (Instant::now(), ingress.clone()));
        }
        Ok(ingress)
    }

    /// The ingress of each ENI target, read once per sweep; `None` for a
    /// target that is not an ENI or could not be read (not judged).
    pub(super) async fn ingress_of_targets<'a>(
        &self,
        targets: impl Iterator<Item = &'a str>,
    ) -> HashMap<String, Option<Ingress>> {
        let enis: BTreeSet<&str> = targets.filter(|t| t.starts_with("eni-")).collect();
        let mut known = HashMap::new();
        for eni in enis {
            let ingress = match self.ingress_of(eni).await {
                Ok(ingress) => ingress,
                Err(err) => {
                    warn!(target_eni = eni, error = %err, "could not read the target's ingress rules");
                    None
                }
            };
            known.insert(eni.to_owned(), ingress);
        }
        known
    }
}
