//! The reconcile sweep: compares what EC2 holds under our ownership tag with
//! what the ledger says, and repairs the difference. It finds
//! - creates whose invocation died (pending past their lease) or whose
//!   rollback did not finish: undone, so the action can simply be retried;
//! - active mirrors whose session is gone (its ENI was deleted): closed, their
//!   filter deleted and their claims released;
//! - sessions and filters of ours that no ledger entry knows: deleted;
//! - targets and shared filters of ours that no session and no claim uses:
//!   deleted;
//! - claims held by actions that no longer hold anything: released.
//!
//! EC2 is listed before the ledger is read, so anything made by a create that
//! started after the listing is not seen at all, and anything it made before
//! is covered by its pending record, which the ledger read then shows.
//! With `dry_run` it only reports.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tracing::{info, warn};

use super::release::{Fate, Release};
use super::{is_ours, now_seconds, Mirroring, TAG_ACTION_ID, TAG_MANAGED_BY, TAG_MANAGED_BY_VALUE};
use crate::contract::{ActionResult, SWEEP};
use crate::ports::{
    ActionKind, Claim, LedgerContents, LedgerRecord, MirrorFilter, MirrorSession, MirrorTarget, RecordStatus,
    SessionQuery, SharedKey,
};

/// One thing the sweep found, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: &'static str,
    /// The resource or ledger entry concerned.
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// `planned` (dry run), `repaired`, `skipped: …` or `failed: …`.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub dry_run: bool,
    pub sessions_seen: usize,
    pub filters_seen: usize,
    pub targets_seen: usize,
    pub ledger_entries_seen: usize,
    pub findings: Vec<Finding>,
    pub repaired: usize,
    pub failed: usize,
}

/// A repair the sweep plans; each names what it found.
#[derive(Debug, Clone, PartialEq)]
enum Repair {
    Abandoned(Box<LedgerRecord>),
    Vanished(Box<LedgerRecord>),
    /// A remove that stopped half-way through this mirror.
    HalfRemoved(Box<LedgerRecord>),
    OrphanSession(MirrorSession),
    /// A filter of ours nothing uses: its id, the action that made it, and
    /// the claim item still naming it, if one does.
    OrphanFilter(String, Option<String>, Option<SharedKey>),
    StaleNumber {
        source_eni: String,
        number: u16,
        action_id: String,
    },
    StaleUser {
        key: SharedKey,
        action_id: String,
    },
    UnusedTarget {
        claim_name: Option<String>,
        target_id: String,
    },
}

impl Repair {
    fn finding(&self) -> Finding {
        let (kind, resource, action_id) = match self {
            Repair::Abandoned(r) => (
                "abandoned_action",
                format!("action {}", r.action_id),
                Some(&r.action_id),
            ),
            Repair::Vanished(r) => (
                "vanished_session",
                r.session_id.clone().unwrap_or_default(),
                Some(&r.action_id),
            ),
            Repair::HalfRemoved(r) => (
                "half_removed",
                r.session_id.clone().unwrap_or_default(),
                Some(&r.action_id),
            ),
            Repair::OrphanSession(s) => ("orphan_session", s.id.clone(), None),
            Repair::OrphanFilter(id, ..) => ("orphan_filter", id.clone(), None),
            Repair::StaleNumber {
                source_eni,
                number,
                action_id,
            } => ("stale_number_claim", format!("{source_eni} #{number}"), Some(action_id)),
            Repair::StaleUser {
                key: key @ SharedKey::Target(_),
                action_id,
            } => ("stale_target_claim", key.name().to_owned(), Some(action_id)),
            Repair::StaleUser {
                key: key @ SharedKey::Filter(_),
                action_id,
            } => ("stale_filter_claim", key.name().to_owned(), Some(action_id)),
            Repair::UnusedTarget { target_id, .. } => ("unused_target", target_id.clone(), None),
        };
        let action_id = action_id.cloned().or_else(|| match self {
            Repair::OrphanSession(s) => s.tag(TAG_ACTION_ID).map(str::to_owned),
            Repair::OrphanFilter(_, action, _) => action.clone(),
            _ => None,
        });
        Finding {
            kind,
            resource,
            action_id,
            outcome: "planned".into(),
        }
    }
}

/// What EC2 holds under our tag.
struct Owned {
    sessions: Vec<MirrorSession>,
    filters: Vec<MirrorFilter>,
    targets: Vec<MirrorTarget>,
}

