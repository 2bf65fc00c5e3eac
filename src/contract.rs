//! The wire contract existing callers speak: the CloudShell `driverRequest` and
//! `driverResponse` JSON (contract §1–2).
//!
//! Parsing is deliberately two-staged. This module only splits a payload into
//! actions (id, type, raw JSON); `mirroring::validate` turns each one into a
//! typed request. That way one malformed action gets its own error result and
//! never takes the other actions of the request down with it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const CREATE: &str = "CreateTrafficMirroring";
pub const REMOVE: &str = "RemoveTrafficMirroring";
/// The action type of a reconcile sweep's result and completion event.
pub const SWEEP: &str = "Sweep";
/// The type of the event announcing sessions nobody approved.
pub const UNAPPROVED: &str = "UnapprovedMirrors";
/// The type of the event announcing a resource of ours deleted by someone else.
pub const TAMPERING: &str = "Tampering";
/// The error code of an action another invocation is carrying out right
/// now: retryable, and announced by nobody but the one carrying it out.
pub const IN_PROGRESS: &str = "ActionInProgress";

// --- events ------------------------------------------------------------------
// The EventBridge side of the contract: the detail-types we publish (one
// completion event per action) and those we accept.

pub const DETAIL_CREATED: &str = "TrafficMirroringCreated";
pub const DETAIL_REMOVED: &str = "TrafficMirroringRemoved";
pub const DETAIL_FAILED: &str = "TrafficMirroringFailed";
pub const DETAIL_SWEPT: &str = "TrafficMirroringSweepCompleted";
/// A mirror removed because its end (`expiresAt`) came.
pub const DETAIL_EXPIRED: &str = "TrafficMirroringExpired";
/// The sweep found sessions this deployment did not make whose target is
/// not allowed: wiretaps nobody approved.
pub const DETAIL_UNAPPROVED: &str = "TrafficMirroringUnapprovedFound";
/// A session, filter or target of ours was deleted by someone else.
pub const DETAIL_TAMPERED: &str = "TrafficMirroringTampered";

/// The completion event's detail-type for this result.
pub fn detail_type(result: &ActionResult) -> &'static str {
    match (result.success, result.action_type.as_str()) {
        (_, SWEEP) => DETAIL_SWEPT,
        (_, UNAPPROVED) => DETAIL_UNAPPROVED,
        (_, TAMPERING) => DETAIL_TAMPERED,
        (true, CREATE) => DETAIL_CREATED,
        (true, _) if result.expired => DETAIL_EXPIRED,
        (true, _) => DETAIL_REMOVED,
        (false, _) => DETAIL_FAILED,
    }
}

/// At most this many actions in one request: more is refused whole, so a
/// request cannot hold one invocation (and the account's EC2 budget) for ever.
pub const MAX_ACTIONS_PER_REQUEST: usize = 100;

/// Who asked for an action, and how we know it (contract addition: every
/// mirror is accountable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub principal: String,
    pub basis: RequesterBasis,
}

/// What vouches for a `Requester`'s principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequesterBasis {
    /// SQS's `SenderId` attribute of the record: set by SQS, not the sender.
    SqsSender,
    /// An EventBridge event's `account` and `source`, as EventBridge
    /// delivered it to the function.
    EventBridge,
    /// The caller's ARN from STS `GetCallerIdentity` (`mirrorctl`).
    StsCaller,
    /// Said by the payload of a direct invoke: stated, not proven.
    Stated,
    /// This deployment's own launch policy (a launch, a tag change, the sweep).
    Policy,
    /// This deployment ending a mirror whose time was up.
    Expiry,
}

impl RequesterBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SqsSender => "sqs-sender",
            Self::EventBridge => "eventbridge",
            Self::StsCaller => "sts-caller",
            Self::Stated => "stated",
            Self::Policy => "policy",
            Self::Expiry => "expiry",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::SqsSender,
            Self::EventBridge,
            Self::StsCaller,
            Self::Stated,
            Self::Policy,
            Self::Expiry,
        ]
        .into_iter()
        .find(|b| b.as_str() == text)
    }

    /// Whether something other than the request itself vouches for it.
    pub fn proven(self) -> bool {
        self != Self::Stated
    }
}

