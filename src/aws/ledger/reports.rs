//! Each account's last sweep report: one item per account,
//! `pk = "report#<account>"`, its JSON and when it was swept. The sweep's
//! scan passes over these items (they are no record, claim or number).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::codec::{n, s, text};
use super::{DynamoReports, PARTITION_KEY};
use crate::aws::errors::WithinBudget;
use crate::ports::{AccountReports, LedgerError};

const REPORT_PREFIX: &str = "report#";
/// Reports read at once.
const READS_AT_ONCE: usize = 16;

#[async_trait]
impl AccountReports for DynamoReports {
    async fn save_report(&self, account: &str, report: &Value, at: u64) -> Result<(), LedgerError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, s(&format!("{REPORT_PREFIX}{account}")))
            .item("report", s(&report.to_string()))
            .item("sweptAt", n(at))
            .send()
            .within_budget()
            .await?;
        Ok(())
    }

    async fn reports(&self, accounts: &[String]) -> Result<Vec<(String, Value, u64)>, LedgerError> {
        // Side by side, in order: an organization of hundreds of accounts
        // would otherwise wait for each read in turn.
        let items: Vec<_> = stream::iter(accounts.iter().cloned())
            .map(|account| async move {
                let item = self.get_item(s(&format!("{REPORT_PREFIX}{account}"))).await;
                (account, item)
            })
            .buffered(READS_AT_ONCE)
            .collect()
            .await;
        let mut found = Vec::new();
        for (account, item) in items {
            let Some(item) = item? else {
                continue;
            };
            let report = text(&item, "report")
                .and_then(|json| serde_json::from_str(&json).ok())
                .ok_or_else(|| LedgerError::Corrupt(format!("{REPORT_PREFIX}{account}"), "no report".into()))?;
            let at = match item.get("sweptAt") {
                Some(AttributeValue::N(at)) => at.parse().unwrap_or_default(),
                _ => 0,
            };
            found.push((account, report, at));
        }
        Ok(found)
    }
}
