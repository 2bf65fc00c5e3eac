//! Completion events: one per action. Whoever finishes an action announces
//! it; a create announces its success while its ledger write is in flight (so
//! neither waits for the other), and in the rare case that write then fails
//! and the create is rolled back, a `TrafficMirroringFailed` event for the
//! same `actionId` follows and supersedes the first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::warn;

use crate::contract::ActionResult;
use crate::domain::account::AccountId;
use crate::ports::Publisher;

pub struct Announcer {
    publisher: Arc<dyn Publisher>,
    /// Completion events that could not be sent (the action's result stands),
    /// counted once for every account of the deployment.
    unpublished: Arc<AtomicU64>,
    /// The member account whose actions this announcer tells of: its id goes
    /// on each event.
    account: Option<AccountId>,
}

impl Announcer {
    pub fn new(publisher: Arc<dyn Publisher>) -> Self {
        Self {
            publisher,
            unpublished: Arc::new(AtomicU64::new(0)),
            account: None,
        }
    }

    /// The announcer of a member account's actions: the same bus and count.
    pub fn for_account(&self, account: AccountId) -> Self {
        Self {
            publisher: self.publisher.clone(),
            unpublished: self.unpublished.clone(),
            account: Some(account),
        }
    }

    /// Sends the event; a failure is logged and counted, never returned.
    /// A delivery that found its action in progress says nothing: the
    /// delivery carrying it out announces the one outcome.
    pub async fn announce(&self, result: &ActionResult) {
        if result.error_code.as_deref() == Some(crate::contract::IN_PROGRESS) {
            return;
        }
        let stamped;
        let result = match &self.account {
            Some(account) if result.account.is_none() => {
                stamped = ActionResult {
                    account: Some(account.to_string()),
                    ..result.clone()
                };
                &stamped
            }
            _ => result,
        };
        if let Err(err) = self.publisher.publish(result).await {
            let failed = self.unpublished.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(action_id = %result.action_id, error = %err, unpublished_events = failed, "completion event not sent");
        }
    }

    /// The member account whose actions it tells of (`None`: the hub's own).
    pub fn account(&self) -> Option<&AccountId> {
        self.account.as_ref()
    }

    pub fn unpublished(&self) -> u64 {
        self.unpublished.load(Ordering::Relaxed)
    }
}
