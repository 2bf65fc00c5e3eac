//! The embedded-metric lines the function writes with its logs (#18): each
//! parsed as CloudWatch would, its names, units and dimensions checked, and
//! its values against what happened.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::*;
use traffic_mirroring::metrics::Kept;

/// Every line written since the last call, parsed; each must be a valid EMF
/// document: every metric it declares is a number (or a list of numbers)
/// beside its dimensions, which are strings.
fn documents(sink: &Kept) -> Vec<Value> {
    let lines: Vec<String> = sink.0.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default();
    lines
        .iter()
        .map(|line| {
            let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let meta = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(meta["Namespace"], "TrafficMirroring", "{line}");
            assert!(
                doc["_aws"]["Timestamp"].as_u64().is_some_and(|t| t > 1_600_000_000_000),
                "{line}"
            );
            for dimension in meta["Dimensions"][0].as_array().expect("one dimension set") {
                let name = dimension.as_str().expect("a dimension name");
                assert!(doc[name].is_string(), "dimension {name} has a value: {line}");
            }
            for metric in meta["Metrics"].as_array().expect("metrics") {
                let name = metric["Name"].as_str().expect("a metric name");
                assert!(
                    matches!(metric["Unit"].as_str(), Some("Count" | "Milliseconds")),
                    "{line}"
                );
                let value = &doc[name];
                let numeric = value.is_number() || value.as_array().is_some_and(|v| v.iter().all(Value::is_number));
                assert!(numeric, "{name} has a value: {line}");
            }
            doc
        })
        .collect()
}

fn action_line<'a>(docs: &'a [Value], action_type: &str, outcome: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["ActionType"] == action_type && d["Outcome"] == outcome)
}

fn invocation_line(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d.get("ActionType").is_none())
        .expect("one line per invocation")
}

#[tokio::test]
async fn each_invocation_writes_metrics_that_match_what_it_did() {
    let world = World::start().await;
    let sink = Arc::new(Kept::default());
    let app = world.app_with(|_| {}).with_metric_sink(sink.clone());
    let (source, target) = (world.eni().await, world.eni().await);

    app.invoke(seed_create("emf-1", &source, &target))
        .await
        .expect("answer");
    let docs = documents(&sink);
    let created = action_line(&docs, "CreateTrafficMirroring", "success").expect("a success line");
    assert_eq!(created["Actions"], 1);
    assert_eq!(created["Deployment"], world.config.owner.as_str());
    assert!(created["ActionLatency"][0].as_f64().is_some_and(|ms| ms > 0.0));
    let line = invocation_line(&docs);
    assert_eq!(
        (
            &line["SessionsCreated"],
            &line["FiltersCreated"],
            &line["TargetsCreated"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{line}"
    );
    assert_eq!(line["SessionsDeleted"], 0);

    // A bad request: one failure, nothing made.
    app.invoke(seed_create("emf-2", "eni-nope", &target))
        .await
        .expect("answer");
    let docs = documents(&sink);
    assert_eq!(
        action_line(&docs, "CreateTrafficMirroring", "failure").map(|d| &d["Actions"]),
        Some(&json!(1))
    );
    assert!(action_line(&docs, "CreateTrafficMirroring", "success").is_none());
    assert_eq!(invocation_line(&docs)["SessionsCreated"], 0);

    // Throttled for a while, then through: the waits are counted.
    world
        .emulator
        .fail_next("CreateTrafficMirrorSession", "RequestLimitExceeded", 503, 2)
        .await;
    let other = world.eni().await;
    app.invoke(seed_create("emf-3", &other, &target)).await.expect("answer");
    let line = invocation_line(&documents(&sink)).clone();
    assert_eq!(line["ThrottledCalls"], 2, "{line}");
    assert!(line["ThrottleWait"].as_u64().is_some_and(|ms| ms > 0), "{line}");
    assert_eq!(line["SessionsCreated"], 1);

    // An SQS record handed back is counted.
    world
        .emulator
        .fail_next("CreateTrafficMirrorTarget", "RequestLimitExceeded", 503, 1_000_000)
        .await;
    let busy = (world.eni().await, world.eni().await);
    let batch = json!({"Records": [sqs_record("m-1", &create("emf-4", &busy.0, &busy.1, None))]});
    world.invoke_within(&app, 8, batch).await;
    world.emulator.clear_faults().await;
    let docs = documents(&sink);
    assert_eq!(invocation_line(&docs)["RecordsHandedBack"], 1);
    assert_eq!(
        action_line(&docs, "CreateTrafficMirroring", "retryable").map(|d| &d["Actions"]),
        Some(&json!(1))
    );

    // The sweep's coverage: one instance wanted and mirrored.
    world
        .instance("m5.large", &[("traffic-mirroring:target", &target)])
        .await;
    app.invoke(json!({"sweep": {}})).await.expect("answer");
    let docs = documents(&sink);
    let line = invocation_line(&docs);
    assert_eq!(
        (&line["CoverageWanted"], &line["CoverageMirrored"]),
        (&json!(1), &json!(1)),
        "{line}"
    );
    assert_eq!(line["CoverageMissing"], 0);
    assert_eq!(
        action_line(&docs, "Sweep", "success").map(|d| &d["Actions"]),
        Some(&json!(1))
    );
    assert_eq!(
        action_line(&docs, "CreateTrafficMirroring", "success").map(|d| &d["Actions"]),
        Some(&json!(1))
    );

    // A remove deletes the sessions and what they alone used.
    let removed = app.invoke(remove("emf-rm", "", &target)).await.expect("answer");
    let docs = documents(&sink);
    let line = invocation_line(&docs);
    assert_eq!(line["SessionsDeleted"], 3, "{removed} {line}");
    assert_eq!(line["TargetsDeleted"], 1, "{line}");
    assert_eq!(
        action_line(&docs, "RemoveTrafficMirroring", "success").map(|d| &d["Actions"]),
        Some(&json!(1))
    );
}
