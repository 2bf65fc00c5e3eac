//! Removes: by session, target ENI and reservation; what is already gone;
//! and what is not ours, never touched.

use serde_json::json;
use traffic_mirroring::ports::RecordStatus;

use crate::world::*;

#[tokio::test]
async fn removing_what_is_already_gone_is_a_success() {
    let world = fixture();
    let created = world.run(create("c1", 1, 9, 443)).await;
    let session = created["sessionId"].as_str().expect("made").to_owned();
    assert_eq!(world.run(remove_session("r1", &session)).await["success"], true);
    let again = world.run(remove_session("r2", &session)).await;
    assert_eq!(again["success"], true, "{again}");
    assert!(
        again["infoMessage"]
            .as_str()
            .is_some_and(|m| m.contains("already gone")),
        "{again}"
    );
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

/// A create with no rules to `target`; its session id.
async fn mirrored(world: &Fixture, action_id: &str, source: &str, target: &str) -> String {
    let response = world.handle(&create_bare(action_id, source, target, None)).await;
    session_of(first_result(&response))
}

#[tokio::test]
async fn a_remove_of_what_never_existed_succeeds_and_says_so() {
    let world = fixture();
    let target = eni(9);
    mirrored(&world, "rr-1", &eni(1), &target).await;

    let unknown = world.handle(&remove("rr-rm-3", "tms-0123456789abcdef0", "")).await;
    assert_eq!(first_result(&unknown)["success"], true, "{unknown}");
    let nothing = world.handle(&remove("rr-rm-4", "", &eni(8))).await;
    assert_eq!(first_result(&nothing)["success"], true, "{nothing}");
    assert!(
        first_result(&nothing)["infoMessage"]
            .as_str()
            .is_some_and(|m| m.contains("nothing to remove")),
        "{nothing}"
    );
    assert_eq!(world.counts(), (1, 1, 1), "the live mirror is not touched");
}

#[tokio::test]
async fn remove_by_session_id_deletes_session_filter_and_our_unused_target() {
    let world = fixture();
    let session = mirrored(&world, "rs-1", &eni(1), &eni(2)).await;

    let response = world.handle(&remove("rm-1", &session, "")).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["removedSessionIds"], json!([session]));
    assert!(result["infoMessage"]
        .as_str()
        .is_some_and(|m| m.contains("deleted unused target")));
    assert_eq!(world.counts(), (0, 0, 0), "session, filter and our target are gone");
    assert_eq!(
        world.ledger.record("rs-1").expect("record").status,
        Some(RecordStatus::Removed)
    );
}

#[tokio::test]
async fn remove_by_session_and_target_removes_the_union() {
    let world = fixture();
    let (t1, t2) = (eni(11), eni(12));
    let on_t1 = mirrored(&world, "ru-1", &eni(1), &t1).await;
    let on_t2 = mirrored(&world, "ru-2", &eni(2), &t2).await;

    let response = world.handle(&remove("rm-u", &on_t1, &t2)).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    let removed = result["removedSessionIds"].as_array().expect("ids");
    assert!(
        removed.contains(&json!(on_t1)) && removed.contains(&json!(on_t2)),
        "{response}"
    );
    assert_eq!(world.counts(), (0, 0, 0));
}

#[tokio::test]
async fn our_target_goes_with_our_last_session_and_a_foreign_target_stays() {
    let world = fixture();
    let ours_eni = eni(9);
    let s1 = mirrored(&world, "lt-1", &eni(1), &ours_eni).await;
    let s2 = mirrored(&world, "lt-2", &eni(2), &ours_eni).await;
    world.handle(&remove("lt-rm-1", &s1, "")).await;
    assert_eq!(world.counts().2, 1, "still used by the second session");
    world.handle(&remove("lt-rm-2", &s2, "")).await;
    assert_eq!(world.counts().2, 0, "our target goes with our last session");

    let foreign_eni = eni(8);
    let foreign_id = world.ec2.plant_target(&foreign_eni, &[]);
    let s3 = mirrored(&world, "lt-3", &eni(3), &foreign_eni).await;
    let response = world.handle(&remove("lt-rm-3", &s3, "")).await;
    assert_eq!(first_result(&response)["success"], true);
    let (sessions, _, targets) = world.ec2.resources();
    assert!(
        targets.contains(&foreign_id),
        "a target we did not create is never deleted"
    );
    assert!(sessions.is_empty());
}

#[tokio::test]
async fn sessions_we_did_not_create_are_left_alone() {
    let world = fixture();
    let target_eni = eni(9);
    let target_id = world.ec2.plant_target(&target_eni, &[]);
    let their_filter = world.ec2.plant_filter(&[]);
    let foreign_id = world.ec2.plant_session_on(&eni(1), &target_id, &their_filter, 1, &[]);
    let ours = mirrored(&world, "fo-1", &eni(2), &target_eni).await;

    let by_id = world.handle(&remove("fo-rm-1", &foreign_id, "")).await;
    assert_eq!(first_result(&by_id)["success"], false);
    assert_eq!(first_result(&by_id)["errorCode"], "NotManagedByTrafficMirroring");

    let by_target = world.handle(&remove("fo-rm-2", "", &target_eni)).await;
    let result = first_result(&by_target);
    assert_eq!(result["success"], true, "{by_target}");
    assert_eq!(result["removedSessionIds"], json!([ours]));
    assert!(result["infoMessage"].as_str().is_some_and(|m| m.contains(&foreign_id)));
    let (sessions, _, targets) = world.ec2.resources();
    assert!(sessions.contains(&foreign_id) && targets.contains(&target_id));
}
