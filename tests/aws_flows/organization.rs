//! One deployment for an organization, over the wire (#25): the hub
//! assumes each member's role (moto keeps the accounts apart by those
//! credentials), shares its targets through RAM (the emulator refuses a
//! session to another account's target that is not shared), and keeps one
//! ledger. What only a wire shows: STS, RAM's calls and EC2's answers
//! across accounts, and the SDK's paging of both.

use std::collections::BTreeSet;

use aws_config::SdkConfig;
use serde_json::{json, Value};
use traffic_mirroring::domain::account::{AccountId, AccountSet};
use traffic_mirroring::handler::App;

use crate::support::*;

/// moto's default account: the hub.
const HUB: &str = "123456789012";
const MEMBER_A: &str = "111111111111";
const MEMBER_B: &str = "222222222222";
/// Listed, but its role refuses to be assumed.
const LOCKED: &str = "333333333333";
const STRANGER: &str = "999999999999";

/// A member account as a test sees it: its own credentials and network.
struct Member {
    ec2: aws_sdk_ec2::Client,
    subnet: String,
}

fn role_of(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/TrafficMirroringMember")
}

async fn member(world: &World, account: &str) -> Member {
    let sts = aws_sdk_sts::Client::new(&world.sdk);
    let assumed = sts
        .assume_role()
        .role_arn(role_of(account))
        .role_session_name("test")
        .send()
        .await
        .expect("assumed");
    let given = assumed.credentials().expect("credentials");
    let credentials = aws_sdk_ec2::config::Credentials::new(
        given.access_key_id(),
        given.secret_access_key(),
        Some(given.session_token().to_owned()),
        None,
        "test",
    );
    let sdk: SdkConfig = world
        .sdk
        .to_builder()
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(credentials))
        .build();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let vpc = ec2.create_vpc().cidr_block("10.1.0.0/16").send().await.expect("vpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_owned();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.1.1.0/24")
        .send()
        .await
        .expect("subnet");
    let subnet = subnet.subnet().and_then(|s| s.subnet_id()).expect("subnet").to_owned();
    Member { ec2, subnet }
}

impl Member {
    async fn instance(&self, tags: &[(&str, &str)]) -> (String, String) {
        let instance = launch(&self.ec2, &self.subnet, "m5.large", tags).await;
        let eni = instance
            .network_interfaces()
            .first()
            .and_then(|n| n.network_interface_id())
            .expect("eni")
            .to_owned();
        (instance.instance_id().expect("id").to_owned(), eni)
    }

    /// Sessions and filters in the member account (every page).
    async fn mirroring(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut sessions = BTreeSet::new();
        let mut pages = self.ec2.describe_traffic_mirror_sessions().into_paginator().send();
        while let Some(page) = pages.next().await {
            for session in page.expect("sessions").traffic_mirror_sessions() {
                sessions.extend(session.traffic_mirror_session_id().map(str::to_owned));
            }
        }
        let mut filters = BTreeSet::new();
        let mut pages = self.ec2.describe_traffic_mirror_filters().into_paginator().send();
        while let Some(page) = pages.next().await {
            for filter in page.expect("filters").traffic_mirror_filters() {
                filters.extend(filter.traffic_mirror_filter_id().map(str::to_owned));
            }
        }
        (sessions, filters)
    }
}

fn account(id: &str) -> AccountId {
    AccountId::parse(id).expect("12 digits")
}

/// The hub's function, acting in these members too.
fn hub_app(world: &World) -> App {
    world.app_with(|config| {
        config.accounts = AccountSet {
            home: Some(account(HUB)),
            members: [MEMBER_A, MEMBER_B, LOCKED].into_iter().map(account).collect(),
        };
    })
}

fn create_in(action_id: &str, account: &str, source: &str, target: &str) -> Value {
    json!({"driverRequest": {"actions": [{"actionId": action_id, "type": "CreateTrafficMirroring",
        "actionParams": {"sourceNicId": source, "targetNicId": target, "accountId": account}}]}})
}

fn remove_session(action_id: &str, session: &str) -> Value {
    json!({"driverRequest": {"actions": [{"actionId": action_id, "type": "RemoveTrafficMirroring",
        "sessionId": session}]}})
}

