//! Faults injected through the emulator at each step a create or remove makes.

use std::collections::HashMap;

use crate::support::*;
use std::time::{Duration, Instant};
use traffic_mirroring::deadline::within;

/// The AWS calls an action makes, read from the emulator's log while it runs
/// once without faults: (action, how many calls of that action came before).
/// The completion event (EventBridge) is left out: its loss must not change
/// the result, which `events.rs` shows.
async fn calls_made_by(world: &World, request: &serde_json::Value) -> Vec<(String, usize)> {
    world.emulator.clear_calls().await;
    let response = world.invoke(request).await;
    assert_eq!(first_result(&response)["success"], true, "{response}");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut calls = Vec::new();
    for call in world.emulator.calls().await {
        if call["service"] == "events" {
            continue;
        }
        let action = call["action"].as_str().expect("action").to_owned();
        let before = seen.entry(action.clone()).or_default();
        calls.push((action, *before));
        *before += 1;
    }
    calls
}

/// A refusal the SDK does not retry, in the calling service's own words.
fn refusal(action: &str) -> (&'static str, u16) {
    if action.contains("Traffic") || action.starts_with("Describe") {
        ("UnauthorizedOperation", 403)
    } else {
        ("AccessDeniedException", 400)
    }
}

/// The completion event that has the last word on an action: a create whose
/// final ledger write fails after its success was announced sends a failure
/// that supersedes it.
async fn failure_event(world: &World, action_id: &str) -> serde_json::Value {
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.extend(
            world
                .events(1)
                .await
                .into_iter()
                .filter(|e| e["detail"]["actionId"] == action_id),
        );
        if seen.iter().any(|e| e["detail-type"] != "TrafficMirroringCreated") {
            break;
        }
    }
    let last_word = seen
        .iter()
        .position(|e| e["detail-type"] != "TrafficMirroringCreated")
        .or_else(|| seen.len().checked_sub(1));
    match last_word {
        Some(index) => seen.swap_remove(index),
        None => panic!("no completion event for {action_id}"),
    }
}

#[tokio::test]
async fn a_failure_at_any_create_call_leaves_ec2_and_ledger_agreeing_and_is_reported() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let calls = calls_made_by(&world, &seed_create("fault-baseline", &source, &target)).await;
    world.events(1).await;
    assert!(calls.len() >= 12, "a create makes many calls: {calls:?}");
    // Calls a create can do without: the claim of its guessed session
    // number (an UpdateItem beside the first reads; the number is then
    // claimed in a round of its own), and the reads of the delivery check,
    // which only warns (beside the create, so its failure costs no mirror).
    // Every other failure fails the create.
    let advisory = [
        "DescribeNetworkInterfaces",
        "DescribeSecurityGroups",
        "DescribeNetworkAcls",
    ];
    let mut done_without = Vec::new();
    for (n, (action, after)) in calls.iter().enumerate() {
        let step = format!("{action} #{after}");
        if advisory.contains(&action.as_str()) {
            let (source, target) = (world.eni().await, world.eni().await);
            let action_id = format!("fault-{n}");
            world
                .emulator
                .fail_call_after(action, *after, "InternalError", 500)
                .await;
            let response = world
                .invoke(&seed_create_own_rules(&action_id, &source, &target, n))
                .await;
            world.emulator.clear_faults().await;
            assert_eq!(first_result(&response)["success"], true, "{step}: {response}");
            world.events(1).await;
            done_without.push(step.clone());
            continue;
        }
        let (source, target) = (world.eni().await, world.eni().await);
        let action_id = format!("fault-{n}");
        let before = world.mirror_state().await;
        let (code, status) = refusal(action);
        world.emulator.fail_call_after(action, *after, code, status).await;

        // A rule set of its own, so that this create makes every call the baseline made.
        let request = seed_create_own_rules(&action_id, &source, &target, n);
        let response = world.invoke(&request).await;

        let result = first_result(&response);
        if result["success"] == true && action == "UpdateItem" {
            done_without.push(step.clone());
            assert_eq!(world.disagreements().await, Vec::<String>::new(), "{step}");
            let state = world.mirror_state().await;
            assert_eq!(
                state.sessions.len(),
                before.sessions.len() + 1,
                "{step}: mirrored all the same"
            );
            let event = failure_event(&world, &action_id).await;
            assert_eq!(event["detail-type"], "TrafficMirroringCreated", "{step}");
            world.emulator.clear_faults().await;
            continue;
        }
        assert_eq!(result["success"], false, "{step}: {response}");
        assert_eq!(result["errorCode"], code, "{step}: {response}");
        assert!(
            result["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("injected failure of {action}"))),
            "{step}: the caller is told what failed: {response}"
        );
        assert_eq!(world.mirror_state().await, before, "{step}: EC2 must be as before");
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{step}");
        let event = failure_event(&world, &action_id).await;
        assert_eq!(event["detail-type"], "TrafficMirroringFailed", "{step}");
        assert_eq!(event["detail"]["errorCode"], code, "{step}");
        world.emulator.clear_faults().await;

        // The same action, retried, now succeeds: its client tokens are fresh.
        let retry = world.invoke(&request).await;
        assert_eq!(first_result(&retry)["success"], true, "{step} retry: {retry}");
        world.events(1).await;
        let state = world.mirror_state().await;
        assert_eq!(
            state.sessions.len(),
            before.sessions.len() + 1,
            "{step}: one new session"
        );
        assert_eq!(state.filters.len(), before.filters.len() + 1, "{step}: one new filter");
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{step} retry");
    }
    // Round 1's writes race, so which of them a fault meets varies from run
    // to run: any UpdateItem step may be the guess, and a success there is
    // checked above to have mirrored with EC2 and the ledger agreeing.
    // `tests/logic` fails the guess itself, deterministically. Every other
    // kind of call must fail the create.
    assert!(done_without.len() < calls.len(), "{done_without:?}");
}

