//! Removes as the wire shows them: how a remove's ledger releases overlap
//! its session's delete. What a remove takes and leaves is shown on the
//! fakes (tests/logic/remove.rs).

use crate::support::*;

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
