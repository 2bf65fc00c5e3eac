"""The member account's stack of an organization (#25), infra/member.yaml: it
passes cfn-lint and checkov as the hub's template does; its role trusts the
hub function's role and nothing else, and lets it do in the member account
exactly what the hub's FunctionRole lets it do in the hub account, every
mutating EC2 call bound to the hub's owner the same way; and its rules
forward to the hub's bus exactly the events the hub's rules act on."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from infra_support import (
    assert_checkov_skips_have_reasons,
    assert_ignored_cfn_lint_rules_explained,
    MEMBER_TEMPLATE,
    as_list,
    deployed,
    holds,
    leaves,
    load_template,
    refers_to,
    resource_type,
    resources_of_type,
)
from test_iam import allowed, condition_holds, condition_keys, role_statements

ROLE = "MemberRole"
UNAPPROVED_POLICY = "UnapprovedMirrorsPolicy"
FORWARD_ROLE = "ForwardEventsRole"
FAILURE_QUEUE = "ForwardFailureQueue"
OWNER = {"Ref": "Owner"}
OWNER_KEY = "traffic-mirroring:managed-by"

# A member deployment as the tests see it: the member account, and the hub's
# account and role.
MEMBER_ACCOUNT = "210987654321"
HUB_ACCOUNT = "123456789012"
HUB_ROLE = f"arn:aws:iam::{HUB_ACCOUNT}:role/traffic-mirroring-FunctionRole-ABCDEF123456"
SAMPLE_OWNER = "arn:aws:cloudformation:us-east-1:123456789012:stack/traffic-mirroring/1c2fa620-0000-4000-8000-000000000000"
REQUIRED = {"HubAccountId": HUB_ACCOUNT, "HubFunctionRoleArn": HUB_ROLE, "Owner": SAMPLE_OWNER, "AWS::AccountId": MEMBER_ACCOUNT}
HUB_BUS = f"arn:aws:events:us-east-1:{HUB_ACCOUNT}:event-bus/default"

# (EC2 create action, resource type) pairs the member role allows without an
# ownership-tag condition, each because the resource is not ours to tag (the
# hub's UNTAGGED_CREATE_RESOURCES, less the destinations a target made here
# may not point at: targets on ENIs and NLBs are the hub's, shared).
UNTAGGED_CREATE_RESOURCES = {
    ("ec2:CreateTrafficMirrorTarget", "vpc-endpoint"): "the appliance's Gateway Load Balancer endpoint in this account",
    ("ec2:CreateTrafficMirrorSession", "network-interface"): "the source ENI is the workload's",
    ("ec2:CreateTrafficMirrorSession", "traffic-mirror-filter"): "the caller may name an existing filter",
    ("ec2:CreateTrafficMirrorFilterRule", "traffic-mirror-filter-rule"): "a new rule carries no tags",
    # Only the hub account's (checked below): shared through RAM, its tags
    # invisible to IAM here.
    ("ec2:CreateTrafficMirrorSession", "traffic-mirror-target"): "the hub's targets, shared with this account",
}


@pytest.fixture(scope="module")
def member():
    return load_template(MEMBER_TEMPLATE)


@pytest.fixture(scope="module")
def hub():
    return load_template()


def member_policies(member):
    """[(name, CloudFormation condition or None, document)] of the member role."""
    role = member["Resources"][ROLE]
    found = [(p["PolicyName"], None, p["PolicyDocument"]) for p in role["Properties"]["Policies"]]
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for name, policy in resources_of_type(member, kind).items():
            if refers_to(policy["Properties"].get("Roles", []), ROLE):
                found.append((name, policy.get("Condition"), policy["Properties"]["PolicyDocument"]))
    return found


def member_statements(member):
    statements = [s for _, _, document in member_policies(member) for s in as_list(document["Statement"])]
    assert statements, f"{ROLE} has no statements"
    for statement in statements:
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{statement.get('Sid')}: name actions one by one, not {action}"
    return statements


def deployed_member_statements(member, parameters):
    return [
        deployed(statement, member, {**REQUIRED, **parameters})
        for _, condition, document in member_policies(member)
        if condition is None or holds(condition, member, {**REQUIRED, **parameters})
        for statement in as_list(document["Statement"])
    ]


def arn_texts(statement):
    """The Resource ARNs of a statement as written (Sub strings), over Fn::If."""
    found = []
    for resource in as_list(statement["Resource"]):
        for leaf in leaves(resource):
            if isinstance(leaf, dict) and "Fn::Sub" in leaf:
                found.append(leaf["Fn::Sub"] if isinstance(leaf["Fn::Sub"], str) else leaf["Fn::Sub"][0])
            else:
                found.append(leaf)
    return found


def requires(statement, kind, value=OWNER):
    return condition_keys(statement).get(f"{kind}/{OWNER_KEY}") == value


# ---------------------------------------------------------------- the checks scripts/test.sh runs on the hub

def tool(name):
    """cfn-lint or checkov of the infra virtualenv (beside this Python), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    found = beside if os.path.exists(beside) else shutil.which(name)
    assert found, f"{name} not found beside {sys.executable} nor on PATH: run the tests with the infra venv (scripts/common.sh setup_infra_checks)"
    return found


