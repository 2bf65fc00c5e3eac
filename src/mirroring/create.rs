//! CreateTrafficMirroring: claim the action in the ledger, check the source
//! ENI's quota, reuse or create the target, create the filter and its rules,
//! pick a session number, create the session, record everything. If a step
//! fails, undo what this attempt made, newest first, and only that.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::{info, warn};

use super::model::{CreateRequest, MAX_SESSION_NUMBER, SESSIONS_PER_SOURCE_ENI, SOURCES_PER_ENI_TARGET};
use super::release::Release;
use super::{
    aws_failure, client_token, is_ours, jitter_millis, ledger_failure, now_seconds, ownership_tags, Mirroring, Refused,
    TAG_ACTION_ID,
};
use crate::contract::{ActionResult, CREATE};
use crate::ports::{
    ActionKind, AwsError, AwsResult, LedgerError, LedgerRecord, MirrorSession, MirrorTarget, NewSession, NumberClaim,
    RecordStatus, SessionQuery, TargetSlot,
};

/// What this attempt has made or claimed so far: exactly what a rollback may
/// delete or release.
#[derive(Debug, Default)]
struct Made {
    target_id: Option<String>,
    /// The action counts among the users of its target ENI's claim item.
    joined_target: bool,
    number: Option<u16>,
    filter_id: Option<String>,
    rule_ids: Vec<String>,
    session_id: Option<String>,
}

/// What round 1 read, before the claim's answer was known.
struct Reads {
    sessions: AwsResult<Vec<MirrorSession>>,
    claimed: Result<Vec<(u16, String)>, LedgerError>,
    slot: Result<TargetSlot, LedgerError>,
}

/// Everything a successful create produced, for the record and the answer.
struct Created {
    session: MirrorSession,
    target_id: String,
    target_created: bool,
    requested_number_taken: Option<u16>,
}

/// How long a create waits for another invocation that is making the target
/// it needs, before giving up with a retryable error.
const TARGET_WAIT: Duration = Duration::from_secs(20);
/// How long the maker of a target may take before another may take over
/// (shorter when the action lease is, so that tests can let it run out).
const MAKER_LEASE_SECONDS: u64 = 60;
/// Rounds of "pick a number, claim it" before contention counts as a failure;
/// each lost round means another action took a number, and an ENI has three.
const NUMBER_ROUNDS: usize = 8;

impl Mirroring {
    /// Runs a create and announces its result.
    pub async fn create(&self, request: &CreateRequest) -> ActionResult {
        let (result, announced) = self.create_unannounced(request).await;
        if !announced {
            self.announce(&result).await;
        }
        result
    }

    /// The create itself: four rounds of AWS calls on its critical path when
    /// the target exists (claim and reads; number and filter; rules and
    /// session; ledger write and event). Returns whether it announced.
    async fn create_unannounced(&self, request: &CreateRequest) -> (ActionResult, bool) {
        let now = now_seconds();
        let mut record = LedgerRecord {
            action_id: request.action_id.clone(),
            kind: Some(ActionKind::Create),
            status: Some(RecordStatus::Pending),
            source_eni: Some(request.source_eni.to_string()),
            target_eni: Some(request.target_eni.to_string()),
            reservation_id: request.reservation_id.clone(),
            instance_id: request.instance_id.clone(),
            created_at: now,
            updated_at: now,
            ..LedgerRecord::default()
        };
        // Round 1. The pending record is the intent: written before EC2
        // changes, it names the action whose tags and claims mark everything
        // made next. The reads and the ledger-only join of the target do not
        // depend on it, so they go along.
        let on_source = SessionQuery::SourceEni(request.source_eni.clone());
        let (claim, sessions, claimed, slot) = tokio::join!(
            self.claim(&record, CREATE),
            self.ec2.sessions(&on_source),
            self.ledger.numbers(request.source_eni.as_str()),
            self.ledger.join_target(
                request.target_eni.as_str(),
                &request.action_id,
                SOURCES_PER_ENI_TARGET,
                self.maker_lease_seconds(),
            )
        );
        match claim {
            Ok(attempt) => record.attempt = attempt,
            Err(refused) => {
                // Joining is keyed by the action id, so this join is shared
                // with any invocation holding the action right now and must be
                // left alone. It is undone only when nobody holds the action:
                // it finished (and the join made us the maker of a target no
                // longer there), or the claim itself failed and the ledger
                // shows no holder.
                let undo = match &refused {
                    Refused::InProgress(_) => false,
                    Refused::Finished(_) => matches!(slot, Ok(TargetSlot::Make)),
                    Refused::LedgerUnavailable(_) => {
                        matches!(slot, Ok(TargetSlot::Make | TargetSlot::Joined(_)))
                            && !self.held(&request.action_id).await
                    }
                };
                if undo {
                    if let Err(err) = self
                        .ledger
                        .leave_target(request.target_eni.as_str(), &request.action_id)
                        .await
                    {
                        warn!(action_id = %request.action_id, error = %err, "could not leave the target's users");
                    }
                }
                return (refused.answer(), false);
            }
        }
        let mut made = Made {
            joined_target: matches!(slot, Ok(TargetSlot::Joined(_) | TargetSlot::Make)),
            ..Made::default()
        };
        let reads = Reads {
            sessions,
            claimed,
            slot,
        };
        let outcome = self.create_steps(request, record.attempt, &mut made, reads).await;
        match outcome {
            Ok(created) => self.finish(request, record, made, created).await,
            Err(failure) => (self.roll_back(record, made, failure).await, false),
        }
    }

