"""The function's IAM role grants exactly the AWS actions the code calls (plus
the few the platform needs, named below), and every EC2 write is bound to the
ownership tag with this deployment's owner (the Owner parameter, or by default
the stack id: the function's OWNER), never to the fixed value earlier versions
wrote, except for the one statement that takes such resources over. The code side is read from
src/aws/*.rs, so a new SDK call without its permission (or a permission left
behind by a removed call) fails here, naming the action.

The role also backs the allow-lists (AllowedTargets, AllowedSources): with a
list, targets are created only on its destinations and sessions use only its
targets (or ours) and mirror only ENIs of its VPCs and subnets; with `*`,
anything. The last part of this file deploys the role both ways and asks a
small IAM evaluator what each call may do."""

import fnmatch
import functools
import os
import re

import pytest

from infra_support import (
    ROOT,
    SAMPLE_STACK_ID,
    as_list,
    code_actions,
    deployed,
    holds,
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

# The owner of this deployment: the value of the ownership tag on what it
# creates, and the only one its role lets it create, change or delete under.
# One expression, written out the same for the function's OWNER and for every
# ownership condition of the role (CloudFormation has no variables): the Owner
# parameter when it is set, else the stack id.
OWNER_PARAMETER = "Owner"
OWNER_CONDITION = "HasOwner"
STACK_ID = {"Ref": "AWS::StackId"}
OWNER = {"Fn::If": [OWNER_CONDITION, {"Ref": OWNER_PARAMETER}, STACK_ID]}
OWNER_TEXT = "!If [HasOwner, !Ref Owner, !Ref AWS::StackId]"
# A stack id as CloudFormation passes it (SAMPLE_STACK_ID, infra_support), for
# evaluating the expression.
# The fixed value every deployment of earlier versions tagged with. It may
# appear in the role only where a legacy resource is taken over: re-tagged
# with the owner (TAKEOVER_ACTION), its ownership key alone.
LEGACY_OWNER = "traffic-mirroring"
TAKEOVER_ACTION = "ec2:CreateTags"
TAKEOVER_RESOURCES = {"traffic-mirror-session", "traffic-mirror-filter", "traffic-mirror-target"}

# Granted although src/aws never calls them: the platform calls them with the
# function's role.
PLATFORM_ACTIONS = {
    # EC2 authorizes the TagSpecifications of a create call as ec2:CreateTags,
    # whether or not the code also calls it (the legacy takeover does).
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
    # With Tracing=Active, Lambda writes the function's trace segments with
    # its role (XRayPolicy, only under TracingActive: test_observability.py).
    "xray:PutTraceSegments": "X-Ray, Tracing=Active",
    "xray:PutTelemetryRecords": "X-Ray, Tracing=Active",
    # The hub of an organization (MemberAccountsPolicy, only under
    # HasMembers; test_organization.py): the tags of CreateResourceShare,
    # should RAM authorize them as tagging, as EC2 does TagSpecifications.
    "ram:TagResource": "tag-on-create (the tags of CreateResourceShare)",
}

# Called by the code, but by mirrorctl with the operator's credentials, never
# by the function: the role must not have them.
OPERATOR_ACTIONS = {
    "cloudformation:DescribeStackResource": "mirrorctl --stack: the stack's function",
    "lambda:GetFunctionConfiguration": "mirrorctl --stack: the function's settings (its environment)",
    "sts:GetCallerIdentity": "mirrorctl: who the operator is",
}

# Actions besides EC2's Describe* that may be granted on every resource:
# their service has no resource-level permissions.
ANY_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
    # The RAM share of the hub (MemberAccountsPolicy): conditioned on our tag
    # and on what may be shared where RAM has condition keys.
    "ram:CreateResourceShare": "RAM has no resource-level permissions for it (our tag in the request)",
    "ram:GetResourceShares": "RAM has no resource-level permissions for it",
    "ram:GetResourceShareAssociations": "RAM has no resource-level permissions for it",
}

# How a create call passes tags, by service: what a role's aws:RequestTag
# condition needs on every call of the action.
TAGS_IN_CALL = {"ec2": ".tag_specifications(", "ram": ".tags("}
# Tagging actions: authorized for the tags of a create (tag-on-create), not
# creates themselves.
TAG_ACTIONS = {"ec2:CreateTags", "ram:TagResource"}

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


@functools.lru_cache(maxsize=1)
def cached_template():
    return load_template()


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def statements(template):
    return role_statements(template)


@pytest.fixture(scope="module")
def ownership_key():
    return rust_str_const(read("src/domain/tags.rs"), "TAG_MANAGED_BY")


@pytest.fixture(scope="module")
def ownership_tag(ownership_key):
    """(tag key, the owner): what every create and delete must be bound to."""
    return ownership_key, OWNER


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
    """{"aws:RequestTag/k": value, ...} over all operators of the statement's
    Condition (over both branches when it is an Fn::If)."""
    keys = {}
    for condition in leaves(statement.get("Condition", {})):
        for operator, clauses in condition.items():
            for key, value in clauses.items():
                keys[key] = value
    return keys


def requires_tag(statement, kinds, tag):
    key, value = tag
    conditions = condition_keys(statement)
    return any(conditions.get(f"{kind}/{key}") in (value, [value]) for kind in kinds)


# The two ways the allow-lists deploy, for reading what a computed Resource
# (the lists turned into ARNs) names: `*`, and a list of every kind.
ANY_ALLOWED = {"AllowedTargets": "*", "AllowedSources": "*"}
NLB_ALLOWED = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/mon/50dc6c495c0c9188"
LISTS_ALLOWED = {
    "AllowedTargets": f"eni-0a1b2c3d4e5f60718, {NLB_ALLOWED},vpce-0b1b2c3d4e5f60718 ,tmt-0c1b2c3d4e5f60718",
    "AllowedSources": "vpc-0d1b2c3d4e5f60718, subnet-0e1b2c3d4e5f60718",
}
DEPLOYMENTS = {"any": ANY_ALLOWED, "lists": LISTS_ALLOWED}