def test_cfn_lint_passes_every_level():
    """As scripts/test.sh runs it on infra/template.yaml: errors, warnings and
    informational findings all fail."""
    run = subprocess.run([tool("cfn-lint"), "--include-checks", "I", "--", MEMBER_TEMPLATE], capture_output=True, text=True)
    assert run.returncode == 0, f"cfn-lint on infra/member.yaml:\n{run.stdout}{run.stderr}"


def test_checkov_passes():
    run = subprocess.run(
        [tool("checkov"), "--quiet", "--compact", "--skip-download", "--framework", "cloudformation", "-f", MEMBER_TEMPLATE],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, f"checkov on infra/member.yaml:\n{run.stdout}{run.stderr}"


def test_every_skipped_checkov_check_has_a_reason(member):
    assert_checkov_skips_have_reasons(member["Resources"])


def test_every_ignored_cfn_lint_rule_is_explained():
    assert_ignored_cfn_lint_rules_explained(MEMBER_TEMPLATE)


# ---------------------------------------------------------------- parameters against the hub's

def test_the_hub_and_its_outputs_give_every_required_parameter(member, hub):
    """Every required parameter is one the hub's outputs (or its account)
    answer; the rest default to the hub's defaults."""
    required = {name for name, p in member["Parameters"].items() if "Default" not in p}
    assert required == {"HubAccountId", "HubFunctionRoleArn", "Owner"}, required
    outputs = hub["Outputs"]
    assert outputs["FunctionRoleArn"]["Value"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}
    assert outputs["OwnerTagValue"]["Value"] == {"Fn::If": ["HasOwner", {"Ref": "Owner"}, {"Ref": "AWS::StackId"}]}
    for name in ("MemberRoleName", "AllowedSources", "RemoveUnapprovedMirrors", "OrganizationId"):
        assert member["Parameters"][name]["AllowedPattern" if "AllowedPattern" in member["Parameters"][name] else "AllowedValues"] == (
            hub["Parameters"][name].get("AllowedPattern") or hub["Parameters"][name].get("AllowedValues")
        ), f"{name}: the member takes what the hub takes"
    assert member["Parameters"]["MemberRoleName"]["Default"] == hub["Parameters"]["MemberRoleName"]["Default"]
    assert member["Parameters"]["RemoveUnapprovedMirrors"]["Default"] == hub["Parameters"]["RemoveUnapprovedMirrors"]["Default"]


@pytest.mark.parametrize(
    "value", ["", " ", " prod", "prod ", "traffic-mirroring", "semi;colon", "x" * 257, "prod-mirroring", SAMPLE_OWNER, "a b"],
)
def test_the_owner_pattern_is_the_hubs_but_never_empty(member, hub, value):
    """The member's Owner is the hub's owner, always a value: the hub's
    pattern, less the empty value."""
    hub_admits = bool(re.fullmatch(hub["Parameters"]["Owner"]["AllowedPattern"], value))
    member_admits = bool(re.fullmatch(member["Parameters"]["Owner"]["AllowedPattern"], value))
    assert member_admits == (hub_admits and value != ""), f"Owner {value!r}: the hub {'admits' if hub_admits else 'refuses'} it"


def test_the_hub_role_arn_pattern_takes_the_hubs_output():
    pattern = load_template(MEMBER_TEMPLATE)["Parameters"]["HubFunctionRoleArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, HUB_ROLE)
    assert re.fullmatch(pattern, "arn:aws-us-gov:iam::123456789012:role/path/traffic-mirroring-FunctionRole-X")
    assert not re.fullmatch(pattern, "arn:aws:iam::123456789012:user/someone")
    assert not re.fullmatch(pattern, "arn:aws:sts::123456789012:assumed-role/x/y")


# ---------------------------------------------------------------- the member role's trust

def trust(member, parameters):
    return deployed(member["Resources"][ROLE]["Properties"]["AssumeRolePolicyDocument"], member, {**REQUIRED, **parameters})


@pytest.mark.parametrize("organization", ["", "o-a1b2c3d4e5"], ids=["no organization", "organization"])
def test_the_member_role_trusts_only_the_hub_function_role(member, organization):
    """One statement: the hub's account as the principal, narrowed to the
    hub function's role by aws:PrincipalArn (and to the organization with
    OrganizationId); no service, no other account, no other role."""
    (statement,) = trust(member, {"OrganizationId": organization})["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{HUB_ACCOUNT}:root"}, statement["Principal"]
    expected = {"ArnEquals": {"aws:PrincipalArn": HUB_ROLE}}
    if organization:
        expected["StringEquals"] = {"aws:PrincipalOrgID": organization}
    assert {k: v for k, v in statement["Condition"].items() if v} == expected, statement["Condition"]


@pytest.mark.parametrize(
    "principal_account, principal_arn, expected",
    [
        (HUB_ACCOUNT, HUB_ROLE, True),
        (HUB_ACCOUNT, f"arn:aws:iam::{HUB_ACCOUNT}:role/someone-else", False),
        (HUB_ACCOUNT, f"arn:aws:iam::{HUB_ACCOUNT}:user/admin", False),
        ("999999999999", "arn:aws:iam::999999999999:role/traffic-mirroring-FunctionRole-ABCDEF123456", False),
    ],
    ids=["the hub role", "another role of the hub account", "a user of the hub account", "a role of another account"],
)
def test_who_may_assume_the_member_role(member, principal_account, principal_arn, expected):
    (statement,) = trust(member, {})["Statement"]
    principal_ok = statement["Principal"]["AWS"] == f"arn:aws:iam::{principal_account}:root"
    context = {"aws:PrincipalArn": principal_arn}
    condition = {k: v for k, v in statement["Condition"].items() if v}
    assert (principal_ok and condition_holds(condition, context)) == expected


def test_with_an_organization_the_hub_role_must_be_in_it(member):
    (statement,) = trust(member, {"OrganizationId": "o-a1b2c3d4e5"})["Statement"]
    condition = {k: v for k, v in statement["Condition"].items() if v}
    assert condition_holds(condition, {"aws:PrincipalArn": HUB_ROLE, "aws:PrincipalOrgID": "o-a1b2c3d4e5"})
    assert not condition_holds(condition, {"aws:PrincipalArn": HUB_ROLE, "aws:PrincipalOrgID": "o-zzzzzzzzzz"})
    assert not condition_holds(condition, {"aws:PrincipalArn": HUB_ROLE})


def test_the_role_is_named_member_role_name(member):
    assert member["Resources"][ROLE]["Properties"]["RoleName"] == {"Ref": "MemberRoleName"}
    assert "ManagedPolicyArns" not in member["Resources"][ROLE]["Properties"], "no managed policies"


# ---------------------------------------------------------------- the member role's permissions

def test_the_member_role_grants_exactly_the_hub_roles_ec2_actions(member, hub):
    """The function makes the same EC2 calls in a member account as in the
    hub (through the member role): the member role grants the EC2 actions
    the hub's FunctionRole grants (which test_iam.py matches to the code),
    and nothing of another service."""
    granted = {a for s in member_statements(member) for a in as_list(s["Action"])}
    assert all(a.startswith("ec2:") for a in granted), f"the member role grants more than EC2: {sorted(granted)}"
    hub_ec2 = {a for s in role_statements(hub) for a in as_list(s["Action"]) if a.startswith("ec2:")}
    assert granted == hub_ec2, f"missing {sorted(hub_ec2 - granted)}, extra {sorted(granted - hub_ec2)}"


def test_every_mutating_ec2_statement_is_tag_conditioned(member):
    """Creates tag the new resource with the owner (aws:RequestTag, our tag
    keys only), use only resources of ours (aws:ResourceTag) or the named
    exceptions; ec2:CreateTags only on create with the owner's tag; deletes
    only what carries the owner's tag, but for the unapproved sessions under
    RemoveUnapprovedMirrors."""
    unapproved = [
        s for name, condition, document in member_policies(member) if condition == "RemoveUnapprovedMirrorsOn"
        for s in as_list(document["Statement"])
    ]
    assert len(unapproved) == 1 and as_list(unapproved[0]["Action"]) == ["ec2:DeleteTrafficMirrorSession"]
    seen = set()
    for statement in member_statements(member):
        sid = statement.get("Sid")
        for action in as_list(statement["Action"]):
            if action.startswith("ec2:Describe"):
                assert statement["Resource"] == "*" and "Condition" not in statement
                continue
            seen.add(action)
            if action == "ec2:CreateTags":
                keys = condition_keys(statement)
                assert keys.get("ec2:CreateAction") and requires(statement, "aws:RequestTag"), (
                    f"{sid}: ec2:CreateTags only as part of a create, with the owner's tag"
                )
                continue
            if action.startswith("ec2:Delete"):
                if statement in unapproved:
                    continue
                assert requires(statement, "aws:ResourceTag"), f"{sid}: {action} must require aws:ResourceTag/{OWNER_KEY} = Owner"
                continue
            assert action.startswith("ec2:Create"), f"{sid}: {action} is neither a create, a tag nor a delete"
            own = re.sub(r"(?<!^)(?=[A-Z])", "-", action.split(":")[1][len("Create"):]).lower()
            for arn in arn_texts(statement):
                kind = resource_type(arn)
                assert kind, f"{sid}: name resources by ARN type, not {arn!r}"
                if (action, kind) in UNTAGGED_CREATE_RESOURCES and not (
                    kind == "traffic-mirror-target" and "${HubAccountId}" not in arn
                ):
                    continue
                if kind == own:
                    assert requires(statement, "aws:RequestTag") and condition_keys(statement).get("aws:TagKeys"), (
                        f"{sid}: {action} may create a {kind} without aws:RequestTag/{OWNER_KEY} = Owner and our tag keys"
                    )
                else:
                    assert requires(statement, "aws:ResourceTag"), (
                        f"{sid}: {action} may use any {kind} ({arn}); require aws:ResourceTag/{OWNER_KEY} = Owner"
                    )
    assert {"ec2:CreateTrafficMirrorSession", "ec2:DeleteTrafficMirrorTarget", "ec2:CreateTags"} <= seen


def test_every_ec2_resource_is_in_this_account_but_the_hubs_targets(member):
    """Nothing of a third account: resources of this account and Region, and
    the hub's shared targets."""
    for statement in member_statements(member):
        for arn in arn_texts(statement):
            if arn == "*":
                continue
            if "${HubAccountId}" in arn:
                assert resource_type(arn) == "traffic-mirror-target", f"{statement.get('Sid')}: {arn}"
                assert as_list(statement["Action"]) == ["ec2:CreateTrafficMirrorSession"], statement.get("Sid")
            else:
                assert arn.startswith("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:"), f"{statement.get('Sid')}: {arn}"


# The calls of the scenarios below, as IAM sees them in the member account.
MEMBER_ARN = f"arn:aws:ec2:us-east-1:{MEMBER_ACCOUNT}"
OURS = {"traffic-mirroring:managed-by": SAMPLE_OWNER, "traffic-mirroring:action-id": "a-1"}
VPC, SUBNET, OTHER_VPC, OTHER_SUBNET = "vpc-0d1b2c3d4e5f60718", "subnet-0e1b2c3d4e5f60718", "vpc-0fedcba9876543210", "subnet-0fedcba9876543210"


def mine(kind, ident):
    return f"{MEMBER_ARN}:{kind}/{ident}"


def new(kind, tags):
    return mine(kind, "*"), {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}


def session(target_arn, target_tags, vpc=VPC, subnet=SUBNET, tags=OURS):
    return [
        new("traffic-mirror-session", tags),
        (mine("network-interface", "eni-0123456789abcdef0"),
         {"ec2:Vpc": f"{MEMBER_ARN}:vpc/{vpc}", "ec2:Subnet": f"{MEMBER_ARN}:subnet/{subnet}"}),
        (target_arn, {f"aws:ResourceTag/{k}": v for k, v in target_tags.items()}),
        (mine("traffic-mirror-filter", "tmf-0123456789abcdef0"), {}),
    ]


def may(statements, action, authorizations):
    return all(allowed(statements, action, arn, context) for arn, context in authorizations)


HUB_TARGET = f"arn:aws:ec2:us-east-1:{HUB_ACCOUNT}:traffic-mirror-target/tmt-0c1b2c3d4e5f60718"
THIRD_TARGET = "arn:aws:ec2:us-east-1:555555555555:traffic-mirror-target/tmt-0c1b2c3d4e5f60718"
OWN_TARGET = mine("traffic-mirror-target", "tmt-0a1b2c3d4e5f60718")


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda: ("ec2:CreateTrafficMirrorSession", session(HUB_TARGET, {})), True),
        (lambda: ("ec2:CreateTrafficMirrorSession", session(THIRD_TARGET, {})), False),
        (lambda: ("ec2:CreateTrafficMirrorSession", session(OWN_TARGET, {OWNER_KEY: SAMPLE_OWNER})), True),
        (lambda: ("ec2:CreateTrafficMirrorSession", session(OWN_TARGET, {OWNER_KEY: "someone-else"})), False),
        (lambda: ("ec2:CreateTrafficMirrorSession", session(HUB_TARGET, {}, tags={})), False),
        (lambda: ("ec2:CreateTrafficMirrorSession", session(HUB_TARGET, {}, tags={OWNER_KEY: "someone-else"})), False),
        (lambda: ("ec2:CreateTrafficMirrorTarget", [new("traffic-mirror-target", OURS), (mine("vpc-endpoint", "vpce-0b1b2c3d4e5f60718"), {})]), True),
        (lambda: ("ec2:CreateTrafficMirrorTarget", [new("traffic-mirror-target", OURS), (mine("network-interface", "eni-0a1b2c3d4e5f60718"), {})]), False),
        (lambda: ("ec2:CreateTrafficMirrorTarget", [new("traffic-mirror-target", {}), (mine("vpc-endpoint", "vpce-0b1b2c3d4e5f60718"), {})]), False),
        (lambda: ("ec2:CreateTrafficMirrorFilter", [new("traffic-mirror-filter", OURS)]), True),
        (lambda: ("ec2:CreateTrafficMirrorFilter", [new("traffic-mirror-filter", {"team": "x", **OURS})]), False),
        (lambda: ("ec2:CreateTrafficMirrorFilterRule", [(mine("traffic-mirror-filter", "tmf-1"), {f"aws:ResourceTag/{OWNER_KEY}": SAMPLE_OWNER}), (mine("traffic-mirror-filter-rule", "*"), {})]), True),
        (lambda: ("ec2:CreateTrafficMirrorFilterRule", [(mine("traffic-mirror-filter", "tmf-1"), {}), (mine("traffic-mirror-filter-rule", "*"), {})]), False),
        (lambda: ("ec2:DeleteTrafficMirrorSession", [(mine("traffic-mirror-session", "tms-1"), {f"aws:ResourceTag/{OWNER_KEY}": SAMPLE_OWNER})]), True),
        (lambda: ("ec2:DeleteTrafficMirrorSession", [(mine("traffic-mirror-session", "tms-1"), {f"aws:ResourceTag/{OWNER_KEY}": "someone-else"})]), False),
        (lambda: ("ec2:DeleteTrafficMirrorFilter", [(mine("traffic-mirror-filter", "tmf-1"), {})]), False),
        (lambda: ("ec2:DeleteTrafficMirrorTarget", [(f"arn:aws:ec2:us-east-1:{HUB_ACCOUNT}:traffic-mirror-target/tmt-1", {f"aws:ResourceTag/{OWNER_KEY}": SAMPLE_OWNER})]), False),
        (lambda: ("ec2:CreateTags", [(mine("traffic-mirror-session", "tms-1"), {"ec2:CreateAction": "CreateTrafficMirrorSession", f"aws:RequestTag/{OWNER_KEY}": SAMPLE_OWNER})]), True),
        (lambda: ("ec2:CreateTags", [(mine("traffic-mirror-session", "tms-1"), {f"aws:RequestTag/{OWNER_KEY}": SAMPLE_OWNER})]), False),
    ],
    ids=[
        "a session to the hub's target", "a session to a third account's target", "a session to our own target here",
        "a session to another deployment's target here", "an untagged session", "a session of another owner",
        "a target on an endpoint here", "a target on an ENI here (the hub's job)", "an untagged target",
        "a filter of ours", "a filter with a tag not ours", "a rule in our filter", "a rule in a filter not ours",
        "deleting our session", "deleting another deployment's session", "deleting an untagged filter",
        "deleting the hub's target from here", "tagging on create", "tagging after the fact",
    ],
)
def test_what_the_member_role_allows(member, call, expected):
    action, authorizations = call()
    statements = deployed_member_statements(member, {})
    assert may(statements, action, authorizations) == expected, f"{action}: should be {'allowed' if expected else 'refused'}"


