//! Removes: by session, target ENI and reservation; what is already gone;
//! and what is not ours, never touched.

use serde_json::json;

use crate::world::*;

#[tokio::test]
async fn removing_what_is_already_gone_is_a_success() {
    let world = fixture();
    let created = world.run(create("c1", 1, 9, 443)).await;
    let session = created["sessionId"].as_str().expect("made").to_owned();
    assert_eq!(world.run(remove_session("r1", &session)).await["success"], true);
    let again = world.run(remove_session("r2", &session)).await;
    assert_eq!(again["success"], true, "{again}");
    assert_eq!(world.counts(), (0, 0, 0));
}

#[tokio::test]
async fn a_remove_by_target_eni_takes_every_session_to_it_and_the_target() {
    let world = fixture();
    for n in 1..=3 {
        world.run(create(&format!("c{n}"), n, 9, 443)).await;
    }
    let other = world.run(create("c4", 4, 8, 443)).await;
    assert_eq!(world.counts(), (4, 1, 2));
    let removed = world
        .run(
            json!({"driverRequest": {"actions": [{"actionId": "r1", "type": "RemoveTrafficMirroring",
                                                    "targetNicId": eni(9)}]}}),
        )
        .await;
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(
        removed["removedSessionIds"].as_array().map(Vec::len),
        Some(3),
        "{removed}"
    );
    let (sessions, _, targets) = world.ec2.resources();
    assert_eq!(sessions, vec![other["sessionId"].as_str().expect("session").to_owned()]);
    assert_eq!(targets.len(), 1, "the other target stays");
}

#[tokio::test]
async fn a_session_someone_else_made_is_never_removed_by_its_id() {
    let world = fixture();
    let theirs = world.ec2.plant_session(&eni(1), &eni(9), &[("owner", "netops")]);
    let refused = world.run(remove_session("r1", &theirs)).await;
    assert_eq!(refused["errorCode"], "NotManagedByTrafficMirroring", "{refused}");
    assert!(world.ec2.resources().0.contains(&theirs), "left in place");
}

#[tokio::test]
async fn a_remove_by_reservation_takes_only_that_reservations_mirrors() {
    let world = fixture();
    for (id, source, reservation) in [("c1", 1, "res-a"), ("c2", 2, "res-a"), ("c3", 3, "res-b")] {
        let mut request = create(id, source, 9, 443);
        request["driverRequest"]["reservationId"] = json!(reservation);
        assert_eq!(world.run(request).await["success"], true);
    }
    let removed = world
        .run(
            json!({"driverRequest": {"actions": [{"actionId": "r1", "type": "RemoveTrafficMirroring",
                                                    "reservationId": "res-a"}]}}),
        )
        .await;
    assert_eq!(
        removed["removedSessionIds"].as_array().map(Vec::len),
        Some(2),
        "{removed}"
    );
    assert_eq!(world.counts(), (1, 1, 1), "res-b's mirror, its filter and target stay");
}
