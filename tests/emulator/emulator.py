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
  mirroring Describe calls and RAM's Get calls page at `page_size` (default 2)
  so clients' paging is always exercised.
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
* **Accounts.** moto keeps accounts apart by the caller's access key (the
  credentials sts:AssumeRole returns belong to the role's account); so does
  our model: Traffic Mirroring, its tags and the ENI, instance and VPC lookups
  it makes are the caller's account's. Dummy keys are moto's 123456789012.
* **AWS RAM for traffic mirror targets.** moto 5.2's RAM has no
  Associate/DisassociateResourceShare and refuses traffic-mirror-target ARNs;
  we serve CreateResourceShare, GetResourceShares, Associate/Disassociate,
  GetResourceShareAssociations and DeleteResourceShare (REST-JSON) ourselves.
  A target shared with an account (or its organization in moto's
  Organizations) is usable there for sessions and listed in its
  DescribeTrafficMirrorTargets; its owner lists the sessions others make on
  it, and its sources quota counts every account's.
* **A member role that refuses.** sts:AssumeRole of a role named over the
  control API answers AccessDenied (403), as a trust policy that does not
  trust the caller makes AWS answer.

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
                               "burst", "refill_per_second", "per_account": false}; GET lists; DELETE clears.
                              "per_account": true gives each account its own tokens, as EC2 throttles per account
  POST   /_emulator/config    {"page_size": 2, "latency_ms": {"default": 0, "<service>": 10, "<Action>": 40},
                               "index_lag_ms": 0}: an action's latency, else its service's, else the default
                              (merged); GET shows
  GET    /_emulator/calls     {"calls": [{"service", "action", "start", "served", "end", "status", "error",
                              "eni" (the NetworkInterfaceId an EC2 call names, or null), "account"}]};
                              DELETE clears
  POST   /_emulator/rename    {"from": "eni-…" | "i-…", "to": "<id>", "account": "optional"}: give a resource the
                              id a sample event names
  POST   /_emulator/refuse-role  {"roleArn": "arn:aws:iam::<account>:role/<name>"}: AssumeRole of it answers
                              AccessDenied from now on; GET lists {"roleArns": [...]}; DELETE clears
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
from moto.iam.models import get_account_id_from
from moto.moto_api._internal import moto_api_backend
from moto.organizations.models import organizations_backends
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition
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
# AWS RAM is a REST-JSON protocol: the operation is the method and path, not a
# parameter. These six are ours; any other RAM call goes on to moto's RAM.
RAM_ROUTES = {
    ("POST", "/createresourceshare"): "CreateResourceShare",
    ("POST", "/getresourceshares"): "GetResourceShares",
    ("POST", "/associateresourceshare"): "AssociateResourceShare",
    ("POST", "/disassociateresourceshare"): "DisassociateResourceShare",
    ("POST", "/getresourceshareassociations"): "GetResourceShareAssociations",
    ("DELETE", "/deleteresourceshare"): "DeleteResourceShare",
}
RAM_MAX_RESULTS = 500  # the API's maxResults range is 1-500
ACCOUNT_ID = re.compile(r"^\d{12}$")
ANY_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:.+$")
SHARE_ARN = re.compile(r"^arn:aws:ram:([a-z0-9-]+):(\d{12}):resource-share/[0-9a-f-]+$")
TARGET_ARN = re.compile(r"^arn:aws:ec2:([a-z0-9-]+):(\d{12}):traffic-mirror-target/(tmt-[0-9a-f]+)$")
ORGANIZATION_ARN = re.compile(r"^arn:aws:organizations::\d{12}:organization/(o-[a-z0-9]+)$")
# Query services whose errors carry their namespace, as AWS's do.
ERROR_NAMESPACES = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}


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
    SDK's deserializers) use. Every record keeps its `owner` account: a target
    shared through RAM, and a session on one, is seen from two accounts."""

    def __init__(self, account, region, world):
        self.account, self.region = account, region
        self.world = world  # the State: other accounts' targets and sessions, RAM's shares, VNIs in use
        self.targets, self.filters, self.sessions = {}, {}, {}
        self.tokens = {}  # (action, client token) -> (fingerprint, answer fields)

    # -- views, shaped as the EC2 API returns them

    def target_view(self, t):
        return {
            "trafficMirrorTargetId": t["id"], "networkInterfaceId": t["eni"],
            "networkLoadBalancerArn": t["nlb"], "gatewayLoadBalancerEndpointId": t["gwlbe"],
            "type": t["type"], "description": t["description"], "ownerId": t["owner"],
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
            "trafficMirrorFilterId": s["filter"], "networkInterfaceId": s["eni"], "ownerId": s["owner"],
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

    def usable_target(self, target_id):
        """A target of ours, or one another account shares with ours through an
        active RAM share: AWS lets a session use either, and answers any other
        id as unknown (whoever owns it)."""
        if target_id in self.targets:
            return self.targets[target_id]
        return self.get(self.world.shared_with(self.account, self.region), "TrafficMirrorTarget", target_id)

    def visible_targets(self):
        """What DescribeTrafficMirrorTargets lists: AWS shows a shared target to
        the accounts it is shared with (with its owner's ownerId)."""
        return {**self.targets, **self.world.shared_with(self.account, self.region)}

    def visible_sessions(self):
        """What DescribeTrafficMirrorSessions lists: ours, and, as AWS shows the
        owner of a shared target, other accounts' sessions on our targets."""
        theirs = {s["id"]: s for s in self.world.sessions_in(self.region)
                  if s["owner"] != self.account and s["target"] in self.targets}
        return {**self.sessions, **theirs}

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
        target = {"id": new_id("tmt"), "owner": self.account, "type": kind, "eni": given["NetworkInterfaceId"],
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
        target = self.usable_target(required(p, "TrafficMirrorTargetId"))  # before DryRun, as AWS checks it
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
            # The quota counts distinct source ENIs, of every account using the
            # target (it is the target's); NLB and GWLB endpoint targets have none.
            sources = {(s["owner"], s["eni"]) for s in self.world.sessions_in(self.region)
                       if s["target"] == target["id"]}
            limit = self.world.mirroring(self.region, target["owner"]).sources_per_target(target)
            if (self.account, eni_id) not in sources and len(sources) >= limit:
                raise AwsError("TrafficMirrorSourcesPerTargetLimitExceeded",
                               f"The target {target['id']} already has {limit} sources.")
        if truthy(p, "DryRun"):
            raise dry_run()
        if vni is None:
            vni = self.fresh_vni()
        session = {"id": new_id("tms"), "owner": self.account, "eni": eni_id, "target": target["id"],
                   "filter": mirror_filter["id"], "number": number, "packet_length": packet_length, "vni": vni,
                   "description": p.get("Description"), "tags": tags_of(p, "traffic-mirror-session")}
        self.sessions[session["id"]] = session
        return {"trafficMirrorSession": self.session_view(session), "clientToken": p.get("ClientToken")}

    def fresh_vni(self):
        """AWS picks a random VNI, unique in the account, when none is given."""
        used = self.world.vnis_of(self.account)
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
        # Only our own sessions hold it: AWS lets the owner delete a shared target
        # other accounts' sessions use, and those sessions stop mirroring (they
        # stay, naming a target that is gone).
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
                    "packet-length": s["packet_length"], "owner-id": s["owner"], "description": s["description"]}

        return self.describe(p, self.visible_sessions(), "TrafficMirrorSession", "TrafficMirrorSessionId", fields,
                             self.session_view, "trafficMirrorSessionSet")

    def describe_targets(self, p):
        def fields(t):
            return {"traffic-mirror-target-id": t["id"], "network-interface-id": t["eni"],
                    "network-load-balancer-arn": t["nlb"], "owner-id": t["owner"], "description": t["description"]}

        return self.describe(p, self.visible_targets(), "TrafficMirrorTarget", "TrafficMirrorTargetId", fields,
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
    try:
        start = offset_of(p.get("NextToken"))
    except ValueError:
        raise AwsError("InvalidNextToken", "The token 'NextToken' is invalid or expired.")
    return items[start:start + size], next_token_after(start + size, items)


def offset_of(token):
    """The offset a NextToken of ours encodes (0 for none); ValueError if it is not one."""
    if not token:
        return 0
    try:
        kind, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        start = int(offset)
    except (ValueError, UnicodeError, AttributeError) as error:
        raise ValueError(str(error))
    if kind != "offset" or start < 0:
        raise ValueError(kind)
    return start


def next_token_after(end, items):
    return base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < len(items) else None


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


# ---------------------------------------------------------------- AWS RAM: sharing targets across accounts

def ram_error(code, message):
    return AwsError(code, message, 400)  # every RAM client error but ThrottlingException is a 400


def organization_of(account):
    """The ARN of the organization (moto's Organizations) an account is in, or
    None: its own if it created one, else that of the account that created it."""
    backend = organizations_backends[account]["aws"]
    if backend.org is None and account in organizations_backends.master_accounts:
        master, partition = organizations_backends.master_accounts[account]
        backend = organizations_backends[master][partition]
    return backend.org.arn if backend.org is not None else None


def strings(body, name):
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ram_error("InvalidParameterException", f"{name} must be a list of strings.")
    return value


def one_of(body, name, allowed):
    value = body.get(name)
    if value is not None and value not in allowed:
        raise ram_error("InvalidParameterException", f"{value} is not a valid {name}.")
    return value


def ram_page(items, body):
    """RAM's paging: at most min(maxResults, page_size) items, as the mirroring
    Describe calls page, so clients' paging of RAM is exercised too."""
    size = body.get("maxResults")
    if size is not None and (not isinstance(size, int) or not 1 <= size <= RAM_MAX_RESULTS):
        raise ram_error("InvalidParameterException", f"maxResults must be between 1 and {RAM_MAX_RESULTS}.")
    size = size or RAM_MAX_RESULTS
    if STATE.config["page_size"] > 0:
        size = min(size, STATE.config["page_size"])
    try:
        start = offset_of(body.get("nextToken"))
    except ValueError:
        raise ram_error("InvalidNextTokenException", "The specified value for nextToken is not valid.")
    return items[start:start + size], next_token_after(start + size, items)


class ResourceShares:
    """AWS RAM's resource shares, of every account and region in one store: a
    share's principals are other accounts, which look it up from their side.
    Only traffic mirror targets are shared here. RAM applies associations
    asynchronously (ASSOCIATING, then ASSOCIATED); we apply them at once, and
    as if sharing with AWS Organizations were enabled and every invitation
    accepted, so a principal has the share's resources as soon as it is added."""

    def __init__(self, world):
        self.world = world  # the State: which targets exist, in which account
        self.shares = {}  # share ARN -> share record
        self.tokens = {}  # (account, region, action, client token) -> (fingerprint, answer)

    # -- views, shaped as the RAM API returns them

    @staticmethod
    def share_view(share):
        return {
            "resourceShareArn": share["arn"], "name": share["name"], "owningAccountId": share["owner"],
            "allowExternalPrincipals": share["allow_external"], "status": share["status"],
            "tags": [{"key": k, "value": v} for k, v in share["tags"].items()], "creationTime": share["created"],
            "lastUpdatedTime": share["updated"], "featureSet": "STANDARD",
        }

    @staticmethod
    def association_view(share, key):
        kind, entity = key
        entry = share["associations"][key]
        return {
            "resourceShareArn": share["arn"], "resourceShareName": share["name"], "associatedEntity": entity,
            "associationType": kind, "status": entry["status"], "external": entry["external"],
            "creationTime": entry["created"], "lastUpdatedTime": entry["updated"],
        }

    # -- checks that raise RAM's errors

    def owned(self, account, region, arn):
        """The caller's live share an ARN names. RAM answers alike for a share
        that is not there, is deleted, or is another account's."""
        if arn in (None, ""):
            raise ram_error("MissingRequiredParameterException",
                            "The request must contain the parameter resourceShareArn.")
        if not isinstance(arn, str) or not SHARE_ARN.match(arn):
            raise ram_error("MalformedArnException", f"The specified resource share ARN {arn} is not valid. "
                                                     "Verify the ARN and try again.")
        share = self.shares.get(arn)
        if share is None or share["owner"] != account or share["region"] != region or share["status"] != "ACTIVE":
            raise ram_error("UnknownResourceException", f"ResourceShare {arn} could not be found.")
        return share

    @staticmethod
    def principal(owner, principal, allow_external):
        """Whether a principal is external to the owner's organization, after
        RAM's checks: an account id, or the owner's own organization's ARN."""
        if ACCOUNT_ID.match(principal):
            owners = organization_of(owner)
            external = owners is None or organization_of(principal) != owners
            # allowExternalPrincipals=false "only has meaning" for an account in an organization.
            if external and owners is not None and not allow_external:
                raise ram_error("OperationNotPermittedException",
                                "The resource you are attempting to share can only be shared within your AWS "
                                "Organization. This error may also occur if you have not enabled sharing with your "
                                "AWS organization, or that onboarding process is still in progress.")
            return external
        match = ORGANIZATION_ARN.match(principal)
        if match:
            if principal != organization_of(owner):  # one shares with one's own organization only
                raise ram_error("UnknownResourceException", f"Organization {match.group(1)} could not be found.")
            return False
        if ANY_ARN.match(principal):  # OUs, IAM roles and users, service principals: not modelled
            raise ram_error("InvalidParameterException",
                            f"Principal {principal}: the emulator shares with account ids and organizations only.")
        raise ram_error("InvalidParameterException",
                        f"Principal ID {principal} is malformed. Verify the ID and try again.")

    def resource(self, account, region, arn):
        """A resource ARN RAM would share: a traffic mirror target the caller
        owns in this region; one that is not there is unknown."""
        if not ANY_ARN.match(arn):
            raise ram_error("MalformedArnException", f"The specified resource ARN {arn} is not valid. "
                                                     "Verify the ARN and try again.")
        match = TARGET_ARN.match(arn)
        if not match:
            raise ram_error("InvalidParameterException", f"The emulator shares traffic mirror targets only, not {arn}.")
        target_region, owner, target_id = match.groups()
        mirrors = self.world.mirrors.get((account, region))
        if target_region != region or owner != account or mirrors is None or target_id not in mirrors.targets:
            raise ram_error("UnknownResourceException", f"Resource {arn} could not be found.")

    def checked(self, share_owner, region, body, allow_external):
        """(principal -> external, resource ARNs) of a create or associate call,
        every one checked before anything changes."""
        principals, resources = strings(body, "principals"), strings(body, "resourceArns")
        external = {p: self.principal(share_owner, p, allow_external) for p in principals}
        for arn in resources:
            self.resource(share_owner, region, arn)
        return external, resources

    @staticmethod
    def mark(share, key, status, now, external=False):
        entry = share["associations"].setdefault(key, {"status": None, "external": external, "created": now})
        if entry["status"] != status:
            entry.update(status=status, external=external, updated=now)
        return key

    def covers(self, share, account):
        """Whether an associated principal of the share is this account or its organization."""
        principals = [e for (kind, e), entry in share["associations"].items()
                      if kind == "PRINCIPAL" and entry["status"] == "ASSOCIATED"]
        return account in principals or any(ORGANIZATION_ARN.match(p) and p == organization_of(account)
                                            for p in principals)

    def targets_shared_with(self, account, region):
        """(owner, tmt id) of each target an active share of another account
        associates with a principal covering this account."""
        for share in self.shares.values():
            if share["region"] != region or share["status"] != "ACTIVE" or share["owner"] == account:
                continue
            if not self.covers(share, account):
                continue
            for (kind, entity), entry in share["associations"].items():
                match = TARGET_ARN.match(entity)
                if kind == "RESOURCE" and entry["status"] == "ASSOCIATED" and match:
                    yield share["owner"], match.group(3)

    # -- the calls: (caller's account, region, JSON body) -> answer fields

    def create(self, account, region, body):
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ram_error("MissingRequiredParameterException", "The request must contain the parameter name.")
        allow_external = body.get("allowExternalPrincipals", True)  # RAM's default
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, dict) and t.get("key") for t in tags):
            raise ram_error("InvalidParameterException", "Each tag needs a key.")
        external, resources = self.checked(account, region, body, allow_external)
        now = time.time()
        share = {"arn": f"arn:aws:ram:{region}:{account}:resource-share/{uuid.uuid4()}", "name": name,
                 "owner": account, "region": region, "allow_external": bool(allow_external), "status": "ACTIVE",
                 "tags": {t["key"]: t.get("value", "") for t in tags}, "created": now, "updated": now,
                 "associations": {}}
        for principal, is_external in external.items():
            self.mark(share, ("PRINCIPAL", principal), "ASSOCIATED", now, is_external)
        for arn in resources:
            self.mark(share, ("RESOURCE", arn), "ASSOCIATED", now)
        self.shares[share["arn"]] = share
        return {"resourceShare": self.share_view(share), "clientToken": body.get("clientToken")}

    def get(self, account, region, body):
        owner = body.get("resourceOwner")
        if owner not in ("SELF", "OTHER-ACCOUNTS"):
            raise ram_error("InvalidParameterException", f"{owner} is not a valid resource owner. "
                                                         "Specify either SELF or OTHER-ACCOUNTS and try again.")
        arns = strings(body, "resourceShareArns")
        for arn in arns:
            if not SHARE_ARN.match(arn):
                raise ram_error("MalformedArnException", f"The specified resource share ARN {arn} is not valid. "
                                                         "Verify the ARN and try again.")
        status = one_of(body, "resourceShareStatus", ("PENDING", "ACTIVE", "FAILED", "DELETING", "DELETED"))
        tag_filters = body.get("tagFilters") or []
        if not isinstance(tag_filters, list) or not all(isinstance(f, dict) for f in tag_filters):
            raise ram_error("InvalidParameterException", "tagFilters must be a list of {tagKey, tagValues}.")

        def wanted(share):
            mine = share["owner"] == account
            ours_or_theirs = mine if owner == "SELF" else not mine and self.covers(share, account)
            return (share["region"] == region and ours_or_theirs
                    and (not arns or share["arn"] in arns) and status in (None, share["status"])
                    and body.get("name") in (None, share["name"]) and all(
                        f.get("tagKey") in share["tags"]
                        and (not f.get("tagValues") or share["tags"][f.get("tagKey")] in f["tagValues"])
                        for f in tag_filters))

        items, next_token = ram_page([s for s in self.shares.values() if wanted(s)], body)
        return {"resourceShares": [self.share_view(s) for s in items], "nextToken": next_token}

    def associate(self, account, region, body):
        share = self.owned(account, region, body.get("resourceShareArn"))
        external, resources = self.checked(account, region, body, share["allow_external"])
        now = time.time()
        keys = [self.mark(share, ("PRINCIPAL", p), "ASSOCIATED", now, e) for p, e in external.items()]
        keys += [self.mark(share, ("RESOURCE", arn), "ASSOCIATED", now) for arn in resources]
        return {"resourceShareAssociations": [self.association_view(share, k) for k in keys],
                "clientToken": body.get("clientToken")}

    def disassociate(self, account, region, body):
        share = self.owned(account, region, body.get("resourceShareArn"))
        keys = [("PRINCIPAL", p) for p in strings(body, "principals")]
        keys += [("RESOURCE", arn) for arn in strings(body, "resourceArns")]
        for kind, entity in keys:  # all checked before any changes
            if (share["associations"].get((kind, entity)) or {}).get("status") != "ASSOCIATED":
                raise ram_error("UnknownResourceException",
                                f"{entity} is not associated with the resource share {share['arn']}.")
        now = time.time()
        for key in keys:
            self.mark(share, key, "DISASSOCIATED", now, share["associations"][key]["external"])
        return {"resourceShareAssociations": [self.association_view(share, k) for k in keys],
                "clientToken": body.get("clientToken")}

    def associations(self, account, region, body):
        """The associations of the caller's own shares, as RAM lists them."""
        kind = body.get("associationType")
        if kind not in ("PRINCIPAL", "RESOURCE", "SOURCE"):
            raise ram_error("InvalidParameterException", f"{kind} is not a valid association type. "
                                                         "Specify either PRINCIPAL or RESOURCE and try again.")
        resource_arn, principal = body.get("resourceArn"), body.get("principal")
        if kind == "PRINCIPAL" and resource_arn:
            raise ram_error("InvalidParameterException",
                            "You cannot specify a resource ARN when the association type is PRINCIPAL.")
        if kind == "RESOURCE" and principal:
            raise ram_error("InvalidParameterException",
                            "You cannot specify a principal when the association type is RESOURCE.")
        status = one_of(body, "associationStatus", ("ASSOCIATING", "ASSOCIATED", "FAILED", "DISASSOCIATING",
                                                    "DISASSOCIATED", "SUSPENDED", "SUSPENDING", "RESTORING"))
        arns = strings(body, "resourceShareArns")
        entity = resource_arn or principal
        found = [(share, key) for share in self.shares.values()
                 if share["owner"] == account and share["region"] == region and (not arns or share["arn"] in arns)
                 for key, entry in share["associations"].items()
                 if key[0] == kind and entity in (None, key[1]) and status in (None, entry["status"])]
        items, next_token = ram_page(found, body)
        return {"resourceShareAssociations": [self.association_view(s, k) for s, k in items],
                "nextToken": next_token}

    def delete(self, account, region, body):
        """The share goes to DELETED (still listed, as RAM lists deleted shares
        for a while) and every association to DISASSOCIATED: nobody has its
        resources any more. The resources themselves stay."""
        share = self.owned(account, region, body.get("resourceShareArn"))
        now = time.time()
        for key, entry in share["associations"].items():
            if entry["status"] == "ASSOCIATED":
                self.mark(share, key, "DISASSOCIATED", now, entry["external"])
        share.update(status="DELETED", updated=now)
        return {"returnValue": True, "clientToken": body.get("clientToken")}


