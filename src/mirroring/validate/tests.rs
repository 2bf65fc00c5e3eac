//! Validation, table by table: what is accepted, and the field each refusal names.

use super::*;
use crate::contract::split_request;
use serde_json::json;

fn create_with(params: Value) -> Result<CreateRequest> {
    let payload = json!({"driverRequest": {"actions": [
        {"actionId": "a1", "type": CREATE, "actionParams": params}
    ]}});
    let actions = split_request(&payload).expect("splits");
    match validate(&actions[0])? {
        MirrorRequest::Create(c) => Ok(c),
        other => panic!("expected a create, got {other:?}"),
    }
}

fn base() -> Value {
    json!({"type": "CreateTrafficMirroringParams",
           "sourceNicId": "eni-008322622e675cd80", "targetNicId": "eni-05fc8d0b34b762305"})
}

fn with(key: &str, value: Value) -> Value {
    let mut params = base();
    params[key] = value;
    params
}

fn rule_error(rule: Value) -> ValidationError {
    create_with(with("filterRules", json!([rule]))).expect_err("rule is invalid")
}

fn validated(action: Value) -> Result<MirrorRequest> {
    let actions = split_request(&json!({"driverRequest": {"actions": [action]}})).expect("splits");
    validate(&actions[0])
}

#[test]
fn an_action_id_is_short_and_plain() {
    let create = |id: &str| validated(json!({"actionId": id, "type": CREATE, "actionParams": base()}));
    assert!(create("41f206a1-a6c0-4603-90f7-6492cd0fb00d").is_ok());
    assert!(create("ops:INC-1234.retry_2").is_ok());
    assert!(create(&"a".repeat(128)).is_ok());
    for bad in [
        "a".repeat(129),
        "two words".into(),
        "tab\there".into(),
        "semi;colon".into(),
        "é".into(),
    ] {
        assert_eq!(create(&bad).expect_err("refused").field, "actionId", "{bad:?}");
    }
}

#[test]
fn a_reason_and_an_end_are_read_and_checked() {
    let create = create_with(with("reason", json!("INC-1234 exfiltration"))).expect("valid");
    assert_eq!(create.accountability.reason.as_deref(), Some("INC-1234 exfiltration"));
    assert_eq!(create.lifetime, None);
    let until = create_with(with("expiresAt", json!("2027-01-15T08:00:00Z"))).expect("valid");
    assert_eq!(until.lifetime, Some(Lifetime::Until(1_800_000_000)));
    let offset = create_with(with("expiresAt", json!("2027-01-15T09:00:00+01:00"))).expect("valid");
    assert_eq!(
        offset.lifetime,
        Some(Lifetime::Until(1_800_000_000)),
        "any offset, one instant"
    );
    let minutes = create_with(with("durationMinutes", json!("90"))).expect("valid");
    assert_eq!(minutes.lifetime, Some(Lifetime::Minutes(90)));
    for (key, bad) in [
        ("reason", json!("line\nbreak")),
        ("reason", json!("x".repeat(513))),
        ("description", json!("bell\u{7}")),
        ("expiresAt", json!("tomorrow")),
        ("expiresAt", json!("2027-01-15")),
        ("durationMinutes", json!(0)),
        ("durationMinutes", json!(525_601)),
        ("reservationId", json!("esc\u{1b}[2J")),
    ] {
        let err = create_with(with(key, bad.clone())).expect_err("refused");
        assert!(err.field.ends_with(key), "{key}: {bad} -> {err}");
    }
    let mut both = with("expiresAt", json!("2027-01-15T08:00:00Z"));
    both["durationMinutes"] = json!(5);
    assert!(create_with(both).is_err(), "one way to say the end");
}

#[test]
fn a_remove_carries_its_reason_and_its_requester() {
    let action = json!({"actionId": "r1", "type": REMOVE, "sessionId": "tms-0123456789abcdef0", "reason": "done"});
    let actions = split_request(&json!({"driverRequest": {"actions": [action]}})).expect("splits");
    let mut raw = actions[0].clone();
    raw.requester = Requester::new("sqs:AIDA1", RequesterBasis::SqsSender);
    let Ok(MirrorRequest::Remove(remove)) = validate(&raw) else {
        panic!("a remove");
    };
    assert_eq!(remove.accountability.reason.as_deref(), Some("done"));
    assert_eq!(remove.accountability.requested_by.principal, "sqs:AIDA1");
    assert!(!remove.expired, "only the expiry run ends a mirror as expired");
}

