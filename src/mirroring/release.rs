//! Letting go of what an action held: its session number on the source ENI,
//! and its places among the users of the shared target and the shared filter,
//! deleting either when it was the last user and the resource is ours.
//! Create's rollback, remove and the sweep all end an action's hold this way,
//! so they agree on when a shared resource may be deleted.

use tracing::warn;

use crate::ports::{AwsError, ErrorKind, LedgerError, LedgerRecord, SharedKey};

/// What an action holds, as far as releasing it goes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Release<'a> {
    pub action_id: &'a str,
    pub source_eni: Option<&'a str>,
    pub number: Option<u16>,
    /// The target claim item that counts this action among its users.
    pub target: Option<SharedKey>,
    /// The target this action created, if it did (so it is ours for sure).
    pub target_created: Option<&'a str>,
    /// The filter claim item that counts this action among its users.
    pub filter: Option<SharedKey>,
    pub filter_created: Option<&'a str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Released {
    pub target_deleted: Option<String>,
    /// Our unused target that could not be deleted now.
    pub target_left: Option<String>,
    pub filter_deleted: Option<String>,
    pub filter_left: Option<String>,
    /// Why the filter could not be deleted, when EC2 said.
    pub filter_error: Option<AwsError>,
}

impl<'a> Release<'a> {
    /// What a ledger record holds; `number` overrides the record's when the
    /// caller found the action's claim elsewhere.
    pub fn of(record: &'a LedgerRecord, number: Option<u16>) -> Self {
        Release {
            action_id: &record.action_id,
            source_eni: record.source_eni.as_deref(),
            number: number.or(record.session_number),
            // Records written before targets other than ENIs existed name
            // their claim item by the target ENI only.
            target: record
                .target_key
                .clone()
                .or_else(|| record.target_eni.clone())
                .map(SharedKey::Target),
            target_created: record.target_id.as_deref().filter(|_| record.target_created),
            filter: record.filter_key.clone().map(SharedKey::Filter),
            filter_created: None,
        }
    }
}

impl Released {
    /// What should have gone but is still there.
    pub fn left(&self) -> Vec<String> {
        self.target_left.iter().chain(&self.filter_left).cloned().collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    Deleted,
    /// A session, or an action about to make one, uses it.
    InUse,
    /// Not created by us: never deleted.
    NotOurs,
    /// It stays; with EC2's refusal when there was one.
    Failed(Option<AwsError>),
}

/// Where an action stood among the users of its shared resources once it
/// left them: each claim item's resource and how many users remain.
#[derive(Debug, Clone, Default)]
pub(crate) struct Left {
    filter: Option<(Option<String>, usize)>,
    target: Option<(Option<String>, usize)>,
}

/// Letting go of what an action held: its number and its places on shared resources.
pub struct Sharing {
    pub(crate) claims: std::sync::Arc<dyn crate::ports::SharedResources>,
    pub(crate) filters: std::sync::Arc<dyn crate::ports::Filters>,
    pub(crate) numbers: std::sync::Arc<dyn crate::ports::SessionNumbers>,
    pub(crate) targets: std::sync::Arc<dyn crate::ports::Targets>,
    pub(crate) deployment: std::sync::Arc<crate::mirroring::Deployment>,
}

impl Sharing {
    /// Lets go of everything `hold` names: the two steps below, one after
    /// the other.
    pub(crate) async fn release(&self, hold: &Release<'_>) -> Result<Released, LedgerError> {
        let left = self.leave(hold).await?;
        Ok(self.settle(hold, left).await)
    }

    /// The ledger side, all at once: the session number, and the action's
    /// places among the users of its filter and target. Safe while the
    /// session still exists: a number counts as taken while EC2 shows its
    /// session, and nothing is retired here.
    pub(crate) async fn leave(&self, hold: &Release<'_>) -> Result<Left, LedgerError> {
        let number = async {
            match (hold.source_eni, hold.number) {
                (Some(eni), Some(number)) => self.numbers.release_number(eni, number, hold.action_id).await,
                _ => Ok(()),
            }
        };
        let leave = |key: &Option<SharedKey>| {
            let key = key.clone();
            async move {
                match key {
                    Some(key) => self.claims.leave_shared(&key, hold.action_id).await.map(Some),
                    None => Ok(None),
                }
            }
        };
        let (number, filter, target) = tokio::join!(number, leave(&hold.filter), leave(&hold.target));
        number?;
        Ok(Left {
            filter: filter?,
            target: target?,
        })
    }

