"""Reads the two sides the infra tests compare: infra/template.yaml (with the
CloudFormation short-form tags) and the Rust sources under src/. Parsing is
deliberately plain (regular expressions over the source text) and every
parser fails loudly when it finds nothing, so a refactor of the Rust code
cannot make a test pass by matching nothing."""

import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
# The member account's stack of an organization (#25), deployed as a StackSet.
MEMBER_TEMPLATE = os.path.join(ROOT, "infra", "member.yaml")
AWS_DIR = os.path.join(ROOT, "src", "aws")


# ---------------------------------------------------------------- template

class CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation's short forms (!Ref, !Sub,
    !GetAtt, !If, ...) into their long forms ({"Ref": ...}, {"Fn::Sub": ...})."""


def _short_form(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + tag_suffix: value}


CfnLoader.add_multi_constructor("!", _short_form)


def load_template(path=TEMPLATE):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)


def resources_of_type(template, resource_type):
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def as_list(value):
    return value if isinstance(value, list) else [value]


def refers_to(value, resource):
    """True when an intrinsic-function value names `resource` (Ref, GetAtt,
    or ${resource...} inside a Sub string), anywhere inside it."""
    if isinstance(value, dict):
        if value.get("Ref") == resource:
            return True
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][0] == resource:
            return True
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            if re.search(r"\$\{" + re.escape(resource) + r"[.}]", text):
                return True
        return any(refers_to(v, resource) for v in value.values())
    if isinstance(value, list):
        return any(refers_to(v, resource) for v in value)
    return False


def leaves(value):
    """The alternatives of a value that may hold an Fn::If: every branch, with
    AWS::NoValue dropped (conditions are evaluated at deploy time)."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, yes, no = value["Fn::If"]
        return leaves(yes) + leaves(no)
    if value == {"Ref": "AWS::NoValue"}:
        return []
    return [value]


def arn_text(resource):
    """The text of an ARN written as a string or a Sub string."""
    if isinstance(resource, str):
        return resource
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return None


def resource_type(resource):
    """The resource type an ARN names: `traffic-mirror-target` for
    arn:...:ec2:...:traffic-mirror-target/*; for another service,
    `<service>:<path>` (`elasticloadbalancing:loadbalancer/net` for
    arn:...:elasticloadbalancing:...:loadbalancer/net/* and for a load
    balancer's own ARN, .../loadbalancer/net/<name>/<id>); None otherwise."""
    text = arn_text(resource)
    if text is None:
        return None
    # ${AWS::Partition} etc. hold colons of their own.
    text = re.sub(r"\$\{[^}]*\}", "x", text)
    match = re.match(r"arn:[^:]+:([a-z0-9-]+):[^:]*:[^:]*:([a-z0-9-]+(?:/[a-z0-9-]+)*)/", text)
    if not match:
        return None
    service, path = match.groups()
    if service == "ec2":
        return path.split("/")[0]
    if service == "elasticloadbalancing":
        # loadbalancer/<kind>/<name>/<id>: the type is loadbalancer/<kind>.
        path = "/".join(path.split("/")[:2])
    return f"{service}:{path}"


# ---------------------------------------------------------------- deployed values

# The pseudo parameters as one sample deployment sees them.
SAMPLE_STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/traffic-mirroring/1c2fa620-0000-4000-8000-000000000000"
PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackId": SAMPLE_STACK_ID,
    "AWS::StackName": "traffic-mirroring",
    "AWS::URLSuffix": "amazonaws.com",
}

# What an AWS::NoValue leaves: nothing (dropped from its list or mapping).
NO_VALUE = object()


def parameter_value(template, parameters, name):
    """A parameter as deployed: given in `parameters`, else its default; a
    required one (no Default) must be given."""
    if name in PSEUDO_PARAMETERS:
        # A test may deploy as another account (a member's) by giving it.
        return str(parameters.get(name, PSEUDO_PARAMETERS[name]))
    assert name in template["Parameters"], f"no parameter {name}"
    if name in parameters:
        return str(parameters[name])
    declared = template["Parameters"][name]
    assert "Default" in declared, f"{name} is required (no Default): the deployment must give it"
    return str(declared["Default"])


def holds(condition, template, parameters):
    """Whether a condition (by name, or a condition function) is true when
    deployed with `parameters` (the rest at their defaults)."""
    if isinstance(condition, str):
        return holds(template["Conditions"][condition], template, parameters)
    # {"Condition": name}, as the long form writes it inside Fn::And, Fn::Or
    # and Fn::Not; the short form !Condition reads as {"Fn::Condition": name}.
    if "Condition" in condition:
        return holds(condition["Condition"], template, parameters)
    if "Fn::Condition" in condition:
        return holds(condition["Fn::Condition"], template, parameters)
    if "Fn::Not" in condition:
        return not holds(condition["Fn::Not"][0], template, parameters)
    if "Fn::And" in condition:
        return all(holds(c, template, parameters) for c in condition["Fn::And"])
    if "Fn::Or" in condition:
        return any(holds(c, template, parameters) for c in condition["Fn::Or"])
    if "Fn::Equals" in condition:
        left, right = (deployed(v, template, parameters) for v in condition["Fn::Equals"])
        return str(left) == str(right)
    raise AssertionError(f"holds() does not evaluate {condition!r}")


