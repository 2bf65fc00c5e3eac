//! CreateTrafficMirroring: claim the action in the ledger, check the source
//! ENI's quota, join (or make) the shared target of the destination and the
//! shared filter of the rule set, pick a session number, create the session,
//! record everything. If a step fails, undo what this attempt made or joined,
//! newest first, and only that.
//!
//! This module holds the orchestration, the rounds of calls in order; the
//! protocol of shared targets and filters is in `shared`, session numbers
//! in `numbers`, and undoing a failed attempt in `rollback`.

mod allowed;
mod numbers;
pub mod placement;
pub mod plan;
mod renewal;
mod rollback;
mod shared;

use tracing::{info, warn};

pub(super) use numbers::choose_session_number;
pub use numbers::Numbering;
use numbers::{guess_holds, SessionNumber};
use rollback::recover_made;
pub(super) use shared::pick_target;
pub use shared::Joining;
use shared::MAKER_WAIT;
use shared::{filter_key, target_key};

use super::model::{mirror_end, rfc3339, CreateRequest, FilterSpec, TargetSpec};
use super::{accountability_tags, client_token, now_seconds, Failure, Refused, VALIDATION_ERROR};
use crate::contract::{ActionResult, CREATE};
use crate::ports::{
    ActionKind, AwsResult, LedgerError, LedgerRecord, MirrorSession, NewSession, RecordStatus, SessionQuery, Slot,
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
    /// The session number claimed on a guess beside the reads.
    guessed: Option<u16>,
    sessions: AwsResult<Vec<MirrorSession>>,
    /// Whether the source ENI is itself a mirror target (asked only by launches).
    source_is_target: AwsResult<bool>,
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

/// What a caller that listed EC2 already knows of a create's source (the
/// sweep: every session of the account, every target): the create then
/// does not read them again.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    /// Every session on the source ENI, anyone's.
    pub sessions_on_source: Vec<MirrorSession>,
    /// Whether the source ENI is itself a mirror target.
    pub source_is_target: bool,
}

/// CreateTrafficMirroring: a create, its rollback, and the renewal of a policy mirror that went.
pub struct Creates {
    pub(crate) instances: std::sync::Arc<dyn crate::ports::Instances>,
    pub(crate) numbers: std::sync::Arc<dyn crate::ports::SessionNumbers>,
    pub(crate) records: std::sync::Arc<dyn crate::ports::ActionRecords>,
    pub(crate) sessions: std::sync::Arc<dyn crate::ports::Sessions>,
    pub(crate) targets: std::sync::Arc<dyn crate::ports::Targets>,
    pub(crate) deployment: std::sync::Arc<crate::mirroring::Deployment>,
    pub(crate) facts: std::sync::Arc<crate::mirroring::facts::InstanceFacts>,
    pub(crate) joining: std::sync::Arc<crate::mirroring::create::Joining>,
    pub(crate) numbering: std::sync::Arc<crate::mirroring::create::Numbering>,
    pub(crate) planner: std::sync::Arc<plan::Planner>,
    pub(crate) placement: std::sync::Arc<placement::Placement>,
    pub(crate) sharing: std::sync::Arc<crate::mirroring::release::Sharing>,
}

impl Creates {
    /// Runs a create and announces its result (a dry run announces nothing).
    pub async fn create(&self, request: &CreateRequest, listed: Option<&Listed>) -> ActionResult {
        let accountable = &request.accountability;
        let checked = match self.mirror_end_of(request) {
            Ok(ends_at) => self.check_allowed(request).await.map(|()| ends_at),
            Err(refused) => Err(refused),
        };
        // A create to a pool goes on as a create to the member it is placed on.
        let placed;
        let (checked, request) = match (checked, &request.target) {
            (Ok(ends_at), TargetSpec::Pool(pool)) => {
                match self.placement.place(request, pool, !request.dry_run).await {
                    Ok(on) => {
                        let mut onto = request.clone();
                        onto.placement = Some(crate::contract::Placement {
                            pool: request.target.to_string(),
                            member: on.member.to_string(),
                            why: on.why,
                        });
                        onto.target = on.member;
                        placed = onto;
                        (Ok(ends_at), &placed)
                    }
                    Err(refused) => (Err(refused), request),
                }
            }
            (checked, _) => (checked, request),
        };
        let ends_at = match checked {
            Ok(ends_at) => ends_at,
            Err(refused) => {
                let refused = refused.answer(&request.action_id, CREATE).accountable(accountable);
                if !request.dry_run {
                    self.deployment.announce(&refused).await;
                }
                return refused;
            }
        };
        if request.dry_run {
            let mut plan = self.planner.plan_create(request).await.accountable(accountable);
            plan.expires_at = ends_at.map(rfc3339);
            plan.placement = request.placement.clone();
            return plan;
        }
        // Whether the target admits VXLAN is read beside the create, not before it.
        // Boxed: the create's future is large, and the sweep and the tamper
        // watch run creates inside their own (a test thread's stack is 2 MB).
        let ((result, mut announced, replayed), undeliverable) = tokio::join!(
            Box::pin(self.create_unannounced(request, ends_at, listed)),
            self.facts.delivery_refusal(request)
        );
        let mut result = if replayed {
            result
        } else {
            result.accountable(accountable)
        };
        // A policy mirror whose session went since must not be answered with
        // its old success: the action is renewed and run again, once.
        if request.from_policy && replayed && self.renew_if_gone(&request.action_id).await {
            info!(action_id = %request.action_id, "the policy's mirror was gone: made again");
            let again;
            (again, announced, _) = Box::pin(self.create_unannounced(request, ends_at, None)).await;
            result = again.accountable(accountable);
        }
        if let Some(why) = undeliverable.filter(|_| result.success) {
            warn!(action_id = %request.action_id, reason = %why, "the mirror may deliver nothing");
            result.info_message = with_warning(&result.info_message, &why);
        }
        if !announced {
            crate::deadline::winding_down(self.deployment.announce(&result)).await;
        }
        result
    }

