"""The hub of an organization (#25), infra/template.yaml's side: the member
parameters and the function's environment; the STS and RAM permissions the
hub needs, only when members are configured, each fenced (the member role's
name and accounts or organization; the RAM share tagged with the owner and
changed only while it carries it); the default bus admitting the members'
AWS events and nothing else of theirs; the hub's rules matching events of
any account; and the documentation of all of it (infra/README.md,
docs/organization.md)."""

import json
import os
import re

import pytest

from infra_support import ROOT, as_list, deployed, event_matches, holds, load_template, resources_of_type
from test_iam import OWNER, allowed, condition_keys, deployed_statements, role_policies

FUNCTION = "TrafficMirroringFunction"
POLICY = "MemberAccountsPolicy"
BUS_POLICY = "MemberEventsBusPolicy"
MEMBERS_CONDITION = "HasMembers"
ACCOUNTS = "111111111111,222222222222"
ORG = "o-a1b2c3d4e5"
# Deployments: the allow-lists are required; the members' settings vary.
BASE = {"AllowedTargets": "*", "AllowedSources": "*"}
SINGLE = BASE
LISTED = {**BASE, "MemberAccounts": " 111111111111 , 222222222222"}
ORGANIZATION = {**BASE, "OrganizationId": ORG}
BOTH = {**LISTED, "OrganizationId": ORG}
HUB = "123456789012"
SAMPLE_OWNER = "arn:aws:cloudformation:us-east-1:123456789012:stack/traffic-mirroring/1c2fa620-0000-4000-8000-000000000000"
SHARE = f"arn:aws:ram:us-east-1:{HUB}:resource-share/0a1b2c3d-0000-4000-8000-000000000000"
OUR_TARGET = f"arn:aws:ec2:us-east-1:{HUB}:traffic-mirror-target/tmt-0c1b2c3d4e5f60718"
OWNER_KEY = "traffic-mirroring:managed-by"


@pytest.fixture(scope="module")
def template():
    return load_template()


def env(template):
    return template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]


def statements_of(template, parameters):
    return {s["Sid"]: s for s in deployed_statements(template, parameters) if s.get("Sid")}


# ---------------------------------------------------------------- parameters and environment

def test_the_member_parameters_default_to_a_single_account(template):
    parameters = template["Parameters"]
    assert parameters["MemberAccounts"]["Default"] == "" and parameters["MemberAccounts"]["Type"] == "String"
    assert parameters["MemberRoleName"]["Default"] == "TrafficMirroringMember"
    assert parameters["OrganizationId"]["Default"] == ""
    assert not holds(MEMBERS_CONDITION, template, SINGLE)
    for deployment in (LISTED, ORGANIZATION, BOTH):
        assert holds(MEMBERS_CONDITION, template, deployment)


@pytest.mark.parametrize("value, ok", [
    ("", True), ("111111111111", True), (ACCOUNTS, True), (" 111111111111 , 222222222222 ", True),
    ("11111111111", False), ("111111111111,", False), (",111111111111", False), ("1111111111111", False),
    ("111111111111;222222222222", False), ("o-a1b2c3d4e5", False),
])
def test_member_accounts_are_twelve_digit_ids(template, value, ok):
    assert bool(re.fullmatch(template["Parameters"]["MemberAccounts"]["AllowedPattern"], value)) == ok, value


@pytest.mark.parametrize("value, ok", [
    ("", True), (ORG, True), ("o-" + "a" * 32, True), ("o-abc", False), ("o-A1B2C3D4E5", False), ("r-a1b2", False),
])
def test_the_organization_id_is_an_organizations_id(template, value, ok):
    assert bool(re.fullmatch(template["Parameters"]["OrganizationId"]["AllowedPattern"], value)) == ok, value


def test_the_function_knows_its_members_role_and_account(template):
    variables = env(template)
    assert variables["MEMBER_ACCOUNTS"] == {"Ref": "MemberAccounts"}
    assert variables["MEMBER_ROLE_NAME"] == {"Ref": "MemberRoleName"}
    assert variables["DEPLOYMENT_ACCOUNT_ID"] == {"Ref": "AWS::AccountId"}