    /// Whether a ledger record of the action may hold resources or claims.
    pub(crate) async fn held(&self, action_id: &str) -> bool {
        matches!(self.ledger.get(action_id).await, Ok(Some(record))
            if record.status.is_some_and(|s| matches!(s, RecordStatus::Pending | RecordStatus::Active | RecordStatus::Removing)))
    }

    fn maker_lease_seconds(&self) -> u64 {
        MAKER_LEASE_SECONDS.min(self.lease_seconds)
    }

    async fn create_steps(
        &self,
        request: &CreateRequest,
        attempt: u32,
        made: &mut Made,
        reads: Reads,
    ) -> Result<Created, ActionResult> {
        let fail = |context: &str, err: &AwsError| aws_failure(&request.action_id, CREATE, context, err);
        let source = request.source_eni.as_str();
        let sessions = reads
            .sessions
            .map_err(|e| fail(&format!("listing the sessions on {source}"), &e))?;
        let claimed = reads
            .claimed
            .map_err(|e| ledger_failure(&request.action_id, CREATE, &e))?;
        // A full source ENI fails here, before any change in EC2.
        choose_session_number(request, &sessions, &claimed)?;

        // Round 2: the number, the target (already joined, unless it must be
        // made or waited for) and the filter do not depend on each other.
        let tags = ownership_tags(&request.action_id, request.reservation_id.as_deref());
        let filter_token = client_token(&request.action_id, attempt, "filter");
        let filter_description = format!("traffic-mirroring {} -> {}", request.source_eni, request.target_eni);
        let (number, target, filter) = tokio::join!(
            self.claim_session_number(request, &sessions, claimed),
            self.resolve_target(request, attempt, reads.slot),
            self.ec2.create_filter(&filter_description, &tags, &filter_token)
        );
        let (joined, target_made, target) = target;
        made.joined_target = joined;
        made.target_id = target_made;
        if let Ok(number) = &number {
            made.number = Some(number.number);
        }
        if let Ok(filter_id) = &filter {
            made.filter_id = Some(filter_id.clone());
        }
        let session_number = number?;
        let target_id = target?;
        let filter_id = filter.map_err(|e| fail("creating the traffic mirror filter", &e))?;

        // Round 3: the rules and the session. A session may use a filter whose
        // rules are still being added (it mirrors nothing until they are), so
        // neither waits for the other; a failure of either rolls back both.
        let rule_calls = request.rules.iter().map(|rule| {
            let step = format!("rule/{}/{}", rule.direction.as_str(), rule.rule_number);
            let token = client_token(&request.action_id, attempt, &step);
            let filter_id = filter_id.clone();
            async move { self.ec2.create_filter_rule(&filter_id, rule, &token).await }
        });
        let new_session = NewSession {
            source_eni: request.source_eni.clone(),
            target_id: target_id.clone(),
            filter_id: filter_id.clone(),
            session_number: session_number.number,
            packet_length: request.packet_length,
            virtual_network_id: request.virtual_network_id,
            description: request.description.clone(),
        };
        let session_token = client_token(&request.action_id, attempt, "session");
        let (rules, session) = tokio::join!(
            join_all(rule_calls),
            self.ec2.create_session(&new_session, &tags, &session_token)
        );
        let mut first_rule_error = None;
        for outcome in rules {
            match outcome {
                Ok(rule_id) => made.rule_ids.push(rule_id),
                Err(err) => first_rule_error = first_rule_error.or(Some(err)),
            }
        }
        if let Ok(session) = &session {
            made.session_id = Some(session.id.clone());
        }
        let session = session.map_err(|e| fail("creating the traffic mirror session", &e))?;
        if let Some(err) = first_rule_error {
            return Err(fail("creating the filter rules", &err));
        }
        Ok(Created {
            session,
            target_id,
            target_created: made.target_id.is_some(),
            requested_number_taken: session_number.requested_was_taken,
        })
    }

