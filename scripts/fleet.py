#!/usr/bin/env python3
"""The fleet-sweep benchmark of issue #17: N instances are already running
when the function is deployed, with 1 to 3 ENIs each, in a VPC with two
subnets; the launch policy (tags, then `DEFAULT_TARGETS` for the first
subnet, `traffic-mirroring:exclude` over both) names for most of them a
Network Load Balancer and for a few an ENI target with room for 10 sources.
The release binary is invoked with `{"sweep": {}}` again and again, each run
with a short Lambda deadline, against the emulator with a token bucket on
mutating EC2 calls, until EC2 (read from the outside after each run) shows
every mirrorable wanted ENI mirrored exactly once, to the right target, and
nothing of ours elsewhere. It then prints a table and writes it into
BENCHMARKS.md between its markers, leaving the rest of the file as it is.

Run it through its twin scripts/fleet.sh, which provides the emulator's Python:
    python scripts/fleet.py --binary <release bootstrap> [--instances 2000] [--max-runs 50]
"""

import argparse
import collections
import datetime
import json
import os
import re
import shlex
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests/emulator"))

from harness import (LATENCY_MS, REGION, ROOT, Emulator, RuntimeApi, client,  # noqa: E402
                     create_table, function_env, machine_description, start_function)
from emulator import MUTATING_PREFIXES  # noqa: E402  (the emulator's own definition of "mutating")
from storm import write_section  # noqa: E402

ACCOUNT = "123456789012"
# As in storm.py: the emulator takes any well-formed NLB ARN as a target (the
# function checks its form only), so no load balancer needs to exist.
NLB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/net/fleet-monitor/50dc6c495c0c9188"
# OWNER is not set, so the function's owner value is table/<TABLE_NAME> (src/config/mod.rs).
LEDGER_TABLE = "fleet-ledger"
BUS = "fleet-bus"
OWNER_TAG = {"Name": "tag:traffic-mirroring:managed-by", "Values": [f"table/{LEDGER_TABLE}"]}
TAG_TARGET, TAG_TARGET_ENI = "traffic-mirroring:target", "traffic-mirroring:target-eni"
TAG_EXCLUDE = "traffic-mirroring:exclude"
# contract.md §4: an ENI target takes at most 10 source ENIs; an NLB any number.
SOURCES_PER_ENI_TARGET = 10
# Reasons in the function's coverage report that no further run mends.
PERMANENT = ("Nitro", "10 sources", "3 sessions")
THROTTLING = re.compile(r"RequestLimitExceeded|Throttl|Rate exceeded")
BEGIN, END = "<!-- fleet:begin -->", "<!-- fleet:end -->"
IMAGE = "ami-12c6146b"

# The types of the instances tagged to the NLB, in turn: current ones, a few
# AWS does not mirror (virtualized Nitro families, bare metal), one Xen type it
# does (C4). Which can be sources follows AWS's limitations page, as the
# function's table does (src/domain/instance.rs).
TYPE_MIX = ("m5.large", "m6i.large", "m7i.large", "c7g.large", "t3.large", "c4.large", "m5.metal")
NITRO_FAMILIES_NOT_SOURCES = {
    "m6a", "m6i", "m6id", "m6idn", "m6in", "m7a", "m7g", "m7gd", "m7i", "m7i-flex", "m8g",
    "c6a", "c6gd", "c6gn", "c6i", "c6id", "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i", "c8g",
    "r6a", "r6i", "r6id", "r6idn", "r6in", "r7a", "r7g", "r7gd", "r7i", "r7iz", "r8g",
    "x2idn", "x2iedn", "x2iezn", "x8g", "i4g", "i4i", "im4gn", "is4gen",
    "inf2", "p5", "trn1", "trn1n", "hpc6a", "hpc6id", "hpc7a", "hpc7g",
}
XEN_FAMILIES_THAT_ARE_SOURCES = {"c4", "d2", "g3", "g3s", "h1", "i3", "m4", "p2", "p3", "r4", "x1", "x1e"}


def can_be_source(instance_type, described):
    family = instance_type.split(".")[0]
    if described.get("BareMetal") or "metal" in instance_type or family in NITRO_FAMILIES_NOT_SOURCES:
        return False
    return described.get("Hypervisor") == "nitro" or family in XEN_FAMILIES_THAT_ARE_SOURCES


