//! The `SweepQueue` port over SQS: the function's own request queue, on
//! which an organization's scheduled sweep puts one message per account.

use async_trait::async_trait;
use serde_json::json;

use super::errors::WithinBudget;
use crate::domain::account::AccountId;
use crate::ports::{AwsResult, SweepQueue};

pub struct SqsSweepQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsSweepQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl SweepQueue for SqsSweepQueue {
    async fn enqueue_sweep(&self, account: &AccountId) -> AwsResult<()> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(json!({"sweep": {"account": account.as_str()}}).to_string())
            .send()
            .within_budget()
            .await?;
        Ok(())
    }
}
