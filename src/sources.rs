//! Which source invoked the function, and the answer that source understands:
//! a direct invoke gets its `driverResponse`; an SQS batch gets
//! `batchItemFailures` naming only the records worth delivering again; an
//! EventBridge request gets an error only when a retry can help. Pure: the
//! `App` (in `handler`) calls these on its way in and out.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde_json::{json, Value};

use crate::contract::{
    DriverResponse, CLOUDTRAIL_API_CALL, EC2_STATE_CHANGE, REQUEST_DETAIL_TYPES, RESOURCE_TAG_CHANGE, SCHEDULED_EVENT,
};

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
    /// Something about an instance changed that the launch policy reads: its
    /// tags (`aws.tag` "Tag Change on Resource"), or an ENI attached to it
    /// (CloudTrail's `AttachNetworkInterface`). Only the instance id is taken
    /// from the event; EC2 is asked for the rest.
    InstanceChanged {
        instance_id: String,
        cause: &'static str,
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
            Invocation::InstanceChanged { cause, .. } => cause,
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
    if let Some(changed) = instance_changed(&payload, source, detail_type, detail) {
        return changed;
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

/// A tag change on an EC2 instance, or a successful ENI attachment.
fn instance_changed(payload: &Value, source: &str, detail_type: &str, detail: &Value) -> Option<Invocation> {
    let text = |value: &Value, name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let instance_id = if source == "aws.tag" && detail_type == RESOURCE_TAG_CHANGE {
        if text(detail, "service").as_deref() != Some("ec2")
            || text(detail, "resource-type").as_deref() != Some("instance")
        {
            return Some(Invocation::Unhandled(
                "a tag change on a resource other than an EC2 instance".into(),
            ));
        }
        let arn = payload.get("resources").and_then(Value::as_array)?.first()?.as_str()?;
        arn.rsplit_once("instance/").map(|(_, id)| id.to_owned())
    } else if source == "aws.ec2"
        && detail_type == CLOUDTRAIL_API_CALL
        && text(detail, "eventName").as_deref() == Some("AttachNetworkInterface")
    {
        // A call that failed attached nothing.
        if detail.get("errorCode").is_some() {
            return Some(Invocation::Unhandled("a failed AttachNetworkInterface call".into()));
        }
        detail.get("requestParameters").and_then(|p| text(p, "instanceId"))
    } else {
        return None;
    };
    let cause = if source == "aws.tag" {
        "instance-tag-change"
    } else {
        "eni-attached"
    };
    let plain = |id: &String| id.starts_with("i-") && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    Some(match instance_id.filter(plain) {
        Some(instance_id) => Invocation::InstanceChanged { instance_id, cause },
        None => Invocation::Unhandled(format!("a {cause} event that names no instance")),
    })
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

/// The payload an SQS record's body holds: JSON if it is JSON; anything else
/// is kept as a string and answered like any malformed request (answered,
/// published, consumed).
pub fn record_body(body: Option<&str>) -> Value {
    let body = body.unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
}

/// A payload that is JSON text (an SQS record's body, or CloudShell's
/// string-wrapped request) holding an object is read as that object.
pub fn unwrapped(payload: &Value) -> Value {
    match payload {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(value) if value.is_object() => value,
            _ => payload.clone(),
        },
        other => other.clone(),
    }
}

/// The `batchItemFailures` for an SQS batch: a record is handed back only
/// when one of its actions failed for a reason that may pass (throttling
/// that outlasted the invocation's patience among them); a record that can
/// never succeed is consumed (its failure was published).
pub fn batch_failures(event: &SqsEvent, responses: &[DriverResponse]) -> SqsBatchResponse {
    let mut batch_item_failures = Vec::new();
    for (record, response) in event.records.iter().zip(responses) {
        if needs_retry(response) {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            batch_item_failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = batch_item_failures;
    response
}

pub fn needs_retry(response: &DriverResponse) -> bool {
    response.driver_response.action_results.iter().any(|r| r.retryable)
}

pub fn retry_if_needed(response: &DriverResponse) -> Result<(), InvokeError> {
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

pub fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({"errorMessage": format!("unserializable answer: {e}")}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessage;

    #[test]
    fn a_tag_change_or_an_attachment_names_only_its_instance() {
        let tag = |resource_type: &str, arn: &str| {
            json!({"source": "aws.tag", "detail-type": "Tag Change on Resource", "resources": [arn],
                   "detail": {"service": "ec2", "resource-type": resource_type, "changed-tag-keys": ["x"]}})
        };
        let arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc";
        assert_eq!(
            recognise(tag("instance", arn)),
            Invocation::InstanceChanged {
                instance_id: "i-0abc".into(),
                cause: "instance-tag-change"
            }
        );
        assert!(matches!(recognise(tag("volume", arn)), Invocation::Unhandled(_)));
        let elsewhere = "arn:aws:ec2:us-east-1:123456789012:instance/../volume/vol-1";
        assert!(matches!(
            recognise(tag("instance", elsewhere)),
            Invocation::Unhandled(_)
        ));
        let attach = |extra: Value| {
            let mut detail = json!({"eventSource": "ec2.amazonaws.com", "eventName": "AttachNetworkInterface",
                                    "requestParameters": {"instanceId": "i-0def", "networkInterfaceId": "eni-1"}});
            if let (Some(detail), Some(extra)) = (detail.as_object_mut(), extra.as_object()) {
                detail.extend(extra.clone());
            }
            json!({"source": "aws.ec2", "detail-type": "AWS API Call via CloudTrail", "detail": detail})
        };
        assert!(matches!(recognise(attach(json!({}))),
                         Invocation::InstanceChanged { instance_id, cause: "eni-attached" } if instance_id == "i-0def"));
        assert!(matches!(
            recognise(attach(json!({"errorCode": "Client.InvalidParameterValue"}))),
            Invocation::Unhandled(_)
        ));
        let other_call = json!({"source": "aws.ec2", "detail-type": "AWS API Call via CloudTrail",
                                "detail": {"eventName": "RunInstances"}});
        assert!(matches!(recognise(other_call), Invocation::Unhandled(_)));
    }

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

    #[test]
    fn only_records_with_a_failure_that_may_pass_are_handed_back() {
        let record = |id: &str| {
            let mut message = SqsMessage::default();
            message.message_id = Some(id.into());
            message
        };
        let mut event = SqsEvent::default();
        event.records = vec![record("ok"), record("throttled"), record("invalid")];
        let failed = |retryable| {
            let mut result = crate::contract::ActionResult::failure("a", "t", "Code", "m".into(), retryable);
            result.success = false;
            DriverResponse::new(vec![result])
        };
        let responses = [DriverResponse::new(Vec::new()), failed(true), failed(false)];
        let answer = batch_failures(&event, &responses);
        let ids: Vec<_> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["throttled"]);
    }

    #[test]
    fn a_body_that_is_not_json_stays_text_and_json_text_is_unwrapped() {
        assert_eq!(record_body(Some("not json")), Value::String("not json".into()));
        assert_eq!(record_body(None), Value::String(String::new()));
        let wrapped = Value::String(r#"{"driverRequest": {"actions": []}}"#.into());
        assert_eq!(unwrapped(&wrapped), json!({"driverRequest": {"actions": []}}));
        assert_eq!(unwrapped(&Value::String("[1]".into())), Value::String("[1]".into()));
    }
}
