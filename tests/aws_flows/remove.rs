use serde_json::json;

use crate::support::*;

async fn mirrored(world: &World, action_id: &str, source: &str, target: &str) -> String {
    let response = world.invoke(&create(action_id, source, target, None)).await;
    assert_eq!(first_result(&response)["success"], true, "{response}");
    first_result(&response)["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned()
}

#[tokio::test]
async fn remove_by_session_id_deletes_session_filter_and_our_unused_target() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let before = world.mirror_state().await;
    let session = mirrored(&world, "rs-1", &source, &target).await;

    let response = world.invoke(&remove("rm-1", &session, "")).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["removedSessionIds"], json!([session]));
    assert!(result["infoMessage"]
        .as_str()
        .is_some_and(|m| m.contains("deleted unused target")));
    assert_eq!(
        world.mirror_state().await,
        before,
        "session, filter and our target are gone"
    );
    assert_eq!(world.ledger_item("rs-1").await.expect("record")["status"], "removed");
}

#[tokio::test]
async fn remove_by_target_nic_takes_every_session_of_ours_on_it() {
    let world = World::start().await;
    let (a, b, target) = (world.eni().await, world.eni().await, world.eni().await);
    let before = world.mirror_state().await;
    let s1 = mirrored(&world, "rt-1", &a, &target).await;
    let s2 = mirrored(&world, "rt-2", &b, &target).await;

    let response = world.invoke(&remove("rm-t", "", &target)).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    let mut removed: Vec<String> = serde_json::from_value(result["removedSessionIds"].clone()).expect("ids");
    removed.sort();
    let mut expected = vec![s1, s2];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(world.mirror_state().await, before);
}

#[tokio::test]
async fn remove_by_session_and_target_removes_the_union() {
    let world = World::start().await;
    let (a, b, t1, t2) = (
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
    );
    let before = world.mirror_state().await;
    let on_t1 = mirrored(&world, "ru-1", &a, &t1).await;
    let on_t2 = mirrored(&world, "ru-2", &b, &t2).await;

    let response = world.invoke(&remove("rm-u", &on_t1, &t2)).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    let removed = result["removedSessionIds"].as_array().expect("ids");
    assert!(
        removed.contains(&json!(on_t1)) && removed.contains(&json!(on_t2)),
        "{response}"
    );
    assert_eq!(world.mirror_state().await, before);
}

#[tokio::test]
async fn remove_by_reservation_takes_everything_made_for_it() {
    let world = World::start().await;
    let (a, b, c, target) = (
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
    );
    let mut request = json!({"driverRequest": {"reservationId": "sandbox-7", "actions": [
        create_action("res-1", &a, &target, None), create_action("res-2", &b, &target, None)]}});
    let response = world.invoke(&request).await;
    assert!(response["driverResponse"]["actionResults"]
        .as_array()
        .expect("results")
        .iter()
        .all(|r| r["success"] == true));
    let keep = mirrored(&world, "res-other", &c, &target).await;

    request = json!({"driverRequest": {"actions": [{"actionId": "rm-res", "type": "RemoveTrafficMirroring",
        "sessionId": "", "targetNicId": "", "reservationId": "sandbox-7"}]}});
    let response = world.invoke(&request).await;

    let result = first_result(&response);
    assert_eq!(result["success"], true, "{response}");
    assert_eq!(result["removedSessionIds"].as_array().map(Vec::len), Some(2));
    let state = world.mirror_state().await;
    assert_eq!(
        state.sessions.into_iter().collect::<Vec<_>>(),
        vec![keep],
        "only the other owner's session stays"
    );
    assert_eq!(
        state.targets.len(),
        1,
        "the shared target stays while a session uses it"
    );
}

#[tokio::test]
async fn removing_twice_succeeds_and_says_it_was_already_gone() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let session = mirrored(&world, "rr-1", &source, &target).await;
    let first = world.invoke(&remove("rr-rm-1", &session, "")).await;
    assert_eq!(first_result(&first)["success"], true);

    let again = world.invoke(&remove("rr-rm-2", &session, "")).await;
    let result = first_result(&again);
    assert_eq!(result["success"], true, "{again}");
    assert!(
        result["infoMessage"]
            .as_str()
            .is_some_and(|m| m.contains("already gone")),
        "{again}"
    );

    // A session id nobody ever made is also already gone.
    let unknown = world.invoke(&remove("rr-rm-3", "tms-0123456789abcdef0", "")).await;
    assert_eq!(first_result(&unknown)["success"], true, "{unknown}");
    let nothing = world.invoke(&remove("rr-rm-4", "", &target)).await;
    assert!(first_result(&nothing)["infoMessage"]
        .as_str()
        .is_some_and(|m| m.contains("nothing to remove")));
}