async fn first(app: &App, payload: Value) -> Value {
    let answer = app.invoke(payload).await.expect("answers");
    answer["driverResponse"]["actionResults"][0].clone()
}

/// An appliance ENI in the hub whose security group admits VXLAN from the
/// members' network (10.1.0.0/16), as a cross-account appliance must.
async fn appliance(world: &World) -> String {
    let eni = world.instance_eni("m5.large").await;
    let described = world
        .ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni)
        .send()
        .await
        .expect("eni");
    let group = described.network_interfaces()[0].groups()[0]
        .group_id()
        .expect("group")
        .to_owned();
    world
        .ec2
        .authorize_security_group_ingress()
        .group_id(group)
        .ip_protocol("udp")
        .from_port(4789)
        .to_port(4789)
        .cidr_ip("10.1.0.0/16")
        .send()
        .await
        .expect("ingress");
    eni
}

/// Sessions the hub account itself owns (EC2 lists the members' sessions
/// on the hub's targets to the hub too).
async fn hub_sessions(world: &World) -> usize {
    let mut count = 0;
    let mut pages = world
        .ec2
        .describe_traffic_mirror_sessions()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("owner-id")
                .values(HUB)
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        count += page.expect("sessions").traffic_mirror_sessions().len();
    }
    count
}

/// The deployment's resource share: (targets, principals) associated now.
/// The hub's own resource shares.
async fn hub_shares(ram: &aws_sdk_ram::Client) -> Vec<String> {
    let shares = ram
        .get_resource_shares()
        .resource_owner(aws_sdk_ram::types::ResourceOwner::SelfValue)
        .send()
        .await
        .expect("shares");
    shares
        .resource_shares()
        .iter()
        .map(|s| s.resource_share_arn().expect("arn").to_owned())
        .collect()
}

async fn share_of(world: &World) -> (BTreeSet<String>, BTreeSet<String>) {
    let ram = aws_sdk_ram::Client::new(&world.sdk);
    let mut targets = BTreeSet::new();
    let mut principals = BTreeSet::new();
    for arn in &hub_shares(&ram).await {
        for (kind, into) in [
            (aws_sdk_ram::types::ResourceShareAssociationType::Resource, &mut targets),
            (
                aws_sdk_ram::types::ResourceShareAssociationType::Principal,
                &mut principals,
            ),
        ] {
            let mut pages = ram
                .get_resource_share_associations()
                .association_type(kind)
                .resource_share_arns(arn)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                for association in page.expect("associations").resource_share_associations() {
                    if association.status() == Some(&aws_sdk_ram::types::ResourceShareAssociationStatus::Associated) {
                        into.insert(association.associated_entity().unwrap_or_default().to_owned());
                    }
                }
            }
        }
    }
    (targets, principals)
}

#[tokio::test]
async fn a_members_create_is_made_in_the_member_to_the_hubs_shared_target_and_removed_with_its_last_user() {
    let world = World::start().await;
    world.emulator.refuse_role(&role_of(LOCKED)).await;
    let app = hub_app(&world);
    let appliance = appliance(&world).await;
    let a = member(&world, MEMBER_A).await;
    let (_, source) = a.instance(&[]).await;

    let made = first(&app, create_in("org-1", MEMBER_A, &source, &appliance)).await;
    assert_eq!(made["success"], true, "{made}");
    assert_eq!(made["accountId"], MEMBER_A);
    let session = made["sessionId"].as_str().expect("session").to_owned();
    let target = made["trafficMirrorTargetId"].as_str().expect("target").to_owned();
    let (sessions, filters) = a.mirroring().await;
    assert_eq!(
        sessions,
        BTreeSet::from([session.clone()]),
        "the session is the member's"
    );
    assert_eq!(filters.len(), 1, "and so is the filter");
    let hub = world.our_resources().await;
    assert_eq!(hub.targets, BTreeSet::from([target.clone()]), "the hub has the target");
    assert!(hub.filters.is_empty(), "no filter in the hub: {hub:?}");
    assert_eq!(hub_sessions(&world).await, 0, "no session of the hub's own");
    let (shared, principals) = share_of(&world).await;
    assert!(shared.iter().any(|arn| arn.ends_with(&target)), "{shared:?}");
    assert_eq!(principals, BTreeSet::from([MEMBER_A.to_owned()]));

    // Removed by session id, naming no account: the ledger knows it.
    let removed = first(&app, remove_session("org-1-rm", &session)).await;
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(a.mirroring().await, (BTreeSet::new(), BTreeSet::new()));
    assert!(
        world.our_resources().await.targets.is_empty(),
        "its last user gone: the target too"
    );
    assert_eq!(
        share_of(&world).await,
        (BTreeSet::new(), BTreeSet::new()),
        "and the share is empty"
    );
}

