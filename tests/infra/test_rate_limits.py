"""By default the whole fleet stays inside EC2's write budget, with room left
for everyone else in the account, and the numbers infra/README.md ("Rate
limits") and the template's descriptions give follow from the defaults.

The bound: each function process paces all its mutating EC2 calls with a token
bucket of its own (MUTATING_CALLS_PER_SECOND, src/aws/patience.rs), and
ReservedConcurrency bounds the processes, so the fleet's mutating calls per
second are at most ReservedConcurrency x MutatingCallsPerSecond, whatever the
number of actions an invocation runs at once. This file holds EC2's figures
as constants and checks the defaults, the docs and the code's pace against
them, naming the figures when they disagree."""

import os
import re

import pytest

from infra_support import ROOT, as_list, block_end, load_template, read, refers_to, without_comments

# AWS's documented default for mutating EC2 actions ("Request throttling for
# the Amazon EC2 API"): per account and Region, each API has a bucket of 50
# tokens refilled at 5 per second. A launch storm on a shared target and filter
# spends one CreateTrafficMirrorSession per ENI, so that API's refill is the
# budget; bursts of up to the bucket are absorbed.
EC2_MUTATING_BUCKET = 50
EC2_MUTATING_REFILL_PER_SECOND = 5

# The share of that refill (and bucket) the product takes by default; the rest
# is left to other users of the same APIs in the account (the console, other
# tools, other stacks).
PRODUCT_SHARE = 0.6

# Mutating calls one queued record of a storm costs at most once the shared
# target and filter exist: a launch's CreateTrafficMirrorSession, or a
# termination's DeleteTrafficMirrorSession plus the filter's and the target's
# deletes when it was their last user.
MUTATING_CALLS_PER_RECORD_AT_MOST = 3

# The size of the storm the docs take as their example.
STORM_ENIS = 1000

PATIENCE = "src/aws/patience.rs"


@pytest.fixture(scope="module")
def template():
    return load_template()


def default(template, name):
    return float(template["Parameters"][name]["Default"])


def number(value):
    """1 for 1.0, 0.6 for 0.6: how the docs write a figure."""
    return f"{value:g}"


def pace_burst(rate):
    """The burst of one process's pace, as src/aws/patience.rs sets it
    (checked by test_the_pace_in_the_code_is_the_one_sized_here)."""
    return max(1.0, rate)


@pytest.fixture(scope="module")
def defaults(template):
    reserved = default(template, "ReservedConcurrency")
    sqs = default(template, "SqsMaxConcurrency")
    rate = default(template, "MutatingCallsPerSecond")
    return {
        "reserved": reserved,
        "sqs": sqs,
        "rate": rate,
        "fleet": reserved * rate,
        "storm": sqs * rate,
        "direct": (reserved - sqs) * rate,
        "burst": reserved * pace_burst(rate),
    }


# ---------------------------------------------------------------- the budget

def test_the_default_fleet_stays_inside_the_ec2_refill_share(defaults):
    assert defaults["reserved"] > 0, (
        "by default the function must reserve concurrency: -1 leaves the number of processes, "
        "and so the fleet's EC2 rate, unbounded"
    )
    budget = PRODUCT_SHARE * EC2_MUTATING_REFILL_PER_SECOND
    assert defaults["fleet"] <= budget, (
        f"ReservedConcurrency {number(defaults['reserved'])} x MutatingCallsPerSecond "
        f"{number(defaults['rate'])} = {number(defaults['fleet'])} mutating calls/s, over "
        f"{PRODUCT_SHARE:.0%} of EC2's {EC2_MUTATING_REFILL_PER_SECOND}/s refill ({number(budget)}/s)"
    )


def test_the_default_fleet_burst_stays_inside_the_ec2_bucket_share(defaults):
    """Processes with full buckets of their own may all call at once."""
    budget = PRODUCT_SHARE * EC2_MUTATING_BUCKET
    assert defaults["burst"] <= budget, (
        f"ReservedConcurrency {number(defaults['reserved'])} x max(1, MutatingCallsPerSecond "
        f"{number(defaults['rate'])}) = {number(defaults['burst'])} calls at once, over "
        f"{PRODUCT_SHARE:.0%} of EC2's bucket of {EC2_MUTATING_BUCKET} ({number(budget)})"
    )


def test_a_launch_storm_leaves_room_for_direct_requests(defaults):
    """Launches come through the queue; if its invocations could take every
    reserved slot, direct and EventBridge requests would wait until the storm
    is over."""
    assert defaults["sqs"] >= 2, "AWS's minimum MaximumConcurrency for an SQS event source is 2"
    assert defaults["sqs"] < defaults["reserved"], (
        f"SqsMaxConcurrency {number(defaults['sqs'])} must stay below ReservedConcurrency {number(defaults['reserved'])}"
    )
    assert defaults["direct"] > 0