# ---------------------------------------------------------------- the hub role's member permissions

def test_a_single_account_deployment_has_no_sts_ram_or_bus_policy(template):
    granted = {a for s in deployed_statements(template, SINGLE) for a in as_list(s["Action"])}
    assert not {a for a in granted if a.startswith(("sts:", "ram:"))}, sorted(granted)
    assert template["Resources"][BUS_POLICY]["Condition"] == MEMBERS_CONDITION
    (condition,) = [c for name, c, _ in role_policies(template) if name == POLICY]
    assert condition == MEMBERS_CONDITION


@pytest.mark.parametrize(
    "deployment, account, org, expected",
    [
        (LISTED, "111111111111", None, True), (LISTED, "222222222222", None, True), (LISTED, "333333333333", None, False),
        (ORGANIZATION, "333333333333", ORG, True), (ORGANIZATION, "333333333333", "o-zzzzzzzzzz", False),
        (BOTH, "111111111111", ORG, True), (BOTH, "333333333333", ORG, False), (BOTH, "111111111111", "o-zzzzzzzzzz", False),
    ],
    ids=["listed", "listed too", "unlisted", "in the organization", "another organization",
         "listed and in it", "in it but unlisted", "listed but elsewhere"],
)
def test_the_function_assumes_only_the_member_role_of_a_member(template, deployment, account, org, expected):
    statements = deployed_statements(template, deployment)
    context = {"aws:ResourceAccount": account, **({"aws:ResourceOrgID": org} if org else {})}
    role = f"arn:aws:iam::{account}:role/TrafficMirroringMember"
    assert allowed(statements, "sts:AssumeRole", role, context) == expected
    # Never a role of another name, even in a member account.
    assert not allowed(statements, "sts:AssumeRole", f"arn:aws:iam::{account}:role/Admin", context)


def test_assume_role_names_only_member_role_name(template):
    statement = statements_of(template, BOTH)["AssumeMemberRoles"]
    assert as_list(statement["Action"]) == ["sts:AssumeRole"]
    assert statement["Resource"] == "arn:aws:iam::*:role/TrafficMirroringMember"
    assert statements_of(template, {**BOTH, "MemberRoleName": "Mirror"})["AssumeMemberRoles"]["Resource"] == "arn:aws:iam::*:role/Mirror"
    # The accounts are the list without its spaces.
    assert statement["Condition"]["StringEquals"]["aws:ResourceAccount"] == ["111111111111", "222222222222"]


def create_share(tags, principal=None, resource=None, resource_type=None):
    """CreateResourceShare as IAM sees it: the tags, then (each its own
    request context) a principal or a resource."""
    context = {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}
    if principal:
        context["ram:Principal"] = principal
    if resource:
        context["ram:ResourceArn"] = resource
        context["ram:RequestedResourceType"] = resource_type or "ec2:TrafficMirrorTarget"
    return context


OURS = {OWNER_KEY: SAMPLE_OWNER}


@pytest.mark.parametrize(
    "context, expected",
    [
        (create_share(OURS), True),
        (create_share({}), False),
        (create_share({OWNER_KEY: "someone-else"}), False),
        (create_share({**OURS, "team": "x"}), False),
        (create_share(OURS, principal="111111111111"), True),
        (create_share(OURS, principal="333333333333"), False),
        (create_share(OURS, resource=OUR_TARGET), True),
        (create_share(OURS, resource=f"arn:aws:ec2:us-east-1:{HUB}:subnet/subnet-0a1b2c3d", resource_type="ec2:Subnet"), False),
        (create_share(OURS, resource="arn:aws:ec2:us-east-1:999999999999:traffic-mirror-target/tmt-1"), False),
    ],
    ids=["tagged with the owner", "untagged", "another owner", "a tag not ours", "a listed account", "an unlisted account",
         "our target", "a subnet", "another account's target"],
)
def test_the_share_is_created_only_tagged_with_the_owner_for_targets_and_members(template, context, expected):
    statements = deployed_statements(template, LISTED)
    assert allowed(statements, "ram:CreateResourceShare", "*", context) == expected


