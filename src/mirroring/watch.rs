//! Every wiretap in the account seen. A tool that owns mirroring for an
//! account is the one place that can say which sessions nobody approved:
//! - the sweep lists every session in the account, ours or not, and reports
//!   each one this deployment did not make whose target it does not allow
//!   (`TrafficMirroringUnapprovedFound`); with `REMOVE_UNAPPROVED_MIRRORS` it
//!   deletes those, and only those;
//! - a session, filter or target of ours deleted by someone else (CloudTrail's
//!   `DeleteTrafficMirror*`) is announced at once (`TrafficMirroringTampered`)
//!   with who did it, after EC2 confirms it is gone: a forged event changes
//!   nothing. The `App` then makes a policy mirror again; a requested one is
//!   reported, not remade (the sweep closes its record).
//!
//! A service of its own: it holds only the ports it reads and writes
//! (sessions, targets and filters in EC2; records and the whole-table read
//! in the ledger; completion events), so a test gives it just those.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use std::sync::Arc;

use super::{now_seconds, ownership_of, Ownership};
use crate::announce::Announcer;
use crate::contract::{ActionResult, TAMPERING, UNAPPROVED};
use crate::domain::AllowList;
use crate::metrics::{self, Counter};
use crate::ports::{
    ActionKind, ActionRecords, Deleted, Filters, LedgerQuery, LedgerRecord, MirrorSession, MirrorTarget, RecordStatus,
    Scans, SessionQuery, Sessions, Targets,
};

/// The account's sessions and targets, as one listing: the sweep's, which
/// the watch judges the ones not ours from.
pub struct Account {
    pub sessions: Vec<MirrorSession>,
    pub targets: Vec<MirrorTarget>,
}

/// The watch over every session of the account, and over deletions of ours.
pub struct Watch {
    pub sessions: Arc<dyn Sessions>,
    pub targets: Arc<dyn Targets>,
    pub filters: Arc<dyn Filters>,
    pub records: Arc<dyn ActionRecords>,
    pub scans: Arc<dyn Scans>,
    pub announcer: Arc<Announcer>,
    /// This deployment's value of `TAG_MANAGED_BY`.
    pub owner: String,
    /// The destinations this deployment allows (`ALLOWED_TARGETS`).
    pub allowed_targets: AllowList,
    /// `REMOVE_UNAPPROVED_MIRRORS`.
    pub remove_unapproved: bool,
}

/// A session in the account that this deployment did not make, to a target
/// it does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unapproved {
    pub session_id: String,
    pub source_eni: String,
    pub target_id: String,
    /// The target's ENI, NLB or endpoint, when EC2 could say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The session's own tags, which may say whose it is.
    pub tags: BTreeMap<String, String>,
    pub outcome: UnapprovedOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnapprovedOutcome {
    /// Left in place (`REMOVE_UNAPPROVED_MIRRORS` is off, or a dry run).
    Reported,
    Removed,
    RemoveFailed(String),
    /// Made by another deployment of this product (its owner value): left to
    /// that deployment, whatever this one allows, so that two deployments
    /// with different allow-lists never delete each other's mirrors.
    LeftToItsDeployment(String),
}

/// Which of our resources a CloudTrail event says was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    Session,
    Filter,
    Target,
}

impl ResourceKind {
    pub fn noun(self) -> &'static str {
        match self {
            ResourceKind::Session => "session",
            ResourceKind::Filter => "filter",
            ResourceKind::Target => "target",
        }
    }
}

/// What a deletion event turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum TamperVerdict {
    /// Not a resource this deployment holds (someone else's, or one we
    /// removed ourselves): nothing to do.
    NotOurs,
    /// EC2 still has it: a forged or failed call; nothing to do.
    StillThere,
    /// Ours, deleted by someone else: announced. `instances` are the
    /// instances of policy mirrors it ended, to mirror again at once.
    Tampered { instances: Vec<String> },
    /// EC2 or the ledger could not be asked; the event should come again.
    Unknown(Box<ActionResult>),
}

impl Watch {
    fn ownership(&self, tags: &crate::ports::Tags) -> Ownership {
        ownership_of(&self.owner, tags)
    }

    /// Every session of the account that this deployment did not make and
    /// whose target it does not allow; deleted when the deployment says so
    /// (never in a dry run), and announced.
    pub async fn unapproved(&self, dry_run: bool) -> Result<Vec<Unapproved>, String> {
        let (sessions, targets) = tokio::join!(self.sessions.sessions(&SessionQuery::All), self.targets.all_targets());
        let account = Account {
            sessions: sessions.map_err(|e| format!("could not list the account's sessions: {e}"))?,
            targets: targets.map_err(|e| format!("could not list the account's targets: {e}"))?,
        };
        let recorded = self.recorded_sessions().await?;
        let recorded: BTreeSet<&str> = recorded.iter().map(String::as_str).collect();
        self.unapproved_in(&account, &recorded, dry_run).await
    }

