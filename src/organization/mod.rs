//! One deployment across an AWS Organization: the hub (the deployment's own
//! account) and the member accounts `MEMBER_ACCOUNTS` lists. Each account
//! gets the same use cases (`Mirroring`) over its own ports: EC2 with its
//! member role's credentials (`MemberAccess`), the hub's targets shared with
//! it (`hub`), and its own view of the one ledger (`scoped`). An action
//! naming any other account is refused before anything is made.

pub mod expiry;
pub mod hub;
pub mod route;
pub mod scoped;
pub mod sweep;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::domain::account::{AccountId, AccountSet, Reach};
use crate::mirroring::{for_account, Mirroring, Ports};
use crate::ports::{
    AccountReports, ActionKind, ActionRecords, AwsError, Instances, LedgerError, LedgerRecord, MemberAccess, Preflight,
    Publisher, Scans, SessionNumbers, SharedResources, SweepQueue, TargetShares, Targets,
};
use hub::{HubSessions, HubTargets, MemberInstances, MemberPreflight, MemberSessions};
use scoped::{Scope, ScopedClaims, ScopedNumbers, ScopedRecords, ScopedScans};

pub use crate::domain::account::{ACCOUNT_NOT_ALLOWED, MEMBER_ACCOUNT_UNREACHABLE};

/// Credentials are renewed this long before they expire: a Lambda
/// invocation that took a member's ports just before runs at most 15 minutes.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// Why an action cannot run in the account it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountRefused {
    #[error("account {0} is not one this deployment acts in (its own or MEMBER_ACCOUNTS); nothing was made")]
    NotAllowed(AccountId),
    #[error("member account {account} is unreachable: its role could not be assumed: {error}")]
    Unreachable { account: AccountId, error: AwsError },
}

impl AccountRefused {
    pub fn code(&self) -> &'static str {
        match self {
            AccountRefused::NotAllowed(_) => ACCOUNT_NOT_ALLOWED,
            AccountRefused::Unreachable { .. } => MEMBER_ACCOUNT_UNREACHABLE,
        }
    }

    /// A missing role or trust is not fixed by retrying; a throttled or
    /// failed STS call is.
    pub fn retryable(&self) -> bool {
        match self {
            AccountRefused::NotAllowed(_) => false,
            AccountRefused::Unreachable { error, .. } => error.kind == crate::ports::ErrorKind::Transient,
        }
    }
}

/// The ledger's ports as they are in the table (every account's), and the
/// hub's own EC2 ports that members' use cases reach across.
#[derive(Clone)]
pub struct HubParts {
    /// The deployment's own account.
    pub home: AccountId,
    pub records: Arc<dyn ActionRecords>,
    pub claims: Arc<dyn SharedResources>,
    pub numbers: Arc<dyn SessionNumbers>,
    pub scans: Arc<dyn Scans>,
    pub targets: Arc<dyn Targets>,
    pub instances: Arc<dyn Instances>,
    pub preflight: Arc<dyn Preflight>,
    pub publisher: Arc<dyn Publisher>,
    pub shares: Arc<dyn TargetShares>,
    /// Each account's last sweep report, for the roll-up.
    pub reports: Arc<dyn AccountReports>,
    /// Where a scheduled sweep too large for one invocation is fanned out.
    pub fan_out: Option<FanOut>,
}

/// A scheduled sweep of more accounts than `accounts_per_invocation` puts
/// one message per account on the function's queue instead.
#[derive(Clone)]
pub struct FanOut {
    pub queue: Arc<dyn SweepQueue>,
    pub accounts_per_invocation: usize,
}

impl HubParts {
    /// The hub's own ports for a deployment that spans members: its ledger
    /// view leaves the members' records out, and a target it deletes leaves
    /// the share first.
    pub fn home_ports(&self, ec2: Ports) -> Ports {
        Ports {
            targets: Arc::new(HubTargets {
                hub: self.targets.clone(),
                member: None,
                shares: self.shares.clone(),
            }),
            sessions: Arc::new(HubSessions {
                hub: self.home.clone(),
                sessions: ec2.sessions.clone(),
            }),
            ..self.ledger_ports(ec2, Scope::Home)
        }
    }

    fn ledger_ports(&self, ec2: Ports, scope: Scope) -> Ports {
        let records: Arc<dyn ActionRecords> = Arc::new(ScopedRecords {
            inner: self.records.clone(),
            scope: scope.clone(),
        });
        Ports {
            claims: Arc::new(ScopedClaims {
                inner: self.claims.clone(),
                scope: scope.clone(),
            }),
            numbers: Arc::new(ScopedNumbers {
                inner: self.numbers.clone(),
                scope: scope.clone(),
            }),
            scans: Arc::new(ScopedScans {
                inner: self.scans.clone(),
                records: self.records.clone(),
                scope,
            }),
            records,
            publisher: self.publisher.clone(),
            ..ec2
        }
    }

    /// A member's ports, and its sessions port (the sweep checks its share).
    fn member_ports(
        &self,
        account: &AccountId,
        ec2: crate::ports::MemberEc2,
        owner: &str,
    ) -> (Ports, Arc<MemberSessions>) {
        let targets: Arc<dyn Targets> = Arc::new(HubTargets {
            hub: self.targets.clone(),
            member: Some((account.clone(), ec2.targets.clone())),
            shares: self.shares.clone(),
        });
        let sessions = Arc::new(MemberSessions::new(
            account.clone(),
            owner.to_owned(),
            ec2.sessions.clone(),
            ec2.targets.clone(),
            self.targets.clone(),
            self.shares.clone(),
        ));
        let ports = Ports {
            targets,
            filters: ec2.filters.clone(),
            sessions: sessions.clone(),
            instances: Arc::new(MemberInstances {
                member: ec2.instances.clone(),
                hub: self.instances.clone(),
            }),
            preflight: Arc::new(MemberPreflight {
                member: ec2.preflight.clone(),
                hub: self.preflight.clone(),
                hub_targets: self.targets.clone(),
            }),
            tagging: ec2.tagging.clone(),
            records: self.records.clone(),
            claims: self.claims.clone(),
            numbers: self.numbers.clone(),
            scans: self.scans.clone(),
            publisher: self.publisher.clone(),
        };
        (self.ledger_ports(ports, Scope::Member(account.clone())), sessions)
    }
}

