//! Settings from the environment, read once at init. A missing, malformed or
//! out-of-range value fails init with a message naming the variable, so a
//! bad deployment stops at start-up instead of misbehaving (or panicking) on
//! its first request.

use std::collections::BTreeMap;

use crate::domain::account::{AccountId, AccountSet};
use crate::domain::ids::{is_aws_id, parse_target, pool_name, target_field_of};
use crate::domain::model::{TargetSpec, POOL_PREFIX};
use crate::domain::{AllowList, Pools};

pub const TABLE_NAME: &str = "TABLE_NAME";
pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
pub const EVENT_SOURCE: &str = "EVENT_SOURCE";
pub const DEFAULT_EVENT_SOURCE: &str = "traffic-mirroring";
pub const DEFAULT_EVENT_BUS: &str = "default";
/// JSON object of subnet or VPC id -> target, for instances launched
/// without a `traffic-mirroring:target` tag.
pub const DEFAULT_TARGETS: &str = "DEFAULT_TARGETS";
/// JSON: pool name -> list of destinations (`pool:<name>` names one).
pub const TARGET_POOLS: &str = "TARGET_POOLS";
/// US dollars per ENI-hour with sessions, for the coverage report's cost.
pub const PRICE_PER_ENI_HOUR: &str = "PRICE_PER_ENI_HOUR";
/// Seconds a claimed action may stay pending before another invocation (or
/// the sweep) takes it over; set it above the function timeout. The maker of
/// a shared target or filter holds its claim for as long.
pub const CLAIM_LEASE_SECONDS: &str = "CLAIM_LEASE_SECONDS";

/// Actions of one invocation running at once (1-100, default 10): with the
/// reserved concurrency, what bounds the fleet's rate of EC2 calls.
pub const MAX_CONCURRENT_ACTIONS: &str = "MAX_CONCURRENT_ACTIONS";

/// Mutating EC2 calls one process makes per second at most (0.01-1000;
/// absent = unpaced): processes x this is the fleet's write rate.
pub const MUTATING_CALLS_PER_SECOND: &str = "MUTATING_CALLS_PER_SECOND";

/// The value of the ownership tag on everything this deployment creates:
/// unique per deployment (the template passes the stack id), so two stacks
/// in one account never take each other's resources for their own. Absent:
/// derived from the table name, which no two tables of an account share.
pub const OWNER: &str = "OWNER";

/// Comma-separated destinations a create may mirror to (ENI ids, NLB ARNs,
/// GWLB endpoint ids, `tmt-` ids), or `*` for any. Unset or empty: none, so
/// every create is refused (a mirror is a wiretap: closed by default).
pub const ALLOWED_TARGETS: &str = "ALLOWED_TARGETS";

/// Comma-separated VPC or subnet ids whose ENIs may be mirror sources, or
/// `*` for any. Unset or empty: none.
pub const ALLOWED_SOURCES: &str = "ALLOWED_SOURCES";

/// `true`: a create or remove without a `reason` is refused. Default `false`.
pub const REQUIRE_REASON: &str = "REQUIRE_REASON";

/// The longest a requested mirror may run, in minutes (1-525600); one asked
/// for without an end gets this as its end. Unset: no cap.
pub const MAX_MIRROR_MINUTES: &str = "MAX_MIRROR_MINUTES";

/// `true`: the sweep deletes the sessions it reports as unapproved (not made
/// by this deployment, to a target not allowed). Default `false`: reported only.
pub const REMOVE_UNAPPROVED_MIRRORS: &str = "REMOVE_UNAPPROVED_MIRRORS";

/// The value of an allow-list that allows anything: said explicitly.
pub const ANY: &str = "*";

/// Days a finished ledger record (failed, removed, a remove's answer) is
/// kept before DynamoDB's TTL deletes it (1-3650, default 30).
pub const FINISHED_RECORD_DAYS: &str = "FINISHED_RECORD_DAYS";

/// Unused filters and targets one sweep run deletes at most (0-1000,
/// default 5); the rest are reported, and an alarm watches for them.
pub const SWEEP_MAX_DELETIONS: &str = "SWEEP_MAX_DELETIONS";

/// Comma-separated 12-digit ids of the member accounts this deployment (the
/// hub) acts in besides its own. Unset: its own account only.
pub const MEMBER_ACCOUNTS: &str = "MEMBER_ACCOUNTS";
/// The role the hub assumes in each member account (default
/// `TrafficMirroringMember`, as `infra/member.yaml` names it).
pub const MEMBER_ROLE_NAME: &str = "MEMBER_ROLE_NAME";
pub const DEFAULT_MEMBER_ROLE_NAME: &str = "TrafficMirroringMember";
/// The deployment's own account id (the template passes it): a request or
/// event naming it acts in the hub itself. Needed with `MEMBER_ACCOUNTS`.
pub const DEPLOYMENT_ACCOUNT_ID: &str = "DEPLOYMENT_ACCOUNT_ID";

