#!/usr/bin/env python3
"""The launch-storm benchmark of issue #8: N instances start at once, their
EventBridge `running` events reach the request queue (as the deployed
template routes them: rule -> SQS -> function), and P processes of the real
binary drain it through an event source mapping of our own, against the
emulator with a token bucket on mutating EC2 calls. It then checks from the
outside (EC2, the ledger, the call log, the completion events) that every ENI
was mirrored once, that nothing is left over, how many mutating calls it cost
and how close the wall time came to what the bucket allows; prints a table
and writes it into BENCHMARKS.md between its markers, leaving the rest of the
file as it is.

Run it through scripts/storm.sh, which provides the emulator's Python:
    python scripts/storm.py --binary <release bootstrap> [--instances 200] [--processes 4]
"""

import argparse
import collections
import datetime
import json
import os
import re
import shlex
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests/emulator"))

from harness import (LATENCY_MS, REGION, ROOT, Emulator, RuntimeApi, client,  # noqa: E402
                     create_table, function_env, machine_description, start_function)
from emulator import MUTATING_PREFIXES  # noqa: E402  (the emulator's own definition of "mutating")

ACCOUNT = "123456789012"
NLB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/net/storm-monitor/50dc6c495c0c9188"
# The function's owner value: OWNER is not set, so it is table/<TABLE_NAME>
# (src/config/mod.rs), the ledger table setup() creates.
LEDGER_TABLE = "storm-ledger"
OWNER_TAG = {"Name": "tag:traffic-mirroring:managed-by", "Values": [f"table/{LEDGER_TABLE}"]}
# As the template's RedrivePolicy (SqsMaxReceiveCount): a sixth receive would
# go to the dead-letter queue, so the harness counts it as lost.
MAX_RECEIVES = 5
# Longer than the 300 s deadline harness.RuntimeApi hands out, as the template
# keeps the visibility timeout above the function timeout, so a batch still
# running is never delivered a second time. Failed records come back sooner,
# through ChangeMessageVisibility after --retry-delay.
VISIBILITY_TIMEOUT = 360
BEGIN, END = "<!-- storm:begin -->", "<!-- storm:end -->"
RESOURCE_ID = re.compile(r"tm[fst]-[0-9a-z]+")
# Action records in these states may name EC2 resources that exist
# (RecordStatus::holds_resources in src/ports.rs); failed and removed ones do not.
HOLDING = {"pending", "active", "rollback_incomplete", "removing"}


# --- the fleet ------------------------------------------------------------------------

def setup(emulator, instances):
    """The ledger, the bus with a rule copying every completion event to an
    `events` queue (what callers see), the request queue, and the instances:
    m5.large (Nitro), alternately one and two ENIs."""
    create_table(emulator, LEDGER_TABLE)
    events, sqs, ec2 = client(emulator, "events"), client(emulator, "sqs"), client(emulator, "ec2")
    events.create_event_bus(Name="storm-bus")
    fleet = {"table": LEDGER_TABLE, "bus": "storm-bus"}
    for name in ("requests", "events"):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        fleet[name] = url
        fleet[name + "_arn"] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="completions", EventBusName="storm-bus",
                    EventPattern=json.dumps({"source": ["traffic-mirroring"]}))
    events.put_targets(Rule="completions", EventBusName="storm-bus",
                       Targets=[{"Id": "events", "Arn": fleet["events_arn"]}])

    fleet["vpc"] = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=fleet["vpc"], CidrBlock="10.0.0.0/17")["Subnet"]["SubnetId"]
    launched = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="m5.large", SubnetId=subnet,
                                 MinCount=instances, MaxCount=instances)["Instances"]
    fleet["instances"] = [i["InstanceId"] for i in launched]
    for instance in fleet["instances"][1::2]:
        eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=instance, DeviceIndex=1)
    # What must be mirrored, read back from EC2 rather than assumed.
    fleet["enis"] = {n["NetworkInterfaceId"]
                     for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=fleet["instances"])
                     for reservation in page["Reservations"] for i in reservation["Instances"]
                     for n in i["NetworkInterfaces"]}
    return fleet


