//! `mirrorctl`, run as a process against the emulator, with the settings a
//! person would give it (AWS_ENDPOINT_URL, the function's variables).

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::*;

fn mirrorctl(world: &World, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mirrorctl"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", &world.emulator.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TABLE_NAME", &world.config.table_name)
        .env("EVENT_BUS_NAME", &world.config.event_bus_name)
        // Not a terminal: `remove --all` must be told --yes.
        .stdin(Stdio::null())
        .output()
        .expect("mirrorctl runs")
}

fn json_out(output: &Output) -> Value {
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
    let cases: [(&[&str], i32); 6] = [
        (&["remove"], 2),
        (&["remove", "--session", "tms-1", "--instance", "i-1"], 2),
        (&["remove", "--instance", "not-an-instance"], 2),
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
