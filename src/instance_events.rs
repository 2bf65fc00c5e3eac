//! EC2's word on instances: a launch, an end, a tag change, or a deletion
//! of one of our resources, turned into the actions that follow from them.

use std::sync::Arc;

use futures::future::join_all;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::contract::{Accountability, ActionResult, DriverResponse, Requester};
use crate::domain::account::AccountId;
use crate::domain::instance::InstanceState;
use crate::domain::model::{MirrorRequest, RemoveRequest};
use crate::mirroring::launch::{LaunchPlan, LaunchPolicy, Unconfirmed};
use crate::mirroring::watch::{ResourceKind, TamperVerdict};
use crate::mirroring::Mirroring;
use crate::organization::{AccountRefused, Organization};
use crate::runner::Runner;
use crate::sources::{retry_if_needed, InvokeError};

pub struct InstanceEvents {
    pub(crate) mirroring: Arc<Mirroring>,
    pub(crate) launch_policy: LaunchPolicy,
    /// The member account the events came from (`None`: the hub's own):
    /// every action they lead to runs there.
    pub(crate) account: Option<AccountId>,
}

impl InstanceEvents {
    /// The instance events of the account an event came from: a member's
    /// are acted on there (EC2 asked there); one from an account this
    /// deployment does not act in is refused. A deployment of one account
    /// acts on its own events, whatever account they name (it may not know
    /// its own id).
    pub async fn sent_from(
        organization: &Organization,
        policy: &LaunchPolicy,
        sent_from: Option<&AccountId>,
    ) -> Result<InstanceEvents, AccountRefused> {
        let sent_from = sent_from.filter(|_| organization.accounts().spans_members());
        let mirroring = organization.mirroring_for(sent_from).await?;
        let home = organization.accounts().home.as_ref();
        let account = sent_from.filter(|a| home != Some(*a));
        Ok(InstanceEvents {
            mirroring,
            launch_policy: policy.in_account(account.or(home).map(AccountId::as_str)),
            account: account.cloned(),
        })
    }

    /// The hub's own.
    pub fn home(organization: &Organization, policy: &LaunchPolicy) -> InstanceEvents {
        let home = organization.accounts().home.as_ref();
        InstanceEvents {
            mirroring: organization.home().clone(),
            launch_policy: policy.in_account(home.map(AccountId::as_str)),
            account: None,
        }
    }

    /// The actions, marked with the account they run in.
    fn in_account(
        &self,
        mut actions: Vec<Result<MirrorRequest, ActionResult>>,
    ) -> Vec<Result<MirrorRequest, ActionResult>> {
        for action in actions.iter_mut().flatten() {
            match action {
                MirrorRequest::Create(create) => create.account.clone_from(&self.account),
                MirrorRequest::Remove(remove) => remove.account.clone_from(&self.account),
            }
        }
        actions
    }

    /// `running`: mirror every ENI the launch policy asks for. `shutting-down`
    /// and `terminated`: AWS deletes the ENIs' sessions but not their filters
    /// and targets, so remove what the ledger holds for the instance. `Err`
    /// says why nothing is to be done.
    pub async fn instance_actions(
        &self,
        instance_id: &str,
        state: &InstanceState,
    ) -> Result<Vec<Result<MirrorRequest, ActionResult>>, String> {
        match state {
            InstanceState::Running => match self
                .mirroring
                .launches()
                .plan_launch(instance_id, &self.launch_policy)
                .await
            {
                Ok(LaunchPlan::Actions(actions)) => Ok(self.in_account(actions)),
                Ok(LaunchPlan::NotRequested(reason)) => Err(reason),
                Err(failure) => Ok(vec![Err(failure)]),
            },
            // Anyone allowed to put an event on the bus or a message on the
            // queue could forge this one, so EC2 is asked first.
            state if state.is_ending() => match self.mirroring.launches().confirm_ended(instance_id).await {
                Ok(()) => Ok(vec![Ok(MirrorRequest::Remove(RemoveRequest {
                    account: self.account.clone(),
                    action_id: format!("{state}-{instance_id}"),
                    session_id: None,
                    target_eni: None,
                    reservation_id: None,
                    instance_id: Some(instance_id.to_owned()),
                    accountability: Accountability {
                        requested_by: Requester::policy(),
                        reason: Some(format!("instance {instance_id} is {state}: its mirrors end with it")),
                    },
                    expired: false,
                }))]),
                Err(Unconfirmed::Ignored(reason)) => {
                    warn!(instance_id, state = %state, reason = %reason, "instance event ignored");
                    Err(reason)
                }
                Err(Unconfirmed::Unknown(failure)) => Ok(vec![Err(*failure)]),
            },
            _ => Err("state not handled".into()),
        }
    }

