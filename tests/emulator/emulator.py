"""The project's AWS emulator: moto in server mode, made to behave as AWS does
where our tests depend on it.

moto already speaks EC2 (VPCs, subnets, ENIs, instances), DynamoDB, SQS and
EventBridge; everything but Traffic Mirroring passes straight through to it.
What this module adds, and why:

* **Traffic Mirroring, whole.** moto 5.2 knows targets and filters only: no
  sessions, no filter rules, no deletes, no quotas. We serve all twelve
  mirroring calls from a small model below, with AWS's error codes for every
  rule in the contract (sessions per ENI, sources per target, rules per filter,
  duplicate rule numbers, in-use deletes, unknown ids and ENIs, a target ENI
  used as a source, unsupported instance types, client-token idempotency).
* **Atomicity.** moto serves requests on threads and checks-then-writes without
  a lock (DynamoDB conditional writes, EC2 quotas), so two racing requests can
  both pass a check AWS would apply atomically. One lock serialises every AWS
  request, as AWS applies each one atomically.
* **Paging.** moto returns every Describe result at once; AWS may page any. The
  mirroring Describe calls page at `page_size` (default 2) so clients' paging
  is always exercised.
* **Latency.** moto answers in microseconds; AWS in tens of milliseconds. A
  per-action latency is slept *outside* the lock, so concurrency is measurable.
* **Throttling.** Token buckets per action (or for every mutating EC2 call)
  answer `RequestLimitExceeded` with HTTP 503, as EC2 does.
* **Faults.** "Fail the next N calls of action X with code Y", over HTTP, so a
  test can make any step of a flow fail.
* **A call log**, so tests and benchmarks count calls from the server's side.

Control API (JSON over HTTP on the same port), all answering 200:
  POST   /_emulator/reset     moto's state and ours back to empty, defaults restored
  POST   /_emulator/faults    {"action", "code", "status", "count", "after", "message", "service"} or a list
  GET    /_emulator/faults    the rules still armed;  DELETE clears them
  POST   /_emulator/throttle  {"actions": [...] | "mutating", "burst", "refill_per_second"}; DELETE clears
  POST   /_emulator/config    {"page_size": 2, "latency_ms": {"default": 0, "<Action>": 40}} (merged)
  GET    /_emulator/calls     {"calls": [{"service", "action", "start", "end", "status"}]}; DELETE clears
  GET    /_emulator/health    {"ok": true}

Run: python emulator.py [--host 127.0.0.1] [--port 0]; it prints
"EMULATOR_READY port=<port>" once listening, and exits when its parent dies.
"""

import argparse
import base64
import hashlib
import json
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from io import BytesIO
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from werkzeug.serving import WSGIRequestHandler, make_server

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.moto_api._internal import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

EC2_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
MUTATING_PREFIXES = (
    "Create", "Delete", "Modify", "Associate", "Disassociate", "Attach", "Detach",
    "Run", "Terminate", "Start", "Stop", "Reboot",
)
# Xen families missing from AWS's list of instance types that can be a mirror source.
UNSUPPORTED_FAMILIES = {"t1", "t2", "m1", "m2", "m3", "c1", "c3", "r3", "i2", "hs1", "cc2", "cr1", "g2"}
SESSIONS_PER_ENI = 3
SOURCES_PER_ENI_TARGET = 10
RULES_PER_FILTER = 10
DEFAULT_CONFIG = {"page_size": 2, "latency_ms": {"default": 0}}


class AwsError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def not_found(kind, resource_id):
    return AwsError(f"Invalid{kind}Id.NotFound", f"The {kind} ID '{resource_id}' does not exist.")


def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:17]}"


# ---------------------------------------------------------------- request parsing

def members(form, prefix):
    """`Filter.1.Name`, `Filter.1.Value.1` -> [{"Name": .., "Value.1": ..}], by index."""
    groups = {}
    for key, value in form.items():
        if key.startswith(prefix + "."):
            index, _, rest = key[len(prefix) + 1:].partition(".")
            if index.isdigit():
                groups.setdefault(int(index), {})[rest] = value
    return [groups[i] for i in sorted(groups)]


def id_list(form, prefix):
    return [m[""] for m in members(form, prefix) if "" in m]


