//! A create's filter rules: each checked by its JSON path, with defaults
//! applied (contract §3.1); none at all means mirror everything.

use serde_json::{Map, Value};

use super::*;

pub(super) fn rules(params: &Map<String, Value>) -> Result<Vec<RuleSpec>> {
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
