//! `Ledger` over DynamoDB. One item per action, keyed `pk = "action#<actionId>"`;
//! five sparse global secondary indexes answer the other lookups in one query
//! each. Two more kinds of item hold the claims that keep processes running at
//! once from colliding, each changed only by conditional writes:
//! `target#<destination>` and `filter#<rule set key>` (the one shared mirror
//! target of an ENI or load balancer, or the one filter of a rule set: its
//! id, who is making it, and which actions use it) and `source#<eni>` (the
//! session numbers claimed on a source ENI, `n<number>` = action id). Their attributes key no index. The
//! table itself is defined once, in `infra/template.yaml`.

use crate::ports::{ActionRecords, Scans, SessionNumbers, SharedResources};
use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use futures::future::join_all;

use super::errors::{next_page, WithinBudget};
use crate::contract::ActionResult;
use crate::mirroring::now_seconds;
use crate::ports::{
    ActionKind, AwsError, Claim, ErrorKind, LedgerContents, LedgerError, LedgerQuery, LedgerRecord, NumberClaim,
    RecordStatus, SharedClaims, SharedKey, Slot, SourceClaims,
};

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

fn key_of(action_id: &str) -> AttributeValue {
    AttributeValue::S(format!("{ACTION_PREFIX}{action_id}"))
}

const ACTION_PREFIX: &str = "action#";
const TARGET_PREFIX: &str = "target#";
const FILTER_PREFIX: &str = "filter#";
const SOURCE_PREFIX: &str = "source#";
/// `instance#<id>`: the actions that mirrored an instance's ENIs, read
/// consistently, because when an instance terminates EC2 has already deleted
/// its sessions and the index may not show a record written a moment ago.
const INSTANCE_PREFIX: &str = "instance#";

fn shared_key(key: &SharedKey) -> AttributeValue {
    let prefix = match key {
        SharedKey::Target(_) => TARGET_PREFIX,
        SharedKey::Filter(_) => FILTER_PREFIX,
    };
    AttributeValue::S(format!("{prefix}{}", key.name()))
}

fn source_key(eni: &str) -> AttributeValue {
    AttributeValue::S(format!("{SOURCE_PREFIX}{eni}"))
}

/// The attribute of a source item that holds who claimed a session number.
fn number_attribute(number: u16) -> String {
    format!("n{number}")
}

fn string_set(value: &str) -> AttributeValue {
    AttributeValue::Ss(vec![value.to_owned()])
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn iso(seconds: u64) -> AttributeValue {
    let time = aws_smithy_types::DateTime::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
    s(&time
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default())
}

fn kind_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "create",
        ActionKind::Remove => "remove",
    }
}

/// The whole record as an item. Absent optional fields are left out, which
/// also keeps the indexes sparse: only creates carry ENIs and session ids.
fn to_item(record: &LedgerRecord, expires_at: Option<u64>) -> Item {
    let mut item = Item::new();
    item.insert("version".into(), n(record.version));
    if let Some(at) = expires_at {
        item.insert(TTL_ATTRIBUTE.into(), n(at));
    }
    item.insert(PARTITION_KEY.into(), key_of(&record.action_id));
    item.insert("actionId".into(), s(&record.action_id));
    if let Some(kind) = record.kind {
        item.insert("kind".into(), s(kind_name(kind)));
    }
    if let Some(status) = record.status {
        item.insert("status".into(), s(status.as_str()));
    }
    item.insert("attempt".into(), n(record.attempt));
    let optional = [
        ("sourceEni", &record.source_eni),
        ("targetEni", &record.target_eni),
        ("targetKey", &record.target_key),
        ("targetId", &record.target_id),
        ("filterKey", &record.filter_key),
        ("filterId", &record.filter_id),
        ("sessionId", &record.session_id),
        ("reservationId", &record.reservation_id),
        ("instanceId", &record.instance_id),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.into(), s(value));
        }
    }
    item.insert("targetCreated".into(), AttributeValue::Bool(record.target_created));
    item.insert(
        "ruleIds".into(),
        AttributeValue::L(record.rule_ids.iter().map(|id| s(id)).collect()),
    );
    if let Some(number) = record.session_number {
        item.insert("sessionNumber".into(), n(number));
    }
    if let Some(vni) = record.virtual_network_id {
        item.insert("virtualNetworkId".into(), n(vni));
    }
    if let Some(result) = &record.result {
        item.insert("result".into(), s(&serde_json::to_string(result).unwrap_or_default()));
    }
    item.insert("createdAt".into(), n(record.created_at));
    item.insert("updatedAt".into(), n(record.updated_at));
    item.insert("createdAtIso".into(), iso(record.created_at));
    item.insert("updatedAtIso".into(), iso(record.updated_at));
    item
}

