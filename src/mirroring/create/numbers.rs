//! Session numbers: the requested one when free on the source ENI, else the
//! lowest free one, claimed in the ledger so that two processes never pick
//! the same number, and within the AWS quota of sessions per source ENI.

use std::collections::HashSet;

use super::super::model::{CreateRequest, MAX_SESSION_NUMBER, SESSIONS_PER_SOURCE_ENI};
use super::super::{Failure, TAG_ACTION_ID};
use crate::ports::{MirrorSession, NumberClaim};

/// Rounds of "pick a number, claim it" before contention counts as a failure;
/// each lost round means another action took a number, and an ENI has three.
const NUMBER_ROUNDS: usize = 8;

/// Session numbers on a source ENI, claimed in the ledger.
pub struct Numbering {
    pub(crate) numbers: std::sync::Arc<dyn crate::ports::SessionNumbers>,
    pub(crate) joining: std::sync::Arc<crate::mirroring::create::Joining>,
}

impl Numbering {
    /// Picks a session number free in EC2 and in our claims, and claims it in
    /// the ledger; a conditional write decides between processes that pick the
    /// same number at once, and the loser picks again.
    pub(super) async fn claim_session_number(
        &self,
        request: &CreateRequest,
        sessions: &[MirrorSession],
        mut claimed: Vec<(u16, String)>,
    ) -> Result<SessionNumber, Failure> {
        let action_id = request.action_id.as_str();
        for _ in 0..NUMBER_ROUNDS {
            let choice = choose_session_number(request, sessions, &claimed)?;
            // Sessions we see in EC2 but hold no claim for (made by hand) use up room too.
            let unclaimed = sessions
                .iter()
                .filter(|s| !claimed.iter().any(|(n, _)| *n == s.session_number))
                .count();
            let limit = SESSIONS_PER_SOURCE_ENI.saturating_sub(unclaimed);
            match self
                .numbers
                .claim_number(request.source_eni.as_str(), choice.number, action_id, limit)
                .await
            {
                Ok(NumberClaim::Claimed) => return Ok(choice),
                Ok(NumberClaim::Refused(now_claimed)) => {
                    // Keep owners we knew of; the refusal lists numbers only.
                    claimed = now_claimed
                        .into_iter()
                        .map(|n| (n, String::from("another action")))
                        .collect();
                }
                Err(err) => return Err(Failure::from(err)),
            }
        }
        Err(Failure::refused(
            "SessionNumberContention",
            format!(
                "other actions kept taking the free session numbers on {}; nothing was created",
                request.source_eni
            ),
            true,
        ))
    }
}

impl Numbering {
    /// A guess at the session number, claimed beside a create's first
    /// reads instead of in a round after them: the requested number, else 1.
    /// Right for a new ENI (a launch's) and for any ENI without sessions;
    /// `guess_holds` tells from the reads whether to keep it. `None` when
    /// the claim was not granted (nothing is then held).
    pub(super) async fn guess_number(&self, request: &CreateRequest) -> Option<u16> {
        let number = request.session_number.unwrap_or(1);
        let claim = self
            .numbers
            .claim_number(
                request.source_eni.as_str(),
                number,
                &request.action_id,
                SESSIONS_PER_SOURCE_ENI,
            )
            .await;
        matches!(claim, Ok(NumberClaim::Claimed)).then_some(number)
    }

    /// Gives back a guessed number when the action itself was refused:
    /// unless someone holds the action now (a number claim is keyed by the
    /// action id, so theirs and ours are one), or it finished holding a
    /// mirror, whose number this is.
    pub(super) async fn undo_guess(&self, request: &CreateRequest, number: u16) {
        if self.joining.held(&request.action_id).await {
            return;
        }
        let released = self
            .numbers
            .release_number(request.source_eni.as_str(), number, &request.action_id)
            .await;
        if let Err(err) = released {
            tracing::warn!(action_id = %request.action_id, error = %err, "a guessed session number stays claimed; the sweep releases it");
        }
    }
}