# The roles of the fleet's instances, in the words of the report.
ROLES = {
    "nlb": f"tagged `traffic-mirroring:target` = the NLB, in either subnet, of the types {', '.join(TYPE_MIX)} in turn",
    "not-nitro": "t2.micro (Xen) tagged to the NLB: the policy names a target, the type cannot be a source",
    "excluded": "`traffic-mirroring:exclude=true` (half of them also tagged to the NLB: exclude wins), either subnet",
    "no-default": "second subnet, untagged: no default there, not wanted",
    "default": "first subnet, untagged: `DEFAULT_TARGETS` names the target ENI",
}


# --- the fleet ------------------------------------------------------------------------

def plan_fleet(instances, eni_target_enis):
    """Each instance's role, type, subnet (0 or 1), tags and number of ENIs,
    by a fixed pattern over i % 20: 40% tagged to the NLB (one in 20 of all of
    them a t2.micro), 10% excluded, 25% in the second subnet untagged, and 25%
    in the first subnet: untagged (the default, the ENI target) until their
    ENIs reach `eni_target_enis`, tagged to the NLB after that, as an ENI
    target takes 10 sources. ENIs: 1 + i % 3."""
    specs, default_enis = [], 0
    for i in range(instances):
        slot, enis = i % 20, 1 + i % 3
        role, itype, subnet, tags = "nlb", TYPE_MIX[(i // 20) % len(TYPE_MIX)], i % 2, ((TAG_TARGET, NLB_ARN),)
        if slot == 7:
            role, itype = "not-nitro", "t2.micro"
        elif slot in (8, 9):
            role = "excluded"
            tags = ((TAG_EXCLUDE, "true"),) + (((TAG_TARGET, NLB_ARN),) if slot == 9 else ())
        elif 10 <= slot < 15:
            role, subnet, tags = "no-default", 1, ()
        elif slot >= 15:
            subnet = 0
            if default_enis < eni_target_enis:
                role, tags = "default", ()
                default_enis += enis
        specs.append({"role": role, "type": itype, "subnet": subnet, "tags": tags, "enis": enis})
    return specs


def setup(emulator, args):
    """The ledger, the bus, the VPC with its two subnets, the target ENI
    (standalone in the first subnet, its group admitting VXLAN from the VPC)
    and the fleet: instances launched in batches per (type, subnet, tags),
    extra ENIs created and attached one by one. What the policy wants is
    worked out from what EC2 reports back, not from the plan."""
    create_table(emulator, LEDGER_TABLE)
    client(emulator, "events").create_event_bus(Name=BUS)
    ec2 = client(emulator, "ec2")
    fleet = {"table": LEDGER_TABLE, "bus": BUS, "timing": {}}
    vpc = fleet["vpc"] = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    fleet["subnets"] = [ec2.create_subnet(VpcId=vpc, CidrBlock=block)["Subnet"]["SubnetId"]
                        for block in ("10.0.0.0/17", "10.0.128.0/17")]
    group = ec2.create_security_group(GroupName="fleet-monitor", Description="VXLAN from the VPC", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "udp", "FromPort": 4789, "ToPort": 4789, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}])
    appliance = ec2.create_network_interface(SubnetId=fleet["subnets"][0], Groups=[group],
                                             Description="the monitoring appliance")["NetworkInterface"]
    fleet["target_eni"] = appliance["NetworkInterfaceId"]
    fleet["default_targets"] = {fleet["subnets"][0]: fleet["target_eni"]}

    specs = plan_fleet(args.instances, args.eni_target_enis)
    started = time.perf_counter()
    batches = collections.defaultdict(list)
    for spec in specs:
        batches[(spec["type"], spec["subnet"], spec["tags"])].append(spec)
    for (itype, subnet, tags), members in batches.items():
        tag_spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags]}] if tags else []
        for start in range(0, len(members), 500):
            chunk = members[start:start + 500]
            launched = ec2.run_instances(ImageId=IMAGE, InstanceType=itype, SubnetId=fleet["subnets"][subnet],
                                         MinCount=len(chunk), MaxCount=len(chunk),
                                         TagSpecifications=tag_spec)["Instances"]
            for spec, instance in zip(chunk, launched):
                spec["id"] = instance["InstanceId"]
    fleet["timing"]["instances"] = time.perf_counter() - started
    started = time.perf_counter()
    for spec in specs:
        for index in range(1, spec["enis"]):
            eni = ec2.create_network_interface(SubnetId=fleet["subnets"][spec["subnet"]])["NetworkInterface"]
            ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=spec["id"],
                                         DeviceIndex=index)
    fleet["timing"]["enis"] = time.perf_counter() - started
    fleet["specs"] = specs

    started = time.perf_counter()
    expect(ec2, fleet)
    fleet["timing"]["read back"] = time.perf_counter() - started
    return fleet