def tags_for(form, resource_type):
    tags = {}
    for spec in members(form, "TagSpecification"):
        if spec.get("ResourceType") == resource_type:
            for tag in members(spec, "Tag"):
                tags[tag.get("Key", "")] = tag.get("Value", "")
    return tags


def filters_of(form):
    return [
        (f.get("Name", ""), [v for k, v in f.items() if k.startswith("Value.")])
        for f in members(form, "Filter")
    ]


def matches(fields, tags, filters):
    """Values within a filter are ORed, filters are ANDed, as EC2 does."""
    for name, values in filters:
        actual = tags.get(name[4:]) if name.startswith("tag:") else fields.get(name)
        if actual is None or str(actual) not in values:
            return False
    return True


def integer(form, name, low, high, default=None):
    raw = form.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AwsError("InvalidParameterValue", f"{name} must be an integer, got {raw!r}")
    if not low <= value <= high:
        raise AwsError("InvalidParameterValue", f"{name} must be between {low} and {high}, got {value}")
    return value


def truthy(form, name):
    return form.get(name, "").lower() == "true"


# ---------------------------------------------------------------- XML answers

def to_xml(name, value):
    if value is None:
        return ""
    if isinstance(value, dict):
        return f"<{name}>" + "".join(to_xml(k, v) for k, v in value.items()) + f"</{name}>"
    if isinstance(value, list):
        return f"<{name}>" + "".join(to_xml("item", v) for v in value) + f"</{name}>"
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def ec2_answer(action, fields):
    body = "".join(to_xml(k, v) for k, v in fields.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><{action}Response xmlns="{EC2_NAMESPACE}">'
        f"<requestId>{uuid.uuid4()}</requestId>{body}</{action}Response>"
    )


def tag_set(tags):
    return [{"key": k, "value": v} for k, v in tags.items()]


# ---------------------------------------------------------------- the Traffic Mirroring model

