//! Action records: the claim that admits one run of an action at a time,
//! versioned saves, adoption, and lookups by key and by index.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use std::collections::BTreeMap;

use futures::future::join_all;

use super::codec::*;
use super::DynamoRecords;
use super::{
    written, Item, INDEX_BY_INSTANCE, INDEX_BY_RESERVATION, INDEX_BY_SESSION, INDEX_BY_SOURCE_ENI, INDEX_BY_TARGET_ENI,
    PARTITION_KEY, TTL_ATTRIBUTE,
};
use crate::aws::errors::{next_page, WithinBudget};
use crate::ports::*;

#[async_trait]
impl ActionRecords for DynamoRecords {
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
        // finds the action abandoned knows which users to take it out of;
        // and its account, so that only that account's sweep undoes it (a
        // member's pending record without one is the hub's to judge, which
        // would look for its session in the wrong account). Who asked and
        // why are known from the start too.
        let text = |value: &Option<String>| value.clone();
        let mut names = std::collections::HashMap::from([
            ("#kind".to_owned(), "kind".to_owned()),
            ("#status".to_owned(), "status".to_owned()),
        ]);
        for (name, value) in [
            ("sourceEni", text(&record.source_eni)),
            ("targetEni", text(&record.target_eni)),
            ("targetKey", text(&record.target_key)),
            ("filterKey", text(&record.filter_key)),
            ("reservationId", text(&record.reservation_id)),
            ("instanceId", text(&record.instance_id)),
            ("pool", text(&record.pool)),
            ("placedBecause", text(&record.placed_because)),
            ("account", record.account.as_ref().map(|a| a.as_str().to_owned())),
            ("requestedBy", record.requested_by.as_ref().map(|r| r.principal.clone())),
            (
                "requestedByBasis",
                record.requested_by.as_ref().map(|r| r.basis.as_str().to_owned()),
            ),
            ("reason", text(&record.reason)),
        ] {
            if let Some(value) = value {
                // By placeholder: no name of ours then collides with a reserved word.
                sets.push(format!("#{name} = :{name}"));
                names.insert(format!("#{name}"), name.to_owned());
                values.insert(format!(":{name}"), s(&value));
            }
        }
        // The deployment's own account is the absence of one.
        let mut removes = vec![TTL_ATTRIBUTE.to_owned()];
        if record.account.is_none() {
            removes.push("#account".to_owned());
            names.insert("#account".into(), "account".into());
        }
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, key_of(&record.action_id))
            // A record being worked on again must not expire under its worker.
            .update_expression(format!("SET {} REMOVE {}", sets.join(", "), removes.join(", ")))
            // New, failed before, or pending past its lease (its process died).
            .condition_expression(
                "attribute_not_exists(pk) OR #status = :failed OR (#status = :pending AND leaseUntil < :now)",
            )
            .set_expression_attribute_names(Some(names))
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
        // The index projects whole items. One of them may be an old version:
        // every write that acts on a record is conditional on the version it
        // was read at, and re-reads it when that fails.
        let instance_read = async {
            match query {
                LedgerQuery::Instance(instance) => self.instance_actions(instance).await,
                _ => Ok(Vec::new()),
            }
        };
        let indexed = async {
            let mut records: BTreeMap<String, LedgerRecord> = BTreeMap::new();
            while let Some(page) = next_page("Query", pages.next()).await? {
                for item in page.items() {
                    let record = from_item(item)?;
                    records.insert(record.action_id.clone(), record);
                }
            }
            Ok::<_, LedgerError>(records)
        };
        let (instance_actions, indexed) = tokio::join!(instance_read, indexed);
        let mut records = indexed?;
        // An instance's item names actions the index may not show yet.
        let unseen: Vec<String> = instance_actions?
            .into_iter()
            .filter(|id| !records.contains_key(id))
            .collect();
        for read in join_all(unseen.iter().map(|id| self.get(id))).await {
            if let Some(record) = read? {
                records.insert(record.action_id.clone(), record);
            }
        }
        Ok(records.into_values().collect())
    }
}
