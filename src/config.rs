//! Settings from the environment, read once at init. A missing or bad value
//! fails init with a message naming the variable.

pub const TABLE_NAME: &str = "TABLE_NAME";
pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
pub const EVENT_SOURCE: &str = "EVENT_SOURCE";
pub const DEFAULT_EVENT_SOURCE: &str = "traffic-mirroring";
pub const DEFAULT_EVENT_BUS: &str = "default";
/// JSON object of subnet or VPC id -> target ENI, for instances launched
/// without a `traffic-mirroring:target-eni` tag.
pub const DEFAULT_TARGETS: &str = "DEFAULT_TARGETS";
/// Seconds a claimed action may stay pending before another invocation (or
/// the sweep) takes it over; set it above the function timeout.
pub const CLAIM_LEASE_SECONDS: &str = "CLAIM_LEASE_SECONDS";

/// Actions of one invocation running at once (1-100, default 10): with the
/// reserved concurrency, what bounds the fleet's rate of EC2 calls.
pub const MAX_CONCURRENT_ACTIONS: &str = "MAX_CONCURRENT_ACTIONS";

/// Mutating EC2 calls one process makes per second at most (a positive
/// number; absent = unpaced): processes x this is the fleet's write rate.
pub const MUTATING_CALLS_PER_SECOND: &str = "MUTATING_CALLS_PER_SECOND";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub table_name: String,
    pub event_bus_name: String,
    pub event_source: String,
    pub default_targets: std::collections::BTreeMap<String, String>,
    pub claim_lease_seconds: u64,
    pub max_concurrent_actions: usize,
    pub mutating_calls_per_second: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {0} {1}")]
pub struct ConfigError(pub &'static str, pub &'static str);

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let table_name = value(TABLE_NAME).ok_or(ConfigError(TABLE_NAME, "must name the ledger table"))?;
        let default_targets = match value(DEFAULT_TARGETS) {
            None => Default::default(),
            Some(json) => serde_json::from_str(&json)
                .map_err(|_| ConfigError(DEFAULT_TARGETS, "must be a JSON object of subnet or VPC id to ENI id"))?,
        };
        let claim_lease_seconds = match value(CLAIM_LEASE_SECONDS) {
            None => crate::mirroring::DEFAULT_LEASE_SECONDS,
            Some(text) => text
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .ok_or(ConfigError(CLAIM_LEASE_SECONDS, "must be a positive number of seconds"))?,
        };
        let max_concurrent_actions = match value(MAX_CONCURRENT_ACTIONS) {
            None => crate::handler::MAX_CONCURRENT_LANES,
            Some(text) => text.parse().ok().filter(|n| (1..=100).contains(n)).ok_or(ConfigError(
                MAX_CONCURRENT_ACTIONS,
                "must be a whole number from 1 to 100",
            ))?,
        };
        let mutating_calls_per_second =
            match value(MUTATING_CALLS_PER_SECOND) {
                None => None,
                Some(text) => Some(text.parse::<f64>().ok().filter(|r| r.is_finite() && *r > 0.0).ok_or(
                    ConfigError(
                        MUTATING_CALLS_PER_SECOND,
                        "must be a positive number of calls per second",
                    ),
                )?),
            };
        Ok(Self {
            mutating_calls_per_second,
            claim_lease_seconds,
            max_concurrent_actions,
            default_targets,
            table_name,
            event_bus_name: value(EVENT_BUS_NAME).unwrap_or_else(|| DEFAULT_EVENT_BUS.to_owned()),
            event_source: value(EVENT_SOURCE).unwrap_or_else(|| DEFAULT_EVENT_SOURCE.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration with the table named and one more variable set.
    fn with_var(variable: &'static str, value: &'static str) -> Result<Config, ConfigError> {
        Config::from_lookup(move |name| match name {
            TABLE_NAME => Some("ledger".into()),
            other if other == variable => Some(value.into()),
            _ => None,
        })
    }

    #[test]
    fn the_table_is_required_and_the_rest_defaults() {
        assert_eq!(
            Config::from_lookup(|_| None),
            Err(ConfigError(TABLE_NAME, "must name the ledger table"))
        );
        let config = Config::from_lookup(|name| (name == TABLE_NAME).then(|| "ledger".to_owned())).expect("ok");
        assert_eq!(config.event_source, "traffic-mirroring");
        assert_eq!(config.event_bus_name, "default");
        assert!(config.default_targets.is_empty());
        assert_eq!(config.claim_lease_seconds, 900);
        assert_eq!(config.max_concurrent_actions, 10);
    }

    #[test]
    fn concurrent_actions_are_bounded() {
        let with = |n: &'static str| with_var(MAX_CONCURRENT_ACTIONS, n);
        assert_eq!(with("4").map(|c| c.max_concurrent_actions), Ok(4));
        for bad in ["0", "101", "many"] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_mutating_rate_is_positive_or_absent() {
        let with = |rate: &'static str| with_var(MUTATING_CALLS_PER_SECOND, rate);
        assert_eq!(with("1.5").map(|c| c.mutating_calls_per_second), Ok(Some(1.5)));
        assert_eq!(with("").map(|c| c.mutating_calls_per_second), Ok(None));
        for bad in ["0", "-2", "NaN", "fast"] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_claim_lease_must_be_positive_seconds() {
        let with = |lease: &'static str| with_var(CLAIM_LEASE_SECONDS, lease);
        assert_eq!(with("180").map(|c| c.claim_lease_seconds), Ok(180));
        for bad in ["0", "-5", "soon"] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_targets_must_be_a_json_object() {
        let with = |targets: &'static str| with_var(DEFAULT_TARGETS, targets);
        let config = with(r#"{"vpc-1": "eni-0000000b"}"#).expect("valid");
        assert_eq!(
            config.default_targets.get("vpc-1").map(String::as_str),
            Some("eni-0000000b")
        );
        assert_eq!(
            with("[1]").map(|_| ()),
            Err(ConfigError(
                DEFAULT_TARGETS,
                "must be a JSON object of subnet or VPC id to ENI id"
            ))
        );
    }
}