class Mirroring:
    """Targets, filters, rules and sessions of one account and region."""

    def __init__(self, account, region):
        self.account, self.region = account, region
        self.targets, self.filters, self.sessions = {}, {}, {}
        self.tokens = {}  # (action, token) -> (fingerprint, answer)

    # -- views, shaped as the EC2 API returns them

    def target_view(self, t):
        return {
            "trafficMirrorTargetId": t["id"], "networkInterfaceId": t.get("eni"),
            "networkLoadBalancerArn": t.get("nlb"), "gatewayLoadBalancerEndpointId": t.get("gwlbe"),
            "type": t["type"], "description": t.get("description"), "ownerId": self.account,
            "tagSet": tag_set(t["tags"]),
        }

    def rule_view(self, r):
        port = lambda p: None if p is None else {"fromPort": p[0], "toPort": p[1]}
        return {
            "trafficMirrorFilterRuleId": r["id"], "trafficMirrorFilterId": r["filter"],
            "trafficDirection": r["direction"], "ruleNumber": r["number"], "ruleAction": r["action"],
            "protocol": r.get("protocol"), "destinationPortRange": port(r.get("dst_ports")),
            "sourcePortRange": port(r.get("src_ports")), "destinationCidrBlock": r["dst"],
            "sourceCidrBlock": r["src"], "description": r.get("description"), "tagSet": tag_set(r["tags"]),
        }

    def filter_view(self, f):
        rules = lambda direction: [self.rule_view(r) for r in f["rules"].values() if r["direction"] == direction]
        return {
            "trafficMirrorFilterId": f["id"], "ingressFilterRuleSet": rules("ingress"),
            "egressFilterRuleSet": rules("egress"), "networkServiceSet": [],
            "description": f.get("description"), "tagSet": tag_set(f["tags"]),
        }

    def session_view(self, s):
        return {
            "trafficMirrorSessionId": s["id"], "trafficMirrorTargetId": s["target"],
            "trafficMirrorFilterId": s["filter"], "networkInterfaceId": s["eni"], "ownerId": self.account,
            "packetLength": s.get("packet_length"), "sessionNumber": s["number"],
            "virtualNetworkId": s["vni"], "description": s.get("description"), "tagSet": tag_set(s["tags"]),
        }

    # -- lookups that raise AWS's errors

    def eni(self, eni_id):
        try:
            return ec2_backends[self.account][self.region].get_network_interface(eni_id)
        except Exception:
            raise AwsError("InvalidNetworkInterfaceID.NotFound", f"The networkInterface ID '{eni_id}' does not exist")

    def get(self, table, kind, resource_id):
        if resource_id not in table:
            raise not_found(kind, resource_id)
        return table[resource_id]

    # -- creates

    def create_target(self, form):
        given = {k: form.get(k) for k in ("NetworkInterfaceId", "NetworkLoadBalancerArn", "GatewayLoadBalancerEndpointId")}
        present = [k for k, v in given.items() if v]
        if len(present) != 1:
            raise AwsError("InvalidParameterCombination",
                           "Exactly one of NetworkInterfaceId, NetworkLoadBalancerArn or GatewayLoadBalancerEndpointId is required.")
        if given["NetworkInterfaceId"]:
            self.eni(given["NetworkInterfaceId"])
        if truthy(form, "DryRun"):
            raise dry_run()
        kind = {"NetworkInterfaceId": "network-interface", "NetworkLoadBalancerArn": "network-load-balancer",
                "GatewayLoadBalancerEndpointId": "gateway-load-balancer-endpoint"}[present[0]]
        target = {"id": new_id("tmt"), "type": kind, "eni": given["NetworkInterfaceId"],
                  "nlb": given["NetworkLoadBalancerArn"], "gwlbe": given["GatewayLoadBalancerEndpointId"],
                  "description": form.get("Description"), "tags": tags_for(form, "traffic-mirror-target")}
        self.targets[target["id"]] = target
        return {"trafficMirrorTarget": self.target_view(target), "clientToken": form.get("ClientToken")}

    def create_filter(self, form):
        if truthy(form, "DryRun"):
            raise dry_run()
        mirror_filter = {"id": new_id("tmf"), "description": form.get("Description"), "rules": {},
                         "tags": tags_for(form, "traffic-mirror-filter")}
        self.filters[mirror_filter["id"]] = mirror_filter
        return {"trafficMirrorFilter": self.filter_view(mirror_filter), "clientToken": form.get("ClientToken")}

    def create_filter_rule(self, form):
        mirror_filter = self.get(self.filters, "TrafficMirrorFilter", form.get("TrafficMirrorFilterId"))
        direction = form.get("TrafficDirection")
        if direction not in ("ingress", "egress"):
            raise AwsError("InvalidParameterValue", f"TrafficDirection must be ingress or egress, got {direction!r}")
        action = form.get("RuleAction")
        if action not in ("accept", "reject"):
            raise AwsError("InvalidParameterValue", f"RuleAction must be accept or reject, got {action!r}")
        number = integer(form, "RuleNumber", 1, 32766)
        if number is None:
            raise AwsError("MissingParameter", "The request must contain the parameter RuleNumber")
        protocol = integer(form, "Protocol", 0, 255)
        ports = {}
        for side in ("Source", "Destination"):
            low = integer(form, f"{side}PortRange.FromPort", 0, 65535)
            high = integer(form, f"{side}PortRange.ToPort", 0, 65535)
            if low is not None or high is not None:
                if protocol not in (6, 17):
                    raise AwsError("InvalidParameterValue", "Port ranges are only supported for TCP and UDP.")
                ports[side] = (low if low is not None else high, high if high is not None else low)
        for cidr_name in ("SourceCidrBlock", "DestinationCidrBlock"):
            if not form.get(cidr_name):
                raise AwsError("MissingParameter", f"The request must contain the parameter {cidr_name}")
        if len(mirror_filter["rules"]) >= RULES_PER_FILTER:
            raise AwsError("TrafficMirrorFilterRuleLimitExceeded",
                           f"The filter {mirror_filter['id']} already has {RULES_PER_FILTER} rules.")
        if any(r["direction"] == direction and r["number"] == number for r in mirror_filter["rules"].values()):
            raise AwsError("TrafficMirrorFilterRuleAlreadyExists",
                           f"A {direction} rule with number {number} already exists in {mirror_filter['id']}.")
        if truthy(form, "DryRun"):
            raise dry_run()
        rule = {"id": new_id("tmfr"), "filter": mirror_filter["id"], "direction": direction, "number": number,
                "action": action, "protocol": protocol, "src_ports": ports.get("Source"),
                "dst_ports": ports.get("Destination"), "src": form["SourceCidrBlock"],
                "dst": form["DestinationCidrBlock"], "description": form.get("Description"),
                "tags": tags_for(form, "traffic-mirror-filter-rule")}
        mirror_filter["rules"][rule["id"]] = rule
        return {"trafficMirrorFilterRule": self.rule_view(rule), "clientToken": form.get("ClientToken")}

    def create_session(self, form):
        eni_id = form.get("NetworkInterfaceId")
        eni = self.eni(eni_id)
        target = self.get(self.targets, "TrafficMirrorTarget", form.get("TrafficMirrorTargetId"))
        mirror_filter = self.get(self.filters, "TrafficMirrorFilter", form.get("TrafficMirrorFilterId"))
        number = integer(form, "SessionNumber", 1, 32766)
        if number is None:
            raise AwsError("MissingParameter", "The request must contain the parameter SessionNumber")
        packet_length = integer(form, "PacketLength", 1, 8500)
        vni = integer(form, "VirtualNetworkId", 0, 16777215)
        self.check_source(eni, target)
        on_eni = [s for s in self.sessions.values() if s["eni"] == eni_id]
        if len(on_eni) >= SESSIONS_PER_ENI:
            raise AwsError("TrafficMirrorSessionsPerInterfaceLimitExceeded",
                           f"The network interface {eni_id} already has {SESSIONS_PER_ENI} traffic mirror sessions.")
        if any(s["number"] == number for s in on_eni):
            raise AwsError("InvalidParameterValue", f"Session number {number} is already in use on {eni_id}.")
        if target["type"] == "network-interface":
            sources = {s["eni"] for s in self.sessions.values() if s["target"] == target["id"]}
            if eni_id not in sources and len(sources) >= SOURCES_PER_ENI_TARGET:
                raise AwsError("TrafficMirrorSourcesPerTargetLimitExceeded",
                               f"The target {target['id']} already has {SOURCES_PER_ENI_TARGET} sources.")
        if truthy(form, "DryRun"):
            raise dry_run()
        used = {s["vni"] for s in self.sessions.values()}
        while vni is None or (form.get("VirtualNetworkId") in (None, "") and vni in used):
            vni = random.randint(1, 16777215)
        session = {"id": new_id("tms"), "eni": eni_id, "target": target["id"], "filter": mirror_filter["id"],
                   "number": number, "packet_length": packet_length, "vni": vni,
                   "description": form.get("Description"), "tags": tags_for(form, "traffic-mirror-session")}
        self.sessions[session["id"]] = session
        return {"trafficMirrorSession": self.session_view(session), "clientToken": form.get("ClientToken")}

    def check_source(self, eni, target):
        if target.get("eni") == eni.id:
            raise AwsError("InvalidParameterValue", f"The source {eni.id} cannot be the target's own interface.")
        if any(t.get("eni") == eni.id for t in self.targets.values()):
            raise AwsError("InvalidParameterValue",
                           f"The network interface {eni.id} is a traffic mirror target and cannot be a source.")
        instance = getattr(eni, "instance", None)
        family = (getattr(instance, "instance_type", "") or "").split(".")[0]
        if family in UNSUPPORTED_FAMILIES:
            raise AwsError("NetworkInterfaceNotSupported",
                           f"{eni.id} is attached to a {instance.instance_type} instance, which cannot be a mirror source.")

    # -- deletes

    def delete_session(self, form):
        session = self.get(self.sessions, "TrafficMirrorSession", form.get("TrafficMirrorSessionId"))
        if truthy(form, "DryRun"):
            raise dry_run()
        del self.sessions[session["id"]]
        return {"trafficMirrorSessionId": session["id"]}

    def delete_filter(self, form):
        mirror_filter = self.get(self.filters, "TrafficMirrorFilter", form.get("TrafficMirrorFilterId"))
        if any(s["filter"] == mirror_filter["id"] for s in self.sessions.values()):
            raise AwsError("TrafficMirrorFilterInUse", f"The filter {mirror_filter['id']} is in use by a session.")
        if truthy(form, "DryRun"):
            raise dry_run()
        del self.filters[mirror_filter["id"]]  # its rules go with it
        return {"trafficMirrorFilterId": mirror_filter["id"]}

    def delete_filter_rule(self, form):
        rule_id = form.get("TrafficMirrorFilterRuleId")
        owner = next((f for f in self.filters.values() if rule_id in f["rules"]), None)
        if owner is None:
            raise not_found("TrafficMirrorFilterRule", rule_id)
        if truthy(form, "DryRun"):
            raise dry_run()
        del owner["rules"][rule_id]
        return {"trafficMirrorFilterRuleId": rule_id}

    def delete_target(self, form):
        target = self.get(self.targets, "TrafficMirrorTarget", form.get("TrafficMirrorTargetId"))
        if any(s["target"] == target["id"] for s in self.sessions.values()):
            raise AwsError("TrafficMirrorTargetInUseException", f"The target {target['id']} is in use by a session.")
        if truthy(form, "DryRun"):
            raise dry_run()
        del self.targets[target["id"]]
        return {"trafficMirrorTargetId": target["id"]}

    def drop_sessions_of(self, eni_ids):
        """AWS deletes a deleted ENI's sessions, but not their filters or targets."""
        for session_id in [s["id"] for s in self.sessions.values() if s["eni"] in eni_ids]:
            del self.sessions[session_id]

    # -- describes (paged)

    def describe(self, form, table, kind, id_param, fields_of, view, set_name):
        ids = id_list(form, id_param)
        for resource_id in ids:
            if resource_id not in table:
                raise not_found(kind, resource_id)
        filters = filters_of(form)
        found = [r for r in table.values() if (not ids or r["id"] in ids) and matches(fields_of(r), r.get("tags", {}), filters)]
        items, next_token = page(found, form)
        return {set_name: [view(r) for r in items], "nextToken": next_token}

    def describe_sessions(self, form):
        fields = lambda s: {"traffic-mirror-session-id": s["id"], "network-interface-id": s["eni"],
                            "traffic-mirror-target-id": s["target"], "traffic-mirror-filter-id": s["filter"],
                            "session-number": s["number"], "virtual-network-id": s["vni"],
                            "owner-id": self.account, "description": s.get("description")}
        return self.describe(form, self.sessions, "TrafficMirrorSession", "TrafficMirrorSessionId", fields,
                             self.session_view, "trafficMirrorSessionSet")

    def describe_targets(self, form):
        fields = lambda t: {"traffic-mirror-target-id": t["id"], "network-interface-id": t.get("eni"),
                            "network-load-balancer-arn": t.get("nlb"), "owner-id": self.account,
                            "description": t.get("description")}
        return self.describe(form, self.targets, "TrafficMirrorTarget", "TrafficMirrorTargetId", fields,
                             self.target_view, "trafficMirrorTargetSet")

    def describe_filters(self, form):
        fields = lambda f: {"traffic-mirror-filter-id": f["id"], "description": f.get("description")}
        return self.describe(form, self.filters, "TrafficMirrorFilter", "TrafficMirrorFilterId", fields,
                             self.filter_view, "trafficMirrorFilterSet")

    def describe_filter_rules(self, form):
        rules = {r["id"]: r for f in self.filters.values() for r in f["rules"].values()}
        if form.get("TrafficMirrorFilterId"):
            self.get(self.filters, "TrafficMirrorFilter", form["TrafficMirrorFilterId"])
            rules = {k: r for k, r in rules.items() if r["filter"] == form["TrafficMirrorFilterId"]}
        fields = lambda r: {"traffic-mirror-filter-rule-id": r["id"], "traffic-mirror-filter-id": r["filter"],
                            "traffic-direction": r["direction"], "rule-number": r["number"],
                            "rule-action": r["action"], "protocol": r.get("protocol")}
        return self.describe(form, rules, "TrafficMirrorFilterRule", "TrafficMirrorFilterRuleId", fields,
                             self.rule_view, "trafficMirrorFilterRuleSet")


