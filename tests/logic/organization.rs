//! One deployment across an organization, on the fakes: a hub (its own
//! account, owning the targets) and member accounts (sources, filters and
//! sessions), one ledger, RAM's share, and member roles that may refuse.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};
use traffic_mirroring::domain::account::{AccountId, AccountSet};
use traffic_mirroring::handler::App;
use traffic_mirroring::mirroring::launch::LaunchPolicy;
use traffic_mirroring::mirroring::{Allowed, Mirroring, Ports};
use traffic_mirroring::organization::{FanOut, HubParts, Organization};
use traffic_mirroring::ports::RecordStatus;

use crate::fakes::{MemoryBus, MemoryEc2, MemoryLedger, MemoryMembers, MemoryQueue, MemoryShares};
use crate::world::{eni, first_result, OWNER};

const HUB: &str = "111111111111";
const MEMBER_A: &str = "222222222222";
const MEMBER_B: &str = "333333333333";
/// Listed, but its role refuses to be assumed.
const LOCKED: &str = "444444444444";
const STRANGER: &str = "999999999999";

struct Org {
    hub: Arc<MemoryEc2>,
    members: Arc<MemoryMembers>,
    member_ec2: Vec<(String, Arc<MemoryEc2>)>,
    ledger: Arc<MemoryLedger>,
    bus: Arc<MemoryBus>,
    shares: Arc<MemoryShares>,
    queue: Arc<MemoryQueue>,
    app: App,
}

fn account(id: &str) -> AccountId {
    AccountId::parse(id).expect("12 digits")
}

fn organization(default_targets: &[(&str, &str)]) -> Org {
    organization_fanned_out(default_targets, None)
}

/// An organization whose scheduled sweep fans out past this many accounts.
fn organization_fanned_out(default_targets: &[(&str, &str)], accounts_per_invocation: Option<usize>) -> Org {
    let queue = Arc::new(MemoryQueue::default());
    let hub = Arc::new(MemoryEc2::default());
    let ledger = Arc::new(MemoryLedger::default());
    let bus = Arc::new(MemoryBus::default());
    let shares = Arc::new(MemoryShares::default());
    let members = Arc::new(MemoryMembers::default());
    let mut member_ec2 = Vec::new();
    for id in [MEMBER_A, MEMBER_B, LOCKED] {
        let ec2 = Arc::new(MemoryEc2::default());
        members.add(id, ec2.clone());
        shares.knows(id, ec2.clone());
        member_ec2.push((id.to_owned(), ec2));
    }
    members.refuse(LOCKED);
    let raw = Ports::new(hub.clone(), ledger.clone(), bus.clone());
    let parts = HubParts {
        home: account(HUB),
        records: raw.records.clone(),
        claims: raw.claims.clone(),
        numbers: raw.numbers.clone(),
        scans: raw.scans.clone(),
        targets: raw.targets.clone(),
        instances: raw.instances.clone(),
        preflight: raw.preflight.clone(),
        publisher: raw.publisher.clone(),
        shares: shares.clone(),
        reports: ledger.clone(),
        fan_out: accounts_per_invocation.map(|most| FanOut {
            queue: queue.clone(),
            accounts_per_invocation: most,
        }),
    };
    let home = Mirroring::from_ports(parts.home_ports(raw), OWNER).with_allowed(Allowed::anything());
    let accounts = AccountSet {
        home: Some(account(HUB)),
        members: [MEMBER_A, MEMBER_B, LOCKED].into_iter().map(account).collect(),
    };
    let organization = Organization::hub(Arc::new(home), accounts, parts, members.clone());
    let app = App::new(organization).with_launch_policy(LaunchPolicy {
        default_targets: default_targets
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    });
    Org {
        hub,
        members,
        member_ec2,
        ledger,
        bus,
        shares,
        queue,
        app,
    }
}

impl Org {
    fn member(&self, id: &str) -> &Arc<MemoryEc2> {
        &self.member_ec2.iter().find(|(a, _)| a == id).expect("a member").1
    }

