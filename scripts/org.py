#!/usr/bin/env python3
"""The organization benchmark of issue #25 ("one deployment for a whole AWS
Organization"): a hub deployment (moto's default account) and N member
accounts, each with its own VPC and M running instances, all tagged
`traffic-mirroring:target` = one Network Load Balancer of the hub. The
release binary, configured as the hub (`MEMBER_ACCOUNTS`,
`DEPLOYMENT_ACCOUNT_ID`), is invoked with `{"sweep": {}}` again and again,
each run with a short Lambda deadline, against the emulator with a token
bucket per account on mutating EC2 calls (EC2 throttles each account apart),
until every member's instances are mirrored exactly once: read from the
outside after each run, with each member's own credentials (its
DescribeTrafficMirrorSessions and Filters), the hub's targets and RAM share,
and the ledger. Three scenarios, each in a fresh emulator:

- `invocation`: each run is one invocation that sweeps every account, the
  hub's and the members', side by side (`ACCOUNTS_AT_ONCE` at a time), as a
  hub without `SWEEP_QUEUE_URL` does;
- `fan-out`: as infra/template.yaml deploys a hub (`SWEEP_QUEUE_URL` = its
  request queue): the scheduled invocation puts one message per account on
  an SQS queue, and an event source mapping of our own (storm.py's, at the
  template's batch size and concurrency) hands them to the function's
  processes; a run lasts until the queue is drained;
- `single`: for comparison, the same N x M instances in one account, swept
  by a single-account deployment (no `MEMBER_ACCOUNTS`) with the same settings.

It prints a table and writes it into BENCHMARKS.md between its markers,
leaving the rest of the file as it is.

Run it through its twin scripts/org.sh, which provides the emulator's Python:
    python scripts/org.py --binary <release bootstrap> [--accounts 20] [--instances-per-account 100]
"""

import argparse
import collections
import datetime
import json
import os
import re
import shlex
import statistics
import sys
import threading
import time

import boto3
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests/emulator"))

from harness import (LATENCY_MS, REGION, ROOT, Emulator, RuntimeApi, client,  # noqa: E402
                     create_table, function_env, machine_description, start_function)
from fleet import (failures_of, mutating, policy_of, report_field, sweep_report,  # noqa: E402
                   sweep_results, throttles_reaching_caller)
from storm import EventSourceMapping, write_section  # noqa: E402

HUB = "123456789012"  # moto's default account: the hub, DEPLOYMENT_ACCOUNT_ID
ROLE_NAME = "TrafficMirroringMember"  # MEMBER_ROLE_NAME's default; moto lets anyone assume any role
# As in fleet.py: the emulator takes any well-formed NLB ARN as a target (the
# function checks its form only), so no load balancer needs to exist.
NLB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{HUB}:loadbalancer/net/org-monitor/50dc6c495c0c9188"
LEDGER_TABLE = "org-ledger"
BUS = "org-bus"
# OWNER is not set, so the function's owner value is table/<TABLE_NAME> (src/config/mod.rs).
OWNER = f"table/{LEDGER_TABLE}"
OWNER_TAG = {"Name": "tag:traffic-mirroring:managed-by", "Values": [OWNER]}
TAG_TARGET = "traffic-mirroring:target"
ACTION_TAG = "traffic-mirroring:action-id"
INSTANCE_TYPE = "m5.large"  # Nitro: every instance can be a source
IMAGE = "ami-12c6146b"
BEGIN, END = "<!-- org:begin -->", "<!-- org:end -->"
MODES = {"invocation": "organization, one invocation", "fan-out": "organization, fanned out",
         "single": "one account"}
# infra/template.yaml's defaults: the request queue's event source mapping (SqsBatchSize is storm.py's 10).
SQS_MAX_CONCURRENCY = 2
SWEEP_ACCOUNTS_PER_INVOCATION = 8


def accounts_at_once():
    """How many accounts one sweep works on at once, as the function says
    (src/organization/sweep.rs), so the goal follows the code."""
    try:
        with open(os.path.join(ROOT, "src/organization/sweep.rs")) as source:
            return int(re.search(r"ACCOUNTS_AT_ONCE: usize = (\d+)", source.read()).group(1))
    except (OSError, AttributeError):
        return 8


def member_ids(count):
    return [f"{210000000000 + i}" for i in range(1, count + 1)]


# --- the accounts ---------------------------------------------------------------------

def assumed(emulator, account, services=("ec2",)):
    """Clients acting in a member account, on the credentials sts:AssumeRole
    of its member role gives (as the hub reaches it): moto keeps the
    accounts apart by them."""
    credentials = client(emulator, "sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{ROLE_NAME}", RoleSessionName="org-benchmark")["Credentials"]
    return {service: boto3.client(service, endpoint_url=emulator.endpoint, region_name=REGION,
                                  aws_access_key_id=credentials["AccessKeyId"],
                                  aws_secret_access_key=credentials["SecretAccessKey"],
                                  aws_session_token=credentials["SessionToken"],
                                  config=Config(retries={"total_max_attempts": 1}))
            for service in services}


def launch(ec2, cidr, count):
    """A VPC with one subnet and `count` running instances tagged to the NLB,
    launched in batches of 500; answers {primary ENI: instance id} as EC2
    reads them back."""
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": TAG_TARGET, "Value": NLB_ARN}]}]
    for start in range(0, count, 500):
        size = min(500, count - start)
        ec2.run_instances(ImageId=IMAGE, InstanceType=INSTANCE_TYPE, SubnetId=subnet, MinCount=size,
                          MaxCount=size, TagSpecifications=tags)
    wanted = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=[{"Name": "vpc-id", "Values": [vpc]}]):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                for eni in instance["NetworkInterfaces"]:
                    wanted[eni["NetworkInterfaceId"]] = instance["InstanceId"]
    return wanted


