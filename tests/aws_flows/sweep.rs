//! The reconcile sweep, on a world with every kind of drift at once, read
//! through more than one page of every Describe call.

use serde_json::{json, Value};

use crate::support::*;

fn tags_of(
    resource: aws_sdk_ec2::types::ResourceType,
    owner: &str,
    action: &str,
) -> aws_sdk_ec2::types::TagSpecification {
    use aws_sdk_ec2::types::{Tag, TagSpecification};
    TagSpecification::builder()
        .resource_type(resource)
        .tags(Tag::builder().key("traffic-mirroring:managed-by").value(owner).build())
        .tags(Tag::builder().key("traffic-mirroring:action-id").value(action).build())
        .build()
}

/// What `plant` made, as EC2 ids.
pub struct Planted {
    pub session: Option<String>,
    pub filter: String,
    pub target: String,
}

/// Resources tagged with `owner` that no ledger entry knows: a target and a
/// filter, and, `with_session`, a session on them, as a ledger that lost its
/// items would leave them; without one, as a maker that died between making
/// and recording would.
pub async fn plant(world: &World, label: &str, owner: &str, with_session: bool) -> Planted {
    use aws_sdk_ec2::types::ResourceType;
    let (source, target_eni) = (world.eni().await, world.eni().await);
    let action = format!("lost-{label}");
    let target = world
        .ec2
        .create_traffic_mirror_target()
        .network_interface_id(&target_eni)
        .tag_specifications(tags_of(ResourceType::TrafficMirrorTarget, owner, &action))
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
        .tag_specifications(tags_of(ResourceType::TrafficMirrorFilter, owner, &action))
        .send()
        .await
        .expect("filter");
    let filter_id = filter
        .traffic_mirror_filter()
        .and_then(|f| f.traffic_mirror_filter_id())
        .expect("id")
        .to_owned();
    let mut session_id = None;
    if with_session {
        let session = world
            .ec2
            .create_traffic_mirror_session()
            .network_interface_id(&source)
            .traffic_mirror_target_id(&target_id)
            .traffic_mirror_filter_id(&filter_id)
            .session_number(1)
            .tag_specifications(tags_of(ResourceType::TrafficMirrorSession, owner, &action))
            .send()
            .await
            .expect("session");
        session_id = session
            .traffic_mirror_session()
            .and_then(|s| s.traffic_mirror_session_id())
            .map(str::to_owned);
    }
    Planted {
        session: session_id,
        filter: filter_id,
        target: target_id,
    }
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
    // More than one page of each (the emulator pages at 2): sessions of ours
    // that lost their records, and unused filters and targets of ours.
    let owner = world.config.owner.clone();
    let mut untracked = Vec::new();
    let mut unused = Vec::new();
    for label in ["a", "b", "c"] {
        untracked.push(plant(&world, label, &owner, true).await);
        unused.push(plant(&world, &format!("unused-{label}"), &owner, false).await);
    }
    let before_state = world.mirror_state().await;
    let before_ledger = world.ledger().await;

    let dry = world.sweep(true).await;

    let report = &dry["sweep"]["sweep"];
    assert_eq!(report["dryRun"], true);
    let mut expected = vec![("vanished_session".to_owned(), vanished_session.clone())];
    for planted in &untracked {
        expected.push(("untracked_session".into(), planted.session.clone().expect("a session")));
    }
    for planted in &unused {
        expected.push(("orphan_filter".into(), planted.filter.clone()));
        expected.push(("unused_target".into(), planted.target.clone()));
    }
    expected.sort();
    assert_eq!(kinds(report), expected, "{report}");
    let findings = report["findings"].as_array().expect("findings");
    assert!(findings.iter().all(|f| f["outcome"] == "planned"));
    assert!(
        findings
            .iter()
            .all(|f| f["rule"].as_str().is_some_and(|r| !r.is_empty())),
        "each finding says which rule applied: {report}"
    );
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
    // Six unused filters and targets, five deleted per run by default.
    assert_eq!(report["repaired"].as_u64(), Some(1 + 3 + 5), "{report}");
    assert_eq!(report["deferred"].as_u64(), Some(1), "{report}");
    let outcome_of = |id: &str| {
        findings_of(report)
            .into_iter()
            .find(|f| f["resource"] == id)
            .map(|f| f["outcome"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let state = world.mirror_state().await;
    for planted in &untracked {
        let session = planted.session.as_deref().expect("a session");
        assert!(state.sessions.contains(session), "a live session is never deleted");
        assert!(state.filters.contains(&planted.filter) && state.targets.contains(&planted.target));
        assert!(outcome_of(session).starts_with("adopted"), "{report}");
        let record = world
            .ledger()
            .await
            .into_iter()
            .find(|item| item["sessionId"] == session)
            .expect("adopted into the ledger");
        assert_eq!(record["status"], "active");
    }
    assert!(state.sessions.contains(&healthy_session));
    assert_eq!(
        state.sessions.len(),
        4,
        "the healthy session and the three adopted ones"
    );
    assert_eq!(
        state.filters.len() + state.targets.len(),
        2 + 6 + 1,
        "the healthy and adopted mirrors' filters and targets, and one unused resource left to the next run"
    );
    assert_eq!(
        world.ledger_item("vanished").await.expect("record")["status"],
        "removed"
    );
    // The sweep announces what it did.
    let events = world.events(3).await;
    assert!(
        events
            .iter()
            .any(|e| e["detail-type"] == "TrafficMirroringSweepCompleted"
                && e["detail"]["sweep"]["repaired"] == json!(9)),
        "{events:?}"
    );

    // The next run deletes what the cap held back; then the world agrees.
    let next = world.sweep(false).await;
    assert_eq!(next["sweep"]["sweep"]["repaired"], json!(1), "{next}");
    assert_eq!(
        world.mirror_state().await.filters.len() + world.mirror_state().await.targets.len(),
        8
    );
    assert_eq!(world.disagreements().await, Vec::<String>::new());

    // Nothing is left to find.
    let again = world.sweep(false).await;
    assert_eq!(again["sweep"]["sweep"]["findings"], json!([]), "{again}");
}

#[tokio::test]
async fn a_scheduled_event_runs_the_sweep() {
    let world = World::start().await;
    let unused = plant(&world, "scheduled", &world.config.owner, false).await;
    let scheduled = json!({
        "version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-23T08:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/sweep"], "detail": {}
    });

    let answer = world.app.invoke(scheduled).await.expect("answers");

    assert_eq!(answer["sweep"]["success"], true, "{answer}");
    let state = world.mirror_state().await;
    assert!(!state.filters.contains(&unused.filter));
    assert!(!state.targets.contains(&unused.target));
}

fn findings_of(report: &Value) -> Vec<Value> {
    report["findings"].as_array().cloned().unwrap_or_default()
}