def resources(statement):
    """The resources a statement may name, over both branches of an Fn::If;
    a computed list (Fn::Split of the allow-lists) as it deploys with each
    of DEPLOYMENTS."""
    found = []
    for leaf in (leaf for r in as_list(statement["Resource"]) for leaf in leaves(r)):
        if isinstance(leaf, str) or (isinstance(leaf, dict) and set(leaf) <= {"Fn::Sub", "Fn::GetAtt", "Ref"}):
            found.append(leaf)
        else:
            for parameters in DEPLOYMENTS.values():
                found.extend(as_list(deployed(leaf, cached_template(), parameters)))
    return found


def is_takeover(statement):
    """The legacy takeover: ec2:CreateTags on resources carrying the legacy
    value (a tag-on-create statement names ec2:CreateAction instead)."""
    return TAKEOVER_ACTION in as_list(statement["Action"]) and any(
        key.startswith(("aws:ResourceTag/", "ec2:ResourceTag/")) for key in condition_keys(statement)
    )


def values_in(value):
    """Every leaf value of a condition value (strings, intrinsic functions)."""
    if isinstance(value, list):
        return [leaf for v in value for leaf in values_in(v)]
    return leaves(value)


def evaluate(value, template, parameters):
    """The value CloudFormation would deploy for `value`, with `parameters`
    given at deployment and the rest at their defaults (infra_support)."""
    return deployed(value, template, parameters)


def ownership_conditions(statements, ownership_key):
    """[(Sid, condition key, value)] of every condition on the ownership tag
    that names the owner: all of them but the takeover's aws:ResourceTag (the
    legacy value it takes over)."""
    found = []
    for statement in statements:
        for key, value in condition_keys(statement).items():
            if not key.endswith("Tag/" + ownership_key):
                continue
            if is_takeover(statement) and key.startswith(("aws:ResourceTag/", "ec2:ResourceTag/")):
                continue
            found.append((statement.get("Sid", str(statement)), key, value))
    assert found, "no condition on the ownership tag found: the parser no longer sees them"
    return found


def function_env(template):
    return template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]


def test_the_owner_is_one_parameter_empty_by_default(template):
    """Owner is a String defaulting to empty, and HasOwner is true exactly when
    it is set: the expression then picks it, else the stack id."""
    parameter = template["Parameters"].get(OWNER_PARAMETER)
    assert parameter, f"no {OWNER_PARAMETER} parameter: the owner must be settable (the migration knob)"
    assert parameter["Type"] == "String" and parameter.get("Default") == "", (
        f"{OWNER_PARAMETER}: Type String, Default \"\" (the stack id)"
    )
    assert OWNER_CONDITION in template.get("Conditions", {}), f"no {OWNER_CONDITION} condition"
    assert not holds(OWNER_CONDITION, template, {}), f"{OWNER_CONDITION} must be false when {OWNER_PARAMETER} is empty"
    assert holds(OWNER_CONDITION, template, {OWNER_PARAMETER: "prod-mirroring"}), (
        f"{OWNER_CONDITION} must be true when {OWNER_PARAMETER} is set"
    )


def test_the_function_and_every_ownership_condition_use_one_owner_expression(template, statements, ownership_key):
    """The function tags with OWNER and the role binds to the owner: the two
    must be one value, or every create is denied (UnauthorizedOperation).
    Both are the same expression, written out the same everywhere."""
    env = function_env(template)
    assert env.get("OWNER") == OWNER, (
        f"{FUNCTION} must set OWNER to {OWNER_TEXT} (what the role's conditions name), not {env.get('OWNER')!r}"
    )
    for sid, key, value in ownership_conditions(statements, ownership_key):
        assert value == OWNER, f"{sid}: {key} is {value!r}; it must be the owner, {OWNER_TEXT}"


def test_the_stack_id_and_the_owner_parameter_appear_only_as_the_owner(template):
    """Nothing names the stack id or the Owner parameter outside the owner
    expression: a bare !Ref AWS::StackId left in a condition would ignore the
    parameter (denying every create once it is set)."""
    stray = []

    def walk(value, where):
        if value == OWNER:
            return
        if value in (STACK_ID, {"Ref": OWNER_PARAMETER}):
            stray.append(where)
        elif isinstance(value, dict):
            for key, v in value.items():
                walk(v, f"{where}.{key}")
        elif isinstance(value, list):
            for index, v in enumerate(value):
                walk(v, f"{where}[{index}]")
        elif isinstance(value, str) and re.search(r"\$\{(AWS::StackId|" + OWNER_PARAMETER + r")\}", value):
            stray.append(where)

    for section in ("Resources", "Outputs"):
        walk(template.get(section, {}), section)
    assert not stray, f"the stack id or {OWNER_PARAMETER} outside {OWNER_TEXT}: {stray}"


