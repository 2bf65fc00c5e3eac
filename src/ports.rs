//! What the mirroring logic needs from the outside world, as small traits by
//! capability (EC2: targets, filters, sessions, instances, preflight,
//! tagging; the ledger: action records, shared resources, session numbers,
//! scans; completion events), with our own types in and out. The AWS adapters in `aws/` implement
//! them; no SDK type crosses this line.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::contract::ActionResult;
use crate::domain::account::AccountId;
use crate::domain::instance::{InstanceState, InstanceTypeFacts};
use crate::domain::model::{EniId, RuleSpec, TargetSpec};

/// What went wrong in a call, classified once by its error code (see `aws::errors`)
/// so that callers match on the kind, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttling, 5xx, timeouts, a lost connection: the same call may pass later.
    Transient,
    /// The resource does not exist (any more).
    NotFound,
    /// A DynamoDB condition did not hold.
    ConditionFailed,
    /// An AWS quota or limit from contract §4.
    Quota,
    /// A resource is still used by another (delete of a target or filter in use).
    InUse,
    /// Anything else AWS refused: bad parameters, permissions, unsupported ENI.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
    /// The call may have taken effect though no answer said so: it was cut
    /// off in flight by the deadline, or failed in transit. A create that
    /// fails this way may have made its resource all the same.
    pub in_doubt: bool,
}

impl AwsError {
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            in_doubt: false,
        }
    }

    /// The same error, for a call that may have taken effect (see `in_doubt`).
    pub fn in_doubt(mut self) -> Self {
        self.in_doubt = true;
        self
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

pub type AwsResult<T> = Result<T, AwsError>;

/// Codes that say a call was refused for its rate, before it did anything:
/// try again later, whatever the service. The one list: the adapters'
/// error table and patience classify with it, and so does the logic.
pub const THROTTLING: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "RequestThrottledException",
];

pub fn is_throttling(code: &str) -> bool {
    THROTTLING.contains(&code)
}

/// Tags we put on everything we create, so ownership can be read from EC2 alone.
pub type Tags = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorTarget {
    pub id: String,
    pub network_interface_id: Option<String>,
    /// The Network Load Balancer ARN or Gateway Load Balancer endpoint id.
    pub load_balancer: Option<String>,
    pub tags: Tags,
    /// The account that owns it, as EC2 says (`None`: not said); another
    /// account's target is listed where it is shared.
    pub owner_id: Option<String>,
}

impl MirrorTarget {
    pub fn tag(&self, key: &str) -> Option<&str> {
        tag_value(&self.tags, key)
    }

    /// The name of its destination's claim item (see `SharedKey::Target`).
    pub fn claim_name(&self) -> Option<&str> {
        self.network_interface_id.as_deref().or(self.load_balancer.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSession {
    pub id: String,
    pub source_eni: String,
    pub target_id: String,
    pub filter_id: String,
    pub session_number: u16,
    pub virtual_network_id: Option<i32>,
    pub tags: Tags,
    /// The account that owns it, as EC2 says (`None`: not said).
    pub owner_id: Option<String>,
}

impl MirrorSession {
    pub fn tag(&self, key: &str) -> Option<&str> {
        tag_value(&self.tags, key)
    }
}

pub fn tag_value<'a>(tags: &'a Tags, key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// What the launch path needs to know about an instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceInfo {
    pub id: String,
    pub instance_type: String,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    /// Every network interface, primary first.
    pub enis: Vec<String>,
    pub tags: Tags,
    pub availability_zone: Option<String>,
    /// EC2's state name: `pending`, `running`, `shutting-down`, `terminated`, …
    pub state: Option<InstanceState>,
    /// Each network interface's primary private IPv4 address and security
    /// groups, by ENI id: what a target's ingress rules are checked against.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// Where mirrored packets come from: an ENI's address and security groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    pub private_ip: Option<String>,
    pub security_groups: Vec<String>,
}

/// What admits traffic into a target ENI: its security groups' inbound
/// rules, and its subnet's network ACL inbound entries when they could be read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ingress {
    pub group_rules: Vec<GroupRule>,
    /// `None`: the ACL could not be read (it is then not judged).
    pub acl_entries: Option<Vec<AclEntry>>,
}

/// One inbound security-group permission.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRule {
    /// `-1` (all), `udp`, `17`, `tcp`, …
    pub protocol: String,
    /// `None`: every port.
    pub ports: Option<(i32, i32)>,
    pub cidrs: Vec<String>,
    /// Security groups whose members are admitted.
    pub groups: Vec<String>,
}

/// One inbound network-ACL entry; entries apply in rule-number order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclEntry {
    pub rule_number: i32,
    pub protocol: String,
    pub allow: bool,
    pub cidr: Option<String>,
    pub ports: Option<(i32, i32)>,
}

