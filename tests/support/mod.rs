//! Test support: runs the AWS emulator (moto in server mode, extended by
//! `tests/emulator/emulator.py`) and builds, per test, an isolated world in it:
//! a VPC with ENIs, the ledger table created from `infra/template.yaml`, and a
//! completion-event bus routed to a queue the test can read.
//!
//! Shared by the integration tests and the local demo (`examples/local_demo.rs`).
#![allow(dead_code)]

#[path = "payloads.rs"]
mod payloads;
#[allow(unused_imports)] // e2e uses none of them
pub use payloads::*;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use serde_json::{json, Value};
use traffic_mirroring::config::Config;
use traffic_mirroring::handler::App;
pub use traffic_mirroring::mirroring::AllowList;

pub const REGION: &str = "us-east-1";

/// The function's logs during a test go to the test harness's capture, so a
/// test's logs are shown only when it fails (`RUST_LOG` picks what; the
/// function's own INFO lines by default). Once per test process.
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("traffic_mirroring=info"));
        // An example (local_demo) may have installed its own first.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            // Seconds since the test process started: deadlines are easier to follow.
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init();
    });
}
/// The checkout the tests run in. Read when the test runs (cargo sets it for
/// every test process), not baked in at compile time: one target dir serves
/// several clones, and a test binary built in another clone that cargo finds
/// fresh would otherwise read that clone's emulator and samples.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}

/// A running emulator process. Dropping it stops the process; the emulator
/// also exits by itself when this test process dies.
pub struct Emulator {
    pub endpoint: String,
    /// `None` once handed on (to the spares) or stopped.
    child: Mutex<Option<Child>>,
    http: reqwest::Client,
}

/// Emulators whose test has finished, for the next test of this process to
/// reset and use: starting one costs about two seconds of CPU (Python and
/// moto), and the suite's worlds would otherwise pay it seventy times.
static SPARE_EMULATORS: Mutex<Vec<(Child, String)>> = Mutex::new(Vec::new());

impl Emulator {
    /// An emulator for one test world, used by that world alone, so whole-state
    /// snapshots, faults and settings never leak between tests running at
    /// once: a spare one, reset (moto's state and ours, every setting back to
    /// its default), or a new one.
    pub async fn acquire() -> Emulator {
        loop {
            let spare = SPARE_EMULATORS.lock().ok().and_then(|mut spares| spares.pop());
            let Some((child, endpoint)) = spare else {
                break;
            };
            let emulator = Emulator {
                endpoint,
                child: Mutex::new(Some(child)),
                http: reqwest::Client::new(),
            };
            let url = format!("{}/_emulator/reset", emulator.endpoint);
            match emulator.http.post(&url).send().await {
                Ok(response) if response.status().is_success() => return emulator,
                // Dropped below: it goes back to the spares only if it still runs; a
                // reset that failed on a live one means it is unwell, so it is killed.
                _ => emulator.discard(),
            }
        }
        tokio::task::spawn_blocking(Emulator::start)
            .await
            .expect("emulator started")
    }