@pytest.mark.parametrize(
    "parameters, expected",
    [
        ({}, SAMPLE_STACK_ID),
        ({OWNER_PARAMETER: "prod-mirroring"}, "prod-mirroring"),
        (
            {OWNER_PARAMETER: "arn:aws:cloudformation:us-east-1:123456789012:stack/traffic-mirroring/0a1b2c3d-1111-4000-8000-000000000000"},
            "arn:aws:cloudformation:us-east-1:123456789012:stack/traffic-mirroring/0a1b2c3d-1111-4000-8000-000000000000",
        ),
    ],
    ids=["default: the stack id", "a name", "an old stack's id"],
)
def test_the_owner_is_the_stack_id_or_the_parameter(template, statements, ownership_key, parameters, expected):
    """Deployed, OWNER and every ownership condition are one value: the stack
    id by default, the Owner parameter's value when it is set."""
    assert evaluate(function_env(template)["OWNER"], template, parameters) == expected, "OWNER"
    for sid, key, value in ownership_conditions(statements, ownership_key):
        assert evaluate(value, template, parameters) == expected, f"{sid}: {key}"


def owner_pattern(template):
    pattern = template["Parameters"][OWNER_PARAMETER].get("AllowedPattern")
    assert pattern, f"{OWNER_PARAMETER} needs an AllowedPattern"
    return re.compile(pattern)


@pytest.mark.parametrize(
    "value",
    ["", "prod-mirroring", "a b", "x", "@", "team=net/ops:mirroring_1.2+", "x" * 256, SAMPLE_STACK_ID],
    ids=["empty", "a name", "inner space", "one letter", "one special", "every special", "256 long", "a stack id"],
)
def test_the_owner_pattern_admits_tag_values(template, value):
    assert owner_pattern(template).fullmatch(value), f"{OWNER_PARAMETER}'s AllowedPattern refuses {value!r}"


@pytest.mark.parametrize(
    "value, why",
    [
        (LEGACY_OWNER, "the legacy value every earlier version shared"),
        (" prod", "a leading space (the code trims OWNER, the role's conditions would not)"),
        ("prod ", "a trailing space (the code trims OWNER, the role's conditions would not)"),
        (" ", "only a space (the code would read no OWNER at all)"),
        ("semi;colon", "not an EC2 tag value character"),
        ("x" * 257, "longer than an EC2 tag value"),
    ],
    ids=["legacy", "leading space", "trailing space", "only a space", "semicolon", "257 long"],
)
def test_the_owner_pattern_refuses_what_the_code_or_ec2_would(template, value, why):
    assert not owner_pattern(template).fullmatch(value), f"{OWNER_PARAMETER}'s AllowedPattern admits {value!r}: {why}"


def test_the_owner_pattern_allows_the_characters_the_code_allows(template):
    """The pattern's character set and length are the code's check_owner()
    (src/config/mod.rs), for ASCII: a value one admits and the other refuses
    would fail at deployment or at start-up."""
    source = without_comments(read("src/config/mod.rs"))
    body = re.search(r"fn check_owner\b.*?\n}\n", source, re.S)
    assert body, "check_owner() not found in src/config/mod.rs"
    specials = re.search(r"\"([^\"]*)\"\.contains\(c\)", body.group(0))
    limit = re.search(r"chars\(\)\.count\(\)\s*>\s*(\d+)", body.group(0))
    assert specials and limit, "the parser no longer finds check_owner()'s characters and length"
    allowed = {chr(c) for c in range(32, 127) if chr(c).isalnum() or chr(c) in specials.group(1)}
    pattern = owner_pattern(template)
    for c in map(chr, range(32, 127)):
        value = f"a{c}a"
        assert bool(pattern.fullmatch(value)) == (c in allowed), (
            f"{OWNER_PARAMETER}'s AllowedPattern {'admits' if c not in allowed else 'refuses'} {c!r}; "
            f"src/config/mod.rs allows letters, digits and {specials.group(1)!r}"
        )
    longest = int(limit.group(1))
    assert pattern.fullmatch("a" * longest) and not pattern.fullmatch("a" * (longest + 1)), (
        f"{OWNER_PARAMETER}'s AllowedPattern should admit at most {longest} characters, as src/config/mod.rs does"
    )


def test_the_legacy_value_is_the_one_the_code_knows():
    """The takeover statement names the value earlier versions wrote; the code
    must still know it (it takes over only resources tagged with it)."""
    found = {}
    for folder in ("src", os.path.join("src", "domain"), os.path.join("src", "mirroring"), os.path.join("src", "aws")):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".rs"):
                source = without_comments(read(os.path.join(folder, name))).split("#[cfg(test)]", 1)[0]
                for const, value in re.findall(r"\bconst\s+(\w+)\s*:\s*&str\s*=\s*\"([^\"]*)\"", source):
                    if "LEGACY" in const or "MANAGED_BY_VALUE" in const:
                        found[f"{folder}/{name}: {const}"] = value
    assert found, (
        "no `const ...LEGACY...: &str` (or TAG_MANAGED_BY_VALUE) in src/: the parser no longer finds the legacy "
        f"ownership value the takeover statement names ({LEGACY_OWNER!r})"
    )
    assert LEGACY_OWNER in found.values(), f"the role takes over {LEGACY_OWNER!r}; the code's legacy constants are {found}"


def test_the_parser_sees_the_calls_the_code_makes():
    """A self-check of the source parser against calls that must be there."""
    actions = code_actions()
    for expected in ("ec2:CreateTrafficMirrorSession", "dynamodb:UpdateItem", "dynamodb:Query", "events:PutEvents"):
        assert expected in actions, f"the parser no longer finds {expected} in src/aws: fix tests/infra/infra_support.py"
    assert snake_to_pascal("describe_traffic_mirror_targets") == "DescribeTrafficMirrorTargets"
    assert pascal_to_kebab("TrafficMirrorFilterRule") == "traffic-mirror-filter-rule"


def test_the_role_grants_every_action_the_code_calls(statements):
    granted = granted_actions(statements)
    missing = {
        action: files for action, files in code_actions().items()
        if action not in granted and action not in OPERATOR_ACTIONS
    }
    assert not missing, "the code calls actions the role does not grant: " + "; ".join(
        f"{action} (called in {', '.join(sorted(set(files)))})" for action, files in sorted(missing.items())
    )