fn from_item(item: &Item) -> Result<LedgerRecord, LedgerError> {
    let action_id = text(item, "actionId").unwrap_or_default();
    let corrupt = |what: &str| LedgerError::Corrupt(action_id.clone(), what.to_owned());
    let number = |name: &str| -> Result<Option<i64>, LedgerError> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| corrupt(name)),
            Some(_) => Err(corrupt(name)),
        }
    };
    let kind = match text(item, "kind").as_deref() {
        Some("create") => Some(ActionKind::Create),
        Some("remove") => Some(ActionKind::Remove),
        None => None,
        Some(_) => return Err(corrupt("kind")),
    };
    let status = match text(item, "status") {
        Some(status) => Some(RecordStatus::parse(&status).ok_or_else(|| corrupt("status"))?),
        None => None,
    };
    let result = match text(item, "result") {
        Some(json) => Some(serde_json::from_str::<ActionResult>(&json).map_err(|_| corrupt("result"))?),
        None => None,
    };
    let rule_ids = match item.get("ruleIds") {
        Some(AttributeValue::L(ids)) => ids.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    };
    Ok(LedgerRecord {
        kind,
        status,
        attempt: number("attempt")?
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or_default(),
        version: number("version")?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or_default(),
        source_eni: text(item, "sourceEni"),
        target_eni: text(item, "targetEni"),
        target_key: text(item, "targetKey"),
        target_id: text(item, "targetId"),
        target_created: matches!(item.get("targetCreated"), Some(AttributeValue::Bool(true))),
        filter_key: text(item, "filterKey"),
        filter_id: text(item, "filterId"),
        rule_ids,
        session_id: text(item, "sessionId"),
        session_number: number("sessionNumber")?.and_then(|v| u16::try_from(v).ok()),
        virtual_network_id: number("virtualNetworkId")?.and_then(|v| i32::try_from(v).ok()),
        reservation_id: text(item, "reservationId"),
        instance_id: text(item, "instanceId"),
        result,
        created_at: number("createdAt")?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or_default(),
        updated_at: number("updatedAt")?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or_default(),
        action_id,
    })
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
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

fn users_of(item: &Item) -> Vec<String> {
    match item.get("users") {
        Some(AttributeValue::Ss(users)) => users.clone(),
        _ => Vec::new(),
    }
}

fn shared_claims_from(key: SharedKey, item: &Item) -> SharedClaims {
    SharedClaims {
        key,
        resource_id: text(item, "resourceId"),
        maker: text(item, "maker"),
        users: users_of(item),
    }
}