#[test]
fn the_seed_request_validates_with_defaults_applied() {
    let create = create_with(with(
        "filterRules",
        json!([{"type": "TrafficFilterRule", "direction": "ingress", "protocol": "tcp",
                "sourcePortRange": {"type": "PortRange", "fromPort": "50000", "toPort": "65535"},
                "sourceCidr": "192.168.0.124/24"}]),
    ))
    .expect("valid");
    let rule = &create.filter.rules()[0];
    assert_eq!(rule.protocol, Protocol::Number(TCP));
    assert_eq!(rule.source_ports, Some(PortRange { from: 50000, to: 65535 }));
    assert_eq!(rule.destination_cidr, "0.0.0.0/0");
    assert_eq!(create.session_number, None);
}

#[test]
fn numbers_may_be_strings_or_json_numbers() {
    assert_eq!(
        create_with(with("sessionNumber", json!("5")))
            .expect("ok")
            .session_number,
        Some(5)
    );
    assert_eq!(
        create_with(with("sessionNumber", json!(7))).expect("ok").session_number,
        Some(7)
    );
    assert_eq!(
        create_with(with("sessionNumber", json!("")))
            .expect("ok")
            .session_number,
        None
    );
}

#[test]
fn session_number_must_be_an_integer_in_range() {
    for bad in [json!("0"), json!(32767), json!("five"), json!(2.5), json!(true)] {
        let err = create_with(with("sessionNumber", bad.clone())).expect_err("invalid");
        assert_eq!(err.field, "actionParams.sessionNumber", "{bad}");
    }
}

#[test]
fn eni_ids_are_checked() {
    for bad in [
        "eni-123",
        "ENI-008322622e675cd80",
        "eni-00832262Ze675cd80",
        "i-0123456789abcdef0",
    ] {
        let err = create_with(with("sourceNicId", json!(bad))).expect_err("invalid");
        assert_eq!(err.field, "actionParams.sourceNicId");
    }
    assert!(create_with(with("sourceNicId", json!("eni-0a1b2c3d"))).is_ok());
    let err = create_with(with("targetNicId", Value::Null)).expect_err("missing");
    assert!(err.problem.contains("missing"));
}

#[test]
fn source_and_target_must_differ() {
    let err = create_with(with("targetNicId", json!("eni-008322622e675cd80"))).expect_err("same");
    assert_eq!(err.field, "actionParams.targetNicId");
}

#[test]
fn a_wrong_nested_type_is_an_error_and_a_missing_one_is_fine() {
    let err = create_with(with("type", json!("Other"))).expect_err("wrong type");
    assert_eq!(err.field, "actionParams.type");
    let mut params = base();
    params.as_object_mut().expect("object").remove("type");
    assert!(create_with(params).is_ok());
    let err = rule_error(json!({"type": "Nope", "direction": "ingress", "protocol": "tcp"}));
    assert_eq!(err.field, "actionParams.filterRules[0].type");
}

#[test]
fn rule_fields_are_checked() {
    let err = rule_error(json!({"direction": "sideways", "protocol": "tcp"}));
    assert_eq!(err.field, "actionParams.filterRules[0].direction");
    let err = rule_error(json!({"direction": "ingress", "protocol": "smtp"}));
    assert_eq!(err.field, "actionParams.filterRules[0].protocol");
    let err = rule_error(json!({"direction": "ingress", "protocol": "256"}));
    assert_eq!(err.field, "actionParams.filterRules[0].protocol");
    let err = rule_error(json!({"direction": "ingress", "protocol": "icmp",
                                "sourcePortRange": {"fromPort": 1, "toPort": 2}}));
    assert!(err.problem.contains("only with tcp or udp"));
    let err = rule_error(json!({"direction": "ingress", "protocol": "udp",
                                "destinationPortRange": {"fromPort": 9, "toPort": 2}}));
    assert_eq!(err.field, "actionParams.filterRules[0].destinationPortRange");
    let err = rule_error(json!({"direction": "ingress", "protocol": "udp",
                                "destinationPortRange": {"fromPort": 9, "toPort": 65536}}));
    assert_eq!(err.field, "actionParams.filterRules[0].destinationPortRange.toPort");
    for bad in ["10.0.0.0/33", "10.0.0/8", "nonsense", "fe80::/129"] {
        let err = rule_error(json!({"direction": "egress", "protocol": "all", "sourceCidr": bad}));
        assert_eq!(err.field, "actionParams.filterRules[0].sourceCidr", "{bad}");
    }
}

