//! Which source invoked the function, and the answer that source understands:
//! a direct invoke gets its `driverResponse`; an SQS batch gets
//! `batchItemFailures` naming only the records worth delivering again; an
//! EventBridge request gets an error only when a retry can help.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::contract::{split_request, ActionResult, DriverResponse, MalformedRequest};
use crate::handler::{validated, App};
use crate::mirroring::launch::{LaunchPlan, Unconfirmed};
use crate::mirroring::model::{MirrorRequest, RemoveRequest};

/// Detail-types of EventBridge events that carry a `driverRequest`.
pub const REQUEST_DETAIL_TYPES: [&str; 3] = [
    "CreateTrafficMirroring",
    "RemoveTrafficMirroring",
    "TrafficMirroringRequest",
];
pub const EC2_STATE_CHANGE: &str = "EC2 Instance State-change Notification";
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// A `driverRequest`, invoked directly (or anything not recognised below,
    /// which then gets a `driverResponse` saying what was wrong).
    Direct(Value),
    Sqs(SqsEvent),
    /// An EventBridge event whose detail is a `driverRequest`.
    Request(Value),
    InstanceState {
        instance_id: String,
        state: String,
    },
    /// A reconcile sweep: `{"sweep": {"dryRun": bool}}` invoked directly or as
    /// a rule's constant input, or an EventBridge `Scheduled Event`.
    Sweep {
        dry_run: bool,
    },
    /// An event we recognise as an event but not one we handle.
    Unhandled(String),
}

impl Invocation {
    pub fn source_name(&self) -> &'static str {
        match self {
            Invocation::Direct(_) => "direct",
            Invocation::Sqs(_) => "sqs",
            Invocation::Request(_) => "eventbridge-request",
            Invocation::InstanceState { .. } => "ec2-state-change",
            Invocation::Sweep { .. } => "sweep",
            Invocation::Unhandled(_) => "unhandled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// Some work failed for a reason that may pass; the source should retry.
    #[error("retry later: {0}")]
    Retryable(String),
}

pub fn recognise(payload: Value) -> Invocation {
    if is_sqs(&payload) {
        return match serde_json::from_value::<SqsEvent>(payload) {
            Ok(event) => Invocation::Sqs(event),
            Err(err) => Invocation::Unhandled(format!("an SQS event that could not be read: {err}")),
        };
    }
    if let Some(sweep) = payload.get("sweep") {
        let dry_run = sweep.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
        return Invocation::Sweep { dry_run };
    }
    let (Some(detail_type), Some(detail)) = (
        payload.get("detail-type").and_then(Value::as_str),
        payload.get("detail"),
    ) else {
        return Invocation::Direct(payload);
    };
    let source = payload.get("source").and_then(Value::as_str).unwrap_or_default();
    if source == "aws.ec2" && detail_type == EC2_STATE_CHANGE {
        let field = |name: &str| detail.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        return Invocation::InstanceState {
            instance_id: field("instance-id"),
            state: field("state"),
        };
    }
    if source == "aws.events" && detail_type == SCHEDULED_EVENT {
        return Invocation::Sweep { dry_run: false };
    }
    if REQUEST_DETAIL_TYPES.contains(&detail_type) {
        // The detail is the request itself, with or without its `driverRequest` wrapper.
        let request = if detail.get("driverRequest").is_some() {
            detail.clone()
        } else {
            json!({ "driverRequest": detail })
        };
        return Invocation::Request(request);
    }
    Invocation::Unhandled(format!(
        "an EventBridge event with detail-type {detail_type:?} from source {source:?}"
    ))
}

fn is_sqs(payload: &Value) -> bool {
    let records = payload.get("Records").and_then(Value::as_array);
    records.is_some_and(|records| {
        records
            .first()
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            == Some("aws:sqs")
    })
}

impl App {
    /// Serves one invocation of any source.
    pub async fn invoke(&self, payload: Value) -> Result<Value, InvokeError> {
        let invocation = recognise(payload);
        info!(source = invocation.source_name(), "invoked");
        match invocation {
            Invocation::Direct(payload) => Ok(to_json(&self.handle(&payload).await)),
            Invocation::Sqs(event) => Ok(to_json(&self.handle_sqs(&event).await)),
            Invocation::Request(request) => {
                let response = self.handle(&request).await;
                retry_if_needed(&response)?;
                Ok(to_json(&response))
            }
            Invocation::InstanceState { instance_id, state } => self.handle_instance_state(&instance_id, &state).await,
            Invocation::Sweep { dry_run } => {
                let result = self.mirroring.sweep(dry_run).await;
                // A dry run changes nothing and so announces nothing.
                if !dry_run {
                    self.publish(&result).await;
                }
                let retry = !result.success && result.retryable;
                let answer = json!({ "sweep": result });
                if retry {
                    // A scheduled sweep is retried by EventBridge; the report is logged.
                    warn!(report = %answer, "sweep incomplete");
                }
                Ok(answer)
            }
            Invocation::Unhandled(what) => {
                warn!(received = %what, "unhandled event");
                let message = format!("traffic-mirroring does not handle {what}");
                Ok(json!({"driverResponse": {"actionResults": [], "errorMessage": message}}))
            }
        }
    }

