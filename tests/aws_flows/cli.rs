//! `mirrorctl`, run as a process against the emulator, with the settings a
//! person would give it (AWS_ENDPOINT_URL, the function's variables).

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::*;

/// `mirrorctl` with AWS's settings only: where the emulator is, who calls.
pub(crate) fn bare(world: &World) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorctl"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", &world.emulator.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Not a terminal: `remove --all` must be told --yes.
        .stdin(Stdio::null());
    command
}

/// `mirrorctl` with the deployment's settings in the shell, as the function has them.
fn mirrorctl(world: &World, args: &[&str]) -> Output {
    bare(world)
        .args(args)
        .env("TABLE_NAME", &world.config.table_name)
        .env("EVENT_BUS_NAME", &world.config.event_bus_name)
        .env("OWNER", &world.config.owner)
        .env("ALLOWED_TARGETS", "*")
        .env("ALLOWED_SOURCES", "*")
        .output()
        .expect("mirrorctl runs")
}

/// A stack holding a function named as the template names it, with the
/// deployment's settings as its environment (moto runs no SAM transform:
/// a plain function stands in for the template's).
async fn deployed_stack(world: &World, variables: Value) -> String {
    let stack = unique("mirroring-stack");
    let template = serde_json::json!({"Resources": {
        "FunctionRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
        "TrafficMirroringFunction": {"Type": "AWS::Lambda::Function", "Properties": {
            "Runtime": "provided.al2023", "Handler": "bootstrap", "Code": {"ZipFile": "#!/bin/sh\n"},
            "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
            "Environment": {"Variables": variables}}}}});
    aws_sdk_cloudformation::Client::new(&world.sdk)
        .create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
        .send()
        .await
        .expect("stack");
    stack
}

