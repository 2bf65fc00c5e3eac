"""The project's AWS emulator: moto in server mode, made to behave as AWS does
where our tests depend on it.

moto already speaks EC2 (VPCs, subnets, ENIs, instances), DynamoDB, SQS and
EventBridge; everything but Traffic Mirroring passes straight through to it.
What this module adds, and why:

* **Traffic Mirroring, whole.** moto 5.2 knows targets and filters only: no
  sessions, no filter rules, no deletes, no quotas. We serve all twelve
  mirroring calls from a small model below, with AWS's error codes for every
  rule the product relies on (sessions per ENI, sources per target, rules per
  filter, duplicate rule and session numbers, in-use deletes, unknown ids and
  ENIs, a target ENI used as a source, unsupported instance types, client-token
  idempotency, DryRun). Deleting an ENI or terminating an instance deletes its
  sessions, as AWS does. CreateTags/DeleteTags naming mirroring ids tag them
  in the model (moto knows no such ids); other ids in the call go to moto.
* **Atomicity.** moto serves requests on threads and checks-then-writes without
  a lock (DynamoDB conditional writes, EC2 quotas), so two racing requests can
  both pass a check AWS applies atomically. One lock serialises every AWS
  request, as AWS applies each one atomically.
* **Paging.** moto returns every Describe result at once; AWS may page any. The
  mirroring Describe calls page at `page_size` (default 2) so clients' paging
  is always exercised.
* **Latency.** moto answers in microseconds; AWS in tens of milliseconds. A
  per-action latency is slept *outside* the lock, so concurrency is measurable.
* **Throttling.** Token buckets per action, for every mutating EC2 call or for
  every call, optionally of one service, answer `RequestLimitExceeded` (HTTP
  503) as EC2 does, `ThrottlingException` on JSON services.
* **Index lag.** moto's secondary indexes are always up to date; DynamoDB's
  GSIs are eventually consistent. With `index_lag_ms` set, a Query of an index
  does not see items written less than that long ago.
* **Faults.** "Skip N calls of action X, then fail the next M with code Y",
  over HTTP, so a test can make any step of a flow fail.
* **Late calls.** "Hold the next M calls of action X for D ms, then serve
  them": a client that gives up first (at its deadline) has sent a call that
  AWS still applies, and only its answer is lost.
* **A call log**, so tests and benchmarks count calls from the server's side.
* **Security groups and event sizes as AWS has them.** A new VPC's default
  group admits its own members (moto's admits nothing), and PutEvents refuses
  entries totalling 256 KB or more (moto takes any size).

Control API (JSON over HTTP on the same port, all answering 200):
  POST   /_emulator/reset     moto's state and ours back to empty, defaults restored
  POST   /_emulator/faults    {"action", "code", "status", "count", "after", "message", "service"} or a list
  GET    /_emulator/faults    the rules still armed;  DELETE clears them
  POST   /_emulator/delays    {"action", "delay_ms", "count", "after", "service"} or a list: those calls are
                              held that long (outside the lock), then served as usual; GET lists; DELETE clears.
                              With "until_released": true a call is held until POST /_emulator/release names
                              it (delay_ms, default 120000, is then only the longest hold): races ordered, no sleeps
  GET    /_emulator/release   {"held": [action, ...]}: the calls held right now, in arrival order
  POST   /_emulator/release   {"action": "optional"}: lets the held calls (of that action) go; {"released": n}
  POST   /_emulator/throttle  {"actions": [...] | "mutating" | "all", "service": "optional, e.g. dynamodb",
                               "burst", "refill_per_second"}; GET lists; DELETE clears
  POST   /_emulator/config    {"page_size": 2, "latency_ms": {"default": 0, "<service>": 10, "<Action>": 40},
                               "index_lag_ms": 0}: an action's latency, else its service's, else the default
                              (merged); GET shows
  GET    /_emulator/calls     {"calls": [{"service", "action", "start", "served", "end", "status", "error",
                              "eni" (the NetworkInterfaceId an EC2 call names, or null)}]};
                              DELETE clears
  POST   /_emulator/rename    {"from": "eni-…" | "i-…", "to": "<id>"}: give a resource the id a sample event names
  GET    /_emulator/health    {"ok": true}
A malformed control request answers 400, an unknown control path 404.

Run: python emulator.py [--host 127.0.0.1] [--port 0]; it prints
"EMULATOR_READY port=<port>" once listening, and exits on SIGTERM/SIGINT or
when its parent process dies.
"""

import argparse
import base64
import hashlib
import ipaddress
import json
import os
import random
import re
import signal
import threading
import time
import traceback
import uuid
import zlib
from io import BytesIO
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from werkzeug.serving import WSGIRequestHandler, make_server

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from moto.ec2.models import ec2_backends
from moto.moto_api._internal import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

EC2_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
MUTATING_PREFIXES = (
    "Create", "Delete", "Modify", "Associate", "Disassociate", "Attach", "Detach",
    "Run", "Terminate", "Start", "Stop", "Reboot",
)
# Which instances can be Traffic Mirroring sources, as AWS's limitations page
# says (https://docs.aws.amazon.com/vpc/latest/mirroring/traffic-mirroring-limitations.html,
# read 2026-12-04): not these virtualized Nitro families, not bare metal, and
# of the Xen families only the named ones. The hypervisor and bare-metal flag
# come from moto's instance type data (AWS's own).
NITRO_FAMILIES_NOT_SOURCES = {
    "m6a", "m6i", "m6id", "m6idn", "m6in", "m7a", "m7g", "m7gd", "m7i", "m7i-flex", "m8g",
    "c6a", "c6gd", "c6gn", "c6i", "c6id", "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i", "c8g",
    "r6a", "r6i", "r6id", "r6idn", "r6in", "r7a", "r7g", "r7gd", "r7i", "r7iz", "r8g",
    "x2idn", "x2iedn", "x2iezn", "x8g", "i4g", "i4i", "im4gn", "is4gen",
    "inf2", "p5", "trn1", "trn1n", "hpc6a", "hpc6id", "hpc7a", "hpc7g",
}
XEN_FAMILIES_THAT_ARE_SOURCES = {"c4", "d2", "g3", "g3s", "h1", "i3", "m4", "p2", "p3", "r4", "x1", "x1e"}
SESSIONS_PER_ENI = 3
SOURCES_PER_ENI_TARGET = 10
# The quotas page: target ENIs on the largest sizes of these families take 100 sources.
TYPES_WITH_100_SOURCES_PER_TARGET = {
    "m5.24xlarge", "m5d.24xlarge", "m5dn.24xlarge", "m5n.24xlarge",
    "c5.18xlarge", "c5d.18xlarge", "c5n.18xlarge",
    "r5.24xlarge", "r5d.24xlarge", "r5dn.24xlarge", "r5n.24xlarge",
}
RULES_PER_FILTER = 10
MAX_VNI = 16777215  # VXLAN ids are 24 bits
DEFAULT_CONFIG = {"page_size": 2, "latency_ms": {"default": 0}, "index_lag_ms": 0}
# Ids of the resources our model keeps (targets, filters, filter rules, sessions):
# CreateTags and DeleteTags naming them are ours to serve, not moto's.
MIRRORING_PREFIXES = ("tmt-", "tmf-", "tmfr-", "tms-")
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")
# Parameters that do not make two Create calls different for client-token purposes.
NOT_FINGERPRINTED = {"Action", "Version", "ClientToken", "DryRun"}


