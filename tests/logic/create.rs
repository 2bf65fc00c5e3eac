//! Creates and their rollback: what a create makes, shares and records,
//! and what a failed one leaves (nothing).

use serde_json::{json, Value};
use traffic_mirroring::mirroring::model::{Direction, PortRange};
use traffic_mirroring::ports::{AwsError, ErrorKind, RecordStatus};

use crate::world::*;

#[tokio::test]
async fn a_create_and_its_remove_leave_nothing_and_announce_both() {
    let world = fixture();
    let created = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(created["success"], true, "{created}");
    assert_eq!(world.counts(), (1, 1, 1));
    let session_id = created["sessionId"].as_str().expect("a session id").to_owned();
    let removed = world.run(remove_session("r1", &session_id)).await;
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
    let events = world.bus.events.lock().expect("events").clone();
    let announced: Vec<(&str, bool)> = events.iter().map(|e| (e.action_id.as_str(), e.success)).collect();
    assert_eq!(announced, [("c1", true), ("r1", true)]);
}

#[tokio::test]
async fn a_failed_session_step_rolls_back_what_the_create_made() {
    let world = fixture();
    world.ec2.fail_next(
        "CreateTrafficMirrorSession",
        AwsError::new(ErrorKind::Rejected, "InvalidParameterValue", "refused"),
    );
    let failed = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(
        (failed["success"].clone(), failed["errorCode"].clone()),
        (json!(false), json!("InvalidParameterValue")),
        "{failed}"
    );
    assert_eq!(world.counts(), (0, 0, 0), "the target and filter it made are gone");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
    let record = world.ledger.record("c1").expect("recorded");
    assert_eq!(record.status, Some(RecordStatus::Failed));
    // The retry runs again, with fresh client tokens.
    let retried = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(retried["success"], true, "{retried}");
    assert_eq!(world.counts(), (1, 1, 1));
}

