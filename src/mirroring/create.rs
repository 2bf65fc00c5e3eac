//! CreateTrafficMirroring: claim the action in the ledger, check the source
//! ENI's quota, reuse or create the target, create the filter and its rules,
//! pick a session number, create the session, record everything. If a step
//! fails, undo what this attempt made, newest first, and only that.

use std::collections::HashSet;

use futures::future::join_all;
use tracing::{info, warn};

use super::model::{CreateRequest, MAX_SESSION_NUMBER, SESSIONS_PER_SOURCE_ENI};
use super::{aws_failure, client_token, ledger_failure, now_seconds, ownership_tags, Mirroring, TAG_ACTION_ID};
use crate::contract::{ActionResult, CREATE};
use crate::ports::{
    ActionKind, AwsError, ErrorKind, LedgerRecord, MirrorSession, MirrorTarget, NewSession, RecordStatus, SessionQuery,
};

/// What this attempt has made so far: exactly what a rollback may delete.
#[derive(Debug, Default)]
struct Made {
    target_id: Option<String>,
    filter_id: Option<String>,
    rule_ids: Vec<String>,
    session_id: Option<String>,
}

/// Everything a successful create produced, for the record and the answer.
struct Created {
    session: MirrorSession,
    target_id: String,
    target_created: bool,
    requested_number_taken: Option<u16>,
}

impl Mirroring {
    pub async fn create(&self, request: &CreateRequest) -> ActionResult {
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
        match self.claim(&record, CREATE).await {
            Ok(attempt) => record.attempt = attempt,
            Err(answer) => return answer,
        }
        let mut made = Made::default();
        let outcome = self.create_steps(request, record.attempt, &mut made).await;
        match outcome {
            Ok(created) => self.finish(request, record, made, created).await,
            Err(failure) => self.roll_back(record, made, failure).await,
        }
    }

    async fn create_steps(
        &self,
        request: &CreateRequest,
        attempt: u32,
        made: &mut Made,
    ) -> Result<Created, ActionResult> {
        let fail = |context: &str, err: &AwsError| aws_failure(&request.action_id, CREATE, context, err);
        // Both lookups before any change, so a full ENI fails with nothing to undo.
        let on_source = SessionQuery::SourceEni(request.source_eni.clone());
        let (targets, sessions) = tokio::join!(
            self.ec2.targets_for_eni(&request.target_eni),
            self.ec2.sessions(&on_source)
        );
        let targets =
            targets.map_err(|e| fail(&format!("looking up the mirror target of {}", request.target_eni), &e))?;
        let sessions = sessions.map_err(|e| fail(&format!("listing the sessions on {}", request.source_eni), &e))?;
        let session_number = choose_session_number(request, &sessions)?;

        let tags = ownership_tags(&request.action_id, request.reservation_id.as_deref());
        let existing_target = pick_target(&targets);
        let target_token = client_token(&request.action_id, attempt, "target");
        let filter_token = client_token(&request.action_id, attempt, "filter");
        let filter_description = format!("traffic-mirroring {} -> {}", request.source_eni, request.target_eni);
        // Resolving the target and making the filter do not depend on each other.
        let target = async {
            match existing_target {
                Some(target) => Ok((target.id.clone(), false)),
                None => self
                    .ec2
                    .create_target(&request.target_eni, &tags, &target_token)
                    .await
                    .map(|id| (id, true)),
            }
        };
        let (target, filter) = tokio::join!(
            target,
            self.ec2.create_filter(&filter_description, &tags, &filter_token)
        );
        if let Ok(filter_id) = &filter {
            made.filter_id = Some(filter_id.clone());
        }
        if let Ok((target_id, true)) = &target {
            made.target_id = Some(target_id.clone());
        }
        let filter_id = filter.map_err(|e| fail("creating the traffic mirror filter", &e))?;
        let (target_id, _) =
            target.map_err(|e| fail(&format!("creating a mirror target for {}", request.target_eni), &e))?;

        let rule_calls = request.rules.iter().map(|rule| {
            let step = format!("rule/{}/{}", rule.direction.as_str(), rule.rule_number);
            let token = client_token(&request.action_id, attempt, &step);
            let filter_id = filter_id.clone();
            async move { self.ec2.create_filter_rule(&filter_id, rule, &token).await }
        });
        let mut first_rule_error = None;
        for outcome in join_all(rule_calls).await {
            match outcome {
                Ok(rule_id) => made.rule_ids.push(rule_id),
                Err(err) => first_rule_error = first_rule_error.or(Some(err)),
            }
        }
        if let Some(err) = first_rule_error {
            return Err(fail("creating the filter rules", &err));
        }

        let new_session = NewSession {
            source_eni: request.source_eni.clone(),
            target_id: target_id.clone(),
            filter_id,
            session_number: session_number.number,
            packet_length: request.packet_length,
            virtual_network_id: request.virtual_network_id,
            description: request.description.clone(),
        };
        let token = client_token(&request.action_id, attempt, "session");
        let session = self
            .ec2
            .create_session(&new_session, &tags, &token)
            .await
            .map_err(|e| fail("creating the traffic mirror session", &e))?;
        made.session_id = Some(session.id.clone());
        Ok(Created {
            session,
            target_id,
            target_created: made.target_id.is_some(),
            requested_number_taken: session_number.requested_was_taken,
        })
    }

