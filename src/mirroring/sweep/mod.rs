//! The reconcile sweep: compares what EC2 holds under this deployment's
//! ownership tag with what the ledger says, and repairs the difference. It finds
//! - creates whose invocation died (pending past their lease) or whose
//!   rollback did not finish: undone, so the action can simply be retried;
//! - active mirrors whose session is gone (its ENI was deleted): closed, their
//!   filter deleted and their claims released;
//! - sessions of ours that no ledger record holds: adopted (recorded again
//!   from their tags), never deleted. The intent is written before any EC2
//!   change, so such a session is no crash leftover: the ledger lost
//!   something (a restore, a re-created table, an item deleted by hand), and
//!   deleting a live mirror is the wrong repair;
//! - filters and targets of ours that no session and no claim uses: deleted,
//!   at most `sweep_max_deletions` per run (the rest are reported, and logged
//!   for the alarm);
//! - claims held by actions that no longer hold anything: released;
//! - resources an earlier version made (the shared legacy owner value):
//!   taken over when our ledger knows them, else reported and left alone.
//!   Other deployments' resources are never listed at all.
//!
//! Repairs stop before the invocation's deadline; the next run plans afresh
//! from what is left, so it resumes where this one stopped.
//!
//! EC2 is listed before the ledger is read, so anything made by a create that
//! started after the listing is not seen at all, and anything it made before
//! is covered by its pending record, which the ledger read then shows.
//! With `dry_run` it only reports.
//!
//! The plan is pure (`plan`); this module lists, carries out and reports.

mod adopt;
mod owned;
mod plan;
mod report;

use std::collections::BTreeSet;

use tracing::{info, warn};

use super::fleet::FleetView;
use super::launch::LaunchPolicy;
use super::release::{Fate, Release};
use super::watch::Account;
use super::{now_seconds, TAG_ACTION_ID, TAG_MANAGED_BY};
use crate::contract::{ActionResult, SWEEP};
use crate::ports::{ActionKind, Claim, LedgerContents, LedgerRecord, RecordStatus, SessionQuery, SharedKey};
use owned::Owned;
use plan::{Repair, Snapshot};
pub use report::{Finding, Outcome, SweepReport};

/// Time a repair needs at the least; with less left, the rest is deferred.
const REPAIR_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// The hourly sweep: repairs, expiry, the fleet policy and the watch, in one pass.
pub struct Sweep {
    pub(crate) claims: std::sync::Arc<dyn crate::ports::SharedResources>,
    pub(crate) filters: std::sync::Arc<dyn crate::ports::Filters>,
    pub(crate) numbers: std::sync::Arc<dyn crate::ports::SessionNumbers>,
    pub(crate) records: std::sync::Arc<dyn crate::ports::ActionRecords>,
    pub(crate) scans: std::sync::Arc<dyn crate::ports::Scans>,
    pub(crate) sessions: std::sync::Arc<dyn crate::ports::Sessions>,
    pub(crate) tagging: std::sync::Arc<dyn crate::ports::Tagging>,
    pub(crate) targets: std::sync::Arc<dyn crate::ports::Targets>,
    pub(crate) deployment: std::sync::Arc<crate::mirroring::Deployment>,
    pub(crate) expiry: std::sync::Arc<crate::mirroring::expiry::Expiry>,
    pub(crate) fleet: std::sync::Arc<crate::mirroring::fleet::FleetPolicy>,
    pub(crate) joining: std::sync::Arc<crate::mirroring::create::Joining>,
    pub(crate) removes: std::sync::Arc<crate::mirroring::remove::Removes>,
    pub(crate) sharing: std::sync::Arc<crate::mirroring::release::Sharing>,
    pub(crate) watch: std::sync::Arc<crate::mirroring::watch::Watch>,
}

