//! The payloads callers and AWS send the function, and readers of its
//! answers: shared by the emulator's tests (`support`) and the fakes'
//! (`tests/logic`), so both speak the same requests.

#![allow(dead_code)]

use serde_json::{json, Value};

/// The seed document's create request, with our ENIs and action id.
pub fn seed_create(action_id: &str, source: &str, target: &str) -> Value {
    json!({"driverRequest": {"actions": [{
        "actionId": action_id, "type": "CreateTrafficMirroring",
        "actionParams": {"type": "CreateTrafficMirroringParams",
            "sourceNicId": source, "targetNicId": target, "sessionNumber": "5",
            "filterRules": [{"type": "TrafficFilterRule", "direction": "ingress", "protocol": "tcp",
                "sourcePortRange": {"type": "PortRange", "fromPort": "50000", "toPort": "65535"},
                "sourceCidr": "192.168.0.124/24"}]}}]}})
}

/// The seed create with a rule set of its own (`n` picks a destination port),
/// so that it makes its own filter instead of sharing the seed's.
pub fn seed_create_own_rules(action_id: &str, source: &str, target: &str, n: usize) -> Value {
    let mut request = seed_create(action_id, source, target);
    let port = 1000 + n;
    request["driverRequest"]["actions"][0]["actionParams"]["filterRules"][0]["destinationPortRange"] =
        json!({"fromPort": port, "toPort": port});
    request
}

/// A create with no rules (mirror everything) and an optional session number.
pub fn create(action_id: &str, source: &str, target: &str, session_number: Option<&str>) -> Value {
    json!({"driverRequest": {"actions": [create_action(action_id, source, target, session_number)]}})
}

pub fn create_action(action_id: &str, source: &str, target: &str, session_number: Option<&str>) -> Value {
    json!({"actionId": action_id, "type": "CreateTrafficMirroring",
           "actionParams": {"type": "CreateTrafficMirroringParams", "sourceNicId": source,
                            "targetNicId": target, "sessionNumber": session_number.unwrap_or("")}})
}

/// A create naming its target by any field (`targetNetworkLoadBalancerArn`, …)
/// and, optionally, an existing filter instead of rules.
pub fn create_to(action_id: &str, source: &str, field: &str, target: &str, filter_id: Option<&str>) -> Value {
    let mut params = json!({"sourceNicId": source});
    params[field] = json!(target);
    if let Some(filter_id) = filter_id {
        params["trafficMirrorFilterId"] = json!(filter_id);
    }
    json!({"driverRequest": {"actions": [{"actionId": action_id, "type": "CreateTrafficMirroring",
        "actionParams": params}]}})
}

/// A Network Load Balancer ARN; the emulator, like AWS, takes it as given.
pub fn nlb_arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/{name}/50dc6c495c0c9188")
}

/// An EventBridge EC2 instance state-change event, as the rule delivers it.
pub fn state_change(instance_id: &str, state: &str) -> Value {
    json!({"version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
           "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
           "account": "123456789012", "time": "2026-11-23T08:00:00Z", "region": "us-east-1",
           "resources": [format!("arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}")],
           "detail": {"instance-id": instance_id, "state": state}})
}

/// One SQS record of the Lambda event, with `body` as its message.
pub fn sqs_record(message_id: &str, body: &Value) -> Value {
    let body = match body {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    json!({"messageId": message_id, "receiptHandle": "handle", "body": body, "attributes": {},
           "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
           "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:requests", "awsRegion": "us-east-1"})
}

/// A remove as existing callers send it: both fields present, unused ones empty.
pub fn remove(action_id: &str, session_id: &str, target_nic: &str) -> Value {
    json!({"driverRequest": {"actions": [{"actionId": action_id, "type": "RemoveTrafficMirroring",
        "sessionId": session_id, "targetNicId": target_nic, "actionTarget": null}]}})
}

/// The first action result of a response.
pub fn first_result(response: &Value) -> &Value {
    &response["driverResponse"]["actionResults"][0]
}

/// A create's session, filter and target ids, from its whole answer.
pub fn made(response: &Value) -> (String, String, String) {
    let result = first_result(response);
    assert_eq!(result["success"], true, "{response}");
    let id = |field: &str| result[field].as_str().expect(field).to_owned();
    (
        id("sessionId"),
        id("trafficMirrorFilterId"),
        id("trafficMirrorTargetId"),
    )
}
