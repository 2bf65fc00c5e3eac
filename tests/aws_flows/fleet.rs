//! The launch policy as desired state (#17): the sweep backfills, repairs
//! and prunes policy mirrors and reports coverage; tag changes and ENI
//! attachments act at once; a stale success is never replayed.

use serde_json::{json, Value};

use crate::support::*;
use traffic_mirroring::handler::App;

const TARGET_TAG: &str = "traffic-mirroring:target";
const EXCLUDE_TAG: &str = "traffic-mirroring:exclude";

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

/// CloudTrail's record of an ENI attachment, as EventBridge delivers it.
fn attached(instance_id: &str, eni: &str) -> Value {
    json!({
        "version": "0", "id": "7c1f6a2e-attach", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
        "account": "123456789012", "time": "2026-12-04T12:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"eventSource": "ec2.amazonaws.com", "eventName": "AttachNetworkInterface",
                   "requestParameters": {"networkInterfaceId": eni, "instanceId": instance_id, "deviceIndex": 1}}
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

async fn sweep_with(app: &App, dry_run: bool) -> Value {
    app.invoke(json!({"sweep": {"dryRun": dry_run}}))
        .await
        .expect("a sweep answers")
}

#[tokio::test]
async fn the_sweep_backfills_instances_running_before_it_and_a_dry_run_only_reports() {
    let world = World::start().await;
    let target = world.eni().await;
    let tagged = world.instance("m5.large", &[(TARGET_TAG, &target)]).await;
    let untagged = world.instance("m5.large", &[]).await;
    let (tagged_eni, untagged_eni) = (world.primary_eni(&tagged).await, world.primary_eni(&untagged).await);

    let dry = world.sweep(true).await;
    let planned = coverage_of(&dry, &target);
    assert_eq!(planned["wanted"], 1, "{dry}");
    assert_eq!(planned["mirrored"], 0, "{dry}");
    assert!(
        planned["missing"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("planned")),
        "{dry}"
    );
    assert!(
        world.mirror_state().await.sessions.is_empty(),
        "a dry run changes nothing"
    );

    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["created"], 1, "{swept}");
    assert_eq!(coverage_of(&swept, &target)["mirrored"], 1, "{swept}");
    assert_eq!(world.sessions_on(&tagged_eni).await.len(), 1);
    assert!(
        world.sessions_on(&untagged_eni).await.is_empty(),
        "the policy names no target for it"
    );

    // Converged: the next sweep changes nothing.
    let again = world.sweep(false).await;
    assert_eq!(policy_of(&again)["created"], 0, "{again}");
    assert_eq!(world.sessions_on(&tagged_eni).await.len(), 1, "no duplicate");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_tag_change_mirrors_an_instance_and_its_removal_unmirrors_it() {
    let world = World::start().await;
    let target = world.eni().await;
    let instance = world.instance("m5.large", &[]).await;
    let eni = world.primary_eni(&instance).await;

    let nothing = world
        .app
        .invoke(tag_change(&instance, TARGET_TAG))
        .await
        .expect("answer");
    assert!(nothing["skipped"].is_string(), "no tag yet: {nothing}");
    assert!(world.sessions_on(&eni).await.is_empty());

    world.tag(&[&instance], TARGET_TAG, &target).await;
    let added = world
        .app
        .invoke(tag_change(&instance, TARGET_TAG))
        .await
        .expect("answer");
    assert_eq!(added["actionResults"][0]["success"], true, "{added}");
    assert_eq!(world.sessions_on(&eni).await.len(), 1);

    // A redelivered event changes nothing.
    world
        .app
        .invoke(tag_change(&instance, TARGET_TAG))
        .await
        .expect("answer");
    assert_eq!(world.sessions_on(&eni).await.len(), 1);

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
    assert!(
        world.our_resources().await.filters.is_empty(),
        "its filter went with its last user"
    );

    // Tagged again: mirrored again, under the same action id, not a replay of the old success.
    world.tag(&[&instance], TARGET_TAG, &target).await;
    let again = world
        .app
        .invoke(tag_change(&instance, TARGET_TAG))
        .await
        .expect("answer");
    assert_eq!(again["actionResults"][0]["success"], true, "{again}");
    let now = world.sessions_on(&eni).await;
    assert_eq!(now.len(), 1, "{again}");
    assert_eq!(again["actionResults"][0]["sessionId"], now[0].as_str());
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn the_exclude_tag_wins_over_the_default_target() {
    let world = World::start().await;
    let target = world.eni().await;
    let app = world.app_with(|config| {
        config.default_targets.insert(world.subnet_id.clone(), target.clone());
    });
    let excluded = world.instance("m5.large", &[(EXCLUDE_TAG, "true")]).await;
    let included = world.instance("m5.large", &[]).await;
    let (excluded_eni, included_eni) = (world.primary_eni(&excluded).await, world.primary_eni(&included).await);

    let launch = app.invoke(state_change(&excluded, "running")).await.expect("answer");
    assert!(
        launch["skipped"].as_str().is_some_and(|s| s.contains(EXCLUDE_TAG)),
        "{launch}"
    );
    let swept = sweep_with(&app, false).await;
    assert_eq!(
        coverage_of(&swept, &target)["wanted"],
        1,
        "only the included one: {swept}"
    );
    assert!(world.sessions_on(&excluded_eni).await.is_empty());
    assert_eq!(world.sessions_on(&included_eni).await.len(), 1);

    // Excluded later: the sweep removes the policy's mirror.
    world.tag(&[&included], EXCLUDE_TAG, "true").await;
    let pruned = sweep_with(&app, false).await;
    assert_eq!(policy_of(&pruned)["removed"], 1, "{pruned}");
    assert!(world.sessions_on(&included_eni).await.is_empty());
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_policy_mirror_deleted_by_hand_is_made_again_and_never_replayed() {
    let world = World::start().await;
    let target = world.eni().await;
    let instance = world.instance("m5.large", &[(TARGET_TAG, &target)]).await;
    let eni = world.primary_eni(&instance).await;
    let launched = world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("answer");
    let first = launched["actionResults"][0]["sessionId"]
        .as_str()
        .expect("a session")
        .to_owned();

    // Deleted by a person: drift.
    world.delete_session_behind_our_back(&first).await;
    // The instance stops and starts: its `running` event must not replay the old success.
    let relaunched = world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("answer");
    let second = relaunched["actionResults"][0]["sessionId"].as_str().unwrap_or_default();
    assert!(!second.is_empty() && second != first, "{relaunched}");
    assert_eq!(world.sessions_on(&eni).await, vec![second.to_owned()]);

    // Deleted by hand again: the next sweep repairs it.
    world.delete_session_behind_our_back(second).await;
    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["created"], 1, "{swept}");
    let third = world.sessions_on(&eni).await;
    assert_eq!(third.len(), 1, "{swept}");
    assert!(third[0] != first && third[0] != second);
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn an_attached_eni_is_mirrored_at_once_and_by_the_sweep() {
    let world = World::start().await;
    let target = world.eni().await;
    let instance = world.instance("m5.large", &[(TARGET_TAG, &target)]).await;
    world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("answer");
    let (second, third) = (world.eni().await, world.eni().await);

    world.attach(&instance, &second, 1).await;
    let answer = world.app.invoke(attached(&instance, &second)).await.expect("answer");
    assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
    assert_eq!(world.sessions_on(&second).await.len(), 1);

    // No event for this one (no trail): the sweep finds it.
    world.attach(&instance, &third, 2).await;
    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["created"], 1, "{swept}");
    assert_eq!(world.sessions_on(&third).await.len(), 1);
    assert_eq!(coverage_of(&swept, &target)["wanted"], 3, "{swept}");
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_non_nitro_instance_is_reported_not_tried() {
    let world = World::start().await;
    let target = world.eni().await;
    world.instance("t2.micro", &[(TARGET_TAG, &target)]).await;
    world.emulator.clear_calls().await;
    let swept = world.sweep(false).await;
    let not_nitro = &policy_of(&swept)["coverage"]["notNitro"];
    assert_eq!(not_nitro.as_array().map(Vec::len), Some(1), "{swept}");
    let calls = world.emulator.calls().await;
    assert!(
        !calls.iter().any(|c| c["action"] == "CreateTrafficMirrorSession"),
        "never tried"
    );
    assert!(world.mirror_state().await.sessions.is_empty());
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

#[tokio::test]
async fn a_target_whose_security_group_shuts_out_vxlan_is_reported() {
    let world = World::start().await;
    let vpc = world.vpc_id().await;
    let closed = world
        .ec2
        .create_security_group()
        .group_name(unique("closed"))
        .description("admits nothing")
        .vpc_id(&vpc)
        .send()
        .await
        .expect("group")
        .group_id()
        .expect("group id")
        .to_owned();
    let shut = world
        .ec2
        .create_network_interface()
        .subnet_id(&world.subnet_id)
        .groups(&closed)
        .send()
        .await
        .expect("eni")
        .network_interface()
        .and_then(|e| e.network_interface_id())
        .expect("eni id")
        .to_owned();
    let (source, open_target, other) = (world.eni().await, world.eni().await, world.eni().await);

    let created = world.invoke(&seed_create("vx-shut", &source, &shut)).await;
    let result = first_result(&created);
    assert_eq!(result["success"], true, "{created}");
    assert!(
        result["infoMessage"].as_str().is_some_and(|m| m.contains("UDP 4789")),
        "{created}"
    );
    // The VPC's default group admits its own members: no warning.
    let fine = world.invoke(&seed_create("vx-open", &other, &open_target)).await;
    assert!(
        !first_result(&fine)["infoMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("4789"),
        "{fine}"
    );

    let instance = world.instance("m5.large", &[(TARGET_TAG, &shut)]).await;
    let swept = world.sweep(false).await;
    let coverage = coverage_of(&swept, &shut);
    assert_eq!(coverage["wanted"], 1, "{swept}");
    assert_eq!(coverage["mirrored"], 0, "never counted as covered: {swept}");
    assert_eq!(coverage["notDelivering"][0]["instanceId"], instance.as_str(), "{swept}");
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

/// Another deployment in the account sweeps too: it never removes a policy
/// mirror that is ours, even one our policy no longer wants; ours does.
#[tokio::test]
async fn another_deployments_sweep_leaves_our_policy_mirrors_alone() {
    let world = World::start().await;
    let (other, _) = world.second_deployment().await;
    let target = world.eni().await;
    let instance = world.instance("m5.large", &[(TARGET_TAG, &target)]).await;
    let eni = world.primary_eni(&instance).await;
    world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("launched");
    let ours = world.sessions_on(&eni).await;
    assert_eq!(ours.len(), 1);
    world.tag(&[&instance], EXCLUDE_TAG, "true").await;

    let theirs = other.invoke(json!({"sweep": {}})).await.expect("answer");
    assert_eq!(policy_of(&theirs)["removed"], 0, "{theirs}");
    assert_eq!(world.sessions_on(&eni).await, ours, "not theirs to remove");

    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["removed"], 1, "{swept}");
    assert!(world.sessions_on(&eni).await.is_empty());
}