def test_a_full_batch_fits_in_half_the_default_timeout(template, defaults):
    """The pace makes an invocation wait for its turns; a batch whose turns
    outlast the timeout comes back whole after the visibility timeout."""
    batch = default(template, "SqsBatchSize")
    timeout = default(template, "FunctionTimeout")
    calls = batch * MUTATING_CALLS_PER_RECORD_AT_MOST
    seconds = max(0.0, calls - pace_burst(defaults["rate"])) / defaults["rate"]
    assert seconds <= timeout / 2, (
        f"a batch of {number(batch)} records costs up to {number(calls)} mutating calls: "
        f"{number(seconds)} s at MutatingCallsPerSecond {number(defaults['rate'])}, more than half "
        f"of FunctionTimeout {number(timeout)} s"
    )


# ---------------------------------------------------------------- the code's pace

EC2_ADAPTERS = ("src/aws/ec2/mod.rs", "src/aws/ec2/instances.rs")


def adapter_methods():
    """{method: body} of the EC2 port adapters (one impl block per
    capability: `impl Sessions for Ec2Sessions`, ...)."""
    methods = {}
    for path in EC2_ADAPTERS:
        source = without_comments(read(path)).split("#[cfg(test)]", 1)[0]
        for match in re.finditer(r"\bimpl\s+(\w+)\s+for\s+Ec2\w+\s*\{", source):
            block = source[match.end() - 1: block_end(source, match.end() - 1)]
            for method in re.finditer(r"\basync\s+fn\s+(\w+)\b[^{;]*\{", block):
                methods[method.group(1)] = block[method.end() - 1: block_end(block, method.end() - 1)]
    assert methods, f"{EC2_ADAPTERS}: the parser finds no `impl <capability> for Ec2<capability>` method"
    return methods


def granted_mutating_actions(template):
    """The mutating EC2 actions the role grants, CreateTags aside (it is
    authorized as part of a tagged create, not called on its own)."""
    statements = template["Resources"]["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = {
        action for statement in statements for action in as_list(statement["Action"])
        if re.match(r"ec2:(Create|Delete)", action) and action != "ec2:CreateTags"
    }
    assert "ec2:CreateTrafficMirrorSession" in actions, "the parser finds no mutating EC2 action in the role"
    return actions


def adapter_method(action):
    """ec2:CreateTrafficMirrorFilterRule -> create_filter_rule."""
    name = action.split(":", 1)[1].replace("TrafficMirror", "")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_mutating_call_the_role_allows_is_paced(template):
    """The bound holds only if every mutating call waits for the process's
    turn: each mutating action the role grants has its adapter method, and
    that method goes through the choke point's paced path
    (`self.patience.create(..)` or `.delete(..)`, which take a turn on every
    try)."""
    methods = adapter_methods()
    paced = r"self\s*\.\s*patience\s*\.\s*(create|delete)\s*\("
    for action in sorted(granted_mutating_actions(template)):
        method = adapter_method(action)
        assert method in methods, (
            f"the role grants {action} but no EC2 adapter has a method {method}(): "
            f"a mutating call that goes around the pace breaks ReservedConcurrency x MutatingCallsPerSecond"
        )
        assert re.search(paced, methods[method]), (
            f"{method}() makes {action} without going through self.patience.create/delete"
        )
    unpaced = [m for m, body in methods.items() if re.match(r"(create|delete)_", m) and not re.search(paced, body)]
    assert not unpaced, f"mutating adapter methods not paced: {unpaced}"
    unguarded = [m for m, body in methods.items() if not re.search(r"self\s*\.\s*patience\s*\.", body)]
    assert not unguarded, f"EC2 adapter methods that go around the choke point: {unguarded}"


def test_the_pace_in_the_code_is_the_one_sized_here():
    """The pace is built from MUTATING_CALLS_PER_SECOND for the EC2 client,
    with the burst this file assumes (pace_burst)."""
    patience = without_comments(read(PATIENCE))
    assert re.search(r"\bburst\s*=\s*per_second\s*\.\s*max\s*\(\s*1(?:\.0)?\s*\)", patience), (
        f"{PATIENCE}: the pace's burst is no longer max(1, rate): update pace_burst here and "
        f"infra/README.md (Rate limits)"
    )
    build = without_comments(read("src/app.rs"))
    assert re.search(
        r"Patience::new\(\s*config\.mutating_calls_per_second\s*\)", build,
    ), "src/app.rs no longer paces the EC2 adapters with config.mutating_calls_per_second"
    config = without_comments(read("src/config/mod.rs"))
    assert re.search(r"mutating_calls_per_second\s*=\s*match\s+value\(\s*MUTATING_CALLS_PER_SECOND\s*\)", config), (
        "src/config/mod.rs no longer reads mutating_calls_per_second from MUTATING_CALLS_PER_SECOND"
    )


