//! A mirror is a wiretap (#22): closed by default, every mirror accountable
//! and time-boxed, every wiretap in the account seen, input bounded.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const TARGET_TAG: &str = "traffic-mirroring:target";

/// A create with its params extended by `extra` (reason, expiresAt, ...).
fn create_with(action_id: &str, source: &str, target: &str, extra: Value) -> Value {
    let mut request = create(action_id, source, target, None);
    let params = &mut request["driverRequest"]["actions"][0]["actionParams"];
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    request
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

/// The events of one detail-type among those read.
fn of_type<'a>(events: &'a [Value], detail_type: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["detail-type"] == detail_type).collect()
}

#[tokio::test]
async fn nothing_is_mirrored_until_the_deployment_allows_it() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let closed = world.app_with(|config| {
        config.allowed_targets = AllowList::Nothing;
        config.allowed_sources = AllowList::Nothing;
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
    assert_eq!(world.mirror_state().await, MirrorState::default(), "nothing made");
    assert_eq!(world.ledger_item("closed").await, None, "nothing claimed");

    // Destinations allowed, sources not: still nothing.
    let half = world.app_with(|config| {
        config.allowed_targets = AllowList::Any;
        config.allowed_sources = AllowList::Nothing;
    });
    let answer = serde_json::to_value(half.handle(&seed_create("half", &source, &target)).await).expect("json");
    assert!(first_result(&answer)["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("ALLOWED_SOURCES")));
    assert_eq!(world.mirror_state().await, MirrorState::default());

    // `*` said explicitly: made.
    let open = world.invoke(&seed_create("open", &source, &target)).await;
    assert_eq!(first_result(&open)["success"], true, "{open}");
}

#[tokio::test]
async fn who_asked_is_what_the_source_proves_and_it_is_kept_tagged_and_announced() {
    let world = World::start().await;
    let (from_sqs, from_events, direct, target) = (
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
    );

    let mut record = sqs_record(
        "m-1",
        &create_with("by-sqs", &from_sqs, &target, json!({"reason": "INC-1234"})),
    );
    record["attributes"]["SenderId"] = json!("AIDAEXAMPLESENDER");
    let batch = world
        .app
        .invoke(json!({"Records": [record]}))
        .await
        .expect("a batch answers");
    assert_eq!(batch["batchItemFailures"], json!([]), "{batch}");

    let event = json!({"version": "0", "id": "e-1", "detail-type": "CreateTrafficMirroring",
                       "source": "com.example.inventory", "account": "111122223333", "time": "2026-12-05T10:00:00Z",
                       "region": "us-east-1", "resources": [],
                       "detail": create_with("by-event", &from_events, &target, json!({}))["driverRequest"]});
    world.app.invoke(event).await.expect("an event answers");

    let mut stated = create_with("by-direct", &direct, &target, json!({"reason": "lab"}));
    stated["driverRequest"]["requestedBy"] = json!("alice@example.com");
    let answer = world.invoke(&stated).await;
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
    let events = world.events(3).await;
    for (action_id, requested_by, basis, reason) in expected {
        let item = world.ledger_item(action_id).await.expect("recorded");
        assert_eq!(item["requestedBy"], requested_by, "{item}");
        assert_eq!(item["requestedByBasis"], basis, "{item}");
        assert_eq!(item["reason"].as_str(), reason, "{item}");
        let event = events
            .iter()
            .find(|e| e["detail"]["actionId"] == action_id)
            .unwrap_or_else(|| panic!("no event for {action_id}: {events:?}"));
        assert_eq!(event["detail-type"], "TrafficMirroringCreated");
        assert_eq!(event["detail"]["requestedBy"], requested_by, "{event}");
        let session = item["sessionId"].as_str().expect("a session");
        let tag = |key| world.tag_of(session, key);
        assert_eq!(
            tag("traffic-mirroring:requested-by").await.as_deref(),
            Some(requested_by)
        );
        assert_eq!(tag("traffic-mirroring:reason").await.as_deref(), reason);
    }
}

#[tokio::test]
async fn a_deployment_that_requires_a_reason_refuses_creates_and_removes_without_one() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let app = world.app_with(|config| config.require_reason = true);
    let handle = |request: Value| {
        let app = &app;
        async move { serde_json::to_value(app.handle(&request).await).expect("json") }
    };

    let without = handle(seed_create("no-reason", &source, &target)).await;
    assert_eq!(first_result(&without)["errorCode"], "ValidationError", "{without}");
    assert!(first_result(&without)["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("REQUIRE_REASON")));
    assert_eq!(world.mirror_state().await, MirrorState::default(), "nothing made");

    let made = handle(create_with("with-reason", &source, &target, json!({"reason": "INC-7"}))).await;
    let session = first_result(&made)["sessionId"].as_str().expect("made").to_owned();

    let bare_remove = handle(remove("rm-bare", &session, "")).await;
    assert_eq!(
        first_result(&bare_remove)["errorCode"],
        "ValidationError",
        "{bare_remove}"
    );
    assert_eq!(world.mirror_state().await.sessions.len(), 1, "the mirror stays");

    let mut explained = remove("rm-why", &session, "");
    explained["driverRequest"]["actions"][0]["reason"] = json!("INC-7 closed");
    let removed = handle(explained).await;
    assert_eq!(first_result(&removed)["success"], true, "{removed}");
    assert_eq!(first_result(&removed)["reason"], "INC-7 closed");
    assert_eq!(world.our_resources().await, MirrorState::default());
}

#[tokio::test]
async fn a_mirror_whose_time_is_up_is_removed_and_announced_as_expired() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let ends = now() + 2;
    let made = world
        .invoke(&create_with(
            "brief",
            &source,
            &target,
            json!({"expiresAt": rfc3339(ends), "reason": "INC-9"}),
        ))
        .await;
    assert_eq!(first_result(&made)["expiresAt"], rfc3339(ends), "{made}");
    let in_the_past = world
        .invoke(&create_with(
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
    let early = world.app.invoke(json!({"expire": {}})).await.expect("answers");
    assert_eq!(early["expire"]["expired"], json!([]), "{early}");
    while now() <= ends {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dry = world
        .app
        .invoke(json!({"expire": {"dryRun": true}}))
        .await
        .expect("answers");
    assert_eq!(dry["expire"]["expired"][0]["outcome"], "planned", "{dry}");
    assert_eq!(
        world.mirror_state().await.sessions.len(),
        1,
        "a dry run changes nothing"
    );

    let swept = world.sweep(false).await;
    let expiry = &swept["sweep"]["sweep"]["expiry"];
    assert_eq!(expiry["removed"], 1, "{swept}");
    assert_eq!(expiry["expired"][0]["actionId"], "brief");
    assert_eq!(world.our_resources().await, MirrorState::default(), "nothing left over");
    assert!(world.disagreements().await.is_empty());
    let events = world.events(3).await;
    let expired = of_type(&events, "TrafficMirroringExpired");
    assert_eq!(expired.len(), 1, "{events:?}");
    assert_eq!(expired[0]["detail"]["actionId"], "expire-brief");
    assert_eq!(expired[0]["detail"]["requestedByBasis"], "expiry");
    assert!(expired[0]["detail"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("INC-9")));
    assert_eq!(world.ledger_item("brief").await.expect("kept")["status"], "removed");
}

#[tokio::test]
async fn the_cap_refuses_a_longer_mirror_and_ends_one_that_asked_for_none() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let app = world.app_with(|config| config.max_mirror_minutes = Some(60));
    let over = serde_json::to_value(
        app.handle(&create_with(
            "too-long",
            &source,
            &target,
            json!({"durationMinutes": 120}),
        ))
        .await,
    )
    .expect("json");
    assert_eq!(first_result(&over)["errorCode"], "ValidationError", "{over}");
    assert!(first_result(&over)["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("MAX_MIRROR_MINUTES")));
    assert_eq!(world.mirror_state().await, MirrorState::default());

    let before = now();
    let capped = serde_json::to_value(app.handle(&seed_create("no-end", &source, &target)).await).expect("json");
    let result = first_result(&capped);
    assert_eq!(result["success"], true, "{capped}");
    let ends = chrono::DateTime::parse_from_rfc3339(result["expiresAt"].as_str().expect("an end"))
        .expect("RFC 3339")
        .timestamp() as u64;
    assert!(
        (before + 3600..=now() + 3600).contains(&ends),
        "the cap is its end: {ends}"
    );
    let item = world.ledger_item("no-end").await.expect("recorded");
    assert_eq!(item["mirrorEndsAt"].as_f64().map(|f| f as u64), Some(ends), "{item}");
    assert_eq!(item.get("expiresAt"), None, "a live mirror's record has no TTL");
}

#[tokio::test]
async fn sessions_nobody_approved_are_reported_and_removed_only_when_asked() {
    let world = World::start().await;
    let (victim, other_victim, rogue_box, approved_box) = (
        world.eni().await,
        world.eni().await,
        world.eni().await,
        world.eni().await,
    );
    let rogue_target = world.foreign_target(&rogue_box).await;
    let approved_target = world.foreign_target(&approved_box).await;
    let rogue = world.foreign_session(&victim, &rogue_target, 1).await;
    let tolerated = world.foreign_session(&other_victim, &approved_target, 1).await;
    let allowing = |remove: bool| {
        let approved_box = approved_box.clone();
        world.app_with(move |config| {
            config.allowed_targets = AllowList::Only(BTreeSet::from([approved_box]));
            config.remove_unapproved_mirrors = remove;
        })
    };

    let watching = allowing(false);
    let swept = watching.invoke(json!({"sweep": {}})).await.expect("answers");
    let found = &swept["sweep"]["sweep"]["unapprovedMirrors"];
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{swept}");
    assert_eq!(found[0]["sessionId"], rogue.as_str());
    assert_eq!(found[0]["sourceEni"], victim.as_str());
    assert_eq!(found[0]["destination"], rogue_box.as_str());
    assert_eq!(found[0]["outcome"], "reported");
    let events = world.events(2).await;
    let announced = of_type(&events, "TrafficMirroringUnapprovedFound");
    assert_eq!(announced.len(), 1, "{events:?}");
    assert_eq!(
        announced[0]["detail"]["details"]["unapprovedMirrors"][0]["sessionId"],
        rogue.as_str()
    );
    let sessions = world.mirror_state().await.sessions;
    assert!(
        sessions.contains(&rogue) && sessions.contains(&tolerated),
        "reported, not touched"
    );

    let removing = allowing(true);
    let swept = removing.invoke(json!({"sweep": {}})).await.expect("answers");
    assert_eq!(
        swept["sweep"]["sweep"]["unapprovedMirrors"][0]["outcome"], "removed",
        "{swept}"
    );
    let sessions = world.mirror_state().await.sessions;
    assert!(!sessions.contains(&rogue), "the unapproved session is gone");
    assert!(
        sessions.contains(&tolerated),
        "a foreign session to an allowed target is never touched"
    );
    assert!(
        world.mirror_state().await.targets.contains(&rogue_target),
        "only the session: not their target"
    );
}

/// CloudTrail's record of a deletion, as EventBridge delivers it.
fn deleted_session(session_id: &str) -> Value {
    json!({"version": "0", "id": "ct-1", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
           "account": "123456789012", "time": "2026-12-05T10:00:00Z", "region": "us-east-1", "resources": [],
           "detail": {"eventSource": "ec2.amazonaws.com", "eventName": "DeleteTrafficMirrorSession",
                      "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/mallory"},
                      "requestParameters": {"DeleteTrafficMirrorSessionRequest": {"TrafficMirrorSessionId": session_id}},
                      "responseElements": {"DeleteTrafficMirrorSessionResponse": {"trafficMirrorSessionId": session_id}}}})
}

#[tokio::test]
async fn a_policy_mirror_deleted_by_someone_else_is_announced_and_made_again() {
    let world = World::start().await;
    let target = world.eni().await;
    let instance = world.instance("m5.large", &[(TARGET_TAG, &target)]).await;
    let eni = world.primary_eni(&instance).await;
    let launched = world
        .app
        .invoke(state_change(&instance, "running"))
        .await
        .expect("answers");
    assert_eq!(launched["actionResults"][0]["success"], true, "{launched}");
    let session = world.sessions_on(&eni).await.pop().expect("mirrored");

    // A forged event for a live session changes nothing.
    let forged = world.app.invoke(deleted_session(&session)).await.expect("answers");
    assert_eq!(forged["actionResults"], json!([]), "{forged}");
    assert_eq!(world.sessions_on(&eni).await, vec![session.clone()]);
    world.events(1).await;

    world.delete_session_behind_our_back(&session).await;
    let answer = world.app.invoke(deleted_session(&session)).await.expect("answers");
    assert_eq!(answer["actionResults"][0]["success"], true, "{answer}");
    let now_on = world.sessions_on(&eni).await;
    assert_eq!(now_on.len(), 1, "made again at once: {now_on:?}");
    assert_ne!(now_on[0], session);
    let events = world.events(2).await;
    let tampered = of_type(&events, "TrafficMirroringTampered");
    assert_eq!(tampered.len(), 1, "{events:?}");
    assert_eq!(
        tampered[0]["detail"]["details"]["deletedBy"],
        "arn:aws:iam::123456789012:user/mallory"
    );
    assert_eq!(tampered[0]["detail"]["details"]["resource"]["id"], session.as_str());
    assert!(
        world.disagreements().await.is_empty(),
        "{:?}",
        world.disagreements().await
    );
}

#[tokio::test]
async fn a_requested_mirror_deleted_by_someone_else_is_reported_not_made_again() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let made = world.invoke(&seed_create("asked", &source, &target)).await;
    let session = first_result(&made)["sessionId"].as_str().expect("made").to_owned();
    world.events(1).await;
    world.delete_session_behind_our_back(&session).await;
    let answer = world.app.invoke(deleted_session(&session)).await.expect("answers");
    assert_eq!(answer["actionResults"], json!([]), "nothing made again: {answer}");
    assert!(world.sessions_on(&source).await.is_empty());
    let events = world.events(1).await;
    assert_eq!(of_type(&events, "TrafficMirroringTampered").len(), 1, "{events:?}");
}

#[tokio::test]
async fn a_request_of_more_than_a_hundred_actions_is_refused_whole() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let actions: Vec<Value> = (0..101)
        .map(|i| create_action(&format!("bulk-{i}"), &source, &target, None))
        .collect();
    let answer = world.invoke(&json!({"driverRequest": {"actions": actions}})).await;
    assert_eq!(answer["driverResponse"]["actionResults"], json!([]), "{answer}");
    assert!(answer["driverResponse"]["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("101 actions") && m.contains("at most 100")));
    assert_eq!(world.mirror_state().await, MirrorState::default());
    assert!(world.ledger().await.is_empty(), "nothing claimed");

    let bad_id = world.invoke(&create(&"x".repeat(129), &source, &target, None)).await;
    assert_eq!(first_result(&bad_id)["errorCode"], "ValidationError", "{bad_id}");
    let control = world.invoke(&create("tab\tid", &source, &target, None)).await;
    assert_eq!(first_result(&control)["errorCode"], "ValidationError", "{control}");
    assert_eq!(world.mirror_state().await, MirrorState::default());
}
