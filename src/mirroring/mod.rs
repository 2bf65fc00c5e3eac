//! The mirroring logic: validation, create (with rollback) and remove, written
//! against the ports in `crate::ports` only.

pub mod create;
pub mod delivery;
pub mod expiry;
pub mod facts;
pub mod failure;
pub mod fleet;
pub mod launch;
pub use crate::domain::model;

pub(crate) mod release;
pub mod remove;
pub mod sweep;
pub mod validate;
pub mod watch;
mod wiring;

pub use wiring::{for_account, Mirroring, Ports};

use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use failure::Failure;
pub(crate) use failure::{aws_failure, ledger_failure};

use crate::announce::Announcer;
use crate::contract::ActionResult;
use crate::ports::{ActionRecords, Claim, LedgerError, LedgerRecord, Tags};

pub use crate::domain::tags::*;

/// How long a claimed action may stay pending before another invocation may
/// take it over (a Lambda runs at most 15 minutes). The logic's own default,
/// for a `Mirroring` built without a configuration; `CLAIM_LEASE_SECONDS`
/// sets it in the function.
pub const DEFAULT_LEASE_SECONDS: u64 = 15 * 60;
/// Unused filters and targets one sweep deletes at most (`SWEEP_MAX_DELETIONS`).
pub const DEFAULT_SWEEP_MAX_DELETIONS: usize = 5;

/// What every use case of one deployment shares: whose resources are ours
/// (`owner`), its settings, how actions are claimed and records updated in
/// the ledger, and where completion events go.
#[derive(Clone)]
pub struct Deployment {
    pub(crate) records: Arc<dyn ActionRecords>,
    /// Completion events: a create announces itself, overlapping its event
    /// with its ledger write; the `App` shares it.
    pub(crate) announcer: Arc<Announcer>,
    /// This deployment's value of `TAG_MANAGED_BY`.
    pub(crate) owner: String,
    pub(crate) lease_seconds: u64,
    pub(crate) allowed: Allowed,
    pub(crate) controls: Controls,
    pub(crate) sweep_max_deletions: usize,
    /// Pools and the price the coverage report counts with.
    pub(crate) fleet: FleetSettings,
}

/// What a deployment knows of its fleet beyond the allow-lists.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    /// `TARGET_POOLS`: where a create to `pool:<name>` may be placed.
    pub pools: crate::domain::Pools,
    /// `PRICE_PER_ENI_HOUR`: US dollars an ENI with sessions costs an hour.
    pub price_per_eni_hour: f64,
}

/// About what AWS charges per ENI-hour with sessions (us-east-2, contract §4).
pub const DEFAULT_PRICE_PER_ENI_HOUR: f64 = 0.015;

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            pools: crate::domain::Pools::new(),
            price_per_eni_hour: DEFAULT_PRICE_PER_ENI_HOUR,
        }
    }
}

impl Deployment {
    pub fn ownership(&self, tags: &Tags) -> Ownership {
        ownership_of(&self.owner, tags)
    }

    /// Made by this deployment (a legacy resource counts only once taken over).
    pub fn owns(&self, tags: &Tags) -> bool {
        self.ownership(tags) == Ownership::Ours
    }

    /// The tags of everything this deployment creates for an action.
    pub(crate) fn tags_for(&self, action_id: &str, reservation_id: Option<&str>, instance_id: Option<&str>) -> Tags {
        ownership_tags(&self.owner, action_id, reservation_id, instance_id)
    }

    pub(crate) async fn announce(&self, result: &ActionResult) {
        self.announcer.announce(result).await;
    }
}

/// Runs one action of either kind: what the fleet policy and expiry ask for.
pub struct Actions {
    pub(crate) creates: Arc<create::Creates>,
    pub(crate) removes: Arc<remove::Removes>,
}

impl Actions {
    /// Runs one action, which announces itself (a create overlaps its event
    /// with its ledger write, a remove with its last writes), and records its
    /// figures for the invocation's metrics.
    pub async fn run(&self, request: &model::MirrorRequest) -> ActionResult {
        self.run_listed(request, None).await
    }