    async fn invoke(&self, payload: Value) -> Value {
        self.app.invoke(payload).await.expect("answers")
    }

    async fn run(&self, payload: Value) -> Value {
        first_result(&self.invoke(payload).await).clone()
    }

    /// Sessions, filters and targets of one EC2.
    fn counts(ec2: &MemoryEc2) -> (usize, usize, usize) {
        let (s, f, t) = ec2.resources();
        (s.len(), f.len(), t.len())
    }

    fn nothing_anywhere(&self) -> bool {
        Self::counts(&self.hub) == (0, 0, 0) && self.member_ec2.iter().all(|(_, ec2)| Self::counts(ec2) == (0, 0, 0))
    }
}

/// A create in `account` (none: the hub's own) of `source` to the hub ENI `target`.
fn create_in(action_id: &str, account: Option<&str>, source: u32, target: u32) -> Value {
    let mut params = json!({"sourceNicId": eni(source), "targetNicId": eni(target)});
    if let Some(account) = account {
        params["accountId"] = json!(account);
    }
    json!({"driverRequest": {"actions": [{"actionId": action_id, "type": "CreateTrafficMirroring",
        "actionParams": params}]}})
}

fn remove_session(action_id: &str, session_id: &str) -> Value {
    json!({"driverRequest": {"actions": [{"actionId": action_id, "type": "RemoveTrafficMirroring",
        "sessionId": session_id}]}})
}

fn launch_in(account: &str, instance_id: &str) -> Value {
    json!({"version": "0", "id": "e1", "detail-type": "EC2 Instance State-change Notification",
           "source": "aws.ec2", "account": account, "region": "us-east-1",
           "resources": [format!("arn:aws:ec2:us-east-1:{account}:instance/{instance_id}")],
           "detail": {"instance-id": instance_id, "state": "running"}})
}

#[tokio::test]
async fn a_members_create_makes_the_filter_and_session_there_and_shares_the_hubs_target() {
    let org = organization(&[]);
    let result = org.run(create_in("m-1", Some(MEMBER_A), 1, 100)).await;
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["accountId"], MEMBER_A);
    let member = org.member(MEMBER_A);
    assert_eq!(
        Org::counts(member),
        (1, 1, 0),
        "session and filter in the member, no target"
    );
    assert_eq!(Org::counts(&org.hub), (0, 0, 1), "nothing in the hub but the target");
    let target = result["trafficMirrorTargetId"].as_str().expect("a target");
    assert!(org.hub.target_of(target).is_some());
    assert_eq!(
        *org.shares.targets.lock().expect("t"),
        BTreeSet::from([target.to_owned()])
    );
    assert_eq!(
        *org.shares.principals.lock().expect("p"),
        BTreeSet::from([MEMBER_A.to_owned()])
    );
    // The record says where; the event too.
    let record = org.ledger.record("m-1").expect("recorded");
    assert_eq!(record.account.as_ref().map(AccountId::as_str), Some(MEMBER_A));
    let events = org.bus.events.lock().expect("events").clone();
    assert_eq!(events.last().and_then(|e| e.account.clone()).as_deref(), Some(MEMBER_A));
    // The hub's own create to the same appliance joins the same target.
    let own = org.run(create_in("h-1", None, 2, 100)).await;
    assert_eq!(own["trafficMirrorTargetId"], target);
    assert_eq!(own.get("accountId"), None);
    assert_eq!(Org::counts(&org.hub), (1, 1, 1));
    // The role was assumed once for both.
    assert_eq!(org.members.times_assumed(MEMBER_A), 1);
}

