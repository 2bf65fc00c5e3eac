//! The sweep's whole read of the ledger, paged.

use async_trait::async_trait;

use super::codec::*;
use super::{DynamoScans, INDEX_BY_MIRROR_END, MIRROR_ENDING, MIRROR_ENDING_VALUE, MIRROR_ENDS_AT, PARTITION_KEY};
use crate::aws::errors::next_page;
use crate::ports::*;

#[async_trait]
impl Scans for DynamoScans {
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

    async fn ending_by(&self, at: u64) -> Result<Vec<String>, LedgerError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX_BY_MIRROR_END)
            .key_condition_expression("#ending = :ending AND #at <= :at")
            .expression_attribute_names("#ending", MIRROR_ENDING)
            .expression_attribute_names("#at", MIRROR_ENDS_AT)
            .expression_attribute_values(":ending", s(MIRROR_ENDING_VALUE))
            .expression_attribute_values(":at", n(at))
            .into_paginator()
            .send();
        let mut ids = Vec::new();
        while let Some(page) = next_page("Query", pages.next()).await? {
            // The index projects keys only: the action id is in the key.
            ids.extend(
                page.items()
                    .iter()
                    .filter_map(|item| text(item, PARTITION_KEY))
                    .filter_map(|key| key.strip_prefix(ACTION_PREFIX).map(str::to_owned)),
            );
        }
        Ok(ids)
    }
}
