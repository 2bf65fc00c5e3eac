//! End to end: the real binary (the one cargo built for this test run), served
//! by `cargo lambda watch` (a local Lambda Runtime API), invoked over HTTP with every file in
//! `events/`, against the emulator holding exactly the ENIs and instance those
//! files name. Asserts on each answer and on EC2, the ledger and the
//! completion events afterwards.

#[path = "../support/mod.rs"]
mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::{manifest_dir, World};

const TARGET: &str = "eni-05fc8d0b34b762305";
const INSTANCE: &str = "i-0f1e2d3c4b5a69788";
const PLAIN_ENIS: [&str; 5] = [
    "eni-008322622e675cd80",
    "eni-0a1b2c3d4e5f60718",
    "eni-0b1c2d3e4f5061728",
    "eni-0c1d2e3f405162738",
    "eni-0f1a2b3c4d5e6f708",
];
const INSTANCE_ENIS: [&str; 2] = ["eni-0d1e2f3a4b5c6d7e8", "eni-0e1f2a3b4c5d6e7f8"];
/// Every file in events/, in the order they make sense as one story.
const STORY: [&str; 11] = [
    "direct-create.json",
    "sqs-batch.json",
    "eventbridge-create.json",
    "ec2-running.json",
    "instance-tag-change.json",
    "eni-attached.json",
    "expire-schedule.json",
    "cloudtrail-session-deleted.json",
    "ec2-terminated.json",
    "direct-remove.json",
    "direct-create-load-balancers.json",
];

/// `cargo lambda watch --only-lambda-apis` (the local Lambda Runtime API and
/// invoke endpoint) and the function binary cargo built for this test run,
/// polling it: the SDK is compiled once, for the tests, not a second time by
/// cargo-lambda's own build. Their output goes to one log file, shown only if
/// the test fails; both are stopped on drop.
struct LambdaServer {
    runtime: Child,
    function: Option<Child>,
    url: String,
    log: std::path::PathBuf,
}

/// What the Runtime API hands the function: cargo-lambda serves one function,
/// named `_`, under `/.rt` when it does not start the function itself.
const FUNCTION_NAME: &str = "_";

impl LambdaServer {
    fn start(world: &World) -> LambdaServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::env::temp_dir().join(format!("traffic-mirroring-e2e-{}-{port}.log", std::process::id()));
        let output = || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log file");
            (Stdio::from(file.try_clone().expect("log file")), Stdio::from(file))
        };
        let (stdout, stderr) = output();
        let mut command = Command::new("cargo");
        command
            .current_dir(manifest_dir())
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .stdout(stdout)
            .stderr(stderr);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let runtime = command
            .spawn()
            .expect("cargo lambda is installed (scripts/common.sh puts it on PATH)");
        let mut server = LambdaServer {
            runtime,
            function: None,
            url: format!("http://127.0.0.1:{port}/2015-03-31/functions/{FUNCTION_NAME}/invocations"),
            log: log.clone(),
        };
        // The function's first poll must find the Runtime API listening.
        let listening = (0..300).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            listening,
            "cargo lambda never listened on port {port}:\n{}",
            server.output()
        );
        // Only what the test passes: the function must not depend on what the test process happens to have.
        let (stdout, stderr) = output();
        let function = Command::new(env!("CARGO_BIN_EXE_traffic-mirroring"))
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt")),
                ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME.to_owned()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "1".to_owned()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
                ("AWS_ENDPOINT_URL", world.emulator.endpoint.clone()),
                ("AWS_REGION", support::REGION.to_owned()),
                ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
                ("TABLE_NAME", world.config.table_name.clone()),
                ("EVENT_BUS_NAME", world.config.event_bus_name.clone()),
                // Closed by default: the deployment opens what it may mirror.
                ("ALLOWED_TARGETS", "*".to_owned()),
                ("ALLOWED_SOURCES", "*".to_owned()),
                ("RUST_LOG", "info".to_owned()),
            ])
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the function binary cargo built for this test");
        server.function = Some(function);
        server
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn invoke(&self, payload: &str) -> Value {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        match http.post(&self.url).body(payload.to_owned()).send().await {
            Ok(response) => {
                let text = response.text().await.expect("answer body");
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            }
            Err(err) => panic!("invoking {}: {err}", self.url),
        }
    }
}

