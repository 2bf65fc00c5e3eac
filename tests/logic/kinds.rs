//! Every kind of target (ENI, Network Load Balancer, Gateway Load Balancer
//! endpoint, an existing target), an existing filter, and the dry run.

use serde_json::{json, Value};
use traffic_mirroring::ports::{AwsError, ErrorKind};

use crate::world::*;

#[tokio::test]
async fn a_dry_run_changes_nothing_and_announces_nothing() {
    let world = fixture();
    let mut request = create("d1", 1, 9, 443);
    request["driverRequest"]["dryRun"] = json!(true);
    let planned = world.run(request).await;
    assert_eq!(
        (planned["success"].clone(), planned["dryRun"].clone()),
        (json!(true), json!(true)),
        "{planned}"
    );
    assert_eq!(planned["plan"]["target"]["plan"]["action"], "create", "{planned}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.record("d1"), None);
    assert!(world.bus.events.lock().expect("events").is_empty());
}

#[tokio::test]
async fn a_filter_the_caller_named_is_used_and_never_deleted() {
    let world = fixture();
    let theirs = world.ec2.plant_session(&eni(1), &eni(2), &[]);
    let (_, filters, _) = world.ec2.resources();
    let filter = filters[0].clone();
    let mut request = create("c1", 3, 9, 443);
    let params = &mut request["driverRequest"]["actions"][0]["actionParams"];
    params["filterRules"] = Value::Null;
    params["trafficMirrorFilterId"] = json!(filter);
    let made = world.run(request).await;
    assert_eq!(made["trafficMirrorFilterId"], filter.as_str(), "{made}");
    let session = made["sessionId"].as_str().expect("made").to_owned();
    world.run(remove_session("r1", &session)).await;
    let (sessions, filters, _) = world.ec2.resources();
    assert!(filters.contains(&filter), "the caller's filter stays");
    assert_eq!(sessions, vec![theirs]);
}

#[tokio::test]
async fn load_balancer_targets_are_shared_without_a_source_limit_and_go_with_their_last_session() {
    let world = fixture();
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
            let request = create_to(&format!("{kind}-{n}"), &eni(n + 1), field, &destination, None);
            let response = world.handle(&request).await;
            let result = first_result(&response);
            assert_eq!(result["success"], true, "{kind} #{n}: {response}");
            sessions.push(result["sessionId"].as_str().expect("session").to_owned());
            targets.push(result["trafficMirrorTargetId"].as_str().expect("target").to_owned());
        }
        targets.dedup();
        assert_eq!(targets.len(), 1, "{kind}: one target for every session");
        assert_eq!(world.ec2.target_type(&targets[0]), Some(kind));

        for (n, session) in sessions.iter().enumerate() {
            let removed = world.handle(&remove(&format!("{kind}-rm-{n}"), session, "")).await;
            assert_eq!(first_result(&removed)["success"], true, "{removed}");
        }
        assert_eq!(
            world.counts(),
            (0, 0, 0),
            "{kind}: the last remove took the target and the filter"
        );
        assert_eq!(world.ledger.claims_left(), Vec::<String>::new(), "{kind}");
    }
}

#[tokio::test]
async fn an_existing_target_and_filter_are_used_and_never_deleted() {
    let world = fixture();
    let target_id = world.ec2.plant_target(&eni(50), &[]);
    let filter_id = world.ec2.plant_filter(&[]);
    let source = eni(1);

    let request = create_to(
        "given-1",
        &source,
        "trafficMirrorTargetId",
        &target_id,
        Some(&filter_id),
    );
    let response = world.handle(&request).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["trafficMirrorTargetId"], target_id.as_str());
    assert_eq!(result["trafficMirrorFilterId"], filter_id.as_str());
    assert_eq!(world.counts(), (1, 1, 1), "nothing new was made");
    let session = result["sessionId"].as_str().expect("session").to_owned();
    let removed = world.handle(&remove("given-rm-1", &session, "")).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    let after = world.ec2.resources();
    assert!(after.0.is_empty());
    assert!(
        after.2.contains(&target_id) && after.1.contains(&filter_id),
        "what we did not create stays"
    );
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());

    // A target that does not exist is EC2's clear error, and nothing is left.
    let missing = create_to(
        "given-2",
        &source,
        "trafficMirrorTargetId",
        "tmt-0123456789abcdef0",
        None,
    );
    let response = world.handle(&missing).await;
    assert_eq!(
        first_result(&response)["errorCode"],
        "InvalidTrafficMirrorTargetId.NotFound",
        "{response}"
    );
    assert_eq!(world.ec2.resources(), after);
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
}

fn dry(request: &Value) -> Value {
    let mut request = request.clone();
    request["driverRequest"]["dryRun"] = json!(true);
    request
}

#[tokio::test]
async fn a_dry_run_returns_the_plan_asks_ec2_and_changes_nothing() {
    let world = fixture();
    let (source, target, other_source) = (eni(1), eni(2), eni(3));

    let response = world.handle(&dry(&seed_create("dry-1", &source, &target))).await;

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
    assert_eq!(
        world.ec2.dry_runs(),
        ["CreateTrafficMirrorTarget", "CreateTrafficMirrorFilter"],
        "EC2 was asked, with DryRun"
    );
    assert!(world.events().is_empty(), "no event");
    assert_eq!(world.counts(), (0, 0, 0));
    assert!(world.ledger.is_empty(), "the ledger is untouched");

    // Once the target and filter exist, the plan reuses them and EC2 is asked about the session.
    let made = world.handle(&seed_create("dry-real", &source, &target)).await;
    assert_eq!(first_result(&made)["success"], true, "{made}");
    let (before, announced) = (world.ec2.resources(), world.events().len());
    let response = world.handle(&dry(&seed_create("dry-2", &other_source, &target))).await;
    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["plan"]["target"]["plan"]["action"], "reuse");
    assert_eq!(result["plan"]["filter"]["plan"]["action"], "reuse");
    assert_eq!(result["plan"]["checks"][0]["action"], "CreateTrafficMirrorSession");
    assert_eq!(world.ec2.resources(), before);
    assert!(world.ledger.record("dry-2").is_none());
    assert_eq!(world.events().len(), announced, "a dry run announces nothing");

    // A refusal EC2 gives to the dry run is the answer.
    world.ec2.fail_next(
        "CreateTrafficMirrorSession",
        AwsError::new(ErrorKind::Rejected, "UnauthorizedOperation", "not permitted"),
    );
    let response = world.handle(&dry(&seed_create("dry-3", &other_source, &target))).await;
    let result = first_result(&response);
    assert_eq!(result["success"], false, "{response}");
    assert_eq!(result["errorCode"], "UnauthorizedOperation");
    assert_eq!(result["plan"]["checks"][0]["permitted"], false);
    assert_eq!(world.ec2.resources(), before);
}
