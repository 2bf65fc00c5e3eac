//! Metrics in CloudWatch's embedded metric format (EMF): JSON lines written
//! with the function's logs, which CloudWatch Logs turns into metrics, so
//! measuring costs no API call and no latency. One line per action type and
//! outcome (count and latencies) and one per invocation (everything else).
//! Dimensions stay bounded: the deployment, the action type, the outcome,
//! and an organization's member account (those `MEMBER_ACCOUNTS` lists, on
//! a line of their own); never an ENI, an instance or an action id.
//!
//! The adapters count what they do (resources made and deleted, throttled
//! tries and the time spent waiting them out) into the tally their
//! invocation carries (`tallied`), which its line reports.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::contract::{ActionResult, CREATE, REMOVE, SWEEP};

pub const NAMESPACE: &str = "TrafficMirroring";
pub const DIMENSION_DEPLOYMENT: &str = "Deployment";
pub const DIMENSION_ACTION_TYPE: &str = "ActionType";
pub const DIMENSION_OUTCOME: &str = "Outcome";
/// A member account of an organization (bounded by `MEMBER_ACCOUNTS`), on
/// the figures that mean something per account: its coverage and failures.
pub const DIMENSION_ACCOUNT: &str = "Account";

/// Per action type and outcome (`success`, `failure`, `retryable`).
pub const ACTIONS: &str = "Actions";
pub const ACTION_LATENCY: &str = "ActionLatency";

/// What an invocation's line holds besides the counters: SQS records handed
/// back, completion events not published, and the sweep's figures.
pub const RECORDS_HANDED_BACK: &str = "RecordsHandedBack";
pub const UNPUBLISHED_EVENTS: &str = "UnpublishedEvents";
pub const SWEEP_FINDINGS: &str = "SweepFindings";
pub const SWEEP_DEFERRED: &str = "SweepDeferred";
pub const COVERAGE_WANTED: &str = "CoverageWanted";
pub const COVERAGE_MIRRORED: &str = "CoverageMirrored";
pub const COVERAGE_MISSING: &str = "CoverageMissing";
pub const COVERAGE_NOT_DELIVERING: &str = "CoverageNotDelivering";
/// Per account: actions that failed there, and whether its role could not
/// be assumed by the sweep (1) or could (0).
pub const ACCOUNT_ACTIONS_FAILED: &str = "AccountActionsFailed";
pub const ACCOUNT_UNREACHABLE: &str = "AccountUnreachable";

/// What the adapters and the logic count as they go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    ThrottledCalls,
    ThrottleWaitMillis,
    SessionsCreated,
    SessionsDeleted,
    FiltersCreated,
    FiltersDeleted,
    TargetsCreated,
    TargetsDeleted,
    RollbackIncomplete,
    /// Sessions in the account not made by this deployment, to a target it
    /// does not allow (the sweep's finding; an alarm watches it).
    UnapprovedMirrors,
    /// Sessions, filters or targets of ours deleted by someone else.
    TamperedResources,
    /// Someone set or removed `traffic-mirroring:exclude` on an instance.
    ExcludeTagChanges,
    /// Mirrors removed because their end came.
    MirrorsExpired,
}

impl Counter {
    const ALL: [Counter; 13] = [
        Counter::ThrottledCalls,
        Counter::ThrottleWaitMillis,
        Counter::SessionsCreated,
        Counter::SessionsDeleted,
        Counter::FiltersCreated,
        Counter::FiltersDeleted,
        Counter::TargetsCreated,
        Counter::TargetsDeleted,
        Counter::RollbackIncomplete,
        Counter::UnapprovedMirrors,
        Counter::TamperedResources,
        Counter::ExcludeTagChanges,
        Counter::MirrorsExpired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::ThrottledCalls => "ThrottledCalls",
            Counter::ThrottleWaitMillis => "ThrottleWait",
            Counter::SessionsCreated => "SessionsCreated",
            Counter::SessionsDeleted => "SessionsDeleted",
            Counter::FiltersCreated => "FiltersCreated",
            Counter::FiltersDeleted => "FiltersDeleted",
            Counter::TargetsCreated => "TargetsCreated",
            Counter::TargetsDeleted => "TargetsDeleted",
            Counter::RollbackIncomplete => "RollbackIncomplete",
            Counter::UnapprovedMirrors => "UnapprovedMirrors",
            Counter::TamperedResources => "TamperedResources",
            Counter::ExcludeTagChanges => "ExcludeTagChanges",
            Counter::MirrorsExpired => "MirrorsExpired",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Counter::ThrottleWaitMillis => "Milliseconds",
            _ => "Count",
        }
    }
}