    /// The same, judged from a listing the caller already made (the sweep's).
    /// `recorded`: the sessions our ledger holds, which are ours even when an
    /// earlier version tagged them.
    pub async fn unapproved_in(
        &self,
        account: &Account,
        recorded: &BTreeSet<&str>,
        dry_run: bool,
    ) -> Result<Vec<Unapproved>, String> {
        let foreign: Vec<&MirrorSession> = account
            .sessions
            .iter()
            .filter(|s| match self.ownership(&s.tags) {
                Ownership::Ours => false,
                Ownership::Legacy => !recorded.contains(s.id.as_str()),
                _ => true,
            })
            .collect();
        let listed: BTreeMap<&str, &MirrorTarget> = account.targets.iter().map(|t| (t.id.as_str(), t)).collect();
        // A target the listing lacks (another account's, shared with this
        // one) is read once, however many sessions use it.
        let target_ids: BTreeSet<&str> = foreign.iter().map(|s| s.target_id.as_str()).collect();
        let mut destinations = BTreeMap::new();
        for id in target_ids {
            if let Some(target) = listed.get(id) {
                destinations.insert(id.to_owned(), target.claim_name().map(str::to_owned));
                continue;
            }
            let destination = match self.targets.target(id).await {
                Ok(Some(target)) => target.claim_name().map(str::to_owned),
                Ok(None) => None,
                Err(err) => return Err(format!("could not read traffic mirror target {id}: {err}")),
            };
            destinations.insert(id.to_owned(), destination);
        }
        let mut found = Vec::new();
        for session in foreign {
            let destination = destinations.get(&session.target_id).cloned().flatten();
            let allowed = self.allowed_targets.allows(&session.target_id)
                || destination.as_deref().is_some_and(|d| self.allowed_targets.allows(d));
            if allowed {
                continue;
            }
            let outcome = if let Ownership::Foreign(owner) = self.ownership(&session.tags) {
                UnapprovedOutcome::LeftToItsDeployment(owner)
            } else if dry_run || !self.remove_unapproved {
                UnapprovedOutcome::Reported
            } else {
                match self.sessions.delete_session(&session.id).await {
                    Ok(Deleted::Now | Deleted::AlreadyGone) => UnapprovedOutcome::Removed,
                    Err(err) => UnapprovedOutcome::RemoveFailed(err.to_string()),
                }
            };
            found.push(Unapproved {
                session_id: session.id.clone(),
                source_eni: session.source_eni.clone(),
                target_id: session.target_id.clone(),
                destination,
                tags: session.tags.iter().cloned().collect(),
                outcome,
            });
        }
        if found.is_empty() {
            return Ok(found);
        }
        metrics::add(Counter::UnapprovedMirrors, found.len() as u64);
        warn!(
            unapproved = found.len(),
            sessions = ?found.iter().map(|u| u.session_id.as_str()).collect::<Vec<_>>(),
            "sessions this deployment did not make mirror to targets it does not allow"
        );
        if !dry_run {
            let removed = found.iter().filter(|u| u.outcome == UnapprovedOutcome::Removed).count();
            let announcement = ActionResult {
                action_id: format!("unapproved-{}", now_seconds()),
                action_type: UNAPPROVED.into(),
                success: true,
                info_message: format!(
                    "{} session{} not made by this deployment mirror to targets it does not allow; {removed} removed",
                    found.len(),
                    if found.len() == 1 { "" } else { "s" }
                ),
                details: Some(json!({ "unapprovedMirrors": found })),
                ..ActionResult::default()
            };
            self.announcer.announce(&announcement).await;
        }
        Ok(found)
    }

