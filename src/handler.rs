//! The `App`: one invocation of any source in, its answer out. It recognises
//! the source (`sources`), turns each payload into actions (split, validate,
//! or plan an instance's launch), runs them in lanes (`lanes`: independent
//! ones concurrently), has a completion event published per action, and
//! answers in request order, in the shape the source expects.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::config::DEFAULT_MAX_CONCURRENT_ACTIONS;
use crate::contract::{
    split_request, Accountability, ActionResult, DriverResponse, MalformedRequest, RawAction, Requester,
};
use crate::domain::account::AccountId;
use crate::domain::model::MirrorRequest;
use crate::instance_events::InstanceEvents;
use crate::metrics::{self, Counter, InvocationFigures, MetricSink};
use crate::mirroring::launch::LaunchPolicy;
use crate::mirroring::sweep::SweepReport;
use crate::mirroring::validate::validate;
use crate::mirroring::Mirroring;
use crate::organization::{AccountRefused, Organization};
use crate::runner::Runner;
use crate::sources::{self, recognise, retry_if_needed, to_json, Invocation, InvokeError};

pub struct App {
    /// The hub's own use cases (the deployment's account).
    mirroring: Arc<Mirroring>,
    /// Every account the deployment acts in.
    organization: Arc<Organization>,
    /// Where each invocation's embedded-metric lines go, and the value of
    /// their `Deployment` dimension.
    metric_sink: Arc<dyn MetricSink>,
    deployment: String,
    /// Runs the actions of an invocation, and announces what the use cases
    /// do not announce themselves.
    runner: Runner,
    /// Instance launches, ends, tag changes and deletions of ours.
    events: InstanceEvents,
}

impl App {
    /// The function over one account's use cases, or over an organization's.
    pub fn new(organization: impl Into<Organization>) -> Self {
        let organization = Arc::new(organization.into());
        let mirroring = organization.home().clone();
        Self {
            deployment: mirroring.deployment().owner.clone(),
            metric_sink: Arc::new(metrics::Stdout),
            runner: Runner {
                organization: organization.clone(),
                announcer: mirroring.deployment().announcer.clone(),
                max_lanes: DEFAULT_MAX_CONCURRENT_ACTIONS,
            },
            events: InstanceEvents {
                mirroring: mirroring.clone(),
                launch_policy: LaunchPolicy::default(),
                account: None,
            },
            mirroring,
            organization,
        }
    }

    /// Bounds how many actions of one invocation run at once (at least one).
    pub fn with_max_concurrent_actions(mut self, lanes: usize) -> Self {
        self.runner.max_lanes = lanes.max(1);
        self
    }

    pub fn with_metric_sink(mut self, sink: Arc<dyn MetricSink>) -> Self {
        self.metric_sink = sink;
        self
    }

    pub fn with_launch_policy(mut self, policy: LaunchPolicy) -> Self {
        self.events.launch_policy = policy;
        self
    }

    pub fn unpublished_events(&self) -> u64 {
        self.runner.announcer.unpublished()
    }

    /// Runs typed requests as an invocation would (lanes, events), for tools
    /// that build requests themselves (`mirrorctl`).
    pub async fn run_requests(&self, requests: Vec<MirrorRequest>) -> Vec<ActionResult> {
        self.runner.run_all(requests.into_iter().map(Ok).collect()).await
    }

    /// The accounts it acts in, and what the ledger holds of each.
    pub fn organization(&self) -> &Organization {
        &self.organization
    }