    fn discard(self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut child| child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts an emulator on a free loopback port.
    pub fn start() -> Emulator {
        let python = std::env::var("EMULATOR_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = format!("{}/tests/emulator/emulator.py", manifest_dir());
        let mut child = Command::new(&python)
            .args([script.as_str(), "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the emulator with {python} {script}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(port) = line.trim().strip_prefix("EMULATOR_READY port=") {
                        break port.parse::<u16>().expect("numeric port");
                    }
                }
                _ => panic!("the emulator exited before it was ready (is moto installed for {python}?)"),
            }
        };
        // Keep draining stdout so the emulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Emulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Mutex::new(Some(child)),
            http: reqwest::Client::new(),
        }
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_emulator/{path}", self.endpoint);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(response.status().is_success(), "{url}: HTTP {}", response.status());
        response.json().await.unwrap_or(Value::Null)
    }

    /// Makes the next `count` calls of `action` fail with `code` (HTTP `status`).
    pub async fn fail_next(&self, action: &str, code: &str, status: u16, count: u32) {
        let fault = json!({"action": action, "code": code, "status": status, "count": count,
                           "message": format!("injected failure of {action}")});
        self.control(reqwest::Method::POST, "faults", Some(fault)).await;
    }

    /// Lets the first `after` calls of `action` pass, then fails the next one.
    pub async fn fail_call_after(&self, action: &str, after: usize, code: &str, status: u16) {
        let fault = json!({"action": action, "code": code, "status": status, "count": 1, "after": after,
                           "message": format!("injected failure of {action}")});
        self.control(reqwest::Method::POST, "faults", Some(fault)).await;
    }

    /// Holds the next call of `action` for `delay_ms` before serving it: a
    /// client that gives up sooner has sent a call that is applied anyway.
    pub async fn hold_next(&self, action: &str, delay_ms: u64) {
        let rule = json!({"action": action, "delay_ms": delay_ms, "count": 1});
        self.control(reqwest::Method::POST, "delays", Some(rule)).await;
    }

    /// Holds the next call of `action` until `release` names it: a race is
    /// ordered by the test, not by sleeps.
    pub async fn hold_until_released(&self, action: &str) {
        let rule = json!({"action": action, "until_released": true, "count": 1});
        self.control(reqwest::Method::POST, "delays", Some(rule)).await;
    }

    /// Waits (10 s at most) until a call of `action` has arrived and is held.
    pub async fn wait_held(&self, action: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let held = self.control(reqwest::Method::GET, "release", None).await;
            if held["held"]
                .as_array()
                .is_some_and(|calls| calls.iter().any(|c| c == action))
            {
                return;
            }
            assert!(Instant::now() < deadline, "no {action} call arrived to be held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets the held calls of `action` go; how many there were.
    pub async fn release(&self, action: &str) -> u64 {
        let released = self
            .control(reqwest::Method::POST, "release", Some(json!({"action": action})))
            .await;
        released["released"].as_u64().unwrap_or_default()
    }

    /// Lets the one held call of `action` go and waits until it has been
    /// applied (served), so what it did is there to be read.
    pub async fn release_and_wait_applied(&self, action: &str) {
        let served = self.calls().await.iter().filter(|c| c["action"] == action).count();
        assert_eq!(self.release(action).await, 1, "one {action} call was held");
        self.wait_served(action, served + 1).await;
    }

    /// Waits (10 s at most) until `count` calls of `action` have been served.
    pub async fn wait_served(&self, action: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.calls().await.iter().filter(|c| c["action"] == action).count() < count {
            assert!(Instant::now() < deadline, "{action} was not served {count} times");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Makes STS refuse to assume this role (as AWS does when the member
    /// stack is missing or its trust names another principal).
    pub async fn refuse_role(&self, role_arn: &str) {
        self.control(reqwest::Method::POST, "refuse-role", Some(json!({"roleArn": role_arn})))
            .await;
    }

    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "faults", None).await;
    }

    pub async fn configure(&self, config: Value) {
        self.control(reqwest::Method::POST, "config", Some(config)).await;
    }

    /// Every AWS call the emulator has served, oldest first.
    pub async fn calls(&self) -> Vec<Value> {
        let log = self.control(reqwest::Method::GET, "calls", None).await;
        log["calls"].as_array().cloned().unwrap_or_default()
    }

    /// Gives an ENI or instance the id a sample event names.
    pub async fn rename(&self, from: &str, to: &str) {
        self.control(reqwest::Method::POST, "rename", Some(json!({"from": from, "to": to})))
            .await;
    }

    /// A token bucket on EC2 calls: `actions` is `"mutating"` or a list of names.
    pub async fn throttle(&self, actions: Value, burst: f64, refill_per_second: f64) {
        let bucket = json!({"actions": actions, "burst": burst, "refill_per_second": refill_per_second});
        self.control(reqwest::Method::POST, "throttle", Some(bucket)).await;
    }

    pub async fn clear_throttle(&self) {
        self.control(reqwest::Method::DELETE, "throttle", None).await;
    }

    pub async fn clear_calls(&self) {
        self.control(reqwest::Method::DELETE, "calls", None).await;
    }

    pub fn sdk_config(&self) -> SdkConfig {
        let credentials = aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "emulator");
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(credentials))
            .build()
    }
}