# ---------------------------------------------------------------- errors

class AwsError(Exception):
    """An error answer in AWS's words: code, message, HTTP status."""

    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def can_be_source(instance_type):
    """AWS's documented rule, from the type's hypervisor and bare-metal flag."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES
    facts = INSTANCE_TYPES.get(instance_type) or {}
    family = instance_type.split(".")[0]
    if facts.get("BareMetal") or "metal" in instance_type or family in NITRO_FAMILIES_NOT_SOURCES:
        return False
    return facts.get("Hypervisor") == "nitro" or family in XEN_FAMILIES_THAT_ARE_SOURCES


def not_found(kind, resource_id):
    return AwsError(f"Invalid{kind}Id.NotFound", f"The {kind} ID '{resource_id}' does not exist.")


def dry_run():
    # EC2 answers a DryRun that would have succeeded with this error and 412.
    return AwsError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)


def invalid(message):
    return AwsError("InvalidParameterValue", message)


def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:17]}"


# ---------------------------------------------------------------- request parsing

def nest(form):
    """EC2's flat query parameters as nested data: `Filter.1.Value.2=x` becomes
    {"Filter": [{"Value": [.., "x"]}]}; numeric segments make lists (in index
    order), other segments dicts. Every list the EC2 query protocol sends uses
    1-based numeric members, so this one rule covers tags, filters and id lists."""
    root = {}
    for key, value in form.items():
        node, parts = root, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break  # `X=1` and `X.1=2` together: malformed, keep the scalar
        else:
            node[parts[-1]] = value
    return _listify(root)


def _listify(node):
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}


def id_list(params, name):
    value = params.get(name)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def tags_of(params, resource_type):
    """Tags of one resource type from `TagSpecification.N.Tag.M.Key/Value`."""
    tags = {}
    for spec in params.get("TagSpecification") or []:
        if isinstance(spec, dict) and spec.get("ResourceType") == resource_type:
            for tag in spec.get("Tag") or []:
                tags[tag.get("Key", "")] = tag.get("Value", "")
    return tags


def filters_of(params):
    return [(f.get("Name", ""), f.get("Value") or []) for f in params.get("Filter") or [] if isinstance(f, dict)]


def matches(fields, tags, filters):
    """Values within one filter are ORed, filters are ANDed, as EC2 does."""
    for name, values in filters:
        actual = tags.get(name[4:]) if name.startswith("tag:") else fields.get(name)
        if actual is None or str(actual) not in values:
            return False
    return True


def integer(raw, name, low, high):
    """An optional integer parameter, range-checked with EC2's error code."""
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise invalid(f"Invalid value '{raw}' for {name}: not an integer.")
    if not low <= value <= high:
        raise invalid(f"Invalid value '{value}' for {name}: must be between {low} and {high}.")
    return value


def required(params, name):
    value = params.get(name)
    if value in (None, ""):
        raise AwsError("MissingParameter", f"The request must contain the parameter {name}")
    return value


def truthy(params, name):
    return str(params.get(name, "")).lower() == "true"


def cidr(params, name):
    value = required(params, name)
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise invalid(f"Invalid value '{value}' for {name}: not a CIDR block.")
    return value


# ---------------------------------------------------------------- XML answers

