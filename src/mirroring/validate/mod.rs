//! Validation of one raw action into a typed request (contract §3.1), before
//! any call that changes EC2. Messages name the field by its JSON path so a
//! caller can find it in what they sent.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::model::*;
use crate::contract::{json_kind, RawAction, CREATE, REMOVE};
use crate::domain::account::AccountId;
pub use crate::domain::ids::{
    bad_eni_problem, is_action_id, is_aws_id, is_instance_id, parse_target, target_field_of, text_problem,
    MAX_ACTION_ID_CHARS, MAX_DESCRIPTION_CHARS, MAX_REASON_CHARS, MAX_RESERVATION_ID_CHARS,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    pub field: String,
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        problem: problem.into(),
    }
}

type Result<T> = std::result::Result<T, ValidationError>;

pub fn validate(action: &RawAction) -> Result<MirrorRequest> {
    if action.action_id.trim().is_empty() {
        return Err(invalid("actionId", "is missing or empty"));
    }
    if !is_action_id(&action.action_id) {
        return Err(invalid(
            "actionId",
            format!("must be 1-{MAX_ACTION_ID_CHARS} characters of A-Z a-z 0-9 . _ : -"),
        ));
    }
    match action.action_type.as_str() {
        CREATE => validate_create(action).map(MirrorRequest::Create),
        REMOVE => validate_remove(action).map(MirrorRequest::Remove),
        "" => Err(invalid("type", format!("is missing; expected {CREATE} or {REMOVE}"))),
        other => Err(invalid(
            "type",
            format!("{other:?} is not an action; expected {CREATE} or {REMOVE}"),
        )),
    }
}

fn validate_create(action: &RawAction) -> Result<CreateRequest> {
    let params = match action.body.get("actionParams") {
        Some(Value::Object(params)) => params,
        Some(other) => {
            return Err(invalid(
                "actionParams",
                format!("must be an object, got {}", json_kind(other)),
            ))
        }
        None => return Err(invalid("actionParams", "is missing")),
    };
    check_nested_type(params, "actionParams", "CreateTrafficMirroringParams")?;
    let source_eni = required_eni(params, "actionParams.sourceNicId")?;
    let target = target(params)?;
    if target.eni() == Some(&source_eni) {
        return Err(invalid(
            "actionParams.targetNicId",
            format!("is the same ENI as sourceNicId ({source_eni}); an ENI cannot mirror to itself"),
        ));
    }
    let filter = filter(params)?;
    let session_number = optional_int(params, "sessionNumber", "actionParams.sessionNumber")?
        .map(|n| in_range(n, 1, i64::from(MAX_SESSION_NUMBER), "actionParams.sessionNumber"))
        .transpose()?
        .map(|n| n as u16);
    let packet_length = optional_int(params, "packetLength", "actionParams.packetLength")?
        .map(|n| in_range(n, 1, MAX_PACKET_LENGTH, "actionParams.packetLength"))
        .transpose()?
        .map(|n| n as i32);
    let virtual_network_id = optional_int(params, "virtualNetworkId", "actionParams.virtualNetworkId")?
        .map(|n| in_range(n, 1, MAX_VIRTUAL_NETWORK_ID, "actionParams.virtualNetworkId"))
        .transpose()?
        .map(|n| n as i32);
    let description = free_text(params, "description", "actionParams.description", MAX_DESCRIPTION_CHARS)?;
    let reason = free_text(params, "reason", "actionParams.reason", MAX_REASON_CHARS)?;
    Ok(CreateRequest {
        action_id: action.action_id.clone(),
        account: account_id(Some(params), "actionParams.accountId")?,
        source_eni,
        target,
        filter,
        session_number,
        packet_length,
        virtual_network_id,
        description,
        reservation_id: reservation_id(action, Some(params))?,
        instance_id: None,
        dry_run: dry_run(action, params)?,
        refuse_if_source_is_target: false,
        from_policy: false,
        check_delivery: true,
        accountability: Accountability {
            requested_by: action.requester.clone(),
            reason,
        },
        lifetime: lifetime(params)?,
        placement: None,
    })
}

