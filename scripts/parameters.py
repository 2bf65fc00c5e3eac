#!/usr/bin/env python3
"""Turns a JSON file of template parameters into `sam deploy
--parameter-overrides` arguments, one `Key=Value` each. A JSON object
(DefaultTargets) is passed as its compact JSON text, a list (AllowedTargets,
AllowedSources, RequestSources) as its comma-joined text, as those
parameters take them; numbers and booleans as text. Keys the template does not
declare are refused, so a typo fails before anything is deployed.

    python3 scripts/parameters.py infra/parameters.example.json [--template infra/template.yaml]
"""

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def declared(template_path):
    """The template's parameter names, read without a YAML library (the
    deploy tools do not need one): the keys indented two spaces under
    `Parameters:`."""
    names, inside = [], False
    for line in open(template_path):
        if re.match(r"^\S", line):
            inside = line.startswith("Parameters:")
            continue
        key = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
        if inside and key:
            names.append(key.group(1))
    return names


def overrides(values, names):
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"not parameters of the template: {', '.join(unknown)}")
    out = []
    for key, value in values.items():
        if isinstance(value, list):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        out.append(f"{key}={text}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--template", default=os.path.join(ROOT, "infra/template.yaml"))
    args = parser.parse_args()
    try:
        with open(args.file) as handle:
            values = json.load(handle)
        if not isinstance(values, dict):
            raise ValueError("the file must hold one JSON object of parameter name to value")
        for argument in overrides(values, declared(args.template)):
            print(argument)
    except (OSError, ValueError) as error:
        print(f"parameters: {args.file}: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