fn numbers_from(item: &Item) -> Vec<(u16, String)> {
    let mut numbers: Vec<(u16, String)> = item
        .iter()
        .filter_map(|(name, value)| {
            let number = name.strip_prefix('n')?.parse().ok()?;
            Some((number, value.as_s().ok()?.clone()))
        })
        .collect();
    numbers.sort();
    numbers
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

    /// `ADD users :me` on a claim item that names a resource with room.
    async fn try_join(&self, key: &SharedKey, action_id: &str, limit: usize) -> Result<Option<String>, LedgerError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, shared_key(key))
            .update_expression("ADD #users :meSet")
            .condition_expression(
                "attribute_exists(resourceId) AND (attribute_not_exists(#users) OR contains(#users, :me) OR size(#users) < :limit)",
            )
            .expression_attribute_names("#users", "users"
            )
            .expression_attribute_values(":meSet", string_set(action_id))
            .expression_attribute_values(":me", s(action_id))
            .expression_attribute_values(":limit", n(limit))
            .return_values(ReturnValue::AllNew)
            .send()
            .within_budget()
            .await;
        match outcome {
            Ok(output) => Ok(output.attributes().and_then(|item| text(item, "resourceId"))),
            Err(err) if err.kind == ErrorKind::ConditionFailed => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Becomes the maker of a shared resource, when none is known and nobody
    /// else is making one (or their lease ran out).
    async fn try_make(&self, key: &SharedKey, action_id: &str, lease_seconds: u64) -> Result<bool, LedgerError> {
        let now = now_seconds();
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, shared_key(key))
            .update_expression("SET maker = :me, makerLeaseUntil = :until, #name = :name ADD #users :meSet")
            .expression_attribute_names("#users", "users")
            .expression_attribute_names("#name", "name")
            .condition_expression(
                "attribute_not_exists(resourceId) AND (attribute_not_exists(maker) OR maker = :me OR makerLeaseUntil < :now)",
            )
            .expression_attribute_values(":me", s(action_id))
            .expression_attribute_values(":meSet", string_set(action_id))
            .expression_attribute_values(":until", n(now + lease_seconds))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":name", s(key.name()))
            .send()
            .within_budget()
            .await;
        written(outcome)
    }
}

