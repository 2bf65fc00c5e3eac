//! Every event source, through `App::invoke` with the payloads AWS delivers:
//! SQS batches, EventBridge request events, instance launches, and what is
//! not ours to answer.

use serde_json::{json, Value};
use traffic_mirroring::ports::{AwsError, ErrorKind};

use crate::world::*;

/// A batch's throttled record: the patient EC2 adapter gives up with a
/// transient error once throttling outlasts the invocation (the emulator's
/// `safety::throttling_without_end_is_answered_before_the_deadline_with_nothing_left`
/// shows that part, and a whole batch handed back, over the wire).
#[tokio::test]
async fn an_sqs_batch_consumes_what_cannot_succeed_and_returns_what_may() {
    let world = fixture();
    let (a, b, c, d) = (eni(1), eni(2), eni(3), eni(4));
    let (busy_target, target) = (eni(8), eni(9));
    // `target` already has its mirror target; `busy_target` needs one made,
    // and EC2 throttles that.
    let warm = world.handle(&create_bare("sqs-0", &d, &target, None)).await;
    assert_eq!(first_result(&warm)["success"], true, "{warm}");
    world.ec2.fail_next(
        "CreateTrafficMirrorTarget",
        AwsError::new(ErrorKind::Transient, "RequestLimitExceeded", "Request limit exceeded."),
    );
    let batch = json!({"Records": [
        sqs_record("m-throttled", &create_bare("sqs-1", &a, &busy_target, None)),
        sqs_record("m-invalid", &create_bare("sqs-2", "eni-nope", &target, None)),
        sqs_record("m-ok", &create_bare("sqs-3", &b, &target, None)),
        sqs_record("m-garbage", &json!("this is not json")),
    ]});

    let answer = world.invoke(batch).await;

    assert_eq!(failed_ids(&answer), ["m-throttled"], "{answer}");
    let (sessions, _, targets) = world.ec2.resources();
    assert_eq!(
        (sessions.len(), targets.len()),
        (2, 1),
        "the warm-up's and m-ok's sessions; the one target, made once"
    );
    assert_eq!(
        world.events_of_type("TrafficMirroringFailed").len(),
        3,
        "throttled, invalid and garbage records each published a failure"
    );

    // SQS delivers the batch again: the record that passed changes nothing, the throttled one now passes.
    let again_batch = json!({"Records": [
        sqs_record("m-throttled", &create_bare("sqs-1", &a, &busy_target, None)),
        sqs_record("m-ok", &create_bare("sqs-3", &b, &target, None)),
        sqs_record("m-new", &create_bare("sqs-4", &c, &target, None))]});
    let again = world.invoke(again_batch).await;
    assert_eq!(failed_ids(&again), Vec::<String>::new(), "{again}");
    assert_eq!(world.counts(), (4, 1, 2));
}

#[tokio::test]
async fn records_of_one_batch_on_one_source_get_distinct_session_numbers() {
    let world = fixture();
    let source = eni(1);
    let records: Vec<Value> = (0..3)
        .map(|n| {
            let request = create_bare(&format!("same-src-{n}"), &source, &eni(n + 11), None);
            sqs_record(&format!("m{n}"), &request)
        })
        .collect();
    let answer = world.invoke(json!({ "Records": records })).await;
    assert_eq!(failed_ids(&answer), Vec::<String>::new(), "{answer}");
    let mut numbers: Vec<u16> = world
        .ec2
        .sessions_on(&source)
        .iter()
        .filter_map(|id| world.ec2.session(id).map(|s| s.session_number))
        .collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2, 3]);
}

#[tokio::test]
async fn an_eventbridge_request_event_runs_and_asks_for_a_retry_only_when_it_may_help() {
    let world = fixture();
    let (source, target) = (eni(1), eni(2));
    let event = |request: Value| {
        json!({"version": "0", "id": "1", "detail-type": "CreateTrafficMirroring", "source": "ops.mirroring",
               "account": "123456789012", "time": "2026-11-23T08:00:00Z", "region": "us-east-1",
               "resources": [], "detail": request["driverRequest"].clone()})
    };
    // A 5xx the patient adapter could not outlast.
    world.ec2.fail_next(
        "CreateTrafficMirrorFilter",
        AwsError::new(ErrorKind::Transient, "InternalError", "An internal error has occurred"),
    );
    let failed = world
        .app
        .invoke(event(create_bare("eb-1", &source, &target, None)))
        .await;
    assert!(
        failed.is_err(),
        "a 5xx failure is worth EventBridge's retry: {failed:?}"
    );
    assert_eq!(world.counts(), (0, 0, 0), "rolled back");

    let retried = world
        .app
        .invoke(event(create_bare("eb-1", &source, &target, None)))
        .await
        .expect("passes now");
    assert_eq!(first_result(&retried)["success"], true, "{retried}");

    let invalid = world
        .app
        .invoke(event(create_bare("eb-2", &source, &source, None)))
        .await;
    assert!(invalid.is_ok(), "an invalid request is answered, not retried forever");
}