def setup(emulator, args, mode):
    """The ledger, the bus and the accounts: for the organization the hub
    (no instances) and N members of M instances each, every member in its
    own VPC, reached through its role; for one account all N x M instances
    in the hub's own VPC. Answers the scenario."""
    organization = mode != "single"
    create_table(emulator, LEDGER_TABLE)
    client(emulator, "events").create_event_bus(Name=BUS)
    started = time.perf_counter()
    hub = {"ec2": client(emulator, "ec2"), "wanted": {}}
    scenario = {"mode": mode, "organization": organization, "accounts": {HUB: hub}, "members": []}
    if organization:
        for account in member_ids(args.accounts):
            member = assumed(emulator, account)
            member["wanted"] = launch(member["ec2"], "10.1.0.0/16", args.instances_per_account)
            scenario["accounts"][account] = member
            scenario["members"].append(account)
    else:
        hub["wanted"] = launch(hub["ec2"], "10.0.0.0/16", args.accounts * args.instances_per_account)
    scenario["setup_seconds"] = time.perf_counter() - started
    scenario["wanted"] = sum(len(a["wanted"]) for a in scenario["accounts"].values())
    return scenario


# --- reading the accounts from the outside ----------------------------------------------------

def describe(ec2, kind, key, **filters):
    paginator = ec2.get_paginator(f"describe_traffic_mirror_{kind}")
    return [item for page in paginator.paginate(**filters) for item in page[key]]


def read_ledger(emulator):
    """The ledger table, whole: action records and the claims of shared
    targets and filters (their resource ids)."""
    dynamodb = client(emulator, "dynamodb")
    items = [item for page in dynamodb.get_paginator("scan").paginate(TableName=LEDGER_TABLE)
             for item in page["Items"]]

    def text(item, name):
        return (item.get(name) or {}).get("S")

    records = [{"account": text(i, "account") or HUB, "status": text(i, "status"), "session": text(i, "sessionId"),
                "action": text(i, "pk")[len("action#"):]}
               for i in items if text(i, "pk").startswith("action#")]
    claims = [i for i in items if text(i, "pk").startswith(("target#", "filter#"))]
    claimed = {text(i, "resourceId") for i in claims if text(i, "resourceId")}
    # A shared target or filter someone claimed to make and has not made (yet): its maker's lease holds the others.
    making = sorted(text(i, "pk") for i in claims if not text(i, "resourceId") and text(i, "maker"))
    return records, claimed, making, len(items)


def read_ram(emulator):
    """The hub's resource shares made by this deployment (by its owner tag),
    with their associated principals and resources."""
    ram = client(emulator, "ram")
    token, pages = None, []
    while True:
        pages.append(ram.get_resource_shares(resourceOwner="SELF", **({"nextToken": token} if token else {})))
        token = pages[-1].get("nextToken")
        if not token:
            break
    shares = [s for page in pages for s in page["resourceShares"]
              if {"key": "traffic-mirroring:managed-by", "value": OWNER} in s.get("tags", [])]
    active = [s for s in shares if s["status"] == "ACTIVE"]

    def associated(kind):
        found = []
        for share in active:
            token = None
            while True:
                page = ram.get_resource_share_associations(
                    associationType=kind, resourceShareArns=[share["resourceShareArn"]],
                    **({"nextToken": token} if token else {}))
                found += [a["associatedEntity"] for a in page["resourceShareAssociations"]
                          if a["status"] in ("ASSOCIATED", "ASSOCIATING")]
                token = page.get("nextToken")
                if not token:
                    break
        return found

    return {"shares": len(shares), "active": len(active), "principals": associated("PRINCIPAL"),
            "resources": associated("RESOURCE")}


def read_state(emulator, scenario):
    """Every account's mirroring by our tag (each with its own credentials),
    the ledger and, for the organization, the hub's RAM share; without
    latency (the function is idle; our calls are not in its figures)."""
    emulator.control("POST", "config", {"latency_ms": {"default": 0}})
    try:
        seen = {}
        for account, parts in scenario["accounts"].items():
            ec2 = parts["ec2"]
            seen[account] = {
                # The owner of a hub target is listed its members' sessions on it (their OwnerId): theirs, not its.
                "sessions": [s for s in describe(ec2, "sessions", "TrafficMirrorSessions", Filters=[OWNER_TAG])
                             if s.get("OwnerId", account) == account],
                "every_session": describe(ec2, "sessions", "TrafficMirrorSessions"),
                # A member is listed the hub's targets shared with it (the hub's OwnerId).
                "targets": [t for t in describe(ec2, "targets", "TrafficMirrorTargets", Filters=[OWNER_TAG])
                            if t.get("OwnerId", account) == account],
                "filters": describe(ec2, "filters", "TrafficMirrorFilters", Filters=[OWNER_TAG]),
            }
        records, claimed, making, items = read_ledger(emulator)
        ram = read_ram(emulator) if scenario["organization"] else None
    finally:
        emulator.control("POST", "config", {"latency_ms": {"default": LATENCY_MS}})
    state = judge(scenario, seen, records, claimed, ram)
    state["claims_in_making"], state["ledger_items"] = making, items
    return state


