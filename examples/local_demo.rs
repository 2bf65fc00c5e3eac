//! The local demo behind `bash scripts/demo.sh`: the seed's create request and
//! its removal, run by the real handler against the AWS emulator.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::Value;
use support::{first_result, remove, seed_create, World};

fn show(title: &str, value: &Value) {
    println!(
        "\n== {title}\n{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

#[tokio::main]
async fn main() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    println!(
        "emulator at {}; source ENI {source}, target ENI {target}",
        world.emulator.endpoint
    );
    println!(
        "ledger table {} (from infra/template.yaml), event bus {}",
        world.config.table_name, world.config.event_bus_name
    );

    let request = seed_create("41f206a1-a6c0-4603-90f7-6492cd0fb00d", &source, &target);
    show("driverRequest (the seed's CreateTrafficMirroring)", &request);
    let response = world.invoke(&request).await;
    show("driverResponse", &response);
    for event in world.events(1).await {
        show("completion event", &event);
    }

    let session_id = first_result(&response)["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let request = remove("514d18dc-cd6c-4725-ac60-9e281d0b8e27", &session_id, "");
    show("driverRequest (RemoveTrafficMirroring)", &request);
    let response = world.invoke(&request).await;
    show("driverResponse", &response);
    for event in world.events(1).await {
        show("completion event", &event);
    }
    let state = world.mirror_state().await;
    println!(
        "\nleft in EC2: {} sessions, {} filters, {} targets",
        state.sessions.len(),
        state.filters.len(),
        state.targets.len()
    );
}
