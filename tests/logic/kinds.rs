//! Every kind of target (ENI, Network Load Balancer, Gateway Load Balancer
//! endpoint, an existing target), an existing filter, and the dry run.

use serde_json::{json, Value};

use crate::world::*;

#[tokio::test]
async fn a_dry_run_changes_nothing_and_announces_nothing() {
    let world = fixture();
    let mut request = create("d1", 1, 9, 443);
    request["driverRequest"]["dryRun"] = json!(true);
    let planned = world.run(request).await;
    assert_eq!(
        (planned["success"].clone(), planned["dryRun"].clone()),
        (json!(true), json!(true)),
        "{planned}"
    );
    assert_eq!(planned["plan"]["target"]["plan"]["action"], "create", "{planned}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.record("d1"), None);
    assert!(world.bus.events.lock().expect("events").is_empty());
}

#[tokio::test]
async fn a_filter_the_caller_named_is_used_and_never_deleted() {
    let world = fixture();
    let theirs = world.ec2.plant_session(&eni(1), &eni(2), &[]);
    let (_, filters, _) = world.ec2.resources();
    let filter = filters[0].clone();
    let mut request = create("c1", 3, 9, 443);
    let params = &mut request["driverRequest"]["actions"][0]["actionParams"];
    params["filterRules"] = Value::Null;
    params["trafficMirrorFilterId"] = json!(filter);
    let made = world.run(request).await;
    assert_eq!(made["trafficMirrorFilterId"], filter.as_str(), "{made}");
    let session = made["sessionId"].as_str().expect("made").to_owned();
    world.run(remove_session("r1", &session)).await;
    let (sessions, filters, _) = world.ec2.resources();
    assert!(filters.contains(&filter), "the caller's filter stays");
    assert_eq!(sessions, vec![theirs]);
}
