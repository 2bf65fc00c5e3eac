"""The dashboard, the alarms on the function's own metrics and X-Ray tracing
(issue #18). The function writes its metrics as embedded-metric-format log
lines (src/metrics.rs): a namespace, dimension sets and metric names that
CloudWatch takes as written. A name or a dimension the template spells
differently is not an error anywhere: the graph stays empty and the alarm
never fires. So every metric, dimension and dimension value the dashboard and
the alarms name in that namespace is checked against src/metrics.rs (and the
action types against src/contract.rs), and the Deployment dimension against
the function's OWNER, the one owner expression."""

import json
import os
import re

import pytest

from infra_support import ROOT, as_list, block_end, load_template, read, resources_of_type, rust_str_const, without_comments

FUNCTION = "TrafficMirroringFunction"
ROLE = "FunctionRole"
DASHBOARD = "MirroringDashboard"
# The owner, as the function's OWNER and the role's conditions write it
# (tests/infra/test_iam.py): the value of the Deployment dimension.
OWNER = {"Fn::If": ["HasOwner", {"Ref": "Owner"}, {"Ref": "AWS::StackId"}]}
OWNER_TEXT = "!If [HasOwner, !Ref Owner, !Ref AWS::StackId]"
TOPIC_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}

# What the dashboard must show (issue #18): the function's metrics by name
# (each must also be one src/metrics.rs declares), and AWS/SQS metrics of
# the stack's queues.
DASHBOARD_METRICS = [
    "Actions", "ActionLatency", "ThrottledCalls", "ThrottleWait", "RecordsHandedBack",
    "SessionsCreated", "SessionsDeleted", "FiltersCreated", "FiltersDeleted", "TargetsCreated", "TargetsDeleted",
    "CoverageWanted", "CoverageMirrored", "CoverageMissing", "CoverageNotDelivering", "SweepFindings",
    # Every wiretap seen, and who touched ours: the oversight alarms' metrics.
    "UnapprovedMirrors", "TamperedResources", "ExcludeTagChanges",
]
DASHBOARD_QUEUE_METRICS = [
    ("ApproximateAgeOfOldestMessage", "RequestQueue"),
    ("ApproximateNumberOfMessagesVisible", "RequestDeadLetterQueue"),
]

# Placeholders of the dashboard body, replaced for parsing by values that
# show where they came from.
OWNER_VALUE = "owner-of-this-deployment"
REGION_VALUE = "xx-region-1"


# ---------------------------------------------------------------- src/metrics.rs

@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture(scope="module")
def resources(template):
    return template["Resources"]


def metrics_source():
    return without_comments(read("src/metrics.rs")).split("#[cfg(test)]", 1)[0]


