//! The fakes' world: a deployment of the function on in-memory ports, and the
//! payloads callers and AWS send it, mirroring `support`'s `World` and
//! builders on the emulator side.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

pub(crate) use crate::payloads::{
    create as create_bare, create_action, create_to, first_result, made, nlb_arn, remove, seed_create, sqs_record,
    state_change,
};
use traffic_mirroring::contract::{detail_type, ActionResult};
use traffic_mirroring::domain::Pools;
use traffic_mirroring::handler::App;
use traffic_mirroring::mirroring::launch::LaunchPolicy;
use traffic_mirroring::mirroring::{Allowed, Controls, FleetSettings, Mirroring};

pub(crate) use crate::fakes::{MemoryBus, MemoryEc2, MemoryLedger, DEFAULT_SUBNET, DEFAULT_VPC};

/// The owner value of the default deployment (its table's name).
pub(crate) const OWNER: &str = "table/logic";
pub(crate) const TARGET_TAG: &str = "traffic-mirroring:target";
pub(crate) const TARGET_ENI_TAG: &str = "traffic-mirroring:target-eni";
pub(crate) const EXCLUDE_TAG: &str = "traffic-mirroring:exclude";
pub(crate) const MANAGED_BY: &str = "traffic-mirroring:managed-by";

pub(crate) struct Fixture {
    pub(crate) ec2: Arc<MemoryEc2>,
    pub(crate) ledger: Arc<MemoryLedger>,
    pub(crate) bus: Arc<MemoryBus>,
    pub(crate) app: App,
}

/// How a deployment is set up; `Default` is a deployment open to anything.
pub(crate) struct Setup {
    pub(crate) allowed: Allowed,
    pub(crate) controls: Controls,
    /// Default targets by subnet or VPC id.
    pub(crate) default_targets: BTreeMap<String, String>,
    pub(crate) owner: String,
    /// `TARGET_POOLS`.
    pub(crate) pools: Pools,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            allowed: Allowed::anything(),
            controls: Controls::default(),
            default_targets: BTreeMap::new(),
            owner: OWNER.into(),
            pools: Pools::new(),
        }
    }
}

pub(crate) fn fixture() -> Fixture {
    fixture_set_up(Setup::default())
}

/// A deployment's fixture built with its own rules (the default fixture allows anything).
pub(crate) fn fixture_with(allowed: Allowed, controls: Controls) -> Fixture {
    fixture_set_up(Setup {
        allowed,
        controls,
        ..Setup::default()
    })
}

pub(crate) fn fixture_set_up(setup: Setup) -> Fixture {
    deployment_on(Arc::new(MemoryEc2::default()), setup)
}

/// A deployment on `ec2` with a ledger and a bus of its own: a second one
/// in the same account and Region shares EC2 and nothing else.
pub(crate) fn deployment_on(ec2: Arc<MemoryEc2>, setup: Setup) -> Fixture {
    let (ledger, bus) = (Arc::new(MemoryLedger::default()), Arc::new(MemoryBus::default()));
    let mirroring = Mirroring::new(ec2.clone(), ledger.clone(), bus.clone(), setup.owner)
        .with_allowed(setup.allowed)
        .with_controls(setup.controls)
        .with_fleet(FleetSettings {
            pools: setup.pools,
            ..FleetSettings::default()
        });
    let app = App::new(mirroring).with_launch_policy(LaunchPolicy {
        default_targets: setup.default_targets,
    });
    Fixture { ec2, ledger, bus, app }
}

impl Fixture {
    /// The first action result of a driver request, through `App::invoke`.
    pub(crate) async fn run(&self, payload: Value) -> Value {
        let answer = self.app.invoke(payload).await.expect("an answer");
        answer["driverResponse"]["actionResults"][0].clone()
    }

    /// Another deployment of this fixture's function, as the same process
    /// would run it with other settings: the same EC2, ledger and bus.
    pub(crate) fn app_with(&self, setup: Setup) -> App {
        let mirroring = Mirroring::new(self.ec2.clone(), self.ledger.clone(), self.bus.clone(), setup.owner)
            .with_allowed(setup.allowed)
            .with_controls(setup.controls)
            .with_fleet(FleetSettings {
                pools: setup.pools,
                ..FleetSettings::default()
            });
        App::new(mirroring).with_launch_policy(LaunchPolicy {
            default_targets: setup.default_targets,
        })
    }

    /// A direct invoke's whole answer, as `support::World::invoke` gives it.
    pub(crate) async fn handle(&self, payload: &Value) -> Value {
        serde_json::to_value(self.app.handle(payload).await).expect("response serializes")
    }

    /// Any event or request, through `App::invoke`.
    pub(crate) async fn invoke(&self, payload: Value) -> Value {
        self.app.invoke(payload).await.expect("answers")
    }