def judge(scenario, seen, records, claimed, ram):
    targets = [t for s in seen.values() for t in s["targets"]]
    destination = {t["TrafficMirrorTargetId"]: t.get("NetworkInterfaceId") or t.get("NetworkLoadBalancerArn")
                   or t.get("GatewayLoadBalancerEndpointId") for t in targets}
    used_targets = {s["TrafficMirrorTargetId"] for v in seen.values() for s in v["every_session"]}
    in_ledger = {(r["account"], r["session"]) for r in records if r["status"] == "active" and r["session"]}
    status_of = {r["action"]: r for r in records}
    state = {"accounts": {}, "mirrored": 0, "duplicate_enis": 0, "extra_sessions": 0, "extra_filters": 0,
             "unwanted": [], "wrong_target": [], "unused_filters": [], "unused_targets": [],
             "sessions_not_in_ledger": [], "filters_not_in_ledger": [], "targets_not_in_ledger": [],
             "rules_per_filter": None, "untracked_why": {}}
    sessions_ours = set()
    for account, view in seen.items():
        wanted = scenario["accounts"][account]["wanted"]
        per_eni = collections.Counter(s["NetworkInterfaceId"] for s in view["sessions"])
        right = {s["NetworkInterfaceId"] for s in view["sessions"]
                 if s["NetworkInterfaceId"] in wanted and destination.get(s["TrafficMirrorTargetId"]) == NLB_ARN}
        used_filters = {s["TrafficMirrorFilterId"] for s in view["every_session"]}
        state["accounts"][account] = {"wanted": len(wanted), "mirrored": len(right),
                                      "sessions": len(view["sessions"]), "filters": len(view["filters"])}
        state["mirrored"] += len(right)
        state["duplicate_enis"] += sum(1 for n in per_eni.values() if n > 1)
        state["extra_sessions"] += sum(n - 1 for n in per_eni.values() if n > 1)
        # Every mirror here uses the default (mirror everything) rule set: one filter per account with sources.
        state["extra_filters"] += max(0, len(view["filters"]) - 1)
        for s in view["sessions"]:
            sessions_ours.add((account, s["TrafficMirrorSessionId"]))
            if s["NetworkInterfaceId"] not in wanted:
                state["unwanted"].append(f"{account}:{s['TrafficMirrorSessionId']} on {s['NetworkInterfaceId']}")
            elif s["NetworkInterfaceId"] not in right:
                state["wrong_target"].append(f"{account}:{s['TrafficMirrorSessionId']}")
            if (account, s["TrafficMirrorSessionId"]) not in in_ledger:
                state["sessions_not_in_ledger"].append(f"{account}:{s['TrafficMirrorSessionId']}")
                # What the ledger says of the action that made it (its tag), for the dump.
                action = next((t["Value"] for t in s.get("Tags", []) if t["Key"] == ACTION_TAG), None)
                record = status_of.get(action)
                state["untracked_why"][f"{account}:{s['TrafficMirrorSessionId']}"] = (
                    f"action {action}: " + (f"record {record['status']} in account {record['account']}, "
                                            f"session {record['session']}" if record else "no record"))
        for f in view["filters"]:
            if f["TrafficMirrorFilterId"] not in used_filters:
                state["unused_filters"].append(f"{account}:{f['TrafficMirrorFilterId']}")
            if f["TrafficMirrorFilterId"] not in claimed:
                state["filters_not_in_ledger"].append(f"{account}:{f['TrafficMirrorFilterId']}")
            if state["rules_per_filter"] is None:
                state["rules_per_filter"] = len(f.get("IngressFilterRules", [])) + len(f.get("EgressFilterRules", []))
        for t in view["targets"]:
            if t["TrafficMirrorTargetId"] not in used_targets:
                state["unused_targets"].append(f"{account}:{t['TrafficMirrorTargetId']}")
            if t["TrafficMirrorTargetId"] not in claimed:
                state["targets_not_in_ledger"].append(f"{account}:{t['TrafficMirrorTargetId']}")
    per_destination = collections.Counter(destination.values())
    state["targets"] = len(targets)
    state["extra_targets"] = sum(n - 1 for n in per_destination.values() if n > 1)
    state["stale_records"] = sorted(f"{a}:{s}" for a, s in in_ledger - sessions_ours)
    state["records"] = collections.Counter(r["status"] for r in records)
    state["duplicates"] = state["extra_sessions"] + state["extra_targets"] + state["extra_filters"]
    state["orphans_ec2"] = sum(len(state[k]) for k in ("unwanted", "wrong_target", "unused_filters", "unused_targets"))
    state["orphans_ledger"] = sum(len(state[k]) for k in
                                  ("sessions_not_in_ledger", "filters_not_in_ledger", "targets_not_in_ledger"))
    state["orphans"] = state["orphans_ec2"] + state["orphans_ledger"]
    state["ram"] = ram
    state["converged"] = (all(v["mirrored"] == v["wanted"] for v in state["accounts"].values())
                          and state["duplicates"] == 0 and state["orphans_ec2"] == 0)
    return state


# --- the runs ------------------------------------------------------------------------------

def environment(args, emulator, runtime, scenario, queue_url=None):
    env = function_env(emulator, runtime, LEDGER_TABLE, BUS)
    if scenario["organization"]:
        env.update({"MEMBER_ACCOUNTS": ",".join(scenario["members"]), "DEPLOYMENT_ACCOUNT_ID": HUB,
                    "MEMBER_ROLE_NAME": ROLE_NAME})
    if queue_url:
        env.update({"SWEEP_QUEUE_URL": queue_url, "SWEEP_ACCOUNTS_PER_INVOCATION": str(SWEEP_ACCOUNTS_PER_INVOCATION)})
    if args.pace:
        env["MUTATING_CALLS_PER_SECOND"] = f"{args.pace:g}"
    # As infra/template.yaml's TimeoutSettings set it: the function's timeout + 60 s (a run cut off at its
    # deadline holds its claims, a shared filter's or target's making too, that long).
    env["CLAIM_LEASE_SECONDS"] = str(args.claim_lease_seconds or args.timeout_seconds + 60)
    if args.dump:
        env["RUST_LOG"] = args.rust_log
    return env


