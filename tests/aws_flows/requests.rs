//! Requests as callers send them: bad input, mixed actions, order of results.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn a_payload_that_is_not_a_request_gets_a_driver_response_error() {
    let world = World::start().await;
    for payload in [json!({"hello": "world"}), json!([1, 2]), json!("not json"), Value::Null] {
        let response = world.invoke(&payload).await;
        let message = response["driverResponse"]["errorMessage"].as_str().unwrap_or_default();
        assert!(message.starts_with("invalid driverRequest"), "{payload}: {response}");
        assert_eq!(response["driverResponse"]["actionResults"], json!([]));
    }
}

#[tokio::test]
async fn every_validation_error_is_per_action_and_changes_nothing() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let base = create_action("ok-1", &source, &target, None);
    let with = |id: &str, path: &str, value: Value| {
        let mut action = base.clone();
        action["actionId"] = json!(id);
        action["actionParams"][path] = value;
        action
    };
    let rule = |r: Value| json!([r]);
    let bad = vec![
        (
            with("bad-eni", "sourceNicId", json!("eni-zz")),
            "actionParams.sourceNicId",
        ),
        (
            with("bad-same", "targetNicId", json!(source)),
            "actionParams.targetNicId",
        ),
        (
            with("bad-num", "sessionNumber", json!("40000")),
            "actionParams.sessionNumber",
        ),
        (
            with("bad-int", "sessionNumber", json!("1.5")),
            "actionParams.sessionNumber",
        ),
        (
            with(
                "bad-dir",
                "filterRules",
                rule(json!({"direction": "up", "protocol": "tcp"})),
            ),
            "direction",
        ),
        (
            with(
                "bad-proto",
                "filterRules",
                rule(json!({"direction": "ingress", "protocol": "xyz"})),
            ),
            "protocol",
        ),
        (
            with(
                "bad-ports",
                "filterRules",
                rule(json!({"direction": "ingress", "protocol": "icmp",
            "sourcePortRange": {"fromPort": "1", "toPort": "2"}})),
            ),
            "protocol",
        ),
        (
            with(
                "bad-range",
                "filterRules",
                rule(json!({"direction": "ingress", "protocol": "tcp",
            "sourcePortRange": {"fromPort": "9", "toPort": "1"}})),
            ),
            "sourcePortRange",
        ),
        (
            with(
                "bad-cidr",
                "filterRules",
                rule(json!({"direction": "ingress", "protocol": "tcp",
            "sourceCidr": "10.0.0.0/40"})),
            ),
            "sourceCidr",
        ),
        (
            with(
                "bad-many",
                "filterRules",
                json!(vec![json!({"direction": "ingress", "protocol": "tcp"}); 11]),
            ),
            "filterRules",
        ),
    ];
    let mut actions: Vec<Value> = bad.iter().map(|(a, _)| a.clone()).collect();
    actions.push(base.clone());
    let response = world.invoke(&json!({"driverRequest": {"actions": actions}})).await;

    let results = response["driverResponse"]["actionResults"].as_array().expect("results");
    assert_eq!(results.len(), bad.len() + 1, "one result per action");
    for ((action, field), result) in bad.iter().zip(results) {
        assert_eq!(result["actionId"], action["actionId"], "results keep request order");
        assert_eq!(result["success"], false, "{result}");
        assert_eq!(result["errorCode"], "ValidationError");
        let message = result["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.contains(field) && message.contains(action["actionId"].as_str().unwrap_or("?")),
            "{message}"
        );
        assert_eq!(result["infoMessage"], "", "the error is only in errorMessage");
    }
    assert_eq!(
        results.last().map(|r| r["success"].clone()),
        Some(json!(true)),
        "the valid action still runs"
    );
    assert_eq!(
        world.mirror_state().await.sessions.len(),
        1,
        "only the valid action changed EC2"
    );
}

