"""The template wires the function the way the code expects to be invoked and
configured: the events it recognises (src/sources.rs, src/contract.rs, and the
states src/handler.rs acts on), the environment it
reads (src/config/mod.rs), the queue and retry settings the issue asks for, and a
written reason for every check it skips."""

import json
import os
import re

import pytest

from infra_support import (
    assert_checkov_skips_have_reasons,
    assert_ignored_cfn_lint_rules_explained,
    ROOT, TEMPLATE, as_list, block_end, deployed, event_matches, holds, leaves, load_template, read, refers_to,
    rust_str_array, rust_str_const, without_comments,
)

FUNCTION = "TrafficMirroringFunction"
QUEUE = "RequestQueue"
# Rules that invoke the function directly, and the ones that queue: a launch
# storm (or a mass re-tag) must wait in the request queue, not start an
# invocation per instance.
FUNCTION_RULES = ["RequestRule", "SweepRule", "ExpiryRule"]
QUEUE_RULES = ["InstanceStateRule", "InstanceTagRule", "EniAttachRule", "TamperRule", "ExcludeTagRule"]
RULES = FUNCTION_RULES + QUEUE_RULES

# The fleet's events beside state changes (issue #17): tag changes of the
# launch policy's tags, and ENI attachments as CloudTrail records them (only
# where a trail records management events, hence a parameter to turn off).
TAG_RULE = "InstanceTagRule"
ATTACH_RULE = "EniAttachRule"
ATTACH_PARAMETER = "RouteEniAttachments"
ATTACH_CONDITION = "RouteEniAttachmentsOn"
POLICY_TAG_PREFIX = "traffic-mirroring:"

# Accountability (CloudTrail, so a trail too, and a parameter to turn off):
# someone else deleting our sessions, filters or targets, and someone opting
# an instance out of mirroring with the exclude tag.
TAMPER_RULE = "TamperRule"
EXCLUDE_RULE = "ExcludeTagRule"
TAMPER_PARAMETER = "WatchTampering"
TAMPER_CONDITION = "WatchTamperingOn"
EXCLUDE_TAG = "traffic-mirroring:exclude"
# Rules that exist only under a condition: whatever names them must too.
CONDITIONAL_RULES = {ATTACH_RULE: ATTACH_CONDITION, TAMPER_RULE: TAMPER_CONDITION, EXCLUDE_RULE: TAMPER_CONDITION}

# Read by a library, not by src/config/mod.rs.
PLATFORM_ENV = {"RUST_LOG": "tracing_subscriber's EnvFilter"}

@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def resources(template):
    return template["Resources"]


@pytest.fixture(scope="module")
def function(resources):
    return resources[FUNCTION]


@pytest.fixture(scope="module")
def ingress():
    """The code that recognises and routes events, without its unit tests:
    the source recognition, the contract's event names, the App's routing."""
    files = ("src/sources.rs", "src/contract.rs", "src/handler.rs")
    return "\n".join(without_comments(read(path)).split("#[cfg(test)]", 1)[0] for path in files)