def expect(ec2, fleet):
    """What the policy wants, from EC2's own account of the fleet: each
    instance's tags, subnet and ENIs (DescribeInstances) and its type's
    hypervisor (DescribeInstanceTypes), judged as src/mirroring/fleet.rs
    describes the policy."""
    role_of = {spec["id"]: spec["role"] for spec in fleet["specs"]}
    described = [i for page in ec2.get_paginator("describe_instances").paginate(
                     Filters=[{"Name": "vpc-id", "Values": [fleet["vpc"]]}])
                 for reservation in page["Reservations"] for i in reservation["Instances"]]
    types = sorted({i["InstanceType"] for i in described})
    described_types = {t["InstanceType"]: t for t in ec2.describe_instance_types(InstanceTypes=types)["InstanceTypes"]}
    hypervisor = {name: t.get("Hypervisor") for name, t in described_types.items()}
    fleet["hypervisor"] = hypervisor
    wanted, not_nitro, roles, role_enis, all_enis = {}, {}, collections.Counter(), collections.Counter(), set()
    for instance in described:
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        enis = [n["NetworkInterfaceId"] for n in instance["NetworkInterfaces"]]
        all_enis.update(enis)
        role = role_of.get(instance["InstanceId"], "unplanned")
        roles[role] += 1
        role_enis[role] += len(enis)
        if tags.get(TAG_EXCLUDE, "").strip().lower() == "true":
            continue
        target = (tags.get(TAG_TARGET) or tags.get(TAG_TARGET_ENI) or fleet["default_targets"].get(instance.get("SubnetId"))
                  or fleet["default_targets"].get(instance.get("VpcId")))
        if not target:
            continue
        for eni in enis:
            if eni == target:
                continue
            if not can_be_source(instance["InstanceType"], described_types.get(instance["InstanceType"], {})):
                not_nitro[eni] = instance["InstanceId"]
            else:
                wanted[eni] = (instance["InstanceId"], target)
    per_target = collections.Counter(target for _, target in wanted.values())
    fleet.update({
        "instances": len(described), "enis": len(all_enis), "roles": roles, "role_enis": role_enis,
        "wanted": wanted, "not_nitro": not_nitro, "wanted_per_target": per_target,
        # An ENI target mirrors at most 10 of its wanted sources; which ones is the function's choice.
        "mirrorable_per_target": {t: min(n, SOURCES_PER_ENI_TARGET) if t.startswith("eni-") else n
                                  for t, n in per_target.items()},
    })
    fleet["mirrorable"] = sum(fleet["mirrorable_per_target"].values())


# --- reading EC2 from the outside --------------------------------------------------------

def read_ec2(emulator, fleet, latency_ms):
    """EC2's state after a run, by our ownership tag, without latency (the
    function is idle; our calls are not in its figures)."""
    emulator.control("POST", "config", {"latency_ms": {"default": 0}})
    try:
        ec2 = client(emulator, "ec2")

        def describe(kind, key, **filters):
            paginator = ec2.get_paginator(f"describe_traffic_mirror_{kind}")
            return [item for page in paginator.paginate(**filters) for item in page[key]]

        sessions = describe("sessions", "TrafficMirrorSessions", Filters=[OWNER_TAG])
        every_session = describe("sessions", "TrafficMirrorSessions")
        targets = describe("targets", "TrafficMirrorTargets", Filters=[OWNER_TAG])
        filters = describe("filters", "TrafficMirrorFilters", Filters=[OWNER_TAG])
    finally:
        emulator.control("POST", "config", {"latency_ms": {"default": latency_ms}})
    destination = {t["TrafficMirrorTargetId"]: t.get("NetworkInterfaceId") or t.get("NetworkLoadBalancerArn")
                   or t.get("GatewayLoadBalancerEndpointId") for t in targets}
    wanted = fleet["wanted"]
    per_eni = collections.Counter(s["NetworkInterfaceId"] for s in sessions)
    right = {s["NetworkInterfaceId"] for s in sessions if s["NetworkInterfaceId"] in wanted
             and destination.get(s["TrafficMirrorTargetId"]) == wanted[s["NetworkInterfaceId"]][1]}
    mirrored_per_target = collections.Counter(wanted[eni][1] for eni in right)
    wrong = sorted(s["TrafficMirrorSessionId"] for s in sessions
                   if s["NetworkInterfaceId"] in wanted and s["NetworkInterfaceId"] not in right)
    unwanted = sorted(f"{s['TrafficMirrorSessionId']} on {s['NetworkInterfaceId']}" for s in sessions
                      if s["NetworkInterfaceId"] not in wanted)
    used_targets = {s["TrafficMirrorTargetId"] for s in every_session}
    used_filters = {s["TrafficMirrorFilterId"] for s in every_session}
    per_destination = collections.Counter(destination.values())
    state = {
        "sessions": len(sessions), "mirrored": len(right), "mirrored_per_target": mirrored_per_target,
        "duplicate_enis": sum(1 for n in per_eni.values() if n > 1),
        "extra_sessions": sum(n - 1 for n in per_eni.values() if n > 1),
        "extra_targets": sum(n - 1 for n in per_destination.values() if n > 1),
        # Every mirror here uses the default (mirror everything) rule set: one filter.
        "filters": len(filters), "targets": len(targets),
        "wrong_target": wrong, "unwanted": unwanted,
        "unused_targets": sorted(t["TrafficMirrorTargetId"] for t in targets
                                 if t["TrafficMirrorTargetId"] not in used_targets),
        "unused_filters": sorted(f["TrafficMirrorFilterId"] for f in filters
                                 if f["TrafficMirrorFilterId"] not in used_filters),
    }
    state["duplicates"] = state["extra_sessions"] + state["extra_targets"] + max(0, state["filters"] - 1)
    state["orphans"] = len(wrong) + len(unwanted) + len(state["unused_targets"]) + len(state["unused_filters"])
    state["converged"] = (all(mirrored_per_target[t] == n for t, n in fleet["mirrorable_per_target"].items())
                          and state["duplicates"] == 0 and state["orphans"] == 0)
    return state


