//! Several instances of the function at once, sharing nothing but AWS: the
//! claims in DynamoDB must keep them from making twins or breaking quotas.
//! Every EC2 call takes a modelled 15 ms outside the emulator's lock, so the
//! invocations really interleave.

use futures::future::join_all;
use serde_json::Value;
use traffic_mirroring::handler::App;

use crate::support::*;

/// Ten function instances, as ten Lambda sandboxes would be.
fn sandboxes(world: &World) -> Vec<App> {
    (0..10).map(|_| world.another_app()).collect()
}

async fn with_latency(world: &World) {
    world
        .emulator
        .configure(serde_json::json!({"latency_ms": {"default": 15}}))
        .await;
}

/// Runs each request on the next sandbox, all at once.
async fn all_at_once(apps: &[App], requests: &[Value]) -> Vec<Value> {
    let calls = requests.iter().enumerate().map(|(i, request)| {
        let app = &apps[i % apps.len()];
        async move { serde_json::to_value(app.handle(request).await).expect("serializes") }
    });
    join_all(calls).await
}

fn codes(responses: &[Value]) -> Vec<String> {
    responses
        .iter()
        .map(|r| {
            let result = first_result(r);
            if result["success"] == true {
                "ok".to_owned()
            } else {
                result["errorCode"].as_str().unwrap_or("?").to_owned()
            }
        })
        .collect()
}

#[tokio::test]
async fn fifty_creates_to_one_target_make_one_target_and_at_most_ten_sessions() {
    let world = World::start().await;
    let target = world.eni().await;
    let mut requests = Vec::new();
    for i in 0..50 {
        let source = world.eni().await;
        requests.push(create(&format!("fan-in-{i}"), &source, &target, None));
    }
    with_latency(&world).await;
    let apps = sandboxes(&world);

    let responses = all_at_once(&apps, &requests).await;

    let codes = codes(&responses);
    let succeeded = codes.iter().filter(|c| *c == "ok").count();
    let refused = codes
        .iter()
        .filter(|c| *c == "TrafficMirrorSourcesPerTargetLimitExceeded")
        .count();
    assert_eq!(succeeded, 10, "the target takes ten sources: {codes:?}");
    assert_eq!(refused, 40, "the rest get a clear quota error: {codes:?}");
    let state = world.mirror_state().await;
    assert_eq!(state.targets.len(), 1, "exactly one mirror target");
    assert_eq!(state.sessions.len(), 10);
    assert_eq!(state.filters.len(), 1, "one rule set, one shared filter, made once");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn ten_creates_on_one_source_make_three_sessions_with_distinct_numbers() {
    let world = World::start().await;
    let source = world.eni().await;
    let mut requests = Vec::new();
    for i in 0..10 {
        let target = world.eni().await;
        requests.push(create(&format!("fan-out-{i}"), &source, &target, None));
    }
    with_latency(&world).await;
    let apps = sandboxes(&world);

    let responses = all_at_once(&apps, &requests).await;

    let codes = codes(&responses);
    assert_eq!(codes.iter().filter(|c| *c == "ok").count(), 3, "{codes:?}");
    assert_eq!(
        codes
            .iter()
            .filter(|c| *c == "TrafficMirrorSessionsPerInterfaceLimitExceeded")
            .count(),
        7,
        "{codes:?}"
    );
    let mut numbers: Vec<u64> = responses
        .iter()
        .map(first_result)
        .filter(|r| r["success"] == true)
        .map(|r| r["sessionNumber"].as_u64().expect("number"))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 3, "three distinct session numbers");
    let state = world.mirror_state().await;
    assert_eq!(state.sessions.len(), 3);
    assert_eq!(state.filters.len(), 1, "one rule set, one shared filter");
    assert_eq!(state.targets.len(), 3, "targets of refused creates were deleted again");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn one_action_delivered_five_times_at_once_makes_one_session() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let request = seed_create("dup-1", &source, &target);
    with_latency(&world).await;
    let apps = sandboxes(&world);

    let responses = all_at_once(&apps[..5], &vec![request.clone(); 5]).await;

    let state = world.mirror_state().await;
    assert_eq!(state.sessions.len(), 1, "exactly one session: {responses:?}");
    assert_eq!(state.filters.len(), 1);
    assert_eq!(state.targets.len(), 1);
    let codes = codes(&responses);
    // Each delivery either made the session, replayed it, or was told it is in progress.
    assert!(codes.iter().all(|c| c == "ok" || c == "ActionInProgress"), "{codes:?}");
    assert!(codes.iter().any(|c| c == "ok"), "{codes:?}");
    // Once settled, any delivery answers with the one session.
    let replay = world.invoke(&request).await;
    assert_eq!(first_result(&replay)["sessionId"], {
        state.sessions.iter().next().expect("one").as_str()
    });
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_remove_racing_creates_on_the_same_target_never_deletes_a_target_in_use() {
    let world = World::start().await;
    let target = world.eni().await;
    let first_source = world.eni().await;
    let first = world.invoke(&create("race-0", &first_source, &target, None)).await;
    let first_session = first_result(&first)["sessionId"].as_str().expect("id").to_owned();
    let mut requests = vec![remove("race-rm", &first_session, "")];
    for i in 1..6 {
        let source = world.eni().await;
        requests.push(create(&format!("race-{i}"), &source, &target, None));
    }
    with_latency(&world).await;
    let apps = sandboxes(&world);

    let responses = all_at_once(&apps, &requests).await;

    let codes = codes(&responses);
    assert!(codes.iter().all(|c| c == "ok"), "{codes:?}");
    let state = world.mirror_state().await;
    assert_eq!(state.sessions.len(), 5, "every create kept its session");
    assert_eq!(state.targets.len(), 1, "one target, still there");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}