RAM_CALLS = {
    "CreateResourceShare": ResourceShares.create,
    "GetResourceShares": ResourceShares.get,
    "AssociateResourceShare": ResourceShares.associate,
    "DisassociateResourceShare": ResourceShares.disassociate,
    "GetResourceShareAssociations": ResourceShares.associations,
    "DeleteResourceShare": ResourceShares.delete,
}
RAM_IDEMPOTENT = {"CreateResourceShare", "AssociateResourceShare", "DisassociateResourceShare", "DeleteResourceShare"}


def ram_body(request):
    """The call's parameters: DeleteResourceShare's are in the query string,
    the others' in a JSON body."""
    if request.action == "DeleteResourceShare":
        return {k: v for k, v in request.form.items() if k in ("resourceShareArn", "clientToken")}
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise ram_error("SerializationException", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        raise ram_error("SerializationException", "The request body must be a JSON object.")
    return body


def ram_call(request):
    """One RAM call in the caller's account. clientToken makes the mutating
    ones idempotent, as RAM documents: the same token with the same parameters
    answers as the first call did and changes nothing; with others it is a
    mismatch."""
    body = ram_body(request)
    call = RAM_CALLS[request.action]
    token = body.get("clientToken")
    if not token or request.action not in RAM_IDEMPOTENT:
        return call(STATE.ram, request.account, request.region, body)
    fingerprint = json.dumps({k: v for k, v in body.items() if k != "clientToken"}, sort_keys=True)
    key = (request.account, request.region, request.action, token)
    if key in STATE.ram.tokens:
        seen, answer = STATE.ram.tokens[key]
        if seen != fingerprint:
            raise ram_error("IdempotentParameterMismatchException",
                            f"The client token {token} was already used with different parameters.")
        return answer
    answer = call(STATE.ram, request.account, request.region, body)  # raises before anything is remembered
    STATE.ram.tokens[key] = (fingerprint, answer)
    return answer


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


def written_key(account, region, table_name, attributes):
    """(account, region, table name, the item's primary key as text): the key
    schema is moto's, the table may be named by its ARN. Raises if attributes
    lack the key."""
    table = dynamodb_backends[account][region].get_table(table_name)
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    return account, region, table.name, json.dumps([attributes[name] for name in names], sort_keys=True)


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
                STATE.writes[written_key(request.account, request.region, table, attributes)] = now
        elif request.action == "Query" and body.get("IndexName") and STATE.config["index_lag_ms"] > 0:
            return without_recent_writes(request.account, request.region, body["TableName"], answer)
    except Exception:  # never worse than moto: its answer as it is
        pass
    return answer


def without_recent_writes(account, region, table_name, answer):
    status, headers, payload = answer
    result = json.loads(payload)
    horizon = time.monotonic() - STATE.config["index_lag_ms"] / 1000.0
    items = result.get("Items") or []
    kept = [item for item in items
            if STATE.writes.get(written_key(account, region, table_name, item), horizon) <= horizon]
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
        self.writes = {}  # (account, region, table, primary key) -> time.monotonic() of its last DynamoDB write
        self.ram = ResourceShares(self)
        self.refused_roles = set()  # role ARNs whose AssumeRole answers AccessDenied

    def mirroring(self, region, account=DEFAULT_ACCOUNT_ID):
        key = (account, region)
        if key not in self.mirrors:
            self.mirrors[key] = Mirroring(account, region, self)
        return self.mirrors[key]

    def sessions_in(self, region):
        """Every account's sessions in a region (a shared target's are in several)."""
        return [s for (_, r), m in self.mirrors.items() if r == region for s in m.sessions.values()]

    def shared_with(self, account, region):
        """{tmt id: target} of the targets other accounts share with this one
        through RAM (targets deleted since are not there)."""
        found = {}
        for owner, target_id in self.ram.targets_shared_with(account, region):
            mirrors = self.mirrors.get((owner, region))
            if mirrors is not None and target_id in mirrors.targets:
                found[target_id] = mirrors.targets[target_id]
        return found

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

    def take_token(self, service, action, account=DEFAULT_ACCOUNT_ID):
        """Token buckets: refilled by elapsed time, one token per call. Every
        bucket that applies must have a token, or the call is throttled
        without spending any. A `per_account` bucket keeps one set of tokens
        for each account (EC2 throttles each account apart), each starting full."""
        now = time.monotonic()
        applying = []
        for bucket in self.buckets:
            if bucket_applies(bucket, service, action):
                if bucket["per_account"]:
                    bucket = bucket["accounts"].setdefault(
                        account, {"burst": bucket["burst"], "refill_per_second": bucket["refill_per_second"],
                                  "tokens": bucket["burst"], "at": now})
                bucket["tokens"] = min(bucket["burst"], bucket["tokens"] + (now - bucket["at"]) * bucket["refill_per_second"])
                bucket["at"] = now
                applying.append(bucket)
        if any(b["tokens"] < 1 for b in applying):
            if service in ("ec2", ""):
                return AwsError("RequestLimitExceeded", "Request limit exceeded.", 503)
            # RAM's model gives its ThrottlingException HTTP 429; the JSON services' is a 400.
            return AwsError("ThrottlingException", "Rate exceeded", 429 if service == "ram" else 400)
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
        self.access_key, self.service, self.region = credential_scope(environ)
        self.account = None  # the caller's account: looked up under the lock, from moto's IAM (see account_of)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        self.form = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            self.form.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        # JSON protocols name the action in X-Amz-Target (`DynamoDB_20120810.PutItem`,
        # `AWSEvents.PutEvents`, `AmazonSQS.SendMessage`); query protocols in `Action`.
        self.json_protocol = bool(target)
        self.action = target.rsplit(".", 1)[-1] if target else self.form.get("Action", "")
        # REST-JSON (RAM): the method and path name the operation; errors are JSON too.
        self.rest_json = self.service == "ram"
        if self.rest_json:
            route = (environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "").rstrip("/").lower())
            self.action = RAM_ROUTES.get(route, "")
        self.content_type = environ.get("CONTENT_TYPE", "")