#[async_trait]
impl ActionRecords for DynamoLedger {
    async fn claim(&self, record: &LedgerRecord, lease_seconds: u64) -> Result<Claim, LedgerError> {
        let now = record.updated_at;
        let mut values = Item::new();
        let mut sets = vec![
            "#kind = :kind".to_owned(),
            "#status = :pending".to_owned(),
            "leaseUntil = :lease".to_owned(),
            "updatedAt = :now".to_owned(),
            "updatedAtIso = :nowIso".to_owned(),
            "createdAt = if_not_exists(createdAt, :now)".to_owned(),
            "createdAtIso = if_not_exists(createdAtIso, :nowIso)".to_owned(),
            // A failed action keeps its attempt counter, so its retry gets new client tokens.
            "attempt = if_not_exists(attempt, :zero)".to_owned(),
            "actionId = :actionId".to_owned(),
            "version = if_not_exists(version, :zero) + :one".to_owned(),
        ];
        values.insert(":kind".into(), s(record.kind.map(kind_name).unwrap_or("create")));
        values.insert(":pending".into(), s(RecordStatus::Pending.as_str()));
        values.insert(":failed".into(), s(RecordStatus::Failed.as_str()));
        values.insert(":lease".into(), n(now + lease_seconds));
        values.insert(":now".into(), n(now));
        values.insert(":nowIso".into(), iso(now));
        values.insert(":zero".into(), n(0));
        values.insert(":one".into(), n(1));
        values.insert(":actionId".into(), s(&record.action_id));
        // The claim items the action will join are named now, so whoever
        // finds the action abandoned knows which users to take it out of.
        for (name, value) in [
            ("sourceEni", &record.source_eni),
            ("targetEni", &record.target_eni),
            ("targetKey", &record.target_key),
            ("filterKey", &record.filter_key),
            ("reservationId", &record.reservation_id),
            ("instanceId", &record.instance_id),
        ] {
            if let Some(value) = value {
                sets.push(format!("{name} = :{name}"));
                values.insert(format!(":{name}"), s(value));
            }
        }
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, key_of(&record.action_id))
            // A record being worked on again must not expire under its worker.
            .update_expression(format!("SET {} REMOVE {TTL_ATTRIBUTE}", sets.join(", ")))
            // New, failed before, or pending past its lease (its process died).
            .condition_expression(
                "attribute_not_exists(pk) OR #status = :failed OR (#status = :pending AND leaseUntil < :now)",
            )
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .within_budget();
        let (outcome, ()) = tokio::join!(claimed, self.note_instance(record));
        match outcome {
            Ok(output) => {
                let stored = output.attributes().map(from_item).transpose()?.unwrap_or_default();
                Ok(Claim::Granted {
                    attempt: stored.attempt,
                    version: stored.version,
                })
            }
            Err(err) if err.kind == ErrorKind::ConditionFailed => {
                let existing = self.get(&record.action_id).await?;
                Ok(match existing {
                    Some(LedgerRecord {
                        status: Some(RecordStatus::Pending),
                        ..
                    })
                    | None => Claim::InProgress,
                    Some(LedgerRecord {
                        result: Some(result), ..
                    }) => Claim::Finished(Box::new(result)),
                    Some(_) => Claim::InProgress,
                })
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn save(&self, record: &mut LedgerRecord) -> Result<(), LedgerError> {
        let read_at = record.version;
        let mut written_record = record.clone();
        written_record.version = read_at + 1;
        let expires_at = self.expiry(record);
        // Items from before versions read as version 0 and carry none.
        let condition = if read_at == 0 {
            "attribute_not_exists(version) OR version = :read"
        } else {
            "version = :read"
        };
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&written_record, expires_at)))
            .condition_expression(condition)
            .expression_attribute_values(":read", n(read_at))
            .send()
            .within_budget()
            .await;
        if written(outcome)? {
            record.version = read_at + 1;
            Ok(())
        } else {
            Err(LedgerError::Conflict(record.action_id.clone()))
        }
    }

    async fn adopt(&self, record: &LedgerRecord) -> Result<bool, LedgerError> {
        let mut adopted = record.clone();
        adopted.version = 1;
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(&adopted, self.expiry(record))))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .within_budget()
            .await;
        written(outcome)
    }

    async fn get(&self, action_id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
        self.get_item(key_of(action_id))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    async fn find(&self, query: &LedgerQuery) -> Result<Vec<LedgerRecord>, LedgerError> {
        let ((index, attribute), value) = match query {
            LedgerQuery::Session(id) => (INDEX_BY_SESSION, id),
            LedgerQuery::TargetEni(eni) => (INDEX_BY_TARGET_ENI, eni),
            LedgerQuery::SourceEni(eni) => (INDEX_BY_SOURCE_ENI, eni),
            LedgerQuery::Reservation(id) => (INDEX_BY_RESERVATION, id),
            LedgerQuery::Instance(id) => (INDEX_BY_INSTANCE, id),
        };
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#key = :value")
            .expression_attribute_names("#key", attribute)
            .expression_attribute_values(":value", s(value))
            .into_paginator()
            .send();
        let mut action_ids = Vec::new();
        if let LedgerQuery::Instance(instance) = query {
            action_ids.extend(self.instance_actions(instance).await?);
        }
        while let Some(page) = next_page("Query", pages.next()).await? {
            for item in page.items() {
                action_ids.extend(text(item, "actionId"));
            }
        }
        action_ids.sort();
        action_ids.dedup();
        // The index may hold an old version of an item: act on the item as it is.
        let reads = join_all(action_ids.iter().map(|id| self.get(id))).await;
        let mut records = Vec::new();
        for read in reads {
            records.extend(read?);
        }
        Ok(records)
    }
}

#[async_trait]
impl SharedResources for DynamoLedger {
    async fn join_shared(
        &self,
        key: &SharedKey,
        action_id: &str,
        limit: usize,
        lease_seconds: u64,
    ) -> Result<Slot, LedgerError> {
        // Two rounds cover a resource that appears between our two writes.
        for _ in 0..2 {
            if let Some(resource_id) = self.try_join(key, action_id, limit).await? {
                return Ok(Slot::Joined(resource_id));
            }
            if self.try_make(key, action_id, lease_seconds).await? {
                return Ok(Slot::Make);
            }
            match self.shared(key).await? {
                Some(SharedClaims {
                    resource_id: Some(_),
                    users,
                    ..
                }) if users.len() >= limit && !users.iter().any(|u| u == action_id) => {
                    return Ok(Slot::Full(users.len()))
                }
                Some(SharedClaims {
                    resource_id: None,
                    maker: Some(_),
                    ..
                }) => return Ok(Slot::Busy),
                _ => continue,
            }
        }
        Ok(Slot::Busy)
    }

