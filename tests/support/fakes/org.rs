//! The organization's fakes: RAM's share of the hub's targets (`MemoryShares`,
//! which lets a member's `MemoryEc2` name a target only while it is shared
//! with that account), and the member roles (`MemoryMembers`: each member
//! account's own `MemoryEc2`, or a role that refuses to be assumed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use traffic_mirroring::domain::account::{AccountId, MEMBER_ACCOUNT_UNREACHABLE};
use traffic_mirroring::ports::{AwsError, AwsResult, ErrorKind, MemberAccess, MemberEc2, SweepQueue, TargetShares};

use super::MemoryEc2;

/// The deployment's one resource share: targets and principals.
#[derive(Default)]
pub struct MemoryShares {
    pub targets: Mutex<BTreeSet<String>>,
    pub principals: Mutex<BTreeSet<String>>,
    members: Mutex<BTreeMap<String, Arc<MemoryEc2>>>,
    /// Mutating RAM calls (associate, disassociate).
    pub changes: AtomicUsize,
}

impl MemoryShares {
    /// The member's EC2, which sees what is shared with it.
    pub fn knows(&self, account: &str, ec2: Arc<MemoryEc2>) {
        self.members.lock().expect("members").insert(account.to_owned(), ec2);
    }

    /// Recomputes what each member may name: every shared target, while the
    /// member is a principal.
    fn publish(&self) {
        let targets = self.targets.lock().expect("targets").clone();
        let principals = self.principals.lock().expect("principals").clone();
        for (account, ec2) in self.members.lock().expect("members").iter() {
            let mut seen: BTreeSet<String> = ec2.shared_in().into_iter().collect();
            seen.extend(targets.iter().cloned());
            for target in seen {
                ec2.share_in(&target, principals.contains(account) && targets.contains(&target));
            }
        }
    }
}

#[async_trait]
impl TargetShares for MemoryShares {
    async fn share(&self, target_id: &str, account: &AccountId) -> AwsResult<bool> {
        let new_target = self.targets.lock().expect("targets").insert(target_id.to_owned());
        let new_principal = self.principals.lock().expect("principals").insert(account.to_string());
        if new_target || new_principal {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        self.publish();
        Ok(new_target || new_principal)
    }

    async fn unshare_account(&self, account: &AccountId) -> AwsResult<()> {
        if self.principals.lock().expect("principals").remove(account.as_str()) {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        self.publish();
        Ok(())
    }

    async fn unshare_target(&self, target_id: &str) -> AwsResult<()> {
        if self.targets.lock().expect("targets").remove(target_id) {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        self.publish();
        Ok(())
    }
}

/// Member roles: each member account's EC2, reached by assuming its role.
#[derive(Default)]
pub struct MemoryMembers {
    pub accounts: Mutex<BTreeMap<String, Arc<MemoryEc2>>>,
    /// Accounts whose role refuses to be assumed.
    pub refusing: Mutex<BTreeSet<String>>,
    /// Accounts for which STS answers "throttled" (for now).
    pub throttled: Mutex<BTreeSet<String>>,
    /// Roles assumed, per account.
    pub assumed: Mutex<BTreeMap<String, usize>>,
    /// How long credentials last (`None`: for ever).
    pub lifetime: Mutex<Option<std::time::Duration>>,
}

impl MemoryMembers {
    pub fn add(&self, account: &str, ec2: Arc<MemoryEc2>) {
        self.accounts.lock().expect("accounts").insert(account.to_owned(), ec2);
    }

    pub fn refuse(&self, account: &str) {
        self.refusing.lock().expect("refusing").insert(account.to_owned());
    }

    /// STS throttles the account's AssumeRole until `throttle(account, false)`.
    pub fn throttle(&self, account: &str, on: bool) {
        let mut throttled = self.throttled.lock().expect("throttled");
        if on {
            throttled.insert(account.to_owned());
        } else {
            throttled.remove(account);
        }
    }

    pub fn times_assumed(&self, account: &str) -> usize {
        self.assumed.lock().expect("assumed").get(account).copied().unwrap_or(0)
    }
}

#[async_trait]
impl MemberAccess for MemoryMembers {
    async fn reach(&self, account: &AccountId) -> AwsResult<MemberEc2> {
        *self
            .assumed
            .lock()
            .expect("assumed")
            .entry(account.to_string())
            .or_default() += 1;
        if self.throttled.lock().expect("throttled").contains(account.as_str()) {
            return Err(AwsError::new(
                ErrorKind::Transient,
                MEMBER_ACCOUNT_UNREACHABLE,
                format!("Throttling: Rate exceeded (AssumeRole into {account})"),
            ));
        }
        if self.refusing.lock().expect("refusing").contains(account.as_str()) {
            return Err(AwsError::new(
                ErrorKind::Rejected,
                MEMBER_ACCOUNT_UNREACHABLE,
                format!("AccessDenied: not authorized to perform sts:AssumeRole on {account}'s member role"),
            ));
        }
        let ec2 = self
            .accounts
            .lock()
            .expect("accounts")
            .get(account.as_str())
            .cloned()
            .ok_or_else(|| AwsError::new(ErrorKind::Rejected, MEMBER_ACCOUNT_UNREACHABLE, "no such role"))?;
        let expires_at = self
            .lifetime
            .lock()
            .expect("lifetime")
            .map(|d| std::time::SystemTime::now() + d);
        Ok(MemberEc2 {
            targets: ec2.clone(),
            filters: ec2.clone(),
            sessions: ec2.clone(),
            instances: ec2.clone(),
            preflight: ec2.clone(),
            tagging: ec2,
            expires_at,
        })
    }
}

/// The function's queue: the bodies of the messages put on it.
#[derive(Default)]
pub struct MemoryQueue {
    pub messages: Mutex<Vec<serde_json::Value>>,
}

#[async_trait]
impl SweepQueue for MemoryQueue {
    async fn enqueue_sweep(&self, account: &AccountId) -> AwsResult<()> {
        self.messages
            .lock()
            .expect("messages")
            .push(serde_json::json!({"sweep": {"account": account.as_str()}}));
        Ok(())
    }
}
