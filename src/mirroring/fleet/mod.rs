//! The launch policy as desired state. The policy (an instance's target tag,
//! else `DEFAULT_TARGETS` for its subnet or VPC; `traffic-mirroring:exclude`
//! wins over both) names, for each instance, one target; each eligible ENI of
//! a running instance it names is to be mirrored there exactly once.
//!
//! Two callers compare that with what is: an event about one instance (its
//! tags changed, an ENI was attached: `plan_instance`), and the sweep, for the
//! whole fleet (`reconcile_fleet`), which also backfills instances that were
//! running before the deployment, makes again a policy mirror that went
//! missing, removes the ones the policy no longer wants, and reports coverage.
//!
//! A policy mirror is a create whose action id is `launch-<instance>-<eni>`
//! (`launch_action_id`) and whose record names the instance. Only those are
//! removed when the policy stops wanting them; a mirror a caller asked for
//! counts as coverage but is never removed by the policy.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tracing::info;

mod pace;
mod report;
mod steps;

use report::{missing_reason, Missing, RemovalDone};
pub use report::{Coverage, PolicyReport, TargetCoverage, Uncovered, UnsupportedSource, Unwanted};

use super::create::Listed;
pub(crate) use super::launch::ipv6_only_reason;
use super::launch::{create_for, ipv6_only, launch_action_id, policy_target, LaunchPolicy};
use super::model::{Accountability, EniId, MirrorRequest, RemoveRequest, Requester};
use super::watch::Account;

use crate::contract::ActionResult;
use crate::domain::instance::InstanceState;
use crate::ports::{
    ActionKind, Endpoint, InstanceInfo, LedgerContents, LedgerQuery, LedgerRecord, MirrorSession, MirrorTarget,
    RecordStatus,
};

/// Creates and removes the sweep runs side by side (each is paced by the
/// EC2 adapter, so this bounds memory and open calls, not the EC2 rate).
const POLICY_CONCURRENCY: usize = 8;
/// Time a policy create or remove needs at the least, beyond what the
/// deadline already keeps back for rollbacks; with less left (or less than
/// the slowest recent one took: `pace`), the rest waits for the next run.
const POLICY_ACTION_TIME: Duration = Duration::from_secs(2);
/// A record younger than the instance listing by less than this may belong
/// to an instance launched after the listing: it is not judged unwanted.
const LISTING_SLACK_SECONDS: u64 = 120;

/// The ENIs of an instance the policy would mirror to `target` (all but the
/// target itself, when it is one of the instance's own).
fn eligible_enis<'a>(instance: &'a InstanceInfo, target: &str) -> Vec<&'a str> {
    instance
        .enis
        .iter()
        .map(String::as_str)
        .filter(|eni| EniId::parse(eni).is_some() && *eni != target && !ipv6_only(instance, eni))
        .collect()
}

/// Whether a record is a mirror the policy made (and so may remove).
pub fn is_policy_mirror(record: &LedgerRecord) -> bool {
    match (&record.instance_id, &record.source_eni) {
        (Some(instance), Some(eni)) => {
            record.kind == Some(ActionKind::Create) && record.action_id == launch_action_id(instance, eni)
        }
        _ => false,
    }
}

/// The target a record mirrors to, as the policy would name it.
/// The destination a record's mirror was asked for, as the policy names
/// destinations: its pool when it was placed in one, else its target.
fn record_target(record: &LedgerRecord) -> Option<&str> {
    record
        .pool
        .as_deref()
        .or(record.target_key.as_deref())
        .or(record.target_id.as_deref())
}

fn unwanted_remove(session_id: &str) -> MirrorRequest {
    MirrorRequest::Remove(RemoveRequest {
        account: None,
        action_id: format!("unwanted-{session_id}"),
        session_id: Some(session_id.to_owned()),
        target_eni: None,
        reservation_id: None,
        instance_id: None,
        accountability: Accountability {
            requested_by: Requester::policy(),
            reason: Some("launch policy: the instance's tags or DEFAULT_TARGETS no longer ask for this mirror".into()),
        },
        expired: false,
    })
}

