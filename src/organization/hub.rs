//! EC2 across accounts: a member's use cases reach the hub's targets (and
//! the hub's appliance ENIs) through these ports, which share a hub target
//! with the member before its first session there and take it out of the
//! share before it is deleted. The filter and the session are always the
//! member's; a `vpce-` endpoint target is made in the member account.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tracing::{info, warn};

use super::scoped::member_owns_destination;
use crate::domain::account::AccountId;
use crate::domain::instance::InstanceTypeFacts;
use crate::domain::model::TargetSpec;
use crate::mirroring::TAG_MANAGED_BY;
use crate::ports::{
    AwsResult, CheckedCall, Deleted, Ingress, InstanceInfo, Instances, InterfaceInfo, MirrorSession, MirrorTarget,
    NewSession, Preflight, SessionQuery, Sessions, Tags, TargetShares, Targets,
};

/// Whose account a destination's target is made in.
fn members_own(destination: &TargetSpec) -> bool {
    destination.claim_name().is_some_and(member_owns_destination)
}

/// The targets an account owns, of those it lists: a target shared with it
/// is listed too, with its owner's id.
fn owned_by(account: &AccountId, listed: Vec<MirrorTarget>) -> Vec<MirrorTarget> {
    listed
        .into_iter()
        .filter(|t| t.owner_id.as_deref().is_none_or(|owner| owner == account.as_str()))
        .collect()
}

/// The hub's own sessions: EC2 may list a member's session on a hub target
/// to the hub too (with the member's id as its owner); the member's use
/// cases keep it, the hub's must not adopt or judge it.
pub struct HubSessions {
    pub hub: AccountId,
    pub sessions: Arc<dyn Sessions>,
}

#[async_trait]
impl Sessions for HubSessions {
    async fn sessions(&self, query: &SessionQuery) -> AwsResult<Vec<MirrorSession>> {
        let mut listed = self.sessions.sessions(query).await?;
        listed.retain(|s| s.owner_id.as_deref().is_none_or(|owner| owner == self.hub.as_str()));
        Ok(listed)
    }

    async fn create_session(&self, session: &NewSession, tags: &Tags, token: &str) -> AwsResult<MirrorSession> {
        self.sessions.create_session(session, tags, token).await
    }

    async fn delete_session(&self, id: &str) -> AwsResult<Deleted> {
        self.sessions.delete_session(id).await
    }
}

/// The hub's targets, seen from the hub itself or from one member.
pub struct HubTargets {
    pub hub: Arc<dyn Targets>,
    /// `None` in the hub's own use cases.
    pub member: Option<(AccountId, Arc<dyn Targets>)>,
    pub shares: Arc<dyn TargetShares>,
}

impl HubTargets {
    fn members_for(&self, destination: &TargetSpec) -> Option<&Arc<dyn Targets>> {
        self.member
            .as_ref()
            .filter(|_| members_own(destination))
            .map(|(_, targets)| targets)
    }
}

#[async_trait]
impl Targets for HubTargets {
    async fn targets_of(&self, destination: &TargetSpec) -> AwsResult<Vec<MirrorTarget>> {
        match (self.members_for(destination), destination, &self.member) {
            (Some(member), _, _) => member.targets_of(destination).await,
            (None, TargetSpec::Existing(_), Some((_, member))) => {
                let hubs = self.hub.targets_of(destination).await?;
                if hubs.is_empty() {
                    member.targets_of(destination).await
                } else {
                    Ok(hubs)
                }
            }
            _ => self.hub.targets_of(destination).await,
        }
    }

    async fn target(&self, id: &str) -> AwsResult<Option<MirrorTarget>> {
        match (self.hub.target(id).await?, &self.member) {
            (Some(target), _) => Ok(Some(target)),
            (None, Some((_, member))) => member.target(id).await,
            (None, None) => Ok(None),
        }
    }

    /// The account's own: a member's sweep judges the targets made in it,
    /// the hub's sweep the hub's (with every account's users counted).
    async fn all_targets(&self) -> AwsResult<Vec<MirrorTarget>> {
        match &self.member {
            Some((account, member)) => Ok(owned_by(account, member.all_targets().await?)),
            None => self.hub.all_targets().await,
        }
    }

