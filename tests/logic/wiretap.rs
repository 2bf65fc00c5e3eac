//! A mirror is a wiretap: closed by default, every mirror accountable and
//! time-boxed, every wiretap in the account seen, deletions checked with EC2.

use std::sync::Arc;

use serde_json::json;
use traffic_mirroring::announce::Announcer;
use traffic_mirroring::mirroring::watch::{UnapprovedOutcome, Watch};
use traffic_mirroring::mirroring::{AllowList, Allowed, Controls};
use traffic_mirroring::ports::{ActionRecords, RecordStatus};

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
        assert_eq!(found[0]["sourceEni"], eni(1).as_str());
        assert_eq!(found[0]["outcome"], if remove { "removed" } else { "reported" });
        let rogue_target = world.ec2.session(&rogue).map(|s| s.target_id);
        let (sessions, _, targets) = world.ec2.resources();
        assert_eq!(sessions.contains(&rogue), !remove, "removed only when told");
        assert_eq!(targets.len(), 2, "only the session: not their target");
        assert!(remove || rogue_target.is_some_and(|t| targets.contains(&t)));
        assert!(
            sessions.contains(&tolerated),
            "a session to an allowed target is never touched"
        );
        let events = world.bus.events.lock().expect("events").clone();
        assert!(
            events.iter().any(|e| e.action_type == "UnapprovedMirrors"),
            "announced: {events:?}"
        );
        let announced = world.events_of_type("TrafficMirroringUnapprovedFound");
        assert_eq!(announced.len(), 1, "{events:?}");
        let details = announced[0].details.clone().expect("details");
        assert_eq!(details["unapprovedMirrors"][0]["sessionId"], rogue.as_str());
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
    let answer = world.invoke(deletion(&live)).await;
    assert_eq!(answer["actionResults"], json!([]), "nothing made again: {answer}");
    assert!(world.ec2.sessions_on(&eni(2)).is_empty());
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

