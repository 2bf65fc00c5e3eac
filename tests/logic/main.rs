//! The mirroring logic against in-memory fakes of its ports (no emulator, no
//! HTTP): a few milliseconds a test, for the rules a change to the logic is
//! most likely to break. What depends on AWS's behaviour over the wire
//! (paging, throttling, lagging indexes, processes racing, the deadline) is
//! tested in `aws_flows` against the emulator.

#[path = "../support/fakes.rs"]
mod fakes;

use std::sync::Arc;

use serde_json::{json, Value};
use traffic_mirroring::announce::Announcer;
use traffic_mirroring::handler::App;
use traffic_mirroring::mirroring::watch::{UnapprovedOutcome, Watch};
use traffic_mirroring::mirroring::{AllowList, Allowed, Controls, Mirroring};
use traffic_mirroring::ports::ActionRecords;
use traffic_mirroring::ports::{AwsError, ErrorKind, RecordStatus};

use fakes::{MemoryBus, MemoryEc2, MemoryLedger};

struct Fixture {
    ec2: Arc<MemoryEc2>,
    ledger: Arc<MemoryLedger>,
    bus: Arc<MemoryBus>,
    app: App,
}

fn fixture() -> Fixture {
    let (ec2, ledger, bus) = (
        Arc::new(MemoryEc2::default()),
        Arc::new(MemoryLedger::default()),
        Arc::new(MemoryBus::default()),
    );
    let mirroring =
        Mirroring::new(ec2.clone(), ledger.clone(), bus.clone(), "table/logic").with_allowed(Allowed::anything());
    Fixture {
        ec2,
        ledger,
        bus,
        app: App::new(mirroring),
    }
}

fn eni(n: u32) -> String {
    format!("eni-{n:017x}")
}

fn create(action_id: &str, source: u32, target: u32, port: u16) -> Value {
    json!({"driverRequest": {"actions": [{
        "actionId": action_id, "type": "CreateTrafficMirroring",
        "actionParams": {"type": "CreateTrafficMirroringParams",
            "sourceNicId": eni(source), "targetNicId": eni(target),
            "filterRules": [{"type": "TrafficFilterRule", "direction": "ingress", "protocol": "tcp",
                "destinationPortRange": {"fromPort": port, "toPort": port},
                "sourceCidr": "10.0.0.0/16"}]}}]}})
}

fn remove_session(action_id: &str, session_id: &str) -> Value {
    json!({"driverRequest": {"actions": [{
        "actionId": action_id, "type": "RemoveTrafficMirroring",
        "actionParams": {"type": "RemoveTrafficMirroringParams", "sessionId": session_id}}]}})
}

impl Fixture {
    async fn run(&self, payload: Value) -> Value {
        let answer = self.app.invoke(payload).await.expect("an answer");
        answer["driverResponse"]["actionResults"][0].clone()
    }

    fn counts(&self) -> (usize, usize, usize) {
        let (sessions, filters, targets) = self.ec2.resources();
        (sessions.len(), filters.len(), targets.len())
    }
}

#[tokio::test]
async fn a_create_and_its_remove_leave_nothing_and_announce_both() {
    let world = fixture();
    let created = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(created["success"], true, "{created}");
    assert_eq!(world.counts(), (1, 1, 1));
    let session_id = created["sessionId"].as_str().expect("a session id").to_owned();
    let removed = world.run(remove_session("r1", &session_id)).await;
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
    let events = world.bus.events.lock().expect("events").clone();
    let announced: Vec<(&str, bool)> = events.iter().map(|e| (e.action_id.as_str(), e.success)).collect();
    assert_eq!(announced, [("c1", true), ("r1", true)]);
}

