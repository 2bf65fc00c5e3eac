//! The launch policy as desired state: launches, tag changes and the sweep
//! mirror what the policy names; terminations and exclusions unmirror it.

use serde_json::json;
use traffic_mirroring::ports::{AwsError, Endpoint, ErrorKind, GroupRule, Ingress};

use crate::world::*;

#[tokio::test]
async fn the_sweep_backfills_a_tagged_instance_once_and_the_exclude_tag_takes_it_back() {
    let world = fixture();
    world
        .ec2
        .plant_instance("i-0000000a", &[&eni(1), &eni(2)], &[(TARGET_TAG, &eni(9))]);
    let swept = world.app.invoke(json!({"sweep": {}})).await.expect("answers");
    let policy = &swept["sweep"]["sweep"]["policy"];
    assert_eq!(policy["created"], 2, "{swept}");
    assert_eq!(policy["coverage"]["mirrored"], 2);
    assert_eq!(world.counts().0, 2);
    let again = world.app.invoke(json!({"sweep": {}})).await.expect("answers");
    assert_eq!(
        again["sweep"]["sweep"]["policy"]["created"], 0,
        "a second sweep changes nothing"
    );
    assert_eq!(world.counts().0, 2);

    world
        .ec2
        .tag_instance("i-0000000a", "traffic-mirroring:exclude", Some("true"));
    let excluded = world.app.invoke(json!({"sweep": {}})).await.expect("answers");
    assert_eq!(excluded["sweep"]["sweep"]["policy"]["removed"], 2, "{excluded}");
    assert_eq!(world.counts(), (0, 0, 0));
}

#[tokio::test]
async fn a_tag_change_mirrors_at_once_from_ec2s_own_tags_and_a_removed_tag_unmirrors() {
    let world = fixture();
    world.ec2.plant_instance("i-0000000b", &[&eni(3)], &[]);
    let nothing = world
        .app
        .invoke(tag_change("i-0000000b", TARGET_TAG))
        .await
        .expect("answers");
    assert!(
        nothing["skipped"].is_string(),
        "untagged in EC2, whatever the event says: {nothing}"
    );
    assert_eq!(world.counts().0, 0);

    world.ec2.tag_instance("i-0000000b", TARGET_TAG, Some(&eni(9)));
    let mirrored = world
        .app
        .invoke(tag_change("i-0000000b", TARGET_TAG))
        .await
        .expect("answers");
    assert_eq!(mirrored["actionResults"][0]["success"], true, "{mirrored}");
    assert_eq!(mirrored["actionResults"][0]["requestedByBasis"], "policy");
    assert_eq!(world.counts().0, 1);

    world.ec2.tag_instance("i-0000000b", TARGET_TAG, None);
    let unmirrored = world
        .app
        .invoke(tag_change("i-0000000b", TARGET_TAG))
        .await
        .expect("answers");
    assert_eq!(unmirrored["actionResults"][0]["success"], true, "{unmirrored}");
    assert_eq!(world.counts(), (0, 0, 0));
}

#[tokio::test]
async fn a_policy_mirror_deleted_behind_our_back_is_made_again_at_once() {
    let world = fixture();
    world
        .ec2
        .plant_instance("i-0000000c", &[&eni(4)], &[(TARGET_TAG, &eni(9))]);
    world
        .app
        .invoke(tag_change("i-0000000c", TARGET_TAG))
        .await
        .expect("answers");
    let session = world.ec2.resources().0.pop().expect("mirrored");
    // A forged event for a live session changes nothing.
    let forged = world.invoke(deletion(&session)).await;
    assert_eq!(forged["actionResults"], json!([]), "{forged}");
    assert_eq!(world.ec2.sessions_on(&eni(4)), vec![session.clone()]);

    assert!(world.ec2.delete_behind_our_back(&session));
    let answer = world.app.invoke(deletion(&session)).await.expect("answers");
    assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
    let (sessions, _, _) = world.ec2.resources();
    assert_eq!(sessions.len(), 1, "made again");
    assert_ne!(sessions[0], session);
    let events = world.bus.events.lock().expect("events").clone();
    let tampered = events.iter().find(|e| e.action_type == "Tampering").expect("announced");
    assert_eq!(
        tampered
            .details
            .as_ref()
            .map(|d| d["mirrors"][0]["policyMirror"].clone()),
        Some(json!(true))
    );
    let details = tampered.details.clone().expect("details");
    assert_eq!(details["deletedBy"], "arn:aws:iam::123456789012:user/mallory");
    assert_eq!(details["resource"]["id"], session.as_str());
    assert_eq!(world.events_of_type("TrafficMirroringTampered").len(), 1);
}