    async fn shared_made(&self, key: &SharedKey, action_id: &str, resource_id: &str) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, shared_key(key))
            .update_expression("SET resourceId = :resource REMOVE maker, makerLeaseUntil")
            .condition_expression("maker = :me")
            .expression_attribute_values(":me", s(action_id))
            .expression_attribute_values(":resource", s(resource_id))
            .send()
            .within_budget()
            .await?;
        Ok(())
    }

    async fn leave_shared(&self, key: &SharedKey, action_id: &str) -> Result<(Option<String>, usize), LedgerError> {
        // Give up making it first, so nobody waits out our lease.
        let gave_up = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, shared_key(key))
            .update_expression("REMOVE maker, makerLeaseUntil")
            .condition_expression("maker = :me")
            .expression_attribute_values(":me", s(action_id))
            .send()
            .within_budget()
            .await;
        written(gave_up)?;
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, shared_key(key))
            .update_expression("DELETE #users :meSet")
            .expression_attribute_names("#users", "users")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":meSet", string_set(action_id))
            .return_values(ReturnValue::AllNew)
            .send()
            .within_budget()
            .await;
        match output {
            Ok(output) => Ok(output
                .attributes()
                .map(|item| (text(item, "resourceId"), users_of(item).len()))
                .unwrap_or_default()),
            Err(err) if err.kind == ErrorKind::ConditionFailed => Ok((None, 0)),
            Err(err) => Err(err.into()),
        }
    }

    async fn retire_shared(&self, key: &SharedKey, resource_id: &str) -> Result<bool, LedgerError> {
        let outcome = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, shared_key(key))
            .condition_expression(
                "attribute_not_exists(pk) OR (resourceId = :resource AND attribute_not_exists(#users) AND attribute_not_exists(maker))",
            )
            .expression_attribute_names("#users", "users"
            )
            .expression_attribute_values(":resource", s(resource_id))
            .send()
            .within_budget()
            .await;
        if written(outcome)? {
            return Ok(true);
        }
        // The item names another resource, or one is being made, or it is
        // used. Only an item that neither uses nor is making `resource_id`
        // lets go of it.
        Ok(match self.shared(key).await? {
            None => true,
            Some(claims) => claims.maker.is_none() && claims.resource_id.as_deref() != Some(resource_id),
        })
    }

    async fn restore_shared(&self, key: &SharedKey, resource_id: &str) -> Result<(), LedgerError> {
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, shared_key(key))
            .item("name", s(key.name()))
            .item("resourceId", s(resource_id))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .within_budget()
            .await;
        // Refused: the key has a claim item again, which the sweep reconciles.
        written(outcome).map(|_| ())
    }

    async fn shared(&self, key: &SharedKey) -> Result<Option<SharedClaims>, LedgerError> {
        Ok(self
            .get_item(shared_key(key))
            .await?
            .map(|item| shared_claims_from(key.clone(), &item)))
    }
}