class Recorded(EventSourceMapping):
    """storm.py's event source mapping, keeping what the function answered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.answers = []

    def invoke(self, runtime, records):
        failed = super().invoke(runtime, records)
        with self.lock:
            self.answers.append({"records": len(records), "failed": len(failed),
                                 "bodies": [m["Body"] for m in records]})
        return failed


class Function:
    """The function's processes for one scenario: one, invoked directly
    (`invocation`, `single`), or for `fan-out` one for the scheduled
    invocation and --sqs-concurrency fed by the event source mapping.
    An invocation not answered by its deadline is what Lambda would time
    out: the process is killed and started again."""

    def __init__(self, args, emulator, scenario):
        self.args, self.emulator, self.scenario = args, emulator, scenario
        self.counts = collections.Counter()
        self.log = None
        if args.dump:
            os.makedirs(args.dump, exist_ok=True)
            self.log = open(os.path.join(args.dump, f"{scenario['mode']}-function.log"), "w")
        self.queue = None
        if scenario["mode"] == "fan-out":
            sqs = client(emulator, "sqs")
            url = sqs.create_queue(QueueName="requests")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.queue = {"requests": url, "requests_arn": arn}
        self.main = self.start()
        self.workers = [self.start() for _ in range(args.sqs_concurrency if self.queue else 0)]

    def start(self):
        runtime = RuntimeApi()
        runtime.timeout_seconds = self.args.timeout_seconds
        env = environment(self.args, self.emulator, runtime, self.scenario, self.queue and self.queue["requests"])
        return {"runtime": runtime, "env": env,
                "process": start_function(self.args.binary, env, runtime, self.log)[0]}

    def ensure(self, worker):
        if worker["process"].poll() is not None:
            self.counts["restarts"] += 1
            worker["process"] = start_function(self.args.binary, worker["env"], worker["runtime"], self.log)[0]

    def invoke(self, payload):
        """(answer or None, error or None) of one direct invocation."""
        self.ensure(self.main)
        try:
            return self.main["runtime"].invoke(payload)[1], None
        except (RuntimeError, ValueError) as failure:
            error = str(failure)
            self.counts["timeouts" if "did not answer" in error else "invocation errors"] += 1
            if "did not answer" in error:
                self.main["process"].kill()
                self.main["process"].wait()
            return None, error

    def drain(self, expected):
        """Feeds the queue's messages to the workers until `expected` of
        them are resolved (or a long bound passes); answers the mapping."""
        mapping = Recorded(self.emulator, self.queue, expected, self.args.retry_delay)
        mapping.deadline = time.perf_counter() + 10 * (self.args.timeout_seconds + 30)
        processes = [w["process"] for w in self.workers]
        errors = []

        def poll(slot):
            worker = self.workers[slot]
            try:
                mapping.serve(slot, self.args.binary, worker["env"], worker["runtime"], processes)
            except Exception as error:  # the harness broke: stop every poller, raise it below
                errors.append(error)
                mapping.deadline = 0

        pollers = [threading.Thread(target=poll, args=(slot,), daemon=True) for slot in range(len(self.workers))]
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()
        for worker, process in zip(self.workers, processes):
            worker["process"] = process
        if errors:
            raise errors[0]
        self.counts.update({f"queue {k}": v for k, v in mapping.counts.items()})
        return mapping

    def stop(self):
        for worker in [self.main] + self.workers:
            worker["process"].kill()
            worker["process"].wait()
        if self.log:
            self.log.close()


def one_run(function, scenario):
    """One scheduled sweep: (seconds, its answer, an error, the queue's record)."""
    handed = time.perf_counter()
    answer, error = function.invoke({"sweep": {}})
    queued = None
    fanned_out = [a for result in sweep_results(answer) for a in sweep_report(result).get("fannedOut") or []]
    if scenario["mode"] == "fan-out" and fanned_out:
        # One message per account the scheduled sweep says it queued (none when there are too few accounts to fan out).
        mapping = function.drain(len(fanned_out))
        queued = {"invocations": mapping.counts["invocations"], "retried": mapping.counts["records retried"],
                  "lost": len(mapping.lost), "answers": mapping.answers,
                  "resolved": len(mapping.resolved), "drained": mapping.drained_at is not None}
        seconds = (mapping.drained_at or time.perf_counter()) - handed
    else:
        seconds = time.perf_counter() - handed
    return seconds, answer, error, queued


def sweep(args, emulator, scenario):
    """Runs one scheduled sweep after another (back to back), each with a
    deadline of --timeout-seconds per invocation; the accounts are read after
    each run; stops when converged, after --max-runs, or after --stall-runs
    runs in a row that mirrored nothing more; then, if converged, sweeps once
    more with nothing to do."""
    emulator.control("POST", "config", {"latency_ms": {"default": LATENCY_MS}, "page_size": args.page_size})
    function = Function(args, emulator, scenario)
    runs, started, best, stalled = [], time.perf_counter(), -1, 0
    try:
        emulator.control("POST", "throttle", {"actions": "mutating", "burst": args.burst,
                                              "refill_per_second": args.refill, "per_account": True})
        for number in range(1, args.max_runs + 1):
            emulator.clear_calls()
            seconds, answer, error, queued = one_run(function, scenario)
            calls = emulator.calls()
            state = read_state(emulator, scenario)
            run = {"number": number, "seconds": seconds, "answer": answer, "error": error, "calls": calls,
                   "state": state, "accounts": report_field(answer, "accounts"), "policy": policy_of(answer), "queued": queued}
            runs.append(run)
            print(run_line(run, scenario), flush=True)
            if args.dump:
                dump(args.dump, scenario, run)
            if state["converged"]:
                break
            stalled = 0 if state["mirrored"] > best else stalled + 1
            best = max(best, state["mirrored"])
            if args.stall_runs and stalled >= args.stall_runs:
                function.counts["stalled"] = stalled
                print(f"stopped: {stalled} runs in a row mirrored nothing more", flush=True)
                break
        if runs and runs[-1]["state"]["converged"]:
            # One more scheduled sweep, with nothing to do: what the steady state costs.
            emulator.clear_calls()
            seconds, answer, error, queued = one_run(function, scenario)
            scenario["steady"] = {"seconds": seconds, "calls": emulator.calls(), "error": error}
        return runs, function.counts, time.perf_counter() - started
    finally:
        emulator.control("DELETE", "throttle")
        function.stop()


def dump(directory, scenario, run):
    """A run's answer, its state read from outside (lists cut short) and its
    call log, for looking into a run after the fact (--dump)."""
    state = {k: (v[:20] if isinstance(v, list) else v) for k, v in run["state"].items()}
    with open(os.path.join(directory, f"{scenario['mode']}-run-{run['number']}.json"), "w") as out:
        json.dump({"seconds": run["seconds"], "error": run["error"], "answer": run["answer"], "state": state,
                   "queued": run["queued"], "calls": run["calls"]}, out, indent=1, default=str)


def assume_roles(calls):
    return [c for c in calls if c["service"] == "sts" and c["action"] == "AssumeRole"]


def complete_accounts(run):
    """Accounts the function's own answer reports swept with nothing missing
    (one-invocation sweeps; a fanned-out sweep's answers are per record)."""
    return sum(1 for entry in run["accounts"].values()
               if isinstance(entry, dict) and entry.get("success") and (entry.get("coverage") or {}).get("missing") == 0)


def run_line(run, scenario):
    state, ours = run["state"], mutating(run["calls"])
    throttled = sum(1 for c in ours if c["error"] == "RequestLimitExceeded")
    text = (f"{MODES[scenario['mode']]} run {run['number']}: {run['seconds']:.1f} s, mutating "
            f"{len(ours) - throttled} served + {throttled} throttled, AssumeRole {len(assume_roles(run['calls']))}, "
            f"RAM {sum(1 for c in run['calls'] if c['service'] == 'ram')}, "
            f"Scan {sum(1 for c in run['calls'] if c['action'] == 'Scan')}; ")
    if scenario["mode"] == "invocation":
        text += f"accounts complete (function's view) {complete_accounts(run)} / {len(scenario['accounts'])}; "
    elif scenario["mode"] == "fan-out" and run["queued"]:
        q = run["queued"]
        text += f"queue: {q['invocations']} invocations, {q['retried']} records retried, {q['lost']} lost; "
    else:
        policy = run["policy"]
        text += f"policy: created {policy.get('created')}, deferred {policy.get('deferred')}, complete {policy.get('complete')}; "
    text += (f"EC2: {state['mirrored']} / {scenario['wanted']} mirrored, {state['duplicates']} duplicates, "
             f"{state['orphans_ec2']} orphans in EC2, {state['orphans_ledger']} not in the ledger")
    return text + (f"; {run['error']}" if run["error"] else "")


# --- the figures ------------------------------------------------------------------------------

def lanes_bound(seconds, lanes):
    """The makespan of jobs of these lengths taken in order by `lanes`
    workers, each taking the next as it frees (buffer_unordered)."""
    free = [0.0] * max(1, lanes)
    for length in seconds:
        at = free.index(min(free))
        free[at] += length
    return max(free)


def parallelism(args, scenario):
    return {"invocation": accounts_at_once(), "fan-out": args.sqs_concurrency, "single": 1}[scenario["mode"]]


def figures(args, scenario, runs, counts, elapsed):
    calls = [c for run in runs for c in run["calls"]]
    ours = mutating(calls)
    throttled = [c for c in ours if c["error"] == "RequestLimitExceeded"]
    served = [c for c in ours if c["error"] != "RequestLimitExceeded"]
    describes = [c for c in calls if c["service"] == "ec2" and c["action"].startswith("Describe")]
    state = runs[-1]["state"]
    served_per_account = collections.Counter(c["account"] for c in served)
    # What the bucket allows: each account's served calls at the refill rate,
    # the accounts taken `parallelism` at a time in the sweep's order (the hub first).
    order = [HUB] + scenario["members"]
    spans = []
    for run in runs:
        by_account = collections.defaultdict(list)
        for c in run["calls"]:
            if c["service"] == "ec2" and c["account"]:
                by_account[c["account"]].append(c)
        spans += [max(c["end"] for c in cs) - min(c["start"] for c in cs) for cs in by_account.values()]
    rules = state["rules_per_filter"] or 0
    accounts_with_sources = sum(1 for a in scenario["accounts"].values() if a["wanted"])
    floor = ((state["mirrored"] + accounts_with_sources * (1 + rules) + 1) / state["mirrored"]
             if state["mirrored"] else None)
    ram_calls = [c for c in calls if c["service"] == "ram"]
    scans = [c for c in calls if c["service"] == "dynamodb" and c["action"] == "Scan"]
    return {
        "runs": len(runs), "converged": state["converged"], "state": state,
        "wall": sum(run["seconds"] for run in runs), "elapsed": elapsed, "counts": counts,
        "served": len(served), "throttled": len(throttled),
        "served_by_action": collections.Counter(c["action"] for c in served),
        "refused": collections.Counter(c["error"] or str(c["status"]) for c in served if c["status"] != 200),
        "describes": len(describes), "describes_by_action": collections.Counter(c["action"] for c in describes),
        "calls": len(calls), "calls_by_service": collections.Counter(c["service"] or "?" for c in calls),
        "assume_roles": len(assume_roles(calls)),
        "assume_roles_refused": sum(1 for c in assume_roles(calls) if c["status"] != 200),
        "assume_roles_per_run": [len(assume_roles(run["calls"])) for run in runs],
        "ram_by_action": collections.Counter(c["action"] or "?" for c in ram_calls),
        "create_share": sum(1 for c in ram_calls if c["action"] == "CreateResourceShare"),
        "scans": len(scans), "scans_per_run": [sum(1 for c in run["calls"] if c["action"] == "Scan") for run in runs],
        "scan_lock_seconds": sum(c["end"] - c["served"] for c in scans),
        "scan_seconds": sum(c["end"] - c["start"] for c in scans),
        "throttle_errors": sum(throttles_reaching_caller(run["answer"]) for run in runs),
        "failures": sum(failures_of(run["answer"]) for run in runs) if scenario["mode"] != "fan-out" else None,
        "lock_seconds": sum(c["end"] - c["served"] for c in calls),
        "bound": lanes_bound([served_per_account.get(a, 0) / args.refill for a in order], parallelism(args, scenario)),
        "spans": spans, "floor": floor, "rules": rules, "accounts_with_sources": accounts_with_sources,
        "per_eni": len(served) / state["mirrored"] if state["mirrored"] else None,
        "steady": scenario.get("steady"),
    }


def listing(counter):
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0]))) or "none"


