//! Every event source, through `App::invoke` with the payloads AWS delivers.

use serde_json::{json, Value};

use crate::support::*;
use std::time::{Duration, Instant};
use traffic_mirroring::deadline::within;

fn failed_ids(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_sqs_batch_consumes_what_cannot_succeed_and_returns_what_may() {
    let world = World::start().await;
    let (a, b, c, d, busy_target, target) = (
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
    );
    // `target` already has its mirror target; `busy_target` needs one made,
    // and EC2 throttles that for longer than this invocation lasts.
    let warm = world.invoke(&create("sqs-0", &d, &target, None)).await;
    assert_eq!(first_result(&warm)["success"], true, "{warm}");
    world
        .emulator
        .fail_next("CreateTrafficMirrorTarget", "RequestLimitExceeded", 503, 1_000_000)
        .await;
    let batch = json!({"Records": [
        sqs_record("m-throttled", &create("sqs-1", &a, &busy_target, None)),
        sqs_record("m-invalid", &create("sqs-2", "eni-nope", &target, None)),
        sqs_record("m-ok", &create("sqs-3", &b, &target, None)),
        sqs_record("m-garbage", &json!("this is not json")),
    ]});

    // Throttling is outlasted only while the invocation has time left.
    let deadline = Instant::now() + Duration::from_secs(6);
    let answer = within(deadline, world.app.invoke(batch.clone()))
        .await
        .expect("an SQS batch always answers");

    assert!(Instant::now() < deadline, "answered before the deadline");
    assert_eq!(failed_ids(&answer), ["m-throttled"], "{answer}");
    let state = world.mirror_state().await;
    assert_eq!(
        (state.sessions.len(), state.targets.len()),
        (2, 1),
        "the warm-up's and m-ok's sessions; the one target, made once"
    );
    let failed: Vec<Value> = world
        .events(5)
        .await
        .into_iter()
        .filter(|e| e["detail-type"] == "TrafficMirroringFailed")
        .collect();
    assert_eq!(
        failed.len(),
        3,
        "throttled, invalid and garbage records each published a failure"
    );

    // SQS delivers the batch again: the record that passed changes nothing, the throttled one now passes.
    world.emulator.clear_faults().await;
    let c_batch = json!({"Records": [sqs_record("m-throttled", &create("sqs-1", &a, &busy_target, None)),
                                     sqs_record("m-ok", &create("sqs-3", &b, &target, None)),
                                     sqs_record("m-new", &create("sqs-4", &c, &target, None))]});
    let again = world.app.invoke(c_batch).await.expect("answer");
    assert_eq!(failed_ids(&again), Vec::<String>::new(), "{again}");
    let state = world.mirror_state().await;
    assert_eq!((state.sessions.len(), state.targets.len()), (4, 2));
}

#[tokio::test]
async fn records_of_one_batch_on_one_source_get_distinct_session_numbers() {
    let world = World::start().await;
    let source = world.eni().await;
    let mut records = Vec::new();
    for n in 0..3 {
        let target = world.eni().await;
        records.push(sqs_record(
            &format!("m{n}"),
            &create(&format!("same-src-{n}"), &source, &target, None),
        ));
    }
    let answer = world.app.invoke(json!({ "Records": records })).await.expect("answer");
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
    let sessions = world
        .ec2
        .describe_traffic_mirror_sessions()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("network-interface-id")
                .values(&source)
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("sessions");
    let mut numbers: Vec<i32> = sessions.iter().filter_map(|s| s.session_number()).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2, 3]);
}

#[tokio::test]
async fn an_eventbridge_request_event_runs_and_asks_for_a_retry_only_when_it_may_help() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let event = |request: Value| {
        json!({"version": "0", "id": "1", "detail-type": "CreateTrafficMirroring", "source": "ops.mirroring",
               "account": "123456789012", "time": "2026-11-23T08:00:00Z", "region": "us-east-1",
               "resources": [], "detail": request["driverRequest"].clone()})
    };
    world
        .emulator
        .fail_next("CreateTrafficMirrorFilter", "InternalError", 500, 6)
        .await;
    let failed = world.app.invoke(event(create("eb-1", &source, &target, None))).await;
    assert!(
        failed.is_err(),
        "a 5xx failure is worth EventBridge's retry: {failed:?}"
    );
    assert_eq!(world.mirror_state().await, MirrorState::default(), "rolled back");

    let retried = world
        .app
        .invoke(event(create("eb-1", &source, &target, None)))
        .await
        .expect("passes now");
    assert_eq!(first_result(&retried)["success"], true, "{retried}");

    let invalid = world.app.invoke(event(create("eb-2", &source, &source, None))).await;
    assert!(invalid.is_ok(), "an invalid request is answered, not retried forever");
}