#[tokio::test]
async fn a_termination_removes_the_instances_mirrors_only_when_ec2_confirms_it() {
    let world = fixture();
    world
        .ec2
        .plant_instance("i-0000000d", &[&eni(5), &eni(6)], &[(TARGET_TAG, &eni(9))]);
    let launched = world
        .app
        .invoke(state_change("i-0000000d", "running"))
        .await
        .expect("answers");
    assert_eq!(
        launched["actionResults"].as_array().map(Vec::len),
        Some(2),
        "{launched}"
    );
    assert_eq!(world.counts().0, 2);

    // Forged: EC2 says the instance runs.
    let forged = world
        .app
        .invoke(state_change("i-0000000d", "terminated"))
        .await
        .expect("answers");
    assert!(
        forged["skipped"].as_str().is_some_and(|s| s.contains("not believed")),
        "{forged}"
    );
    assert_eq!(world.counts().0, 2, "nothing removed");

    world.ec2.set_instance_state("i-0000000d", "terminated");
    let ended = world
        .app
        .invoke(state_change("i-0000000d", "terminated"))
        .await
        .expect("answers");
    assert_eq!(ended["actionResults"][0]["success"], true, "{ended}");
    assert_eq!(world.counts(), (0, 0, 0), "its sessions, filter and target are gone");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
    let again = world.invoke(state_change("i-0000000d", "terminated")).await;
    assert_eq!(again["actionResults"][0]["success"], true, "idempotent: {again}");
}

#[tokio::test]
async fn the_sweep_backfills_instances_running_before_it_and_a_dry_run_only_reports() {
    let world = fixture();
    let target = eni(9);
    let (tagged_eni, untagged_eni) = (eni(1), eni(2));
    world
        .ec2
        .plant_instance("i-0000000a", &[&tagged_eni], &[(TARGET_TAG, &target)]);
    world.ec2.plant_instance("i-0000000b", &[&untagged_eni], &[]);

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
    assert_eq!(world.counts().0, 0, "a dry run changes nothing");

    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["created"], 1, "{swept}");
    assert_eq!(coverage_of(&swept, &target)["mirrored"], 1, "{swept}");
    assert_eq!(world.ec2.sessions_on(&tagged_eni).len(), 1);
    assert!(
        world.ec2.sessions_on(&untagged_eni).is_empty(),
        "the policy names no target for it"
    );

    // Converged: the next sweep changes nothing.
    let again = world.sweep(false).await;
    assert_eq!(policy_of(&again)["created"], 0, "{again}");
    assert_eq!(world.ec2.sessions_on(&tagged_eni).len(), 1, "no duplicate");
}

#[tokio::test]
async fn a_tag_change_mirrors_an_instance_and_its_removal_unmirrors_it() {
    let world = fixture();
    let (target, source) = (eni(9), eni(1));
    let instance = "i-0000000e";
    world.ec2.plant_instance(instance, &[&source], &[]);

    let nothing = world.invoke(tag_change(instance, TARGET_TAG)).await;
    assert!(nothing["skipped"].is_string(), "no tag yet: {nothing}");
    assert!(world.ec2.sessions_on(&source).is_empty());

    world.ec2.tag_instance(instance, TARGET_TAG, Some(&target));
    let added = world.invoke(tag_change(instance, TARGET_TAG)).await;
    assert_eq!(added["actionResults"][0]["success"], true, "{added}");
    assert_eq!(world.ec2.sessions_on(&source).len(), 1);

    // A redelivered event changes nothing.
    world.invoke(tag_change(instance, TARGET_TAG)).await;
    assert_eq!(world.ec2.sessions_on(&source).len(), 1);

    world.ec2.tag_instance(instance, TARGET_TAG, None);
    let removed = world.invoke(tag_change(instance, TARGET_TAG)).await;
    assert_eq!(removed["actionResults"][0]["success"], true, "{removed}");
    assert!(world.ec2.sessions_on(&source).is_empty(), "{removed}");
    assert_eq!(world.counts().1, 0, "its filter went with its last user");

    // Tagged again: mirrored again, under the same action id, not a replay of the old success.
    world.ec2.tag_instance(instance, TARGET_TAG, Some(&target));
    let again = world.invoke(tag_change(instance, TARGET_TAG)).await;
    assert_eq!(again["actionResults"][0]["success"], true, "{again}");
    let now = world.ec2.sessions_on(&source);
    assert_eq!(now.len(), 1, "{again}");
    assert_eq!(again["actionResults"][0]["sessionId"], now[0].as_str());
}

