//! The one ledger of a deployment, seen from one account. Every account's
//! records, claims and session numbers live in the hub's table; each
//! account's use cases see only their own, so that the rules written for
//! one account (adoption, stale claims, the sweep's deletions) hold in each.
//!
//! - A record carries its member account (`account`; none: the hub's own).
//! - A member's claims are stored under `<account>/`: its filters, its
//!   session numbers, and targets it owns (`vpce-` endpoints in its VPCs).
//! - A target the hub owns (an ENI, an NLB, a `tmt-` of its own) has one
//!   claim for every account, unprefixed, so its users of every account are
//!   counted together (the 10 sources of an ENI target count every account).
//!   Its sweep runs in the hub, which learns that another account's user is
//!   live from `LedgerContents::elsewhere`.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::account::AccountId;
use crate::ports::{
    ActionRecords, Claim, LedgerContents, LedgerError, LedgerQuery, LedgerRecord, NumberClaim, RecordStatus, Scans,
    SessionNumbers, SharedClaims, SharedKey, SharedResources, Slot, SourceClaims,
};

/// Which account a view of the ledger is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The deployment's own account (records without an account).
    Home,
    Member(AccountId),
}

impl Scope {
    pub fn account(&self) -> Option<&AccountId> {
        match self {
            Scope::Home => None,
            Scope::Member(account) => Some(account),
        }
    }

    fn holds(&self, record: &LedgerRecord) -> bool {
        record.account.as_ref() == self.account()
    }

    /// The stored name of a claim key.
    pub fn stored(&self, key: &SharedKey) -> SharedKey {
        match (self, key) {
            (Scope::Member(account), SharedKey::Filter(name)) => {
                SharedKey::Filter(format!("{}{name}", account.scope_prefix()))
            }
            (Scope::Member(account), SharedKey::Target(name)) if member_owns_destination(name) => {
                SharedKey::Target(format!("{}{name}", account.scope_prefix()))
            }
            _ => key.clone(),
        }
    }

    /// A stored claim key as this scope names it; `None` when it is not
    /// this scope's to judge (another member's, or the hub's for a member).
    fn seen(&self, key: &SharedKey) -> Option<SharedKey> {
        let strip = |name: &str| -> Option<String> {
            match self {
                Scope::Home => (!scoped(name)).then(|| name.to_owned()),
                Scope::Member(account) => name.strip_prefix(&account.scope_prefix()).map(str::to_owned),
            }
        };
        Some(match key {
            SharedKey::Target(name) => SharedKey::Target(strip(name)?),
            SharedKey::Filter(name) => SharedKey::Filter(strip(name)?),
        })
    }

    fn stored_eni(&self, eni: &str) -> String {
        match self {
            Scope::Home => eni.to_owned(),
            Scope::Member(account) => format!("{}{eni}", account.scope_prefix()),
        }
    }

    fn seen_eni(&self, stored: &str) -> Option<String> {
        match self {
            Scope::Home => (!scoped(stored)).then(|| stored.to_owned()),
            Scope::Member(account) => stored.strip_prefix(&account.scope_prefix()).map(str::to_owned),
        }
    }
}

/// A destination a member account owns: a Gateway Load Balancer endpoint in
/// its own VPC. Every other destination is the hub's.
pub fn member_owns_destination(name: &str) -> bool {
    name.starts_with("vpce-")
}

/// Whether a stored name carries a member account's prefix.
fn scoped(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(head, _)| AccountId::parse(head).is_some())
}

/// Action records of one account.
pub struct ScopedRecords {
    pub inner: Arc<dyn ActionRecords>,
    pub scope: Scope,
}

impl ScopedRecords {
    fn marked(&self, record: &LedgerRecord) -> LedgerRecord {
        let mut record = record.clone();
        record.account = self.scope.account().cloned();
        record
    }
}

#[async_trait]
impl ActionRecords for ScopedRecords {
    async fn claim(&self, record: &LedgerRecord, lease_seconds: u64) -> Result<Claim, LedgerError> {
        self.inner.claim(&self.marked(record), lease_seconds).await
    }