def to_xml(name, value):
    """Dicts become elements, lists `<item>` members, None is left out (as EC2
    leaves out unset fields)."""
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
    """Targets, filters (holding their rules) and sessions of one account and
    region. Element names in the views are the ones the EC2 API (and the Rust
    SDK's deserializers) use."""

    def __init__(self, account, region, used_vnis):
        self.account, self.region = account, region
        self.used_vnis = used_vnis  # callable: every VNI in use in the account
        self.targets, self.filters, self.sessions = {}, {}, {}
        self.tokens = {}  # (action, client token) -> (fingerprint, answer fields)

    # -- views, shaped as the EC2 API returns them

    def target_view(self, t):
        return {
            "trafficMirrorTargetId": t["id"], "networkInterfaceId": t["eni"],
            "networkLoadBalancerArn": t["nlb"], "gatewayLoadBalancerEndpointId": t["gwlbe"],
            "type": t["type"], "description": t["description"], "ownerId": self.account,
            "tagSet": tag_set(t["tags"]),
        }

    def rule_view(self, r):
        def ports(p):
            return None if p is None else {"fromPort": p[0], "toPort": p[1]}

        return {
            "trafficMirrorFilterRuleId": r["id"], "trafficMirrorFilterId": r["filter"],
            "trafficDirection": r["direction"], "ruleNumber": r["number"], "ruleAction": r["action"],
            "protocol": r["protocol"], "destinationPortRange": ports(r["dst_ports"]),
            "sourcePortRange": ports(r["src_ports"]), "destinationCidrBlock": r["dst"],
            "sourceCidrBlock": r["src"], "description": r["description"], "tagSet": tag_set(r["tags"]),
        }

    def filter_view(self, f):
        def rules(direction):
            return [self.rule_view(r) for r in f["rules"].values() if r["direction"] == direction]

        return {
            "trafficMirrorFilterId": f["id"], "ingressFilterRuleSet": rules("ingress"),
            "egressFilterRuleSet": rules("egress"), "networkServiceSet": [],
            "description": f["description"], "tagSet": tag_set(f["tags"]),
        }

    def session_view(self, s):
        return {
            "trafficMirrorSessionId": s["id"], "trafficMirrorTargetId": s["target"],
            "trafficMirrorFilterId": s["filter"], "networkInterfaceId": s["eni"], "ownerId": self.account,
            "packetLength": s["packet_length"], "sessionNumber": s["number"],
            "virtualNetworkId": s["vni"], "description": s["description"], "tagSet": tag_set(s["tags"]),
        }

    # -- lookups that raise AWS's errors

    def eni(self, eni_id):
        """ENIs live in moto; its lookup raises for unknown ids (and a region
        moto does not know raises too)."""
        try:
            return ec2_backends[self.account][self.region].get_network_interface(eni_id)
        except Exception:
            raise AwsError("InvalidNetworkInterfaceID.NotFound", f"The networkInterface ID '{eni_id}' does not exist")

    @staticmethod
    def get(table, kind, resource_id):
        if resource_id not in table:
            raise not_found(kind, resource_id)
        return table[resource_id]

    def all_rules(self):
        return {r["id"]: r for f in self.filters.values() for r in f["rules"].values()}

    def taggable(self, resource_id):
        """The record a mirroring id (one of MIRRORING_PREFIXES) names, for CreateTags and DeleteTags."""
        kinds = {"tmt-": ("TrafficMirrorTarget", self.targets), "tmf-": ("TrafficMirrorFilter", self.filters),
                 "tmfr-": ("TrafficMirrorFilterRule", self.all_rules()),
                 "tms-": ("TrafficMirrorSession", self.sessions)}
        kind, table = kinds[resource_id.partition("-")[0] + "-"]
        return self.get(table, kind, resource_id)

    # -- creates (each validates fully, then honours DryRun, then writes)

    def create_target(self, p):
        given = {k: p.get(k) or None for k in ("NetworkInterfaceId", "NetworkLoadBalancerArn", "GatewayLoadBalancerEndpointId")}
        present = [k for k, v in given.items() if v]
        if len(present) != 1:
            raise AwsError("InvalidParameterCombination",
                           "Exactly one of NetworkInterfaceId, NetworkLoadBalancerArn or "
                           "GatewayLoadBalancerEndpointId is required.")
        if given["NetworkInterfaceId"]:
            self.eni(given["NetworkInterfaceId"])
        # Two targets on one ENI are allowed: we have no evidence AWS forbids
        # it, and the product's tests count such duplicates.
        if truthy(p, "DryRun"):
            raise dry_run()
        kind = {"NetworkInterfaceId": "network-interface", "NetworkLoadBalancerArn": "network-load-balancer",
                "GatewayLoadBalancerEndpointId": "gateway-load-balancer-endpoint"}[present[0]]
        target = {"id": new_id("tmt"), "type": kind, "eni": given["NetworkInterfaceId"],
                  "nlb": given["NetworkLoadBalancerArn"], "gwlbe": given["GatewayLoadBalancerEndpointId"],
                  "description": p.get("Description"), "tags": tags_of(p, "traffic-mirror-target")}
        self.targets[target["id"]] = target
        return {"trafficMirrorTarget": self.target_view(target), "clientToken": p.get("ClientToken")}

    def create_filter(self, p):
        if truthy(p, "DryRun"):
            raise dry_run()
        mirror_filter = {"id": new_id("tmf"), "description": p.get("Description"), "rules": {},
                         "tags": tags_of(p, "traffic-mirror-filter")}
        self.filters[mirror_filter["id"]] = mirror_filter
        return {"trafficMirrorFilter": self.filter_view(mirror_filter), "clientToken": p.get("ClientToken")}

    def create_filter_rule(self, p):
        mirror_filter = self.get(self.filters, "TrafficMirrorFilter", required(p, "TrafficMirrorFilterId"))
        direction = required(p, "TrafficDirection")
        if direction not in ("ingress", "egress"):
            raise invalid(f"Invalid value '{direction}' for TrafficDirection: must be ingress or egress.")
        action = required(p, "RuleAction")
        if action not in ("accept", "reject"):
            raise invalid(f"Invalid value '{action}' for RuleAction: must be accept or reject.")
        number = integer(required(p, "RuleNumber"), "RuleNumber", 1, 32766)
        protocol = integer(p.get("Protocol"), "Protocol", 0, 255)
        src_ports = self.port_range(p, "SourcePortRange", protocol)
        dst_ports = self.port_range(p, "DestinationPortRange", protocol)
        src, dst = cidr(p, "SourceCidrBlock"), cidr(p, "DestinationCidrBlock")
        if len(mirror_filter["rules"]) >= RULES_PER_FILTER:
            raise AwsError("TrafficMirrorFilterRuleLimitExceeded",
                           f"The filter {mirror_filter['id']} already has {RULES_PER_FILTER} rules.")
        if any(r["direction"] == direction and r["number"] == number for r in mirror_filter["rules"].values()):
            raise AwsError("TrafficMirrorFilterRuleAlreadyExists",
                           f"An {direction} rule with number {number} already exists in {mirror_filter['id']}.")
        if truthy(p, "DryRun"):
            raise dry_run()
        rule = {"id": new_id("tmfr"), "filter": mirror_filter["id"], "direction": direction, "number": number,
                "action": action, "protocol": protocol, "src_ports": src_ports, "dst_ports": dst_ports,
                "src": src, "dst": dst, "description": p.get("Description"),
                "tags": tags_of(p, "traffic-mirror-filter-rule")}
        mirror_filter["rules"][rule["id"]] = rule
        return {"trafficMirrorFilterRule": self.rule_view(rule), "clientToken": p.get("ClientToken")}

    @staticmethod
    def port_range(p, name, protocol):
        """(from, to) or None. EC2 takes port ranges for TCP (6) and UDP (17) only."""
        given = p.get(name)
        if not isinstance(given, dict) or not given:
            return None
        if protocol not in (6, 17):
            raise invalid(f"{name} is only supported for the TCP (6) and UDP (17) protocols.")
        low = integer(given.get("FromPort"), f"{name}.FromPort", 0, 65535)
        high = integer(given.get("ToPort"), f"{name}.ToPort", 0, 65535)
        low = high if low is None else low
        high = low if high is None else high
        if low > high:
            raise invalid(f"{name}: FromPort {low} is greater than ToPort {high}.")
        return (low, high)

    def create_session(self, p):
        eni_id = required(p, "NetworkInterfaceId")
        eni = self.eni(eni_id)
        target = self.get(self.targets, "TrafficMirrorTarget", required(p, "TrafficMirrorTargetId"))
        mirror_filter = self.get(self.filters, "TrafficMirrorFilter", required(p, "TrafficMirrorFilterId"))
        number = integer(required(p, "SessionNumber"), "SessionNumber", 1, 32766)
        packet_length = integer(p.get("PacketLength"), "PacketLength", 1, 8500)
        vni = integer(p.get("VirtualNetworkId"), "VirtualNetworkId", 0, MAX_VNI)
        self.check_source(eni, target)
        on_eni = [s for s in self.sessions.values() if s["eni"] == eni_id]
        if len(on_eni) >= SESSIONS_PER_ENI:
            raise AwsError("TrafficMirrorSessionsPerInterfaceLimitExceeded",
                           f"The network interface {eni_id} already has {SESSIONS_PER_ENI} traffic mirror sessions.")
        if any(s["number"] == number for s in on_eni):
            raise invalid(f"The session number {number} is already in use by another session on {eni_id}.")
        if target["type"] == "network-interface":
            # The quota counts distinct source ENIs; NLB and GWLB endpoint targets have none.
            sources = {s["eni"] for s in self.sessions.values() if s["target"] == target["id"]}
            limit = self.sources_per_target(target)
            if eni_id not in sources and len(sources) >= limit:
                raise AwsError("TrafficMirrorSourcesPerTargetLimitExceeded",
                               f"The target {target['id']} already has {limit} sources.")
        if truthy(p, "DryRun"):
            raise dry_run()
        if vni is None:
            vni = self.fresh_vni()
        session = {"id": new_id("tms"), "eni": eni_id, "target": target["id"], "filter": mirror_filter["id"],
                   "number": number, "packet_length": packet_length, "vni": vni,
                   "description": p.get("Description"), "tags": tags_of(p, "traffic-mirror-session")}
        self.sessions[session["id"]] = session
        return {"trafficMirrorSession": self.session_view(session), "clientToken": p.get("ClientToken")}

    def fresh_vni(self):
        """AWS picks a random VNI, unique in the account, when none is given."""
        used = self.used_vnis()
        while True:
            vni = random.randint(1, MAX_VNI)
            if vni not in used:
                return vni

    def check_source(self, eni, target):
        if target["eni"] == eni.id:
            raise invalid(f"The source network interface {eni.id} cannot be the target's own network interface.")
        if any(t["eni"] == eni.id for t in self.targets.values()):
            raise invalid(f"The network interface {eni.id} is a traffic mirror target and cannot be a mirror source.")
        instance = getattr(eni, "instance", None)  # moto sets it on attach; None when unattached
        instance_type = getattr(instance, "instance_type", "") or ""
        if instance_type and not can_be_source(instance_type):
            raise AwsError("NetworkInterfaceNotSupported",
                           f"The network interface {eni.id} is attached to a {instance_type} instance, "
                           "which is not supported as a traffic mirror source.")

    def sources_per_target(self, target):
        """10 sources, or 100 when the target ENI's instance is one of the largest sizes."""
        try:
            eni = self.eni(target["eni"]) if target.get("eni") else None
        except AwsError:
            eni = None  # the target's ENI is gone: its sessions fail anyway
        instance = getattr(eni, "instance", None)
        instance_type = getattr(instance, "instance_type", "") or ""
        return 100 if instance_type in TYPES_WITH_100_SOURCES_PER_TARGET else SOURCES_PER_ENI_TARGET

    # -- deletes

    def delete_session(self, p):
        session = self.get(self.sessions, "TrafficMirrorSession", required(p, "TrafficMirrorSessionId"))
        if truthy(p, "DryRun"):
            raise dry_run()
        del self.sessions[session["id"]]
        return {"trafficMirrorSessionId": session["id"]}

    def delete_filter(self, p):
        mirror_filter = self.get(self.filters, "TrafficMirrorFilter", required(p, "TrafficMirrorFilterId"))
        if any(s["filter"] == mirror_filter["id"] for s in self.sessions.values()):
            raise AwsError("TrafficMirrorFilterInUse", f"The traffic mirror filter {mirror_filter['id']} is in use.")
        if truthy(p, "DryRun"):
            raise dry_run()
        del self.filters[mirror_filter["id"]]  # its rules go with it, as on AWS
        return {"trafficMirrorFilterId": mirror_filter["id"]}

    def delete_filter_rule(self, p):
        rule = self.get(self.all_rules(), "TrafficMirrorFilterRule", required(p, "TrafficMirrorFilterRuleId"))
        if truthy(p, "DryRun"):
            raise dry_run()
        del self.filters[rule["filter"]]["rules"][rule["id"]]
        return {"trafficMirrorFilterRuleId": rule["id"]}

    def delete_target(self, p):
        target = self.get(self.targets, "TrafficMirrorTarget", required(p, "TrafficMirrorTargetId"))
        if any(s["target"] == target["id"] for s in self.sessions.values()):
            raise AwsError("TrafficMirrorTargetInUseException",
                           f"The traffic mirror target {target['id']} is in use.")
        if truthy(p, "DryRun"):
            raise dry_run()
        del self.targets[target["id"]]
        return {"trafficMirrorTargetId": target["id"]}

    def drop_sessions_of(self, eni_ids):
        """AWS deletes the sessions of a deleted ENI, but not their filters or targets."""
        for session_id in [s["id"] for s in self.sessions.values() if s["eni"] in eni_ids]:
            del self.sessions[session_id]

    def rename_eni(self, old, new):
        for record in list(self.sessions.values()) + list(self.targets.values()):
            if record["eni"] == old:
                record["eni"] = new

    # -- describes (filtered, then paged)

    def describe(self, p, table, kind, id_param, fields_of, view, set_name):
        ids = id_list(p, id_param)
        for resource_id in ids:
            if resource_id not in table:
                raise not_found(kind, resource_id)
        filters = filters_of(p)
        found = [r for r in table.values()
                 if (not ids or r["id"] in ids) and matches(fields_of(r), r.get("tags", {}), filters)]
        items, next_token = page(found, p)  # validates NextToken and MaxResults before DryRun answers
        if truthy(p, "DryRun"):
            raise dry_run()
        return {set_name: [view(r) for r in items], "nextToken": next_token}

    def describe_sessions(self, p):
        def fields(s):
            return {"traffic-mirror-session-id": s["id"], "network-interface-id": s["eni"],
                    "traffic-mirror-target-id": s["target"], "traffic-mirror-filter-id": s["filter"],
                    "session-number": s["number"], "virtual-network-id": s["vni"],
                    "packet-length": s["packet_length"], "owner-id": self.account, "description": s["description"]}

        return self.describe(p, self.sessions, "TrafficMirrorSession", "TrafficMirrorSessionId", fields,
                             self.session_view, "trafficMirrorSessionSet")

    def describe_targets(self, p):
        def fields(t):
            return {"traffic-mirror-target-id": t["id"], "network-interface-id": t["eni"],
                    "network-load-balancer-arn": t["nlb"], "owner-id": self.account, "description": t["description"]}

        return self.describe(p, self.targets, "TrafficMirrorTarget", "TrafficMirrorTargetId", fields,
                             self.target_view, "trafficMirrorTargetSet")

    def describe_filters(self, p):
        def fields(f):
            return {"traffic-mirror-filter-id": f["id"], "description": f["description"]}

        return self.describe(p, self.filters, "TrafficMirrorFilter", "TrafficMirrorFilterId", fields,
                             self.filter_view, "trafficMirrorFilterSet")

    def describe_filter_rules(self, p):
        rules = self.all_rules()
        filter_id = p.get("TrafficMirrorFilterId")  # a single id here, not a list
        if filter_id:
            self.get(self.filters, "TrafficMirrorFilter", filter_id)
            rules = {k: r for k, r in rules.items() if r["filter"] == filter_id}

        def fields(r):
            return {"traffic-mirror-filter-rule-id": r["id"], "traffic-mirror-filter-id": r["filter"],
                    "traffic-direction": r["direction"], "rule-number": r["number"],
                    "rule-action": r["action"], "protocol": r["protocol"], "description": r["description"],
                    "source-cidr-block": r["src"], "destination-cidr-block": r["dst"]}

        return self.describe(p, rules, "TrafficMirrorFilterRule", "TrafficMirrorFilterRuleId", fields,
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


def page(items, p):
    """At most min(MaxResults or 1000, page_size) items and an opaque token for
    the rest. The token is the next offset in base64: opaque enough that
    clients must pass it back as given, simple enough to check."""
    size = integer(p.get("MaxResults"), "MaxResults", 5, 1000) or 1000  # AWS's range for these calls
    if STATE.config["page_size"] > 0:
        size = min(size, STATE.config["page_size"])
    start = 0
    if p.get("NextToken"):
        try:
            kind, _, offset = base64.urlsafe_b64decode(p["NextToken"].encode()).decode().partition(":")
            start = int(offset)
            if kind != "offset" or start < 0:
                raise ValueError(kind)
        except ValueError:
            raise AwsError("InvalidNextToken", "The token 'NextToken' is invalid or expired.")
    end = start + size
    next_token = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < len(items) else None
    return items[start:end], next_token


def idempotent(mirrors, action, form, params):
    """ClientToken semantics of EC2 Create calls: the same token with the same
    parameters answers as the first call did and creates nothing (even if the
    resource has been deleted since: AWS returns the original result); with
    other parameters it is a mismatch."""
    fingerprint = hashlib.sha256(json.dumps(
        sorted((k, v) for k, v in form.items() if k not in NOT_FINGERPRINTED)).encode()).hexdigest()
    key = (action, form["ClientToken"])
    if key in mirrors.tokens:
        seen, fields = mirrors.tokens[key]
        if seen != fingerprint:
            raise AwsError("IdempotentParameterMismatch",
                           "The client token you have provided is associated with a resource that is "
                           "already deleted or was created with different parameters.")
        return fields
    fields = CREATES[action](mirrors, params)  # raises before anything is remembered
    mirrors.tokens[key] = (fingerprint, fields)
    return fields


def tag_change(action, params):
    """What CreateTags or DeleteTags does to one resource's tags, as a function
    of its tag dict; the parameters are checked here, before anything changes.
    DeleteTags removes a key whatever its value when no Value is given, only if
    the value matches when one is (even ""), and every tag when no Tag is given."""
    given = [(t.get("Key"), t.get("Value")) for t in params.get("Tag") or [] if isinstance(t, dict)]
    if any(not key for key, _ in given):
        raise invalid("A tag key must not be empty.")
    if action == "CreateTags":
        required(params, "Tag")
        return lambda tags: tags.update((key, value or "") for key, value in given)

    def delete(tags):
        for key, value in given or [(key, None) for key in list(tags)]:
            if value is None or tags.get(key) == value:
                tags.pop(key, None)

    return delete


# ---------------------------------------------------------------- DynamoDB: secondary indexes lag

def written_items(action, body):
    """(table name, item or key) of each item a DynamoDB write names."""
    if action == "PutItem":
        return [(body["TableName"], body["Item"])]
    if action in ("UpdateItem", "DeleteItem"):
        return [(body["TableName"], body["Key"])]
    if action == "BatchWriteItem":
        return [(table, (r.get("PutRequest") or {}).get("Item") or (r.get("DeleteRequest") or {}).get("Key"))
                for table, requests in body["RequestItems"].items() for r in requests]
    if action == "TransactWriteItems":
        return [(write["TableName"], write.get("Item") or write.get("Key"))
                for entry in body["TransactItems"] for kind, write in entry.items()
                if kind in ("Put", "Update", "Delete")]
    return []


def written_key(region, table_name, attributes):
    """(region, table name, the item's primary key as text): the key schema is
    moto's, the table may be named by its ARN. Raises if attributes lack the key."""
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(table_name)
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return region, table.name, json.dumps([attributes[name] for name in names], sort_keys=True)


def after_dynamodb(request, answer):
    """Given moto's successful answer: remembers when each written item was
    written, and hides items written within `index_lag_ms` from Queries of a
    secondary index (GSIs are eventually consistent). A shape we do not know
    (a projection without the key, Select=COUNT, ...) is answered unfiltered."""
    try:
        body = json.loads(request.body)
        if request.action in DYNAMODB_WRITES:
            now = time.monotonic()
            for table, attributes in written_items(request.action, body):
                STATE.writes[written_key(request.region, table, attributes)] = now
        elif request.action == "Query" and body.get("IndexName") and STATE.config["index_lag_ms"] > 0:
            return without_recent_writes(request.region, body["TableName"], answer)
    except Exception:  # never worse than moto: its answer as it is
        pass
    return answer


def without_recent_writes(region, table_name, answer):
    status, headers, payload = answer
    result = json.loads(payload)
    horizon = time.monotonic() - STATE.config["index_lag_ms"] / 1000.0
    items = result.get("Items") or []
    kept = [item for item in items
            if STATE.writes.get(written_key(region, table_name, item), horizon) <= horizon]
    if len(kept) == len(items):
        return answer
    hidden = len(items) - len(kept)  # never in the index yet: neither counted nor scanned
    result.update(Items=kept, Count=len(kept), ScannedCount=max(0, result.get("ScannedCount", len(items)) - hidden))
    payload = json.dumps(result).encode()
    headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "x-amz-crc32")]
    headers += [("Content-Length", str(len(payload))), ("X-Amz-Crc32", str(zlib.crc32(payload)))]
    return status, headers, payload


