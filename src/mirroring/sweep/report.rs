//! What a sweep reports: each finding and what became of it, and the whole
//! run's figures, the policy's coverage, expiries and unapproved sessions.

use std::fmt;

use serde::Serialize;

use super::super::expiry::ExpiryReport;
use super::super::fleet::PolicyReport;
use super::super::watch::Unapproved;

/// One thing the sweep found, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: &'static str,
    /// The resource or ledger entry concerned.
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// The rule that applied, in words.
    pub rule: &'static str,
    pub outcome: Outcome,
}

/// What became of a finding; reported as text (`planned`, `repaired`,
/// `adopted: …`, `reported: …`, `deferred: …`, `skipped: …`, `failed: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A dry run: it would be repaired.
    Planned,
    Repaired,
    /// Recorded again from its tags, with what could not be joined or claimed.
    Adopted(Vec<String>),
    /// Left alone on purpose, for the reason given.
    Reported(String),
    /// Left to the next run: the deletion cap, or the deadline.
    Deferred(String),
    /// Nothing to do any more, for the reason given.
    Skipped(String),
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Planned => f.write_str("planned"),
            Outcome::Repaired => f.write_str("repaired"),
            Outcome::Adopted(notes) if notes.is_empty() => f.write_str("adopted: recorded again from its tags"),
            Outcome::Adopted(notes) => write!(f, "adopted: recorded again from its tags ({})", notes.join("; ")),
            Outcome::Reported(why) => write!(f, "reported: {why}"),
            Outcome::Deferred(why) => write!(f, "deferred: {why}"),
            Outcome::Skipped(why) => write!(f, "skipped: {why}"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub dry_run: bool,
    pub sessions_seen: usize,
    pub filters_seen: usize,
    pub targets_seen: usize,
    pub ledger_entries_seen: usize,
    pub legacy_seen: usize,
    pub findings: Vec<Finding>,
    pub repaired: usize,
    pub failed: usize,
    /// Repairs left to the next run: the deletion cap, or the deadline.
    pub deferred: usize,
    /// Whether every planned repair was attempted.
    pub complete: bool,
    /// The launch policy as desired state: what it made and removed, and
    /// the coverage it leaves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_error: Option<String>,
    /// Requested mirrors whose end had come: removed (every sweep also expires).
    pub expiry: ExpiryReport,
    /// Sessions in the account not made by this deployment, to targets it
    /// does not allow.
    pub unapproved_mirrors: Vec<Unapproved>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unapproved_error: Option<String>,
}