#[tokio::test]
async fn an_account_not_listed_is_refused_and_an_unreachable_one_named_with_nothing_made() {
    let org = organization(&[("vpc-0000000a", "eni-00000000000000064")]);
    let refused = org.run(create_in("s-1", Some(STRANGER), 1, 100)).await;
    assert_eq!(refused["success"], false);
    assert_eq!(refused["errorCode"], "AccountNotAllowed");
    assert_eq!(refused["retryable"], Value::Null, "not retryable");
    let locked = org.run(create_in("l-1", Some(LOCKED), 1, 100)).await;
    assert_eq!(locked["errorCode"], "MemberAccountUnreachable", "{locked}");
    assert_eq!(locked["retryable"], Value::Null, "a refusing role is not retried");
    // An instance launch from an account not listed: refused, EC2 never asked.
    let stranger_ec2_calls = org.hub.calls("DescribeInstances");
    let answer = org.invoke(launch_in(STRANGER, "i-0000000000000000a")).await;
    assert_eq!(answer["refused"]["errorCode"], "AccountNotAllowed", "{answer}");
    assert_eq!(org.hub.calls("DescribeInstances"), stranger_ec2_calls);
    assert!(org.nothing_anywhere());
    assert!(org.ledger.record("s-1").is_none(), "nothing claimed either");
    // The refusals are announced, with who asked.
    let events = org.bus.events.lock().expect("events").clone();
    assert!(events
        .iter()
        .any(|e| e.action_id == "s-1" && e.error_code.as_deref() == Some("AccountNotAllowed")));
}

/// An instance event from a member whose role STS cannot give right now
/// (throttled) is delivered again: handed back to SQS, or an error for
/// EventBridge to retry. One whose role refuses for good is not.
#[tokio::test]
async fn an_event_from_a_member_sts_cannot_reach_now_is_delivered_again() {
    let org = organization(&[("vpc-0000000a", "eni-00000000000000064")]);
    org.member(MEMBER_A)
        .plant_instance("i-000000000000000a1", &[&eni(1)], &[]);
    org.members.throttle(MEMBER_A, true);
    let launch = launch_in(MEMBER_A, "i-000000000000000a1");
    let batch = org
        .invoke(json!({"Records": [
            crate::world::sqs_record("m-throttled", &launch),
            crate::world::sqs_record("m-locked", &launch_in(LOCKED, "i-000000000000000c1")),
        ]}))
        .await;
    assert_eq!(
        batch["batchItemFailures"],
        json!([{"itemIdentifier": "m-throttled"}]),
        "{batch}"
    );
    let direct = org.app.invoke(launch.clone()).await;
    assert!(direct.is_err(), "an error, for EventBridge to retry: {direct:?}");
    assert!(org.nothing_anywhere());

    org.members.throttle(MEMBER_A, false);
    let handled = org.invoke(launch).await;
    assert_eq!(org.member(MEMBER_A).sessions_on(&eni(1)).len(), 1, "{handled}");
}

#[tokio::test]
async fn a_launch_in_a_member_account_is_mirrored_there() {
    let org = organization(&[
        (&format!("{MEMBER_A}:vpc-0000000a"), &eni(100)),
        ("vpc-0000000a", &eni(200)),
    ]);
    let member = org.member(MEMBER_A);
    member.plant_instance("i-0000000000000000a", &[&eni(5)], &[]);
    let answer = org.invoke(launch_in(MEMBER_A, "i-0000000000000000a")).await;
    let result = &answer["actionResults"][0];
    assert_eq!(result["success"], true, "{answer}");
    assert_eq!(result["accountId"], MEMBER_A);
    assert_eq!(member.sessions_on(&eni(5)).len(), 1);
    // The member's own default wins over the one for every account.
    let target = result["trafficMirrorTargetId"].as_str().expect("target");
    assert_eq!(
        org.hub.target_of(target).and_then(|t| t.network_interface_id),
        Some(eni(100))
    );
    // The same instance id in the hub does not exist: nothing made there.
    assert_eq!(Org::counts(&org.hub).0, 0);
}