#[tokio::test]
async fn a_failure_at_any_remove_call_leaves_ec2_and_ledger_agreeing_and_is_reported() {
    let world = World::start().await;
    let mirror = |label: String| {
        let world = &world;
        async move {
            let (source, target) = (world.eni().await, world.eni().await);
            let created = world.invoke(&seed_create(&label, &source, &target)).await;
            world.events(1).await;
            first_result(&created)["sessionId"]
                .as_str()
                .expect("session")
                .to_owned()
        }
    };
    let session = mirror("rm-baseline".into()).await;
    let calls = calls_made_by(&world, &remove("rm-baseline-rm", &session, "")).await;
    world.events(1).await;
    assert!(calls.len() >= 8, "a remove makes many calls: {calls:?}");
    for (n, (action, after)) in calls.iter().enumerate() {
        let step = format!("{action} #{after}");
        let before = world.our_resources().await;
        let session = mirror(format!("rm-{n}")).await;
        let remove_id = format!("rm-{n}-rm");
        let (code, status) = refusal(action);
        world.emulator.fail_call_after(action, *after, code, status).await;

        let response = world.invoke(&remove(&remove_id, &session, "")).await;

        let result = first_result(&response);
        let event = failure_event(&world, &remove_id).await;
        if result["success"] == true {
            // A success is only right if the mirror is gone, or the answer
            // names the unused target that stayed (losing the remove's own
            // replay record loses nothing: a retry finds the mirror gone).
            let says_what_stayed = result["infoMessage"]
                .as_str()
                .is_some_and(|m| m.contains("could not delete unused target"));
            assert!(
                says_what_stayed || world.our_resources().await == before,
                "{step}: {response}"
            );
            assert_eq!(event["detail-type"], "TrafficMirroringRemoved", "{step}");
        } else {
            assert_eq!(result["errorCode"], code, "{step}: {response}");
            assert!(
                result["errorMessage"].as_str().is_some_and(|m| !m.is_empty()),
                "{step}: {response}"
            );
            assert_eq!(event["detail-type"], "TrafficMirroringFailed", "{step}");
        }
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{step}");
        world.emulator.clear_faults().await;

        // A retry (and, for a target left behind, the sweep) finishes the job.
        world.invoke(&remove(&remove_id, &session, "")).await;
        world.events(1).await;
        world.sweep(false).await;
        world.events(1).await;
        assert_eq!(
            world.our_resources().await,
            before,
            "{step}: nothing of the mirror is left"
        );
        assert_eq!(
            world.disagreements().await,
            Vec::<String>::new(),
            "{step} after the retry"
        );
    }
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_the_create_succeeds() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    world
        .emulator
        .fail_next("CreateTrafficMirrorSession", "RequestLimitExceeded", 503, 2)
        .await;
    let response = world.invoke(&seed_create("throttled-1", &source, &target)).await;
    assert_eq!(first_result(&response)["success"], true, "{response}");
    let calls = world.emulator.calls().await;
    let attempts = calls
        .iter()
        .filter(|c| c["action"] == "CreateTrafficMirrorSession")
        .count();
    assert_eq!(attempts, 3, "two throttled attempts, then the one that passed");
    assert_eq!(world.mirror_state().await.sessions.len(), 1);
}