    async fn create_target(&self, destination: &TargetSpec, tags: &Tags, token: &str) -> AwsResult<String> {
        if let Some(member) = self.members_for(destination) {
            return member.create_target(destination, tags, token).await;
        }
        let id = self.hub.create_target(destination, tags, token).await?;
        if let Some((account, _)) = &self.member {
            // Made for a member's session: shared before it is handed out.
            self.shares.share(&id, account).await?;
        }
        Ok(id)
    }

    async fn delete_target(&self, id: &str) -> AwsResult<Deleted> {
        if let Some((_, member)) = &self.member {
            if self.hub.target(id).await?.is_none() {
                return member.delete_target(id).await;
            }
        }
        // A target leaves the share with its last user; the share names it
        // only while it exists.
        if let Err(err) = self.shares.unshare_target(id).await {
            if !err.is_not_found() {
                return Err(err);
            }
        }
        self.hub.delete_target(id).await
    }
}

/// A member's sessions: a session to a hub target is made once the target
/// is shared with the member, and the member leaves the share with its last
/// session to a hub target.
pub struct MemberSessions {
    pub account: AccountId,
    pub owner: String,
    pub member: Arc<dyn Sessions>,
    pub member_targets: Arc<dyn Targets>,
    pub hub_targets: Arc<dyn Targets>,
    pub shares: Arc<dyn TargetShares>,
    /// Hub targets this process shared with the account (or found shared).
    shared: Mutex<HashSet<String>>,
    /// Creates at once share a target once: the others wait, then find it shared.
    sharing: tokio::sync::Mutex<()>,
}

impl MemberSessions {
    pub fn new(
        account: AccountId,
        owner: String,
        member: Arc<dyn Sessions>,
        member_targets: Arc<dyn Targets>,
        hub_targets: Arc<dyn Targets>,
        shares: Arc<dyn TargetShares>,
    ) -> Self {
        Self {
            account,
            owner,
            member,
            member_targets,
            hub_targets,
            shares,
            shared: Mutex::new(HashSet::new()),
            sharing: tokio::sync::Mutex::new(()),
        }
    }

    fn known_shared(&self, target_id: &str) -> bool {
        self.shared.lock().map(|s| s.contains(target_id)).unwrap_or(false)
    }

    fn remember(&self, target_id: &str, shared: bool) {
        if let Ok(mut known) = self.shared.lock() {
            if shared {
                known.insert(target_id.to_owned());
            } else {
                known.remove(target_id);
            }
        }
    }

    /// Shares a hub target with the account unless this process knows it is.
    async fn ensure_shared(&self, target_id: &str) -> AwsResult<bool> {
        if self.known_shared(target_id) {
            return Ok(true);
        }
        let _one_at_a_time = self.sharing.lock().await;
        if self.known_shared(target_id) {
            return Ok(true);
        }
        if self.hub_targets.target(target_id).await?.is_none() {
            return Ok(false); // the member's own (or nobody's: EC2 will say)
        }
        self.shares.share(target_id, &self.account).await?;
        self.remember(target_id, true);
        Ok(true)
    }

    /// Whether any session of ours in the account still sends to a hub target.
    async fn uses_hub_targets(&self) -> AwsResult<bool> {
        Ok(!self.hub_targets_in_use().await?.is_empty())
    }

    /// The targets not the member's own that sessions of ours in the
    /// account send to: the hub's (or, rarely, another account's).
    async fn hub_targets_in_use(&self) -> AwsResult<BTreeSet<String>> {
        let ours = self
            .member
            .sessions(&SessionQuery::Tag(TAG_MANAGED_BY.to_owned(), self.owner.clone()))
            .await?;
        if ours.is_empty() {
            return Ok(BTreeSet::new());
        }
        let own: HashSet<String> = owned_by(&self.account, self.member_targets.all_targets().await?)
            .into_iter()
            .map(|t| t.id)
            .collect();
        Ok(ours
            .into_iter()
            .map(|s| s.target_id)
            .filter(|t| !own.contains(t))
            .collect())
    }