impl Mirroring {
    pub async fn sweep(&self, dry_run: bool) -> ActionResult {
        let action_id = format!("sweep-{}", now_seconds());
        match self.sweep_report(dry_run).await {
            Ok(report) => {
                info!(
                    dry_run,
                    findings = report.findings.len(),
                    failed = report.failed,
                    "sweep finished"
                );
                let summary = format!(
                    "sweep{}: {} finding{}, {} repaired, {} failed",
                    if dry_run { " (dry run)" } else { "" },
                    report.findings.len(),
                    if report.findings.len() == 1 { "" } else { "s" },
                    report.repaired,
                    report.failed
                );
                let mut result = if report.failed == 0 {
                    ActionResult {
                        action_id,
                        action_type: SWEEP.into(),
                        success: true,
                        info_message: summary,
                        ..ActionResult::default()
                    }
                } else {
                    let mut failure = ActionResult::failure(&action_id, SWEEP, "SweepIncomplete", summary, true);
                    failure.info_message = "the next sweep tries the failed repairs again".into();
                    failure
                };
                result.sweep = serde_json::to_value(&report).ok();
                result
            }
            Err(failure) => failure,
        }
    }

    async fn sweep_report(&self, dry_run: bool) -> Result<SweepReport, ActionResult> {
        let fail = |what: &str, err: String| {
            ActionResult::failure(
                "sweep",
                SWEEP,
                "SweepFailed",
                format!("could not list {what}: {err}; nothing was changed"),
                true,
            )
        };
        // EC2 first, then the ledger: see the module comment.
        let ours = SessionQuery::Tag(TAG_MANAGED_BY.into(), TAG_MANAGED_BY_VALUE.into());
        let (sessions, filters, targets) = tokio::join!(
            self.ec2.sessions(&ours),
            self.ec2.filters_tagged(TAG_MANAGED_BY, TAG_MANAGED_BY_VALUE),
            self.ec2.targets_tagged(TAG_MANAGED_BY, TAG_MANAGED_BY_VALUE),
        );
        let owned = Owned {
            sessions: sessions.map_err(|e| fail("our sessions", e.to_string()))?,
            filters: filters.map_err(|e| fail("our filters", e.to_string()))?,
            targets: targets.map_err(|e| fail("our targets", e.to_string()))?,
        };
        let contents = self
            .ledger
            .contents()
            .await
            .map_err(|e| fail("the ledger", e.to_string()))?;
        let repairs = self.plan(&owned, &contents, now_seconds()).await;
        let mut report = SweepReport {
            dry_run,
            sessions_seen: owned.sessions.len(),
            filters_seen: owned.filters.len(),
            targets_seen: owned.targets.len(),
            ledger_entries_seen: contents.records.len() + contents.shared.len() + contents.sources.len(),
            ..SweepReport::default()
        };
        for repair in repairs {
            let mut finding = repair.finding();
            if !dry_run {
                finding.outcome = match self.repair(&repair, &owned, &contents).await {
                    Ok(outcome) => {
                        report.repaired += usize::from(outcome == "repaired");
                        outcome
                    }
                    Err(err) => {
                        warn!(kind = finding.kind, resource = %finding.resource, error = %err, "sweep repair failed");
                        report.failed += 1;
                        format!("failed: {err}")
                    }
                };
            }
            report.findings.push(finding);
        }
        Ok(report)
    }