#[tokio::test]
async fn removes_find_the_members_session_and_the_target_goes_with_its_last_user_of_any_account() {
    let org = organization(&[]);
    let in_a = org.run(create_in("a-1", Some(MEMBER_A), 1, 100)).await;
    let in_hub = org.run(create_in("h-1", None, 2, 100)).await;
    let target = in_a["trafficMirrorTargetId"].as_str().expect("target").to_owned();
    // By session id, naming no account: the ledger says where.
    let removed = org
        .run(remove_session("r-1", in_a["sessionId"].as_str().expect("session")))
        .await;
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(removed["accountId"], MEMBER_A);
    assert_eq!(Org::counts(org.member(MEMBER_A)), (0, 0, 0), "session and filter gone");
    assert!(org.hub.target_of(&target).is_some(), "the hub's session still uses it");
    assert!(
        org.shares.principals.lock().expect("p").is_empty(),
        "the member left the share"
    );
    assert!(org.shares.targets.lock().expect("t").contains(&target));
    // The last user, in the hub: the target leaves the share and is deleted.
    let last = org
        .run(remove_session("r-2", in_hub["sessionId"].as_str().expect("session")))
        .await;
    assert_eq!(last["success"], true, "{last}");
    assert!(org.nothing_anywhere());
    assert!(org.shares.targets.lock().expect("t").is_empty());
    // Removing it again is a success.
    let again = org
        .run(remove_session("r-3", in_a["sessionId"].as_str().expect("session")))
        .await;
    assert_eq!(again["success"], true, "{again}");
}

#[tokio::test]
async fn a_remove_by_target_eni_acts_in_every_account_whose_sessions_use_it() {
    let org = organization(&[]);
    for (id, account, source) in [("a-1", Some(MEMBER_A), 1), ("b-1", Some(MEMBER_B), 2), ("h-1", None, 3)] {
        let made = org.run(create_in(id, account, source, 100)).await;
        assert_eq!(made["success"], true, "{made}");
    }
    let removed = org
        .run(
            json!({"driverRequest": {"actions": [{"actionId": "by-target", "type": "RemoveTrafficMirroring",
            "targetNicId": eni(100)}]}}),
        )
        .await;
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(
        removed["removedSessionIds"].as_array().map(Vec::len),
        Some(3),
        "{removed}"
    );
    assert!(org.nothing_anywhere());
}

#[tokio::test]
async fn the_ten_sources_of_an_eni_target_count_every_account() {
    let org = organization(&[]);
    for n in 0..10u32 {
        let account = [Some(MEMBER_A), Some(MEMBER_B), None][n as usize % 3];
        let made = org.run(create_in(&format!("c-{n}"), account, 10 + n, 100)).await;
        assert_eq!(made["success"], true, "{made}");
    }
    let eleventh = org.run(create_in("c-10", Some(MEMBER_A), 30, 100)).await;
    assert_eq!(eleventh["success"], false);
    assert_eq!(
        eleventh["errorCode"], "TrafficMirrorSourcesPerTargetLimitExceeded",
        "{eleventh}"
    );
    assert_eq!(org.hub.resources().2.len(), 1, "one target for all");
}

#[tokio::test]
async fn the_sweep_backfills_every_member_side_by_side_and_reports_the_unreachable_one() {
    let org = organization(&[("vpc-0000000a", "eni-00000000000000064")]);
    org.member(MEMBER_A)
        .plant_instance("i-000000000000000a1", &[&eni(1)], &[]);
    org.member(MEMBER_B)
        .plant_instance("i-000000000000000b1", &[&eni(2)], &[]);
    org.member(MEMBER_B)
        .plant_instance("i-000000000000000b2", &[&eni(3)], &[]);
    let answer = org.invoke(json!({"sweep": {"dryRun": false}})).await;
    let accounts = &answer["sweep"]["sweep"]["accounts"];
    assert_eq!(accounts[MEMBER_A]["coverage"]["mirrored"], 1, "{answer}");
    assert_eq!(accounts[MEMBER_B]["coverage"]["mirrored"], 2, "{answer}");
    assert_eq!(accounts[HUB]["success"], true, "{answer}");
    assert_eq!(accounts[LOCKED]["errorCode"], "MemberAccountUnreachable", "{answer}");
    assert_eq!(answer["sweep"]["success"], false, "an account was not swept");
    assert_eq!(org.member(MEMBER_A).sessions_on(&eni(1)).len(), 1);
    assert_eq!(org.member(MEMBER_B).sessions_on(&eni(3)).len(), 1);
    // One target for the whole organization; the hub's sweep keeps it
    // though no session of the hub's own uses it.
    assert_eq!(org.hub.resources().2.len(), 1);
    let again = org.invoke(json!({"sweep": {"dryRun": false}})).await;
    assert_eq!(org.hub.resources().2.len(), 1, "{again}");
    assert_eq!(again["sweep"]["sweep"]["accounts"][MEMBER_B]["coverage"]["missing"], 0);
    assert_eq!(
        org.members.times_assumed(MEMBER_A),
        1,
        "credentials kept between sweeps"
    );
}

