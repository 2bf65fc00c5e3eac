"""The template wires the function the way the code expects to be invoked and
configured: the events it recognises (src/ingress.rs), the environment it
reads (src/config.rs), the queue and retry settings the issue asks for, and a
written reason for every check it skips."""

import json
import os
import re

import pytest

from infra_support import ROOT, TEMPLATE, as_list, leaves, load_template, read, refers_to, rust_str_array, rust_str_const, without_comments

FUNCTION = "TrafficMirroringFunction"
RULES = ["InstanceStateRule", "RequestRule", "SweepRule"]

# Read by a library, not by src/config.rs.
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
    return without_comments(read("src/ingress.rs"))


def code_env_vars():
    """Environment variables src/ reads: the ALL_CAPS string constants of
    src/config.rs and every literal env::var("...")."""
    config = without_comments(read("src/config.rs"))
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
    assert "TABLE_NAME" in names, "the parser no longer finds the environment variables in src/config.rs"
    return names


def handled_states(ingress):
    """The instance states handle_instance_state matches on."""
    match = re.search(r"fn handle_instance_state\b(.*?)\n    (?:pub )?(?:async )?fn ", ingress, re.S)
    body = match.group(1) if match else ingress.split("fn handle_instance_state", 1)[1]
    states = set(re.findall(r"\"([a-z][a-z-]*)\"\s*(?=\||=>)", body))
    assert "running" in states, "the parser no longer finds the states in handle_instance_state"
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
    handler = without_comments(read("src/handler.rs"))
    completions = set(re.findall(r"\bconst\s+DETAIL_\w+\s*:\s*&str\s*=\s*\"([^\"]+)\"", handler))
    assert completions, "the parser no longer finds the completion detail-types (DETAIL_*) in src/handler.rs"
    assert not completions & set(rust_str_array(ingress, "REQUEST_DETAIL_TYPES"))


def test_the_sweep_rule_sends_the_sweep_input(resources):
    rule = resources["SweepRule"]["Properties"]
    assert rule["ScheduleExpression"] == {"Ref": "SweepSchedule"}
    assert json.loads(rule["Targets"][0]["Input"]) == {"sweep": {}}


def test_the_code_recognises_the_sweep_input(ingress):
    assert re.search(r"\"sweep\"", ingress), "src/ingress.rs no longer mentions the sweep input the rule sends"


@pytest.mark.parametrize("name", RULES)
def test_every_rule_targets_the_function_with_bounded_retries_and_a_dead_letter_queue(resources, name):
    rule = resources[name]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert set(target["RetryPolicy"]) == {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"}
    assert refers_to(target["DeadLetterConfig"]["Arn"], "EventFailureQueue")
    permissions = [
        r for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["SourceArn"] == {"Fn::GetAtt": [name, "Arn"]}
    ]
    assert len(permissions) == 1, f"{name} needs one lambda:InvokeFunction permission limited to its ARN"
    assert permissions[0].get("Condition") == rule.get("Condition")


def test_the_rules_may_send_dead_letters(resources):
    policy = resources["EventFailureQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    sources = policy["Condition"]["ArnEquals"]["aws:SourceArn"]
    for name in RULES:
        assert refers_to(sources, name), f"{name} cannot deliver to EventFailureQueue"


# ---------------------------------------------------------------- alarms, outputs

def test_alarms_watch_the_dead_letter_queues_and_function_errors(resources):
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]

    def watched(metric, resource):
        return any(a["MetricName"] == metric and refers_to(a["Dimensions"], resource) for a in alarms)

    assert watched("ApproximateNumberOfMessagesVisible", "RequestDeadLetterQueue")
    assert watched("ApproximateNumberOfMessagesVisible", "EventFailureQueue")
    assert watched("Errors", FUNCTION)


def test_outputs_name_the_queue_bus_and_table(template):
    outputs = template["Outputs"]
    assert refers_to(outputs["RequestQueueUrl"]["Value"], "RequestQueue")
    assert refers_to(outputs["CompletionBusName"]["Value"], "CompletionEventBus")
    assert refers_to(outputs["LedgerTableName"]["Value"], "LedgerTable")


# ---------------------------------------------------------------- skipped checks

def test_every_skipped_checkov_check_has_a_reason(resources):
    for name, resource in resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "").split()) >= 5, f"{name}: checkov skip {skip.get('id')} needs a written reason"


def test_every_ignored_cfn_lint_rule_is_explained():
    with open(TEMPLATE, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines):
        if "ignore_checks" in line:
            above = lines[max(0, number - 4): number]
            assert any(l.strip().startswith("#") for l in above), f"line {number + 1}: explain the ignored cfn-lint rule in a comment above it"