def test_the_role_grants_nothing_the_code_does_not_call(statements):
    extra = granted_actions(statements) - set(code_actions()) - set(PLATFORM_ACTIONS)
    assert not extra, (
        "the role grants actions nothing in src/aws calls: " + ", ".join(sorted(extra))
        + " (remove them, or add them to PLATFORM_ACTIONS with the reason the platform needs them)"
    )


def test_the_role_grants_none_of_the_operators_actions(statements):
    """mirrorctl's own calls are made with the operator's credentials; the
    function never needs them."""
    granted = granted_actions(statements) & set(OPERATOR_ACTIONS)
    assert not granted, "the role grants what only mirrorctl calls: " + ", ".join(
        f"{action} ({OPERATOR_ACTIONS[action]})" for action in sorted(granted)
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
                    assert tagged, (
                        f"{sid}: {action} may create a {kind} without aws:RequestTag/{ownership_tag[0]} = "
                        f"the owner ({OWNER_TEXT})"
                    )
                    tag_keys = condition_keys(statement).get("aws:TagKeys")
                    assert tag_keys, f"{sid}: {action} should limit aws:TagKeys to ours"
                else:
                    assert requires_tag(statement, OWNERSHIP_KEYS_RESOURCE, ownership_tag), (
                        f"{sid}: {action} may use any {kind}; require aws:ResourceTag/{ownership_tag[0]} = the owner "
                        f"({OWNER_TEXT}) or add the pair to UNTAGGED_CREATE_RESOURCES with a reason"
                    )


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
@pytest.mark.parametrize("action, kind", sorted(UNTAGGED_CREATE_RESOURCES))
def test_resources_of_others_are_usable_without_our_tag(template, ownership_key, deployment, action, kind):
    """The other side of the exceptions above: each is granted, as deployed
    with the allow-lists `*` or set, by a statement that asks for no tag of
    ours (at most for an allowed id or place, as the lists say), or creating
    on someone else's resource (a caller's filter or target, the appliance's
    load balancer) fails with UnauthorizedOperation."""
    granted = [
        s for s in deployed_statements(template, DEPLOYMENTS[deployment])
        if action in as_list(s["Action"]) and kind in {resource_type(r) for r in as_list(s["Resource"])}
    ]
    assert granted, f"{action} is not granted on {kind} ({UNTAGGED_CREATE_RESOURCES[(action, kind)]})"
    untagged = [s for s in granted if not any(key.endswith("Tag/" + ownership_key) for key in condition_keys(s))]
    assert untagged, (
        f"{action} on {kind} is granted only for resources tagged as ours ({[s.get('Sid') for s in granted]}): "
        f"{UNTAGGED_CREATE_RESOURCES[(action, kind)]}, so it carries no tag of ours"
    )
    if deployment == "any":
        assert any(not s.get("Condition") for s in untagged), (
            f"with the allow-lists `*`, {action} on {kind} should be granted without a condition"
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
        if action.startswith("ec2:") and action not in TAG_ACTIONS
    }
    untagged = required - tagged_in_code
    assert not untagged, f"the role requires our tag on {sorted(untagged)}, but the code does not pass TagSpecifications there"
    create_actions = set()
    for statement in statements:
        if "ec2:CreateTags" in as_list(statement["Action"]) and not is_takeover(statement):
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
        if action not in TAG_ACTIONS
    }