CREATES = {
    "CreateTrafficMirrorTarget": Mirroring.create_target,
    "CreateTrafficMirrorFilter": Mirroring.create_filter,
    "CreateTrafficMirrorFilterRule": Mirroring.create_filter_rule,
    "CreateTrafficMirrorSession": Mirroring.create_session,
}
OTHERS = {
    "DeleteTrafficMirrorSession": Mirroring.delete_session,
    "DeleteTrafficMirrorFilter": Mirroring.delete_filter,
    "DeleteTrafficMirrorFilterRule": Mirroring.delete_filter_rule,
    "DeleteTrafficMirrorTarget": Mirroring.delete_target,
    "DescribeTrafficMirrorSessions": Mirroring.describe_sessions,
    "DescribeTrafficMirrorTargets": Mirroring.describe_targets,
    "DescribeTrafficMirrorFilters": Mirroring.describe_filters,
    "DescribeTrafficMirrorFilterRules": Mirroring.describe_filter_rules,
}


def dry_run():
    return AwsError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)


def page(items, form):
    config_size = STATE.config["page_size"]
    size = max(1, min(int(form.get("MaxResults") or 1000), config_size))
    token = form.get("NextToken")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except Exception:
            raise AwsError("InvalidNextToken", "The token is invalid.")
    end = start + size
    next_token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], next_token


