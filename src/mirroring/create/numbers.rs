//! Session numbers: the requested one when free on the source ENI, else the
//! lowest free one, claimed in the ledger so that two processes never pick
//! the same number, and within the AWS quota of sessions per source ENI.

use std::collections::HashSet;

use super::super::model::{CreateRequest, MAX_SESSION_NUMBER, SESSIONS_PER_SOURCE_ENI};
use super::super::{Failure, Mirroring, TAG_ACTION_ID};
use crate::ports::{MirrorSession, NumberClaim};

/// Rounds of "pick a number, claim it" before contention counts as a failure;
/// each lost round means another action took a number, and an ENI has three.
const NUMBER_ROUNDS: usize = 8;

impl Mirroring {
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
                .ledger
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
    use crate::mirroring::model::{EniId, FilterSpec, TargetSpec};

    fn request(number: Option<u16>) -> CreateRequest {
        CreateRequest {
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
        }
    }

    fn session(number: u16, action: Option<&str>) -> MirrorSession {
        MirrorSession {
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