/// A member's create dies (the invocation's deadline, a crash) while its
/// session call is in flight, and the call lands all the same. Its pending
/// record names the member from the claim on, so the member's sweep, not the
/// hub's, finds it abandoned and deletes the session where it is; the
/// retry then runs again in the member.
#[tokio::test]
async fn a_members_create_that_died_in_flight_is_undone_in_the_member_by_the_sweep() {
    const LEASE: u64 = 2;
    let world = World::start().await;
    world.emulator.refuse_role(&role_of(LOCKED)).await;
    let app = world.app_with(|config| {
        config.accounts = AccountSet {
            home: Some(account(HUB)),
            members: [MEMBER_A, LOCKED].into_iter().map(account).collect(),
        };
        config.claim_lease_seconds = LEASE;
    });
    let appliance = appliance(&world).await;
    let a = member(&world, MEMBER_A).await;
    let (_, source) = a.instance(&[]).await;
    let request = create_in("org-died", MEMBER_A, &source, &appliance);

    world.emulator.hold_until_released("CreateTrafficMirrorSession").await;
    {
        let create = app.invoke(request.clone());
        tokio::pin!(create);
        tokio::select! {
            _ = &mut create => panic!("the create must still be running when it dies"),
            () = world.emulator.wait_held("CreateTrafficMirrorSession") => {}
        }
        // Dropped here, its session call in flight.
    }
    world
        .emulator
        .release_and_wait_applied("CreateTrafficMirrorSession")
        .await;
    assert_eq!(a.mirroring().await.0.len(), 1, "the dead create's session landed");
    let record = world.ledger_item("org-died").await.expect("record");
    assert_eq!(record["status"], "pending", "{record}");
    assert_eq!(record["account"], MEMBER_A, "the claim says whose it is: {record}");
    assert!(record["requestedBy"].is_string(), "and who asked: {record}");
    // The lease is wall-clock time in the ledger, in whole seconds.
    tokio::time::sleep(std::time::Duration::from_millis(LEASE * 1000 + 1_200)).await;

    let swept = app.invoke(json!({"sweep": {"dryRun": false}})).await.expect("answers");

    assert_eq!(a.mirroring().await.0.len(), 0, "undone in the member: {swept}");
    let record = world.ledger_item("org-died").await.expect("record");
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["account"], MEMBER_A, "{record}");
    let retried = first(&app, request).await;
    assert_eq!(retried["success"], true, "{retried}");
    assert_eq!(a.mirroring().await.0.len(), 1, "made again in the member");
    let record = world.ledger_item("org-died").await.expect("record");
    assert_eq!(
        (&record["status"], &record["account"]),
        (&json!("active"), &json!(MEMBER_A))
    );
}

