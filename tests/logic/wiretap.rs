//! A mirror is a wiretap: closed by default, every mirror accountable and
//! time-boxed, every wiretap in the account seen, deletions checked with EC2.

use std::sync::Arc;

use serde_json::{json, Value};
use traffic_mirroring::announce::Announcer;
use traffic_mirroring::mirroring::watch::{UnapprovedOutcome, Watch};
use traffic_mirroring::mirroring::{AllowList, Allowed, Controls};
use traffic_mirroring::ports::ActionRecords;

use crate::world::*;

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
