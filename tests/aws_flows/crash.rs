//! The process dies mid-create (a Lambda timeout, an out-of-memory kill):
//! the create is dropped while one of its AWS calls is in flight, and that
//! call still takes effect at the emulator, as it would at AWS. Whatever the
//! moment, the retry of the same action finishes the work, or the sweep undoes
//! it, and EC2 and the ledger agree afterwards.

use std::time::Duration;

use serde_json::{json, Value};
use traffic_mirroring::handler::App;

use crate::support::*;

/// The lease the dying function instance and its successors use (seconds).
const LEASE: u64 = 2;

/// The calls of a create that change something, each a moment to die in.
const CHANGING_CALLS: &[&str] = &[
    "CreateTrafficMirrorTarget",
    "CreateTrafficMirrorFilter",
    "CreateTrafficMirrorFilterRule",
    "CreateTrafficMirrorSession",
    "PutItem",
];

/// Starts the create and kills it while `call` is in flight: the emulator
/// holds the call until the create has been dropped, then lets it land.
/// Returns once it has, and the dead invocation's lease has run out.
async fn die_during(world: &World, app: &App, call: &str, request: &Value) {
    world.emulator.hold_until_released(call).await;
    {
        let create = app.handle(request);
        tokio::pin!(create);
        tokio::select! {
            _ = &mut create => panic!("{call}: the create must still be running when it dies"),
            () = world.emulator.wait_held(call) => {}
        }
        // The create is dropped here, its call in flight: the process died.
    }
    world.emulator.release_and_wait_applied(call).await;
    // The lease is wall-clock time in the ledger, in whole seconds: only
    // waiting lets it run out.
    tokio::time::sleep(Duration::from_millis(LEASE * 1000 + 1_200)).await;
}

#[tokio::test]
async fn the_retry_of_a_create_that_died_at_any_step_finishes_it() {
    let world = World::start().await;
    let app = world.app_with_lease(LEASE);
    for (n, call) in CHANGING_CALLS.iter().enumerate() {
        let (source, target) = (world.eni().await, world.eni().await);
        let request = seed_create_own_rules(&format!("died-{n}"), &source, &target, n);
        let before = world.mirror_state().await;
        die_during(&world, &app, call, &request).await;

        let retry = serde_json::to_value(app.handle(&request).await).expect("json");

        assert_eq!(first_result(&retry)["success"], true, "{call}: {retry}");
        let after = world.mirror_state().await;
        assert_eq!(after.sessions.len(), before.sessions.len() + 1, "{call}: one session");
        assert_eq!(after.filters.len(), before.filters.len() + 1, "{call}: one filter");
        assert_eq!(after.targets.len(), before.targets.len() + 1, "{call}: one target");
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{call}");
    }
}

#[tokio::test]
async fn the_sweep_undoes_a_create_that_died_at_any_step() {
    let world = World::start().await;
    let app = world.app_with_lease(LEASE);
    for (n, call) in CHANGING_CALLS.iter().enumerate() {
        let (source, target) = (world.eni().await, world.eni().await);
        let action_id = format!("swept-{n}");
        let request = seed_create_own_rules(&action_id, &source, &target, n);
        let before = world.our_resources().await;
        die_during(&world, &app, call, &request).await;

        let swept = app.invoke(json!({"sweep": {}})).await.expect("sweep answers");

        let report = &swept["sweep"]["sweep"];
        assert_eq!(swept["sweep"]["success"], true, "{call}: {swept}");
        let found = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["kind"] == "abandoned_action" && f["actionId"] == action_id.as_str());
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{call}");
        let record = world.ledger_item(&action_id).await.expect("record");
        if *call == "PutItem" {
            // The final write was in flight and landed: the create is complete
            // and the sweep must leave it alone.
            assert!(!found, "{call}: {report}");
            assert_eq!(record["status"], "active", "{call}");
            continue;
        }
        assert!(found, "{call}: the dead create is found: {report}");
        assert_eq!(
            world.our_resources().await,
            before,
            "{call}: everything it made is gone"
        );
        assert_eq!(record["status"], "failed", "{call}");
        assert_eq!(
            record["result"].as_str().map(|r| r.contains("ActionAbandoned")),
            Some(true)
        );

        // Undone cleanly, the action can simply run again.
        let retry = serde_json::to_value(app.handle(&request).await).expect("json");
        assert_eq!(first_result(&retry)["success"], true, "{call}: {retry}");
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "{call}");
    }
}