    /// The same, for a caller that listed the create's source already.
    pub async fn run_listed(&self, request: &model::MirrorRequest, listed: Option<&create::Listed>) -> ActionResult {
        // Boxed: a create's future is large, and the sweep runs several at once
        // inside its own; on the stack they overflow a test thread's.
        let action: std::pin::Pin<Box<dyn std::future::Future<Output = ActionResult> + Send + '_>> = match request {
            model::MirrorRequest::Create(create) => Box::pin(self.creates.create(create, listed)),
            model::MirrorRequest::Remove(remove) => Box::pin(self.removes.remove(remove)),
        };
        // A member account's result says so (its metrics carry the account).
        let account = self.removes.deployment.announcer.account().map(ToString::to_string);
        crate::metrics::timed(async move {
            let mut result = action.await;
            if result.account.is_none() {
                result.account = account;
            }
            result
        })
        .await
    }
}

/// Where mirrored traffic may come from and go to. Closed by default: a
/// deployment that says nothing allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    pub targets: AllowList,
    /// VPC or subnet ids.
    pub sources: AllowList,
}

impl Allowed {
    /// Any source to any destination: what `*` in both settings says.
    pub fn anything() -> Self {
        Self {
            targets: AllowList::Any,
            sources: AllowList::Any,
        }
    }
}

pub use crate::domain::AllowList;

/// The deployment's rules for requested mirrors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controls {
    /// A create or remove without a reason is refused.
    pub require_reason: bool,
    /// The longest a requested mirror may run, in minutes; `None`: no cap.
    pub max_mirror_minutes: Option<u64>,
    /// The sweep deletes unapproved sessions (not ours, to a target not allowed).
    pub remove_unapproved_mirrors: bool,
}

/// Whose a resource is, read from its `TAG_MANAGED_BY` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Made by this deployment.
    Ours,
    /// Made by a version from before per-deployment owners: ours only if our
    /// ledger knows it.
    Legacy,
    /// Made by another deployment of this product: never touched.
    Foreign(String),
    /// Not made by this product at all.
    Unmanaged,
}

pub fn ownership_of(owner: &str, tags: &Tags) -> Ownership {
    match crate::ports::tag_value(tags, TAG_MANAGED_BY) {
        Some(value) if value == owner => Ownership::Ours,
        Some(TAG_MANAGED_BY_LEGACY_VALUE) => Ownership::Legacy,
        Some(other) => Ownership::Foreign(other.to_owned()),
        None => Ownership::Unmanaged,
    }
}

/// Who asked and why, as tags: values cut to 256 characters, and anything
/// but letters, digits, spaces and `_ . : / = + - @` (what every AWS service
/// takes in a tag) replaced by `_`.
pub(crate) fn accountability_tags(accountability: &model::Accountability) -> Tags {
    let value = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(TAG_VALUE_CHARS)
            .collect()
    };
    let mut tags = vec![(
        TAG_REQUESTED_BY.to_owned(),
        value(&accountability.requested_by.principal),
    )];
    if let Some(reason) = &accountability.reason {
        tags.push((TAG_REASON.to_owned(), value(reason)));
    }
    tags
}

pub(crate) fn ownership_tags(
    owner: &str,
    action_id: &str,
    reservation_id: Option<&str>,
    instance_id: Option<&str>,
) -> Tags {
    let mut tags = vec![
        (TAG_MANAGED_BY.to_owned(), owner.to_owned()),
        (TAG_ACTION_ID.to_owned(), action_id.to_owned()),
    ];
    if let Some(reservation) = reservation_id {
        tags.push((TAG_RESERVATION_ID.to_owned(), reservation.to_owned()));
    }
    if let Some(instance) = instance_id {
        tags.push((TAG_INSTANCE_ID.to_owned(), instance.to_owned()));
    }
    tags
}