impl Requester {
    pub fn new(principal: impl Into<String>, basis: RequesterBasis) -> Self {
        Self {
            principal: principal.into(),
            basis,
        }
    }

    /// A direct invoke that named nobody.
    pub fn unstated() -> Self {
        Self::new("unstated", RequesterBasis::Stated)
    }

    pub fn policy() -> Self {
        Self::new("policy", RequesterBasis::Policy)
    }
}

impl Default for Requester {
    fn default() -> Self {
        Self::unstated()
    }
}

/// Who asked for an action and why: kept in the ledger, tagged on what a
/// create makes, and carried by the result and its completion event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accountability {
    pub requested_by: Requester,
    pub reason: Option<String>,
}

/// Detail-types of EventBridge events that carry a `driverRequest`.
/// (Spelled out: the template's request rule is checked against these.)
pub const REQUEST_DETAIL_TYPES: [&str; 3] = [
    "CreateTrafficMirroring",
    "RemoveTrafficMirroring",
    "TrafficMirroringRequest",
];
/// EC2's instance state-change events (source `aws.ec2`).
pub const EC2_STATE_CHANGE: &str = "EC2 Instance State-change Notification";
/// Tag changes on a resource (source `aws.tag`).
pub const RESOURCE_TAG_CHANGE: &str = "Tag Change on Resource";
/// An API call CloudTrail recorded (source `aws.ec2` for EC2's).
pub const CLOUDTRAIL_API_CALL: &str = "AWS API Call via CloudTrail";
/// EventBridge Scheduler and schedule rules (source `aws.events`): a sweep.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// One action of a `driverRequest`, split off but not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RawAction {
    pub action_id: String,
    pub action_type: String,
    /// The whole action object, so validation can read both top-level fields
    /// (remove) and `actionParams` (create).
    pub body: Map<String, Value>,
    /// A `reservationId` given once for the whole request applies to every action.
    pub request_reservation_id: Option<String>,
    /// `dryRun: true` on the whole request applies to every action.
    pub request_dry_run: bool,
    /// Who sent it, as its source proves (or the payload states).
    pub requester: Requester,
}

/// A payload that is not a `driverRequest` at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedRequest(pub String);

/// Splits a `driverRequest` payload into its actions.
///
/// Accepts the request as a JSON object or, as CloudShell's `ExecuteCommand`
/// passes it, as a JSON string holding that object.
pub fn split_request(payload: &Value) -> Result<Vec<RawAction>, MalformedRequest> {
    let decoded;
    let payload = match payload {
        Value::String(text) => {
            decoded = serde_json::from_str::<Value>(text)
                .map_err(|e| MalformedRequest(format!("the payload is a string but not JSON: {e}")))?;
            &decoded
        }
        other => other,
    };
    let request = payload
        .get("driverRequest")
        .ok_or_else(|| MalformedRequest(describe_missing_request(payload)))?;
    let request = request
        .as_object()
        .ok_or_else(|| MalformedRequest(format!("driverRequest must be an object, got {}", json_kind(request))))?;
    let actions = match request.get("actions") {
        Some(Value::Array(actions)) => actions,
        Some(other) => {
            return Err(MalformedRequest(format!(
                "driverRequest.actions must be a list, got {}",
                json_kind(other)
            )))
        }
        None => {
            return Err(MalformedRequest(
                "driverRequest.actions is missing: nothing to do".into(),
            ))
        }
    };
    let request_reservation_id = request
        .get("reservationId")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);
    if actions.len() > MAX_ACTIONS_PER_REQUEST {
        return Err(MalformedRequest(format!(
            "driverRequest.actions has {} actions; at most {MAX_ACTIONS_PER_REQUEST} are taken in one request \
             (nothing was done: split it)",
            actions.len()
        )));
    }
    let request_dry_run = request.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
    Ok(actions
        .iter()
        .enumerate()
        .map(|(index, action)| {
            let mut raw = split_action(index, action, request_reservation_id.clone());
            raw.request_dry_run = request_dry_run;
            raw
        })
        .collect())
}