class Declared:
    """What src/metrics.rs writes: the namespace, the dimension names, the
    metric names, which dimensions each metric is written with, and the
    values the ActionType and Outcome dimensions take."""

    def __init__(self):
        source = metrics_source()
        self.namespace = rust_str_const(source, "NAMESPACE")
        consts = dict(re.findall(r"\bpub\s+const\s+(\w+)\s*:\s*&str\s*=\s*\"([^\"]*)\"", source))
        self.deployment = rust_str_const(source, "DIMENSION_DEPLOYMENT")
        self.action_type = rust_str_const(source, "DIMENSION_ACTION_TYPE")
        self.outcome = rust_str_const(source, "DIMENSION_OUTCOME")
        names = {value for name, value in consts.items() if name != "NAMESPACE" and not name.startswith("DIMENSION_")}
        names |= set(counter_names(source).values())
        self.metrics = names

        # The per-action document's dimensions and metrics (a literal list),
        # and the per-invocation one's (`&metrics`, everything else).
        per_action = re.search(r"\bdocument\(\s*fields\s*,\s*&\[([^\]]*)\]\s*,\s*&\[(\s*\(.*?\))\s*\]", source, re.S)
        assert per_action, "the parser no longer finds the per-action document(fields, &[dimensions], &[(metric, unit), ...]) call"
        per_invocation = re.search(r"\bdocument\(\s*fields\s*,\s*&\[([^\]]*)\]\s*,\s*&metrics\b", source)
        assert per_invocation, "the parser no longer finds the per-invocation document(fields, &[dimensions], &metrics) call"
        resolve = lambda names: frozenset(rust_str_const(source, n) for n in re.findall(r"\b[A-Z][A-Z0-9_]+\b", names))
        self.action_dimensions = resolve(per_action.group(1))
        self.invocation_dimensions = resolve(per_invocation.group(1))
        self.action_metrics = {rust_str_const(source, n) for n in re.findall(r"\(\s*([A-Z][A-Z0-9_]+)\s*,", per_action.group(2))}
        assert self.action_metrics, "the parser finds no metric in the per-action document"
        assert self.action_dimensions == {self.deployment, self.action_type, self.outcome}
        assert self.invocation_dimensions == {self.deployment}

        # ActionFigure::of: the outcomes, and the action types (the
        # contract's constants, and the literal for the rest).
        outcome = re.search(r"\blet\s+outcome\s*=\s*match\b(.*?)\};", source, re.S)
        assert outcome, "the parser no longer finds `let outcome = match ...` in src/metrics.rs"
        self.outcomes = set(re.findall(r"\"([^\"]+)\"", outcome.group(1)))
        kinds = re.search(r"\blet\s+action_type\s*=\s*match\b(.*?)\};", source, re.S)
        assert kinds, "the parser no longer finds `let action_type = match ...` in src/metrics.rs"
        contract = without_comments(read("src/contract.rs"))
        self.action_types = {rust_str_const(contract, n) for n in re.findall(r"\b[A-Z][A-Z0-9_]+\b", kinds.group(1))}
        self.action_types |= set(re.findall(r"\"([^\"]+)\"", kinds.group(1)))
        assert {"success", "failure", "retryable"} <= self.outcomes, f"outcomes parsed: {sorted(self.outcomes)}"
        assert {"CreateTrafficMirroring", "RemoveTrafficMirroring"} <= self.action_types, (
            f"action types parsed: {sorted(self.action_types)}"
        )

    def dimensions_of(self, metric):
        return self.action_dimensions if metric in self.action_metrics else self.invocation_dimensions


def counter_names(source):
    """{variant: name} from the arms of Counter::name, checked to cover
    every variant of the enum."""
    enum = re.search(r"\bpub\s+enum\s+Counter\s*\{", source)
    assert enum, "the parser no longer finds `pub enum Counter` in src/metrics.rs"
    variants = set(re.findall(r"\b([A-Z]\w*)\s*,", source[enum.end() - 1: block_end(source, enum.end() - 1)]))
    name = re.search(r"\bfn\s+name\s*\(\s*self\s*\)[^{]*\{", source)
    assert name, "the parser no longer finds Counter::name in src/metrics.rs"
    arms = dict(re.findall(r"Counter::(\w+)\s*=>\s*\"([^\"]+)\"", source[name.end() - 1: block_end(source, name.end() - 1)]))
    assert arms and set(arms) == variants, (
        f"Counter::name's arms {sorted(arms)} do not match the enum's variants {sorted(variants)}"
    )
    return arms


@pytest.fixture(scope="module")
def declared():
    return Declared()


def test_the_parser_reads_the_metrics_src_declares(declared):
    """The lists the other tests compare against are not empty or partial:
    every name the dashboard must show is among them."""
    missing = set(DASHBOARD_METRICS) - declared.metrics
    assert not missing, f"src/metrics.rs no longer declares {sorted(missing)} (or the parser misses them)"
    assert declared.action_metrics == {"Actions", "ActionLatency"}, sorted(declared.action_metrics)


# ---------------------------------------------------------------- the dashboard

def placeholder_value(name, template, variables):
    """What a ${name} of the dashboard body stands for, for parsing."""
    if name in variables:
        return OWNER_VALUE if variables[name] == OWNER else f"var-{name}"
    if name == "AWS::Region":
        return REGION_VALUE
    if name.startswith("AWS::"):
        assert name in {"AWS::StackName", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}, (
            f"${{{name}}} in the dashboard body: {OWNER_TEXT} is the deployment (variable map), not a pseudo parameter"
        )
        return f"pseudo-{name}"
    parameter = template["Parameters"].get(name)
    if parameter:
        # A number stays a number (an annotation's value); anything else a string.
        return str(parameter["Default"]) if parameter["Type"] == "Number" else f"parameter-{name}"
    resource = name.split(".", 1)[0]
    assert resource in template["Resources"], f"${{{name}}} in the dashboard body names no parameter, resource or variable"
    return f"resource-{name}"


