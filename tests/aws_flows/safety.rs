//! Safe in a shared account, where only the wire shows it: every
//! invocation answers before its deadline (throttled without end, calls cut
//! off in flight, a sweep short of time), the ledger is read as DynamoDB
//! behaves (indexes lag, leases run out, writes race, records expire), and a
//! duplicate or a remove meeting a create in flight is told apart. Ownership
//! between deployments, a lost ledger rebuilt, forged terminations, the
//! allow-lists and taking over an earlier version's resources are shown on
//! the fakes (tests/logic/safety.rs).

use std::collections::BTreeSet;
use std::time::Duration;
use traffic_mirroring::ports::ActionRecords;

use serde_json::{json, Value};
use traffic_mirroring::aws::ledger::DynamoLedger;
use traffic_mirroring::ports::{ActionKind, Claim, LedgerError, LedgerRecord, RecordStatus};

use crate::support::*;
use crate::sweep::plant;

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
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&world.sdk), &world.config.table_name)
        .ports()
        .records;
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