impl Sweep {
    /// A sweep's answer: its result (with the report as JSON, for the wire)
    /// and the report itself, typed, for tools that read it (`mirrorctl`).
    pub async fn sweep(&self, dry_run: bool, policy: &LaunchPolicy) -> (ActionResult, Option<SweepReport>) {
        let action_id = format!("sweep-{}", now_seconds());
        match self.sweep_report(dry_run, policy).await {
            Ok(report) => {
                info!(
                    dry_run,
                    findings = report.findings.len(),
                    failed = report.failed,
                    "sweep finished"
                );
                let mut summary = format!(
                    "sweep{}: {} finding{}, {} repaired, {} failed, {} deferred to the next run",
                    if dry_run { " (dry run)" } else { "" },
                    report.findings.len(),
                    if report.findings.len() == 1 { "" } else { "s" },
                    report.repaired,
                    report.failed,
                    report.deferred
                );
                if let Some(policy) = &report.policy {
                    let coverage = &policy.coverage;
                    summary.push_str(&format!(
                        "; policy: {} ENIs wanted, {} mirrored, {} missing, {} not delivering, {} created, {} removed",
                        coverage.wanted,
                        coverage.mirrored,
                        coverage.missing,
                        coverage.not_delivering,
                        policy.created,
                        policy.removed
                    ));
                }
                if !report.expiry.expired.is_empty() {
                    summary.push_str(&format!(
                        "; {} expired mirror{} ({} removed)",
                        report.expiry.expired.len(),
                        if report.expiry.expired.len() == 1 { "" } else { "s" },
                        report.expiry.removed
                    ));
                }
                if !report.unapproved_mirrors.is_empty() {
                    summary.push_str(&format!(
                        "; {} unapproved session{} in the account",
                        report.unapproved_mirrors.len(),
                        if report.unapproved_mirrors.len() == 1 { "" } else { "s" }
                    ));
                }
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
                (result, Some(report))
            }
            Err(failure) => (failure, None),
        }
    }

