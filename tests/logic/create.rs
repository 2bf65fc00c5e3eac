//! Creates and their rollback: what a create makes, shares and records,
//! and what a failed one leaves (nothing).

use serde_json::{json, Value};
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