/// The function's own queue (the template's request queue): an
/// organization's scheduled sweep of more accounts than
/// `SWEEP_ACCOUNTS_PER_INVOCATION` (1-100, default 8) puts one message per
/// account there, each swept by an invocation of its own.
pub const SWEEP_QUEUE_URL: &str = "SWEEP_QUEUE_URL";
pub const SWEEP_ACCOUNTS_PER_INVOCATION: &str = "SWEEP_ACCOUNTS_PER_INVOCATION";
pub const DEFAULT_SWEEP_ACCOUNTS_PER_INVOCATION: usize = 8;

/// The ownership value every version before per-deployment owners wrote.
use crate::domain::tags::TAG_MANAGED_BY_LEGACY_VALUE as LEGACY_OWNER;

/// The logic's own defaults (it runs with them when built without a configuration).
pub use crate::mirroring::{DEFAULT_LEASE_SECONDS, DEFAULT_SWEEP_MAX_DELETIONS};
pub const DEFAULT_MAX_CONCURRENT_ACTIONS: usize = 10;
/// A year: a finished record keeps who asked for a mirror and why (the audit trail).
pub const DEFAULT_FINISHED_RECORD_DAYS: u64 = 365;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub table_name: String,
    pub event_bus_name: String,
    pub event_source: String,
    pub default_targets: BTreeMap<String, String>,
    pub target_pools: Pools,
    pub price_per_eni_hour: f64,
    pub claim_lease_seconds: u64,
    pub max_concurrent_actions: usize,
    pub mutating_calls_per_second: Option<f64>,
    pub owner: String,
    pub allowed_targets: AllowList,
    /// VPC or subnet ids.
    pub allowed_sources: AllowList,
    pub finished_record_days: u64,
    pub sweep_max_deletions: usize,
    pub require_reason: bool,
    /// `None`: no cap.
    pub max_mirror_minutes: Option<u64>,
    pub remove_unapproved_mirrors: bool,
    /// The hub's own account and the members it may act in.
    pub accounts: AccountSet,
    pub member_role_name: String,
    pub sweep_queue_url: Option<String>,
    pub sweep_accounts_per_invocation: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {0} {1}")]