@pytest.mark.parametrize("action", ["ram:AssociateResourceShare", "ram:DisassociateResourceShare"])
@pytest.mark.parametrize("owner, expected", [(SAMPLE_OWNER, True), ("someone-else", False), (None, False)],
                         ids=["ours", "another deployment's", "untagged"])
def test_only_our_share_is_changed(template, action, owner, expected):
    statements = deployed_statements(template, LISTED)
    context = {f"aws:ResourceTag/{OWNER_KEY}": owner} if owner else {}
    assert allowed(statements, action, SHARE, {**context, "ram:Principal": "111111111111"}) == expected
    assert allowed(statements, action, SHARE, {**context, "ram:ResourceArn": OUR_TARGET,
                                               "ram:RequestedResourceType": "ec2:TrafficMirrorTarget"}) == expected


def test_only_listed_members_are_added_but_any_may_be_removed(template):
    """A principal no longer listed (taken out of MemberAccounts) must still
    be removable from our share; none may be added."""
    statements = deployed_statements(template, LISTED)
    ours = {f"aws:ResourceTag/{OWNER_KEY}": SAMPLE_OWNER, "ram:Principal": "333333333333"}
    assert not allowed(statements, "ram:AssociateResourceShare", SHARE, ours)
    assert allowed(statements, "ram:DisassociateResourceShare", SHARE, ours)


@pytest.mark.parametrize("resource_tag, expected", [(None, True), (SAMPLE_OWNER, True), ("someone-else", False)],
                         ids=["a share being created", "ours", "another deployment's"])
def test_the_share_is_tagged_only_with_the_owner_and_never_taken_over(template, resource_tag, expected):
    statements = deployed_statements(template, LISTED)
    context = {f"aws:RequestTag/{OWNER_KEY}": SAMPLE_OWNER, "aws:TagKeys": [OWNER_KEY]}
    if resource_tag:
        context[f"aws:ResourceTag/{OWNER_KEY}"] = resource_tag
    assert allowed(statements, "ram:TagResource", SHARE, context) == expected
    assert not allowed(statements, "ram:TagResource", SHARE, {**context, f"aws:RequestTag/{OWNER_KEY}": "someone-else"})


def test_ram_resources_are_this_accounts_shares(template):
    """The share's own calls name this account's and Region's resource
    shares; the three RAM calls without resource-level permissions, "*"."""
    for sid, statement in statements_of(template, BOTH).items():
        actions = as_list(statement["Action"])
        if not any(a.startswith("ram:") for a in actions):
            continue
        if set(actions) <= {"ram:CreateResourceShare", "ram:GetResourceShares", "ram:GetResourceShareAssociations"}:
            assert statement["Resource"] == "*", sid
        else:
            assert statement["Resource"] == f"arn:aws:ram:us-east-1:{HUB}:resource-share/*", sid


def test_every_ram_write_is_bound_to_the_owner(template):
    """Create and tag: aws:RequestTag = the owner; associate and
    disassociate: aws:ResourceTag = the owner (the expression of test_iam.py)."""
    statements = [
        s for name, _, document in role_policies(template) if name == POLICY for s in as_list(document["Statement"])
    ]
    for statement in statements:
        for action in as_list(statement["Action"]):
            keys = condition_keys(statement)
            if action in ("ram:CreateResourceShare", "ram:TagResource"):
                assert keys.get(f"aws:RequestTag/{OWNER_KEY}") == OWNER, statement["Sid"]
                assert keys.get("aws:TagKeys") == ["traffic-mirroring:*"], statement["Sid"]
            elif action in ("ram:AssociateResourceShare", "ram:DisassociateResourceShare"):
                assert keys.get(f"aws:ResourceTag/{OWNER_KEY}") == OWNER, statement["Sid"]
            elif action == "sqs:SendMessage":
                # The sweep's fan-out: the function's own request queue only.
                assert "RequestQueue" in str(statement["Resource"]) and "*" not in str(statement["Resource"])
            else:
                assert action.startswith(("ram:Get", "sts:AssumeRole")), f"{statement['Sid']}: {action}"