def credential_scope(environ):
    """(access key id, service, region) from the SigV4 credential scope, in the
    Authorization header or a presigned URL's X-Amz-Credential; region
    defaults to us-east-1."""
    text = environ.get("HTTP_AUTHORIZATION", "") + " " + environ.get("QUERY_STRING", "").replace("%2F", "/")
    scope = re.search(r"Credential=([^/\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request", text)
    return (scope.group(1), scope.group(3), scope.group(2)) if scope else ("", "", "us-east-1")


def account_of(request):
    """The account a request acts in, decided as moto decides it (so our model
    and moto's backends agree): MOTO_ACCOUNT_ID, else an x-moto-account-id
    header, else the account whose IAM holds the access key (sts:AssumeRole
    registers its keys in the role's account); any other key is moto's
    default account, 123456789012."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if request.environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return request.environ["HTTP_X_MOTO_ACCOUNT_ID"]
    return get_account_id_from(request.access_key) if request.access_key else DEFAULT_ACCOUNT_ID


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
                                "error": error, "eni": request.form.get("NetworkInterfaceId"),
                                "account": request.account})
        return status, headers, payload

    def serve(self, request):
        """(status, headers, payload, error code or None); runs under the lock."""
        request.account = account_of(request)
        failure = STATE.take_token(request.service, request.action, request.account) or STATE.take_fault(request.service, request.action)
        if failure:
            return (*error_answer(failure, request), failure.code)
        try:
            if request.service == "events" and request.action == "PutEvents":
                check_event_sizes(request.body)
            if request.service == "sts" and request.action == "AssumeRole":
                check_role_trusts(request)
            if request.service == "ec2" and (request.action in CREATES or request.action in OTHERS):
                return (*xml_answer(ec2_answer(request.action, self.mirroring_call(request))), None)
            if tags_mirroring_ids(request):
                return (*self.tag_call(request), None)
            if request.service == "ram" and request.action in RAM_CALLS:
                return (*json_answer(ram_call(request)), None)
        except AwsError as error:
            return (*error_answer(error, request), error.code)
        enis = self.enis_to_unmirror(request)  # before moto changes the instances
        answer = self.moto(request.environ)
        if answer[0].startswith("200"):
            if request.service == "ec2" and request.action == "CreateVpc":
                admit_own_members(request.region, answer[2], request.account)
            if enis:
                STATE.mirroring(request.region, request.account).drop_sessions_of(enis)
            if request.service == "dynamodb":
                answer = after_dynamodb(request, answer)
        return (*answer, None)  # moto's own errors are moto's: its body says which

    @staticmethod
    def mirroring_call(request):
        mirrors = STATE.mirroring(request.region, request.account)
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
        mirrors = STATE.mirroring(request.region, request.account)  # another account's ids are unknown here
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
            backend = ec2_backends[request.account][request.region]
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
        organizations_backends.master_accounts.clear()  # moto's reset leaves which account is in which organization
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
                            | ({"per_account": True} if b["per_account"] else {}) for b in STATE.buckets]}
    if name == "config":
        if method == "POST":
            configure(body)
        return STATE.config
    if name == "calls":
        if method == "DELETE":
            STATE.calls.clear()
        return {"calls": STATE.calls}
    if name == "rename" and method == "POST":
        account = body.get("account", DEFAULT_ACCOUNT_ID)
        return rename(body.get("region", "us-east-1"), body["from"], body["to"], account)
    if name == "refuse-role":
        if method == "POST":
            STATE.refused_roles.add(role_arn(body))
        elif method == "DELETE":
            STATE.refused_roles.clear()
        return {"roleArns": sorted(STATE.refused_roles)}
    raise UnknownControl(f"unknown control call {method} /_emulator/{name}")


def role_arn(body):
    arn = body["roleArn"]
    if not isinstance(arn, str) or not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$", arn):
        raise ValueError("roleArn is a role's ARN, arn:aws:iam::<account>:role/<name>")
    return arn


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
    per_account = body.get("per_account", False)
    if not isinstance(per_account, bool):
        raise ValueError("per_account is true (one bucket for each account) or false (one for all)")
    # burst 0 (or below 1) with refill 0: never a token, every matching call throttled for ever.
    return {"actions": actions, "service": service, "burst": burst, "refill_per_second": refill,
            "tokens": burst, "at": time.monotonic(), "per_account": per_account,
            "accounts": {}}  # with per_account: account -> its own {burst, refill_per_second, tokens, at}


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


def check_role_trusts(request):
    """A role named by POST /_emulator/refuse-role answers AssumeRole as AWS
    does when its trust policy does not trust the caller (moto assumes any
    role, existing or not)."""
    role = request.form.get("RoleArn", "")
    if role in STATE.refused_roles:
        raise AwsError("AccessDenied", f"User: {caller_arn(request)} is not authorized to perform: "
                                       f"sts:AssumeRole on resource: {role}", 403)


def caller_arn(request):
    """The caller's ARN, as moto's GetCallerIdentity gives it: an assumed
    role's session, an IAM user, or moto's default user."""
    backend = sts_backends[request.account][get_partition(request.region)]
    return backend.get_caller_identity(request.access_key, request.region)[1]


def admit_own_members(region, payload, account):
    """On AWS a new VPC's default security group admits all traffic from its
    own members; moto's admits nothing. The delivery check (is UDP 4789 let
    in to a target ENI?) reads these rules, so they must be AWS's."""
    match = re.search(rb"<vpcId>(vpc-[0-9a-f]+)</vpcId>", payload)
    if not match:
        return
    backend = ec2_backends[account][region]
    vpc_id = match.group(1).decode()
    group = backend.get_default_security_group(vpc_id)
    if group is not None:
        backend.authorize_security_group_ingress(group.id, "-1", None, None, [], source_groups=[{"GroupId": group.id}],
                                                 vpc_id=vpc_id)