/// An EC2 `ClientToken` for one step of one attempt of an action. The same
/// inputs always give the same token, so a call retried after a timeout returns
/// the resource the first call made; a new attempt (after a rollback) gets new
/// tokens because EC2 would otherwise hand back the deleted resource.
pub(crate) fn client_token(action_id: &str, attempt: u32, step: &str) -> String {
    let digest = Sha256::digest(format!("{action_id}\n{attempt}\n{step}").as_bytes());
    // EC2 accepts at most 64 ASCII characters.
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub use crate::domain::clock::{jitter_millis, now_seconds};

impl Deployment {
    /// Claims the record's action id, setting the attempt number to work
    /// under and the record's version; `Err` says why not, with the answer
    /// to give instead.
    pub(crate) async fn claim(&self, record: &mut LedgerRecord, action_type: &str) -> Result<(), Refused> {
        let action_id = record.action_id.clone();
        match self.records.claim(record, self.lease_seconds).await {
            Ok(Claim::Granted { attempt, version }) => {
                record.attempt = attempt;
                record.version = version;
                Ok(())
            }
            Ok(Claim::Finished(result)) => Err(Refused::Finished(*result)),
            Ok(Claim::InProgress) => Err(Refused::InProgress(ActionResult::failure(
                &action_id,
                action_type,
                crate::contract::IN_PROGRESS,
                format!("action {action_id} is being carried out by another invocation right now; retry later"),
                true,
            ))),
            Err(err) => Err(Refused::LedgerUnavailable(ledger_failure(
                &action_id,
                action_type,
                &err,
            ))),
        }
    }

    /// Writes a change to a record read earlier. When another writer got
    /// there first, the record is read again and the change decided again
    /// (`change` returns `false` when the record needs no write any more).
    /// Returns the record as it now stands, or `None` if it is gone.
    pub(crate) async fn update_record(
        &self,
        record: &LedgerRecord,
        change: impl Fn(&mut LedgerRecord) -> bool,
    ) -> Result<Option<LedgerRecord>, LedgerError> {
        let mut current = record.clone();
        for _ in 0..5 {
            let mut changed = current.clone();
            if !change(&mut changed) {
                return Ok(Some(current));
            }
            changed.updated_at = now_seconds();
            match self.records.save(&mut changed).await {
                Ok(()) => return Ok(Some(changed)),
                Err(LedgerError::Conflict(_)) => match self.records.get(&record.action_id).await? {
                    Some(fresh) => current = fresh,
                    None => return Ok(None),
                },
                Err(err) => return Err(err),
            }
        }
        Err(LedgerError::Conflict(record.action_id.clone()))
    }
}

/// Why an action could not be claimed, with the answer to give.
#[derive(Debug)]
pub(crate) enum Refused {
    /// It already finished: the recorded result.
    Finished(ActionResult),
    /// Another invocation holds it right now.
    InProgress(ActionResult),
    LedgerUnavailable(ActionResult),
}

impl Refused {
    pub(crate) fn answer(self) -> ActionResult {
        match self {
            Refused::Finished(answer) | Refused::InProgress(answer) | Refused::LedgerUnavailable(answer) => answer,
        }
    }
}

/// The code of a create refused by the allow-lists.
pub const NOT_ALLOWED: &str = "MirroringNotAllowed";
/// The code of an action refused for what it says (contract §3.1).
pub const VALIDATION_ERROR: &str = "ValidationError";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_per_step_and_attempt() {
        let token = client_token("a", 0, "filter");
        assert_eq!(token, client_token("a", 0, "filter"));
        assert_eq!(token.len(), 64);
        assert_ne!(token, client_token("a", 1, "filter"));
        assert_ne!(token, client_token("a", 0, "session"));
        assert_ne!(token, client_token("b", 0, "filter"));
    }

    #[test]
    fn accountability_tags_fit_ec2s_limits() {
        let accountability = model::Accountability {
            requested_by: model::Requester::new(
                "arn:aws:iam::123456789012:user/alice",
                model::RequesterBasis::StsCaller,
            ),
            reason: Some(format!("INC-1234 #exfil? {}", "x".repeat(300))),
        };
        let tags = accountability_tags(&accountability);
        assert_eq!(
            tags[0],
            (
                TAG_REQUESTED_BY.to_owned(),
                "arn:aws:iam::123456789012:user/alice".to_owned()
            )
        );
        assert_eq!(tags[1].0, TAG_REASON);
        assert!(tags[1].1.starts_with("INC-1234 _exfil_ xxx"), "{}", tags[1].1);
        assert_eq!(tags[1].1.chars().count(), 256);
        let no_reason = model::Accountability::default();
        assert_eq!(accountability_tags(&no_reason).len(), 1);
    }

    #[test]
    fn ownership_is_read_from_the_managed_by_tag() {
        let ours = ownership_tags("table/prod", "a", Some("r"), Some("i-1"));
        let tagged = |value: &str| vec![(TAG_MANAGED_BY.to_owned(), value.to_owned())];
        let owner_of = ownership_of;
        assert_eq!(owner_of("table/prod", &ours), Ownership::Ours);
        assert_eq!(
            owner_of("table/staging", &ours),
            Ownership::Foreign("table/prod".into())
        );
        assert_eq!(
            owner_of("table/prod", &tagged(TAG_MANAGED_BY_LEGACY_VALUE)),
            Ownership::Legacy
        );
        assert_eq!(owner_of("table/prod", &Vec::new()), Ownership::Unmanaged);
    }
}
