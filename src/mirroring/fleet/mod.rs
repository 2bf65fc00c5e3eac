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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tracing::{info, warn};

mod report;

use report::{missing_reason, Missing, RemovalDone};
pub use report::{Coverage, PolicyReport, TargetCoverage, Uncovered, Unwanted};

use super::delivery;
use super::launch::{create_for, launch_action_id, policy_target, LaunchPolicy};
use super::model::{Accountability, EniId, MirrorRequest, RemoveRequest, Requester};

use crate::contract::ActionResult;
use crate::domain::instance::{Hypervisor, InstanceState};
use crate::ports::{
    ActionKind, Endpoint, InstanceInfo, LedgerContents, LedgerQuery, LedgerRecord, MirrorSession, RecordStatus,
};

/// Creates and removes the sweep runs side by side (each is paced by the
/// EC2 adapter, so this bounds memory and open calls, not the EC2 rate).
const POLICY_CONCURRENCY: usize = 8;
/// Time a policy create or remove needs at the least, beyond what the
/// deadline already keeps back for rollbacks; with less left, the rest waits
/// for the next run.
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
        .filter(|eni| EniId::parse(eni).is_some() && *eni != target)
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
fn record_target(record: &LedgerRecord) -> Option<&str> {
    record.target_key.as_deref().or(record.target_id.as_deref())
}

