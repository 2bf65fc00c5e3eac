//! The `App`: one invocation of any source in, its answer out. It recognises
//! the source (`sources`), turns each payload into actions (split, validate,
//! or plan an instance's launch), runs them in lanes (`lanes`: independent
//! ones concurrently), has a completion event published per action, and
//! answers in request order, in the shape the source expects.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::announce::Announcer;
use crate::config::DEFAULT_MAX_CONCURRENT_ACTIONS;
use crate::contract::{
    split_request, Accountability, ActionResult, DriverResponse, MalformedRequest, RawAction, Requester,
};
use crate::domain::model::{MirrorRequest, RemoveRequest};
use crate::lanes::{lanes, Reach};
use crate::metrics::{self, Counter, InvocationFigures, MetricSink};
use crate::mirroring::launch::{LaunchPlan, LaunchPolicy, Unconfirmed};
use crate::mirroring::sweep::SweepReport;
use crate::mirroring::validate::validate;
use crate::mirroring::watch::{ResourceKind, TamperVerdict};
use crate::mirroring::Mirroring;
use crate::ports::{ActionKind, LedgerError, LedgerRecord};
use crate::sources::{self, recognise, retry_if_needed, to_json, Invocation, InvokeError};

pub struct App {
    mirroring: Mirroring,
    /// Where each invocation's embedded-metric lines go, and the value of
    /// their `Deployment` dimension.
    metric_sink: Arc<dyn MetricSink>,
    deployment: String,
    launch_policy: LaunchPolicy,
    /// The mirroring's own: creates announce themselves, the `App` the rest.
    announcer: Arc<Announcer>,
    max_lanes: usize,
}

impl App {
    pub fn new(mirroring: Mirroring) -> Self {
        Self {
            announcer: mirroring.announcer(),
            deployment: mirroring.owner.clone(),
            metric_sink: Arc::new(metrics::Stdout),
            mirroring,
            launch_policy: LaunchPolicy::default(),
            max_lanes: DEFAULT_MAX_CONCURRENT_ACTIONS,
        }
    }

    /// Bounds how many actions of one invocation run at once (at least one).
    pub fn with_max_concurrent_actions(mut self, lanes: usize) -> Self {
        self.max_lanes = lanes.max(1);
        self
    }

    pub fn with_metric_sink(mut self, sink: Arc<dyn MetricSink>) -> Self {
        self.metric_sink = sink;
        self
    }

    pub fn with_launch_policy(mut self, policy: LaunchPolicy) -> Self {
        self.launch_policy = policy;
        self
    }

    pub fn unpublished_events(&self) -> u64 {
        self.announcer.unpublished()
    }

    /// Runs typed requests as an invocation would (lanes, events), for tools
    /// that build requests themselves (`mirrorctl`).
    pub async fn run_requests(&self, requests: Vec<MirrorRequest>) -> Vec<ActionResult> {
        self.run_all(requests.into_iter().map(Ok).collect()).await
    }

    /// This deployment's mirrors, as the ledger holds them: every create that
    /// holds resources (active, pending, removing, rollback incomplete).
    pub async fn mirrors(&self) -> Result<Vec<LedgerRecord>, LedgerError> {
        let contents = self.mirroring.ledger.contents().await?;
        let mut records: Vec<LedgerRecord> = contents
            .records
            .into_iter()
            .filter(|r| r.kind == Some(ActionKind::Create) && r.status.is_some_and(|s| s.holds_resources()))
            .collect();
        records.sort_by(|a, b| (a.created_at, &a.action_id).cmp(&(b.created_at, &b.action_id)));
        Ok(records)
    }

    /// Serves one invocation of any source, and writes its metrics.
    pub async fn invoke(&self, payload: Value) -> Result<Value, InvokeError> {
        let unpublished_before = self.announcer.unpublished();
        let started = std::time::SystemTime::now();
        let (answer, tally) = metrics::tallied(self.serve(payload)).await;
        let ok = answer.as_ref().ok();
        let figures = InvocationFigures {
            actions: tally.actions(),
            records_handed_back: ok
                .and_then(|a| a.get("batchItemFailures"))
                .and_then(Value::as_array)
                .map_or(0, |failures| failures.len() as u64),
            unpublished_events: self.announcer.unpublished().saturating_sub(unpublished_before),
            sweep: ok.and_then(|a| a.pointer("/sweep/sweep")).cloned(),
        };
        let at = started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for document in metrics::documents(&self.deployment, &figures, &tally.counts(), at) {
            self.metric_sink.write(&document.to_string());
        }
        answer
    }