/// What the sweep already knows when the policy's turn comes.
pub(crate) struct FleetView<'a> {
    pub sessions: &'a [MirrorSession],
    /// Our targets, as listed: where each session's copy goes.
    pub targets: &'a [MirrorTarget],
    /// The account's sessions and targets, anyone's: what the sweep's
    /// creates know of their sources without reading them again.
    pub account: &'a Account,
    pub contents: &'a LedgerContents,
    /// Active sessions EC2, asked by id, no longer has (closed by the sweep).
    pub gone_sessions: &'a BTreeSet<String>,
    /// Unix seconds when EC2 was listed.
    pub listed_at: u64,
}

/// One ENI the policy wants mirrored.
struct WantedEni {
    instance_id: String,
    instance_type: String,
    eni: String,
    target: String,
    /// Its address and groups, for the delivery check.
    endpoint: Option<Endpoint>,
}

/// What to do for one wanted ENI.
enum Step {
    Covered,
    Create(Box<MirrorRequest>),
    Wait(String),
}

/// The fleet policy: what each instance should have mirrored, and making it so.
pub struct FleetPolicy {
    pub(crate) instances: std::sync::Arc<dyn crate::ports::Instances>,
    pub(crate) records: std::sync::Arc<dyn crate::ports::ActionRecords>,
    pub(crate) actions: std::sync::Arc<crate::mirroring::Actions>,
    pub(crate) facts: std::sync::Arc<crate::mirroring::facts::InstanceFacts>,
    /// `PRICE_PER_ENI_HOUR`, in US dollars.
    pub(crate) price_per_eni_hour: f64,
}

impl FleetPolicy {
    /// The creates and removes that bring one instance in line with the
    /// policy, after its tags changed or an ENI was attached. EC2 is asked
    /// for the instance's tags and ENIs (an event's own can be stale or
    /// forged); `Err` says why nothing is to be done.
    pub async fn plan_instance(
        &self,
        instance_id: &str,
        policy: &LaunchPolicy,
        gone_sessions: &[String],
    ) -> Result<Vec<Result<MirrorRequest, ActionResult>>, String> {
        let action_id = format!("reconcile-{instance_id}");
        let by_instance = LedgerQuery::Instance(instance_id.to_owned());
        let (instance, records) = tokio::join!(self.instances.instance(instance_id), self.records.find(&by_instance));
        let fail = |what: String| {
            Ok(vec![Err(ActionResult::failure(
                &action_id,
                crate::contract::CREATE,
                "ReconcileFailed",
                what,
                true,
            ))])
        };
        let instance = match instance {
            Ok(Some(instance)) => instance,
            Ok(None) => return Err(format!("instance {instance_id} was not found")),
            Err(err) => return fail(format!("describing instance {instance_id}: {err}")),
        };
        // The ledger finds an instance's actions through its instance item as
        // well as the index, so a mirror made a moment ago is not missed.
        let records = match records {
            Ok(records) => records,
            Err(err) => return fail(format!("reading the ledger for instance {instance_id}: {err}")),
        };
        if instance.state.as_ref().is_some_and(InstanceState::is_ending) {
            return Err(format!(
                "instance {instance_id} is ending; its state change removes its mirrors"
            ));
        }
        let wanted = match policy_target(&instance, policy) {
            Ok(target) => {
                let type_ok = match self.facts.source_refusal(&instance.instance_type).await {
                    Ok(refusal) => refusal.is_none(),
                    Err(err) => return fail(format!("describing instance type {}: {err}", instance.instance_type)),
                };
                let enis = if type_ok {
                    eligible_enis(&instance, &target)
                } else {
                    Vec::new()
                };
                enis.into_iter().map(|eni| (eni.to_owned(), target.clone())).collect()
            }
            Err(_) => BTreeSet::new(),
        };
        let active: Vec<&LedgerRecord> = records
            .iter()
            .filter(|r| r.status == Some(RecordStatus::Active) && is_policy_mirror(r))
            // A mirror whose session is known to be gone is wanted again, not had.
            .filter(|r| !r.session_id.as_ref().is_some_and(|id| gone_sessions.contains(id)))
            .collect();
        let mut actions = Vec::new();
        for record in &active {
            let key = (
                record.source_eni.clone().unwrap_or_default(),
                record_target(record).unwrap_or_default().to_owned(),
            );
            if let Some(session) = record.session_id.as_deref().filter(|_| !wanted.contains(&key)) {
                actions.push(Ok(unwanted_remove(session)));
            }
        }
        if instance.state == Some(InstanceState::Running) {
            for (eni, target) in &wanted {
                let have = active
                    .iter()
                    .any(|r| r.source_eni.as_deref() == Some(eni) && record_target(r) == Some(target));
                if !have {
                    actions.push(create_for(&instance, eni, target));
                }
            }
        }
        if actions.is_empty() {
            return Err(format!("instance {instance_id} is mirrored as the policy says"));
        }
        info!(
            instance_id,
            actions = actions.len(),
            "instance reconciled with the policy"
        );
        Ok(actions)
    }