#[tokio::test]
async fn creates_to_one_destination_share_its_target_and_filter_until_the_last_remove() {
    let world = fixture();
    let first = world.run(create("c1", 1, 9, 443)).await;
    let second = world.run(create("c2", 2, 9, 443)).await;
    assert_eq!(
        (first["success"].clone(), second["success"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(world.counts(), (2, 1, 1), "one target and one filter for both");
    assert_eq!(first["trafficMirrorTargetId"], second["trafficMirrorTargetId"]);
    let session = |answer: &Value| answer["sessionId"].as_str().expect("session").to_owned();
    world.run(remove_session("r1", &session(&first))).await;
    assert_eq!(world.counts(), (1, 1, 1), "the second session still uses them");
    world.run(remove_session("r2", &session(&second))).await;
    assert_eq!(world.counts(), (0, 0, 0), "the last user's remove takes them");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
}

#[tokio::test]
async fn a_repeated_create_answers_from_the_ledger_and_makes_nothing() {
    let world = fixture();
    let first = world.run(create("c1", 1, 9, 443)).await;
    let again = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(first["sessionId"], again["sessionId"], "{again}");
    assert_eq!(world.ec2.calls("CreateTrafficMirrorSession"), 1);
    assert_eq!(world.counts(), (1, 1, 1));
}

#[tokio::test]
async fn a_ledger_that_cannot_record_the_session_leaves_nothing_in_ec2() {
    let world = fixture();
    // The claim and the pending record go through; the final write does not.
    world.ledger.fail_next(
        "save",
        AwsError::new(
            ErrorKind::Transient,
            "ProvisionedThroughputExceededException",
            "slow down",
        ),
    );
    let failed = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(
        (failed["success"].clone(), failed["retryable"].clone()),
        (json!(false), json!(true)),
        "{failed}"
    );
    assert_eq!(
        world.counts(),
        (0, 0, 0),
        "a session the ledger does not know is never left"
    );
}

#[tokio::test]
async fn a_failed_filter_rule_rolls_back_the_filter_and_the_target() {
    let world = fixture();
    world.ec2.fail_next(
        "CreateTrafficMirrorFilterRule",
        AwsError::new(ErrorKind::Rejected, "TrafficMirrorFilterRuleLimitExceeded", "too many"),
    );
    let failed = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(failed["errorCode"], "TrafficMirrorFilterRuleLimitExceeded", "{failed}");
    assert_eq!(world.counts(), (0, 0, 0), "what it made is gone");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
}

#[tokio::test]
async fn the_seed_create_request_mirrors_the_source_to_the_target() {
    let world = fixture();
    let (source, target) = (eni(1), eni(2));

    let response = world.handle(&seed_create("seed-1", &source, &target)).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["actionId"], "seed-1");
    assert_eq!(result["type"], "CreateTrafficMirroring");
    assert_eq!(result["errorMessage"], "");
    assert_eq!(result["sessionNumber"], 5);
    let session_id = result["sessionId"].as_str().expect("session id");
    let session = world.ec2.session(session_id).expect("the session is in EC2");
    assert_eq!(session.source_eni, source);
    assert_eq!(session.session_number, 5);
    assert_eq!(session.tag("traffic-mirroring:action-id"), Some("seed-1"));

    let rules = world.ec2.filter_rules(&session.filter_id);
    assert_eq!(rules.len(), 1, "one ingress rule and no egress rule: {rules:?}");
    let rule = &rules[0];
    assert_eq!(rule.direction, Direction::Ingress);
    assert_eq!(rule.protocol.number(), Some(6));
    assert_eq!(rule.source_cidr, "192.168.0.124/24");
    assert_eq!(rule.destination_cidr, "0.0.0.0/0");
    assert_eq!(rule.source_ports, Some(PortRange { from: 50000, to: 65535 }));

    let mirror_target = world.ec2.target_of(&session.target_id).expect("its target");
    assert_eq!(mirror_target.network_interface_id.as_deref(), Some(target.as_str()));

    let record = world.ledger.record("seed-1").expect("ledger record");
    assert_eq!(record.status, Some(RecordStatus::Active));
    assert_eq!(record.session_id.as_deref(), Some(session_id));
    assert_eq!(record.source_eni.as_deref(), Some(source.as_str()));
    assert_eq!(record.target_eni.as_deref(), Some(target.as_str()));
    assert_eq!(record.filter_id.as_deref(), Some(session.filter_id.as_str()));
    assert!(record.target_created);
    assert_eq!(record.session_number, Some(5));
    assert_eq!(record.rule_ids.len(), 1);
}

#[tokio::test]
async fn no_rules_mirrors_everything_in_both_directions() {
    let world = fixture();
    let response = world.handle(&create_bare("all-1", &eni(1), &eni(2), None)).await;
    let filter_id = first_result(&response)["trafficMirrorFilterId"]
        .as_str()
        .expect("filter")
        .to_owned();
    let rules = world.ec2.filter_rules(&filter_id);
    let of = |direction: Direction| rules.iter().filter(move |r| r.direction == direction);
    assert!(
        of(Direction::Ingress).count() > 0 && of(Direction::Egress).count() > 0,
        "{rules:?}"
    );
    assert!(
        of(Direction::Ingress).all(|r| r.protocol.number().is_none()),
        "{rules:?}"
    );
}

#[tokio::test]
async fn an_existing_target_is_reused_and_a_new_one_is_made_once() {
    let world = fixture();
    let target = eni(9);
    let first = world.handle(&create_bare("reuse-1", &eni(1), &target, None)).await;
    let second = world.handle(&create_bare("reuse-2", &eni(2), &target, None)).await;
    let target_id = first_result(&first)["trafficMirrorTargetId"].clone();
    assert_eq!(first_result(&second)["trafficMirrorTargetId"], target_id);
    assert!(first_result(&second)["infoMessage"]
        .as_str()
        .is_some_and(|m| m.contains("shared")));
    let (_, _, targets) = world.ec2.resources();
    let to_target = targets
        .iter()
        .filter(|id| world.ec2.target_of(id).and_then(|t| t.network_interface_id) == Some(target.clone()))
        .count();
    assert_eq!(to_target, 1);

    // A target someone else made is reused too, and not marked as ours.
    let foreign_eni = eni(8);
    let foreign_id = world.ec2.plant_target(&foreign_eni, &[]);
    let third = world.handle(&create_bare("reuse-3", &eni(3), &foreign_eni, None)).await;
    assert_eq!(first_result(&third)["trafficMirrorTargetId"], foreign_id.as_str());
    assert!(!world.ledger.record("reuse-3").expect("record").target_created);
}

#[tokio::test]
async fn optional_session_settings_reach_ec2() {
    let world = fixture();
    let mut request = create_bare("opts-1", &eni(1), &eni(2), None);
    let params = &mut request["driverRequest"]["actions"][0]["actionParams"];
    params["packetLength"] = json!("128");
    params["virtualNetworkId"] = json!(4242);
    params["description"] = json!("ids sensor feed");
    params["reservationId"] = json!("res-opts");
    let response = world.handle(&request).await;
    let result = first_result(&response);
    assert_eq!(result["virtualNetworkId"], 4242, "{response}");
    let session_id = result["sessionId"].as_str().expect("id");
    let asked = world.ec2.session_request(session_id).expect("made");
    assert_eq!(asked.packet_length, Some(128));
    assert_eq!(asked.description.as_deref(), Some("ids sensor feed"));
    let session = world.ec2.session(session_id).expect("in EC2");
    assert_eq!(session.tag("traffic-mirroring:reservation-id"), Some("res-opts"));
    assert_eq!(
        world.ledger.record("opts-1").expect("record").reservation_id.as_deref(),
        Some("res-opts")
    );
}

#[tokio::test]
async fn an_eni_that_does_not_exist_fails_cleanly() {
    let world = fixture();
    let ghost = "eni-0123456789abcdef0";
    world.ec2.forget_eni(ghost);
    let response = world.handle(&create_bare("ghost-1", ghost, &eni(2), None)).await;
    let result = first_result(&response);
    assert_eq!(result["success"], false);
    assert_eq!(result["errorCode"], "InvalidNetworkInterfaceID.NotFound", "{response}");
    assert_eq!(world.counts(), (0, 0, 0), "the rollback must leave nothing behind");
    assert_eq!(
        world.ledger.record("ghost-1").expect("record").status,
        Some(RecordStatus::Failed)
    );
}