#[tokio::test]
async fn a_launch_in_a_member_is_mirrored_there_and_other_accounts_are_refused_with_nothing_made() {
    let world = World::start().await;
    world.emulator.refuse_role(&role_of(LOCKED)).await;
    let app = hub_app(&world);
    let appliance = appliance(&world).await;
    let b = member(&world, MEMBER_B).await;
    let (instance, eni) = b.instance(&[("traffic-mirroring:target", &appliance)]).await;
    let mut launch = state_change(&instance, "running");
    launch["account"] = json!(MEMBER_B);
    let answer = app.invoke(launch).await.expect("answers");
    assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
    let (sessions, _) = b.mirroring().await;
    assert_eq!(sessions.len(), 1, "mirrored in the member");
    let described = b.ec2.describe_traffic_mirror_sessions().send().await.expect("sessions");
    assert_eq!(
        described.traffic_mirror_sessions()[0].network_interface_id(),
        Some(eni.as_str())
    );

    // An account not listed: the event and a request are refused.
    let before = world.our_resources().await;
    let mut foreign = state_change(&instance, "running");
    foreign["account"] = json!(STRANGER);
    let refused = app.invoke(foreign).await.expect("answers");
    assert_eq!(refused["refused"]["errorCode"], "AccountNotAllowed", "{refused}");
    let request = first(&app, create_in("stranger-1", STRANGER, &eni, &appliance)).await;
    assert_eq!(request["errorCode"], "AccountNotAllowed", "{request}");
    let locked = first(&app, create_in("locked-1", LOCKED, &eni, &appliance)).await;
    assert_eq!(locked["errorCode"], "MemberAccountUnreachable", "{locked}");
    assert_eq!(world.our_resources().await, before, "nothing made in the hub");
    assert_eq!(b.mirroring().await.0.len(), 1, "nor in the member");
    assert!(world.ledger_item("stranger-1").await.is_none());
}

/// STS cannot answer `AssumeRole` for a while (unavailable, for longer than
/// the SDK retries): a launch event from the member is delivered again (handed back to SQS; an error
/// for EventBridge to retry), nothing made; once STS answers, it is mirrored.
#[tokio::test]
async fn a_launch_from_a_member_sts_cannot_reach_yet_is_delivered_again_and_then_mirrored() {
    let world = World::start().await;
    let app = hub_app(&world);
    let appliance = appliance(&world).await;
    let b = member(&world, MEMBER_B).await;
    let (instance, _) = b.instance(&[("traffic-mirroring:target", &appliance)]).await;
    let mut launch = state_change(&instance, "running");
    launch["account"] = json!(MEMBER_B);
    world
        .emulator
        .fail_next("AssumeRole", "ServiceUnavailable", 503, 1000)
        .await;

    let batch = app
        .invoke(json!({"Records": [sqs_record("m-launch", &launch)]}))
        .await
        .expect("answers");
    assert_eq!(
        batch["batchItemFailures"],
        json!([{"itemIdentifier": "m-launch"}]),
        "{batch}"
    );
    assert!(app.invoke(launch.clone()).await.is_err(), "EventBridge retries");
    assert_eq!(b.mirroring().await.0.len(), 0, "nothing made");

    world.emulator.clear_faults().await;
    let answer = app.invoke(launch).await.expect("answers");
    assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
    assert_eq!(b.mirroring().await.0.len(), 1, "mirrored in the member");
}

