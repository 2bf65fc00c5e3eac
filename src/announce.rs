//! Completion events: one per action. Whoever finishes an action announces
//! it; a create announces its success while its ledger write is in flight (so
//! neither waits for the other), and in the rare case that write then fails
//! and the create is rolled back, a `TrafficMirroringFailed` event for the
//! same `actionId` follows and supersedes the first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::warn;

use crate::contract::ActionResult;
use crate::ports::Publisher;

pub struct Announcer {
    publisher: Arc<dyn Publisher>,
    /// Completion events that could not be sent (the action's result stands).
    unpublished: AtomicU64,
}

impl Announcer {
    pub fn new(publisher: Arc<dyn Publisher>) -> Self {
        Self {
            publisher,
            unpublished: AtomicU64::new(0),
        }
    }

    /// Sends the event; a failure is logged and counted, never returned.
    /// A delivery that found its action in progress says nothing: the
    /// delivery carrying it out announces the one outcome.
    pub async fn announce(&self, result: &ActionResult) {
        if result.error_code.as_deref() == Some(crate::contract::IN_PROGRESS) {
            return;
        }
        if let Err(err) = self.publisher.publish(result).await {
            let failed = self.unpublished.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(action_id = %result.action_id, error = %err, unpublished_events = failed, "completion event not sent");
        }
    }

    pub fn unpublished(&self) -> u64 {
        self.unpublished.load(Ordering::Relaxed)
    }
}