impl Drop for Emulator {
    /// A running emulator becomes a spare for the next test; the spares exit
    /// by themselves when this test process ends (the emulator watches its parent).
    fn drop(&mut self) {
        let Some(mut child) = self.child.get_mut().ok().and_then(Option::take) else {
            return;
        };
        let running = matches!(child.try_wait(), Ok(None));
        match SPARE_EMULATORS.lock() {
            Ok(mut spares) if running => spares.push((child, std::mem::take(&mut self.endpoint))),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A new running instance in a subnet, by any account's EC2 client.
pub async fn launch(
    ec2: &aws_sdk_ec2::Client,
    subnet: &str,
    instance_type: &str,
    tags: &[(&str, &str)],
) -> aws_sdk_ec2::types::Instance {
    let tags: Vec<_> = tags
        .iter()
        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(*k).value(*v).build())
        .collect();
    let mut run = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(instance_type.into())
        .subnet_id(subnet)
        .min_count(1)
        .max_count(1);
    if !tags.is_empty() {
        run = run.tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                .set_tags(Some(tags))
                .build(),
        );
    }
    let run = run.send().await.expect("instance");
    run.instances().first().cloned().expect("an instance")
}

/// A name no other test in this run uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Everything one test works in.
pub struct World {
    pub emulator: Emulator,
    pub sdk: SdkConfig,
    pub ec2: aws_sdk_ec2::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub config: Config,
    pub queue_url: String,
    pub subnet_id: String,
    pub app: App,
}

/// What exists in EC2's Traffic Mirroring, as sorted ids.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MirrorState {
    pub sessions: BTreeSet<String>,
    pub filters: BTreeSet<String>,
    pub targets: BTreeSet<String>,
}

impl World {
    pub async fn start() -> World {
        capture_logs();
        let emulator = Emulator::acquire().await;
        let sdk = emulator.sdk_config();
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let events = aws_sdk_eventbridge::Client::new(&sdk);
        let mut config = Config::for_table(&unique("ledger")).expect("a table name is all it needs");
        config.event_bus_name = unique("bus");
        // Closed by default: the tests open it, as a deployment must.
        config.allowed_targets = AllowList::Any;
        config.allowed_sources = AllowList::Any;
        create_ledger_table(&dynamodb, &config.table_name).await;
        let queue_url = route_events_to_queue(&events, &sqs, &config).await;
        let vpc = ec2.create_vpc().cidr_block("10.0.0.0/16").send().await.expect("vpc");
        let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_owned();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block("10.0.1.0/24")
            .send()
            .await
            .expect("subnet");
        let subnet_id = subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_owned();
        let app = traffic_mirroring::app::build(&sdk, &config);
        World {
            emulator,
            sdk,
            ec2,
            dynamodb,
            sqs,
            config,
            queue_url,
            subnet_id,
            app,
        }
    }

    /// Another instance of the function, as a second Lambda sandbox would be:
    /// its own SDK clients and no state shared with `self.app` but AWS's.
    pub fn another_app(&self) -> App {
        traffic_mirroring::app::build(&self.sdk, &self.config)
    }

    /// An instance of the function with its configuration changed by `change`.
    pub fn app_with(&self, change: impl FnOnce(&mut Config)) -> App {
        let mut config = self.config.clone();
        change(&mut config);
        traffic_mirroring::app::build(&self.sdk, &config)
    }

    /// A second deployment of the product in the same account and Region:
    /// its own ledger table (and so its own owner value), the same EC2.
    pub async fn second_deployment(&self) -> (App, Config) {
        let mut config = self.config.clone();
        config.table_name = unique("ledger-b");
        config.owner = format!("table/{}", config.table_name);
        create_ledger_table(&self.dynamodb, &config.table_name).await;
        (traffic_mirroring::app::build(&self.sdk, &config), config)
    }