/// One invocation's counts; carried with its work (a task-local), so that
/// concurrent invocations in one process (tests, tools) never mix theirs.
#[derive(Default)]
pub struct Tally {
    counts: [AtomicU64; 13],
    actions: Mutex<Vec<ActionFigure>>,
}

impl Tally {
    fn add(&self, counter: Counter, n: u64) {
        self.counts[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn counts(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|c| (*c, self.counts[*c as usize].load(Ordering::Relaxed)))
            .collect()
    }

    pub fn actions(&self) -> Vec<ActionFigure> {
        self.actions.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

tokio::task_local! {
    static TALLY: Arc<Tally>;
}

/// Adds to the current invocation's count (nothing outside an invocation).
pub fn add(counter: Counter, n: u64) {
    let _ = TALLY.try_with(|tally| tally.add(counter, n));
}

/// Records one action's figures in the current invocation's tally.
pub fn action_done(result: &ActionResult, millis: f64) {
    let _ = TALLY.try_with(|tally| {
        if let Ok(mut actions) = tally.actions.lock() {
            actions.push(ActionFigure::of(result, millis));
        }
    });
}

/// Runs one action, and records its figures with its time.
pub async fn timed(action: impl Future<Output = ActionResult>) -> ActionResult {
    let started = std::time::Instant::now();
    let result = action.await;
    action_done(&result, started.elapsed().as_secs_f64() * 1000.0);
    result
}

/// Runs `work` with a tally of its own; returns its output and the tally.
pub async fn tallied<F: Future>(work: F) -> (F::Output, Arc<Tally>) {
    let tally = Arc::new(Tally::default());
    let output = TALLY.scope(tally.clone(), work).await;
    (output, tally)
}

/// Where the lines go: stdout in Lambda (CloudWatch Logs reads them there).
pub trait MetricSink: Send + Sync {
    fn write(&self, line: &str);
}

pub struct Stdout;

impl MetricSink for Stdout {
    fn write(&self, line: &str) {
        println!("{line}");
    }
}

/// Nowhere: a command-line tool's output is for its reader.
pub struct Discard;

impl MetricSink for Discard {
    fn write(&self, _: &str) {}
}

/// The lines, kept (tests, tools).
#[derive(Default)]
pub struct Kept(pub Mutex<Vec<String>>);

impl MetricSink for Kept {
    fn write(&self, line: &str) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line.to_owned());
        }
    }
}

/// One action's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionFigure {
    pub action_type: String,
    pub outcome: &'static str,
    pub millis: f64,
    /// The member account it ran in (`None`: the deployment's own).
    pub account: Option<String>,
}

impl ActionFigure {
    pub fn of(result: &ActionResult, millis: f64) -> Self {
        let outcome = match (result.success, result.retryable) {
            (true, _) => "success",
            (false, true) => "retryable",
            (false, false) => "failure",
        };
        // A caller's own type name would be a dimension value per typo: the
        // cost of a metric grows with its values, so the rest are "Other".
        let action_type = match result.action_type.as_str() {
            known @ (CREATE | REMOVE | SWEEP) => known,
            _ => "Other",
        };
        ActionFigure {
            action_type: action_type.to_owned(),
            outcome,
            millis,
            account: result.account.clone(),
        }
    }
}

/// What one invocation measured, beyond its counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationFigures {
    pub actions: Vec<ActionFigure>,
    pub records_handed_back: u64,
    pub unpublished_events: u64,
    /// The sweep's result, when the invocation was a sweep.
    pub sweep: Option<Value>,
}

