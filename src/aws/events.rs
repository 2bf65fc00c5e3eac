//! `Publisher` over EventBridge: one completion event per action.

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;

use super::errors::WithinBudget;
use serde_json::{json, Value};

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
        let room = ENTRY_LIMIT.saturating_sub(self.source.len() + detail_type(result).len() + TIME_BYTES);
        let detail = fitted_detail(result, room)
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

/// EventBridge refuses a PutEvents request whose entries total 256 KB or more.
const ENTRY_LIMIT: usize = 256 * 1024 - 1;
/// What EventBridge counts for an entry's time.
const TIME_BYTES: usize = 14;
/// How many items of each list a shortened report keeps.
const KEPT_PER_LIST: usize = 20;

/// The result as event detail, within `room` bytes. A sweep of a large fleet
/// can report thousands of findings and ENIs: its lists are shortened (each
/// to its first items, with the number left out beside it), and if that is
/// not enough the report is left out of the event; the invocation's answer
/// and log keep it whole. An event that says less beats one that is refused.
fn fitted_detail(result: &ActionResult, room: usize) -> serde_json::Result<String> {
    let whole = serde_json::to_string(result)?;
    if whole.len() <= room {
        return Ok(whole);
    }
    let mut shortened = result.clone();
    for report in [&mut shortened.sweep, &mut shortened.plan, &mut shortened.details]
        .into_iter()
        .flatten()
    {
        shorten_lists(report);
    }
    let detail = serde_json::to_string(&shortened)?;
    if detail.len() <= room {
        return Ok(detail);
    }
    let note =
        json!({"omitted": "the report is larger than an event holds; the invocation's answer and its log have it"});
    shortened.sweep = shortened.sweep.map(|_| note.clone());
    shortened.plan = shortened.plan.map(|_| note.clone());
    shortened.details = shortened.details.map(|_| note);
    shortened.removed_session_ids.truncate(KEPT_PER_LIST);
    for text in [&mut shortened.info_message, &mut shortened.error_message] {
        if text.len() > room / 4 {
            let mut cut = room / 4;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
    }
    serde_json::to_string(&shortened)
}

/// Every list in the report keeps its first items; `<name>Omitted` says how many went.
fn shorten_lists(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            let mut omitted = Vec::new();
            for (name, field) in fields.iter_mut() {
                if let Value::Array(items) = field {
                    if items.len() > KEPT_PER_LIST {
                        omitted.push((format!("{name}Omitted"), items.len() - KEPT_PER_LIST));
                        items.truncate(KEPT_PER_LIST);
                    }
                }
                shorten_lists(field);
            }
            for (name, count) in omitted {
                fields.insert(name, json!(count));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(shorten_lists),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep_with(entries: usize) -> ActionResult {
        let missing: Vec<Value> = (0..entries)
            .map(|n| json!({"instanceId": format!("i-{n:017x}"), "eni": format!("eni-{n:017x}"), "reason": "waiting for the next run"}))
            .collect();
        ActionResult {
            action_id: "sweep-1".into(),
            action_type: "Sweep".into(),
            success: true,
            sweep: Some(
                json!({"policy": {"coverage": {"wanted": entries, "targets": [{"target": "eni-1", "missing": missing}]}}}),
            ),
            ..ActionResult::default()
        }
    }

    #[test]
    fn a_small_result_is_sent_whole() {
        let result = sweep_with(3);
        let detail = fitted_detail(&result, 200_000).expect("serialises");
        assert_eq!(detail, serde_json::to_string(&result).expect("serialises"));
    }

    #[test]
    fn a_large_sweep_report_is_shortened_to_fit_and_says_so() {
        let result = sweep_with(5_000);
        assert!(serde_json::to_string(&result).expect("serialises").len() > ENTRY_LIMIT);
        let detail = fitted_detail(&result, ENTRY_LIMIT - 100).expect("serialises");
        assert!(detail.len() <= ENTRY_LIMIT - 100);
        let sent: Value = serde_json::from_str(&detail).expect("json");
        let target = &sent["sweep"]["policy"]["coverage"]["targets"][0];
        assert_eq!(target["missing"].as_array().map(Vec::len), Some(KEPT_PER_LIST));
        assert_eq!(target["missingOmitted"], 5_000 - KEPT_PER_LIST);
        assert_eq!(sent["sweep"]["policy"]["coverage"]["wanted"], 5_000, "counts are kept");
    }

    #[test]
    fn a_report_that_still_does_not_fit_is_left_out() {
        let result = sweep_with(100);
        let detail = fitted_detail(&result, 2_000).expect("serialises");
        assert!(detail.len() <= 2_000, "{}", detail.len());
        assert!(detail.contains("omitted"));
        assert!(detail.contains("sweep-1"), "the action is still named");
    }
}