    async fn serve(&self, payload: Value) -> Result<Value, InvokeError> {
        let invocation = recognise(payload);
        info!(source = invocation.source_name(), "invoked");
        match invocation {
            Invocation::Direct(payload) => Ok(to_json(&self.handle(&payload).await)),
            Invocation::Sqs(event) => Ok(to_json(&self.handle_sqs(&event).await)),
            Invocation::Request(request, requester) => {
                let response = self.handle_as(&request, requester).await;
                retry_if_needed(&response)?;
                Ok(to_json(&response))
            }
            Invocation::InstanceState { instance_id, state } => self.handle_instance_state(&instance_id, &state).await,
            Invocation::InstanceChanged { instance_id, cause } => {
                self.handle_instance_changed(&instance_id, cause).await
            }
            Invocation::Sweep { dry_run } => {
                let (result, _) = self.sweep(dry_run).await;
                let retry = !result.success && result.retryable;
                let answer = json!({ "sweep": result });
                if retry {
                    // A scheduled sweep is retried by EventBridge; the report is logged.
                    warn!(report = %answer, "sweep incomplete");
                }
                Ok(answer)
            }
            Invocation::Expire { dry_run } => {
                let report = self.mirroring.expire(dry_run).await;
                if report.failed > 0 || report.error.is_some() {
                    // The next scheduled run tries again; the report is logged.
                    warn!(report = ?report, "expiry incomplete");
                }
                Ok(json!({ "expire": report }))
            }
            Invocation::Deleted { kind, id, actor } => {
                let actions = self.after_deletion(kind, &id, &actor).await;
                let response = DriverResponse::new(self.run_all(actions).await);
                retry_if_needed(&response)?;
                Ok(json!({"deleted": {"kind": kind, "id": id, "by": actor},
                          "actionResults": response.driver_response.action_results}))
            }
            Invocation::ExcludeChanged { instances, actor, call } => {
                exclusion_changed(&instances, &actor, &call);
                Ok(json!({"excludeChanged": {"instances": instances, "by": actor, "call": call}}))
            }
            Invocation::Unhandled(what) => {
                warn!(received = %what, "unhandled event");
                let message = format!("traffic-mirroring does not handle {what}");
                Ok(json!({"driverResponse": {"actionResults": [], "errorMessage": message}}))
            }
        }
    }

    /// Runs a sweep (as the schedule does) and announces it; returns its
    /// result and, when it could list everything, its typed report.
    pub async fn sweep(&self, dry_run: bool) -> (ActionResult, Option<SweepReport>) {
        let started = std::time::Instant::now();
        let (result, report) = Box::pin(self.mirroring.sweep(dry_run, &self.launch_policy)).await;
        metrics::action_done(&result, started.elapsed().as_secs_f64() * 1000.0);
        // A dry run changes nothing and so announces nothing.
        if !dry_run {
            self.publish(&result).await;
        }
        (result, report)
    }

    /// Each record's body is a `driverRequest` or an EventBridge event (see
    /// `handle_batch`); the answer names the records worth delivering again
    /// (`sources::batch_failures`).
    pub async fn handle_sqs(&self, event: &SqsEvent) -> SqsBatchResponse {
        let bodies: Vec<(Value, Requester)> = event
            .records
            .iter()
            .map(|record| {
                let body = sources::record_body(record.body.as_deref());
                let requester = sources::record_requester(record, &body);
                (body, requester)
            })
            .collect();
        let responses = self.handle_batch(&bodies).await;
        let answer = sources::batch_failures(event, &responses);
        for failure in &answer.batch_item_failures {
            info!(message_id = %failure.item_identifier, "record handed back to SQS for a retry");
        }
        answer
    }

    /// Answers a direct invoke, whose requester is whoever its payload
    /// names (stated, not proven). Never fails: every problem is in the response.
    pub async fn handle(&self, payload: &Value) -> DriverResponse {
        self.handle_as(payload, sources::stated_requester(payload)).await
    }

    /// Answers a request from a requester its source vouches for (an
    /// EventBridge event's account, `mirrorctl`'s STS identity).
    pub async fn handle_as(&self, payload: &Value, requester: Requester) -> DriverResponse {
        let mut responses = self.handle_batch(&[(payload.clone(), requester)]).await;
        responses.pop().unwrap_or_else(|| DriverResponse::new(Vec::new()))
    }