# --- the function's answers --------------------------------------------------------------

def sweep_results(answer):
    """The sweep's action results, from a driverResponse or from the
    `{"sweep": <action result>}` answer of earlier versions."""
    if not isinstance(answer, dict):
        return []
    results = (answer.get("driverResponse") or {}).get("actionResults")
    if results is None and isinstance(answer.get("sweep"), dict):
        results = [answer["sweep"]]
    return [r for r in results or [] if isinstance(r, dict)]


def sweep_report(result):
    """The report inside one action result (or the result itself, if it is one)."""
    if "policy" in result or "findings" in result:
        return result
    report = result.get("sweep")
    return report if isinstance(report, dict) else {}


def report_field(answer, name):
    """The sweep report's object field `name` (`policy`, `accounts`), or {}."""
    for result in sweep_results(answer):
        field = sweep_report(result).get(name)
        if isinstance(field, dict):
            return field
    return {}


def policy_of(answer):
    return report_field(answer, "policy")


def missing_of(policy):
    coverage = policy.get("coverage") or {}
    return [m for t in coverage.get("targets") or [] if isinstance(t, dict)
            for m in t.get("missing") or [] if isinstance(m, dict)]


def throttles_reaching_caller(answer):
    """Throttling the function let through to its caller: a sweep result
    failed with a throttling code, repairs or removals failed with one, ENIs
    reported missing because of one."""
    count = 0
    for result in sweep_results(answer):
        count += bool(THROTTLING.search(str(result.get("errorCode") or "")))
        report = sweep_report(result)
        for finding in report.get("findings") or []:
            outcome = str(finding.get("outcome", "")) if isinstance(finding, dict) else ""
            count += outcome.startswith("failed") and bool(THROTTLING.search(outcome))
        policy = report.get("policy") if isinstance(report.get("policy"), dict) else {}
        for missing in missing_of(policy):
            reason = str(missing.get("reason", ""))
            count += reason.startswith("throttled") or bool(THROTTLING.search(reason))
        for unwanted in (policy.get("coverage") or {}).get("unwanted") or []:
            outcome = str(unwanted.get("outcome", "")) if isinstance(unwanted, dict) else ""
            count += outcome.startswith("failed") and bool(THROTTLING.search(outcome))
    return count


def failures_of(answer):
    """Failed results, repairs and policy actions the answer reports."""
    count = 0
    for result in sweep_results(answer):
        report = sweep_report(result)
        failed = report.get("failed")
        if isinstance(failed, int):
            count += failed
        elif not result.get("success", False):
            count += 1
    return count


def inside_converged(policy):
    """The function's own view: every action attempted and nothing missing for a reason a run could mend."""
    return policy.get("complete") is True and all(
        any(p in str(m.get("reason", "")) for p in PERMANENT) for m in missing_of(policy))


# --- the runs ------------------------------------------------------------------------------