def test_the_bound_is_wired_to_the_parameters(template):
    resources = template["Resources"]
    function = resources["TrafficMirroringFunction"]["Properties"]
    assert refers_to(function["ReservedConcurrentExecutions"], "ReservedConcurrency")
    env = function["Environment"]["Variables"]
    assert env.get("MUTATING_CALLS_PER_SECOND") == {"Ref": "MutatingCallsPerSecond"}, (
        "the pace must come from the MutatingCallsPerSecond parameter; without it each process is unpaced"
    )
    assert env.get("MAX_CONCURRENT_ACTIONS") == {"Ref": "MaxConcurrentActions"}
    (mapping,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "SqsMaxConcurrency"}


# ---------------------------------------------------------------- the docs

def readme_rate_limits():
    with open(os.path.join(ROOT, "infra", "README.md"), encoding="utf-8") as f:
        section = re.search(r"^## Rate limits\n(.*?)(?=^## )", f.read(), re.M | re.S)
    assert section, "infra/README.md has no \"## Rate limits\" section"
    return section.group(1)


def readme_defaults_table():
    """{row name: (factor, factor, value)} of the table under "With the
    defaults:" ("| the whole fleet | `A` × `B` = 3 × 1 | 3 mutating calls/s: ...")."""
    rows = re.findall(
        r"^\| ([^|]+?) \| [^|]*= ([\d.]+) × ([\d.]+) \| ([\d.]+)\b([^|]*)\|$",
        readme_rate_limits(), re.M,
    )
    assert rows, "the parser no longer finds the defaults table in infra/README.md (Rate limits)"
    return {name: (float(a), float(b), float(value), rest) for name, a, b, value, rest in rows}


def test_the_readme_table_follows_from_the_defaults(defaults):
    rows = readme_defaults_table()
    rate = defaults["rate"]
    expected = {
        "the whole fleet": (defaults["reserved"], rate, defaults["fleet"]),
        "a launch storm (through the queue)": (defaults["sqs"], rate, defaults["storm"]),
        "direct and EventBridge requests during a storm": (defaults["reserved"] - defaults["sqs"], rate, defaults["direct"]),
        "the fleet's burst": (defaults["reserved"], pace_burst(rate), defaults["burst"]),
    }
    assert set(rows) == set(expected), f"infra/README.md's defaults table has rows {sorted(rows)}, expected {sorted(expected)}"
    for name, figures in expected.items():
        assert rows[name][:3] == pytest.approx(figures), (
            f"infra/README.md (Rate limits), row {name!r}: {rows[name][:3]}; the defaults give {figures}"
        )
    fleet_text = rows["the whole fleet"][3]
    share = f"{defaults['fleet'] / EC2_MUTATING_REFILL_PER_SECOND:.0%} of the {EC2_MUTATING_REFILL_PER_SECOND}/s refill"
    assert share in fleet_text, f"the fleet row should say {share!r}: {fleet_text!r}"
    storm_text = rows["a launch storm (through the queue)"][3]
    storm_seconds = STORM_ENIS / defaults["storm"]
    floor = STORM_ENIS / EC2_MUTATING_REFILL_PER_SECOND
    for phrase in (f"{STORM_ENIS:,} ENIs take about {number(storm_seconds)} s", f"allow {number(floor)} s"):
        assert phrase in storm_text, f"the launch storm row should say {phrase!r}: {storm_text!r}"


def test_the_template_descriptions_give_the_default_figures(template, defaults):
    parameters = template["Parameters"]
    rate = number(defaults["rate"])
    reserved, sqs = number(defaults["reserved"]), number(defaults["sqs"])
    phrases = {
        "ReservedConcurrency": [f"{reserved} x {rate} = {number(defaults['fleet'])}/s"],
        "SqsMaxConcurrency": [
            f"{sqs} x {rate} = {number(defaults['storm'])}/s",
            f"{STORM_ENIS:,} ENIs in about {number(STORM_ENIS / defaults['storm'])} s",
        ],
    }
    for name, expected in phrases.items():
        description = " ".join(parameters[name]["Description"].split())
        for phrase in expected:
            assert phrase in description, f"{name}'s description should say {phrase!r} with the defaults: {description!r}"


def test_no_doc_sizes_the_rate_by_actions():
    """The old assumption (about one mutating call per second per running
    action) was wrong: one action lane alone makes 5-10 per second."""
    texts = {
        "infra/README.md": readme_rate_limits(),
        "infra/template.yaml": read("infra/template.yaml"),
    }
    for path, text in texts.items():
        flat = " ".join(text.split()).lower()
        for wrong in ("per second per action", "per running action", "x maxconcurrentactions", "× `maxconcurrentactions`"):
            assert wrong not in flat, f"{path} still sizes the write rate by actions ({wrong!r})"