/// Where a network interface lives, for the allowed-sources check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceInfo {
    /// The instance it is attached to, if any.
    pub instance_id: Option<String>,
    pub availability_zone: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub endpoint: Endpoint,
}

/// Which sessions to list; each is one (paged) Describe call with one filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionQuery {
    Id(String),
    SourceEni(EniId),
    Target(String),
    Tag(String, String),
    /// Every session in the account, whoever made it (the sweep's watch for
    /// wiretaps nobody approved).
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub source_eni: EniId,
    pub target_id: String,
    pub filter_id: String,
    pub session_number: u16,
    pub packet_length: Option<i32>,
    pub virtual_network_id: Option<i32>,
    pub description: Option<String>,
}

/// Outcome of a delete: both count as success for a remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Now,
    AlreadyGone,
}

/// Mirror targets: the destinations sessions send to.
#[async_trait]
pub trait Targets: Send + Sync {
    /// The targets EC2 has for a destination (an ENI, a load balancer, or a
    /// target id), every page.
    async fn targets_of(&self, destination: &TargetSpec) -> AwsResult<Vec<MirrorTarget>>;
    /// `None` when no such target exists.
    async fn target(&self, id: &str) -> AwsResult<Option<MirrorTarget>>;
    /// Every target of the account (all pages): the sweep's one listing.
    async fn all_targets(&self) -> AwsResult<Vec<MirrorTarget>>;
    /// Creates a target for an ENI or a load balancer (never for `Existing`).
    async fn create_target(&self, destination: &TargetSpec, tags: &Tags, token: &str) -> AwsResult<String>;
    async fn delete_target(&self, id: &str) -> AwsResult<Deleted>;
}

/// Mirror filters and their rules.
#[async_trait]
pub trait Filters: Send + Sync {
    /// `None` when no such filter exists.
    async fn filter(&self, id: &str) -> AwsResult<Option<MirrorFilter>>;
    /// Every filter of the account (all pages): the sweep's one listing.
    async fn all_filters(&self) -> AwsResult<Vec<MirrorFilter>>;
    async fn create_filter(&self, description: &str, tags: &Tags, token: &str) -> AwsResult<String>;
    async fn create_filter_rule(&self, filter_id: &str, rule: &RuleSpec, token: &str) -> AwsResult<String>;
    async fn delete_filter(&self, id: &str) -> AwsResult<Deleted>;
}

/// Mirror sessions: one source ENI to one target through one filter.
#[async_trait]
pub trait Sessions: Send + Sync {
    async fn sessions(&self, query: &SessionQuery) -> AwsResult<Vec<MirrorSession>>;
    async fn create_session(&self, session: &NewSession, tags: &Tags, token: &str) -> AwsResult<MirrorSession>;
    async fn delete_session(&self, id: &str) -> AwsResult<Deleted>;
}

/// What EC2 says about instances, instance types and network interfaces (read only).
#[async_trait]
pub trait Instances: Send + Sync {
    /// `None` when the instance does not exist (any more).
    async fn instance(&self, id: &str) -> AwsResult<Option<InstanceInfo>>;
    /// What EC2 says of an instance type (hypervisor, bare metal); `None`
    /// for a type EC2 does not know.
    async fn instance_type(&self, instance_type: &str) -> AwsResult<Option<InstanceTypeFacts>>;
    /// `None` when no such network interface exists.
    async fn interface(&self, eni: &str) -> AwsResult<Option<InterfaceInfo>>;
    /// Every instance that is not shutting down or terminated, all pages.
    async fn instances(&self) -> AwsResult<Vec<InstanceInfo>>;
    /// What admits traffic into this ENI; `None` when it does not exist.
    async fn ingress(&self, eni: &str) -> AwsResult<Option<Ingress>>;
}

/// Asking EC2 whether a call would be permitted, without making it (a dry run).
#[async_trait]
pub trait Preflight: Send + Sync {
    /// Asks EC2 whether a call would be permitted, with `DryRun` and the
    /// tags the real call would carry (IAM decides on them): `Ok` when EC2
    /// answers `DryRunOperation`, else its refusal.
    async fn permitted(&self, call: &CheckedCall, tags: &Tags) -> AwsResult<()>;
}

/// Writing tags onto existing mirroring resources.
#[async_trait]
pub trait Tagging: Send + Sync {
    /// Writes these tags onto existing mirroring resources (taking over what
    /// an earlier version made, once our ledger is known to hold it).
    async fn retag(&self, resource_ids: &[String], tags: &Tags) -> AwsResult<()>;
}

/// A create a dry run asks EC2 about.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckedCall {
    Target(TargetSpec),
    Filter,
    Rule { filter_id: String, rule: RuleSpec },
    Session(NewSession),
}