def test_every_call_of_a_tag_conditioned_create_sends_the_tags(statements):
    """Not just one call: IAM evaluates aws:RequestTag on every call of the
    action, a DryRun one included (a dry run without the tags the real call
    carries answers UnauthorizedOperation, not DryRunOperation)."""
    required = tag_conditioned_creates(statements)
    unknown = {action.split(":")[0] for action in required} - set(TAGS_IN_CALL)
    assert not unknown, f"the role requires tags on creates of {sorted(unknown)}: say how they pass tags in TAGS_IN_CALL"
    bare = {}
    for service, calls in sdk_calls().values():
        for operation, chain in calls:
            action = f"{service}:{snake_to_pascal(operation)}"
            if action in required and TAGS_IN_CALL[service] not in chain:
                kind = "a dry run" if re.search(r"\.dry_run\s*\(\s*true\s*\)", chain) else "a call"
                bare.setdefault(action, []).append(kind)
    assert not bare, "; ".join(
        f"{action}: {', '.join(kinds)} without its tags ({TAGS_IN_CALL[action.split(':')[0]]}...)), which the role requires "
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


def test_every_ec2_delete_needs_the_ownership_tag(template, statements, ownership_tag):
    """All but the unapproved-session deletes, which exist only with
    RemoveUnapprovedMirrors (checked below)."""
    unapproved = [id(s) for s in unapproved_mirror_statements(template)]
    deletes_seen = False
    for statement in statements:
        if id(statement) in unapproved:
            continue
        deletes = [a for a in as_list(statement["Action"]) if a.startswith("ec2:Delete")]
        if deletes:
            deletes_seen = True
            assert requires_tag(statement, OWNERSHIP_KEYS_RESOURCE, ownership_tag), (
                f"{statement.get('Sid')}: {deletes} must require aws:ResourceTag/{ownership_tag[0]} = "
                f"the owner ({OWNER_TEXT}), not {condition_keys(statement).get('aws:ResourceTag/' + ownership_tag[0])!r}"
            )
    assert deletes_seen, "the role grants no ec2:Delete*: the parser no longer sees the delete statement"


def test_every_tag_condition_names_the_owner(statements, ownership_key):
    """Creates (aws:RequestTag) and deletes and rules (aws:ResourceTag) are
    bound to this deployment's owner: with the legacy value, every stack of
    the product in the account could delete every other's mirrors."""
    for sid, key, value in ownership_conditions(statements, ownership_key):
        assert LEGACY_OWNER not in values_in(value), f"{sid}: {key} names the legacy value {LEGACY_OWNER!r}"
        assert value == OWNER, f"{sid}: {key} is {value!r}; it must be the owner, {OWNER_TEXT}"


def test_only_the_takeover_names_the_legacy_value(statements):
    """The fixed value of earlier versions grants nothing but re-tagging a
    resource that carries it: exactly one statement names it, as the
    resource's current tag."""
    naming = [
        (statement, key)
        for statement in statements
        for key, value in condition_keys(statement).items()
        if LEGACY_OWNER in values_in(value)
    ]
    assert naming, f"no statement takes over resources tagged {LEGACY_OWNER!r} (the legacy takeover)"
    sids = sorted({s.get("Sid", str(s)) for s, _ in naming})
    assert len(sids) == 1, f"only the takeover may name the legacy value {LEGACY_OWNER!r}; these do: {sids}"
    for statement, key in naming:
        assert is_takeover(statement), f"{statement.get('Sid')}: names {LEGACY_OWNER!r} but is not the takeover"
        assert key.startswith("aws:ResourceTag/"), (
            f"{statement.get('Sid')}: the legacy value belongs in aws:ResourceTag (what the resource carries), not {key}"
        )


def test_the_takeover_only_retags_legacy_resources_to_the_owner(statements, ownership_key):
    """ec2:CreateTags after a create is allowed only to replace the legacy
    value of the ownership tag with the owner: no other key, no other value,
    no resource carrying anything but the legacy value, and only targets,
    filters and sessions."""
    takeovers = [s for s in statements if is_takeover(s)]
    assert len(takeovers) == 1, f"expected one takeover statement, found {[s.get('Sid') for s in takeovers]}"
    (statement,) = takeovers
    sid = statement.get("Sid")
    assert as_list(statement["Action"]) == [TAKEOVER_ACTION], f"{sid}: the takeover grants {TAKEOVER_ACTION} alone"
    kinds = {resource_type(r) for r in resources(statement)}
    assert kinds == TAKEOVER_RESOURCES, f"{sid}: takes over {sorted(kinds)}, expected {sorted(TAKEOVER_RESOURCES)}"
    condition = statement["Condition"]
    assert condition.get("StringEquals") == {
        f"aws:ResourceTag/{ownership_key}": LEGACY_OWNER,
        f"aws:RequestTag/{ownership_key}": OWNER,
    }, f"{sid}: StringEquals must be exactly: the resource tagged {LEGACY_OWNER!r}, the request tagging the owner"
    assert condition.get("ForAllValues:StringEquals") == {"aws:TagKeys": [ownership_key]}, (
        f"{sid}: limit aws:TagKeys (ForAllValues:StringEquals) to [{ownership_key!r}]: the takeover sets no other tag"
    )
    assert set(condition) == {"StringEquals", "ForAllValues:StringEquals"}, f"{sid}: unexpected conditions {sorted(condition)}"


def test_the_takeover_is_granted_because_the_code_takes_over(statements):
    """ec2:CreateTags is a platform action (tag-on-create), so the check that
    nothing is granted beyond the code's calls would not notice a takeover
    grant outliving the code's create_tags call."""
    assert any(is_takeover(s) for s in statements), "no takeover statement"
    assert TAKEOVER_ACTION in code_actions(), (
        f"the role takes over legacy resources ({TAKEOVER_ACTION}), but nothing in src/aws calls create_tags"
    )


def test_only_describe_calls_use_any_resource(statements):
    for statement in statements:
        if "*" in resources(statement):
            others = [
                a for a in as_list(statement["Action"])
                if not a.split(":")[1].startswith("Describe") and a not in ANY_RESOURCE_ACTIONS
            ]
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
    key ownership_tags() and accountability_tags() write must match, or
    creates fail with UnauthorizedOperation. The keys are named once, in
    src/domain/tags.rs."""
    source = without_comments(read("src/mirroring/mod.rs"))
    tags = without_comments(read("src/domain/tags.rs"))
    keys = set()
    for function in ("ownership_tags", "accountability_tags"):
        body = re.search(r"fn " + function + r"\b.*?\n}\n", source, re.S)
        assert body, f"{function}() not found in src/mirroring/mod.rs"
        keys |= {
            rust_str_const(tags, name)
            for name in set(re.findall(r"\b(TAG_[A-Z_]+)\b", body.group(0)))
            if not name.endswith("_VALUE") and not name.endswith("_CHARS")
        }
    assert "traffic-mirroring:requested-by" in keys, f"the parser misses who-asked tags: {keys}"
    for statement in statements:
        if is_takeover(statement):
            continue  # re-tags the ownership key alone (checked above)
        patterns = condition_keys(statement).get("aws:TagKeys")
        for key in keys:
            if patterns:
                assert any(fnmatch.fnmatchcase(key, p) for p in as_list(patterns)), (
                    f"{statement.get('Sid')}: the code tags with {key}, which aws:TagKeys {patterns} does not allow"
                )


# ---------------------------------------------------------------- the role as deployed

# RemoveUnapprovedMirrors=true lets the sweep delete sessions that are not
# ours, and nothing else: a policy of its own under this condition.
UNAPPROVED_PARAMETER = "RemoveUnapprovedMirrors"
UNAPPROVED_CONDITION = "RemoveUnapprovedMirrorsOn"


def role_policies(template):
    """[(policy name, its CloudFormation condition or None, document)] of
    every policy of the function's role."""
    role = template["Resources"][ROLE]
    found = [(p["PolicyName"], None, p["PolicyDocument"]) for p in role["Properties"].get("Policies", [])]
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for name, policy in resources_of_type(template, kind).items():
            if refers_to(policy["Properties"].get("Roles", []), ROLE):
                found.append((name, policy.get("Condition"), policy["Properties"]["PolicyDocument"]))
    return found


def unapproved_mirror_statements(template):
    return [
        statement
        for _, condition, document in role_policies(template) if condition == UNAPPROVED_CONDITION
        for statement in as_list(document["Statement"])
    ]


def deployed_statements(template, parameters):
    """The role's statements as CloudFormation deploys them with
    `parameters`: the policies whose condition holds, every intrinsic
    function evaluated."""
    return [
        deployed(statement, template, parameters)
        for _, condition, document in role_policies(template)
        if condition is None or holds(condition, template, parameters)
        for statement in as_list(document["Statement"])
    ]


# A small IAM evaluator: Allow statements only (the role has no others), the
# resource matched segment by segment, the condition operators the role uses.

def wildcard(pattern, text):
    """IAM's * and ? within one string."""
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), text, re.S) is not None