pub struct ConfigError(pub &'static str, pub String);

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration of a deployment with only its table named: what
    /// tests and tools start from.
    pub fn for_table(table_name: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| (name == TABLE_NAME).then(|| table_name.to_owned()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let table_name = value(TABLE_NAME).ok_or(ConfigError(TABLE_NAME, "must name the ledger table".into()))?;
        let default_targets: BTreeMap<String, String> = match value(DEFAULT_TARGETS) {
            None => Default::default(),
            Some(json) => serde_json::from_str(&json).map_err(|_| {
                ConfigError(
                    DEFAULT_TARGETS,
                    "must be a JSON object of subnet or VPC id to target".into(),
                )
            })?,
        };
        for (key, target) in &default_targets {
            check_target(DEFAULT_TARGETS, target)?;
            // `<account>:<vpc-or-subnet>` limits an entry to one account.
            let place = match key.split_once(':') {
                Some((account, place)) if AccountId::parse(account).is_some() => place,
                _ => key.as_str(),
            };
            if !is_aws_id(place, "subnet-") && !is_aws_id(place, "vpc-") {
                return Err(ConfigError(
                    DEFAULT_TARGETS,
                    format!("has key {key:?}, which is not a subnet or VPC id (or <account>:<id>)"),
                ));
            }
        }
        let target_pools = pools(value(TARGET_POOLS))?;
        let price_per_eni_hour = match value(PRICE_PER_ENI_HOUR) {
            None => crate::mirroring::DEFAULT_PRICE_PER_ENI_HOUR,
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or(ConfigError(
                    PRICE_PER_ENI_HOUR,
                    "must be a price in US dollars from 0 to 100".into(),
                ))?,
        };
        for target in default_targets.values() {
            if let Some(name) = target.strip_prefix(POOL_PREFIX) {
                if !target_pools.contains_key(name) {
                    return Err(ConfigError(
                        DEFAULT_TARGETS,
                        format!("names {target}, which TARGET_POOLS does not define"),
                    ));
                }
            }
        }
        let claim_lease_seconds =
            ranged(value(CLAIM_LEASE_SECONDS), CLAIM_LEASE_SECONDS, 1..=86_400)?.unwrap_or(DEFAULT_LEASE_SECONDS);
        let max_concurrent_actions = ranged(value(MAX_CONCURRENT_ACTIONS), MAX_CONCURRENT_ACTIONS, 1..=100)?
            .unwrap_or(DEFAULT_MAX_CONCURRENT_ACTIONS);
        let mutating_calls_per_second =
            match value(MUTATING_CALLS_PER_SECOND) {
                None => None,
                Some(text) => Some(text.parse::<f64>().ok().filter(|r| (0.01..=1000.0).contains(r)).ok_or(
                    ConfigError(
                        MUTATING_CALLS_PER_SECOND,
                        "must be a number of calls per second from 0.01 to 1000".into(),
                    ),
                )?),
            };
        let owner = match value(OWNER) {
            Some(owner) => check_owner(owner)?,
            None => format!("table/{table_name}"),
        };
        let allowed_targets = allow_list(value(ALLOWED_TARGETS), ALLOWED_TARGETS, |target| {
            check_target(ALLOWED_TARGETS, target)
        })?;
        let allowed_sources = allow_list(value(ALLOWED_SOURCES), ALLOWED_SOURCES, |id| {
            if is_aws_id(id, "vpc-") || is_aws_id(id, "subnet-") {
                Ok(())
            } else {
                Err(ConfigError(
                    ALLOWED_SOURCES,
                    format!("lists {id:?}, which is not a VPC or subnet id"),
                ))
            }
        })?;
        let require_reason = flag(value(REQUIRE_REASON), REQUIRE_REASON)?;
        let remove_unapproved_mirrors = flag(value(REMOVE_UNAPPROVED_MIRRORS), REMOVE_UNAPPROVED_MIRRORS)?;
        let max_mirror_minutes = ranged(
            value(MAX_MIRROR_MINUTES),
            MAX_MIRROR_MINUTES,
            1..=crate::domain::model::MAX_LIFETIME_MINUTES,
        )?;
        let finished_record_days = ranged(value(FINISHED_RECORD_DAYS), FINISHED_RECORD_DAYS, 1..=3650)?
            .unwrap_or(DEFAULT_FINISHED_RECORD_DAYS);
        let sweep_max_deletions =
            ranged(value(SWEEP_MAX_DELETIONS), SWEEP_MAX_DELETIONS, 0..=1000)?.unwrap_or(DEFAULT_SWEEP_MAX_DELETIONS);
        let accounts = accounts(value(DEPLOYMENT_ACCOUNT_ID), value(MEMBER_ACCOUNTS))?;
        let member_role_name = match value(MEMBER_ROLE_NAME) {
            None => DEFAULT_MEMBER_ROLE_NAME.to_owned(),
            Some(name) if is_role_name(&name) => name,
            Some(_) => {
                return Err(ConfigError(
                    MEMBER_ROLE_NAME,
                    "must be an IAM role name (1-64 of A-Z a-z 0-9 + = , . @ _ -)".into(),
                ))
            }
        };
        let sweep_accounts_per_invocation = ranged(
            value(SWEEP_ACCOUNTS_PER_INVOCATION),
            SWEEP_ACCOUNTS_PER_INVOCATION,
            1..=100,
        )?
        .unwrap_or(DEFAULT_SWEEP_ACCOUNTS_PER_INVOCATION);
        Ok(Self {
            accounts,
            member_role_name,
            sweep_queue_url: value(SWEEP_QUEUE_URL),
            sweep_accounts_per_invocation,
            mutating_calls_per_second,
            claim_lease_seconds,
            max_concurrent_actions,
            default_targets,
            target_pools,
            price_per_eni_hour,
            owner,
            allowed_targets,
            allowed_sources,
            finished_record_days,
            sweep_max_deletions,
            require_reason,
            max_mirror_minutes,
            remove_unapproved_mirrors,
            table_name,
            event_bus_name: value(EVENT_BUS_NAME).unwrap_or_else(|| DEFAULT_EVENT_BUS.to_owned()),
            event_source: value(EVENT_SOURCE).unwrap_or_else(|| DEFAULT_EVENT_SOURCE.to_owned()),
        })
    }
}

/// The hub's own account and its members; a member list needs the hub's id
/// (a request naming the hub's account must not be refused), and the hub is
/// never its own member.
fn accounts(home: Option<String>, members: Option<String>) -> Result<AccountSet, ConfigError> {
    let home = home
        .map(|id| {
            AccountId::parse(&id).ok_or(ConfigError(
                DEPLOYMENT_ACCOUNT_ID,
                format!("{id:?} is not an AWS account id (12 digits)"),
            ))
        })
        .transpose()?;
    let mut listed = std::collections::BTreeSet::new();
    for id in items(members.as_deref().unwrap_or_default()) {
        let account = AccountId::parse(id).ok_or(ConfigError(
            MEMBER_ACCOUNTS,
            format!("lists {id:?}, which is not an AWS account id (12 digits)"),
        ))?;
        if home.as_ref() == Some(&account) {
            continue; // its own account is always allowed, and is no member
        }
        listed.insert(account);
    }
    if !listed.is_empty() && home.is_none() {
        return Err(ConfigError(
            DEPLOYMENT_ACCOUNT_ID,
            "must be set (to the deployment's own account id) when MEMBER_ACCOUNTS is".into(),
        ));
    }
    Ok(AccountSet { home, members: listed })
}

fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|item| !item.is_empty())
}