#[test]
fn more_than_ten_rules_is_an_error() {
    let rule = json!({"direction": "ingress", "protocol": "tcp"});
    let err = create_with(with("filterRules", json!(vec![rule; 11]))).expect_err("too many");
    assert!(err.problem.contains("at most 10"));
}

#[test]
fn rules_are_made_canonical_and_numbered_per_direction() {
    let rules = json!([
        {"direction": "ingress", "protocol": "tcp"},
        {"direction": "egress", "protocol": "udp"},
        {"direction": "ingress", "protocol": 17, "destinationCidr": "2001:DB8:0::/32"}
    ]);
    let create = create_with(with("filterRules", rules)).expect("valid");
    let rules = create.filter.rules();
    let numbers: Vec<_> = rules.iter().map(|r| (r.direction, r.rule_number)).collect();
    assert_eq!(
        numbers,
        [
            (Direction::Ingress, 100),
            (Direction::Ingress, 200),
            (Direction::Egress, 100)
        ]
    );
    let udp = rules
        .iter()
        .find(|r| r.protocol == Protocol::Number(UDP))
        .expect("udp rule");
    assert_eq!(
        (udp.source_cidr.as_str(), udp.destination_cidr.as_str()),
        ("::/0", "2001:db8::/32"),
        "the default follows the other CIDR's version; the spelling is canonical"
    );
}

#[test]
fn equal_rule_sets_get_one_key_whatever_their_order_and_spelling() {
    let key = |rules: Value| match create_with(with("filterRules", rules)).expect("valid").filter {
        FilterSpec::Rules { key, .. } => key,
        other => panic!("expected rules, got {other:?}"),
    };
    let one = key(json!([
        {"direction": "ingress", "protocol": "tcp", "sourceCidr": "10.0.0.0/8"},
        {"direction": "egress", "protocol": "udp"}
    ]));
    let same = key(json!([
        {"direction": "EGRESS", "protocol": 17, "sourceCidr": "0.0.0.0/0", "destinationCidr": "0.0.0.0/0"},
        {"direction": "ingress", "protocol": "6", "sourceCidr": "10.0.0.0/8"},
        {"direction": "ingress", "protocol": "tcp", "sourceCidr": "10.0.0.0/8"}
    ]));
    let other = key(json!([{"direction": "ingress", "protocol": "tcp"}]));
    assert_eq!(one, same);
    assert_ne!(one, other);
}

#[test]
fn no_rules_means_mirror_everything_both_ways() {
    let create = create_with(base()).expect("valid");
    let rules = create.filter.rules();
    assert!(rules.iter().any(|r| r.direction == Direction::Ingress));
    assert!(rules.iter().any(|r| r.direction == Direction::Egress));
    assert!(rules.iter().all(|r| r.protocol == Protocol::All));
}

fn without_target(extra: &[(&str, Value)]) -> Value {
    let mut params = base();
    let object = params.as_object_mut().expect("object");
    object.remove("targetNicId");
    for (key, value) in extra {
        object.insert((*key).to_owned(), value.clone());
    }
    params
}

#[test]
fn every_kind_of_target_is_accepted_once() {
    let nlb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/mon/50dc6c495c0c9188";
    let cases = [
        (
            "targetNetworkLoadBalancerArn",
            nlb,
            TargetSpec::NetworkLoadBalancer(nlb.into()),
        ),
        (
            "targetGatewayLoadBalancerEndpointId",
            "vpce-0123456789abcdef0",
            TargetSpec::GatewayLoadBalancerEndpoint("vpce-0123456789abcdef0".into()),
        ),
        (
            "trafficMirrorTargetId",
            "tmt-0123456789abcdef0",
            TargetSpec::Existing("tmt-0123456789abcdef0".into()),
        ),
    ];
    for (key, value, expected) in cases {
        let create = create_with(without_target(&[(key, json!(value))])).expect(key);
        assert_eq!(create.target, expected);
    }
    let err = create_with(without_target(&[])).expect_err("no target");
    assert!(err.problem.contains("exactly one"), "{err}");
    let err = create_with(with("trafficMirrorTargetId", json!("tmt-0123456789abcdef0"))).expect_err("two");
    assert_eq!(err.field, "actionParams.trafficMirrorTargetId");
    let alb = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";
    let err = create_with(without_target(&[("targetNetworkLoadBalancerArn", json!(alb))])).expect_err("alb");
    assert!(err.problem.contains("only a Network Load Balancer"), "{err}");
    for (key, bad) in [
        (
            "targetNetworkLoadBalancerArn",
            "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
        ),
        ("targetGatewayLoadBalancerEndpointId", "vpc-0123456789abcdef0"),
        ("trafficMirrorTargetId", "tmf-0123456789abcdef0"),
    ] {
        let err = create_with(without_target(&[(key, json!(bad))])).expect_err(bad);
        assert_eq!(err.field, format!("actionParams.{key}"));
    }
}