#[tokio::test]
async fn a_launched_instance_is_mirrored_on_every_eni_once() {
    let world = World::start().await;
    let target = world.eni().await;
    let instance = world
        .instance("m5.large", &[("traffic-mirroring:target-eni", &target)])
        .await;
    let second = world.eni().await;
    world.attach(&instance, &second, 1).await;

    let answer = world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("answer");
    let results = answer["actionResults"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{answer}");
    assert!(results.iter().all(|r| r["success"] == true), "{answer}");
    assert_eq!(world.mirror_state().await.sessions.len(), 2);

    let again = world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("answer");
    assert_eq!(
        again["actionResults"], answer["actionResults"],
        "redelivery returns the recorded results"
    );
    assert_eq!(world.mirror_state().await.sessions.len(), 2, "not mirrored twice");
}

/// A launch is as fast as the create it is: whether the ENI is itself a
/// mirror target is asked beside the create's first reads, not in a round of
/// its own, and an instance type is asked of EC2 once per process.
#[tokio::test]
async fn a_launch_asks_ec2_only_what_it_must_and_an_instance_type_once() {
    let world = World::start().await;
    let target = world.eni().await;
    let tags = [("traffic-mirroring:target-eni", target.as_str())];
    let (first, second) = (
        world.instance("m5.large", &tags).await,
        world.instance("m5.large", &tags).await,
    );
    world
        .emulator
        .configure(json!({"latency_ms": {"DescribeTrafficMirrorSessions": 300, "DescribeTrafficMirrorTargets": 300}}))
        .await;
    world.emulator.clear_calls().await;
    for instance in [&first, &second] {
        let answer = world
            .app
            .invoke(state_change(instance, "running"))
            .await
            .expect("answer");
        assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
    }
    let calls = world.emulator.calls().await;
    let count = |action: &str| calls.iter().filter(|c| c["action"] == action).count();
    assert_eq!(count("DescribeInstanceTypes"), 1, "m5.large is asked about once");
    let spans = |action: &str| -> Vec<(f64, f64)> {
        calls
            .iter()
            .filter(|c| c["action"] == action)
            .map(|c| {
                (
                    c["start"].as_f64().unwrap_or_default(),
                    c["end"].as_f64().unwrap_or_default(),
                )
            })
            .collect()
    };
    let (sessions, targets) = (
        spans("DescribeTrafficMirrorSessions"),
        spans("DescribeTrafficMirrorTargets"),
    );
    let beside = |(start, end): (f64, f64)| targets.iter().any(|(s, e)| *s < end && start < *e);
    assert!(
        sessions.iter().all(|span| beside(*span)),
        "each launch's is-target check ran beside its first reads: {sessions:?} {targets:?}"
    );
}

#[tokio::test]
async fn a_terminated_instance_leaves_no_filter_or_target_of_ours() {
    let world = World::start().await;
    let target = world.eni().await;
    let instance = world
        .instance("m5.large", &[("traffic-mirroring:target-eni", &target)])
        .await;
    world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("mirrored");
    assert_eq!(world.mirror_state().await.filters.len(), 1);
    world.terminate(&instance).await;

    let answer = world
        .app
        .invoke(state_change(&instance, "terminated"))
        .await
        .expect("answer");

    assert_eq!(first_action(&answer)["success"], true, "{answer}");
    assert_eq!(
        world.mirror_state().await,
        MirrorState::default(),
        "filter and our target are gone too"
    );
    let again = world
        .app
        .invoke(state_change(&instance, "terminated"))
        .await
        .expect("answer");
    assert_eq!(first_action(&again)["success"], true, "idempotent");
}

fn first_action(answer: &Value) -> &Value {
    &answer["actionResults"][0]
}

#[tokio::test]
async fn instances_that_cannot_or_need_not_be_mirrored_are_skipped_with_a_reason() {
    let world = World::start().await;
    let target = world.eni().await;
    let xen = world
        .instance("t2.micro", &[("traffic-mirroring:target-eni", &target)])
        .await;
    let answer = world.app.invoke(state_change(&xen, "running")).await.expect("answer");
    assert_eq!(
        first_action(&answer)["errorCode"],
        "InstanceTypeNotSupported",
        "{answer}"
    );
    assert!(first_action(&answer)["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("xen")));

    let untagged = world.instance("m5.large", &[]).await;
    let answer = world
        .app
        .invoke(state_change(&untagged, "running"))
        .await
        .expect("answer");
    assert!(
        answer["skipped"]
            .as_str()
            .is_some_and(|m| m.contains("no traffic-mirroring:target or traffic-mirroring:target-eni tag")),
        "{answer}"
    );
    assert_eq!(world.mirror_state().await, MirrorState::default());
    let events = world.events(1).await;
    assert_eq!(
        events[0]["detail"]["errorCode"], "InstanceTypeNotSupported",
        "the skip is published"
    );
}

#[tokio::test]
async fn an_unknown_event_is_answered_with_what_was_received() {
    let world = World::start().await;
    let s3 = json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}});
    let answer = world.app.invoke(s3).await.expect("answered");
    let message = answer["driverResponse"]["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("Object Created") && message.contains("aws.s3"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_default_target_applies_and_an_eni_that_is_a_target_is_skipped() {
    let mut world = World::start().await;
    let target = world.eni().await;
    world.app = traffic_mirroring::app::build(&world.sdk, &{
        let mut config = world.config.clone();
        config.default_targets.insert(world.subnet_id.clone(), target.clone());
        config
    });
    let instance = world.instance("m5.large", &[]).await;
    let appliance = world.eni().await;
    world.foreign_target(&appliance).await;
    world.attach(&instance, &appliance, 1).await;

    let answer = world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("answer");

    let results = answer["actionResults"].as_array().expect("results");
    let codes: Vec<&Value> = results.iter().map(|r| &r["errorCode"]).collect();
    assert_eq!(codes, [&Value::Null, &json!("EniIsMirrorTarget")], "{answer}");
    assert_eq!(
        results[0]["trafficMirrorTargetId"]
            .as_str()
            .map(|t| t.starts_with("tmt-")),
        Some(true)
    );
    assert_eq!(
        world.mirror_state().await.sessions.len(),
        1,
        "only the primary ENI is mirrored"
    );
}