def arn_matches(pattern, arn):
    """Resource (or ArnLike) matching: "*" matches anything; otherwise each
    of the first five colon-separated segments on its own, the rest (the
    resource, colons and all) as one."""
    if pattern == "*":
        return True
    patterns, parts = pattern.split(":", 5), arn.split(":", 5)
    return len(patterns) == len(parts) == 6 and all(wildcard(p, a) for p, a in zip(patterns, parts))


OPERATORS = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringLike": wildcard,
    "ArnEquals": arn_matches,
    "ArnLike": arn_matches,
}


def condition_holds(condition, context):
    for operator, clauses in condition.items():
        qualifier, _, base = operator.rpartition(":")
        # ...IfExists: the key, when the request has it, must match; absent,
        # the clause holds (the RAM statements of the hub's
        # MemberAccountsPolicy).
        if_exists = base.endswith("IfExists")
        base = base[: -len("IfExists")] if if_exists else base
        assert base in OPERATORS and qualifier in ("", "ForAllValues", "ForAnyValue"), f"the evaluator does not know {operator}"
        test = OPERATORS[base]
        for key, expected in clauses.items():
            expected = as_list(expected)
            present = key in context
            if if_exists and not present:
                continue
            actual = as_list(context.get(key, []))
            one = lambda value: any(test(e, value) for e in expected)
            if qualifier == "ForAllValues":
                ok = all(map(one, actual))
            elif qualifier == "ForAnyValue":
                ok = any(map(one, actual))
            else:
                ok = present and one(context[key])
            if not ok:
                return False
    return True


def allowed(statements, action, arn, context):
    return any(
        action in as_list(s["Action"])
        and any(arn_matches(r, arn) for r in as_list(s["Resource"]))
        and condition_holds(s.get("Condition", {}), context)
        for s in statements
    )


def call_allowed(statements, action, authorizations):
    """A call is allowed when every resource it touches is: [(ARN, context)]."""
    return all(allowed(statements, action, arn, context) for arn, context in authorizations)


ACCOUNT_ARN = "arn:aws:ec2:us-east-1:123456789012"


def ec2_arn(kind, ident):
    return f"{ACCOUNT_ARN}:{kind}/{ident}"


# The destinations, targets and places of the scenarios: those LISTS_ALLOWED
# names, and others.
ENI, OTHER_ENI = "eni-0a1b2c3d4e5f60718", "eni-0fedcba9876543210"
NLB, OTHER_NLB = NLB_ALLOWED, "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/other/0123456789abcdef"
VPCE, OTHER_VPCE = "vpce-0b1b2c3d4e5f60718", "vpce-0fedcba9876543210"
TMT, OTHER_TMT = "tmt-0c1b2c3d4e5f60718", "tmt-0fedcba9876543210"
VPC, OTHER_VPC = "vpc-0d1b2c3d4e5f60718", "vpc-0fedcba9876543210"
SUBNET, OTHER_SUBNET = "subnet-0e1b2c3d4e5f60718", "subnet-0fedcba9876543210"


def new_resource(kind, tags):
    """A resource a create makes, as IAM sees it: a wildcard id, the tags in
    the request."""
    return ec2_arn(kind, "*"), {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}


def create_target(destination, tags):
    arn = destination if destination.startswith("arn:") else ec2_arn(
        "network-interface" if destination.startswith("eni-") else "vpc-endpoint", destination
    )
    return [new_resource("traffic-mirror-target", tags), (arn, {})]


def create_session(source_vpc, source_subnet, target, target_owner, tags, filter_owner=None):
    target_tags = {} if target_owner is None else {"traffic-mirroring:managed-by": target_owner}
    filter_tags = {} if filter_owner is None else {"traffic-mirroring:managed-by": filter_owner}
    return [
        new_resource("traffic-mirror-session", tags),
        (ec2_arn("network-interface", "eni-0123456789abcdef0"),
         {"ec2:Vpc": ec2_arn("vpc", source_vpc), "ec2:Subnet": ec2_arn("subnet", source_subnet)}),
        (ec2_arn("traffic-mirror-target", target), {f"aws:ResourceTag/{k}": v for k, v in target_tags.items()}),
        (ec2_arn("traffic-mirror-filter", "tmf-0123456789abcdef0"), {f"aws:ResourceTag/{k}": v for k, v in filter_tags.items()}),
    ]


