//! Safe in a shared account: only what this deployment owns is touched, a
//! ledger that lost items never costs a live mirror, every invocation
//! answers before its deadline, the ledger is read as DynamoDB behaves
//! (indexes lag, writes race), events are checked with EC2, and mirrored
//! traffic goes only where it is allowed.

use std::collections::BTreeSet;
use std::time::Duration;
use traffic_mirroring::ports::ActionRecords;

use serde_json::{json, Value};
use traffic_mirroring::aws::ledger::DynamoLedger;
use traffic_mirroring::ports::{ActionKind, Claim, LedgerError, LedgerRecord, RecordStatus};

use crate::support::*;
use crate::sweep::plant;

/// A create's session, filter and target ids, from its answer.
fn made(response: &Value) -> (String, String, String) {
    let result = first_result(response);
    assert_eq!(result["success"], true, "{response}");
    let id = |field: &str| result[field].as_str().expect(field).to_owned();
    (
        id("sessionId"),
        id("trafficMirrorFilterId"),
        id("trafficMirrorTargetId"),
    )
}

#[tokio::test]
async fn two_deployments_in_one_account_never_take_each_others_mirrors() {
    let world = World::start().await;
    let (second, second_config) = world.second_deployment().await;
    let (a_source, a_target, b_source, b_target) = (
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
    );
    let a = made(&world.invoke(&seed_create("a-1", &a_source, &a_target)).await);
    let b_answer = second.handle(&seed_create("b-1", &b_source, &b_target)).await;
    let b = made(&serde_json::to_value(b_answer).expect("json"));
    assert_ne!(
        world.config.owner, second_config.owner,
        "each table gives its own owner"
    );
    assert_eq!(
        world.tag_of(&a.0, "traffic-mirroring:managed-by").await.as_deref(),
        Some(world.config.owner.as_str())
    );

    // The second deployment sweeps, and removes by the first one's target ENI.
    let swept = second.invoke(json!({"sweep": {}})).await.expect("answers");
    let removed = second.handle(&remove("b-rm", "", &a_target)).await;
    let removed = serde_json::to_value(removed).expect("json");

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
    let state = world.mirror_state().await;
    for id in [&a.0, &a.1, &a.2, &b.0, &b.1, &b.2] {
        assert!(
            state.sessions.contains(id) || state.filters.contains(id) || state.targets.contains(id),
            "{id} survives"
        );
    }
    // And the first deployment's own sweep finds nothing to do either.
    let own = world.sweep(false).await;
    assert_eq!(own["sweep"]["sweep"]["findings"], json!([]), "{own}");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_ledger_emptied_under_live_sessions_is_rebuilt_by_the_sweep_and_nothing_is_deleted() {
    let world = World::start().await;
    let (s1, s2, target) = (world.eni().await, world.eni().await, world.eni().await);
    let one = made(&world.invoke(&seed_create("live-1", &s1, &target)).await);
    let two = made(&world.invoke(&seed_create("live-2", &s2, &target)).await);
    assert_eq!(
        (one.1 == two.1, one.2 == two.2),
        (true, true),
        "they share a filter and a target"
    );
    let before = world.mirror_state().await;
    world.empty_ledger().await;

    let swept = world.sweep(false).await;

    let report = &swept["sweep"]["sweep"];
    assert_eq!(swept["sweep"]["success"], true, "{swept}");
    assert_eq!(
        world.mirror_state().await,
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
        world.ledger_item("live-1").await.expect("recorded again")["status"],
        "active"
    );
    assert_eq!(world.disagreements().await, Vec::<String>::new());

    // The rebuilt ledger serves teardown: the shared filter and target go with the last session.
    let removed = world.invoke(&remove("rm-all", "", &target)).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    assert_eq!(world.mirror_state().await, MirrorState::default());
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

/// Every create and its rollback, throttled for ever at the one step a
/// create cannot do without, and a whole account whose EC2 and DynamoDB
/// throttle every call: each invocation answers inside its 30 s, says
/// retry, and leaves nothing made behind.
#[tokio::test]
async fn throttling_without_end_is_answered_before_the_deadline_with_nothing_left() {
    let (world, choked) = tokio::join!(World::start(), World::start());
    // The session step is throttled for ever; deletes (the rollback) are not.
    world
        .emulator
        .fail_next("CreateTrafficMirrorSession", "RequestLimitExceeded", 503, 1_000_000)
        .await;
    let (direct_source, target) = (world.eni().await, world.eni().await);
    let mut records = Vec::new();
    for n in 0..3 {
        let source = world.eni().await;
        let body = seed_create_own_rules(&format!("queued-{n}"), &source, &target, n);
        records.push(sqs_record(&format!("m-{n}"), &body));
    }
    let batch = json!({"Records": records});
    // Every call of every service, for ever.
    let choked_source = choked.eni().await;
    let choked_target = choked.eni().await;
    choked.emulator.throttle(json!("all"), 0.0, 0.0).await;

    let ((direct, direct_took), (queued, queued_took), (everything, everything_took)) = tokio::join!(
        world.invoke_within(&world.app, 30, seed_create("direct", &direct_source, &target)),
        world.invoke_within(&world.app, 30, batch),
        choked.invoke_within(&choked.app, 30, seed_create("choked", &choked_source, &choked_target)),
    );

    for took in [direct_took, queued_took, everything_took] {
        assert!(
            took < Duration::from_secs(30),
            "answered in {took:?}, before the deadline"
        );
    }
    let result = first_result(&direct);
    assert_eq!(
        (result["success"].clone(), result["retryable"].clone()),
        (json!(false), json!(true)),
        "{direct}"
    );
    let handed_back: BTreeSet<&str> = queued["batchItemFailures"]
        .as_array()
        .expect("a batch answer")
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    assert_eq!(
        handed_back,
        BTreeSet::from(["m-0", "m-1", "m-2"]),
        "every record goes back: {queued}"
    );
    let result = first_result(&everything);
    assert_eq!(result["retryable"], true, "{everything}");
    assert_eq!(
        world.our_resources().await,
        MirrorState::default(),
        "nothing half-made in EC2"
    );
    assert_eq!(world.disagreements().await, Vec::<String>::new(), "nor in the ledger");
    choked.emulator.clear_throttle().await;
    assert_eq!(choked.mirror_state().await, MirrorState::default());
    assert_eq!(choked.disagreements().await, Vec::<String>::new());
}

/// A create cut off by its deadline while EC2 was still making its target
/// and its filter: EC2 applies both calls after the function gave up on
/// them, so nobody but this action could know the ids. The rollback asks
/// again with the same client tokens, learns them and deletes both; a late
/// original then makes nothing new.
#[tokio::test]
async fn a_target_and_filter_whose_creates_were_cut_off_are_rolled_back() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    // 20 s: work stops at 13.5 s (5 s and 1.5 s are kept back), while both
    // creates are held until the function has answered, then applied.
    world.emulator.hold_until_released("CreateTrafficMirrorTarget").await;
    world.emulator.hold_until_released("CreateTrafficMirrorFilter").await;
    let (answer, took) = world
        .invoke_within(&world.app, 20, seed_create("cut-off", &source, &target))
        .await;
    assert!(took < Duration::from_secs(20), "answered in {took:?}");
    let result = first_result(&answer);
    assert_eq!(
        (result["success"].clone(), result["retryable"].clone()),
        (json!(false), json!(true)),
        "{answer}"
    );
    // Once the held calls have been applied, nothing of them is left.
    for call in ["CreateTrafficMirrorTarget", "CreateTrafficMirrorFilter"] {
        world.emulator.release_and_wait_applied(call).await;
    }
    assert_eq!(world.mirror_state().await, MirrorState::default(), "{answer}");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
    let retried = world.invoke(&seed_create("cut-off", &source, &target)).await;
    let (_, filter, mirror_target) = made(&retried);
    let state = world.mirror_state().await;
    assert_eq!(
        (state.filters.len(), state.targets.len()),
        (1, 1),
        "the retry made one of each: {state:?}"
    );
    assert!(state.filters.contains(&filter) && state.targets.contains(&mirror_target));
}

/// The same for the session: held past the deadline, applied after the
/// function gave up on it, and still deleted by the rollback. Another mirror
/// keeps the target and the filter, so the late session would find them.
#[tokio::test]
async fn a_session_whose_create_was_cut_off_is_rolled_back() {
    let world = World::start().await;
    let (keeper, source, target) = (world.eni().await, world.eni().await, world.eni().await);
    let kept = world.invoke(&seed_create("keeper", &keeper, &target)).await;
    assert_eq!(first_result(&kept)["success"], true, "{kept}");
    let before = world.mirror_state().await;
    world.emulator.hold_until_released("CreateTrafficMirrorSession").await;
    let (answer, _) = world
        .invoke_within(&world.app, 20, seed_create("session-cut-off", &source, &target))
        .await;
    assert_eq!(first_result(&answer)["retryable"], json!(true), "{answer}");
    world
        .emulator
        .release_and_wait_applied("CreateTrafficMirrorSession")
        .await;
    assert_eq!(world.mirror_state().await, before, "only the keeper's mirror: {answer}");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

/// With the indexes behind by seconds, a remove right after a create finds
/// what the create made through EC2 and the record's own key, and takes
/// down all of it: session, filter, target and record.
#[tokio::test]
async fn a_remove_right_after_a_create_takes_everything_while_the_index_lags() {
    let world = World::start().await;
    world.emulator.configure(json!({"index_lag_ms": 60_000})).await;
    let target_tag = "traffic-mirroring:target-eni";
    let kinds = ["targetNicId", "sessionId", "reservationId", "instance"];
    for kind in kinds {
        let (source, target) = (world.eni().await, world.eni().await);
        let action = format!("lagged-{kind}");
        let (created, instance) = if kind == "instance" {
            let instance = world.instance("m5.large", &[(target_tag, &target)]).await;
            let answer = world
                .app
                .invoke(state_change(&instance, "running"))
                .await
                .expect("answer");
            assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
            (answer["actionResults"][0].clone(), Some(instance))
        } else {
            let mut request = seed_create(&action, &source, &target);
            request["driverRequest"]["reservationId"] = json!(format!("res-{kind}"));
            let answer = world.invoke(&request).await;
            (first_result(&answer).clone(), None)
        };
        assert_eq!(created["success"], true, "{created}");
        let session = created["sessionId"].as_str().expect("session").to_owned();

        let answer = match kind {
            "targetNicId" => world.invoke(&remove("rm-target", "", &target)).await,
            "sessionId" => world.invoke(&remove("rm-session", &session, "")).await,
            "reservationId" => {
                world
                    .invoke(&json!({"driverRequest": {"actions": [{"actionId": "rm-res",
                        "type": "RemoveTrafficMirroring", "sessionId": "", "targetNicId": "",
                        "reservationId": "res-reservationId"}]}}))
                    .await
            }
            _ => {
                let instance = instance.clone().expect("an instance");
                world.terminate(&instance).await;
                let answer = world
                    .app
                    .invoke(state_change(&instance, "terminated"))
                    .await
                    .expect("answer");
                json!({"driverResponse": {"actionResults": answer["actionResults"].clone()}})
            }
        };

        assert_eq!(first_result(&answer)["success"], true, "{kind}: {answer}");
        assert_eq!(
            world.our_resources().await,
            MirrorState::default(),
            "{kind}: nothing of ours is left"
        );
        let record = world
            .ledger()
            .await
            .into_iter()
            .find(|item| item["sessionId"] == session.as_str())
            .expect("the record stays, finished");
        assert_eq!(record["status"], "removed", "{kind}");
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{kind}");
    }
}

#[tokio::test]
async fn a_termination_event_for_a_running_instance_is_ignored() {
    let world = World::start().await;
    let target = world.eni().await;
    let instance = world
        .instance("m5.large", &[("traffic-mirroring:target-eni", &target)])
        .await;
    world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("mirrored");
    let before = world.mirror_state().await;
    assert_eq!(before.sessions.len(), 1);

    let forged = world
        .app
        .invoke(state_change(&instance, "terminated"))
        .await
        .expect("answer");
    let queued = world
        .app
        .invoke(json!({"Records": [sqs_record("m-1", &state_change(&instance, "shutting-down"))]}))
        .await
        .expect("answer");

    assert!(
        forged["skipped"]
            .as_str()
            .is_some_and(|r| r.contains("ignored") && r.contains("running")),
        "the answer says it was ignored and why: {forged}"
    );
    assert_eq!(queued["batchItemFailures"], json!([]), "nothing to retry: {queued}");
    assert_eq!(world.mirror_state().await, before, "nothing was removed");
    let record = world
        .ledger()
        .await
        .into_iter()
        .find(|item| item["instanceId"] == instance.as_str() && item["kind"] == "create")
        .expect("record");
    assert_eq!(record["status"], "active");
}

/// The maker of a shared filter that takes longer than its lease loses it
/// to another: the other's filter is the one, the first maker's is rolled
/// back and its create answered retryable, and its retry joins.
#[tokio::test]
async fn a_maker_that_loses_its_lease_fails_retryably_and_leaves_one_filter() {
    let world = World::start().await;
    world
        .emulator
        .configure(json!({"latency_ms": {"CreateTrafficMirrorFilter": 4000}}))
        .await;
    let (slow, other) = (world.app_with_lease(1), world.app_with_lease(1));
    let (s1, s2, target) = (world.eni().await, world.eni().await, world.eni().await);

    let late = async {
        tokio::time::sleep(Duration::from_millis(2200)).await;
        other.handle(&seed_create("maker-2", &s2, &target)).await
    };
    let first_request = seed_create("maker-1", &s1, &target);
    let (first, second) = tokio::join!(slow.handle(&first_request), late);
    let (first, second) = (
        serde_json::to_value(first).expect("json"),
        serde_json::to_value(second).expect("json"),
    );

    let result = first_result(&first);
    assert_eq!(result["errorCode"], "MakerLeaseLost", "{first}");
    assert_eq!(result["retryable"], true, "{first}");
    let (_, filter, _) = made(&second);
    assert_eq!(
        world.mirror_state().await.filters,
        BTreeSet::from([filter.clone()]),
        "one filter"
    );
    world
        .emulator
        .configure(json!({"latency_ms": {"CreateTrafficMirrorFilter": 0}}))
        .await;
    let retried = world.invoke(&seed_create("maker-1", &s1, &target)).await;
    assert_eq!(made(&retried).1, filter, "the retry joins the other's filter");
    assert_eq!(world.mirror_state().await.filters.len(), 1);
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_duplicate_delivery_of_an_action_in_progress_publishes_nothing() {
    let world = World::start().await;
    // The first delivery's session call is held until the duplicate has been answered.
    world.emulator.hold_until_released("CreateTrafficMirrorSession").await;
    let (source, target) = (world.eni().await, world.eni().await);
    let request = seed_create("once", &source, &target);
    let duplicate = async {
        world.emulator.wait_held("CreateTrafficMirrorSession").await;
        let answer = world.invoke(&request).await;
        world.emulator.release("CreateTrafficMirrorSession").await;
        answer
    };

    let (first, second) = tokio::join!(world.invoke(&request), duplicate);

    assert_eq!(first_result(&first)["success"], true, "{first}");
    let again = first_result(&second);
    assert_eq!(
        (again["errorCode"].clone(), again["retryable"].clone()),
        (json!("ActionInProgress"), json!(true)),
        "{second}"
    );
    let events = world.events_within(2, Duration::from_secs(3)).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    assert_eq!(kinds, vec!["TrafficMirroringCreated"], "one final event: {events:?}");
}

#[tokio::test]
async fn finished_records_expire_and_live_ones_never_do() {
    let world = World::start().await;
    let (source, target, other) = (world.eni().await, world.eni().await, world.eni().await);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let kept = world.config.finished_record_days as f64 * 86_400.0;
    let expires = |item: &Value| item["expiresAt"].as_f64();
    made(&world.invoke(&seed_create("ttl-live", &source, &target)).await);
    assert_eq!(expires(&world.ledger_item("ttl-live").await.expect("record")), None);
    world
        .emulator
        .fail_next("CreateTrafficMirrorSession", "InvalidParameterValue", 400, 1)
        .await;
    let failed = world.invoke(&seed_create("ttl-failed", &other, &target)).await;
    assert_eq!(first_result(&failed)["success"], false);

    world.invoke(&remove("ttl-rm", "", &target)).await;

    for action in ["ttl-live", "ttl-failed", "ttl-rm"] {
        let item = world.ledger_item(action).await.expect("record");
        let at = expires(&item).unwrap_or_else(|| panic!("{action} has a TTL: {item}"));
        assert!((at - now - kept).abs() < 120.0, "{action}: {at}");
    }
    // Taken up again, a failed action is live and loses its TTL.
    let retried = world.invoke(&seed_create("ttl-failed", &other, &target)).await;
    made(&retried);
    assert_eq!(expires(&world.ledger_item("ttl-failed").await.expect("record")), None);
}

#[tokio::test]
async fn a_record_is_replaced_only_from_the_version_it_was_read_at() {
    let world = World::start().await;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&world.sdk), &world.config.table_name);
    let mut record = LedgerRecord {
        action_id: "versioned".into(),
        kind: Some(ActionKind::Create),
        status: Some(RecordStatus::Pending),
        ..LedgerRecord::default()
    };
    let Ok(Claim::Granted { version, .. }) = ledger.claim(&record, 60).await else {
        panic!("claimed");
    };
    record.version = version;
    let mut stale = record.clone();
    record.status = Some(RecordStatus::Active);
    ledger.save(&mut record).await.expect("saved from the version read");
    assert_eq!(record.version, version + 1);

    stale.status = Some(RecordStatus::Failed);
    let lost = ledger.save(&mut stale).await;

    assert_eq!(lost, Err(LedgerError::Conflict("versioned".into())));
    let stored = ledger.get("versioned").await.expect("read").expect("exists");
    assert_eq!(stored.status, Some(RecordStatus::Active), "the first write stands");
}

#[tokio::test]
async fn only_allowed_destinations_and_sources_are_mirrored() {
    let world = World::start().await;
    let (source, allowed, forbidden) = (world.eni().await, world.eni().await, world.eni().await);
    let elsewhere = world
        .ec2
        .create_subnet()
        .vpc_id(
            world
                .ec2
                .describe_subnets()
                .subnet_ids(&world.subnet_id)
                .send()
                .await
                .expect("subnet")
                .subnets()[0]
                .vpc_id()
                .expect("vpc"),
        )
        .cidr_block("10.0.2.0/24")
        .send()
        .await
        .expect("subnet");
    let elsewhere_eni = world
        .ec2
        .create_network_interface()
        .subnet_id(elsewhere.subnet().and_then(|s| s.subnet_id()).expect("id"))
        .send()
        .await
        .expect("eni")
        .network_interface()
        .and_then(|e| e.network_interface_id())
        .expect("id")
        .to_owned();
    let app = world.app_with(|config| {
        config.allowed_targets = AllowList::Only(BTreeSet::from([allowed.clone()]));
        config.allowed_sources = AllowList::Only(BTreeSet::from([world.subnet_id.clone()]));
    });
    let app = &app;
    let invoke = |request: Value| async move { serde_json::to_value(app.handle(&request).await).expect("json") };

    let to_forbidden = invoke(seed_create("to-forbidden", &source, &forbidden)).await;
    let from_elsewhere = invoke(seed_create("from-elsewhere", &elsewhere_eni, &allowed)).await;

    for (answer, field) in [(&to_forbidden, "ALLOWED_TARGETS"), (&from_elsewhere, "ALLOWED_SOURCES")] {
        let result = first_result(answer);
        assert_eq!(result["errorCode"], "MirroringNotAllowed", "{answer}");
        assert_ne!(result["retryable"], true, "{answer}");
        assert!(
            result["errorMessage"].as_str().is_some_and(|m| m.contains(field)),
            "{answer}"
        );
    }
    assert_eq!(world.mirror_state().await, MirrorState::default(), "nothing was made");
    assert!(world.ledger().await.is_empty(), "nothing was claimed");
    let allowed_answer = invoke(seed_create("to-allowed", &source, &allowed)).await;
    made(&allowed_answer);
    assert_eq!(world.mirror_state().await.sessions.len(), 1);
}

#[tokio::test]
async fn an_earlier_versions_resources_are_taken_over_only_when_the_ledger_knows_them() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let known = made(&world.invoke(&seed_create("old-known", &source, &target)).await);
    // As an earlier version tagged everything it made.
    let legacy = "traffic-mirroring";
    world
        .tag(&[&known.0, &known.1, &known.2], "traffic-mirroring:managed-by", legacy)
        .await;
    let unknown = plant(&world, "old-unknown", legacy, true).await;

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
    let unknown_session = unknown.session.clone().expect("a session");
    assert!(
        outcome("legacy_unknown", &unknown_session).is_some_and(|o| o.starts_with("reported")),
        "{swept}"
    );
    for id in [&known.0, &known.1, &known.2] {
        assert_eq!(
            world.tag_of(id, "traffic-mirroring:managed-by").await.as_deref(),
            Some(world.config.owner.as_str()),
            "{id} is ours now"
        );
    }
    let state = world.mirror_state().await;
    for id in [&unknown_session, &unknown.filter, &unknown.target] {
        assert!(
            state.sessions.contains(id) || state.filters.contains(id) || state.targets.contains(id),
            "{id} is left alone"
        );
    }
    // Taken over, the mirror is torn down like any of ours; the unknown one stays.
    let removed = world.invoke(&remove("rm-old", &known.0, "")).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    let state = world.mirror_state().await;
    assert!(!state.sessions.contains(&known.0) && !state.filters.contains(&known.1));
    assert!(state.sessions.contains(&unknown_session));
}