def launch_event(instance_id):
    """The EventBridge event EC2 sends when an instance starts running; the
    request queue receives it whole as a message body."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2", "account": ACCOUNT,
            "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION, "resources": [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "state": "running"}}


# --- the event source mapping -------------------------------------------------------------

class EventSourceMapping:
    """What Lambda's SQS event source mapping does with ReportBatchItemFailures,
    one poller per function process (so at most P invocations at once, like
    ScalingConfig.MaximumConcurrency): receive up to 10 records, invoke, delete
    the records not reported as failed, let the failed ones come back after a
    backoff, and drop a record on its sixth receive as the redrive policy would.
    It polls without WaitTimeSeconds: the emulator serves each request under
    one lock, and moto's long poll would hold every other call behind it."""

    def __init__(self, emulator, fleet, expected, retry_delay):
        self.emulator, self.fleet, self.expected = emulator, fleet, expected
        self.retry_delay, self.deadline = retry_delay, float("inf")
        self.lock = threading.Lock()
        self.resolved, self.lost = set(), set()
        self.drained_at = None
        self.counts = collections.Counter()

    def done(self):
        with self.lock:
            return len(self.resolved) >= self.expected

    def resolve(self, message_ids, lost=False):
        with self.lock:
            self.resolved.update(message_ids)
            if lost:
                self.lost.update(message_ids)
            if self.drained_at is None and len(self.resolved) >= self.expected:
                self.drained_at = time.perf_counter()

    def serve(self, slot, binary, env, runtime, processes):
        """One poller's loop, feeding processes[slot]; starts it again if it
        died (a mid-invocation death costs RuntimeApi's 300 s wait)."""
        sqs, url = client(self.emulator, "sqs"), self.fleet["requests"]
        while not self.done() and time.perf_counter() < self.deadline:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=VISIBILITY_TIMEOUT,
                                           AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
            if not messages:
                time.sleep(0.5)
                continue
            expired = [m for m in messages if int(m["Attributes"]["ApproximateReceiveCount"]) > MAX_RECEIVES]
            records = [m for m in messages if m not in expired]
            if expired:
                self.delete(sqs, expired)
                self.resolve({m["MessageId"] for m in expired}, lost=True)
            if not records:
                continue
            if processes[slot].poll() is not None:
                self.count("restarts")
                processes[slot], _ = start_function(binary, env, runtime)
            failed = self.invoke(runtime, records)
            done = [m for m in records if m["MessageId"] not in failed]
            self.resolve({m["MessageId"] for m in self.delete(sqs, done)})
            retry = [m for m in records if m["MessageId"] in failed]
            if retry:
                self.count("records retried", len(retry))
                sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self.retry_delay}
                    for i, m in enumerate(retry)])

    def invoke(self, runtime, records):
        """The ids of the records to deliver again. As Lambda does, an error,
        or an answer naming a record not in the batch, fails the whole batch."""
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": self.fleet["requests_arn"], "awsRegion": REGION} for m in records]}
        ids = {m["MessageId"] for m in records}
        self.count("invocations")
        try:
            _, answer = runtime.invoke(event)
            if answer is None:
                return set()
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures") or []}
        except (RuntimeError, ValueError, AttributeError, TypeError, KeyError) as error:
            print(f"invocation failed: {error}", file=sys.stderr)
            self.count("invocation errors")
            return ids
        return failed if failed <= ids else ids

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def delete(self, sqs, messages):
        """Deletes in batches of 10; returns the messages actually deleted."""
        deleted = []
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            answer = sqs.delete_message_batch(QueueUrl=self.fleet["requests"], Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)])
            deleted += [chunk[int(entry["Id"])] for entry in answer.get("Successful", [])]
        return deleted


