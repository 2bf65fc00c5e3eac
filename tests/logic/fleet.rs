//! The launch policy as desired state: launches, tag changes and the sweep
//! mirror what the policy names; terminations and exclusions unmirror it.

use serde_json::json;

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
    let nothing = world.app.invoke(tag_change("i-0000000b", TARGET_TAG)).await.expect("answers");
    assert!(
        nothing["skipped"].is_string(),
        "untagged in EC2, whatever the event says: {nothing}"
    );
    assert_eq!(world.counts().0, 0);

    world.ec2.tag_instance("i-0000000b", TARGET_TAG, Some(&eni(9)));
    let mirrored = world.app.invoke(tag_change("i-0000000b", TARGET_TAG)).await.expect("answers");
    assert_eq!(mirrored["actionResults"][0]["success"], true, "{mirrored}");
    assert_eq!(mirrored["actionResults"][0]["requestedByBasis"], "policy");
    assert_eq!(world.counts().0, 1);

    world.ec2.tag_instance("i-0000000b", TARGET_TAG, None);
    let unmirrored = world.app.invoke(tag_change("i-0000000b", TARGET_TAG)).await.expect("answers");
    assert_eq!(unmirrored["actionResults"][0]["success"], true, "{unmirrored}");
    assert_eq!(world.counts(), (0, 0, 0));
}

#[tokio::test]
async fn a_policy_mirror_deleted_behind_our_back_is_made_again_at_once() {
    let world = fixture();
    world
        .ec2
        .plant_instance("i-0000000c", &[&eni(4)], &[(TARGET_TAG, &eni(9))]);
    world.app.invoke(tag_change("i-0000000c", TARGET_TAG)).await.expect("answers");
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
}