    /// When a requested mirror ends (Unix seconds), by the request and the
    /// deployment's cap; policy mirrors follow the policy and have no end.
    /// Refuses a create that gives no reason when one is required.
    fn mirror_end_of(&self, request: &CreateRequest) -> Result<Option<u64>, Failure> {
        if request.from_policy {
            return Ok(None);
        }
        let invalid = |message: String| Failure::refused(VALIDATION_ERROR, message, false);
        if self.deployment.controls.require_reason && request.accountability.reason.is_none() {
            return Err(invalid(format!(
                "invalid {CREATE} action {:?}: actionParams.reason: is required by this deployment \
                 (REQUIRE_REASON); say why the traffic is mirrored",
                request.action_id
            )));
        }
        mirror_end(
            request.lifetime,
            self.deployment.controls.max_mirror_minutes,
            now_seconds(),
        )
        .map_err(|why| invalid(format!("invalid {CREATE} action {:?}: {why}", request.action_id)))
    }

    /// The create itself: three rounds of AWS calls on its critical path when
    /// the target and filter exist and the guessed session number holds
    /// (claims and reads; session; ledger write and event), and one mutating
    /// EC2 call. Returns whether it announced, and whether the answer is an
    /// earlier run's, replayed from the ledger.
    async fn create_unannounced(
        &self,
        request: &CreateRequest,
        ends_at: Option<u64>,
        listed: Option<&Listed>,
    ) -> (ActionResult, bool, bool) {
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
            pool: request.placement.as_ref().map(|p| p.pool.clone()),
            placed_because: request.placement.as_ref().map(|p| p.why.clone()),
            requested_by: Some(request.accountability.requested_by.clone()),
            reason: request.accountability.reason.clone(),
            ends_at,
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
        let (claim, guessed, sessions, source_is_target, claimed, target_slot, filter_slot) = tokio::join!(
            self.deployment.claim(&mut claimed_record, CREATE),
            self.numbering.guess_number(request),
            async {
                match listed {
                    Some(listed) => Ok(listed.sessions_on_source.clone()),
                    None => self.sessions.sessions(&on_source).await,
                }
            },
            async {
                match listed {
                    Some(listed) => Ok(listed.source_is_target && request.refuse_if_source_is_target),
                    None => self.source_is_target(request).await,
                }
            },
            self.numbers.numbers(request.source_eni.as_str()),
            self.joining
                .join(target_key.as_ref(), action_id, request.target.source_limit()),
            self.joining.join(filter_key.as_ref(), action_id, usize::MAX),
        );
        match claim {
            Ok(()) => record = claimed_record,
            Err(refused) => {
                for (key, slot) in [(&target_key, &target_slot), (&filter_key, &filter_slot)] {
                    if let (Some(key), Some(slot)) = (key, slot) {
                        self.joining.undo_join(key, action_id, &refused, slot).await;
                    }
                }
                if let Some(number) = guessed {
                    self.numbering.undo_guess(request, number).await;
                }
                let replayed = matches!(refused, Refused::Finished(_));
                return (refused.answer(), false, replayed);
            }
        }
        let joined = |slot: &Option<Result<Slot, LedgerError>>| matches!(slot, Some(Ok(Slot::Joined(_) | Slot::Make)));
        let mut made = Made {
            joined_target: joined(&target_slot),
            joined_filter: joined(&filter_slot),
            // Held from here on: a rollback gives it back.
            number: guessed,
            ..Made::default()
        };
        let reads = Reads {
            guessed,
            sessions,
            source_is_target,
            claimed,
            target_slot,
            filter_slot,
        };
        let outcome = self.create_steps(request, record.attempt, &mut made, reads).await;
        match outcome {
            Ok(created) => {
                let (result, announced) = self.finish(request, record, made, created).await;
                (result, announced, false)
            }
            Err(failure) => (self.roll_back(record, made, failure).await, false, false),
        }
    }

