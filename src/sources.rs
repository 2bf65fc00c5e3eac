//! Which source invoked the function, and the answer that source understands:
//! a direct invoke gets its `driverResponse`; an SQS batch gets
//! `batchItemFailures` naming only the records worth delivering again; an
//! EventBridge request gets an error only when a retry can help. Pure: the
//! `App` (in `handler`) calls these on its way in and out.

use crate::domain::account::AccountId;
use crate::domain::instance::InstanceState;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::{json, Value};

use crate::contract::{
    DriverResponse, Requester, RequesterBasis, CLOUDTRAIL_API_CALL, EC2_STATE_CHANGE, REQUEST_DETAIL_TYPES,
    RESOURCE_TAG_CHANGE, SCHEDULED_EVENT,
};
use crate::domain::ids::{is_aws_id, is_instance_id};
use crate::domain::tags::TAG_EXCLUDE;
use crate::mirroring::watch::ResourceKind;

#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// A `driverRequest`, invoked directly (or anything not recognised below,
    /// which then gets a `driverResponse` saying what was wrong).
    Direct(Value),
    Sqs(SqsEvent),
    /// An EventBridge event whose detail is a `driverRequest`, and who sent
    /// it (the event's `account` and `source`).
    Request(Value, Requester),
    InstanceState {
        instance_id: String,
        state: InstanceState,
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
    /// a rule's constant input, or an EventBridge `Scheduled Event`;
    /// `{"sweep": {"account": "<id>"}}` sweeps one account of an organization.
    Sweep {
        dry_run: bool,
        account: Option<AccountId>,
    },
    /// Requested mirrors whose end has come are removed: `{"expire": {}}`
    /// (the template's five-minute schedule), `{"expire": {"dryRun": true}}`.
    Expire {
        dry_run: bool,
    },
    /// CloudTrail's `DeleteTrafficMirrorSession`/`Filter`/`Target`: someone
    /// deleted a traffic mirror resource. Only the id and who did it are
    /// read; EC2 and the ledger are asked whether it was ours and is gone.
    Deleted {
        kind: ResourceKind,
        id: String,
        actor: String,
    },
    /// CloudTrail's `CreateTags`/`DeleteTags` touching `traffic-mirroring:exclude`
    /// on instances: someone started or stopped shielding them from monitoring.
    ExcludeChanged {
        instances: Vec<String>,
        actor: String,
        call: String,
    },
    /// An event we recognise as an event but not one we handle.
    Unhandled(String),
}

