//! The sweep's plan: what to repair, worked out from one listing of EC2
//! under our tags, one read of the ledger and the sessions EC2 was asked
//! for by id. Pure, so every rule is a table test.

use std::collections::{BTreeMap, BTreeSet};

use super::super::{ownership_of, Ownership, TAG_ACTION_ID};
use super::owned::Owned;
use super::{Finding, Outcome};
use crate::ports::{ActionKind, LedgerContents, LedgerRecord, MirrorSession, RecordStatus, SharedKey};

/// A repair the sweep plans; each names what it found.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Repair {
    Abandoned(Box<LedgerRecord>),
    Vanished(Box<LedgerRecord>),
    /// A remove that stopped half-way through this mirror.
    HalfRemoved(Box<LedgerRecord>),
    /// A session of ours that no record holds: the record the ledger has for
    /// its action, if any (finished), so it is recorded again.
    Adopt(MirrorSession, Option<Box<LedgerRecord>>),
    /// An earlier version's resources that our ledger knows.
    TakeOver(Vec<String>),
    /// An earlier version's resource our ledger does not know.
    UnknownLegacy(String),
    /// A filter of ours nothing uses: its id, the action that made it, and
    /// the claim item still naming it, if one does.
    OrphanFilter(String, Option<String>, Option<SharedKey>),
    StaleNumber {
        source_eni: String,
        number: u16,
        action_id: String,
    },
    StaleUser {
        key: SharedKey,
        action_id: String,
    },
    UnusedTarget {
        claim_name: Option<String>,
        target_id: String,
    },
}

impl Repair {
    pub(super) fn finding(&self) -> Finding {
        let (kind, resource, action_id) = match self {
            Repair::Abandoned(r) => (
                "abandoned_action",
                format!("action {}", r.action_id),
                Some(&r.action_id),
            ),
            Repair::Vanished(r) => (
                "vanished_session",
                r.session_id.clone().unwrap_or_default(),
                Some(&r.action_id),
            ),
            Repair::HalfRemoved(r) => (
                "half_removed",
                r.session_id.clone().unwrap_or_default(),
                Some(&r.action_id),
            ),
            Repair::Adopt(s, _) => ("untracked_session", s.id.clone(), None),
            Repair::TakeOver(ids) => ("legacy_known", ids.join(", "), None),
            Repair::UnknownLegacy(id) => ("legacy_unknown", id.clone(), None),
            Repair::OrphanFilter(id, ..) => ("orphan_filter", id.clone(), None),
            Repair::StaleNumber {
                source_eni,
                number,
                action_id,
            } => ("stale_number_claim", format!("{source_eni} #{number}"), Some(action_id)),
            Repair::StaleUser {
                key: key @ SharedKey::Target(_),
                action_id,
            } => ("stale_target_claim", key.name().to_owned(), Some(action_id)),
            Repair::StaleUser {
                key: key @ SharedKey::Filter(_),
                action_id,
            } => ("stale_filter_claim", key.name().to_owned(), Some(action_id)),
            Repair::UnusedTarget { target_id, .. } => ("unused_target", target_id.clone(), None),
        };
        let action_id = action_id.cloned().or_else(|| match self {
            Repair::Adopt(s, _) => s.tag(TAG_ACTION_ID).map(str::to_owned),
            Repair::OrphanFilter(_, action, _) => action.clone(),
            _ => None,
        });
        let outcome = match self {
            // Nothing is ever done about it, dry run or not.
            Repair::UnknownLegacy(_) => {
                Outcome::Reported("made by an earlier version, unknown to this ledger; left alone".into())
            }
            _ => Outcome::Planned,
        };
        Finding {
            kind,
            resource,
            action_id,
            rule: self.rule(),
            outcome,
        }
    }