#[tokio::test]
async fn a_sweep_short_of_time_defers_its_repairs_to_the_next_run() {
    let world = World::start().await;
    let unused = plant(&world, "late", &world.config.owner, false).await;

    // Time only for the listing: every repair is left for later.
    let (short, _) = world.invoke_within(&world.app, 3, json!({"sweep": {}})).await;

    let report = &short["sweep"]["sweep"];
    assert_eq!(report["complete"], false, "{short}");
    assert_eq!(report["deferred"], json!(2), "{short}");
    let state = world.mirror_state().await;
    assert!(state.filters.contains(&unused.filter) && state.targets.contains(&unused.target));
    let full = world.sweep(false).await;
    assert_eq!(full["sweep"]["sweep"]["repaired"], json!(2), "{full}");
    assert_eq!(world.mirror_state().await, MirrorState::default());
}

/// A remove that finds in EC2 the session of a create still being carried
/// out leaves it (the create is about to record it) and asks to be retried.
#[tokio::test]
async fn a_remove_during_a_create_leaves_its_session_and_asks_for_a_retry() {
    let world = World::start().await;
    // The create's final write (its one PutItem) is held, its session made,
    // until the remove has been answered.
    world.emulator.hold_until_released("PutItem").await;
    let (source, target) = (world.eni().await, world.eni().await);
    let early_remove = async {
        world.emulator.wait_held("PutItem").await;
        let removed = world.invoke(&remove("rm-early", "", &target)).await;
        world.emulator.release("PutItem").await;
        removed
    };

    let create = seed_create("slow", &source, &target);
    let (created, removed) = tokio::join!(world.invoke(&create), early_remove);

    let (session, _, _) = made(&created);
    let result = first_result(&removed);
    assert_eq!(
        (result["errorCode"].clone(), result["retryable"].clone()),
        (json!("SessionBeingCreated"), json!(true)),
        "{removed}"
    );
    assert!(
        world.mirror_state().await.sessions.contains(&session),
        "the session stays"
    );
    assert_eq!(world.ledger_item("slow").await.expect("record")["status"], "active");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}