#[tokio::test]
async fn independent_actions_of_one_request_all_succeed_in_order() {
    let world = World::start().await;
    let mut actions = Vec::new();
    for n in 0..4 {
        let (source, target) = (world.eni().await, world.eni().await);
        actions.push(create_action(&format!("multi-{n}"), &source, &target, None));
    }
    let response = world.invoke(&json!({"driverRequest": {"actions": actions}})).await;
    let ids: Vec<&str> = response["driverResponse"]["actionResults"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            assert_eq!(r["success"], true, "{r}");
            r["actionId"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(ids, ["multi-0", "multi-1", "multi-2", "multi-3"]);
    assert_eq!(world.mirror_state().await.sessions.len(), 4);
}

#[tokio::test]
async fn creates_sharing_a_target_in_one_request_make_one_target() {
    let world = World::start().await;
    let target = world.eni().await;
    let mut actions = Vec::new();
    for n in 0..3 {
        actions.push(create_action(&format!("share-{n}"), &world.eni().await, &target, None));
    }
    let response = world.invoke(&json!({"driverRequest": {"actions": actions}})).await;
    assert!(response["driverResponse"]["actionResults"]
        .as_array()
        .expect("r")
        .iter()
        .all(|r| r["success"] == true));
    assert_eq!(world.mirror_state().await.targets.len(), 1);
}

/// The most calls of `action` the emulator was serving at one moment.
fn peak_overlap(calls: &[Value], action: &str) -> usize {
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for call in calls.iter().filter(|c| c["action"] == action) {
        edges.push((call["start"].as_f64().unwrap_or_default(), 1));
        edges.push((call["end"].as_f64().unwrap_or_default(), -1));
    }
    // Ends sort before starts at the same instant: touching is not overlapping.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        peak = peak.max(now);
    }
    peak as usize
}

#[tokio::test]
async fn independent_actions_run_concurrently_within_the_bound() {
    let world = World::start().await;
    let mut actions = Vec::new();
    for n in 0..20 {
        let (source, target) = (world.eni().await, world.eni().await);
        actions.push(create_action(&format!("par-{n}"), &source, &target, None));
    }
    // Every target lookup takes 100 ms, slept outside the emulator's lock, as AWS's latency would be.
    world
        .emulator
        .configure(json!({"latency_ms": {"DescribeTrafficMirrorTargets": 100}}))
        .await;
    world.emulator.clear_calls().await;

    let response = world.invoke(&json!({"driverRequest": {"actions": actions}})).await;

    let results = response["driverResponse"]["actionResults"].as_array().expect("results");
    assert!(results.iter().all(|r| r["success"] == true), "{response}");
    let peak = peak_overlap(&world.emulator.calls().await, "DescribeTrafficMirrorTargets");
    assert!(peak > 1, "independent actions must overlap, peak was {peak}");
    assert!(
        peak <= traffic_mirroring::config::DEFAULT_MAX_CONCURRENT_ACTIONS,
        "bounded, peak was {peak}"
    );
}

/// Calls of `action` naming `eni`, as (start, end).
fn spans_on(calls: &[Value], action: &str, eni: &str) -> Vec<(f64, f64)> {
    calls
        .iter()
        .filter(|c| c["action"] == action && c["eni"] == eni)
        .map(|c| {
            (
                c["start"].as_f64().unwrap_or_default(),
                c["end"].as_f64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Lanes only where order matters: creates to one target run side by side,
/// creates on one source keep request order, and a remove by session id
/// waits for nothing but the actions on its own source ENI.
#[tokio::test]
async fn one_request_orders_only_what_touches_the_same_source() {
    let world = World::start().await;
    let (target, other_target) = (world.eni().await, world.eni().await);
    let (s0, s1, s2, s3) = (
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
    );
    let existing = world.invoke(&create("existing", &s0, &other_target, None)).await;
    let existing_session = first_result(&existing)["sessionId"]
        .as_str()
        .expect("session")
        .to_owned();
    // Every session create takes 300 ms, slept outside the emulator's lock.
    world
        .emulator
        .configure(json!({"latency_ms": {"CreateTrafficMirrorSession": 300, "DeleteTrafficMirrorSession": 300}}))
        .await;
    world.emulator.clear_calls().await;
    let remove_existing = json!({"actionId": "rm-existing", "type": "RemoveTrafficMirroring",
        "actionParams": {"type": "RemoveTrafficMirroringParams", "sessionId": existing_session}});
    let actions = json!([
        create_action("a", &s1, &target, None),
        create_action("b", &s2, &target, None),
        remove_existing,
        create_action("c", &s3, &target, None),
        create_action("d", &s1, &other_target, None),
    ]);
    let response = world.invoke(&json!({"driverRequest": {"actions": actions}})).await;
    let results = response["driverResponse"]["actionResults"].as_array().expect("results");
    assert!(results.iter().all(|r| r["success"] == true), "{response}");

    let calls = world.emulator.calls().await;
    assert!(
        peak_overlap(&calls, "CreateTrafficMirrorSession") >= 3,
        "a, b and c, to one target, overlap"
    );
    let (on_s1, first_end) = (
        spans_on(&calls, "CreateTrafficMirrorSession", &s1),
        calls
            .iter()
            .filter(|c| c["action"] == "CreateTrafficMirrorSession")
            .map(|c| c["end"].as_f64().unwrap_or_default())
            .fold(f64::INFINITY, f64::min),
    );
    assert_eq!(on_s1.len(), 2, "{calls:?}");
    assert!(
        on_s1[0].1 <= on_s1[1].0,
        "d waited for a, on the same source: {on_s1:?}"
    );
    assert_eq!(
        (results[0]["sessionNumber"].clone(), results[4]["sessionNumber"].clone()),
        (json!(1), json!(2)),
        "in request order"
    );
    let delete = calls
        .iter()
        .find(|c| c["action"] == "DeleteTrafficMirrorSession")
        .and_then(|c| c["start"].as_f64())
        .expect("the remove deleted its session");
    assert!(
        delete < first_end,
        "the remove by session id ran beside the creates, not after them"
    );
}