def verdict(ok):
    return "met" if ok else "**not met**"


# --- the report ------------------------------------------------------------------------------

def cells(args, scenario, m, single):
    """Each figure's text for one scenario, and whether it meets its goal
    (None: reported only)."""
    state, members = m["state"], len(scenario["members"])
    org = scenario["organization"]
    out = {}
    if org:
        out["instances"] = (f"{members} members × {args.instances_per_account} = {scenario['wanted']}, each member in "
                            f"its own VPC; the hub has none", None)
    else:
        out["instances"] = (f"{scenario['wanted']} in one VPC", None)
    mirrored_ok = state["mirrored"] == scenario["wanted"]
    extra = ""
    if scenario["mode"] == "invocation" and scenario["runs"]:
        extra = (f"; accounts the function's last answer reports complete: {complete_accounts(scenario['runs'][-1])} "
                 f"/ {len(scenario['accounts'])}")
    out["mirrored"] = (f"{state['mirrored']} / {scenario['wanted']}" + extra, mirrored_ok)
    stopped = (" (**not converged**: stopped after " +
               (f"{m['counts']['stalled']} runs in a row that mirrored nothing more)" if m["counts"].get("stalled")
                else f"--max-runs {args.max_runs})")) if not m["converged"] else ""
    queue = ""
    if scenario["mode"] == "fan-out":
        queue = (f"; the queue: {m['counts'].get('queue invocations', 0)} invocations, "
                 f"{m['counts'].get('queue records retried', 0)} records retried")
    out["runs"] = (f"{m['runs']}{stopped}; {m['counts']['timeouts']} timed out, {m['counts']['invocation errors']} "
                   f"invocation errors, {m['counts']['restarts']} restarts{queue}", m["converged"])
    wall = (f"{m['wall']:.1f} s in the runs ({m['elapsed']:.1f} s with the reads between them and the sweep with "
            f"nothing to do); the buckets' "
            f"bound {m['bound']:.1f} s")
    ok = None
    if org and single and single.get("figures"):
        base, lanes = single["figures"], parallelism(args, scenario)
        goal = base["wall"] / lanes
        if m["converged"] and base["converged"]:
            wall += f"; {base['wall'] / m['wall']:.2f}× one account's (goal {lanes}×: {goal:.1f} s)"
            ok = m["wall"] <= goal * 1.25
        else:
            wall += f" (goal: one account's ÷ {lanes} = {goal:.1f} s, when both converge)"
            ok = False
    out["wall"] = (wall, ok)
    if org:
        # The processes that sweep members: the one invoked (and its restarts), or the queue's.
        fan_out = scenario["mode"] == "fan-out"
        processes = (args.sqs_concurrency if fan_out else 1) + m["counts"]["restarts"]
        steady = len(assume_roles(m["steady"]["calls"])) if m["steady"] else 0
        total = m["assume_roles"] + steady
        out["assume"] = (f"{m['assume_roles'] / members:.2f} ({m['assume_roles']} for {members} members over "
                         f"{m['runs']} runs; per run: {', '.join(map(str, m['assume_roles_per_run']))}; "
                         f"{m['assume_roles_refused']} refused); a sweep with nothing to do: "
                         f"{steady if m['steady'] else 'n/a'}; {total} in all by {processes} process(es) that sweep "
                         f"members (at most {members * processes})",
                         total <= members * processes and (fan_out or steady == 0))
    else:
        out["assume"] = (f"{m['assume_roles']} (no members)", None)
    if m["per_eni"] is None:
        out["per_eni"] = ("n/a (nothing mirrored)", False)
    else:
        floor = f"; the floor here is {m['floor']:.4f}" if org else ""
        out["per_eni"] = (f"{m['per_eni']:.4f} ({m['served']} served: {listing(m['served_by_action'])}; refused: "
                          f"{listing(m['refused'])}; {m['throttled']} more throttled){floor}", m["per_eni"] <= 1.05)
    out["duplicates"] = (f"{state['duplicates']}: {state['duplicate_enis']} ENIs with more than one session "
                         f"({state['extra_sessions']} extra), {state['extra_targets']} extra targets, "
                         f"{state['extra_filters']} extra filters; {state['targets']} target(s) of ours",
                         state["duplicates"] == 0)
    out["orphans"] = (describe_state(state), state["orphans"] == 0)
    if org:
        ram = state["ram"] or {}
        principals = set(ram.get("principals", []))
        out["ram"] = (f"{m['create_share']}; the hub holds {ram.get('active', 0)} active share(s) of ours "
                      f"({ram.get('shares', 0)} in all) with {len(principals)} principals ({len(principals & set(scenario['members']))} "
                      f"of the {members} members) and {len(ram.get('resources', []))} target(s); RAM calls: "
                      f"{listing(m['ram_by_action'])}", m["create_share"] == 1 and ram.get("active") == 1)
    else:
        out["ram"] = (f"{m['create_share']} (RAM calls: {sum(m['ram_by_action'].values())})", None)
    failures = f" (failures of any kind in the answers: {m['failures']})" if m["failures"] is not None else \
        " (in the scheduled answers; the queued sweeps' answers are batch item failures)"
    out["throttling"] = (f"{m['throttle_errors']}{failures}", m["throttle_errors"] == 0)
    out["describes"] = (f"{m['describes']} ({m['describes'] / scenario['wanted']:.3f} per instance: "
                        f"{listing(m['describes_by_action'])})", None)
    out["steady"] = (steady_text(m), None)
    spans = (f"; an account's EC2 calls in a run span median {statistics.median(m['spans']):.1f} s, "
             f"max {max(m['spans']):.1f} s") if m["spans"] else ""
    out["lock"] = (f"{m['lock_seconds']:.1f} s of {m['wall']:.1f} s ({m['calls']} AWS calls: "
                   f"{listing(m['calls_by_service'])}){spans}", None)
    out["scan"] = (f"{m['scans']} Scan calls (per run: {', '.join(map(str, m['scans_per_run']))}) for "
                   f"{len(scenario['accounts'])} account(s), {m['scan_seconds']:.1f} s in them, "
                   f"{m['scan_lock_seconds']:.1f} s of it the emulator's serial work; the table ends with "
                   f"{state['ledger_items']} items", None)
    out["ledger"] = (ledger_text(state), not state["claims_in_making"] and not state["records"].get("pending"))
    return out


