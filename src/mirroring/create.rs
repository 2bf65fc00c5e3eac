//! CreateTrafficMirroring: claim the action in the ledger, check the source
//! ENI's quota, join (or make) the shared target of the destination and the
//! shared filter of the rule set, pick a session number, create the session,
//! record everything. If a step fails, undo what this attempt made or joined,
//! newest first, and only that.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::{info, warn};

use super::model::{CreateRequest, FilterSpec, RuleSpec, TargetSpec, MAX_SESSION_NUMBER, SESSIONS_PER_SOURCE_ENI};
use super::release::Release;
use super::{
    aws_failure, client_token, jitter_millis, ledger_failure, now_seconds, Mirroring, Refused, TAG_ACTION_ID,
    TAG_RULE_SET,
};
use crate::contract::{ActionResult, CREATE};
use crate::ports::{
    ActionKind, AwsError, AwsResult, LedgerError, LedgerRecord, MirrorSession, MirrorTarget, NewSession, NumberClaim,
    RecordStatus, SessionQuery, SharedKey, Slot,
};

/// What this attempt has made, joined or claimed so far: exactly what a
/// rollback may delete or release.
#[derive(Debug, Default)]
struct Made {
    /// The action counts among the users of its target's claim item.
    joined_target: bool,
    /// The target this attempt created (as the claim item's maker).
    target_created: Option<String>,
    joined_filter: bool,
    /// The filter this attempt created (as the maker of its rule set's filter).
    filter_created: Option<String>,
    rule_ids: Vec<String>,
    number: Option<u16>,
    session_id: Option<String>,
    /// The session call failed in a way that may have made it anyway.
    session_outcome_unknown: bool,
}

/// What round 1 read, before the claim's answer was known.
struct Reads {
    sessions: AwsResult<Vec<MirrorSession>>,
    claimed: Result<Vec<(u16, String)>, LedgerError>,
    target_slot: Option<Result<Slot, LedgerError>>,
    filter_slot: Option<Result<Slot, LedgerError>>,
}

/// Everything a successful create produced, for the record and the answer.
struct Created {
    session: MirrorSession,
    target_id: String,
    filter_id: String,
    requested_number_taken: Option<u16>,
}

/// A shared resource as round 2 left it.
struct Resolved {
    joined: bool,
    /// What this call created as the maker (its rollback may delete it).
    created: Option<String>,
    rule_ids: Vec<String>,
    outcome: Result<String, ActionResult>,
}

impl Resolved {
    /// A target or filter the caller named: nothing joined, nothing made.
    fn given(id: String) -> Self {
        Resolved {
            joined: false,
            created: None,
            rule_ids: Vec::new(),
            outcome: Ok(id),
        }
    }
}

/// What the maker of a shared resource produced.
struct Making {
    created: Option<String>,
    rule_ids: Vec<String>,
    outcome: Result<String, ActionResult>,
}

/// How long a create waits for another invocation that is making the target
/// or filter it needs, before giving up with a retryable error.
const MAKER_WAIT: Duration = Duration::from_secs(20);
/// Rounds of "pick a number, claim it" before contention counts as a failure;
/// each lost round means another action took a number, and an ENI has three.
const NUMBER_ROUNDS: usize = 8;

impl Mirroring {
    /// Runs a create and announces its result (a dry run announces nothing).
    pub async fn create(&self, request: &CreateRequest) -> ActionResult {
        if let Err(refused) = self.check_allowed(request).await {
            if !request.dry_run {
                self.announce(&refused).await;
            }
            return refused;
        }
        if request.dry_run {
            return self.plan_create(request).await;
        }
        let (result, announced) = self.create_unannounced(request).await;
        if !announced {
            crate::deadline::winding_down(self.announce(&result)).await;
        }
        result
    }