#[tokio::test]
async fn the_sweep_backfills_two_members_reports_the_unreachable_one_and_the_ten_sources_count_across_accounts() {
    let world = World::start().await;
    world.emulator.refuse_role(&role_of(LOCKED)).await;
    let appliance = appliance(&world).await;
    let app = hub_app(&world);
    let a = member(&world, MEMBER_A).await;
    let b = member(&world, MEMBER_B).await;
    for _ in 0..3 {
        a.instance(&[("traffic-mirroring:target", &appliance)]).await;
    }
    for _ in 0..4 {
        b.instance(&[("traffic-mirroring:target", &appliance)]).await;
    }
    let answer = app.invoke(json!({"sweep": {"dryRun": false}})).await.expect("answers");
    let accounts = &answer["sweep"]["sweep"]["accounts"];
    assert_eq!(accounts[MEMBER_A]["coverage"]["mirrored"], 3, "{answer}");
    assert_eq!(accounts[MEMBER_B]["coverage"]["mirrored"], 4, "{answer}");
    assert_eq!(accounts[LOCKED]["errorCode"], "MemberAccountUnreachable", "{answer}");
    assert_eq!(accounts[HUB]["success"], true, "{answer}");
    assert_eq!(a.mirroring().await.0.len(), 3);
    assert_eq!(b.mirroring().await.0.len(), 4);
    assert_eq!(world.our_resources().await.targets.len(), 1, "one hub target for both");

    // Seven sources of two accounts on the appliance: three more fit, the
    // eleventh (in the hub itself) does not.
    for n in 0..3 {
        let eni = world.instance_eni("m5.large").await;
        let made = first(&app, create_in(&format!("hub-{n}"), HUB, &eni, &appliance)).await;
        assert_eq!(made["success"], true, "{made}");
    }
    let eni = world.instance_eni("m5.large").await;
    let eleventh = first(&app, create_in("hub-x", HUB, &eni, &appliance)).await;
    assert_eq!(
        eleventh["errorCode"], "TrafficMirrorSourcesPerTargetLimitExceeded",
        "{eleventh}"
    );

    // A sweep again changes nothing, and assumes no role again.
    world.emulator.clear_calls().await;
    let again = app.invoke(json!({"sweep": {"dryRun": false}})).await.expect("answers");
    assert_eq!(
        again["sweep"]["sweep"]["accounts"][MEMBER_B]["coverage"]["missing"], 0,
        "{again}"
    );
    let calls = world.emulator.calls().await;
    let assumed = calls
        .iter()
        .filter(|c| c["action"] == "AssumeRole" && c["status"] == 200)
        .count();
    assert_eq!(assumed, 0, "credentials kept between sweeps");
    let mutating = calls
        .iter()
        .filter(|c| c["service"] == "ec2" && c["action"].as_str().is_some_and(|a| a.starts_with("Create")))
        .count();
    assert_eq!(mutating, 0, "converged");

    // Someone takes a member out of the share while its sessions use the
    // target: the next sweep shares it again.
    let ram = aws_sdk_ram::Client::new(&world.sdk);
    let shares = hub_shares(&ram).await;
    let share = shares.first().expect("the deployment's share");
    ram.disassociate_resource_share()
        .resource_share_arn(share)
        .principals(MEMBER_B)
        .send()
        .await
        .expect("taken out");
    assert!(!share_of(&world).await.1.contains(MEMBER_B));
    let healed = app.invoke(json!({"sweep": {"dryRun": false}})).await.expect("answers");
    assert!(share_of(&world).await.1.contains(MEMBER_B), "{healed}");
}