fn split_action(index: usize, action: &Value, reservation: Option<String>) -> RawAction {
    let body = action.as_object().cloned().unwrap_or_default();
    let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default();
    let mut action_id = text("actionId").to_owned();
    if action_id.is_empty() && !action.is_object() {
        // Keep the result traceable to its position when there is no id to echo.
        action_id = format!("#{index}");
    }
    RawAction {
        action_type: text("type").to_owned(),
        action_id,
        body,
        request_reservation_id: reservation,
        request_dry_run: false,
        requester: Requester::unstated(),
    }
}

fn describe_missing_request(payload: &Value) -> String {
    match payload {
        Value::Object(map) if map.is_empty() => {
            "the payload is an empty object; expected {\"driverRequest\": {\"actions\": [...]}}".into()
        }
        Value::Object(map) => {
            let mut keys: Vec<&str> = map.keys().map(String::as_str).take(5).collect();
            keys.sort_unstable();
            format!(
                "the payload has no driverRequest (its keys: {}); expected {{\"driverRequest\": {{\"actions\": [...]}}}}",
                keys.join(", ")
            )
        }
        other => format!(
            "the payload is {}; expected {{\"driverRequest\": {{\"actions\": [...]}}}}",
            json_kind(other)
        ),
    }
}

pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The answer callers parse: `{"driverResponse": {"actionResults": [...]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverResponse {
    pub driver_response: ResponseBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResponseBody {
    pub action_results: Vec<ActionResult>,
    /// Set only when the request itself could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl DriverResponse {
    pub fn new(action_results: Vec<ActionResult>) -> Self {
        Self {
            driver_response: ResponseBody {
                action_results,
                error_message: None,
            },
        }
    }

    pub fn malformed(error: &MalformedRequest) -> Self {
        Self {
            driver_response: ResponseBody {
                action_results: Vec::new(),
                error_message: Some(format!("invalid driverRequest: {}", error.0)),
            },
        }
    }
}

/// The result of one action. The first six fields are what existing callers
/// read; the rest are additions they ignore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ActionResult {
    pub action_id: String,
    #[serde(rename = "type")]
    pub action_type: String,
    pub success: bool,
    pub info_message: String,
    pub error_message: String,
    pub session_id: String,
    /// AWS error code, or one of ours (`ValidationError`, `InProgress`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Whether retrying the same action later may succeed (throttling, 5xx, a race).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_mirror_target_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_mirror_filter_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_number: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network_id: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    /// Sessions a remove took down (or found already gone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_session_ids: Vec<String>,
    /// Set on the answer to a dry run: nothing was changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// What a dry run would do: the target, the filter, the session number,
    /// and EC2's answer to each call asked with `DryRun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Value>,
    /// What a reconcile sweep found and did (type `Sweep` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Value>,
    /// Who asked for the action (`Requester::principal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// What vouches for `requested_by`: `stated` means only the request said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by_basis: Option<RequesterBasis>,
    /// Why, as the request said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the mirror ends (RFC 3339, UTC); absent: it runs until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// A remove that ended a mirror because its time was up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// What a watch found (types `UnapprovedMirrors` and `Tampering`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// For a create to a pool: which member it was placed on, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// The member account the action acted in (absent: the deployment's own).
    #[serde(default, rename = "accountId", skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// Where a create to a pool (`pool:<name>`) was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub pool: String,
    pub member: String,
    pub why: String,
}

impl ActionResult {
    pub fn failure(action_id: &str, action_type: &str, code: &str, message: String, retryable: bool) -> Self {
        Self {
            action_id: action_id.to_owned(),
            action_type: action_type.to_owned(),
            success: false,
            error_message: message,
            error_code: Some(code.to_owned()),
            retryable,
            ..Self::default()
        }
    }

