//! Mirroring instances as they launch: which target (the instance's tag, else
//! a configured default for its subnet or VPC; an ENI, a Network Load
//! Balancer, a Gateway Load Balancer endpoint or an existing target, told
//! apart by the value's form), which filter (a preset, or an existing filter
//! named by tag), which ENIs (all of them, less those that are themselves
//! mirror targets), and whether the instance type can be a mirror source at
//! all (asked of EC2, not read from a list).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::aws_failure;
use super::facts::InstanceFacts;
use super::model::{Accountability, EniId, MirrorRequest, Requester};
use super::validate::{target_field_of, validate};
use crate::contract::{ActionResult, RawAction, CREATE};
use crate::domain::instance::InstanceState;
use crate::domain::tags::{
    TAG_EXCLUDE, TAG_FILTER_ID, TAG_FILTER_PRESET, TAG_PACKET_LENGTH, TAG_RESERVATION_ID, TAG_SESSION_NUMBER,
    TAG_TARGET, TAG_TARGET_ENI,
};
use crate::ports::{tag_value, AwsError, InstanceInfo, Instances};

/// Whether the instance opted out.
pub fn excluded(instance: &InstanceInfo) -> bool {
    tag_value(&instance.tags, TAG_EXCLUDE).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The target the policy names for an instance, or why it names none.
pub fn policy_target(instance: &InstanceInfo, policy: &LaunchPolicy) -> Result<String, String> {
    if excluded(instance) {
        return Err(format!("{} carries {TAG_EXCLUDE}=true", instance.id));
    }
    target_for(instance, policy).ok_or_else(|| {
        format!(
            "{} has no traffic-mirroring:target or traffic-mirroring:target-eni tag and no default target is set for \
             its subnet or VPC",
            instance.id
        )
    })
}

/// Default targets for instances without a target tag, by subnet or VPC id
/// (a subnet's entry wins over its VPC's); each value is any kind of target.
/// A key `<account>:<id>` applies in that account only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchPolicy {
    pub default_targets: BTreeMap<String, String>,
}

