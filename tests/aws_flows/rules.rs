//! AWS's documented rules over the wire (#24): which instance types can be
//! sources (the limitations page, which the emulator enforces with
//! `NetworkInterfaceNotSupported`), and how many sources a target ENI takes
//! (10, or 100 on the largest sizes of the quotas page). The types' facts
//! come from EC2's own `DescribeInstanceTypes` (hypervisor, bare metal).

use serde_json::Value;

use crate::support::*;

const TARGET_TAG: &str = "traffic-mirroring:target";

fn session_creates(calls: &[Value]) -> usize {
    calls
        .iter()
        .filter(|call| call["action"] == "CreateTrafficMirrorSession")
        .count()
}

#[tokio::test]
async fn unsupported_types_are_reported_and_never_tried_and_an_m4_is_mirrored() {
    let world = World::start().await;
    let target = world.eni().await;
    let m7i = world.instance("m7i.large", &[(TARGET_TAG, &target)]).await;
    let metal = world.instance("m5.metal", &[(TARGET_TAG, &target)]).await;
    let m4 = world.instance("m4.large", &[(TARGET_TAG, &target)]).await;
    world.emulator.clear_calls().await;
    for run in 0..2 {
        let swept = world.sweep(false).await;
        let mut unsupported: Vec<String> = swept["sweep"]["sweep"]["policy"]["coverage"]["unsupportedInstanceType"]
            .as_array()
            .expect("listed")
            .iter()
            .filter_map(|u| u["instanceId"].as_str().map(str::to_owned))
            .collect();
        unsupported.sort();
        let mut expected = vec![m7i.clone(), metal.clone()];
        expected.sort();
        assert_eq!(unsupported, expected, "run {run}: {swept}");
    }
    // One session in two sweeps: the m4's, in the first.
    assert_eq!(session_creates(&world.emulator.calls().await), 1);
    let m4_eni = world.primary_eni(&m4).await;
    assert_eq!(world.sessions_on(&m4_eni).await.len(), 1);
}

#[tokio::test]
async fn an_eleventh_source_fits_a_target_on_the_largest_size_only() {
    let world = World::start().await;
    for (kind, fits) in [("m5.24xlarge", true), ("m5.large", false)] {
        let target = world.instance_eni(kind).await;
        for n in 0..10 {
            let source = world.eni().await;
            let made = world
                .invoke(&create(&format!("{kind}-{n}"), &source, &target, None))
                .await;
            assert_eq!(first_result(&made)["success"], true, "{kind}: {made}");
        }
        let source = world.eni().await;
        let eleventh = world
            .invoke(&create(&format!("{kind}-10"), &source, &target, None))
            .await;
        let result = first_result(&eleventh);
        assert_eq!(result["success"], fits, "{kind}: {eleventh}");
        if !fits {
            assert_eq!(
                result["errorCode"], "TrafficMirrorSourcesPerTargetLimitExceeded",
                "{kind}"
            );
            assert_eq!(world.sessions_on(&source).await.len(), 0, "{kind}: nothing made");
        }
    }
}

#[tokio::test]
async fn a_sweep_that_finds_nothing_to_do_reads_each_listing_once_and_nothing_per_instance() {
    let world = World::start().await;
    // AWS's largest page: the listings take one call each.
    world.emulator.configure(serde_json::json!({"page_size": 0})).await;
    let target = world.eni().await;
    for _ in 0..6 {
        world.instance("m5.large", &[(TARGET_TAG, &target)]).await;
    }
    let first = world.sweep(false).await;
    assert_eq!(first["sweep"]["sweep"]["policy"]["created"], 6, "{first}");
    world.sweep(false).await;
    world.emulator.clear_calls().await;
    let steady = world.sweep(false).await;
    assert_eq!(steady["sweep"]["sweep"]["policy"]["created"], 0, "{steady}");
    let mut ec2_calls: Vec<String> = world
        .emulator
        .calls()
        .await
        .iter()
        .filter(|call| call["service"] == "ec2")
        .filter_map(|call| call["action"].as_str().map(str::to_owned))
        .collect();
    ec2_calls.sort();
    assert_eq!(
        ec2_calls,
        [
            "DescribeInstances",
            "DescribeTrafficMirrorFilters",
            "DescribeTrafficMirrorSessions",
            "DescribeTrafficMirrorTargets",
        ],
        "one listing each, nothing per instance or ENI"
    );
}

#[tokio::test]
async fn the_coverage_report_counts_the_billed_enis_and_the_sessions_that_cross_zones() {
    let world = World::start().await;
    let zone_a = world.subnet_in("us-east-1a", "10.0.2.0/24").await;
    let zone_b = world.subnet_in("us-east-1b", "10.0.3.0/24").await;
    let appliance = world.instance_in(&zone_a, "m5.large", &[]).await;
    let target = world.primary_eni(&appliance).await;
    world.instance_in(&zone_a, "m5.large", &[(TARGET_TAG, &target)]).await;
    let far = world.instance_in(&zone_b, "m5.large", &[(TARGET_TAG, &target)]).await;
    world.sweep(false).await;
    let swept = world.sweep(false).await;
    let coverage = &swept["sweep"]["sweep"]["policy"]["coverage"];
    assert_eq!(coverage["mirroredEnis"], 2, "{swept}");
    let cost = coverage["estimatedHourlyCost"].as_f64().expect("a cost");
    assert!((cost - 0.03).abs() < 1e-9, "{cost}");
    let crossing = coverage["crossZoneSessions"].as_array().expect("listed");
    let far_eni = world.primary_eni(&far).await;
    assert_eq!(crossing.len(), 1, "{swept}");
    assert_eq!(
        crossing[0]["sessionId"].as_str().map(str::to_owned),
        world.sessions_on(&far_eni).await.first().cloned()
    );
    assert_eq!(crossing[0]["sourceZone"], "us-east-1b");
}