    /// Picks a session number free in EC2 and in our claims, and claims it in
    /// the ledger; a conditional write decides between processes that pick the
    /// same number at once, and the loser picks again.
    async fn claim_session_number(
        &self,
        request: &CreateRequest,
        sessions: &[MirrorSession],
        mut claimed: Vec<(u16, String)>,
    ) -> Result<SessionNumber, ActionResult> {
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
                Err(err) => return Err(ledger_failure(action_id, CREATE, &err)),
            }
        }
        Err(ActionResult::failure(
            action_id,
            CREATE,
            "SessionNumberContention",
            format!(
                "other actions kept taking the free session numbers on {}; nothing was created",
                request.source_eni
            ),
            true,
        ))
    }

    /// Uses the target the first join found, makes it when this action is
    /// its maker, or waits while another invocation makes it.
    /// Returns (joined the claim item, the target this call created, outcome).
    async fn resolve_target(
        &self,
        request: &CreateRequest,
        attempt: u32,
        first: Result<TargetSlot, LedgerError>,
    ) -> (bool, Option<String>, Result<String, ActionResult>) {
        let action_id = request.action_id.as_str();
        let eni = request.target_eni.as_str();
        let waited_since = Instant::now();
        let mut pause = Duration::from_millis(25);
        let mut slot = first;
        let refuse = |code: &str, message: String, retryable: bool| {
            let failure = ActionResult::failure(action_id, CREATE, code, message, retryable);
            (false, None, Err(failure))
        };
        loop {
            match slot {
                Err(err) => return (false, None, Err(ledger_failure(action_id, CREATE, &err))),
                Ok(TargetSlot::Joined(target_id)) => return (true, None, Ok(target_id)),
                Ok(TargetSlot::Make) => return self.make_target(request, attempt).await,
                Ok(TargetSlot::Full(users)) => {
                    return refuse(
                        "TrafficMirrorSourcesPerTargetLimitExceeded",
                        format!(
                            "the mirror target of {eni} already serves {users} sessions, the AWS limit for an \
                             ENI target; nothing was created (use another target ENI)"
                        ),
                        false,
                    )
                }
                Ok(TargetSlot::Busy) if waited_since.elapsed() >= TARGET_WAIT => {
                    return refuse(
                        "TargetBeingCreated",
                        format!("another invocation is still creating the mirror target of {eni}; retry later"),
                        true,
                    )
                }
                Ok(TargetSlot::Busy) => {
                    // Jitter spreads the pollers so they do not arrive in step.
                    let jitter = Duration::from_millis(u64::from(jitter_millis(action_id, pause)));
                    tokio::time::sleep(pause + jitter).await;
                    pause = (pause * 2).min(Duration::from_millis(800));
                    slot = self
                        .ledger
                        .join_target(eni, action_id, SOURCES_PER_ENI_TARGET, self.maker_lease_seconds())
                        .await;
                }
            }
        }
    }

    /// As the maker: adopt a target EC2 already has for the ENI (the lowest
    /// id, so everyone converges), else create one; then publish it in the
    /// claim item for the others.
    async fn make_target(
        &self,
        request: &CreateRequest,
        attempt: u32,
    ) -> (bool, Option<String>, Result<String, ActionResult>) {
        let action_id = request.action_id.as_str();
        let eni = &request.target_eni;
        let fail = |context: &str, err: &AwsError| aws_failure(action_id, CREATE, context, err);
        // A target of ours that the claim item does not name is on its way out
        // (a remove retired it and is deleting it) or was left by a maker that
        // died (the sweep deletes it): adopting it could race the delete. Only
        // someone else's target, or the one this action itself made in an
        // earlier run, is adopted.
        let adoptable = |t: &MirrorTarget| !is_ours(&t.tags) || t.tag(TAG_ACTION_ID) == Some(action_id);
        let existing = match self.ec2.targets_for_eni(eni).await {
            Ok(targets) => {
                let candidates: Vec<MirrorTarget> = targets.into_iter().filter(adoptable).collect();
                pick_target(&candidates).map(|t| t.id.clone())
            }
            Err(err) => {
                return (
                    true,
                    None,
                    Err(fail(&format!("looking up the mirror target of {eni}"), &err)),
                )
            }
        };
        let mut created = None;
        let target_id = match existing {
            Some(id) => id,
            None => {
                let tags = ownership_tags(action_id, request.reservation_id.as_deref());
                let token = client_token(action_id, attempt, "target");
                match self.ec2.create_target(eni, &tags, &token).await {
                    Ok(id) => {
                        created = Some(id.clone());
                        id
                    }
                    Err(err) => {
                        return (
                            true,
                            None,
                            Err(fail(&format!("creating a mirror target for {eni}"), &err)),
                        )
                    }
                }
            }
        };
        match self.ledger.target_made(eni.as_str(), action_id, &target_id).await {
            Ok(()) => (true, created, Ok(target_id)),
            Err(err) => (true, created, Err(ledger_failure(action_id, CREATE, &err))),
        }
    }

    async fn finish(
        &self,
        request: &CreateRequest,
        mut record: LedgerRecord,
        made: Made,
        created: Created,
    ) -> (ActionResult, bool) {
        let session = &created.session;
        let result = success_result(request, &created, made.rule_ids.len());
        record.status = Some(RecordStatus::Active);
        record.target_id = Some(created.target_id.clone());
        record.target_created = created.target_created;
        record.filter_id = made.filter_id.clone();
        record.rule_ids = made.rule_ids.clone();
        record.session_id = Some(session.id.clone());
        record.session_number = Some(session.session_number);
        record.virtual_network_id = session.virtual_network_id;
        record.result = Some(result.clone());
        record.updated_at = now_seconds();
        // Round 4: the record and the event together (see `announce`).
        let (saved, ()) = tokio::join!(self.ledger.save(&record), self.announce(&result));
        if let Err(err) = saved {
            // A session the ledger does not know could never be torn down by us.
            let failure = ledger_failure(&request.action_id, CREATE, &err);
            let failure = self.roll_back(record, made, failure).await;
            self.announce(&failure).await;
            return (failure, true);
        }
        info!(action_id = %request.action_id, session_id = %session.id, "mirroring created");
        (result, true)
    }

    /// Deletes what `made` lists, newest first, then records the outcome.
    async fn roll_back(&self, mut record: LedgerRecord, made: Made, mut failure: ActionResult) -> ActionResult {
        let leftovers = self.undo(&record, &made).await;
        record.status = Some(if leftovers.is_empty() {
            RecordStatus::Failed
        } else {
            RecordStatus::RollbackIncomplete
        });
        record.session_id = made.session_id.filter(|id| leftovers.contains(id));
        record.filter_id = made.filter_id.filter(|id| leftovers.contains(id));
        record.target_id = made.target_id.filter(|id| leftovers.contains(id));
        record.target_created = record.target_id.is_some();
        record.rule_ids.clear();
        // EC2 remembers client tokens even for deleted resources: the next try needs new ones.
        record.attempt += 1;
        if leftovers.is_empty() {
            failure.info_message = "nothing was left behind: everything this action created was deleted".into();
        } else {
            failure.error_message.push_str(&format!(
                "; the rollback could not delete {} (recorded in the ledger for cleanup)",
                leftovers.join(", ")
            ));
        }
        record.result = Some(failure.clone());
        record.updated_at = now_seconds();
        if let Err(err) = self.ledger.save(&record).await {
            warn!(action_id = %record.action_id, error = %err, "could not record the failed create");
        }
        failure
    }

    /// Deletes what this attempt made, newest first, and releases what it
    /// claimed. Returns the ids it could not delete.
    async fn undo(&self, record: &LedgerRecord, made: &Made) -> Vec<String> {
        let mut leftovers = Vec::new();
        if let Some(id) = &made.session_id {
            if let Err(err) = self.ec2.delete_session(id).await {
                warn!(session_id = %id, error = %err, "rollback: session not deleted");
                leftovers.push(id.clone());
            }
        }
        // Deleting the filter deletes its rules; it cannot go while the session stands.
        if let Some(id) = &made.filter_id {
            let session_gone = leftovers.is_empty();
            if !session_gone || self.ec2.delete_filter(id).await.is_err() {
                warn!(filter_id = %id, "rollback: filter not deleted");
                leftovers.push(id.clone());
            }
        }
        if !leftovers.is_empty() {
            // The session may still stand: keep its claims until the sweep or a retry.
            return leftovers;
        }
        let release = Release {
            action_id: &record.action_id,
            source_eni: record.source_eni.as_deref(),
            number: made.number,
            target_eni: record.target_eni.as_deref().filter(|_| made.joined_target),
            target_created: made.target_id.as_deref(),
        };
        match self.release(&release).await {
            Ok(released) => leftovers.extend(released.target_left),
            Err(err) => {
                warn!(action_id = %record.action_id, error = %err, "rollback: claims not released");
                leftovers.extend(made.target_id.clone());
            }
        }
        leftovers
    }
}