impl Invocation {
    pub fn source_name(&self) -> &'static str {
        match self {
            Invocation::Direct(_) => "direct",
            Invocation::Sqs(_) => "sqs",
            Invocation::Request(..) => "eventbridge-request",
            Invocation::InstanceState { .. } => "ec2-state-change",
            Invocation::InstanceChanged { cause, .. } => cause,
            Invocation::Sweep { .. } => "sweep",
            Invocation::Expire { .. } => "expire",
            Invocation::Deleted { .. } => "resource-deleted",
            Invocation::ExcludeChanged { .. } => "exclude-tag-change",
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
        // A sweep of one account names it exactly: anything else is not
        // taken for "every account" (which would fan the sweep out again).
        let account = match sweep.get("account") {
            None | Some(Value::Null) => None,
            Some(named) => match named.as_str().and_then(AccountId::parse) {
                Some(account) => Some(account),
                None => {
                    return Invocation::Unhandled(format!(
                        "a sweep of account {named}, which is not a 12-digit account id"
                    ))
                }
            },
        };
        return Invocation::Sweep { dry_run, account };
    }
    if let Some(expire) = payload.get("expire") {
        let dry_run = expire.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
        return Invocation::Expire { dry_run };
    }
    if payload.get("detail-type").is_none() || payload.get("detail").is_none() {
        return Invocation::Direct(payload);
    }
    // An EventBridge event: its envelope typed, its detail read per kind.
    let event = match serde_json::from_value::<EventBridgeEvent>(payload) {
        Ok(event) => event,
        Err(err) => return Invocation::Unhandled(format!("an EventBridge event that could not be read: {err}")),
    };
    let (source, detail_type, detail) = (event.source.as_str(), event.detail_type.as_str(), &event.detail);
    if source == "aws.ec2" && detail_type == EC2_STATE_CHANGE {
        let field = |name: &str| detail.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        return Invocation::InstanceState {
            instance_id: field("instance-id"),
            state: InstanceState::parse(&field("state")),
        };
    }
    if let Some(changed) = instance_changed(&event) {
        return changed;
    }
    if source == "aws.ec2" && detail_type == CLOUDTRAIL_API_CALL {
        if let Some(watched) = watched_call(detail) {
            return watched;
        }
    }
    if source == "aws.events" && detail_type == SCHEDULED_EVENT {
        return Invocation::Sweep {
            dry_run: false,
            account: None,
        };
    }
    if REQUEST_DETAIL_TYPES.contains(&detail_type) {
        // The detail is the request itself, with or without its `driverRequest` wrapper.
        let request = if detail.get("driverRequest").is_some() {
            detail.clone()
        } else {
            json!({ "driverRequest": detail })
        };
        return Invocation::Request(request, event_requester(&event));
    }
    Invocation::Unhandled(format!(
        "an EventBridge event with detail-type {detail_type:?} from source {source:?}"
    ))
}

