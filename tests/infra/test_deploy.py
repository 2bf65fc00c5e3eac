"""Deploying needs only what deploying needs (#18): the deploy tools come
without the test emulator, and a scripted deploy takes its parameters from a
JSON file that scripts/parameters.py checks against the template."""

import json
import os
import re
import subprocess
import sys
import tempfile

from infra_support import ROOT, load_template as template

PARAMETERS = os.path.join(ROOT, "scripts", "parameters.py")
EXAMPLE = os.path.join(ROOT, "infra", "parameters.example.json")


def overrides(values):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(values, handle)
    try:
        return subprocess.run([sys.executable, PARAMETERS, handle.name], capture_output=True, text=True)
    finally:
        os.unlink(handle.name)


def test_the_deploy_tools_do_not_include_the_emulator():
    pinned = open(os.path.join(ROOT, "scripts", "requirements-deploy.txt")).read()
    names = {re.split(r"[=<>\[]", line.strip())[0].lower() for line in pinned.splitlines()
             if line.strip() and not line.startswith("#")}
    assert {"cargo-lambda", "ziglang", "aws-sam-cli"} <= names, names
    assert not names & {"moto", "boto3", "flask", "werkzeug"}, names
    assert all("==" in line for line in pinned.splitlines() if line.strip() and not line.startswith("#")), "pinned"
    for script in ("package.sh", "deploy.sh"):
        text = open(os.path.join(ROOT, "scripts", script)).read()
        assert "setup_deploy_tools" in text and "setup_emulator" not in text, script


def test_the_example_parameters_are_the_templates_and_convert_as_it_takes_them():
    declared = set(template()["Parameters"])
    example = json.load(open(EXAMPLE))
    assert set(example) <= declared, set(example) - declared
    answer = overrides(example)
    assert answer.returncode == 0, answer.stderr
    lines = dict(line.split("=", 1) for line in answer.stdout.splitlines())
    assert set(lines) == set(example)
    # DefaultTargets as the JSON object DEFAULT_TARGETS holds; a list as the comma-separated text AllowedTargets takes.
    assert json.loads(lines["DefaultTargets"]) == example["DefaultTargets"]
    assert lines["AllowedTargets"] == ",".join(example["AllowedTargets"])
    allowed = template()["Parameters"]["AllowedTargets"]["AllowedPattern"]
    assert re.fullmatch(allowed, lines["AllowedTargets"])
    assert lines["SweepEnabled"] in ("true", "false")


def test_an_unknown_parameter_fails_before_anything_is_deployed():
    answer = overrides({"DefaultTarget": {"subnet-0123456789abcdef0": "eni-0fedcba9876543210"}})
    assert answer.returncode == 2
    assert "DefaultTarget" in answer.stderr and answer.stdout == ""
    assert overrides(["not", "an", "object"]).returncode == 2