#[tokio::test]
async fn nothing_is_mirrored_until_the_deployment_allows_it() {
    let world = fixture();
    let (source, target) = (eni(1), eni(2));
    let closed = world.app_with(Setup {
        allowed: Allowed::default(),
        ..Setup::default()
    });
    let answer = serde_json::to_value(closed.handle(&seed_create("closed", &source, &target)).await).expect("json");
    let result = first_result(&answer);
    assert_eq!(result["errorCode"], "MirroringNotAllowed", "{answer}");
    assert!(
        result["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("ALLOWED_TARGETS")),
        "{answer}"
    );
    assert_eq!(world.counts(), (0, 0, 0), "nothing made");
    assert_eq!(world.ledger.record("closed"), None, "nothing claimed");

    // Destinations allowed, sources not: still nothing.
    let half = world.app_with(Setup {
        allowed: Allowed {
            targets: AllowList::Any,
            sources: AllowList::Nothing,
        },
        ..Setup::default()
    });
    let answer = serde_json::to_value(half.handle(&seed_create("half", &source, &target)).await).expect("json");
    assert!(first_result(&answer)["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("ALLOWED_SOURCES")));
    assert_eq!(world.counts(), (0, 0, 0));

    // `*` said explicitly: made.
    let open = world.handle(&seed_create("open", &source, &target)).await;
    assert_eq!(first_result(&open)["success"], true, "{open}");
}

#[tokio::test]
async fn who_asked_is_what_the_source_proves_and_it_is_kept_tagged_and_announced() {
    let world = fixture();
    let (from_sqs, from_events, direct, target) = (eni(1), eni(2), eni(3), eni(9));

    let mut record = sqs_record(
        "m-1",
        &create_with("by-sqs", &from_sqs, &target, json!({"reason": "INC-1234"})),
    );
    record["attributes"]["SenderId"] = json!("AIDAEXAMPLESENDER");
    let batch = world.invoke(json!({"Records": [record]})).await;
    assert_eq!(batch["batchItemFailures"], json!([]), "{batch}");

    let event = json!({"version": "0", "id": "e-1", "detail-type": "CreateTrafficMirroring",
                       "source": "com.example.inventory", "account": "111122223333", "time": "2026-12-05T10:00:00Z",
                       "region": "us-east-1", "resources": [],
                       "detail": create_with("by-event", &from_events, &target, json!({}))["driverRequest"]});
    world.invoke(event).await;

    let mut stated = create_with("by-direct", &direct, &target, json!({"reason": "lab"}));
    stated["driverRequest"]["requestedBy"] = json!("alice@example.com");
    let answer = world.handle(&stated).await;
    assert_eq!(
        first_result(&answer)["requestedByBasis"],
        "stated",
        "a direct invoke proves nobody"
    );

    let expected = [
        ("by-sqs", "sqs:AIDAEXAMPLESENDER", "sqs-sender", Some("INC-1234")),
        (
            "by-event",
            "events:111122223333/com.example.inventory",
            "eventbridge",
            None,
        ),
        ("by-direct", "alice@example.com", "stated", Some("lab")),
    ];
    let created = world.events_of_type("TrafficMirroringCreated");
    for (action_id, requested_by, basis, reason) in expected {
        let stored = world.ledger.record(action_id).expect("recorded");
        let requester = stored.requested_by.clone().expect("a requester");
        assert_eq!(requester.principal, requested_by, "{stored:?}");
        assert_eq!(requester.basis.as_str(), basis, "{stored:?}");
        assert_eq!(stored.reason.as_deref(), reason, "{stored:?}");
        let event = created
            .iter()
            .find(|e| e.action_id == action_id)
            .unwrap_or_else(|| panic!("no created event for {action_id}: {created:?}"));
        assert_eq!(event.requested_by.as_deref(), Some(requested_by), "{event:?}");
        let session = stored.session_id.expect("a session");
        assert_eq!(
            world.ec2.tag_of(&session, "traffic-mirroring:requested-by").as_deref(),
            Some(requested_by)
        );
        assert_eq!(
            world.ec2.tag_of(&session, "traffic-mirroring:reason").as_deref(),
            reason
        );
    }
}

#[tokio::test]
async fn a_deployment_that_requires_a_reason_refuses_creates_and_removes_without_one() {
    let world = fixture_with(
        Allowed::anything(),
        Controls {
            require_reason: true,
            ..Controls::default()
        },
    );
    let (source, target) = (eni(1), eni(2));

    let without = world.handle(&seed_create("no-reason", &source, &target)).await;
    assert_eq!(first_result(&without)["errorCode"], "ValidationError", "{without}");
    assert!(first_result(&without)["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("REQUIRE_REASON")));
    assert_eq!(world.counts(), (0, 0, 0), "nothing made");

    let made = world
        .handle(&create_with(
            "with-reason",
            &source,
            &target,
            json!({"reason": "INC-7"}),
        ))
        .await;
    let session = session_of(first_result(&made));

    let bare_remove = world.handle(&remove("rm-bare", &session, "")).await;
    assert_eq!(
        first_result(&bare_remove)["errorCode"],
        "ValidationError",
        "{bare_remove}"
    );
    assert_eq!(world.counts().0, 1, "the mirror stays");

    let mut explained = remove("rm-why", &session, "");
    explained["driverRequest"]["actions"][0]["reason"] = json!("INC-7 closed");
    let removed = world.handle(&explained).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    assert_eq!(first_result(&removed)["reason"], "INC-7 closed");
    assert_eq!(world.counts(), (0, 0, 0));
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn rfc3339(seconds: u64) -> String {
    chrono::DateTime::from_timestamp(seconds as i64, 0)
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn a_mirror_whose_time_is_up_is_removed_and_announced_as_expired() {
    let world = fixture();
    let (source, target) = (eni(1), eni(2));
    let ends = now() + 2;
    let made = world
        .handle(&create_with(
            "brief",
            &source,
            &target,
            json!({"expiresAt": rfc3339(ends), "reason": "INC-9"}),
        ))
        .await;
    assert_eq!(first_result(&made)["expiresAt"], rfc3339(ends), "{made}");
    let in_the_past = world
        .handle(&create_with(
            "late",
            &source,
            &target,
            json!({"expiresAt": "2020-01-01T00:00:00Z"}),
        ))
        .await;
    assert_eq!(
        first_result(&in_the_past)["errorCode"],
        "ValidationError",
        "{in_the_past}"
    );

    // Before its end the expiry run leaves it alone.
    let early = world.invoke(json!({"expire": {}})).await;
    assert_eq!(early["expire"]["expired"], json!([]), "{early}");
    // Its end comes: the logic reads the system clock (no paused time here),
    // so the record is moved to a second ago rather than waited for.
    let mut record = world.ledger.record("brief").expect("recorded");
    assert_eq!(record.ends_at, Some(ends));
    record.ends_at = Some(now() - 1);
    world.ledger.save(&mut record).await.expect("saved");
    let dry = world.invoke(json!({"expire": {"dryRun": true}})).await;
    assert_eq!(dry["expire"]["expired"][0]["outcome"], "planned", "{dry}");
    assert_eq!(world.counts().0, 1, "a dry run changes nothing");

    let swept = world.sweep(false).await;
    let expiry = &swept["sweep"]["sweep"]["expiry"];
    assert_eq!(expiry["removed"], 1, "{swept}");
    assert_eq!(expiry["expired"][0]["actionId"], "brief");
    assert_eq!(world.counts(), (0, 0, 0), "nothing left over");
    assert_eq!(world.ledger.claims_left(), Vec::<String>::new());
    let expired = world.events_of_type("TrafficMirroringExpired");
    assert_eq!(expired.len(), 1, "{expired:?}");
    let announced = serde_json::to_value(&expired[0]).expect("json");
    assert_eq!(announced["actionId"], "expire-brief");
    assert_eq!(announced["requestedByBasis"], "expiry");
    assert!(announced["reason"].as_str().is_some_and(|r| r.contains("INC-9")));
    assert_eq!(
        world.ledger.record("brief").expect("kept").status,
        Some(RecordStatus::Removed)
    );
}

/// Whether a live mirror's record has a TTL is the DynamoDB adapter's to
/// write: `safety::finished_records_expire_and_live_ones_never_do` checks it
/// on the emulator.
#[tokio::test]
async fn the_cap_refuses_a_longer_mirror_and_ends_one_that_asked_for_none() {
    let world = fixture_with(
        Allowed::anything(),
        Controls {
            max_mirror_minutes: Some(60),
            ..Controls::default()
        },
    );
    let (source, target) = (eni(1), eni(2));
    let over = world
        .handle(&create_with(
            "too-long",
            &source,
            &target,
            json!({"durationMinutes": 120}),
        ))
        .await;
    assert_eq!(first_result(&over)["errorCode"], "ValidationError", "{over}");
    assert!(first_result(&over)["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("MAX_MIRROR_MINUTES")));
    assert_eq!(world.counts(), (0, 0, 0));

    let before = now();
    let capped = world.handle(&seed_create("no-end", &source, &target)).await;
    let result = first_result(&capped);
    assert_eq!(result["success"], true, "{capped}");
    let ends = chrono::DateTime::parse_from_rfc3339(result["expiresAt"].as_str().expect("an end"))
        .expect("RFC 3339")
        .timestamp() as u64;
    assert!(
        (before + 3600..=now() + 3600).contains(&ends),
        "the cap is its end: {ends}"
    );
    let stored = world.ledger.record("no-end").expect("recorded");
    assert_eq!(stored.ends_at, Some(ends), "{stored:?}");
}
