//! Session numbers claimed on a source ENI, one attribute per number.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::codec::*;
use super::DynamoNumbers;
use super::{written, PARTITION_KEY};
use crate::aws::errors::WithinBudget;
use crate::ports::*;

#[async_trait]
impl SessionNumbers for DynamoNumbers {
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