    /// Runs an invocation as Lambda would, with a deadline `seconds` away;
    /// returns its answer and how long it took.
    pub async fn invoke_within(&self, app: &App, seconds: u64, payload: Value) -> (Value, Duration) {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        let answer = traffic_mirroring::deadline::within(deadline, app.invoke(payload)).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) => json!({"invokeError": err.to_string()}),
        };
        (answer, started.elapsed())
    }

    /// Sets a tag on EC2 resources (mirroring ones included), as a person or
    /// an earlier version of the product would have.
    pub async fn tag(&self, ids: &[&str], key: &str, value: &str) {
        let mut call = self
            .ec2
            .create_tags()
            .tags(aws_sdk_ec2::types::Tag::builder().key(key).value(value).build());
        for id in ids {
            call = call.resources(*id);
        }
        call.send().await.expect("tagged");
    }

    /// The value of one tag on a mirroring session, filter or target.
    pub async fn tag_of(&self, id: &str, key: &str) -> Option<String> {
        let tags: Vec<aws_sdk_ec2::types::Tag> = if id.starts_with("tms-") {
            let found = self
                .ec2
                .describe_traffic_mirror_sessions()
                .traffic_mirror_session_ids(id)
                .send()
                .await
                .expect("describe");
            found
                .traffic_mirror_sessions()
                .iter()
                .flat_map(|s| s.tags().to_vec())
                .collect()
        } else if id.starts_with("tmf-") {
            let found = self
                .ec2
                .describe_traffic_mirror_filters()
                .traffic_mirror_filter_ids(id)
                .send()
                .await
                .expect("describe");
            found
                .traffic_mirror_filters()
                .iter()
                .flat_map(|f| f.tags().to_vec())
                .collect()
        } else {
            let found = self
                .ec2
                .describe_traffic_mirror_targets()
                .traffic_mirror_target_ids(id)
                .send()
                .await
                .expect("describe");
            found
                .traffic_mirror_targets()
                .iter()
                .flat_map(|t| t.tags().to_vec())
                .collect()
        };
        tags.iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value().map(str::to_owned))
    }

    /// Deletes every item of the ledger table, as a lost table would.
    pub async fn empty_ledger(&self) {
        for item in self.ledger().await {
            let pk = item["pk"].as_str().expect("pk").to_owned();
            self.dynamodb
                .delete_item()
                .table_name(&self.config.table_name)
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk))
                .send()
                .await
                .expect("deleted");
        }
    }

    /// An instance of the function whose claims expire after `seconds`.
    pub fn app_with_lease(&self, seconds: u64) -> App {
        let mut config = self.config.clone();
        config.claim_lease_seconds = seconds;
        traffic_mirroring::app::build(&self.sdk, &config)
    }

    /// A new network interface in this world's subnet.
    /// The VPC of the world's subnet.
    pub async fn vpc_id(&self) -> String {
        let found = self
            .ec2
            .describe_subnets()
            .subnet_ids(&self.subnet_id)
            .send()
            .await
            .expect("subnet");
        found
            .subnets()
            .first()
            .and_then(|s| s.vpc_id())
            .expect("vpc")
            .to_owned()
    }

    pub async fn eni(&self) -> String {
        self.eni_in(&self.subnet_id).await
    }

    /// A new subnet of this world's VPC in an Availability Zone.
    pub async fn subnet_in(&self, zone: &str, cidr: &str) -> String {
        let subnet = self
            .ec2
            .create_subnet()
            .vpc_id(self.vpc_id().await)
            .cidr_block(cidr)
            .availability_zone(zone)
            .send()
            .await
            .expect("subnet");
        subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_owned()
    }

    /// A new network interface in a subnet.
    pub async fn eni_in(&self, subnet: &str) -> String {
        let eni = self
            .ec2
            .create_network_interface()
            .subnet_id(subnet)
            .send()
            .await
            .expect("eni");
        eni.network_interface()
            .and_then(|e| e.network_interface_id())
            .expect("eni id")
            .to_owned()
    }

    /// A new running instance with these tags; returns its id.
    pub async fn instance(&self, instance_type: &str, tags: &[(&str, &str)]) -> String {
        self.instance_in(&self.subnet_id, instance_type, tags).await
    }

    /// A new running instance in a subnet.
    pub async fn instance_in(&self, subnet: &str, instance_type: &str, tags: &[(&str, &str)]) -> String {
        let instance = launch(&self.ec2, subnet, instance_type, tags).await;
        instance.instance_id().expect("instance id").to_owned()
    }

    pub async fn primary_eni(&self, instance_id: &str) -> String {
        let found = self
            .ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .expect("describe");
        let instance = found
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .expect("instance");
        instance
            .network_interfaces()
            .first()
            .and_then(|n| n.network_interface_id())
            .expect("eni")
            .to_owned()
    }

    pub async fn attach(&self, instance_id: &str, eni: &str, device_index: i32) {
        self.ec2
            .attach_network_interface()
            .instance_id(instance_id)
            .network_interface_id(eni)
            .device_index(device_index)
            .send()
            .await
            .expect("attach");
    }

    /// Terminates an instance in EC2 (the emulator drops its ENIs' sessions, as AWS does).
    pub async fn terminate(&self, instance_id: &str) {
        self.ec2
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .expect("terminated");
    }

    /// The primary ENI of a new instance of `instance_type`.
    pub async fn instance_eni(&self, instance_type: &str) -> String {
        let instance_id = self.instance(instance_type, &[]).await;
        self.primary_eni(&instance_id).await
    }

    /// A mirror target made by someone else (no ownership tag).
    pub async fn foreign_target(&self, eni: &str) -> String {
        let made = self
            .ec2
            .create_traffic_mirror_target()
            .network_interface_id(eni)
            .send()
            .await
            .expect("target");
        made.traffic_mirror_target()
            .and_then(|t| t.traffic_mirror_target_id())
            .expect("target id")
            .to_owned()
    }

    /// A session made by someone else, with its own untagged filter.
    pub async fn foreign_session(&self, source: &str, target_id: &str, number: i32) -> String {
        let filter = self.ec2.create_traffic_mirror_filter().send().await.expect("filter");
        let filter_id = filter
            .traffic_mirror_filter()
            .and_then(|f| f.traffic_mirror_filter_id())
            .expect("filter id");
        let made = self
            .ec2
            .create_traffic_mirror_session()
            .network_interface_id(source)
            .traffic_mirror_target_id(target_id)
            .traffic_mirror_filter_id(filter_id)
            .session_number(number)
            .send()
            .await
            .expect("session");
        made.traffic_mirror_session()
            .and_then(|s| s.traffic_mirror_session_id())
            .expect("session id")
            .to_owned()
    }

    /// The ids of the sessions on a source ENI, read from EC2.
    pub async fn sessions_on(&self, eni: &str) -> Vec<String> {
        let found = self
            .ec2
            .describe_traffic_mirror_sessions()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("network-interface-id")
                    .values(eni)
                    .build(),
            )
            .send()
            .await
            .expect("describe sessions");
        found
            .traffic_mirror_sessions()
            .iter()
            .filter_map(|s| s.traffic_mirror_session_id().map(str::to_owned))
            .collect()
    }

    /// Deletes a session as someone else would, behind the function's back.
    pub async fn delete_session_behind_our_back(&self, session_id: &str) {
        self.ec2
            .delete_traffic_mirror_session()
            .traffic_mirror_session_id(session_id)
            .send()
            .await
            .expect("deleted behind our back");
    }

    /// Invokes the handler as a direct Lambda invoke would, JSON in and out.
    pub async fn invoke(&self, request: &Value) -> Value {
        serde_json::to_value(self.app.handle(request).await).expect("response serializes")
    }

    /// Reads completion events until `expected` arrived or 10 s passed.
    pub async fn events(&self, expected: usize) -> Vec<Value> {
        self.events_within(expected, Duration::from_secs(10)).await
    }

    /// Reads completion events until `expected` arrived or `wait` passed.
    pub async fn events_within(&self, expected: usize, wait: Duration) -> Vec<Value> {
        let mut events = Vec::new();
        let deadline = Instant::now() + wait;
        while events.len() < expected && Instant::now() < deadline {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            for message in received.messages() {
                let body = message.body().unwrap_or_default();
                events.push(serde_json::from_str(body).expect("event JSON"));
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                }
            }
            if received.messages().is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        events
    }

    /// Sessions, filters and targets in EC2, read through every page.
    pub async fn mirror_state(&self) -> MirrorState {
        self.resources_where(None).await
    }

    /// Every ledger item, with attributes flattened to JSON.
    pub async fn ledger(&self) -> Vec<Value> {
        let scan = self
            .dynamodb
            .scan()
            .table_name(&self.config.table_name)
            .send()
            .await
            .expect("scan");
        scan.items().iter().map(item_json).collect()
    }

    /// Where EC2 and the ledger disagree, in words; empty when they agree:
    /// every session, filter and target of ours in EC2 is named by a ledger
    /// record that may hold resources (or, for a target, by its claim item);
    /// every active record's session, filter and target exist; every claim is
    /// held by such a record.
    pub async fn disagreements(&self) -> Vec<String> {
        let state = self.mirror_state().await;
        let ledger = self.ledger().await;
        let holding = |item: &&Value| {
            item["pk"].as_str().is_some_and(|pk| pk.starts_with("action#"))
                && matches!(
                    item["status"].as_str(),
                    Some("pending" | "active" | "rollback_incomplete" | "removing")
                )
        };
        let named = |field: &str| -> BTreeSet<String> {
            ledger
                .iter()
                .filter(holding)
                .filter_map(|item| item[field].as_str().map(str::to_owned))
                .collect()
        };
        let holders: BTreeSet<String> = ledger
            .iter()
            .filter(holding)
            .filter_map(|item| item["actionId"].as_str().map(str::to_owned))
            .collect();
        // Shared targets and filters are named by their claim items.
        let claimed = |prefix: &str| -> BTreeSet<String> {
            ledger
                .iter()
                .filter(|item| item["pk"].as_str().is_some_and(|pk| pk.starts_with(prefix)))
                .filter_map(|item| item["resourceId"].as_str().map(str::to_owned))
                .collect()
        };
        let claimed_targets = claimed("target#");
        let claimed_filters = claimed("filter#");
        let mut problems = Vec::new();
        let ours = self.our_resources().await;
        for id in &ours.sessions {
            if !named("sessionId").contains(id) {
                problems.push(format!("session {id} is in EC2 but not in the ledger"));
            }
        }
        for id in &ours.filters {
            if !named("filterId").contains(id) && !claimed_filters.contains(id) {
                problems.push(format!("filter {id} is in EC2 but not in the ledger"));
            }
        }
        for id in &ours.targets {
            if !named("targetId").contains(id) && !claimed_targets.contains(id) {
                problems.push(format!("target {id} is in EC2 but not in the ledger"));
            }
        }
        for item in ledger.iter().filter(|i| i["status"] == "active") {
            let action = item["actionId"].as_str().unwrap_or_default();
            for (field, present) in [
                ("sessionId", &state.sessions),
                ("filterId", &state.filters),
                ("targetId", &state.targets),
            ] {
                if let Some(id) = item[field].as_str() {
                    if !present.contains(id) {
                        problems.push(format!("active action {action} names {id}, which EC2 does not have"));
                    }
                }
            }
        }
        for item in &ledger {
            let pk = item["pk"].as_str().unwrap_or_default();
            if pk.starts_with("source#") {
                let object = item.as_object().cloned().unwrap_or_default();
                for (name, holder) in object {
                    let is_number = name.strip_prefix('n').is_some_and(|n| n.parse::<u16>().is_ok());
                    if is_number && !holder.as_str().is_some_and(|h| holders.contains(h)) {
                        problems.push(format!("{pk} {name} is claimed by {holder}, which holds nothing"));
                    }
                }
            }
            if pk.starts_with("target#") || pk.starts_with("filter#") {
                for user in item["users"].as_array().into_iter().flatten() {
                    if !user.as_str().is_some_and(|u| holders.contains(u)) {
                        problems.push(format!("{pk} counts {user} as a user, which holds nothing"));
                    }
                }
            }
        }
        problems
    }

    /// Sessions, filters and targets carrying our ownership tag.
    pub async fn our_resources(&self) -> MirrorState {
        let ours = aws_sdk_ec2::types::Filter::builder()
            .name("tag:traffic-mirroring:managed-by")
            .values(&self.config.owner)
            .build();
        self.resources_where(Some(ours)).await
    }

    /// Every session, filter and target (matching `filter`), all pages.
    async fn resources_where(&self, filter: Option<aws_sdk_ec2::types::Filter>) -> MirrorState {
        let filters: Option<Vec<_>> = filter.map(|f| vec![f]);
        let sessions = self
            .ec2
            .describe_traffic_mirror_sessions()
            .set_filters(filters.clone())
            .into_paginator()
            .items()
            .send();
        let mirror_filters = self
            .ec2
            .describe_traffic_mirror_filters()
            .set_filters(filters.clone())
            .into_paginator()
            .items()
            .send();
        let targets = self
            .ec2
            .describe_traffic_mirror_targets()
            .set_filters(filters)
            .into_paginator()
            .items()
            .send();
        let (sessions, mirror_filters, targets) = (
            sessions.collect::<Result<Vec<_>, _>>().await.expect("sessions"),
            mirror_filters.collect::<Result<Vec<_>, _>>().await.expect("filters"),
            targets.collect::<Result<Vec<_>, _>>().await.expect("targets"),
        );
        MirrorState {
            sessions: sessions
                .iter()
                .filter_map(|s| s.traffic_mirror_session_id().map(str::to_owned))
                .collect(),
            filters: mirror_filters
                .iter()
                .filter_map(|f| f.traffic_mirror_filter_id().map(str::to_owned))
                .collect(),
            targets: targets
                .iter()
                .filter_map(|t| t.traffic_mirror_target_id().map(str::to_owned))
                .collect(),
        }
    }

    /// Runs the reconcile sweep the way its schedule does, and returns its answer.
    pub async fn sweep(&self, dry_run: bool) -> Value {
        self.app
            .invoke(json!({"sweep": {"dryRun": dry_run}}))
            .await
            .expect("a sweep answers")
    }

    pub async fn ledger_item(&self, action_id: &str) -> Option<Value> {
        self.ledger()
            .await
            .into_iter()
            .find(|item| item["actionId"] == action_id)
    }
}