impl CheckedCall {
    /// The EC2 action, as IAM and the answer name it.
    pub fn action(&self) -> &'static str {
        match self {
            CheckedCall::Target(_) => "CreateTrafficMirrorTarget",
            CheckedCall::Filter => "CreateTrafficMirrorFilter",
            CheckedCall::Rule { .. } => "CreateTrafficMirrorFilterRule",
            CheckedCall::Session(_) => "CreateTrafficMirrorSession",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorFilter {
    pub id: String,
    pub tags: Tags,
}

pub use crate::domain::records::{ActionKind, LedgerRecord, RecordStatus, SharedKey};

/// The answer to "may I start this action?".
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Go ahead; derive client tokens from this attempt number. `version` is
    /// the record's version after the claim.
    Granted { attempt: u32, version: u64 },
    /// The action already finished (succeeded, or failed beyond a clean
    /// rollback): answer with its recorded result and change nothing.
    Finished(Box<ActionResult>),
    /// Another invocation holds the action right now.
    InProgress,
}

/// Ledger lookups; each is a single DynamoDB query (or GetItem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerQuery {
    Session(String),
    TargetEni(String),
    SourceEni(String),
    Reservation(String),
    Instance(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger unavailable: {0}")]
    Aws(#[from] AwsError),
    #[error("ledger record {0} is unreadable: {1}")]
    Corrupt(String, String),
    /// The record changed since it was read; read it again and decide again.
    #[error("ledger record {0} was changed by another writer since it was read")]
    Conflict(String),
}

/// The answer to "may this action use the shared resource of that key?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Use this resource; the action now counts among its users.
    Joined(String),
    /// None is known and this action is now the one to make (or adopt) it,
    /// then report it with `shared_made`. It counts as a user.
    Make,
    /// Another invocation is making it right now; ask again shortly.
    Busy,
    /// It already has this many users, the limit asked for.
    Full(usize),
}

/// The answer to "may this action use that session number on that source ENI?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberClaim {
    Claimed,
    /// Someone else holds it, or the ENI is full: these numbers are claimed now.
    Refused(Vec<u16>),
}

/// Everything the ledger table holds, as the sweep reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LedgerContents {
    pub records: Vec<LedgerRecord>,
    pub shared: Vec<SharedClaims>,
    pub sources: Vec<SourceClaims>,
    /// Live actions of other accounts of the deployment that use claims
    /// listed here (a hub target's sessions in member accounts): their
    /// records are not in `records`, and their claims are not stale.
    pub elsewhere: std::collections::BTreeSet<String>,
}

/// The claim item of one shared resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedClaims {
    pub key: SharedKey,
    pub resource_id: Option<String>,
    /// The action making the resource, while it does.
    pub maker: Option<String>,
    /// Action ids of the sessions using it.
    pub users: Vec<String>,
}

/// The claim item of one source ENI: session number -> action id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceClaims {
    pub source_eni: String,
    pub numbers: Vec<(u16, String)>,
}

/// One record per action: claimed, saved as it goes, read back.
#[async_trait]
pub trait ActionRecords: Send + Sync {
    /// Claims an action id: new, failed before, or pending past its lease.
    async fn claim(&self, record: &LedgerRecord, lease_seconds: u64) -> Result<Claim, LedgerError>;
    /// Replaces the record, if it is still at `record.version` (else
    /// `Conflict`), and bumps that version on success.
    async fn save(&self, record: &mut LedgerRecord) -> Result<(), LedgerError>;
    /// Writes a record for an action the ledger has no item for (the sweep
    /// adopting a session that lost its record); `false` if one exists.
    async fn adopt(&self, record: &LedgerRecord) -> Result<bool, LedgerError>;
    /// A strongly consistent read.
    async fn get(&self, action_id: &str) -> Result<Option<LedgerRecord>, LedgerError>;
    /// The records an index names, as the index holds them (whole items). An
    /// index lags behind writes: a record may be an old version, so every
    /// write that acts on one is conditional on its version (`save`), and a
    /// record written a moment ago may be missing, so callers that found
    /// something in EC2 look it up by its action-id tag as well.
    async fn find(&self, query: &LedgerQuery) -> Result<Vec<LedgerRecord>, LedgerError>;
}

