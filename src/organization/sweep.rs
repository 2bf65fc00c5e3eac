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
use crate::mirroring::sweep::{Finding, Outcome, SweepReport};
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
        if accounts.len() > 1 && !dry_run {
            self.least_recently_swept_first(&mut accounts, home).await;
        }
        let swept: Vec<Swept> = stream::iter(accounts)
            .map(|account| async move {
                let key = key_of(account.as_ref(), home);
                // An account started this late would only be cut off: it
                // goes first in the next sweep instead.
                if crate::deadline::budget().is_some_and(|left| left < MIN_BUDGET_TO_START) {
                    return (key, AccountSweep::Deferred);
                }
                let outcome = match self.mirroring_for(account.as_ref()).await {
                    Ok(mirroring) => {
                        let policy = policy.in_account(account.as_ref().or(home).map(AccountId::as_str));
                        let (result, mut report) = Box::pin(mirroring.sweeper().sweep(dry_run, &policy)).await;
                        if let (Some(member), Some(report), false) = (account.as_ref(), report.as_mut(), dry_run) {
                            self.check_share(member, report).await;
                        }
                        AccountSweep::Done(Box::new((result, report)))
                    }
                    // The deadline, not the role: the next sweep starts here.
                    Err(super::AccountRefused::Unreachable { error, .. })
                        if error.code == crate::deadline::OUT_OF_TIME =>
                    {
                        AccountSweep::Deferred
                    }
                    Err(refusal) => AccountSweep::Refused(refusal),
                };
                if !dry_run {
                    self.keep_report(&key, &outcome).await;
                }
                (key, outcome)
            })
            .buffer_unordered(ACCOUNTS_AT_ONCE)
            .collect()
            .await;
        combined(home.map(AccountId::as_str), swept)
    }

    /// Forgets the last read of the table: the sweeps started next read it
    /// anew and share that read, so that none judges an account by what an
    /// earlier sweep read.
    pub async fn read_afresh(&self) {
        if let Some(parts) = self.hub_parts() {
            parts.scans.forget().await;
        }
    }

    /// A member's part of the share: every hub target its sessions of ours
    /// use is shared with it; what was shared again, or could not be
    /// checked, is a finding of its sweep.
    async fn check_share(&self, member: &AccountId, report: &mut SweepReport) {
        const RULE: &str = "a hub target that sessions of ours in a member use is shared with that member";
        let Some(kept) = self.keep_shared(member).await else {
            return;
        };
        match kept {
            Ok(again) => {
                report.repaired += again.len();
                report.findings.extend(again.into_iter().map(|target| Finding {
                    kind: "hub_target_unshared",
                    resource: target,
                    action_id: None,
                    rule: RULE,
                    outcome: Outcome::Repaired,
                }));
            }
            Err(err) => {
                warn!(account = %member, error = %err, "the member's share could not be checked");
                report.failed += 1;
                report.findings.push(Finding {
                    kind: "share_unchecked",
                    resource: member.to_string(),
                    action_id: None,
                    rule: RULE,
                    outcome: Outcome::Failed(err.to_string()),
                });
            }
        }
    }

    /// The accounts swept longest ago (or never) first, so that an
    /// organization too large for one invocation is swept whole over a few,
    /// none left behind.
    async fn least_recently_swept_first(&self, accounts: &mut [Option<AccountId>], home: Option<&AccountId>) {
        let Some(parts) = self.hub_parts() else {
            return;
        };
        let names: Vec<String> = accounts.iter().map(|a| key_of(a.as_ref(), home)).collect();
        let swept_at: std::collections::HashMap<String, u64> = match parts.reports.reports(&names).await {
            Ok(reports) => reports.into_iter().map(|(account, _, at)| (account, at)).collect(),
            Err(err) => {
                warn!(error = %err, "the accounts' last sweeps could not be read; swept in the usual order");
                return;
            }
        };
        order_by_last_sweep(accounts, home, &swept_at);
    }

    /// Keeps an account's entry as its last report (the roll-up's), as soon
    /// as its sweep is done; a sweep deferred to the next run keeps the old.
    async fn keep_report(&self, key: &str, outcome: &AccountSweep) {
        let Some(parts) = self.hub_parts() else {
            return;
        };
        let Some(entry) = entry_of(outcome) else {
            return;
        };
        let now = crate::domain::clock::now_seconds();
        let kept = crate::deadline::winding_down(parts.reports.save_report(key, &entry, now)).await;
        if let Err(err) = kept {
            warn!(account = key, error = %err, "the account's sweep report was not kept");
        }
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

/// How one account's part of the sweep went.
enum AccountSweep {
    Done(Box<(ActionResult, Option<SweepReport>)>),
    Refused(super::AccountRefused),
    /// Not started: the deadline was near.
    Deferred,
}

type Swept = (String, AccountSweep);

/// The accounts never swept first, then the longest ago; a stable sort, so
/// ties keep the hub first and the members in order.
fn order_by_last_sweep(
    accounts: &mut [Option<AccountId>],
    home: Option<&AccountId>,
    swept_at: &std::collections::HashMap<String, u64>,
) {
    accounts.sort_by_key(|a| swept_at.get(&key_of(a.as_ref(), home)).copied().unwrap_or(0));
}

/// Below this much time left, no account's sweep is started.
const MIN_BUDGET_TO_START: std::time::Duration = std::time::Duration::from_secs(3);

/// An account's key in the report: its id (the hub's own too, when known).
fn key_of(account: Option<&AccountId>, home: Option<&AccountId>) -> String {
    account.or(home).map_or_else(|| "home".to_owned(), ToString::to_string)
}

/// An account's entry in `accounts`; `None` for one deferred.
fn entry_of(outcome: &AccountSweep) -> Option<Value> {
    match outcome {
        AccountSweep::Done(done) => {
            let mut entry = json!({
                "success": done.0.success,
                "summary": if done.0.success { &done.0.info_message } else { &done.0.error_message },
                "coverage": done.1.as_ref().and_then(|r| r.policy.as_ref()).map(|p| &p.coverage),
                "findings": done.1.as_ref().map_or(0, |r| r.findings.len()),
            });
            if let Some(attention) = done.1.as_ref().and_then(needs_attention) {
                entry["needsAttention"] = attention;
            }
            Some(entry)
        }
        AccountSweep::Refused(refusal) => {
            Some(json!({"success": false, "errorCode": refusal.code(), "errorMessage": refusal.to_string()}))
        }
        AccountSweep::Deferred => None,
    }
}

/// What a person should see of an account's sweep beside its counts: the
/// findings left alone on purpose (resources nobody can account for) or
/// whose repair failed, and the sessions nobody approved. At most this many
/// of each; the account's log and events carry them all.
const ATTENTION_SHOWN: usize = 25;

fn needs_attention(report: &SweepReport) -> Option<Value> {
    let flagged: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Reported(_) | Outcome::Failed(_)))
        .collect();
    let unapproved = &report.unapproved_mirrors;
    if flagged.is_empty() && unapproved.is_empty() {
        return None;
    }
    Some(json!({
        "findings": flagged.iter().take(ATTENTION_SHOWN).collect::<Vec<_>>(),
        "findingsTotal": flagged.len(),
        "unapprovedMirrors": unapproved.iter().take(ATTENTION_SHOWN).collect::<Vec<_>>(),
        "unapprovedTotal": unapproved.len(),
    }))
}

