//! What the policy's turn of a sweep reports: coverage per target, the ENIs
//! it wants and does not have (and why, as a type), and the mirrors it no
//! longer wants.

use std::fmt;

use serde::Serialize;

use super::super::model::{SESSIONS_PER_SOURCE_ENI, SOURCES_PER_ENI_TARGET};
use crate::contract::ActionResult;
use crate::ports::is_throttling;

/// One ENI the policy wants mirrored and is not (yet), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Uncovered {
    pub instance_id: String,
    pub eni: String,
    pub reason: String,
}

/// Coverage of one policy target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetCoverage {
    pub target: String,
    pub wanted: usize,
    /// Mirrored and, as far as could be read, able to deliver.
    pub mirrored: usize,
    pub missing: Vec<Uncovered>,
    /// Mirrored, but the target would not admit the traffic.
    pub not_delivering: Vec<Uncovered>,
}

/// A policy mirror the policy no longer wants, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unwanted {
    pub session_id: String,
    pub instance_id: String,
    pub eni: String,
    pub target: String,
    pub reason: String,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub wanted: usize,
    pub mirrored: usize,
    pub missing: usize,
    pub not_delivering: usize,
    pub targets: Vec<TargetCoverage>,
    pub unwanted: Vec<Unwanted>,
    /// Instances the policy names whose type cannot be a mirror source
    /// (AWS's documented rules, or EC2's refusal): reported here, never tried.
    pub unsupported_instance_type: Vec<UnsupportedSource>,
    /// What this deployment's sessions cost (all of them, requested ones too).
    #[serde(flatten)]
    pub cost: Cost,
}

/// Traffic Mirroring is billed per hour for each ENI with sessions, whether
/// or not the copy is delivered, plus transfer across zones.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// Source ENIs with at least one session of this deployment.
    pub mirrored_enis: usize,
    /// `mirroredEnis` x `PRICE_PER_ENI_HOUR`, in US dollars.
    pub estimated_hourly_cost: f64,
    /// Sessions whose source and target ENI are in different zones (their
    /// mirrored traffic is billed as cross-zone transfer).
    pub cross_zone_sessions: Vec<CrossZone>,
}

/// A session whose copy crosses from one Availability Zone to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CrossZone {
    pub session_id: String,
    pub source_zone: String,
    pub target_zone: String,
}

/// An instance the policy names that cannot be a mirror source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnsupportedSource {
    pub instance_id: String,
    pub instance_type: String,
    pub why: String,
}

/// The policy part of a sweep: what it did and the coverage it leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    pub instances_seen: usize,
    pub created: usize,
    pub removed: usize,
    pub failed: usize,
    /// Left to the next run: the deadline.
    pub deferred: usize,
    /// Whether every create and remove the policy called for was attempted.
    pub complete: bool,
    pub coverage: Coverage,
}

/// What became of a removal the policy wants.
pub(super) enum RemovalDone {
    /// A dry run: it would be removed.
    Planned,
    Removed,
    Failed,
    /// Left to the next run: the deadline was near.
    Deferred,
}

/// Why a wanted ENI is not mirrored; reported in the coverage report's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Missing {
    /// A dry run: this sweep would create it.
    Planned,
    /// Left to the next run: the deadline was near.
    Deferred,
    /// Not tried now, for the reason given (an action in progress, a refusal
    /// only a change of tags mends, a session without a record).
    Waiting(String),
    SessionsFull,
    TargetFull,
    /// EC2 refused the source ENI (`NetworkInterfaceNotSupported`).
    UnsupportedSource(String),
    InProgress,
    Throttled,
    Failed {
        code: String,
        message: String,
    },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Planned => f.write_str("planned: this sweep would create it"),
            Missing::Deferred => f.write_str("waiting for the next run: this one's deadline was near"),
            Missing::Waiting(why) => f.write_str(why),
            Missing::SessionsFull => write!(f, "{SESSIONS_PER_SOURCE_ENI} sessions already on the ENI"),
            Missing::TargetFull => write!(
                f,
                "the target ENI has no room for another source ({SOURCES_PER_ENI_TARGET}, or 100 on the largest sizes)"
            ),
            Missing::UnsupportedSource(why) => write!(f, "EC2 refused it as a source: {why}"),
            Missing::InProgress => f.write_str("an action on it is in progress"),
            Missing::Throttled => f.write_str("throttled: the next run tries again"),
            Missing::Failed { code, message } => write!(f, "failed: {code}: {message}"),
        }
    }
}

/// Why a policy create did not mirror its ENI.
pub(super) fn missing_reason(result: &ActionResult) -> Missing {
    let code = result.error_code.as_deref().unwrap_or_default();
    match code {
        "TrafficMirrorSessionsPerInterfaceLimitExceeded" => Missing::SessionsFull,
        "TrafficMirrorSourcesPerTargetLimitExceeded" => Missing::TargetFull,
        "NetworkInterfaceNotSupported" => Missing::UnsupportedSource(result.error_message.clone()),
        "InvocationDeadlineNear" | "PacedPastDeadline" => Missing::Deferred,
        crate::contract::IN_PROGRESS => Missing::InProgress,
        _ if is_throttling(code) => Missing::Throttled,
        _ => Missing::Failed {
            code: code.to_owned(),
            message: result.error_message.clone(),
        },
    }
}