    async fn finish(
        &self,
        request: &CreateRequest,
        mut record: LedgerRecord,
        made: Made,
        created: Created,
    ) -> ActionResult {
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
        if let Err(err) = self.ledger.save(&record).await {
            // A session the ledger does not know could never be torn down by us.
            let failure = ledger_failure(&request.action_id, CREATE, &err);
            return self.roll_back(record, made, failure).await;
        }
        info!(action_id = %request.action_id, session_id = %session.id, "mirroring created");
        result
    }

    /// Deletes what `made` lists, newest first, then records the outcome.
    async fn roll_back(&self, mut record: LedgerRecord, made: Made, mut failure: ActionResult) -> ActionResult {
        let leftovers = self.undo(&made).await;
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

    /// Returns the ids it could not delete.
    async fn undo(&self, made: &Made) -> Vec<String> {
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
        if let Some(id) = &made.target_id {
            if self.delete_target_if_unused(id).await == TargetFate::Failed {
                leftovers.push(id.clone());
            }
        }
        leftovers
    }

    /// Deletes one of our targets unless a session uses it.
    pub(crate) async fn delete_target_if_unused(&self, target_id: &str) -> TargetFate {
        match self.ec2.sessions(&SessionQuery::Target(target_id.to_owned())).await {
            Ok(users) if !users.is_empty() => TargetFate::InUse,
            Ok(_) => match self.ec2.delete_target(target_id).await {
                Ok(_) => TargetFate::Deleted,
                // A session arrived between our look and the delete: it keeps the target.
                Err(err) if err.kind == ErrorKind::InUse => TargetFate::InUse,
                Err(err) => {
                    warn!(target_id, error = %err, "target not deleted");
                    TargetFate::Failed
                }
            },
            Err(err) => {
                warn!(target_id, error = %err, "could not tell whether the target is in use");
                TargetFate::Failed
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetFate {
    Deleted,
    /// Another session uses it; that session's removal will take it.
    InUse,
    Failed,
}

#[derive(Debug, PartialEq, Eq)]
struct SessionNumber {
    number: u16,
    requested_was_taken: Option<u16>,
}

/// The requested number when free on the source ENI, else the lowest free one,
/// counting every session there, ours or not. A session this same action made
/// in an interrupted earlier run is adopted rather than counted against it.
fn choose_session_number(request: &CreateRequest, sessions: &[MirrorSession]) -> Result<SessionNumber, ActionResult> {
    if let Some(own) = sessions
        .iter()
        .find(|s| s.tag(TAG_ACTION_ID) == Some(request.action_id.as_str()))
    {
        return Ok(SessionNumber {
            number: own.session_number,
            requested_was_taken: None,
        });
    }
    if sessions.len() >= SESSIONS_PER_SOURCE_ENI {
        let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        return Err(ActionResult::failure(
            &request.action_id,
            CREATE,
            "TrafficMirrorSessionsPerInterfaceLimitExceeded",
            format!(
                "{} already has {} traffic mirror sessions ({}), the AWS limit per source interface; nothing was created",
                request.source_eni,
                sessions.len(),
                ids.join(", ")
            ),
            false,
        ));
    }
    let taken: HashSet<u16> = sessions.iter().map(|s| s.session_number).collect();
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
        let chosen = choose_session_number(&request(Some(5)), &[session(1, None)]).expect("room");
        assert_eq!(
            chosen,
            SessionNumber {
                number: 5,
                requested_was_taken: None
            }
        );
        let chosen = choose_session_number(&request(Some(1)), &[session(1, None), session(3, None)]).expect("room");
        assert_eq!(
            chosen,
            SessionNumber {
                number: 2,
                requested_was_taken: Some(1)
            }
        );
        let chosen = choose_session_number(&request(None), &[session(2, None)]).expect("room");
        assert_eq!(chosen.number, 1);
    }

    #[test]
    fn a_full_source_eni_is_refused_before_any_change() {
        let full = [session(1, None), session(2, None), session(3, None)];
        let failure = choose_session_number(&request(None), &full).expect_err("full");
        assert_eq!(
            failure.error_code.as_deref(),
            Some("TrafficMirrorSessionsPerInterfaceLimitExceeded")
        );
        assert!(!failure.retryable);
    }

    #[test]
    fn a_session_of_the_same_action_is_adopted_not_counted() {
        let sessions = [session(1, None), session(2, None), session(9, Some("act"))];
        let chosen = choose_session_number(&request(Some(1)), &sessions).expect("adopted");
        assert_eq!(chosen.number, 9);
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
