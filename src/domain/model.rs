//! Validated requests and the resources they talk about. Everything here has
//! passed `validate`, so the create and remove flows never re-check input.

use std::fmt;

use sha2::{Digest, Sha256};

pub use crate::contract::{Accountability, Requester, RequesterBasis};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

impl RuleSpec {
    /// The rule without its number, in one spelling: what makes two rules the same.
    fn canonical(&self) -> String {
        let ports = |p: Option<PortRange>| p.map_or_else(|| "*".to_owned(), |p| format!("{}-{}", p.from, p.to));
        let protocol = self
            .protocol
            .number()
            .map_or_else(|| "all".to_owned(), |n| n.to_string());
        format!(
            "{} {} {} {} {} {}",
            self.direction.as_str(),
            protocol,
            ports(self.source_ports),
            ports(self.destination_ports),
            self.source_cidr,
            self.destination_cidr
        )
    }
}

/// Puts rules into their canonical form: sorted, duplicates dropped, numbered
/// 100, 200, … per direction. Every rule accepts, so order never changes what
/// is mirrored; making it canonical lets equal rule sets share one filter.
pub fn canonical_rules(mut rules: Vec<RuleSpec>) -> Vec<RuleSpec> {
    rules.sort_by_cached_key(|r| (r.direction, r.canonical()));
    rules.dedup_by(|a, b| a.canonical() == b.canonical());
    let mut counts = [0i32; 2];
    for rule in &mut rules {
        let count = &mut counts[rule.direction as usize];
        *count += 1;
        rule.rule_number = *count * 100;
    }
    rules
}

/// The name of a rule set: equal for rule sets that are equal once canonical.
pub fn rule_set_key(rules: &[RuleSpec]) -> String {
    let text: Vec<String> = rules.iter().map(RuleSpec::canonical).collect();
    let digest = Sha256::digest(text.join("\n").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("rules-{hex}")
}

/// Where a session sends its copy of the traffic (contract §4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// A monitoring appliance's ENI: at most 10 sources.
    Eni(EniId),
    /// A Network Load Balancer, by ARN: no source limit.
    NetworkLoadBalancer(String),
    /// A Gateway Load Balancer endpoint (`vpce-…`): no source limit.
    GatewayLoadBalancerEndpoint(String),
    /// A traffic mirror target that already exists: used, never deleted.
    Existing(String),
    /// A pool of destinations (`TARGET_POOLS`), by name: the create places
    /// the source on one of its members (`pool:<name>` as one string).
    Pool(String),
}

/// How a pool is written where one string names a destination.
pub const POOL_PREFIX: &str = "pool:";

/// The source limit of targets that have none, as a number DynamoDB can compare.
pub const UNLIMITED_SOURCES: usize = 1_000_000_000;

impl TargetSpec {
    /// What the ledger's claim item for this destination is named after; an
    /// existing target has none because we neither make nor delete it.
    pub fn claim_name(&self) -> Option<&str> {
        match self {
            TargetSpec::Eni(eni) => Some(eni.as_str()),
            TargetSpec::NetworkLoadBalancer(arn) => Some(arn),
            TargetSpec::GatewayLoadBalancerEndpoint(id) => Some(id),
            TargetSpec::Existing(_) | TargetSpec::Pool(_) => None,
        }
    }

    pub fn eni(&self) -> Option<&EniId> {
        match self {
            TargetSpec::Eni(eni) => Some(eni),
            _ => None,
        }
    }

    /// How many sessions may use one target of this kind.
    pub fn source_limit(&self) -> usize {
        match self {
            TargetSpec::Eni(_) => SOURCES_PER_ENI_TARGET,
            _ => UNLIMITED_SOURCES,
        }
    }

    /// EC2's name for the kind (`type` of a traffic mirror target).
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSpec::Eni(_) => "network-interface",
            TargetSpec::NetworkLoadBalancer(_) => "network-load-balancer",
            TargetSpec::GatewayLoadBalancerEndpoint(_) => "gateway-load-balancer-endpoint",
            TargetSpec::Existing(_) => "existing-target",
            TargetSpec::Pool(_) => "pool",
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Eni(eni) => write!(f, "{eni}"),
            TargetSpec::NetworkLoadBalancer(id)
            | TargetSpec::GatewayLoadBalancerEndpoint(id)
            | TargetSpec::Existing(id) => f.write_str(id),
            TargetSpec::Pool(name) => write!(f, "{POOL_PREFIX}{name}"),
        }
    }
}

/// Which filter a session uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterSpec {
    /// Ours, made once for this rule set and shared by every session asking
    /// for the same rules; `key` names the rule set (see `rule_set_key`).
    Rules { rules: Vec<RuleSpec>, key: String },
    /// A filter the caller made: used, never changed or deleted.
    Existing(String),
}

impl FilterSpec {
    pub fn from_rules(rules: Vec<RuleSpec>) -> Self {
        let rules = canonical_rules(rules);
        let key = rule_set_key(&rules);
        FilterSpec::Rules { rules, key }
    }

