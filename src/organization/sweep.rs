//! The sweep of an organization: the hub and every member account swept
//! side by side (each has its own EC2 budget, and pacing is per process and
//! account), one report with an `accounts` entry per account. An account
//! that cannot be reached is reported with its error; the others proceed.

use futures::stream::{self, StreamExt};
use serde_json::{json, Map, Value};

use super::Organization;
use crate::contract::ActionResult;
use crate::domain::account::AccountId;
use crate::mirroring::launch::LaunchPolicy;
use crate::mirroring::sweep::SweepReport;

/// Member accounts swept at once by one invocation.
pub const ACCOUNTS_AT_ONCE: usize = 8;

impl Organization {
    /// Sweeps every account (or only `only`, one message of a fan-out), and
    /// answers with the hub's result carrying every account's in `accounts`.
    pub async fn sweep_accounts(
        &self,
        dry_run: bool,
        policy: &LaunchPolicy,
        only: Option<&AccountId>,
    ) -> (ActionResult, Option<SweepReport>) {
        let home_id = self.accounts().home.clone();
        let mut accounts: Vec<Option<AccountId>> = vec![None];
        accounts.extend(self.accounts().members.iter().cloned().map(Some));
        if let Some(only) = only {
            let only = (home_id.as_ref() != Some(only)).then(|| only.clone());
            accounts.retain(|a| *a == only);
            if accounts.is_empty() {
                accounts.push(only); // refused below, by name
            }
        }
        let home = home_id.as_ref();
        let swept: Vec<Swept> = stream::iter(accounts)
            .map(|account| async move {
                let outcome = match self.mirroring_for(account.as_ref()).await {
                    Ok(mirroring) => {
                        let named = account.as_ref().or(home).map(AccountId::as_str);
                        let policy = policy.in_account(named);
                        Ok(Box::pin(mirroring.sweeper().sweep(dry_run, &policy)).await)
                    }
                    Err(refusal) => Err(refusal),
                };
                (account, outcome)
            })
            .buffer_unordered(ACCOUNTS_AT_ONCE)
            .collect()
            .await;
        combined(home_id.as_ref(), swept)
    }
}

type Swept = (
    Option<AccountId>,
    Result<(ActionResult, Option<SweepReport>), super::AccountRefused>,
);

/// The hub's result (or the one account's) with `accounts` added.
fn combined(home: Option<&AccountId>, swept: Vec<Swept>) -> (ActionResult, Option<SweepReport>) {
    let mut entries = Map::new();
    let mut main: Option<(ActionResult, Option<SweepReport>)> = None;
    let mut failures = Vec::new();
    for (account, outcome) in swept {
        let key = account
            .as_ref()
            .or(home)
            .map_or_else(|| "home".to_owned(), ToString::to_string);
        let entry = match outcome {
            Ok((result, report)) => {
                if !result.success {
                    failures.push((key.clone(), result.error_code.clone(), result.retryable));
                }
                let entry = json!({
                    "success": result.success,
                    "summary": if result.success { &result.info_message } else { &result.error_message },
                    "coverage": report.as_ref().and_then(|r| r.policy.as_ref()).map(|p| &p.coverage),
                    "findings": report.as_ref().map_or(0, |r| r.findings.len()),
                });
                if account.is_none() || main.is_none() {
                    main = Some((result, report));
                }
                entry
            }
            Err(refusal) => {
                failures.push((key.clone(), Some(refusal.code().to_owned()), refusal.retryable()));
                json!({"success": false, "errorCode": refusal.code(), "errorMessage": refusal.to_string()})
            }
        };
        entries.insert(key, entry);
    }
    let (mut result, report) = main.unwrap_or_else(|| {
        (
            ActionResult {
                action_id: format!("sweep-{}", crate::domain::clock::now_seconds()),
                action_type: crate::contract::SWEEP.into(),
                ..ActionResult::default()
            },
            None,
        )
    });
    if !failures.is_empty() {
        result.success = false;
        result.retryable = failures.iter().any(|(_, _, retryable)| *retryable);
        result.error_code = result
            .error_code
            .or_else(|| failures.iter().find_map(|(_, code, _)| code.clone()));
        let names: Vec<String> = failures
            .iter()
            .map(|(key, code, _)| format!("{key} ({})", code.as_deref().unwrap_or("failed")))
            .collect();
        result.error_message = format!(
            "{}{}the sweep did not finish in: {}",
            result.error_message,
            if result.error_message.is_empty() { "" } else { "; " },
            names.join(", ")
        );
    }
    let mut sweep = match result.sweep.take() {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    sweep.insert("accounts".into(), Value::Object(entries));
    result.sweep = Some(Value::Object(sweep));
    (result, report)
}
