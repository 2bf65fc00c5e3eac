//! Letting go of what an action held: its session number on the source ENI,
//! its place among the users of its target, and the target itself when it was
//! the last user and the target is ours. Create's rollback, remove and the
//! sweep all end an action's hold this way, so they agree on when a target
//! may be deleted.

use tracing::warn;

use super::{is_ours, Mirroring};
use crate::ports::{ErrorKind, LedgerError, SessionQuery};

/// What an action holds, as far as releasing it goes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Release<'a> {
    pub action_id: &'a str,
    pub source_eni: Option<&'a str>,
    pub number: Option<u16>,
    /// The target ENI whose claim item counts this action among its users.
    pub target_eni: Option<&'a str>,
    /// The target this action created, if it did (so it is ours for sure).
    pub target_created: Option<&'a str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Released {
    pub target_deleted: Option<String>,
    /// Our unused target that could not be deleted now.
    pub target_left: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetFate {
    Deleted,
    /// A session, or an action about to make one, uses it.
    InUse,
    /// Not created by us: never deleted.
    NotOurs,
    Failed,
}

impl Mirroring {
    pub(crate) async fn release(&self, hold: &Release<'_>) -> Result<Released, LedgerError> {
        if let (Some(eni), Some(number)) = (hold.source_eni, hold.number) {
            self.ledger.release_number(eni, number, hold.action_id).await?;
        }
        let mut released = Released::default();
        let Some(eni) = hold.target_eni else {
            return Ok(released);
        };
        let (target_id, users_left) = self.ledger.leave_target(eni, hold.action_id).await?;
        if users_left > 0 {
            return Ok(released);
        }
        let Some(target_id) = target_id.or_else(|| hold.target_created.map(str::to_owned)) else {
            return Ok(released);
        };
        let created_by_us = hold.target_created == Some(target_id.as_str());
        match self.retire_target(eni, &target_id, created_by_us).await {
            TargetFate::Deleted => released.target_deleted = Some(target_id),
            TargetFate::InUse | TargetFate::NotOurs => {}
            TargetFate::Failed => released.target_left = Some(target_id),
        }
        Ok(released)
    }

    /// Forgets a target in the ledger when no action uses or is making it,
    /// then deletes it from EC2 if it is ours and no session uses it. The
    /// conditional forget comes first so that no create can join a target
    /// that is about to be deleted.
    pub(crate) async fn retire_target(&self, target_eni: &str, target_id: &str, created_by_us: bool) -> TargetFate {
        match self.ledger.retire_target(target_eni, target_id).await {
            Ok(true) => {}
            Ok(false) => return TargetFate::InUse,
            Err(err) => {
                warn!(target_id, error = %err, "could not tell whether an action uses the target");
                return TargetFate::Failed;
            }
        }
        if !self.target_is_ours(target_id, created_by_us).await {
            return TargetFate::NotOurs;
        }
        let fate = self.delete_target_if_unused(target_id).await;
        if fate != TargetFate::Deleted {
            // Still in EC2, so the ledger must name it again: for the next
            // create to reuse, or the next remove or sweep to delete.
            if let Err(err) = self.ledger.restore_target(target_eni, target_id).await {
                warn!(target_id, error = %err, "a target that stays could not be recorded again");
            }
        }
        fate
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

    /// A target is ours when we created it or it carries our tag.
    pub(crate) async fn target_is_ours(&self, target_id: &str, created_by_us: bool) -> bool {
        if created_by_us {
            return true;
        }
        matches!(self.ec2.target(target_id).await, Ok(Some(target)) if is_ours(&target.tags))
    }
}