    pub fn rules(&self) -> &[RuleSpec] {
        match self {
            FilterSpec::Rules { rules, .. } => rules,
            FilterSpec::Existing(_) => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub action_id: String,
    /// The account the source ENI lives in (`actionParams.accountId`);
    /// `None`: the deployment's own.
    pub account: Option<crate::domain::account::AccountId>,
    pub source_eni: EniId,
    pub target: TargetSpec,
    pub filter: FilterSpec,
    /// `None` asks us to allocate the lowest free number on the source ENI.
    pub session_number: Option<u16>,
    pub packet_length: Option<i32>,
    pub virtual_network_id: Option<i32>,
    pub description: Option<String>,
    pub reservation_id: Option<String>,
    /// Set by the launch path, so termination can find the mirrors.
    pub instance_id: Option<String>,
    /// Work out and check the plan; change nothing.
    pub dry_run: bool,
    /// Set by the launch path, where the source may be an appliance's own
    /// ENI (a mirror target): such a create is refused, and EC2 is asked
    /// alongside the create's first reads instead of in a round of its own.
    pub refuse_if_source_is_target: bool,
    /// Made by the launch policy (a launch, a tag change, the sweep): when its
    /// action finished before but its mirror is gone since, it is made again
    /// rather than answered with the old success.
    pub from_policy: bool,
    /// Whether the create reads the target's ingress rules and warns when
    /// they shut out VXLAN (the sweep judges that itself, once per target).
    pub check_delivery: bool,
    /// Who asked for it and why.
    pub accountability: Accountability,
    /// When the mirror ends, as asked; `None`: at the deployment's cap, if any.
    pub lifetime: Option<Lifetime>,
    /// Set once a create to a pool is placed: `target` is then the member.
    pub placement: Option<crate::contract::Placement>,
}

/// How long a requested mirror runs (`actionParams.expiresAt` or `durationMinutes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until this Unix time (seconds).
    Until(u64),
    /// This many minutes from when the create runs.
    Minutes(u64),
}

/// The longest a mirror may be asked to run: a year.
pub const MAX_LIFETIME_MINUTES: u64 = 525_600;

/// Why a mirror's end was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndRefused {
    #[error("expiresAt is in the past ({seconds_ago} s ago); a mirror must end in the future")]
    InThePast { seconds_ago: u64 },
    #[error(
        "the mirror would run {minutes} minutes, over this deployment's cap of {cap} minutes (MAX_MIRROR_MINUTES); \
         ask for less"
    )]
    OverCap { minutes: u64, cap: u64 },
}

/// When a mirror ends (Unix seconds), from what was asked, the deployment's
/// cap in minutes and the time now: a mirror asked for without an end gets
/// the cap as its end; one asked to run past the cap is refused.
pub fn mirror_end(lifetime: Option<Lifetime>, cap_minutes: Option<u64>, now: u64) -> Result<Option<u64>, EndRefused> {
    let end = match lifetime {
        None => return Ok(cap_minutes.map(|cap| now.saturating_add(cap.saturating_mul(60)))),
        Some(Lifetime::Until(at)) if at <= now => return Err(EndRefused::InThePast { seconds_ago: now - at }),
        Some(Lifetime::Until(at)) => at,
        Some(Lifetime::Minutes(minutes)) => now.saturating_add(minutes.saturating_mul(60)),
    };
    match cap_minutes {
        // Whole minutes, rounded up: an end one second past the cap is over it.
        Some(cap) if end - now > cap.saturating_mul(60) => Err(EndRefused::OverCap {
            minutes: (end - now).div_ceil(60),
            cap,
        }),
        _ => Ok(Some(end)),
    }
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-05T10:00:00Z`).
pub fn rfc3339(seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// What a remove names; at least one field is set. All given = the union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveRequest {
    pub action_id: String,
    /// The account to remove in, when the caller names it; `None`: the
    /// account the ledger records for the mirror (the deployment's own when
    /// it records none).
    pub account: Option<crate::domain::account::AccountId>,
    pub session_id: Option<String>,
    pub target_eni: Option<EniId>,
    pub reservation_id: Option<String>,
    /// Set by the termination path: everything made for this instance.
    pub instance_id: Option<String>,
    /// Who asked for it and why.
    pub accountability: Accountability,
    /// Set by the expiry run: the mirror's time was up (announced as
    /// `TrafficMirroringExpired`).
    pub expired: bool,
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
/// Sources per ENI target on most instance sizes (contract §4; the largest
/// sizes take 100: `instance::sources_per_eni_target`).
pub const SOURCES_PER_ENI_TARGET: usize = 10;
pub const RULES_PER_FILTER: usize = 10;
pub const MAX_SESSION_NUMBER: u16 = 32766;
pub const MAX_PACKET_LENGTH: i64 = 8500;
pub const MAX_VIRTUAL_NETWORK_ID: i64 = 16_777_215;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_mirror_ends_when_asked_within_the_cap() {
        assert_eq!(
            mirror_end(None, None, NOW),
            Ok(None),
            "no end, no cap: runs until removed"
        );
        assert_eq!(
            mirror_end(None, Some(60), NOW),
            Ok(Some(NOW + 3600)),
            "the cap is the end"
        );
        assert_eq!(
            mirror_end(Some(Lifetime::Minutes(30)), Some(60), NOW),
            Ok(Some(NOW + 1800))
        );
        assert_eq!(
            mirror_end(Some(Lifetime::Until(NOW + 3600)), Some(60), NOW),
            Ok(Some(NOW + 3600))
        );
        assert_eq!(
            mirror_end(Some(Lifetime::Until(NOW + 3601)), Some(60), NOW),
            Err(EndRefused::OverCap { minutes: 61, cap: 60 })
        );
        assert_eq!(
            mirror_end(Some(Lifetime::Minutes(90)), Some(60), NOW),
            Err(EndRefused::OverCap { minutes: 90, cap: 60 })
        );
        assert_eq!(
            mirror_end(Some(Lifetime::Until(NOW - 5)), None, NOW),
            Err(EndRefused::InThePast { seconds_ago: 5 })
        );
        assert!(
            mirror_end(Some(Lifetime::Until(NOW)), None, NOW).is_err(),
            "now is not the future"
        );
    }

    #[test]
    fn ends_read_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