# ---------------------------------------------------------------- emulator state

class State:
    """Everything the control API configures or reads, reset as one."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.mirrors = {}
        self.faults = []
        self.delays = []
        # Calls held until released: (action, threading.Event), in arrival order.
        for _, event in getattr(self, "held", []):
            event.set()
        self.held = []
        self.buckets = []
        self.calls = []
        self.config = json.loads(json.dumps(DEFAULT_CONFIG))
        self.writes = {}  # (region, table, primary key) -> time.monotonic() of its last DynamoDB write

    def mirroring(self, region, account=DEFAULT_ACCOUNT_ID):
        key = (account, region)
        if key not in self.mirrors:
            self.mirrors[key] = Mirroring(account, region, lambda: self.vnis_of(account))
        return self.mirrors[key]

    def vnis_of(self, account):
        return {s["vni"] for (owner, _), m in self.mirrors.items() if owner == account for s in m.sessions.values()}

    def latency_of(self, service, action):
        """An action's own latency, else its service's (`ec2`, `dynamodb`,
        `sqs`, `events`), else the default."""
        latency = self.config["latency_ms"]
        return float(latency.get(action, latency.get(service, latency.get("default", 0)))) / 1000.0

    def take_fault(self, service, action):
        """The first armed rule matching this call: it either lets the call
        through (still skipping `after`) or fails it (counting down `count`)."""
        for fault in self.faults:
            if fault.get("action") not in (None, action) or fault.get("service") not in (None, service):
                continue
            if fault["after"] > 0:
                fault["after"] -= 1
                continue
            fault["count"] -= 1
            if fault["count"] <= 0:
                self.faults.remove(fault)
            return AwsError(fault["code"], fault.get("message") or f"Injected failure of {action}.", fault["status"])
        return None

    def take_delay(self, service, action):
        """How the first armed delay rule matching this call holds it: (the
        seconds it is held at most, the event that releases it or None)."""
        for rule in self.delays:
            if rule.get("action") not in (None, action) or rule.get("service") not in (None, service):
                continue
            if rule["after"] > 0:
                rule["after"] -= 1
                continue
            rule["count"] -= 1
            if rule["count"] <= 0:
                self.delays.remove(rule)
            release = None
            if rule.get("until_released"):
                release = threading.Event()
                self.held.append((action, release))
            return rule["delay_ms"] / 1000.0, release
        return 0.0, None

    def take_token(self, service, action):
        """Token buckets: refilled by elapsed time, one token per call. Every
        bucket that applies must have a token, or the call is throttled
        without spending any."""
        now = time.monotonic()
        applying = []
        for bucket in self.buckets:
            if bucket_applies(bucket, service, action):
                bucket["tokens"] = min(bucket["burst"], bucket["tokens"] + (now - bucket["at"]) * bucket["refill_per_second"])
                bucket["at"] = now
                applying.append(bucket)
        if any(b["tokens"] < 1 for b in applying):
            if service in ("ec2", ""):
                return AwsError("RequestLimitExceeded", "Request limit exceeded.", 503)
            return AwsError("ThrottlingException", "Rate exceeded", 400)
        for bucket in applying:
            bucket["tokens"] -= 1
        return None


STATE = State()
# One lock for every AWS request and control call: AWS applies each request
# atomically, and moto's own check-then-write code is not thread-safe.
LOCK = threading.Lock()


# ---------------------------------------------------------------- the middleware

class Request:
    """What the middleware needs to know about one AWS request."""

    def __init__(self, environ, body):
        self.environ, self.body = environ, body
        self.service, self.region = credential_scope(environ)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        self.form = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            self.form.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        # JSON protocols name the action in X-Amz-Target (`DynamoDB_20120810.PutItem`,
        # `AWSEvents.PutEvents`, `AmazonSQS.SendMessage`); query protocols in `Action`.
        self.json_protocol = bool(target)
        self.action = target.rsplit(".", 1)[-1] if target else self.form.get("Action", "")
        self.content_type = environ.get("CONTENT_TYPE", "")


def credential_scope(environ):
    """(service, region) from the SigV4 credential scope, in the Authorization
    header or a presigned URL's X-Amz-Credential; region defaults to us-east-1."""
    text = environ.get("HTTP_AUTHORIZATION", "") + " " + environ.get("QUERY_STRING", "").replace("%2F", "/")
    scope = re.search(r"Credential=[^/\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request", text)
    return (scope.group(2), scope.group(1)) if scope else ("", "us-east-1")


