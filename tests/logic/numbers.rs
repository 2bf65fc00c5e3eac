//! Session numbers and EC2's limits per source and per target: chosen,
//! guessed, given back, and refused before anything is made.

use serde_json::{json, Value};
use traffic_mirroring::ports::{AwsError, ErrorKind, RecordStatus};

use crate::world::*;

#[tokio::test]
async fn a_fourth_session_on_one_source_is_refused_before_any_change() {
    let world = fixture();
    for (n, target) in [(1, 11), (2, 12), (3, 13)] {
        let created = world.run(create(&format!("c{n}"), 1, target, 443)).await;
        assert_eq!(created["success"], true, "{created}");
    }
    let before = world.ec2.resources();
    let refused = world.run(create("c4", 1, 14, 443)).await;
    assert_eq!(
        refused["errorCode"], "TrafficMirrorSessionsPerInterfaceLimitExceeded",
        "{refused}"
    );
    assert_ne!(refused["retryable"], true, "a full ENI stays full: {refused}");
    assert!(
        refused["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains(&eni(1)) && m.contains("nothing was created")),
        "{refused}"
    );
    assert_eq!(world.ec2.resources(), before, "nothing was made for it");
    assert_eq!(world.ec2.calls("CreateTrafficMirrorSession"), 3);
}

#[tokio::test]
async fn a_create_does_without_its_guessed_number_and_keeps_a_good_guess() {
    let world = fixture();
    // The guess (number 1, claimed beside the first reads) fails: the number
    // is claimed in a round of its own, and the create succeeds.
    world.ledger.fail_next(
        "claim_number",
        AwsError::new(
            ErrorKind::Transient,
            "ProvisionedThroughputExceededException",
            "slow down",
        ),
    );
    let first = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(
        (first["success"].clone(), first["sessionNumber"].clone()),
        (json!(true), json!(1)),
        "{first}"
    );
    // A second create on the same ENI guesses 1, which is taken: it gives the
    // guess back (it was refused, so there is nothing to give) and takes 2.
    let second = world.run(create("c2", 1, 8, 443)).await;
    assert_eq!(second["sessionNumber"], 2, "{second}");
    let session = |answer: &Value| answer["sessionId"].as_str().expect("session").to_owned();
    world.run(remove_session("r1", &session(&first))).await;
    world.run(remove_session("r2", &session(&second))).await;
    assert_eq!(
        world.ledger.claims_left(),
        Vec::<String>::new(),
        "no guess is left claimed"
    );
}

#[tokio::test]
async fn a_wrong_guess_is_given_back_before_the_number_is_chosen_again() {
    use traffic_mirroring::mirroring::model::{EniId, TargetSpec};
    use traffic_mirroring::ports::{Filters, NewSession, Sessions, Targets};
    let world = fixture();
    // A session made by hand on the source ENI, numbered 1, that no claim counts.
    let by_hand = Vec::new();
    let appliance = TargetSpec::Eni(EniId::parse(&eni(50)).expect("eni"));
    let target = world
        .ec2
        .create_target(&appliance, &by_hand, "t")
        .await
        .expect("target");
    let filter = world.ec2.create_filter("by hand", &by_hand, "f").await.expect("filter");
    let manual = NewSession {
        source_eni: EniId::parse(&eni(1)).expect("eni"),
        target_id: target,
        filter_id: filter,
        session_number: 1,
        packet_length: None,
        virtual_network_id: None,
        description: None,
    };
    world.ec2.create_session(&manual, &by_hand, "s").await.expect("session");

    let created = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(
        (created["success"].clone(), created["sessionNumber"].clone()),
        (json!(true), json!(2)),
        "{created}"
    );
    let session = created["sessionId"].as_str().expect("session").to_owned();
    world.run(remove_session("r1", &session)).await;
    assert_eq!(
        world.ledger.claims_left(),
        Vec::<String>::new(),
        "the guess of 1 was given back"
    );
}

#[tokio::test]
async fn an_eleventh_source_on_one_target_eni_is_refused_before_any_change() {
    let world = fixture();
    for n in 1..=10 {
        let made = world.run(create(&format!("c{n}"), n, 99, 443)).await;
        assert_eq!(made["success"], true, "{made}");
    }
    let before = world.ec2.calls("CreateTrafficMirrorSession");
    let refused = world.run(create("c11", 11, 99, 443)).await;
    assert_eq!(
        refused["errorCode"], "TrafficMirrorSourcesPerTargetLimitExceeded",
        "{refused}"
    );
    assert_eq!(
        world.ec2.calls("CreateTrafficMirrorSession"),
        before,
        "no session tried"
    );
    assert_eq!(world.counts(), (10, 1, 1));
    assert_eq!(
        world.ledger.record("c11").map(|r| r.status),
        Some(Some(RecordStatus::Failed))
    );
}

#[tokio::test]
async fn a_target_eni_on_one_of_the_largest_sizes_takes_more_than_ten_sources_and_a_small_one_does_not() {
    for (kind, eleventh_accepted) in [("m5.24xlarge", true), ("m5.large", false)] {
        let world = fixture();
        world
            .ec2
            .plant_instance_of_type("i-00000appliance", kind, &[&eni(99)], &[]);
        for n in 1..=10 {
            let made = world.run(create(&format!("c{n}"), n, 99, 443)).await;
            assert_eq!(made["success"], true, "{kind}: {made}");
        }
        let eleventh = world.run(create("c11", 11, 99, 443)).await;
        assert_eq!(eleventh["success"], eleventh_accepted, "{kind}: {eleventh}");
        if !eleventh_accepted {
            assert_eq!(
                eleventh["errorCode"], "TrafficMirrorSourcesPerTargetLimitExceeded",
                "{kind}"
            );
        }
        assert_eq!(world.counts().0, 10 + usize::from(eleventh_accepted), "{kind}");
    }
}

#[tokio::test]
async fn a_taken_session_number_gives_the_lowest_free_one_and_says_so() {
    let world = fixture();
    let first = world.run(create_numbered("c1", 1, 9, 5)).await;
    assert_eq!(first["sessionNumber"], 5, "{first}");
    let second = world.run(create_numbered("c2", 1, 8, 5)).await;
    assert_eq!(second["sessionNumber"], 1, "{second}");
    assert!(
        second["infoMessage"]
            .as_str()
            .is_some_and(|m| m.contains("5 was already used")),
        "{second}"
    );
    let third = world.run(create("c3", 1, 7, 443)).await;
    assert_eq!(third["sessionNumber"], 2, "the lowest free one: {third}");
}