def test_arn_conditions_are_valid_arns(template):
    for deployment in (LISTED, ORGANIZATION, BOTH):
        for sid, statement in statements_of(template, deployment).items():
            for operator, clauses in statement.get("Condition", {}).items():
                if "Arn" in operator:
                    for value in (v for values in clauses.values() for v in as_list(values)):
                        assert re.fullmatch(r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:\S+", value), f"{sid}: {value}"


# ---------------------------------------------------------------- the default bus

def bus_statement(template, parameters):
    return deployed(template["Resources"][BUS_POLICY]["Properties"]["Statement"], template, parameters)


def hub_aws_event_rules(template):
    return {
        name: rule for name, rule in resources_of_type(template, "AWS::Events::Rule").items()
        if "EventPattern" in rule["Properties"] and "EventBusName" not in rule["Properties"]
        and all(str(s).startswith("aws.") for s in as_list(rule["Properties"]["EventPattern"].get("source", [])))
    }


@pytest.mark.parametrize("deployment, principal, org", [
    (LISTED, {"AWS": ["111111111111", "222222222222"]}, None),
    (ORGANIZATION, "*", ORG),
    (BOTH, {"AWS": ["111111111111", "222222222222"]}, ORG),
], ids=["listed", "organization", "both"])
def test_the_bus_admits_the_members_and_only_them(template, deployment, principal, org):
    statement = bus_statement(template, deployment)
    assert statement["Principal"] == principal
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == f"arn:aws:events:us-east-1:{HUB}:event-bus/default"
    condition = statement["Condition"]["StringEquals"]
    assert condition.get("aws:PrincipalOrgID") == org
    assert principal != "*" or org, "never every account without the organization's condition"
    properties = deployed(template["Resources"][BUS_POLICY]["Properties"], template, deployment)
    assert properties["EventBusName"] == "default"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", properties["StatementId"].replace("FunctionRole.RoleId", "AROAEXAMPLEID12345678"))


def test_the_bus_admits_only_the_aws_events_the_hub_acts_on(template):
    """events:source: exactly the sources of the hub's rules of AWS events,
    all of them aws.* (which PutEvents refuses to anyone but AWS): a member
    cannot put a request event (RequestRule on the default bus) nor any
    other event of its own making on the hub's bus."""
    sources = set(bus_statement(template, LISTED)["Condition"]["StringEquals"]["events:source"])
    expected = {s for rule in hub_aws_event_rules(template).values() for s in rule["Properties"]["EventPattern"]["source"]}
    assert sources == expected == {"aws.ec2", "aws.tag"}, sources


SAMPLE_EVENTS = {
    "InstanceStateRule": {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification",
                          "detail": {"instance-id": "i-0abc", "state": "running"}},
    "InstanceTagRule": {"source": "aws.tag", "detail-type": "Tag Change on Resource",
                        "detail": {"service": "ec2", "resource-type": "instance", "changed-tag-keys": ["traffic-mirroring:target"]}},
    "EniAttachRule": {"source": "aws.ec2", "detail-type": "AWS API Call via CloudTrail",
                      "detail": {"eventSource": "ec2.amazonaws.com", "eventName": "AttachNetworkInterface"}},
    "TamperRule": {"source": "aws.ec2", "detail-type": "AWS API Call via CloudTrail",
                   "detail": {"eventSource": "ec2.amazonaws.com", "eventName": "DeleteTrafficMirrorSession"}},
    "ExcludeTagRule": {"source": "aws.ec2", "detail-type": "AWS API Call via CloudTrail",
                       "detail": {"eventSource": "ec2.amazonaws.com", "eventName": "CreateTags",
                                  "requestParameters": {"tagSet": {"items": [{"key": "traffic-mirroring:exclude", "value": "true"}]}}}},
}


@pytest.mark.parametrize("rule", sorted(SAMPLE_EVENTS))
def test_the_hubs_rules_match_events_of_member_accounts(template, rule):
    """No rule of AWS events names an `account`: a member's event, forwarded
    to this default bus, matches as this account's does."""
    rules = hub_aws_event_rules(template)
    assert set(rules) == set(SAMPLE_EVENTS), f"rules of AWS events: {sorted(rules)}"
    pattern = rules[rule]["Properties"]["EventPattern"]
    assert "account" not in pattern, f"{rule} matches one account's events only"
    for account in (HUB, "222222222222"):
        assert event_matches(pattern, {**SAMPLE_EVENTS[rule], "account": account, "region": "us-east-1"}), (rule, account)


# ---------------------------------------------------------------- outputs

def test_the_outputs_give_the_member_stack_what_it_needs(template):
    outputs = template["Outputs"]
    assert outputs["FunctionRoleArn"]["Value"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}
    assert outputs["OwnerTagValue"]["Value"] == OWNER
    bus = deployed(outputs["MemberEventBusArn"]["Value"], template, BASE)
    assert bus == bus_statement(template, LISTED)["Resource"] == f"arn:aws:events:us-east-1:{HUB}:event-bus/default"
    # The member stack derives the same bus when HubEventBusArn is empty.
    member = load_template(os.path.join(ROOT, "infra", "member.yaml"))
    (target,) = member["Resources"]["ForwardInstanceStateRule"]["Properties"]["Targets"]
    derived = deployed(target["Arn"], member, {"HubAccountId": HUB, "HubFunctionRoleArn": f"arn:aws:iam::{HUB}:role/r",
                                               "Owner": SAMPLE_OWNER, "AWS::AccountId": "222222222222"})
    assert derived == bus


# ---------------------------------------------------------------- documentation

def readme():
    with open(os.path.join(ROOT, "infra", "README.md"), encoding="utf-8") as f:
        return f.read()


def parameter_row(text, name):
    match = re.search(r"^\| `" + name + r"` \|[^\n]*$", text, re.M)
    assert match, f"infra/README.md's Parameters table has no row for {name}"
    return match.group(0)


@pytest.mark.parametrize("parameter, variable", [
    ("MemberAccounts", "MEMBER_ACCOUNTS"), ("MemberRoleName", "MEMBER_ROLE_NAME"),
])
def test_the_readme_names_the_variables_of_the_member_parameters(parameter, variable):
    assert f"`{variable}`" in parameter_row(readme(), parameter)


def test_the_readme_explains_the_deployment_account_and_the_organization():
    text = readme()
    assert "`DEPLOYMENT_ACCOUNT_ID`" in text
    assert "aws:ResourceOrgID" in parameter_row(text, "OrganizationId")


def test_the_readme_shows_the_stack_set_commands():
    text = readme()
    for needed in (
        "aws cloudformation create-stack-set",
        "--permission-model SERVICE_MANAGED",
        "--auto-deployment Enabled=true,RetainStacksOnAccountRemoval=false",
        "aws cloudformation create-stack-instances",
        "--deployment-targets OrganizationalUnitIds=",
        "--capabilities CAPABILITY_NAMED_IAM",
        "infra/member.yaml",
    ):
        assert needed in text, f"infra/README.md does not show {needed!r}"


def test_the_readme_names_every_member_stack_parameter():
    """The member stack's parameters are all explained where it is deployed."""
    text = readme()
    section = re.search(r"^## The member stack\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "infra/README.md has no \"## The member stack\" section"
    member = load_template(os.path.join(ROOT, "infra", "member.yaml"))
    missing = [name for name in member["Parameters"] if f"`{name}`" not in section.group(1)]
    assert not missing, f"infra/README.md's member stack section does not explain {missing}"


def test_the_design_page_names_the_contract():
    with open(os.path.join(ROOT, "docs", "organization.md"), encoding="utf-8") as f:
        text = f.read()
    for needed in ("actionParams.accountId", "AccountNotAllowed", "MemberAccountUnreachable", "`accounts`",
                   "`account`", "infra/member.yaml", "MEMBER_ACCOUNTS"):
        assert needed in text, f"docs/organization.md does not name {needed}"


def test_the_example_parameters_name_members_the_template_accepts(template):
    with open(os.path.join(ROOT, "infra", "parameters.example.json"), encoding="utf-8") as f:
        example = json.load(f)
    accounts = ",".join(example["MemberAccounts"])
    assert re.fullmatch(template["Parameters"]["MemberAccounts"]["AllowedPattern"], accounts)
    assert re.fullmatch(template["Parameters"]["OrganizationId"]["AllowedPattern"], example["OrganizationId"])