#[test]
fn an_existing_filter_replaces_rules_but_not_both() {
    let create = create_with(with("trafficMirrorFilterId", json!("tmf-0123456789abcdef0"))).expect("valid");
    assert_eq!(create.filter, FilterSpec::Existing("tmf-0123456789abcdef0".into()));
    let mut both = with("trafficMirrorFilterId", json!("tmf-0123456789abcdef0"));
    both["filterRules"] = json!([{"direction": "ingress", "protocol": "tcp"}]);
    assert_eq!(
        create_with(both).expect_err("both").field,
        "actionParams.trafficMirrorFilterId"
    );
    let err = create_with(with("trafficMirrorFilterId", json!("filter-1"))).expect_err("bad id");
    assert!(err.problem.contains("not a traffic mirror filter id"));
}

#[test]
fn dry_run_may_be_asked_on_the_params_the_action_or_the_request() {
    assert!(!create_with(base()).expect("valid").dry_run);
    assert!(create_with(with("dryRun", json!(true))).expect("valid").dry_run);
    assert!(create_with(with("dryRun", json!("maybe"))).is_err());
    let payload = json!({"driverRequest": {"dryRun": true, "actions": [
        {"actionId": "a", "type": CREATE, "actionParams": base()},
        {"actionId": "b", "type": CREATE, "dryRun": false, "actionParams": base()}
    ]}});
    let actions = split_request(&payload).expect("splits");
    let dry = |a: &RawAction| matches!(validate(a), Ok(MirrorRequest::Create(c)) if c.dry_run);
    assert!(dry(&actions[0]), "the request's flag applies");
    assert!(!dry(&actions[1]), "the action's own flag wins");
}

#[test]
fn remove_needs_at_least_one_selector_and_checks_them() {
    let remove = |action: Value| {
        let payload = json!({"driverRequest": {"actions": [action]}});
        validate(&split_request(&payload).expect("splits")[0])
    };
    let err = remove(json!({"actionId": "r", "type": REMOVE, "sessionId": "", "targetNicId": ""}))
        .expect_err("nothing named");
    assert!(err.problem.contains("name at least one"));
    let err = remove(json!({"actionId": "r", "type": REMOVE, "sessionId": "tms-xyz"})).expect_err("bad id");
    assert_eq!(err.field, "sessionId");
    let ok = remove(json!({"actionId": "r", "type": REMOVE, "sessionId": "",
                           "targetNicId": "eni-08e44d9a954444e3f"}))
    .expect("valid");
    assert!(matches!(
        ok,
        MirrorRequest::Remove(RemoveRequest {
            account: None,
            session_id: None,
            target_eni: Some(_),
            ..
        })
    ));
}

#[test]
fn the_direct_invoke_samples_in_events_are_valid_requests() {
    // Compiled in, so cargo rebuilds the test when a sample changes.
    for (name, text) in [
        ("direct-create.json", include_str!("../../../events/direct-create.json")),
        ("direct-remove.json", include_str!("../../../events/direct-remove.json")),
        (
            "direct-create-load-balancers.json",
            include_str!("../../../events/direct-create-load-balancers.json"),
        ),
    ] {
        let payload: Value = serde_json::from_str(text).expect("sample is JSON");
        for action in split_request(&payload).expect("sample is a driverRequest") {
            validate(&action).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn unknown_action_types_and_missing_ids_are_named() {
    let payload = json!({"driverRequest": {"actions": [
        {"actionId": "x", "type": "Explode"}, {"type": CREATE}
    ]}});
    let actions = split_request(&payload).expect("splits");
    assert_eq!(validate(&actions[0]).expect_err("bad type").field, "type");
    assert_eq!(validate(&actions[1]).expect_err("no id").field, "actionId");
}
