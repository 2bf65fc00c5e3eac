//! The ledger's records as the logic reads and writes them: an action, its
//! status, what it made, who asked and why; and the keys of shared resources.

use serde::{Deserialize, Serialize};

use crate::contract::ActionResult;

/// Where a ledger record stands. A record moves pending → active → removing →
/// removed on success, pending → failed after a clean rollback, and pending →
/// rollback_incomplete when even the rollback could not finish (the record then
/// lists what is left, for a later retry or sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    Pending,
    Active,
    Failed,
    RollbackIncomplete,
    /// A remove has started taking the mirror down; what the record names
    /// may be partly gone. A retried remove or the sweep finishes it.
    Removing,
    Removed,
    /// A remove action that finished; kept so a replay returns the same result.
    Done,
}

impl RecordStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Pending => "pending",
            RecordStatus::Active => "active",
            RecordStatus::Failed => "failed",
            RecordStatus::RollbackIncomplete => "rollback_incomplete",
            RecordStatus::Removing => "removing",
            RecordStatus::Removed => "removed",
            RecordStatus::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Active,
            Self::Failed,
            Self::RollbackIncomplete,
            Self::Removing,
            Self::Removed,
            Self::Done,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the EC2 resources named by the record may exist.
    pub fn holds_resources(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Active | Self::RollbackIncomplete | Self::Removing
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Create,
    Remove,
}

/// One ledger item: an action, and for a create everything made for its session.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LedgerRecord {
    pub action_id: String,
    pub kind: Option<ActionKind>,
    pub status: Option<RecordStatus>,
    /// Bumped after each rollback so a retry derives fresh client tokens.
    pub attempt: u32,
    /// How many times the item has been written: a write that replaces the
    /// record is conditional on the version it was read at (0: never
    /// versioned), so two writers cannot silently overwrite each other.
    pub version: u64,
    /// The member account the action acted in; `None`: the deployment's own
    /// (every record written before accounts were recorded is).
    pub account: Option<crate::domain::account::AccountId>,
    pub source_eni: Option<String>,
    /// Set for ENI targets only: it keys the index a remove by target ENI reads.
    pub target_eni: Option<String>,
    /// The claim item the action joined for its target (an ENI, an NLB ARN or
    /// a GWLB endpoint id); `None` for a target the caller named by id.
    pub target_key: Option<String>,
    /// For a create to a pool: the pool (`pool:<name>`), and why its member
    /// (`target_key`) was chosen.
    pub pool: Option<String>,
    pub placed_because: Option<String>,
    pub target_id: Option<String>,
    pub target_created: bool,
    /// The claim item of the shared filter the action uses (its rule set's
    /// key); `None` for a filter the caller named by id.
    pub filter_key: Option<String>,
    pub filter_id: Option<String>,
    pub rule_ids: Vec<String>,
    pub session_id: Option<String>,
    pub session_number: Option<u16>,
    pub virtual_network_id: Option<i32>,
    pub reservation_id: Option<String>,
    /// Set when the mirror was made for an instance launch.
    pub instance_id: Option<String>,
    pub result: Option<ActionResult>,
    /// Who asked for the action, and why: kept until the record's TTL.
    pub requested_by: Option<crate::contract::Requester>,
    pub reason: Option<String>,
    /// When a requested mirror ends (Unix seconds); never for policy mirrors.
    /// Not `expiresAt`, which is DynamoDB's TTL of a finished record.
    pub ends_at: Option<u64>,
    /// Unix seconds; the adapter also stores ISO-8601 copies for people.
    pub created_at: u64,
    pub updated_at: u64,
}

impl LedgerRecord {
    /// Marks the record failed with nothing made, for the action to run
    /// again: a new attempt number, so that its retry derives fresh client
    /// tokens (EC2 remembers tokens even of deleted resources).
    pub fn fail_for_retry(&mut self) {
        self.status = Some(RecordStatus::Failed);
        self.attempt += 1;
        self.session_id = None;
        self.filter_id = None;
        self.target_id = None;
        self.target_created = false;
        self.rule_ids.clear();
    }
}

/// Resources that many sessions share and that the ledger counts users of:
/// the target of a destination (ENI, NLB, GWLB endpoint) and the filter of a
/// rule set. One claim item per key, changed only by conditional writes, so
/// processes running at once agree on a single resource and on its users.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SharedKey {
    /// Named by its destination: an ENI id, an NLB ARN or a GWLB endpoint id.
    Target(String),
    /// Named by its rule set's key (`model::rule_set_key`).
    Filter(String),
}

impl SharedKey {
    pub fn name(&self) -> &str {
        match self {
            SharedKey::Target(name) | SharedKey::Filter(name) => name,
        }
    }

    pub fn noun(&self) -> &'static str {
        match self {
            SharedKey::Target(_) => "mirror target",
            SharedKey::Filter(_) => "filter",
        }
    }
}
