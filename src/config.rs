//! Settings from the environment, read once at init. A missing or bad value
//! fails init with a message naming the variable.

pub const TABLE_NAME: &str = "TABLE_NAME";
pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
pub const EVENT_SOURCE: &str = "EVENT_SOURCE";
pub const DEFAULT_EVENT_SOURCE: &str = "traffic-mirroring";
pub const DEFAULT_EVENT_BUS: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table_name: String,
    pub event_bus_name: String,
    pub event_source: String,
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
        Ok(Self {
            table_name,
            event_bus_name: value(EVENT_BUS_NAME).unwrap_or_else(|| DEFAULT_EVENT_BUS.to_owned()),
            event_source: value(EVENT_SOURCE).unwrap_or_else(|| DEFAULT_EVENT_SOURCE.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_required_and_the_rest_defaults() {
        assert_eq!(
            Config::from_lookup(|_| None),
            Err(ConfigError(TABLE_NAME, "must name the ledger table"))
        );
        let config = Config::from_lookup(|name| (name == TABLE_NAME).then(|| "ledger".to_owned())).expect("ok");
        assert_eq!(config.event_source, "traffic-mirroring");
        assert_eq!(config.event_bus_name, "default");
    }
}