def deployed(value, template, parameters):
    """`value` as CloudFormation deploys it with `parameters` (the rest at
    their defaults): Ref, Fn::If, Fn::Sub, Fn::Join, Fn::Split, Fn::Select
    and Fn::FindInMap evaluated, AWS::NoValue dropped. An attribute of a
    resource stands as "<resource>.<attribute>", a resource's Ref as its
    name. Fn::Join's and Fn::Split's delimiters and Fn::Sub's string must be
    literal, as CloudFormation requires."""
    if isinstance(value, list):
        return [v for v in (deployed(v, template, parameters) for v in value) if v is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            if argument == "AWS::NoValue":
                return NO_VALUE
            if argument in template["Resources"]:
                return argument
            return parameter_value(template, parameters, argument)
        if function == "Fn::If":
            condition, yes, no = argument
            return deployed(yes if holds(condition, template, parameters) else no, template, parameters)
        if function == "Fn::GetAtt":
            return ".".join(argument)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            assert isinstance(text, str), f"Fn::Sub's string must be literal: {argument!r}"
            variables = {k: deployed(v, template, parameters) for k, v in variables.items()}

            def substitute(match):
                name = match.group(1).strip()
                if name in variables:
                    return str(variables[name])
                if "." in name and name.split(".", 1)[0] in template["Resources"]:
                    return name
                return str(deployed({"Ref": name}, template, parameters))

            text = text.replace("${!", "\0")
            return re.sub(r"\$\{([^}]+)\}", substitute, text).replace("\0", "${")
        if function == "Fn::Join":
            delimiter, items = argument
            assert isinstance(delimiter, str), f"Fn::Join's delimiter must be literal: {delimiter!r}"
            items = deployed(items, template, parameters)
            assert isinstance(items, list), f"Fn::Join joins a list, not {items!r}"
            return delimiter.join(str(item) for item in items)
        if function == "Fn::Split":
            delimiter, text = argument
            assert isinstance(delimiter, str), f"Fn::Split's delimiter must be literal: {delimiter!r}"
            return str(deployed(text, template, parameters)).split(delimiter)
        if function == "Fn::Select":
            index, items = argument
            return deployed(items, template, parameters)[int(deployed(index, template, parameters))]
        if function == "Fn::FindInMap":
            name, key, attribute = (deployed(v, template, parameters) for v in argument)
            return template["Mappings"][name][str(key)][attribute]
        assert not function.startswith("Fn::"), f"deployed() does not evaluate {function}"
    mapping = {key: deployed(v, template, parameters) for key, v in value.items()}
    return {key: v for key, v in mapping.items() if v is not NO_VALUE}


# ---------------------------------------------------------------- EventBridge

def event_matches(pattern, event):
    """Whether an EventBridge event pattern matches an event: every field of
    the pattern must be in the event; a list of values matches when the
    event's value (or, for an array, any of its elements) is one of them
    ({"prefix": ...}, {"exists": ...} and {"anything-but": ...} included);
    a nested pattern matches an object, or any element of an array of them."""
    for key, expected in pattern.items():
        if isinstance(expected, dict):
            actual = event.get(key) if isinstance(event, dict) else None
            candidates = actual if isinstance(actual, list) else [actual]
            if not any(isinstance(c, dict) and event_matches(expected, c) for c in candidates):
                return False
            continue
        assert isinstance(expected, list), f"pattern field {key}: a list of values or a nested pattern, not {expected!r}"
        present = isinstance(event, dict) and key in event
        actual = event.get(key) if present else None
        values = actual if isinstance(actual, list) else [actual]
        if not any(_value_matches(rule, v, present) for rule in expected for v in values):
            return False
    return True


def _value_matches(rule, value, present):
    if isinstance(rule, dict):
        ((kind, argument),) = rule.items()
        if kind == "exists":
            return present == argument
        if kind == "prefix":
            return present and isinstance(value, str) and value.startswith(argument)
        if kind == "anything-but":
            return present and value not in as_list(argument)
        raise AssertionError(f"event_matches() does not know the {kind!r} filter")
    return present and value == rule


# ---------------------------------------------------------------- Rust code

def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def without_comments(source):
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    return re.sub(r"//[^\n]*", "", source)


# SDK crate -> IAM service prefix. A crate missing here fails the test with a
# message naming it, instead of being ignored.
SDK_CRATES = {
    "aws_sdk_ec2": "ec2",
    "aws_sdk_dynamodb": "dynamodb",
    "aws_sdk_eventbridge": "events",
    "aws_sdk_sqs": "sqs",
    "aws_sdk_sns": "sns",
    "aws_sdk_lambda": "lambda",
    "aws_sdk_cloudwatch": "cloudwatch",
    "aws_sdk_sts": "sts",
    "aws_sdk_ram": "ram",
}

# Methods of an SDK `Client` that are not AWS operations.
CLIENT_METHODS = {"clone", "config", "new", "from_conf"}

# An operation call on a client: `<something>client` `.` `operation()`, across
# line breaks (`self.client\n    .describe_traffic_mirror_targets()`), or on
# a client the file declares by its crate (CLIENT_DECLARATION: `sts:
# aws_sdk_sts::Client`, then `self.sts.assume_role()`). Group 1 is the
# receiver, group 2 the operation.
OPERATION_CALL = r"\b({receivers})\s*\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)"

# A client declared with its crate (a field, a parameter, a `let`): the calls
# on it are that crate's service, so one file may use the clients of several
# services (src/aws/members.rs: STS, and EC2's config for the member).
CLIENT_DECLARATION = re.compile(
    r"\b(?:let\s+(?:mut\s+)?)?(\w+)\s*(?::\s*|=\s*)(aws_sdk_[a-z0-9_]+)::Client\b"
)


def operation_calls(source, declared):
    receivers = "|".join([r"\w*client"] + [re.escape(name) for name in sorted(declared)])
    return re.finditer(OPERATION_CALL.format(receivers=receivers), source)

# Every operation call ends in exactly one `.send()` (directly or through
# `.into_paginator()`); checking that they pair up shows the regex above
# missed nothing.
SEND_CALL = re.compile(r"\.\s*send\s*\(\s*\)")

# A function that returns an operation's builder without sending it (so that a
# create and its dry run send the same parameters): its return type names the
# operation, `...::builders::CreateTrafficMirrorTargetFluentBuilder`.
BUILDER_FN = re.compile(r"\bfn\s+(\w+)\b[^{;]*?->\s*([^{;]*?)\{", re.S)
FLUENT_BUILDER = re.compile(r"(\w+)FluentBuilder\b")


def snake_to_pascal(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def pascal_to_kebab(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def pascal_to_snake(name):
    return pascal_to_kebab(name).replace("-", "_")


def block_end(source, open_brace):
    """The index just past the `}` matching the `{` at open_brace."""
    depth = 0
    for index in range(open_brace, len(source)):
        if source[index] == "{":
            depth += 1
        elif source[index] == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    raise AssertionError("unbalanced braces")


def builder_functions(source):
    """{function name: (operation snake_case, body start, body end)} for the
    functions that return an SDK operation's fluent builder."""
    found = {}
    for match in BUILDER_FN.finditer(source):
        builder = FLUENT_BUILDER.search(match.group(2))
        if builder:
            found[match.group(1)] = (pascal_to_snake(builder.group(1)), match.end() - 1, block_end(source, match.end() - 1))
    return found


def sdk_calls():
    """{file: (service prefix, [(operation snake_case, call chain text)])} for
    every src/aws/*.rs that uses an AWS SDK client (a file calling the
    clients of several services appears once per service, as "<file>
    (<service>)"). A chain starts at the client's operation call, or at a
    call of a function returning that operation's builder, and runs to its
    `.send()`."""
    found = {}
    names = sorted(
        os.path.relpath(os.path.join(folder, name), AWS_DIR)
        for folder, _, files in os.walk(AWS_DIR)
        for name in files
    )
    for name in names:
        if not name.endswith(".rs"):
            continue
        path = os.path.join("src", "aws", name)
        source = without_comments(read(path))
        # Unit tests inside the file never reach AWS.
        source = source.split("#[cfg(test)]", 1)[0]
        crates = set(re.findall(r"\b(aws_sdk_[a-z0-9_]+)::", source))
        declared = {name: crate for name, crate in CLIENT_DECLARATION.findall(source) if name != "Client"}
        builders = builder_functions(source)
        # The crate of the client a builder function calls, when declared.
        builder_crates = {}
        # Where chains begin: (position, operation, body of the builder
        # function the chain calls, or "", the client's crate or None: the
        # file's one crate).
        starts = []
        for match in operation_calls(source, declared):
            receiver, operation = match.group(1), match.group(2)
            if operation in CLIENT_METHODS:
                continue
            inside = [(fn, op) for fn, (op, begin, end) in builders.items() if begin <= match.start() < end]
            if inside:
                # Sent where the function is called (below), not here.
                fn, op = inside[0]
                assert operation == op, (
                    f"{path}: {fn}() says it returns a {snake_to_pascal(op)} builder but calls {operation}()"
                )
                builder_crates[fn] = declared.get(receiver)
                continue
            starts.append((match.start(), operation, "", declared.get(receiver)))
        for fn, (operation, begin, end) in builders.items():
            for match in re.finditer(r"\.\s*" + re.escape(fn) + r"\s*\(", source):
                # The chain includes the function's body: it may set
                # parameters (tags) too.
                starts.append((match.start(), operation, source[begin:end], builder_crates.get(fn)))
        sends = [m.end() for m in SEND_CALL.finditer(source)]
        if not starts and not sends:
            continue
        crate = None
        if any(start[3] is None for start in starts):
            if not crates and os.path.basename(path) != "mod.rs":
                # A module split into files (src/aws/ledger/): its parts call
                # the client the folder's mod.rs holds.
                parent = without_comments(read(os.path.join(os.path.dirname(path), "mod.rs")))
                crates = set(re.findall(r"\b(aws_sdk_[a-z0-9_]+)::", parent.split("#[cfg(test)]", 1)[0]))
            assert len(crates) == 1, (
                f"{path} uses SDK crates {sorted(crates) or 'none'}: a call on a client whose crate the file "
                f"does not declare (`name: aws_sdk_x::Client`) maps to the file's one crate; declare it, split "
                f"the file or teach tests/infra/infra_support.py to tell its clients apart"
            )
            crate = next(iter(crates))
        for used in {start[3] or crate for start in starts}:
            assert used in SDK_CRATES, f"{path} uses {used}: add its IAM prefix to SDK_CRATES"
        calls = {}
        # In source order, chain starts and sends must alternate: a send with
        # no start before it is a call the regexes do not recognise, a start
        # with no send a builder that is never sent (or a send they missed).
        events = sorted([(pos, "start", (op, body, c or crate)) for pos, op, body, c in starts] + [(pos, "send", None) for pos in sends])
        open_start = None
        for pos, kind, started in events:
            line = source.count("\n", 0, pos) + 1
            if kind == "start":
                assert open_start is None, (
                    f"{path}:{line}: a new {started[0]} call starts before the "
                    f"{open_start[1]} call begun at line {source.count(chr(10), 0, open_start[0]) + 1} is sent: "
                    f"a client is called in a way tests/infra/infra_support.py does not follow"
                )
                open_start = (pos, *started)
            else:
                assert open_start is not None, (
                    f"{path}:{line}: a `.send()` with no operation call the test recognises before it: "
                    f"a client is called in a way OPERATION_CALL and BUILDER_FN do not match"
                )
                start, operation, body, used = open_start
                calls.setdefault(SDK_CRATES[used], []).append((operation, body + source[start:pos]))
                open_start = None
        assert open_start is None, f"{path}: the {open_start[1]} call is never sent"
        for service, service_calls in calls.items():
            found[path if len(calls) == 1 else f"{path} ({service})"] = (service, service_calls)
    assert found, "found no AWS SDK calls under src/aws"
    return found


def code_actions():
    """{IAM action: [files calling it]}, e.g. {"ec2:DescribeInstances": ["src/aws/ec2.rs"]}."""
    actions = {}
    for path, (service, calls) in sdk_calls().items():
        for operation, _ in calls:
            actions.setdefault(f"{service}:{snake_to_pascal(operation)}", []).append(path)
    return actions


def rust_str_const(source, name):
    match = re.search(r"\bconst\s+" + re.escape(name) + r"\s*:\s*&str\s*=\s*\"([^\"]*)\"", source)
    assert match, f"no `const {name}: &str = \"...\"` found"
    return match.group(1)


def rust_str_array(source, name):
    match = re.search(r"\bconst\s+" + re.escape(name) + r"\s*:\s*\[[^\]]*\]\s*=\s*\[(.*?)\];", source, re.S)
    assert match, f"no `const {name}: [...] = [...]` found"
    return re.findall(r"\"([^\"]*)\"", match.group(1))


# ---------------------------------------------------------------- skipped checks, explained

def assert_checkov_skips_have_reasons(resources):
    """Every checkov check a resource skips says why, in five words or more."""
    for name, resource in resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "").split()) >= 5, f"{name}: checkov skip {skip.get('id')} needs a written reason"


def assert_ignored_cfn_lint_rules_explained(path):
    """Every cfn-lint rule a template ignores has a comment just above it."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines):
        if "ignore_checks" in line:
            above = lines[max(0, number - 4): number]
            assert any(l.strip().startswith("#") for l in above), f"line {number + 1}: explain the ignored cfn-lint rule in a comment above it"