@pytest.fixture(scope="module")
def our_tags(ownership_key):
    """The tags the code writes on what it creates (with the sample owner,
    the stack id): the ownership key with the owner, and one more of ours."""
    return {ownership_key: SAMPLE_STACK_ID, "traffic-mirroring:action-id": "a-1"}


@pytest.mark.parametrize(
    "deployment, destination, expected",
    [
        ("any", ENI, True), ("any", OTHER_ENI, True), ("any", NLB, True), ("any", OTHER_NLB, True),
        ("any", VPCE, True), ("any", OTHER_VPCE, True),
        ("lists", ENI, True), ("lists", OTHER_ENI, False), ("lists", NLB, True), ("lists", OTHER_NLB, False),
        ("lists", VPCE, True), ("lists", OTHER_VPCE, False),
    ],
)
def test_targets_are_created_only_on_allowed_destinations(template, our_tags, deployment, destination, expected):
    """AllowedTargets `*`: a target may point at any ENI, NLB or GWLB
    endpoint; a list: only at those it names."""
    statements = deployed_statements(template, DEPLOYMENTS[deployment])
    assert call_allowed(statements, "ec2:CreateTrafficMirrorTarget", create_target(destination, our_tags)) == expected, (
        f"AllowedTargets={DEPLOYMENTS[deployment]['AllowedTargets']!r}: a target on {destination} should be "
        f"{'allowed' if expected else 'refused'} by the role"
    )


def test_a_target_is_never_created_untagged(template, ownership_key):
    for parameters in DEPLOYMENTS.values():
        statements = deployed_statements(template, parameters)
        assert not call_allowed(statements, "ec2:CreateTrafficMirrorTarget", create_target(ENI, {})), "untagged"
        assert not call_allowed(
            statements, "ec2:CreateTrafficMirrorTarget", create_target(ENI, {ownership_key: "someone-else"})
        ), "tagged with another owner"


@pytest.mark.parametrize(
    "deployment, target, owner, expected",
    [
        ("any", TMT, None, True), ("any", OTHER_TMT, None, True), ("any", OTHER_TMT, "someone-else", True),
        ("lists", TMT, None, True), ("lists", OTHER_TMT, SAMPLE_STACK_ID, True),
        ("lists", OTHER_TMT, None, False), ("lists", OTHER_TMT, "someone-else", False),
        # A listed ENI's id as a target id is not a listed target.
        ("lists", ENI.replace("eni-", "tmt-"), None, False),
    ],
    ids=["any: listed", "any: anyone's", "any: another deployment's", "lists: listed", "lists: ours",
         "lists: unlisted", "lists: another deployment's", "lists: an ENI's id as a target"],
)
def test_sessions_use_only_allowed_or_own_targets(template, our_tags, deployment, target, owner, expected):
    """AllowedTargets `*`: any target; a list: a tmt- id it names, or a
    target of ours (which CreateTrafficMirrorTarget made on an allowed
    destination)."""
    statements = deployed_statements(template, DEPLOYMENTS[deployment])
    call = create_session(VPC, SUBNET, target, owner, our_tags)
    assert call_allowed(statements, "ec2:CreateTrafficMirrorSession", call) == expected, (
        f"AllowedTargets={DEPLOYMENTS[deployment]['AllowedTargets']!r}: a session to {target} "
        f"(owner {owner!r}) should be {'allowed' if expected else 'refused'}"
    )


@pytest.mark.parametrize(
    "deployment, vpc, subnet, expected",
    [
        ("any", OTHER_VPC, OTHER_SUBNET, True),
        ("lists", VPC, OTHER_SUBNET, True), ("lists", OTHER_VPC, SUBNET, True), ("lists", OTHER_VPC, OTHER_SUBNET, False),
    ],
    ids=["any: anywhere", "lists: an allowed VPC", "lists: an allowed subnet", "lists: elsewhere"],
)
def test_sessions_mirror_only_enis_of_allowed_sources(template, our_tags, deployment, vpc, subnet, expected):
    """AllowedSources `*`: any ENI; a list: an ENI in one of its VPCs or
    subnets (ec2:Vpc, ec2:Subnet of the source ENI)."""
    statements = deployed_statements(template, DEPLOYMENTS[deployment])
    call = create_session(vpc, subnet, TMT, None, our_tags)
    assert call_allowed(statements, "ec2:CreateTrafficMirrorSession", call) == expected, (
        f"AllowedSources={DEPLOYMENTS[deployment]['AllowedSources']!r}: an ENI in {vpc}/{subnet} should be "
        f"{'allowed' if expected else 'refused'} as a source"
    )


@pytest.mark.parametrize(
    "targets, allowed_ones, refused_ones",
    [
        (NLB, [NLB], [OTHER_NLB, ENI]),
        (f"{NLB},{ENI}", [NLB, ENI], [OTHER_NLB, VPCE]),
        (f"{ENI},{OTHER_NLB}, {NLB}", [ENI, OTHER_NLB, NLB], [VPCE, OTHER_ENI]),
        (f"{VPCE}", [VPCE], [NLB, ENI]),
        (f"{TMT}", [], [NLB, ENI, VPCE]),
        ("arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:123456789012:loadbalancer/net/a-b/0123456789abcdef",
         ["arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:123456789012:loadbalancer/net/a-b/0123456789abcdef"], [NLB]),
    ],
    ids=["one NLB", "NLB first", "NLBs after ENIs", "an endpoint", "target ids only", "another partition"],
)
def test_every_shape_of_list_limits_target_creates_to_it(template, our_tags, targets, allowed_ones, refused_ones):
    """The list is turned into ARNs with Fn::Join and Fn::Split alone: an
    NLB ARN anywhere in it (first, last, several) stays whole."""
    statements = deployed_statements(template, {**LISTS_ALLOWED, "AllowedTargets": targets})
    for destination in allowed_ones + refused_ones:
        expected = destination in allowed_ones
        assert call_allowed(statements, "ec2:CreateTrafficMirrorTarget", create_target(destination, our_tags)) == expected, (
            f"AllowedTargets={targets!r}: a target on {destination} should be {'allowed' if expected else 'refused'}"
        )