#[tokio::test]
async fn the_exclude_tag_wins_over_the_default_target() {
    let target = eni(9);
    let world = fixture_set_up(Setup {
        default_targets: [(DEFAULT_SUBNET.to_owned(), target.clone())].into(),
        ..Setup::default()
    });
    let (excluded_eni, included_eni) = (eni(1), eni(2));
    world
        .ec2
        .plant_instance("i-0000000a", &[&excluded_eni], &[(EXCLUDE_TAG, "true")]);
    world.ec2.plant_instance("i-0000000b", &[&included_eni], &[]);

    let launch = world.invoke(state_change("i-0000000a", "running")).await;
    assert!(
        launch["skipped"].as_str().is_some_and(|s| s.contains(EXCLUDE_TAG)),
        "{launch}"
    );
    let swept = world.sweep(false).await;
    assert_eq!(
        coverage_of(&swept, &target)["wanted"],
        1,
        "only the included one: {swept}"
    );
    assert!(world.ec2.sessions_on(&excluded_eni).is_empty());
    assert_eq!(world.ec2.sessions_on(&included_eni).len(), 1);

    // Excluded later: the sweep removes the policy's mirror.
    world.ec2.tag_instance("i-0000000b", EXCLUDE_TAG, Some("true"));
    let pruned = world.sweep(false).await;
    assert_eq!(policy_of(&pruned)["removed"], 1, "{pruned}");
    assert!(world.ec2.sessions_on(&included_eni).is_empty());
}

#[tokio::test]
async fn a_policy_mirror_deleted_by_hand_is_made_again_and_never_replayed() {
    let world = fixture();
    let source = eni(1);
    world
        .ec2
        .plant_instance("i-0000000a", &[&source], &[(TARGET_TAG, &eni(9))]);
    let launched = world.invoke(state_change("i-0000000a", "running")).await;
    let first = launched["actionResults"][0]["sessionId"]
        .as_str()
        .expect("a session")
        .to_owned();

    // Deleted by a person: drift.
    assert!(world.ec2.delete_behind_our_back(&first));
    // The instance stops and starts: its `running` event must not replay the old success.
    let relaunched = world.invoke(state_change("i-0000000a", "running")).await;
    let second = relaunched["actionResults"][0]["sessionId"].as_str().unwrap_or_default();
    assert!(!second.is_empty() && second != first, "{relaunched}");
    assert_eq!(world.ec2.sessions_on(&source), vec![second.to_owned()]);

    // Deleted by hand again: the next sweep repairs it.
    assert!(world.ec2.delete_behind_our_back(second));
    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["created"], 1, "{swept}");
    let third = world.ec2.sessions_on(&source);
    assert_eq!(third.len(), 1, "{swept}");
    assert!(third[0] != first && third[0] != second);
}

#[tokio::test]
async fn an_attached_eni_is_mirrored_at_once_and_by_the_sweep() {
    let world = fixture();
    let target = eni(9);
    let instance = "i-0000000a";
    world.ec2.plant_instance(instance, &[&eni(1)], &[(TARGET_TAG, &target)]);
    world.invoke(state_change(instance, "running")).await;
    let (second, third) = (eni(2), eni(3));

    world.ec2.attach_eni(instance, &second);
    let answer = world.invoke(attached(instance, &second)).await;
    assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
    assert_eq!(world.ec2.sessions_on(&second).len(), 1);

    // No event for this one (no trail): the sweep finds it.
    world.ec2.attach_eni(instance, &third);
    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["created"], 1, "{swept}");
    assert_eq!(world.ec2.sessions_on(&third).len(), 1);
    assert_eq!(coverage_of(&swept, &target)["wanted"], 3, "{swept}");
}