/// A member's use cases, while their credentials last.
struct Reached {
    mirroring: Arc<Mirroring>,
    sessions: Arc<MemberSessions>,
    renew_at: Option<SystemTime>,
}

/// The accounts a deployment acts in, and each one's use cases.
pub struct Organization {
    accounts: AccountSet,
    home: Arc<Mirroring>,
    /// Only for a deployment that spans members.
    hub: Option<(HubParts, Arc<dyn MemberAccess>)>,
    /// One lock per member, so that reaching one does not wait for another.
    members: std::sync::Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<Option<Reached>>>>>,
}

impl Organization {
    /// A deployment of one account: every action runs there; naming
    /// another account is refused.
    pub fn single(home: Arc<Mirroring>, accounts: AccountSet) -> Self {
        Self {
            accounts,
            home,
            hub: None,
            members: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A hub: `home` must be built on `parts.home_ports`.
    pub fn hub(home: Arc<Mirroring>, accounts: AccountSet, parts: HubParts, access: Arc<dyn MemberAccess>) -> Self {
        Self {
            accounts,
            home,
            hub: Some((parts, access)),
            members: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn accounts(&self) -> &AccountSet {
        &self.accounts
    }

    pub fn home(&self) -> &Arc<Mirroring> {
        &self.home
    }

    /// Every record in the table, whatever its account (to find where a
    /// remove that names no account acts).
    pub fn all_records(&self) -> Arc<dyn ActionRecords> {
        match &self.hub {
            Some((parts, _)) => parts.records.clone(),
            None => self.home.deployment().records.clone(),
        }
    }

    /// The parts of a hub (`None` for a deployment of one account).
    pub fn hub_parts(&self) -> Option<&HubParts> {
        self.hub.as_ref().map(|(parts, _)| parts)
    }

    /// This deployment's mirrors, as the ledger holds them: every create
    /// that holds resources (active, pending, removing, rollback
    /// incomplete), in every account (each record says which).
    pub async fn mirrors(&self) -> Result<Vec<LedgerRecord>, LedgerError> {
        let contents = self.all_scans().contents().await?;
        let mut records: Vec<LedgerRecord> = contents
            .records
            .into_iter()
            .filter(|r| r.kind == Some(ActionKind::Create) && r.status.is_some_and(|s| s.holds_resources()))
            .collect();
        records.sort_by(|a, b| (a.created_at, &a.action_id).cmp(&(b.created_at, &b.action_id)));
        Ok(records)
    }

    /// The whole table, every account's records and claims.
    pub fn all_scans(&self) -> Arc<dyn Scans> {
        match &self.hub {
            Some((parts, _)) => parts.scans.clone(),
            None => self.home.sweeper().scans.clone(),
        }
    }

    /// The use cases of the account an action names.
    pub async fn mirroring_for(&self, account: Option<&AccountId>) -> Result<Arc<Mirroring>, AccountRefused> {
        let member = match self.accounts.reach(account) {
            Some(Reach::Home) => return Ok(self.home.clone()),
            Some(Reach::Member(member)) => member,
            None => {
                return match account {
                    Some(named) => Err(AccountRefused::NotAllowed(named.clone())),
                    None => Ok(self.home.clone()),
                }
            }
        };
        let Some((parts, access)) = &self.hub else {
            return Err(AccountRefused::NotAllowed(member));
        };
        let slot = {
            let mut members = self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            members.entry(member.clone()).or_default().clone()
        };
        let mut reached = slot.lock().await;
        if let Some(current) = reached.as_ref() {
            if current.renew_at.is_none_or(|at| SystemTime::now() < at) {
                return Ok(current.mirroring.clone());
            }
            info!(account = %member, "renewing the member account's credentials");
        }
        let ec2 = access.reach(&member).await.map_err(|error| {
            warn!(account = %member, error = %error, "member account unreachable");
            AccountRefused::Unreachable {
                account: member.clone(),
                error,
            }
        })?;
        let renew_at = ec2
            .expires_at
            .map(|at| at.checked_sub(RENEW_BEFORE_EXPIRY).unwrap_or(at));
        let (ports, sessions) = parts.member_ports(&member, ec2, &self.home.deployment().owner);
        let mirroring = Arc::new(for_account(&self.home, member.clone(), ports));
        *reached = Some(Reached {
            mirroring: mirroring.clone(),
            sessions,
            renew_at,
        });
        Ok(mirroring)
    }

    /// Shares again every hub target a member's sessions of ours use and
    /// the member lost (see `MemberSessions::keep_shared`); `None` when this
    /// process has not reached the member.
    pub(crate) async fn keep_shared(&self, member: &AccountId) -> Option<crate::ports::AwsResult<Vec<String>>> {
        let slot = {
            let members = self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            members.get(member).cloned()?
        };
        let sessions = slot.lock().await.as_ref().map(|r| r.sessions.clone())?;
        Some(sessions.keep_shared().await)
    }
}

impl From<Mirroring> for Organization {
    /// One account's deployment, which names no other.
    fn from(home: Mirroring) -> Self {
        Self::single(Arc::new(home), AccountSet::default())
    }
}