@pytest.mark.parametrize(
    "vpc, subnet, expected",
    [(VPC, OTHER_SUBNET, True), (OTHER_VPC, SUBNET, True), (OTHER_VPC, OTHER_SUBNET, False)],
    ids=["an allowed VPC", "an allowed subnet", "elsewhere"],
)
def test_sources_follow_allowed_sources(member, vpc, subnet, expected):
    listed = deployed_member_statements(member, {"AllowedSources": f"{VPC}, {SUBNET}"})
    assert may(listed, "ec2:CreateTrafficMirrorSession", session(HUB_TARGET, {}, vpc=vpc, subnet=subnet)) == expected
    anywhere = deployed_member_statements(member, {})
    assert may(anywhere, "ec2:CreateTrafficMirrorSession", session(HUB_TARGET, {}, vpc=vpc, subnet=subnet))


def test_unapproved_sessions_only_with_remove_unapproved_mirrors(member):
    arn, foreign = mine("traffic-mirror-session", "tms-1"), {f"aws:ResourceTag/{OWNER_KEY}": "someone-else"}
    assert not allowed(deployed_member_statements(member, {}), "ec2:DeleteTrafficMirrorSession", arn, foreign)
    on = deployed_member_statements(member, {"RemoveUnapprovedMirrors": "true"})
    assert allowed(on, "ec2:DeleteTrafficMirrorSession", arn, foreign)
    assert not allowed(on, "ec2:DeleteTrafficMirrorFilter", mine("traffic-mirror-filter", "tmf-1"), foreign)