    async fn source_is_target(&self, request: &CreateRequest) -> AwsResult<bool> {
        if !request.refuse_if_source_is_target {
            return Ok(false);
        }
        let targets = self
            .targets
            .targets_of(&TargetSpec::Eni(request.source_eni.clone()))
            .await?;
        Ok(!targets.is_empty())
    }

    async fn create_steps(
        &self,
        request: &CreateRequest,
        attempt: u32,
        made: &mut Made,
        reads: Reads,
    ) -> Result<Created, Failure> {
        let source = request.source_eni.as_str();
        let sessions = reads
            .sessions
            .map_err(|e| Failure::aws(format!("listing the sessions on {source}"), &e))?;
        let claimed = reads.claimed?;
        let source_is_target = reads
            .source_is_target
            .map_err(|e| Failure::aws(format!("checking whether {source} is a mirror target"), &e))?;
        if source_is_target {
            return Err(Failure::refused(
                "EniIsMirrorTarget",
                format!("{source} is itself a traffic mirror target; not mirrored"),
                false,
            ));
        }
        // A full source ENI fails here, before any change in EC2.
        choose_session_number(request, &sessions, &claimed)?;
        let mut claimed = claimed;
        let kept = reads
            .guessed
            .filter(|&number| guess_holds(number, request, &sessions, &claimed));
        if let Some(wrong) = reads.guessed.filter(|_| kept.is_none()) {
            // The reads show a better number (or room the guess did not
            // count): give the guess back before choosing again.
            self.numbers.release_number(source, wrong, &request.action_id).await?;
            made.number = None;
            claimed.retain(|(n, holder)| !(*n == wrong && *holder == request.action_id));
        }

        // Round 2, when the guess did not hold: the number, the target and
        // the filter do not depend on each other; the last two are usually
        // joined already in round 1, and then cost no call.
        let number = async {
            match kept {
                Some(number) => Ok(SessionNumber {
                    number,
                    requested_was_taken: None,
                }),
                None => self.numbering.claim_session_number(request, &sessions, claimed).await,
            }
        };
        let (number, target, filter) = tokio::join!(
            number,
            self.joining.resolve_target(request, attempt, reads.target_slot),
            self.joining.resolve_filter(request, attempt, reads.filter_slot),
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
        let mut tags = self.deployment.tags_for(
            &request.action_id,
            request.reservation_id.as_deref(),
            request.instance_id.as_deref(),
        );
        tags.extend(accountability_tags(&request.accountability));
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
        let session = match self.sessions.create_session(&new_session, &tags, &session_token).await {
            Ok(session) => session,
            Err(err) => {
                // Cut off or failed in transit, EC2 may have made it all the same.
                made.session_outcome_unknown = err.kind == crate::ports::ErrorKind::Transient;
                let ask_again = async {
                    let session = self
                        .sessions
                        .create_session(&new_session, &tags, &session_token)
                        .await?;
                    Ok(session.id)
                };
                made.session_id = recover_made(&err, "session", ask_again).await;
                return Err(Failure::aws("creating the traffic mirror session", &err));
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

    async fn finish(
        &self,
        request: &CreateRequest,
        mut record: LedgerRecord,
        made: Made,
        created: Created,
    ) -> (ActionResult, bool) {
        let session = &created.session;
        let mut result = success_result(request, &created, &made).accountable(&request.accountability);
        result.expires_at = record.ends_at.map(rfc3339);
        result.placement = request.placement.clone();
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
            tokio::join!(self.records.save(&mut record), self.deployment.announce(&result))
        })
        .await;
        if let Err(err) = saved {
            // A session the ledger does not know could never be torn down by us.
            let failure = Failure::from(err);
            let failure = self
                .roll_back(record, made, failure)
                .await
                .accountable(&request.accountability);
            crate::deadline::winding_down(self.deployment.announce(&failure)).await;
            return (failure, true);
        }
        info!(action_id = %request.action_id, session_id = %session.id, "mirroring created");
        (result, true)
    }
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

/// A result's message with a delivery warning added.
pub(crate) fn with_warning(message: &str, why: &str) -> String {
    let warning = format!("warning: the mirror may deliver nothing: {why}");
    if message.is_empty() {
        warning
    } else {
        format!("{message}; {warning}")
    }
}