    /// Answers several payloads at once (the records of an SQS batch): each a
    /// `driverRequest` or an EventBridge event (an instance launch or
    /// termination, or a request event, as the template routes launches
    /// through the queue). Their actions share one lane plan, so two records
    /// touching the same ENI run one after the other, like two actions of one
    /// request.
    pub async fn handle_batch(&self, payloads: &[(Value, Requester)]) -> Vec<DriverResponse> {
        let work = join_all(
            payloads
                .iter()
                .map(|(payload, requester)| self.work_of(payload, requester)),
        )
        .await;
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

    /// Turns one payload (a `driverRequest`, or an EventBridge event as the
    /// body of an SQS record) into its actions. An instance launch is planned
    /// here, which asks EC2 about the instance.
    async fn work_of(&self, payload: &Value, requester: &Requester) -> Work {
        match recognise(sources::unwrapped(payload)) {
            Invocation::Request(request, _) => self.split(&request, requester),
            Invocation::InstanceState { instance_id, state } => match self.instance_actions(&instance_id, &state).await
            {
                Ok(actions) => Work::Actions(actions),
                Err(skipped) => {
                    info!(instance_id, skipped = %skipped, "instance event needs no action");
                    Work::Actions(Vec::new())
                }
            },
            Invocation::InstanceChanged { instance_id, cause } => {
                match self
                    .mirroring
                    .plan_instance(&instance_id, &self.launch_policy, &[])
                    .await
                {
                    Ok(actions) => Work::Actions(actions),
                    Err(skipped) => {
                        info!(instance_id, cause, skipped = %skipped, "instance event needs no action");
                        Work::Actions(Vec::new())
                    }
                }
            }
            Invocation::Direct(request) => self.split(&request, requester),
            Invocation::Deleted { kind, id, actor } => Work::Actions(self.after_deletion(kind, &id, &actor).await),
            Invocation::ExcludeChanged { instances, actor, call } => {
                exclusion_changed(&instances, &actor, &call);
                Work::Actions(Vec::new())
            }
            Invocation::Sqs(_) | Invocation::Sweep { .. } | Invocation::Expire { .. } | Invocation::Unhandled(_) => {
                Work::Malformed(MalformedRequest(
                    "a queued message must be a driverRequest or an EC2 instance state-change or request event".into(),
                ))
            }
        }
    }

    fn split(&self, request: &Value, requester: &Requester) -> Work {
        match split_request(request) {
            Ok(mut actions) => Work::Actions(
                actions
                    .iter_mut()
                    .map(|action| {
                        action.requester = requester.clone();
                        validated(action)
                    })
                    .collect(),
            ),
            Err(err) => Work::Malformed(err),
        }
    }

    /// `running`: mirror every ENI the launch policy asks for. `shutting-down`
    /// and `terminated`: AWS deletes the ENIs' sessions but not their filters
    /// and targets, so remove what the ledger holds for the instance. `Err`
    /// says why nothing is to be done.
    async fn instance_actions(
        &self,
        instance_id: &str,
        state: &str,
    ) -> Result<Vec<Result<MirrorRequest, ActionResult>>, String> {
        match state {
            "running" => match self
                .mirroring
                .launches()
                .plan_launch(instance_id, &self.launch_policy)
                .await
            {
                Ok(LaunchPlan::Actions(actions)) => Ok(actions),
                Ok(LaunchPlan::NotRequested(reason)) => Err(reason),
                Err(failure) => Ok(vec![Err(failure)]),
            },
            // Anyone allowed to put an event on the bus or a message on the
            // queue could forge this one, so EC2 is asked first.
            "shutting-down" | "terminated" => match self.mirroring.launches().confirm_ended(instance_id).await {
                Ok(()) => Ok(vec![Ok(MirrorRequest::Remove(RemoveRequest {
                    action_id: format!("{state}-{instance_id}"),
                    session_id: None,
                    target_eni: None,
                    reservation_id: None,
                    instance_id: Some(instance_id.to_owned()),
                    accountability: Accountability {
                        requested_by: Requester::policy(),
                        reason: Some(format!("instance {instance_id} is {state}: its mirrors end with it")),
                    },
                    expired: false,
                }))]),
                Err(Unconfirmed::Ignored(reason)) => {
                    warn!(instance_id, state, reason = %reason, "instance event ignored");
                    Err(reason)
                }
                Err(Unconfirmed::Unknown(failure)) => Ok(vec![Err(*failure)]),
            },
            _ => Err("state not handled".into()),
        }
    }

    /// Someone deleted a traffic mirror resource: when it was ours and EC2
    /// confirms it is gone, it is announced, and the policy mirrors it ended
    /// are made again at once (their instances planned as a tag change
    /// would be). A failed check is answered retryable, so the event comes again.
    async fn after_deletion(
        &self,
        kind: ResourceKind,
        id: &str,
        actor: &str,
    ) -> Vec<Result<MirrorRequest, ActionResult>> {
        match self.mirroring.watch().check_tampering(kind, id, actor).await {
            TamperVerdict::Tampered { instances } => {
                let gone = match kind {
                    ResourceKind::Session => vec![id.to_owned()],
                    _ => Vec::new(),
                };
                let plans = join_all(
                    instances
                        .iter()
                        .map(|instance| self.mirroring.plan_instance(instance, &self.launch_policy, &gone)),
                )
                .await;
                plans.into_iter().filter_map(Result::ok).flatten().collect()
            }
            TamperVerdict::Unknown(failure) => vec![Err(*failure)],
            TamperVerdict::NotOurs | TamperVerdict::StillThere => Vec::new(),
        }
    }

    /// An EC2 instance state-change event delivered directly.
    pub async fn handle_instance_state(&self, instance_id: &str, state: &str) -> Result<Value, InvokeError> {
        let actions = match self.instance_actions(instance_id, state).await {
            Ok(actions) => actions,
            Err(reason) => {
                info!(instance_id, reason = %reason, "instance not mirrored");
                return Ok(json!({"instanceId": instance_id, "state": state, "skipped": reason}));
            }
        };
        let response = DriverResponse::new(self.run_all(actions).await);
        retry_if_needed(&response)?;
        Ok(json!({"instanceId": instance_id, "state": state, "actionResults": response.driver_response.action_results}))
    }

    /// An instance's tags changed or an ENI was attached, delivered directly.
    pub async fn handle_instance_changed(&self, instance_id: &str, cause: &str) -> Result<Value, InvokeError> {
        let actions = match self
            .mirroring
            .plan_instance(instance_id, &self.launch_policy, &[])
            .await
        {
            Ok(actions) => actions,
            Err(reason) => {
                info!(instance_id, cause, reason = %reason, "instance needs no change");
                return Ok(json!({"instanceId": instance_id, "cause": cause, "skipped": reason}));
            }
        };
        let response = DriverResponse::new(self.run_all(actions).await);
        retry_if_needed(&response)?;
        Ok(json!({"instanceId": instance_id, "cause": cause, "actionResults": response.driver_response.action_results}))
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
        metrics::action_done(&result, 0.0);
        DriverResponse::malformed(err)
    }

    async fn run_all(&self, actions: Vec<Result<MirrorRequest, ActionResult>>) -> Vec<ActionResult> {
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
                    Some(async move { (position, self.mirroring.sources_reached(remove).await) })
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
        let result = self.mirroring.run(request).await;
        info!(action_id = %result.action_id, success = result.success, code = ?result.error_code, "action finished");
        result
    }

    async fn publish(&self, result: &ActionResult) {
        self.announcer.announce(result).await;
    }
}

/// Setting or removing the exclude tag stops or starts monitoring an
/// instance: logged with who did it and counted (an alarm watches the count).
/// The instance itself is brought in line by its tag-change event.
fn exclusion_changed(instances: &[String], actor: &str, call: &str) {
    metrics::add(Counter::ExcludeTagChanges, instances.len().max(1) as u64);
    warn!(
        instances = ?instances,
        changed_by = actor,
        call,
        "the traffic-mirroring:exclude tag was changed: monitoring of these instances starts or stops"
    );
}

fn validated(action: &RawAction) -> Result<MirrorRequest, ActionResult> {
    validate(action).map_err(|err| {
        let accountability = Accountability {
            requested_by: action.requester.clone(),
            reason: None,
        };
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
        .accountable(&accountability)
    })
}

fn type_name(action_type: &str) -> &str {
    if action_type.is_empty() {
        "untyped"
    } else {
        action_type
    }
}

/// What one payload asks for.
enum Work {
    /// The actions to run (validation failures included, as results).
    Actions(Vec<Result<MirrorRequest, ActionResult>>),
    /// Not something this function handles.
    Malformed(MalformedRequest),
}