def code_env_vars():
    """Environment variables src/ reads: the ALL_CAPS string constants of
    src/config/mod.rs and every literal env::var("...")."""
    config = without_comments(read("src/config/mod.rs"))
    names = {
        value
        for value in re.findall(r"\bconst\s+\w+\s*:\s*&str\s*=\s*\"([^\"]*)\"", config)
        if re.fullmatch(r"[A-Z][A-Z0-9_]+", value)
    }
    for folder, _, files in os.walk(os.path.join(ROOT, "src")):
        for name in files:
            if name.endswith(".rs"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    names |= set(re.findall(r"env::var(?:_os)?\(\s*\"([A-Z][A-Z0-9_]+)\"", f.read()))
    assert "TABLE_NAME" in names, "the parser no longer finds the environment variables in src/config/mod.rs"
    return names


def handled_states(ingress):
    """The instance states the code acts on, in EC2's names: the
    `InstanceState::<Variant> =>` arms of src/instance_events.rs, and the
    variants `is_ending()` names when an arm asks it; the names are read from
    `InstanceState::parse` in src/domain/instance.rs."""
    events = without_comments(read("src/instance_events.rs")).split("#[cfg(test)]", 1)[0]
    domain = without_comments(read("src/domain/instance.rs")).split("#[cfg(test)]", 1)[0]
    names = dict((variant, name) for name, variant in re.findall(r"\"([a-z][a-z-]*)\"\s*=>\s*Self::(\w+)", domain))
    variants = set(re.findall(r"\bInstanceState::(\w+)\s*=>", events))
    if re.search(r"\bis_ending\(\)", events):
        ending = re.search(r"fn\s+is_ending\b[^{]*\{(.*?)\n    \}", domain, re.S)
        assert ending, "the parser no longer finds InstanceState::is_ending in src/domain/instance.rs"
        variants |= set(re.findall(r"Self::(\w+)", ending.group(1)))
    states = {names[v] for v in variants if v in names}
    assert "running" in states, "the parser no longer finds the instance states src/instance_events.rs acts on"
    return states


# ---------------------------------------------------------------- function

def test_the_function_is_built_with_cargo_lambda_for_arm64(function):
    cargo = read("Cargo.toml")
    binary = re.search(r"\[\[bin\]\]\s*name\s*=\s*\"([^\"]+)\"", cargo).group(1)
    assert function["Type"] == "AWS::Serverless::Function"
    assert function["Metadata"]["BuildMethod"] == "rust-cargolambda"
    assert function["Metadata"]["BuildProperties"]["Binary"] == binary
    properties = function["Properties"]
    assert properties["Runtime"] == "provided.al2023"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Handler"] == "bootstrap"
    assert os.path.isfile(os.path.join(os.path.dirname(TEMPLATE), properties["CodeUri"], "Cargo.toml"))


def test_memory_timeout_and_concurrency_are_parameters(template, function):
    properties = function["Properties"]
    assert properties["MemorySize"] == {"Ref": "FunctionMemory"}
    assert properties["Timeout"] == {"Ref": "FunctionTimeout"}
    assert refers_to(properties["ReservedConcurrentExecutions"], "ReservedConcurrency")
    for name in ("FunctionMemory", "FunctionTimeout", "ReservedConcurrency"):
        assert name in template["Parameters"]


@pytest.mark.parametrize("name", sorted(code_env_vars() - {"AWS_ENDPOINT_URL", "AWS_REGION"}))
def test_every_variable_the_code_reads_is_set(function, name):
    assert name in function["Properties"]["Environment"]["Variables"], f"src/ reads {name}; the template does not set it"


def test_the_template_sets_nothing_the_code_does_not_read(function):
    unread = set(function["Properties"]["Environment"]["Variables"]) - code_env_vars() - set(PLATFORM_ENV)
    assert not unread, f"the template sets variables nothing reads: {sorted(unread)}"


def test_timeout_settings_follow_the_function_timeout(template):
    allowed = [int(v) for v in template["Parameters"]["FunctionTimeout"]["AllowedValues"]]
    settings = template["Mappings"]["TimeoutSettings"]
    assert sorted(int(k) for k in settings) == sorted(allowed), "TimeoutSettings must have a row per allowed timeout"
    for timeout in allowed:
        row = settings[str(timeout)]
        assert row["QueueVisibilityTimeout"] == 6 * timeout, f"visibility for {timeout}s should be 6 x timeout"
        assert row["QueueVisibilityTimeout"] <= 43200, "SQS allows at most 12 hours"
        assert row["ClaimLeaseSeconds"] == timeout + 60, f"the claim lease for {timeout}s should be timeout + 60"
    assert max(allowed) <= 900, "Lambda runs at most 15 minutes"


def test_the_claim_lease_and_visibility_come_from_the_timeout(resources, function):
    env = function["Properties"]["Environment"]["Variables"]
    assert env["CLAIM_LEASE_SECONDS"] == {"Fn::FindInMap": ["TimeoutSettings", {"Ref": "FunctionTimeout"}, "ClaimLeaseSeconds"]}
    visibility = resources["RequestQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility == {"Fn::FindInMap": ["TimeoutSettings", {"Ref": "FunctionTimeout"}, "QueueVisibilityTimeout"]}


def rust_number(text):
    """A bound as src/ writes it: a literal (86_400), or the path of a
    numeric constant (crate::mirroring::model::MAX_LIFETIME_MINUTES) found
    in src/."""
    text = text.strip()
    if re.fullmatch(r"[\d_]+", text):
        return int(text.replace("_", ""))
    name = text.rsplit("::", 1)[-1]
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"the parser does not read the bound {text!r}"
    for folder, _, files in os.walk(os.path.join(ROOT, "src")):
        for file in files:
            if file.endswith(".rs"):
                source = without_comments(read(os.path.relpath(os.path.join(folder, file), ROOT)))
                match = re.search(r"\bconst\s+" + name + r"\s*:\s*\w+\s*=\s*([\d_]+)\s*;", source)
                if match:
                    return int(match.group(1).replace("_", ""))
    raise AssertionError(f"no numeric `const {name}` in src/")


BOUND = r"([\d_]+|(?:\w+::)*[A-Z][A-Z0-9_]*)"


def config_range(variable):
    """(low, high) of the range src/config/mod.rs accepts for `variable`: its
    `ranged(value(VARIABLE), VARIABLE, low..=high)`, or the
    `(low..=high).contains` check of its `match value(VARIABLE)`; a bound
    may be a literal or a numeric constant's path."""
    config = without_comments(read("src/config/mod.rs"))
    ranged = re.search(
        r"\branged\(\s*value\(\s*" + variable + r"\s*\)\s*,\s*" + variable + r"\s*,\s*" + BOUND + r"\s*\.\.=\s*" + BOUND + r"\s*,?\s*\)",
        config,
    )
    if ranged:
        return rust_number(ranged.group(1)), rust_number(ranged.group(2))
    match = re.search(r"match\s+value\(\s*" + variable + r"\s*\)(.*?)\};", config, re.S)
    assert match, f"the parser no longer finds where src/config/mod.rs reads {variable}"
    bounds = re.search(r"\((\d+)\s*\.\.=\s*(\d+)\)\s*\.\s*contains", match.group(1))
    assert bounds, f"the parser no longer finds the range src/config/mod.rs accepts for {variable}"
    return int(bounds.group(1)), int(bounds.group(2))


def test_max_concurrent_actions_comes_from_its_parameter(template, function):
    env = function["Properties"]["Environment"]["Variables"]
    assert env.get("MAX_CONCURRENT_ACTIONS") == {"Ref": "MaxConcurrentActions"}
    parameter = template["Parameters"]["MaxConcurrentActions"]
    assert parameter["Type"] == "Number"
    assert int(parameter["MinValue"]) >= 1, "0 actions at once would run nothing"
    assert int(parameter["MinValue"]) <= int(parameter["Default"]) <= int(parameter["MaxValue"])
    assert "MAX_CONCURRENT_ACTIONS" in code_env_vars(), "src/ does not read MAX_CONCURRENT_ACTIONS"
    low, high = config_range("MAX_CONCURRENT_ACTIONS")
    assert low <= int(parameter["MinValue"]) and int(parameter["MaxValue"]) <= high, (
        f"MaxConcurrentActions allows {parameter['MinValue']}-{parameter['MaxValue']}; "
        f"src/config/mod.rs refuses to start outside {low}-{high}"
    )
    batch = template["Parameters"]["SqsBatchSize"]
    assert int(parameter["MaxValue"]) == int(batch["MaxValue"]), "MaxConcurrentActions goes up to one SQS batch"
    # Lanes overlap latency; the pace (MutatingCallsPerSecond) bounds writes,
    # so by default a whole batch runs at once.
    assert int(parameter["Default"]) == int(batch["Default"]), (
        f"MaxConcurrentActions' default {parameter['Default']} should be one SQS batch ({batch['Default']})"
    )


def test_mutating_calls_per_second_comes_from_its_parameter(template, function):
    env = function["Properties"]["Environment"]["Variables"]
    assert env.get("MUTATING_CALLS_PER_SECOND") == {"Ref": "MutatingCallsPerSecond"}
    parameter = template["Parameters"]["MutatingCallsPerSecond"]
    assert parameter["Type"] == "Number"
    # src/config/mod.rs refuses 0, negative and non-finite rates (the process
    # would not start); absent means unpaced, which the template never deploys.
    assert float(parameter["MinValue"]) > 0, "MUTATING_CALLS_PER_SECOND must be positive: src/config/mod.rs refuses 0"
    assert float(parameter["MinValue"]) <= float(parameter["Default"]) <= float(parameter["MaxValue"])
    assert "MUTATING_CALLS_PER_SECOND" in code_env_vars(), "src/ does not read MUTATING_CALLS_PER_SECOND"


def config_default(name):
    """The number of `const NAME: <type> = <n>;` in src/config/mod.rs, or in the
    logic's module when config.rs re-exports the logic's own default."""
    for path in ("src/config/mod.rs", "src/mirroring/mod.rs"):
        source = without_comments(read(path))
        match = re.search(r"\bconst\s+" + name + r"\s*:\s*\w+\s*=\s*(\d+)\s*;", source)
        if match:
            return int(match.group(1))
    config = without_comments(read("src/config/mod.rs"))
    assert re.search(r"\bpub use crate::mirroring::\{[^}]*\b" + name + r"\b", config), (
        f"no `const {name}: ... = <number>;` in src/config/mod.rs, nor re-exported from src/mirroring/mod.rs"
    )
    raise AssertionError(f"src/config/mod.rs re-exports {name}, but src/mirroring/mod.rs does not define it as a number")


@pytest.mark.parametrize(
    "parameter, variable",
    [("FinishedRecordDays", "FINISHED_RECORD_DAYS"), ("SweepMaxDeletions", "SWEEP_MAX_DELETIONS")],
)
def test_bounded_numbers_come_from_their_parameters_within_the_codes_range(template, function, parameter, variable):
    """The parameter's bounds lie within what src/config/mod.rs accepts (outside
    it the function would refuse to start) and its default is the code's, so
    a function deployed without the variable behaves as the stack's default."""
    env = function["Properties"]["Environment"]["Variables"]
    assert env.get(variable) == {"Ref": parameter}, f"{variable} must come from the {parameter} parameter"
    declared = template["Parameters"][parameter]
    assert declared["Type"] == "Number"
    low, high = config_range(variable)
    assert low <= int(declared["MinValue"]) <= int(declared["Default"]) <= int(declared["MaxValue"]) <= high, (
        f"{parameter} allows {declared['MinValue']}-{declared['MaxValue']} (default {declared['Default']}); "
        f"src/config/mod.rs refuses to start outside {low}-{high}"
    )
    assert int(declared["Default"]) == config_default("DEFAULT_" + variable), (
        f"{parameter}'s default {declared['Default']} differs from src/config/mod.rs DEFAULT_{variable}"
    )


# What the allow-list parameters' patterns must accept and refuse, the way
# src/config/mod.rs reads the lists (comma-separated, items trimmed): `*` alone
# for anything, said explicitly; never empty (closed by default: the
# parameters are required).
NLB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/mon/50dc6c495c0c9188"
ALLOW_LISTS = {
    "AllowedTargets": (
        "ALLOWED_TARGETS", "AnyTarget",
        ["*", "eni-0000000b", f" eni-0000000b , {NLB},vpce-0123456789abcdef0,tmt-0000000c ",
         "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:123456789012:loadbalancer/net/a-b/0123456789abcdef"],
        ["", " ", " * ", "*,eni-0000000b", "eni-0000000b,*", "**", "eni-0000000b,10.0.0.1", "vpc-0000000a", "eni-123",
         "eni-0000000b;eni-0000000c", NLB.replace("/net/", "/app/"), "eni-0000000b,,eni-0000000c", "eni-0000000b,"],
    ),
    "AllowedSources": (
        "ALLOWED_SOURCES", "AnySource",
        ["*", "vpc-0000000a", "vpc-0000000a, subnet-0123456789abcdef0"],
        ["", " ", " *", "*,vpc-0000000a", "vpc-0000000a,sg-0000000b", "eni-0000000b", "subnet-12", "vpc-0000000a subnet-0000000b"],
    ),
}


@pytest.mark.parametrize("parameter", sorted(ALLOW_LISTS))
def test_the_allow_lists_are_required_and_star_is_said_explicitly(template, function, parameter):
    """Closed by default: no Default, so every deployment names what it
    allows; `*` (alone) allows anything, and nothing else does (an empty
    value is refused by the pattern, as the code would refuse every create)."""
    variable, condition, accepted, refused = ALLOW_LISTS[parameter]
    env = function["Properties"]["Environment"]["Variables"]
    assert env.get(variable) == {"Ref": parameter}, f"{variable} must come from the {parameter} parameter"
    declared = template["Parameters"][parameter]
    # A CommaDelimitedList would split before the role's Fn::Split could;
    # the code splits the list itself.
    assert declared["Type"] == "String", f"{parameter}: Type String"
    assert "Default" not in declared, f"{parameter} must be required (no Default): closed by default"
    assert int(declared.get("MinLength", 0)) >= 1, f"{parameter}: MinLength 1, so an empty value is refused"
    description = " ".join(declared["Description"].split())
    for words in ("Required", "*", "Empty is not accepted"):
        assert words in description, f"{parameter}'s description should say {words!r}"
    pattern = declared.get("AllowedPattern")
    assert pattern, f"{parameter} has no AllowedPattern"
    # CloudFormation matches the whole value (Java's String.matches).
    for value in accepted:
        assert re.fullmatch(pattern, value), f"{parameter}'s AllowedPattern refuses {value!r}, which src/config/mod.rs reads"
    for value in refused:
        assert not re.fullmatch(pattern, value), f"{parameter}'s AllowedPattern accepts {value!r}"
    assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": parameter}, "*"]}, (
        f"{condition}: !Equals [!Ref {parameter}, \"*\"]"
    )
    assert rust_str_const(without_comments(read("src/config/mod.rs")), "ANY") == "*", "src/config/mod.rs's ANY is not \"*\""


# The accountability switches: (parameter, variable, default).
SWITCHES = [("RequireReason", "REQUIRE_REASON", "false"), ("RemoveUnapprovedMirrors", "REMOVE_UNAPPROVED_MIRRORS", "false")]


@pytest.mark.parametrize("parameter, variable, default", SWITCHES)
def test_the_switches_come_from_true_false_parameters(template, function, parameter, variable, default):
    declared = template["Parameters"][parameter]
    assert declared["Type"] == "String" and sorted(declared["AllowedValues"]) == ["false", "true"]
    assert declared["Default"] == default, f"{parameter} defaults to {default!r}"
    assert function["Properties"]["Environment"]["Variables"].get(variable) == {"Ref": parameter}
    assert variable in code_env_vars(), f"src/config/mod.rs does not read {variable}"


def test_the_mirror_lifetime_cap_is_passed_only_when_set(template, function):
    """MaxMirrorMinutes 0 (the default) means no cap: the function then gets
    MAX_MIRROR_MINUTES empty (src/config/mod.rs reads it as unset), else the
    number, within the range the code accepts."""
    declared = template["Parameters"]["MaxMirrorMinutes"]
    assert declared["Type"] == "Number"
    assert (int(declared["Default"]), int(declared["MinValue"]), int(declared["MaxValue"])) == (0, 0, 525600)
    value = function["Properties"]["Environment"]["Variables"].get("MAX_MIRROR_MINUTES")
    assert deployed(value, template, {}) == "", "MaxMirrorMinutes 0: MAX_MIRROR_MINUTES must be empty"
    assert deployed(value, template, {"MaxMirrorMinutes": 90}) == "90"
    low, high = config_range("MAX_MIRROR_MINUTES")
    assert low <= 1 and int(declared["MaxValue"]) <= high, (
        f"MaxMirrorMinutes allows 1-{declared['MaxValue']}; src/config/mod.rs refuses to start outside {low}-{high}"
    )


def test_the_audit_trail_is_kept_a_year_by_default(template):
    """Finished ledger records (who asked, why, when) and the function's logs
    last a year unless the deployment says otherwise."""
    assert int(template["Parameters"]["FinishedRecordDays"]["Default"]) == 365
    retention = template["Parameters"]["LogRetentionDays"]
    assert int(retention["Default"]) == 365
    # What CloudWatch Logs accepts as a retention (PutRetentionPolicy).
    assert [int(v) for v in retention["AllowedValues"]] == [
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
    ]


def test_async_invocations_have_bounded_retries_and_a_dead_letter_queue(function):
    properties = function["Properties"]
    assert properties["DeadLetterQueue"]["Type"] == "SQS"
    assert refers_to(properties["DeadLetterQueue"]["TargetArn"], "EventFailureQueue")
    config = properties["EventInvokeConfig"]
    assert "MaximumRetryAttempts" in config and "MaximumEventAgeInSeconds" in config


# ---------------------------------------------------------------- queue

def test_the_request_queue_feeds_the_function_with_partial_batch_failures(resources):
    mappings = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 1
    mapping = mappings[0]["Properties"]
    assert refers_to(mapping["EventSourceArn"], "RequestQueue")
    assert refers_to(mapping["FunctionName"], FUNCTION)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_request_queue_has_a_dead_letter_queue(resources):
    redrive = resources["RequestQueue"]["Properties"]["RedrivePolicy"]
    assert refers_to(redrive["deadLetterTargetArn"], "RequestDeadLetterQueue")


def test_every_queue_is_encrypted(resources):
    for name, resource in resources.items():
        if resource["Type"] == "AWS::SQS::Queue":
            properties = resource["Properties"]
            assert properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in properties, f"{name} is not encrypted"


# ---------------------------------------------------------------- rules

def test_instance_state_rule_matches_the_states_the_code_handles(resources, ingress):
    rule = resources["InstanceStateRule"]["Properties"]
    assert rule.get("EventBusName", "default") == "default", "EC2 sends state changes to the default bus only"
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.ec2"]
    assert pattern["detail-type"] == [rust_str_const(ingress, "EC2_STATE_CHANGE")]
    assert set(pattern["detail"]["state"]) == handled_states(ingress)


def test_request_rule_matches_the_detail_types_the_code_accepts(resources, ingress):
    accepted = set(rust_str_array(ingress, "REQUEST_DETAIL_TYPES"))
    for pattern in leaves(resources["RequestRule"]["Properties"]["EventPattern"]):
        assert set(pattern["detail-type"]) == accepted


def test_completion_events_cannot_trigger_the_request_rule(ingress):
    """By default the request rule listens on the completion bus: a completion
    detail-type that is also a request detail-type would loop."""
    contract = without_comments(read("src/contract.rs"))
    completions = set(re.findall(r"\bconst\s+DETAIL_\w+\s*:\s*&str\s*=\s*\"([^\"]+)\"", contract))
    assert completions, "the parser no longer finds the completion detail-types (DETAIL_*) in src/contract.rs"
    assert not completions & set(rust_str_array(ingress, "REQUEST_DETAIL_TYPES"))


def test_the_sweep_rule_sends_the_sweep_input(resources):
    rule = resources["SweepRule"]["Properties"]
    assert rule["ScheduleExpression"] == {"Ref": "SweepSchedule"}
    assert json.loads(rule["Targets"][0]["Input"]) == {"sweep": {}}


def test_the_code_recognises_the_sweep_input(ingress):
    assert re.search(r"\"sweep\"", ingress), "src/sources.rs no longer mentions the sweep input the rule sends"


def test_the_expiry_rule_sends_the_expire_input_every_five_minutes(template, resources):
    """Time-boxed: the expiry run removes mirrors past their end within
    ExpirySchedule (5 minutes by default), always (no condition), retried
    and dead-lettered like the sweep."""
    rule = resources["ExpiryRule"]
    assert "Condition" not in rule, "ExpiryRule is part of every deployment"
    properties = rule["Properties"]
    assert properties["ScheduleExpression"] == {"Ref": "ExpirySchedule"}
    assert template["Parameters"]["ExpirySchedule"]["Default"] == "rate(5 minutes)"
    (target,) = properties["Targets"]
    assert json.loads(target["Input"]) == {"expire": {}}
    (sweep,) = resources["SweepRule"]["Properties"]["Targets"]
    for setting in ("Arn", "RetryPolicy", "DeadLetterConfig"):
        assert target[setting] == sweep[setting], f"ExpiryRule's {setting} should be the sweep rule's"


def test_the_code_recognises_the_expire_input(ingress):
    assert re.search(r"\"expire\"", ingress), (
        "src/sources.rs (or contract.rs, handler.rs) does not mention the expire input ExpiryRule sends"
    )


@pytest.mark.parametrize("name", RULES)
def test_every_rule_has_bounded_retries_and_a_dead_letter_queue(resources, name):
    (target,) = resources[name]["Properties"]["Targets"]
    assert set(target["RetryPolicy"]) == {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"}
    assert refers_to(target["DeadLetterConfig"]["Arn"], "EventFailureQueue")


def invoke_permissions(resources, rule):
    return [
        r for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission" and refers_to(r["Properties"]["SourceArn"], rule)
    ]


@pytest.mark.parametrize("name", FUNCTION_RULES)
def test_direct_rules_invoke_the_function_with_a_permission_limited_to_the_rule(resources, name):
    rule = resources[name]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    permissions = invoke_permissions(resources, name)
    assert len(permissions) == 1, f"{name} needs one lambda:InvokeFunction permission limited to its ARN"
    assert permissions[0]["Properties"]["SourceArn"] == {"Fn::GetAtt": [name, "Arn"]}
    assert permissions[0].get("Condition") == rule.get("Condition")


@pytest.mark.parametrize("name", QUEUE_RULES)
def test_instance_events_go_through_the_request_queue(resources, name):
    (target,) = resources[name]["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [QUEUE, "Arn"]}, f"{name} must deliver to {QUEUE}, not invoke the function"
    assert not invoke_permissions(resources, name), f"{name} no longer invokes the function: drop its lambda:InvokeFunction permission"


def test_every_invoke_permission_belongs_to_a_rule_that_invokes_the_function(resources):
    for name, permission in resources.items():
        if permission["Type"] != "AWS::Lambda::Permission":
            continue
        rules = [r for r in FUNCTION_RULES if refers_to(permission["Properties"]["SourceArn"], r)]
        assert rules, f"{name} lets something invoke the function that no rule in FUNCTION_RULES is"


def request_queue_statements(resources):
    policies = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and refers_to(r["Properties"]["Queues"], QUEUE)
    ]
    assert len(policies) == 1, f"{QUEUE} needs exactly one queue policy"
    (policy,) = policies
    assert policy["Queues"] == [{"Ref": QUEUE}], "the request queue's policy must cover that queue only"
    return as_list(policy["PolicyDocument"]["Statement"])


def test_the_request_queue_admits_only_the_queue_rules(resources):
    admitted = []
    for statement in request_queue_statements(resources):
        sid = statement.get("Sid", statement)
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}, f"{sid}: only EventBridge, by service principal"
        assert as_list(statement["Action"]) == ["sqs:SendMessage"], f"{sid}: EventBridge needs only sqs:SendMessage"
        assert statement["Resource"] == {"Fn::GetAtt": [QUEUE, "Arn"]}
        condition = statement.get("Condition", {})
        assert set(condition) == {"ArnEquals"} and set(condition["ArnEquals"]) == {"aws:SourceArn"}, (
            f"{sid}: admit EventBridge only from named rules (ArnEquals aws:SourceArn)"
        )
        sources = [leaf for value in as_list(condition["ArnEquals"]["aws:SourceArn"]) for leaf in leaves(value)]
        for source in sources:
            assert isinstance(source, dict) and source.get("Fn::GetAtt", [None, None])[1] == "Arn", (
                f"{sid}: name each rule by its ARN, not {source!r}"
            )
            admitted.append(source["Fn::GetAtt"][0])
    assert sorted(admitted) == sorted(QUEUE_RULES), f"the request queue admits {sorted(admitted)}, expected {QUEUE_RULES}"


def admitted_sources(resources):
    """[aws:SourceArn value] of the request queue's policy, as written (an
    Fn::If kept whole)."""
    return [
        value
        for statement in request_queue_statements(resources)
        for value in as_list(statement.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn", []))
    ]


def test_the_request_queue_admits_the_tag_and_attach_rules(resources):
    """EventBridge may deliver the tag rule's events always, and the attach
    rule's exactly when that rule exists (its condition, else the policy
    would name a resource that is not there)."""
    sources = admitted_sources(resources)
    assert {"Fn::GetAtt": [TAG_RULE, "Arn"]} in sources, f"the request queue's policy does not admit {TAG_RULE}"
    for rule, condition in CONDITIONAL_RULES.items():
        assert {"Fn::If": [condition, {"Fn::GetAtt": [rule, "Arn"]}, {"Ref": "AWS::NoValue"}]} in sources, (
            f"the request queue's policy should admit {rule} as "
            f"!If [{condition}, !GetAtt {rule}.Arn, !Ref AWS::NoValue]"
        )


def queue_rule_target(resources, name):
    """The one target of a queue rule, checked to be the request queue with
    bounded retries and the event failure queue as its dead-letter queue."""
    rule = resources[name]
    assert rule["Type"] == "AWS::Events::Rule"
    properties = rule["Properties"]
    assert properties.get("State", "ENABLED") == "ENABLED", f"{name} is not enabled"
    assert properties.get("EventBusName", "default") == "default", f"{name}: AWS sends these events to the default bus only"
    (target,) = properties["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [QUEUE, "Arn"]}, f"{name} must deliver to {QUEUE}"
    assert set(target["RetryPolicy"]) == {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"}, f"{name}: bounded retries"
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["EventFailureQueue", "Arn"]}, (
        f"{name}: undeliverable events must go to EventFailureQueue"
    )
    return target


def test_the_tag_rule_queues_tag_changes_of_the_policy_tags_on_instances(resources):
    """AWS's "Tag Change on Resource" events, for EC2 instances only (not the
    targets, filters and sessions the function tags itself), when a changed
    key starts with traffic-mirroring:. Always deployed: no condition."""
    rule = resources[TAG_RULE]
    assert "Condition" not in rule, f"{TAG_RULE} is part of every deployment"
    pattern = rule["Properties"]["EventPattern"]
    assert pattern == {
        "source": ["aws.tag"],
        "detail-type": ["Tag Change on Resource"],
        "detail": {
            "service": ["ec2"],
            "resource-type": ["instance"],
            "changed-tag-keys": [{"prefix": POLICY_TAG_PREFIX}],
        },
    }, f"{TAG_RULE}'s EventPattern is {pattern!r}"
    queue_rule_target(resources, TAG_RULE)


def test_every_tag_key_the_code_reads_changes_through_the_tag_rule():
    """Every tag key the code names (TAG_* string constants in src/, the
    launch policy's among them) starts with the prefix the tag rule matches:
    a policy tag outside it would change nothing until the next sweep."""
    keys = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "src")):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.relpath(os.path.join(folder, name), ROOT)
                source = without_comments(read(path)).split("#[cfg(test)]", 1)[0]
                for const, value in re.findall(r"\bconst\s+(TAG_\w+)\s*:\s*&str\s*=\s*\"([^\"]*)\"", source):
                    if not const.endswith("_VALUE"):
                        keys[f"{path}: {const}"] = value
    assert {"traffic-mirroring:target", "traffic-mirroring:target-eni"} <= set(keys.values()), (
        "the parser no longer finds the launch policy's tag keys (TAG_TARGET, TAG_TARGET_ENI) in src/"
    )
    outside = {where: key for where, key in keys.items() if not key.startswith(POLICY_TAG_PREFIX)}
    assert not outside, f"tag keys the tag rule ({POLICY_TAG_PREFIX}*) does not see: {outside}"


def test_the_attach_rule_queues_cloudtrail_attachments_under_its_parameter(template, resources):
    """CloudTrail's AttachNetworkInterface calls, behind RouteEniAttachments
    ("true" by default): they reach EventBridge only where a trail records
    management events, which the parameter's description must say."""
    parameter = template["Parameters"][ATTACH_PARAMETER]
    assert parameter["Type"] == "String"
    assert sorted(parameter["AllowedValues"]) == ["false", "true"] and parameter["Default"] == "true"
    description = " ".join(parameter["Description"].split())
    for words in ("CloudTrail", "trail records management events", "sweep"):
        assert words in description, f"{ATTACH_PARAMETER}'s description should mention {words!r}"
    assert template["Conditions"][ATTACH_CONDITION] == {"Fn::Equals": [{"Ref": ATTACH_PARAMETER}, "true"]}

    rule = resources[ATTACH_RULE]
    assert rule.get("Condition") == ATTACH_CONDITION, f"{ATTACH_RULE} must exist only under {ATTACH_CONDITION}"
    pattern = rule["Properties"]["EventPattern"]
    assert pattern == {
        "source": ["aws.ec2"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {"eventSource": ["ec2.amazonaws.com"], "eventName": ["AttachNetworkInterface"]},
    }, f"{ATTACH_RULE}'s EventPattern is {pattern!r}"
    queue_rule_target(resources, ATTACH_RULE)


@pytest.mark.parametrize("rule, condition", sorted(CONDITIONAL_RULES.items()))
def test_nothing_names_a_conditional_rule_outside_its_condition(template, resources, rule, condition):
    """With RouteEniAttachments=false (WatchTampering=false) the rule does
    not exist: anything else naming it (a resource or an output) must sit
    under the same condition (its own, or the true branch of an Fn::If on
    it), or the deployment fails."""
    assert resources[rule].get("Condition") == condition, f"{rule} must exist only under {condition}"
    stray = []

    def walk(value, where):
        if isinstance(value, dict):
            if "Fn::If" in value and value["Fn::If"][0] == condition:
                walk(value["Fn::If"][2], f"{where}.Fn::If[false]")
                return
            if refers_to({key: v for key, v in value.items() if key in ("Ref", "Fn::GetAtt", "Fn::Sub")}, rule):
                stray.append(where)
                return
            for key, v in value.items():
                walk(v, f"{where}.{key}")
        elif isinstance(value, list):
            for index, v in enumerate(value):
                walk(v, f"{where}[{index}]")

    named = False
    for name, entry in [*resources.items(), *template.get("Outputs", {}).items()]:
        if name == rule:
            continue
        named = named or refers_to(entry, rule) or rule in as_list(entry.get("DependsOn", []))
        if entry.get("Condition") != condition:
            if rule in as_list(entry.get("DependsOn", [])):
                stray.append(f"{name}.DependsOn")
            walk(entry, name)
    assert named, f"nothing names {rule}: the queue policies must admit it"
    assert not stray, f"{rule} named outside {condition}: {stray}"


# CloudTrail's records as EventBridge delivers them (trimmed to what the
# patterns read): deletes of mirroring resources, and tag calls.
def cloudtrail_event(event_name, request_parameters, event_source="ec2.amazonaws.com"):
    return {
        "version": "0", "id": "6f8a2c1e-0000-4000-8000-000000000000", "source": "aws.ec2",
        "detail-type": "AWS API Call via CloudTrail", "account": "123456789012", "region": "us-east-1",
        "detail": {
            "eventVersion": "1.09", "eventSource": event_source, "eventName": event_name,
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/ops/alice"},
            "requestParameters": request_parameters,
        },
    }


def tag_call(event_name, keys, resource="i-0123456789abcdef0"):
    return cloudtrail_event(event_name, {
        "resourcesSet": {"items": [{"resourceId": resource}]},
        "tagSet": {"items": [{"key": key, "value": "true"} for key in keys]},
    })


TAMPER_EVENTS = [
    (cloudtrail_event("DeleteTrafficMirrorSession", {"DeleteTrafficMirrorSessionRequest": {"TrafficMirrorSessionId": "tms-0123456789abcdef0"}}), True),
    (cloudtrail_event("DeleteTrafficMirrorFilter", {"DeleteTrafficMirrorFilterRequest": {"TrafficMirrorFilterId": "tmf-0123456789abcdef0"}}), True),
    (cloudtrail_event("DeleteTrafficMirrorTarget", {"DeleteTrafficMirrorTargetRequest": {"TrafficMirrorTargetId": "tmt-0123456789abcdef0"}}), True),
    (cloudtrail_event("CreateTrafficMirrorSession", {}), False),
    (cloudtrail_event("DeleteTrafficMirrorFilterRule", {}), False),
    (cloudtrail_event("DeleteTrafficMirrorSession", {}, event_source="elasticloadbalancing.amazonaws.com"), False),
]
EXCLUDE_EVENTS = [
    (tag_call("CreateTags", [EXCLUDE_TAG]), True),
    (tag_call("DeleteTags", [EXCLUDE_TAG]), True),
    (tag_call("CreateTags", ["Name", EXCLUDE_TAG, "team"]), True),
    (tag_call("CreateTags", ["traffic-mirroring:target"]), False),
    (tag_call("CreateTags", ["traffic-mirroring:exclude-me"]), False),
    (tag_call("CreateSnapshot", [EXCLUDE_TAG]), False),
    (cloudtrail_event("CreateTags", {"resourcesSet": {"items": [{"resourceId": "i-0123456789abcdef0"}]}}), False),
]


def test_the_tamper_rules_queue_cloudtrail_calls_under_their_parameter(template, resources):
    """TamperRule and ExcludeTagRule, behind WatchTampering ("true" by
    default): they reach EventBridge only where a trail records management
    events, which the parameter's description must say."""
    parameter = template["Parameters"][TAMPER_PARAMETER]
    assert parameter["Type"] == "String"
    assert sorted(parameter["AllowedValues"]) == ["false", "true"] and parameter["Default"] == "true"
    description = " ".join(parameter["Description"].split())
    for words in ("CloudTrail", "trail records management events", "sweep"):
        assert words in description, f"{TAMPER_PARAMETER}'s description should mention {words!r}"
    assert template["Conditions"][TAMPER_CONDITION] == {"Fn::Equals": [{"Ref": TAMPER_PARAMETER}, "true"]}
    cloudtrail = {"source": ["aws.ec2"], "detail-type": ["AWS API Call via CloudTrail"]}
    assert resources[TAMPER_RULE]["Properties"]["EventPattern"] == {
        **cloudtrail,
        "detail": {
            "eventSource": ["ec2.amazonaws.com"],
            "eventName": ["DeleteTrafficMirrorSession", "DeleteTrafficMirrorFilter", "DeleteTrafficMirrorTarget"],
        },
    }, f"{TAMPER_RULE}'s EventPattern"
    assert resources[EXCLUDE_RULE]["Properties"]["EventPattern"] == {
        **cloudtrail,
        "detail": {
            "eventSource": ["ec2.amazonaws.com"],
            "eventName": ["CreateTags", "DeleteTags"],
            "requestParameters": {"tagSet": {"items": {"key": [EXCLUDE_TAG]}}},
        },
    }, f"{EXCLUDE_RULE}'s EventPattern"
    for rule in (TAMPER_RULE, EXCLUDE_RULE):
        assert resources[rule].get("Condition") == TAMPER_CONDITION, f"{rule} must exist only under {TAMPER_CONDITION}"
        queue_rule_target(resources, rule)


@pytest.mark.parametrize(
    "rule, event, expected",
    [(TAMPER_RULE, e, m) for e, m in TAMPER_EVENTS] + [(EXCLUDE_RULE, e, m) for e, m in EXCLUDE_EVENTS],
    ids=[f"tamper: {e['detail']['eventName']}{'' if m else ' (no)'}" for e, m in TAMPER_EVENTS]
    + [f"exclude {i}: {e['detail']['eventName']}{'' if m else ' (no)'}" for i, (e, m) in enumerate(EXCLUDE_EVENTS)],
)
def test_the_tamper_rules_match_what_they_are_for_and_nothing_else(resources, rule, event, expected):
    """EventBridge matches a pattern's value against each element of an
    array: one tag among several (tagSet.items) is enough."""
    assert event_matches(resources[rule]["Properties"]["EventPattern"], event) == expected, (
        f"{rule} should {'match' if expected else 'not match'} {event['detail']}"
    )


def test_the_tag_key_the_exclude_rule_watches_is_the_codes():
    """The exclude tag's key as src/ names it (TAG_* constants)."""
    values = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "src")):
        for name in files:
            if name.endswith(".rs"):
                source = without_comments(read(os.path.relpath(os.path.join(folder, name), ROOT))).split("#[cfg(test)]", 1)[0]
                values |= set(re.findall(r"\bconst\s+TAG_\w+\s*:\s*&str\s*=\s*\"([^\"]*)\"", source))
    assert EXCLUDE_TAG in values, f"no TAG_* constant in src/ is {EXCLUDE_TAG!r}, the key ExcludeTagRule watches"


