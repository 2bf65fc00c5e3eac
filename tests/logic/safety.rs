//! Safe in a shared account: only what this deployment owns is touched, a
//! ledger that lost its items never costs a live mirror, events are checked
//! with EC2, and mirrored traffic goes only where it is allowed.

use std::collections::BTreeSet;

use serde_json::json;
use traffic_mirroring::mirroring::{AllowList, Allowed, Controls};
use traffic_mirroring::ports::{ActionKind, ActionRecords, LedgerQuery, RecordStatus, Tagging};

use crate::world::*;

/// Whether EC2 still has a session, filter or target of this id.
fn exists(world: &Fixture, id: &str) -> bool {
    let (sessions, filters, targets) = world.ec2.resources();
    [sessions, filters, targets]
        .iter()
        .any(|ids| ids.iter().any(|i| i == id))
}

#[tokio::test]
async fn two_deployments_in_one_account_never_take_each_others_mirrors() {
    let world = fixture();
    let second_owner = "table/second";
    let second = deployment_on(
        world.ec2.clone(),
        Setup {
            owner: second_owner.into(),
            ..Setup::default()
        },
    );
    let (a_source, a_target, b_source, b_target) = (eni(1), eni(2), eni(3), eni(4));
    let a = made(&world.handle(&seed_create("a-1", &a_source, &a_target)).await);
    let b = made(&second.handle(&seed_create("b-1", &b_source, &b_target)).await);
    assert_eq!(world.ec2.tag_of(&a.0, MANAGED_BY).as_deref(), Some(OWNER));
    assert_eq!(
        world.ec2.tag_of(&b.0, MANAGED_BY).as_deref(),
        Some(second_owner),
        "each deployment marks what it makes with its own owner"
    );

    // The second deployment sweeps, and removes by the first one's target ENI.
    let swept = second.sweep(false).await;
    let removed = second.handle(&remove("b-rm", "", &a_target)).await;

    assert_eq!(swept["sweep"]["success"], true, "{swept}");
    assert_eq!(
        swept["sweep"]["sweep"]["findings"],
        json!([]),
        "nothing of the first deployment is its to repair: {swept}"
    );
    let result = first_result(&removed);
    assert_eq!(result["success"], true, "{removed}");
    assert!(
        result["infoMessage"]
            .as_str()
            .is_some_and(|m| m.contains(&a.0) && m.contains("not created by us")),
        "the other deployment's session is reported, not removed: {removed}"
    );
    for id in [&a.0, &a.1, &a.2, &b.0, &b.1, &b.2] {
        assert!(exists(&world, id), "{id} survives");
    }
    // And the first deployment's own sweep finds nothing to do either.
    let own = world.sweep(false).await;
    assert_eq!(own["sweep"]["sweep"]["findings"], json!([]), "{own}");
    assert_eq!(
        world.ledger.record("a-1").and_then(|r| r.status),
        Some(RecordStatus::Active)
    );
}