def storm(args, emulator, fleet):
    """Starts the processes and their pollers, sets the bucket, sends every
    launch event and waits for the queue to drain (or --timeout, checked
    between invocations). Returns the mapping and the wall time."""
    mapping = EventSourceMapping(emulator, fleet, len(fleet["instances"]), args.retry_delay)
    sqs, processes, pollers, errors = client(emulator, "sqs"), [], [], []

    def poll(slot, runtime, env):
        try:
            mapping.serve(slot, args.binary, env, runtime, processes)
        except Exception as error:  # the harness broke: stop every poller, raise it below
            errors.append(error)
            mapping.deadline = 0

    try:
        for slot in range(args.processes):
            runtime = RuntimeApi()
            env = function_env(emulator, runtime, fleet["table"], fleet["bus"])
            env.update({"DEFAULT_TARGETS": json.dumps({fleet["vpc"]: NLB_ARN}), "MAX_CONCURRENT_ACTIONS": "10"})
            if args.pace:
                # As the template sizes it: the processes together ask no faster than the bucket refills.
                env["MUTATING_CALLS_PER_SECOND"] = f"{args.refill / args.processes:g}"
            processes.append(start_function(args.binary, env, runtime)[0])
            pollers.append(threading.Thread(target=poll, args=(slot, runtime, env), daemon=True))
        emulator.clear_calls()
        emulator.control("POST", "throttle", {"actions": "mutating", "burst": args.burst,
                                              "refill_per_second": args.refill})
        started = time.perf_counter()
        mapping.deadline = started + args.timeout
        for poller in pollers:
            poller.start()
        ids = fleet["instances"]
        for start in range(0, len(ids), 10):
            sqs.send_message_batch(QueueUrl=fleet["requests"], Entries=[
                {"Id": str(j), "MessageBody": json.dumps(launch_event(i))} for j, i in enumerate(ids[start:start + 10])])
        for poller in pollers:
            poller.join()
        if errors:
            raise errors[0]
        return mapping, (mapping.drained_at or time.perf_counter()) - started
    finally:
        mapping.deadline = 0
        for process in processes:
            process.kill()
            process.wait()


# --- measuring from the outside ------------------------------------------------------------

