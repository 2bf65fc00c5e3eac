//! The launch policy where only the wire shows it (#17): a fleet converging
//! over runs cut by their deadline or throttled without end, a report too
//! large for one EventBridge event, and a tag change while the ledger's
//! index lags. What the policy decides (backfill, exclusion, repair,
//! attachments, Nitro, VXLAN ingress, another deployment's sweep) is shown on
//! the fakes (tests/logic/fleet.rs).

use serde_json::{json, Value};

use crate::support::*;

const TARGET_TAG: &str = "traffic-mirroring:target";

/// The EventBridge event for a tag change on an instance (source `aws.tag`).
fn tag_change(instance_id: &str, key: &str) -> Value {
    json!({
        "version": "0", "id": "7c1f6a2e-tag", "detail-type": "Tag Change on Resource", "source": "aws.tag",
        "account": "123456789012", "time": "2026-12-04T12:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}")],
        "detail": {"changed-tag-keys": [key], "service": "ec2", "resource-type": "instance", "version": 3,
                   "tags": {key: "forged values are never read"}}
    })
}

fn policy_of(sweep: &Value) -> &Value {
    &sweep["sweep"]["sweep"]["policy"]
}

fn coverage_of<'a>(sweep: &'a Value, target: &str) -> &'a Value {
    policy_of(sweep)["coverage"]["targets"]
        .as_array()
        .and_then(|targets| targets.iter().find(|t| t["target"] == target))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_fleet_converges_over_several_runs_cut_by_their_deadline() {
    let world = World::start().await;
    let target = world.eni().await;
    let app = world.app_with(|config| {
        config.default_targets.insert(world.subnet_id.clone(), target.clone());
        // One mutating call a second: a 12-second run (5.5 s of it for work)
        // fits only a few creates.
        config.mutating_calls_per_second = Some(1.0);
    });
    let mut enis = Vec::new();
    for _ in 0..9 {
        let instance = world.instance("m5.large", &[]).await;
        enis.push(world.primary_eni(&instance).await);
    }
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 8, "did not converge in 8 runs");
        let (answer, _) = world.invoke_within(&app, 12, json!({"sweep": {}})).await;
        let policy = policy_of(&answer);
        assert!(policy.is_object(), "{answer}");
        if policy["complete"] == true && policy["coverage"]["missing"] == 0 {
            break;
        }
    }
    assert!(runs >= 2, "the pace should have cut the first run short");
    for eni in &enis {
        assert_eq!(world.sessions_on(eni).await.len(), 1, "{eni}: exactly once");
    }
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

/// A fleet's report can outgrow what EventBridge takes in one event (256 KB,
/// which the emulator enforces): the completion event still goes out, its
/// lists shortened and the numbers left out said; the answer keeps it whole.
#[tokio::test]
async fn a_sweep_report_too_large_for_an_event_is_shortened_not_lost() {
    let world = World::start().await;
    let target = world.eni().await;
    let tag = aws_sdk_ec2::types::Tag::builder()
        .key(TARGET_TAG)
        .value(&target)
        .build();
    // Room for them all (the world's own subnet is a /24).
    let vpc = world.vpc_id().await;
    let large = world
        .ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.128.0/17")
        .send()
        .await
        .expect("subnet")
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id")
        .to_owned();
    let mut stopped = Vec::new();
    while stopped.len() < 1_900 {
        let run = world
            .ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type("m5.large".into())
            .subnet_id(&large)
            .min_count(500)
            .max_count(500)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(tag.clone())
                    .build(),
            )
            .send()
            .await
            .expect("instances");
        let ids: Vec<String> = run
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        world
            .ec2
            .stop_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
            .expect("stopped");
        stopped.extend(ids);
    }
    let swept = world.sweep(false).await;
    let coverage = coverage_of(&swept, &target);
    assert_eq!(
        coverage["missing"].as_array().map(Vec::len),
        Some(stopped.len()),
        "the answer is whole"
    );
    let event = world
        .events(1)
        .await
        .into_iter()
        .find(|e| e["detail"]["type"] == "Sweep")
        .expect("the sweep's completion event");
    let sent = &event["detail"]["sweep"]["policy"]["coverage"]["targets"][0];
    assert_eq!(sent["missing"].as_array().map(Vec::len), Some(20), "{sent}");
    assert_eq!(sent["missingOmitted"], stopped.len() - 20);
    assert_eq!(sent["wanted"], stopped.len());
}

/// The ledger's indexes lag behind writes: a tag change right after a launch
/// finds the launch's mirror by its own key, so it neither makes a twin nor
/// misses the mirror it must remove.
#[tokio::test]
async fn a_tag_change_right_after_a_launch_holds_while_the_index_lags() {
    let world = World::start().await;
    world.emulator.configure(json!({"index_lag_ms": 60_000})).await;
    let target = world.eni().await;
    let instance = world.instance("m5.large", &[(TARGET_TAG, &target)]).await;
    let eni = world.primary_eni(&instance).await;
    world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("launched");
    let made = world.sessions_on(&eni).await;
    assert_eq!(made.len(), 1);

    let again = world
        .app
        .invoke(tag_change(&instance, TARGET_TAG))
        .await
        .expect("answer");
    assert!(again["skipped"].is_string(), "nothing to change: {again}");
    assert_eq!(world.sessions_on(&eni).await, made, "no twin");

    world
        .ec2
        .delete_tags()
        .resources(&instance)
        .tags(aws_sdk_ec2::types::Tag::builder().key(TARGET_TAG).build())
        .send()
        .await
        .expect("untag");
    let removed = world
        .app
        .invoke(tag_change(&instance, TARGET_TAG))
        .await
        .expect("answer");
    assert_eq!(removed["actionResults"][0]["success"], true, "{removed}");
    assert!(world.sessions_on(&eni).await.is_empty(), "{removed}");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

/// EC2 throttles session creates for longer than a run lasts: the sweep
/// answers before its deadline, says which ENIs wait, leaves nothing half
/// made, and a later run, the throttling over, mirrors each ENI once.
#[tokio::test]
async fn a_sweep_throttled_without_end_answers_in_time_and_the_next_one_converges() {
    let world = World::start().await;
    let target = world.eni().await;
    let app = world.app_with(|config| {
        config.default_targets.insert(world.subnet_id.clone(), target.clone());
    });
    let mut enis = Vec::new();
    for _ in 0..3 {
        let instance = world.instance("m5.large", &[]).await;
        enis.push(world.primary_eni(&instance).await);
    }
    world
        .emulator
        .throttle(json!(["CreateTrafficMirrorSession"]), 0.0, 0.0)
        .await;
    let (answer, took) = world.invoke_within(&app, 12, json!({"sweep": {}})).await;
    assert!(took < std::time::Duration::from_secs(12), "answered in time: {took:?}");
    let missing = &coverage_of(&answer, &target)["missing"];
    assert_eq!(missing.as_array().map(Vec::len), Some(3), "{answer}");
    for entry in missing.as_array().into_iter().flatten() {
        let reason = entry["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("throttled") || reason.starts_with("waiting for the next run"),
            "{reason}"
        );
    }
    assert!(world.our_resources().await.sessions.is_empty());
    assert_eq!(world.disagreements().await, Vec::<String>::new(), "nothing half made");

    world.emulator.clear_throttle().await;
    let (after, _) = world.invoke_within(&app, 30, json!({"sweep": {}})).await;
    assert_eq!(policy_of(&after)["coverage"]["missing"], 0, "{after}");
    for eni in &enis {
        assert_eq!(world.sessions_on(eni).await.len(), 1, "{eni}: exactly once");
    }
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}
