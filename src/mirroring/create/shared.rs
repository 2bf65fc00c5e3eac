//! The shared target of a destination and the shared filter of a rule set:
//! joined through their claim items in the ledger, made by the one action
//! that the claim names as maker while the others wait, and recovered when
//! a create that made one was cut off before it heard the id.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::warn;

use super::super::model::{CreateRequest, FilterSpec, RuleSpec};
use super::super::{accountability_tags, client_token, jitter_millis, Failure, Refused, TAG_ACTION_ID, TAG_RULE_SET};
use super::rollback::recover_made;
use crate::ports::{AwsError, LedgerError, MirrorTarget, RecordStatus, SharedKey, Slot};

/// A shared resource as round 2 left it.
pub(super) struct Resolved {
    pub(super) joined: bool,
    /// What this call created as the maker (its rollback may delete it).
    pub(super) created: Option<String>,
    pub(super) rule_ids: Vec<String>,
    pub(super) outcome: Result<String, Failure>,
}

impl Resolved {
    /// A target or filter the caller named: nothing joined, nothing made.
    pub(super) fn given(id: String) -> Self {
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
    outcome: Result<String, Failure>,
}

/// How long a create waits for another invocation that is making the target
/// or filter it needs, before giving up with a retryable error.
pub(super) const MAKER_WAIT: Duration = Duration::from_secs(20);

/// Joining (or making) the shared target of a destination and the shared filter of a rule set.
pub struct Joining {
    pub(crate) claims: std::sync::Arc<dyn crate::ports::SharedResources>,
    pub(crate) filters: std::sync::Arc<dyn crate::ports::Filters>,
    pub(crate) records: std::sync::Arc<dyn crate::ports::ActionRecords>,
    pub(crate) targets: std::sync::Arc<dyn crate::ports::Targets>,
    pub(crate) deployment: std::sync::Arc<crate::mirroring::Deployment>,
    /// How many sources a target ENI takes (10, or 100 on the largest sizes).
    pub(crate) facts: std::sync::Arc<crate::mirroring::facts::InstanceFacts>,
}

impl Joining {
    pub(super) async fn join(
        &self,
        key: Option<&SharedKey>,
        action_id: &str,
        limit: usize,
    ) -> Option<Result<Slot, LedgerError>> {
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
    pub(super) async fn undo_join(
        &self,
        key: &SharedKey,
        action_id: &str,
        refused: &Refused,
        slot: &Result<Slot, LedgerError>,
    ) {
        let undo = match refused {
            Refused::InProgress(_) => false,
            // A finished action that holds nothing (removed since) is
            // answered from the ledger: a place it took again is let go.
            Refused::Finished(_) => {
                matches!(slot, Ok(Slot::Make)) || (matches!(slot, Ok(Slot::Joined(_))) && !self.held(action_id).await)
            }
            Refused::LedgerUnavailable(_) => {
                matches!(slot, Ok(Slot::Make | Slot::Joined(_))) && !self.held(action_id).await
            }
        };
        if undo {
            if let Err(err) = self.claims.leave_shared(key, action_id).await {
                warn!(action_id, error = %err, "could not leave the users of a shared {}", key.noun());
            }
        }
    }

    /// Whether a ledger record of the action may hold resources or claims.
    pub(crate) async fn held(&self, action_id: &str) -> bool {
        matches!(self.records.get(action_id).await, Ok(Some(record))
            if record.status.is_some_and(|s| matches!(s, RecordStatus::Pending | RecordStatus::Active | RecordStatus::Removing)))
    }

    /// A maker may take as long as its invocation runs, and the action lease
    /// outlasts any invocation (the template sets it to the function timeout
    /// and a minute), so a maker that is still working keeps its claim.
    fn maker_lease_seconds(&self) -> u64 {
        self.deployment.lease_seconds
    }

    pub(super) async fn resolve_target(
        &self,
        request: &CreateRequest,
        attempt: u32,
        first: Option<Result<Slot, LedgerError>>,
    ) -> Resolved {
        let Some(key) = target_key(request) else {
            // The caller's own target: used as it is, never joined or deleted.
            return Resolved::given(request.target.to_string());
        };
        let mut limit = request.target.source_limit();
        let mut first = self.first_join(&key, &request.action_id, limit, first).await;
        // Most target ENIs take 10 sources; only when that is reached is the
        // target's instance read, which may take 100 (the largest sizes).
        if let (Ok(Slot::Full(_)), Some(eni)) = (&first, request.target.eni()) {
            let capacity = self.facts.sources_per_target(eni.as_str()).await;
            if capacity > limit {
                limit = capacity;
                first = self.first_join(&key, &request.action_id, limit, None).await;
            }
        }
        self.resolve_shared(&request.action_id, &key, limit, first, || {
            self.make_target(request, attempt)
        })
        .await
    }

    pub(super) async fn resolve_filter(
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
                self.claims
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
        let refuse = |failure: Failure| Resolved {
            joined: false,
            created: None,
            rule_ids: Vec::new(),
            outcome: Err(failure),
        };
        let noun = key.noun();
        let name = key.name();
        loop {
            match slot {
                Err(err) => return refuse(Failure::from(err)),
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
                        Ok(id) => match self.claims.shared_made(key, action_id, &id).await {
                            Ok(()) => Ok(id),
                            // Another action took over making it (our lease
                            // ran out): ours is rolled back, and a retry
                            // joins theirs.
                            Err(LedgerError::Aws(err)) if err.kind == crate::ports::ErrorKind::ConditionFailed => {
                                Err(Failure::refused(
                                    "MakerLeaseLost",
                                    format!(
                                        "making the {noun} of {name} took longer than this action's claim on it, \
                                         and another action took over; retry to use theirs"
                                    ),
                                    true,
                                ))
                            }
                            Err(err) => Err(Failure::from(err)),
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
                    return refuse(Failure::refused(
                        "TrafficMirrorSourcesPerTargetLimitExceeded",
                        format!(
                            "the {noun} of {name} already serves {users} sessions, the AWS limit for this ENI \
                             target (10, or 100 on the largest instance sizes); nothing was created (use another \
                             target ENI, or a Network Load Balancer)"
                        ),
                        false,
                    ))
                }
                Ok(Slot::Busy)
                    if waited_since.elapsed() >= MAKER_WAIT
                        || crate::deadline::budget().is_some_and(|left| left < pause * 2) =>
                {
                    return refuse(Failure::refused(
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
                        .claims
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
            outcome: Err(Failure::aws(context, err)),
        };
        // A target of ours that the claim item does not name is on its way out
        // (a remove retired it and is deleting it) or was left by a maker that
        // died (the sweep deletes it): adopting it could race the delete. Only
        // someone else's target, or the one this action itself made in an
        // earlier run, is adopted.
        let adoptable = |t: &MirrorTarget| !self.deployment.owns(&t.tags) || t.tag(TAG_ACTION_ID) == Some(action_id);
        let existing = match self.targets.targets_of(destination).await {
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
        let mut tags = self
            .deployment
            .tags_for(action_id, request.reservation_id.as_deref(), None);
        tags.extend(accountability_tags(&request.accountability));
        let token = client_token(action_id, attempt, "target");
        match self.targets.create_target(destination, &tags, &token).await {
            Ok(id) => Making {
                created: Some(id.clone()),
                rule_ids: Vec::new(),
                outcome: Ok(id),
            },
            Err(err) => Making {
                created: recover_made(&err, "target", self.targets.create_target(destination, &tags, &token)).await,
                ..fail(&format!("creating a mirror target for {destination}"), &err)
            },
        }
    }

    /// As the maker of a rule set's filter: the filter, then its rules; the
    /// others wait until all rules are in, so no session ever uses a filter
    /// that mirrors less than it asked for.
    async fn make_filter(&self, request: &CreateRequest, attempt: u32, name: &str, rules: &[RuleSpec]) -> Making {
        let action_id = request.action_id.as_str();
        let fail = |context: &str, err: &AwsError| Failure::aws(context, err);
        let mut tags = self.deployment.tags_for(action_id, None, None);
        tags.push((TAG_RULE_SET.to_owned(), name.to_owned()));
        tags.extend(accountability_tags(&request.accountability));
        let token = client_token(action_id, attempt, "filter");
        let description = format!("traffic-mirroring rule set {name} ({} rules)", rules.len());
        let filter_id = match self.filters.create_filter(&description, &tags, &token).await {
            Ok(id) => id,
            Err(err) => {
                return Making {
                    created: recover_made(&err, "filter", self.filters.create_filter(&description, &tags, &token))
                        .await,
                    rule_ids: Vec::new(),
                    outcome: Err(fail("creating the traffic mirror filter", &err)),
                }
            }
        };
        let rule_calls = rules.iter().map(|rule| {
            let step = format!("rule/{}/{}", rule.direction.as_str(), rule.rule_number);
            let token = client_token(action_id, attempt, &step);
            let filter_id = filter_id.clone();
            async move { self.filters.create_filter_rule(&filter_id, rule, &token).await }
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
}

pub(super) fn target_key(request: &CreateRequest) -> Option<SharedKey> {
    request
        .target
        .claim_name()
        .map(|name| SharedKey::Target(name.to_owned()))
}

pub(super) fn filter_key(request: &CreateRequest) -> Option<SharedKey> {
    match &request.filter {
        FilterSpec::Rules { key, .. } => Some(SharedKey::Filter(key.clone())),
        FilterSpec::Existing(_) => None,
    }
}

/// Several targets for one ENI can exist (made by hand or by a race); every
/// caller picks the same one, the lowest id, so they converge.
pub(in crate::mirroring) fn pick_target(targets: &[MirrorTarget]) -> Option<&MirrorTarget> {
    targets.iter().min_by(|a, b| a.id.cmp(&b.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_target_id_wins() {
        let target = |id: &str| MirrorTarget {
            owner_id: None,
            id: id.into(),
            network_interface_id: None,
            load_balancer: None,
            tags: Vec::new(),
        };
        let targets = [target("tmt-b"), target("tmt-a")];
        assert_eq!(pick_target(&targets).map(|t| t.id.as_str()), Some("tmt-a"));
    }
}
