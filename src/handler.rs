//! One `driverRequest` in, one `driverResponse` out: split, validate, run the
//! actions (independent ones concurrently), publish a completion event per
//! action, and answer in request order.

use std::sync::Arc;

use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde_json::Value;
use tracing::{info, warn};

use crate::announce::Announcer;
use crate::contract::{ActionResult, DriverResponse, MalformedRequest, RawAction};
use crate::ingress::Work;
use crate::mirroring::launch::LaunchPolicy;
use crate::mirroring::model::MirrorRequest;
use crate::mirroring::validate::validate;
use crate::mirroring::Mirroring;
use crate::ports::Publisher;

/// Lanes of one invocation running at once, unless configured otherwise
/// (`MAX_CONCURRENT_ACTIONS`): a whole SQS batch (at most 10 records)
/// overlaps its AWS latency, and one big request still cannot burst through
/// EC2's rate limits.
pub const MAX_CONCURRENT_LANES: usize = 10;

pub const DETAIL_CREATED: &str = "TrafficMirroringCreated";
pub const DETAIL_REMOVED: &str = "TrafficMirroringRemoved";
pub const DETAIL_FAILED: &str = "TrafficMirroringFailed";
pub const DETAIL_SWEPT: &str = "TrafficMirroringSweepCompleted";

/// The event detail-type that reports this result.
pub fn detail_type(result: &ActionResult) -> &'static str {
    match (result.success, result.action_type.as_str()) {
        (_, crate::contract::SWEEP) => DETAIL_SWEPT,
        (true, crate::contract::CREATE) => DETAIL_CREATED,
        (true, _) => DETAIL_REMOVED,
        (false, _) => DETAIL_FAILED,
    }
}

pub struct App {
    pub(crate) mirroring: Mirroring,
    pub(crate) launch_policy: LaunchPolicy,
    announcer: Arc<Announcer>,
    max_lanes: usize,
}

impl App {
    pub fn new(mut mirroring: Mirroring, publisher: Arc<dyn Publisher>) -> Self {
        let announcer = Arc::new(Announcer::new(publisher));
        mirroring.announcer = Some(Arc::clone(&announcer));
        Self {
            mirroring,
            launch_policy: LaunchPolicy::default(),
            announcer,
            max_lanes: MAX_CONCURRENT_LANES,
        }
    }

    /// Bounds how many actions of one invocation run at once (at least one).
    pub fn with_max_concurrent_actions(mut self, lanes: usize) -> Self {
        self.max_lanes = lanes.max(1);
        self
    }

    pub fn with_launch_policy(mut self, policy: LaunchPolicy) -> Self {
        self.launch_policy = policy;
        self
    }

    pub fn unpublished_events(&self) -> u64 {
        self.announcer.unpublished()
    }

    /// Answers a direct invoke. Never fails: every problem is in the response.
    pub async fn handle(&self, payload: &Value) -> DriverResponse {
        let mut responses = self.handle_batch(std::slice::from_ref(payload)).await;
        responses.pop().unwrap_or_else(|| DriverResponse::new(Vec::new()))
    }

    /// Answers several payloads at once (the records of an SQS batch): each a
    /// `driverRequest` or an EventBridge event (an instance launch or
    /// termination, or a request event, as the template routes launches
    /// through the queue). Their actions share one lane plan, so two records
    /// touching the same ENI run one after the other, like two actions of one
    /// request.
    pub async fn handle_batch(&self, payloads: &[Value]) -> Vec<DriverResponse> {
        let work = join_all(payloads.iter().map(|payload| self.work_of(payload))).await;
        let mut responses = Vec::with_capacity(payloads.len());
        let mut counts = Vec::with_capacity(payloads.len());
        let mut actions = Vec::new();
        for item in work {
            match item {
                Work::Actions(list) => {
                    counts.push(Some(list.len()));
                    actions.extend(list);
                    responses.push(None);
                }
                Work::Malformed(err) => {
                    counts.push(None);
                    responses.push(Some(self.malformed(&err).await));
                }
            }
        }
        let mut results = self.run_all(actions).await.into_iter();
        responses
            .into_iter()
            .zip(counts)
            .map(|(response, count)| match (response, count) {
                (Some(response), _) => response,
                (None, count) => DriverResponse::new(results.by_ref().take(count.unwrap_or_default()).collect()),
            })
            .collect()
    }

    async fn malformed(&self, err: &MalformedRequest) -> DriverResponse {
        warn!(error = %err, "request is not a driverRequest");
        let result = ActionResult::failure(
            "",
            "",
            "InvalidRequest",
            format!("invalid driverRequest: {}", err.0),
            false,
        );
        self.publish(&result).await;
        DriverResponse::malformed(err)
    }