    /// Judges a CloudTrail deletion of a traffic mirror resource: announced
    /// only when the resource is one this deployment holds and EC2 confirms
    /// it is gone. `actor` is the event's `userIdentity.arn`.
    pub async fn check_tampering(&self, kind: ResourceKind, id: &str, actor: &str) -> TamperVerdict {
        let unknown = |what: String| {
            TamperVerdict::Unknown(Box::new(ActionResult::failure(
                &format!("tampering-{id}"),
                TAMPERING,
                "TamperCheckFailed",
                format!("could not check the deleted {} {id}: {what}", kind.noun()),
                true,
            )))
        };
        let holders = match self.holders_of(kind, id).await {
            Ok(holders) => holders,
            Err(err) => return unknown(err),
        };
        if holders.is_empty() {
            info!(
                kind = kind.noun(),
                id, actor, "a deletion of something this deployment does not hold"
            );
            return TamperVerdict::NotOurs;
        }
        let exists = match kind {
            ResourceKind::Session => self
                .sessions
                .sessions(&SessionQuery::Id(id.to_owned()))
                .await
                .map(|found| !found.is_empty()),
            ResourceKind::Filter => self.filters.filter(id).await.map(|f| f.is_some()),
            ResourceKind::Target => self.targets.target(id).await.map(|t| t.is_some()),
        };
        match exists {
            Ok(true) => {
                warn!(
                    kind = kind.noun(),
                    id, actor, "a deletion event for a resource EC2 still has: ignored"
                );
                return TamperVerdict::StillThere;
            }
            Ok(false) => {}
            Err(err) => return unknown(err.to_string()),
        }
        metrics::add(Counter::TamperedResources, 1);
        // A policy mirror is made again at once; a requested one is reported.
        let instances: Vec<String> = holders
            .iter()
            .filter(|_| kind == ResourceKind::Session)
            .filter_map(|r| r.instance_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mirrors: Vec<serde_json::Value> = holders
            .iter()
            .map(|r| {
                json!({"actionId": r.action_id, "sessionId": r.session_id, "sourceEni": r.source_eni,
                       "instanceId": r.instance_id, "requestedBy": r.requested_by.as_ref().map(|q| &q.principal),
                       "reason": r.reason, "policyMirror": r.instance_id.is_some()})
            })
            .collect();
        warn!(
            kind = kind.noun(),
            id,
            deleted_by = actor,
            mirrors = holders.len(),
            "a resource of ours was deleted by someone else"
        );
        let remade = if instances.is_empty() {
            "a requested mirror is not made again; the sweep closes its record".to_owned()
        } else {
            format!("the policy mirrors of {} are made again", instances.join(", "))
        };
        let announcement = ActionResult {
            action_id: format!("tampering-{id}"),
            action_type: TAMPERING.into(),
            success: true,
            info_message: format!(
                "{} {id} of this deployment was deleted by {actor}; {remade}",
                kind.noun()
            ),
            details: Some(json!({"resource": {"kind": kind, "id": id}, "deletedBy": actor, "mirrors": mirrors})),
            ..ActionResult::default()
        };
        self.announcer.announce(&announcement).await;
        TamperVerdict::Tampered { instances }
    }

    /// The live records that hold a resource: for a session, the creates
    /// that made it (found by the index, read again consistently); for a
    /// filter or target, the creates that use it or the claim that names it.
    /// The session ids our ledger holds, read once.
    async fn recorded_sessions(&self) -> Result<Vec<String>, String> {
        let contents = self
            .scans
            .contents()
            .await
            .map_err(|e| format!("could not read the ledger: {e}"))?;
        Ok(contents.records.into_iter().filter_map(|r| r.session_id).collect())
    }

    async fn holders_of(&self, kind: ResourceKind, id: &str) -> Result<Vec<LedgerRecord>, String> {
        let live = |r: &LedgerRecord| {
            r.kind == Some(ActionKind::Create)
                && r.status
                    .is_some_and(|s| s.holds_resources() && s != RecordStatus::Removing)
        };
        if kind == ResourceKind::Session {
            let found = self
                .records
                .find(&LedgerQuery::Session(id.to_owned()))
                .await
                .map_err(|e| e.to_string())?;
            let mut holders = Vec::new();
            for record in found {
                if let Some(fresh) = self.records.get(&record.action_id).await.map_err(|e| e.to_string())? {
                    if live(&fresh) && fresh.session_id.as_deref() == Some(id) {
                        holders.push(fresh);
                    }
                }
            }
            return Ok(holders);
        }
        // Filters and targets are keyed by what they serve, not by id: the
        // whole ledger is read (a rare event, and the sweep reads as much).
        let contents = self.scans.contents().await.map_err(|e| e.to_string())?;
        let uses = |r: &LedgerRecord| match kind {
            ResourceKind::Filter => r.filter_id.as_deref() == Some(id),
            _ => r.target_id.as_deref() == Some(id),
        };
        let mut holders: Vec<LedgerRecord> = contents.records.into_iter().filter(|r| live(r) && uses(r)).collect();
        if holders.is_empty() {
            // A claimed filter or target that no mirror uses right now is still ours.
            if let Some(claim) = contents.shared.iter().find(|c| c.resource_id.as_deref() == Some(id)) {
                holders.push(LedgerRecord {
                    action_id: format!("claim:{}", claim.key.name()),
                    kind: Some(ActionKind::Create),
                    ..LedgerRecord::default()
                });
            }
        }
        Ok(holders)
    }
}
