//! Patience with what only the wire shows: throttling that outlasts the
//! SDK's own retries, and a paced write whose turn comes after the deadline.
//! Every kind of target, an existing filter and the dry run are shown on the
//! fakes (tests/logic/kinds.rs).

use crate::support::*;

#[tokio::test]
async fn throttling_longer_than_the_sdk_retries_is_outlasted_within_the_invocation() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    // The SDK would try six times; these seven refusals outlast it. (Seven
    // pauses of full jitter take at most 43 s, inside the 60 s a call
    // without a deadline is given: ten could take 78 s, and sometimes did.)
    world
        .emulator
        .fail_next("CreateTrafficMirrorSession", "RequestLimitExceeded", 503, 7)
        .await;

    let response = world.invoke(&seed_create("patient-1", &source, &target)).await;

    assert_eq!(first_result(&response)["success"], true, "{response}");
    let attempts = world
        .emulator
        .calls()
        .await
        .iter()
        .filter(|c| c["action"] == "CreateTrafficMirrorSession")
        .count();
    assert_eq!(attempts, 8, "seven throttled attempts, then the one that passed");
    assert_eq!(world.mirror_state().await.sessions.len(), 1);
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_write_whose_turn_comes_after_the_deadline_is_not_made_and_the_action_is_retried_later() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let mut config = world.config.clone();
    // One write every two seconds: the target takes the only turn at hand.
    config.mutating_calls_per_second = Some(0.5);
    let app = traffic_mirroring::app::build(&world.sdk, &config);
    let request = seed_create("late-1", &source, &target);
    // 3 s are kept to roll back and answer; half a second is left to wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(3500);

    let response = traffic_mirroring::deadline::within(deadline, app.handle(&request)).await;

    let response = serde_json::to_value(response).expect("json");
    let result = first_result(&response);
    assert_eq!(result["errorCode"], "PacedPastDeadline", "{response}");
    assert_eq!(result["retryable"], true);
    assert_eq!(
        world.mirror_state().await,
        MirrorState::default(),
        "the rollback still ran"
    );
    assert_eq!(world.disagreements().await, Vec::<String>::new());

    let retry = serde_json::to_value(app.handle(&request).await).expect("json");
    assert_eq!(first_result(&retry)["success"], true, "{retry}");
}
