//! Shared filters under concurrency, and a small launch storm: instance
//! launches queued as EventBridge events in SQS batches, taken by several
//! function instances at once, against a token bucket on EC2's mutating calls.

use futures::future::join_all;
use serde_json::{json, Value};
use traffic_mirroring::handler::App;

use crate::support::*;

/// Equal rule sets, spelled and ordered differently.
fn rules(variant: usize) -> Value {
    let web = json!({"direction": "ingress", "protocol": "tcp",
                     "destinationPortRange": {"fromPort": 443, "toPort": 443}});
    let dns = json!({"direction": "egress", "protocol": 17, "sourceCidr": "0.0.0.0/0"});
    let web_spelled_otherwise = json!({"direction": "INGRESS", "protocol": "6",
                                       "destinationPortRange": {"fromPort": "443"}});
    match variant % 3 {
        0 => json!([web, dns]),
        1 => json!([dns, web_spelled_otherwise]),
        _ => json!([web_spelled_otherwise, dns, web]),
    }
}

fn create_with_rules(action_id: &str, source: &str, target: &str, variant: usize) -> Value {
    json!({"driverRequest": {"actions": [{"actionId": action_id, "type": "CreateTrafficMirroring",
        "actionParams": {"sourceNicId": source, "targetNetworkLoadBalancerArn": target,
                         "filterRules": rules(variant)}}]}})
}

/// Every session in EC2, all pages (the emulator pages at two).
async fn all_sessions(world: &World) -> Vec<aws_sdk_ec2::types::TrafficMirrorSession> {
    world
        .ec2
        .describe_traffic_mirror_sessions()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("sessions")
}

async fn run_all(apps: &[App], requests: &[Value]) -> Vec<Value> {
    let calls = requests.iter().enumerate().map(|(i, request)| {
        let app = &apps[i % apps.len()];
        async move { serde_json::to_value(app.handle(request).await).expect("serializes") }
    });
    join_all(calls).await
}

#[tokio::test]
async fn concurrent_creates_with_one_rule_set_make_exactly_one_filter() {
    let world = World::start().await;
    let target = nlb_arn("shared-filters");
    let mut requests = Vec::new();
    for n in 0..12 {
        let source = world.eni().await;
        requests.push(create_with_rules(&format!("share-{n}"), &source, &target, n));
    }
    world.emulator.configure(json!({"latency_ms": {"default": 15}})).await;
    let apps: Vec<App> = (0..6).map(|_| world.another_app()).collect();

    let responses = run_all(&apps, &requests).await;

    let filters: Vec<&str> = responses
        .iter()
        .map(|r| {
            assert_eq!(first_result(r)["success"], true, "{r}");
            first_result(r)["trafficMirrorFilterId"].as_str().expect("filter")
        })
        .collect();
    let state = world.mirror_state().await;
    assert_eq!(state.filters.len(), 1, "one filter for one rule set");
    assert!(filters.iter().all(|f| state.filters.contains(*f)));
    assert_eq!(state.sessions.len(), 12);
    assert_eq!(world.disagreements().await, Vec::<String>::new());
    let calls = world.emulator.calls().await;
    let count = |action: &str| {
        calls
            .iter()
            .filter(|c| c["action"] == action && c["status"] == 200)
            .count()
    };
    assert_eq!(count("CreateTrafficMirrorFilter"), 1, "made once");
    assert_eq!(count("CreateTrafficMirrorFilterRule"), 2, "its two rules, once each");
}

#[tokio::test]
async fn a_remove_racing_creates_never_deletes_the_filter_they_are_about_to_use() {
    let world = World::start().await;
    let target = nlb_arn("race");
    for round in 0..3 {
        let first_source = world.eni().await;
        let first = world
            .invoke(&create_with_rules(
                &format!("r{round}-first"),
                &first_source,
                &target,
                0,
            ))
            .await;
        let session = first_result(&first)["sessionId"].as_str().expect("session").to_owned();
        // The remove takes the filter's last user away while the creates join it.
        let mut requests = vec![remove(&format!("r{round}-rm"), &session, "")];
        for n in 1..6 {
            let source = world.eni().await;
            requests.push(create_with_rules(&format!("r{round}-{n}"), &source, &target, n));
        }
        world.emulator.configure(json!({"latency_ms": {"default": 10}})).await;
        let apps: Vec<App> = (0..6).map(|_| world.another_app()).collect();

        let responses = run_all(&apps, &requests).await;

        world.emulator.configure(json!({"latency_ms": {"default": 0}})).await;
        for response in &responses {
            assert_eq!(first_result(response)["success"], true, "round {round}: {response}");
        }
        let state = world.mirror_state().await;
        let sessions = all_sessions(&world).await;
        for session in &sessions {
            let filter = session.traffic_mirror_filter_id().unwrap_or_default();
            assert!(
                state.filters.contains(filter),
                "round {round}: session uses a filter that exists"
            );
        }
        assert_eq!(state.filters.len(), 1, "round {round}");
        assert_eq!(world.disagreements().await, Vec::<String>::new(), "round {round}");
        // Clean up for the next round, so the remove again takes the last user.
        for session in &sessions {
            let id = session.traffic_mirror_session_id().unwrap_or_default();
            let removed = world.invoke(&remove(&format!("r{round}-clean-{id}"), id, "")).await;
            assert_eq!(first_result(&removed)["success"], true, "{removed}");
        }
        assert_eq!(world.mirror_state().await, MirrorState::default(), "round {round}");
    }
}