    /// The sweep's check of the share: every hub target a session of ours
    /// in the account sends to is shared with it. Another process may have
    /// taken the account out as this one made a session (it saw none), or
    /// a person may have; the session then stays, cut off from its target.
    /// Returns the targets shared again. A target neither the member's nor
    /// the hub's (another account shared it) is not the hub's to share.
    pub async fn keep_shared(&self) -> AwsResult<Vec<String>> {
        let mut again = Vec::new();
        for target in self.hub_targets_in_use().await? {
            if self.hub_targets.target(&target).await?.is_none() {
                continue;
            }
            if self.shares.share(&target, &self.account).await? {
                warn!(account = %self.account, target = %target, "a hub target in use was not shared with the member: shared again");
                again.push(target.clone());
            }
            self.remember(&target, true);
        }
        Ok(again)
    }
}

#[async_trait]
impl Sessions for MemberSessions {
    async fn sessions(&self, query: &SessionQuery) -> AwsResult<Vec<MirrorSession>> {
        self.member.sessions(query).await
    }

    async fn create_session(&self, session: &NewSession, tags: &Tags, token: &str) -> AwsResult<MirrorSession> {
        let hubs = self.ensure_shared(&session.target_id).await?;
        match self.member.create_session(session, tags, token).await {
            // Another process took the account out of the share since this
            // one shared the target: share it again, once.
            Err(err) if hubs && err.code.starts_with("InvalidTrafficMirrorTargetId") => {
                warn!(account = %self.account, target = %session.target_id, "hub target not shared with the member; sharing again");
                self.remember(&session.target_id, false);
                self.shares.share(&session.target_id, &self.account).await?;
                self.remember(&session.target_id, true);
                self.member.create_session(session, tags, token).await
            }
            answer => answer,
        }
    }

    async fn delete_session(&self, id: &str) -> AwsResult<Deleted> {
        let deleted = self.member.delete_session(id).await?;
        match self.uses_hub_targets().await {
            Ok(false) => {
                info!(account = %self.account, "the member's last session to a hub target is gone: it leaves the share");
                if let Err(err) = self.shares.unshare_account(&self.account).await {
                    // The session is gone all the same; the sweep tries again.
                    warn!(account = %self.account, error = %err, "could not take the member out of the share");
                }
                if let Ok(mut known) = self.shared.lock() {
                    known.clear();
                }
            }
            Ok(true) => {}
            Err(err) => {
                warn!(account = %self.account, error = %err, "could not tell whether the member still uses hub targets")
            }
        }
        Ok(deleted)
    }
}

/// A member's view of instances and interfaces: its own, and the hub's
/// appliance ENIs (a target's capacity, zone and ingress rules are read there).
pub struct MemberInstances {
    pub member: Arc<dyn Instances>,
    pub hub: Arc<dyn Instances>,
}

#[async_trait]
impl Instances for MemberInstances {
    async fn instance(&self, id: &str) -> AwsResult<Option<InstanceInfo>> {
        match self.member.instance(id).await? {
            Some(found) => Ok(Some(found)),
            None => self.hub.instance(id).await,
        }
    }

    async fn instance_type(&self, instance_type: &str) -> AwsResult<Option<InstanceTypeFacts>> {
        self.member.instance_type(instance_type).await
    }

    async fn interface(&self, eni: &str) -> AwsResult<Option<InterfaceInfo>> {
        match self.member.interface(eni).await? {
            Some(found) => Ok(Some(found)),
            None => self.hub.interface(eni).await,
        }
    }

    async fn instances(&self) -> AwsResult<Vec<InstanceInfo>> {
        self.member.instances().await
    }

    async fn ingress(&self, eni: &str) -> AwsResult<Option<Ingress>> {
        match self.member.ingress(eni).await? {
            Some(found) => Ok(Some(found)),
            None => self.hub.ingress(eni).await,
        }
    }
}

/// A member's dry runs: a hub target's create is asked of the hub; a
/// session to a hub target cannot be asked before the share that only the
/// real create makes, so it is not asked.
pub struct MemberPreflight {
    pub member: Arc<dyn Preflight>,
    pub hub: Arc<dyn Preflight>,
    pub hub_targets: Arc<dyn Targets>,
}

#[async_trait]
impl Preflight for MemberPreflight {
    async fn permitted(&self, call: &CheckedCall, tags: &Tags) -> AwsResult<()> {
        match call {
            CheckedCall::Target(destination) if !members_own(destination) => self.hub.permitted(call, tags).await,
            CheckedCall::Session(session) if self.hub_targets.target(&session.target_id).await?.is_some() => Ok(()),
            _ => self.member.permitted(call, tags).await,
        }
    }
}
