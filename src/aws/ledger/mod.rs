//! The ledger's ports over DynamoDB, one small adapter each over one `DynamoLedger`. One item per action, keyed `pk = "action#<actionId>"`;
//! five sparse global secondary indexes answer the other lookups in one query
//! each. Two more kinds of item hold the claims that keep processes running at
//! once from colliding, each changed only by conditional writes:
//! `target#<destination>` and `filter#<rule set key>` (the one shared mirror
//! target of an ENI or load balancer, or the one filter of a rule set: its
//! id, who is making it, and which actions use it) and `source#<eni>` (the
//! session numbers claimed on a source ENI, `n<number>` = action id). Their attributes key no index. The
//! table itself is defined once, in `infra/template.yaml`.
//!
//! The item codec is in `codec`; each port's protocol in its own module:
//! `records` (action records), `shared` (the claims of shared targets and
//! filters), `numbers` (session numbers) and `scans` (the sweep's read).

mod codec;
mod numbers;
mod records;
mod reports;
mod scans;
mod shared;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::errors::WithinBudget;
use crate::domain::clock::now_seconds;
use crate::ports::{AwsError, ErrorKind, LedgerError, LedgerRecord};
use codec::{n, s, string_set, INSTANCE_PREFIX};

pub const PARTITION_KEY: &str = "pk";
pub const INDEX_BY_SESSION: (&str, &str) = ("bySessionId", "sessionId");
pub const INDEX_BY_TARGET_ENI: (&str, &str) = ("byTargetEni", "targetEni");
pub const INDEX_BY_SOURCE_ENI: (&str, &str) = ("bySourceEni", "sourceEni");
pub const INDEX_BY_RESERVATION: (&str, &str) = ("byReservationId", "reservationId");
pub const INDEX_BY_INSTANCE: (&str, &str) = ("byInstanceId", "instanceId");
/// Every (index name, partition key attribute) the code queries.
pub const INDEXES: [(&str, &str); 5] = [
    INDEX_BY_SESSION,
    INDEX_BY_TARGET_ENI,
    INDEX_BY_SOURCE_ENI,
    INDEX_BY_RESERVATION,
    INDEX_BY_INSTANCE,
];

/// The sparse index of live mirrors with an end: partition `mirrorEnding`
/// (always `MIRROR_ENDING_VALUE`, set only while the mirror may exist), sort
/// `mirrorEndsAt` (Unix seconds), so the expiry run asks for those ending
/// before now in one query.
pub const INDEX_BY_MIRROR_END: &str = "byMirrorEnd";
pub const MIRROR_ENDING: &str = "mirrorEnding";
pub const MIRROR_ENDING_VALUE: &str = "mirror";
pub const MIRROR_ENDS_AT: &str = "mirrorEndsAt";

/// The attribute DynamoDB's TTL reads (enabled on the table in the template):
/// set on finished records only, so a live mirror's record never expires.
pub const TTL_ATTRIBUTE: &str = "expiresAt";

type Item = HashMap<String, AttributeValue>;

pub struct DynamoLedger {
    client: Client,
    table: String,
    /// How long a finished record is kept, for replays and for people.
    finished_record_seconds: u64,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            finished_record_seconds: crate::config::DEFAULT_FINISHED_RECORD_DAYS * 86_400,
        }
    }

    pub fn with_finished_record_days(mut self, days: u64) -> Self {
        self.finished_record_seconds = days.saturating_mul(86_400);
        self
    }

    /// When a record in this state may be forgotten; `None` while it may
    /// name resources in EC2 or is being worked on.
    fn expiry(&self, record: &LedgerRecord) -> Option<u64> {
        let finished = record.status.is_some_and(|status| !status.holds_resources());
        finished.then(|| now_seconds().saturating_add(self.finished_record_seconds))
    }
}

macro_rules! capability {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(std::sync::Arc<DynamoLedger>);

        // The adapter is its table: the item helpers and the client are shared.
        impl std::ops::Deref for $name {
            type Target = DynamoLedger;
            fn deref(&self) -> &DynamoLedger {
                &self.0
            }
        }
    )*};
}

capability!(
    /// The `ActionRecords` port.
    DynamoRecords,
    /// The `SharedResources` port.
    DynamoClaims,
    /// The `SessionNumbers` port.
    DynamoNumbers,
    /// The `Scans` port.
    DynamoScans,
    /// The `AccountReports` port.
    DynamoReports,
);

/// One adapter per ledger port, over one table.
pub struct LedgerPorts {
    pub records: DynamoRecords,
    pub claims: DynamoClaims,
    pub numbers: DynamoNumbers,
    pub scans: DynamoScans,
    pub reports: DynamoReports,
}

impl DynamoLedger {
    /// The adapters of every ledger port, over this table.
    pub fn ports(self) -> LedgerPorts {
        let table = std::sync::Arc::new(self);
        LedgerPorts {
            records: DynamoRecords(table.clone()),
            claims: DynamoClaims(table.clone()),
            numbers: DynamoNumbers(table.clone()),
            scans: DynamoScans(table.clone()),
            reports: DynamoReports(table),
        }
    }
}

/// A conditional write's outcome: `true` when it was made, `false` when its
/// condition did not hold (an answer, not an error).
fn written<T>(outcome: Result<T, AwsError>) -> Result<bool, LedgerError> {
    match outcome {
        Ok(_) => Ok(true),
        Err(err) if err.kind == ErrorKind::ConditionFailed => Ok(false),
        Err(err) => Err(err.into()),
    }
}

impl DynamoLedger {
    async fn get_item(&self, key: AttributeValue) -> Result<Option<Item>, LedgerError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, key)
            .consistent_read(true)
            .send()
            .within_budget()
            .await?;
        Ok(output.item().cloned())
    }

    /// Adds a create's action to its instance's item, beside its claim.
    /// Best effort: the index names the record too, only later.
    async fn note_instance(&self, record: &LedgerRecord) {
        let Some(instance) = record.instance_id.as_deref() else {
            return;
        };
        let noted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(&format!("{INSTANCE_PREFIX}{instance}")))
            .update_expression(format!("ADD actions :action SET {TTL_ATTRIBUTE} = :expires"))
            .expression_attribute_values(":action", string_set(&record.action_id))
            // It only bridges the index's lag; once expired the index serves.
            .expression_attribute_values(
                ":expires",
                n(now_seconds().saturating_add(self.finished_record_seconds)),
            )
            .send()
            .within_budget()
            .await;
        if let Err(err) = noted {
            tracing::warn!(instance, error = %err, "the instance's item was not updated; the index still names the record");
        }
    }

    async fn instance_actions(&self, instance: &str) -> Result<Vec<String>, LedgerError> {
        let item = self.get_item(s(&format!("{INSTANCE_PREFIX}{instance}"))).await?;
        Ok(match item.as_ref().and_then(|item| item.get("actions")) {
            Some(AttributeValue::Ss(actions)) => actions.clone(),
            _ => Vec::new(),
        })
    }
}