/// Feeds SQS batches to the function instances, all at once, and hands
/// records reported in `batchItemFailures` back, as the event source mapping
/// does, until every record is consumed. Returns how many deliveries it took.
async fn drain(apps: &[App], mut records: Vec<Value>, batch_size: usize) -> usize {
    for delivery in 0..20 {
        if records.is_empty() {
            return delivery;
        }
        let batches: Vec<Value> = records
            .chunks(batch_size)
            .map(|chunk| json!({"Records": chunk}))
            .collect();
        let answers = join_all(batches.iter().enumerate().map(|(i, batch)| {
            let app = &apps[i % apps.len()];
            async move { app.invoke(batch.clone()).await.expect("an SQS batch always answers") }
        }))
        .await;
        let failed: Vec<String> = answers
            .iter()
            .flat_map(|a| a["batchItemFailures"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
            .collect();
        records.retain(|r| r["messageId"].as_str().is_some_and(|id| failed.iter().any(|f| f == id)));
    }
    panic!("records still failing after 20 deliveries: {records:?}");
}

#[tokio::test]
async fn a_throttled_launch_storm_mirrors_every_eni_once_with_shared_target_and_filter() {
    let mut world = World::start().await;
    let target = nlb_arn("storm");
    let mut config = world.config.clone();
    config.default_targets.insert(world.subnet_id.clone(), target.clone());
    world.config = config;
    let mut expected = Vec::new();
    let mut records = Vec::new();
    for n in 0..16 {
        let instance = world.instance("m5.large", &[]).await;
        expected.push(world.primary_eni(&instance).await);
        if n % 2 == 0 {
            let second = world.eni().await;
            world.attach(&instance, &second, 1).await;
            expected.push(second);
        }
        records.push(sqs_record(&format!("launch-{n}"), &state_change(&instance, "running")));
    }
    world.emulator.configure(json!({"latency_ms": {"default": 5}})).await;
    world.emulator.clear_calls().await;
    // Far fewer tokens than the storm's calls: the rest must wait their turn.
    world.emulator.throttle(json!("mutating"), 4.0, 8.0).await;
    let apps: Vec<App> = (0..3).map(|_| world.another_app()).collect();

    let deliveries = drain(&apps, records, 5).await;

    world.emulator.clear_throttle().await;
    let sessions = all_sessions(&world).await;
    let mut mirrored: Vec<&str> = sessions.iter().filter_map(|s| s.network_interface_id()).collect();
    mirrored.sort_unstable();
    let mut wanted: Vec<&str> = expected.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    assert_eq!(mirrored, wanted, "every ENI mirrored exactly once");
    let state = world.mirror_state().await;
    assert_eq!(
        (state.targets.len(), state.filters.len()),
        (1, 1),
        "shared target and filter"
    );
    assert_eq!(
        world.disagreements().await,
        Vec::<String>::new(),
        "no orphan, nothing missing"
    );

    let calls = world.emulator.calls().await;
    let throttled = calls.iter().filter(|c| c["error"] == "RequestLimitExceeded").count();
    assert!(throttled > 0, "the bucket did throttle the storm");
    let mutating_ok = calls
        .iter()
        .filter(|c| {
            c["status"] == 200
                && c["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("Create") || a.starts_with("Delete"))
                && c["service"] == "ec2"
        })
        .count();
    // One session per ENI, plus the target, the filter and its four rules, once.
    assert_eq!(
        mutating_ok,
        expected.len() + 6,
        "no call made twice, nothing rolled back"
    );
    let events = world.events(expected.len()).await;
    let failures: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail-type"] != "TrafficMirroringCreated")
        .collect();
    assert!(failures.is_empty(), "no caller saw a failure: {failures:?}");
    assert_eq!(events.len(), expected.len());
    assert_eq!(
        deliveries, 1,
        "the storm waited out the throttling without handing records back"
    );
}

#[tokio::test]
async fn processes_pacing_their_writes_stay_inside_the_bucket() {
    let world = World::start().await;
    let target = nlb_arn("paced");
    let mut requests = Vec::new();
    for n in 0..15 {
        let source = world.eni().await;
        requests.push(create_with_rules(&format!("paced-{n}"), &source, &target, n));
    }
    world.emulator.clear_calls().await;
    // Three processes at 2 writes a second each: 6 a second against a refill of 8.
    world.emulator.throttle(json!("mutating"), 6.0, 8.0).await;
    let apps: Vec<App> = (0..3)
        .map(|_| {
            let mut config = world.config.clone();
            config.mutating_calls_per_second = Some(2.0);
            traffic_mirroring::app::build(&world.sdk, &config)
        })
        .collect();

    let responses = run_all(&apps, &requests).await;

    for response in &responses {
        assert_eq!(first_result(response)["success"], true, "{response}");
    }
    let calls = world.emulator.calls().await;
    let throttled = calls.iter().filter(|c| c["error"] == "RequestLimitExceeded").count();
    assert_eq!(throttled, 0, "paced processes are never throttled");
    assert_eq!(world.mirror_state().await.sessions.len(), 15);
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}
