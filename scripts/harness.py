"""The runtime harness for running the function's binary locally, shared by
the benchmarks scripts/bench.py and scripts/storm.py: a small Lambda Runtime
API of our own, the AWS emulator (tests/emulator/emulator.py) started and
stopped as a process, boto3 clients against it, the ledger table as
infra/template.yaml defines it, the environment Lambda gives the function,
starting the function's process and reading its peak memory, and the
constants both share. It is a library, not a script: run the benchmarks.
"""

import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import yaml
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "us-east-1"
# What an in-Region EC2 or DynamoDB call costs in network and service time,
# slept by the emulator outside its lock (contract §6).
LATENCY_MS = 25


# --- the Lambda Runtime API ---------------------------------------------------

class RuntimeApi:
    """Enough of https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html
    to run a function: hands out invocations and collects their answers, and
    notes when the function first asks for work."""

    PREFIX = "/2018-06-01/runtime"

    def __init__(self):
        self.pending = queue.Queue()
        self.answers = {}
        self.answered = threading.Condition()
        self.first_poll = None
        self.handed_at = {}
        # The function's timeout, as Lambda would give it (the deadline header).
        self.timeout_seconds = 300
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != api.PREFIX + "/invocation/next":
                    return self.reply(404)
                if api.first_poll is None:
                    api.first_poll = time.perf_counter()
                pending = api.pending
                request_id, payload = pending.get()
                api.handed_at[request_id] = time.perf_counter()
                deadline = int((time.time() + api.timeout_seconds) * 1000)
                self.reply(200, payload, [
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:us-east-1:123456789012:function:traffic-mirroring"),
                    ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
                    ("Content-Type", "application/json"),
                ])

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = self.path[len(api.PREFIX):].strip("/").split("/")
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    with api.answered:
                        api.answers[parts[1]] = (time.perf_counter(), parts[2], body)
                        api.answered.notify_all()
                    return self.reply(202, b"{}")
                if parts == ["init", "error"]:
                    print("init error:", body.decode(errors="replace"), file=sys.stderr)
                    return self.reply(202, b"{}")
                return self.reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def invoke(self, payload):
        """Returns (seconds from hand-out to answer, the answer)."""
        request_id = str(uuid.uuid4())
        self.pending.put((request_id, json.dumps(payload).encode()))
        with self.answered:
            if not self.answered.wait_for(lambda: request_id in self.answers, timeout=self.timeout_seconds + 30):
                raise RuntimeError(f"the function did not answer within {self.timeout_seconds + 30} s")
            answered_at, kind, body = self.answers.pop(request_id)
        if kind != "response":
            raise RuntimeError(f"invocation error: {body!r}")
        return answered_at - self.handed_at.pop(request_id), json.loads(body)


# --- the emulator ---------------------------------------------------------------

class Emulator:
    def __init__(self, python):
        self.process = subprocess.Popen(
            [python, os.path.join(ROOT, "tests/emulator/emulator.py"), "--port", "0"],
            stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("EMULATOR_READY"):
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.endpoint = f"http://127.0.0.1:{line.strip().split('port=')[1]}"
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()

    def control(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.endpoint}/_emulator/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read() or b"null")

    def calls(self):
        return self.control("GET", "calls")["calls"]

    def clear_calls(self):
        self.control("DELETE", "calls")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def client(emulator, service):
    return boto3.client(service, endpoint_url=emulator.endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1}))


class CfnLoader(yaml.SafeLoader):
    """Reads a CloudFormation template, leaving intrinsic functions (!Ref …) as None."""


CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def create_table(emulator, name):
    with open(os.path.join(ROOT, "infra/template.yaml")) as template:
        table = yaml.load(template, Loader=CfnLoader)["Resources"]["LedgerTable"]["Properties"]
    client(emulator, "dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=table["AttributeDefinitions"], KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=[{k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                                for index in table["GlobalSecondaryIndexes"]])


# --- the function -----------------------------------------------------------------

def function_env(emulator, runtime, table, bus):
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update({
        "AWS_LAMBDA_RUNTIME_API": runtime.address,
        "AWS_LAMBDA_FUNCTION_NAME": "traffic-mirroring",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/traffic-mirroring",
        # As Lambda provides them: region and credentials from the environment.
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": emulator.endpoint,
        "TABLE_NAME": table,
        "EVENT_BUS_NAME": bus,
        # Closed by default: the benchmark's deployment allows any ENI.
        "ALLOWED_TARGETS": "*",
        "ALLOWED_SOURCES": "*",
        "RUST_LOG": "warn",
    })
    return env


def start_function(binary, env, runtime, log=None):
    """Starts the function's process; its output goes to `log` (an open
    file) if given, else nowhere. Answers (process, seconds to its first poll)."""
    # A fresh queue: a killed process's poll still blocks on the old one and
    # must not take the new process's invocations.
    runtime.pending = queue.Queue()
    runtime.first_poll = None
    started = time.perf_counter()
    output = subprocess.DEVNULL if log is None else log
    process = subprocess.Popen([binary], env=env, stdout=output, stderr=output)
    deadline = started + 10
    while runtime.first_poll is None and time.perf_counter() < deadline:
        time.sleep(0.0005)
    if runtime.first_poll is None:
        process.kill()
        raise RuntimeError("the function never polled the Runtime API")
    return process, runtime.first_poll - started


def peak_rss_mb(process):
    with open(f"/proc/{process.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- the machine ----------------------------------------------------------------------

def machine_description():
    """The machine a figure was measured on, for the record beside it."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} × {cpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