#[tokio::test]
async fn a_launched_instance_is_mirrored_on_every_eni_once() {
    let world = fixture();
    let instance = "i-0000000a";
    world
        .ec2
        .plant_instance(instance, &[&eni(1)], &[(TARGET_ENI_TAG, &eni(9))]);
    world.ec2.attach_eni(instance, &eni(2));

    let answer = world.invoke(state_change(instance, "running")).await;
    let results = answer["actionResults"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{answer}");
    assert!(results.iter().all(|r| r["success"] == true), "{answer}");
    assert_eq!(world.counts().0, 2);

    let again = world.invoke(state_change(instance, "running")).await;
    assert_eq!(
        again["actionResults"], answer["actionResults"],
        "redelivery returns the recorded results"
    );
    assert_eq!(world.counts().0, 2, "not mirrored twice");
}

/// A launch is as fast as the create it is: whether the ENI is itself a
/// mirror target is asked beside the create's first reads, not in a round of
/// its own, and an instance type is asked of EC2 once per process.
#[tokio::test]
async fn a_launch_asks_ec2_only_what_it_must_and_an_instance_type_once() {
    let world = fixture();
    let tags = [(TARGET_ENI_TAG, eni(9))];
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
    world.ec2.plant_instance("i-0000000a", &[&eni(1)], &tags);
    world.ec2.plant_instance("i-0000000b", &[&eni(2)], &tags);
    world.ec2.slow_down("DescribeTrafficMirrorSessions", 20);
    world.ec2.slow_down("DescribeTrafficMirrorTargets", 20);
    for instance in ["i-0000000a", "i-0000000b"] {
        let answer = world.invoke(state_change(instance, "running")).await;
        assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
    }
    assert_eq!(
        world.ec2.calls("DescribeInstanceTypes"),
        1,
        "m5.large is asked about once"
    );
    let spans = world.ec2.spans();
    let of = |call: &str| -> Vec<(u64, u64)> {
        spans
            .iter()
            .filter(|s| s.call == call)
            .map(|s| (s.start, s.end))
            .collect()
    };
    let (sessions, targets) = (of("DescribeTrafficMirrorSessions"), of("DescribeTrafficMirrorTargets"));
    let beside = |(start, end): (u64, u64)| targets.iter().any(|(s, e)| *s < end && start < *e);
    assert!(
        !sessions.is_empty() && sessions.iter().all(|span| beside(*span)),
        "each launch's is-target check ran beside its first reads: {sessions:?} {targets:?}"
    );
}

#[tokio::test]
async fn instances_that_cannot_or_need_not_be_mirrored_are_skipped_with_a_reason() {
    let world = fixture();
    world
        .ec2
        .plant_instance_of_type("i-0000000a", "t2.micro", &[&eni(1)], &[(TARGET_ENI_TAG, &eni(9))]);
    let answer = world.invoke(state_change("i-0000000a", "running")).await;
    let first = &answer["actionResults"][0];
    assert_eq!(first["errorCode"], "InstanceTypeNotSupported", "{answer}");
    assert!(first["errorMessage"].as_str().is_some_and(|m| m.contains("xen")));

    world.ec2.plant_instance("i-0000000b", &[&eni(2)], &[]);
    let answer = world.invoke(state_change("i-0000000b", "running")).await;
    assert!(
        answer["skipped"]
            .as_str()
            .is_some_and(|m| m.contains("no traffic-mirroring:target or traffic-mirroring:target-eni tag")),
        "{answer}"
    );
    assert_eq!(world.counts(), (0, 0, 0));
    let events = world.events();
    assert_eq!(
        events.first().and_then(|e| e.error_code.as_deref()),
        Some("InstanceTypeNotSupported"),
        "the skip is published"
    );
}

#[tokio::test]
async fn an_unknown_event_is_answered_with_what_was_received() {
    let world = fixture();
    let s3 = json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}});
    let answer = world.invoke(s3).await;
    let message = answer["driverResponse"]["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("Object Created") && message.contains("aws.s3"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_default_target_applies_and_an_eni_that_is_a_target_is_skipped() {
    let target = eni(9);
    let world = fixture_set_up(Setup {
        default_targets: [(DEFAULT_SUBNET.to_owned(), target)].into(),
        ..Setup::default()
    });
    let appliance = eni(2);
    world.ec2.plant_target(&appliance, &[]);
    world.ec2.plant_instance("i-0000000a", &[&eni(1)], &[]);
    world.ec2.attach_eni("i-0000000a", &appliance);

    let answer = world.invoke(state_change("i-0000000a", "running")).await;

    let results = answer["actionResults"].as_array().expect("results");
    let codes: Vec<&Value> = results.iter().map(|r| &r["errorCode"]).collect();
    assert_eq!(codes, [&Value::Null, &json!("EniIsMirrorTarget")], "{answer}");
    assert_eq!(
        results[0]["trafficMirrorTargetId"]
            .as_str()
            .map(|t| t.starts_with("tmt-")),
        Some(true)
    );
    assert_eq!(world.counts().0, 1, "only the primary ENI is mirrored");
}
