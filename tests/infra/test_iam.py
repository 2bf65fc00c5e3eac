"""The function's IAM role grants exactly the AWS actions the code calls (plus
the few the platform needs, named below), and every EC2 write is bound to the
ownership tag. The code side is read from src/aws/*.rs, so a new SDK call
without its permission (or a permission left behind by a removed call) fails
here, naming the action."""

import fnmatch
import re

import pytest

from infra_support import (
    as_list,
    code_actions,
    leaves,
    load_template,
    pascal_to_kebab,
    read,
    refers_to,
    without_comments,
    resource_type,
    resources_of_type,
    rust_str_const,
    sdk_calls,
    snake_to_pascal,
)

ROLE = "FunctionRole"
FUNCTION = "TrafficMirroringFunction"

# Granted although src/aws never calls them: the platform calls them with the
# function's role.
PLATFORM_ACTIONS = {
    # EC2 authorizes the TagSpecifications of a create call as ec2:CreateTags.
    "ec2:CreateTags": "tag-on-create (TagSpecifications of the create calls)",
    # The SQS event source mapping polls the request queue with the function's role.
    "sqs:ReceiveMessage": "SQS event source mapping",
    "sqs:DeleteMessage": "SQS event source mapping",
    "sqs:GetQueueAttributes": "SQS event source mapping",
    # Lambda sends asynchronous invocations that failed for good to the
    # function's dead-letter queue with the function's role.
    "sqs:SendMessage": "the function's dead-letter queue",
    # The runtime writes the function's logs.
    "logs:CreateLogStream": "CloudWatch Logs",
    "logs:PutLogEvents": "CloudWatch Logs",
}

# (EC2 create action, resource type) pairs that are allowed without an
# ownership-tag condition, each because the resource is not ours to tag.
UNTAGGED_CREATE_RESOURCES = {
    ("ec2:CreateTrafficMirrorTarget", "network-interface"): "the target ENI is the monitoring appliance's",
    ("ec2:CreateTrafficMirrorTarget", "elasticloadbalancing:loadbalancer/net"): "the appliance's Network Load Balancer",
    ("ec2:CreateTrafficMirrorTarget", "vpc-endpoint"): "the appliance's Gateway Load Balancer endpoint",
    ("ec2:CreateTrafficMirrorSession", "network-interface"): "the source ENI is the workload's",
    ("ec2:CreateTrafficMirrorSession", "traffic-mirror-target"): "an existing target may be reused or named",
    # Using a filter changes nothing in it; rules (CreateTrafficMirrorFilterRule)
    # and deletes still need our tag on it.
    ("ec2:CreateTrafficMirrorSession", "traffic-mirror-filter"): "the caller may name an existing filter",
    ("ec2:CreateTrafficMirrorFilterRule", "traffic-mirror-filter-rule"): "a new rule carries no tags",
}

# What a create-target call may point at, by the builder method that names it,
# and the resource type EC2 authorizes that destination as.
TARGET_DESTINATIONS = {
    "network_interface_id": "network-interface",
    "network_load_balancer_arn": "elasticloadbalancing:loadbalancer/net",
    "gateway_load_balancer_endpoint_id": "vpc-endpoint",
}

OWNERSHIP_KEYS_REQUEST = {"aws:RequestTag"}
OWNERSHIP_KEYS_RESOURCE = {"aws:ResourceTag", "ec2:ResourceTag"}


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def statements(template):
    return role_statements(template)


@pytest.fixture(scope="module")
def ownership_tag():
    source = read("src/mirroring/mod.rs")
    return rust_str_const(source, "TAG_MANAGED_BY"), rust_str_const(source, "TAG_MANAGED_BY_VALUE")