def test_the_owner_conditions_name_the_owner_parameter_only(member):
    """Every condition on the ownership tag names Owner: never the legacy
    value, never a literal."""
    found = [
        (s.get("Sid"), key, value) for s in member_statements(member)
        for key, value in condition_keys(s).items() if key.endswith("Tag/" + OWNER_KEY)
    ]
    assert found
    for sid, key, value in found:
        assert value == OWNER, f"{sid}: {key} is {value!r}, not !Ref Owner"


# ---------------------------------------------------------------- forwarding to the hub

def forwarding_rules(member):
    return resources_of_type(member, "AWS::Events::Rule")


def aws_event_rules(hub):
    """The hub's rules of AWS events on its default bus: the ones a member's
    events must reach (not the request or scheduled rules)."""
    return {
        name: rule for name, rule in resources_of_type(hub, "AWS::Events::Rule").items()
        if "EventPattern" in rule["Properties"] and "EventBusName" not in rule["Properties"]
        and all(str(s).startswith("aws.") for s in as_list(rule["Properties"]["EventPattern"].get("source", [])))
    }


@pytest.mark.parametrize("bus", ["", "arn:aws:events:us-east-1:123456789012:event-bus/default"], ids=["derived", "given"])
def test_every_forwarding_rule_targets_the_hub_bus_with_the_forward_role(member, bus):
    rules = forwarding_rules(member)
    assert len(rules) >= 2
    for name, rule in rules.items():
        (target,) = rule["Properties"]["Targets"]
        target = deployed(target, member, {**REQUIRED, "HubEventBusArn": bus})
        assert target["Arn"] == HUB_BUS, f"{name} sends to {target['Arn']}"
        assert target["RoleArn"] == f"{FORWARD_ROLE}.Arn", f"{name}: a cross-account bus target needs {FORWARD_ROLE}"
        assert target["DeadLetterConfig"]["Arn"] == f"{FAILURE_QUEUE}.Arn", f"{name}: undeliverable events to {FAILURE_QUEUE}"
        assert 0 < int(target["RetryPolicy"]["MaximumRetryAttempts"]) <= 185
        assert rule["Properties"]["State"] == "ENABLED"