#[async_trait]
impl SessionNumbers for DynamoLedger {
    async fn claim_number(
        &self,
        source_eni: &str,
        number: u16,
        action_id: &str,
        limit: usize,
    ) -> Result<NumberClaim, LedgerError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, source_key(source_eni))
            .update_expression("SET #holder = :me, eni = :eni ADD claimed :number")
            .condition_expression(
                "#holder = :me OR (attribute_not_exists(#holder) AND (attribute_not_exists(claimed) OR size(claimed) < :limit))",
            )
            .expression_attribute_names("#holder", number_attribute(number))
            .expression_attribute_values(":me", s(action_id))
            .expression_attribute_values(":eni", s(source_eni))
            .expression_attribute_values(":number", AttributeValue::Ns(vec![number.to_string()]))
            .expression_attribute_values(":limit", n(limit))
            .send()
            .within_budget()
            .await;
        if written(outcome)? {
            return Ok(NumberClaim::Claimed);
        }
        Ok(NumberClaim::Refused(
            self.numbers(source_eni).await?.into_iter().map(|(n, _)| n).collect(),
        ))
    }

    async fn numbers(&self, source_eni: &str) -> Result<Vec<(u16, String)>, LedgerError> {
        Ok(self
            .get_item(source_key(source_eni))
            .await?
            .map(|item| numbers_from(&item))
            .unwrap_or_default())
    }

    async fn release_number(&self, source_eni: &str, number: u16, action_id: &str) -> Result<(), LedgerError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, source_key(source_eni))
            .update_expression("REMOVE #holder DELETE claimed :number")
            .condition_expression("#holder = :me")
            .expression_attribute_names("#holder", number_attribute(number))
            .expression_attribute_values(":me", s(action_id))
            .expression_attribute_values(":number", AttributeValue::Ns(vec![number.to_string()]))
            .send()
            .within_budget()
            .await;
        // Refused: not ours (any more), so nothing to release.
        written(outcome).map(|_| ())
    }
}

#[async_trait]
impl Scans for DynamoLedger {
    async fn contents(&self) -> Result<LedgerContents, LedgerError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut contents = LedgerContents::default();
        while let Some(page) = next_page("Scan", pages.next()).await? {
            for item in page.items() {
                let key = text(item, PARTITION_KEY).unwrap_or_default();
                if key.starts_with(ACTION_PREFIX) {
                    contents.records.push(from_item(item)?);
                } else if let Some(name) = key.strip_prefix(TARGET_PREFIX) {
                    contents
                        .shared
                        .push(shared_claims_from(SharedKey::Target(name.to_owned()), item));
                } else if let Some(name) = key.strip_prefix(FILTER_PREFIX) {
                    contents
                        .shared
                        .push(shared_claims_from(SharedKey::Filter(name.to_owned()), item));
                } else if let Some(eni) = key.strip_prefix(SOURCE_PREFIX) {
                    contents.sources.push(SourceClaims {
                        source_eni: eni.to_owned(),
                        numbers: numbers_from(item),
                    });
                }
            }
        }
        Ok(contents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_round_trip_through_an_item() {
        let record = LedgerRecord {
            action_id: "a1".into(),
            kind: Some(ActionKind::Create),
            status: Some(RecordStatus::Active),
            attempt: 2,
            version: 4,
            source_eni: Some("eni-0000000a".into()),
            target_eni: Some("eni-0000000b".into()),
            target_key: Some("eni-0000000b".into()),
            target_id: Some("tmt-1".into()),
            target_created: true,
            filter_key: Some("rules-1".into()),
            filter_id: Some("tmf-1".into()),
            rule_ids: vec!["tmfr-1".into(), "tmfr-2".into()],
            session_id: Some("tms-1".into()),
            session_number: Some(3),
            virtual_network_id: Some(77),
            reservation_id: Some("r".into()),
            instance_id: Some("i-1".into()),
            result: Some(ActionResult {
                action_id: "a1".into(),
                success: true,
                ..ActionResult::default()
            }),
            created_at: 1_700_000_000,
            updated_at: 1_700_000_001,
        };
        assert_eq!(from_item(&to_item(&record, None)).expect("readable"), record);
    }

    #[test]
    fn an_unknown_status_is_reported_not_guessed() {
        let mut item = to_item(
            &LedgerRecord {
                action_id: "x".into(),
                ..LedgerRecord::default()
            },
            None,
        );
        item.insert("status".into(), s("exploded"));
        assert!(matches!(from_item(&item), Err(LedgerError::Corrupt(id, field)) if id == "x" && field == "status"));
    }
}
