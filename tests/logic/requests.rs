//! Requests as callers send them: bad input, mixed actions, order of
//! results, and their bounds.

use serde_json::{json, Value};

use crate::world::*;

#[tokio::test]
async fn a_request_of_more_than_a_hundred_actions_touches_nothing() {
    let world = fixture();
    let actions: Vec<Value> = (0..101)
        .map(|n| create(&format!("c{n}"), n + 1, 9, 443)["driverRequest"]["actions"][0].clone())
        .collect();
    let answer = world
        .app
        .invoke(json!({"driverRequest": {"actions": actions}}))
        .await
        .expect("answers");
    assert_eq!(answer["driverResponse"]["actionResults"], json!([]), "{answer}");
    assert!(answer["driverResponse"]["errorMessage"]
        .as_str()
        .is_some_and(|m| m.contains("at most 100")));
    assert_eq!(world.counts(), (0, 0, 0));
    assert_eq!(world.ledger.record("c0"), None);
}

#[tokio::test]
async fn one_bad_action_does_not_stop_the_others_of_its_request() {
    let world = fixture();
    let good = create("good", 1, 9, 443)["driverRequest"]["actions"][0].clone();
    let bad = json!({"actionId": "bad", "type": "CreateTrafficMirroring",
                     "actionParams": {"sourceNicId": "eni-nope", "targetNicId": eni(9)}});
    let answer = world
        .app
        .invoke(json!({"driverRequest": {"actions": [bad, good]}}))
        .await
        .expect("answers");
    let results = &answer["driverResponse"]["actionResults"];
    assert_eq!(results[0]["errorCode"], "ValidationError", "{answer}");
    assert_eq!(results[1]["success"], true, "{answer}");
    assert_eq!(world.counts(), (1, 1, 1));
}