def role_statements(template):
    """Every statement of every policy attached to the function's role."""
    function = template["Resources"][FUNCTION]["Properties"]
    assert function.get("Role") == {"Fn::GetAtt": [ROLE, "Arn"]}, f"{FUNCTION} must run as {ROLE}"
    assert "Policies" not in function, f"{FUNCTION} must not add SAM policies: grant everything in {ROLE}"
    role = template["Resources"][ROLE]
    assert role["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in role["Properties"], f"{ROLE} must not attach managed policies"
    documents = [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in resources_of_type(template, kind).values():
            if refers_to(policy["Properties"].get("Roles", []), ROLE):
                documents.append(policy["Properties"]["PolicyDocument"])
    statements = [s for document in documents for s in as_list(document["Statement"])]
    assert statements, f"{ROLE} has no policy statements"
    for statement in statements:
        sid = statement.get("Sid", statement)
        assert statement["Effect"] == "Allow", f"{sid}: only Allow statements are expected"
        assert "NotAction" not in statement and "NotResource" not in statement, f"{sid}: no NotAction/NotResource"
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{sid}: name actions one by one, not {action}"
    return statements


def granted_actions(statements):
    return {action for s in statements for action in as_list(s["Action"])}


def condition_keys(statement):
    """{"aws:RequestTag/k": value, ...} over all operators of the statement's Condition."""
    keys = {}
    for operator, clauses in statement.get("Condition", {}).items():
        for key, value in clauses.items():
            keys[key] = value
    return keys


def requires_tag(statement, kinds, tag):
    key, value = tag
    conditions = condition_keys(statement)
    return any(conditions.get(f"{kind}/{key}") in (value, [value]) for kind in kinds)


def resources(statement):
    return [leaf for r in as_list(statement["Resource"]) for leaf in leaves(r)]


def test_the_parser_sees_the_calls_the_code_makes():
    """A self-check of the source parser against calls that must be there."""
    actions = code_actions()
    for expected in ("ec2:CreateTrafficMirrorSession", "dynamodb:UpdateItem", "dynamodb:Query", "events:PutEvents"):
        assert expected in actions, f"the parser no longer finds {expected} in src/aws: fix tests/infra/infra_support.py"
    assert snake_to_pascal("describe_traffic_mirror_targets") == "DescribeTrafficMirrorTargets"
    assert pascal_to_kebab("TrafficMirrorFilterRule") == "traffic-mirror-filter-rule"


def test_the_role_grants_every_action_the_code_calls(statements):
    granted = granted_actions(statements)
    missing = {action: files for action, files in code_actions().items() if action not in granted}
    assert not missing, "the code calls actions the role does not grant: " + "; ".join(
        f"{action} (called in {', '.join(sorted(set(files)))})" for action, files in sorted(missing.items())
    )


def test_the_role_grants_nothing_the_code_does_not_call(statements):
    extra = granted_actions(statements) - set(code_actions()) - set(PLATFORM_ACTIONS)
    assert not extra, (
        "the role grants actions nothing in src/aws calls: " + ", ".join(sorted(extra))
        + " (remove them, or add them to PLATFORM_ACTIONS with the reason the platform needs them)"
    )


def test_the_platform_actions_are_granted(statements):
    missing = set(PLATFORM_ACTIONS) - granted_actions(statements)
    assert not missing, "the platform needs: " + ", ".join(
        f"{action} ({PLATFORM_ACTIONS[action]})" for action in sorted(missing)
    )


def test_every_ec2_create_is_bound_to_the_ownership_tag(statements, ownership_tag):
    """Each (create action, resource type) pair the role allows is either
    conditioned on our tag in the request (the new resource), on our tag on an
    existing resource (a filter we made), or is a named exception."""
    for statement in statements:
        for action in as_list(statement["Action"]):
            if not action.startswith("ec2:Create") or action == "ec2:CreateTags":
                continue
            sid = statement.get("Sid", action)
            for resource in resources(statement):
                kind = resource_type(resource)
                assert kind, f"{sid}: {action} on {resource!r}: name resources by ARN type"
                own = pascal_to_kebab(action.split(":")[1][len("Create"):])
                if (action, kind) in UNTAGGED_CREATE_RESOURCES:
                    continue
                if kind == own:
                    tagged = requires_tag(statement, OWNERSHIP_KEYS_REQUEST, ownership_tag)
                    assert tagged, f"{sid}: {action} may create a {kind} without aws:RequestTag/{ownership_tag[0]}"
                    tag_keys = condition_keys(statement).get("aws:TagKeys")
                    assert tag_keys, f"{sid}: {action} should limit aws:TagKeys to ours"
                else:
                    assert requires_tag(statement, OWNERSHIP_KEYS_RESOURCE, ownership_tag), (
                        f"{sid}: {action} may use any {kind}; require aws:ResourceTag/{ownership_tag[0]} "
                        f"or add the pair to UNTAGGED_CREATE_RESOURCES with a reason"
                    )


@pytest.mark.parametrize("action, kind", sorted(UNTAGGED_CREATE_RESOURCES))
def test_resources_of_others_are_usable_without_our_tag(statements, action, kind):
    """The other side of the exceptions above: each is granted with no
    condition, or creating on someone else's resource (a caller's filter or
    target, the appliance's load balancer) fails with UnauthorizedOperation."""
    granted = [
        s for s in statements
        if action in as_list(s["Action"]) and kind in {resource_type(r) for r in resources(s)}
    ]
    assert granted, f"{action} is not granted on {kind} ({UNTAGGED_CREATE_RESOURCES[(action, kind)]})"
    assert any(not s.get("Condition") for s in granted), (
        f"{action} on {kind} is granted only under conditions ({[s.get('Sid') for s in granted]}): "
        f"{UNTAGGED_CREATE_RESOURCES[(action, kind)]}, so it carries no tag of ours"
    )


def test_the_code_tags_what_the_role_requires_tagged(statements):
    """The create calls the role conditions on aws:RequestTag must pass
    TagSpecifications, and ec2:CreateTags is allowed for exactly those."""
    ec2 = [calls for service, calls in sdk_calls().values() if service == "ec2"]
    tagged_in_code = {
        snake_to_pascal(op) for calls in ec2 for op, chain in calls
        if op.startswith("create_") and ".tag_specifications(" in chain
    }
    assert tagged_in_code, "no EC2 create call passes tag_specifications"
    required = {
        action.split(":")[1]
        for s in statements
        if any(key.startswith("aws:RequestTag/") for key in condition_keys(s))
        for action in as_list(s["Action"])
        if action != "ec2:CreateTags"
    }
    untagged = required - tagged_in_code
    assert not untagged, f"the role requires our tag on {sorted(untagged)}, but the code does not pass TagSpecifications there"
    create_actions = set()
    for statement in statements:
        if "ec2:CreateTags" in as_list(statement["Action"]):
            allowed = as_list(condition_keys(statement).get("ec2:CreateAction", []))
            assert allowed, f"{statement.get('Sid')}: ec2:CreateTags only with ec2:CreateAction (tag on create)"
            create_actions |= set(allowed)
    assert create_actions == tagged_in_code, (
        f"ec2:CreateTags should be allowed for exactly the creates that tag: "
        f"missing {sorted(tagged_in_code - create_actions)}, extra {sorted(create_actions - tagged_in_code)}"
    )


def tag_conditioned_creates(statements):
    return {
        action
        for s in statements
        if any(key.startswith("aws:RequestTag/") for key in condition_keys(s))
        for action in as_list(s["Action"])
        if action != "ec2:CreateTags"
    }


def test_every_call_of_a_tag_conditioned_create_sends_the_tags(statements):
    """Not just one call: IAM evaluates aws:RequestTag on every call of the
    action, a DryRun one included (a dry run without the tags the real call
    carries answers UnauthorizedOperation, not DryRunOperation)."""
    required = tag_conditioned_creates(statements)
    bare = {}
    for service, calls in sdk_calls().values():
        for operation, chain in calls:
            action = f"{service}:{snake_to_pascal(operation)}"
            if action in required and ".tag_specifications(" not in chain:
                kind = "a dry run" if re.search(r"\.dry_run\s*\(\s*true\s*\)", chain) else "a call"
                bare.setdefault(action, []).append(kind)
    assert not bare, "; ".join(
        f"{action}: {', '.join(kinds)} without TagSpecifications, which the role requires "
        f"(aws:RequestTag/...); send the same tags as the create"
        for action, kinds in sorted(bare.items())
    )


def test_the_role_lets_a_target_point_wherever_the_code_points_it(statements):
    """Every destination the code's CreateTrafficMirrorTarget calls name
    (ENI, Network Load Balancer, Gateway Load Balancer endpoint) is a
    resource EC2 authorizes the call on."""
    chains = [
        chain for service, calls in sdk_calls().values() if service == "ec2"
        for operation, chain in calls if operation == "create_traffic_mirror_target"
    ]
    assert chains, "the parser finds no create_traffic_mirror_target call in src/aws"
    named = {
        kind for method, kind in TARGET_DESTINATIONS.items()
        if any(re.search(r"\." + method + r"\s*\(", chain) for chain in chains)
    }
    assert "network-interface" in named, "the parser no longer sees .network_interface_id( in the target call"
    allowed = {
        resource_type(resource)
        for statement in statements if "ec2:CreateTrafficMirrorTarget" in as_list(statement["Action"])
        for resource in resources(statement)
    }
    missing = named - allowed
    assert not missing, f"the code creates targets on {sorted(missing)}, which ec2:CreateTrafficMirrorTarget is not granted on"


def test_every_ec2_delete_needs_the_ownership_tag(statements, ownership_tag):
    for statement in statements:
        deletes = [a for a in as_list(statement["Action"]) if a.startswith("ec2:Delete")]
        if deletes:
            assert requires_tag(statement, OWNERSHIP_KEYS_RESOURCE, ownership_tag), (
                f"{statement.get('Sid')}: {deletes} must require aws:ResourceTag/{ownership_tag[0]}={ownership_tag[1]}"
            )


def test_only_describe_calls_use_any_resource(statements):
    for statement in statements:
        if "*" in resources(statement):
            others = [a for a in as_list(statement["Action"]) if not a.split(":")[1].startswith("Describe")]
            assert not others, f"{statement.get('Sid')}: {others} granted on every resource"


@pytest.mark.parametrize(
    "prefix, allowed",
    [
        ("dynamodb:", ["LedgerTable"]),
        ("events:", ["CompletionEventBus", "event-bus/default"]),
        ("sqs:", ["RequestQueue", "EventFailureQueue"]),
        ("logs:", ["FunctionLogGroup"]),
    ],
)
def test_non_ec2_actions_stay_on_the_stacks_resources(statements, prefix, allowed):
    for statement in statements:
        if not any(a.startswith(prefix) for a in as_list(statement["Action"])):
            continue
        for resource in resources(statement):
            ok = any(refers_to(resource, name) for name in allowed) or any(
                name in (arn_or_empty(resource)) for name in allowed
            )
            assert ok, f"{statement.get('Sid')}: {prefix}* on {resource!r}, expected only {allowed}"


def arn_or_empty(resource):
    if isinstance(resource, str):
        return resource
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        return resource["Fn::Sub"] if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"][0]
    return ""


def test_completion_events_only_with_our_source(template, statements):
    for statement in statements:
        if "events:PutEvents" in as_list(statement["Action"]):
            assert condition_keys(statement).get("events:source") == {"Ref": "EventSource"}, (
                f"{statement.get('Sid')}: events:PutEvents should require events:source = the EventSource parameter"
            )


def test_the_tag_keys_the_code_writes_fit_the_roles_limit(statements):
    """The create statements allow only tag keys matching aws:TagKeys; every
    key ownership_tags() writes must match, or creates fail with
    UnauthorizedOperation."""
    source = without_comments(read("src/mirroring/mod.rs"))
    body = re.search(r"fn ownership_tags\b.*?\n}\n", source, re.S)
    assert body, "ownership_tags() not found in src/mirroring/mod.rs"
    keys = {
        rust_str_const(source, name)
        for name in set(re.findall(r"\b(TAG_[A-Z_]+)\b", body.group(0)))
        if not name.endswith("_VALUE")
    }
    assert keys, "ownership_tags() writes no TAG_ constants"
    for statement in statements:
        patterns = condition_keys(statement).get("aws:TagKeys")
        for key in keys:
            if patterns:
                assert any(fnmatch.fnmatchcase(key, p) for p in as_list(patterns)), (
                    f"{statement.get('Sid')}: the code tags with {key}, which aws:TagKeys {patterns} does not allow"
                )