    pub(crate) async fn run_all(&self, actions: Vec<Result<MirrorRequest, ActionResult>>) -> Vec<ActionResult> {
        let mut results: Vec<Option<ActionResult>> = vec![None; actions.len()];
        let mut valid = Vec::new();
        for (index, action) in actions.into_iter().enumerate() {
            match action {
                Ok(request) => valid.push((index, request)),
                Err(failure) => {
                    self.publish(&failure).await;
                    results[index] = Some(failure);
                }
            }
        }
        let lanes = lanes(&valid);
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

    async fn run_one(&self, request: &MirrorRequest) -> ActionResult {
        info!(action_id = request.action_id(), "action started");
        let result = match request {
            // A create announces itself, overlapping its event with its ledger write.
            MirrorRequest::Create(create) => self.mirroring.create(create).await,
            MirrorRequest::Remove(remove) => {
                let result = self.mirroring.remove(remove).await;
                crate::deadline::winding_down(self.publish(&result)).await;
                result
            }
        };
        info!(action_id = %result.action_id, success = result.success, code = ?result.error_code, "action finished");
        result
    }

    pub(crate) async fn publish(&self, result: &ActionResult) {
        self.announcer.announce(result).await;
    }
}

pub(crate) fn validated(action: &RawAction) -> Result<MirrorRequest, ActionResult> {
    validate(action).map_err(|err| {
        ActionResult::failure(
            &action.action_id,
            &action.action_type,
            "ValidationError",
            format!(
                "invalid {} action {:?}: {err}",
                type_name(&action.action_type),
                action.action_id
            ),
            false,
        )
    })
}

fn type_name(action_type: &str) -> &str {
    if action_type.is_empty() {
        "untyped"
    } else {
        action_type
    }
}

/// Groups actions that touch the same ENIs into lanes, each run in request
/// order, so that a create and a remove of one ENI in one request happen in
/// the order asked; different lanes run concurrently. (The ledger's claims
/// keep concurrent actions from colliding either way; creates sharing a load
/// balancer target or a filter run side by side.) A remove by session id or
/// reservation can reach any ENI, so it joins every lane.
fn lanes(actions: &[(usize, MirrorRequest)]) -> Vec<Vec<usize>> {
    let mut lane_of: Vec<usize> = (0..actions.len()).collect();
    fn root(lane_of: &mut [usize], mut i: usize) -> usize {
        while lane_of[i] != i {
            lane_of[i] = lane_of[lane_of[i]];
            i = lane_of[i];
        }
        i
    }
    for a in 0..actions.len() {
        for b in (a + 1)..actions.len() {
            if conflict(&actions[a].1, &actions[b].1) {
                let (ra, rb) = (root(&mut lane_of, a), root(&mut lane_of, b));
                lane_of[rb.max(ra)] = rb.min(ra);
            }
        }
    }
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    let mut lane_index = std::collections::HashMap::new();
    for position in 0..actions.len() {
        let lane = root(&mut lane_of, position);
        let slot = *lane_index.entry(lane).or_insert_with(|| {
            lanes.push(Vec::new());
            lanes.len() - 1
        });
        lanes[slot].push(position);
    }
    lanes
}

fn conflict(a: &MirrorRequest, b: &MirrorRequest) -> bool {
    let enis = |r: &MirrorRequest| match r {
        MirrorRequest::Create(c) => std::iter::once(c.source_eni.clone())
            .chain(c.target.eni().cloned())
            .collect::<Vec<_>>(),
        MirrorRequest::Remove(r) => r.target_eni.iter().cloned().collect(),
    };
    let reaches_anything = |r: &MirrorRequest| matches!(r, MirrorRequest::Remove(r) if r.session_id.is_some() || r.reservation_id.is_some());
    a.action_id() == b.action_id()
        || reaches_anything(a)
        || reaches_anything(b)
        || enis(a).iter().any(|eni| enis(b).contains(eni))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirroring::model::{CreateRequest, EniId, FilterSpec, RemoveRequest, TargetSpec};

    fn eni(n: u32) -> EniId {
        EniId::parse(&format!("eni-{n:08x}")).expect("valid")
    }

    fn create(id: &str, source: u32, target: u32) -> MirrorRequest {
        MirrorRequest::Create(CreateRequest {
            action_id: id.into(),
            source_eni: eni(source),
            target: TargetSpec::Eni(eni(target)),
            filter: FilterSpec::from_rules(Vec::new()),
            session_number: None,
            packet_length: None,
            virtual_network_id: None,
            description: None,
            reservation_id: None,
            instance_id: None,
            dry_run: false,
        })
    }

    fn remove_target(id: &str, target: u32) -> MirrorRequest {
        MirrorRequest::Remove(RemoveRequest {
            action_id: id.into(),
            session_id: None,
            target_eni: Some(eni(target)),
            reservation_id: None,
            instance_id: None,
        })
    }

    fn lanes_of(requests: Vec<MirrorRequest>) -> Vec<Vec<usize>> {
        let indexed: Vec<_> = requests.into_iter().enumerate().collect();
        lanes(&indexed)
    }

    #[test]
    fn independent_actions_get_their_own_lanes() {
        assert_eq!(
            lanes_of(vec![create("a", 1, 2), create("b", 3, 4)]),
            vec![vec![0], vec![1]]
        );
    }

    #[test]
    fn actions_sharing_an_eni_share_a_lane_in_request_order() {
        let lanes = lanes_of(vec![
            create("a", 1, 9),
            create("b", 3, 4),
            create("c", 2, 9),
            remove_target("d", 4),
        ]);
        assert_eq!(lanes, vec![vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn a_remove_by_session_id_joins_everything() {
        let by_session = MirrorRequest::Remove(RemoveRequest {
            action_id: "r".into(),
            session_id: Some("tms-00000001".into()),
            target_eni: None,
            reservation_id: None,
            instance_id: None,
        });
        assert_eq!(
            lanes_of(vec![create("a", 1, 2), by_session, create("b", 3, 4)]),
            vec![vec![0, 1, 2]]
        );
    }

    #[test]
    fn a_repeated_action_id_runs_in_one_lane() {
        assert_eq!(lanes_of(vec![create("a", 1, 2), create("a", 3, 4)]), vec![vec![0, 1]]);
    }
}
