//! Validation of one raw action into a typed request (contract §3.1), before
//! any call that changes EC2. Messages name the field by its JSON path so a
//! caller can find it in what they sent.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::model::*;
use crate::contract::{json_kind, RawAction, CREATE, REMOVE};

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

/// The longest `actionId`: it becomes a ledger key and an EC2 tag value.
pub const MAX_ACTION_ID_CHARS: usize = 128;
/// The longest `reason`: kept whole in the ledger (its tag is cut to 256).
pub const MAX_REASON_CHARS: usize = 512;
pub const MAX_RESERVATION_ID_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 255;

/// An action id: 1-128 characters of `A-Za-z0-9._:-`, so it is safe as a
/// key, a tag value and a line of a terminal.
pub fn is_action_id(text: &str) -> bool {
    (1..=MAX_ACTION_ID_CHARS).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

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
    if text.chars().count() > max {
        return Err(invalid(path, format!("is longer than {max} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(path, "holds control characters"));
    }
    Ok(Some(text))
}

/// At most 64 characters of what a caller sent, to show in a message.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The four ways to name a target; exactly one must be given.
const TARGET_FIELDS: [&str; 4] = [
    "targetNicId",
    "targetNetworkLoadBalancerArn",
    "targetGatewayLoadBalancerEndpointId",
    "trafficMirrorTargetId",
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

/// Reads a target given under `key` (one of `TARGET_FIELDS`); the launch
/// path uses it too, for tags and default targets.
pub fn parse_target(key: &str, value: &str) -> std::result::Result<TargetSpec, String> {
    match key {
        "targetNicId" => EniId::parse(value)
            .map(TargetSpec::Eni)
            .ok_or_else(|| bad_eni_problem(value)),
        "targetNetworkLoadBalancerArn" => network_load_balancer(value).map(TargetSpec::NetworkLoadBalancer),
        "targetGatewayLoadBalancerEndpointId" if is_aws_id(value, "vpce-") => {
            Ok(TargetSpec::GatewayLoadBalancerEndpoint(value.to_owned()))
        }
        "targetGatewayLoadBalancerEndpointId" => Err(format!(
            "{value:?} is not a Gateway Load Balancer endpoint id (vpce- and 8 or 17 hex digits)"
        )),
        _ if is_aws_id(value, "tmt-") => Ok(TargetSpec::Existing(value.to_owned())),
        _ => Err(format!(
            "{value:?} is not a traffic mirror target id (tmt- and 8 or 17 hex digits)"
        )),
    }
}

/// Which field names a target given as one string, told by its form: what
/// tags and default-target settings hold.
pub fn target_field_of(value: &str) -> &'static str {
    if value.starts_with("arn:") {
        "targetNetworkLoadBalancerArn"
    } else if value.starts_with("vpce-") {
        "targetGatewayLoadBalancerEndpointId"
    } else if value.starts_with("tmt-") {
        "trafficMirrorTargetId"
    } else {
        "targetNicId"
    }
}

/// `arn:<partition>:elasticloadbalancing:<region>:<account>:loadbalancer/net/<name>/<id>`.
fn network_load_balancer(arn: &str) -> std::result::Result<String, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let resource = match parts.as_slice() {
        ["arn", partition, "elasticloadbalancing", region, account, resource]
            if !partition.is_empty()
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            *resource
        }
        _ => return Err(format!("{arn:?} is not an Elastic Load Balancing ARN")),
    };
    let segments: Vec<&str> = resource.split('/').collect();
    match segments.as_slice() {
        ["loadbalancer", "net", name, id] if !name.is_empty() && !id.is_empty() => Ok(arn.to_owned()),
        ["loadbalancer", kind, ..] => Err(format!(
            "{arn:?} is a load balancer of type {kind:?}; only a Network Load Balancer (net) can be a mirror target"
        )),
        _ => Err(format!("{arn:?} is not a load balancer ARN")),
    }
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
    Ok(RemoveRequest {
        action_id: action.action_id.clone(),
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
        if id.chars().count() > MAX_RESERVATION_ID_CHARS {
            return Err(invalid(
                "reservationId",
                format!("is longer than {MAX_RESERVATION_ID_CHARS} characters"),
            ));
        }
        if id.chars().any(char::is_control) {
            return Err(invalid("reservationId", "holds control characters"));
        }
    }
    Ok(id)
}

pub fn is_aws_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|hex| (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
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

fn bad_eni_problem(text: &str) -> String {
    format!("{text:?} is not a network interface id (eni- and 8 or 17 hex digits)")
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

fn rules(params: &Map<String, Value>) -> Result<Vec<RuleSpec>> {
    let raw = match params.get("filterRules") {
        None | Some(Value::Null) => return Ok(mirror_everything()),
        Some(Value::Array(rules)) if rules.is_empty() => return Ok(mirror_everything()),
        Some(Value::Array(rules)) => rules,
        Some(other) => {
            return Err(invalid(
                "actionParams.filterRules",
                format!("must be a list, got {}", json_kind(other)),
            ))
        }
    };
    if raw.len() > RULES_PER_FILTER {
        return Err(invalid(
            "actionParams.filterRules",
            format!(
                "has {} rules; a traffic mirror filter holds at most {RULES_PER_FILTER}",
                raw.len()
            ),
        ));
    }
    // Numbers are given when the rule set is made canonical (`FilterSpec::from_rules`).
    raw.iter()
        .enumerate()
        .map(|(index, value)| rule(index, value))
        .collect()
}

/// No rules asks for everything, both directions, IPv4 and IPv6. (The original
/// driver made an empty filter, which mirrors nothing.)
fn mirror_everything() -> Vec<RuleSpec> {
    let all = |direction, rule_number, cidr: &str| RuleSpec {
        direction,
        rule_number,
        protocol: Protocol::All,
        source_ports: None,
        destination_ports: None,
        source_cidr: cidr.to_owned(),
        destination_cidr: cidr.to_owned(),
    };
    vec![
        all(Direction::Ingress, 100, "0.0.0.0/0"),
        all(Direction::Egress, 100, "0.0.0.0/0"),
        all(Direction::Ingress, 200, "::/0"),
        all(Direction::Egress, 200, "::/0"),
    ]
}

fn rule(index: usize, value: &Value) -> Result<RuleSpec> {
    let path = format!("actionParams.filterRules[{index}]");
    let object = value
        .as_object()
        .ok_or_else(|| invalid(&path, format!("must be an object, got {}", json_kind(value))))?;
    check_nested_type(object, &path, "TrafficFilterRule")?;
    let field = |key: &str| format!("{path}.{key}");
    let direction = match optional_text(object, "direction", &field("direction"))? {
        None => return Err(invalid(field("direction"), "is missing (ingress or egress)")),
        Some(d) => match d.to_ascii_lowercase().as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            _ => return Err(invalid(field("direction"), format!("{d:?} is not ingress or egress"))),
        },
    };
    let protocol = protocol(object, &field("protocol"))?;
    let source_ports = port_range(object, "sourcePortRange", &field("sourcePortRange"))?;
    let destination_ports = port_range(object, "destinationPortRange", &field("destinationPortRange"))?;
    if (source_ports.is_some() || destination_ports.is_some()) && !protocol.has_ports() {
        return Err(invalid(
            field("protocol"),
            "port ranges are allowed only with tcp or udp",
        ));
    }
    let source = optional_text(object, "sourceCidr", &field("sourceCidr"))?
        .map(|c| cidr(&c, &field("sourceCidr")))
        .transpose()?;
    let destination = optional_text(object, "destinationCidr", &field("destinationCidr"))?
        .map(|c| cidr(&c, &field("destinationCidr")))
        .transpose()?;
    let (source_cidr, destination_cidr) = match (source, destination) {
        (Some((s, s6)), Some((d, d6))) if s6 != d6 => {
            return Err(invalid(
                field("destinationCidr"),
                format!("{d} and sourceCidr {s} are of different IP versions"),
            ))
        }
        (Some((s, _)), Some((d, _))) => (s, d),
        (Some((s, v6)), None) => (s, all_addresses(v6)),
        (None, Some((d, v6))) => (all_addresses(v6), d),
        (None, None) => (all_addresses(false), all_addresses(false)),
    };
    Ok(RuleSpec {
        direction,
        rule_number: 0,
        protocol,
        source_ports,
        destination_ports,
        source_cidr,
        destination_cidr,
    })
}

fn all_addresses(v6: bool) -> String {
    if v6 { "::/0" } else { "0.0.0.0/0" }.to_owned()
}

fn protocol(object: &Map<String, Value>, path: &str) -> Result<Protocol> {
    let text = match object.get("protocol") {
        None | Some(Value::Null) => return Err(invalid(path, "is missing (for example tcp, udp, icmp, all)")),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_ascii_lowercase(),
        Some(other) => return Err(invalid(path, format!("must be a string, got {}", json_kind(other)))),
    };
    let named = match text.as_str() {
        "all" | "-1" => Some(Protocol::All),
        "tcp" => Some(Protocol::Number(TCP)),
        "udp" => Some(Protocol::Number(UDP)),
        "icmp" => Some(Protocol::Number(1)),
        "icmpv6" => Some(Protocol::Number(58)),
        _ => None,
    };
    if let Some(protocol) = named {
        return Ok(protocol);
    }
    text.parse::<u8>().map(Protocol::Number).map_err(|_| {
        invalid(
            path,
            format!("{text:?} is not a protocol (tcp, udp, icmp, icmpv6, all, or a number 0-255)"),
        )
    })
}

fn port_range(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<PortRange>> {
    let range = match object.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(range)) => range,
        Some(other) => return Err(invalid(path, format!("must be an object, got {}", json_kind(other)))),
    };
    check_nested_type(range, path, "PortRange")?;
    let port = |name: &str| -> Result<Option<u16>> {
        let field = format!("{path}.{name}");
        optional_int(range, name, &field)?
            .map(|n| in_range(n, 0, 65535, &field).map(|n| n as u16))
            .transpose()
    };
    match (port("fromPort")?, port("toPort")?) {
        (None, None) => Ok(None),
        (Some(from), None) => Ok(Some(PortRange { from, to: from })),
        (None, Some(to)) => Ok(Some(PortRange { from: to, to })),
        (Some(from), Some(to)) if from > to => {
            Err(invalid(path, format!("fromPort {from} is greater than toPort {to}")))
        }
        (Some(from), Some(to)) => Ok(Some(PortRange { from, to })),
    }
}

/// Returns the CIDR as given and whether it is IPv6. Host bits are allowed, as
/// in the seed's own example (`192.168.0.124/24`).
fn cidr(text: &str, path: &str) -> Result<(String, bool)> {
    let problem = || invalid(path, format!("{text:?} is not a CIDR block (for example 10.0.0.0/16)"));
    let (address, prefix) = text.split_once('/').ok_or_else(problem)?;
    let address: IpAddr = address.parse().map_err(|_| problem())?;
    let prefix: u8 = prefix.parse().map_err(|_| problem())?;
    let max = if address.is_ipv6() { 128 } else { 32 };
    if prefix > max {
        return Err(problem());
    }
    // One spelling per block (IPv6 zeros compressed, lower case), so equal
    // rule sets are recognised as equal.
    Ok((format!("{address}/{prefix}"), address.is_ipv6()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::split_request;
    use serde_json::json;

    fn create_with(params: Value) -> Result<CreateRequest> {
        let payload = json!({"driverRequest": {"actions": [
            {"actionId": "a1", "type": CREATE, "actionParams": params}
        ]}});
        let actions = split_request(&payload).expect("splits");
        match validate(&actions[0])? {
            MirrorRequest::Create(c) => Ok(c),
            other => panic!("expected a create, got {other:?}"),
        }
    }

    fn base() -> Value {
        json!({"type": "CreateTrafficMirroringParams",
               "sourceNicId": "eni-008322622e675cd80", "targetNicId": "eni-05fc8d0b34b762305"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut params = base();
        params[key] = value;
        params
    }

    fn rule_error(rule: Value) -> ValidationError {
        create_with(with("filterRules", json!([rule]))).expect_err("rule is invalid")
    }

    fn validated(action: Value) -> Result<MirrorRequest> {
        let actions = split_request(&json!({"driverRequest": {"actions": [action]}})).expect("splits");
        validate(&actions[0])
    }

    #[test]
    fn an_action_id_is_short_and_plain() {
        let create = |id: &str| validated(json!({"actionId": id, "type": CREATE, "actionParams": base()}));
        assert!(create("41f206a1-a6c0-4603-90f7-6492cd0fb00d").is_ok());
        assert!(create("ops:INC-1234.retry_2").is_ok());
        assert!(create(&"a".repeat(128)).is_ok());
        for bad in [
            "a".repeat(129),
            "two words".into(),
            "tab\there".into(),
            "semi;colon".into(),
            "é".into(),
        ] {
            assert_eq!(create(&bad).expect_err("refused").field, "actionId", "{bad:?}");
        }
    }

    #[test]
    fn a_reason_and_an_end_are_read_and_checked() {
        let create = create_with(with("reason", json!("INC-1234 exfiltration"))).expect("valid");
        assert_eq!(create.accountability.reason.as_deref(), Some("INC-1234 exfiltration"));
        assert_eq!(create.lifetime, None);
        let until = create_with(with("expiresAt", json!("2027-01-15T08:00:00Z"))).expect("valid");
        assert_eq!(until.lifetime, Some(Lifetime::Until(1_800_000_000)));
        let offset = create_with(with("expiresAt", json!("2027-01-15T09:00:00+01:00"))).expect("valid");
        assert_eq!(
            offset.lifetime,
            Some(Lifetime::Until(1_800_000_000)),
            "any offset, one instant"
        );
        let minutes = create_with(with("durationMinutes", json!("90"))).expect("valid");
        assert_eq!(minutes.lifetime, Some(Lifetime::Minutes(90)));
        for (key, bad) in [
            ("reason", json!("line\nbreak")),
            ("reason", json!("x".repeat(513))),
            ("description", json!("bell\u{7}")),
            ("expiresAt", json!("tomorrow")),
            ("expiresAt", json!("2027-01-15")),
            ("durationMinutes", json!(0)),
            ("durationMinutes", json!(525_601)),
            ("reservationId", json!("esc\u{1b}[2J")),
        ] {
            let err = create_with(with(key, bad.clone())).expect_err("refused");
            assert!(err.field.ends_with(key), "{key}: {bad} -> {err}");
        }
        let mut both = with("expiresAt", json!("2027-01-15T08:00:00Z"));
        both["durationMinutes"] = json!(5);
        assert!(create_with(both).is_err(), "one way to say the end");
    }

    #[test]
    fn a_remove_carries_its_reason_and_its_requester() {
        let action = json!({"actionId": "r1", "type": REMOVE, "sessionId": "tms-0123456789abcdef0", "reason": "done"});
        let actions = split_request(&json!({"driverRequest": {"actions": [action]}})).expect("splits");
        let mut raw = actions[0].clone();
        raw.requester = Requester::new("sqs:AIDA1", RequesterBasis::SqsSender);
        let Ok(MirrorRequest::Remove(remove)) = validate(&raw) else {
            panic!("a remove");
        };
        assert_eq!(remove.accountability.reason.as_deref(), Some("done"));
        assert_eq!(remove.accountability.requested_by.principal, "sqs:AIDA1");
        assert!(!remove.expired, "only the expiry run ends a mirror as expired");
    }

    #[test]
    fn the_seed_request_validates_with_defaults_applied() {
        let create = create_with(with(
            "filterRules",
            json!([{"type": "TrafficFilterRule", "direction": "ingress", "protocol": "tcp",
                    "sourcePortRange": {"type": "PortRange", "fromPort": "50000", "toPort": "65535"},
                    "sourceCidr": "192.168.0.124/24"}]),
        ))
        .expect("valid");
        let rule = &create.filter.rules()[0];
        assert_eq!(rule.protocol, Protocol::Number(TCP));
        assert_eq!(rule.source_ports, Some(PortRange { from: 50000, to: 65535 }));
        assert_eq!(rule.destination_cidr, "0.0.0.0/0");
        assert_eq!(create.session_number, None);
    }

    #[test]
    fn numbers_may_be_strings_or_json_numbers() {
        assert_eq!(
            create_with(with("sessionNumber", json!("5")))
                .expect("ok")
                .session_number,
            Some(5)
        );
        assert_eq!(
            create_with(with("sessionNumber", json!(7))).expect("ok").session_number,
            Some(7)
        );
        assert_eq!(
            create_with(with("sessionNumber", json!("")))
                .expect("ok")
                .session_number,
            None
        );
    }

    #[test]
    fn session_number_must_be_an_integer_in_range() {
        for bad in [json!("0"), json!(32767), json!("five"), json!(2.5), json!(true)] {
            let err = create_with(with("sessionNumber", bad.clone())).expect_err("invalid");
            assert_eq!(err.field, "actionParams.sessionNumber", "{bad}");
        }
    }

    #[test]
    fn eni_ids_are_checked() {
        for bad in [
            "eni-123",
            "ENI-008322622e675cd80",
            "eni-00832262Ze675cd80",
            "i-0123456789abcdef0",
        ] {
            let err = create_with(with("sourceNicId", json!(bad))).expect_err("invalid");
            assert_eq!(err.field, "actionParams.sourceNicId");
        }
        assert!(create_with(with("sourceNicId", json!("eni-0a1b2c3d"))).is_ok());
        let err = create_with(with("targetNicId", Value::Null)).expect_err("missing");
        assert!(err.problem.contains("missing"));
    }

    #[test]
    fn source_and_target_must_differ() {
        let err = create_with(with("targetNicId", json!("eni-008322622e675cd80"))).expect_err("same");
        assert_eq!(err.field, "actionParams.targetNicId");
    }

    #[test]
    fn a_wrong_nested_type_is_an_error_and_a_missing_one_is_fine() {
        let err = create_with(with("type", json!("Other"))).expect_err("wrong type");
        assert_eq!(err.field, "actionParams.type");
        let mut params = base();
        params.as_object_mut().expect("object").remove("type");
        assert!(create_with(params).is_ok());
        let err = rule_error(json!({"type": "Nope", "direction": "ingress", "protocol": "tcp"}));
        assert_eq!(err.field, "actionParams.filterRules[0].type");
    }

    #[test]
    fn rule_fields_are_checked() {
        let err = rule_error(json!({"direction": "sideways", "protocol": "tcp"}));
        assert_eq!(err.field, "actionParams.filterRules[0].direction");
        let err = rule_error(json!({"direction": "ingress", "protocol": "smtp"}));
        assert_eq!(err.field, "actionParams.filterRules[0].protocol");
        let err = rule_error(json!({"direction": "ingress", "protocol": "256"}));
        assert_eq!(err.field, "actionParams.filterRules[0].protocol");
        let err = rule_error(json!({"direction": "ingress", "protocol": "icmp",
                                    "sourcePortRange": {"fromPort": 1, "toPort": 2}}));
        assert!(err.problem.contains("only with tcp or udp"));
        let err = rule_error(json!({"direction": "ingress", "protocol": "udp",
                                    "destinationPortRange": {"fromPort": 9, "toPort": 2}}));
        assert_eq!(err.field, "actionParams.filterRules[0].destinationPortRange");
        let err = rule_error(json!({"direction": "ingress", "protocol": "udp",
                                    "destinationPortRange": {"fromPort": 9, "toPort": 65536}}));
        assert_eq!(err.field, "actionParams.filterRules[0].destinationPortRange.toPort");
        for bad in ["10.0.0.0/33", "10.0.0/8", "nonsense", "fe80::/129"] {
            let err = rule_error(json!({"direction": "egress", "protocol": "all", "sourceCidr": bad}));
            assert_eq!(err.field, "actionParams.filterRules[0].sourceCidr", "{bad}");
        }
    }

    #[test]
    fn more_than_ten_rules_is_an_error() {
        let rule = json!({"direction": "ingress", "protocol": "tcp"});
        let err = create_with(with("filterRules", json!(vec![rule; 11]))).expect_err("too many");
        assert!(err.problem.contains("at most 10"));
    }

    #[test]
    fn rules_are_made_canonical_and_numbered_per_direction() {
        let rules = json!([
            {"direction": "ingress", "protocol": "tcp"},
            {"direction": "egress", "protocol": "udp"},
            {"direction": "ingress", "protocol": 17, "destinationCidr": "2001:DB8:0::/32"}
        ]);
        let create = create_with(with("filterRules", rules)).expect("valid");
        let rules = create.filter.rules();
        let numbers: Vec<_> = rules.iter().map(|r| (r.direction, r.rule_number)).collect();
        assert_eq!(
            numbers,
            [
                (Direction::Ingress, 100),
                (Direction::Ingress, 200),
                (Direction::Egress, 100)
            ]
        );
        let udp = rules
            .iter()
            .find(|r| r.protocol == Protocol::Number(UDP))
            .expect("udp rule");
        assert_eq!(
            (udp.source_cidr.as_str(), udp.destination_cidr.as_str()),
            ("::/0", "2001:db8::/32"),
            "the default follows the other CIDR's version; the spelling is canonical"
        );
    }

    #[test]
    fn equal_rule_sets_get_one_key_whatever_their_order_and_spelling() {
        let key = |rules: Value| match create_with(with("filterRules", rules)).expect("valid").filter {
            FilterSpec::Rules { key, .. } => key,
            other => panic!("expected rules, got {other:?}"),
        };
        let one = key(json!([
            {"direction": "ingress", "protocol": "tcp", "sourceCidr": "10.0.0.0/8"},
            {"direction": "egress", "protocol": "udp"}
        ]));
        let same = key(json!([
            {"direction": "EGRESS", "protocol": 17, "sourceCidr": "0.0.0.0/0", "destinationCidr": "0.0.0.0/0"},
            {"direction": "ingress", "protocol": "6", "sourceCidr": "10.0.0.0/8"},
            {"direction": "ingress", "protocol": "tcp", "sourceCidr": "10.0.0.0/8"}
        ]));
        let other = key(json!([{"direction": "ingress", "protocol": "tcp"}]));
        assert_eq!(one, same);
        assert_ne!(one, other);
    }

    #[test]
    fn no_rules_means_mirror_everything_both_ways() {
        let create = create_with(base()).expect("valid");
        let rules = create.filter.rules();
        assert!(rules.iter().any(|r| r.direction == Direction::Ingress));
        assert!(rules.iter().any(|r| r.direction == Direction::Egress));
        assert!(rules.iter().all(|r| r.protocol == Protocol::All));
    }

    fn without_target(extra: &[(&str, Value)]) -> Value {
        let mut params = base();
        let object = params.as_object_mut().expect("object");
        object.remove("targetNicId");
        for (key, value) in extra {
            object.insert((*key).to_owned(), value.clone());
        }
        params
    }

    #[test]
    fn every_kind_of_target_is_accepted_once() {
        let nlb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/mon/50dc6c495c0c9188";
        let cases = [
            (
                "targetNetworkLoadBalancerArn",
                nlb,
                TargetSpec::NetworkLoadBalancer(nlb.into()),
            ),
            (
                "targetGatewayLoadBalancerEndpointId",
                "vpce-0123456789abcdef0",
                TargetSpec::GatewayLoadBalancerEndpoint("vpce-0123456789abcdef0".into()),
            ),
            (
                "trafficMirrorTargetId",
                "tmt-0123456789abcdef0",
                TargetSpec::Existing("tmt-0123456789abcdef0".into()),
            ),
        ];
        for (key, value, expected) in cases {
            let create = create_with(without_target(&[(key, json!(value))])).expect(key);
            assert_eq!(create.target, expected);
        }
        let err = create_with(without_target(&[])).expect_err("no target");
        assert!(err.problem.contains("exactly one"), "{err}");
        let err = create_with(with("trafficMirrorTargetId", json!("tmt-0123456789abcdef0"))).expect_err("two");
        assert_eq!(err.field, "actionParams.trafficMirrorTargetId");
        let alb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
        let err = create_with(without_target(&[("targetNetworkLoadBalancerArn", json!(alb))])).expect_err("alb");
        assert!(err.problem.contains("only a Network Load Balancer"), "{err}");
        for (key, bad) in [
            (
                "targetNetworkLoadBalancerArn",
                "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
            ),
            ("targetGatewayLoadBalancerEndpointId", "vpc-0123456789abcdef0"),
            ("trafficMirrorTargetId", "tmf-0123456789abcdef0"),
        ] {
            let err = create_with(without_target(&[(key, json!(bad))])).expect_err(bad);
            assert_eq!(err.field, format!("actionParams.{key}"));
        }
    }

    #[test]
    fn an_existing_filter_replaces_rules_but_not_both() {
        let create = create_with(with("trafficMirrorFilterId", json!("tmf-0123456789abcdef0"))).expect("valid");
        assert_eq!(create.filter, FilterSpec::Existing("tmf-0123456789abcdef0".into()));
        let mut both = with("trafficMirrorFilterId", json!("tmf-0123456789abcdef0"));
        both["filterRules"] = json!([{"direction": "ingress", "protocol": "tcp"}]);
        assert_eq!(
            create_with(both).expect_err("both").field,
            "actionParams.trafficMirrorFilterId"
        );
        let err = create_with(with("trafficMirrorFilterId", json!("filter-1"))).expect_err("bad id");
        assert!(err.problem.contains("not a traffic mirror filter id"));
    }

    #[test]
    fn dry_run_may_be_asked_on_the_params_the_action_or_the_request() {
        assert!(!create_with(base()).expect("valid").dry_run);
        assert!(create_with(with("dryRun", json!(true))).expect("valid").dry_run);
        assert!(create_with(with("dryRun", json!("maybe"))).is_err());
        let payload = json!({"driverRequest": {"dryRun": true, "actions": [
            {"actionId": "a", "type": CREATE, "actionParams": base()},
            {"actionId": "b", "type": CREATE, "dryRun": false, "actionParams": base()}
        ]}});
        let actions = split_request(&payload).expect("splits");
        let dry = |a: &RawAction| matches!(validate(a), Ok(MirrorRequest::Create(c)) if c.dry_run);
        assert!(dry(&actions[0]), "the request's flag applies");
        assert!(!dry(&actions[1]), "the action's own flag wins");
    }

    #[test]
    fn remove_needs_at_least_one_selector_and_checks_them() {
        let remove = |action: Value| {
            let payload = json!({"driverRequest": {"actions": [action]}});
            validate(&split_request(&payload).expect("splits")[0])
        };
        let err = remove(json!({"actionId": "r", "type": REMOVE, "sessionId": "", "targetNicId": ""}))
            .expect_err("nothing named");
        assert!(err.problem.contains("name at least one"));
        let err = remove(json!({"actionId": "r", "type": REMOVE, "sessionId": "tms-xyz"})).expect_err("bad id");
        assert_eq!(err.field, "sessionId");
        let ok = remove(json!({"actionId": "r", "type": REMOVE, "sessionId": "",
                               "targetNicId": "eni-08e44d9a954444e3f"}))
        .expect("valid");
        assert!(matches!(
            ok,
            MirrorRequest::Remove(RemoveRequest {
                session_id: None,
                target_eni: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn the_direct_invoke_samples_in_events_are_valid_requests() {
        // Compiled in, so cargo rebuilds the test when a sample changes.
        for (name, text) in [
            ("direct-create.json", include_str!("../../events/direct-create.json")),
            ("direct-remove.json", include_str!("../../events/direct-remove.json")),
            (
                "direct-create-load-balancers.json",
                include_str!("../../events/direct-create-load-balancers.json"),
            ),
        ] {
            let payload: Value = serde_json::from_str(text).expect("sample is JSON");
            for action in split_request(&payload).expect("sample is a driverRequest") {
                validate(&action).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    #[test]
    fn unknown_action_types_and_missing_ids_are_named() {
        let payload = json!({"driverRequest": {"actions": [
            {"actionId": "x", "type": "Explode"}, {"type": CREATE}
        ]}});
        let actions = split_request(&payload).expect("splits");
        assert_eq!(validate(&actions[0]).expect_err("bad type").field, "type");
        assert_eq!(validate(&actions[1]).expect_err("no id").field, "actionId");
    }
}