    /// Brings the fleet in line with the policy (see the module comment);
    /// with `dry_run`, only reports. Reads, then the pure steps (`steps`),
    /// then the removals and creates they call for.
    pub(crate) async fn reconcile_fleet(
        &self,
        policy: &LaunchPolicy,
        view: &FleetView<'_>,
        dry_run: bool,
    ) -> Result<PolicyReport, String> {
        let instances = self
            .instances
            .instances()
            .await
            .map_err(|e| format!("could not list instances: {e}"))?;
        let mut report = PolicyReport {
            instances_seen: instances.len(),
            complete: true,
            ..PolicyReport::default()
        };
        let refusals = self.source_refusals(&instances, policy).await;
        let steps::Desired {
            wanted,
            steps,
            coverage,
            unsupported,
        } = steps::desired(&instances, &refusals, policy, view);
        report.coverage.unsupported_instance_type = unsupported;
        let removals = steps::unwanted(&instances, &wanted, policy, view);

        let times = pace::ActionTimes::new(POLICY_ACTION_TIME);
        let times = &times;
        // Removals first: they free session numbers and target places.
        let mut removed_sessions: BTreeSet<String> = BTreeSet::new();
        let removed: Vec<Unwanted> = stream::iter(removals)
            .map(|mut unwanted| async move {
                let done = if dry_run {
                    RemovalDone::Planned
                } else if !times.room_for_one() {
                    unwanted.outcome = "deferred: the next run removes it".into();
                    RemovalDone::Deferred
                } else {
                    let started = std::time::Instant::now();
                    let result = self.actions.run(&unwanted_remove(&unwanted.session_id)).await;
                    times.took(started.elapsed());
                    if result.success {
                        unwanted.outcome = "removed".into();
                        RemovalDone::Removed
                    } else {
                        unwanted.outcome = format!("failed: {}", result.error_message);
                        RemovalDone::Failed
                    }
                };
                (unwanted, done)
            })
            .buffer_unordered(POLICY_CONCURRENCY)
            .map(|(unwanted, done)| {
                match done {
                    RemovalDone::Removed => {
                        report.removed += 1;
                        removed_sessions.insert(unwanted.session_id.clone());
                    }
                    RemovalDone::Failed => report.failed += 1,
                    RemovalDone::Deferred => {
                        report.deferred += 1;
                        report.complete = false;
                    }
                    RemovalDone::Planned => {}
                }
                unwanted
            })
            .collect()
            .await;
        let removed_sessions = &removed_sessions;

        // Creates, then coverage, with the delivery check per ENI target.
        // `Ok(true)`: created by this run.
        let outcomes: Vec<(WantedEni, Result<bool, Missing>)> = stream::iter(steps)
            .map(|(wanted_eni, step)| async move {
                let outcome = match step {
                    Step::Covered => Ok(false),
                    Step::Wait(why) => Err(Missing::Waiting(why)),
                    Step::Create(_) if dry_run => Err(Missing::Planned),
                    Step::Create(_) if !times.room_for_one() => Err(Missing::Deferred),
                    Step::Create(request) => {
                        // The source as the sweep listed it, less what it removed since.
                        let eni = wanted_eni.eni.as_str();
                        let listed = Listed {
                            sessions_on_source: view
                                .account
                                .sessions
                                .iter()
                                .filter(|s| s.source_eni == eni && !removed_sessions.contains(&s.id))
                                .cloned()
                                .collect(),
                            source_is_target: view
                                .account
                                .targets
                                .iter()
                                .any(|t| t.network_interface_id.as_deref() == Some(eni)),
                        };
                        let started = std::time::Instant::now();
                        let result = self.actions.run_listed(&request, Some(&listed)).await;
                        times.took(started.elapsed());
                        if result.success {
                            Ok(true)
                        } else {
                            Err(missing_reason(&result))
                        }
                    }
                };
                (wanted_eni, outcome)
            })
            .buffer_unordered(POLICY_CONCURRENCY)
            .collect()
            .await;
        let ingress = self
            .facts
            .ingress_of_targets(outcomes.iter().map(|(w, _)| w.target.as_str()))
            .await;
        report.coverage.unwanted = removed;
        // EC2's word outranks the documented list: a type it refused is not
        // tried again by this process.
        for (wanted, outcome) in &outcomes {
            if let Err(Missing::UnsupportedSource(why)) = outcome {
                self.facts.mark_refused(&wanted.instance_type, why);
            }
        }
        steps::tally(&mut report, coverage, outcomes, &ingress);
        report.coverage.cost = steps::cost(view, &instances, self.price_per_eni_hour);
        Ok(report)
    }

