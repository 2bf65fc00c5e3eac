//! Adoption: a session of ours that no ledger record holds is recorded
//! again from what EC2 says of it and its tags, never deleted.

use tracing::info;

use super::super::model::SESSIONS_PER_SOURCE_ENI;
use super::super::{now_seconds, TAG_ACTION_ID, TAG_INSTANCE_ID, TAG_RESERVATION_ID, TAG_RULE_SET};
use super::{Outcome, Sweep};
use crate::contract::ActionResult;
use crate::ports::{ActionKind, LedgerRecord, MirrorSession, NumberClaim, RecordStatus, SessionQuery, SharedKey, Slot};

impl Sweep {
    /// Records a session of ours again from what EC2 says of it and its
    /// tags, and counts it among the users of its target, its filter and its
    /// session number, so that later removes and sweeps treat it like any other.
    pub(super) async fn adopt(
        &self,
        session: &MirrorSession,
        finished: Option<&LedgerRecord>,
    ) -> Result<Outcome, String> {
        let Some(action_id) = session.tag(TAG_ACTION_ID) else {
            return Ok(Outcome::Reported(
                "it carries no action-id tag to record it under; left alone".into(),
            ));
        };
        // The listing is a moment old: a remove may have taken it down since.
        let still = self
            .sessions
            .sessions(&SessionQuery::Id(session.id.clone()))
            .await
            .map_err(|e| e.to_string())?;
        if still.is_empty() {
            return Ok(Outcome::Skipped("gone since the listing".into()));
        }
        let (target, filter) = tokio::join!(
            self.targets.target(&session.target_id),
            self.filters.filter(&session.filter_id)
        );
        let target = target.map_err(|e| e.to_string())?;
        let filter = filter.map_err(|e| e.to_string())?;
        let target_key = target.as_ref().and_then(|t| t.claim_name()).map(str::to_owned);
        let filter_key = filter
            .as_ref()
            .filter(|f| self.deployment.owns(&f.tags))
            .and_then(|f| crate::ports::tag_value(&f.tags, TAG_RULE_SET))
            .map(str::to_owned);
        let now = now_seconds();
        let mut record = LedgerRecord {
            action_id: action_id.to_owned(),
            kind: Some(ActionKind::Create),
            status: Some(RecordStatus::Active),
            source_eni: Some(session.source_eni.clone()),
            target_eni: target.as_ref().and_then(|t| t.network_interface_id.clone()),
            target_key: target_key.clone(),
            target_id: Some(session.target_id.clone()),
            target_created: target
                .as_ref()
                .is_some_and(|t| self.deployment.owns(&t.tags) && t.tag(TAG_ACTION_ID) == Some(action_id)),
            filter_key: filter_key.clone(),
            filter_id: Some(session.filter_id.clone()),
            session_id: Some(session.id.clone()),
            session_number: Some(session.session_number),
            virtual_network_id: session.virtual_network_id,
            reservation_id: session.tag(TAG_RESERVATION_ID).map(str::to_owned),
            instance_id: session.tag(TAG_INSTANCE_ID).map(str::to_owned),
            created_at: now,
            updated_at: now,
            ..LedgerRecord::default()
        };
        record.result = Some(ActionResult {
            action_id: action_id.to_owned(),
            action_type: crate::contract::CREATE.to_owned(),
            success: true,
            info_message: format!(
                "session {} (number {}) was found in EC2 without a ledger record and adopted by the sweep",
                session.id, session.session_number
            ),
            session_id: session.id.clone(),
            traffic_mirror_target_id: Some(session.target_id.clone()),
            traffic_mirror_filter_id: Some(session.filter_id.clone()),
            session_number: Some(session.session_number),
            virtual_network_id: session.virtual_network_id,
            ..ActionResult::default()
        });
        let written = match finished {
            Some(finished) => self.take_back(finished, &record).await?,
            None if self.records.adopt(&record).await.map_err(|e| e.to_string())? => true,
            // The action has a record all the same: written since the ledger
            // was read, or out of this account's view (a member's record
            // that lost its account). One that holds nothing is taken back.
            None => match self.records.get(action_id).await.map_err(|e| e.to_string())? {
                Some(current) => self.take_back(&current, &record).await?,
                None => false,
            },
        };
        if !written {
            return Ok(Outcome::Skipped("its action was recorded again meanwhile".into()));
        }
        let lease = self.deployment.lease_seconds;
        let mut notes = Vec::new();
        for (key, id) in [
            (target_key.map(SharedKey::Target), &session.target_id),
            (filter_key.map(SharedKey::Filter), &session.filter_id),
        ] {
            let Some(key) = key else { continue };
            let joined = match self.claims.join_shared(&key, action_id, usize::MAX, lease).await {
                Ok(Slot::Make) => self.claims.shared_made(&key, action_id, id).await.is_ok(),
                Ok(Slot::Joined(_)) => true,
                _ => false,
            };
            if !joined {
                notes.push(format!(
                    "not yet counted among the users of the {} of {}",
                    key.noun(),
                    key.name()
                ));
            }
        }
        let number = self
            .numbers
            .claim_number(
                &session.source_eni,
                session.session_number,
                action_id,
                SESSIONS_PER_SOURCE_ENI,
            )
            .await;
        if !matches!(number, Ok(NumberClaim::Claimed)) {
            notes.push(format!("session number {} not claimed", session.session_number));
        }
        info!(action_id, session_id = %session.id, "untracked session adopted");
        Ok(Outcome::Adopted(notes))
    }

    /// Replaces a finished record that holds nothing (failed, removed) with
    /// `adopted`; `true` when the ledger now holds the adopted session.
    async fn take_back(&self, finished: &LedgerRecord, adopted: &LedgerRecord) -> Result<bool, String> {
        let taken = self
            .deployment
            .update_record(finished, |r| {
                let change = !r.status.is_some_and(|s| s.holds_resources());
                if change {
                    let version = r.version;
                    *r = adopted.clone();
                    r.version = version;
                }
                change
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(taken.is_some_and(|r| r.session_id == adopted.session_id))
    }
}