#[tokio::test]
async fn only_types_aws_documents_as_sources_are_mirrored_and_the_rest_are_reported_never_tried() {
    let world = fixture();
    let kinds = [
        ("i-0000000a", "t2.micro", false),
        ("i-0000000b", "m7i.large", false),
        ("i-0000000c", "m5.metal", false),
        ("i-0000000d", "m4.large", true),
        ("i-0000000e", "m5.large", true),
    ];
    for (n, (id, kind, _)) in kinds.iter().enumerate() {
        world
            .ec2
            .plant_instance_of_type(id, kind, &[&eni(n as u32 + 1)], &[(TARGET_TAG, &eni(9))]);
    }
    // Twice: the second sweep tries nothing either.
    for run in 0..2 {
        let swept = world.sweep(false).await;
        let unsupported: Vec<(String, String)> = policy_of(&swept)["coverage"]["unsupportedInstanceType"]
            .as_array()
            .expect("listed")
            .iter()
            .map(|u| {
                (
                    u["instanceId"].as_str().unwrap_or_default().to_owned(),
                    u["instanceType"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = kinds
            .iter()
            .filter(|(_, _, can)| !can)
            .map(|(id, kind, _)| (id.to_string(), kind.to_string()))
            .collect();
        assert_eq!(unsupported, expected, "run {run}: {swept}");
        assert_eq!(
            world.ec2.calls("CreateTrafficMirrorSession"),
            2,
            "run {run}: only m4 and m5 were tried, once"
        );
        assert_eq!(world.counts().0, 2, "run {run}");
    }
    for (n, (_, kind, can)) in kinds.iter().enumerate() {
        let on_it = world.ec2.sessions_on(&eni(n as u32 + 1)).len();
        assert_eq!(on_it, usize::from(*can), "{kind}");
    }
}

#[tokio::test]
async fn a_target_whose_security_group_shuts_out_vxlan_is_reported() {
    let world = fixture();
    // Every source in the VPC's default group, which admits its own members.
    let member = |n: u32| {
        let endpoint = Endpoint {
            private_ip: Some(format!("10.0.1.{n}")),
            security_groups: vec!["sg-0000default".into()],
        };
        world.ec2.place_eni(&eni(n), DEFAULT_SUBNET, DEFAULT_VPC, endpoint);
        eni(n)
    };
    let (source, other, instance_eni) = (member(1), member(2), member(3));
    let (shut, open_target) = (eni(8), eni(9));
    world.ec2.set_ingress(&shut, Ingress::default());
    let default_group = GroupRule {
        protocol: "-1".into(),
        groups: vec!["sg-0000default".into()],
        ..GroupRule::default()
    };
    world.ec2.set_ingress(
        &open_target,
        Ingress {
            group_rules: vec![default_group],
            acl_entries: None,
        },
    );

    let created = world.handle(&seed_create("vx-shut", &source, &shut)).await;
    let result = first_result(&created);
    assert_eq!(result["success"], true, "{created}");
    assert!(
        result["infoMessage"].as_str().is_some_and(|m| m.contains("UDP 4789")),
        "{created}"
    );
    let fine = world.handle(&seed_create("vx-open", &other, &open_target)).await;
    assert!(
        !first_result(&fine)["infoMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("4789"),
        "{fine}"
    );

    world
        .ec2
        .plant_instance("i-0000000a", &[&instance_eni], &[(TARGET_TAG, &shut)]);
    let swept = world.sweep(false).await;
    let coverage = coverage_of(&swept, &shut);
    assert_eq!(coverage["wanted"], 1, "{swept}");
    assert_eq!(coverage["mirrored"], 0, "never counted as covered: {swept}");
    assert_eq!(coverage["notDelivering"][0]["instanceId"], "i-0000000a", "{swept}");
}

/// Another deployment in the account sweeps too: it never removes a policy
/// mirror that is ours, even one our policy no longer wants; ours does.
#[tokio::test]
async fn another_deployments_sweep_leaves_our_policy_mirrors_alone() {
    let world = fixture();
    let other = deployment_on(
        world.ec2.clone(),
        Setup {
            owner: "table/other".into(),
            ..Setup::default()
        },
    );
    let source = eni(1);
    world
        .ec2
        .plant_instance("i-0000000a", &[&source], &[(TARGET_TAG, &eni(9))]);
    world.invoke(state_change("i-0000000a", "running")).await;
    let ours = world.ec2.sessions_on(&source);
    assert_eq!(ours.len(), 1);
    world.ec2.tag_instance("i-0000000a", EXCLUDE_TAG, Some("true"));

    let theirs = other.sweep(false).await;
    assert_eq!(policy_of(&theirs)["removed"], 0, "{theirs}");
    assert_eq!(world.ec2.sessions_on(&source), ours, "not theirs to remove");

    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["removed"], 1, "{swept}");
    assert!(world.ec2.sessions_on(&source).is_empty());
}

#[tokio::test]
async fn a_type_ec2_refuses_as_a_source_is_reported_and_not_tried_again() {
    let world = fixture();
    world
        .ec2
        .plant_instance_of_type("i-0000000a", "z9.large", &[&eni(1)], &[(TARGET_TAG, &eni(9))]);
    world.ec2.fail_next(
        "CreateTrafficMirrorSession",
        AwsError::new(ErrorKind::Rejected, "NetworkInterfaceNotSupported", "not a source"),
    );
    for run in 0..2 {
        let swept = world.sweep(false).await;
        let unsupported = &policy_of(&swept)["coverage"]["unsupportedInstanceType"];
        assert_eq!(unsupported[0]["instanceType"], "z9.large", "run {run}: {swept}");
        assert_eq!(
            policy_of(&swept)["coverage"]["missing"],
            0,
            "run {run}: not counted as missing"
        );
    }
    assert_eq!(
        world.ec2.calls("CreateTrafficMirrorSession"),
        1,
        "tried once, in the first sweep"
    );
    // Another process knows nothing of the refusal but the ledger's record.
    let fresh = world.app_with(Setup::default());
    let swept = fresh.invoke(json!({"sweep": {}})).await.expect("answers");
    let coverage = &policy_of(&swept)["coverage"];
    assert_eq!(
        coverage["unsupportedInstanceType"][0]["instanceType"], "z9.large",
        "{swept}"
    );
    assert_eq!(coverage["missing"], 0, "{swept}");
    assert_eq!(
        world.ec2.calls("CreateTrafficMirrorSession"),
        1,
        "not tried by the fresh process either"
    );
}

#[tokio::test]
async fn the_coverage_report_says_what_the_sessions_cost_and_which_cross_zones() {
    let world = fixture();
    // An appliance in zone a; two tagged instances, one in a and one in b.
    world.ec2.plant_instance("i-000000ff", &[&eni(9)], &[]);
    world.ec2.set_instance_zone("i-000000ff", "us-east-1a");
    world
        .ec2
        .plant_instance("i-0000000a", &[&eni(1), &eni(2)], &[(TARGET_TAG, &eni(9))]);
    world.ec2.set_instance_zone("i-0000000a", "us-east-1a");
    world
        .ec2
        .plant_instance("i-0000000b", &[&eni(3)], &[(TARGET_TAG, &eni(9))]);
    world.ec2.set_instance_zone("i-0000000b", "us-east-1b");
    world.sweep(false).await;
    // The report of the sweep after the mirrors are made counts them.
    let swept = world.sweep(false).await;
    let coverage = &policy_of(&swept)["coverage"];
    assert_eq!(coverage["mirroredEnis"], 3, "{swept}");
    let cost = coverage["estimatedHourlyCost"].as_f64().expect("a cost");
    assert!((cost - 3.0 * 0.015).abs() < 1e-9, "{cost}");
    let crossing = coverage["crossZoneSessions"].as_array().expect("listed");
    assert_eq!(crossing.len(), 1, "{swept}");
    assert_eq!(
        (crossing[0]["sourceZone"].as_str(), crossing[0]["targetZone"].as_str()),
        (Some("us-east-1b"), Some("us-east-1a"))
    );
    assert_eq!(
        crossing[0]["sessionId"].as_str().map(str::to_owned),
        world.ec2.sessions_on(&eni(3)).first().cloned()
    );
    // A dry run's plan says what a create would add.
    let plan = world
        .run(create_with("p1", &eni(4), &eni(9), json!({"dryRun": true})))
        .await;
    assert_eq!(plan["plan"]["cost"]["addsMirroredEni"], true, "{plan}");
    let again = world
        .run(create_with("p2", &eni(1), &eni(9), json!({"dryRun": true})))
        .await;
    assert_eq!(again["plan"]["cost"]["estimatedHourlyCostAdded"], 0.0, "{again}");
}

#[tokio::test]
async fn the_sweeps_creates_take_their_sources_from_the_sweeps_own_listing() {
    let world = fixture();
    for n in 1..=6 {
        world
            .ec2
            .plant_instance(&format!("i-0000000{n}"), &[&eni(n)], &[(TARGET_TAG, &eni(9))]);
    }
    let swept = world.sweep(false).await;
    assert_eq!(policy_of(&swept)["created"], 6, "{swept}");
    // The account's listing, once: no create read its source's sessions or
    // asked whether its source is a target.
    assert_eq!(world.ec2.calls("DescribeTrafficMirrorSessions"), 1);
    assert_eq!(
        world.ec2.calls("DescribeTrafficMirrorTargets"),
        2,
        "the listing, and the one maker of the shared target looking for one to adopt"
    );
}

#[tokio::test]
async fn an_eni_in_an_ipv6_only_subnet_is_reported_and_never_tried() {
    let world = fixture();
    world
        .ec2
        .plant_instance("i-0000000a", &[&eni(1), &eni(2)], &[(TARGET_TAG, &eni(9))]);
    // EC2 describes an ENI of an IPv6-only subnet without an IPv4 address.
    let with_ipv4 = Endpoint {
        private_ip: Some("10.0.1.5".into()),
        security_groups: Vec::new(),
    };
    world.ec2.place_eni(&eni(1), DEFAULT_SUBNET, DEFAULT_VPC, with_ipv4);
    world
        .ec2
        .place_eni(&eni(2), "subnet-0000v6only", DEFAULT_VPC, Endpoint::default());
    for run in 0..2 {
        let swept = world.sweep(false).await;
        let unsupported = &policy_of(&swept)["coverage"]["unsupportedInstanceType"];
        assert_eq!(unsupported.as_array().map(Vec::len), Some(1), "run {run}: {swept}");
        assert!(
            unsupported[0]["why"].as_str().unwrap_or_default().contains("IPv6-only"),
            "{swept}"
        );
    }
    assert_eq!(world.ec2.sessions_on(&eni(1)).len(), 1);
    assert_eq!(world.ec2.sessions_on(&eni(2)).len(), 0);
    assert_eq!(world.ec2.calls("CreateTrafficMirrorSession"), 1);
}

/// Near its deadline the sweep starts no policy create it has seen take
/// longer than the time left: a create cut off in flight leaves a pending
/// record and maybe a session, for a later sweep to undo and make again.
/// Session creates take 3 s here (EC2's calls queued); the invocation has
/// 9 s, of which about 5.9 s are for work: the first eight creates (the
/// sweep runs eight at once) fit, the other two would start with 2.9 s
/// left, and wait for the next run.
#[tokio::test]
async fn near_the_deadline_the_sweep_starts_no_create_slower_than_the_time_left() {
    use std::time::{Duration, Instant};
    let world = fixture();
    for n in 0..10 {
        world
            .ec2
            .plant_instance(&format!("i-{n:08x}"), &[&eni(100 + n)], &[(TARGET_TAG, &eni(9))]);
    }
    world.ec2.delay("CreateTrafficMirrorSession", Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(9);

    let swept = traffic_mirroring::deadline::within(deadline, world.app.invoke(json!({"sweep": {}})))
        .await
        .expect("answers");

    let policy = &swept["sweep"]["sweep"]["policy"];
    assert_eq!(policy["created"], 8, "{swept}");
    assert_eq!(policy["deferred"], 2, "{swept}");
    assert_eq!(policy["failed"], 0, "none cut off: {swept}");
    assert_eq!(world.counts().0, 8);
    assert_eq!(world.ec2.calls("CreateTrafficMirrorSession"), 8, "none started in vain");
    // The next run, with time, makes the rest.
    world.ec2.delay("CreateTrafficMirrorSession", Duration::ZERO);
    let next = world.app.invoke(json!({"sweep": {}})).await.expect("answers");
    assert_eq!(next["sweep"]["sweep"]["policy"]["created"], 2, "{next}");
    assert_eq!(world.counts().0, 10);
}