/// The CloudTrail calls the watch reads: deletions of traffic mirror
/// resources, and changes of the exclude tag on instances.
fn watched_call(detail: &Value) -> Option<Invocation> {
    let name = detail.get("eventName").and_then(Value::as_str)?;
    let kind = match name {
        "DeleteTrafficMirrorSession" => Some((ResourceKind::Session, "TrafficMirrorSessionId", "tms-")),
        "DeleteTrafficMirrorFilter" => Some((ResourceKind::Filter, "TrafficMirrorFilterId", "tmf-")),
        "DeleteTrafficMirrorTarget" => Some((ResourceKind::Target, "TrafficMirrorTargetId", "tmt-")),
        "CreateTags" | "DeleteTags" => None,
        _ => return None,
    };
    if detail.get("errorCode").is_some() {
        return Some(Invocation::Unhandled(format!("a failed {name} call")));
    }
    let actor = detail
        .pointer("/userIdentity/arn")
        .and_then(Value::as_str)
        .unwrap_or("an unknown principal")
        .chars()
        .filter(|c| !c.is_control())
        .take(512)
        .collect::<String>();
    let parameters = detail.get("requestParameters")?;
    if let Some((kind, field, prefix)) = kind {
        // CloudTrail logs these EC2 calls with the id under `<Call>Request`.
        let id = parameters
            .get(format!("{name}Request"))
            .and_then(|request| request.get(field))
            .or_else(|| parameters.get(field))
            .and_then(Value::as_str)
            .filter(|id| is_aws_id(id, prefix))?;
        return Some(Invocation::Deleted {
            kind,
            id: id.to_owned(),
            actor,
        });
    }
    let keys = parameters.pointer("/tagSet/items").and_then(Value::as_array);
    let touches_exclude = keys.is_some_and(|items| {
        items
            .iter()
            .any(|item| item.get("key").and_then(Value::as_str) == Some(TAG_EXCLUDE))
    });
    if !touches_exclude {
        return Some(Invocation::Unhandled(format!(
            "a {name} call that does not touch {TAG_EXCLUDE}"
        )));
    }
    let instances: Vec<String> = parameters
        .pointer("/resourcesSet/items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("resourceId").and_then(Value::as_str))
        .filter(|id| is_instance_id(id))
        .map(str::to_owned)
        .collect();
    Some(Invocation::ExcludeChanged {
        instances,
        actor,
        call: name.to_owned(),
    })
}

/// Who sent an EventBridge event: `events:<account>/<source>`, which
/// EventBridge sets (a `PutEvents` caller cannot name another account).
fn event_requester(event: &EventBridgeEvent) -> Requester {
    let account = event.account.as_deref().unwrap_or("unknown-account");
    Requester::new(
        format!("events:{account}/{}", event.source),
        RequesterBasis::EventBridge,
    )
}

/// Who sent an SQS record: SQS's `SenderId` attribute (the sender's IAM
/// principal id, set by SQS). A record whose body is an EventBridge event
/// says which event it carries; the sender is what SQS vouches for.
pub fn record_requester(record: &SqsMessage, body: &Value) -> Requester {
    let sender = record
        .attributes
        .get("SenderId")
        .map(String::as_str)
        .filter(|id| !id.is_empty())
        .unwrap_or("unknown-sender");
    let principal = match recognise(unwrapped(body)) {
        Invocation::Request(_, carried) => format!("{} via sqs:{sender}", carried.principal),
        _ => format!("sqs:{sender}"),
    };
    Requester::new(principal, RequesterBasis::SqsSender)
}

/// A direct invoke proves nobody: its payload's `driverRequest.requestedBy`
/// is kept as stated.
pub fn stated_requester(payload: &Value) -> Requester {
    unwrapped(payload)
        .pointer("/driverRequest/requestedBy")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map_or_else(Requester::unstated, |name| {
            // Printed in logs and terminals and tagged on resources: bounded, no control characters.
            let name: String = name.chars().filter(|c| !c.is_control()).take(256).collect();
            Requester::new(name, RequesterBasis::Stated)
        })
}

/// A tag change on an EC2 instance, or a successful ENI attachment.
fn instance_changed(event: &EventBridgeEvent) -> Option<Invocation> {
    let (source, detail_type, detail) = (event.source.as_str(), event.detail_type.as_str(), &event.detail);
    let text = |value: &Value, name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let instance_id = if source == "aws.tag" && detail_type == RESOURCE_TAG_CHANGE {
        if text(detail, "service").as_deref() != Some("ec2")
            || text(detail, "resource-type").as_deref() != Some("instance")
        {
            return Some(Invocation::Unhandled(
                "a tag change on a resource other than an EC2 instance".into(),
            ));
        }
        let arn = event.resources.as_ref()?.first()?;
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
/// The account an EventBridge event says it comes from (`account`, which
/// EventBridge sets: a sender cannot name another).
pub fn event_account(event: &Value) -> Option<AccountId> {
    event.get("detail-type")?;
    event.get("account").and_then(Value::as_str).and_then(AccountId::parse)
}

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
                state: InstanceState::Running
            }
        );
        let request = json!({"source": "my.app", "detail-type": "CreateTrafficMirroring", "account": "123456789012",
                             "detail": {"actions": []}});
        assert_eq!(
            recognise(request),
            Invocation::Request(
                json!({"driverRequest": {"actions": []}}),
                Requester::new("events:123456789012/my.app", RequesterBasis::EventBridge)
            )
        );
        let direct = json!({"driverRequest": {"actions": []}});
        assert_eq!(recognise(direct.clone()), Invocation::Direct(direct));
    }

    #[test]
    fn a_requester_is_what_the_source_proves() {
        let record = |attributes: Value, body: &str| -> SqsMessage {
            serde_json::from_value(json!({"messageId": "m1", "eventSource": "aws:sqs", "body": body,
                                          "attributes": attributes}))
            .expect("record")
        };
        let plain = record(json!({"SenderId": "AIDAEXAMPLE"}), "{}");
        assert_eq!(
            record_requester(&plain, &json!({})),
            Requester::new("sqs:AIDAEXAMPLE", RequesterBasis::SqsSender)
        );
        let event = json!({"source": "my.app", "detail-type": "CreateTrafficMirroring", "account": "111122223333",
                           "detail": {"actions": []}});
        let carried = record(json!({"SenderId": "AROAEVENTS:events"}), "");
        assert_eq!(
            record_requester(&carried, &event).principal,
            "events:111122223333/my.app via sqs:AROAEVENTS:events"
        );
        assert_eq!(
            record_requester(&record(json!({}), "{}"), &json!({})).principal,
            "sqs:unknown-sender"
        );
        let direct = json!({"driverRequest": {"requestedBy": "alice\u{7}@corp", "actions": []}});
        assert_eq!(
            stated_requester(&direct),
            Requester::new("alice@corp", RequesterBasis::Stated),
            "kept as stated, without control characters"
        );
        assert_eq!(stated_requester(&json!({"driverRequest": {}})), Requester::unstated());
    }

    #[test]
    fn cloudtrail_deletions_and_exclusions_name_only_the_resource_and_who() {
        let call = |name: &str, parameters: Value| {
            json!({"source": "aws.ec2", "detail-type": "AWS API Call via CloudTrail", "account": "123456789012",
                   "detail": {"eventSource": "ec2.amazonaws.com", "eventName": name,
                              "userIdentity": {"arn": "arn:aws:iam::123456789012:user/mallory"},
                              "requestParameters": parameters}})
        };
        let deleted = call(
            "DeleteTrafficMirrorSession",
            json!({"DeleteTrafficMirrorSessionRequest": {"TrafficMirrorSessionId": "tms-0123456789abcdef0"}}),
        );
        assert_eq!(
            recognise(deleted),
            Invocation::Deleted {
                kind: ResourceKind::Session,
                id: "tms-0123456789abcdef0".into(),
                actor: "arn:aws:iam::123456789012:user/mallory".into()
            }
        );
        let target = call(
            "DeleteTrafficMirrorTarget",
            json!({"DeleteTrafficMirrorTargetRequest": {"TrafficMirrorTargetId": "tmt-0123456789abcdef0"}}),
        );
        assert!(matches!(
            recognise(target),
            Invocation::Deleted {
                kind: ResourceKind::Target,
                ..
            }
        ));
        let sneaky = call(
            "DeleteTrafficMirrorFilter",
            json!({"DeleteTrafficMirrorFilterRequest": {"TrafficMirrorFilterId": "tmf-1/../x"}}),
        );
        assert!(
            matches!(recognise(sneaky), Invocation::Unhandled(_)),
            "an id that is no id is not acted on"
        );
        let tags = |key: &str| {
            call(
                "CreateTags",
                json!({"resourcesSet": {"items": [{"resourceId": "i-0123456789abcdef0"}, {"resourceId": "vol-1"}]},
                       "tagSet": {"items": [{"key": key, "value": "true"}]}}),
            )
        };
        assert_eq!(
            recognise(tags("traffic-mirroring:exclude")),
            Invocation::ExcludeChanged {
                instances: vec!["i-0123456789abcdef0".into()],
                actor: "arn:aws:iam::123456789012:user/mallory".into(),
                call: "CreateTags".into()
            }
        );
        assert!(matches!(recognise(tags("Name")), Invocation::Unhandled(_)));
        assert_eq!(recognise(json!({"expire": {}})), Invocation::Expire { dry_run: false });
    }

    #[test]
    fn an_event_whose_envelope_cannot_be_read_is_named_not_guessed() {
        let no_source = json!({"detail-type": "CreateTrafficMirroring", "detail": {"actions": []}});
        assert!(matches!(recognise(no_source), Invocation::Unhandled(why) if why.contains("could not be read")));
        let bad_time = json!({"source": "my.app", "detail-type": "CreateTrafficMirroring", "time": "yesterday",
                              "detail": {"actions": []}});
        assert!(matches!(recognise(bad_time), Invocation::Unhandled(_)));
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