ROWS = [
    ("instances", "instances (ENIs wanted)", "report"),
    ("mirrored", "mirrored exactly once, from EC2", "all"),
    ("runs", "scheduled sweeps (runs) until converged", "report"),
    ("wall", "wall time until converged", "≈ one account's ÷ the accounts swept at once"),
    ("assume", "AssumeRole calls per member account", "1 per process and credential lifetime"),
    ("per_eni", "mutating EC2 calls per mirrored ENI", "≤ 1.05"),
    ("duplicates", "duplicates (beyond one session per ENI, one target per destination, one filter per account)", "0"),
    ("orphans", "orphans (ours, unused or not in the ledger)", "0"),
    ("ram", "RAM shares made (CreateResourceShare)", "1"),
    ("throttling", "throttling errors reaching a caller", "0"),
    ("describes", "Describe calls until converged", "report"),
    ("steady", "a sweep with nothing to do", "report"),
    ("lock", "the emulator's own serial work (its one lock)", "report"),
    ("scan", "the ledger read whole (DynamoDB `Scan`, consistent)", "report"),
    ("ledger", "the ledger at the end", "nothing pending, no claim being made"),
]


def steady_text(m):
    steady = m["steady"]
    if not steady:
        return "not measured: the runs did not converge"
    calls = steady["calls"]
    describes = collections.Counter(c["action"] for c in calls if c["service"] == "ec2" and c["action"].startswith("Describe"))
    return (f"{steady['seconds']:.1f} s, {len(assume_roles(calls))} AssumeRole, {len(mutating(calls))} mutating, "
            f"{sum(1 for c in calls if c['service'] == 'ram')} RAM, "
            f"{sum(1 for c in calls if c['action'] == 'Scan')} Scan, {sum(describes.values())} Describe calls "
            f"({listing(describes)})")