pub(crate) fn json_out(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// Asserts that mirrorctl exited 0, showing its stderr if not.
pub(crate) fn assert_succeeded(output: &Output) {
    assert_eq!(code(output), 0, "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn list_shows_what_a_create_made_and_show_finds_it_by_any_id() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let made = mirrorctl(&world, &["create", "--source", &source, "--target", &target, "--json"]);
    assert_eq!(code(&made), 0, "{}", String::from_utf8_lossy(&made.stderr));
    let session = json_out(&made)[0]["sessionId"].as_str().expect("a session").to_owned();

    let listed = mirrorctl(&world, &["list", "--json"]);
    assert_eq!(code(&listed), 0);
    let rows = json_out(&listed);
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["sessionId"], session.as_str());
    assert_eq!(rows[0]["sourceEni"], source.as_str());
    assert_eq!(rows[0]["target"], target.as_str());
    assert_eq!(rows[0]["status"], "active");

    let table = mirrorctl(&world, &["list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("SESSION") && text.contains(&session) && text.contains("1 mirror"),
        "{text}"
    );

    for id in [&session, &source, &target] {
        let shown = mirrorctl(&world, &["show", id, "--json"]);
        assert_eq!(json_out(&shown)[0]["sessionId"], session.as_str(), "show {id}");
    }
    assert_eq!(code(&mirrorctl(&world, &["show", "eni-00000000000000000"])), 1);
}

#[tokio::test]
async fn remove_by_instance_removes_only_that_instances_mirrors() {
    let world = World::start().await;
    let target = world.eni().await;
    let (one, two) = (
        world
            .instance("m5.large", &[("traffic-mirroring:target", &target)])
            .await,
        world
            .instance("m5.large", &[("traffic-mirroring:target", &target)])
            .await,
    );
    for instance in [&one, &two] {
        world
            .app
            .invoke(state_change(instance, "running"))
            .await
            .expect("launched");
    }
    assert_eq!(world.mirror_state().await.sessions.len(), 2);
    let removed = mirrorctl(&world, &["remove", "--instance", &one, "--json"]);
    assert_eq!(code(&removed), 0, "{}", String::from_utf8_lossy(&removed.stderr));
    let left = json_out(&mirrorctl(&world, &["list", "--json"]));
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
    assert_eq!(left[0]["instanceId"], two.as_str());
    assert_eq!(world.disagreements().await, Vec::<String>::new());
}

#[tokio::test]
async fn remove_all_leaves_nothing_of_ours_and_touches_nothing_foreign() {
    let world = World::start().await;
    let target = world.eni().await;
    for n in 0..3 {
        let source = world.eni().await;
        let made = world.invoke(&seed_create(&format!("all-{n}"), &source, &target)).await;
        assert_eq!(first_result(&made)["success"], true, "{made}");
    }
    let (foreign_source, foreign_eni) = (world.eni().await, world.eni().await);
    let foreign_target = world.foreign_target(&foreign_eni).await;
    let foreign = world.foreign_session(&foreign_source, &foreign_target, 1).await;

    // Not on a terminal and no --yes: refused, nothing changed.
    let refused = mirrorctl(&world, &["remove", "--all"]);
    assert_eq!(code(&refused), 4);
    assert_eq!(world.our_resources().await.sessions.len(), 3);

    let removed = mirrorctl(&world, &["remove", "--all", "--yes", "--json"]);
    assert_eq!(code(&removed), 0, "{}", String::from_utf8_lossy(&removed.stderr));
    assert_eq!(json_out(&removed).as_array().map(Vec::len), Some(3));
    assert_eq!(
        world.our_resources().await,
        MirrorState::default(),
        "nothing of ours is left"
    );
    let state = world.mirror_state().await;
    assert!(state.sessions.contains(&foreign) && state.targets.contains(&foreign_target));
    let again = mirrorctl(&world, &["remove", "--all", "--yes"]);
    assert_eq!(code(&again), 0, "nothing left to remove is done");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_an_exit_code_and_changes_nothing() {
    let world = World::start().await;
    let target = world.eni().await;
    let cases: [(&[&str], i32); 7] = [
        (&["remove"], 2),
        (&["remove", "--session", "tms-1", "--instance", "i-1"], 2),
        (&["remove", "--instance", "not-an-instance"], 2),
        (&["remove", "--target", "eni-zz"], 2),
        (&["create", "--source", "eni-nope", "--target", &target], 2),
        (&["frobnicate"], 2),
        (&["create", "--source", "eni-0123456789abcdef0"], 2),
    ];
    for (args, expected) in cases {
        let output = mirrorctl(&world, args);
        assert_eq!(
            code(&output),
            expected,
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let said = String::from_utf8_lossy(&output.stderr).to_string() + &String::from_utf8_lossy(&output.stdout);
        assert!(!said.trim().is_empty(), "{args:?} says why");
    }
    let unconfigured = Command::new(env!("CARGO_BIN_EXE_mirrorctl"))
        .args(["list"])
        .env_clear()
        .output()
        .expect("runs");
    assert_eq!(code(&unconfigured), 3);
    assert!(String::from_utf8_lossy(&unconfigured.stderr).contains("TABLE_NAME"));
    assert_eq!(world.mirror_state().await, MirrorState::default());
}

#[tokio::test]
async fn with_a_stack_it_acts_under_the_deployments_own_settings_and_names_who_asked() {
    let world = World::start().await;
    let (source, allowed, forbidden) = (world.eni().await, world.eni().await, world.eni().await);
    let stack = deployed_stack(
        &world,
        serde_json::json!({"TABLE_NAME": world.config.table_name, "EVENT_BUS_NAME": world.config.event_bus_name,
                           "OWNER": world.config.owner, "ALLOWED_TARGETS": allowed, "ALLOWED_SOURCES": "*"}),
    )
    .await;
    let run = |args: &[&str]| bare(&world).args(args).output().expect("mirrorctl runs");

    // The stack's allow-list holds, whatever the shell would say.
    let refused = run(&[
        "--stack", &stack, "create", "--source", &source, "--target", &forbidden, "--json",
    ]);
    assert_eq!(code(&refused), 1, "{}", String::from_utf8_lossy(&refused.stderr));
    assert_eq!(json_out(&refused)[0]["errorCode"], "MirroringNotAllowed");

    let made = run(&[
        "--stack", &stack, "create", "--source", &source, "--target", &allowed, "--reason", "INC-1234", "--for", "4h",
        "--json",
    ]);
    assert_eq!(code(&made), 0, "{}", String::from_utf8_lossy(&made.stderr));
    let result = &json_out(&made)[0];
    assert_eq!(
        result["requestedBy"], "arn:aws:sts::123456789012:user/moto",
        "STS says who: {result}"
    );
    assert_eq!(result["requestedByBasis"], "sts-caller");
    assert!(result["expiresAt"].is_string(), "{result}");

    let listed = json_out(&run(&["--stack", &stack, "list", "--json"]));
    assert_eq!(listed[0]["reason"], "INC-1234", "{listed}");
    assert_eq!(listed[0]["requestedBy"], "arn:aws:sts::123456789012:user/moto");
    assert_eq!(listed[0]["expiresAt"], result["expiresAt"]);

    // MIRRORCTL_STACK says the same; a sweep that changes things asks first.
    let sweep = bare(&world)
        .env("MIRRORCTL_STACK", &stack)
        .args(["sweep"])
        .output()
        .expect("runs");
    assert_eq!(code(&sweep), 4, "off a terminal a sweep needs --yes");
    let said = String::from_utf8_lossy(&sweep.stderr);
    assert!(
        said.contains("account 123456789012") && said.contains(&world.config.owner),
        "{said}"
    );
}

#[tokio::test]
async fn without_the_deployments_owner_it_changes_nothing() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let ownerless = bare(&world)
        .args(["create", "--source", &source, "--target", &target])
        .env("TABLE_NAME", &world.config.table_name)
        .env("ALLOWED_TARGETS", "*")
        .env("ALLOWED_SOURCES", "*")
        .output()
        .expect("runs");
    assert_eq!(code(&ownerless), 3);
    assert!(String::from_utf8_lossy(&ownerless.stderr).contains("OWNER"));
    assert_eq!(world.mirror_state().await, MirrorState::default());
    let stack = deployed_stack(&world, serde_json::json!({"TABLE_NAME": world.config.table_name})).await;
    let from_stack = bare(&world)
        .args(["--stack", &stack, "remove", "--all", "--yes"])
        .output()
        .expect("runs");
    assert_eq!(code(&from_stack), 3, "{}", String::from_utf8_lossy(&from_stack.stderr));
    // Reading needs no owner.
    assert_eq!(
        code(&bare(&world).args(["--stack", &stack, "list"]).output().expect("runs")),
        0
    );
}

#[tokio::test]
async fn coverage_reads_the_sweeps_typed_report_and_changes_nothing() {
    let world = World::start().await;
    let target = world.eni().await;
    let instance = world
        .instance("m5.large", &[("traffic-mirroring:target", &target)])
        .await;
    let as_json = mirrorctl(&world, &["coverage", "--json"]);
    assert_eq!(code(&as_json), 0, "{}", String::from_utf8_lossy(&as_json.stderr));
    let coverage = json_out(&as_json);
    assert_eq!(
        (coverage["wanted"].clone(), coverage["mirrored"].clone()),
        (1.into(), 0.into()),
        "{coverage}"
    );
    assert_eq!(coverage["targets"][0]["missing"][0]["instanceId"], instance.as_str());
    let text = mirrorctl(&world, &["coverage"]);
    let said = String::from_utf8_lossy(&text.stdout);
    assert!(said.contains("1 wanted, 0 mirrored, 1 missing"), "{said}");
    assert_eq!(
        world.mirror_state().await,
        MirrorState::default(),
        "a dry run makes nothing"
    );
}
