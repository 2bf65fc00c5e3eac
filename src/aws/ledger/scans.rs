//! The sweep's whole read of the ledger, paged.

use async_trait::async_trait;

use super::codec::*;
use super::{DynamoLedger, PARTITION_KEY};
use crate::aws::errors::next_page;
use crate::ports::*;

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