    pub(crate) async fn sweep(&self, dry_run: bool) -> Value {
        self.invoke(json!({"sweep": {"dryRun": dry_run}})).await
    }

    /// How many sessions, filters and targets EC2 has.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let (sessions, filters, targets) = self.ec2.resources();
        (sessions.len(), filters.len(), targets.len())
    }

    pub(crate) fn events(&self) -> Vec<ActionResult> {
        self.bus.events.lock().expect("events").clone()
    }

    /// The completion events of one detail-type, as EventBridge would carry them.
    pub(crate) fn events_of_type(&self, wanted: &str) -> Vec<ActionResult> {
        self.events().into_iter().filter(|e| detail_type(e) == wanted).collect()
    }
}

pub(crate) fn eni(n: u32) -> String {
    format!("eni-{n:017x}")
}

/// A create with one TCP rule to `port`.
pub(crate) fn create(action_id: &str, source: u32, target: u32, port: u16) -> Value {
    json!({"driverRequest": {"actions": [{
        "actionId": action_id, "type": "CreateTrafficMirroring",
        "actionParams": {"type": "CreateTrafficMirroringParams",
            "sourceNicId": eni(source), "targetNicId": eni(target),
            "filterRules": [{"type": "TrafficFilterRule", "direction": "ingress", "protocol": "tcp",
                "destinationPortRange": {"fromPort": port, "toPort": port},
                "sourceCidr": "10.0.0.0/16"}]}}]}})
}

pub(crate) fn create_numbered(action_id: &str, source: u32, target: u32, number: u16) -> Value {
    let mut request = create(action_id, source, target, 443);
    request["driverRequest"]["actions"][0]["actionParams"]["sessionNumber"] = json!(number);
    request
}

/// A create with its params extended by `extra` (reason, expiresAt, ...).
pub(crate) fn create_with(action_id: &str, source: &str, target: &str, extra: Value) -> Value {
    let mut request = create_bare(action_id, source, target, None);
    let params = &mut request["driverRequest"]["actions"][0]["actionParams"];
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    request
}

pub(crate) fn remove_session(action_id: &str, session_id: &str) -> Value {
    json!({"driverRequest": {"actions": [{
        "actionId": action_id, "type": "RemoveTrafficMirroring",
        "actionParams": {"type": "RemoveTrafficMirroringParams", "sessionId": session_id}}]}})
}

/// The session id of a successful create's result.
pub(crate) fn session_of(result: &Value) -> String {
    assert_eq!(result["success"], true, "{result}");
    result["sessionId"].as_str().expect("a session id").to_owned()
}

/// The EventBridge event for a tag change on an instance.
pub(crate) fn tag_change(instance_id: &str, key: &str) -> Value {
    json!({"source": "aws.tag", "detail-type": "Tag Change on Resource", "account": "123456789012",
           "resources": [format!("arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}")],
           "detail": {"service": "ec2", "resource-type": "instance", "changed-tag-keys": [key],
                      "tags": {key: "a forged value is never read"}}})
}

/// CloudTrail's record of an ENI attachment, as EventBridge delivers it.
pub(crate) fn attached(instance_id: &str, eni: &str) -> Value {
    json!({"version": "0", "id": "7c1f6a2e-attach", "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
           "account": "123456789012", "time": "2026-12-04T12:00:00Z", "region": "us-east-1", "resources": [],
           "detail": {"eventSource": "ec2.amazonaws.com", "eventName": "AttachNetworkInterface",
                      "requestParameters": {"networkInterfaceId": eni, "instanceId": instance_id, "deviceIndex": 1}}})
}

/// CloudTrail's record of a session deletion by someone.
pub(crate) fn deletion(session_id: &str) -> Value {
    json!({"source": "aws.ec2", "detail-type": "AWS API Call via CloudTrail", "account": "123456789012",
           "detail": {"eventSource": "ec2.amazonaws.com", "eventName": "DeleteTrafficMirrorSession",
                      "userIdentity": {"arn": "arn:aws:iam::123456789012:user/mallory"},
                      "requestParameters": {"DeleteTrafficMirrorSessionRequest": {"TrafficMirrorSessionId": session_id}}}})
}

/// The ids of an SQS batch answer's failed records.
pub(crate) fn failed_ids(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|i| i["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A sweep answer's launch-policy part.
pub(crate) fn policy_of(sweep: &Value) -> &Value {
    &sweep["sweep"]["sweep"]["policy"]
}

/// A sweep answer's coverage of one target.
pub(crate) fn coverage_of<'a>(sweep: &'a Value, target: &str) -> &'a Value {
    policy_of(sweep)["coverage"]["targets"]
        .as_array()
        .and_then(|targets| targets.iter().find(|t| t["target"] == target))
        .unwrap_or(&Value::Null)
}
