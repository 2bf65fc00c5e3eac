//! Which account an action runs in. A create names it (`accountId`; none:
//! the hub's own). A remove that names none runs where the ledger says its
//! mirrors are: a remove by target ENI in every account whose sessions use
//! that target, each as its own action (`<actionId>:<account>`), answered
//! as one.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{AccountRefused, Organization};
use crate::contract::{ActionResult, CREATE, REMOVE};
use crate::domain::account::AccountId;
use crate::domain::model::{MirrorRequest, RemoveRequest};
use crate::mirroring::Mirroring;
use crate::ports::{ActionKind, LedgerQuery};

/// Where one action runs.
pub struct Destination {
    /// `None`: the hub's own account.
    pub account: Option<AccountId>,
    pub mirroring: Arc<Mirroring>,
    pub request: MirrorRequest,
}

impl Organization {
    /// The accounts (one, or several for a remove by target ENI) an action
    /// runs in, each with its request.
    pub async fn route(&self, request: &MirrorRequest) -> Result<Vec<Destination>, AccountRefused> {
        let named = match request {
            MirrorRequest::Create(create) => create.account.clone(),
            MirrorRequest::Remove(remove) => remove.account.clone(),
        };
        let accounts = match (request, named) {
            (_, Some(account)) => vec![Some(account)],
            (MirrorRequest::Remove(remove), None) if self.accounts().spans_members() => self.accounts_of(remove).await,
            _ => vec![None],
        };
        let several = accounts.len() > 1;
        let mut destinations = Vec::with_capacity(accounts.len());
        for account in accounts {
            let mirroring = self.mirroring_for(account.as_ref()).await?;
            let request = match (request, &account) {
                (MirrorRequest::Remove(remove), Some(member)) if several => MirrorRequest::Remove(RemoveRequest {
                    action_id: format!("{}:{member}", remove.action_id),
                    account: Some(member.clone()),
                    ..remove.clone()
                }),
                _ => request.clone(),
            };
            destinations.push(Destination {
                account: account.filter(|a| self.accounts().home.as_ref() != Some(a)),
                mirroring,
                request,
            });
        }
        Ok(destinations)
    }

    /// The accounts whose records a remove names (the hub's when none does,
    /// so that removing what is already gone answers as before).
    async fn accounts_of(&self, remove: &RemoveRequest) -> Vec<Option<AccountId>> {
        let mut queries = Vec::new();
        queries.extend(remove.session_id.clone().map(LedgerQuery::Session));
        queries.extend(remove.reservation_id.clone().map(LedgerQuery::Reservation));
        queries.extend(remove.instance_id.clone().map(LedgerQuery::Instance));
        queries.extend(
            remove
                .target_eni
                .as_ref()
                .map(|e| LedgerQuery::TargetEni(e.to_string())),
        );
        let records = self.all_records();
        let mut accounts = BTreeSet::new();
        for query in &queries {
            // An unreadable ledger: the hub's remove reads it again and says so.
            let Ok(found) = records.find(query).await else {
                return vec![None];
            };
            accounts.extend(
                found
                    .into_iter()
                    .filter(|r| r.kind == Some(ActionKind::Create) && r.status.is_some_and(|s| s.holds_resources()))
                    .map(|r| r.account),
            );
        }
        if accounts.is_empty() {
            return vec![None];
        }
        accounts.into_iter().collect()
    }
}

/// The answer to an action an account refused.
pub fn refused(request: &MirrorRequest, refusal: &AccountRefused) -> ActionResult {
    let (action_type, accountability, account) = match request {
        MirrorRequest::Create(c) => (CREATE, &c.accountability, &c.account),
        MirrorRequest::Remove(r) => (REMOVE, &r.accountability, &r.account),
    };
    let mut result = ActionResult::failure(
        request.action_id(),
        action_type,
        refusal.code(),
        refusal.to_string(),
        refusal.retryable(),
    )
    .accountable(accountability);
    result.account = account.as_ref().map(ToString::to_string);
    result
}

/// One answer for a remove that ran in several accounts.
pub fn merged(action_id: &str, results: Vec<ActionResult>) -> ActionResult {
    let mut merged = ActionResult {
        action_id: action_id.to_owned(),
        action_type: REMOVE.to_owned(),
        success: results.iter().all(|r| r.success),
        retryable: results.iter().any(|r| !r.success && r.retryable),
        ..ActionResult::default()
    };
    let mut said = Vec::new();
    for result in results {
        let account = result.account.clone().unwrap_or_else(|| "hub".to_owned());
        if result.success {
            said.push(format!("{account}: {}", result.info_message));
        } else {
            merged.error_code = merged.error_code.or(result.error_code.clone());
            said.push(format!("{account}: {}", result.error_message));
        }
        merged.removed_session_ids.extend(result.removed_session_ids);
        merged.requested_by = merged.requested_by.or(result.requested_by);
        merged.requested_by_basis = merged.requested_by_basis.or(result.requested_by_basis);
        merged.reason = merged.reason.or(result.reason);
    }
    if merged.success {
        merged.info_message = said.join("; ");
    } else {
        merged.error_message = said.join("; ");
    }
    merged
}