def render(value, template, variables=None):
    """The text CloudFormation would deploy for an Fn::Sub / Fn::Join /
    string value, each placeholder replaced by placeholder_value()."""
    variables = variables or {}
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        text, own = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
        scope = {**variables, **own}
        text = text.replace("${!", "\0")
        text = re.sub(r"\$\{([^}]+)\}", lambda m: placeholder_value(m.group(1).strip(), template, scope), text)
        return text.replace("\0", "${")
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render(part, template, variables) for part in parts)
    if value.get("Ref") in template["Parameters"] or str(value.get("Ref", "")).startswith("AWS::"):
        return placeholder_value(value["Ref"], template, {})
    raise AssertionError(f"the dashboard body holds {value!r}: use Fn::Sub (with a variable map) or Fn::Join")


@pytest.fixture(scope="module")
def dashboard(template, resources):
    dashboards = resources_of_type(template, "AWS::CloudWatch::Dashboard")
    assert list(dashboards) == [DASHBOARD], f"expected one dashboard, {DASHBOARD}; found {sorted(dashboards)}"
    body = render(dashboards[DASHBOARD]["Properties"]["DashboardBody"], template)
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        lines = body.splitlines()
        pytest.fail(f"{DASHBOARD}'s body is not JSON once substituted: {err}\n  line {err.lineno}: {lines[err.lineno - 1]}")


def metric_lines(dashboard):
    """[(widget title, namespace, metric, {dimension: value}, options)] of
    every metric line of every metric widget, with the widget's stat when the
    line sets none."""
    found = []
    for widget in dashboard["widgets"]:
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        for line in properties["metrics"]:
            fields = [f for f in line if not isinstance(f, dict)]
            options = next((f for f in line if isinstance(f, dict)), {})
            if "expression" in options:
                continue
            assert fields[0] not in (".", "..."), (
                f"{properties.get('title')}: write every line in full (namespace, metric, dimensions): {line}"
            )
            namespace, metric, pairs = fields[0], fields[1], fields[2:]
            assert len(pairs) % 2 == 0, f"{properties.get('title')}: a dimension without its value in {line}"
            dimensions = dict(zip(pairs[::2], pairs[1::2]))
            options = {"stat": properties.get("stat"), **options}
            found.append((properties.get("title"), namespace, metric, dimensions, options))
    assert found, f"{DASHBOARD} has no metric lines"
    return found


def test_the_dashboard_body_is_json_with_a_region_on_every_graph(dashboard):
    """Valid JSON once the placeholders are replaced, and every graph in
    the stack's Region (${AWS::Region}), which CloudWatch requires."""
    graphs = [w for w in dashboard["widgets"] if w["type"] == "metric"]
    assert graphs, f"{DASHBOARD} has no graphs"
    for widget in graphs:
        assert widget["properties"].get("region") == REGION_VALUE, (
            f"{widget['properties'].get('title')}: \"region\" must be ${{AWS::Region}}"
        )


def test_every_function_metric_on_the_dashboard_is_one_the_code_writes(dashboard, declared):
    """Namespace, metric name, dimension set and values as src/metrics.rs
    writes them, with Deployment the owner; any other namespace is AWS's
    (a misspelt TrafficMirroring would escape the check otherwise)."""
    for title, namespace, metric, dimensions, _ in metric_lines(dashboard):
        where = f"{DASHBOARD} '{title}': {namespace}/{metric}"
        if namespace != declared.namespace:
            assert namespace.startswith("AWS/"), f"{where}: namespace is neither {declared.namespace!r} nor AWS's"
            continue
        check_function_metric(where, metric, dimensions, declared, OWNER_VALUE)


def check_function_metric(where, metric, dimensions, declared, owner):
    assert metric in declared.metrics, f"{where}: src/metrics.rs writes no metric {metric!r}"
    assert set(dimensions) == declared.dimensions_of(metric), (
        f"{where}: dimensions {sorted(dimensions)}; src/metrics.rs writes it with exactly "
        f"{sorted(declared.dimensions_of(metric))} (CloudWatch matches the whole set)"
    )
    assert dimensions[declared.deployment] == owner, (
        f"{where}: {declared.deployment} is {dimensions[declared.deployment]!r}; it must be the owner, {OWNER_TEXT}"
    )
    if declared.action_type in dimensions:
        assert dimensions[declared.action_type] in declared.action_types, (
            f"{where}: {declared.action_type} {dimensions[declared.action_type]!r} is not one the code writes "
            f"({sorted(declared.action_types)})"
        )
    if declared.outcome in dimensions:
        assert dimensions[declared.outcome] in declared.outcomes, (
            f"{where}: {declared.outcome} {dimensions[declared.outcome]!r} is not one of {sorted(declared.outcomes)}"
        )