    async fn sweep_report(&self, dry_run: bool, policy: &LaunchPolicy) -> Result<SweepReport, ActionResult> {
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
        let listed_at = now_seconds();
        // One listing of each kind, at AWS's largest page, for everything
        // the sweep and the watch judge: ours, an earlier version's, and
        // everyone else's (read at one moment, so each resource is judged
        // by one view of its tags).
        let (sessions, filters, targets) = tokio::join!(
            self.sessions.sessions(&SessionQuery::All),
            self.filters.all_filters(),
            self.targets.all_targets(),
        );
        let account = Account {
            sessions: sessions.map_err(|e| fail("the account's sessions", e.to_string()))?,
            targets: targets.map_err(|e| fail("the account's targets", e.to_string()))?,
        };
        let filters = filters.map_err(|e| fail("the account's filters", e.to_string()))?;
        let owned = owned::owned_in(&self.deployment.owner, &account, filters);
        let contents = self
            .scans
            .contents()
            .await
            .map_err(|e| fail("the ledger", e.to_string()))?;
        let gone_sessions = self.sessions_gone(&owned, &contents).await;
        let repairs = plan::plan(&Snapshot {
            owned: &owned,
            contents: &contents,
            now: now_seconds(),
            lease_seconds: self.deployment.lease_seconds,
            owner: &self.deployment.owner,
            gone_sessions: &gone_sessions,
        });
        let mut report = SweepReport {
            dry_run,
            sessions_seen: owned.sessions.len(),
            filters_seen: owned.filters.len(),
            targets_seen: owned.targets.len(),
            legacy_seen: owned.legacy.len(),
            ledger_entries_seen: contents.records.len() + contents.shared.len() + contents.sources.len(),
            complete: true,
            ..SweepReport::default()
        };
        let mut deletions = 0;
        let mut deletions_deferred = 0;
        for repair in repairs {
            let mut finding = repair.finding();
            if dry_run || matches!(repair, Repair::UnknownLegacy(_)) {
                report.findings.push(finding);
                continue;
            }
            if crate::deadline::budget().is_some_and(|left| left < REPAIR_TIME) {
                finding.outcome =
                    Outcome::Deferred("the invocation's deadline is near; the next sweep resumes here".into());
                report.deferred += 1;
                report.complete = false;
            } else if repair.deletes_unused() && deletions >= self.deployment.sweep_max_deletions {
                finding.outcome = Outcome::Deferred(format!(
                    "a sweep deletes at most {} unused filters and targets (SWEEP_MAX_DELETIONS)",
                    self.deployment.sweep_max_deletions
                ));
                deletions_deferred += 1;
                report.deferred += 1;
            } else {
                finding.outcome = match self.repair(&repair, &owned, &contents).await {
                    Ok(outcome) => {
                        let done = matches!(outcome, Outcome::Repaired | Outcome::Adopted(_));
                        report.repaired += usize::from(done);
                        deletions += usize::from(done && repair.deletes_unused());
                        outcome
                    }
                    Err(err) => {
                        warn!(kind = finding.kind, resource = %finding.resource, error = %err, "sweep repair failed");
                        report.failed += 1;
                        Outcome::Failed(err)
                    }
                };
            }
            report.findings.push(finding);
        }
        // Mirrors whose time is up go before the policy counts coverage.
        report.expiry = Box::pin(self.expiry.expire_from(dry_run, &contents.records)).await;
        report.failed += report.expiry.failed;
        report.deferred += report.expiry.deferred;
        // Every session of the account, ours or not: the wiretaps nobody approved.
        // A session of an earlier version that our ledger holds is ours.
        let recorded: BTreeSet<&str> = contents
            .records
            .iter()
            .filter_map(|r| r.session_id.as_deref())
            .collect();
        match Box::pin(self.watch.unapproved_in(&account, &recorded, dry_run)).await {
            Ok(found) => report.unapproved_mirrors = found,
            Err(err) => {
                warn!(error = %err, "the account's sessions could not be checked");
                report.unapproved_error = Some(err);
            }
        }
        // The policy's turn: from the same listing and ledger read.
        let view = FleetView {
            sessions: &owned.sessions,
            targets: &owned.targets,
            account: &account,
            contents: &contents,
            gone_sessions: &gone_sessions,
            listed_at,
        };
        match self.fleet.reconcile_fleet(policy, &view, dry_run).await {
            Ok(policy) => {
                report.failed += policy.failed;
                report.deferred += policy.deferred;
                report.complete &= policy.complete;
                report.policy = Some(policy);
            }
            Err(err) => {
                warn!(error = %err, "the policy could not be reconciled");
                report.failed += 1;
                report.complete = false;
                report.policy_error = Some(err);
            }
        }
        if deletions_deferred > 0 {
            // An alarm watches this field: more than the cap at once is unusual enough for a person to look.
            warn!(
                sweep_deletions_deferred = deletions_deferred,
                cap = self.deployment.sweep_max_deletions,
                "sweep deletions capped"
            );
        }
        Ok(report)
    }

    /// The sessions our active records name that the listing lacks and that
    /// EC2, asked by id, says are gone: a session made after the listing is
    /// missing from it, yet exists.
    async fn sessions_gone(&self, owned: &Owned, contents: &LedgerContents) -> BTreeSet<String> {
        let listed: BTreeSet<&str> = owned.sessions.iter().map(|s| s.id.as_str()).collect();
        let mut gone = BTreeSet::new();
        for record in &contents.records {
            let active_create = record.kind == Some(ActionKind::Create) && record.status == Some(RecordStatus::Active);
            let Some(id) = record.session_id.as_deref().filter(|_| active_create) else {
                continue;
            };
            if !listed.contains(id)
                && matches!(self.sessions.sessions(&SessionQuery::Id(id.into())).await, Ok(found) if found.is_empty())
            {
                gone.insert(id.to_owned());
            }
        }
        gone
    }