    /// Works out the repairs from one listing of EC2 and one read of the ledger.
    async fn plan(&self, owned: &Owned, contents: &LedgerContents, now: u64) -> Vec<Repair> {
        let records: BTreeMap<&str, &LedgerRecord> =
            contents.records.iter().map(|r| (r.action_id.as_str(), r)).collect();
        let in_flight = |r: &LedgerRecord| {
            r.status == Some(RecordStatus::Pending) && r.updated_at.saturating_add(self.lease_seconds) > now
        };
        let abandoned = |r: &LedgerRecord| {
            r.kind == Some(ActionKind::Create)
                && match r.status {
                    Some(RecordStatus::Pending) => !in_flight(r),
                    Some(RecordStatus::RollbackIncomplete) => true,
                    _ => false,
                }
        };
        // Actions whose claims and resources are theirs to keep (or to undo, for the abandoned).
        let keeps = |action: &str| {
            records.get(action).is_some_and(|r| {
                matches!(r.status, Some(RecordStatus::Active | RecordStatus::Removing)) || in_flight(r) || abandoned(r)
            })
        };
        let mut repairs = Vec::new();
        for record in contents.records.iter().filter(|r| abandoned(r)) {
            repairs.push(Repair::Abandoned(Box::new(record.clone())));
        }
        // A remove in progress right now would finish these too; both are idempotent.
        for record in &contents.records {
            if record.kind == Some(ActionKind::Create) && record.status == Some(RecordStatus::Removing) {
                repairs.push(Repair::HalfRemoved(Box::new(record.clone())));
            }
        }

        let session_ids: BTreeSet<&str> = owned.sessions.iter().map(|s| s.id.as_str()).collect();
        for record in &contents.records {
            let active_create = record.kind == Some(ActionKind::Create) && record.status == Some(RecordStatus::Active);
            let Some(session_id) = record.session_id.as_deref().filter(|_| active_create) else {
                continue;
            };
            // A session created after our listing is not in it: ask for it by id.
            if !session_ids.contains(session_id)
                && matches!(self.ec2.sessions(&SessionQuery::Id(session_id.into())).await, Ok(found) if found.is_empty())
            {
                repairs.push(Repair::Vanished(Box::new(record.clone())));
            }
        }

        let known_sessions: BTreeSet<&str> = contents
            .records
            .iter()
            .filter(|r| matches!(r.status, Some(RecordStatus::Active | RecordStatus::Removing)))
            .filter_map(|r| r.session_id.as_deref())
            .collect();
        let (orphan_sessions, kept_sessions): (Vec<&MirrorSession>, Vec<&MirrorSession>) =
            owned.sessions.iter().partition(|session| {
                let action = session.tag(TAG_ACTION_ID).unwrap_or_default();
                !known_sessions.contains(session.id.as_str()) && !keeps(action)
            });
        repairs.extend(orphan_sessions.into_iter().cloned().map(Repair::OrphanSession));
        // Shared resources that a kept action uses or that someone is making.
        let mut claimed = BTreeSet::new();
        let mut claim_of = BTreeMap::new();
        for shared in &contents.shared {
            let kept_users = shared.users.iter().filter(|u| keeps(u)).count();
            for user in shared.users.iter().filter(|u| !keeps(u)) {
                repairs.push(Repair::StaleUser {
                    key: shared.key.clone(),
                    action_id: user.clone(),
                });
            }
            if let Some(id) = &shared.resource_id {
                claim_of.insert(id.as_str(), &shared.key);
                if kept_users > 0 || shared.maker.is_some() {
                    claimed.insert(id.as_str());
                }
            }
        }
        // Filters and targets used by sessions that stay; an orphan session's go with it.
        let known_filters: BTreeSet<&str> = contents
            .records
            .iter()
            .filter(|r| matches!(r.status, Some(RecordStatus::Active | RecordStatus::Removing)))
            .filter_map(|r| r.filter_id.as_deref())
            .chain(kept_sessions.iter().map(|s| s.filter_id.as_str()))
            .collect();
        for filter in &owned.filters {
            let action = crate::ports::tag_value(&filter.tags, TAG_ACTION_ID).unwrap_or_default();
            let id = filter.id.as_str();
            // A filter being made has no claim naming it yet; its maker keeps it.
            if !known_filters.contains(id) && !claimed.contains(id) && !keeps(action) {
                let claim = claim_of.get(id).map(|key| (*key).clone());
                repairs.push(Repair::OrphanFilter(filter.id.clone(), Some(action.to_owned()), claim));
            }
        }

        for source in &contents.sources {
            for (number, action_id) in &source.numbers {
                if !keeps(action_id) {
                    repairs.push(Repair::StaleNumber {
                        source_eni: source.source_eni.clone(),
                        number: *number,
                        action_id: action_id.clone(),
                    });
                }
            }
        }
        let used_targets: BTreeSet<&str> = kept_sessions.iter().map(|s| s.target_id.as_str()).collect();
        for target in &owned.targets {
            let id = target.id.as_str();
            // A target being made has no session yet; its maker keeps it.
            let making = contents.shared.iter().any(|c| {
                c.maker.is_some()
                    && matches!(&c.key, SharedKey::Target(name) if Some(name.as_str()) == target.claim_name())
            });
            if is_ours(&target.tags) && !used_targets.contains(id) && !claimed.contains(id) && !making {
                repairs.push(Repair::UnusedTarget {
                    claim_name: target.claim_name().map(str::to_owned),
                    target_id: target.id.clone(),
                });
            }
        }
        repairs
    }

