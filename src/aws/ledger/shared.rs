//! The claim items of shared targets and filters: joining as a user,
//! becoming the one maker, naming what was made, leaving, retiring.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::codec::*;
use super::DynamoClaims;
use super::{written, DynamoLedger, PARTITION_KEY};
use crate::aws::errors::WithinBudget;
use crate::domain::clock::now_seconds;
use crate::ports::*;

impl DynamoLedger {
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
impl SharedResources for DynamoClaims {
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
        // Giving up making it (so nobody waits out our lease) and leaving
        // its users change different attributes: both go at once.
        let gave_up = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, shared_key(key))
            .update_expression("REMOVE maker, makerLeaseUntil")
            .condition_expression("maker = :me")
            .expression_attribute_values(":me", s(action_id))
            .send()
            .within_budget();
        let left = self
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
            .within_budget();
        let (gave_up, output) = tokio::join!(gave_up, left);
        written(gave_up)?;
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
