//! The fleet policy's pure steps, table-tested.
use super::*;
use crate::domain::tags::TAG_EXCLUDE;
use crate::mirroring::watch::Account;

fn instance(tags: &[(&str, &str)]) -> InstanceInfo {
    InstanceInfo {
        id: "i-1".into(),
        instance_type: "m5.large".into(),
        subnet_id: Some("subnet-1".into()),
        enis: vec!["eni-0000000a".into(), "eni-0000000b".into()],
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..InstanceInfo::default()
    }
}

#[test]
fn the_exclude_tag_wins_over_every_target() {
    let mut policy = LaunchPolicy::default();
    policy.default_targets.insert("subnet-1".into(), "eni-000000c1".into());
    assert_eq!(policy_target(&instance(&[]), &policy).as_deref(), Ok("eni-000000c1"));
    for value in ["true", "TRUE", " True "] {
        let opted_out = instance(&[(TAG_EXCLUDE, value), ("traffic-mirroring:target", "eni-000000d1")]);
        assert!(policy_target(&opted_out, &policy).is_err_and(|why| why.contains(TAG_EXCLUDE)));
    }
    let not_really = instance(&[(TAG_EXCLUDE, "no")]);
    assert!(policy_target(&not_really, &policy).is_ok());
    assert!(policy_target(&instance(&[]), &LaunchPolicy::default()).is_err());
}

#[test]
fn the_target_itself_is_not_mirrored_to_itself() {
    assert_eq!(eligible_enis(&instance(&[]), "eni-0000000b"), vec!["eni-0000000a"]);
    assert_eq!(eligible_enis(&instance(&[]), "eni-000000c1").len(), 2);
}

#[test]
fn only_launch_actions_of_their_own_instance_and_eni_are_policy_mirrors() {
    let record = |action: &str| LedgerRecord {
        action_id: action.into(),
        kind: Some(ActionKind::Create),
        instance_id: Some("i-1".into()),
        source_eni: Some("eni-0000000a".into()),
        ..LedgerRecord::default()
    };
    assert!(is_policy_mirror(&record("launch-i-1-eni-0000000a")));
    assert!(!is_policy_mirror(&record("launch-i-2-eni-0000000a")));
    assert!(!is_policy_mirror(&record("a-callers-own-id")));
    let mut asked = record("launch-i-1-eni-0000000a");
    asked.instance_id = None;
    assert!(!is_policy_mirror(&asked));
}

#[test]
fn a_failed_create_is_reported_in_the_words_of_its_cause() {
    let failed = |code: &str| ActionResult::failure("a", "CreateTrafficMirroring", code, "m".into(), true);
    let said = |code: &str| missing_reason(&failed(code)).to_string();
    assert_eq!(
        said("TrafficMirrorSessionsPerInterfaceLimitExceeded"),
        "3 sessions already on the ENI"
    );
    assert!(said("TrafficMirrorSourcesPerTargetLimitExceeded").contains("no room for another source"));
    assert!(matches!(
        missing_reason(&failed("NetworkInterfaceNotSupported")),
        Missing::UnsupportedSource(why) if why == "m"
    ));
    assert!(said("RequestLimitExceeded").starts_with("throttled"));
    assert_eq!(missing_reason(&failed("InvocationDeadlineNear")), Missing::Deferred);
    assert_eq!(missing_reason(&failed("ThrottlingException")), Missing::Throttled);
    assert!(
        matches!(missing_reason(&failed("InternalError")), Missing::Failed { code, .. } if code == "InternalError")
    );
    assert_eq!(
        Missing::Deferred.to_string(),
        "waiting for the next run: this one's deadline was near",
        "the report's words stay"
    );
}