    fn rule(&self) -> &'static str {
        match self {
            Repair::Abandoned(_) => {
                "a create pending past its lease, or whose rollback stopped, is undone so that a retry runs it again"
            }
            Repair::Vanished(_) => "an active mirror whose session EC2 no longer has is closed and its claims released",
            Repair::HalfRemoved(_) => "a remove that stopped half-way is finished",
            Repair::Adopt(..) => {
                "a session of ours that no ledger record holds is recorded again from its tags, never deleted"
            }
            Repair::TakeOver(_) => "an earlier version's resources that this ledger knows are re-tagged as ours",
            Repair::UnknownLegacy(_) => {
                "an earlier version's resource that this ledger does not know is reported and left alone"
            }
            Repair::OrphanFilter(..) => "a filter of ours that no session and no claim uses is deleted",
            Repair::UnusedTarget { .. } => "a target of ours that no session and no claim uses is deleted",
            Repair::StaleNumber { .. } | Repair::StaleUser { .. } => {
                "a claim held by an action that holds nothing any more is released"
            }
        }
    }

    /// Deletes something nobody uses: counted against the per-run cap.
    pub(super) fn deletes_unused(&self) -> bool {
        matches!(self, Repair::OrphanFilter(..) | Repair::UnusedTarget { .. })
    }
}

/// Everything the plan depends on.
pub(super) struct Snapshot<'a> {
    pub owned: &'a Owned,
    pub contents: &'a LedgerContents,
    /// Unix seconds: leases are measured against it.
    pub now: u64,
    pub lease_seconds: u64,
    /// This deployment's owner value (the managed-by tag).
    pub owner: &'a str,
    /// Sessions our active records name that EC2, asked by id, no longer has.
    pub gone_sessions: &'a BTreeSet<String>,
}

