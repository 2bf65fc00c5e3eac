//! `Publisher` over EventBridge: one completion event per action.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use super::errors::WithinBudget;
use crate::contract::{detail_type, ActionResult};
use crate::ports::{AwsError, AwsResult, ErrorKind, Publisher};

pub struct EventBridgePublisher {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgePublisher {
    pub fn new(client: Client, bus: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
            source: source.into(),
        }
    }
}

#[async_trait]
impl Publisher for EventBridgePublisher {
    async fn publish(&self, result: &ActionResult) -> AwsResult<()> {
        let detail = serde_json::to_string(result)
            .map_err(|e| AwsError::new(ErrorKind::Rejected, "SerializationError", e.to_string()))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&self.source)
            .detail_type(detail_type(result))
            .detail(detail)
            .build();
        let output = self.client.put_events().entries(entry).send().within_budget().await?;
        // PutEvents can succeed as a call and still refuse an entry.
        if output.failed_entry_count() > 0 {
            let failed = output.entries().iter().find(|e| e.error_code().is_some());
            let code = failed.and_then(|e| e.error_code()).unwrap_or("FailedEntry");
            let message = failed
                .and_then(|e| e.error_message())
                .unwrap_or("EventBridge refused the event");
            return Err(AwsError::new(ErrorKind::Rejected, code, message));
        }
        Ok(())
    }
}
