//! RemoveTrafficMirroring: find the sessions a remove names (by session id,
//! target ENI, reservation, or their union), delete each session and then its
//! filter, then our targets that no session uses any more. Only what carries
//! our ownership tag or sits in our ledger is touched; what is already gone
//! counts as removed.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use tracing::{info, warn};

use super::model::RemoveRequest;
use super::model::TargetSpec;
use super::release::{Fate, Release, Released};
use super::{
    aws_failure, now_seconds, Failure, Ownership, Refused, TAG_ACTION_ID, TAG_INSTANCE_ID, TAG_MANAGED_BY,
    TAG_RESERVATION_ID, VALIDATION_ERROR,
};
use crate::contract::{ActionResult, REMOVE};

mod answers;
use crate::ports::{
    ActionKind, AwsError, Deleted, ErrorKind, LedgerError, LedgerQuery, LedgerRecord, MirrorSession, RecordStatus,
    SessionQuery, SharedKey,
};
use answers::{in_progress_failure, not_ours_failure, removal_result};

/// What a remove found to act on.
#[derive(Debug, Default)]
struct Found {
    /// Keyed by session id (or action id when a failed create left no session),
    /// so the union of several selectors names each session once.
    records: BTreeMap<String, LedgerRecord>,
    /// Sessions named by id that no longer exist.
    already_gone: Vec<String>,
    /// Sessions on the named target or reservation that we did not create:
    /// someone else's, another deployment's, or an earlier version's that
    /// our ledger does not know.
    not_ours: Vec<String>,
    /// Sessions whose create is still being carried out.
    in_progress: Vec<String>,
}

#[derive(Debug)]
struct Outcome {
    removed: Vec<String>,
    already_gone: Vec<String>,
    filters_deleted: usize,
    targets_deleted: Vec<String>,
    /// Our unused targets we could not delete; the remove still succeeds for
    /// its sessions, and says so.
    leftover_targets: Vec<String>,
    errors: Vec<String>,
    first_error: Option<AwsError>,
    /// Records whose mirror was taken down: their final status is written
    /// beside the remove's own record and event.
    to_mark_removed: Vec<LedgerRecord>,
}

/// RemoveTrafficMirroring, and the removal of one session for the others.
pub struct Removes {
    pub(crate) records: std::sync::Arc<dyn crate::ports::ActionRecords>,
    pub(crate) sessions: std::sync::Arc<dyn crate::ports::Sessions>,
    pub(crate) tagging: std::sync::Arc<dyn crate::ports::Tagging>,
    pub(crate) targets: std::sync::Arc<dyn crate::ports::Targets>,
    pub(crate) deployment: std::sync::Arc<crate::mirroring::Deployment>,
    pub(crate) sharing: std::sync::Arc<crate::mirroring::release::Sharing>,
}