/// Whether a guessed number, claimed before the reads, is the one the
/// reads would have chosen, with room for it: no session on the ENI without
/// a claim (the guess's claim could not count those), and no other claim of
/// this action (an interrupted earlier run's, which is adopted instead).
pub(super) fn guess_holds(
    number: u16,
    request: &CreateRequest,
    sessions: &[MirrorSession],
    claimed: &[(u16, String)],
) -> bool {
    let me = request.action_id.as_str();
    let another_of_mine = claimed.iter().any(|(n, holder)| holder == me && *n != number);
    let unclaimed = sessions
        .iter()
        .any(|s| !claimed.iter().any(|(n, _)| *n == s.session_number));
    let others: Vec<(u16, String)> = claimed.iter().filter(|(_, holder)| holder != me).cloned().collect();
    !another_of_mine
        && !unclaimed
        && matches!(choose_session_number(request, sessions, &others), Ok(choice) if choice.number == number)
}

#[derive(Debug, PartialEq, Eq)]
pub(in crate::mirroring) struct SessionNumber {
    pub(in crate::mirroring) number: u16,
    pub(in crate::mirroring) requested_was_taken: Option<u16>,
}

/// The requested number when free on the source ENI, else the lowest free one,
/// counting every session there (ours or not) and every number our ledger has
/// claimed there. A session or claim this same action made in an interrupted
/// earlier run is adopted rather than counted against it.
pub(in crate::mirroring) fn choose_session_number(
    request: &CreateRequest,
    sessions: &[MirrorSession],
    claimed: &[(u16, String)],
) -> Result<SessionNumber, Failure> {
    let own_session = sessions
        .iter()
        .find(|s| s.tag(TAG_ACTION_ID) == Some(request.action_id.as_str()))
        .map(|s| s.session_number);
    let own_claim = claimed
        .iter()
        .find(|(_, holder)| *holder == request.action_id)
        .map(|(n, _)| *n);
    if let Some(number) = own_session.or(own_claim) {
        return Ok(SessionNumber {
            number,
            requested_was_taken: None,
        });
    }
    let taken: HashSet<u16> = sessions
        .iter()
        .map(|s| s.session_number)
        .chain(claimed.iter().map(|(n, _)| *n))
        .collect();
    if taken.len() >= SESSIONS_PER_SOURCE_ENI {
        let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        let pending = taken.len().saturating_sub(sessions.len());
        let mut detail = format!("{} traffic mirror sessions ({})", sessions.len(), ids.join(", "));
        if pending > 0 {
            detail.push_str(&format!(" and {pending} being created by other actions"));
        }
        return Err(Failure::refused("TrafficMirrorSessionsPerInterfaceLimitExceeded",
            format!(
                "{} already has {detail}, the AWS limit of {SESSIONS_PER_SOURCE_ENI} per source interface; nothing was created",
                request.source_eni,
            ),
            false,
        ));
    }
    let lowest_free = || {
        (1..=MAX_SESSION_NUMBER)
            .find(|n| !taken.contains(n))
            .unwrap_or(MAX_SESSION_NUMBER)
    };
    Ok(match request.session_number {
        Some(n) if !taken.contains(&n) => SessionNumber {
            number: n,
            requested_was_taken: None,
        },
        Some(n) => SessionNumber {
            number: lowest_free(),
            requested_was_taken: Some(n),
        },
        None => SessionNumber {
            number: lowest_free(),
            requested_was_taken: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{EniId, FilterSpec, TargetSpec};

    fn request(number: Option<u16>) -> CreateRequest {
        CreateRequest {
            account: None,
            action_id: "act".into(),
            source_eni: EniId::parse("eni-0000000a").expect("valid"),
            target: TargetSpec::Eni(EniId::parse("eni-0000000b").expect("valid")),
            filter: FilterSpec::from_rules(Vec::new()),
            session_number: number,
            packet_length: None,
            virtual_network_id: None,
            description: None,
            reservation_id: None,
            instance_id: None,
            dry_run: false,
            refuse_if_source_is_target: false,
            from_policy: false,
            check_delivery: true,
            accountability: Default::default(),
            lifetime: None,
            placement: None,
        }
    }

    fn session(number: u16, action: Option<&str>) -> MirrorSession {
        MirrorSession {
            owner_id: None,
            id: format!("tms-{number:08x}"),
            source_eni: "eni-0000000a".into(),
            target_id: "tmt-1".into(),
            filter_id: "tmf-1".into(),
            session_number: number,
            virtual_network_id: None,
            tags: action
                .map(|a| vec![(TAG_ACTION_ID.to_owned(), a.to_owned())])
                .unwrap_or_default(),
        }
    }

    #[test]
    fn the_requested_number_is_used_when_free_else_the_lowest_free() {
        let chosen = choose_session_number(&request(Some(5)), &[session(1, None)], &[]).expect("room");
        assert_eq!(
            chosen,
            SessionNumber {
                number: 5,
                requested_was_taken: None
            }
        );
        let chosen =
            choose_session_number(&request(Some(1)), &[session(1, None), session(3, None)], &[]).expect("room");
        assert_eq!(
            chosen,
            SessionNumber {
                number: 2,
                requested_was_taken: Some(1)
            }
        );
        let chosen = choose_session_number(&request(None), &[session(2, None)], &[]).expect("room");
        assert_eq!(chosen.number, 1);
    }

    #[test]
    fn a_guessed_number_holds_only_where_the_reads_would_have_chosen_it() {
        let mine = |n: u16| (n, "act".to_owned());
        let theirs = |n: u16| (n, "other".to_owned());
        // (what it shows, the requested number, the guess, EC2's sessions, the claims read, holds)
        type Case = (
            &'static str,
            Option<u16>,
            u16,
            Vec<MirrorSession>,
            Vec<(u16, String)>,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("a new ENI", None, 1, vec![], vec![mine(1)], true),
            ("the read did not see the guess yet", None, 1, vec![], vec![], true),
            ("the requested number, free", Some(5), 5, vec![], vec![mine(5)], true),
            (
                "another action's mirror on number 2",
                None,
                1,
                vec![session(2, None)],
                vec![theirs(2), mine(1)],
                true,
            ),
            (
                "a session nobody claimed (made by hand)",
                None,
                1,
                vec![session(2, None)],
                vec![mine(1)],
                false,
            ),
            (
                "number 1 taken by a session of someone else's",
                None,
                1,
                vec![session(1, None)],
                vec![],
                false,
            ),
            (
                "an earlier run of this action claimed another",
                None,
                1,
                vec![],
                vec![mine(1), mine(3)],
                false,
            ),
        ];
        for (name, requested, guess, sessions, claimed, holds) in cases {
            assert_eq!(
                guess_holds(guess, &request(requested), &sessions, &claimed),
                holds,
                "{name}"
            );
        }
    }

    #[test]
    fn a_full_source_eni_is_refused_before_any_change() {
        let full = [session(1, None), session(2, None), session(3, None)];
        let failure = choose_session_number(&request(None), &full, &[]).expect_err("full");
        assert!(
            matches!(
                failure,
                Failure::Refused {
                    code: "TrafficMirrorSessionsPerInterfaceLimitExceeded",
                    retryable: false,
                    ..
                }
            ),
            "{failure}"
        );
    }

    #[test]
    fn a_session_of_the_same_action_is_adopted_not_counted() {
        let sessions = [session(1, None), session(2, None), session(9, Some("act"))];
        let chosen = choose_session_number(&request(Some(1)), &sessions, &[]).expect("adopted");
        assert_eq!(chosen.number, 9);
    }

    #[test]
    fn numbers_claimed_by_other_actions_count_and_an_own_claim_is_adopted() {
        let claimed = vec![(1, "other".to_owned()), (2, "another".to_owned())];
        let chosen = choose_session_number(&request(Some(2)), &[], &claimed).expect("room");
        assert_eq!(
            chosen,
            SessionNumber {
                number: 3,
                requested_was_taken: Some(2)
            }
        );
        let full = vec![(1, "x".to_owned()), (2, "y".to_owned()), (3, "z".to_owned())];
        let failure = choose_session_number(&request(None), &[], &full).expect_err("full");
        assert!(
            failure.to_string().contains("3 being created by other actions"),
            "{failure}"
        );
        let mine = vec![(1, "x".to_owned()), (7, "act".to_owned())];
        assert_eq!(
            choose_session_number(&request(None), &[], &mine).expect("own").number,
            7
        );
    }
}