class Emulator:
    """WSGI middleware in front of moto's server application."""

    def __init__(self, moto_app):
        self.moto_app = moto_app

    def __call__(self, environ, start_response):
        arrived = time.time()
        path = environ.get("PATH_INFO", "")
        body = read_body(environ)
        if path.startswith("/_emulator/"):
            status, headers, payload = self.control(environ, path[len("/_emulator/"):].strip("/"), body)
        elif path.startswith("/moto-api/"):
            with LOCK:  # moto's own dashboard and reset: passed through, not logged
                status, headers, payload = self.moto(environ)
        else:
            status, headers, payload = self.aws(environ, body, arrived)
        start_response(status, headers)
        return [payload]

    def aws(self, environ, body, arrived):
        request = Request(environ, body)
        with LOCK:
            held, release = STATE.take_delay(request.service, request.action)
        # Outside the lock: latency overlaps, as on AWS; a held call is served
        # after its client may have given up on it.
        if release is not None:
            release.wait(held)
            with LOCK:
                STATE.held = [(a, e) for a, e in STATE.held if e is not release]
            held = 0.0
        time.sleep(STATE.latency_of(request.service, request.action) + held)
        with LOCK:
            served = time.time()
            try:
                status, headers, payload, error = self.serve(request)
            except Exception as bug:  # answer (and log) it as AWS would, instead of werkzeug's HTML page
                traceback.print_exc()
                failure = AwsError("InternalError", f"emulator: {type(bug).__name__}: {bug}", 500)
                status, headers, payload, error = (*error_answer(failure, request), failure.code)
            # start: arrival (so latency counts); served: lock taken; end: answer complete.
            STATE.calls.append({"service": request.service, "action": request.action, "start": arrived,
                                "served": served, "end": time.time(), "status": int(status.split()[0]),
                                "error": error, "eni": request.form.get("NetworkInterfaceId")})
        return status, headers, payload

    def serve(self, request):
        """(status, headers, payload, error code or None); runs under the lock."""
        failure = STATE.take_token(request.service, request.action) or STATE.take_fault(request.service, request.action)
        if failure:
            return (*error_answer(failure, request), failure.code)
        try:
            if request.service == "events" and request.action == "PutEvents":
                check_event_sizes(request.body)
            if request.service == "ec2" and (request.action in CREATES or request.action in OTHERS):
                return (*xml_answer(ec2_answer(request.action, self.mirroring_call(request))), None)
            if tags_mirroring_ids(request):
                return (*self.tag_call(request), None)
        except AwsError as error:
            return (*error_answer(error, request), error.code)
        enis = self.enis_to_unmirror(request)  # before moto changes the instances
        answer = self.moto(request.environ)
        if answer[0].startswith("200"):
            if request.service == "ec2" and request.action == "CreateVpc":
                admit_own_members(request.region, answer[2])
            if enis:
                STATE.mirroring(request.region).drop_sessions_of(enis)
            if request.service == "dynamodb":
                answer = after_dynamodb(request, answer)
        return (*answer, None)  # moto's own errors are moto's: its body says which

    @staticmethod
    def mirroring_call(request):
        mirrors = STATE.mirroring(request.region)
        params = nest(request.form)
        if request.action in CREATES and request.form.get("ClientToken") and not truthy(params, "DryRun"):
            return idempotent(mirrors, request.action, request.form, params)
        return (CREATES.get(request.action) or OTHERS[request.action])(mirrors, params)

    def tag_call(self, request):
        """CreateTags/DeleteTags naming mirroring ids: those are tagged in our
        model, any other ids by moto, and the call fails or succeeds whole."""
        params = nest(request.form)
        ids = id_list(params, "ResourceId")
        ours = [i for i in ids if i.startswith(MIRRORING_PREFIXES)]
        mirrors = STATE.mirroring(request.region)
        records = [mirrors.taggable(i) for i in ours]  # unknown ids raise before anything changes
        change = tag_change(request.action, params)
        others = [i for i in ids if i not in ours]
        if others:
            answer = self.moto(with_resource_ids(request, others))  # moto checks its ids and DryRun
            if not answer[0].startswith("200"):
                return answer
        elif truthy(params, "DryRun"):
            raise dry_run()
        else:
            answer = xml_answer(ec2_answer(request.action, {"return": True}))
        for record in records:
            change(record["tags"])
        return answer

    @staticmethod
    def enis_to_unmirror(request):
        """ENIs whose sessions go if moto accepts this call: a deleted ENI, or
        every ENI of a terminated instance (AWS deletes the primary one; we
        drop the sessions of all, as a detached source mirrors nothing)."""
        if request.service != "ec2":
            return set()
        if request.action == "DeleteNetworkInterface":
            return {request.form.get("NetworkInterfaceId")}
        if request.action == "TerminateInstances":
            backend = ec2_backends[DEFAULT_ACCOUNT_ID][request.region]
            enis = set()
            for instance_id in id_list(nest(request.form), "InstanceId"):
                try:
                    enis.update(nic.id for nic in backend.get_instance(instance_id).nics.values())
                except Exception:
                    continue  # moto answers the unknown id itself
            return enis
        return set()

    def moto(self, environ):
        """moto's answer, fully produced: the iterable is joined here, inside
        the caller's lock, so no part of the work escapes it."""
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        chunks = self.moto_app(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() not in ("content-length", "transfer-encoding")]
        headers.append(("Content-Length", str(len(payload))))
        return captured["status"], headers, payload

    # -- control API

    def control(self, environ, name, raw):
        method = environ["REQUEST_METHOD"]
        try:
            body = json.loads(raw) if raw.strip() else None
            with LOCK:
                answer = control_call(method, name, body)
                payload = json.dumps(answer).encode()  # serialised under the lock: no torn reads
            status = "200 OK"
        except UnknownControl as error:
            status, payload = "404 Not Found", json.dumps({"error": str(error)}).encode()
        except (ValueError, TypeError, LookupError, AttributeError) as error:  # a malformed body
            status, payload = "400 Bad Request", json.dumps({"error": f"{type(error).__name__}: {error}"}).encode()
        return status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))], payload