def test_each_hub_rule_of_aws_events_has_a_member_twin(member, hub):
    """The member forwards exactly what the hub's rules of AWS events match:
    one rule each, the same pattern, so nothing is sent to be dropped at the
    hub, and nothing the hub acts on is missed."""
    hub_patterns = sorted(repr(r["Properties"]["EventPattern"]) for r in aws_event_rules(hub).values())
    member_patterns = sorted(repr(r["Properties"]["EventPattern"]) for r in forwarding_rules(member).values())
    assert hub_patterns and member_patterns == hub_patterns, (
        "the member's forwarding patterns differ from the hub's rules of AWS events"
    )


def test_the_cloudtrail_rules_follow_forward_cloudtrail_events(member):
    """State and tag changes are always forwarded; the CloudTrail records
    only with ForwardCloudTrailEvents; nothing in the hub's own account."""
    for name, rule in forwarding_rules(member).items():
        cloudtrail = rule["Properties"]["EventPattern"]["detail-type"] == ["AWS API Call via CloudTrail"]
        condition = rule.get("Condition")
        for value, exists in (("true", True), ("false", not cloudtrail)):
            parameters = {**REQUIRED, "ForwardCloudTrailEvents": value}
            assert holds(condition, member, parameters) == exists, f"{name} with ForwardCloudTrailEvents={value}"
        assert not holds(condition, member, {**REQUIRED, "AWS::AccountId": HUB_ACCOUNT}), f"{name} in the hub's account"