    /// Each record's body is a `driverRequest` or an EventBridge event (see
    /// `handle_batch`). A record is handed back to SQS only when one of its
    /// actions failed for a reason that may pass (throttling that outlasted
    /// the invocation's patience among them); a record that can never
    /// succeed is consumed (its failure was published).
    pub async fn handle_sqs(&self, event: &SqsEvent) -> SqsBatchResponse {
        let bodies: Vec<Value> = event
            .records
            .iter()
            .map(|record| {
                let body = record.body.as_deref().unwrap_or_default();
                // Not JSON: handled like any malformed request (answered, published, consumed).
                serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
            })
            .collect();
        let responses = self.handle_batch(&bodies).await;
        let mut batch_item_failures = Vec::new();
        for (record, response) in event.records.iter().zip(&responses) {
            let message_id = record.message_id.clone().unwrap_or_default();
            if needs_retry(response) {
                info!(message_id = %message_id, "record handed back to SQS for a retry");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                batch_item_failures.push(failure);
            }
        }
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = batch_item_failures;
        response
    }
}

/// What one payload asks for.
pub(crate) enum Work {
    /// The actions to run (validation failures included, as results).
    Actions(Vec<Result<MirrorRequest, ActionResult>>),
    /// Not something this function handles.
    Malformed(MalformedRequest),
}

impl App {
    /// Turns one payload (a `driverRequest`, or an EventBridge event as the
    /// body of an SQS record) into its actions. An instance launch is planned
    /// here, which asks EC2 about the instance.
    pub(crate) async fn work_of(&self, payload: &Value) -> Work {
        let parsed;
        let payload = match payload {
            // A body that is JSON text (an SQS record's, or CloudShell's) is read first.
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(value) if value.is_object() => {
                    parsed = value;
                    &parsed
                }
                _ => payload,
            },
            other => other,
        };
        match recognise(payload.clone()) {
            Invocation::Request(request) => self.split(&request),
            Invocation::InstanceState { instance_id, state } => match self.instance_actions(&instance_id, &state).await
            {
                Ok(actions) => Work::Actions(actions),
                Err(skipped) => {
                    info!(instance_id, skipped = %skipped, "instance event needs no action");
                    Work::Actions(Vec::new())
                }
            },
            Invocation::Direct(request) => self.split(&request),
            Invocation::Sqs(_) | Invocation::Sweep { .. } | Invocation::Unhandled(_) => {
                Work::Malformed(MalformedRequest(
                    "a queued message must be a driverRequest or an EC2 instance state-change or request event".into(),
                ))
            }
        }
    }

    fn split(&self, request: &Value) -> Work {
        match split_request(request) {
            Ok(actions) => Work::Actions(actions.iter().map(validated).collect()),
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
            "running" => match self.mirroring.plan_launch(instance_id, &self.launch_policy).await {
                Ok(LaunchPlan::Actions(actions)) => Ok(actions),
                Ok(LaunchPlan::NotRequested(reason)) => Err(reason),
                Err(failure) => Ok(vec![Err(failure)]),
            },
            // Anyone allowed to put an event on the bus or a message on the
            // queue could forge this one, so EC2 is asked first.
            "shutting-down" | "terminated" => match self.mirroring.confirm_ended(instance_id).await {
                Ok(()) => Ok(vec![Ok(MirrorRequest::Remove(RemoveRequest {
                    action_id: format!("{state}-{instance_id}"),
                    session_id: None,
                    target_eni: None,
                    reservation_id: None,
                    instance_id: Some(instance_id.to_owned()),
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
}

fn needs_retry(response: &DriverResponse) -> bool {
    response.driver_response.action_results.iter().any(|r| r.retryable)
}

fn retry_if_needed(response: &DriverResponse) -> Result<(), InvokeError> {
    let retryable: Vec<String> = response
        .driver_response
        .action_results
        .iter()
        .filter(|r| r.retryable)
        .map(|r| format!("{}: {}", r.action_id, r.error_message))
        .collect();
    if retryable.is_empty() {
        Ok(())
    } else {
        Err(InvokeError::Retryable(retryable.join("; ")))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({"errorMessage": format!("unserializable answer: {e}")}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_source() {
        let sqs = json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs", "body": "{}"}]});
        assert!(matches!(recognise(sqs), Invocation::Sqs(e) if e.records.len() == 1));
        let state = json!({"source": "aws.ec2", "detail-type": EC2_STATE_CHANGE,
                           "detail": {"instance-id": "i-1", "state": "running"}});
        assert_eq!(
            recognise(state),
            Invocation::InstanceState {
                instance_id: "i-1".into(),
                state: "running".into()
            }
        );
        let request = json!({"source": "ops.tools", "detail-type": "CreateTrafficMirroring",
                             "detail": {"actions": []}});
        assert_eq!(
            recognise(request),
            Invocation::Request(json!({"driverRequest": {"actions": []}}))
        );
        let direct = json!({"driverRequest": {"actions": []}});
        assert_eq!(recognise(direct.clone()), Invocation::Direct(direct));
    }

    #[test]
    fn an_unknown_event_is_named() {
        let other = json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}});
        assert!(matches!(recognise(other), Invocation::Unhandled(what) if what.contains("Object Created")));
    }
}