/// `mirrorctl` as an operator of the hub runs it: the function's settings,
/// the hub's own credentials.
#[cfg(feature = "cli")]
fn mirrorctl(world: &World, args: &[&str]) -> std::process::Output {
    crate::cli::bare(world)
        .env("TABLE_NAME", &world.config.table_name)
        .env("EVENT_BUS_NAME", &world.config.event_bus_name)
        .env("OWNER", &world.config.owner)
        .env("ALLOWED_TARGETS", "*")
        .env("ALLOWED_SOURCES", "*")
        .env("DEPLOYMENT_ACCOUNT_ID", HUB)
        .env("MEMBER_ACCOUNTS", format!("{MEMBER_A},{MEMBER_B}"))
        .args(args)
        .output()
        .expect("mirrorctl runs")
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn mirrorctl_creates_lists_and_removes_in_a_member_account_and_shows_each_accounts_coverage() {
    let world = World::start().await;
    let appliance = appliance(&world).await;
    let a = member(&world, MEMBER_A).await;
    let (_, source) = a.instance(&[]).await;
    let made = mirrorctl(
        &world,
        &[
            "--json",
            "--account",
            MEMBER_A,
            "create",
            "--source",
            &source,
            "--target",
            &appliance,
        ],
    );
    crate::cli::assert_succeeded(&made);
    assert_eq!(a.mirroring().await.0.len(), 1, "made in the member");
    let own = world.eni().await;
    let in_hub = mirrorctl(&world, &["--json", "create", "--source", &own, "--target", &appliance]);
    crate::cli::assert_succeeded(&in_hub);

    let listed = crate::cli::json_out(&mirrorctl(&world, &["--json", "list"]));
    let accounts: BTreeSet<&str> = listed
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["account"].as_str())
        .collect();
    assert_eq!(accounts, BTreeSet::from([HUB, MEMBER_A]), "{listed}");
    let only_a = crate::cli::json_out(&mirrorctl(&world, &["--json", "--account", MEMBER_A, "list"]));
    assert_eq!(only_a.as_array().map(Vec::len), Some(1), "{only_a}");
    assert_eq!(only_a[0]["sourceEni"], source.as_str());
    let table = mirrorctl(&world, &["list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("ACCOUNT") && text.contains(&format!("account {MEMBER_A}: 1 mirror")),
        "{text}"
    );

    // An organization's coverage is the roll-up of each account's last sweep.
    let before = crate::cli::json_out(&mirrorctl(&world, &["--json", "coverage"]));
    assert_eq!(
        before["unreported"].as_array().map(Vec::len),
        Some(3),
        "no sweep yet: {before}"
    );
    let swept = mirrorctl(&world, &["--yes", "sweep"]);
    crate::cli::assert_succeeded(&swept);
    let coverage = crate::cli::json_out(&mirrorctl(&world, &["--json", "coverage"]));
    assert!(coverage["accounts"][MEMBER_A]["sweptAt"].is_string(), "{coverage}");
    assert!(coverage["accounts"][MEMBER_B].is_object(), "{coverage}");
    assert_eq!(coverage["unreported"], json!([]), "{coverage}");
    let one = crate::cli::json_out(&mirrorctl(&world, &["--json", "--account", MEMBER_A, "coverage"]));
    assert!(
        one["accounts"][MEMBER_A].is_object() && one["accounts"][HUB].is_null(),
        "{one}"
    );

    let removed = mirrorctl(
        &world,
        &["--json", "--yes", "--account", MEMBER_A, "remove", "--eni", &source],
    );
    crate::cli::assert_succeeded(&removed);
    assert!(a.mirroring().await.0.is_empty(), "removed in the member");
    let left = crate::cli::json_out(&mirrorctl(&world, &["--json", "list"]));
    assert_eq!(left.as_array().map(Vec::len), Some(1), "the hub's own stays: {left}");
    let bad = mirrorctl(&world, &["--account", "12", "list"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn a_large_organizations_scheduled_sweep_is_fanned_out_on_the_queue_one_account_per_invocation() {
    let world = World::start().await;
    world.emulator.refuse_role(&role_of(LOCKED)).await;
    let appliance = appliance(&world).await;
    let a = member(&world, MEMBER_A).await;
    a.instance(&[("traffic-mirroring:target", &appliance)]).await;
    let queue = world
        .sqs
        .create_queue()
        .queue_name(unique("sweeps"))
        .send()
        .await
        .expect("queue");
    let queue_url = queue.queue_url().expect("url").to_owned();
    let app = world.app_with(|config| {
        config.accounts = AccountSet {
            home: Some(account(HUB)),
            members: [MEMBER_A, MEMBER_B, LOCKED].into_iter().map(account).collect(),
        };
        config.sweep_queue_url = Some(queue_url.clone());
        config.sweep_accounts_per_invocation = 2;
    });
    let scheduled = app.invoke(json!({"sweep": {}})).await.expect("answers");
    assert_eq!(scheduled["sweep"]["success"], true, "{scheduled}");
    assert_eq!(
        a.mirroring().await.0.len(),
        0,
        "nothing swept by the scheduled invocation"
    );

    let mut records = Vec::new();
    while records.len() < 4 {
        let received = world
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("received");
        if received.messages().is_empty() {
            break;
        }
        for message in received.messages() {
            let body: Value = serde_json::from_str(message.body().unwrap_or_default()).expect("json");
            records.push(sqs_record(message.message_id().unwrap_or_default(), &body));
        }
    }
    let accounts: BTreeSet<String> = records
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
        .filter_map(|b| b["sweep"]["account"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        accounts,
        [HUB, MEMBER_A, MEMBER_B, LOCKED]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        "one message per account"
    );
    world.emulator.clear_calls().await;
    let answer = app.invoke(json!({"Records": records})).await.expect("answers");
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    assert_eq!(a.mirroring().await.0.len(), 1, "the member swept by its own message");
    let scans = world
        .emulator
        .calls()
        .await
        .iter()
        .filter(|c| c["action"] == "Scan")
        .count();
    assert_eq!(scans, 1, "the batch's four sweeps share one read of the table");
}