# ---------------------------------------------------------------- emulator state and control

class State:
    def __init__(self):
        self.reset()

    def reset(self):
        self.mirrors = {}
        self.faults = []
        self.buckets = []
        self.calls = []
        self.config = json.loads(json.dumps(DEFAULT_CONFIG))

    def mirroring(self, region):
        key = (DEFAULT_ACCOUNT_ID, region)
        if key not in self.mirrors:
            self.mirrors[key] = Mirroring(*key)
        return self.mirrors[key]

    def take_fault(self, service, action):
        for fault in self.faults:
            if fault.get("action") not in (None, action) or fault.get("service") not in (None, service):
                continue
            if fault.get("after", 0) > 0:
                fault["after"] -= 1
                return None
            fault["count"] = fault.get("count", 1) - 1
            if fault["count"] <= 0:
                self.faults.remove(fault)
            return AwsError(fault.get("code", "InternalError"),
                            fault.get("message", f"injected failure of {action}"), int(fault.get("status", 500)))
        return None

    def take_token(self, service, action):
        now = time.monotonic()
        for bucket in self.buckets:
            names = bucket["actions"]
            applies = (service == "ec2" and action.startswith(MUTATING_PREFIXES)) if names == "mutating" else action in names
            if not applies:
                continue
            bucket["tokens"] = min(bucket["burst"], bucket["tokens"] + (now - bucket["at"]) * bucket["refill_per_second"])
            bucket["at"] = now
            if bucket["tokens"] < 1:
                if service == "ec2":
                    return AwsError("RequestLimitExceeded", "Request limit exceeded.", 503)
                return AwsError("ThrottlingException", "Rate exceeded", 400)
            bucket["tokens"] -= 1
        return None