fn item_json(item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    fn one(value: &A) -> Value {
        match value {
            A::S(s) => json!(s),
            A::N(n) => n.parse::<f64>().map(|f| json!(f)).unwrap_or(json!(n)),
            A::Bool(b) => json!(b),
            A::L(list) => Value::Array(list.iter().map(one).collect()),
            A::Ss(set) => json!(set),
            A::Ns(set) => Value::Array(
                set.iter()
                    .map(|n| json!(n.parse::<f64>().unwrap_or_default()))
                    .collect(),
            ),
            _ => Value::Null,
        }
    }
    Value::Object(item.iter().map(|(k, v)| (k.clone(), one(v))).collect())
}

/// Creates the ledger table from its one definition, `infra/template.yaml`.
pub async fn create_ledger_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) {
    let template = std::fs::read_to_string(format!("{}/infra/template.yaml", manifest_dir())).expect("template");
    let template: serde_yaml::Value = serde_yaml::from_str(&template).expect("template is YAML");
    let table = &template["Resources"]["LedgerTable"]["Properties"];
    let key_schema = |schema: &serde_yaml::Value| -> Vec<KeySchemaElement> {
        schema
            .as_sequence()
            .expect("KeySchema list")
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(k["AttributeName"].as_str().expect("name"))
                    .key_type(KeyType::from(k["KeyType"].as_str().expect("type")))
                    .build()
                    .expect("key")
            })
            .collect()
    };
    let mut request = dynamodb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(table["BillingMode"].as_str().expect("billing mode")))
        .set_key_schema(Some(key_schema(&table["KeySchema"])));
    for attribute in table["AttributeDefinitions"].as_sequence().expect("attributes") {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute["AttributeName"].as_str().expect("name"))
                .attribute_type(ScalarAttributeType::from(
                    attribute["AttributeType"].as_str().expect("type"),
                ))
                .build()
                .expect("attribute"),
        );
    }
    for index in table["GlobalSecondaryIndexes"].as_sequence().into_iter().flatten() {
        let projection = index["Projection"]["ProjectionType"].as_str().expect("projection");
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index["IndexName"].as_str().expect("index name"))
                .set_key_schema(Some(key_schema(&index["KeySchema"])))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection))
                        .build(),
                )
                .build()
                .expect("index"),
        );
    }
    request.send().await.expect("create the ledger table");
}

/// A bus whose completion events land in a queue, so tests read what was
/// really published rather than what the code meant to publish.
async fn route_events_to_queue(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    config: &Config,
) -> String {
    events
        .create_event_bus()
        .name(&config.event_bus_name)
        .send()
        .await
        .expect("bus");
    let queue = sqs
        .create_queue()
        .queue_name(unique("completions"))
        .send()
        .await
        .expect("queue");
    let queue_url = queue.queue_url().expect("queue url").to_owned();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    let rule = unique("completions");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(&config.event_bus_name)
        .event_pattern(json!({"source": [config.event_source]}).to_string())
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&config.event_bus_name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("targets");
    queue_url
}