def test_the_dashboard_shows_what_the_issue_asks_for(dashboard, declared):
    lines = metric_lines(dashboard)
    shown = {metric for _, namespace, metric, _, _ in lines if namespace == declared.namespace}
    missing = [m for m in DASHBOARD_METRICS if m not in shown]
    assert not missing, f"{DASHBOARD} does not show {missing}"
    for metric, queue in DASHBOARD_QUEUE_METRICS:
        assert any(
            namespace == "AWS/SQS" and m == metric and d == {"QueueName": f"resource-{queue}.QueueName"}
            for _, namespace, m, d, _ in lines
        ), f"{DASHBOARD} does not show AWS/SQS {metric} of {queue} (QueueName ${{{queue}.QueueName}})"


def test_the_dashboard_shows_every_action_type_and_outcome(dashboard, declared):
    """Actions per type and outcome: explicit lines, so each pair the code
    writes must have one (else its actions are invisible)."""
    pairs = {
        (d[declared.action_type], d[declared.outcome])
        for _, namespace, metric, d, _ in metric_lines(dashboard)
        if namespace == declared.namespace and metric == "Actions"
    }
    missing = {(t, o) for t in declared.action_types for o in declared.outcomes} - pairs
    assert not missing, f"{DASHBOARD} has no Actions line for {sorted(missing)}"


@pytest.mark.parametrize("action_type", ["CreateTrafficMirroring", "RemoveTrafficMirroring"])
def test_the_dashboard_shows_latency_percentiles(dashboard, declared, action_type):
    """p50 and p99 of the successful ones: percentiles do not add up across
    outcomes, and a success's latency is the one to watch."""
    stats = {
        options.get("stat")
        for _, namespace, metric, d, options in metric_lines(dashboard)
        if namespace == declared.namespace and metric == "ActionLatency"
        and d[declared.action_type] == action_type and d[declared.outcome] == "success"
    }
    assert {"p50", "p99"} <= stats, (
        f"{DASHBOARD}: ActionLatency of successful {action_type} with stats {sorted(filter(None, stats))}, expected p50 and p99"
    )


# ---------------------------------------------------------------- alarms

def alarm_metrics(alarm):
    """[(id, namespace, metric, {dimension: value}, period, stat)] of an
    alarm: its one metric, or the MetricStat lines of its metric math."""
    if "Metrics" in alarm:
        found = []
        for query in alarm["Metrics"]:
            if "MetricStat" in query:
                stat = query["MetricStat"]
                metric = stat["Metric"]
                dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                found.append((query["Id"], metric["Namespace"], metric["MetricName"], dimensions, stat["Period"], stat["Stat"]))
        return found
    dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
    return [(None, alarm["Namespace"], alarm["MetricName"], dimensions, alarm["Period"], alarm.get("Statistic"))]


def test_every_alarm_on_the_functions_metrics_names_one_the_code_writes(resources, declared):
    """As for the dashboard: metric, dimension set and values as
    src/metrics.rs writes them, Deployment = the owner expression itself."""
    checked = 0
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for _, namespace, metric, dimensions, _, _ in alarm_metrics(resource["Properties"]):
            if not isinstance(namespace, str):
                continue  # the log metric filter's namespace of the stack (test_wiring.py)
            if namespace != declared.namespace:
                assert namespace.startswith("AWS/"), f"{name}: namespace {namespace!r} is neither {declared.namespace!r} nor AWS's"
                continue
            check_function_metric(f"{name}: {metric}", metric, dimensions, declared, OWNER)
            checked += 1
    assert checked, f"no alarm watches a metric in namespace {declared.namespace}"