def test_every_rule_target_can_deliver(resources):
    """Each rule's target is the function (with its invoke permission) or the
    request queue (admitted by its policy): a target without its grant drops
    every event into the failure queue."""
    admitted = {
        leaf["Fn::GetAtt"][0]
        for statement in request_queue_statements(resources)
        for value in as_list(statement.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn", []))
        for leaf in leaves(value)
    }
    for name, rule in resources.items():
        if rule["Type"] != "AWS::Events::Rule":
            continue
        for target in rule["Properties"]["Targets"]:
            if target["Arn"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}:
                assert invoke_permissions(resources, name), f"{name} invokes the function without a permission"
            elif target["Arn"] == {"Fn::GetAtt": [QUEUE, "Arn"]}:
                assert name in admitted, f"{name} sends to {QUEUE}, whose policy does not admit it"
            else:
                pytest.fail(f"{name} targets {target['Arn']!r}: expected the function or {QUEUE}")


def test_the_rules_may_send_dead_letters(resources):
    policy = resources["EventFailureQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    sources = policy["Condition"]["ArnEquals"]["aws:SourceArn"]
    for name in RULES:
        assert refers_to(sources, name), f"{name} cannot deliver to EventFailureQueue"


# ---------------------------------------------------------------- alarms, outputs

def test_alarms_watch_the_dead_letter_queues_and_function_errors(resources):
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]

    def watched(metric, resource):
        return any(a["MetricName"] == metric and refers_to(a.get("Dimensions", []), resource) for a in alarms)

    assert watched("ApproximateNumberOfMessagesVisible", "RequestDeadLetterQueue")
    assert watched("ApproximateNumberOfMessagesVisible", "EventFailureQueue")
    assert watched("Errors", FUNCTION)


SWEEP_CAP_FIELD = "sweep_deletions_deferred"
SWEEP_CAP_ALARM = "SweepDeletionsCappedAlarm"


def test_the_sweep_cap_alarm_watches_the_deferred_deletions_in_the_log(resources):
    """The sweep logs fields.sweep_deletions_deferred (> 0) when it leaves
    unused filters and targets for later (SWEEP_MAX_DELETIONS); a metric
    filter on the function's log group counts them and the alarm watches
    exactly that metric."""
    filters = {
        name: r["Properties"] for name, r in resources.items()
        if r["Type"] == "AWS::Logs::MetricFilter" and SWEEP_CAP_FIELD in r["Properties"]["FilterPattern"]
    }
    assert len(filters) == 1, f"expected one metric filter on {SWEEP_CAP_FIELD}, found {sorted(filters)}"
    ((name, metric_filter),) = filters.items()
    assert metric_filter["LogGroupName"] == {"Ref": "FunctionLogGroup"}, f"{name} must read the function's log group"
    # A JSON filter on the field the function logs (tracing-subscriber's JSON
    # puts an event's fields under "fields"), matching only a positive count.
    pattern = re.fullmatch(r"\{\s*\$\.fields\.(\w+)\s*>\s*0\s*\}", metric_filter["FilterPattern"])
    assert pattern and pattern.group(1) == SWEEP_CAP_FIELD, (
        f"{name}: FilterPattern should be {{ $.fields.{SWEEP_CAP_FIELD} > 0 }}, not {metric_filter['FilterPattern']!r}"
    )
    (transformation,) = metric_filter["MetricTransformations"]
    assert transformation["MetricValue"] == f"$.fields.{SWEEP_CAP_FIELD}", f"{name}: the metric is the deferred count"
    assert "Dimensions" not in transformation, f"{name}: the metric is dimensionless (its namespace names the stack)"
    assert refers_to(transformation["MetricNamespace"], "AWS::StackName"), (
        f"{name}: a namespace of this stack's own, or two stacks in one account alarm on each other's sweeps"
    )

    alarm = resources[SWEEP_CAP_ALARM]
    assert alarm["Type"] == "AWS::CloudWatch::Alarm"
    alarm = alarm["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (transformation["MetricNamespace"], transformation["MetricName"]), (
        f"{SWEEP_CAP_ALARM} watches {alarm['Namespace']!r}/{alarm['MetricName']!r}, not {name}'s metric"
    )
    assert not alarm.get("Dimensions"), f"{SWEEP_CAP_ALARM}: {name} publishes no dimensions"
    assert (alarm["ComparisonOperator"], float(alarm["Threshold"])) in {
        ("GreaterThanThreshold", 0.0), ("GreaterThanOrEqualToThreshold", 1.0)
    }, f"{SWEEP_CAP_ALARM} should fire on any deferred deletion (> 0)"
    assert int(alarm["EvaluationPeriods"]) == 1 and int(alarm.get("DatapointsToAlarm", 1)) == 1
    # The filter publishes only when a sweep defers deletions.
    assert alarm["TreatMissingData"] == "notBreaching"


def test_the_code_logs_the_field_the_sweep_alarm_counts():
    """The field the metric filter reads must be one the code logs."""
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "src")):
        for name in files:
            if name.endswith(".rs"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    source = without_comments(f.read()).split("#[cfg(test)]", 1)[0]
                if re.search(r"\b" + SWEEP_CAP_FIELD + r"\b", source):
                    found.append(os.path.relpath(os.path.join(folder, name), ROOT))
    assert found, f"nothing in src/ logs {SWEEP_CAP_FIELD}, which {SWEEP_CAP_ALARM}'s metric filter counts"


def test_every_alarm_notifies_the_alarm_topic(resources):
    for name, resource in resources.items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            for actions in ("AlarmActions", "OKActions"):
                assert resource["Properties"].get(actions) == {
                    "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
                }, f"{name}: {actions} should notify AlarmTopicArn when it is set"


def test_outputs_name_the_queue_bus_and_table(template):
    outputs = template["Outputs"]
    assert refers_to(outputs["RequestQueueUrl"]["Value"], "RequestQueue")
    assert refers_to(outputs["CompletionBusName"]["Value"], "CompletionEventBus")
    assert refers_to(outputs["LedgerTableName"]["Value"], "LedgerTable")


# ---------------------------------------------------------------- skipped checks

def test_every_skipped_checkov_check_has_a_reason(resources):
    assert_checkov_skips_have_reasons(resources)


def test_every_ignored_cfn_lint_rule_is_explained():
    assert_ignored_cfn_lint_rules_explained(TEMPLATE)


# ---------------------------------------------------------------- documentation

REQUIRED = object()


def readme_parameter_defaults():
    """{parameter: default} from the Parameters table of infra/README.md;
    "empty" stands for an empty default, "**required**" for none."""
    with open(os.path.join(ROOT, "infra", "README.md"), encoding="utf-8") as f:
        section = re.search(r"^## Parameters\n(.*?)(?=^## )", f.read(), re.M | re.S)
    assert section, "infra/README.md has no \"## Parameters\" section"
    rows = re.findall(r"^\| `(\w+)` \| (`[^`]*`|empty|\*\*required\*\*) \|", section.group(1), re.M)
    assert rows, "the parser no longer finds the Parameters table in infra/README.md"
    values = {"empty": "", "**required**": REQUIRED}
    return {name: values.get(value, value.strip("`")) for name, value in rows}


def test_the_readme_lists_every_parameter_with_its_default(template):
    documented = readme_parameter_defaults()
    parameters = template["Parameters"]
    assert set(documented) == set(parameters), (
        f"infra/README.md's Parameters table: missing {sorted(set(parameters) - set(documented))}, "
        f"extra {sorted(set(documented) - set(parameters))}"
    )
    for name, parameter in parameters.items():
        expected = str(parameter["Default"]) if "Default" in parameter else REQUIRED
        shown = "**required**" if documented[name] is REQUIRED else repr(documented[name])
        assert documented[name] == expected, (
            f"infra/README.md gives {name} the default {shown}; the template has "
            f"{repr(parameter['Default']) if 'Default' in parameter else 'none (required)'}"
        )