/// A member's session whose action's record says failed and names no
/// account (the hub's view: an earlier version's claim lost it when the
/// create was cut off): the member's sweep records the session again, in
/// its account, and the hub's sweep leaves it alone.
#[tokio::test]
async fn a_members_session_whose_record_lost_its_account_is_adopted_in_the_member() {
    let org = organization(&[]);
    let made = org.run(create_in("m-lost", Some(MEMBER_A), 1, 100)).await;
    assert_eq!(made["success"], true, "{made}");
    let session = made["sessionId"].as_str().expect("a session").to_owned();
    org.ledger.rewrite("m-lost", |r| {
        r.account = None;
        r.fail_for_retry();
    });

    let answer = org.invoke(json!({"sweep": {"dryRun": false}})).await;

    let record = org.ledger.record("m-lost").expect("recorded");
    assert_eq!(record.status, Some(RecordStatus::Active), "{answer}");
    assert_eq!(record.account.as_ref().map(AccountId::as_str), Some(MEMBER_A));
    assert_eq!(record.session_id.as_deref(), Some(session.as_str()));
    assert_eq!(Org::counts(org.member(MEMBER_A)).0, 1, "the session stays");
    assert!(
        answer["sweep"]["sweep"]["accounts"][MEMBER_A]["findings"].as_u64() >= Some(1),
        "found by the member's sweep: {answer}"
    );
    // Recorded again, it is removed like any other mirror.
    let removed = org.run(remove_session("m-lost-rm", &session)).await;
    assert_eq!(removed["success"], true, "{removed}");
    assert!(org.nothing_anywhere());
}

/// A member's resource that nobody can account for (an earlier version's
/// session this ledger does not know) is named in the member's entry of
/// the sweep's answer, not only counted, and left where it is.
#[tokio::test]
async fn what_a_members_sweep_leaves_alone_on_purpose_is_named_in_its_entry() {
    let org = organization(&[]);
    let legacy = org.member(MEMBER_B).plant_session(
        &eni(5),
        &eni(66),
        &[("traffic-mirroring:managed-by", "traffic-mirroring")],
    );

    let answer = org.invoke(json!({"sweep": {"dryRun": false}})).await;

    let accounts = &answer["sweep"]["sweep"]["accounts"];
    let attention = &accounts[MEMBER_B]["needsAttention"];
    assert_eq!(attention["findingsTotal"], 1, "{answer}");
    assert_eq!(attention["findings"][0]["kind"], "legacy_unknown", "{answer}");
    assert_eq!(attention["findings"][0]["resource"], legacy.as_str());
    assert!(
        accounts[MEMBER_A].get("needsAttention").is_none(),
        "nothing to look at: {answer}"
    );
    assert_eq!(Org::counts(org.member(MEMBER_B)).0, 1, "left alone");
}