/// The EMF documents for one invocation.
pub fn documents(
    deployment: &str,
    figures: &InvocationFigures,
    counts: &[(Counter, u64)],
    timestamp_millis: u64,
) -> Vec<Value> {
    let mut documents = Vec::new();
    let mut groups: Vec<((&str, &str), Vec<f64>)> = Vec::new();
    for action in &figures.actions {
        let key = (action.action_type.as_str(), action.outcome);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, millis)) => millis.push(action.millis),
            None => groups.push((key, vec![action.millis])),
        }
    }
    for ((action_type, outcome), millis) in groups {
        let mut fields = Map::new();
        fields.insert(DIMENSION_DEPLOYMENT.into(), json!(deployment));
        fields.insert(DIMENSION_ACTION_TYPE.into(), json!(action_type));
        fields.insert(DIMENSION_OUTCOME.into(), json!(outcome));
        fields.insert(ACTIONS.into(), json!(millis.len()));
        fields.insert(ACTION_LATENCY.into(), json!(millis));
        documents.push(document(
            fields,
            &[DIMENSION_DEPLOYMENT, DIMENSION_ACTION_TYPE, DIMENSION_OUTCOME],
            &[(ACTIONS, "Count"), (ACTION_LATENCY, "Milliseconds")],
            timestamp_millis,
        ));
    }
    let mut fields = Map::new();
    fields.insert(DIMENSION_DEPLOYMENT.into(), json!(deployment));
    let mut metrics: Vec<(&str, &str)> = Vec::new();
    for &(counter, value) in counts {
        fields.insert(counter.name().into(), json!(value));
        metrics.push((counter.name(), counter.unit()));
    }
    fields.insert(RECORDS_HANDED_BACK.into(), json!(figures.records_handed_back));
    fields.insert(UNPUBLISHED_EVENTS.into(), json!(figures.unpublished_events));
    metrics.push((RECORDS_HANDED_BACK, "Count"));
    metrics.push((UNPUBLISHED_EVENTS, "Count"));
    if let Some(sweep) = &figures.sweep {
        let count = |value: &Value| value.as_u64().or_else(|| value.as_array().map(|a| a.len() as u64));
        let coverage = &sweep["policy"]["coverage"];
        for (name, value) in [
            (SWEEP_FINDINGS, count(&sweep["findings"])),
            (SWEEP_DEFERRED, count(&sweep["deferred"])),
            (COVERAGE_WANTED, count(&coverage["wanted"])),
            (COVERAGE_MIRRORED, count(&coverage["mirrored"])),
            (COVERAGE_MISSING, count(&coverage["missing"])),
            (COVERAGE_NOT_DELIVERING, count(&coverage["notDelivering"])),
        ] {
            if let Some(value) = value {
                fields.insert(name.into(), json!(value));
                metrics.push((name, "Count"));
            }
        }
    }
    documents.push(document(fields, &[DIMENSION_DEPLOYMENT], &metrics, timestamp_millis));
    documents.extend(account_documents(deployment, figures, timestamp_millis));
    documents
}

/// One line per member account with a figure of its own: failed actions,
/// and, from an organization's sweep, its coverage or that it was unreachable.
fn account_documents(deployment: &str, figures: &InvocationFigures, at: u64) -> Vec<Value> {
    let mut per_account: std::collections::BTreeMap<String, Vec<(&str, u64)>> = std::collections::BTreeMap::new();
    for action in figures.actions.iter().filter(|a| a.outcome != "success") {
        if let Some(account) = &action.account {
            let figures = per_account.entry(account.clone()).or_default();
            match figures.iter_mut().find(|(name, _)| *name == ACCOUNT_ACTIONS_FAILED) {
                Some((_, count)) => *count += 1,
                None => figures.push((ACCOUNT_ACTIONS_FAILED, 1)),
            }
        }
    }
    let accounts = figures
        .sweep
        .as_ref()
        .and_then(|s| s.get("accounts"))
        .and_then(Value::as_object);
    for (account, entry) in accounts.into_iter().flatten() {
        let figures = per_account.entry(account.clone()).or_default();
        let unreachable = entry["errorCode"] == crate::domain::account::MEMBER_ACCOUNT_UNREACHABLE;
        figures.push((ACCOUNT_UNREACHABLE, u64::from(unreachable)));
        let coverage = &entry["coverage"];
        for (name, key) in [
            (COVERAGE_WANTED, "wanted"),
            (COVERAGE_MIRRORED, "mirrored"),
            (COVERAGE_MISSING, "missing"),
            (COVERAGE_NOT_DELIVERING, "notDelivering"),
        ] {
            if let Some(value) = coverage[key].as_u64() {
                figures.push((name, value));
            }
        }
    }
    per_account
        .into_iter()
        .map(|(account, figures)| {
            let mut account_fields = Map::new();
            account_fields.insert(DIMENSION_DEPLOYMENT.into(), json!(deployment));
            account_fields.insert(DIMENSION_ACCOUNT.into(), json!(account));
            let mut account_metrics = Vec::new();
            for (name, value) in figures {
                account_fields.insert(name.into(), json!(value));
                account_metrics.push((name, "Count"));
            }
            document(
                account_fields,
                &[DIMENSION_DEPLOYMENT, DIMENSION_ACCOUNT],
                &account_metrics,
                at,
            )
        })
        .collect()
}