impl LaunchPolicy {
    /// The policy in one account (`None`: the hub's own): entries for every
    /// account, and that account's own, which win over them.
    pub fn in_account(&self, account: Option<&str>) -> LaunchPolicy {
        let mut everywhere = BTreeMap::new();
        let mut own = BTreeMap::new();
        for (key, target) in &self.default_targets {
            match key.split_once(':') {
                Some((limited_to, place))
                    if limited_to.len() == 12 && limited_to.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    if account == Some(limited_to) {
                        own.insert(place.to_owned(), target.clone());
                    }
                }
                _ => {
                    everywhere.insert(key.clone(), target.clone());
                }
            }
        }
        everywhere.extend(own);
        LaunchPolicy {
            default_targets: everywhere,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum LaunchPlan {
    /// Nothing asks for this instance to be mirrored; the reason is logged.
    NotRequested(String),
    /// One entry per ENI: a create to run, or why that ENI is skipped.
    Actions(Vec<Result<MirrorRequest, ActionResult>>),
}

/// The action id of the mirror of one ENI of one instance: a redelivered
/// launch event maps to the same action, which the ledger answers once.
pub fn launch_action_id(instance_id: &str, eni: &str) -> String {
    format!("launch-{instance_id}-{eni}")
}

/// Why an instance event that says an instance ended is not acted on.
#[derive(Debug)]
pub enum Unconfirmed {
    /// EC2 says otherwise: the event is ignored, for this reason.
    Ignored(String),
    /// EC2 could not be asked: the failure to answer with (retryable).
    Unknown(Box<ActionResult>),
}

/// Instance launches and ends, as EC2 tells them: what the launch policy asks
/// of a running instance, and whether an end is true. A service of its own:
/// it holds only the `Instances` port and the cached instance facts.
pub struct Launches {
    pub instances: Arc<dyn Instances>,
    pub facts: Arc<InstanceFacts>,
}

impl Launches {
    /// `Ok` when EC2 confirms that the instance is shutting down, terminated
    /// or gone, so that its mirrors may be removed.
    pub async fn confirm_ended(&self, instance_id: &str) -> Result<(), Unconfirmed> {
        match self.instances.instance(instance_id).await {
            Ok(None) => Ok(()),
            Ok(Some(instance)) => match instance.state {
                Some(state) if state.is_ending() => Ok(()),
                other => Err(Unconfirmed::Ignored(format!(
                    "ignored: EC2 reports instance {instance_id} as {}, not shutting down or terminated, so the \
                     event is not believed and nothing was removed",
                    other.as_ref().map_or("in an unknown state", InstanceState::name)
                ))),
            },
            Err(err) => Err(Unconfirmed::Unknown(Box::new(aws_failure(
                &format!("ended-{instance_id}"),
                crate::contract::REMOVE,
                &format!("confirming with EC2 that instance {instance_id} ended"),
                &err,
            )))),
        }
    }

    pub async fn plan_launch(&self, instance_id: &str, policy: &LaunchPolicy) -> Result<LaunchPlan, ActionResult> {
        let action_id = format!("launch-{instance_id}");
        let fail = |context: &str, err: &AwsError| aws_failure(&action_id, CREATE, context, err);
        let instance = match self.instances.instance(instance_id).await {
            Ok(Some(instance)) => instance,
            Ok(None) => {
                // Describe calls are eventually consistent just after a launch.
                let message = format!("instance {instance_id} was not found (yet)");
                return Err(ActionResult::failure(
                    &action_id,
                    CREATE,
                    "InvalidInstanceID.NotFound",
                    message,
                    true,
                ));
            }
            Err(err) => return Err(fail(&format!("describing instance {instance_id}"), &err)),
        };
        let target = match policy_target(&instance, policy) {
            Ok(target) => target,
            Err(why) => return Ok(LaunchPlan::NotRequested(why)),
        };
        let refusal = self
            .facts
            .source_refusal(&instance.instance_type)
            .await
            .map_err(|e| fail(&format!("describing instance type {}", instance.instance_type), &e))?;
        if let Some(why) = refusal {
            let message = format!(
                "{instance_id} is a {} instance, which cannot be a traffic mirror source ({why}); not mirrored",
                instance.instance_type
            );
            let skipped = ActionResult::failure(&action_id, CREATE, "InstanceTypeNotSupported", message, false);
            return Ok(LaunchPlan::Actions(vec![Err(skipped)]));
        }
        // Whether an ENI is itself a mirror target is asked by its create,
        // alongside its first reads (`refuse_if_source_is_target`).
        let mut actions = Vec::new();
        for eni in &instance.enis {
            if EniId::parse(eni).is_none() {
                continue;
            }
            if ipv6_only(&instance, eni) {
                let id = launch_action_id(instance_id, eni);
                let message = format!("{}; not mirrored", ipv6_only_reason(eni));
                actions.push(Err(ActionResult::failure(
                    &id,
                    CREATE,
                    "Ipv6OnlySubnet",
                    message,
                    false,
                )));
                continue;
            }
            if *eni == target {
                let message = format!("{eni} of {instance_id} is itself a traffic mirror target; not mirrored");
                let id = launch_action_id(instance_id, eni);
                actions.push(Err(ActionResult::failure(
                    &id,
                    CREATE,
                    "EniIsMirrorTarget",
                    message,
                    false,
                )));
                continue;
            }
            actions.push(create_for(&instance, eni, &target));
        }
        Ok(LaunchPlan::Actions(actions))
    }
}

/// An ENI EC2 describes without a private IPv4 address is in an IPv6-only
/// subnet, which Traffic Mirroring does not support as a source.
pub(crate) fn ipv6_only(instance: &InstanceInfo, eni: &str) -> bool {
    instance
        .endpoints
        .get(eni)
        .is_some_and(|endpoint| endpoint.private_ip.is_none())
}

/// Why an IPv6-only ENI is not mirrored, for the report and the log.
pub(crate) fn ipv6_only_reason(eni: &str) -> String {
    format!("{eni} has no IPv4 address: it is in an IPv6-only subnet, which Traffic Mirroring does not support")
}

pub(crate) fn target_for(instance: &InstanceInfo, policy: &LaunchPolicy) -> Option<String> {
    let by_key = |key: &Option<String>| key.as_ref().and_then(|k| policy.default_targets.get(k)).cloned();
    tag_value(&instance.tags, TAG_TARGET)
        .or_else(|| tag_value(&instance.tags, TAG_TARGET_ENI))
        .map(str::to_owned)
        .or_else(|| by_key(&instance.subnet_id))
        .or_else(|| by_key(&instance.vpc_id))
}

/// Builds the create as a caller would have written it and validates it like
/// any request, so a bad tag value gets the same clear error as bad JSON.
pub(crate) fn create_for(instance: &InstanceInfo, eni: &str, target: &str) -> Result<MirrorRequest, ActionResult> {
    let action_id = launch_action_id(&instance.id, eni);
    let tag = |key| tag_value(&instance.tags, key).map(str::to_owned);
    let rules = match tag(TAG_FILTER_PRESET).as_deref() {
        None | Some("all") => Value::Null,
        Some(protocol @ ("tcp" | "udp")) => json!([
            {"direction": "ingress", "protocol": protocol}, {"direction": "egress", "protocol": protocol}
        ]),
        Some(other) => {
            let message = format!("tag {TAG_FILTER_PRESET}: {other:?} is not a preset (all, tcp, udp)");
            return Err(ActionResult::failure(
                &action_id,
                CREATE,
                "ValidationError",
                message,
                false,
            ));
        }
    };
    let mut params = Map::new();
    params.insert("sourceNicId".into(), json!(eni));
    params.insert(target_field_of(target).into(), json!(target));
    params.insert("trafficMirrorFilterId".into(), json!(tag(TAG_FILTER_ID)));
    params.insert("sessionNumber".into(), json!(tag(TAG_SESSION_NUMBER)));
    params.insert("packetLength".into(), json!(tag(TAG_PACKET_LENGTH)));
    params.insert("reservationId".into(), json!(tag(TAG_RESERVATION_ID)));
    params.insert("filterRules".into(), rules);
    params.insert(
        "description".into(),
        json!(format!("mirrors {} ({eni}) from launch", instance.id)),
    );
    let mut body = Map::new();
    body.insert("actionParams".into(), Value::Object(params));
    let raw = RawAction {
        action_id: action_id.clone(),
        action_type: CREATE.to_owned(),
        body,
        request_reservation_id: None,
        request_dry_run: false,
        requester: Requester::policy(),
    };
    // The policy asked: the tag on the instance, or the deployment's defaults.
    let reason = if tag(TAG_TARGET).is_some() || tag(TAG_TARGET_ENI).is_some() {
        format!(
            "launch policy: instance {} is tagged to be mirrored to {target}",
            instance.id
        )
    } else {
        format!(
            "launch policy: DEFAULT_TARGETS names {target} for the subnet or VPC of instance {}",
            instance.id
        )
    };
    match validate(&raw) {
        Ok(MirrorRequest::Create(mut create)) => {
            create.accountability = Accountability {
                requested_by: Requester::policy(),
                reason: Some(reason),
            };
            create.instance_id = Some(instance.id.clone());
            create.refuse_if_source_is_target = true;
            create.from_policy = true;
            Ok(MirrorRequest::Create(create))
        }
        Ok(other) => Ok(other),
        Err(err) => Err(ActionResult::failure(
            &action_id,
            CREATE,
            "ValidationError",
            format!("instance {} tags: {err}", instance.id),
            false,
        )),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_default_target_limited_to_an_account_applies_there_only_and_wins() {
        let policy = LaunchPolicy {
            default_targets: [
                ("vpc-0000000a", "eni-000000000000000a1"),
                ("222222222222:vpc-0000000a", "eni-000000000000000b2"),
                ("333333333333:subnet-0000000c", "eni-000000000000000c3"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        };
        let member = policy.in_account(Some("222222222222"));
        assert_eq!(member.default_targets.len(), 1);
        assert_eq!(member.default_targets["vpc-0000000a"], "eni-000000000000000b2");
        let hub = policy.in_account(None);
        assert_eq!(hub.default_targets.len(), 1);
        assert_eq!(hub.default_targets["vpc-0000000a"], "eni-000000000000000a1");
        assert_eq!(policy.in_account(Some("333333333333")).default_targets.len(), 2);
    }

    use super::*;
    use crate::domain::model::TargetSpec;

    fn instance(tags: &[(&str, &str)]) -> InstanceInfo {
        InstanceInfo {
            id: "i-1".into(),
            instance_type: "m5.large".into(),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-1".into()),
            availability_zone: None,
            enis: vec!["eni-0000000a".into()],
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            state: Some(InstanceState::Running),
            endpoints: Default::default(),
        }
    }

    #[test]
    fn the_tag_wins_then_the_subnet_then_the_vpc() {
        let mut policy = LaunchPolicy::default();
        policy.default_targets.insert("vpc-1".into(), "eni-000000c1".into());
        assert_eq!(target_for(&instance(&[]), &policy).as_deref(), Some("eni-000000c1"));
        policy.default_targets.insert("subnet-1".into(), "eni-000000b1".into());
        assert_eq!(target_for(&instance(&[]), &policy).as_deref(), Some("eni-000000b1"));
        let tagged = instance(&[(TAG_TARGET_ENI, "eni-000000a1")]);
        assert_eq!(target_for(&tagged, &policy).as_deref(), Some("eni-000000a1"));
        assert_eq!(target_for(&instance(&[]), &LaunchPolicy::default()), None);
    }

    #[test]
    fn tags_are_validated_like_a_request() {
        let bad = instance(&[(TAG_SESSION_NUMBER, "forty")]);
        let err = create_for(&bad, "eni-0000000a", "eni-0000000b").expect_err("bad tag");
        assert!(err.error_message.contains("sessionNumber"), "{}", err.error_message);
        let preset = instance(&[(TAG_FILTER_PRESET, "smtp")]);
        assert!(create_for(&preset, "eni-0000000a", "eni-0000000b").is_err());
        let good = instance(&[(TAG_SESSION_NUMBER, "7"), (TAG_FILTER_PRESET, "tcp")]);
        match create_for(&good, "eni-0000000a", "eni-0000000b") {
            Ok(MirrorRequest::Create(c)) => {
                assert_eq!((c.session_number, c.filter.rules().len()), (Some(7), 2));
                assert_eq!(c.instance_id.as_deref(), Some("i-1"));
            }
            other => panic!("expected a create, got {other:?}"),
        }
    }

    #[test]
    fn any_kind_of_target_and_an_existing_filter_come_from_tags() {
        let nlb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/mon/50dc6c495c0c9188";
        let tagged = instance(&[(TAG_TARGET, nlb), (TAG_FILTER_ID, "tmf-0123456789abcdef0")]);
        let target = target_for(&tagged, &LaunchPolicy::default()).expect("tagged");
        match create_for(&tagged, "eni-0000000a", &target) {
            Ok(MirrorRequest::Create(c)) => {
                assert_eq!(c.target, TargetSpec::NetworkLoadBalancer(nlb.into()));
                assert_eq!(
                    c.filter,
                    crate::domain::model::FilterSpec::Existing("tmf-0123456789abcdef0".into())
                );
            }
            other => panic!("expected a create, got {other:?}"),
        }
        let mut policy = LaunchPolicy::default();
        policy
            .default_targets
            .insert("vpc-1".into(), "vpce-0123456789abcdef0".into());
        let target = target_for(&instance(&[]), &policy).expect("default");
        match create_for(&instance(&[]), "eni-0000000a", &target) {
            Ok(MirrorRequest::Create(c)) => assert_eq!(c.target.kind(), "gateway-load-balancer-endpoint"),
            other => panic!("expected a create, got {other:?}"),
        }
    }
}