impl Removes {
    pub async fn remove(&self, request: &RemoveRequest) -> ActionResult {
        let accountable = &request.accountability;
        if self.deployment.controls.require_reason && accountable.reason.is_none() {
            let refused = ActionResult::failure(
                &request.action_id,
                REMOVE,
                VALIDATION_ERROR,
                format!(
                    "invalid {REMOVE} action {:?}: reason: is required by this deployment (REQUIRE_REASON); say why \
                     the mirror ends",
                    request.action_id
                ),
                false,
            )
            .accountable(accountable);
            crate::deadline::winding_down(self.deployment.announce(&refused)).await;
            return refused;
        }
        let now = now_seconds();
        let mut record = LedgerRecord {
            action_id: request.action_id.clone(),
            kind: Some(ActionKind::Remove),
            status: Some(RecordStatus::Pending),
            // No ENIs or reservation here: those attributes key the indexes,
            // which list what creates made.
            requested_by: Some(accountable.requested_by.clone()),
            reason: accountable.reason.clone(),
            created_at: now,
            updated_at: now,
            ..LedgerRecord::default()
        };
        // Round 1: the claim, and the lookups (reads only, so a refused
        // claim costs nothing but them).
        let (claimed, found) = tokio::join!(
            self.deployment.claim(&mut record, REMOVE),
            self.find_for_removal(request)
        );
        if let Err(refused) = claimed {
            let replayed = matches!(refused, Refused::Finished(_));
            let answer = refused.answer();
            let answer = if replayed {
                answer
            } else {
                answer.accountable(accountable)
            };
            crate::deadline::winding_down(self.deployment.announce(&answer)).await;
            return answer;
        }
        let mut to_mark_removed = Vec::new();
        let result = match found {
            Ok(found) if found.not_ours.iter().any(|id| Some(id) == request.session_id.as_ref()) => {
                not_ours_failure(request)
            }
            Ok(found) => {
                // Rounds 2 and 3 (and, for a last user, the filter and target).
                let mut outcome = self.tear_down(found.records.into_values().collect()).await;
                to_mark_removed = std::mem::take(&mut outcome.to_mark_removed);
                let mut result = removal_result(request, outcome, found.already_gone, &found.not_ours);
                if !found.in_progress.is_empty() && result.success {
                    result = in_progress_failure(request, &found.in_progress, result);
                }
                result
            }
            Err(failure) => failure.answer(&request.action_id, REMOVE),
        };
        let mut result = result.accountable(accountable);
        result.expired = request.expired && result.success;
        record.status = Some(if result.success {
            RecordStatus::Done
        } else {
            RecordStatus::Failed
        });
        record.attempt += u32::from(!result.success);
        record.result = Some(result.clone());
        record.updated_at = now_seconds();
        // The last round: the removed mirrors' records, this remove's own
        // record and its completion event, together. A mirror whose record
        // could not be marked removed is gone all the same (its session
        // deleted, its claims released); its record stays `removing`, which
        // the sweep finishes, and a retry finds nothing left to do.
        let marks = join_all(to_mark_removed.iter().map(|r| self.mark_removed(r)));
        let (marks, saved, ()) = crate::deadline::winding_down(async {
            tokio::join!(marks, self.records.save(&mut record), self.deployment.announce(&result))
        })
        .await;
        for (marked, outcome) in to_mark_removed.iter().zip(marks) {
            if let Err(err) = outcome {
                warn!(action_id = %marked.action_id, error = %err, "removed, but its record still says removing; the sweep finishes it");
            }
        }
        if let Err(err) = saved {
            warn!(action_id = %request.action_id, error = %err, "could not record the remove");
        }
        result
    }