    /// The create itself: four rounds of AWS calls on its critical path when
    /// the target and filter exist (claim and reads; number; session; ledger
    /// write and event), and one mutating EC2 call. Returns whether it announced.
    async fn create_unannounced(&self, request: &CreateRequest) -> (ActionResult, bool) {
        let now = now_seconds();
        let target_key = target_key(request);
        let filter_key = filter_key(request);
        let mut record = LedgerRecord {
            action_id: request.action_id.clone(),
            kind: Some(ActionKind::Create),
            status: Some(RecordStatus::Pending),
            source_eni: Some(request.source_eni.to_string()),
            target_eni: request.target.eni().map(ToString::to_string),
            target_key: target_key.as_ref().map(|k| k.name().to_owned()),
            target_id: match &request.target {
                TargetSpec::Existing(id) => Some(id.clone()),
                _ => None,
            },
            filter_key: filter_key.as_ref().map(|k| k.name().to_owned()),
            filter_id: match &request.filter {
                FilterSpec::Existing(id) => Some(id.clone()),
                FilterSpec::Rules { .. } => None,
            },
            reservation_id: request.reservation_id.clone(),
            instance_id: request.instance_id.clone(),
            created_at: now,
            updated_at: now,
            ..LedgerRecord::default()
        };
        // Round 1. The pending record is the intent: written before EC2
        // changes, it names the action whose tags and claims mark everything
        // made next. The reads and the ledger-only joins of the shared target
        // and filter do not depend on it, so they go along.
        let on_source = SessionQuery::SourceEni(request.source_eni.clone());
        let action_id = request.action_id.as_str();
        let mut claimed_record = record.clone();
        let (claim, sessions, claimed, target_slot, filter_slot) = tokio::join!(
            self.claim(&mut claimed_record, CREATE),
            self.ec2.sessions(&on_source),
            self.ledger.numbers(request.source_eni.as_str()),
            self.join(target_key.as_ref(), action_id, request.target.source_limit()),
            self.join(filter_key.as_ref(), action_id, usize::MAX),
        );
        match claim {
            Ok(()) => record = claimed_record,
            Err(refused) => {
                for (key, slot) in [(&target_key, &target_slot), (&filter_key, &filter_slot)] {
                    if let (Some(key), Some(slot)) = (key, slot) {
                        self.undo_join(key, action_id, &refused, slot).await;
                    }
                }
                return (refused.answer(), false);
            }
        }
        let joined = |slot: &Option<Result<Slot, LedgerError>>| matches!(slot, Some(Ok(Slot::Joined(_) | Slot::Make)));
        let mut made = Made {
            joined_target: joined(&target_slot),
            joined_filter: joined(&filter_slot),
            ..Made::default()
        };
        let reads = Reads {
            sessions,
            claimed,
            target_slot,
            filter_slot,
        };
        let outcome = self.create_steps(request, record.attempt, &mut made, reads).await;
        match outcome {
            Ok(created) => self.finish(request, record, made, created).await,
            Err(failure) => (self.roll_back(record, made, failure).await, false),
        }
    }

    async fn join(&self, key: Option<&SharedKey>, action_id: &str, limit: usize) -> Option<Result<Slot, LedgerError>> {
        match key {
            Some(key) => Some(self.first_join(key, action_id, limit, None).await),
            None => None,
        }
    }

    /// Joining is keyed by the action id, so a join made by an action that
    /// someone else holds right now is shared with them and must be left
    /// alone. It is undone only when nobody holds the action: it finished
    /// (and the join made us the maker of something no longer needed), or
    /// the claim itself failed and the ledger shows no holder.
    async fn undo_join(&self, key: &SharedKey, action_id: &str, refused: &Refused, slot: &Result<Slot, LedgerError>) {
        let undo = match refused {
            Refused::InProgress(_) => false,
            Refused::Finished(_) => matches!(slot, Ok(Slot::Make)),
            Refused::LedgerUnavailable(_) => {
                matches!(slot, Ok(Slot::Make | Slot::Joined(_))) && !self.held(action_id).await
            }
        };
        if undo {
            if let Err(err) = self.ledger.leave_shared(key, action_id).await {
                warn!(action_id, error = %err, "could not leave the users of a shared {}", key.noun());
            }
        }
    }