/// A member taken out of the share while a session of ours there still
/// uses the hub's target (another process saw none as this one made it,
/// or a person did it) is shared again by the sweep, and it says so.
#[tokio::test]
async fn the_sweep_shares_a_hub_target_again_with_a_member_whose_sessions_use_it() {
    use traffic_mirroring::ports::TargetShares;
    let org = organization(&[]);
    let made = org.run(create_in("m-1", Some(MEMBER_A), 1, 100)).await;
    assert_eq!(made["success"], true, "{made}");
    org.shares.unshare_account(&account(MEMBER_A)).await.expect("unshared");

    let answer = org.invoke(json!({"sweep": {"dryRun": false}})).await;

    assert!(
        org.shares.principals.lock().expect("p").contains(MEMBER_A),
        "shared again: {answer}"
    );
    assert_eq!(
        answer["sweep"]["sweep"]["accounts"][MEMBER_A]["findings"], 1,
        "{answer}"
    );
    let again = org.invoke(json!({"sweep": {"dryRun": false}})).await;
    assert_eq!(again["sweep"]["sweep"]["accounts"][MEMBER_A]["findings"], 0, "{again}");

    // A session of ours to a target that a third account shared with the
    // member is not the hub's to share.
    let filter = org.member(MEMBER_B).plant_filter(&[]);
    org.member(MEMBER_B).share_in("tmt-0000000000000elsewhere", true);
    org.member(MEMBER_B).plant_session_on(
        &eni(7),
        "tmt-0000000000000elsewhere",
        &filter,
        1,
        &[("traffic-mirroring:managed-by", OWNER)],
    );
    org.invoke(json!({"sweep": {"dryRun": false}})).await;
    assert!(
        !org.shares
            .targets
            .lock()
            .expect("t")
            .contains("tmt-0000000000000elsewhere"),
        "not put in the hub's share"
    );
}

#[tokio::test]
async fn credentials_are_renewed_before_they_expire() {
    let org = organization(&[]);
    // Credentials that expire within the renewal margin are renewed at once.
    *org.members.lifetime.lock().expect("lifetime") = Some(std::time::Duration::from_secs(60));
    assert_eq!(org.run(create_in("a-1", Some(MEMBER_A), 1, 100)).await["success"], true);
    assert_eq!(org.run(create_in("a-2", Some(MEMBER_A), 2, 100)).await["success"], true);
    assert_eq!(org.members.times_assumed(MEMBER_A), 2);
    // An hour's are kept.
    *org.members.lifetime.lock().expect("lifetime") = Some(std::time::Duration::from_secs(3600));
    assert_eq!(org.run(create_in("b-1", Some(MEMBER_B), 3, 100)).await["success"], true);
    assert_eq!(org.run(create_in("b-2", Some(MEMBER_B), 4, 100)).await["success"], true);
    assert_eq!(org.members.times_assumed(MEMBER_B), 1);
}

#[tokio::test]
async fn a_members_mirror_ends_in_the_member_when_its_time_is_up() {
    use traffic_mirroring::ports::ActionRecords;
    let org = organization(&[]);
    let mut request = create_in("timed", Some(MEMBER_A), 1, 100);
    request["driverRequest"]["actions"][0]["actionParams"]["durationMinutes"] = json!(30);
    assert_eq!(org.run(request).await["success"], true);
    let not_yet = org.invoke(json!({"expire": {}})).await;
    assert_eq!(not_yet["expire"]["expired"], json!([]), "{not_yet}");
    let mut record = org.ledger.record("timed").expect("recorded");
    record.ends_at = Some(1);
    org.ledger.save(&mut record).await.expect("saved");
    let expired = org.invoke(json!({"expire": {}})).await;
    assert_eq!(expired["expire"]["removed"], 1, "{expired}");
    assert!(
        org.nothing_anywhere(),
        "session and filter gone from the member, the target from the hub"
    );
    let last = org
        .bus
        .events
        .lock()
        .expect("events")
        .last()
        .cloned()
        .expect("announced");
    assert!(last.expired && last.account.as_deref() == Some(MEMBER_A), "{last:?}");
}