/// Unset or empty: nothing allowed; `*` alone: anything; else the listed
/// items, each checked. `*` beside other items is refused: it would make
/// them pointless, and is more likely a mistake than a wish.
fn allow_list(
    text: Option<String>,
    name: &'static str,
    check: impl Fn(&str) -> Result<(), ConfigError>,
) -> Result<AllowList, ConfigError> {
    let Some(text) = text else {
        return Ok(AllowList::Nothing);
    };
    let listed: Vec<&str> = items(&text).collect();
    match listed.as_slice() {
        [] => Ok(AllowList::Nothing),
        [ANY] => Ok(AllowList::Any),
        many if many.contains(&ANY) => Err(ConfigError(
            name,
            format!("lists {ANY} beside other items; {ANY} alone allows anything"),
        )),
        many => {
            for item in many {
                check(item)?;
            }
            Ok(AllowList::Only(many.iter().map(|item| (*item).to_owned()).collect()))
        }
    }
}

/// `true` or `false` (any case); unset: `false`.
fn flag(text: Option<String>, name: &'static str) -> Result<bool, ConfigError> {
    match text.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ConfigError(name, "must be true or false".into())),
    }
}

/// A whole number within `range`, by name; `None` when unset.
fn ranged<T>(
    text: Option<String>,
    name: &'static str,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match text {
        None => Ok(None),
        Some(text) => text
            .parse::<T>()
            .ok()
            .filter(|v| range.contains(v))
            .map(Some)
            .ok_or_else(|| {
                ConfigError(
                    name,
                    format!(
                        "must be a whole number from {} to {}, got {text:?}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

/// `TARGET_POOLS`: a JSON object of pool name to a non-empty list of
/// destinations (ENIs, Network Load Balancers, Gateway Load Balancer endpoints).
fn pools(text: Option<String>) -> Result<Pools, ConfigError> {
    let Some(text) = text else {
        return Ok(Pools::new());
    };
    let shape = || {
        ConfigError(
            TARGET_POOLS,
            "must be a JSON object of pool name to a list of destinations".into(),
        )
    };
    let raw: BTreeMap<String, Vec<String>> = serde_json::from_str(&text).map_err(|_| shape())?;
    let mut pools = Pools::new();
    for (name, members) in raw {
        pool_name(&name).map_err(|problem| ConfigError(TARGET_POOLS, problem))?;
        if members.is_empty() {
            return Err(ConfigError(TARGET_POOLS, format!("pool {name:?} has no member")));
        }
        let mut parsed = Vec::new();
        for member in members {
            let target = parse_target(target_field_of(&member), &member)
                .map_err(|problem| ConfigError(TARGET_POOLS, format!("pool {name:?}: {problem}")))?;
            if matches!(target, TargetSpec::Existing(_) | TargetSpec::Pool(_)) {
                return Err(ConfigError(
                    TARGET_POOLS,
                    format!("pool {name:?} lists {member}: a member is an ENI, an NLB or a GWLB endpoint"),
                ));
            }
            parsed.push(target);
        }
        pools.insert(name, parsed);
    }
    Ok(pools)
}

fn check_target(name: &'static str, target: &str) -> Result<(), ConfigError> {
    parse_target(target_field_of(target), target)
        .map(|_| ())
        .map_err(|problem| ConfigError(name, format!("names an invalid target: {problem}")))
}

/// EC2 tag values: at most 256 characters of letters, digits, spaces and `+-=._:/@`.
fn check_owner(owner: String) -> Result<String, ConfigError> {
    let allowed = |c: char| c.is_alphanumeric() || " +-=._:/@".contains(c);
    if owner == LEGACY_OWNER {
        return Err(ConfigError(
            OWNER,
            format!("must not be {LEGACY_OWNER:?}, the value every earlier version shared; name this deployment"),
        ));
    }
    if owner.chars().count() > 256 || !owner.chars().all(allowed) {
        return Err(ConfigError(
            OWNER,
            "must be at most 256 characters of letters, digits, spaces and + - = . _ : / @ (an EC2 tag value)".into(),
        ));
    }
    Ok(owner)
}

#[cfg(test)]
mod tests;