    /// The result with who asked and why, unless it already says (a result
    /// replayed from the ledger keeps its first requester).
    pub fn accountable(mut self, accountability: &Accountability) -> Self {
        if self.requested_by.is_none() {
            self.requested_by = Some(accountability.requested_by.principal.clone());
            self.requested_by_basis = Some(accountability.requested_by.basis);
            self.reason.clone_from(&accountability.reason);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_actions_in_order_keeping_ids_and_types() {
        let payload = json!({"driverRequest": {"actions": [
            {"actionId": "a", "type": CREATE, "actionParams": {}},
            {"actionId": "b", "type": REMOVE, "sessionId": "tms-1"}
        ]}});
        let actions = split_request(&payload).expect("valid request");
        let ids: Vec<_> = actions.iter().map(|a| a.action_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(actions[1].action_type, REMOVE);
    }

    #[test]
    fn accepts_the_request_as_a_json_string() {
        let payload = Value::String(
            r#"{"driverRequest": {"actions": [{"actionId": "x", "type": "RemoveTrafficMirroring"}]}}"#.into(),
        );
        assert_eq!(split_request(&payload).expect("valid")[0].action_id, "x");
    }

    #[test]
    fn names_what_was_received_when_it_is_not_a_request() {
        let err = split_request(&json!({"hello": 1})).expect_err("not a request");
        assert!(err.0.contains("hello"), "{}", err.0);
        let err = split_request(&json!([1, 2])).expect_err("not a request");
        assert!(err.0.contains("a list"), "{}", err.0);
        let err = split_request(&json!({"driverRequest": {"actions": 3}})).expect_err("bad");
        assert!(err.0.contains("actions must be a list"), "{}", err.0);
    }

    #[test]
    fn more_than_a_hundred_actions_are_refused_whole() {
        let actions = |n: usize| {
            let list: Vec<Value> = (0..n)
                .map(|i| json!({"actionId": format!("a{i}"), "type": REMOVE, "sessionId": "tms-1"}))
                .collect();
            json!({"driverRequest": {"actions": list}})
        };
        assert_eq!(split_request(&actions(100)).map(|a| a.len()), Ok(100));
        let err = split_request(&actions(101)).expect_err("too many");
        assert!(
            err.0.contains("101 actions") && err.0.contains("at most 100"),
            "{}",
            err.0
        );
    }

    #[test]
    fn only_a_stated_requester_is_unproven_and_the_first_requester_stays() {
        assert!(!RequesterBasis::Stated.proven());
        assert!(RequesterBasis::SqsSender.proven() && RequesterBasis::EventBridge.proven());
        for basis in [
            RequesterBasis::SqsSender,
            RequesterBasis::Expiry,
            RequesterBasis::StsCaller,
        ] {
            assert_eq!(RequesterBasis::parse(basis.as_str()), Some(basis));
        }
        let first = Accountability {
            requested_by: Requester::new("sqs:AIDA1", RequesterBasis::SqsSender),
            reason: Some("INC-1".into()),
        };
        let later = Accountability {
            requested_by: Requester::new("someone", RequesterBasis::Stated),
            reason: None,
        };
        let result = ActionResult::default().accountable(&first).accountable(&later);
        assert_eq!(result.requested_by.as_deref(), Some("sqs:AIDA1"));
        assert_eq!(result.reason.as_deref(), Some("INC-1"));
        let json = serde_json::to_value(&result).expect("serializes");
        assert_eq!(json["requestedByBasis"], "sqs-sender");
    }

    #[test]
    fn a_non_object_action_still_gets_a_traceable_id() {
        let actions = split_request(&json!({"driverRequest": {"actions": [7]}})).expect("split");
        assert_eq!(actions[0].action_id, "#0");
    }

    #[test]
    fn malformed_response_keeps_the_driver_response_shape() {
        let response = DriverResponse::malformed(&MalformedRequest("x".into()));
        let json = serde_json::to_value(response).expect("serializes");
        assert_eq!(json["driverResponse"]["actionResults"], json!([]));
        assert!(json["driverResponse"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("invalid driverRequest")));
    }
}