    /// Carries out one repair; `Ok` holds the outcome to report.
    async fn repair(&self, repair: &Repair, owned: &Owned, contents: &LedgerContents) -> Result<String, String> {
        match repair {
            Repair::Abandoned(record) => self.undo_abandoned(record, owned, contents).await,
            Repair::Vanished(record) => {
                self.release(&Release::of(record, None))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut closed = (**record).clone();
                closed.status = Some(RecordStatus::Removed);
                closed.updated_at = now_seconds();
                self.ledger.save(&closed).await.map_err(|e| e.to_string())?;
                Ok("repaired".into())
            }
            Repair::HalfRemoved(record) => {
                self.remove_session(record).await.map_err(|e| e.to_string())?;
                Ok("repaired".into())
            }
            Repair::OrphanSession(session) => {
                self.ec2.delete_session(&session.id).await.map_err(|e| e.to_string())?;
                Ok("repaired".into())
            }
            Repair::OrphanFilter(id, _, claim) => {
                // A claim item naming it must let go first, so no create joins
                // a filter that is being deleted.
                let fate = match claim {
                    Some(key) => self.retire_shared(key, id, true).await,
                    None => self.delete_filter_if_unused(id).await,
                };
                fate_outcome(fate, id)
            }
            // The listing is a moment old: an action that took up its claim
            // since (a create joins its target as it claims itself) keeps it.
            Repair::StaleNumber { action_id, .. } | Repair::StaleUser { action_id, .. }
                if self.held(action_id).await =>
            {
                Ok("skipped: the action holds it now".into())
            }
            Repair::StaleNumber {
                source_eni,
                number,
                action_id,
            } => {
                self.ledger
                    .release_number(source_eni, *number, action_id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok("repaired".into())
            }
            Repair::StaleUser { key, action_id } => {
                let mut hold = Release {
                    action_id,
                    ..Release::default()
                };
                match key {
                    SharedKey::Target(_) => hold.target = Some(key.clone()),
                    SharedKey::Filter(_) => hold.filter = Some(key.clone()),
                }
                let released = self.release(&hold).await.map_err(|e| e.to_string())?;
                match released.left().first() {
                    Some(left) => Err(format!("released, but unused {left} could not be deleted")),
                    None => Ok("repaired".into()),
                }
            }
            Repair::UnusedTarget { claim_name, target_id } => {
                let fate = match claim_name {
                    Some(name) => {
                        self.retire_shared(&SharedKey::Target(name.clone()), target_id, true)
                            .await
                    }
                    None => self.delete_target_if_unused(target_id).await,
                };
                fate_outcome(fate, target_id)
            }
        }
    }

    /// Undoes what an abandoned create made: its sessions and filters (found
    /// by its action tag) and its claims; then records it as failed, so that a
    /// retry of the same action runs it again with fresh client tokens.
    async fn undo_abandoned(
        &self,
        record: &LedgerRecord,
        owned: &Owned,
        contents: &LedgerContents,
    ) -> Result<String, String> {
        if record.status == Some(RecordStatus::Pending) {
            // Take the action over, so a retry arriving now cannot run beside us.
            let mut takeover = record.clone();
            takeover.updated_at = now_seconds();
            match self.ledger.claim(&takeover, self.lease_seconds).await {
                Ok(Claim::Granted { .. }) => {}
                Ok(_) => return Ok("skipped: the action was taken up again".into()),
                Err(err) => return Err(err.to_string()),
            }
        }
        let action = record.action_id.as_str();
        let made_by = |tags: &crate::ports::Tags| crate::ports::tag_value(tags, TAG_ACTION_ID) == Some(action);
        for session in owned.sessions.iter().filter(|s| made_by(&s.tags)) {
            self.ec2.delete_session(&session.id).await.map_err(|e| e.to_string())?;
        }
        // Its filter may be shared by now: it goes through the release below,
        // which deletes it only with its last user.
        let filter_created = owned.filters.iter().find(|f| made_by(&f.tags)).map(|f| f.id.as_str());
        let number = contents
            .sources
            .iter()
            .filter(|s| Some(&s.source_eni) == record.source_eni.as_ref())
            .flat_map(|s| s.numbers.iter())
            .find(|(_, holder)| holder == action)
            .map(|(n, _)| *n)
            .or(record.session_number);
        let created = owned.targets.iter().find(|t| made_by(&t.tags)).map(|t| t.id.as_str());
        let mut hold = Release::of(record, number);
        hold.target_created = created.or(hold.target_created);
        hold.filter_created = filter_created;
        let released = self.release(&hold).await.map_err(|e| e.to_string())?;
        let mut failed = record.clone();
        failed.status = Some(RecordStatus::Failed);
        failed.attempt += 1;
        failed.session_id = None;
        failed.filter_id = None;
        failed.target_id = None;
        failed.target_created = false;
        failed.rule_ids.clear();
        let mut result = ActionResult::failure(
            action,
            crate::contract::CREATE,
            "ActionAbandoned",
            "the invocation carrying out this create stopped before it finished; the sweep undid its work, so \
             retrying the action runs it again"
                .into(),
            true,
        );
        if !released.left().is_empty() {
            result.info_message = format!("unused {} could not be deleted yet", released.left().join(", "));
        }
        failed.result = Some(result);
        failed.updated_at = now_seconds();
        self.ledger.save(&failed).await.map_err(|e| e.to_string())?;
        Ok("repaired".into())
    }
}

fn fate_outcome(fate: Fate, id: &str) -> Result<String, String> {
    match fate {
        Fate::Deleted => Ok("repaired".into()),
        Fate::InUse => Ok("skipped: in use now".into()),
        Fate::NotOurs => Ok("skipped: not ours".into()),
        Fate::Failed(_) => Err(format!("{id} could not be deleted")),
    }
}