/// One row: an instance's state and whether its type can be a source, and what the ledger holds
/// for its first ENI; the step `desired` picks for that ENI.
#[test]
fn each_wanted_eni_gets_the_step_its_state_and_records_call_for() {
    let target = "eni-000000c1";
    let live = |status: RecordStatus, session: Option<&str>| LedgerRecord {
        action_id: launch_action_id("i-1", "eni-0000000a"),
        kind: Some(ActionKind::Create),
        status: Some(status),
        source_eni: Some("eni-0000000a".into()),
        target_key: Some(target.into()),
        instance_id: Some("i-1".into()),
        session_id: session.map(str::to_owned),
        ..LedgerRecord::default()
    };
    #[derive(Debug, PartialEq)]
    enum Expect {
        Covered,
        Create,
        Wait(&'static str),
        Unsupported,
        Unchecked,
    }
    type Row = (
        &'static str,
        InstanceState,
        Result<Option<String>, String>,
        Vec<LedgerRecord>,
        &'static [&'static str],
        Expect,
    );
    let rows: Vec<Row> = vec![
        (
            "nothing yet",
            InstanceState::Running,
            Ok(None),
            vec![],
            &[],
            Expect::Create,
        ),
        (
            "mirrored",
            InstanceState::Running,
            Ok(None),
            vec![live(RecordStatus::Active, Some("tms-1"))],
            &[],
            Expect::Covered,
        ),
        (
            "its session is gone",
            InstanceState::Running,
            Ok(None),
            vec![live(RecordStatus::Active, Some("tms-1"))],
            &["tms-1"],
            Expect::Create,
        ),
        (
            "a create in progress",
            InstanceState::Running,
            Ok(None),
            vec![live(RecordStatus::Pending, None)],
            &[],
            Expect::Wait("in progress"),
        ),
        (
            "stopped",
            InstanceState::Stopped,
            Ok(None),
            vec![],
            &[],
            Expect::Wait("stopped"),
        ),
        (
            "a Xen type",
            InstanceState::Running,
            Ok(Some(
                "the m7i family is among the virtualized Nitro families AWS does not mirror".into(),
            )),
            vec![],
            &[],
            Expect::Unsupported,
        ),
        (
            "EC2 could not say",
            InstanceState::Running,
            Err("throttled".into()),
            vec![],
            &[],
            Expect::Unchecked,
        ),
    ];
    let mut policy = LaunchPolicy::default();
    policy.default_targets.insert("subnet-1".into(), target.into());
    for (name, state, refusal, records, gone, expect) in rows {
        let mut one = instance(&[]);
        one.state = Some(state);
        let refusals = HashMap::from([(one.instance_type.clone(), refusal)]);
        let contents = LedgerContents {
            records,
            ..LedgerContents::default()
        };
        let gone: BTreeSet<String> = gone.iter().map(|s| s.to_string()).collect();
        let view = FleetView {
            sessions: &[],
            targets: &[],
            account: &Account {
                sessions: Vec::new(),
                targets: Vec::new(),
            },
            contents: &contents,
            gone_sessions: &gone,
            listed_at: 0,
        };
        let desired = steps::desired(std::slice::from_ref(&one), &refusals, &policy, &view);
        let got = if !desired.unsupported.is_empty() {
            Expect::Unsupported
        } else if desired.coverage.values().any(|c| !c.missing.is_empty()) {
            Expect::Unchecked
        } else {
            let (wanted, step) = desired
                .steps
                .iter()
                .find(|(w, _)| w.eni == "eni-0000000a")
                .unwrap_or_else(|| panic!("{name}: no step for the ENI"));
            assert_eq!(wanted.target, target, "{name}");
            match step {
                Step::Covered => Expect::Covered,
                Step::Create(_) => Expect::Create,
                Step::Wait(why) => {
                    let Expect::Wait(expected) = expect else {
                        panic!("{name}: waits ({why}), expected {expect:?}");
                    };
                    assert!(why.contains(expected), "{name}: {why}");
                    Expect::Wait(expected)
                }
            }
        };
        assert_eq!(got, expect, "{name}");
    }
}

#[test]
fn only_our_policy_mirrors_the_policy_stopped_wanting_are_unwanted() {
    let record = |instance: &str, eni: &str, target: &str, updated_at: u64| LedgerRecord {
        action_id: launch_action_id(instance, eni),
        kind: Some(ActionKind::Create),
        status: Some(RecordStatus::Active),
        source_eni: Some(eni.into()),
        target_key: Some(target.into()),
        instance_id: Some(instance.into()),
        session_id: Some(format!("tms-{eni}")),
        updated_at,
        ..LedgerRecord::default()
    };
    let mut tagged = instance(&[("traffic-mirroring:target", "eni-000000c2")]);
    tagged.state = Some(InstanceState::Running);
    let contents = LedgerContents {
        records: vec![
            // Still wanted: its instance names this target.
            record("i-1", "eni-0000000a", "eni-000000c2", 0),
            // The policy now names another target.
            record("i-1", "eni-0000000b", "eni-000000c1", 0),
            // Its instance is gone, and the record is older than the listing.
            record("i-9", "eni-00000009", "eni-000000c2", 0),
            // Its instance is not in the listing, but the record is newer
            // than the listing allows for: not judged.
            record("i-8", "eni-00000008", "eni-000000c2", 1_000),
        ],
        ..LedgerContents::default()
    };
    let view = FleetView {
        sessions: &[],
        targets: &[],
        account: &Account {
            sessions: Vec::new(),
            targets: Vec::new(),
        },
        contents: &contents,
        gone_sessions: &BTreeSet::new(),
        listed_at: 1_000,
    };
    let wanted = BTreeSet::from([("eni-0000000a".to_owned(), "eni-000000c2".to_owned())]);
    let unwanted = steps::unwanted(&[tagged], &wanted, &LaunchPolicy::default(), &view);
    let found: Vec<(&str, &str)> = unwanted.iter().map(|u| (u.eni.as_str(), u.reason.as_str())).collect();
    assert_eq!(
        found,
        [
            ("eni-0000000b", "the policy now names eni-000000c2"),
            ("eni-00000009", "its instance is gone"),
        ]
    );
}