def describe_state(state):
    sample = (state["unwanted"] + state["wrong_target"] + state["unused_targets"] + state["unused_filters"]
              + state["sessions_not_in_ledger"] + state["filters_not_in_ledger"] + state["targets_not_in_ledger"])[:4]
    return (f"{state['orphans']}: {len(state['unwanted'])} sessions of ours on ENIs not wanted, "
            f"{len(state['wrong_target'])} to the wrong target, {len(state['unused_targets'])} targets and "
            f"{len(state['unused_filters'])} filters of ours no session uses; not in the ledger: "
            f"{len(state['sessions_not_in_ledger'])} sessions (no active record of their account), "
            f"{len(state['filters_not_in_ledger'])} filters, {len(state['targets_not_in_ledger'])} targets"
            + (f" ({', '.join(sample)}{', …' if state['orphans'] > len(sample) else ''})" if sample else ""))


def ledger_text(state):
    return (f"records {listing(state['records'])}; {len(state['stale_records'])} active records whose session EC2 "
            f"does not have; {len(state['claims_in_making'])} shared claims being made"
            + (f" ({', '.join(state['claims_in_making'][:3])})" if state["claims_in_making"] else ""))


def report(args, scenarios):
    single = scenarios.get("single")
    measured = [scenarios[mode] for mode in MODES if mode in scenarios]
    columns = {s["mode"]: cells(args, s, s["figures"], single) for s in measured}
    header = "| figure | target | " + " | ".join(MODES[s["mode"]] for s in measured) + " |"
    table = [header, "|" + "---|" * (2 + len(measured))]
    for key, name, target in ROWS:
        texts = []
        for s in measured:
            text, ok = columns[s["mode"]][key]
            texts.append(text if ok is None else f"{text} — {verdict(ok)}")
        table.append(f"| {name} | {target} | " + " | ".join(texts) + " |")
    print("\n".join(table))

    per_run = ["| scenario | run | seconds | mutating served / throttled | AssumeRole | RAM calls | ledger Scans "
               "| mirrored (EC2) |", "|---|---|---|---|---|---|---|---|"]
    for s in measured:
        for run in s["runs"]:
            ours = mutating(run["calls"])
            throttled = sum(1 for c in ours if c["error"] == "RequestLimitExceeded")
            per_run.append(f"| {MODES[s['mode']]} | {run['number']} | {run['seconds']:.1f} | {len(ours) - throttled} / "
                           f"{throttled} | {len(assume_roles(run['calls']))} | "
                           f"{sum(1 for c in run['calls'] if c['service'] == 'ram')} | "
                           f"{sum(1 for c in run['calls'] if c['action'] == 'Scan')} | {run['state']['mirrored']} |")

    command = os.environ.get("BENCH_COMMAND") or "python " + shlex.join(
        [f"scripts/{os.path.basename(__file__)}"] + sys.argv[1:])
    built = datetime.datetime.fromtimestamp(os.path.getmtime(args.binary), datetime.timezone.utc)
    pages = "1000 (AWS's largest)" if args.page_size in (0, 1000) else args.page_size
    pace = f"`MUTATING_CALLS_PER_SECOND={args.pace:g}`" if args.pace else "unpaced (no `MUTATING_CALLS_PER_SECOND`)"
    setups = "; ".join(f"{MODES[s['mode']]} {s['setup_seconds']:.1f} s" for s in measured)
    members = member_ids(args.accounts)
    section = f"""## Organization sweep

Latest figures, from `{command.strip()}` (the command that reproduces them;
issue #25, one deployment for a whole AWS Organization).

- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}
- Machine: {machine_description()}
- Binary: `{os.path.basename(args.binary)}`, built {built.strftime('%Y-%m-%d %H:%M UTC')}
- Parameters: {args.accounts} member accounts × {args.instances_per_account} running `{INSTANCE_TYPE}` instances (one
  ENI each), all tagged `traffic-mirroring:target` = one NLB of the hub; {pace} in each process, a bucket on mutating
  EC2 calls **per account** (burst {args.burst:g}, refill {args.refill:g}/s: EC2 throttles each account apart),
  {LATENCY_MS} ms latency per AWS call, mirroring Describe pages of at most {pages}, a {args.timeout_seconds} s
  deadline per invocation and `CLAIM_LEASE_SECONDS={args.claim_lease_seconds or args.timeout_seconds + 60}` (the
  template's timeout + 60), at most {args.max_runs} runs, stopping early after {args.stall_runs} runs in a row that
  mirror nothing more.
- The organization: the hub is moto's default account `{HUB}` (`DEPLOYMENT_ACCOUNT_ID`), with no instances; the
  members `{members[0]}` … `{members[-1]}` (`MEMBER_ACCOUNTS`), each with its own VPC and subnet, its instances
  launched on credentials from `sts:AssumeRole` of `arn:aws:iam::<member>:role/{ROLE_NAME}` (moto grants it; the
  emulator keeps Traffic Mirroring per account by those credentials). The NLB's target is made in the hub and
  shared with the members through RAM; filters and sessions are made in each member.
- The scenarios, each in a fresh emulator (setup: {setups}):
  **organization, one invocation**: each run is one `{{"sweep": {{}}}}` invocation that sweeps the hub and every
  member side by side, {accounts_at_once()} at a time (`ACCOUNTS_AT_ONCE`), as a hub without `SWEEP_QUEUE_URL` does;
  **organization, fanned out**: as infra/template.yaml deploys a hub (`SWEEP_QUEUE_URL` = its request queue,
  `SWEEP_ACCOUNTS_PER_INVOCATION={SWEEP_ACCOUNTS_PER_INVOCATION}`): each run's scheduled invocation puts one message
  per account on an SQS queue of the emulator, and `scripts/storm.py`'s event source mapping (batches of up to 10,
  ReportBatchItemFailures, failed records back after {args.retry_delay} s) hands them to {args.sqs_concurrency}
  processes (the template's `SqsMaxConcurrency`); a run lasts until every message is resolved;
  **one account**: the same {args.accounts * args.instances_per_account} instances in the hub's own VPC, swept by a
  single-account deployment (no `MEMBER_ACCOUNTS`), one invocation a run: a simple single-account variant of the
  fleet sweep with the same settings, not `scripts/fleet.py`'s mixed fleet.
- After each run every account is read from the outside (without latency, outside the figures) with its own
  credentials: our sessions, filters and targets by our tag, the hub's RAM share, and the ledger table. The runs
  stop once every wanted ENI has exactly one of our sessions, to the NLB's target, and nothing of ours is
  elsewhere or unused; then one more run, with nothing to do.
- Read from: the emulator's call log (mutating calls served and throttled, `AssumeRole`, RAM, `Scan` and Describe
  calls, its lock); EC2 per account; the ledger; the sweep's answers.

{chr(10).join(table)}

{chr(10).join(per_run)}

The buckets' bound is what the per-account buckets allow: each account's served mutating calls ÷
{args.refill:g}/s, the accounts taken as many at a time as the scenario sweeps at once, in the sweep's order (the hub
first), burst not counted. The emulator serves every AWS call under one lock (contract §6), so its own serial work
is a floor on the wall time here that AWS, which serves accounts and calls in parallel, does not have; moto's
`Scan` is slow (about a second for a few thousand items under that lock). `AssumeRole` is counted from the call
log, which names the caller's account, not the role's: the count per member is the total over the members. The
floor of mutating calls per ENI is the minimum the model allows: one session per ENI, one filter with its
{max(s['figures']['rules'] for s in measured)} rules in each account with sources (a session's filter is in its
account), one target in the hub.
"""
    write_section(args.output, section, (BEGIN, END))
    print(f"\nwritten to the organization section of {args.output}")


