//! Property-based fuzzing of everything a payload goes through before AWS:
//! source recognition, the SQS envelope, request splitting, validation and
//! the lane planner. Arbitrary bytes, arbitrary JSON and arbitrary
//! well-typed-but-wrong requests must never panic, and every action must get
//! exactly one answer, in order, under its own id.
//!
//! AWS is replaced by the in-memory fakes of the ports (a fuzz case must not
//! depend on a server, and should run in microseconds), with a deployment
//! that allows any source and destination: valid actions run every step of
//! the logic (claims, shared targets and filters, session numbers, sessions,
//! rollback), invalid ones end in `ValidationError`; both are answers.
//! `PROPTEST_CASES` sets the number of cases per property (default 256);
//! with `FUZZ_REPORT=<file>` each property appends its count there when it
//! has run them all, for the test command to print.

#[path = "../support/fakes/mod.rs"]
mod fakes;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use traffic_mirroring::handler::App;
use traffic_mirroring::mirroring::{Allowed, Mirroring};
use traffic_mirroring::sources::InvokeError;

use fakes::{MemoryBus, MemoryEc2, MemoryLedger};

/// A deployment over fresh in-memory ports, open to any source and destination.
fn app() -> App {
    App::new(
        Mirroring::new(
            Arc::new(MemoryEc2::default()),
            Arc::new(MemoryLedger::default()),
            Arc::new(MemoryBus::default()),
            "fuzz",
        )
        .with_allowed(Allowed::anything()),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

static BYTES: AtomicUsize = AtomicUsize::new(0);
static JSON: AtomicUsize = AtomicUsize::new(0);
static REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Counts a case of a property; the last of its cases writes the property's
/// count to `FUZZ_REPORT`. (Proptest runs exactly `PROPTEST_CASES` passing
/// cases; a failing property fails the run whatever is reported.)
fn counted(property: &str, cases: &AtomicUsize) {
    let ran = cases.fetch_add(1, Ordering::Relaxed) + 1;
    let configured = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(256);
    if ran != configured {
        return;
    }
    if let Ok(path) = std::env::var("FUZZ_REPORT") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "fuzz: {property}: {ran} cases");
        }
    }
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "eni-0123456789abcdef0",
            "tms-1",
            "",
            "driverRequest",
            "actions",
            "Records"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "driverRequest",
                    "actions",
                    "actionId",
                    "type",
                    "actionParams",
                    "sourceNicId",
                    "targetNicId",
                    "sessionId",
                    "filterRules",
                    "sessionNumber",
                    "detail",
                    "detail-type",
                    "source",
                    "Records",
                    "eventSource",
                    "body",
                    "sweep",
                    "x",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field value that is sometimes right, often wrong in type or range.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!("eni-0123456789abcdef0"),
            json!("eni-0fedcba9876543210"),
            json!("eni-x"),
            json!("tms-0123456789abcdef0"),
            json!("tmt-0123456789abcdef0"),
            json!("tmf-0123456789abcdef0"),
            json!("vpce-0123456789abcdef0"),
            json!("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/m/50dc6c495c0c9188"),
            json!("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/m/50dc6c495c0c9188"),
            json!("arn:::::"),
            json!(""),
            json!("   "),
            json!(null),
            json!(0),
            json!(-1),
            json!(32767),
            json!(1),
            json!("1"),
            json!(true),
            json!([]),
            json!({}),
            json!("ingress"),
            json!("egress"),
            json!("accept"),
            json!("reject"),
            json!("10.0.0.0/8"),
            json!("0.0.0.0/0"),
            json!("::/0"),
            json!("not-a-cidr"),
            json!(6),
            json!(17),
            json!(256),
            json!(8500),
            json!(65536),
        ]),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(vec![
            "ruleNumber",
            "ruleAction",
            "trafficDirection",
            "protocol",
            "sourceCidrBlock",
            "destinationCidrBlock",
            "sourcePortRange",
            "destinationPortRange",
            "fromPort",
            "toPort",
            "description",
            "bogus",
        ])
        .prop_map(str::to_owned),
        field(),
        0..9,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// An action shaped like the contract's, with any of its fields wrong.
fn action() -> impl Strategy<Value = Value> {
    let params = (
        prop::collection::btree_map(
            prop::sample::select(vec![
                "sourceNicId",
                "targetNicId",
                "sessionId",
                "sessionNumber",
                "packetLength",
                "virtualNetworkId",
                "description",
                "type",
                "reservationId",
                "targetNetworkLoadBalancerArn",
                "targetGatewayLoadBalancerEndpointId",
                "trafficMirrorTargetId",
                "trafficMirrorFilterId",
                "dryRun",
            ])
            .prop_map(str::to_owned),
            field(),
            0..9,
        ),
        prop::option::of(prop::collection::vec(rule(), 0..12)),
    )
        .prop_map(|(mut map, rules)| {
            if let Some(rules) = rules {
                map.insert("filterRules".into(), Value::Array(rules));
            }
            Value::Object(map.into_iter().collect())
        });
    (
        prop::option::of(prop_oneof!["[a-z0-9-]{1,12}".prop_map(Value::from), field()]),
        prop::sample::select(vec![
            json!("CreateTrafficMirroring"),
            json!("RemoveTrafficMirroring"),
            json!("DeleteEverything"),
            json!(null),
            json!(7),
        ]),
        params,
    )
        .prop_map(|(id, kind, params)| {
            let mut action = json!({"type": kind, "actionParams": params});
            if let Some(id) = id {
                action["actionId"] = id;
            }
            action
        })
}