ARN = re.compile(r"arn:[a-z*-]+:[a-z0-9*-]+:[a-z0-9*-]*:[0-9*]*:\S+")


@pytest.mark.parametrize("parameters", [
    ANY_ALLOWED, LISTS_ALLOWED,
    {"AllowedTargets": NLB, "AllowedSources": "vpc-0a1b2c3d"},
    {"AllowedTargets": " eni-0a1b2c3d , eni-0b1b2c3d", "AllowedSources": " subnet-0a1b2c3d "},
], ids=["any", "lists", "one NLB, one VPC", "spaces"])
def test_every_resource_and_arn_condition_is_a_valid_arn(template, parameters):
    """IAM refuses a policy whose Resource (or Arn* condition value) is not
    an ARN or "*": an item of the wrong kind must still make a valid ARN,
    and no list may leave an empty entry or a space in one."""
    for statement in deployed_statements(template, parameters):
        sid = statement.get("Sid")
        for resource in as_list(statement["Resource"]):
            stack_resource = re.match(r"(\w+)\.Arn(/\S*)?$", resource)
            if stack_resource and stack_resource.group(1) in template["Resources"]:
                continue  # an ARN of the stack's own (!GetAtt X.Arn)
            assert resource == "*" or ARN.fullmatch(resource), (
                f"{sid}: Resource {resource!r} is not an ARN (with {parameters})"
            )
        for operator, clauses in statement.get("Condition", {}).items():
            if operator.endswith(("ArnLike", "ArnEquals")):
                for key, values in clauses.items():
                    for value in as_list(values):
                        assert ARN.fullmatch(value), f"{sid}: {key} value {value!r} is not an ARN (with {parameters})"


def test_the_allow_lists_reach_the_role_only_through_their_conditions(template):
    """AnyTarget and AnySource are `*` said explicitly: true exactly for
    `*`, so that a list, even one naming a single id, limits the role."""
    for condition, parameter in (("AnyTarget", "AllowedTargets"), ("AnySource", "AllowedSources")):
        assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": parameter}, "*"]}, condition
        assert holds(condition, template, {**LISTS_ALLOWED, parameter: "*"})
        assert not holds(condition, template, LISTS_ALLOWED)


def test_the_role_can_see_every_session_and_target_in_the_account(template):
    """Every wiretap in the account is seen: the sweep lists all sessions,
    targets and filters, whoever made them."""
    for parameters in (ANY_ALLOWED, LISTS_ALLOWED):
        statements = deployed_statements(template, parameters)
        for action in ("ec2:DescribeTrafficMirrorSessions", "ec2:DescribeTrafficMirrorTargets", "ec2:DescribeTrafficMirrorFilters"):
            assert any(
                action in as_list(s["Action"]) and as_list(s["Resource"]) == ["*"] and not s.get("Condition")
                for s in statements
            ), f"{action} must be granted on every resource without a condition"


def test_unapproved_sessions_may_be_deleted_only_with_remove_unapproved_mirrors(template):
    """The one exception to "deletes need our tag": DeleteTrafficMirrorSession
    on any session, in a policy of its own that exists only when
    RemoveUnapprovedMirrors is "true" ("false" by default). Filters and
    targets of others are never deletable."""
    parameter = template["Parameters"][UNAPPROVED_PARAMETER]
    assert parameter["Type"] == "String" and sorted(parameter["AllowedValues"]) == ["false", "true"]
    assert parameter["Default"] == "false", f"{UNAPPROVED_PARAMETER} is off by default"
    assert template["Conditions"][UNAPPROVED_CONDITION] == {"Fn::Equals": [{"Ref": UNAPPROVED_PARAMETER}, "true"]}
    (statement,) = unapproved_mirror_statements(template)
    assert as_list(statement["Action"]) == ["ec2:DeleteTrafficMirrorSession"], "sessions only"
    assert {resource_type(r) for r in resources(statement)} == {"traffic-mirror-session"}
    foreign = {"aws:ResourceTag/traffic-mirroring:managed-by": "someone-else"}
    untagged = {}
    for value, expected in (("false", False), ("true", True)):
        statements = deployed_statements(template, {**LISTS_ALLOWED, UNAPPROVED_PARAMETER: value})
        for context in (foreign, untagged):
            assert allowed(statements, "ec2:DeleteTrafficMirrorSession", ec2_arn("traffic-mirror-session", "tms-0123456789abcdef0"), context) == expected, (
                f"{UNAPPROVED_PARAMETER}={value}: deleting a session not ours should be {'allowed' if expected else 'refused'}"
            )
            for action, kind in (("ec2:DeleteTrafficMirrorFilter", "traffic-mirror-filter"), ("ec2:DeleteTrafficMirrorTarget", "traffic-mirror-target")):
                assert not allowed(statements, action, ec2_arn(kind, "x-0123456789abcdef0"), context), (
                    f"{UNAPPROVED_PARAMETER}={value}: {action} of a resource not ours must be refused"
                )
        ours = {"aws:ResourceTag/traffic-mirroring:managed-by": SAMPLE_STACK_ID}
        assert allowed(statements, "ec2:DeleteTrafficMirrorSession", ec2_arn("traffic-mirror-session", "tms-0123456789abcdef0"), ours)