#[derive(Debug, PartialEq, Eq)]
struct SessionNumber {
    number: u16,
    requested_was_taken: Option<u16>,
}

/// The requested number when free on the source ENI, else the lowest free one,
/// counting every session there (ours or not) and every number our ledger has
/// claimed there. A session or claim this same action made in an interrupted
/// earlier run is adopted rather than counted against it.
fn choose_session_number(
    request: &CreateRequest,
    sessions: &[MirrorSession],
    claimed: &[(u16, String)],
) -> Result<SessionNumber, ActionResult> {
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
        return Err(ActionResult::failure(
            &request.action_id,
            CREATE,
            "TrafficMirrorSessionsPerInterfaceLimitExceeded",
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

/// Several targets for one ENI can exist (made by hand or by a race); every
/// caller picks the same one, the lowest id, so they converge.
fn pick_target(targets: &[MirrorTarget]) -> Option<&MirrorTarget> {
    targets.iter().min_by(|a, b| a.id.cmp(&b.id))
}

fn success_result(request: &CreateRequest, created: &Created, rule_count: usize) -> ActionResult {
    let session = &created.session;
    let target_note = if created.target_created { "created" } else { "reused" };
    let mut info = format!(
        "mirroring {} to {}: session {} (number {}), filter {} with {} rule{}, target {} ({})",
        request.source_eni,
        request.target_eni,
        session.id,
        session.session_number,
        session.filter_id,
        rule_count,
        if rule_count == 1 { "" } else { "s" },
        created.target_id,
        target_note
    );
    if let Some(taken) = created.requested_number_taken {
        info.push_str(&format!(
            "; session number {taken} was already used on {}, so {} was allocated",
            request.source_eni, session.session_number
        ));
    }
    ActionResult {
        action_id: request.action_id.clone(),
        action_type: CREATE.to_owned(),
        success: true,
        info_message: info,
        session_id: session.id.clone(),
        traffic_mirror_target_id: Some(created.target_id.clone()),
        traffic_mirror_filter_id: Some(session.filter_id.clone()),
        session_number: Some(session.session_number),
        virtual_network_id: session.virtual_network_id,
        reservation_id: request.reservation_id.clone(),
        ..ActionResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirroring::model::EniId;

    fn request(number: Option<u16>) -> CreateRequest {
        CreateRequest {
            action_id: "act".into(),
            source_eni: EniId::parse("eni-0000000a").expect("valid"),
            target_eni: EniId::parse("eni-0000000b").expect("valid"),
            session_number: number,
            rules: Vec::new(),
            packet_length: None,
            virtual_network_id: None,
            description: None,
            reservation_id: None,
            instance_id: None,
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
        assert_eq!(
            failure.error_code.as_deref(),
            Some("TrafficMirrorSessionsPerInterfaceLimitExceeded")
        );
        assert!(!failure.retryable);
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
            failure.error_message.contains("3 being created by other actions"),
            "{}",
            failure.error_message
        );
        let mine = vec![(1, "x".to_owned()), (7, "act".to_owned())];
        assert_eq!(
            choose_session_number(&request(None), &[], &mine).expect("own").number,
            7
        );
    }

    #[test]
    fn the_lowest_target_id_wins() {
        let target = |id: &str| MirrorTarget {
            id: id.into(),
            network_interface_id: None,
            tags: Vec::new(),
        };
        let targets = [target("tmt-b"), target("tmt-a")];
        assert_eq!(pick_target(&targets).map(|t| t.id.as_str()), Some("tmt-a"));
    }
}