    /// The source ENIs a remove by session id, reservation or instance
    /// reaches, as the ledger's indexes say, for ordering it among the other
    /// actions of its request. `None` when that cannot be told: a lookup
    /// failed, or found nothing (an index may not yet show a record written
    /// a moment ago).
    pub async fn sources_reached(&self, request: &RemoveRequest) -> Option<BTreeSet<String>> {
        let queries: Vec<LedgerQuery> = [
            request.session_id.clone().map(LedgerQuery::Session),
            request.reservation_id.clone().map(LedgerQuery::Reservation),
            request.instance_id.clone().map(LedgerQuery::Instance),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut sources = BTreeSet::new();
        for found in join_all(queries.iter().map(|query| self.records.find(query))).await {
            let records = found.ok().filter(|records| !records.is_empty())?;
            sources.extend(records.into_iter().filter_map(|r| r.source_eni));
        }
        Some(sources)
    }

    /// Every selector reads the ledger's index and EC2 both. The index lags
    /// behind writes, so a session EC2 shows is looked up by its action-id
    /// tag as well, and acted on as its record says.
    async fn find_for_removal(&self, request: &RemoveRequest) -> Result<Found, Failure> {
        let fail = |context: &str, err: &AwsError| Failure::aws(context, err);
        let mut found = Found::default();
        if let Some(session_id) = &request.session_id {
            let records = self.records.find(&LedgerQuery::Session(session_id.clone())).await?;
            let live: Vec<_> = records.iter().filter(|r| removable(r)).cloned().collect();
            if !live.is_empty() {
                found.add_records(live);
            } else if !records.is_empty() {
                found.already_gone.push(session_id.clone());
            } else {
                let sessions = self
                    .sessions
                    .sessions(&SessionQuery::Id(session_id.clone()))
                    .await
                    .map_err(|e| fail(&format!("looking up session {session_id}"), &e))?;
                if sessions.is_empty() {
                    found.already_gone.push(session_id.clone());
                }
                self.add_sessions(&mut found, sessions).await?;
            }
        }
        if let Some(eni) = &request.target_eni {
            let records = self.records.find(&LedgerQuery::TargetEni(eni.to_string())).await?;
            found.add_records(records.into_iter().filter(removable).collect());
            let targets = self
                .targets
                .targets_of(&TargetSpec::Eni(eni.clone()))
                .await
                .map_err(|e| fail(&format!("looking up the mirror targets of {eni}"), &e))?;
            for target in targets {
                let sessions = self
                    .sessions
                    .sessions(&SessionQuery::Target(target.id.clone()))
                    .await
                    .map_err(|e| fail(&format!("listing the sessions of target {}", target.id), &e))?;
                self.add_sessions(&mut found, sessions).await?;
            }
        }
        if let Some(instance) = &request.instance_id {
            let records = self.records.find(&LedgerQuery::Instance(instance.clone())).await?;
            found.add_records(records.into_iter().filter(removable).collect());
            let tagged = self
                .sessions
                .sessions(&SessionQuery::Tag(TAG_INSTANCE_ID.to_owned(), instance.clone()))
                .await
                .map_err(|e| fail(&format!("listing the sessions of instance {instance}"), &e))?;
            self.add_sessions(&mut found, tagged).await?;
        }
        if let Some(reservation) = &request.reservation_id {
            let records = self
                .records
                .find(&LedgerQuery::Reservation(reservation.clone()))
                .await?;
            found.add_records(records.into_iter().filter(removable).collect());
            let tagged = self
                .sessions
                .sessions(&SessionQuery::Tag(TAG_RESERVATION_ID.to_owned(), reservation.clone()))
                .await
                .map_err(|e| fail(&format!("listing the sessions of reservation {reservation}"), &e))?;
            self.add_sessions(&mut found, tagged).await?;
        }
        Ok(found)
    }

    /// Sessions seen in EC2 that the index did not name: each is looked up
    /// by the action id it carries. Ours with a record are removed as the
    /// record says; ours without one only lose the session (its filter may
    /// be shared, so it is left to the sweep); an earlier version's are
    /// taken over when our ledger knows them; the rest are only reported.
    async fn add_sessions(&self, found: &mut Found, sessions: Vec<MirrorSession>) -> Result<(), LedgerError> {
        let unseen: Vec<MirrorSession> = sessions
            .into_iter()
            .filter(|s| !found.records.contains_key(&s.id))
            .collect();
        // Only ours (and an earlier version's) can have a record in this ledger.
        let lookups = unseen.iter().map(|session| async move {
            let ownership = self.deployment.ownership(&session.tags);
            match session.tag(TAG_ACTION_ID) {
                Some(action) if matches!(ownership, Ownership::Ours | Ownership::Legacy) => {
                    self.records.get(action).await
                }
                _ => Ok(None),
            }
        });
        let records = join_all(lookups).await;
        for (session, record) in unseen.into_iter().zip(records) {
            // A create still pending has not recorded its session yet.
            let record = record?.filter(|r| {
                r.kind == Some(ActionKind::Create)
                    && (r.session_id.as_ref() == Some(&session.id) || r.status == Some(RecordStatus::Pending))
            });
            match (self.deployment.ownership(&session.tags), record) {
                (Ownership::Ours | Ownership::Legacy, Some(record)) if record.status == Some(RecordStatus::Pending) => {
                    found.in_progress.push(session.id);
                }
                (Ownership::Ours, Some(record)) if removable(&record) => found.add_records(vec![record]),
                (Ownership::Legacy, Some(record)) if removable(&record) => {
                    self.take_over(&record).await;
                    found.add_records(vec![record]);
                }
                (Ownership::Ours, _) => found.add_untracked(session),
                _ => {
                    if !found.not_ours.contains(&session.id) {
                        found.not_ours.push(session.id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Re-tags what an earlier version made for a record this ledger holds,
    /// so that IAM (bound to this deployment's owner) lets us delete it.
    pub(crate) async fn take_over(&self, record: &LedgerRecord) {
        let mut ids: Vec<String> = record.session_id.iter().cloned().collect();
        ids.extend(record.filter_id.clone().filter(|_| record.filter_key.is_some()));
        ids.extend(record.target_id.clone().filter(|_| record.target_created));
        let tags = vec![(TAG_MANAGED_BY.to_owned(), self.deployment.owner.clone())];
        // One call each: IAM lets us re-tag only what still carries the
        // legacy value, and a target shared by several records may be ours already.
        let outcomes = join_all(ids.iter().map(|id| self.tagging.retag(std::slice::from_ref(id), &tags))).await;
        for (id, outcome) in ids.iter().zip(outcomes) {
            match outcome {
                Ok(()) => info!(action_id = %record.action_id, resource = %id, "taken over from an earlier version"),
                Err(err) => warn!(action_id = %record.action_id, resource = %id, error = %err,
                    "could not take over an earlier version's resource"),
            }
        }
    }

    async fn tear_down(&self, records: Vec<LedgerRecord>) -> Outcome {
        let mut outcome = Outcome {
            removed: Vec::new(),
            already_gone: Vec::new(),
            filters_deleted: 0,
            targets_deleted: Vec::new(),
            leftover_targets: Vec::new(),
            errors: Vec::new(),
            first_error: None,
            to_mark_removed: Vec::new(),
        };
        // Targets of sessions the ledger did not know (found by tag in EC2).
        let mut untracked_targets = BTreeSet::new();
        let results = join_all(records.iter().map(|r| self.take_down(r))).await;
        for (record, result) in records.iter().zip(results) {
            match result {
                Ok((done, marked)) => {
                    outcome.to_mark_removed.extend(marked);
                    match done.session {
                        Some((id, Deleted::Now)) => outcome.removed.push(id),
                        Some((id, Deleted::AlreadyGone)) => outcome.already_gone.push(id),
                        None => {}
                    }
                    outcome.filters_deleted += usize::from(done.released.filter_deleted.is_some());
                    outcome.targets_deleted.extend(done.released.target_deleted.clone());
                    outcome.leftover_targets.extend(done.released.left());
                    // Found in EC2 only: no claim item counts it, so look at its target.
                    if record.kind.is_none() {
                        untracked_targets.extend(record.target_id.clone());
                    }
                }
                Err(err) => {
                    outcome.errors.push(format!(
                        "{}: {}",
                        record.session_id.as_deref().unwrap_or(&record.action_id),
                        err
                    ));
                    outcome.first_error = outcome.first_error.or(Some(err));
                }
            }
        }
        for target_id in untracked_targets {
            let target = match self.targets.target(&target_id).await {
                Ok(Some(target)) if self.deployment.owns(&target.tags) => target,
                _ => continue,
            };
            let fate = match target.claim_name() {
                Some(name) => {
                    self.sharing
                        .retire_shared(&SharedKey::Target(name.to_owned()), &target_id, true)
                        .await
                }
                None => self.sharing.delete_target_if_unused(&target_id).await,
            };
            match fate {
                Fate::Deleted => outcome.targets_deleted.push(target_id),
                Fate::InUse | Fate::NotOurs => {}
                Fate::Failed(_) => outcome.leftover_targets.push(target_id),
            }
        }
        outcome
    }

    /// Deletes a record's session, releases its claims (its shared filter and
    /// target go with the last user), then marks it removed.
    pub(crate) async fn remove_session(&self, record: &LedgerRecord) -> Result<SessionRemoved, AwsError> {
        let (removed, marked) = self.take_down(record).await?;
        if let Some(marked) = marked {
            self.mark_removed(&marked).await.map_err(ledger_as_aws)?;
        }
        Ok(removed)
    }

    /// All of a remove but the final status: the intent (`removing`) first,
    /// then the session's delete beside the release of its number and its
    /// places among the users of its filter and target, then the filter and
    /// target it was the last user of. Returns the record as marked, for
    /// the final write (`None`: nothing to mark).
    async fn take_down(&self, record: &LedgerRecord) -> Result<(SessionRemoved, Option<LedgerRecord>), AwsError> {
        let mut record = record.clone();
        if record.kind.is_some() {
            // The intent first: if we stop half-way, the record says so.
            let marked = self
                .deployment
                .update_record(&record, |r| {
                    let holds = r
                        .status
                        .is_some_and(|s| s.holds_resources() && s != RecordStatus::Pending);
                    let change = holds && r.status != Some(RecordStatus::Removing);
                    if change {
                        r.status = Some(RecordStatus::Removing);
                    }
                    change
                })
                .await
                .map_err(ledger_as_aws)?;
            match marked {
                Some(now) if now.status == Some(RecordStatus::Removing) => record = now,
                // Removed by someone else meanwhile, or gone: nothing left to do.
                _ => {
                    let removed = SessionRemoved {
                        session: record.session_id.clone().map(|id| (id, Deleted::AlreadyGone)),
                        released: Released::default(),
                    };
                    return Ok((removed, None));
                }
            }
        }
        let record = &record;
        let hold = Release::of(record, None);
        let delete = async {
            match &record.session_id {
                Some(id) => Ok(Some((id.clone(), self.sessions.delete_session(id).await?))),
                None => Ok(None),
            }
        };
        // Leaving while the delete is in flight is safe: EC2 counts the
        // session's number and refuses to delete a filter or target in use,
        // and nothing is retired before the session is gone. If the delete
        // fails, the record stays `removing`, and a retry (or the sweep)
        // deletes it and leaves again, which changes nothing twice.
        let (deleted, left) = tokio::join!(delete, self.sharing.leave(&hold));
        let session: Option<(String, Deleted)> = deleted?;
        let left = left.map_err(ledger_as_aws)?;
        let released = self.sharing.settle(&hold, left).await;
        if let Some(err) = released.filter_error {
            // The session is gone but its last filter stays: the record stays
            // `removing`, so a retried remove (or the sweep) finishes the job.
            return Err(err);
        }
        info!(action_id = %record.action_id, session = ?session, "mirroring removed");
        let marked = record.kind.is_some().then(|| record.clone());
        Ok((SessionRemoved { session, released }, marked))
    }

    /// The final status of a removed mirror's record.
    async fn mark_removed(&self, record: &LedgerRecord) -> Result<(), LedgerError> {
        self.deployment
            .update_record(record, |r| {
                let change = r.status == Some(RecordStatus::Removing);
                if change {
                    r.status = Some(RecordStatus::Removed);
                }
                change
            })
            .await
            .map(|_| ())
    }
}

pub(crate) struct SessionRemoved {
    session: Option<(String, Deleted)>,
    released: Released,
}

fn ledger_as_aws(err: LedgerError) -> AwsError {
    match err {
        LedgerError::Aws(aws) => aws,
        other => AwsError::new(ErrorKind::Rejected, "LedgerCorrupt", other.to_string()),
    }
}

impl Found {
    fn add_records(&mut self, records: Vec<LedgerRecord>) {
        for record in records {
            let key = record.session_id.clone().unwrap_or_else(|| record.action_id.clone());
            self.records.entry(key).or_insert(record);
        }
    }

    /// A session of ours that no ledger record names.
    fn add_untracked(&mut self, session: MirrorSession) {
        self.records.entry(session.id.clone()).or_insert_with(|| LedgerRecord {
            action_id: session.tag(super::TAG_ACTION_ID).unwrap_or_default().to_owned(),
            session_id: Some(session.id.clone()),
            target_id: Some(session.target_id.clone()),
            ..LedgerRecord::default()
        });
    }
}

/// Records whose EC2 resources may exist and that no create is working on.
fn removable(record: &LedgerRecord) -> bool {
    record.kind == Some(ActionKind::Create)
        && record
            .status
            .is_some_and(|s| s.holds_resources() && s != RecordStatus::Pending)
}