    /// Whether a ledger record of the action may hold resources or claims.
    pub(crate) async fn held(&self, action_id: &str) -> bool {
        matches!(self.ledger.get(action_id).await, Ok(Some(record))
            if record.status.is_some_and(|s| matches!(s, RecordStatus::Pending | RecordStatus::Active | RecordStatus::Removing)))
    }

    /// A maker may take as long as its invocation runs, and the action lease
    /// outlasts any invocation (the template sets it to the function timeout
    /// and a minute), so a maker that is still working keeps its claim.
    fn maker_lease_seconds(&self) -> u64 {
        self.lease_seconds
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

        // Round 2: the number, the target and the filter do not depend on
        // each other; the last two are usually joined already in round 1.
        let (number, target, filter) = tokio::join!(
            self.claim_session_number(request, &sessions, claimed),
            self.resolve_target(request, attempt, reads.target_slot),
            self.resolve_filter(request, attempt, reads.filter_slot),
        );
        made.joined_target = target.joined;
        made.target_created = target.created;
        made.joined_filter = filter.joined;
        made.filter_created = filter.created;
        made.rule_ids = filter.rule_ids;
        if let Ok(number) = &number {
            made.number = Some(number.number);
        }
        let session_number = number?;
        let target_id = target.outcome?;
        let filter_id = filter.outcome?;

        // Round 3: the session, the one mutating EC2 call most creates make.
        let tags = self.tags_for(
            &request.action_id,
            request.reservation_id.as_deref(),
            request.instance_id.as_deref(),
        );
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
        let session = match self.ec2.create_session(&new_session, &tags, &session_token).await {
            Ok(session) => session,
            Err(err) => {
                // Cut off or failed in transit, EC2 may have made it all the same.
                made.session_outcome_unknown = err.kind == crate::ports::ErrorKind::Transient;
                let ask_again = async {
                    let session = self.ec2.create_session(&new_session, &tags, &session_token).await?;
                    Ok(session.id)
                };
                made.session_id = recover_made(&err, "session", ask_again).await;
                return Err(fail("creating the traffic mirror session", &err));
            }
        };
        made.session_id = Some(session.id.clone());
        Ok(Created {
            session,
            target_id,
            filter_id,
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

    async fn resolve_target(
        &self,
        request: &CreateRequest,
        attempt: u32,
        first: Option<Result<Slot, LedgerError>>,
    ) -> Resolved {
        let Some(key) = target_key(request) else {
            // The caller's own target: used as it is, never joined or deleted.
            return Resolved::given(request.target.to_string());
        };
        let limit = request.target.source_limit();
        let first = self.first_join(&key, &request.action_id, limit, first).await;
        self.resolve_shared(&request.action_id, &key, limit, first, || {
            self.make_target(request, attempt)
        })
        .await
    }

    async fn resolve_filter(
        &self,
        request: &CreateRequest,
        attempt: u32,
        first: Option<Result<Slot, LedgerError>>,
    ) -> Resolved {
        let (rules, name) = match &request.filter {
            FilterSpec::Rules { rules, key } => (rules, key),
            // The caller's own filter: used as it is, never joined or deleted.
            FilterSpec::Existing(id) => return Resolved::given(id.clone()),
        };
        let key = SharedKey::Filter(name.clone());
        let first = self.first_join(&key, &request.action_id, usize::MAX, first).await;
        self.resolve_shared(&request.action_id, &key, usize::MAX, first, || {
            self.make_filter(request, attempt, name, rules)
        })
        .await
    }

    /// The answer of round 1's join, or a join now if round 1 made none.
    async fn first_join(
        &self,
        key: &SharedKey,
        action_id: &str,
        limit: usize,
        first: Option<Result<Slot, LedgerError>>,
    ) -> Result<Slot, LedgerError> {
        match first {
            Some(slot) => slot,
            None => {
                self.ledger
                    .join_shared(key, action_id, limit.min(i64::MAX as usize), self.maker_lease_seconds())
                    .await
            }
        }
    }

    /// Uses the shared resource the first join found, makes it when this
    /// action is its maker, or waits while another invocation makes it.
    async fn resolve_shared<F, Fut>(
        &self,
        action_id: &str,
        key: &SharedKey,
        limit: usize,
        first: Result<Slot, LedgerError>,
        make: F,
    ) -> Resolved
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Making>,
    {
        let waited_since = Instant::now();
        let mut pause = Duration::from_millis(25);
        let mut slot = first;
        let refuse = |failure: ActionResult| Resolved {
            joined: false,
            created: None,
            rule_ids: Vec::new(),
            outcome: Err(failure),
        };
        let noun = key.noun();
        let name = key.name();
        loop {
            match slot {
                Err(err) => return refuse(ledger_failure(action_id, CREATE, &err)),
                Ok(Slot::Joined(id)) => {
                    return Resolved {
                        joined: true,
                        created: None,
                        rule_ids: Vec::new(),
                        outcome: Ok(id),
                    }
                }
                Ok(Slot::Make) => {
                    let making = make().await;
                    let outcome = match making.outcome {
                        Ok(id) => match self.ledger.shared_made(key, action_id, &id).await {
                            Ok(()) => Ok(id),
                            // Another action took over making it (our lease
                            // ran out): ours is rolled back, and a retry
                            // joins theirs.
                            Err(LedgerError::Aws(err)) if err.kind == crate::ports::ErrorKind::ConditionFailed => {
                                Err(ActionResult::failure(
                                    action_id,
                                    CREATE,
                                    "MakerLeaseLost",
                                    format!(
                                        "making the {noun} of {name} took longer than this action's claim on it, \
                                         and another action took over; retry to use theirs"
                                    ),
                                    true,
                                ))
                            }
                            Err(err) => Err(ledger_failure(action_id, CREATE, &err)),
                        },
                        Err(failure) => Err(failure),
                    };
                    return Resolved {
                        joined: true,
                        created: making.created,
                        rule_ids: making.rule_ids,
                        outcome,
                    };
                }
                Ok(Slot::Full(users)) => {
                    return refuse(ActionResult::failure(
                        action_id,
                        CREATE,
                        "TrafficMirrorSourcesPerTargetLimitExceeded",
                        format!(
                            "the {noun} of {name} already serves {users} sessions, the AWS limit for an ENI \
                             target; nothing was created (use another target ENI, or a Network Load Balancer)"
                        ),
                        false,
                    ))
                }
                Ok(Slot::Busy)
                    if waited_since.elapsed() >= MAKER_WAIT
                        || crate::deadline::budget().is_some_and(|left| left < pause * 2) =>
                {
                    return refuse(ActionResult::failure(
                        action_id,
                        CREATE,
                        "SharedResourceBeingCreated",
                        format!("another invocation is still creating the {noun} of {name}; retry later"),
                        true,
                    ))
                }
                Ok(Slot::Busy) => {
                    // Jitter spreads the pollers so they do not arrive in step.
                    let jitter = Duration::from_millis(u64::from(jitter_millis(action_id, pause)));
                    tokio::time::sleep(pause + jitter).await;
                    pause = (pause * 2).min(Duration::from_millis(800));
                    slot = self
                        .ledger
                        .join_shared(key, action_id, limit.min(i64::MAX as usize), self.maker_lease_seconds())
                        .await;
                }
            }
        }
    }

    /// As the maker: adopt a target EC2 already has for the destination (the
    /// lowest id, so everyone converges), else create one.
    async fn make_target(&self, request: &CreateRequest, attempt: u32) -> Making {
        let action_id = request.action_id.as_str();
        let destination = &request.target;
        let fail = |context: &str, err: &AwsError| Making {
            created: None,
            rule_ids: Vec::new(),
            outcome: Err(aws_failure(action_id, CREATE, context, err)),
        };
        // A target of ours that the claim item does not name is on its way out
        // (a remove retired it and is deleting it) or was left by a maker that
        // died (the sweep deletes it): adopting it could race the delete. Only
        // someone else's target, or the one this action itself made in an
        // earlier run, is adopted.
        let adoptable = |t: &MirrorTarget| !self.owns(&t.tags) || t.tag(TAG_ACTION_ID) == Some(action_id);
        let existing = match self.ec2.targets_of(destination).await {
            Ok(targets) => {
                let candidates: Vec<MirrorTarget> = targets.into_iter().filter(adoptable).collect();
                pick_target(&candidates).map(|t| t.id.clone())
            }
            Err(err) => return fail(&format!("looking up the mirror target of {destination}"), &err),
        };
        if let Some(id) = existing {
            return Making {
                created: None,
                rule_ids: Vec::new(),
                outcome: Ok(id),
            };
        }
        let tags = self.tags_for(action_id, request.reservation_id.as_deref(), None);
        let token = client_token(action_id, attempt, "target");
        match self.ec2.create_target(destination, &tags, &token).await {
            Ok(id) => Making {
                created: Some(id.clone()),
                rule_ids: Vec::new(),
                outcome: Ok(id),
            },
            Err(err) => Making {
                created: recover_made(&err, "target", self.ec2.create_target(destination, &tags, &token)).await,
                ..fail(&format!("creating a mirror target for {destination}"), &err)
            },
        }
    }

    /// As the maker of a rule set's filter: the filter, then its rules; the
    /// others wait until all rules are in, so no session ever uses a filter
    /// that mirrors less than it asked for.
    async fn make_filter(&self, request: &CreateRequest, attempt: u32, name: &str, rules: &[RuleSpec]) -> Making {
        let action_id = request.action_id.as_str();
        let fail = |context: &str, err: &AwsError| aws_failure(action_id, CREATE, context, err);
        let mut tags = self.tags_for(action_id, None, None);
        tags.push((TAG_RULE_SET.to_owned(), name.to_owned()));
        let token = client_token(action_id, attempt, "filter");
        let description = format!("traffic-mirroring rule set {name} ({} rules)", rules.len());
        let filter_id = match self.ec2.create_filter(&description, &tags, &token).await {
            Ok(id) => id,
            Err(err) => {
                return Making {
                    created: recover_made(&err, "filter", self.ec2.create_filter(&description, &tags, &token)).await,
                    rule_ids: Vec::new(),
                    outcome: Err(fail("creating the traffic mirror filter", &err)),
                }
            }
        };
        let rule_calls = rules.iter().map(|rule| {
            let step = format!("rule/{}/{}", rule.direction.as_str(), rule.rule_number);
            let token = client_token(action_id, attempt, &step);
            let filter_id = filter_id.clone();
            async move { self.ec2.create_filter_rule(&filter_id, rule, &token).await }
        });
        let mut rule_ids = Vec::new();
        let mut first_error = None;
        for outcome in join_all(rule_calls).await {
            match outcome {
                Ok(id) => rule_ids.push(id),
                Err(err) => first_error = first_error.or(Some(err)),
            }
        }
        let outcome = match first_error {
            Some(err) => Err(fail("creating the filter rules", &err)),
            None => Ok(filter_id.clone()),
        };
        Making {
            created: Some(filter_id),
            rule_ids,
            outcome,
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
        let result = success_result(request, &created, &made);
        record.status = Some(RecordStatus::Active);
        record.target_id = Some(created.target_id.clone());
        record.target_created = made.target_created.is_some();
        record.filter_id = Some(created.filter_id.clone());
        record.rule_ids = made.rule_ids.clone();
        record.session_id = Some(session.id.clone());
        record.session_number = Some(session.session_number);
        record.virtual_network_id = session.virtual_network_id;
        record.result = Some(result.clone());
        record.updated_at = now_seconds();
        // Round 4: the record and the event together (see `announce`).
        let (saved, ()) = crate::deadline::winding_down(async {
            tokio::join!(self.ledger.save(&mut record), self.announce(&result))
        })
        .await;
        if let Err(err) = saved {
            // A session the ledger does not know could never be torn down by us.
            let failure = ledger_failure(&request.action_id, CREATE, &err);
            let failure = self.roll_back(record, made, failure).await;
            crate::deadline::winding_down(self.announce(&failure)).await;
            return (failure, true);
        }
        info!(action_id = %request.action_id, session_id = %session.id, "mirroring created");
        (result, true)
    }

    /// Undoes what `made` lists, newest first, then records the outcome;
    /// with the time forward work kept back for it.
    async fn roll_back(&self, record: LedgerRecord, made: Made, failure: ActionResult) -> ActionResult {
        crate::deadline::winding_down(self.roll_back_now(record, made, failure)).await
    }

    async fn roll_back_now(&self, mut record: LedgerRecord, made: Made, mut failure: ActionResult) -> ActionResult {
        let leftovers = self.undo(&record, &made).await;
        record.status = Some(if leftovers.is_empty() {
            RecordStatus::Failed
        } else {
            RecordStatus::RollbackIncomplete
        });
        let left = |id: Option<String>| id.filter(|id| leftovers.contains(id));
        record.session_id = left(made.session_id);
        record.filter_id = left(made.filter_created);
        record.target_id = left(made.target_created);
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
        if let Err(err) = self.ledger.save(&mut record).await {
            // Left pending: the sweep takes it over after its lease and undoes what it finds.
            warn!(action_id = %record.action_id, error = %err, "could not record the failed create");
        }
        failure
    }

    /// Deletes the session this attempt made, then lets go of its number and
    /// of its places among the users of the shared target and filter (which
    /// deletes them if it was their last user and we made them). Returns the
    /// ids it could not delete.
    async fn undo(&self, record: &LedgerRecord, made: &Made) -> Vec<String> {
        let mut sessions: Vec<String> = made.session_id.iter().cloned().collect();
        if made.session_outcome_unknown {
            // Sessions are never shared, so every one carrying this action's tag is this action's to undo.
            let tagged = SessionQuery::Tag(TAG_ACTION_ID.to_owned(), record.action_id.clone());
            match self.ec2.sessions(&tagged).await {
                Ok(found) => {
                    sessions.extend(found.into_iter().map(|s| s.id));
                    sessions.sort();
                    sessions.dedup();
                }
                Err(err) => {
                    warn!(action_id = %record.action_id, error = %err, "rollback: could not look for a session made in transit");
                    return vec![format!("a session of action {} that may exist", record.action_id)];
                }
            }
        }
        for id in &sessions {
            if let Err(err) = self.ec2.delete_session(id).await {
                warn!(session_id = %id, error = %err, "rollback: session not deleted");
                // The session may still stand: keep its claims until the sweep or a retry.
                return vec![id.clone()];
            }
        }
        let release = Release {
            action_id: &record.action_id,
            source_eni: record.source_eni.as_deref(),
            number: made.number,
            target: record
                .target_key
                .clone()
                .filter(|_| made.joined_target)
                .map(SharedKey::Target),
            target_created: made.target_created.as_deref(),
            filter: record
                .filter_key
                .clone()
                .filter(|_| made.joined_filter)
                .map(SharedKey::Filter),
            filter_created: made.filter_created.as_deref(),
        };
        match self.release(&release).await {
            Ok(released) => released.left(),
            Err(err) => {
                warn!(action_id = %record.action_id, error = %err, "rollback: claims not released");
                made.target_created
                    .iter()
                    .chain(&made.filter_created)
                    .cloned()
                    .collect()
            }
        }
    }
}

/// How long a failed create may spend learning what an abandoned call made:
/// the rest of the winding-down reserve is the rollback's.
const RECOVERY_TIME: Duration = Duration::from_secs(2);

/// A create that failed in doubt (cut off by the deadline in flight, or lost
/// in transit) may have made its resource all the same, and nobody but this
/// action could ever know its id. Asked again with the same client token,
/// EC2 names the resource it made (or makes it now, and a late original is
/// then answered with the same one), so that the rollback deletes it. What
/// stays unknown carries our tags, and the sweep deletes it.
async fn recover_made(
    err: &AwsError,
    noun: &str,
    ask_again: impl Future<Output = AwsResult<String>>,
) -> Option<String> {
    if !err.in_doubt {
        return None;
    }
    let asked = crate::deadline::winding_down(tokio::time::timeout(RECOVERY_TIME, ask_again)).await;
    match asked {
        Ok(Ok(id)) => {
            info!(resource = %id, "a {noun} whose create was cut off is found, and will be rolled back");
            Some(id)
        }
        Ok(Err(again)) => {
            warn!(error = %again, "a {noun} whose create was cut off could not be looked up; the sweep deletes it if it exists");
            None
        }
        Err(_) => {
            warn!(
                "a {noun} whose create was cut off could not be looked up in time; the sweep deletes it if it exists"
            );
            None
        }
    }
}

fn target_key(request: &CreateRequest) -> Option<SharedKey> {
    request
        .target
        .claim_name()
        .map(|name| SharedKey::Target(name.to_owned()))
}

fn filter_key(request: &CreateRequest) -> Option<SharedKey> {
    match &request.filter {
        FilterSpec::Rules { key, .. } => Some(SharedKey::Filter(key.clone())),
        FilterSpec::Existing(_) => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct SessionNumber {
    pub(super) number: u16,
    pub(super) requested_was_taken: Option<u16>,
}

/// The requested number when free on the source ENI, else the lowest free one,
/// counting every session there (ours or not) and every number our ledger has
/// claimed there. A session or claim this same action made in an interrupted
/// earlier run is adopted rather than counted against it.
pub(super) fn choose_session_number(
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
pub(super) fn pick_target(targets: &[MirrorTarget]) -> Option<&MirrorTarget> {
    targets.iter().min_by(|a, b| a.id.cmp(&b.id))
}

fn success_result(request: &CreateRequest, created: &Created, made: &Made) -> ActionResult {
    let session = &created.session;
    let fate = |made_now: bool, joined: bool| match (made_now, joined) {
        (true, _) => "created",
        (false, true) => "shared",
        (false, false) => "given",
    };
    let rules = match &request.filter {
        FilterSpec::Rules { rules, .. } => {
            format!(" with {} rule{}", rules.len(), if rules.len() == 1 { "" } else { "s" })
        }
        FilterSpec::Existing(_) => String::new(),
    };
    let mut info = format!(
        "mirroring {} to {} ({}): session {} (number {}), filter {}{rules} ({}), target {} ({})",
        request.source_eni,
        request.target,
        request.target.kind(),
        session.id,
        session.session_number,
        created.filter_id,
        fate(made.filter_created.is_some(), made.joined_filter),
        created.target_id,
        fate(made.target_created.is_some(), made.joined_target),
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
            target: TargetSpec::Eni(EniId::parse("eni-0000000b").expect("valid")),
            filter: FilterSpec::from_rules(Vec::new()),
            session_number: number,
            packet_length: None,
            virtual_network_id: None,
            description: None,
            reservation_id: None,
            instance_id: None,
            dry_run: false,
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
            load_balancer: None,
            tags: Vec::new(),
        };
        let targets = [target("tmt-b"), target("tmt-a")];
        assert_eq!(pick_target(&targets).map(|t| t.id.as_str()), Some("tmt-a"));
    }
}