    async fn save(&self, record: &mut LedgerRecord) -> Result<(), LedgerError> {
        record.account = self.scope.account().cloned();
        self.inner.save(record).await
    }

    async fn adopt(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        self.inner.adopt(&self.marked(record)).await
    }

    /// Any account's: an action id names one action in the whole deployment.
    async fn get(&self, action_id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
        self.inner.get(action_id).await
    }

    async fn find(&self, query: &LedgerQuery) -> Result<Vec<LedgerRecord>, LedgerError> {
        let mut found = self.inner.find(query).await?;
        found.retain(|r| self.scope.holds(r));
        Ok(found)
    }
}

/// Claims of shared targets and filters, as one account names them.
pub struct ScopedClaims {
    pub inner: Arc<dyn SharedResources>,
    pub scope: Scope,
}

#[async_trait]
impl SharedResources for ScopedClaims {
    async fn join_shared(
        &self,
        key: &SharedKey,
        action_id: &str,
        limit: usize,
        lease_seconds: u64,
    ) -> Result<Slot, LedgerError> {
        self.inner
            .join_shared(&self.scope.stored(key), action_id, limit, lease_seconds)
            .await
    }

    async fn shared_made(&self, key: &SharedKey, action_id: &str, resource_id: &str) -> Result<(), LedgerError> {
        self.inner
            .shared_made(&self.scope.stored(key), action_id, resource_id)
            .await
    }

    async fn leave_shared(&self, key: &SharedKey, action_id: &str) -> Result<(Option<String>, usize), LedgerError> {
        self.inner.leave_shared(&self.scope.stored(key), action_id).await
    }

    async fn retire_shared(&self, key: &SharedKey, resource_id: &str) -> Result<bool, LedgerError> {
        self.inner.retire_shared(&self.scope.stored(key), resource_id).await
    }

    async fn restore_shared(&self, key: &SharedKey, resource_id: &str) -> Result<(), LedgerError> {
        self.inner.restore_shared(&self.scope.stored(key), resource_id).await
    }

    async fn shared(&self, key: &SharedKey) -> Result<Option<SharedClaims>, LedgerError> {
        let claims = self.inner.shared(&self.scope.stored(key)).await?;
        Ok(claims.map(|c| SharedClaims { key: key.clone(), ..c }))
    }
}

/// Session numbers, claimed per (account, source ENI).
pub struct ScopedNumbers {
    pub inner: Arc<dyn SessionNumbers>,
    pub scope: Scope,
}

#[async_trait]
impl SessionNumbers for ScopedNumbers {
    async fn claim_number(
        &self,
        source_eni: &str,
        number: u16,
        action_id: &str,
        limit: usize,
    ) -> Result<NumberClaim, LedgerError> {
        self.inner
            .claim_number(&self.scope.stored_eni(source_eni), number, action_id, limit)
            .await
    }

    async fn numbers(&self, source_eni: &str) -> Result<Vec<(u16, String)>, LedgerError> {
        self.inner.numbers(&self.scope.stored_eni(source_eni)).await
    }

    async fn release_number(&self, source_eni: &str, number: u16, action_id: &str) -> Result<(), LedgerError> {
        self.inner
            .release_number(&self.scope.stored_eni(source_eni), number, action_id)
            .await
    }
}

/// The table as one account's sweep and expiry read it.
pub struct ScopedScans {
    pub inner: Arc<dyn Scans>,
    pub records: Arc<dyn ActionRecords>,
    pub scope: Scope,
}

#[async_trait]
impl Scans for ScopedScans {
    async fn contents(&self) -> Result<LedgerContents, LedgerError> {
        let whole = self.inner.contents().await?;
        Ok(view(&self.scope, whole))
    }