    /// Carries out one repair; `Ok` holds the outcome to report.
    async fn repair(&self, repair: &Repair, owned: &Owned, contents: &LedgerContents) -> Result<Outcome, String> {
        match repair {
            Repair::Abandoned(record) => self.undo_abandoned(record, owned, contents).await,
            Repair::Vanished(record) => {
                self.sharing
                    .release(&Release::of(record, None))
                    .await
                    .map_err(|e| e.to_string())?;
                self.deployment
                    .update_record(record, |r| {
                        let change = r.status == Some(RecordStatus::Active) && r.session_id == record.session_id;
                        if change {
                            r.status = Some(RecordStatus::Removed);
                        }
                        change
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::Repaired)
            }
            Repair::HalfRemoved(record) => {
                self.removes.remove_session(record).await.map_err(|e| e.to_string())?;
                Ok(Outcome::Repaired)
            }
            Repair::Adopt(session, record) => self.adopt(session, record.as_deref()).await,
            Repair::TakeOver(ids) => {
                let tags = vec![(TAG_MANAGED_BY.to_owned(), self.deployment.owner.clone())];
                self.tagging.retag(ids, &tags).await.map_err(|e| e.to_string())?;
                Ok(Outcome::Repaired)
            }
            Repair::UnknownLegacy(_) => Ok(Outcome::Reported("left alone".into())),
            Repair::OrphanFilter(id, _, claim) => {
                // A claim item naming it must let go first, so no create joins
                // a filter that is being deleted.
                let fate = match claim {
                    Some(key) => self.sharing.retire_shared(key, id, true).await,
                    None => self.sharing.delete_filter_if_unused(id).await,
                };
                fate_outcome(fate, id)
            }
            // The listing is a moment old: an action that took up its claim
            // since (a create joins its target as it claims itself) keeps it.
            Repair::StaleNumber { action_id, .. } | Repair::StaleUser { action_id, .. }
                if self.joining.held(action_id).await =>
            {
                Ok(Outcome::Skipped("the action holds it now".into()))
            }
            Repair::StaleNumber {
                source_eni,
                number,
                action_id,
            } => {
                self.numbers
                    .release_number(source_eni, *number, action_id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Outcome::Repaired)
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
                let released = self.sharing.release(&hold).await.map_err(|e| e.to_string())?;
                match released.left().first() {
                    Some(left) => Err(format!("released, but unused {left} could not be deleted")),
                    None => Ok(Outcome::Repaired),
                }
            }
            Repair::UnusedTarget { claim_name, target_id } => {
                let fate = match claim_name {
                    Some(name) => {
                        self.sharing
                            .retire_shared(&SharedKey::Target(name.clone()), target_id, true)
                            .await
                    }
                    None => self.sharing.delete_target_if_unused(target_id).await,
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
    ) -> Result<Outcome, String> {
        let mut version_now = record.version;
        if record.status == Some(RecordStatus::Pending) {
            // Take the action over, so a retry arriving now cannot run beside us.
            let mut takeover = record.clone();
            takeover.updated_at = now_seconds();
            match self.records.claim(&takeover, self.deployment.lease_seconds).await {
                Ok(Claim::Granted { version, .. }) => version_now = version,
                Ok(_) => return Ok(Outcome::Skipped("the action was taken up again".into())),
                Err(err) => return Err(err.to_string()),
            }
        }
        let action = record.action_id.as_str();
        let made_by = |tags: &crate::ports::Tags| crate::ports::tag_value(tags, TAG_ACTION_ID) == Some(action);
        for session in owned.sessions.iter().filter(|s| made_by(&s.tags)) {
            self.sessions
                .delete_session(&session.id)
                .await
                .map_err(|e| e.to_string())?;
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
        let released = self.sharing.release(&hold).await.map_err(|e| e.to_string())?;
        let mut failed = record.clone();
        failed.fail_for_retry();
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
        failed.version = version_now;
        self.records.save(&mut failed).await.map_err(|e| e.to_string())?;
        Ok(Outcome::Repaired)
    }
}

fn fate_outcome(fate: Fate, id: &str) -> Result<Outcome, String> {
    match fate {
        Fate::Deleted => Ok(Outcome::Repaired),
        Fate::InUse => Ok(Outcome::Skipped("in use now".into())),
        Fate::NotOurs => Ok(Outcome::Skipped("not ours".into())),
        Fate::Failed(_) => Err(format!("{id} could not be deleted")),
    }
}