#[tokio::test]
async fn a_failed_session_step_rolls_back_what_the_create_made() {
    let world = fixture();
    world.ec2.fail_next(
        "CreateTrafficMirrorSession",
        AwsError::new(ErrorKind::Rejected, "InvalidParameterValue", "refused"),
    );
    let failed = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(
        (failed["success"].clone(), failed["errorCode"].clone()),
        (json!(false), json!("InvalidParameterValue")),
        "{failed}"
    );
    assert_eq!(world.counts(), (0, 0, 0), "the target and filter it made are gone");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
    let record = world.ledger.record("c1").expect("recorded");
    assert_eq!(record.status, Some(RecordStatus::Failed));
    // The retry runs again, with fresh client tokens.
    let retried = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(retried["success"], true, "{retried}");
    assert_eq!(world.counts(), (1, 1, 1));
}

#[tokio::test]
async fn creates_to_one_destination_share_its_target_and_filter_until_the_last_remove() {
    let world = fixture();
    let first = world.run(create("c1", 1, 9, 443)).await;
    let second = world.run(create("c2", 2, 9, 443)).await;
    assert_eq!(
        (first["success"].clone(), second["success"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(world.counts(), (2, 1, 1), "one target and one filter for both");
    assert_eq!(first["trafficMirrorTargetId"], second["trafficMirrorTargetId"]);
    let session = |answer: &Value| answer["sessionId"].as_str().expect("session").to_owned();
    world.run(remove_session("r1", &session(&first))).await;
    assert_eq!(world.counts(), (1, 1, 1), "the second session still uses them");
    world.run(remove_session("r2", &session(&second))).await;
    assert_eq!(world.counts(), (0, 0, 0), "the last user's remove takes them");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
}

#[tokio::test]
async fn a_fourth_session_on_one_source_is_refused_before_any_change() {
    let world = fixture();
    for (n, target) in [(1, 11), (2, 12), (3, 13)] {
        let created = world.run(create(&format!("c{n}"), 1, target, 443)).await;
        assert_eq!(created["success"], true, "{created}");
    }
    let before = world.ec2.resources();
    let refused = world.run(create("c4", 1, 14, 443)).await;
    assert_eq!(
        refused["errorCode"], "TrafficMirrorSessionsPerInterfaceLimitExceeded",
        "{refused}"
    );
    assert_ne!(refused["retryable"], true, "a full ENI stays full: {refused}");
    assert_eq!(world.ec2.resources(), before, "nothing was made for it");
    assert_eq!(world.ec2.calls("CreateTrafficMirrorSession"), 3);
}

#[tokio::test]
async fn a_repeated_create_answers_from_the_ledger_and_makes_nothing() {
    let world = fixture();
    let first = world.run(create("c1", 1, 9, 443)).await;
    let again = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(first["sessionId"], again["sessionId"], "{again}");
    assert_eq!(world.ec2.calls("CreateTrafficMirrorSession"), 1);
    assert_eq!(world.counts(), (1, 1, 1));
}

#[tokio::test]
async fn a_ledger_that_cannot_record_the_session_leaves_nothing_in_ec2() {
    let world = fixture();
    // The claim and the pending record go through; the final write does not.
    world.ledger.fail_next(
        "save",
        AwsError::new(
            ErrorKind::Transient,
            "ProvisionedThroughputExceededException",
            "slow down",
        ),
    );
    let failed = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(
        (failed["success"].clone(), failed["retryable"].clone()),
        (json!(false), json!(true)),
        "{failed}"
    );
    assert_eq!(
        world.counts(),
        (0, 0, 0),
        "a session the ledger does not know is never left"
    );
}

#[tokio::test]
async fn a_create_does_without_its_guessed_number_and_keeps_a_good_guess() {
    let world = fixture();
    // The guess (number 1, claimed beside the first reads) fails: the number
    // is claimed in a round of its own, and the create succeeds.
    world.ledger.fail_next(
        "claim_number",
        AwsError::new(
            ErrorKind::Transient,
            "ProvisionedThroughputExceededException",
            "slow down",
        ),
    );
    let first = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(
        (first["success"].clone(), first["sessionNumber"].clone()),
        (json!(true), json!(1)),
        "{first}"
    );
    // A second create on the same ENI guesses 1, which is taken: it gives the
    // guess back (it was refused, so there is nothing to give) and takes 2.
    let second = world.run(create("c2", 1, 8, 443)).await;
    assert_eq!(second["sessionNumber"], 2, "{second}");
    let session = |answer: &Value| answer["sessionId"].as_str().expect("session").to_owned();
    world.run(remove_session("r1", &session(&first))).await;
    world.run(remove_session("r2", &session(&second))).await;
    assert_eq!(
        world.ledger.claims_left(),
        Vec::<String>::new(),
        "no guess is left claimed"
    );
}

#[tokio::test]
async fn a_wrong_guess_is_given_back_before_the_number_is_chosen_again() {
    use traffic_mirroring::mirroring::model::{EniId, TargetSpec};
    use traffic_mirroring::ports::{Filters, NewSession, Sessions, Targets};
    let world = fixture();
    // A session made by hand on the source ENI, numbered 1, that no claim counts.
    let by_hand = Vec::new();
    let appliance = TargetSpec::Eni(EniId::parse(&eni(50)).expect("eni"));
    let target = world
        .ec2
        .create_target(&appliance, &by_hand, "t")
        .await
        .expect("target");
    let filter = world.ec2.create_filter("by hand", &by_hand, "f").await.expect("filter");
    let manual = NewSession {
        source_eni: EniId::parse(&eni(1)).expect("eni"),
        target_id: target,
        filter_id: filter,
        session_number: 1,
        packet_length: None,
        virtual_network_id: None,
        description: None,
    };
    world.ec2.create_session(&manual, &by_hand, "s").await.expect("session");

    let created = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(
        (created["success"].clone(), created["sessionNumber"].clone()),
        (json!(true), json!(2)),
        "{created}"
    );
    let session = created["sessionId"].as_str().expect("session").to_owned();
    world.run(remove_session("r1", &session)).await;
    assert_eq!(
        world.ledger.claims_left(),
        Vec::<String>::new(),
        "the guess of 1 was given back"
    );
}

/// A deployment's fixture built with its own rules (the default fixture allows anything).
fn fixture_with(allowed: Allowed, controls: Controls) -> Fixture {
    let (ec2, ledger, bus) = (
        Arc::new(MemoryEc2::default()),
        Arc::new(MemoryLedger::default()),
        Arc::new(MemoryBus::default()),
    );
    let mirroring = Mirroring::new(ec2.clone(), ledger.clone(), bus.clone(), "table/logic")
        .with_allowed(allowed)
        .with_controls(controls);
    Fixture {
        ec2,
        ledger,
        bus,
        app: App::new(mirroring),
    }
}

#[tokio::test]
async fn a_deployment_that_allows_nothing_makes_nothing_and_asks_ec2_nothing() {
    let world = fixture_with(Allowed::default(), Controls::default());
    let refused = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(refused["errorCode"], "MirroringNotAllowed", "{refused}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(
        world.ec2.calls("CreateTrafficMirrorTarget") + world.ec2.calls("DescribeNetworkInterfaces"),
        0
    );
    assert_eq!(world.ledger.record("c1"), None, "nothing claimed");
    let events = world.bus.events.lock().expect("events").clone();
    assert_eq!(events.len(), 1, "the refusal is announced");
}

#[tokio::test]
async fn a_required_reason_refuses_a_bare_remove_and_keeps_the_mirror() {
    let controls = Controls {
        require_reason: true,
        ..Controls::default()
    };
    let world = fixture_with(Allowed::anything(), controls);
    let mut explained = create("c1", 1, 9, 443);
    explained["driverRequest"]["actions"][0]["actionParams"]["reason"] = json!("INC-1");
    let created = world.run(explained).await;
    let session = created["sessionId"].as_str().expect("made").to_owned();
    assert_eq!(created["reason"], "INC-1");
    assert_eq!(
        created["requestedBy"], "unstated",
        "a direct invoke without requestedBy"
    );
    assert_eq!(created["requestedByBasis"], "stated");
    let refused = world.run(remove_session("r1", &session)).await;
    assert_eq!(refused["errorCode"], "ValidationError", "{refused}");
    assert_eq!(world.counts(), (1, 1, 1), "the mirror stays");
}

#[tokio::test]
async fn a_capped_mirror_ends_when_its_time_is_up_and_only_then() {
    let controls = Controls {
        max_mirror_minutes: Some(30),
        ..Controls::default()
    };
    let world = fixture_with(Allowed::anything(), controls);
    let created = world.run(create("c1", 1, 9, 443)).await;
    assert!(created["expiresAt"].is_string(), "the cap is its end: {created}");
    let not_yet = world.app.invoke(json!({"expire": {}})).await.expect("answers");
    assert_eq!(not_yet["expire"]["expired"], json!([]));
    assert_eq!(world.counts(), (1, 1, 1));

    // Its end comes: the record says it ended a second ago.
    let mut record = world.ledger.record("c1").expect("recorded");
    record.ends_at = Some(1);
    world.ledger.save(&mut record).await.expect("saved");
    let expired = world.app.invoke(json!({"expire": {}})).await.expect("answers");
    assert_eq!(expired["expire"]["removed"], 1, "{expired}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
    let events = world.bus.events.lock().expect("events").clone();
    let last = events.last().expect("announced");
    assert!(
        last.expired && last.success && last.action_id == "expire-c1",
        "{last:?}"
    );
    let again = world.app.invoke(json!({"expire": {}})).await.expect("answers");
    assert_eq!(again["expire"]["expired"], json!([]), "ended once");
}

#[tokio::test]
async fn who_asked_is_the_sqs_sender_and_a_replay_keeps_the_first_requester() {
    let world = fixture();
    let record = |sender: &str| {
        json!({"messageId": "m-1", "eventSource": "aws:sqs", "attributes": {"SenderId": sender},
               "body": create("c1", 1, 9, 443).to_string()})
    };
    let batch = world
        .app
        .invoke(json!({"Records": [record("AIDAFIRST")]}))
        .await
        .expect("answers");
    assert_eq!(batch["batchItemFailures"], json!([]), "{batch}");
    let stored = world.ledger.record("c1").expect("recorded");
    let requester = stored.requested_by.expect("a requester");
    assert_eq!(
        (requester.principal.as_str(), requester.basis.as_str()),
        ("sqs:AIDAFIRST", "sqs-sender")
    );
    world
        .app
        .invoke(json!({"Records": [record("AIDASECOND")]}))
        .await
        .expect("answers");
    let events = world.bus.events.lock().expect("events").clone();
    assert_eq!(events.len(), 2, "the replay is announced again");
    assert_eq!(
        events[1].requested_by.as_deref(),
        Some("sqs:AIDAFIRST"),
        "a replay answers with its first requester"
    );
}

#[tokio::test]
async fn an_end_in_the_past_or_over_the_cap_is_refused_before_any_call() {
    let controls = Controls {
        max_mirror_minutes: Some(60),
        ..Controls::default()
    };
    let world = fixture_with(Allowed::anything(), controls);
    for (key, value) in [
        ("expiresAt", json!("2020-01-01T00:00:00Z")),
        ("durationMinutes", json!(61)),
    ] {
        let mut request = create("c1", 1, 9, 443);
        request["driverRequest"]["actions"][0]["actionParams"][key] = value;
        let refused = world.run(request).await;
        assert_eq!(refused["errorCode"], "ValidationError", "{key}: {refused}");
    }
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(
        world.ec2.calls("DescribeTrafficMirrorSessions"),
        0,
        "refused before any call"
    );
    assert_eq!(world.ledger.record("c1"), None);
}

#[tokio::test]
async fn a_request_of_more_than_a_hundred_actions_touches_nothing() {
    let world = fixture();
    let actions: Vec<Value> = (0..101)
        .map(|n| create(&format!("c{n}"), n + 1, 9, 443)["driverRequest"]["actions"][0].clone())
        .collect();
    let answer = world
        .app
        .invoke(json!({"driverRequest": {"actions": actions}}))
        .await
        .expect("answers");
    assert_eq!(answer["driverResponse"]["actionResults"], json!([]), "{answer}");
    assert!(answer["driverResponse"]["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("at most 100")));
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.record("c0"), None);
}

#[tokio::test]
async fn the_sweep_reports_a_session_nobody_approved_and_removes_it_only_when_told() {
    let allow_only = |remove: bool| {
        fixture_with(
            Allowed {
                targets: AllowList::Only([eni(9)].into_iter().collect()),
                sources: AllowList::Any,
            },
            Controls {
                remove_unapproved_mirrors: remove,
                ..Controls::default()
            },
        )
    };
    for remove in [false, true] {
        let world = allow_only(remove);
        let rogue = world.ec2.plant_session(&eni(1), &eni(66), &[("Name", "someone's tap")]);
        let tolerated = world.ec2.plant_session(&eni(2), &eni(9), &[]);
        let swept = world.app.invoke(json!({"sweep": {}})).await.expect("answers");
        let found = &swept["sweep"]["sweep"]["unapprovedMirrors"];
        assert_eq!(found.as_array().map(Vec::len), Some(1), "{swept}");
        assert_eq!(found[0]["sessionId"], rogue.as_str());
        assert_eq!(found[0]["destination"], eni(66).as_str());
        assert_eq!(found[0]["tags"]["Name"], "someone's tap");
        let (sessions, _, _) = world.ec2.resources();
        assert_eq!(sessions.contains(&rogue), !remove, "removed only when told");
        assert!(
            sessions.contains(&tolerated),
            "a session to an allowed target is never touched"
        );
        let events = world.bus.events.lock().expect("events").clone();
        assert!(
            events.iter().any(|e| e.action_type == "UnapprovedMirrors"),
            "announced: {events:?}"
        );
    }
}

/// CloudTrail's record of a session deletion by someone.
fn deletion(session_id: &str) -> Value {
    json!({"source": "aws.ec2", "detail-type": "AWS API Call via CloudTrail", "account": "123456789012",
           "detail": {"eventSource": "ec2.amazonaws.com", "eventName": "DeleteTrafficMirrorSession",
                      "userIdentity": {"arn": "arn:aws:iam::123456789012:user/mallory"},
                      "requestParameters": {"DeleteTrafficMirrorSessionRequest": {"TrafficMirrorSessionId": session_id}}}})
}

#[tokio::test]
async fn a_deletion_is_tampering_only_when_the_session_was_ours_live_and_is_gone() {
    let world = fixture();
    let created = world.run(create("c1", 1, 9, 443)).await;
    let session = created["sessionId"].as_str().expect("made").to_owned();
    let tampered = |world: &Fixture| {
        world
            .bus
            .events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| e.action_type == "Tampering")
            .count()
    };

    // Forged: EC2 still has it.
    world.app.invoke(deletion(&session)).await.expect("answers");
    assert_eq!(tampered(&world), 0);
    // Not ours at all.
    world
        .app
        .invoke(deletion("tms-0123456789abcdef0"))
        .await
        .expect("answers");
    assert_eq!(tampered(&world), 0);
    // Ours, removed by us: the record says so, nothing to report.
    let removed = world.run(remove_session("r1", &session)).await;
    assert_eq!(removed["success"], true);
    world.app.invoke(deletion(&session)).await.expect("answers");
    assert_eq!(tampered(&world), 0, "our own removal is no tampering");

    // Ours and live, deleted behind our back: reported with who did it.
    let again = world.run(create("c2", 2, 9, 443)).await;
    let live = again["sessionId"].as_str().expect("made").to_owned();
    assert!(world.ec2.delete_behind_our_back(&live));
    world.app.invoke(deletion(&live)).await.expect("answers");
    let events = world.bus.events.lock().expect("events").clone();
    let report = events.iter().find(|e| e.action_type == "Tampering").expect("announced");
    let details = report.details.clone().expect("details");
    assert_eq!(details["deletedBy"], "arn:aws:iam::123456789012:user/mallory");
    assert_eq!(details["mirrors"][0]["actionId"], "c2");
    assert_eq!(
        details["mirrors"][0]["policyMirror"], false,
        "a requested mirror: reported, not remade"
    );
}

fn create_numbered(action_id: &str, source: u32, target: u32, number: u16) -> Value {
    let mut request = create(action_id, source, target, 443);
    request["driverRequest"]["actions"][0]["actionParams"]["sessionNumber"] = json!(number);
    request
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_announces_nothing() {
    let world = fixture();
    let mut request = create("d1", 1, 9, 443);
    request["driverRequest"]["dryRun"] = json!(true);
    let planned = world.run(request).await;
    assert_eq!(
        (planned["success"].clone(), planned["dryRun"].clone()),
        (json!(true), json!(true)),
        "{planned}"
    );
    assert_eq!(planned["plan"]["target"]["plan"]["action"], "create", "{planned}");
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.record("d1"), None);
    assert!(world.bus.events.lock().expect("events").is_empty());
}

#[tokio::test]
async fn removing_what_is_already_gone_is_a_success() {
    let world = fixture();
    let created = world.run(create("c1", 1, 9, 443)).await;
    let session = created["sessionId"].as_str().expect("made").to_owned();
    assert_eq!(world.run(remove_session("r1", &session)).await["success"], true);
    let again = world.run(remove_session("r2", &session)).await;
    assert_eq!(again["success"], true, "{again}");
    assert_eq!(world.counts(), (0, 0, 0));
}

#[tokio::test]
async fn an_eleventh_source_on_one_target_eni_is_refused_before_any_change() {
    let world = fixture();
    for n in 1..=10 {
        let made = world.run(create(&format!("c{n}"), n, 99, 443)).await;
        assert_eq!(made["success"], true, "{made}");
    }
    let before = world.ec2.calls("CreateTrafficMirrorSession");
    let refused = world.run(create("c11", 11, 99, 443)).await;
    assert_eq!(
        refused["errorCode"], "TrafficMirrorSourcesPerTargetLimitExceeded",
        "{refused}"
    );
    assert_eq!(
        world.ec2.calls("CreateTrafficMirrorSession"),
        before,
        "no session tried"
    );
    assert_eq!(world.counts(), (10, 1, 1));
    assert_eq!(
        world.ledger.record("c11").map(|r| r.status),
        Some(Some(RecordStatus::Failed))
    );
}

#[tokio::test]
async fn a_taken_session_number_gives_the_lowest_free_one_and_says_so() {
    let world = fixture();
    let first = world.run(create_numbered("c1", 1, 9, 5)).await;
    assert_eq!(first["sessionNumber"], 5, "{first}");
    let second = world.run(create_numbered("c2", 1, 8, 5)).await;
    assert_eq!(second["sessionNumber"], 1, "{second}");
    assert!(
        second["infoMessage"]
            .as_str()
            .is_some_and(|m| m.contains("5 was already used")),
        "{second}"
    );
}

#[tokio::test]
async fn one_bad_action_does_not_stop_the_others_of_its_request() {
    let world = fixture();
    let good = create("good", 1, 9, 443)["driverRequest"]["actions"][0].clone();
    let bad = json!({"actionId": "bad", "type": "CreateTrafficMirroring",
                     "actionParams": {"sourceNicId": "eni-nope", "targetNicId": eni(9)}});
    let answer = world
        .app
        .invoke(json!({"driverRequest": {"actions": [bad, good]}}))
        .await
        .expect("answers");
    let results = &answer["driverResponse"]["actionResults"];
    assert_eq!(results[0]["errorCode"], "ValidationError", "{answer}");
    assert_eq!(results[1]["success"], true, "{answer}");
    assert_eq!(world.counts(), (1, 1, 1));
}

#[tokio::test]
async fn a_remove_by_target_eni_takes_every_session_to_it_and_the_target() {
    let world = fixture();
    for n in 1..=3 {
        world.run(create(&format!("c{n}"), n, 9, 443)).await;
    }
    let other = world.run(create("c4", 4, 8, 443)).await;
    assert_eq!(world.counts(), (4, 1, 2));
    let removed = world
        .run(
            json!({"driverRequest": {"actions": [{"actionId": "r1", "type": "RemoveTrafficMirroring",
                                                    "targetNicId": eni(9)}]}}),
        )
        .await;
    assert_eq!(removed["success"], true, "{removed}");
    assert_eq!(
        removed["removedSessionIds"].as_array().map(Vec::len),
        Some(3),
        "{removed}"
    );
    let (sessions, _, targets) = world.ec2.resources();
    assert_eq!(sessions, vec![other["sessionId"].as_str().expect("session").to_owned()]);
    assert_eq!(targets.len(), 1, "the other target stays");
}

#[tokio::test]
async fn a_session_someone_else_made_is_never_removed_by_its_id() {
    let world = fixture();
    let theirs = world.ec2.plant_session(&eni(1), &eni(9), &[("owner", "netops")]);
    let refused = world.run(remove_session("r1", &theirs)).await;
    assert_eq!(refused["errorCode"], "NotManagedByTrafficMirroring", "{refused}");
    assert!(world.ec2.resources().0.contains(&theirs), "left in place");
}

#[tokio::test]
async fn a_failed_filter_rule_rolls_back_the_filter_and_the_target() {
    let world = fixture();
    world.ec2.fail_next(
        "CreateTrafficMirrorFilterRule",
        AwsError::new(ErrorKind::Rejected, "TrafficMirrorFilterRuleLimitExceeded", "too many"),
    );
    let failed = world.run(create("c1", 1, 9, 443)).await;
    assert_eq!(failed["errorCode"], "TrafficMirrorFilterRuleLimitExceeded", "{failed}");
    assert_eq!(world.counts(), (0, 0, 0), "what it made is gone");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
}

const TARGET_TAG: &str = "traffic-mirroring:target";

/// The EventBridge event for a tag change on an instance.
fn tag_change(instance_id: &str) -> Value {
    json!({"source": "aws.tag", "detail-type": "Tag Change on Resource", "account": "123456789012",
           "resources": [format!("arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}")],
           "detail": {"service": "ec2", "resource-type": "instance", "changed-tag-keys": [TARGET_TAG],
                      "tags": {TARGET_TAG: "a forged value is never read"}}})
}

fn sessions_on(world: &Fixture) -> usize {
    world.ec2.resources().0.len()
}

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
    assert_eq!(sessions_on(&world), 2);
    let again = world.app.invoke(json!({"sweep": {}})).await.expect("answers");
    assert_eq!(
        again["sweep"]["sweep"]["policy"]["created"], 0,
        "a second sweep changes nothing"
    );
    assert_eq!(sessions_on(&world), 2);

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
    let nothing = world.app.invoke(tag_change("i-0000000b")).await.expect("answers");
    assert!(
        nothing["skipped"].is_string(),
        "untagged in EC2, whatever the event says: {nothing}"
    );
    assert_eq!(sessions_on(&world), 0);

    world.ec2.tag_instance("i-0000000b", TARGET_TAG, Some(&eni(9)));
    let mirrored = world.app.invoke(tag_change("i-0000000b")).await.expect("answers");
    assert_eq!(mirrored["actionResults"][0]["success"], true, "{mirrored}");
    assert_eq!(mirrored["actionResults"][0]["requestedByBasis"], "policy");
    assert_eq!(sessions_on(&world), 1);

    world.ec2.tag_instance("i-0000000b", TARGET_TAG, None);
    let unmirrored = world.app.invoke(tag_change("i-0000000b")).await.expect("answers");
    assert_eq!(unmirrored["actionResults"][0]["success"], true, "{unmirrored}");
    assert_eq!(world.counts(), (0, 0, 0));
}

#[tokio::test]
async fn a_policy_mirror_deleted_behind_our_back_is_made_again_at_once() {
    let world = fixture();
    world
        .ec2
        .plant_instance("i-0000000c", &[&eni(4)], &[(TARGET_TAG, &eni(9))]);
    world.app.invoke(tag_change("i-0000000c")).await.expect("answers");
    let session = world.ec2.resources().0.pop().expect("mirrored");
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
}

#[tokio::test]
async fn the_watch_is_a_service_of_its_own_ports() {
    let (ec2, ledger, bus) = (
        Arc::new(MemoryEc2::default()),
        Arc::new(MemoryLedger::default()),
        Arc::new(MemoryBus::default()),
    );
    let watch = Watch {
        sessions: ec2.clone(),
        targets: ec2.clone(),
        filters: ec2.clone(),
        records: ledger.clone(),
        scans: ledger.clone(),
        announcer: Arc::new(Announcer::new(bus.clone())),
        owner: "table/logic".into(),
        allowed_targets: AllowList::Nothing,
        remove_unapproved: true,
    };
    let theirs = ec2.plant_session(&eni(1), &eni(9), &[]);
    let dry = watch.unapproved(true).await.expect("listed");
    assert_eq!(dry.len(), 1);
    assert_eq!(dry[0].outcome, UnapprovedOutcome::Reported, "a dry run removes nothing");
    assert!(bus.events.lock().expect("events").is_empty(), "and announces nothing");
    let done = watch.unapproved(false).await.expect("listed");
    assert_eq!(
        (done[0].session_id.as_str(), &done[0].outcome),
        (theirs.as_str(), &UnapprovedOutcome::Removed)
    );
    assert!(ec2.resources().0.is_empty());
    assert_eq!(bus.events.lock().expect("events").len(), 1);
}

fn state_change(instance_id: &str, state: &str) -> Value {
    json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "account": "123456789012",
           "detail": {"instance-id": instance_id, "state": state}})
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
    assert_eq!(sessions_on(&world), 2);

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
    assert_eq!(sessions_on(&world), 2, "nothing removed");

    world.ec2.set_instance_state("i-0000000d", "terminated");
    let ended = world
        .app
        .invoke(state_change("i-0000000d", "terminated"))
        .await
        .expect("answers");
    assert_eq!(ended["actionResults"][0]["success"], true, "{ended}");
    assert_eq!(world.counts(), (0, 0, 0), "its sessions, filter and target are gone");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
}

#[tokio::test]
async fn a_remove_by_reservation_takes_only_that_reservations_mirrors() {
    let world = fixture();
    for (id, source, reservation) in [("c1", 1, "res-a"), ("c2", 2, "res-a"), ("c3", 3, "res-b")] {
        let mut request = create(id, source, 9, 443);
        request["driverRequest"]["reservationId"] = json!(reservation);
        assert_eq!(world.run(request).await["success"], true);
    }
    let removed = world
        .run(
            json!({"driverRequest": {"actions": [{"actionId": "r1", "type": "RemoveTrafficMirroring",
                                                    "reservationId": "res-a"}]}}),
        )
        .await;
    assert_eq!(
        removed["removedSessionIds"].as_array().map(Vec::len),
        Some(2),
        "{removed}"
    );
    assert_eq!(world.counts(), (1, 1, 1), "res-b's mirror, its filter and target stay");
}

#[tokio::test]
async fn a_filter_the_caller_named_is_used_and_never_deleted() {
    let world = fixture();
    let theirs = world.ec2.plant_session(&eni(1), &eni(2), &[]);
    let (_, filters, _) = world.ec2.resources();
    let filter = filters[0].clone();
    let mut request = create("c1", 3, 9, 443);
    let params = &mut request["driverRequest"]["actions"][0]["actionParams"];
    params["filterRules"] = Value::Null;
    params["trafficMirrorFilterId"] = json!(filter);
    let made = world.run(request).await;
    assert_eq!(made["trafficMirrorFilterId"], filter.as_str(), "{made}");
    let session = made["sessionId"].as_str().expect("made").to_owned();
    world.run(remove_session("r1", &session)).await;
    let (sessions, filters, _) = world.ec2.resources();
    assert!(filters.contains(&filter), "the caller's filter stays");
    assert_eq!(sessions, vec![theirs]);
}
