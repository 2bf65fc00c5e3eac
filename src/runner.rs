//! Running an invocation's actions: independent ones side by side in lanes
//! (`lanes`), each announced, the answers in request order.

use std::sync::Arc;

use futures::future::join_all;
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::announce::Announcer;
use crate::contract::{ActionResult, DriverResponse, MalformedRequest};
use crate::domain::model::MirrorRequest;
use crate::lanes::{lanes, Reach};
use crate::metrics;
use crate::organization::route::{merged, refused, Destination};
use crate::organization::Organization;

pub struct Runner {
    /// Every account's: each action runs in the account it names.
    pub(crate) organization: Arc<Organization>,
    /// The mirroring's own: creates announce themselves, the runner the rest.
    pub(crate) announcer: Arc<Announcer>,
    /// How many actions of one invocation run at once (at least one).
    pub(crate) max_lanes: usize,
}

impl Runner {
    pub async fn malformed(&self, err: &MalformedRequest) -> DriverResponse {
        warn!(error = %err, "request is not a driverRequest");
        let result = ActionResult::failure(
            "",
            "",
            "InvalidRequest",
            format!("invalid driverRequest: {}", err.0),
            false,
        );
        self.publish(&result).await;
        metrics::action_done(&result, 0.0);
        DriverResponse::malformed(err)
    }

    pub async fn run_all(&self, actions: Vec<Result<MirrorRequest, ActionResult>>) -> Vec<ActionResult> {
        let mut results: Vec<Option<ActionResult>> = vec![None; actions.len()];
        let mut valid = Vec::new();
        for (index, action) in actions.into_iter().enumerate() {
            match action {
                Ok(request) => valid.push((index, request)),
                Err(failure) => {
                    self.publish(&failure).await;
                    metrics::action_done(&failure, 0.0);
                    results[index] = Some(failure);
                }
            }
        }
        let reach = self.reach(&valid).await;
        let lanes = lanes(&valid, &reach);
        let valid = &valid;
        let done: Vec<Vec<(usize, ActionResult)>> = stream::iter(lanes)
            .map(|lane| async move {
                let mut out = Vec::with_capacity(lane.len());
                for position in lane {
                    let (index, request) = &valid[position];
                    out.push((*index, self.run_one(request).await));
                }
                out
            })
            .buffer_unordered(self.max_lanes)
            .collect()
            .await;
        for (index, result) in done.into_iter().flatten() {
            results[index] = Some(result);
        }
        results.into_iter().flatten().collect()
    }

    /// Where the removes of a request that name no ENI reach, so that each
    /// waits only for the actions on those ENIs (one round of ledger reads,
    /// made only when there is something to order it against).
    async fn reach(&self, actions: &[(usize, MirrorRequest)]) -> Reach {
        if actions.len() < 2 {
            return Reach::new();
        }
        let lookups = actions
            .iter()
            .enumerate()
            .filter_map(|(position, (_, request))| match request {
                MirrorRequest::Remove(remove)
                    if remove.session_id.is_some()
                        || remove.reservation_id.is_some()
                        || remove.instance_id.is_some() =>
                {
                    Some(async move {
                        // In the account it names; one naming none in an
                        // organization may reach any account's ENIs: left
                        // out, it reaches every ENI.
                        let named = remove.account.as_ref();
                        let reached = match (named, self.organization.accounts().spans_members()) {
                            (None, true) => None,
                            _ => match self.organization.mirroring_for(named).await {
                                Ok(mirroring) => mirroring.removes().sources_reached(remove).await,
                                Err(_) => None,
                            },
                        };
                        (position, reached)
                    })
                }
                _ => None,
            });
        join_all(lookups)
            .await
            .into_iter()
            .filter_map(|(position, sources)| Some((position, sources?)))
            .collect()
    }

    async fn run_one(&self, request: &MirrorRequest) -> ActionResult {
        info!(action_id = request.action_id(), "action started");
        let result = match self.organization.route(request).await {
            Ok(destinations) if destinations.len() == 1 => {
                let mut results = self.run_in(destinations).await;
                results.pop().unwrap_or_default()
            }
            Ok(destinations) => {
                // A remove by target ENI used in several accounts: each
                // account's part announced itself; the whole is announced too.
                let merged = merged(request.action_id(), self.run_in(destinations).await);
                self.publish(&merged).await;
                merged
            }
            Err(refusal) => {
                warn!(action_id = request.action_id(), error = %refusal, "action refused: account");
                let refused = refused(request, &refusal);
                self.publish(&refused).await;
                metrics::action_done(&refused, 0.0);
                refused
            }
        };
        info!(action_id = %result.action_id, success = result.success, code = ?result.error_code, "action finished");
        result
    }

    async fn run_in(&self, destinations: Vec<Destination>) -> Vec<ActionResult> {
        join_all(destinations.into_iter().map(|destination| async move {
            let mut result = destination.mirroring.actions().run(&destination.request).await;
            if let Some(account) = destination.account {
                result.account = Some(account.to_string());
            }
            result
        }))
        .await
    }

    pub async fn publish(&self, result: &ActionResult) {
        self.announcer.announce(result).await;
    }
}