def rename(region, old, new, account):
    """Gives an ENI or instance of an account the id a sample event names: moto
    picks random ids, and the end-to-end test replays real-looking event files
    as they are."""
    backend = ec2_backends[account][region]
    if old.startswith("eni-"):
        eni = backend.enis.pop(old)
        eni.id = new
        backend.enis[new] = eni
        STATE.mirroring(region, account).rename_eni(old, new)
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


def json_answer(fields):
    """A REST-JSON answer (RAM): unset fields are left out, as AWS leaves them out."""
    payload = json.dumps({k: v for k, v in fields.items() if v is not None}).encode()
    return "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))], payload


def xml_answer(text):
    payload = text.encode()
    return "200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(payload)))], payload


REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 412: "Precondition Failed",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def error_answer(error, request):
    """The error in the request's protocol: JSON for X-Amz-Target services and
    REST-JSON ones (RAM), EC2's <Response><Errors> for EC2, <ErrorResponse> for
    other query services (STS's with its namespace)."""
    status = f"{error.status} {REASONS.get(error.status, 'Error')}"
    request_id = str(uuid.uuid4())
    if request.json_protocol or request.rest_json:
        content_type = request.content_type if request.content_type.startswith("application/x-amz-json") else (
            "application/json" if request.rest_json else
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
        namespace = ERROR_NAMESPACES.get(request.service)
        xmlns = f' xmlns="{namespace}"' if namespace else ""
        payload = (
            f'<?xml version="1.0" encoding="UTF-8"?><ErrorResponse{xmlns}><Error><Type>{kind}</Type>'
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
