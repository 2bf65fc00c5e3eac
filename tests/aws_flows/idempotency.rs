use crate::support::*;

fn mutating(calls: &[serde_json::Value]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| c["action"].as_str())
        .filter(|a| a.starts_with("Create") || a.starts_with("Delete"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn repeating_a_succeeded_create_returns_its_result_and_changes_nothing() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let first = world.invoke(&seed_create("again-1", &source, &target)).await;
    assert_eq!(first_result(&first)["success"], true);
    let state = world.mirror_state().await;
    world.emulator.clear_calls().await;

    let second = world.invoke(&seed_create("again-1", &source, &target)).await;

    assert_eq!(second, first, "the recorded result, unchanged");
    assert_eq!(world.mirror_state().await, state);
    assert_eq!(
        mutating(&world.emulator.calls().await),
        Vec::<String>::new(),
        "no EC2 change was even attempted"
    );
}

#[tokio::test]
async fn repeating_a_remove_returns_its_recorded_result() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let created = world.invoke(&create("again-2", &source, &target, None)).await;
    let session = first_result(&created)["sessionId"].as_str().expect("id").to_owned();
    let first = world.invoke(&remove("again-rm", &session, "")).await;
    world.emulator.clear_calls().await;
    let second = world.invoke(&remove("again-rm", &session, "")).await;
    assert_eq!(second, first);
    assert_eq!(mutating(&world.emulator.calls().await), Vec::<String>::new());
}

#[tokio::test]
async fn the_same_action_twice_in_one_request_creates_one_session() {
    let world = World::start().await;
    let (source, target) = (world.eni().await, world.eni().await);
    let action = create_action("dup-1", &source, &target, None);
    let request = serde_json::json!({"driverRequest": {"actions": [action.clone(), action]}});
    let response = world.invoke(&request).await;
    let results = response["driverResponse"]["actionResults"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["sessionId"], results[1]["sessionId"], "{response}");
    assert_eq!(world.mirror_state().await.sessions.len(), 1);
}