    /// The EC2 side, once the session is gone: the filter and the target
    /// this action was the last user of (or made and never named) are
    /// retired and deleted, side by side.
    pub(crate) async fn settle(&self, hold: &Release<'_>, left: Left) -> Released {
        let settle = |key: &Option<SharedKey>, left: Option<(Option<String>, usize)>, created: Option<&str>| {
            let key = key.clone();
            let created = created.map(str::to_owned);
            async move {
                let (key, (resource_id, users_left)) = (key?, left?);
                self.let_go(&key, resource_id, users_left, created.as_deref()).await
            }
        };
        let (filter, target) = tokio::join!(
            settle(&hold.filter, left.filter, hold.filter_created),
            settle(&hold.target, left.target, hold.target_created),
        );
        let mut released = Released::default();
        match filter {
            Some((id, Fate::Deleted)) => released.filter_deleted = Some(id),
            Some((id, Fate::Failed(error))) => {
                released.filter_left = Some(id);
                released.filter_error = error;
            }
            _ => {}
        }
        match target {
            Some((id, Fate::Deleted)) => released.target_deleted = Some(id),
            Some((id, Fate::Failed(_))) => released.target_left = Some(id),
            _ => {}
        }
        released
    }

    /// After leaving the users of a shared resource: the last user out
    /// retires it.
    async fn let_go(
        &self,
        key: &SharedKey,
        resource_id: Option<String>,
        users_left: usize,
        created: Option<&str>,
    ) -> Option<(String, Fate)> {
        if let Some(made) = created.filter(|made| resource_id.as_deref() != Some(*made)) {
            // Made by this action but never named by the claim item (it
            // failed before reporting it, or lost its maker's lease to
            // another): nobody else can know it, so it goes now.
            let fate = match key {
                SharedKey::Target(_) => self.delete_target_if_unused(made).await,
                SharedKey::Filter(_) => self.delete_filter_if_unused(made).await,
            };
            return Some((made.to_owned(), fate));
        }
        if users_left > 0 {
            return None;
        }
        let id = resource_id.or_else(|| created.map(str::to_owned))?;
        let created_by_us = created == Some(id.as_str());
        let fate = self.retire_shared(key, &id, created_by_us).await;
        Some((id, fate))
    }

    /// Forgets a shared resource in the ledger when no action uses or is
    /// making it, then deletes it from EC2 if it is ours and no session uses
    /// it. The conditional forget comes first so that no create can join a
    /// resource that is about to be deleted.
    pub(crate) async fn retire_shared(&self, key: &SharedKey, id: &str, created_by_us: bool) -> Fate {
        match self.claims.retire_shared(key, id).await {
            Ok(true) => {}
            Ok(false) => return Fate::InUse,
            Err(err) => {
                warn!(resource = id, error = %err, "could not tell whether an action uses it");
                return Fate::Failed(None);
            }
        }
        let fate = match key {
            SharedKey::Target(_) if !self.target_is_ours(id, created_by_us).await => return Fate::NotOurs,
            SharedKey::Target(_) => self.delete_target_if_unused(id).await,
            // A filter claim item only ever names a filter we made.
            SharedKey::Filter(_) => self.delete_filter_if_unused(id).await,
        };
        if fate != Fate::Deleted {
            // Still in EC2, so the ledger must name it again: for the next
            // create to reuse, or the next remove or sweep to delete.
            if let Err(err) = self.claims.restore_shared(key, id).await {
                warn!(resource = id, error = %err, "a resource that stays could not be recorded again");
            }
        }
        fate
    }

    /// Deletes one of our targets; EC2 refuses while a session uses it.
    pub(crate) async fn delete_target_if_unused(&self, target_id: &str) -> Fate {
        match self.targets.delete_target(target_id).await {
            Ok(_) => Fate::Deleted,
            Err(err) if err.kind == ErrorKind::InUse => Fate::InUse,
            Err(err) => {
                warn!(target_id, error = %err, "target not deleted");
                Fate::Failed(Some(err))
            }
        }
    }

    /// Deletes one of our filters; EC2 refuses while a session uses it.
    pub(crate) async fn delete_filter_if_unused(&self, filter_id: &str) -> Fate {
        match self.filters.delete_filter(filter_id).await {
            Ok(_) => Fate::Deleted,
            Err(err) if err.kind == ErrorKind::InUse => Fate::InUse,
            Err(err) => {
                warn!(filter_id, error = %err, "filter not deleted");
                Fate::Failed(Some(err))
            }
        }
    }

    /// A target is ours when we created it or it carries our tag.
    pub(crate) async fn target_is_ours(&self, target_id: &str, created_by_us: bool) -> bool {
        if created_by_us {
            return true;
        }
        matches!(self.targets.target(target_id).await, Ok(Some(target)) if self.deployment.owns(&target.tags))
    }
}