fn unwanted_remove(session_id: &str) -> MirrorRequest {
    MirrorRequest::Remove(RemoveRequest {
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
    pub contents: &'a LedgerContents,
    /// Active sessions EC2, asked by id, no longer has (closed by the sweep).
    pub gone_sessions: &'a BTreeSet<String>,
    /// Unix seconds when EC2 was listed.
    pub listed_at: u64,
}

/// One ENI the policy wants mirrored.
struct WantedEni {
    instance_id: String,
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
                let type_ok = match self.facts.hypervisor_of(&instance.instance_type).await {
                    Ok(hypervisor) => hypervisor == Some(Hypervisor::Nitro),
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
    /// with `dry_run`, only reports.
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
        let recorded_sessions: BTreeSet<&str> = view
            .contents
            .records
            .iter()
            .filter_map(|r| r.session_id.as_deref())
            .collect();
        // A session of ours that no record holds is adopted by the sweep: until
        // then, its ENI is not judged (a create now could make a twin).
        let untracked_on: BTreeSet<&str> = view
            .sessions
            .iter()
            .filter(|s| !recorded_sessions.contains(s.id.as_str()))
            .map(|s| s.source_eni.as_str())
            .collect();
        let by_action: HashMap<&str, &LedgerRecord> = view
            .contents
            .records
            .iter()
            .map(|r| (r.action_id.as_str(), r))
            .collect();
        let mut on_eni: BTreeMap<&str, Vec<&LedgerRecord>> = BTreeMap::new();
        for record in &view.contents.records {
            let holds = record.kind == Some(ActionKind::Create) && record.status.is_some_and(|s| s.holds_resources());
            if let (true, Some(eni)) = (holds, record.source_eni.as_deref()) {
                on_eni.entry(eni).or_default().push(record);
            }
        }

        // What the policy wants, instance by instance.
        let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
        let mut steps: Vec<(WantedEni, Step)> = Vec::new();
        let mut coverage: BTreeMap<String, TargetCoverage> = BTreeMap::new();
        for instance in &instances {
            let Ok(target) = policy_target(instance, policy) else {
                continue;
            };
            match self.facts.hypervisor_of(&instance.instance_type).await {
                Ok(Some(Hypervisor::Nitro)) => {}
                Ok(other) => {
                    report.coverage.not_nitro.push(format!(
                        "{} ({}, hypervisor {})",
                        instance.id,
                        instance.instance_type,
                        other.as_ref().map_or("unknown", Hypervisor::name)
                    ));
                    continue;
                }
                Err(err) => {
                    for eni in eligible_enis(instance, &target) {
                        let entry = coverage.entry(target.clone()).or_default();
                        entry.wanted += 1;
                        entry.missing.push(Uncovered {
                            instance_id: instance.id.clone(),
                            eni: eni.to_owned(),
                            reason: format!("its instance type could not be checked: {err}"),
                        });
                    }
                    continue;
                }
            }
            for eni in eligible_enis(instance, &target) {
                wanted.insert((eni.to_owned(), target.clone()));
                let records = on_eni.get(eni).map(Vec::as_slice).unwrap_or_default();
                let mirrors_here = |r: &&&LedgerRecord| record_target(r) == Some(target.as_str());
                // Active and not found gone (a session made after the listing is
                // missing from it, yet exists: only one EC2 said is gone counts).
                let live = records.iter().filter(mirrors_here).any(|r| {
                    r.status == Some(RecordStatus::Active)
                        && r.session_id.as_deref().is_some_and(|s| !view.gone_sessions.contains(s))
                });
                let step = if live {
                    Step::Covered
                } else if untracked_on.contains(eni) {
                    Step::Wait("a session of ours on it has no record yet; the sweep adopts it first".into())
                } else if records
                    .iter()
                    .filter(mirrors_here)
                    .any(|r| r.status != Some(RecordStatus::Active))
                {
                    Step::Wait("an action on it is in progress".into())
                } else if let Some(refused) = refused_for_good(&by_action, &instance.id, eni) {
                    Step::Wait(refused)
                } else if instance.state != Some(InstanceState::Running) {
                    Step::Wait(format!(
                        "the instance is {}; it is mirrored when it runs",
                        instance.state.as_ref().map_or("not running", InstanceState::name)
                    ))
                } else {
                    match create_for(instance, eni, &target) {
                        Ok(MirrorRequest::Create(mut create)) => {
                            // The sweep judges delivery once per target, from the listing.
                            create.check_delivery = false;
                            Step::Create(Box::new(MirrorRequest::Create(create)))
                        }
                        Ok(request) => Step::Create(Box::new(request)),
                        Err(refused) => Step::Wait(refused.error_message),
                    }
                };
                let wanted_eni = WantedEni {
                    instance_id: instance.id.clone(),
                    eni: eni.to_owned(),
                    target: target.clone(),
                    endpoint: instance.endpoints.get(eni).cloned(),
                };
                steps.push((wanted_eni, step));
            }
        }

        // Policy mirrors the policy no longer wants.
        let present: HashMap<&str, &InstanceInfo> = instances.iter().map(|i| (i.id.as_str(), i)).collect();
        let mut removals = Vec::new();
        for record in &view.contents.records {
            if record.status != Some(RecordStatus::Active) || !is_policy_mirror(record) {
                continue;
            }
            let (Some(session), Some(eni), Some(instance_id)) = (
                record.session_id.as_deref(),
                record.source_eni.as_deref(),
                record.instance_id.as_deref(),
            ) else {
                continue;
            };
            let target = record_target(record).unwrap_or_default();
            if wanted.contains(&(eni.to_owned(), target.to_owned())) || view.gone_sessions.contains(session) {
                continue;
            }
            let reason = match present.get(instance_id) {
                None if record.updated_at + LISTING_SLACK_SECONDS > view.listed_at => continue,
                None => "its instance is gone".to_owned(),
                Some(instance) if !instance.enis.iter().any(|e| e == eni) => {
                    "the ENI is no longer attached to the instance".to_owned()
                }
                Some(instance) => match policy_target(instance, policy) {
                    Err(why) => format!("the policy no longer names it: {why}"),
                    Ok(now) if now != target => format!("the policy now names {now}"),
                    Ok(_) => "its instance type cannot be a mirror source".to_owned(),
                },
            };
            removals.push(Unwanted {
                session_id: session.to_owned(),
                instance_id: instance_id.to_owned(),
                eni: eni.to_owned(),
                target: target.to_owned(),
                reason,
                outcome: "planned".into(),
            });
        }

        // Removals first: they free session numbers and target places.
        let removed: Vec<Unwanted> = stream::iter(removals)
            .map(|mut unwanted| async move {
                let done = if dry_run {
                    RemovalDone::Planned
                } else if crate::deadline::budget().is_some_and(|left| left < POLICY_ACTION_TIME) {
                    unwanted.outcome = "deferred: the next run removes it".into();
                    RemovalDone::Deferred
                } else {
                    let result = self.actions.run(&unwanted_remove(&unwanted.session_id)).await;
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
                    RemovalDone::Removed => report.removed += 1,
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
        report.coverage.unwanted = removed;

        // Creates, then coverage, with the delivery check per ENI target.
        // `Ok(true)`: created by this run.
        let outcomes: Vec<(WantedEni, Result<bool, Missing>)> = stream::iter(steps)
            .map(|(wanted_eni, step)| async move {
                let outcome = match step {
                    Step::Covered => Ok(false),
                    Step::Wait(why) => Err(Missing::Waiting(why)),
                    Step::Create(_) if dry_run => Err(Missing::Planned),
                    Step::Create(_) if crate::deadline::budget().is_some_and(|left| left < POLICY_ACTION_TIME) => {
                        Err(Missing::Deferred)
                    }
                    Step::Create(request) => {
                        let result = self.actions.run(&request).await;
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
        for (wanted_eni, outcome) in outcomes {
            let WantedEni {
                instance_id,
                eni,
                target,
                endpoint,
            } = wanted_eni;
            let entry = coverage.entry(target.clone()).or_default();
            entry.wanted += 1;
            let uncovered = |reason: String| Uncovered {
                instance_id: instance_id.clone(),
                eni: eni.clone(),
                reason,
            };
            match outcome {
                Ok(created) => {
                    report.created += usize::from(created);
                    let refusal = ingress
                        .get(&target)
                        .and_then(Option::as_ref)
                        .zip(endpoint.as_ref())
                        .and_then(|(ingress, source)| delivery::refusal(ingress, source));
                    match refusal {
                        Some(why) => entry.not_delivering.push(uncovered(why)),
                        None => entry.mirrored += 1,
                    }
                }
                Err(missing) => {
                    match missing {
                        Missing::Deferred => {
                            report.deferred += 1;
                            report.complete = false;
                        }
                        Missing::Failed { .. } | Missing::Throttled => report.failed += 1,
                        _ => {}
                    }
                    entry.missing.push(uncovered(missing.to_string()));
                }
            }
        }
        for (target, mut entry) in coverage {
            entry.target = target;
            entry
                .missing
                .sort_by(|a, b| (&a.instance_id, &a.eni).cmp(&(&b.instance_id, &b.eni)));
            entry
                .not_delivering
                .sort_by(|a, b| (&a.instance_id, &a.eni).cmp(&(&b.instance_id, &b.eni)));
            report.coverage.wanted += entry.wanted;
            report.coverage.mirrored += entry.mirrored;
            report.coverage.missing += entry.missing.len();
            report.coverage.not_delivering += entry.not_delivering.len();
            report.coverage.targets.push(entry);
        }
        if report.coverage.missing > 0 || report.coverage.not_delivering > 0 {
            warn!(
                wanted = report.coverage.wanted,
                mirrored = report.coverage.mirrored,
                missing = report.coverage.missing,
                not_delivering = report.coverage.not_delivering,
                "policy coverage incomplete"
            );
        }
        Ok(report)
    }
}

/// A policy create refused for a reason only a change of tags or policy
/// mends (which brings its own event): not tried again on every sweep.
fn refused_for_good(records: &HashMap<&str, &LedgerRecord>, instance_id: &str, eni: &str) -> Option<String> {
    let record = records.get(launch_action_id(instance_id, eni).as_str())?;
    let result = record
        .result
        .as_ref()
        .filter(|_| record.status == Some(RecordStatus::Failed))?;
    let code = result.error_code.as_deref()?;
    matches!(code, "EniIsMirrorTarget" | "ValidationError" | "MirroringNotAllowed")
        .then(|| format!("its last create was refused ({code}): {}", result.error_message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tags::TAG_EXCLUDE;

    fn instance(tags: &[(&str, &str)]) -> InstanceInfo {
        InstanceInfo {
            id: "i-1".into(),
            instance_type: "m5.large".into(),
            subnet_id: Some("subnet-1".into()),
            enis: vec!["eni-0000000a".into(), "eni-0000000b".into()],
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..InstanceInfo::default()
        }
    }

    #[test]
    fn the_exclude_tag_wins_over_every_target() {
        let mut policy = LaunchPolicy::default();
        policy.default_targets.insert("subnet-1".into(), "eni-000000c1".into());
        assert_eq!(policy_target(&instance(&[]), &policy).as_deref(), Ok("eni-000000c1"));
        for value in ["true", "TRUE", " True "] {
            let opted_out = instance(&[(TAG_EXCLUDE, value), ("traffic-mirroring:target", "eni-000000d1")]);
            assert!(policy_target(&opted_out, &policy).is_err_and(|why| why.contains(TAG_EXCLUDE)));
        }
        let not_really = instance(&[(TAG_EXCLUDE, "no")]);
        assert!(policy_target(&not_really, &policy).is_ok());
        assert!(policy_target(&instance(&[]), &LaunchPolicy::default()).is_err());
    }

    #[test]
    fn the_target_itself_is_not_mirrored_to_itself() {
        assert_eq!(eligible_enis(&instance(&[]), "eni-0000000b"), vec!["eni-0000000a"]);
        assert_eq!(eligible_enis(&instance(&[]), "eni-000000c1").len(), 2);
    }

    #[test]
    fn only_launch_actions_of_their_own_instance_and_eni_are_policy_mirrors() {
        let record = |action: &str| LedgerRecord {
            action_id: action.into(),
            kind: Some(ActionKind::Create),
            instance_id: Some("i-1".into()),
            source_eni: Some("eni-0000000a".into()),
            ..LedgerRecord::default()
        };
        assert!(is_policy_mirror(&record("launch-i-1-eni-0000000a")));
        assert!(!is_policy_mirror(&record("launch-i-2-eni-0000000a")));
        assert!(!is_policy_mirror(&record("a-callers-own-id")));
        let mut asked = record("launch-i-1-eni-0000000a");
        asked.instance_id = None;
        assert!(!is_policy_mirror(&asked));
    }

    #[test]
    fn a_failed_create_is_reported_in_the_words_of_its_cause() {
        let failed = |code: &str| ActionResult::failure("a", "CreateTrafficMirroring", code, "m".into(), true);
        let said = |code: &str| missing_reason(&failed(code)).to_string();
        assert_eq!(
            said("TrafficMirrorSessionsPerInterfaceLimitExceeded"),
            "3 sessions already on the ENI"
        );
        assert!(said("TrafficMirrorSourcesPerTargetLimitExceeded").contains("10 sources"));
        assert!(said("RequestLimitExceeded").starts_with("throttled"));
        assert_eq!(missing_reason(&failed("InvocationDeadlineNear")), Missing::Deferred);
        assert_eq!(missing_reason(&failed("ThrottlingException")), Missing::Throttled);
        assert!(
            matches!(missing_reason(&failed("InternalError")), Missing::Failed { code, .. } if code == "InternalError")
        );
        assert_eq!(
            Missing::Deferred.to_string(),
            "waiting for the next run: this one's deadline was near",
            "the report's words stay"
        );
    }
}