# name: (namespace, metric, dimensions (None: the owner alone), statistic,
# period, evaluation periods, operator, threshold, threshold parameter's
# default or None)
ALARMS = {
    "RequestQueueAgeAlarm": (
        "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": {"Fn::GetAtt": ["RequestQueue", "QueueName"]}},
        "Maximum", 300, 1, "GreaterThanThreshold", {"Ref": "QueueAgeAlarmSeconds"}, 900,
    ),
    "RollbackIncompleteAlarm": ("TrafficMirroring", "RollbackIncomplete", None, "Sum", 300, 1, "GreaterThanThreshold", 0, None),
    # The sweep runs hourly: 3 hours in a row.
    "CoverageMissingAlarm": ("TrafficMirroring", "CoverageMissing", None, None, 3600, 3, "GreaterThanThreshold", 0, None),
    # Any unapproved wiretap a sweep (hourly) finds; the state follows the latest sweep.
    "UnapprovedMirrorsAlarm": ("TrafficMirroring", "UnapprovedMirrors", None, "Maximum", 3600, 1, "GreaterThanThreshold", 0, None),
    # Any of ours deleted by someone else, any exclude tag set or removed.
    "TamperedResourcesAlarm": ("TrafficMirroring", "TamperedResources", None, "Sum", 300, 1, "GreaterThanThreshold", 0, None),
    "ExcludeTagChangesAlarm": ("TrafficMirroring", "ExcludeTagChanges", None, "Sum", 300, 1, "GreaterThanThreshold", 0, None),
}


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_the_single_metric_alarms(template, resources, declared, name):
    namespace, metric, dimensions, statistic, period, evaluations, operator, threshold, default = ALARMS[name]
    assert name in resources and resources[name]["Type"] == "AWS::CloudWatch::Alarm", f"no alarm {name}"
    alarm = resources[name]["Properties"]
    if dimensions is None:
        dimensions = {declared.deployment: OWNER}
    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric), f"{name} watches {alarm['Namespace']}/{alarm['MetricName']}"
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == dimensions, f"{name}: dimensions {alarm['Dimensions']}"
    if statistic:
        assert alarm["Statistic"] == statistic, f"{name}: statistic {alarm['Statistic']}, expected {statistic}"
    assert int(alarm["Period"]) == period, f"{name}: period {alarm['Period']}, expected {period}"
    assert int(alarm["EvaluationPeriods"]) == evaluations and int(alarm.get("DatapointsToAlarm", evaluations)) == evaluations, (
        f"{name}: {evaluations} evaluation period(s) in a row"
    )
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (operator, threshold), (
        f"{name}: {alarm['ComparisonOperator']} {alarm['Threshold']!r}, expected {operator} {threshold!r}"
    )
    if default is not None:
        parameter = template["Parameters"][threshold["Ref"]]
        assert parameter["Type"] == "Number" and int(parameter["Default"]) == default, (
            f"{threshold['Ref']}: a Number defaulting to {default}"
        )
    check_alarm_basics(name, alarm)


def check_alarm_basics(name, alarm):
    # Missing data: no invocation, no sweep or an idle queue, none of which
    # is the trouble the alarm is about.
    assert alarm.get("TreatMissingData") == "notBreaching", f"{name}: TreatMissingData should be notBreaching"
    for actions in ("AlarmActions", "OKActions"):
        assert alarm.get(actions) == TOPIC_ACTIONS, f"{name}: {actions} should notify AlarmTopicArn when it is set"


def test_the_action_failures_alarm_adds_create_and_remove_failures(template, resources, declared):
    """Metric math over Actions with Outcome failure of creates and removes
    (5-minute sums), its one returned expression using both, against
    FailureAlarmThreshold (5 by default)."""
    name = "ActionFailuresAlarm"
    assert name in resources, f"no alarm {name}"
    alarm = resources[name]["Properties"]
    lines = alarm_metrics(alarm)
    assert {d.get(declared.action_type) for _, _, _, d, _, _ in lines} == {"CreateTrafficMirroring", "RemoveTrafficMirroring"}, (
        f"{name} should watch the failures of creates and removes"
    )
    for query_id, namespace, metric, dimensions, period, stat in lines:
        assert (namespace, metric) == (declared.namespace, "Actions"), f"{name}.{query_id}: {namespace}/{metric}"
        assert dimensions.get(declared.outcome) == "failure", f"{name}.{query_id}: Outcome {dimensions.get(declared.outcome)!r}"
        assert dimensions.get(declared.deployment) == OWNER, f"{name}.{query_id}: Deployment must be {OWNER_TEXT}"
        assert (int(period), stat) == (300, "Sum"), f"{name}.{query_id}: the sum over 5 minutes"
    returned = [q for q in alarm["Metrics"] if q.get("ReturnData", True)]
    assert len(returned) == 1 and "Expression" in returned[0], f"{name}: one returned expression"
    used = set(re.findall(r"\b[a-z]\w*\b", returned[0]["Expression"]))
    assert {query_id for query_id, *_ in lines} <= used, f"{name}: {returned[0]['Expression']!r} leaves out a line"
    assert int(alarm["EvaluationPeriods"]) == 1
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", {"Ref": "FailureAlarmThreshold"})
    parameter = template["Parameters"]["FailureAlarmThreshold"]
    assert parameter["Type"] == "Number" and int(parameter["Default"]) == 5
    check_alarm_basics(name, alarm)