def sweep(args, emulator, fleet):
    """One process of the binary, invoked with `{"sweep": {}}` one run after
    another (as a schedule would, only back to back), each with a deadline of
    --timeout-seconds; an invocation not answered by then is what Lambda
    would time out: the process is killed and started again. EC2 is read
    after each run; stops when converged or after --max-runs."""
    runtime = RuntimeApi()
    if not hasattr(runtime, "timeout_seconds"):
        raise SystemExit("scripts/harness.py's RuntimeApi has no timeout_seconds: the deadline cannot be set")
    runtime.timeout_seconds = args.timeout_seconds
    env = function_env(emulator, runtime, fleet["table"], fleet["bus"])
    env["DEFAULT_TARGETS"] = json.dumps(fleet["default_targets"])
    if args.pace:
        env["MUTATING_CALLS_PER_SECOND"] = f"{args.pace:g}"
    emulator.control("POST", "config", {"latency_ms": {"default": LATENCY_MS}, "page_size": args.page_size})
    process = start_function(args.binary, env, runtime)[0]
    runs, counts, started = [], collections.Counter(), time.perf_counter()
    try:
        emulator.control("POST", "throttle", {"actions": "mutating", "burst": args.burst,
                                              "refill_per_second": args.refill})
        for number in range(1, args.max_runs + 1):
            emulator.clear_calls()
            if process.poll() is not None:
                counts["restarts"] += 1
                process = start_function(args.binary, env, runtime)[0]
            handed = time.perf_counter()
            answer, error = None, None
            try:
                _, answer = runtime.invoke({"sweep": {}})
            except (RuntimeError, ValueError) as failure:
                error = str(failure)
                counts["timeouts" if "did not answer" in error else "invocation errors"] += 1
                if "did not answer" in error:
                    process.kill()
                    process.wait()
            seconds = time.perf_counter() - handed
            calls = emulator.calls()
            state = read_ec2(emulator, fleet, LATENCY_MS)
            run = {"number": number, "seconds": seconds, "answer": answer, "error": error, "calls": calls,
                   "state": state, "policy": policy_of(answer)}
            runs.append(run)
            print(run_line(run, fleet), flush=True)
            if state["converged"]:
                break
        if runs and runs[-1]["state"]["converged"]:
            # One more sweep, with nothing to do: what the steady state costs.
            emulator.clear_calls()
            runtime.invoke({"sweep": {}})
            steady = [c for c in emulator.calls() if c["service"] == "ec2" and c["action"].startswith("Describe")]
            fleet["steady_describes"] = collections.Counter(c["action"] for c in steady)
        return runs, counts, time.perf_counter() - started
    finally:
        emulator.control("DELETE", "throttle")
        process.kill()
        process.wait()


def mutating(calls):
    return [c for c in calls if c["service"] == "ec2" and c["action"].startswith(MUTATING_PREFIXES)]


def run_line(run, fleet):
    policy, state = run["policy"], run["state"]
    coverage = policy.get("coverage") or {}
    ours = mutating(run["calls"])
    throttled = sum(1 for c in ours if c["error"] == "RequestLimitExceeded")
    text = (f"run {run['number']}: {run['seconds']:.1f} s, mutating {len(ours) - throttled} served "
            f"+ {throttled} throttled; policy: created {policy.get('created')}, removed {policy.get('removed')}, "
            f"failed {policy.get('failed')}, deferred {policy.get('deferred')}, complete {policy.get('complete')}, "
            f"wanted {coverage.get('wanted')}, mirrored {coverage.get('mirrored')}, missing {coverage.get('missing')}; "
            f"EC2: {state['mirrored']} / {fleet['mirrorable']} mirrorable mirrored, {state['duplicates']} duplicates, "
            f"{state['orphans']} orphans")
    return text + (f"; {run['error']}" if run["error"] else "")


# --- the report ------------------------------------------------------------------------------

