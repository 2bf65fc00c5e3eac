//! Every tag this product reads or writes, each named once. What it writes
//! marks what it made (ownership, action, reservation, instance, rule set,
//! who asked and why); what it reads on instances is the launch policy.

// --- on what this deployment makes --------------------------------------------

/// Holds the deployment's owner value (`Config::owner`); the IAM policy keys
/// creates and deletes on it.
pub const TAG_MANAGED_BY: &str = "traffic-mirroring:managed-by";
/// What every version before per-deployment owners wrote in `TAG_MANAGED_BY`:
/// such resources are taken over only when this deployment's ledger knows them.
pub const TAG_MANAGED_BY_LEGACY_VALUE: &str = "traffic-mirroring";
pub const TAG_ACTION_ID: &str = "traffic-mirroring:action-id";
/// On what a create makes, and on an instance: the reservation it belongs to.
pub const TAG_RESERVATION_ID: &str = "traffic-mirroring:reservation-id";
/// On a session made for an instance launch: the instance, so a remove by
/// instance finds it in EC2 even before the ledger's index has caught up.
pub const TAG_INSTANCE_ID: &str = "traffic-mirroring:instance-id";
/// On a shared filter: the key of the rule set it holds (`model::rule_set_key`).
pub const TAG_RULE_SET: &str = "traffic-mirroring:rule-set";
/// Who asked for what a create made, and why (cut to EC2's tag limits).
pub const TAG_REQUESTED_BY: &str = "traffic-mirroring:requested-by";
pub const TAG_REASON: &str = "traffic-mirroring:reason";
/// EC2's longest tag value.
pub const TAG_VALUE_CHARS: usize = 256;

// --- on instances: the launch policy --------------------------------------------

/// Any kind of target: `eni-…`, an NLB ARN, `vpce-…` or `tmt-…`.
pub const TAG_TARGET: &str = "traffic-mirroring:target";
/// The older spelling, an ENI target only.
pub const TAG_TARGET_ENI: &str = "traffic-mirroring:target-eni";
/// An existing filter to use instead of a preset.
pub const TAG_FILTER_ID: &str = "traffic-mirroring:filter-id";
pub const TAG_SESSION_NUMBER: &str = "traffic-mirroring:session-number";
pub const TAG_PACKET_LENGTH: &str = "traffic-mirroring:packet-length";
pub const TAG_FILTER_PRESET: &str = "traffic-mirroring:filter-preset";
/// The opt-out tag: `true` keeps an instance unmirrored whatever else says.
pub const TAG_EXCLUDE: &str = "traffic-mirroring:exclude";