impl Drop for LambdaServer {
    fn drop(&mut self) {
        if let Some(mut function) = self.function.take() {
            let _ = function.kill();
            let _ = function.wait();
        }
        let group = format!("-{}", self.runtime.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.runtime.wait();
        // Captured by the test harness: printed only when the test failed.
        if std::thread::panicking() {
            eprintln!(
                "--- cargo lambda and the function ({}):\n{}",
                self.log.display(),
                self.output()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Makes the ENIs and the instance the sample events name.
async fn cast(world: &World) {
    for id in PLAIN_ENIS.iter().chain([&TARGET]) {
        let made = world.eni().await;
        world.emulator.rename(&made, id).await;
    }
    let instance = world
        .instance("m5.large", &[("traffic-mirroring:target-eni", TARGET)])
        .await;
    let primary = world.primary_eni(&instance).await;
    world.emulator.rename(&instance, INSTANCE).await;
    world.emulator.rename(&primary, INSTANCE_ENIS[0]).await;
    let second = world.eni().await;
    world.emulator.rename(&second, INSTANCE_ENIS[1]).await;
    world.attach(INSTANCE, INSTANCE_ENIS[1], 1).await;
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(format!("{}/events/{name}", manifest_dir())).expect("sample file")
}

fn results(answer: &Value) -> Vec<Value> {
    let list = answer
        .pointer("/driverResponse/actionResults")
        .or_else(|| answer.get("actionResults"));
    list.and_then(Value::as_array).cloned().unwrap_or_default()
}

#[tokio::test]
async fn every_sample_event_through_the_real_binary() {
    let mut files: Vec<String> = std::fs::read_dir(format!("{}/events", manifest_dir()))
        .expect("events/")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    let mut story: Vec<String> = STORY.iter().map(|s| s.to_string()).collect();
    story.sort();
    assert_eq!(files, story, "every sample in events/ is part of this test");

    let world = World::start().await;
    cast(&world).await;
    let lambda = LambdaServer::start(&world);

    let created = lambda.invoke(&sample("direct-create.json")).await;
    let result = &results(&created)[0];
    assert_eq!(result["success"], true, "{created}");
    assert_eq!(result["sessionNumber"], 5);

    let batch = lambda.invoke(&sample("sqs-batch.json")).await;
    assert_eq!(
        batch["batchItemFailures"],
        serde_json::json!([]),
        "the invalid record is consumed: {batch}"
    );

    let request = lambda.invoke(&sample("eventbridge-create.json")).await;
    assert!(results(&request).iter().all(|r| r["success"] == true), "{request}");

    let launched = lambda.invoke(&sample("ec2-running.json")).await;
    let launch_results = results(&launched);
    assert_eq!(launch_results.len(), 2, "both ENIs of the instance: {launched}");
    assert!(launch_results.iter().all(|r| r["success"] == true), "{launched}");
    let state = world.mirror_state().await;
    assert_eq!(
        (state.sessions.len(), state.targets.len()),
        (6, 1),
        "six sources, one shared target"
    );

    // Its tags changed and its second ENI was attached: both already as the
    // policy says, which the function learns from EC2, not from the events.
    for name in ["instance-tag-change.json", "eni-attached.json"] {
        let answer = lambda.invoke(&sample(name)).await;
        assert!(
            answer["skipped"]
                .as_str()
                .is_some_and(|s| s.contains("mirrored as the policy says")),
            "{name}: {answer}"
        );
    }
    assert_eq!(world.mirror_state().await.sessions.len(), 6, "nothing changed");

    // The five-minute expiry run: no mirror here asked for an end.
    let expired = lambda.invoke(&sample("expire-schedule.json")).await;
    assert_eq!(expired["expire"]["expired"], json!([]), "{expired}");
    // Someone deleted a session this deployment never made: seen, nothing done.
    let deleted = lambda.invoke(&sample("cloudtrail-session-deleted.json")).await;
    assert_eq!(
        deleted["deleted"]["by"], "arn:aws:iam::123456789012:user/ops-alice",
        "{deleted}"
    );
    assert_eq!(deleted["actionResults"], json!([]), "{deleted}");
    assert_eq!(world.mirror_state().await.sessions.len(), 6, "nothing changed");

    world
        .ec2
        .terminate_instances()
        .instance_ids(INSTANCE)
        .send()
        .await
        .expect("terminate");
    let terminated = lambda.invoke(&sample("ec2-terminated.json")).await;
    assert_eq!(results(&terminated)[0]["success"], true, "{terminated}");
    let state = world.mirror_state().await;
    assert_eq!(
        (state.sessions.len(), state.filters.len()),
        (4, 4),
        "the instance's filters went with it"
    );

    let removed = lambda.invoke(&sample("direct-remove.json")).await;
    assert_eq!(results(&removed)[0]["success"], true, "{removed}");
    assert_eq!(
        world.mirror_state().await,
        support::MirrorState::default(),
        "nothing of ours is left"
    );

    let ledger = world.ledger().await;
    let creates: Vec<&Value> = ledger.iter().filter(|i| i["kind"] == "create").collect();
    assert_eq!(
        creates.len(),
        6,
        "six creates were recorded (the invalid one never reached the ledger)"
    );
    assert!(creates.iter().all(|i| i["status"] == "removed"), "{ledger:?}");

    let events = world.events(10).await;
    let count = |kind: &str| events.iter().filter(|e| e["detail-type"] == kind).count();
    assert_eq!(
        (
            count("TrafficMirroringCreated"),
            count("TrafficMirroringFailed"),
            count("TrafficMirroringRemoved")
        ),
        (6, 1, 2),
        "{events:?}"
    );

    let balanced = lambda.invoke(&sample("direct-create-load-balancers.json")).await;
    let balanced_results = results(&balanced);
    assert_eq!(balanced_results[0]["success"], true, "{balanced}");
    let target = balanced_results[0]["trafficMirrorTargetId"].as_str().expect("target");
    let described = world
        .ec2
        .describe_traffic_mirror_targets()
        .traffic_mirror_target_ids(target)
        .send()
        .await
        .expect("target");
    assert_eq!(
        described.traffic_mirror_targets()[0].r#type().map(|t| t.as_str()),
        Some("network-load-balancer")
    );
    let dry = &balanced_results[1];
    assert_eq!(
        (dry["success"].clone(), dry["dryRun"].clone()),
        (Value::Bool(true), Value::Bool(true)),
        "{balanced}"
    );
    assert_eq!(dry["plan"]["target"]["kind"], "gateway-load-balancer-endpoint");
    let state = world.mirror_state().await;
    assert_eq!(
        (state.sessions.len(), state.targets.len(), state.filters.len()),
        (1, 1, 1),
        "the dry run made nothing"
    );
}
