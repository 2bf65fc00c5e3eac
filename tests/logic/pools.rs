//! Target pools on the fakes: a create to `pool:<name>` is placed on a
//! member in the source's zone first, then the least loaded; a full member
//! is skipped; with no room anywhere the create fails and says each
//! member's load; a remove frees its place; and the policy keeps a pooled
//! mirror where it is.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use traffic_mirroring::domain::ids::parse_target;
use traffic_mirroring::domain::Pools;

use crate::world::*;

fn pool_of(members: &[String]) -> Pools {
    let targets = members
        .iter()
        .map(|m| parse_target("targetNicId", m).expect("an ENI"))
        .collect();
    BTreeMap::from([("appliances".to_owned(), targets)])
}

fn pooled(members: &[String]) -> Fixture {
    fixture_set_up(Setup {
        pools: pool_of(members),
        ..Setup::default()
    })
}

fn create_in_pool(action_id: &str, source: &str) -> Value {
    create_with(action_id, source, "unused", json!({}))
        .pointer("/driverRequest/actions/0")
        .cloned()
        .map(|mut action| {
            let params = &mut action["actionParams"];
            params.as_object_mut().expect("params").remove("targetNicId");
            params["targetPool"] = json!("appliances");
            json!({"driverRequest": {"actions": [action]}})
        })
        .expect("an action")
}

#[tokio::test]
async fn a_source_goes_to_its_own_zone_first_then_to_the_least_loaded() {
    let members = [eni(90), eni(91), eni(92)];
    let world = pooled(&members);
    world.ec2.set_zone(&members[0], "us-east-1a");
    world.ec2.set_zone(&members[1], "us-east-1b");
    world.ec2.set_zone(&members[2], "us-east-1a");
    for n in 1..=4 {
        world.ec2.set_zone(&eni(n), "us-east-1a");
    }
    let mut placed = Vec::new();
    for n in 1..=4 {
        let made = world.run(create_in_pool(&format!("c{n}"), &eni(n))).await;
        assert_eq!(made["success"], true, "{made}");
        assert_eq!(made["placement"]["pool"], "pool:appliances");
        placed.push(made["placement"]["member"].as_str().expect("a member").to_owned());
        if n == 1 {
            let why = made["placement"]["why"].as_str().unwrap_or_default();
            assert!(why.contains("source's zone us-east-1a"), "{why}");
        }
    }
    // Zone a's two members take turns by load; zone b's is never used.
    assert_eq!(
        placed,
        [
            members[0].clone(),
            members[2].clone(),
            members[0].clone(),
            members[2].clone()
        ]
    );
    assert_eq!(world.ec2.sessions_on(&eni(1)).len(), 1);
    let record = world.ledger.record("c1").expect("recorded");
    assert_eq!(record.pool.as_deref(), Some("pool:appliances"));
    assert_eq!(record.target_key.as_deref(), Some(members[0].as_str()));
}

#[tokio::test]
async fn a_full_member_is_skipped_the_pool_can_be_exhausted_and_a_remove_frees_a_place() {
    let members = [eni(90), eni(91)];
    let world = pooled(&members);
    let mut sessions = Vec::new();
    for n in 1..=20 {
        let made = world.run(create_in_pool(&format!("c{n}"), &eni(n))).await;
        assert_eq!(made["success"], true, "{n}: {made}");
        sessions.push(session_of(&made));
    }
    assert_eq!(world.ec2.resources().2.len(), 2, "one target per member");
    let refused = world.run(create_in_pool("c21", &eni(21))).await;
    assert_eq!(refused["errorCode"], "TrafficMirrorPoolExhausted", "{refused}");
    let message = refused["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{} 10/10", members[0])) && message.contains(&format!("{} 10/10", members[1])),
        "{message}"
    );
    assert_eq!(world.counts().0, 20, "nothing made");
    let removed = world.run(remove_session("r1", &sessions[0])).await;
    assert_eq!(removed["success"], true, "{removed}");
    let again = world.run(create_in_pool("c22", &eni(22))).await;
    assert_eq!(again["success"], true, "the freed place is taken: {again}");
}

#[tokio::test]
async fn a_pool_the_deployment_does_not_define_or_allow_is_refused() {
    let world = pooled(&[eni(90)]);
    let mut unknown = create_in_pool("c1", &eni(1));
    unknown["driverRequest"]["actions"][0]["actionParams"]["targetPool"] = json!("elsewhere");
    let refused = world.run(unknown).await;
    assert_eq!(refused["errorCode"], "ValidationError", "{refused}");
    let closed = fixture_set_up(Setup {
        pools: pool_of(&[eni(90)]),
        allowed: traffic_mirroring::mirroring::Allowed {
            targets: traffic_mirroring::mirroring::AllowList::Only([eni(91)].into_iter().collect()),
            sources: traffic_mirroring::mirroring::AllowList::Any,
        },
        ..Setup::default()
    });
    let refused = closed.run(create_in_pool("c1", &eni(1))).await;
    assert_eq!(refused["errorCode"], "MirroringNotAllowed", "{refused}");
    let open = fixture_set_up(Setup {
        pools: pool_of(&[eni(90)]),
        allowed: traffic_mirroring::mirroring::Allowed {
            targets: traffic_mirroring::mirroring::AllowList::Only(
                ["pool:appliances".to_owned()].into_iter().collect(),
            ),
            sources: traffic_mirroring::mirroring::AllowList::Any,
        },
        ..Setup::default()
    });
    let made = open.run(create_in_pool("c1", &eni(1))).await;
    assert_eq!(made["success"], true, "a named pool is allowed: {made}");
}

#[tokio::test]
async fn the_policy_mirrors_to_a_pool_and_a_second_sweep_leaves_it_where_it_is() {
    let members = [eni(90), eni(91)];
    let world = pooled(&members);
    world
        .ec2
        .plant_instance("i-0000000a", &[&eni(1), &eni(2)], &[(TARGET_TAG, "pool:appliances")]);
    let first = world.sweep(false).await;
    assert_eq!(policy_of(&first)["created"], 2, "{first}");
    let second = world.sweep(false).await;
    assert_eq!(
        (
            policy_of(&second)["created"].clone(),
            policy_of(&second)["removed"].clone()
        ),
        (json!(0), json!(0)),
        "{second}"
    );
    assert_eq!(world.counts().0, 2);
}

#[tokio::test]
async fn a_replayed_create_to_a_pool_takes_no_place_and_a_retry_stays_on_its_member() {
    let world = pooled(&[eni(90)]);
    let made = world.run(create_in_pool("c1", &eni(1))).await;
    let member = made["placement"]["member"].clone();
    let session = session_of(&made);
    // Another source keeps the member's target in use.
    let other = world.run(create_in_pool("c2", &eni(2))).await;
    assert_eq!(other["success"], true, "{other}");
    // Answered again from the ledger: the same member, nothing new made.
    let again = world.run(create_in_pool("c1", &eni(1))).await;
    assert_eq!(again["placement"]["member"], member, "{again}");
    assert_eq!(world.counts().0, 2);
    // Removed, then replayed: the finished action takes no place again.
    let removed = world.run(remove_session("r1", &session)).await;
    assert_eq!(removed["success"], true, "{removed}");
    let users_before = world.ledger.claims_left();
    world.run(create_in_pool("c1", &eni(1))).await;
    assert_eq!(world.ledger.claims_left(), users_before, "the replay took no place");
    assert!(
        !users_before.iter().any(|claim| claim.contains("\"c1\"")),
        "{users_before:?}"
    );
}