def figures(args, fleet, runs, counts, elapsed):
    calls = [c for run in runs for c in run["calls"]]
    ours = mutating(calls)
    throttled = [c for c in ours if c["error"] == "RequestLimitExceeded"]
    served = [c for c in ours if c["error"] != "RequestLimitExceeded"]
    accepted = [c for c in served if c["status"] == 200]
    describes = [c for c in calls if c["service"] == "ec2" and c["action"].startswith("Describe")]
    last = runs[-1]
    state, policy = last["state"], last["policy"]
    over = fleet["wanted_per_target"].get(fleet["target_eni"], 0) - SOURCES_PER_ENI_TARGET
    reported_over = sum(1 for m in missing_of(policy) if "10 sources" in str(m.get("reason", "")))
    return {
        "runs": len(runs), "converged": state["converged"], "state": state, "policy": policy,
        "inside_converged": inside_converged(policy),
        "wall": sum(run["seconds"] for run in runs), "elapsed": elapsed,
        "served": len(served), "accepted": len(accepted), "refused": len(served) - len(accepted),
        "throttled": len(throttled), "served_by_action": collections.Counter(c["action"] for c in served),
        "refused_by_error": collections.Counter(c["error"] for c in served if c["status"] != 200),
        "describes": len(describes), "describes_by_action": collections.Counter(c["action"] for c in describes),
        "calls_by_service": collections.Counter(c["service"] or "?" for c in calls), "calls": len(calls),
        "throttle_errors": sum(throttles_reaching_caller(run["answer"]) for run in runs),
        "failures": sum(failures_of(run["answer"]) for run in runs),
        "over_quota": max(0, over), "over_quota_reported": reported_over,
        "missing_reasons": collections.Counter(re.sub(r"\b(i|eni)-[0-9a-f]+", "…", str(m.get("reason", "")))[:80]
                                               for m in missing_of(policy)),
        "not_nitro_reported": len((policy.get("coverage") or {}).get("unsupportedInstanceType") or []),
        "unsupported_attempts": sum(1 for c in calls if c["service"] == "ec2" and c["action"] == "CreateTrafficMirrorSession"
                                    and c["error"] == "NetworkInterfaceNotSupported"),
        "counts": counts, "bound": len(served) / args.refill,
    }