STATE = State()
LOCK = threading.Lock()


class Emulator:
    """WSGI middleware in front of moto's server application."""

    def __init__(self, moto_app):
        self.moto_app = moto_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_emulator/"):
            return self.control(environ, start_response, path[len("/_emulator/"):].strip("/"))
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = BytesIO(body), str(len(body))
        service, region, action, form, json_protocol = identify(environ, body)
        latency = STATE.config["latency_ms"]
        time.sleep(latency.get(action, latency.get("default", 0)) / 1000.0)  # outside the lock
        started = time.time()
        with LOCK:
            status, headers, payload = self.serve(environ, service, region, action, form, json_protocol)
        STATE.calls.append({"service": service, "action": action, "start": started, "end": time.time(),
                            "status": int(status.split()[0])})
        start_response(status, headers)
        return [payload]

    def serve(self, environ, service, region, action, form, json_protocol):
        error = STATE.take_token(service, action) or STATE.take_fault(service, action)
        if error:
            return error_answer(error, json_protocol, service)
        if service == "ec2" and (action in CREATES or action in OTHERS):
            return self.mirroring_call(region, action, form)
        answer = self.moto(environ)
        if service == "ec2" and answer[0].startswith("200"):
            self.after_moto(region, action, form)
        return answer

    def mirroring_call(self, region, action, form):
        mirrors = STATE.mirroring(region)
        try:
            if action in CREATES and form.get("ClientToken"):
                return xml_answer(self.idempotent(mirrors, action, form))
            handler = CREATES.get(action) or OTHERS[action]
            return xml_answer(ec2_answer(action, handler(mirrors, form)))
        except AwsError as error:
            return error_answer(error, False, "ec2")

    def idempotent(self, mirrors, action, form):
        """The same token and parameters answer as the first call did, even if
        that resource has been deleted since; other parameters are a mismatch."""
        params = sorted((k, v) for k, v in form.items() if k not in ("Action", "Version", "ClientToken", "DryRun"))
        fingerprint = hashlib.sha256(json.dumps(params).encode()).hexdigest()
        key = (action, form["ClientToken"])
        if key in mirrors.tokens:
            seen, answer = mirrors.tokens[key]
            if seen != fingerprint:
                raise AwsError("IdempotentParameterMismatch",
                               "The client token was already used with different parameters.")
            return answer
        answer = ec2_answer(action, CREATES[action](mirrors, form))
        mirrors.tokens[key] = (fingerprint, answer)
        return answer

    def after_moto(self, region, action, form):
        if action == "DeleteNetworkInterface":
            STATE.mirroring(region).drop_sessions_of({form.get("NetworkInterfaceId")})
        elif action == "TerminateInstances":
            backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
            enis = set()
            for instance_id in id_list(form, "InstanceId"):
                try:
                    instance = backend.get_instance(instance_id)
                except Exception:
                    continue
                enis.update(nic.id for nic in getattr(instance, "nics", {}).values())
            STATE.mirroring(region).drop_sessions_of(enis)

    def moto(self, environ):
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        chunks = self.moto_app(environ, start_response)
        try:
            payload = b"".join(chunks)  # inside the lock: the whole answer is produced atomically
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(payload))))
        return captured["status"], headers, payload

    def control(self, environ, start_response, name):
        method = environ["REQUEST_METHOD"]
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body = json.loads(raw) if raw.strip() else None
        with LOCK:
            answer = self.control_call(method, name, body)
        payload = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    def control_call(self, method, name, body):
        if name == "health":
            return {"ok": True}
        if name == "reset":
            moto_api_backend.reset()
            STATE.reset()
            return {"ok": True}
        if name == "faults":
            if method == "POST":
                STATE.faults.extend(dict(f) for f in (body if isinstance(body, list) else [body]))
            elif method == "DELETE":
                STATE.faults.clear()
            return {"faults": STATE.faults}
        if name == "throttle":
            if method == "POST":
                STATE.buckets.append({"actions": body["actions"], "burst": float(body["burst"]),
                                      "refill_per_second": float(body["refill_per_second"]),
                                      "tokens": float(body["burst"]), "at": time.monotonic()})
            elif method == "DELETE":
                STATE.buckets.clear()
            return {"buckets": [{k: b[k] for k in ("actions", "burst", "refill_per_second")} for b in STATE.buckets]}
        if name == "config":
            if method == "POST":
                STATE.config["page_size"] = int(body.get("page_size", STATE.config["page_size"]))
                STATE.config["latency_ms"].update(body.get("latency_ms", {}))
            return STATE.config
        if name == "calls":
            if method == "DELETE":
                STATE.calls.clear()
            return {"calls": STATE.calls}
        return {"error": f"unknown control call {name}"}


