//! The domain: what the product talks about, with no behaviour of the
//! application. Ids and how they are read (`ids`), validated requests and
//! the resources they name (`model`), an instance's state and hypervisor
//! (`instance`), every tag name (`tags`), the time
//! (`clock`), the ledger's records and shared keys (`records`) and the
//! allow-lists. Everything imports it; it imports nothing
//! of the application but the wire contract's requester types.

pub mod account;
pub mod clock;
pub mod ids;
pub mod instance;
pub mod model;
pub mod records;
pub mod tags;

/// Named pools of destinations (`TARGET_POOLS`): a create to `pool:<name>`
/// is placed on one of its members. Each member is an ENI, a Network Load
/// Balancer or a Gateway Load Balancer endpoint (not a pool, not an
/// existing `tmt-` target, whose destination the pool could not weigh).
pub type Pools = std::collections::BTreeMap<String, Vec<model::TargetSpec>>;

/// One allow-list setting (`ALLOWED_TARGETS`, `ALLOWED_SOURCES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowList {
    /// Unset or empty.
    #[default]
    Nothing,
    /// `*`, said explicitly.
    Any,
    Only(std::collections::BTreeSet<String>),
}

impl AllowList {
    pub fn allows(&self, item: &str) -> bool {
        match self {
            AllowList::Nothing => false,
            AllowList::Any => true,
            AllowList::Only(items) => items.contains(item),
        }
    }
}