    async fn ending_by(&self, at: u64) -> Result<Vec<String>, LedgerError> {
        let mut mine = Vec::new();
        for id in self.inner.ending_by(at).await? {
            // The index holds ids only: the record says whose it is.
            if self.records.get(&id).await?.is_some_and(|r| self.scope.holds(&r)) {
                mine.push(id);
            }
        }
        Ok(mine)
    }
}

/// The whole table, read once for the accounts whose sweeps start together:
/// an organization's sweep would otherwise read every account's records
/// once per account. A read is shared for `fresh_for` by the sweeps that
/// start together (one invocation's, or one SQS batch's fanned-out
/// messages), which `forget` it first, so no sweep sees what an earlier
/// one read; the accounts' records are apart, a scan of many pages
/// is no snapshot either, and each sweep's rules hold under it (every write
/// they make is conditional).
pub struct SharedScan {
    inner: Arc<dyn Scans>,
    fresh_for: std::time::Duration,
    last: tokio::sync::Mutex<Option<(std::time::Instant, LedgerContents)>>,
}

impl SharedScan {
    pub fn new(inner: Arc<dyn Scans>, fresh_for: std::time::Duration) -> Self {
        Self {
            inner,
            fresh_for,
            last: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Scans for SharedScan {
    async fn contents(&self) -> Result<LedgerContents, LedgerError> {
        // Held while reading: the accounts starting now wait for one read.
        let mut last = self.last.lock().await;
        if let Some((at, contents)) = last.as_ref() {
            if at.elapsed() < self.fresh_for {
                return Ok(contents.clone());
            }
        }
        let contents = self.inner.contents().await?;
        *last = Some((std::time::Instant::now(), contents.clone()));
        Ok(contents)
    }

    async fn ending_by(&self, at: u64) -> Result<Vec<String>, LedgerError> {
        self.inner.ending_by(at).await
    }

    async fn forget(&self) {
        *self.last.lock().await = None;
    }
}

/// One account's part of the whole table.
pub fn view(scope: &Scope, whole: LedgerContents) -> LedgerContents {
    let (records, others): (Vec<LedgerRecord>, Vec<LedgerRecord>) =
        whole.records.into_iter().partition(|r| scope.holds(r));
    let shared: Vec<SharedClaims> = whole
        .shared
        .into_iter()
        .filter_map(|c| {
            let key = scope.seen(&c.key)?;
            Some(SharedClaims { key, ..c })
        })
        .collect();
    let users: BTreeSet<&str> = shared.iter().flat_map(|c| c.users.iter().map(String::as_str)).collect();
    let elsewhere = others
        .iter()
        .filter(|r| users.contains(r.action_id.as_str()))
        .filter(|r| {
            r.status
                .is_some_and(|s| s.holds_resources() || s == RecordStatus::Pending)
        })
        .map(|r| r.action_id.clone())
        .chain(whole.elsewhere)
        .collect();
    let sources = whole
        .sources
        .into_iter()
        .filter_map(|s| {
            Some(SourceClaims {
                source_eni: scope.seen_eni(&s.source_eni)?,
                numbers: s.numbers,
            })
        })
        .collect();
    LedgerContents {
        records,
        shared,
        sources,
        elsewhere,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(text: &str) -> AccountId {
        AccountId::parse(text).expect("12 digits")
    }

    fn record(id: &str, owner: Option<&str>, status: RecordStatus) -> LedgerRecord {
        LedgerRecord {
            action_id: id.into(),
            account: owner.map(account),
            status: Some(status),
            ..LedgerRecord::default()
        }
    }

    fn claims(key: SharedKey, users: &[&str]) -> SharedClaims {
        SharedClaims {
            key,
            resource_id: Some("r".into()),
            maker: None,
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn a_member_stores_its_filters_numbers_and_endpoints_apart_but_shares_the_hubs_targets() {
        let member = Scope::Member(account("222222222222"));
        assert_eq!(
            member.stored(&SharedKey::Filter("rules-1".into())),
            SharedKey::Filter("222222222222/rules-1".into())
        );
        assert_eq!(
            member.stored(&SharedKey::Target("vpce-0123456789abcdef0".into())),
            SharedKey::Target("222222222222/vpce-0123456789abcdef0".into())
        );
        for hubs in [
            "eni-0123456789abcdef0",
            "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/a/b",
        ] {
            assert_eq!(
                member.stored(&SharedKey::Target(hubs.into())),
                SharedKey::Target(hubs.into())
            );
        }
        assert_eq!(member.stored_eni("eni-1"), "222222222222/eni-1");
        assert_eq!(
            Scope::Home.stored(&SharedKey::Filter("rules-1".into())),
            SharedKey::Filter("rules-1".into())
        );
    }

    #[test]
    fn each_account_sees_its_own_records_and_claims_and_the_hub_knows_members_users_are_live() {
        let whole = LedgerContents {
            records: vec![
                record("home-1", None, RecordStatus::Active),
                record("member-1", Some("222222222222"), RecordStatus::Active),
                record("member-gone", Some("222222222222"), RecordStatus::Removed),
                record("other-1", Some("333333333333"), RecordStatus::Active),
            ],
            shared: vec![
                claims(
                    SharedKey::Target("eni-hub".into()),
                    &["home-1", "member-1", "member-gone", "other-1"],
                ),
                claims(SharedKey::Filter("222222222222/rules".into()), &["member-1"]),
                claims(SharedKey::Filter("rules".into()), &["home-1"]),
            ],
            sources: vec![
                SourceClaims {
                    source_eni: "222222222222/eni-m".into(),
                    numbers: vec![(1, "member-1".into())],
                },
                SourceClaims {
                    source_eni: "eni-h".into(),
                    numbers: vec![(1, "home-1".into())],
                },
            ],
            elsewhere: BTreeSet::new(),
        };
        let home = view(&Scope::Home, whole.clone());
        assert_eq!(
            home.records.iter().map(|r| r.action_id.as_str()).collect::<Vec<_>>(),
            ["home-1"]
        );
        assert_eq!(home.shared.len(), 2, "the hub's target and its own filter");
        assert_eq!(home.sources.len(), 1);
        // A removed member action is stale wherever it is; live ones are not.
        assert_eq!(
            home.elsewhere,
            ["member-1".to_string(), "other-1".to_string()].into_iter().collect()
        );

        let member = view(&Scope::Member(account("222222222222")), whole);
        assert_eq!(
            member.records.iter().map(|r| r.action_id.as_str()).collect::<Vec<_>>(),
            ["member-1", "member-gone"]
        );
        assert_eq!(
            member.shared,
            vec![claims(SharedKey::Filter("rules".into()), &["member-1"])]
        );
        assert_eq!(member.sources[0].source_eni, "eni-m");
        assert!(member.elsewhere.is_empty());
    }

    /// Counts its reads of the table.
    #[derive(Default)]
    struct CountedScans(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Scans for CountedScans {
        async fn contents(&self) -> Result<LedgerContents, LedgerError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(LedgerContents::default())
        }

        async fn ending_by(&self, _at: u64) -> Result<Vec<String>, LedgerError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn accounts_sweeping_together_share_one_read_of_the_table() {
        let counted = Arc::new(CountedScans::default());
        let shared = SharedScan::new(counted.clone(), std::time::Duration::from_secs(60));
        let views = futures::future::join_all((0..8).map(|_| shared.contents())).await;
        assert!(views.iter().all(Result::is_ok));
        assert_eq!(
            counted.0.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "eight accounts, one read"
        );
        let stale = SharedScan::new(counted.clone(), std::time::Duration::ZERO);
        stale.contents().await.expect("read");
        stale.contents().await.expect("read");
        assert_eq!(
            counted.0.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "past its freshness, read again"
        );
        // The next sweep forgets the last one's read.
        shared.forget().await;
        shared.contents().await.expect("read");
        assert_eq!(
            counted.0.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "a new sweep reads anew"
        );
    }
}