#[tokio::test]
async fn a_ledger_emptied_under_live_sessions_is_rebuilt_by_the_sweep_and_nothing_is_deleted() {
    let world = fixture();
    let target = eni(9);
    let one = made(&world.handle(&seed_create("live-1", &eni(1), &target)).await);
    let two = made(&world.handle(&seed_create("live-2", &eni(2), &target)).await);
    assert_eq!(
        (one.1 == two.1, one.2 == two.2),
        (true, true),
        "they share a filter and a target"
    );
    let before = world.ec2.resources();
    world.ledger.empty();

    let swept = world.sweep(false).await;

    let report = &swept["sweep"]["sweep"];
    assert_eq!(swept["sweep"]["success"], true, "{swept}");
    assert_eq!(
        world.ec2.resources(),
        before,
        "every live session, filter and target survives"
    );
    let adopted: BTreeSet<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "untracked_session" && f["outcome"].as_str().is_some_and(|o| o.starts_with("adopted")))
        .filter_map(|f| f["resource"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(adopted, BTreeSet::from([one.0.clone(), two.0.clone()]), "{report}");
    assert_eq!(
        world.ledger.record("live-1").and_then(|r| r.status),
        Some(RecordStatus::Active),
        "recorded again"
    );

    // The rebuilt ledger serves teardown: the shared filter and target go with the last session.
    let removed = world.handle(&remove("rm-all", "", &target)).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
}

#[tokio::test]
async fn a_termination_event_for_a_running_instance_is_ignored() {
    let world = fixture();
    let instance = "i-0000000a";
    world
        .ec2
        .plant_instance(instance, &[&eni(1)], &[(TARGET_ENI_TAG, &eni(9))]);
    world.invoke(state_change(instance, "running")).await;
    let before = world.ec2.resources();
    assert_eq!(before.0.len(), 1);

    let forged = world.invoke(state_change(instance, "terminated")).await;
    let queued = world
        .invoke(json!({"Records": [sqs_record("m-1", &state_change(instance, "shutting-down"))]}))
        .await;

    assert!(
        forged["skipped"]
            .as_str()
            .is_some_and(|r| r.contains("ignored") && r.contains("running")),
        "the answer says it was ignored and why: {forged}"
    );
    assert_eq!(queued["batchItemFailures"], json!([]), "nothing to retry: {queued}");
    assert_eq!(world.ec2.resources(), before, "nothing was removed");
    let records = world
        .ledger
        .find(&LedgerQuery::Instance(instance.into()))
        .await
        .expect("read");
    let record = records
        .iter()
        .find(|r| r.kind == Some(ActionKind::Create))
        .expect("record");
    assert_eq!(record.status, Some(RecordStatus::Active));
}

#[tokio::test]
async fn only_allowed_destinations_and_sources_are_mirrored() {
    let (source, allowed, forbidden, elsewhere_eni) = (eni(1), eni(2), eni(3), eni(4));
    let world = fixture_with(
        Allowed {
            targets: AllowList::Only(BTreeSet::from([allowed.clone()])),
            sources: AllowList::Only(BTreeSet::from([DEFAULT_SUBNET.to_owned()])),
        },
        Controls::default(),
    );
    world
        .ec2
        .place_eni(&elsewhere_eni, "subnet-0000000b", DEFAULT_VPC, Default::default());

    let to_forbidden = world.handle(&seed_create("to-forbidden", &source, &forbidden)).await;
    let from_elsewhere = world
        .handle(&seed_create("from-elsewhere", &elsewhere_eni, &allowed))
        .await;

    for (answer, field) in [(&to_forbidden, "ALLOWED_TARGETS"), (&from_elsewhere, "ALLOWED_SOURCES")] {
        let result = first_result(answer);
        assert_eq!(result["errorCode"], "MirroringNotAllowed", "{answer}");
        assert_ne!(result["retryable"], true, "{answer}");
        assert!(
            result["errorMessage"].as_str().is_some_and(|m| m.contains(field)),
            "{answer}"
        );
    }
    assert_eq!(world.counts(), (0, 0, 0), "nothing was made");
    assert!(world.ledger.is_empty(), "nothing was claimed");
    let allowed_answer = world.handle(&seed_create("to-allowed", &source, &allowed)).await;
    made(&allowed_answer);
    assert_eq!(world.counts().0, 1);
}

#[tokio::test]
async fn an_earlier_versions_resources_are_taken_over_only_when_the_ledger_knows_them() {
    let world = fixture();
    let known = made(&world.handle(&seed_create("old-known", &eni(1), &eni(2))).await);
    // As an earlier version tagged everything it made.
    let legacy = "traffic-mirroring";
    let known_ids = [known.0.clone(), known.1.clone(), known.2.clone()];
    let legacy_tag = vec![(MANAGED_BY.to_owned(), legacy.to_owned())];
    world.ec2.retag(&known_ids, &legacy_tag).await.expect("tagged");
    // What the earlier version made and no ledger entry knows.
    let lost = [
        (MANAGED_BY, legacy),
        ("traffic-mirroring:action-id", "lost-old-unknown"),
    ];
    let unknown_target = world.ec2.plant_target(&eni(4), &lost);
    let unknown_filter = world.ec2.plant_filter(&lost);
    let unknown_session = world
        .ec2
        .plant_session_on(&eni(3), &unknown_target, &unknown_filter, 1, &lost);

    let swept = world.sweep(false).await;

    let findings = swept["sweep"]["sweep"]["findings"]
        .as_array()
        .cloned()
        .expect("findings");
    let outcome = |kind: &str, id: &str| {
        findings
            .iter()
            .find(|f| f["kind"] == kind && f["resource"].as_str().is_some_and(|r| r.contains(id)))
            .map(|f| f["outcome"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        outcome("legacy_known", &known.0).as_deref(),
        Some("repaired"),
        "{swept}"
    );
    assert!(
        outcome("legacy_unknown", &unknown_session).is_some_and(|o| o.starts_with("reported")),
        "{swept}"
    );
    for id in &known_ids {
        assert_eq!(
            world.ec2.tag_of(id, MANAGED_BY).as_deref(),
            Some(OWNER),
            "{id} is ours now"
        );
    }
    for id in [&unknown_session, &unknown_filter, &unknown_target] {
        assert!(exists(&world, id), "{id} is left alone");
    }
    // Taken over, the mirror is torn down like any of ours; the unknown one stays.
    let removed = world.handle(&remove("rm-old", &known.0, "")).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    assert!(!exists(&world, &known.0) && !exists(&world, &known.1));
    assert!(exists(&world, &unknown_session));
}
