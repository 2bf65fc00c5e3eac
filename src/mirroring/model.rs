//! Validated requests and the resources they talk about. Everything here has
//! passed `validate`, so the create and remove flows never re-check input.

use std::fmt;

/// A network interface id: `eni-` and 8 or 17 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EniId(String);

impl EniId {
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("eni-")?;
        let valid_len = hex.len() == 8 || hex.len() == 17;
        let valid_digits = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (valid_len && valid_digits).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EniId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// An IP protocol number, or every protocol (EC2's "omit the field").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    All,
    Number(u8),
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

impl Protocol {
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Number(TCP | UDP))
    }

    pub fn number(self) -> Option<i32> {
        match self {
            Protocol::All => None,
            Protocol::Number(n) => Some(i32::from(n)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

/// One accept rule, with defaults applied: both CIDRs are always present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    pub direction: Direction,
    /// Unique per direction within the filter; assigned in request order.
    pub rule_number: i32,
    pub protocol: Protocol,
    pub source_ports: Option<PortRange>,
    pub destination_ports: Option<PortRange>,
    pub source_cidr: String,
    pub destination_cidr: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub action_id: String,
    pub source_eni: EniId,
    pub target_eni: EniId,
    /// `None` asks us to allocate the lowest free number on the source ENI.
    pub session_number: Option<u16>,
    pub rules: Vec<RuleSpec>,
    pub packet_length: Option<i32>,
    pub virtual_network_id: Option<i32>,
    pub description: Option<String>,
    pub reservation_id: Option<String>,
    /// Set by the launch path, so termination can find the mirrors.
    pub instance_id: Option<String>,
}

/// What a remove names; at least one field is set. All given = the union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveRequest {
    pub action_id: String,
    pub session_id: Option<String>,
    pub target_eni: Option<EniId>,
    pub reservation_id: Option<String>,
    /// Set by the termination path: everything made for this instance.
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MirrorRequest {
    Create(CreateRequest),
    Remove(RemoveRequest),
}

impl MirrorRequest {
    pub fn action_id(&self) -> &str {
        match self {
            MirrorRequest::Create(c) => &c.action_id,
            MirrorRequest::Remove(r) => &r.action_id,
        }
    }
}

/// AWS's limits from contract §4 that we check before changing anything.
pub const SESSIONS_PER_SOURCE_ENI: usize = 3;
/// Sources per ENI target (contract §4; 100 on the largest sizes, which we do not assume).
pub const SOURCES_PER_ENI_TARGET: usize = 10;
pub const RULES_PER_FILTER: usize = 10;
pub const MAX_SESSION_NUMBER: u16 = 32766;
pub const MAX_PACKET_LENGTH: i64 = 8500;
pub const MAX_VIRTUAL_NETWORK_ID: i64 = 16_777_215;