def test_the_forward_role_puts_only_on_the_hub_bus(member):
    role = member["Resources"][FORWARD_ROLE]
    (statement,) = deployed(role["Properties"]["AssumeRolePolicyDocument"], member, REQUIRED)["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": MEMBER_ACCOUNT}}
    (policy,) = role["Properties"]["Policies"]
    (put,) = deployed(policy["PolicyDocument"], member, REQUIRED)["Statement"]
    assert put["Action"] == "events:PutEvents" and put["Resource"] == HUB_BUS
    assert role.get("Condition") == "ForwardsEvents"


def test_the_failure_queue_admits_only_the_forwarding_rules(member):
    policy = member["Resources"]["ForwardFailureQueuePolicy"]["Properties"]["PolicyDocument"]
    (statement,) = policy["Statement"]
    sources = [leaf for value in statement["Condition"]["ArnEquals"]["aws:SourceArn"] for leaf in leaves(value)]
    assert sorted(s["Fn::GetAtt"][0] for s in sources) == sorted(forwarding_rules(member))
    assert member["Resources"][FAILURE_QUEUE]["Properties"]["SqsManagedSseEnabled"] is True


def test_the_hub_bus_admits_what_the_member_forwards(member, hub):
    """Every source the member forwards is one the hub's bus policy lets a
    member put (events:source)."""
    statement = hub["Resources"]["MemberEventsBusPolicy"]["Properties"]["Statement"]
    admitted = set(statement["Condition"]["StringEquals"]["events:source"])
    forwarded = {s for r in forwarding_rules(member).values() for s in r["Properties"]["EventPattern"]["source"]}
    assert forwarded <= admitted, f"the hub's bus refuses {sorted(forwarded - admitted)}"