/// What any answer to any payload must be: an error only for an EventBridge
/// event (so that EventBridge retries it), else one of the shapes the sources
/// understand, in which every action either succeeded or failed with a named
/// code and a message, and nothing is silently empty.
fn check_answer(payload: &Value, answer: &Result<Value, InvokeError>) -> Result<(), TestCaseError> {
    let answer = match answer {
        Err(InvokeError::Retryable(message)) => {
            let is_event = payload.get("detail-type").is_some() && payload.get("detail").is_some();
            prop_assert!(
                is_event,
                "only an EventBridge event is answered with an error: {}",
                payload
            );
            prop_assert!(!message.is_empty());
            return Ok(());
        }
        Ok(answer) => answer,
    };
    let answered = |result: &Value| {
        result["success"] == true
            || (result["success"] == false
                && result["errorCode"].as_str().is_some_and(|c| !c.is_empty())
                && result["errorMessage"].as_str().is_some_and(|m| !m.is_empty()))
    };
    if let Some(body) = answer.get("driverResponse") {
        let results = body["actionResults"].as_array();
        prop_assert!(results.is_some(), "actionResults is a list: {}", answer);
        let results = results.cloned().unwrap_or_default();
        for result in &results {
            prop_assert!(answered(result), "a success or a named failure: {}", result);
        }
        let explained = body["errorMessage"].as_str().is_some_and(|m| !m.is_empty());
        let asked_nothing = serde_json::to_string(payload).is_ok_and(|text| text.contains("\"actions\":[]"));
        prop_assert!(
            !results.is_empty() || explained || asked_nothing,
            "an empty answer says why: {}",
            answer
        );
    } else if let Some(failures) = answer.get("batchItemFailures") {
        let ids: Vec<&Value> = payload["Records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| &r["messageId"])
            .collect();
        for failure in failures.as_array().into_iter().flatten() {
            prop_assert!(
                ids.contains(&&failure["itemIdentifier"]),
                "{} names a record of the batch",
                failure
            );
        }
    } else if let Some(sweep) = answer.get("sweep") {
        prop_assert!(answered(sweep), "a sweep succeeds or names its failure: {}", sweep);
    } else if let Some(expiry) = answer.get("expire") {
        prop_assert!(
            expiry["expired"].is_array(),
            "an expiry run lists what ended: {}",
            expiry
        );
    } else {
        prop_assert!(
            answer.get("instanceId").is_some() && (answer.get("state").is_some() || answer.get("cause").is_some())
                || answer.get("deleted").is_some()
                || answer.get("excludeChanged").is_some(),
            "an answer of a known shape: {}",
            answer
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_always_get_an_answer(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        counted("arbitrary bytes", &BYTES);
        let app = app();
        let rt = runtime();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // As a direct payload (a JSON string holding the request is accepted too),
        // and as the body of an SQS record.
        let payload = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::String(text.clone()));
        let answer = rt.block_on(app.invoke(payload.clone()));
        check_answer(&payload, &answer)?;
        let sqs = json!({"Records": [{"messageId": "m-1", "eventSource": "aws:sqs", "body": text}]});
        let answer = rt.block_on(app.invoke(sqs.clone()));
        prop_assert!(answer.as_ref().is_ok_and(|a| a["batchItemFailures"].is_array()), "an SQS batch is always answered");
        check_answer(&sqs, &answer)?;
    }

    #[test]
    fn arbitrary_json_never_panics(payload in any_json()) {
        counted("arbitrary JSON", &JSON);
        let app = app();
        let answer = runtime().block_on(app.invoke(payload.clone()));
        check_answer(&payload, &answer)?;
    }

    #[test]
    fn every_action_of_a_well_typed_request_gets_one_answer_in_order(actions in prop::collection::vec(action(), 0..10)) {
        counted("well-typed requests", &REQUESTS);
        let app = app();
        let request = json!({"driverRequest": {"actions": actions.clone()}});
        let response = runtime().block_on(app.handle(&request));
        let response = serde_json::to_value(&response).expect("serializes");
        let results = response["driverResponse"]["actionResults"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(results.len(), actions.len(), "one answer per action: {}", response);
        for (index, (action, result)) in actions.iter().zip(&results).enumerate() {
            if let Some(id) = action["actionId"].as_str() {
                prop_assert_eq!(result["actionId"].as_str(), Some(id), "answer {} is its action's", index);
            }
            // Each answer is a success or a named failure.
            if result["success"] != true {
                prop_assert_eq!(&result["success"], false);
                prop_assert!(result["errorCode"].as_str().is_some_and(|c| !c.is_empty()), "{}", result);
                prop_assert!(result["errorMessage"].as_str().is_some_and(|m| !m.is_empty()), "{}", result);
            }
        }
    }
}