class UnknownControl(Exception):
    pass


def control_call(method, name, body):
    if name == "health":
        return {"ok": True}
    if name == "reset":
        moto_api_backend.reset()  # every moto backend, as /moto-api/reset does
        STATE.reset()
        return {"ok": True}
    if name == "faults":
        if method == "POST":
            STATE.faults.extend(fault_rule(f) for f in (body if isinstance(body, list) else [body]))
        elif method == "DELETE":
            STATE.faults.clear()
        return {"faults": STATE.faults}
    if name == "delays":
        if method == "POST":
            STATE.delays.extend(delay_rule(d) for d in (body if isinstance(body, list) else [body]))
        elif method == "DELETE":
            STATE.delays.clear()
        return {"delays": STATE.delays}
    if name == "release":
        if method == "POST":
            action = (body or {}).get("action")
            going = [(a, e) for a, e in STATE.held if action in (None, a)]
            for _, event in going:
                event.set()
            STATE.held = [(a, e) for a, e in STATE.held if (a, e) not in going]
            return {"released": len(going)}
        return {"held": [a for a, _ in STATE.held]}
    if name == "throttle":
        if method == "POST":
            STATE.buckets.append(bucket(body))
        elif method == "DELETE":
            STATE.buckets.clear()
        return {"buckets": [{k: b[k] for k in ("actions", "service", "burst", "refill_per_second")}
                            for b in STATE.buckets]}
    if name == "config":
        if method == "POST":
            configure(body)
        return STATE.config
    if name == "calls":
        if method == "DELETE":
            STATE.calls.clear()
        return {"calls": STATE.calls}
    if name == "rename" and method == "POST":
        return rename(body.get("region", "us-east-1"), body["from"], body["to"])
    raise UnknownControl(f"unknown control call {method} /_emulator/{name}")