/// A sweep message whose account is not an account id is answered with a
/// clear error and not retried; it is never taken for "every account",
/// which would fan the sweep out again.
#[tokio::test]
async fn a_sweep_naming_a_malformed_account_is_refused_not_widened() {
    let org = organization_fanned_out(&[("vpc-0000000a", "eni-00000000000000064")], Some(2));
    org.member(MEMBER_A)
        .plant_instance("i-000000000000000a1", &[&eni(1)], &[]);
    let direct = org.invoke(json!({"sweep": {"account": "12"}})).await;
    assert!(
        direct["driverResponse"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("not a 12-digit account id")),
        "{direct}"
    );
    let batch = org
        .invoke(json!({"Records": [crate::world::sqs_record("m-bad", &json!({"sweep": {"account": 42}}))]}))
        .await;
    assert!(crate::world::failed_ids(&batch).is_empty(), "not retried: {batch}");
    assert!(
        org.queue.messages.lock().expect("messages").is_empty(),
        "nothing fanned out"
    );
    assert_eq!(org.members.times_assumed(MEMBER_A), 0, "no account swept");
    assert!(org.nothing_anywhere());
}

#[tokio::test]
async fn a_sweep_too_large_for_one_invocation_fans_out_one_message_per_account_and_rolls_up() {
    let org = organization_fanned_out(&[("vpc-0000000a", "eni-00000000000000064")], Some(2));
    org.member(MEMBER_A)
        .plant_instance("i-000000000000000a1", &[&eni(1)], &[]);
    org.member(MEMBER_B)
        .plant_instance("i-000000000000000b1", &[&eni(2)], &[]);
    let scheduled = org.invoke(json!({"sweep": {}})).await;
    assert_eq!(scheduled["sweep"]["success"], true, "{scheduled}");
    let queued = org.queue.messages.lock().expect("messages").clone();
    assert_eq!(queued.len(), 4, "the hub and three members: {queued:?}");
    assert!(org.nothing_anywhere(), "the scheduled invocation itself sweeps nothing");
    assert_eq!(org.members.times_assumed(MEMBER_A), 0);

    // Each message is swept by an invocation of its own, from the queue.
    let records: Vec<Value> = queued
        .iter()
        .enumerate()
        .map(|(n, body)| crate::world::sqs_record(&format!("m-{n}"), body))
        .collect();
    let answer = org.invoke(json!({"Records": records})).await;
    let failed = crate::world::failed_ids(&answer);
    assert!(failed.is_empty(), "the unreachable account is not retried: {answer}");
    assert_eq!(org.member(MEMBER_A).sessions_on(&eni(1)).len(), 1);
    assert_eq!(org.member(MEMBER_B).sessions_on(&eni(2)).len(), 1);

    // The roll-up of the last reports: what mirrorctl coverage shows.
    let rollup = org.app.organization().rollup().await.expect("readable");
    assert_eq!(rollup["accounts"][MEMBER_A]["coverage"]["mirrored"], 1, "{rollup}");
    assert_eq!(
        rollup["accounts"][LOCKED]["errorCode"], "MemberAccountUnreachable",
        "{rollup}"
    );
    assert!(rollup["accounts"][HUB].is_object(), "{rollup}");
    assert_eq!(rollup["totals"]["mirrored"], 2, "{rollup}");
    assert_eq!(rollup["unreported"], json!([]), "{rollup}");
}

#[tokio::test]
async fn accounts_the_deadline_leaves_no_time_for_are_deferred_and_go_first_next_time() {
    let org = organization(&[("vpc-0000000a", "eni-00000000000000064")]);
    org.member(MEMBER_A)
        .plant_instance("i-000000000000000a1", &[&eni(1)], &[]);
    // Too little time left to start any account: each is deferred, none
    // reached (no role assumed), and the sweep asks to be run again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(3500);
    let hurried = traffic_mirroring::deadline::within(deadline, org.invoke(json!({"sweep": {}}))).await;
    let accounts = &hurried["sweep"]["sweep"]["accounts"];
    assert!(accounts[MEMBER_A]["deferred"].is_string(), "{hurried}");
    assert_eq!(hurried["sweep"]["errorCode"], "SweepDeferred", "{hurried}");
    assert_eq!(org.members.times_assumed(MEMBER_A), 0);
    assert!(org.nothing_anywhere());
    // With time, the next sweep does them.
    let swept = org.invoke(json!({"sweep": {}})).await;
    assert_eq!(
        swept["sweep"]["sweep"]["accounts"][MEMBER_A]["coverage"]["mirrored"], 1,
        "{swept}"
    );
}
