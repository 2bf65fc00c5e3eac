//! The reconcile sweep, on a world with every kind of drift at once, read
//! through more than one page of every Describe call.

use serde_json::{json, Value};

use crate::support::*;

const OURS: (&str, &str) = ("traffic-mirroring:managed-by", "traffic-mirroring");

fn our_tags(resource: aws_sdk_ec2::types::ResourceType, action: &str) -> aws_sdk_ec2::types::TagSpecification {
    use aws_sdk_ec2::types::{Tag, TagSpecification};
    TagSpecification::builder()
        .resource_type(resource)
        .tags(Tag::builder().key(OURS.0).value(OURS.1).build())
        .tags(Tag::builder().key("traffic-mirroring:action-id").value(action).build())
        .build()
}

/// Resources carrying our tag that no ledger entry knows: a target, and a
/// session with its filter on it, as a lost ledger write would leave them.
async fn plant_orphans(world: &World, label: &str) -> (String, String, String) {
    use aws_sdk_ec2::types::ResourceType;
    let (source, target_eni) = (world.eni().await, world.eni().await);
    let action = format!("lost-{label}");
    let target = world
        .ec2
        .create_traffic_mirror_target()
        .network_interface_id(&target_eni)
        .tag_specifications(our_tags(ResourceType::TrafficMirrorTarget, &action))
        .send()
        .await
        .expect("target");
    let target_id = target
        .traffic_mirror_target()
        .and_then(|t| t.traffic_mirror_target_id())
        .expect("id")
        .to_owned();
    let filter = world
        .ec2
        .create_traffic_mirror_filter()
        .tag_specifications(our_tags(ResourceType::TrafficMirrorFilter, &action))
        .send()
        .await
        .expect("filter");
    let filter_id = filter
        .traffic_mirror_filter()
        .and_then(|f| f.traffic_mirror_filter_id())
        .expect("id")
        .to_owned();
    let session = world
        .ec2
        .create_traffic_mirror_session()
        .network_interface_id(&source)
        .traffic_mirror_target_id(&target_id)
        .traffic_mirror_filter_id(&filter_id)
        .session_number(1)
        .tag_specifications(our_tags(ResourceType::TrafficMirrorSession, &action))
        .send()
        .await
        .expect("session");
    let session_id = session
        .traffic_mirror_session()
        .and_then(|s| s.traffic_mirror_session_id())
        .expect("id")
        .to_owned();
    (session_id, filter_id, target_id)
}

fn kinds(report: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["resource"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn the_sweep_reports_in_a_dry_run_then_repairs_every_kind_of_drift() {
    let world = World::start().await;
    // A healthy mirror, which the sweep must leave alone.
    let (healthy_source, healthy_target) = (world.eni().await, world.eni().await);
    let healthy = world
        .invoke(&seed_create("healthy", &healthy_source, &healthy_target))
        .await;
    let healthy_session = first_result(&healthy)["sessionId"].as_str().expect("id").to_owned();
    // A mirror whose source ENI was deleted with its instance: AWS deletes
    // the session, but not the filter or the target, and the ledger still says active.
    let (doomed_source, doomed_target) = (world.eni().await, world.eni().await);
    let vanished = world
        .invoke(&seed_create("vanished", &doomed_source, &doomed_target))
        .await;
    let vanished_session = first_result(&vanished)["sessionId"].as_str().expect("id").to_owned();
    world
        .ec2
        .delete_network_interface()
        .network_interface_id(&doomed_source)
        .send()
        .await
        .expect("eni deleted");
    // Orphans, more than one page of each (the emulator pages at 2).
    let mut orphans = Vec::new();
    for label in ["a", "b", "c"] {
        orphans.push(plant_orphans(&world, label).await);
    }
    let before_state = world.mirror_state().await;
    let before_ledger = world.ledger().await;

    let dry = world.sweep(true).await;

    let report = &dry["sweep"]["sweep"];
    assert_eq!(report["dryRun"], true);
    let mut expected = vec![("vanished_session".to_owned(), vanished_session.clone())];
    for (session, filter, target) in &orphans {
        expected.push(("orphan_session".into(), session.clone()));
        expected.push(("orphan_filter".into(), filter.clone()));
        expected.push(("unused_target".into(), target.clone()));
    }
    expected.sort();
    assert_eq!(kinds(report), expected, "{report}");
    assert!(report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .all(|f| f["outcome"] == "planned"));
    assert_eq!(
        world.mirror_state().await,
        before_state,
        "a dry run changes nothing in EC2"
    );
    assert_eq!(world.ledger().await.len(), before_ledger.len(), "nor in the ledger");

    let swept = world.sweep(false).await;

    let report = &swept["sweep"]["sweep"];
    assert_eq!(swept["sweep"]["success"], true, "{swept}");
    assert_eq!(kinds(report), expected, "{report}");
    assert_eq!(report["repaired"].as_u64(), Some(expected.len() as u64), "{report}");
    let state = world.mirror_state().await;
    assert_eq!(state.sessions.iter().collect::<Vec<_>>(), vec![&healthy_session]);
    assert_eq!(state.filters.len(), 1, "only the healthy mirror's filter");
    assert_eq!(state.targets.len(), 1, "only the healthy mirror's target");
    assert_eq!(
        world.ledger_item("vanished").await.expect("record")["status"],
        "removed"
    );
    assert_eq!(world.disagreements().await, Vec::<String>::new());
    // The sweep announces what it did.
    let events = world.events(3).await;
    assert!(
        events
            .iter()
            .any(|e| e["detail-type"] == "TrafficMirroringSweepCompleted"
                && e["detail"]["sweep"]["repaired"] == json!(10)),
        "{events:?}"
    );

    // Nothing is left to find.
    let again = world.sweep(false).await;
    assert_eq!(again["sweep"]["sweep"]["findings"], json!([]), "{again}");
}

#[tokio::test]
async fn a_scheduled_event_runs_the_sweep() {
    let world = World::start().await;
    let orphan = plant_orphans(&world, "scheduled").await;
    let scheduled = json!({
        "version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-23T08:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/sweep"], "detail": {}
    });

    let answer = world.app.invoke(scheduled).await.expect("answers");

    assert_eq!(answer["sweep"]["success"], true, "{answer}");
    let state = world.mirror_state().await;
    assert!(!state.sessions.contains(&orphan.0));
    assert!(!state.targets.contains(&orphan.2));
}
