use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn the_seed_create_request_mirrors_the_source_to_the_target() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);

    let response = world.invoke(&seed_create("seed-1", &source, &target)).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["actionId"], "seed-1");
    assert_eq!(result["type"], "CreateTrafficMirroring");
    assert_eq!(result["errorMessage"], "");
    assert_eq!(result["sessionNumber"], 5);
    let session_id = result["sessionId"].as_str().expect("session id");
    let sessions = world
        .ec2
        .describe_traffic_mirror_sessions()
        .traffic_mirror_session_ids(session_id)
        .send()
        .await
        .expect("describe");
    let session = &sessions.traffic_mirror_sessions()[0];
    assert_eq!(session.network_interface_id(), Some(source.as_str()));
    assert_eq!(session.session_number(), Some(5));
    assert!(session
        .tags()
        .iter()
        .any(|t| t.key() == Some("traffic-mirroring:action-id") && t.value() == Some("seed-1")));

    let filter_id = session.traffic_mirror_filter_id().expect("filter");
    let filters = world
        .ec2
        .describe_traffic_mirror_filters()
        .traffic_mirror_filter_ids(filter_id)
        .send()
        .await
        .expect("filters");
    let filter = &filters.traffic_mirror_filters()[0];
    assert_eq!(filter.egress_filter_rules().len(), 0);
    let rule = &filter.ingress_filter_rules()[0];
    assert_eq!(rule.protocol(), Some(6));
    assert_eq!(rule.source_cidr_block(), Some("192.168.0.124/24"));
    assert_eq!(rule.destination_cidr_block(), Some("0.0.0.0/0"));
    let ports = rule.source_port_range().expect("source ports");
    assert_eq!((ports.from_port(), ports.to_port()), (Some(50000), Some(65535)));

    let targets = world
        .ec2
        .describe_traffic_mirror_targets()
        .traffic_mirror_target_ids(session.traffic_mirror_target_id().expect("t"))
        .send()
        .await
        .expect("targets");
    assert_eq!(
        targets.traffic_mirror_targets()[0].network_interface_id(),
        Some(target.as_str())
    );

    let record = world.ledger_item("seed-1").await.expect("ledger record");
    assert_eq!(record["status"], "active");
    assert_eq!(record["sessionId"], session_id);
    assert_eq!(record["sourceEni"], source);
    assert_eq!(record["targetEni"], target);
    assert_eq!(record["filterId"], filter_id);
    assert_eq!(record["targetCreated"], true);
    assert_eq!(record["sessionNumber"], 5.0);
    assert_eq!(record["ruleIds"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn no_rules_mirrors_everything_in_both_directions() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let response = world.invoke(&create("all-1", &source, &target, None)).await;
    let filter_id = first_result(&response)["trafficMirrorFilterId"]
        .as_str()
        .expect("filter")
        .to_owned();
    let filters = world
        .ec2
        .describe_traffic_mirror_filters()
        .traffic_mirror_filter_ids(filter_id)
        .send()
        .await
        .expect("filters");
    let filter = &filters.traffic_mirror_filters()[0];
    assert!(!filter.ingress_filter_rules().is_empty() && !filter.egress_filter_rules().is_empty());
    assert!(filter.ingress_filter_rules().iter().all(|r| r.protocol().is_none()));
}

#[tokio::test]
async fn an_existing_target_is_reused_and_a_new_one_is_made_once() {
    let world = World::start().await;
    let (a, b, target) = (world.eni().await, world.eni().await, world.eni().await);
    let first = world.invoke(&create("reuse-1", &a, &target, None)).await;
    let second = world.invoke(&create("reuse-2", &b, &target, None)).await;
    let target_id = first_result(&first)["trafficMirrorTargetId"].clone();
    assert_eq!(first_result(&second)["trafficMirrorTargetId"], target_id);
    assert!(first_result(&second)["infoMessage"]
        .as_str()
        .is_some_and(|m| m.contains("shared")));
    let targets = world
        .ec2
        .describe_traffic_mirror_targets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("network-interface-id")
                .values(&target)
                .build(),
        )
        .send()
        .await
        .expect("targets");
    assert_eq!(targets.traffic_mirror_targets().len(), 1);

    // A target someone else made is reused too, and not marked as ours.
    let (c, foreign_eni) = (world.eni().await, world.eni().await);
    let foreign_id = world.foreign_target(&foreign_eni).await;
    let third = world.invoke(&create("reuse-3", &c, &foreign_eni, None)).await;
    assert_eq!(first_result(&third)["trafficMirrorTargetId"], foreign_id);
    assert_eq!(
        world.ledger_item("reuse-3").await.expect("record")["targetCreated"],
        false
    );
}