#[tokio::test]
async fn persistent_throttling_is_reported_as_retryable_and_rolled_back() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    world
        .emulator
        .fail_next("CreateTrafficMirrorSession", "RequestLimitExceeded", 503, 40)
        .await;
    // Throttling is outlasted only while the invocation has time left.
    // Long enough for the SDK's own retries to end in throttling, short of the 40 faults.
    let deadline = Instant::now() + Duration::from_secs(8);
    let response = within(deadline, world.invoke(&seed_create("throttled-2", &source, &target))).await;
    let result = first_result(&response);
    assert_eq!(result["success"], false);
    assert_eq!(result["errorCode"], "RequestLimitExceeded");
    assert_eq!(result["retryable"], true);
    assert_eq!(world.mirror_state().await, MirrorState::default());
}

#[tokio::test]
async fn a_failed_rollback_is_reported_and_recorded_with_what_is_left() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    world
        .emulator
        .fail_next("CreateTrafficMirrorSession", "UnauthorizedOperation", 403, 1)
        .await;
    world
        .emulator
        .fail_next("DeleteTrafficMirrorFilter", "UnauthorizedOperation", 403, 1)
        .await;
    let response = world.invoke(&seed_create("stuck-1", &source, &target)).await;
    let result = first_result(&response);
    assert_eq!(result["success"], false);
    let filter = world
        .mirror_state()
        .await
        .filters
        .into_iter()
        .next()
        .expect("the filter is left");
    assert!(
        result["errorMessage"].as_str().is_some_and(|m| m.contains(&filter)),
        "{response}"
    );
    let record = world.ledger_item("stuck-1").await.expect("record");
    assert_eq!(record["status"], "rollback_incomplete");
    assert_eq!(
        record["filterId"],
        filter.as_str(),
        "the ledger knows what EC2 still holds"
    );
}

#[tokio::test]
async fn a_failed_remove_step_is_reported_and_the_retry_finishes_it() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let created = world.invoke(&create("rf-1", &source, &target, None)).await;
    let session = first_result(&created)["sessionId"].as_str().expect("id").to_owned();
    world
        .emulator
        .fail_next("DeleteTrafficMirrorFilter", "UnauthorizedOperation", 403, 1)
        .await;

    let response = world.invoke(&remove("rf-rm-1", &session, "")).await;
    let result = first_result(&response);
    assert_eq!(result["success"], false, "{response}");
    assert_eq!(result["errorCode"], "UnauthorizedOperation");
    assert_eq!(
        world.ledger_item("rf-1").await.expect("record")["status"],
        "removing",
        "the half-done remove stays recorded, for a retry or the sweep"
    );

    let retry = world.invoke(&remove("rf-rm-1", &session, "")).await;
    assert_eq!(first_result(&retry)["success"], true, "{retry}");
    assert_eq!(world.mirror_state().await, MirrorState::default());
}

#[tokio::test]
async fn dynamodb_throttling_is_retried_by_the_sdk_with_backoff() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    world
        .emulator
        .fail_next("UpdateItem", "ProvisionedThroughputExceededException", 400, 1)
        .await;
    // Four throttles: the SDK's full-jitter pauses (up to 0.1, 0.2, 0.4, 0.8 s)
    // then add up to more than 50 ms but for a chance of about 1 in 25,000
    // (with two, it was 1 in 16).
    world.emulator.fail_next("PutItem", "ThrottlingException", 400, 4).await;
    world.emulator.clear_calls().await;

    let response = world.invoke(&seed_create("ddb-throttled", &source, &target)).await;

    assert_eq!(first_result(&response)["success"], true, "{response}");
    let calls = world.emulator.calls().await;
    let puts: Vec<&serde_json::Value> = calls.iter().filter(|c| c["action"] == "PutItem").collect();
    assert_eq!(puts.len(), 5, "four throttled writes, then the one that passed");
    // Backoff: the retries wait, they do not hammer.
    let gap = puts[4]["start"].as_f64().unwrap_or_default() - puts[0]["end"].as_f64().unwrap_or_default();
    assert!(gap > 0.05, "retries back off ({gap:.3} s)");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}