/// The hub's result (or the one account's) with `accounts` added.
fn combined(home: Option<&str>, swept: Vec<Swept>) -> (ActionResult, Option<SweepReport>) {
    let mut entries = Map::new();
    let mut main: Option<(ActionResult, Option<SweepReport>)> = None;
    let mut failures = Vec::new();
    for (key, outcome) in swept {
        let entry = entry_of(&outcome).unwrap_or_else(|| {
            json!({"success": false, "deferred": "the invocation's deadline was near: this account goes first in the next sweep"})
        });
        match outcome {
            AccountSweep::Done(done) => {
                let (result, report) = *done;
                if !result.success {
                    failures.push((key.clone(), result.error_code.clone(), result.retryable));
                }
                let is_home = home.is_some_and(|h| h == key) || key == "home";
                if is_home || main.is_none() {
                    main = Some((result, report));
                }
            }
            AccountSweep::Refused(refusal) => {
                failures.push((key.clone(), Some(refusal.code().to_owned()), refusal.retryable()));
            }
            AccountSweep::Deferred => failures.push((key.clone(), Some("SweepDeferred".to_owned()), true)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accounts_swept_longest_ago_go_first_and_the_unswept_before_them() {
        let id = |text: &str| AccountId::parse(text).expect("12 digits");
        let home = id("111111111111");
        let mut accounts = vec![
            None,
            Some(id("222222222222")),
            Some(id("333333333333")),
            Some(id("444444444444")),
        ];
        let swept_at = [("111111111111", 300), ("222222222222", 100), ("444444444444", 200)]
            .into_iter()
            .map(|(a, at)| (a.to_owned(), at))
            .collect();
        order_by_last_sweep(&mut accounts, Some(&home), &swept_at);
        let keys: Vec<String> = accounts.iter().map(|a| key_of(a.as_ref(), Some(&home))).collect();
        assert_eq!(keys, ["333333333333", "222222222222", "444444444444", "111111111111"]);
    }

    #[test]
    fn a_deferred_account_makes_the_sweep_incomplete_and_retryable_and_keeps_no_report() {
        assert!(entry_of(&AccountSweep::Deferred).is_none());
        let (result, _) = combined(
            Some("111111111111"),
            vec![("222222222222".into(), AccountSweep::Deferred)],
        );
        assert!(!result.success && result.retryable);
        assert_eq!(result.error_code.as_deref(), Some("SweepDeferred"));
        let accounts = &result.sweep.as_ref().expect("a report")["accounts"];
        assert!(accounts["222222222222"]["deferred"].is_string(), "{accounts}");
    }
}
