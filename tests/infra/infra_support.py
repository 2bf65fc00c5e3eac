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


def load_template():
    with open(TEMPLATE, encoding="utf-8") as f:
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


def ec2_resource_type(resource):
    """`traffic-mirror-target` for arn:...:ec2:...:traffic-mirror-target/*, None otherwise."""
    text = arn_text(resource)
    if text is None:
        return None
    # ${AWS::Partition} etc. hold colons of their own.
    text = re.sub(r"\$\{[^}]*\}", "x", text)
    match = re.match(r"arn:[^:]+:ec2:[^:]*:[^:]*:([a-z0-9-]+)/", text)
    return match.group(1) if match else None


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
}

# Methods of an SDK `Client` that are not AWS operations.
CLIENT_METHODS = {"clone", "config", "new", "from_conf"}

# An operation call on a client: `<something>client` `.` `operation()`, across
# line breaks (`self.client\n    .describe_traffic_mirror_targets()`).
OPERATION_CALL = re.compile(r"\b\w*client\s*\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)")

# Every operation call ends in exactly one `.send()` (directly or through
# `.into_paginator()`); counting them shows the regex above missed nothing.
SEND_CALL = re.compile(r"\.\s*send\s*\(\s*\)")


def snake_to_pascal(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def pascal_to_kebab(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def sdk_calls():
    """{file: (service prefix, [(operation snake_case, call chain text)])} for
    every src/aws/*.rs that uses an AWS SDK client."""
    found = {}
    for name in sorted(os.listdir(AWS_DIR)):
        if not name.endswith(".rs"):
            continue
        path = os.path.join("src", "aws", name)
        source = without_comments(read(path))
        # Unit tests inside the file never reach AWS.
        source = source.split("#[cfg(test)]", 1)[0]
        crates = set(re.findall(r"\b(aws_sdk_[a-z0-9_]+)::", source))
        calls = []
        for match in OPERATION_CALL.finditer(source):
            operation = match.group(1)
            if operation in CLIENT_METHODS:
                continue
            # The call's chain, up to its `.send()`: used to see which
            # parameters (e.g. tag_specifications) it passes.
            end = SEND_CALL.search(source, match.end())
            chain = source[match.start(): end.end() if end else len(source)]
            calls.append((operation, chain))
        sends = len(SEND_CALL.findall(source))
        if not calls and not sends:
            continue
        assert len(crates) == 1, (
            f"{path} uses SDK crates {sorted(crates) or 'none'}: the test maps each file to one "
            f"service; split the file or teach tests/infra/infra_support.py to tell its clients apart"
        )
        crate = crates.pop()
        assert crate in SDK_CRATES, f"{path} uses {crate}: add its IAM prefix to SDK_CRATES"
        assert len(calls) == sends, (
            f"{path} has {sends} `.send()` calls but the test recognised {len(calls)} operation calls "
            f"({[c for c, _ in calls]}): a client is called in a way OPERATION_CALL does not match"
        )
        found[path] = (SDK_CRATES[crate], calls)
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