def measure(emulator, fleet, mapping, wall, args):
    """Everything the report needs, read after the storm from the call log,
    EC2 (throttle removed first), the ledger table and the events queue."""
    calls = emulator.calls()
    emulator.control("DELETE", "throttle")
    emulator.control("POST", "config", {"latency_ms": {"default": 0}})
    ec2, sqs = client(emulator, "ec2"), client(emulator, "sqs")

    def describe(kind, key, **filters):
        paginator = ec2.get_paginator(f"describe_traffic_mirror_{kind}")
        return [item for page in paginator.paginate(**filters) for item in page[key]]

    sessions = describe("sessions", "TrafficMirrorSessions", Filters=[OWNER_TAG])
    all_sessions = {s["TrafficMirrorSessionId"] for s in describe("sessions", "TrafficMirrorSessions")}
    targets = describe("targets", "TrafficMirrorTargets", Filters=[OWNER_TAG])
    filters = describe("filters", "TrafficMirrorFilters", Filters=[OWNER_TAG])

    # The ledger: every resource id named by a claim item (target#, filter#,
    # ...) or by an action record that may hold resources, whatever the
    # attribute; and the active records.
    named, active = set(), []
    for page in client(emulator, "dynamodb").get_paginator("scan").paginate(TableName=fleet["table"]):
        for item in page["Items"]:
            action, status = item["pk"]["S"].startswith("action#"), item.get("status", {}).get("S")
            if not action or status in HOLDING:
                named.update(v for value in item.values() for v in strings(value) if RESOURCE_ID.fullmatch(v))
            if action and status == "active":
                active.append(item)

    per_eni = collections.Counter(s["NetworkInterfaceId"] for s in sessions)
    mutating = [c for c in calls if c["service"] == "ec2" and c["action"].startswith(MUTATING_PREFIXES)]
    accepted = [c for c in mutating if c["status"] == 200]
    events = drain(sqs, fleet["events"])
    failures = [e["detail"] for e in events if e["detail-type"] == "TrafficMirroringFailed"]
    ours = [(s["TrafficMirrorSessionId"], "session") for s in sessions] + \
           [(t["TrafficMirrorTargetId"], "target") for t in targets] + \
           [(f["TrafficMirrorFilterId"], "filter") for f in filters]
    leftover = sqs.get_queue_attributes(QueueUrl=fleet["requests"], AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return {
        "expected": len(fleet["enis"]), "mirrored": len(fleet["enis"] & set(per_eni)),
        "extra_sessions": sum(n - 1 for n in per_eni.values() if n > 1),
        "eni_duplicates": sum(1 for n in per_eni.values() if n > 1),
        "nlb_targets": sum(1 for t in targets if t.get("NetworkLoadBalancerArn") == NLB_ARN),
        "filters": len(filters),
        "orphans": sorted(f"{kind} {rid}" for rid, kind in ours if rid not in named),
        "stale_records": sorted(i["pk"]["S"] for i in active if i.get("sessionId", {}).get("S") not in all_sessions),
        "accepted": len(accepted), "accepted_by_action": collections.Counter(c["action"] for c in accepted),
        "throttled": sum(1 for c in mutating if c["error"] == "RequestLimitExceeded"),
        "refused": sum(1 for c in mutating if c["status"] != 200 and c["error"] != "RequestLimitExceeded"),
        "events": collections.Counter(e["detail-type"] for e in events),
        "failures": len(failures), "failure_codes": collections.Counter(f.get("errorCode") for f in failures),
        "throttle_failures": sum(1 for f in failures if f.get("errorCode") == "RequestLimitExceeded"),
        "lost": len(mapping.lost), "drained": mapping.drained_at is not None,
        "left_in_queue": int(leftover["ApproximateNumberOfMessages"]) + int(leftover["ApproximateNumberOfMessagesNotVisible"]),
        "counts": mapping.counts, "wall": wall, "calls": len(calls),
        "busy": sum(c["end"] - c["served"] for c in calls),
        "harness_busy": sum(c["end"] - c["served"] for c in calls if c["service"] == "sqs"), "bound": len(accepted) / args.refill,
    }


def strings(value):
    """The strings in a DynamoDB attribute value, at any depth."""
    if "S" in value:
        return [value["S"]]
    if "SS" in value:
        return list(value["SS"])
    if "L" in value:
        return [s for v in value["L"] for s in strings(v)]
    if "M" in value:
        return [s for v in value["M"].values() for s in strings(v)]
    return []


def drain(sqs, url):
    """Every completion event the bus delivered: the events queue read until
    it answers empty twice (EventBridge's delivery is done by then: the
    function's PutEvents returned before it answered its invocation)."""
    events, empty = [], 0
    while empty < 2:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
        empty = 0 if messages else empty + 1
        events += [json.loads(m["Body"]) for m in messages]
    return events


# --- the report ------------------------------------------------------------------------------

def report(args, fleet, m):
    def verdict(ok):
        return "met" if ok else "**not met**"

    def listing(counter):
        return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0]))) or "none"

    per_eni = m["accepted"] / m["mirrored"] if m["mirrored"] else None
    duplicates = m["extra_sessions"] + max(0, m["nlb_targets"] - 1) + max(0, m["filters"] - 1)
    orphans = len(m["orphans"]) + len(m["stale_records"])
    ratio = m["wall"] / m["bound"] if m["bound"] else None
    sample = f" ({', '.join(m['orphans'][:5])}{', …' if len(m['orphans']) > 5 else ''})" if m["orphans"] else ""
    drained = "" if m["drained"] else f"; **not drained** within {args.timeout} s, {m['left_in_queue']} messages left"
    rows = [
        ("ENIs mirrored / expected", "all", f"{m['mirrored']} / {m['expected']}", verdict(m["mirrored"] == m["expected"])),
        ("duplicates", "0",
         f"{duplicates}: {m['eni_duplicates']} ENIs with more than one of our sessions ({m['extra_sessions']} extra); "
         f"{m['nlb_targets']} of our targets for the NLB; {m['filters']} filters of ours", verdict(duplicates == 0)),
        ("orphans", "0",
         f"{orphans}: {len(m['orphans'])} of our EC2 resources not in the ledger{sample}; "
         f"{len(m['stale_records'])} active ledger records whose session is not in EC2", verdict(orphans == 0)),
        ("mutating EC2 calls per mirrored ENI", "≤ 1.2",
         f"{'n/a' if per_eni is None else f'{per_eni:.3f}'} ({m['accepted']} accepted: {listing(m['accepted_by_action'])}); "
         f"{m['throttled']} more throttled (RequestLimitExceeded), {m['refused']} refused otherwise",
         verdict(per_eni is not None and per_eni <= 1.2)),
        ("throttling errors reaching a caller", "0",
         f"{m['throttle_failures']} RequestLimitExceeded failure events; {m['lost']} messages lost "
         f"(received more than {MAX_RECEIVES} times); failure events of any kind: {m['failures']} "
         f"({listing(m['failure_codes'])})", verdict(m["throttle_failures"] == 0 and m["lost"] == 0)),
        ("wall time, first send → queue drained, vs the bucket's bound", "≤ 1.5×",
         f"{m['wall']:.1f} s vs {m['bound']:.1f} s ({m['accepted']} accepted ÷ {args.refill:g}/s): "
         f"{'n/a' if ratio is None else f'{ratio:.3f}×'}{drained}",
         verdict(m["drained"] and ratio is not None and ratio <= 1.5)),
    ]
    table = ["| figure | target | measured | |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    print("\n".join(table))
    counts = m["counts"]
    delivery = (f"{counts['invocations']} invocations, {counts['records retried']} records handed back "
                f"(batchItemFailures or a failed invocation), {counts['invocation errors']} invocation errors, "
                f"{counts['restarts']} process restarts; completion events: {listing(m['events'])}; "
                f"the emulator's own work, one call at a time under its lock: {m['busy']:.1f} s "
                f"for {m['calls']} AWS calls, {m['harness_busy']:.1f} s of it the harness's own SQS calls "
                f"(moto's ReceiveMessage grows with the queue)")
    print(delivery)

    command = os.environ.get("BENCH_COMMAND") or "python " + shlex.join(["scripts/storm.py"] + sys.argv[1:])
    built = datetime.datetime.fromtimestamp(os.path.getmtime(args.binary), datetime.timezone.utc)
    pace = (f"each process paces its mutating calls at `MUTATING_CALLS_PER_SECOND={args.refill / args.processes:g}` "
            f"(refill ÷ processes)" if args.pace else "processes unpaced (no `MUTATING_CALLS_PER_SECOND`)")
    section = f"""## Launch storm

Latest figures, from `{command.strip()}` (the command that reproduces them;
issue #8's "Measured").

- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}
- Machine: {machine_description()}
- Binary: `{os.path.basename(args.binary)}`, built {built.strftime('%Y-%m-%d %H:%M UTC')}
- Parameters: {len(fleet['instances'])} instances ({m['expected']} ENIs), {args.processes} processes, bucket on mutating EC2 calls burst {args.burst:g} and refill {args.refill:g}/s, {LATENCY_MS} ms latency per AWS call, retry delay {args.retry_delay} s
- The storm: m5.large instances (Nitro) in one VPC, alternately one and two
  ENIs, no tags; `DEFAULT_TARGETS` maps the VPC to a Network Load Balancer
  target, so every ENI gets the default (mirror everything) filter;
  `MAX_CONCURRENT_ACTIONS=10`; {pace}.
- Delivery: one EC2 `running` event per instance, whole, as the body of an
  SQS message (as the template routes launches). Each process of the binary
  is fed by its own poller acting as the event source mapping: batches of up
  to 10, records named in `batchItemFailures` visible again after the retry
  delay, a message received more than {MAX_RECEIVES} times counted as lost (the
  dead-letter queue would take it).
- Read from: the emulator's call log (mutating calls, throttles); EC2 by our
  tag and the ledger table (mirrored ENIs, duplicates, orphans); the
  completion events, copied to a queue by a rule on the bus (failures).

{chr(10).join(table)}

{delivery}.

The bound is the time the bucket needs to hand out the mutating calls that
were accepted (accepted ÷ refill); as its first {args.burst:g} tokens are free, no run
can beat {max(0.0, (m['accepted'] - args.burst) / args.refill):.1f} s here.
"""
    write_section(args.output, section)
    print(f"\nwritten to the storm section of {args.output}")


def write_section(path, section, markers=(BEGIN, END)):
    """Replaces what lies between the markers, or appends the markers and the
    section at the end; every other byte of the file stays as it was."""
    opening, closing = markers
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = f"{opening}\n{section.strip()}\n{closing}"
    begin = text.find(opening)
    end = text.find(closing, begin) if begin >= 0 else -1
    if begin >= 0 and end >= 0:
        text = text[:begin] + block + text[end + len(closing):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as out:
        out.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--burst", type=float, default=20)
    parser.add_argument("--refill", type=float, default=10, help="tokens per second")
    parser.add_argument("--pace", action="store_true",
                        help="each process paces its mutating calls at refill / processes (MUTATING_CALLS_PER_SECOND)")
    parser.add_argument("--retry-delay", type=int, default=2, help="seconds before a failed record is visible again")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="stop polling after this many seconds (an invocation under way still finishes)")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = parser.parse_args()
    if args.instances < 1 or args.processes < 1 or args.refill <= 0:
        parser.error("--instances and --processes must be at least 1, --refill above 0")

    emulator = Emulator(sys.executable)
    try:
        fleet = setup(emulator, args.instances)
        emulator.control("POST", "config", {"latency_ms": {"default": LATENCY_MS}})
        print(f"storm: {len(fleet['instances'])} instances, {len(fleet['enis'])} ENIs, {args.processes} processes")
        mapping, wall = storm(args, emulator, fleet)
        figures = measure(emulator, fleet, mapping, wall, args)
    finally:
        emulator.stop()
    report(args, fleet, figures)


if __name__ == "__main__":
    main()