#[tokio::test]
async fn our_target_goes_with_our_last_session_and_a_foreign_target_stays() {
    let world = World::start().await;
    let (a, b, ours_eni) = (world.eni().await, world.eni().await, world.eni().await);
    let s1 = mirrored(&world, "lt-1", &a, &ours_eni).await;
    let s2 = mirrored(&world, "lt-2", &b, &ours_eni).await;
    let target_of = |state: &MirrorState| state.targets.len();
    world.invoke(&remove("lt-rm-1", &s1, "")).await;
    assert_eq!(
        target_of(&world.mirror_state().await),
        1,
        "still used by the second session"
    );
    world.invoke(&remove("lt-rm-2", &s2, "")).await;
    assert_eq!(
        target_of(&world.mirror_state().await),
        0,
        "our target goes with our last session"
    );

    let (c, foreign_eni) = (world.eni().await, world.eni().await);
    let foreign_id = world.foreign_target(&foreign_eni).await;
    let s3 = mirrored(&world, "lt-3", &c, &foreign_eni).await;
    let response = world.invoke(&remove("lt-rm-3", &s3, "")).await;
    assert_eq!(first_result(&response)["success"], true);
    let state = world.mirror_state().await;
    assert!(
        state.targets.contains(&foreign_id),
        "a target we did not create is never deleted"
    );
    assert!(state.sessions.is_empty());
}

#[tokio::test]
async fn sessions_we_did_not_create_are_left_alone() {
    let world = World::start().await;
    let (source, target_eni, ours_source) = (world.eni().await, world.eni().await, world.eni().await);
    let target_id = world.foreign_target(&target_eni).await;
    let foreign_id = world.foreign_session(&source, &target_id, 1).await;
    let ours = mirrored(&world, "fo-1", &ours_source, &target_eni).await;

    let by_id = world.invoke(&remove("fo-rm-1", &foreign_id, "")).await;
    assert_eq!(first_result(&by_id)["success"], false);
    assert_eq!(first_result(&by_id)["errorCode"], "NotManagedByTrafficMirroring");

    let by_target = world.invoke(&remove("fo-rm-2", "", &target_eni)).await;
    let result = first_result(&by_target);
    assert_eq!(result["success"], true, "{by_target}");
    assert_eq!(result["removedSessionIds"], json!([ours]));
    assert!(result["infoMessage"].as_str().is_some_and(|m| m.contains(&foreign_id)));
    let state = world.mirror_state().await;
    assert!(state.sessions.contains(&foreign_id) && state.targets.contains(&target_id));
}

/// A remove's releases do not wait for its session's delete: the number and
/// its places among the filter's and target's users are let go while EC2
/// deletes the session (the rounds BENCHMARKS.md counts).
#[tokio::test]
async fn a_remove_lets_go_of_its_claims_while_the_session_is_deleted() {
    let world = World::start().await;
    let (keeper, source, target) = (world.eni().await, world.eni().await, world.eni().await);
    world.invoke(&seed_create("rm-overlap-keeper", &keeper, &target)).await;
    let created = world.invoke(&seed_create("rm-overlap", &source, &target)).await;
    let session = first_result(&created)["sessionId"]
        .as_str()
        .expect("session")
        .to_owned();
    world
        .emulator
        .configure(serde_json::json!({"latency_ms": {"DeleteTrafficMirrorSession": 400}}))
        .await;
    world.emulator.clear_calls().await;
    let removed = world.invoke(&remove("rm-overlap-rm", &session, "")).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    let calls = world.emulator.calls().await;
    let delete = calls
        .iter()
        .find(|c| c["action"] == "DeleteTrafficMirrorSession")
        .expect("the session was deleted");
    let (start, end) = (
        delete["start"].as_f64().unwrap_or_default(),
        delete["end"].as_f64().unwrap_or_default(),
    );
    // The releases are sent side by side with the delete, so one may reach
    // the emulator a moment before it: what counts is that each was sent
    // after the mark (the round before) and before the delete came back.
    let marked = calls
        .iter()
        .filter(|c| c["end"].as_f64().is_some_and(|e| e <= start))
        .filter_map(|c| c["end"].as_f64())
        .fold(f64::MIN, f64::max);
    let released_meanwhile = calls
        .iter()
        .filter(|c| c["action"] == "UpdateItem")
        .filter(|c| c["start"].as_f64().is_some_and(|s| s >= marked && s < end))
        .count();
    assert!(
        released_meanwhile >= 3,
        "the number, filter and target were let go during the delete: {calls:?}"
    );
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}