def test_the_dashboard_shows_the_state_of_every_alarm(template, dashboard):
    """The alarm widget lists every alarm of the stack."""
    shown = {
        alarm for widget in dashboard["widgets"] if widget["type"] == "alarm" for alarm in widget["properties"]["alarms"]
    }
    alarms = {f"resource-{name}.Arn" for name in resources_of_type(template, "AWS::CloudWatch::Alarm")}
    assert shown == alarms, f"{DASHBOARD}'s alarm widget: missing {sorted(alarms - shown)}, extra {sorted(shown - alarms)}"


def test_every_alarm_is_explained_in_the_readme(resources):
    with open(os.path.join(ROOT, "infra", "README.md"), encoding="utf-8") as f:
        section = re.search(r"^## Operations\n(.*?)(?=^## )", f.read(), re.M | re.S)
    assert section, "infra/README.md has no \"## Operations\" section"
    alarms = [name for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    missing = [name for name in alarms if f"**`{name}`**" not in section.group(1)]
    assert not missing, f"infra/README.md's Operations says nothing of {missing}"


# ---------------------------------------------------------------- tracing, logs

def test_the_tracing_parameter_reaches_the_function(template, resources):
    parameter = template["Parameters"].get("Tracing")
    assert parameter, "no Tracing parameter"
    assert parameter["Type"] == "String" and sorted(parameter["AllowedValues"]) == ["Active", "PassThrough"]
    assert parameter["Default"] == "PassThrough"
    assert resources[FUNCTION]["Properties"].get("Tracing") == {"Ref": "Tracing"}, f"{FUNCTION}: Tracing: !Ref Tracing"
    condition = template["Conditions"].get("TracingActive")
    assert condition and condition["Fn::Equals"] in ([{"Ref": "Tracing"}, "Active"], ["Active", {"Ref": "Tracing"}]), (
        "TracingActive: !Equals [!Ref Tracing, Active]"
    )


def test_the_role_may_write_traces_exactly_when_tracing_is_active(template, resources):
    """The function runs as its own role, so SAM adds nothing for Active: a
    policy under TracingActive grants the two X-Ray writes, and nothing else
    grants X-Ray."""
    assert resources[FUNCTION]["Properties"]["Role"] == {"Fn::GetAtt": [ROLE, "Arn"]}
    granted = []
    for name, resource in resources.items():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": ROLE} in as_list(resource["Properties"].get("Roles", [])):
            documents = [(name, resource.get("Condition"), resource["Properties"]["PolicyDocument"])]
        elif name == ROLE:
            documents = [(name, None, p["PolicyDocument"]) for p in resource["Properties"].get("Policies", [])]
        else:
            continue
        for where, condition, document in documents:
            for statement in as_list(document["Statement"]):
                xray = [a for a in as_list(statement["Action"]) if a.startswith("xray:")]
                if xray:
                    granted.append((where, condition, sorted(xray), statement["Resource"]))
    assert len(granted) == 1, f"X-Ray must be granted in one statement, found {granted}"
    ((where, condition, actions, resource),) = granted
    assert condition == "TracingActive", f"{where}: X-Ray only under TracingActive, not {condition!r}"
    assert actions == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], f"{where}: grants {actions}"
    assert resource == "*", f"{where}: X-Ray has no resource-level permissions; Resource \"*\", not {resource!r}"


def test_the_log_group_keeps_logs_for_log_retention_days(resources):
    assert resources[FUNCTION]["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
    assert resources["FunctionLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
