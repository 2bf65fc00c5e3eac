//! Faults injected through the emulator at each step a create or remove makes.

use crate::support::*;

/// Every AWS call a create makes, in order, with the ledger's final write last.
const CREATE_STEPS: &[&str] = &[
    "UpdateItem",
    "DescribeTrafficMirrorTargets",
    "DescribeTrafficMirrorSessions",
    "CreateTrafficMirrorTarget",
    "CreateTrafficMirrorFilter",
    "CreateTrafficMirrorFilterRule",
    "CreateTrafficMirrorSession",
    "PutItem",
];

#[tokio::test]
async fn a_failure_at_any_create_step_leaves_nothing_behind_and_a_retry_succeeds() {
    let world = World::start().await;
    for (n, step) in CREATE_STEPS.iter().enumerate() {
        let (source, target) = (world.eni().await, world.eni().await);
        let action_id = format!("fault-{n}");
        let before = world.mirror_state().await;
        // A 400 the SDK does not retry, so the failure reaches our code.
        world.emulator.fail_next(step, "UnauthorizedOperation", 403, 1).await;

        let response = world.invoke(&seed_create(&action_id, &source, &target)).await;

        let result = first_result(&response);
        assert_eq!(result["success"], false, "{step}: {response}");
        assert_eq!(result["errorCode"], "UnauthorizedOperation", "{step}");
        assert!(
            result["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("injected failure")),
            "{step}"
        );
        assert_eq!(world.mirror_state().await, before, "{step}: EC2 must be as before");
        if let Some(record) = world.ledger_item(&action_id).await {
            assert_eq!(record["status"], "failed", "{step}");
            for field in ["sessionId", "filterId", "targetId"] {
                assert!(
                    record.get(field).is_none(),
                    "{step}: the ledger names no resource, got {record}"
                );
            }
        }
        world.emulator.clear_faults().await;

        // The same action, retried, now succeeds: its client tokens are fresh.
        let retry = world.invoke(&seed_create(&action_id, &source, &target)).await;
        assert_eq!(first_result(&retry)["success"], true, "{step} retry: {retry}");
        let state = world.mirror_state().await;
        assert_eq!(
            state.sessions.len(),
            before.sessions.len() + 1,
            "{step}: exactly one new session"
        );
        assert_eq!(
            state.filters.len(),
            before.filters.len() + 1,
            "{step}: exactly one new filter"
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
        .fail_next("CreateTrafficMirrorSession", "RequestLimitExceeded", 503, 10)
        .await;
    let response = world.invoke(&seed_create("throttled-2", &source, &target)).await;
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