def fault_rule(body):
    if not isinstance(body, dict) or not body.get("code"):
        raise ValueError("a fault rule is an object with at least a code")
    rule = {"action": body.get("action"), "service": body.get("service"), "code": body["code"],
            "message": body.get("message"), "status": int(body.get("status", 500)),
            "count": int(body.get("count", 1)), "after": int(body.get("after", 0))}
    if rule["count"] < 1 or rule["after"] < 0:
        raise ValueError("count must be at least 1 and after at least 0")
    return rule


def delay_rule(body):
    if not isinstance(body, dict) or not body.get("action"):
        raise ValueError("a delay rule is an object with at least an action")
    until_released = bool(body.get("until_released", False))
    default_ms = 120_000 if until_released else 0
    rule = {"action": body["action"], "service": body.get("service"),
            "delay_ms": float(body.get("delay_ms", default_ms)),
            "count": int(body.get("count", 1)), "after": int(body.get("after", 0)), "until_released": until_released}
    if rule["delay_ms"] <= 0 or rule["count"] < 1 or rule["after"] < 0:
        raise ValueError("delay_ms must be positive, count at least 1 and after at least 0")
    return rule


def bucket(body):
    actions, service = body["actions"], body.get("service")
    if actions not in ("all", "mutating") and not (isinstance(actions, list) and all(isinstance(a, str) for a in actions)):
        raise ValueError('actions is "all", "mutating" or a list of action names')
    if service is not None and not isinstance(service, str):
        raise ValueError("service is a service name as in the credential scope, e.g. ec2 or dynamodb")
    burst, refill = float(body["burst"]), float(body["refill_per_second"])
    if burst < 0 or refill < 0:
        raise ValueError("burst and refill_per_second must not be negative")
    # burst 0 (or below 1) with refill 0: never a token, every matching call throttled for ever.
    return {"actions": actions, "service": service, "burst": burst, "refill_per_second": refill,
            "tokens": burst, "at": time.monotonic()}


