//! Completion events really arrive: the bus routes them to a queue we read.

use crate::support::*;

#[tokio::test]
async fn every_action_publishes_one_completion_event_with_its_result() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let created = world.invoke(&seed_create("ev-1", &source, &target)).await;
    let session = first_result(&created)["sessionId"].as_str().expect("id").to_owned();
    world.invoke(&remove("ev-rm", &session, "")).await;
    world.invoke(&create("ev-bad", &source, &source, None)).await;

    let events = world.events(3).await;

    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["detail-type"].as_str().unwrap_or_default(),
                e["detail"]["actionId"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("TrafficMirroringCreated", "ev-1"),
            ("TrafficMirroringRemoved", "ev-rm"),
            ("TrafficMirroringFailed", "ev-bad")
        ]
    );
    assert!(events.iter().all(|e| e["source"] == "traffic-mirroring"));
    assert_eq!(events[0]["detail"]["sessionId"], session.as_str());
    assert_eq!(events[2]["detail"]["errorCode"], "ValidationError");
}

#[tokio::test]
async fn a_lost_completion_event_does_not_change_the_result() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    world
        .emulator
        .fail_next("PutEvents", "AccessDeniedException", 400, 1)
        .await;
    let response = world.invoke(&create("ev-lost", &source, &target, None)).await;
    assert_eq!(first_result(&response)["success"], true, "{response}");
    assert_eq!(world.app.unpublished_events(), 1, "the lost event is counted");
    assert_eq!(world.mirror_state().await.sessions.len(), 1);
}
