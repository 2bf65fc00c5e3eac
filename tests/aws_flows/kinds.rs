//! Every kind of target (ENI, Network Load Balancer, Gateway Load Balancer
//! endpoint, an existing target), an existing filter, the dry run, and
//! patience with throttling that outlasts the SDK's own retries.

use serde_json::{json, Value};

use crate::support::*;

/// The type EC2 gives a target, read back from EC2.
async fn target_type(world: &World, target_id: &str) -> String {
    let described = world
        .ec2
        .describe_traffic_mirror_targets()
        .traffic_mirror_target_ids(target_id)
        .send()
        .await
        .expect("target");
    described.traffic_mirror_targets()[0]
        .r#type()
        .map(|t| t.as_str().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn load_balancer_targets_are_shared_without_a_source_limit_and_go_with_their_last_session() {
    let world = World::start().await;
    let kinds = [
        (
            "targetNetworkLoadBalancerArn",
            nlb_arn("monitor"),
            "network-load-balancer",
        ),
        (
            "targetGatewayLoadBalancerEndpointId",
            "vpce-0123456789abcdef0".to_owned(),
            "gateway-load-balancer-endpoint",
        ),
    ];
    for (field, destination, kind) in kinds {
        // More sources than an ENI target could take.
        let mut sessions = Vec::new();
        let mut targets = Vec::new();
        for n in 0..12 {
            let source = world.eni().await;
            let response = world
                .invoke(&create_to(&format!("{kind}-{n}"), &source, field, &destination, None))
                .await;
            let result = first_result(&response);
            assert_eq!(result["success"], true, "{kind} #{n}: {response}");
            sessions.push(result["sessionId"].as_str().expect("session").to_owned());
            targets.push(result["trafficMirrorTargetId"].as_str().expect("target").to_owned());
        }
        targets.dedup();
        assert_eq!(targets.len(), 1, "{kind}: one target for every session");
        assert_eq!(target_type(&world, &targets[0]).await, kind);
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{kind}");

        for (n, session) in sessions.iter().enumerate() {
            let removed = world.invoke(&remove(&format!("{kind}-rm-{n}"), session, "")).await;
            assert_eq!(first_result(&removed)["success"], true, "{removed}");
        }
        assert_eq!(
            world.mirror_state().await,
            MirrorState::default(),
            "{kind}: the last remove took the target and the filter"
        );
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{kind}");
    }
}

#[tokio::test]
async fn an_existing_target_and_filter_are_used_and_never_deleted() {
    let world = World::start().await;
    let appliance = world.eni().await;
    let target_id = world.foreign_target(&appliance).await;
    let filter = world.ec2.create_traffic_mirror_filter().send().await.expect("filter");
    let filter_id = filter
        .traffic_mirror_filter()
        .and_then(|f| f.traffic_mirror_filter_id())
        .expect("filter id")
        .to_owned();
    let source = world.eni().await;

    let response = world
        .invoke(&create_to(
            "given-1",
            &source,
            "trafficMirrorTargetId",
            &target_id,
            Some(&filter_id),
        ))
        .await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["trafficMirrorTargetId"], target_id.as_str());
    assert_eq!(result["trafficMirrorFilterId"], filter_id.as_str());
    let before = world.mirror_state().await;
    assert_eq!(
        (before.targets.len(), before.filters.len()),
        (1, 1),
        "nothing new was made"
    );
    let session = result["sessionId"].as_str().expect("session").to_owned();
    let removed = world.invoke(&remove("given-rm-1", &session, "")).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    let after = world.mirror_state().await;
    assert!(after.sessions.is_empty());
    assert!(
        after.targets.contains(&target_id) && after.filters.contains(&filter_id),
        "what we did not create stays"
    );
    assert_eq!(world.disagreements().await, Vec::<String>::new());

    // A target or filter that does not exist is EC2's clear error, and nothing is left.
    let response = world
        .invoke(&create_to(
            "given-2",
            &source,
            "trafficMirrorTargetId",
            "tmt-0123456789abcdef0",
            None,
        ))
        .await;
    assert_eq!(
        first_result(&response)["errorCode"],
        "InvalidTrafficMirrorTargetId.NotFound",
        "{response}"
    );
    assert_eq!(world.mirror_state().await, after);
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

fn dry(request: &Value) -> Value {
    let mut request = request.clone();
    request["driverRequest"]["dryRun"] = json!(true);
    request
}

#[tokio::test]
async fn a_dry_run_returns_the_plan_asks_ec2_and_changes_nothing() {
    let world = World::start().await;
    let (source, target, other_source) = (world.eni().await, world.eni().await, world.eni().await);
    world.emulator.clear_calls().await;

    let response = world.invoke(&dry(&seed_create("dry-1", &source, &target))).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["dryRun"], true);
    let plan = &result["plan"];
    assert_eq!(plan["target"]["plan"]["action"], "create", "{plan}");
    assert_eq!(plan["filter"]["plan"]["action"], "create", "{plan}");
    assert_eq!(plan["sessionNumber"], 5, "the number asked for is free");
    let checked: Vec<&str> = plan["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(checked, ["CreateTrafficMirrorTarget", "CreateTrafficMirrorFilter"]);
    let calls = world.emulator.calls().await;
    let dry_runs = calls.iter().filter(|c| c["error"] == "DryRunOperation").count();
    assert_eq!(dry_runs, 2, "EC2 was asked, with DryRun: {calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| !matches!(c["action"].as_str(), Some("PutItem" | "UpdateItem" | "PutEvents"))),
        "no ledger write and no event: {calls:?}"
    );
    assert_eq!(world.mirror_state().await, MirrorState::default());
    assert!(world.ledger().await.is_empty(), "the ledger is untouched");

    // Once the target and filter exist, the plan reuses them and EC2 is asked about the session.
    let made = world.invoke(&seed_create("dry-real", &source, &target)).await;
    assert_eq!(first_result(&made)["success"], true, "{made}");
    world.events(1).await;
    let before = world.mirror_state().await;
    let response = world.invoke(&dry(&seed_create("dry-2", &other_source, &target))).await;
    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["plan"]["target"]["plan"]["action"], "reuse");
    assert_eq!(result["plan"]["filter"]["plan"]["action"], "reuse");
    assert_eq!(result["plan"]["checks"][0]["action"], "CreateTrafficMirrorSession");
    assert_eq!(world.mirror_state().await, before);
    assert!(world.ledger_item("dry-2").await.is_none());
    assert!(world.events(1).await.is_empty(), "a dry run announces nothing");

    // A refusal EC2 gives to the dry run is the answer.
    world
        .emulator
        .fail_next("CreateTrafficMirrorSession", "UnauthorizedOperation", 403, 1)
        .await;
    let response = world.invoke(&dry(&seed_create("dry-3", &other_source, &target))).await;
    let result = first_result(&response);
    assert_eq!(result["success"], false, "{response}");
    assert_eq!(result["errorCode"], "UnauthorizedOperation");
    assert_eq!(result["plan"]["checks"][0]["permitted"], false);
    assert_eq!(world.mirror_state().await, before);
}

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