def report(args, fleet, m):
    def named(per_target):
        """Targets by role rather than by id."""
        names = {NLB_ARN: "to the NLB", fleet["target_eni"]: "to the target ENI"}
        return {names.get(t, t): n for t, n in per_target.items()}

    def verdict(ok):
        return "met" if ok else "**not met**"

    def listing(counter):
        return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0]))) or "none"

    state, instances = m["state"], fleet["instances"]
    target_eni, nlb_wanted = fleet["target_eni"], fleet["wanted_per_target"].get(NLB_ARN, 0)
    eni_wanted = fleet["wanted_per_target"].get(target_eni, 0)
    per_eni = m["served"] / state["mirrored"] if state["mirrored"] else None
    ratio = m["wall"] / m["bound"] if m["bound"] else None
    coverage = m["policy"].get("coverage") or {}
    inside = (f"the function's last report: complete {m['policy'].get('complete')}, wanted {coverage.get('wanted')}, "
              f"mirrored {coverage.get('mirrored')}, missing {coverage.get('missing')} ({listing(m['missing_reasons'])}), "
              f"{m['not_nitro_reported']} instances listed as unsupported sources") if m["policy"] else \
        "the function's last answer has no policy report"
    sample = (state["wrong_target"] + state["unwanted"] + state["unused_targets"] + state["unused_filters"])[:4]
    rows = [
        ("instances, running before the function", "report",
         f"{instances}: " + "; ".join(f"{fleet['roles'][r]} {r}" for r in ROLES if fleet["roles"][r]), "reported"),
        ("ENIs", "report",
         f"{fleet['enis']} on the instances (1 to 3 each), plus the target ENI; " +
         "; ".join(f"{fleet['role_enis'][r]} {r}" for r in ROLES if fleet["role_enis"][r]), "reported"),
        ("ENIs wanted (mirrorable)", "report",
         f"{len(fleet['wanted'])} wanted ({fleet['mirrorable']} mirrorable): {nlb_wanted} to the NLB, {eni_wanted} to "
         f"the target ENI, of which {fleet['mirrorable_per_target'].get(target_eni, 0)} fit its "
         f"{SOURCES_PER_ENI_TARGET} sources; {len(fleet['not_nitro'])} ENIs of instances whose type cannot be a source "
         f"(t2.micro, m6i, m7i, c7g, m5.metal) the policy names, not mirrorable", "reported"),
        ("create attempts on types that cannot be sources", "0",
         f"{m['unsupported_attempts']} CreateTrafficMirrorSession calls refused NetworkInterfaceNotSupported",
         verdict(m["unsupported_attempts"] == 0)),
        ("mirrored / mirrorable, from EC2", "all",
         f"{state['mirrored']} / {fleet['mirrorable']} ({listing(named(state['mirrored_per_target']))}); the target ENI's "
         f"{m['over_quota']} wanted sources over its quota reported missing for its 10 sources: "
         f"{m['over_quota_reported']}; {inside}",
         verdict(state["mirrored"] == fleet["mirrorable"] and m["over_quota_reported"] == m["over_quota"])),
        ("duplicates", "0",
         f"{state['duplicates']}: {state['duplicate_enis']} ENIs with more than one of our sessions "
         f"({state['extra_sessions']} extra); {state['extra_targets']} extra targets of ours for one destination; "
         f"{state['filters']} filters of ours (one rule set)", verdict(state["duplicates"] == 0)),
        ("orphans", "0",
         f"{state['orphans']}: {len(state['unwanted'])} sessions of ours on ENIs not wanted, "
         f"{len(state['wrong_target'])} on wanted ENIs but to the wrong target, {len(state['unused_targets'])} targets "
         f"and {len(state['unused_filters'])} filters of ours no session uses"
         + (f" ({', '.join(sample)}{', …' if state['orphans'] > len(sample) else ''})" if sample else ""),
         verdict(state["orphans"] == 0)),
        ("invocations until converged", "report",
         f"{m['runs']}{'' if m['converged'] else f' (**not converged** after --max-runs {args.max_runs})'}, "
         f"each with a {args.timeout_seconds} s deadline; {m['counts']['timeouts']} timed out, "
         f"{m['counts']['invocation errors']} invocation errors, {m['counts']['restarts']} process restarts; "
         f"the function's own view {'agrees' if m['inside_converged'] else 'is not converged'}",
         "converged" if m["converged"] else "**not converged**"),
        ("wall time vs the bucket's bound", "report",
         f"{m['wall']:.1f} s in the invocations ({m['elapsed']:.1f} s with the reads of EC2 between runs) vs "
         f"{m['bound']:.1f} s ({m['served']} mutating calls served ÷ {args.refill:g}/s): "
         f"{'n/a' if ratio is None else f'{ratio:.2f}×'}", "reported"),
        ("mutating EC2 calls per mirrored ENI", "≤ 1.1",
         f"{'n/a' if per_eni is None else f'{per_eni:.3f}'} ({m['served']} served: {listing(m['served_by_action'])}; "
         f"{m['refused']} of them refused: {listing(m['refused_by_error'])}); {m['throttled']} more throttled "
         f"(RequestLimitExceeded)", verdict(per_eni is not None and per_eni <= 1.1)),
        ("Describe calls per instance until converged", "≤ 0.2",
         f"{m['describes'] / instances:.3f} over {m['runs']} runs ({m['describes']}: {listing(m['describes_by_action'])})",
         verdict(m["describes"] / instances <= 0.2)),
        ("Describe calls per instance, a sweep with nothing to do", "≤ 0.02",
         (f"{sum(fleet['steady_describes'].values()) / instances:.4f} "
          f"({sum(fleet['steady_describes'].values())}: {listing(fleet['steady_describes'])})")
         if "steady_describes" in fleet else "not measured: the runs did not converge",
         verdict("steady_describes" in fleet and sum(fleet["steady_describes"].values()) / instances <= 0.02)),
        ("throttling errors reaching a caller", "0",
         f"{m['throttle_errors']} in the sweep answers (results, repairs, removals or ENIs reported "
         f"throttled); failures of any kind reported: {m['failures']}", verdict(m["throttle_errors"] == 0)),
    ]
    table = ["| figure | target | measured | |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    print("\n".join(table))
    per_run = ["| run | seconds | mutating served / throttled | created | removed | failed | deferred | complete "
               "| mirrored (EC2) |", "|---|---|---|---|---|---|---|---|---|"]
    for run in fleet["runs"]:
        ours = mutating(run["calls"])
        throttled = sum(1 for c in ours if c["error"] == "RequestLimitExceeded")
        policy = run["policy"]
        per_run.append(f"| {run['number']} | {run['seconds']:.1f} | {len(ours) - throttled} / {throttled} | "
                       f"{policy.get('created', '–')} | {policy.get('removed', '–')} | {policy.get('failed', '–')} | "
                       f"{policy.get('deferred', '–')} | {policy.get('complete', '–')} | {run['state']['mirrored']} |")
    timing = fleet["timing"]
    setup_time = (f"{sum(timing.values()):.1f} s ({timing['instances']:.1f} s launching in batches per type, subnet "
                  f"and tags, {timing['enis']:.1f} s creating and attaching the extra ENIs one by one, "
                  f"{timing['read back']:.1f} s reading them back)")
    command = os.environ.get("BENCH_COMMAND") or "python " + shlex.join(
        [f"scripts/{os.path.basename(__file__)}"] + sys.argv[1:])
    built = datetime.datetime.fromtimestamp(os.path.getmtime(args.binary), datetime.timezone.utc)
    pages = "1000 (AWS's largest)" if args.page_size in (0, 1000) else args.page_size
    pace = f"`MUTATING_CALLS_PER_SECOND={args.pace:g}`" if args.pace else "unpaced (no `MUTATING_CALLS_PER_SECOND`)"
    section = f"""## Fleet sweep

Latest figures, from `{command.strip()}` (the command that reproduces them;
issues #17 and #24, "Measured"; #24's pool of appliances is not in this fleet: placement is shown by the tests).

- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}
- Machine: {machine_description()}
- Binary: `{os.path.basename(args.binary)}`, built {built.strftime('%Y-%m-%d %H:%M UTC')}
- Parameters: {instances} instances ({fleet['enis']} ENIs), one process, {pace}, bucket on mutating EC2 calls
  burst {args.burst:g} and refill {args.refill:g}/s, {LATENCY_MS} ms latency per AWS call, mirroring Describe
  pages of at most {pages}, a {args.timeout_seconds} s deadline per run,
  at most {args.max_runs} runs
- The fleet, all running before the function's first run, in one VPC with two
  subnets: a mix of current types (below), one in 20 a t2.micro (Xen); 1 to 3 ENIs
  each; {'; '.join(f'{fleet["roles"][r]} {ROLES[r]}' for r in ROLES if fleet['roles'][r])}.
  `DEFAULT_TARGETS` maps the first subnet to the target ENI, a standalone ENI
  there whose security group admits UDP 4789 from 10.0.0.0/16; the tagged
  target is a Network Load Balancer. An ENI target takes {SOURCES_PER_ENI_TARGET} sources
  (contract §4), so the default's instances are few: their ENIs past the
  tenth are to be reported missing for the target's 10 sources.
  Setup took {setup_time}.
- The runs: `{{"sweep": {{}}}}` invoked directly through the Runtime API, one run
  after another; after each, EC2 is read by our tag (without latency, outside
  the function's figures) and the runs stop once every mirrorable wanted ENI
  has exactly one of our sessions, to the target the policy names, and
  nothing of ours is elsewhere or unused.
- Read from: the emulator's call log during the runs (mutating calls served
  and throttled, Describe calls); EC2 by our tag (mirrored, duplicates,
  orphans); the sweep's answers (throttling that reached the caller, the
  function's own coverage report).

{chr(10).join(table)}

{chr(10).join(per_run)}

The bound is the time the bucket needs to hand out the mutating calls that
were served (served ÷ refill); the bucket refills between runs too, so its
first {args.burst:g} tokens of each run are free. All AWS calls during the runs:
{m['calls']} ({listing(m['calls_by_service'])}).
"""
    write_section(args.output, section, (BEGIN, END))
    print(f"\nwritten to the fleet section of {args.output}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--eni-target-enis", type=int, default=12,
                        help="ENIs of the untagged first-subnet instances, the default's (the target ENI takes 10)")
    parser.add_argument("--burst", type=float, default=20)
    parser.add_argument("--refill", type=float, default=10, help="tokens per second")
    parser.add_argument("--pace", type=float, default=10,
                        help="the function's MUTATING_CALLS_PER_SECOND (0: unpaced)")
    parser.add_argument("--timeout-seconds", type=int, default=60, help="each run's deadline")
    parser.add_argument("--max-runs", type=int, default=50)
    parser.add_argument("--page-size", type=int, default=1000,
                        help="the emulator's page for mirroring Describe calls (AWS's largest; its default is 2)")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = parser.parse_args()
    if args.instances < 1 or args.refill <= 0 or args.max_runs < 1 or args.timeout_seconds < 1 or args.pace < 0:
        parser.error("--instances, --max-runs and --timeout-seconds must be at least 1, --refill above 0, "
                     "--pace not negative")

    emulator = Emulator(sys.executable)
    try:
        started = time.perf_counter()
        fleet = setup(emulator, args)
        print(f"fleet: {fleet['instances']} instances, {fleet['enis']} ENIs, {len(fleet['wanted'])} wanted, "
              f"{fleet['mirrorable']} mirrorable ({dict(fleet['wanted_per_target'])}), "
              f"{len(fleet['not_nitro'])} on non-Nitro instances; set up in {time.perf_counter() - started:.1f} s "
              f"({', '.join(f'{k} {v:.1f} s' for k, v in fleet['timing'].items())})", flush=True)
        runs, counts, elapsed = sweep(args, emulator, fleet)
        fleet["runs"] = runs
        m = figures(args, fleet, runs, counts, elapsed)
    finally:
        emulator.stop()
    report(args, fleet, m)
    sys.exit(0 if m["converged"] else 1)


if __name__ == "__main__":
    main()