    /// Whether each instance type the policy names can be a source (once
    /// per type): `Ok(None)` yes, `Ok(Some(why))` no, `Err` EC2 could not say.
    async fn source_refusals(
        &self,
        instances: &[InstanceInfo],
        policy: &LaunchPolicy,
    ) -> HashMap<String, Result<Option<String>, String>> {
        let types: BTreeSet<&str> = instances
            .iter()
            .filter(|instance| policy_target(instance, policy).is_ok())
            .map(|instance| instance.instance_type.as_str())
            .collect();
        let mut refusals = HashMap::new();
        for instance_type in types {
            let said = self
                .facts
                .source_refusal(instance_type)
                .await
                .map_err(|err| err.to_string());
            refusals.insert(instance_type.to_owned(), said);
        }
        refusals
    }
}

/// A policy create refused for a reason only a change of tags or policy
/// mends (which brings its own event): not tried again on every sweep.
fn refused_for_good(records: &HashMap<&str, &LedgerRecord>, instance_id: &str, eni: &str) -> Option<Refusal> {
    let record = records.get(launch_action_id(instance_id, eni).as_str())?;
    let result = record
        .result
        .as_ref()
        .filter(|_| record.status == Some(RecordStatus::Failed))?;
    // The recorded answer's code, as the contract names it.
    match result.error_code.as_deref()? {
        "NetworkInterfaceNotSupported" => Some(Refusal::UnsupportedSource(result.error_message.clone())),
        code @ ("EniIsMirrorTarget" | "ValidationError" | "MirroringNotAllowed") => Some(Refusal::ForGood(format!(
            "its last create was refused ({code}): {}",
            result.error_message
        ))),
        _ => None,
    }
}

/// Why a policy create is not tried again until tags or policy change.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// EC2 refused the source ENI: the instance is listed as unsupported.
    UnsupportedSource(String),
    ForGood(String),
}

#[cfg(test)]
mod tests;