fn document(mut fields: Map<String, Value>, dimensions: &[&str], metrics: &[(&str, &str)], at: u64) -> Value {
    let metrics: Vec<Value> = metrics
        .iter()
        .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
        .collect();
    fields.insert(
        "_aws".into(),
        json!({"Timestamp": at, "CloudWatchMetrics": [
            {"Namespace": NAMESPACE, "Dimensions": [dimensions], "Metrics": metrics}
        ]}),
    );
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_accounts_coverage_and_failures_carry_the_account_dimension() {
        let failed = ActionResult {
            action_type: CREATE.into(),
            account: Some("222222222222".into()),
            ..ActionResult::default()
        };
        let succeeded = ActionResult {
            success: true,
            ..failed.clone()
        };
        let figures = InvocationFigures {
            actions: vec![ActionFigure::of(&failed, 1.0), ActionFigure::of(&succeeded, 1.0)],
            sweep: Some(json!({"accounts": {
                "222222222222": {"success": true, "coverage": {"wanted": 4, "mirrored": 3, "missing": 1, "notDelivering": 0}},
                "333333333333": {"success": false, "errorCode": "MemberAccountUnreachable"},
            }})),
            ..InvocationFigures::default()
        };
        let written = documents("table/t", &figures, &[], 0);
        let of = |account: &str| {
            written
                .iter()
                .find(|d| d[DIMENSION_ACCOUNT] == account)
                .cloned()
                .unwrap_or_else(|| panic!("a line for {account}: {written:?}"))
        };
        let member = of("222222222222");
        assert_eq!(member[ACCOUNT_ACTIONS_FAILED], 1, "the success is not counted");
        assert_eq!(member[COVERAGE_MIRRORED], 3);
        assert_eq!(member[ACCOUNT_UNREACHABLE], 0);
        assert_eq!(
            member["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            json!([DIMENSION_DEPLOYMENT, DIMENSION_ACCOUNT])
        );
        assert_eq!(of("333333333333")[ACCOUNT_UNREACHABLE], 1);
        // A deployment of one account writes no such line.
        let single = documents("table/t", &InvocationFigures::default(), &[], 0);
        assert!(single.iter().all(|d| d.get(DIMENSION_ACCOUNT).is_none()));
    }

    #[test]
    fn actions_are_grouped_by_type_and_outcome_with_their_latencies() {
        let ok = ActionResult {
            action_type: "CreateTrafficMirroring".into(),
            success: true,
            ..ActionResult::default()
        };
        let throttled = ActionResult::failure("a", "CreateTrafficMirroring", "RequestLimitExceeded", "x".into(), true);
        let figures = InvocationFigures {
            actions: vec![
                ActionFigure::of(&ok, 10.0),
                ActionFigure::of(&ok, 30.0),
                ActionFigure::of(&throttled, 5.0),
            ],
            records_handed_back: 1,
            ..InvocationFigures::default()
        };
        let docs = documents("stack-1", &figures, &[(Counter::SessionsCreated, 2)], 1_700_000_000_000);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["Outcome"], "success");
        assert_eq!(docs[0]["Actions"], 2);
        assert_eq!(docs[0]["ActionLatency"], json!([10.0, 30.0]));
        assert_eq!(docs[1]["Outcome"], "retryable");
        let meta = &docs[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(meta["Namespace"], NAMESPACE);
        assert_eq!(meta["Dimensions"], json!([["Deployment", "ActionType", "Outcome"]]));
        assert_eq!(docs[2]["RecordsHandedBack"], 1);
        assert_eq!(docs[2]["SessionsCreated"], 2);
        assert_eq!(
            docs[2]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Deployment"]])
        );
    }
}