/// The claim items of shared targets and filters: who makes each, who uses it.
#[async_trait]
pub trait SharedResources: Send + Sync {
    /// Joins the shared resource of `key` as `action_id`, or makes the action
    /// its maker; `limit` users at most. Joining again is harmless.
    async fn join_shared(
        &self,
        key: &SharedKey,
        action_id: &str,
        limit: usize,
        lease_seconds: u64,
    ) -> Result<Slot, LedgerError>;
    /// The maker reports the resource it made or adopted. Fails with a
    /// condition error if the action was no longer the maker.
    async fn shared_made(&self, key: &SharedKey, action_id: &str, resource_id: &str) -> Result<(), LedgerError>;
    /// Drops the action from the users (and gives up making it).
    /// Returns the resource id and how many users remain.
    async fn leave_shared(&self, key: &SharedKey, action_id: &str) -> Result<(Option<String>, usize), LedgerError>;
    /// Forgets the resource of `key` if it is `resource_id` and nobody uses
    /// or is making it; `true` means it is forgotten and may be deleted.
    async fn retire_shared(&self, key: &SharedKey, resource_id: &str) -> Result<bool, LedgerError>;
    /// Names a retired resource again, after deleting it from EC2 failed,
    /// unless the key has a claim item again by now.
    async fn restore_shared(&self, key: &SharedKey, resource_id: &str) -> Result<(), LedgerError>;
    /// Reads a claim item without changing it (for a dry run's plan).
    async fn shared(&self, key: &SharedKey) -> Result<Option<SharedClaims>, LedgerError>;
}

/// The claim item of each source ENI: which action holds which session number.
#[async_trait]
pub trait SessionNumbers: Send + Sync {
    /// Claims a session number on a source ENI for an action: free, fewer
    /// than `limit` numbers claimed there, or already this action's.
    async fn claim_number(
        &self,
        source_eni: &str,
        number: u16,
        action_id: &str,
        limit: usize,
    ) -> Result<NumberClaim, LedgerError>;
    /// Session numbers claimed on a source ENI, with the claiming action.
    async fn numbers(&self, source_eni: &str) -> Result<Vec<(u16, String)>, LedgerError>;
    /// Releases a number if this action holds it.
    async fn release_number(&self, source_eni: &str, number: u16, action_id: &str) -> Result<(), LedgerError>;
}

/// The whole table, as the sweep reads it.
#[async_trait]
pub trait Scans: Send + Sync {
    /// The whole table, every page.
    async fn contents(&self) -> Result<LedgerContents, LedgerError>;
    /// The action ids of live mirrors whose end is at or before `at` (Unix
    /// seconds), from an index that may lag: read each again before acting.
    async fn ending_by(&self, at: u64) -> Result<Vec<String>, LedgerError>;
    /// Forgets any read it keeps for readers starting together: the next
    /// `contents` reads the table again.
    async fn forget(&self) {}
}

/// Completion events: one per action.
#[async_trait]
pub trait Publisher: Send + Sync {
    async fn publish(&self, result: &ActionResult) -> AwsResult<()>;
}

/// Sharing the deployment's own mirror targets with member accounts (AWS
/// RAM): one resource share per deployment, tagged with its owner.
#[async_trait]
pub trait TargetShares: Send + Sync {
    /// Makes the target usable by sessions in `account`: in the share, with
    /// the account among its principals. No change when it already is (or
    /// the account's organization is a principal); `true` when it changed.
    async fn share(&self, target_id: &str, account: &AccountId) -> AwsResult<bool>;
    /// Takes the account out of the share's principals.
    async fn unshare_account(&self, account: &AccountId) -> AwsResult<()>;
    /// Takes the target out of the share, before it is deleted.
    async fn unshare_target(&self, target_id: &str) -> AwsResult<()>;
}

/// The EC2 ports of one member account, reached with its role's credentials.
#[derive(Clone)]
pub struct MemberEc2 {
    pub targets: std::sync::Arc<dyn Targets>,
    pub filters: std::sync::Arc<dyn Filters>,
    pub sessions: std::sync::Arc<dyn Sessions>,
    pub instances: std::sync::Arc<dyn Instances>,
    pub preflight: std::sync::Arc<dyn Preflight>,
    pub tagging: std::sync::Arc<dyn Tagging>,
    /// When the credentials behind them expire (`None`: they do not).
    pub expires_at: Option<std::time::SystemTime>,
}

/// Reaching a member account: assuming its member role.
#[async_trait]
pub trait MemberAccess: Send + Sync {
    /// The account's EC2 ports, on fresh credentials; an error with code
    /// `MemberAccountUnreachable` when its role cannot be assumed.
    async fn reach(&self, account: &AccountId) -> AwsResult<MemberEc2>;
}

/// Each account's last sweep report (an organization's roll-up reads them).
#[async_trait]
pub trait AccountReports: Send + Sync {
    /// Keeps `report` (an account's entry of the sweep's `accounts`) as its
    /// last, swept at `at` (Unix seconds).
    async fn save_report(&self, account: &str, report: &serde_json::Value, at: u64) -> Result<(), LedgerError>;
    /// The last report of each of these accounts that has one, with when.
    async fn reports(&self, accounts: &[String]) -> Result<Vec<(String, serde_json::Value, u64)>, LedgerError>;
}

/// The function's own queue: a sweep of one account, as a message of its own.
#[async_trait]
pub trait SweepQueue: Send + Sync {
    async fn enqueue_sweep(&self, account: &AccountId) -> AwsResult<()>;
}
