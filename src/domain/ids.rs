//! Ids as AWS and callers write them, and the one reading of each: what
//! validation, the event sources, the configuration and the CLI all use.

use super::model::{EniId, TargetSpec, POOL_PREFIX};

/// The longest `actionId`: it becomes a ledger key and an EC2 tag value.
pub const MAX_ACTION_ID_CHARS: usize = 128;

/// An action id: 1-128 characters of `A-Za-z0-9._:-`, so it is safe as a
/// key, a tag value and a line of a terminal.
pub fn is_action_id(text: &str) -> bool {
    (1..=MAX_ACTION_ID_CHARS).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The longest `reason`: kept whole in the ledger (its tag is cut to 256).
pub const MAX_REASON_CHARS: usize = 512;
pub const MAX_RESERVATION_ID_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 255;

/// Why free text (a reason, a reservation id, a description) is refused, if
/// it is: it ends up in tags, the ledger and terminals, so it is bounded and
/// holds no control characters.
pub fn text_problem(text: &str, max: usize) -> Option<String> {
    if text.chars().count() > max {
        Some(format!("is longer than {max} characters"))
    } else if text.chars().any(char::is_control) {
        Some("holds control characters".into())
    } else {
        None
    }
}

/// An AWS id: the prefix and 8 or 17 hex digits.
pub fn is_aws_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|hex| (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
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
        "targetPool" => pool_name(value.strip_prefix(POOL_PREFIX).unwrap_or(value)).map(TargetSpec::Pool),
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
    } else if value.starts_with(POOL_PREFIX) {
        "targetPool"
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

/// A pool's name: 1 to 64 letters, digits, `-` and `_`.
pub fn pool_name(name: &str) -> std::result::Result<String, String> {
    let fits = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a pool name (1 to 64 letters, digits, - and _)"
        ))
    }
}

pub fn bad_eni_problem(text: &str) -> String {
    format!("{text:?} is not a network interface id (eni- and 8 or 17 hex digits)")
}

/// An instance id: `i-` and 8 or 17 hex digits.
pub fn is_instance_id(text: &str) -> bool {
    is_aws_id(text, "i-")
}
