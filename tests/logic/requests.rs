//! Requests as callers send them: bad input, mixed actions, order of
//! results, and their bounds.

use serde_json::{json, Value};

use crate::fakes::peak_overlap;
use crate::world::*;

#[tokio::test]
async fn a_request_of_more_than_a_hundred_actions_touches_nothing() {
    let world = fixture();
    let actions: Vec<Value> = (0..101)
        .map(|n| create(&format!("c{n}"), n + 1, 9, 443)["driverRequest"]["actions"][0].clone())
        .collect();
    let answer = world
        .app
        .invoke(json!({"driverRequest": {"actions": actions}}))
        .await
        .expect("answers");
    assert_eq!(answer["driverResponse"]["actionResults"], json!([]), "{answer}");
    assert!(answer["driverResponse"]["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("101 actions") && m.contains("at most 100")));
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.record("c0"), None);
    assert!(world.ledger.is_empty(), "nothing claimed");
}

#[tokio::test]
async fn an_action_id_too_long_or_with_a_control_character_is_refused() {
    let world = fixture();
    let bad_id = world
        .handle(&create_bare(&"x".repeat(129), &eni(1), &eni(2), None))
        .await;
    assert_eq!(first_result(&bad_id)["errorCode"], "ValidationError", "{bad_id}");
    let control = world.handle(&create_bare("tab\tid", &eni(1), &eni(2), None)).await;
    assert_eq!(first_result(&control)["errorCode"], "ValidationError", "{control}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert!(world.ledger.is_empty(), "nothing claimed");
}

#[tokio::test]
async fn one_bad_action_does_not_stop_the_others_of_its_request() {
    let world = fixture();
    let good = create("good", 1, 9, 443)["driverRequest"]["actions"][0].clone();
    let bad = json!({"actionId": "bad", "type": "CreateTrafficMirroring",
                     "actionParams": {"sourceNicId": "eni-nope", "targetNicId": eni(9)}});
    let answer = world
        .app
        .invoke(json!({"driverRequest": {"actions": [bad, good]}}))
        .await
        .expect("answers");
    let results = &answer["driverResponse"]["actionResults"];
    assert_eq!(results[0]["errorCode"], "ValidationError", "{answer}");
    assert_eq!(results[1]["success"], true, "{answer}");
    assert_eq!(world.counts(), (1, 1, 1));
}

#[tokio::test]
async fn a_payload_that_is_not_a_request_gets_a_driver_response_error() {
    let world = fixture();
    for payload in [json!({"hello": "world"}), json!([1, 2]), json!("not json"), Value::Null] {
        let response = world.handle(&payload).await;
        let message = response["driverResponse"]["errorMessage"].as_str().unwrap_or_default();
        assert!(message.starts_with("invalid driverRequest"), "{payload}: {response}");
        assert_eq!(response["driverResponse"]["actionResults"], json!([]));
    }
    assert_eq!(world.counts(), (0, 0, 0));
}

#[tokio::test]
async fn every_validation_error_is_per_action_and_changes_nothing() {
    let world = fixture();
    let (source, target) = (eni(1), eni(2));
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
                rule(json!({"direction": "ingress", "protocol": "tcp", "sourceCidr": "10.0.0.0/40"})),
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
    let response = world.handle(&json!({"driverRequest": {"actions": actions}})).await;

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
    assert_eq!(world.counts().0, 1, "only the valid action changed EC2");
}

#[tokio::test]
async fn independent_actions_of_one_request_all_succeed_in_order() {
    let world = fixture();
    let actions: Vec<Value> = (0..4)
        .map(|n| create_action(&format!("multi-{n}"), &eni(n + 1), &eni(n + 11), None))
        .collect();
    let response = world.handle(&json!({"driverRequest": {"actions": actions}})).await;
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
    assert_eq!(world.counts().0, 4);
}

#[tokio::test]
async fn creates_sharing_a_target_in_one_request_make_one_target() {
    let world = fixture();
    let target = eni(9);
    let actions: Vec<Value> = (0..3)
        .map(|n| create_action(&format!("share-{n}"), &eni(n + 1), &target, None))
        .collect();
    let response = world.handle(&json!({"driverRequest": {"actions": actions}})).await;
    assert!(
        response["driverResponse"]["actionResults"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r["success"] == true),
        "{response}"
    );
    assert_eq!(world.counts(), (3, 1, 1), "one target (and one filter) for all three");
}

#[tokio::test]
async fn independent_actions_run_concurrently_within_the_bound() {
    let world = fixture();
    let actions: Vec<Value> = (0..20)
        .map(|n| create_action(&format!("par-{n}"), &eni(n + 1), &eni(n + 101), None))
        .collect();
    // Every target lookup takes a while, as AWS's latency would.
    world.ec2.slow_down("DescribeTrafficMirrorTargets", 50);

    let response = world.handle(&json!({"driverRequest": {"actions": actions}})).await;

    let results = response["driverResponse"]["actionResults"].as_array().expect("results");
    assert!(results.iter().all(|r| r["success"] == true), "{response}");
    let peak = peak_overlap(&world.ec2.spans(), "DescribeTrafficMirrorTargets");
    assert!(peak > 1, "independent actions must overlap, peak was {peak}");
    assert!(
        peak <= traffic_mirroring::config::DEFAULT_MAX_CONCURRENT_ACTIONS,
        "bounded, peak was {peak}"
    );
}

/// Lanes only where order matters: creates to one target run side by side,
/// creates on one source keep request order, and a remove by session id
/// waits for nothing but the actions on its own source ENI.
#[tokio::test]
async fn one_request_orders_only_what_touches_the_same_source() {
    let world = fixture();
    let (target, other_target) = (eni(50), eni(51));
    let (s0, s1, s2, s3) = (eni(1), eni(2), eni(3), eni(4));
    let existing = world.handle(&create_bare("existing", &s0, &other_target, None)).await;
    let existing_session = session_of(first_result(&existing));
    world.ec2.slow_down("CreateTrafficMirrorSession", 50);
    world.ec2.slow_down("DeleteTrafficMirrorSession", 50);
    let calls_before = world.ec2.spans().len();
    let remove_existing = json!({"actionId": "rm-existing", "type": "RemoveTrafficMirroring",
        "actionParams": {"type": "RemoveTrafficMirroringParams", "sessionId": existing_session}});
    let actions = json!([
        create_action("a", &s1, &target, None),
        create_action("b", &s2, &target, None),
        remove_existing,
        create_action("c", &s3, &target, None),
        create_action("d", &s1, &other_target, None),
    ]);
    let response = world.handle(&json!({"driverRequest": {"actions": actions}})).await;
    let results = response["driverResponse"]["actionResults"].as_array().expect("results");
    assert!(results.iter().all(|r| r["success"] == true), "{response}");

    let spans = world.ec2.spans().split_off(calls_before);
    assert!(
        peak_overlap(&spans, "CreateTrafficMirrorSession") >= 3,
        "a, b and c, to one target, overlap: {spans:?}"
    );
    let creates = || spans.iter().filter(|s| s.call == "CreateTrafficMirrorSession");
    let on_s1: Vec<_> = creates()
        .filter(|s| s.subject.as_deref() == Some(s1.as_str()))
        .collect();
    assert_eq!(on_s1.len(), 2, "{spans:?}");
    assert!(
        on_s1[0].end <= on_s1[1].start,
        "d waited for a, on the same source: {on_s1:?}"
    );
    assert_eq!(
        (results[0]["sessionNumber"].clone(), results[4]["sessionNumber"].clone()),
        (json!(1), json!(2)),
        "in request order"
    );
    let first_end = creates().map(|s| s.end).min().expect("creates");
    let delete = spans
        .iter()
        .find(|s| s.call == "DeleteTrafficMirrorSession")
        .expect("the remove deleted its session");
    assert!(
        delete.start < first_end,
        "the remove by session id ran beside the creates, not after them"
    );
}
