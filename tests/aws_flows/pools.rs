//! Target pools over the wire (#24): placement holds under concurrency,
//! because a place is taken with the ledger's conditional write, and a
//! target on the emulator's m5.large appliances takes AWS's 10 sources.

use std::collections::BTreeSet;

use futures::future::join_all;
use serde_json::{json, Value};
use traffic_mirroring::domain::ids::parse_target;

use crate::support::*;

fn create_in_pool(action_id: &str, source: &str) -> Value {
    json!({"driverRequest": {"actions": [{"actionId": action_id, "type": "CreateTrafficMirroring",
        "actionParams": {"type": "CreateTrafficMirroringParams", "sourceNicId": source,
                         "targetPool": "appliances"}}]}})
}

#[tokio::test]
async fn twenty_creates_at_once_fill_two_appliances_exactly_and_the_next_is_told_the_pool_is_full() {
    let world = World::start().await;
    let members = [
        world.instance_eni("m5.large").await,
        world.instance_eni("m5.large").await,
    ];
    let app = world.app_with(|config| {
        let targets = members
            .iter()
            .map(|m| parse_target("targetNicId", m).expect("an ENI"))
            .collect();
        config.target_pools.insert("appliances".into(), targets);
    });
    let mut sources = Vec::new();
    for _ in 0..21 {
        sources.push(world.eni().await);
    }
    let answers = join_all(
        sources[..20]
            .iter()
            .enumerate()
            .map(|(n, source)| app.invoke(create_in_pool(&format!("c{n}"), source))),
    )
    .await;
    for answer in &answers {
        let answer = answer.as_ref().expect("answers");
        assert_eq!(first_result(answer)["success"], true, "{answer}");
    }
    // Each answer names its member and target; EC2 holds each session.
    let mut per_member: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for (answer, source) in answers.iter().zip(&sources) {
        let result = first_result(answer.as_ref().expect("answers"));
        let member = result["placement"]["member"].as_str().expect("placed").to_owned();
        let target = result["trafficMirrorTargetId"].as_str().expect("a target").to_owned();
        per_member.entry(member).or_default().insert(target);
        assert_eq!(world.sessions_on(source).await.len(), 1, "{source}");
    }
    let counts: Vec<usize> = members
        .iter()
        .map(|m| {
            answers
                .iter()
                .filter(|a| first_result(a.as_ref().expect("answers"))["placement"]["member"] == m.as_str())
                .count()
        })
        .collect();
    assert_eq!(counts, [10, 10], "each appliance holds ten sources");
    assert!(
        per_member.values().all(|targets| targets.len() == 1),
        "one target per member: {per_member:?}"
    );
    let full = app.invoke(create_in_pool("c20", &sources[20])).await.expect("answers");
    assert_eq!(first_result(&full)["errorCode"], "TrafficMirrorPoolExhausted", "{full}");
    assert!(world.disagreements().await.is_empty());
}

#[tokio::test]
async fn a_source_is_placed_in_its_own_zone_first_and_elsewhere_only_when_its_zone_has_no_member() {
    let world = World::start().await;
    let zone_a = world.subnet_in("us-east-1a", "10.0.2.0/24").await;
    let zone_b = world.subnet_in("us-east-1b", "10.0.3.0/24").await;
    let appliance = |subnet: String| {
        let world = &world;
        async move {
            let id = world.instance_in(&subnet, "m5.large", &[]).await;
            world.primary_eni(&id).await
        }
    };
    let (in_a, other_in_a, in_b) = (
        appliance(zone_a.clone()).await,
        appliance(zone_a.clone()).await,
        appliance(zone_b.clone()).await,
    );
    let app = world.app_with(|config| {
        let targets = [&in_b, &in_a, &other_in_a]
            .iter()
            .map(|m| parse_target("targetNicId", m).expect("an ENI"))
            .collect();
        config.target_pools.insert("appliances".into(), targets);
    });
    let mut placed_in_a = Vec::new();
    for n in 0..4 {
        let source = world.eni_in(&zone_a).await;
        let answer = app
            .invoke(create_in_pool(&format!("a{n}"), &source))
            .await
            .expect("answers");
        let result = first_result(&answer);
        assert_eq!(result["success"], true, "{answer}");
        placed_in_a.push(result["placement"]["member"].as_str().expect("placed").to_owned());
        assert!(
            result["placement"]["why"]
                .as_str()
                .unwrap_or_default()
                .contains("us-east-1a"),
            "{answer}"
        );
    }
    // Both zone-a appliances, two sources each: by load; never zone b's.
    for member in [&in_a, &other_in_a] {
        assert_eq!(
            placed_in_a.iter().filter(|m| *m == member).count(),
            2,
            "{placed_in_a:?}"
        );
    }
    let from_b = world.eni_in(&zone_b).await;
    let answer = app.invoke(create_in_pool("b0", &from_b)).await.expect("answers");
    assert_eq!(first_result(&answer)["placement"]["member"], in_b.as_str(), "{answer}");
}

/// A pool create's pending record says where it was placed from the claim
/// on, so a retry after a crash in flight finds its place again.
#[tokio::test]
async fn a_pool_creates_pending_record_names_its_place() {
    let world = World::start().await;
    let member = world.instance_eni("m5.large").await;
    let app = world.app_with(|config| {
        let target = parse_target("targetNicId", &member).expect("an ENI");
        config.target_pools.insert("appliances".into(), vec![target]);
    });
    let source = world.eni().await;
    world.emulator.hold_until_released("CreateTrafficMirrorSession").await;
    let create = app.invoke(create_in_pool("placed", &source));
    tokio::pin!(create);
    tokio::select! {
        _ = &mut create => panic!("the create must wait for its held session call"),
        () = world.emulator.wait_held("CreateTrafficMirrorSession") => {}
    }
    let pending = world.ledger_item("placed").await.expect("claimed");
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(pending["pool"], "pool:appliances", "{pending}");
    assert!(pending["placedBecause"].is_string(), "{pending}");
    world.emulator.release("CreateTrafficMirrorSession").await;
    let answer = create.await.expect("answers");
    assert_eq!(first_result(&answer)["success"], true, "{answer}");
}