#[tokio::test]
async fn a_fourth_session_on_one_eni_is_refused_before_any_change() {
    let world = World::start().await;
    let source = world.eni().await;
    for n in 0..3 {
        let target = world.eni().await;
        let response = world
            .invoke(&create(&format!("quota-{n}"), &source, &target, None))
            .await;
        assert_eq!(first_result(&response)["success"], true, "{response}");
    }
    let before = world.mirror_state().await;
    let target = world.eni().await;
    let response = world.invoke(&create("quota-4", &source, &target, None)).await;
    let result = first_result(&response);
    assert_eq!(result["success"], false);
    assert_eq!(result["errorCode"], "TrafficMirrorSessionsPerInterfaceLimitExceeded");
    assert!(result["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains(&source) && m.contains("nothing was created")));
    assert_eq!(world.mirror_state().await, before, "nothing may be created");
}

#[tokio::test]
async fn a_taken_session_number_is_replaced_by_the_lowest_free_one() {
    let world = World::start().await;
    let source = world.eni().await;
    let (t1, t2, t3) = (world.eni().await, world.eni().await, world.eni().await);
    let first = world.invoke(&create("num-1", &source, &t1, Some("2"))).await;
    assert_eq!(first_result(&first)["sessionNumber"], 2);
    let second = world.invoke(&create("num-2", &source, &t2, Some("2"))).await;
    let result = first_result(&second);
    assert_eq!(result["sessionNumber"], 1);
    assert!(result["infoMessage"]
        .as_str()
        .is_some_and(|m| m.contains("session number 2 was already used")));
    let third = world.invoke(&create("num-3", &source, &t3, None)).await;
    assert_eq!(first_result(&third)["sessionNumber"], 3);
}

#[tokio::test]
async fn sessions_we_did_not_make_count_when_allocating() {
    let world = World::start().await;
    let (source, other_target_eni, target) = (world.eni().await, world.eni().await, world.eni().await);
    let foreign_target = world.foreign_target(&other_target_eni).await;
    world.foreign_session(&source, &foreign_target, 1).await;
    let response = world.invoke(&create("foreign-1", &source, &target, None)).await;
    assert_eq!(first_result(&response)["sessionNumber"], 2, "{response}");
}

#[tokio::test]
async fn optional_session_settings_reach_ec2() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let mut request = create("opts-1", &source, &target, None);
    let params = &mut request["driverRequest"]["actions"][0]["actionParams"];
    params["packetLength"] = json!("128");
    params["virtualNetworkId"] = json!(4242);
    params["description"] = json!("ids sensor feed");
    params["reservationId"] = json!("res-opts");
    let response = world.invoke(&request).await;
    let result = first_result(&response);
    assert_eq!(result["virtualNetworkId"], 4242, "{response}");
    let sessions = world
        .ec2
        .describe_traffic_mirror_sessions()
        .traffic_mirror_session_ids(result["sessionId"].as_str().expect("id"))
        .send()
        .await
        .expect("d");
    let session = &sessions.traffic_mirror_sessions()[0];
    assert_eq!(session.packet_length(), Some(128));
    assert_eq!(session.description(), Some("ids sensor feed"));
    assert!(session
        .tags()
        .iter()
        .any(|t| t.key() == Some("traffic-mirroring:reservation-id") && t.value() == Some("res-opts")));
    assert_eq!(
        world.ledger_item("opts-1").await.expect("record")["reservationId"],
        "res-opts"
    );
}

#[tokio::test]
async fn an_eni_that_does_not_exist_fails_cleanly() {
    let world = World::start().await;
    let target = world.eni().await;
    let before = world.mirror_state().await;
    let response = world
        .invoke(&create("ghost-1", "eni-0123456789abcdef0", &target, None))
        .await;
    let result = first_result(&response);
    assert_eq!(result["success"], false);
    assert_eq!(result["errorCode"], "InvalidNetworkInterfaceID.NotFound", "{response}");
    assert_eq!(
        world.mirror_state().await,
        before,
        "the rollback must leave nothing behind"
    );
    assert_eq!(world.ledger_item("ghost-1").await.expect("record")["status"], "failed");
}