def measure(args, mode):
    emulator = Emulator(sys.executable)
    try:
        scenario = setup(emulator, args, mode)
        print(f"{MODES[mode]}: {len(scenario['accounts'])} account(s), {scenario['wanted']} ENIs wanted; "
              f"set up in {scenario['setup_seconds']:.1f} s", flush=True)
        runs, counts, elapsed = sweep(args, emulator, scenario)
        scenario["runs"] = runs
        scenario["figures"] = figures(args, scenario, runs, counts, elapsed)
        return scenario
    finally:
        emulator.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--accounts", type=int, default=20, help="member accounts")
    parser.add_argument("--instances-per-account", type=int, default=100)
    parser.add_argument("--scenarios", default="invocation,fan-out,single",
                        help=f"which to measure, of {', '.join(MODES)} (comma-separated)")
    parser.add_argument("--burst", type=float, default=20)
    parser.add_argument("--refill", type=float, default=10, help="tokens per second, per account")
    parser.add_argument("--pace", type=float, default=10,
                        help="the function's MUTATING_CALLS_PER_SECOND (0: unpaced)")
    parser.add_argument("--timeout-seconds", type=int, default=60, help="each invocation's deadline")
    parser.add_argument("--claim-lease-seconds", type=int, default=0,
                        help="the function's CLAIM_LEASE_SECONDS (default: --timeout-seconds + 60, as the template)")
    parser.add_argument("--max-runs", type=int, default=50)
    parser.add_argument("--stall-runs", type=int, default=3,
                        help="stop after this many runs in a row that mirror nothing more (0: never)")
    parser.add_argument("--sqs-concurrency", type=int, default=SQS_MAX_CONCURRENCY,
                        help="fan-out: processes the queue feeds (the template's SqsMaxConcurrency)")
    parser.add_argument("--retry-delay", type=int, default=2,
                        help="fan-out: seconds before a record the function failed is delivered again")
    parser.add_argument("--page-size", type=int, default=1000,
                        help="the emulator's page for mirroring Describe calls (AWS's largest; its default is 2)")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    parser.add_argument("--dump", metavar="DIR",
                        help="write each run's answer, state and call log, and the function's log, into DIR")
    parser.add_argument("--rust-log", default="info", help="the function's RUST_LOG with --dump")
    args = parser.parse_args()
    modes = [m.strip() for m in args.scenarios.split(",") if m.strip()]
    if (args.accounts < 1 or args.accounts > 99 or args.instances_per_account < 1 or args.refill <= 0
            or args.max_runs < 1 or args.timeout_seconds < 1 or args.pace < 0 or args.sqs_concurrency < 1
            or not modes or any(m not in MODES for m in modes)):
        parser.error("--accounts must be 1 to 99, --instances-per-account, --max-runs, --timeout-seconds and "
                     f"--sqs-concurrency at least 1, --refill above 0, --pace not negative, --scenarios of {list(MODES)}")

    scenarios = {}
    for mode in MODES:
        if mode in modes:
            scenarios[mode] = measure(args, mode)
    report(args, scenarios)
    sys.exit(0 if all(s["figures"]["converged"] for s in scenarios.values()) else 1)


if __name__ == "__main__":
    main()