def bucket_applies(bucket, service, action):
    if bucket["service"] not in (None, service):
        return False
    if bucket["actions"] == "all":
        return True
    if bucket["actions"] == "mutating":
        return service == "ec2" and action.startswith(MUTATING_PREFIXES)
    return action in bucket["actions"]


def configure(body):
    unknown = set(body) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}")
    if "page_size" in body:
        STATE.config["page_size"] = int(body["page_size"])
    if "index_lag_ms" in body:
        STATE.config["index_lag_ms"] = float(body["index_lag_ms"])
    for action, ms in body.get("latency_ms", {}).items():
        STATE.config["latency_ms"][action] = float(ms)


# EventBridge refuses a PutEvents request whose entries total 256 KB or more
# (moto takes any size). An entry's size, as AWS counts it: its Source,
# DetailType and Detail in UTF-8, its Resources, and 14 bytes for a Time.
EVENT_ENTRIES_LIMIT = 256 * 1024


def check_event_sizes(body):
    try:
        entries = json.loads(body or b"{}").get("Entries") or []
    except ValueError:
        return  # moto answers what it cannot read
    total = 0
    for entry in entries:
        total += 14 if entry.get("Time") else 0
        for field in ("Source", "DetailType", "Detail"):
            total += len((entry.get(field) or "").encode())
        total += sum(len(r.encode()) for r in entry.get("Resources") or [])
    if total >= EVENT_ENTRIES_LIMIT:
        raise AwsError("ValidationException", "Total size of the entries in the request is over the limit.")


def admit_own_members(region, payload):
    """On AWS a new VPC's default security group admits all traffic from its
    own members; moto's admits nothing. The delivery check (is UDP 4789 let
    in to a target ENI?) reads these rules, so they must be AWS's."""
    match = re.search(rb"<vpcId>(vpc-[0-9a-f]+)</vpcId>", payload)
    if not match:
        return
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    vpc_id = match.group(1).decode()
    group = backend.get_default_security_group(vpc_id)
    if group is not None:
        backend.authorize_security_group_ingress(group.id, "-1", None, None, [], source_groups=[{"GroupId": group.id}],
                                                 vpc_id=vpc_id)


def rename(region, old, new):
    """Gives an ENI or instance the id a sample event names: moto picks random
    ids, and the end-to-end test replays real-looking event files as they are."""
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    if old.startswith("eni-"):
        eni = backend.enis.pop(old)
        eni.id = new
        backend.enis[new] = eni
        STATE.mirroring(region).rename_eni(old, new)
    elif old.startswith("i-"):
        backend.get_instance(old).id = new
    else:
        raise ValueError(f"cannot rename {old}: only eni- and i- ids")
    if old in backend.tags:
        backend.tags[new] = backend.tags.pop(old)
    return {"ok": True}


# ---------------------------------------------------------------- HTTP plumbing

def read_body(environ):
    """Reads the body once and puts it back, so moto reads it again."""
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream for us
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = BytesIO(body), str(len(body))
    return body


def tags_mirroring_ids(request):
    """Whether this is a CreateTags or DeleteTags naming at least one mirroring id."""
    return request.service == "ec2" and request.action in ("CreateTags", "DeleteTags") and any(
        i.startswith(MIRRORING_PREFIXES) for i in id_list(nest(request.form), "ResourceId"))


def with_resource_ids(request, resource_ids):
    """The request's environ for moto, its `ResourceId.N` list replaced. All
    parameters go in a form body (SDKs send EC2 calls so); the signature is
    kept, and moto does not check it."""
    form = {k: v for k, v in request.form.items() if not k.startswith("ResourceId.")}
    form.update((f"ResourceId.{n}", i) for n, i in enumerate(resource_ids, 1))
    body = urlencode(form).encode()
    return {**request.environ, "QUERY_STRING": "", "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": BytesIO(body)}


def xml_answer(text):
    payload = text.encode()
    return "200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(payload)))], payload


REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 412: "Precondition Failed",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def error_answer(error, request):
    """The error in the request's protocol: JSON for X-Amz-Target services, EC2's
    <Response><Errors> for EC2, <ErrorResponse> for other query services."""
    status = f"{error.status} {REASONS.get(error.status, 'Error')}"
    request_id = str(uuid.uuid4())
    if request.json_protocol:
        content_type = request.content_type if request.content_type.startswith("application/x-amz-json") else (
            "application/x-amz-json-1.1" if request.service == "events" else "application/x-amz-json-1.0")
        payload = json.dumps({"__type": error.code, "message": error.message}).encode()
        headers = [("Content-Type", content_type), ("x-amzn-ErrorType", error.code), ("x-amzn-RequestId", request_id)]
    elif request.service in ("ec2", ""):
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
            f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    else:
        kind = "Sender" if error.status < 500 else "Receiver"
        payload = (
            f'<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Error><Type>{kind}</Type>'
            f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    headers.append(("Content-Length", str(len(payload))))
    return status, headers, payload


class QuietHandler(WSGIRequestHandler):
    """One line per request would drown the test output; the call log has them."""

    def log_request(self, *args, **kwargs):
        pass


def exit_with_parent():
    """Tests that crash never leave an emulator running: when the parent dies
    we are re-parented, and getppid() changes."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free port)")
    args = parser.parse_args()
    app = Emulator(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=QuietHandler)
    for signum in (signal.SIGTERM, signal.SIGINT):
        # os._exit, not sys.exit: request threads may hold the lock, and there is nothing to flush.
        signal.signal(signum, lambda *_: os._exit(0))
    threading.Thread(target=exit_with_parent, daemon=True).start()
    print(f"EMULATOR_READY port={server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