/// Works out the repairs from one listing of EC2 and one read of the
/// ledger, and nothing else: no call, no clock.
pub(super) fn plan(view: &Snapshot<'_>) -> Vec<Repair> {
    let (owned, contents, now) = (view.owned, view.contents, view.now);
    let records: BTreeMap<&str, &LedgerRecord> = contents.records.iter().map(|r| (r.action_id.as_str(), r)).collect();
    let in_flight = |r: &LedgerRecord| {
        r.status == Some(RecordStatus::Pending) && r.updated_at.saturating_add(view.lease_seconds) > now
    };
    let abandoned = |r: &LedgerRecord| {
        r.kind == Some(ActionKind::Create)
            && match r.status {
                Some(RecordStatus::Pending) => !in_flight(r),
                Some(RecordStatus::RollbackIncomplete) => true,
                _ => false,
            }
    };
    // Actions whose claims and resources are theirs to keep (or to undo, for the abandoned).
    let keeps = |action: &str| {
        contents.elsewhere.contains(action)
            || records.get(action).is_some_and(|r| {
                matches!(r.status, Some(RecordStatus::Active | RecordStatus::Removing)) || in_flight(r) || abandoned(r)
            })
    };
    let mut repairs = Vec::new();
    for record in contents.records.iter().filter(|r| abandoned(r)) {
        repairs.push(Repair::Abandoned(Box::new(record.clone())));
    }
    // A remove in progress right now would finish these too; both are idempotent.
    for record in &contents.records {
        if record.kind == Some(ActionKind::Create) && record.status == Some(RecordStatus::Removing) {
            repairs.push(Repair::HalfRemoved(Box::new(record.clone())));
        }
    }

    let session_ids: BTreeSet<&str> = owned.sessions.iter().map(|s| s.id.as_str()).collect();
    for record in &contents.records {
        let active_create = record.kind == Some(ActionKind::Create) && record.status == Some(RecordStatus::Active);
        let Some(session_id) = record.session_id.as_deref().filter(|_| active_create) else {
            continue;
        };
        // Missing from the listing and, asked by id, from EC2 (a session
        // made after the listing is missing from it only).
        if !session_ids.contains(session_id) && view.gone_sessions.contains(session_id) {
            repairs.push(Repair::Vanished(Box::new(record.clone())));
        }
    }

    let known_sessions: BTreeSet<&str> = contents
        .records
        .iter()
        .filter(|r| matches!(r.status, Some(RecordStatus::Active | RecordStatus::Removing)))
        .filter_map(|r| r.session_id.as_deref())
        .collect();
    for session in &owned.sessions {
        let action = session.tag(TAG_ACTION_ID).unwrap_or_default();
        if !known_sessions.contains(session.id.as_str()) && !keeps(action) {
            let record = records.get(action).map(|r| Box::new((*r).clone()));
            repairs.push(Repair::Adopt(session.clone(), record));
        }
    }
    // Every session of ours stays (those without a record are adopted).
    let kept_sessions: Vec<&MirrorSession> = owned.sessions.iter().collect();
    // Shared resources that a kept action uses or that someone is making.
    let mut claimed = BTreeSet::new();
    let mut claim_of = BTreeMap::new();
    for shared in &contents.shared {
        let kept_users = shared.users.iter().filter(|u| keeps(u)).count();
        for user in shared.users.iter().filter(|u| !keeps(u)) {
            repairs.push(Repair::StaleUser {
                key: shared.key.clone(),
                action_id: user.clone(),
            });
        }
        if let Some(id) = &shared.resource_id {
            claim_of.insert(id.as_str(), &shared.key);
            if kept_users > 0 || shared.maker.is_some() {
                claimed.insert(id.as_str());
            }
        }
    }
    // Filters and targets used by sessions that stay; an orphan session's go with it.
    let known_filters: BTreeSet<&str> = contents
        .records
        .iter()
        .filter(|r| matches!(r.status, Some(RecordStatus::Active | RecordStatus::Removing)))
        .filter_map(|r| r.filter_id.as_deref())
        .chain(kept_sessions.iter().map(|s| s.filter_id.as_str()))
        .collect();
    for filter in &owned.filters {
        let action = crate::ports::tag_value(&filter.tags, TAG_ACTION_ID).unwrap_or_default();
        let id = filter.id.as_str();
        // A filter being made has no claim naming it yet; its maker keeps it.
        if !known_filters.contains(id) && !claimed.contains(id) && !keeps(action) {
            let claim = claim_of.get(id).map(|key| (*key).clone());
            repairs.push(Repair::OrphanFilter(filter.id.clone(), Some(action.to_owned()), claim));
        }
    }

    for source in &contents.sources {
        for (number, action_id) in &source.numbers {
            if !keeps(action_id) {
                repairs.push(Repair::StaleNumber {
                    source_eni: source.source_eni.clone(),
                    number: *number,
                    action_id: action_id.clone(),
                });
            }
        }
    }
    let used_targets: BTreeSet<&str> = kept_sessions.iter().map(|s| s.target_id.as_str()).collect();
    for target in &owned.targets {
        let id = target.id.as_str();
        // A target being made has no session yet; its maker keeps it.
        let making = contents.shared.iter().any(|c| {
            c.maker.is_some() && matches!(&c.key, SharedKey::Target(name) if Some(name.as_str()) == target.claim_name())
        });
        if ownership_of(view.owner, &target.tags) == Ownership::Ours
            && !used_targets.contains(id)
            && !claimed.contains(id)
            && !making
        {
            repairs.push(Repair::UnusedTarget {
                claim_name: target.claim_name().map(str::to_owned),
                target_id: target.id.clone(),
            });
        }
    }

    // An earlier version's resources: ours only when this ledger names them.
    let named: BTreeSet<&str> = contents
        .records
        .iter()
        .filter(|r| r.status.is_some_and(|s| s.holds_resources()))
        .flat_map(|r| [&r.session_id, &r.filter_id, &r.target_id])
        .filter_map(|id| id.as_deref())
        .chain(contents.shared.iter().filter_map(|c| c.resource_id.as_deref()))
        .collect();
    let (known, unknown): (Vec<&String>, Vec<&String>) =
        owned.legacy.iter().partition(|id| named.contains(id.as_str()));
    for chunk in known.chunks(50) {
        repairs.push(Repair::TakeOver(chunk.iter().map(|id| (*id).clone()).collect()));
    }
    repairs.extend(unknown.into_iter().cloned().map(Repair::UnknownLegacy));
    repairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirroring::TAG_MANAGED_BY;
    use crate::ports::{MirrorFilter, MirrorTarget, SharedClaims, SourceClaims, Tags};

    const OWNER: &str = "table/prod";
    const NOW: u64 = 1_800_000_000;
    const LEASE: u64 = 960;

    fn tags(owner: &str, action: &str) -> Tags {
        vec![
            (TAG_MANAGED_BY.to_owned(), owner.to_owned()),
            (TAG_ACTION_ID.to_owned(), action.to_owned()),
        ]
    }

    fn session(id: &str, action: &str) -> MirrorSession {
        MirrorSession {
            owner_id: None,
            id: id.into(),
            source_eni: "eni-0000000a".into(),
            target_id: "tmt-1".into(),
            filter_id: "tmf-1".into(),
            session_number: 1,
            virtual_network_id: None,
            tags: tags(OWNER, action),
        }
    }

    fn create(action: &str, status: RecordStatus, updated_at: u64) -> LedgerRecord {
        LedgerRecord {
            action_id: action.into(),
            kind: Some(ActionKind::Create),
            status: Some(status),
            updated_at,
            ..LedgerRecord::default()
        }
    }

    fn active(action: &str, session_id: &str) -> LedgerRecord {
        LedgerRecord {
            session_id: Some(session_id.into()),
            filter_id: Some("tmf-1".into()),
            target_id: Some("tmt-1".into()),
            ..create(action, RecordStatus::Active, NOW)
        }
    }

    fn target(id: &str, owner: &str) -> MirrorTarget {
        MirrorTarget {
            owner_id: None,
            id: id.into(),
            network_interface_id: Some(format!("eni-for-{id}")),
            load_balancer: None,
            tags: tags(owner, "a-target"),
        }
    }

    /// One case: what EC2 lists, what the ledger holds, what EC2 said of the
    /// sessions asked for by id; the plan as (kind, resource) pairs.
    struct Case {
        name: &'static str,
        owned: Owned,
        contents: LedgerContents,
        gone: &'static [&'static str],
        expected: Vec<(&'static str, &'static str)>,
    }

    fn nothing_owned() -> Owned {
        Owned {
            sessions: Vec::new(),
            filters: Vec::new(),
            targets: Vec::new(),
            legacy: Vec::new(),
        }
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "a create pending past its lease is undone; one within it, and a live mirror, are not",
                owned: Owned {
                    sessions: vec![session("tms-live", "live")],
                    ..nothing_owned()
                },
                contents: LedgerContents {
                    records: vec![
                        create("dead", RecordStatus::Pending, NOW - LEASE - 1),
                        create("working", RecordStatus::Pending, NOW - LEASE + 5),
                        create("half-undone", RecordStatus::RollbackIncomplete, NOW),
                        active("live", "tms-live"),
                    ],
                    ..LedgerContents::default()
                },
                gone: &[],
                expected: vec![
                    ("abandoned_action", "action dead"),
                    ("abandoned_action", "action half-undone"),
                ],
            },
            Case {
                name: "an active mirror whose session EC2 no longer has is closed; one newer than the listing is not",
                owned: nothing_owned(),
                contents: LedgerContents {
                    records: vec![active("vanished", "tms-gone"), active("newer", "tms-new")],
                    ..LedgerContents::default()
                },
                gone: &["tms-gone"],
                expected: vec![("vanished_session", "tms-gone")],
            },
            Case {
                name: "a session of ours without a record is adopted, never deleted, with the record of its finished action",
                owned: Owned {
                    sessions: vec![session("tms-lost", "lost"), session("tms-failed", "failed")],
                    ..nothing_owned()
                },
                contents: LedgerContents {
                    records: vec![create("failed", RecordStatus::Failed, NOW)],
                    ..LedgerContents::default()
                },
                gone: &[],
                expected: vec![
                    ("untracked_session", "tms-lost"),
                    ("untracked_session", "tms-failed"),
                ],
            },
            Case {
                name: "a filter nothing uses goes; one a session uses, or a kept claim names, stays",
                owned: Owned {
                    sessions: vec![session("tms-live", "live")],
                    filters: vec![
                        MirrorFilter {
                            id: "tmf-1".into(),
                            tags: tags(OWNER, "live"),
                        },
                        MirrorFilter {
                            id: "tmf-orphan".into(),
                            tags: tags(OWNER, "gone-action"),
                        },
                        MirrorFilter {
                            id: "tmf-claimed".into(),
                            tags: tags(OWNER, "maker"),
                        },
                    ],
                    ..nothing_owned()
                },
                contents: LedgerContents {
                    records: vec![active("live", "tms-live"), active("user", "tms-live")],
                    shared: vec![SharedClaims {
                        key: SharedKey::Filter("rules-b".into()),
                        resource_id: Some("tmf-claimed".into()),
                        maker: None,
                        users: vec!["user".into()],
                    }],
                    ..LedgerContents::default()
                },
                gone: &[],
                expected: vec![("orphan_filter", "tmf-orphan")],
            },
            Case {
                name: "a target of ours nothing uses goes; one being made, used, or not ours stays",
                owned: Owned {
                    sessions: vec![session("tms-live", "live")],
                    targets: vec![
                        target("tmt-1", OWNER),
                        target("tmt-unused", OWNER),
                        target("tmt-making", OWNER),
                        target("tmt-foreign", "table/staging"),
                    ],
                    ..nothing_owned()
                },
                contents: LedgerContents {
                    records: vec![active("live", "tms-live")],
                    shared: vec![SharedClaims {
                        key: SharedKey::Target("eni-for-tmt-making".into()),
                        resource_id: None,
                        maker: Some("maker".into()),
                        users: Vec::new(),
                    }],
                    ..LedgerContents::default()
                },
                gone: &[],
                expected: vec![("unused_target", "tmt-unused")],
            },
            Case {
                name: "claims of actions that hold nothing are released; a live action's stay",
                owned: Owned {
                    sessions: vec![session("tms-live", "live")],
                    ..nothing_owned()
                },
                contents: LedgerContents {
                    records: vec![active("live", "tms-live"), create("failed", RecordStatus::Failed, NOW)],
                    shared: vec![SharedClaims {
                        key: SharedKey::Target("eni-0000000b".into()),
                        resource_id: Some("tmt-1".into()),
                        maker: None,
                        users: vec!["live".into(), "failed".into()],
                    }],
                    sources: vec![SourceClaims {
                        source_eni: "eni-0000000a".into(),
                        numbers: vec![(1, "live".into()), (2, "nobody".into())],
                    }],
                    ..LedgerContents::default()
                },
                gone: &[],
                expected: vec![
                    ("stale_target_claim", "eni-0000000b"),
                    ("stale_number_claim", "eni-0000000a #2"),
                ],
            },
            Case {
                name: "a hub target that only another account's live session uses stays, with its claim",
                owned: Owned {
                    targets: vec![target("tmt-hub", OWNER)],
                    ..nothing_owned()
                },
                contents: LedgerContents {
                    shared: vec![SharedClaims {
                        key: SharedKey::Target("eni-hub".into()),
                        resource_id: Some("tmt-hub".into()),
                        maker: None,
                        users: vec!["member-live".into(), "member-gone".into()],
                    }],
                    elsewhere: ["member-live".to_string()].into(),
                    ..LedgerContents::default()
                },
                gone: &[],
                expected: vec![("stale_target_claim", "eni-hub")],
            },
            Case {
                name: "an earlier version's resources are taken over only when this ledger names them",
                owned: Owned {
                    legacy: vec!["tms-old-known".into(), "tmf-old-unknown".into()],
                    ..nothing_owned()
                },
                contents: LedgerContents {
                    records: vec![LedgerRecord {
                        session_id: Some("tms-old-known".into()),
                        ..active("old", "tms-old-known")
                    }],
                    ..LedgerContents::default()
                },
                gone: &[],
                expected: vec![("legacy_known", "tms-old-known"), ("legacy_unknown", "tmf-old-unknown")],
            },
        ]
    }

    #[test]
    fn every_rule_of_the_plan() {
        for case in cases() {
            let gone: BTreeSet<String> = case.gone.iter().map(|s| (*s).to_owned()).collect();
            let repairs = plan(&Snapshot {
                owned: &case.owned,
                contents: &case.contents,
                now: NOW,
                lease_seconds: LEASE,
                owner: OWNER,
                gone_sessions: &gone,
            });
            let found: Vec<(&str, String)> = repairs
                .iter()
                .map(|r| {
                    let finding = r.finding();
                    (finding.kind, finding.resource)
                })
                .collect();
            let expected: Vec<(&str, String)> = case.expected.iter().map(|(k, r)| (*k, (*r).to_owned())).collect();
            assert_eq!(found, expected, "{}", case.name);
        }
    }

    #[test]
    fn a_dry_run_plans_and_an_unknown_legacy_resource_is_only_reported() {
        let owned = Owned {
            legacy: vec!["tmt-old".into()],
            ..nothing_owned()
        };
        let contents = LedgerContents::default();
        let gone = BTreeSet::new();
        let view = Snapshot {
            owned: &owned,
            contents: &contents,
            now: NOW,
            lease_seconds: LEASE,
            owner: OWNER,
            gone_sessions: &gone,
        };
        let findings: Vec<Finding> = plan(&view).iter().map(Repair::finding).collect();
        assert_eq!(findings.len(), 1);
        assert!(matches!(findings[0].outcome, Outcome::Reported(_)));
        assert_eq!(
            serde_json::to_value(&findings[0]).expect("serialisable")["outcome"],
            "reported: made by an earlier version, unknown to this ledger; left alone"
        );
    }
}