/// `expiresAt` (RFC 3339) or `durationMinutes` (1 to a year), not both.
/// Whether the end is in the future and within the deployment's cap is
/// decided when the create runs (`model::mirror_end`).
fn lifetime(params: &Map<String, Value>) -> Result<Option<Lifetime>> {
    let at = optional_text(params, "expiresAt", "actionParams.expiresAt")?;
    let minutes = optional_int(params, "durationMinutes", "actionParams.durationMinutes")?;
    match (at, minutes) {
        (Some(_), Some(_)) => Err(invalid(
            "actionParams.durationMinutes",
            "and expiresAt are both given; say when the mirror ends one way",
        )),
        (Some(at), None) => {
            let parsed = chrono::DateTime::parse_from_rfc3339(&at).map_err(|_| {
                invalid(
                    "actionParams.expiresAt",
                    format!("{:?} is not an RFC 3339 time such as 2026-12-05T18:00:00Z", shown(&at)),
                )
            })?;
            let seconds =
                u64::try_from(parsed.timestamp()).map_err(|_| invalid("actionParams.expiresAt", "is before 1970"))?;
            Ok(Some(Lifetime::Until(seconds)))
        }
        (None, Some(minutes)) => {
            let minutes = in_range(minutes, 1, MAX_LIFETIME_MINUTES as i64, "actionParams.durationMinutes")?;
            Ok(Some(Lifetime::Minutes(minutes as u64)))
        }
        (None, None) => Ok(None),
    }
}

/// Free text that ends up in tags, the ledger and terminals: at most `max`
/// characters and no control characters.
fn free_text(object: &Map<String, Value>, key: &str, path: &str, max: usize) -> Result<Option<String>> {
    let Some(text) = optional_text(object, key, path)? else {
        return Ok(None);
    };
    match text_problem(&text, max) {
        Some(problem) => Err(invalid(path, problem)),
        None => Ok(Some(text)),
    }
}

/// At most 64 characters of what a caller sent, to show in a message.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The ways to name a target (or a pool of them); exactly one must be given.
const TARGET_FIELDS: [&str; 5] = [
    "targetNicId",
    "targetNetworkLoadBalancerArn",
    "targetGatewayLoadBalancerEndpointId",
    "trafficMirrorTargetId",
    "targetPool",
];

fn target(params: &Map<String, Value>) -> Result<TargetSpec> {
    let mut given = Vec::new();
    for key in TARGET_FIELDS {
        if let Some(value) = optional_text(params, key, &format!("actionParams.{key}"))? {
            given.push((key, value));
        }
    }
    let (key, value) = match given.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(invalid(
                "actionParams.targetNicId",
                format!(
                    "is missing; name the target as exactly one of {}",
                    TARGET_FIELDS.join(", ")
                ),
            ))
        }
        [first, second, ..] => {
            return Err(invalid(
                format!("actionParams.{}", second.0),
                format!(
                    "names a second target besides {}; give exactly one of {}",
                    first.0,
                    TARGET_FIELDS.join(", ")
                ),
            ))
        }
    };
    parse_target(key, &value).map_err(|problem| invalid(format!("actionParams.{key}"), problem))
}

fn filter(params: &Map<String, Value>) -> Result<FilterSpec> {
    let existing = optional_text(params, "trafficMirrorFilterId", "actionParams.trafficMirrorFilterId")?;
    let has_rules = matches!(params.get("filterRules"), Some(Value::Array(rules)) if !rules.is_empty());
    match existing {
        Some(_) if has_rules => Err(invalid(
            "actionParams.trafficMirrorFilterId",
            "and filterRules are both given; name an existing filter or give rules, not both",
        )),
        Some(id) if is_aws_id(&id, "tmf-") => Ok(FilterSpec::Existing(id)),
        Some(id) => Err(invalid(
            "actionParams.trafficMirrorFilterId",
            format!("{id:?} is not a traffic mirror filter id (tmf- and 8 or 17 hex digits)"),
        )),
        None => Ok(FilterSpec::from_rules(rules(params)?)),
    }
}

/// `dryRun` on the action's parameters, on the action, or on the whole request.
fn dry_run(action: &RawAction, params: &Map<String, Value>) -> Result<bool> {
    let read = |object: &Map<String, Value>, path: &str| -> Result<Option<bool>> {
        match object.get("dryRun") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s.trim().is_empty() => Ok(Some(false)),
            Some(other) => Err(invalid(path, format!("must be true or false, got {other}"))),
        }
    };
    let own = read(params, "actionParams.dryRun")?.or(read(&action.body, "dryRun")?);
    Ok(own.unwrap_or(action.request_dry_run))
}

