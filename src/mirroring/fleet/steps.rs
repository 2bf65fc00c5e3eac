//! The fleet policy's pure steps: what the policy wants of the fleet
//! (`desired`), which of our policy mirrors it no longer wants (`unwanted`),
//! and how well each target is covered once the actions ran (`tally`). The
//! sweep reads EC2 and the ledger, runs these, and carries out what they say.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tracing::warn;

use super::report::{Cost, CrossZone, Missing, PolicyReport, TargetCoverage, Uncovered, UnsupportedSource, Unwanted};
use super::{
    eligible_enis, ipv6_only, ipv6_only_reason, is_policy_mirror, record_target, refused_for_good, FleetView, Refusal,
    Step, WantedEni, LISTING_SLACK_SECONDS,
};
use crate::domain::instance::InstanceState;
use crate::mirroring::delivery;
use crate::mirroring::launch::{create_for, policy_target, LaunchPolicy};
use crate::mirroring::model::MirrorRequest;
use crate::ports::{ActionKind, Ingress, InstanceInfo, LedgerRecord, RecordStatus};

/// What the policy wants of the fleet, ENI by ENI.
#[derive(Default)]
pub(super) struct Desired {
    /// (source ENI, target) pairs to be mirrored.
    pub wanted: BTreeSet<(String, String)>,
    /// What to do for each wanted ENI.
    pub steps: Vec<(WantedEni, Step)>,
    /// ENIs already known to stay unmirrored (their type could not be checked).
    pub coverage: BTreeMap<String, TargetCoverage>,
    /// Instances the policy names whose type cannot be a mirror source.
    pub unsupported: Vec<UnsupportedSource>,
}

/// Each instance the policy names: its ENIs, and for each whether it is
/// covered, waits (and why), or needs a create. `refusals` holds, for each
/// instance type, why it cannot be a source (`Ok(None)`: it can), or why
/// that could not be told.
pub(super) fn desired(
    instances: &[InstanceInfo],
    refusals: &HashMap<String, Result<Option<String>, String>>,
    policy: &LaunchPolicy,
    view: &FleetView<'_>,
) -> Desired {
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

    let mut desired = Desired::default();
    for instance in instances {
        let Ok(target) = policy_target(instance, policy) else {
            continue;
        };
        match refusals.get(&instance.instance_type) {
            Some(Ok(None)) => {}
            Some(Ok(Some(why))) => {
                desired.unsupported.push(UnsupportedSource {
                    instance_id: instance.id.clone(),
                    instance_type: instance.instance_type.clone(),
                    why: why.clone(),
                });
                continue;
            }
            said @ (Some(Err(_)) | None) => {
                let err = match said {
                    Some(Err(err)) => err.as_str(),
                    _ => "EC2 was not asked",
                };
                for eni in eligible_enis(instance, &target) {
                    let entry = desired.coverage.entry(target.clone()).or_default();
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
        for eni in instance.enis.iter().filter(|eni| ipv6_only(instance, eni)) {
            desired.unsupported.push(UnsupportedSource {
                instance_id: instance.id.clone(),
                instance_type: instance.instance_type.clone(),
                why: ipv6_only_reason(eni),
            });
        }
        for eni in eligible_enis(instance, &target) {
            // EC2 refused this ENI as a source before (in another process,
            // or before the type was known to be unsupported).
            if let Some(Refusal::UnsupportedSource(why)) = refused_for_good(&by_action, &instance.id, eni) {
                desired.unsupported.push(UnsupportedSource {
                    instance_id: instance.id.clone(),
                    instance_type: instance.instance_type.clone(),
                    why: format!("EC2 refused it as a source: {why}"),
                });
                continue;
            }
            desired.wanted.insert((eni.to_owned(), target.clone()));
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
            } else if let Some(Refusal::ForGood(refused)) = refused_for_good(&by_action, &instance.id, eni) {
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
                instance_type: instance.instance_type.clone(),
                eni: eni.to_owned(),
                target: target.clone(),
                endpoint: instance.endpoints.get(eni).cloned(),
            };
            desired.steps.push((wanted_eni, step));
        }
    }

    desired
}

/// Our policy mirrors the policy no longer wants, with why.
pub(super) fn unwanted(
    instances: &[InstanceInfo],
    wanted: &BTreeSet<(String, String)>,
    policy: &LaunchPolicy,
    view: &FleetView<'_>,
) -> Vec<Unwanted> {
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

    removals
}

/// Counts each wanted ENI's outcome into its target's coverage (with the
/// delivery check from `ingress`) and the report.
pub(super) fn tally(
    report: &mut PolicyReport,
    mut coverage: BTreeMap<String, TargetCoverage>,
    outcomes: Vec<(WantedEni, Result<bool, Missing>)>,
    ingress: &HashMap<String, Option<Ingress>>,
) {
    for (wanted_eni, outcome) in outcomes {
        let WantedEni {
            instance_id,
            instance_type,
            eni,
            target,
            endpoint,
        } = wanted_eni;
        if let Err(Missing::UnsupportedSource(why)) = &outcome {
            // Not a source after all: listed as unsupported, not as missing.
            report.coverage.unsupported_instance_type.push(UnsupportedSource {
                instance_id,
                instance_type,
                why: format!("EC2 refused it as a source: {why}"),
            });
            continue;
        }
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
}

/// What this deployment's sessions cost: the ENIs billed per hour, and the
/// sessions whose copy crosses zones (zones from the instance listing:
/// an ENI of an instance not listed is not judged).
pub(super) fn cost(view: &FleetView<'_>, instances: &[InstanceInfo], price_per_eni_hour: f64) -> Cost {
    let zone_of: HashMap<&str, &str> = instances
        .iter()
        .filter_map(|i| i.availability_zone.as_deref().map(|zone| (i, zone)))
        .flat_map(|(i, zone)| i.enis.iter().map(move |eni| (eni.as_str(), zone)))
        .collect();
    let target_eni: HashMap<&str, &str> = view
        .targets
        .iter()
        .filter_map(|t| t.network_interface_id.as_deref().map(|eni| (t.id.as_str(), eni)))
        .collect();
    let mirrored: BTreeSet<&str> = view.sessions.iter().map(|s| s.source_eni.as_str()).collect();
    let cross_zone_sessions = view
        .sessions
        .iter()
        .filter_map(|s| {
            let source_zone = zone_of.get(s.source_eni.as_str())?;
            let target_zone = zone_of.get(target_eni.get(s.target_id.as_str())?)?;
            (source_zone != target_zone).then(|| CrossZone {
                session_id: s.id.clone(),
                source_zone: (*source_zone).to_owned(),
                target_zone: (*target_zone).to_owned(),
            })
        })
        .collect();
    Cost {
        mirrored_enis: mirrored.len(),
        estimated_hourly_cost: mirrored.len() as f64 * price_per_eni_hour,
        cross_zone_sessions,
    }
}
