//! Mirrors' ends across an organization: the index of ends is read once
//! for the whole table, and each mirror is removed by its own account's
//! use cases, every account side by side.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};
use tracing::warn;

use super::sweep::ACCOUNTS_AT_ONCE;
use super::Organization;
use crate::domain::account::AccountId;
use crate::domain::clock::now_seconds;
use crate::mirroring::expiry::ExpiryReport;

impl Organization {
    /// Removes every mirror whose end has come, in whichever account it is.
    pub async fn expire_accounts(&self, dry_run: bool) -> ExpiryReport {
        if !self.accounts().spans_members() {
            return self.home().expiry().expire(dry_run).await;
        }
        let failed_read = |error: String| ExpiryReport {
            dry_run,
            error: Some(error),
            ..ExpiryReport::default()
        };
        let ids = match self.all_scans().ending_by(now_seconds()).await {
            Ok(ids) => ids,
            Err(err) => return failed_read(format!("the mirrors' ends could not be read: {err}")),
        };
        let records = self.all_records();
        let mut by_account: BTreeMap<Option<AccountId>, Vec<String>> = BTreeMap::new();
        for id in ids {
            match records.get(&id).await {
                Ok(Some(record)) => by_account.entry(record.account).or_default().push(id),
                Ok(None) => {}
                Err(err) => return failed_read(format!("the record of {id} could not be read: {err}")),
            }
        }
        let reports: Vec<ExpiryReport> = stream::iter(by_account)
            .map(|(account, ids)| async move {
                match self.mirroring_for(account.as_ref()).await {
                    Ok(mirroring) => mirroring.expiry().expire_these(dry_run, ids).await,
                    Err(refusal) => {
                        warn!(error = %refusal, "mirrors whose end came could not be removed");
                        ExpiryReport {
                            dry_run,
                            failed: ids.len(),
                            error: Some(refusal.to_string()),
                            ..ExpiryReport::default()
                        }
                    }
                }
            })
            .buffer_unordered(ACCOUNTS_AT_ONCE)
            .collect()
            .await;
        reports.into_iter().fold(
            ExpiryReport {
                dry_run,
                ..ExpiryReport::default()
            },
            |mut all, one| {
                all.expired.extend(one.expired);
                all.removed += one.removed;
                all.failed += one.failed;
                all.deferred += one.deferred;
                all.error = match (all.error, one.error) {
                    (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                    (a, b) => a.or(b),
                };
                all
            },
        )
    }
}