fn validate_remove(action: &RawAction) -> Result<RemoveRequest> {
    // Existing callers put remove fields at the top level; accept actionParams too.
    let params = action.body.get("actionParams").and_then(Value::as_object);
    let field = |key: &str| -> Result<Option<String>> {
        match optional_text(&action.body, key, key)? {
            Some(v) => Ok(Some(v)),
            None => params.map_or(Ok(None), |p| optional_text(p, key, &format!("actionParams.{key}"))),
        }
    };
    let session_id = field("sessionId")?;
    if let Some(id) = &session_id {
        if !is_aws_id(id, "tms-") {
            return Err(invalid(
                "sessionId",
                format!("{id:?} is not a traffic mirror session id (tms- and 17 hex digits)"),
            ));
        }
    }
    let target_eni = field("targetNicId")?
        .map(|text| EniId::parse(&text).ok_or_else(|| invalid("targetNicId", bad_eni_problem(&text))))
        .transpose()?;
    let reservation_id = reservation_id(action, params)?;
    let reason = match free_text(&action.body, "reason", "reason", MAX_REASON_CHARS)? {
        Some(reason) => Some(reason),
        None => params.map_or(Ok(None), |p| {
            free_text(p, "reason", "actionParams.reason", MAX_REASON_CHARS)
        })?,
    };
    if session_id.is_none() && target_eni.is_none() && reservation_id.is_none() {
        return Err(invalid(
            "sessionId",
            "sessionId, targetNicId and reservationId are all empty; name at least one",
        ));
    }
    let account = match account_id(Some(&action.body), "accountId")? {
        Some(account) => Some(account),
        None => account_id(params, "actionParams.accountId")?,
    };
    Ok(RemoveRequest {
        action_id: action.action_id.clone(),
        account,
        session_id,
        target_eni,
        reservation_id,
        instance_id: None,
        accountability: Accountability {
            requested_by: action.requester.clone(),
            reason,
        },
        expired: false,
    })
}

/// `accountId`: the 12-digit account the action acts in (whether the
/// deployment may act there is decided when it runs, against `MEMBER_ACCOUNTS`).
fn account_id(object: Option<&Map<String, Value>>, path: &str) -> Result<Option<AccountId>> {
    let Some(object) = object else { return Ok(None) };
    match optional_text(object, "accountId", path)? {
        None => Ok(None),
        Some(text) => AccountId::parse(text.trim())
            .map(Some)
            .ok_or_else(|| invalid(path, format!("{:?} is not an AWS account id (12 digits)", shown(&text)))),
    }
}

fn reservation_id(action: &RawAction, params: Option<&Map<String, Value>>) -> Result<Option<String>> {
    let own = match params {
        Some(p) => optional_text(p, "reservationId", "actionParams.reservationId")?,
        None => None,
    };
    let own = match own {
        Some(id) => Some(id),
        None => optional_text(&action.body, "reservationId", "reservationId")?,
    };
    let id = own.or_else(|| action.request_reservation_id.clone());
    if let Some(id) = &id {
        // It becomes an EC2 tag value and a DynamoDB key.
        if let Some(problem) = text_problem(id, MAX_RESERVATION_ID_CHARS) {
            return Err(invalid("reservationId", problem));
        }
    }
    Ok(id)
}

/// A nested `type` key may be missing (accepted) but, when given, must be right.
fn check_nested_type(object: &Map<String, Value>, path: &str, expected: &str) -> Result<()> {
    match object.get("type") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t == expected => Ok(()),
        Some(other) => Err(invalid(
            format!("{path}.type"),
            format!("must be {expected:?}, got {other}"),
        )),
    }
}

fn required_eni(params: &Map<String, Value>, path: &str) -> Result<EniId> {
    let key = path.rsplit('.').next().unwrap_or(path);
    let text = optional_text(params, key, path)?.ok_or_else(|| invalid(path, "is missing"))?;
    EniId::parse(&text).ok_or_else(|| invalid(path, bad_eni_problem(&text)))
}

/// A string field; empty or null counts as absent, as existing callers send "".
fn optional_text(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(other) => Err(invalid(path, format!("must be a string, got {}", json_kind(other)))),
    }
}

/// An integer sent as a JSON number or as a string of digits (`"5"`).
fn optional_int(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>> {
    let not_integer = |shown: &dyn std::fmt::Display| invalid(path, format!("{shown} is not an integer"));
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| not_integer(&format!("{s:?}"))),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
            _ => Err(not_integer(n)),
        },
        Some(other) => Err(invalid(
            path,
            format!("must be an integer or a string of digits, got {}", json_kind(other)),
        )),
    }
}

fn in_range(n: i64, low: i64, high: i64, path: &str) -> Result<i64> {
    if (low..=high).contains(&n) {
        Ok(n)
    } else {
        Err(invalid(path, format!("{n} is outside {low}-{high}")))
    }
}

mod rules;
#[cfg(test)]
mod tests;

use rules::rules;