    /// Someone deleted a traffic mirror resource: when it was ours and EC2
    /// confirms it is gone, it is announced, and the policy mirrors it ended
    /// are made again at once (their instances planned as a tag change
    /// would be). A failed check is answered retryable, so the event comes again.
    pub async fn after_deletion(
        &self,
        kind: ResourceKind,
        id: &str,
        actor: &str,
    ) -> Vec<Result<MirrorRequest, ActionResult>> {
        match self.mirroring.watch().check_tampering(kind, id, actor).await {
            TamperVerdict::Tampered { instances } => {
                let gone = match kind {
                    ResourceKind::Session => vec![id.to_owned()],
                    _ => Vec::new(),
                };
                let plans = join_all(instances.iter().map(|instance| {
                    self.mirroring
                        .fleet()
                        .plan_instance(instance, &self.launch_policy, &gone)
                }))
                .await;
                self.in_account(plans.into_iter().filter_map(Result::ok).flatten().collect())
            }
            TamperVerdict::Unknown(failure) => vec![Err(*failure)],
            TamperVerdict::NotOurs | TamperVerdict::StillThere => Vec::new(),
        }
    }

    /// What the fleet policy asks of one instance now.
    pub async fn plan_instance(&self, instance_id: &str) -> Result<Vec<Result<MirrorRequest, ActionResult>>, String> {
        self.mirroring
            .fleet()
            .plan_instance(instance_id, &self.launch_policy, &[])
            .await
            .map(|actions| self.in_account(actions))
    }
    /// An EC2 instance state-change event delivered directly.
    pub async fn handle_instance_state(
        &self,
        runner: &Runner,
        instance_id: &str,
        state: &InstanceState,
    ) -> Result<Value, InvokeError> {
        let actions = match self.instance_actions(instance_id, state).await {
            Ok(actions) => actions,
            Err(reason) => {
                info!(instance_id, reason = %reason, "instance not mirrored");
                return Ok(json!({"instanceId": instance_id, "state": state.name(), "skipped": reason}));
            }
        };
        let response = DriverResponse::new(runner.run_all(actions).await);
        retry_if_needed(&response)?;
        Ok(
            json!({"instanceId": instance_id, "state": state.name(), "actionResults": response.driver_response.action_results}),
        )
    }

    /// An instance's tags changed or an ENI was attached, delivered directly.
    pub async fn handle_instance_changed(
        &self,
        runner: &Runner,
        instance_id: &str,
        cause: &str,
    ) -> Result<Value, InvokeError> {
        let actions = match self.plan_instance(instance_id).await {
            Ok(actions) => actions,
            Err(reason) => {
                info!(instance_id, cause, reason = %reason, "instance needs no change");
                return Ok(json!({"instanceId": instance_id, "cause": cause, "skipped": reason}));
            }
        };
        let response = DriverResponse::new(runner.run_all(actions).await);
        retry_if_needed(&response)?;
        Ok(json!({"instanceId": instance_id, "cause": cause, "actionResults": response.driver_response.action_results}))
    }
}