    /// Serves one invocation of any source, and writes its metrics.
    pub async fn invoke(&self, payload: Value) -> Result<Value, InvokeError> {
        let unpublished_before = self.runner.announcer.unpublished();
        let started = std::time::SystemTime::now();
        let (answer, tally) = metrics::tallied(self.serve(payload)).await;
        let ok = answer.as_ref().ok();
        let figures = InvocationFigures {
            actions: tally.actions(),
            records_handed_back: ok
                .and_then(|a| a.get("batchItemFailures"))
                .and_then(Value::as_array)
                .map_or(0, |failures| failures.len() as u64),
            unpublished_events: self.runner.announcer.unpublished().saturating_sub(unpublished_before),
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
        let sent_from = sources::event_account(&payload);
        let invocation = recognise(payload);
        info!(source = invocation.source_name(), "invoked");
        let events = match self.events_for(&invocation, sent_from.as_ref()).await {
            Ok(events) => events,
            // A member's role that may answer later (STS throttled, a
            // network error): EventBridge delivers the event again.
            Err(refusal) if refusal.retryable() => {
                warn!(error = %refusal, code = refusal.code(), "event not handled yet: account");
                return Err(InvokeError::Retryable(refusal.to_string()));
            }
            Err(refusal) => return Ok(json!({"refused": refusal_answer(&refusal)})),
        };
        let events = &events;
        match invocation {
            Invocation::Direct(payload) => Ok(to_json(&self.handle(&payload).await)),
            Invocation::Sqs(event) => Ok(to_json(&self.handle_sqs(&event).await)),
            Invocation::Request(request, requester) => {
                let response = self.handle_as(&request, requester).await;
                retry_if_needed(&response)?;
                Ok(to_json(&response))
            }
            Invocation::InstanceState { instance_id, state } => {
                events.handle_instance_state(&self.runner, &instance_id, &state).await
            }
            Invocation::InstanceChanged { instance_id, cause } => {
                events.handle_instance_changed(&self.runner, &instance_id, cause).await
            }
            Invocation::Sweep { dry_run, account } => {
                let (result, _) = self.sweep(dry_run, account.as_ref()).await;
                let retry = !result.success && result.retryable;
                let answer = json!({ "sweep": result });
                if retry {
                    // A scheduled sweep is retried by EventBridge; the report is logged.
                    warn!(report = %answer, "sweep incomplete");
                }
                Ok(answer)
            }
            Invocation::Expire { dry_run } => {
                let report = self.organization.expire_accounts(dry_run).await;
                if report.failed > 0 || report.error.is_some() {
                    // The next scheduled run tries again; the report is logged.
                    warn!(report = ?report, "expiry incomplete");
                }
                Ok(json!({ "expire": report }))
            }
            Invocation::Deleted { kind, id, actor } => {
                let actions = events.after_deletion(kind, &id, &actor).await;
                let response = DriverResponse::new(self.runner.run_all(actions).await);
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
    /// `only`: one account of an organization (its own invocation).
    pub async fn sweep(&self, dry_run: bool, only: Option<&AccountId>) -> (ActionResult, Option<SweepReport>) {
        self.organization.read_afresh().await;
        self.sweep_on_shared_read(dry_run, only).await
    }

    /// A sweep that reads the table as the sweeps started with it do: the
    /// fanned-out sweeps of one SQS batch share one read (see `SharedScan`).
    async fn sweep_on_shared_read(
        &self,
        dry_run: bool,
        only: Option<&AccountId>,
    ) -> (ActionResult, Option<SweepReport>) {
        let started = std::time::Instant::now();
        let (result, report) = if self.organization.accounts().spans_members() {
            Box::pin(
                self.organization
                    .sweep_accounts(dry_run, &self.events.launch_policy, only),
            )
            .await
        } else {
            Box::pin(self.mirroring.sweeper().sweep(dry_run, &self.events.launch_policy)).await
        };
        metrics::action_done(&result, started.elapsed().as_secs_f64() * 1000.0);
        // A dry run changes nothing and so announces nothing.
        if !dry_run {
            self.runner.publish(&result).await;
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
        let mut sweeps = Vec::new();
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
                    responses.push(Some(self.runner.malformed(&err).await));
                }
                Work::Refused(refusal) => {
                    // Handed back to SQS when the account may answer later.
                    counts.push(None);
                    responses.push(Some(DriverResponse::new(vec![refusal_result(&refusal)])));
                }
                Work::Sweep { dry_run, account } => {
                    // One account of a fanned-out sweep, run below beside
                    // the batch's others; retried by SQS if it may pass.
                    counts.push(None);
                    sweeps.push((responses.len(), dry_run, account));
                    responses.push(None);
                }
            }
        }
        if !sweeps.is_empty() {
            // One read of the table for the batch's accounts, not one each.
            self.organization.read_afresh().await;
        }
        let swept = join_all(sweeps.iter().map(|(_, dry_run, account)| async move {
            let (result, _) = Box::pin(self.sweep_on_shared_read(*dry_run, account.as_ref())).await;
            DriverResponse::new(vec![result])
        }))
        .await;
        for ((at, _, _), response) in sweeps.iter().zip(swept) {
            responses[*at] = Some(response);
        }
        let mut results = self.runner.run_all(actions).await.into_iter();
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
        let event = sources::unwrapped(payload);
        let sent_from = sources::event_account(&event);
        let invocation = recognise(event);
        let events = match self.events_for(&invocation, sent_from.as_ref()).await {
            Ok(events) => events,
            Err(refusal) => return Work::Refused(refusal),
        };
        let events = &events;
        match invocation {
            Invocation::Request(request, _) => split(&request, requester),
            Invocation::InstanceState { instance_id, state } => {
                match events.instance_actions(&instance_id, &state).await {
                    Ok(actions) => Work::Actions(actions),
                    Err(skipped) => {
                        info!(instance_id, skipped = %skipped, "instance event needs no action");
                        Work::Actions(Vec::new())
                    }
                }
            }
            Invocation::InstanceChanged { instance_id, cause } => match events.plan_instance(&instance_id).await {
                Ok(actions) => Work::Actions(actions),
                Err(skipped) => {
                    info!(instance_id, cause, skipped = %skipped, "instance event needs no action");
                    Work::Actions(Vec::new())
                }
            },
            Invocation::Direct(request) => split(&request, requester),
            Invocation::Deleted { kind, id, actor } => Work::Actions(events.after_deletion(kind, &id, &actor).await),
            Invocation::ExcludeChanged { instances, actor, call } => {
                exclusion_changed(&instances, &actor, &call);
                Work::Actions(Vec::new())
            }
            Invocation::Sweep { dry_run, account } => Work::Sweep { dry_run, account },
            Invocation::Sqs(_) | Invocation::Expire { .. } | Invocation::Unhandled(_) => {
                Work::Malformed(MalformedRequest(
                    "a queued message must be a driverRequest or an EC2 instance state-change or request event".into(),
                ))
            }
        }
    }
}

impl App {
    /// The instance events an invocation is about: an instance event is
    /// acted on in the account it came from (refused for an account this
    /// deployment may not act in, or cannot reach); anything else in the hub.
    async fn events_for(
        &self,
        invocation: &Invocation,
        sent_from: Option<&AccountId>,
    ) -> Result<InstanceEvents, AccountRefused> {
        match invocation {
            Invocation::InstanceState { .. } | Invocation::InstanceChanged { .. } | Invocation::Deleted { .. } => {
                InstanceEvents::sent_from(&self.organization, &self.events.launch_policy, sent_from).await
            }
            _ => Ok(InstanceEvents::home(&self.organization, &self.events.launch_policy)),
        }
    }
}

/// An event from an account the deployment may not act in (or cannot
/// reach): logged and answered; nothing is made.
fn refusal_answer(refusal: &AccountRefused) -> Value {
    warn!(error = %refusal, code = refusal.code(), "event refused: account");
    json!({"errorCode": refusal.code(), "errorMessage": refusal.to_string()})
}

/// An instance event whose account was refused, as the result of its record.
fn refusal_result(refusal: &AccountRefused) -> ActionResult {
    warn!(error = %refusal, code = refusal.code(), retryable = refusal.retryable(), "event refused: account");
    ActionResult::failure(
        "",
        "InstanceEvent",
        refusal.code(),
        refusal.to_string(),
        refusal.retryable(),
    )
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

/// A request's actions, each validated and marked with who asked.
fn split(request: &Value, requester: &Requester) -> Work {
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
    /// An instance event from an account this deployment may not (or
    /// cannot yet) act in.
    Refused(AccountRefused),
    /// A sweep put on the queue: one account's, by an organization's fan-out.
    Sweep { dry_run: bool, account: Option<AccountId> },
}
