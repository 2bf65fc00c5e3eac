//! The sweep of an organization: the hub and every member account swept
//! side by side (each has its own EC2 budget, and pacing is per process and
//! account), one report with an `accounts` entry per account. An account
//! that cannot be reached is reported with its error; the others proceed.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde_json::{json, Map, Value};
use tracing::warn;

use super::Organization;
use crate::contract::ActionResult;
use crate::domain::account::AccountId;
use crate::mirroring::launch::LaunchPolicy;
use crate::mirroring::sweep::SweepReport;
use crate::ports::SweepQueue;

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
        if let Some(fan_out) = self.hub_parts().and_then(|p| p.fan_out.as_ref()) {
            let accounts = self.accounts().members.len() + 1;
            if only.is_none() && !dry_run && accounts > fan_out.accounts_per_invocation {
                return (self.fan_out(&fan_out.queue).await, None);
            }
        }
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
        let (result, report) = combined(home_id.as_ref(), swept);
        if !dry_run {
            self.keep_reports(&result).await;
        }
        (result, report)
    }

    /// One message per account on the function's queue, each swept by an
    /// invocation of its own (`{"sweep": {"account": ...}}`).
    async fn fan_out(&self, queue: &Arc<dyn SweepQueue>) -> ActionResult {
        let mut accounts: Vec<AccountId> = self.accounts().home.iter().cloned().collect();
        accounts.extend(self.accounts().members.iter().cloned());
        let sent: Vec<(AccountId, Result<(), crate::ports::AwsError>)> = stream::iter(accounts)
            .map(|account| async move {
                let sent = queue.enqueue_sweep(&account).await;
                (account, sent)
            })
            .buffer_unordered(ACCOUNTS_AT_ONCE)
            .collect()
            .await;
        let (queued, failed): (Vec<_>, Vec<_>) = sent.into_iter().partition(|(_, sent)| sent.is_ok());
        let failed: Vec<Value> = failed
            .into_iter()
            .map(|(account, sent)| {
                let error = sent.err().map(|e| e.to_string()).unwrap_or_default();
                json!({"account": account.as_str(), "error": error})
            })
            .collect();
        let action_id = format!("sweep-{}", crate::domain::clock::now_seconds());
        let summary = format!(
            "sweep fanned out: {} account{} queued, one invocation each; {} not queued",
            queued.len(),
            if queued.len() == 1 { "" } else { "s" },
            failed.len()
        );
        let mut result = if failed.is_empty() {
            ActionResult {
                action_id,
                action_type: crate::contract::SWEEP.into(),
                success: true,
                info_message: summary,
                ..ActionResult::default()
            }
        } else {
            ActionResult::failure(&action_id, crate::contract::SWEEP, "SweepNotQueued", summary, true)
        };
        result.sweep = Some(json!({
            "fannedOut": queued.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
            "notQueued": failed,
        }));
        result
    }

    /// Each account's entry kept as its last report (the roll-up's).
    async fn keep_reports(&self, result: &ActionResult) {
        let (Some(parts), Some(accounts)) = (
            self.hub_parts(),
            result
                .sweep
                .as_ref()
                .and_then(|s| s.get("accounts"))
                .and_then(Value::as_object),
        ) else {
            return;
        };
        let now = crate::domain::clock::now_seconds();
        for (account, entry) in accounts {
            if let Err(err) = parts.reports.save_report(account, entry, now).await {
                warn!(account, error = %err, "the account's sweep report was not kept");
            }
        }
    }

    /// The last sweep report of every account, and their totals: what
    /// `mirrorctl coverage` shows of an organization.
    pub async fn rollup(&self) -> Result<Value, crate::ports::LedgerError> {
        let Some(parts) = self.hub_parts() else {
            return Ok(json!({"accounts": {}}));
        };
        let mut names: Vec<String> = self.accounts().home.iter().map(ToString::to_string).collect();
        names.extend(self.accounts().members.iter().map(ToString::to_string));
        let mut accounts = Map::new();
        let mut totals = [("wanted", 0u64), ("mirrored", 0), ("missing", 0), ("notDelivering", 0)];
        for (account, mut report, at) in parts.reports.reports(&names).await? {
            for (name, total) in totals.iter_mut() {
                *total += report["coverage"][*name].as_u64().unwrap_or_default();
            }
            if let Some(entry) = report.as_object_mut() {
                entry.insert("sweptAt".into(), json!(crate::domain::model::rfc3339(at)));
            }
            accounts.insert(account, report);
        }
        let unreported: Vec<&String> = names.iter().filter(|n| !accounts.contains_key(*n)).collect();
        let totals: Map<String, Value> = totals.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        Ok(json!({"accounts": accounts, "totals": totals, "unreported": unreported}))
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