def identify(environ, body):
    """Service and region from the SigV4 scope; action from X-Amz-Target (JSON
    protocols) or the form's Action (query protocols such as EC2)."""
    scope = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    region, service = (scope.group(1), scope.group(2)) if scope else ("us-east-1", "")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, region, target.rsplit(".", 1)[-1], {}, True
    form = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
        form.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return service, region, form.get("Action", ""), form, False


def xml_answer(text):
    payload = text.encode()
    return "200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(payload)))], payload


def error_answer(error, json_protocol, service):
    reasons = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 412: "Precondition Failed",
               500: "Internal Server Error", 503: "Service Unavailable"}
    status = f"{error.status} {reasons.get(error.status, 'Error')}"
    if json_protocol:
        content_type = "application/x-amz-json-1.0" if service == "dynamodb" else "application/x-amz-json-1.1"
        payload = json.dumps({"__type": error.code, "message": error.message}).encode()
        headers = [("Content-Type", content_type), ("x-amzn-ErrorType", error.code)]
    else:
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
            f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
            f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    headers.append(("Content-Length", str(len(payload))))
    return status, headers, payload


class QuietHandler(WSGIRequestHandler):
    """One line per request would drown the test output; the call log has them."""

    def log_request(self, *args, **kwargs):
        pass


def exit_with_parent():
    """Tests that crash never leave an emulator running."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    app = Emulator(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=QuietHandler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=exit_with_parent, daemon=True).start()
    print(f"EMULATOR_READY port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
