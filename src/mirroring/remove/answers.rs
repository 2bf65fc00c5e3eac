//! The answers a remove gives: what it removed, found gone, or left alone.

use super::*;

pub(super) fn not_ours_failure(request: &RemoveRequest) -> ActionResult {
    let session = request.session_id.as_deref().unwrap_or_default();
    ActionResult::failure(
        &request.action_id,
        REMOVE,
        "NotManagedByTrafficMirroring",
        format!(
            "session {session} was not created by this deployment of traffic-mirroring (it has another owner, \
             or none, and this deployment's ledger does not know it); it was left in place"
        ),
        false,
    )
}

/// Some sessions belong to creates still being carried out: what could be
/// removed was, and a retry removes the rest once those creates finish.
pub(super) fn in_progress_failure(request: &RemoveRequest, sessions: &[String], done: ActionResult) -> ActionResult {
    let mut failure = ActionResult::failure(
        &request.action_id,
        REMOVE,
        "SessionBeingCreated",
        format!(
            "{} is still being created by another invocation; retry the remove shortly",
            sessions.join(", ")
        ),
        true,
    );
    failure.info_message = done.info_message;
    failure.removed_session_ids = done.removed_session_ids;
    failure
}

pub(super) fn removal_result(
    request: &RemoveRequest,
    outcome: Outcome,
    named_gone: Vec<String>,
    not_ours: &[String],
) -> ActionResult {
    let mut already_gone = named_gone;
    already_gone.extend(outcome.already_gone);
    let mut parts = Vec::new();
    if !outcome.removed.is_empty() {
        parts.push(format!(
            "removed {} session{} ({}) and {} filter{}",
            outcome.removed.len(),
            plural(outcome.removed.len()),
            outcome.removed.join(", "),
            outcome.filters_deleted,
            plural(outcome.filters_deleted)
        ));
    }
    if !outcome.targets_deleted.is_empty() {
        parts.push(format!("deleted unused target {}", outcome.targets_deleted.join(", ")));
    }
    if !outcome.leftover_targets.is_empty() {
        parts.push(format!(
            "could not delete unused target {} (will be retried by a later remove)",
            outcome.leftover_targets.join(", ")
        ));
    }
    if !already_gone.is_empty() {
        parts.push(format!("already gone: {}", already_gone.join(", ")));
    }
    if outcome.removed.is_empty() && already_gone.is_empty() && outcome.errors.is_empty() {
        parts.push("nothing to remove: no session of ours matched (already gone)".into());
    }
    if !not_ours.is_empty() {
        parts.push(format!("left in place, not created by us: {}", not_ours.join(", ")));
    }
    let mut removed_session_ids = outcome.removed;
    removed_session_ids.extend(already_gone);
    let info_message = parts.join("; ");
    match outcome.first_error {
        Some(err) => {
            let mut failure = aws_failure(&request.action_id, REMOVE, "removing traffic mirroring", &err);
            failure.error_message = format!("could not remove {}", outcome.errors.join("; "));
            failure.info_message = info_message;
            failure.removed_session_ids = removed_session_ids;
            failure
        }
        None => ActionResult {
            action_id: request.action_id.clone(),
            action_type: REMOVE.to_owned(),
            success: true,
            info_message,
            session_id: request.session_id.clone().unwrap_or_default(),
            reservation_id: request.reservation_id.clone(),
            removed_session_ids,
            ..ActionResult::default()
        },
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
