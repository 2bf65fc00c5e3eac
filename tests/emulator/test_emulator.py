"""The emulator's own tests: each AWS rule it adds to moto holds, over HTTP,
through boto3, as the product's SDK would see it. One emulator process serves
the whole run; every test starts from a reset."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "emulator.py")
AMI = "ami-12c6146b"  # one of moto's built-in images


def start_emulator():
    process = subprocess.Popen([sys.executable, EMULATOR, "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("EMULATOR_READY port="), line
    return process, f"http://127.0.0.1:{line.strip().split('=')[1]}"


@pytest.fixture(scope="session")
def endpoint():
    process, url = start_emulator()
    yield url
    process.terminate()
    process.wait(timeout=10)


def control(endpoint, method, name, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{endpoint}/_emulator/{name}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


@pytest.fixture(autouse=True)
def fresh(endpoint):
    control(endpoint, "POST", "reset")


def client(endpoint, service, **config):
    # No retries: every call the test makes is exactly one request the emulator sees.
    config.setdefault("retries", {"total_max_attempts": 1})
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(**config))


@pytest.fixture
def ec2(endpoint):
    return client(endpoint, "ec2")


@pytest.fixture
def raw_ec2(endpoint):
    """Without boto3's own parameter validation, so out-of-range values reach the emulator."""
    return client(endpoint, "ec2", parameter_validation=False)


@pytest.fixture
def subnet(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]


def eni(ec2, subnet):
    return ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]


def instance(ec2, subnet, instance_type="m5.large"):
    """(instance id, primary ENI id) of a new instance."""
    run = ec2.run_instances(ImageId=AMI, InstanceType=instance_type, SubnetId=subnet, MinCount=1, MaxCount=1)
    found = run["Instances"][0]
    return found["InstanceId"], found["NetworkInterfaces"][0]["NetworkInterfaceId"]


def target(ec2, eni_id, **extra):
    return ec2.create_traffic_mirror_target(NetworkInterfaceId=eni_id, **extra)["TrafficMirrorTarget"]["TrafficMirrorTargetId"]


def new_filter(ec2, **extra):
    return ec2.create_traffic_mirror_filter(**extra)["TrafficMirrorFilter"]["TrafficMirrorFilterId"]


def session(ec2, source, target_id, filter_id, number, **extra):
    return ec2.create_traffic_mirror_session(NetworkInterfaceId=source, TrafficMirrorTargetId=target_id,
                                             TrafficMirrorFilterId=filter_id, SessionNumber=number,
                                             **extra)["TrafficMirrorSession"]


def rule(ec2, filter_id, number, direction="ingress", **extra):
    params = {"RuleAction": "accept", "SourceCidrBlock": "0.0.0.0/0", "DestinationCidrBlock": "0.0.0.0/0", **extra}
    return ec2.create_traffic_mirror_filter_rule(TrafficMirrorFilterId=filter_id, TrafficDirection=direction,
                                                 RuleNumber=number, **params)["TrafficMirrorFilterRule"]


def failure(call, *args, **kwargs):
    with pytest.raises(ClientError) as raised:
        call(*args, **kwargs)
    return raised.value.response


def error_code(call, *args, **kwargs):
    return failure(call, *args, **kwargs)["Error"]["Code"]


def tags(resource_type, **pairs):
    return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in pairs.items()]}]


def sessions(ec2, **kwargs):
    pages = ec2.get_paginator("describe_traffic_mirror_sessions").paginate(**kwargs)
    return [s for p in pages for s in p["TrafficMirrorSessions"]]


# ---------------------------------------------------------------- the process and control API

def test_health_answers(endpoint):
    assert control(endpoint, "GET", "health") == {"ok": True}


def test_unknown_and_malformed_control_calls_are_refused(endpoint):
    with pytest.raises(urllib.error.HTTPError) as raised:
        control(endpoint, "GET", "nonsense")
    assert raised.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as raised:
        control(endpoint, "POST", "throttle", {"burst": 1})
    assert raised.value.code == 400
    for bad in ({"actions": "everything", "burst": 0, "refill_per_second": 0},
                {"actions": "all", "burst": -1, "refill_per_second": 0},
                {"actions": "all", "service": ["ec2"], "burst": 0, "refill_per_second": 0}):
        with pytest.raises(urllib.error.HTTPError) as raised:
            control(endpoint, "POST", "throttle", bad)
        assert raised.value.code == 400, bad


def test_moto_api_passes_through(endpoint):
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json") as response:
        assert response.status == 200 and isinstance(json.loads(response.read()), dict)


def test_reset_clears_moto_and_mirroring_and_settings(endpoint, ec2, subnet):
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    session(ec2, eni(ec2, subnet), t, f, 1)
    control(endpoint, "POST", "config", {"page_size": 7, "index_lag_ms": 500})
    control(endpoint, "POST", "faults", {"action": "DescribeVpcs", "code": "InternalError"})
    control(endpoint, "POST", "throttle", {"actions": "all", "service": "dynamodb", "burst": 0, "refill_per_second": 0})
    control(endpoint, "POST", "reset")
    assert ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"] == []
    assert ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"] == []
    assert ec2.describe_network_interfaces()["NetworkInterfaces"] == []
    assert control(endpoint, "GET", "config") == {"page_size": 2, "latency_ms": {"default": 0}, "index_lag_ms": 0}
    assert control(endpoint, "GET", "faults") == {"faults": []}
    assert control(endpoint, "GET", "throttle") == {"buckets": []}
    ec2.describe_vpcs()


def test_the_emulator_exits_when_its_parent_dies():
    # A parent that starts the emulator, reports its pid and exits at once.
    parent = subprocess.run(
        [sys.executable, "-c",
         "import subprocess, sys; p = subprocess.Popen([sys.executable, sys.argv[1], '--port', '0'], "
         "stdout=subprocess.PIPE, text=True); p.stdout.readline(); print(p.pid)", EMULATOR],
        capture_output=True, text=True, timeout=30, check=True)
    pid = int(parent.stdout.strip())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    assert not alive(pid)


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return "State:\tZ" not in status.read()  # a zombie has exited already
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- Traffic Mirroring: shapes

def test_a_session_round_trips_with_its_fields(ec2, subnet):
    source, t = eni(ec2, subnet), target(ec2, eni(ec2, subnet))
    f = new_filter(ec2)
    created = session(ec2, source, t, f, 5, PacketLength=100, VirtualNetworkId=7, Description="d",
                      TagSpecifications=tags("traffic-mirror-session", k="v"))
    found = ec2.describe_traffic_mirror_sessions(TrafficMirrorSessionIds=[created["TrafficMirrorSessionId"]])
    found = found["TrafficMirrorSessions"][0]
    assert found == created
    assert created["TrafficMirrorSessionId"].startswith("tms-") and len(created["TrafficMirrorSessionId"]) == 21
    assert (found["SessionNumber"], found["PacketLength"], found["VirtualNetworkId"]) == (5, 100, 7)
    assert (found["NetworkInterfaceId"], found["TrafficMirrorTargetId"], found["TrafficMirrorFilterId"]) == (source, t, f)
    assert (found["Description"], found["OwnerId"], found["Tags"]) == ("d", "123456789012", [{"Key": "k", "Value": "v"}])


def test_targets_filters_and_rules_round_trip(ec2, subnet):
    target_eni = eni(ec2, subnet)
    made = ec2.create_traffic_mirror_target(NetworkInterfaceId=target_eni, Description="t",
                                            TagSpecifications=tags("traffic-mirror-target", a="b"))["TrafficMirrorTarget"]
    assert (made["Type"], made["NetworkInterfaceId"], made["Tags"]) == ("network-interface", target_eni, [{"Key": "a", "Value": "b"}])
    assert ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"] == [made]
    f = new_filter(ec2, Description="f")
    made_rule = rule(ec2, f, 10, Protocol=6, DestinationPortRange={"FromPort": 80, "ToPort": 443}, Description="r")
    assert made_rule["DestinationPortRange"] == {"FromPort": 80, "ToPort": 443}
    assert "SourcePortRange" not in made_rule and made_rule["Protocol"] == 6
    assert made_rule["TrafficMirrorFilterRuleId"].startswith("tmfr-")
    described = ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"][0]
    assert described["IngressFilterRules"] == [made_rule] and described["EgressFilterRules"] == []
    assert ec2.describe_traffic_mirror_filter_rules(TrafficMirrorFilterId=f)["TrafficMirrorFilterRules"] == [made_rule]


def test_load_balancer_targets_have_their_types(ec2):
    nlb = ec2.create_traffic_mirror_target(
        NetworkLoadBalancerArn="arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n/1")
    gwlbe = ec2.create_traffic_mirror_target(GatewayLoadBalancerEndpointId="vpce-0123456789abcdef0")
    assert nlb["TrafficMirrorTarget"]["Type"] == "network-load-balancer"
    assert gwlbe["TrafficMirrorTarget"]["Type"] == "gateway-load-balancer-endpoint"


# ---------------------------------------------------------------- Traffic Mirroring: AWS's rules

NO_ENI, NO_TARGET, NO_FILTER = "eni-0123456789abcdef0", "tmt-0123456789abcdef0", "tmf-0123456789abcdef0"
NO_SESSION, NO_RULE = "tms-0123456789abcdef0", "tmfr-0123456789abcdef0"


def test_unknown_ids_and_enis_answer_not_found(ec2, subnet):
    deletes = [
        (ec2.delete_traffic_mirror_session, {"TrafficMirrorSessionId": NO_SESSION}, "InvalidTrafficMirrorSessionId.NotFound"),
        (ec2.delete_traffic_mirror_target, {"TrafficMirrorTargetId": NO_TARGET}, "InvalidTrafficMirrorTargetId.NotFound"),
        (ec2.delete_traffic_mirror_filter, {"TrafficMirrorFilterId": NO_FILTER}, "InvalidTrafficMirrorFilterId.NotFound"),
        (ec2.delete_traffic_mirror_filter_rule, {"TrafficMirrorFilterRuleId": NO_RULE},
         "InvalidTrafficMirrorFilterRuleId.NotFound"),
    ]
    for call, params, code in deletes:
        assert error_code(call, **params) == code
    assert error_code(target, ec2, NO_ENI) == "InvalidNetworkInterfaceID.NotFound"
    t, f, source = target(ec2, eni(ec2, subnet)), new_filter(ec2), eni(ec2, subnet)
    assert error_code(session, ec2, NO_ENI, t, f, 1) == "InvalidNetworkInterfaceID.NotFound"
    assert error_code(session, ec2, source, NO_TARGET, f, 1) == "InvalidTrafficMirrorTargetId.NotFound"
    assert error_code(session, ec2, source, t, NO_FILTER, 1) == "InvalidTrafficMirrorFilterId.NotFound"
    assert error_code(rule, ec2, NO_FILTER, 1) == "InvalidTrafficMirrorFilterId.NotFound"


def test_describing_unknown_ids_answers_not_found(ec2):
    describes = [
        (ec2.describe_traffic_mirror_sessions, {"TrafficMirrorSessionIds": [NO_SESSION]},
         "InvalidTrafficMirrorSessionId.NotFound"),
        (ec2.describe_traffic_mirror_targets, {"TrafficMirrorTargetIds": [NO_TARGET]},
         "InvalidTrafficMirrorTargetId.NotFound"),
        (ec2.describe_traffic_mirror_filters, {"TrafficMirrorFilterIds": [NO_FILTER]},
         "InvalidTrafficMirrorFilterId.NotFound"),
        (ec2.describe_traffic_mirror_filter_rules, {"TrafficMirrorFilterRuleIds": [NO_RULE]},
         "InvalidTrafficMirrorFilterRuleId.NotFound"),
        (ec2.describe_traffic_mirror_filter_rules, {"TrafficMirrorFilterId": NO_FILTER},
         "InvalidTrafficMirrorFilterId.NotFound"),
    ]
    for call, params, code in describes:
        assert error_code(call, **params) == code


def test_an_eni_takes_at_most_three_sessions_with_distinct_numbers(ec2, subnet):
    source = eni(ec2, subnet)
    f = new_filter(ec2)
    session(ec2, source, target(ec2, eni(ec2, subnet)), f, 1)
    response = failure(session, ec2, source, target(ec2, eni(ec2, subnet)), f, 1)
    assert response["Error"]["Code"] == "InvalidParameterValue" and "already in use" in response["Error"]["Message"]
    session(ec2, source, target(ec2, eni(ec2, subnet)), f, 2)
    session(ec2, source, target(ec2, eni(ec2, subnet)), f, 3)
    assert error_code(session, ec2, source, target(ec2, eni(ec2, subnet)), f, 4) == "TrafficMirrorSessionsPerInterfaceLimitExceeded"


def test_an_eni_target_takes_at_most_ten_sources(ec2, subnet):
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    first = eni(ec2, subnet)
    session(ec2, first, t, f, 1)
    for _ in range(9):
        session(ec2, eni(ec2, subnet), t, f, 1)
    assert error_code(session, ec2, eni(ec2, subnet), t, f, 1) == "TrafficMirrorSourcesPerTargetLimitExceeded"
    session(ec2, first, t, f, 2)  # a source already counted is no new source


def test_load_balancer_targets_have_no_source_limit(ec2, subnet):
    t = ec2.create_traffic_mirror_target(
        NetworkLoadBalancerArn="arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n/1"
    )["TrafficMirrorTarget"]["TrafficMirrorTargetId"]
    f = new_filter(ec2)
    for _ in range(11):
        session(ec2, eni(ec2, subnet), t, f, 1)


def test_session_parameters_are_range_checked(raw_ec2, subnet):
    ec2 = raw_ec2
    t, f, source = target(ec2, eni(ec2, subnet)), new_filter(ec2), eni(ec2, subnet)
    for bad in ({"number": 0}, {"number": 32767}, {"number": 1, "PacketLength": 0},
                {"number": 1, "PacketLength": 8501}, {"number": 1, "VirtualNetworkId": 16777216}):
        number = bad.pop("number")
        assert error_code(session, ec2, source, t, f, number, **bad) == "InvalidParameterValue", bad
    assert session(ec2, source, t, f, 32766, PacketLength=8500)["PacketLength"] == 8500


def test_virtual_network_ids_are_chosen_unique_when_absent(ec2, subnet):
    f = new_filter(ec2)
    vnis = {session(ec2, eni(ec2, subnet), target(ec2, eni(ec2, subnet)), f, 1)["VirtualNetworkId"] for _ in range(5)}
    assert len(vnis) == 5 and all(1 <= v <= 16777215 for v in vnis)


def test_a_target_eni_cannot_be_a_source(ec2, subnet):
    target_eni = eni(ec2, subnet)
    t, f = target(ec2, target_eni), new_filter(ec2)
    other = target(ec2, eni(ec2, subnet))
    assert error_code(session, ec2, target_eni, t, f, 1) == "InvalidParameterValue"
    response = failure(session, ec2, target_eni, other, f, 1)
    assert response["Error"]["Code"] == "InvalidParameterValue" and "target" in response["Error"]["Message"]


def test_only_the_types_aws_documents_can_be_sources(ec2, subnet):
    """The limitations page: not t2 and other Xen types but C4, D2, G3, G3s,
    H1, I3, M4, P2, P3, R4, X1 and X1e; not the virtualized Nitro families it
    names; not bare metal; every other Nitro type."""
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    for instance_type in ("t2.micro", "m3.medium", "c3.large", "m7i.large", "c7g.large", "m6i.large", "m5.metal"):
        _, primary = instance(ec2, subnet, instance_type)
        assert error_code(session, ec2, primary, t, f, 1) == "NetworkInterfaceNotSupported", instance_type
    for instance_type in ("m5.large", "t3.micro", "m4.large", "c4.large"):
        _, source = instance(ec2, subnet, instance_type)
        assert session(ec2, source, t, f, 1)["SessionNumber"] == 1, instance_type
    assert session(ec2, eni(ec2, subnet), t, f, 1)["SessionNumber"] == 1  # unattached: supported


def test_a_target_eni_on_one_of_the_largest_sizes_takes_a_hundred_sources(ec2, subnet):
    f = new_filter(ec2)
    _, large = instance(ec2, subnet, "m5.24xlarge")
    _, small = instance(ec2, subnet, "m5.large")
    for appliance, limit in ((large, 100), (small, 10)):
        t = target(ec2, appliance)
        for _ in range(limit):
            session(ec2, eni(ec2, subnet), t, f, 1)
        assert error_code(session, ec2, eni(ec2, subnet), t, f, 1) == "TrafficMirrorSourcesPerTargetLimitExceeded"


def test_filter_rule_limits_and_duplicates(ec2):
    f = new_filter(ec2)
    rule(ec2, f, 1)
    assert error_code(rule, ec2, f, 1) == "TrafficMirrorFilterRuleAlreadyExists"
    rule(ec2, f, 1, direction="egress")  # numbers are per direction
    for number in range(2, 10):
        rule(ec2, f, number)
    assert error_code(rule, ec2, f, 50) == "TrafficMirrorFilterRuleLimitExceeded"
    described = ec2.describe_traffic_mirror_filters(TrafficMirrorFilterIds=[f])["TrafficMirrorFilters"][0]
    assert (len(described["IngressFilterRules"]), len(described["EgressFilterRules"])) == (9, 1)
    first = described["IngressFilterRules"][0]["TrafficMirrorFilterRuleId"]
    ec2.delete_traffic_mirror_filter_rule(TrafficMirrorFilterRuleId=first)
    rule(ec2, f, 50)


def test_filter_rule_parameters_are_checked(raw_ec2):
    ec2 = raw_ec2
    f = new_filter(ec2)
    bad = [
        {"number": 0}, {"number": 32767}, {"direction": "sideways"}, {"RuleAction": "maybe"},
        {"Protocol": 1, "SourcePortRange": {"FromPort": 1, "ToPort": 2}},
        {"DestinationPortRange": {"FromPort": 1, "ToPort": 2}},  # no protocol at all
        {"Protocol": 6, "DestinationPortRange": {"FromPort": 1, "ToPort": 65536}},
        {"Protocol": 17, "SourcePortRange": {"FromPort": 9, "ToPort": 8}},
        {"SourceCidrBlock": "not-a-cidr"},
    ]
    for case in bad:
        args = dict(case)
        number, direction = args.pop("number", 1), args.pop("direction", "ingress")
        assert error_code(rule, ec2, f, number, direction, **args) == "InvalidParameterValue", case
    assert rule(ec2, f, 32766, Protocol=17, SourcePortRange={"FromPort": 0, "ToPort": 65535})["RuleNumber"] == 32766


def test_in_use_filters_and_targets_cannot_be_deleted(ec2, subnet):
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    rule(ec2, f, 1)
    s = session(ec2, eni(ec2, subnet), t, f, 1)["TrafficMirrorSessionId"]
    assert error_code(ec2.delete_traffic_mirror_filter, TrafficMirrorFilterId=f) == "TrafficMirrorFilterInUse"
    assert error_code(ec2.delete_traffic_mirror_target, TrafficMirrorTargetId=t) == "TrafficMirrorTargetInUseException"
    assert ec2.delete_traffic_mirror_session(TrafficMirrorSessionId=s)["TrafficMirrorSessionId"] == s
    assert ec2.delete_traffic_mirror_filter(TrafficMirrorFilterId=f)["TrafficMirrorFilterId"] == f
    assert ec2.delete_traffic_mirror_target(TrafficMirrorTargetId=t)["TrafficMirrorTargetId"] == t
    assert ec2.describe_traffic_mirror_filter_rules()["TrafficMirrorFilterRules"] == []  # went with the filter


def test_targets_need_exactly_one_destination(ec2, subnet):
    assert error_code(ec2.create_traffic_mirror_target) == "InvalidParameterCombination"
    assert error_code(ec2.create_traffic_mirror_target, NetworkInterfaceId=eni(ec2, subnet),
                      GatewayLoadBalancerEndpointId="vpce-0123456789abcdef0") == "InvalidParameterCombination"


def test_two_targets_may_share_an_eni(ec2, subnet):
    shared = eni(ec2, subnet)
    assert target(ec2, shared) != target(ec2, shared)
    found = ec2.describe_traffic_mirror_targets(Filters=[{"Name": "network-interface-id", "Values": [shared]}])
    assert len(found["TrafficMirrorTargets"]) == 2


# ---------------------------------------------------------------- client tokens and DryRun

def test_client_tokens_make_target_creates_idempotent(ec2, subnet):
    target_eni = eni(ec2, subnet)
    first = target(ec2, target_eni, ClientToken="tok-1")
    assert target(ec2, target_eni, ClientToken="tok-1") == first
    assert len(ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]) == 1
    assert error_code(target, ec2, eni(ec2, subnet), ClientToken="tok-1") == "IdempotentParameterMismatch"
    ec2.delete_traffic_mirror_target(TrafficMirrorTargetId=first)
    # As AWS: the token still answers with the first result, deleted or not.
    assert target(ec2, target_eni, ClientToken="tok-1") == first
    assert ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"] == []


def test_client_tokens_make_session_filter_and_rule_creates_idempotent(ec2, subnet):
    t, source = target(ec2, eni(ec2, subnet)), eni(ec2, subnet)
    f = new_filter(ec2, ClientToken="f")
    assert new_filter(ec2, ClientToken="f") == f
    assert error_code(new_filter, ec2, ClientToken="f", Description="other") == "IdempotentParameterMismatch"
    r = rule(ec2, f, 1, ClientToken="r")["TrafficMirrorFilterRuleId"]
    assert rule(ec2, f, 1, ClientToken="r")["TrafficMirrorFilterRuleId"] == r
    assert error_code(rule, ec2, f, 2, ClientToken="r") == "IdempotentParameterMismatch"
    s = session(ec2, source, t, f, 1, ClientToken="s")
    assert session(ec2, source, t, f, 1, ClientToken="s") == s
    assert error_code(session, ec2, source, t, f, 2, ClientToken="s") == "IdempotentParameterMismatch"
    assert len(sessions(ec2)) == 1
    # The same token on another action is another token.
    assert new_filter(ec2, ClientToken="s") != f


def test_dry_run_validates_and_changes_nothing(ec2, subnet):
    t, f, source = target(ec2, eni(ec2, subnet)), new_filter(ec2), eni(ec2, subnet)
    response = failure(ec2.create_traffic_mirror_filter, DryRun=True)
    assert response["Error"]["Code"] == "DryRunOperation"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert error_code(session, ec2, source, t, f, 1, DryRun=True) == "DryRunOperation"
    assert error_code(target, ec2, eni(ec2, subnet), DryRun=True) == "DryRunOperation"
    assert error_code(rule, ec2, f, 1, DryRun=True) == "DryRunOperation"
    assert len(ec2.describe_traffic_mirror_filters(MaxResults=5)["TrafficMirrorFilters"]) == 1
    assert ec2.describe_traffic_mirror_filter_rules()["TrafficMirrorFilterRules"] == []
    assert sessions(ec2) == []
    # A call that would fail answers its error, not DryRunOperation.
    assert error_code(session, ec2, "eni-0123456789abcdef0", t, f, 1, DryRun=True) == "InvalidNetworkInterfaceID.NotFound"
    s = session(ec2, source, t, f, 1)["TrafficMirrorSessionId"]
    assert error_code(ec2.delete_traffic_mirror_session, TrafficMirrorSessionId=s, DryRun=True) == "DryRunOperation"
    assert error_code(ec2.delete_traffic_mirror_target, TrafficMirrorTargetId=t, DryRun=True) == "TrafficMirrorTargetInUseException"
    assert len(sessions(ec2)) == 1


# ---------------------------------------------------------------- Describe: paging and filters

def test_describes_page_at_two_by_default(ec2, subnet):
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    made = {session(ec2, eni(ec2, subnet), t, f, 1)["TrafficMirrorSessionId"] for _ in range(5)}
    first = ec2.describe_traffic_mirror_sessions()
    assert len(first["TrafficMirrorSessions"]) == 2 and first["NextToken"]
    assert {s["TrafficMirrorSessionId"] for s in sessions(ec2)} == made
    last = ec2.describe_traffic_mirror_sessions(NextToken=ec2.describe_traffic_mirror_sessions(
        NextToken=first["NextToken"])["NextToken"])
    assert len(last["TrafficMirrorSessions"]) == 1 and "NextToken" not in last
    assert error_code(ec2.describe_traffic_mirror_sessions, NextToken="garbage") == "InvalidNextToken"
    for _ in range(2):
        target(ec2, eni(ec2, subnet)), new_filter(ec2)
    for name, key in (("describe_traffic_mirror_targets", "TrafficMirrorTargets"),
                      ("describe_traffic_mirror_filters", "TrafficMirrorFilters")):
        pages = list(ec2.get_paginator(name).paginate())
        assert len(pages) == 2 and sum(len(p[key]) for p in pages) == 3


def test_page_size_is_configurable_and_max_results_caps_it(endpoint, ec2, raw_ec2):
    for _ in range(7):
        new_filter(ec2)
    control(endpoint, "POST", "config", {"page_size": 10})
    assert len(ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]) == 7
    assert len(ec2.describe_traffic_mirror_filters(MaxResults=5)["TrafficMirrorFilters"]) == 5
    # AWS's range for MaxResults is 5-1000.
    assert error_code(raw_ec2.describe_traffic_mirror_filters, MaxResults=4) == "InvalidParameterValue"


def test_filter_rules_page_and_filter(ec2):
    f, other = new_filter(ec2), new_filter(ec2)
    for number in range(1, 4):
        rule(ec2, f, number)
    egress = rule(ec2, f, 1, direction="egress")["TrafficMirrorFilterRuleId"]
    rule(ec2, other, 1)
    first = ec2.describe_traffic_mirror_filter_rules(TrafficMirrorFilterId=f)
    assert len(first["TrafficMirrorFilterRules"]) == 2  # boto3 has no paginator for this call: page by hand
    second = ec2.describe_traffic_mirror_filter_rules(TrafficMirrorFilterId=f, NextToken=first["NextToken"])
    assert len(second["TrafficMirrorFilterRules"]) == 2 and "NextToken" not in second
    by_direction = ec2.describe_traffic_mirror_filter_rules(
        Filters=[{"Name": "traffic-direction", "Values": ["egress"]}])["TrafficMirrorFilterRules"]
    assert [r["TrafficMirrorFilterRuleId"] for r in by_direction] == [egress]
    by_filter = ec2.describe_traffic_mirror_filter_rules(
        Filters=[{"Name": "traffic-mirror-filter-id", "Values": [other]}])["TrafficMirrorFilterRules"]
    assert len(by_filter) == 1
    by_id = ec2.describe_traffic_mirror_filter_rules(
        Filters=[{"Name": "traffic-mirror-filter-rule-id", "Values": [egress]}])["TrafficMirrorFilterRules"]
    assert len(by_id) == 1


def test_session_filters_or_within_and_across(ec2, subnet):
    sources = [eni(ec2, subnet) for _ in range(5)]
    t, other_target, f = target(ec2, eni(ec2, subnet)), target(ec2, eni(ec2, subnet)), new_filter(ec2)
    for index, source in enumerate(sources):
        extra = {"TagSpecifications": tags("traffic-mirror-session", team="blue")} if index < 2 else {}
        session(ec2, source, t if index % 2 == 0 else other_target, f, 1 + index, VirtualNetworkId=100 + index, **extra)

    def count(*filters):
        return len(sessions(ec2, Filters=[{"Name": n, "Values": v} for n, v in filters]))

    assert count(("network-interface-id", sources[3:])) == 2
    assert count(("tag:team", ["blue"])) == 2
    assert count(("tag:team", ["red"])) == 0
    assert count(("traffic-mirror-target-id", [t])) == 3
    assert count(("traffic-mirror-target-id", [t]), ("tag:team", ["blue"])) == 1
    assert count(("traffic-mirror-filter-id", [f])) == 5
    assert count(("session-number", ["2", "3"])) == 2
    assert count(("virtual-network-id", ["104"])) == 1
    one = sessions(ec2)[0]["TrafficMirrorSessionId"]
    assert count(("traffic-mirror-session-id", [one])) == 1


def test_target_and_filter_filters(ec2, subnet):
    target_eni = eni(ec2, subnet)
    tagged = target(ec2, target_eni, TagSpecifications=tags("traffic-mirror-target", role="collector"))
    target(ec2, eni(ec2, subnet))
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/n/1"
    ec2.create_traffic_mirror_target(NetworkLoadBalancerArn=arn)

    def targets(name, values):
        return ec2.describe_traffic_mirror_targets(Filters=[{"Name": name, "Values": values}], MaxResults=5)["TrafficMirrorTargets"]

    assert [x["TrafficMirrorTargetId"] for x in targets("tag:role", ["collector"])] == [tagged]
    assert [x["TrafficMirrorTargetId"] for x in targets("network-interface-id", [target_eni])] == [tagged]
    assert [x["TrafficMirrorTargetId"] for x in targets("traffic-mirror-target-id", [tagged])] == [tagged]
    assert len(targets("network-load-balancer-arn", [arn])) == 1
    f = new_filter(ec2, TagSpecifications=tags("traffic-mirror-filter", role="web"))
    new_filter(ec2)
    by_tag = ec2.describe_traffic_mirror_filters(Filters=[{"Name": "tag:role", "Values": ["web"]}])
    assert [x["TrafficMirrorFilterId"] for x in by_tag["TrafficMirrorFilters"]] == [f]
    by_id = ec2.describe_traffic_mirror_filters(Filters=[{"Name": "traffic-mirror-filter-id", "Values": [f]}])
    assert len(by_id["TrafficMirrorFilters"]) == 1


# ---------------------------------------------------------------- tags on mirroring resources after creation

def tags_on(ec2, resource_id):
    """The tags a mirroring Describe shows for one target, filter, rule or session."""
    kind = resource_id.split("-")[0]
    if kind == "tmfr":
        found = ec2.describe_traffic_mirror_filter_rules(TrafficMirrorFilterRuleIds=[resource_id])
        return found["TrafficMirrorFilterRules"][0]["Tags"]
    call, ids, key = {"tmt": ("describe_traffic_mirror_targets", "TrafficMirrorTargetIds", "TrafficMirrorTargets"),
                      "tmf": ("describe_traffic_mirror_filters", "TrafficMirrorFilterIds", "TrafficMirrorFilters"),
                      "tms": ("describe_traffic_mirror_sessions", "TrafficMirrorSessionIds", "TrafficMirrorSessions")}[kind]
    return getattr(ec2, call)(**{ids: [resource_id]})[key][0]["Tags"]


def test_create_and_delete_tags_reach_mirroring_resources(ec2, subnet):
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    s = session(ec2, eni(ec2, subnet), t, f, 1)["TrafficMirrorSessionId"]
    r = rule(ec2, f, 1)["TrafficMirrorFilterRuleId"]
    answer = ec2.create_tags(Resources=[t, f, r, s], Tags=[{"Key": "owner", "Value": "lambda"}, {"Key": "x", "Value": ""}])
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    for resource_id in (t, f, r, s):
        assert tags_on(ec2, resource_id) == [{"Key": "owner", "Value": "lambda"}, {"Key": "x", "Value": ""}], resource_id
    found = sessions(ec2, Filters=[{"Name": "tag:owner", "Values": ["lambda"]}])
    assert [x["TrafficMirrorSessionId"] for x in found] == [s]
    ec2.create_tags(Resources=[s], Tags=[{"Key": "owner", "Value": "other"}])  # overwrites
    assert sessions(ec2, Filters=[{"Name": "tag:owner", "Values": ["lambda"]}]) == []
    ec2.delete_tags(Resources=[s], Tags=[{"Key": "owner", "Value": "lambda"}])  # another value: kept
    assert tags_on(ec2, s) == [{"Key": "owner", "Value": "other"}, {"Key": "x", "Value": ""}]
    ec2.delete_tags(Resources=[s], Tags=[{"Key": "owner"}])  # no value: whatever it is
    assert tags_on(ec2, s) == [{"Key": "x", "Value": ""}]
    ec2.delete_tags(Resources=[t, f])  # no tags named: all of them
    assert tags_on(ec2, t) == [] and tags_on(ec2, f) == []
    assert tags_on(ec2, r) == [{"Key": "owner", "Value": "lambda"}, {"Key": "x", "Value": ""}]


def test_tagging_unknown_mirroring_ids_answers_not_found_and_changes_nothing(ec2, subnet):
    f = new_filter(ec2)
    for resource_id, code in ((NO_TARGET, "InvalidTrafficMirrorTargetId.NotFound"),
                              (NO_FILTER, "InvalidTrafficMirrorFilterId.NotFound"),
                              (NO_RULE, "InvalidTrafficMirrorFilterRuleId.NotFound"),
                              (NO_SESSION, "InvalidTrafficMirrorSessionId.NotFound")):
        assert error_code(ec2.create_tags, Resources=[f, resource_id], Tags=[{"Key": "k", "Value": "v"}]) == code
        assert error_code(ec2.delete_tags, Resources=[resource_id]) == code
    assert tags_on(ec2, f) == []


def test_tagging_mirroring_resources_honours_dry_run(ec2):
    f = new_filter(ec2, TagSpecifications=tags("traffic-mirror-filter", k="v"))
    response = failure(ec2.create_tags, Resources=[f], Tags=[{"Key": "a", "Value": "b"}], DryRun=True)
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("DryRunOperation", 412)
    assert error_code(ec2.delete_tags, Resources=[f], DryRun=True) == "DryRunOperation"
    assert tags_on(ec2, f) == [{"Key": "k", "Value": "v"}]
    assert error_code(ec2.create_tags, Resources=[NO_FILTER], Tags=[{"Key": "a", "Value": "b"}],
                      DryRun=True) == "InvalidTrafficMirrorFilterId.NotFound"


def test_tag_calls_mixing_mirroring_and_moto_ids_tag_both_or_neither(ec2, subnet):
    vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    f = new_filter(ec2)

    def vpc_tags():
        return ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0].get("Tags", [])

    ec2.create_tags(Resources=[vpc, f], Tags=[{"Key": "k", "Value": "v"}])
    assert vpc_tags() == tags_on(ec2, f) == [{"Key": "k", "Value": "v"}]
    # moto refuses its part: ours is not applied either.
    assert error_code(ec2.create_tags, Resources=["vpc-0123456789abcdef0", f],
                      Tags=[{"Key": "other", "Value": "v"}]) == "InvalidVpcID.NotFound"
    assert error_code(ec2.delete_tags, Resources=[vpc, f], DryRun=True) == "DryRunOperation"
    assert tags_on(ec2, f) == [{"Key": "k", "Value": "v"}]
    ec2.delete_tags(Resources=[vpc, f], Tags=[{"Key": "k"}])
    assert vpc_tags() == tags_on(ec2, f) == []
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "only", "Value": "moto"}])  # moto's ids alone: moto's call
    assert vpc_tags() == [{"Key": "only", "Value": "moto"}]


# ---------------------------------------------------------------- what moto's own calls do to sessions

def test_deleting_an_eni_deletes_its_sessions_but_not_filter_or_target(ec2, subnet):
    source, kept = eni(ec2, subnet), eni(ec2, subnet)
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    session(ec2, source, t, f, 1)
    session(ec2, source, t, f, 2)
    session(ec2, kept, t, f, 1)
    ec2.delete_network_interface(NetworkInterfaceId=source)
    assert [s["NetworkInterfaceId"] for s in sessions(ec2)] == [kept]
    assert len(ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]) == 1
    assert len(ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]) == 1


def test_terminating_an_instance_deletes_its_sessions(ec2, subnet):
    instance_id, primary = instance(ec2, subnet)
    other = eni(ec2, subnet)
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    session(ec2, primary, t, f, 1)
    session(ec2, other, t, f, 1)
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert [s["NetworkInterfaceId"] for s in sessions(ec2)] == [other]
    assert len(ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]) == 1


def test_stopped_and_terminated_instances_stay_describable_in_their_state(ec2, subnet):
    """The product asks EC2 to confirm a state-change event: the instance must
    still be found, in the state the event names (moto skips the transitions)."""
    stopped, _ = instance(ec2, subnet)
    terminated, _ = instance(ec2, subnet)
    assert ec2.stop_instances(InstanceIds=[stopped])["StoppingInstances"][0]["CurrentState"]["Name"] in (
        "stopping", "stopped")
    assert ec2.terminate_instances(InstanceIds=[terminated])["TerminatingInstances"][0]["CurrentState"]["Name"] in (
        "shutting-down", "terminated")
    for ids in ([stopped, terminated], None):
        found = ec2.describe_instances(**({"InstanceIds": ids} if ids else {}))["Reservations"]
        states = {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}
        assert states[stopped] in ("stopping", "stopped") and states[terminated] in ("shutting-down", "terminated")


def test_rename_gives_enis_and_instances_the_ids_sample_events_name(endpoint, ec2, subnet):
    run = ec2.run_instances(ImageId=AMI, InstanceType="m5.large", SubnetId=subnet, MinCount=1, MaxCount=1,
                            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "k", "Value": "v"}]}])
    made = run["Instances"][0]
    primary = made["NetworkInterfaces"][0]["NetworkInterfaceId"]
    control(endpoint, "POST", "rename", {"from": made["InstanceId"], "to": "i-0abcdef1234567890"})
    control(endpoint, "POST", "rename", {"from": primary, "to": "eni-0123456789abcdef0"})
    found = ec2.describe_instances(InstanceIds=["i-0abcdef1234567890"])["Reservations"][0]["Instances"][0]
    assert found["Tags"] == [{"Key": "k", "Value": "v"}]
    assert found["NetworkInterfaces"][0]["NetworkInterfaceId"] == "eni-0123456789abcdef0"
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    assert session(ec2, "eni-0123456789abcdef0", t, f, 1)["NetworkInterfaceId"] == "eni-0123456789abcdef0"


# ---------------------------------------------------------------- faults, throttling, the log, the lock, latency

def test_faults_skip_then_fail_then_pass(endpoint, ec2):
    control(endpoint, "POST", "faults", {"action": "CreateTrafficMirrorFilter", "code": "InternalError",
                                         "status": 500, "count": 2, "after": 1, "message": "boom"})
    new_filter(ec2)
    response = failure(new_filter, ec2)
    assert (response["Error"]["Code"], response["Error"]["Message"]) == ("InternalError", "boom")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert len(control(endpoint, "GET", "faults")["faults"]) == 1
    assert error_code(new_filter, ec2) == "InternalError"
    assert control(endpoint, "GET", "faults") == {"faults": []}
    new_filter(ec2)
    assert len(ec2.describe_traffic_mirror_filters(MaxResults=5)["TrafficMirrorFilters"]) == 2  # faults changed nothing


def test_a_held_call_is_applied_after_its_client_gave_up(endpoint, ec2):
    control(endpoint, "POST", "delays", {"action": "CreateTrafficMirrorFilter", "delay_ms": 1500, "after": 1})
    new_filter(ec2)  # skipped by `after`: served at once
    impatient = client(endpoint, "ec2", read_timeout=0.3, connect_timeout=1)
    with pytest.raises(Exception):
        new_filter(impatient, ClientToken="late-one")
    assert control(endpoint, "GET", "delays") == {"delays": []}
    time.sleep(1.6)
    filters = ec2.describe_traffic_mirror_filters(MaxResults=5)["TrafficMirrorFilters"]
    assert len(filters) == 2, "the abandoned call was applied all the same"
    # Asked again with its token, EC2 names what the lost call made.
    again = new_filter(ec2, ClientToken="late-one")
    assert again in {f["TrafficMirrorFilterId"] for f in filters}
    assert len(ec2.describe_traffic_mirror_filters(MaxResults=5)["TrafficMirrorFilters"]) == 2, "and makes no other"
    with pytest.raises(urllib.error.HTTPError):
        control(endpoint, "POST", "delays", {"action": "CreateTrafficMirrorFilter", "delay_ms": 0})


def test_a_call_held_until_released_waits_for_the_release_and_no_longer(endpoint, ec2):
    control(endpoint, "POST", "delays", {"action": "CreateTrafficMirrorFilter", "until_released": True})
    made = []
    caller = threading.Thread(target=lambda: made.append(new_filter(ec2)))
    caller.start()
    deadline = time.monotonic() + 10
    while control(endpoint, "GET", "release")["held"] != ["CreateTrafficMirrorFilter"]:
        assert time.monotonic() < deadline, "the call never arrived"
        time.sleep(0.02)
    assert ec2.describe_traffic_mirror_filters(MaxResults=5)["TrafficMirrorFilters"] == [], "not applied while held"
    assert control(endpoint, "POST", "release", {"action": "DescribeVpcs"}) == {"released": 0}, "only what is named"
    assert control(endpoint, "POST", "release", {"action": "CreateTrafficMirrorFilter"}) == {"released": 1}
    caller.join(10)
    assert not caller.is_alive() and len(made) == 1
    assert control(endpoint, "GET", "release") == {"held": []}
    new_filter(ec2)  # the rule was used up: served at once
    assert len(ec2.describe_traffic_mirror_filters(MaxResults=5)["TrafficMirrorFilters"]) == 2


def test_faults_can_be_listed_cleared_and_scoped_to_a_service(endpoint, ec2):
    control(endpoint, "POST", "faults", [{"action": "DescribeVpcs", "code": "InternalError", "service": "dynamodb"},
                                         {"action": "DescribeSubnets", "code": "InternalError"}])
    assert len(control(endpoint, "GET", "faults")["faults"]) == 2
    ec2.describe_vpcs()  # scoped to another service
    control(endpoint, "DELETE", "faults")
    ec2.describe_subnets()


def test_faults_on_json_services_use_their_error_shape(endpoint):
    dynamodb = client(endpoint, "dynamodb")
    dynamodb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    control(endpoint, "POST", "faults", {"action": "PutItem", "code": "ProvisionedThroughputExceededException",
                                         "status": 400, "count": 1, "message": "slow down"})
    response = failure(dynamodb.put_item, TableName="t", Item={"pk": {"S": "a"}})
    assert (response["Error"]["Code"], response["Error"]["Message"]) == ("ProvisionedThroughputExceededException", "slow down")
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"] == "ProvisionedThroughputExceededException"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert dynamodb.scan(TableName="t")["Items"] == []
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}})


def test_token_buckets_throttle_mutating_calls(endpoint, ec2):
    control(endpoint, "POST", "throttle", {"actions": "mutating", "burst": 2, "refill_per_second": 0.001})
    new_filter(ec2)
    new_filter(ec2)
    response = failure(new_filter, ec2)
    assert response["Error"]["Code"] == "RequestLimitExceeded"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    ec2.describe_traffic_mirror_filters()  # reads are not in the "mutating" bucket
    control(endpoint, "DELETE", "throttle")
    new_filter(ec2)


def test_token_buckets_refill_and_name_actions(endpoint):
    dynamodb = client(endpoint, "dynamodb")
    control(endpoint, "POST", "throttle", {"actions": ["ListTables"], "burst": 1, "refill_per_second": 10})
    dynamodb.list_tables()
    response = failure(dynamodb.list_tables)
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("ThrottlingException", 400)
    dynamodb.describe_limits()  # another action
    time.sleep(0.15)
    dynamodb.list_tables()


def test_a_bucket_with_no_tokens_for_all_calls_throttles_every_service_for_ever(endpoint, ec2):
    dynamodb, sqs = client(endpoint, "dynamodb"), client(endpoint, "sqs")
    control(endpoint, "POST", "throttle", {"actions": "all", "burst": 0, "refill_per_second": 0})
    for _ in range(2):
        for call in (ec2.describe_vpcs, ec2.describe_traffic_mirror_sessions, ec2.create_traffic_mirror_filter):
            response = failure(call)
            assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("RequestLimitExceeded", 503)
        response = failure(dynamodb.list_tables)
        assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("ThrottlingException", 400)
        assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ThrottlingException"
        assert error_code(dynamodb.get_item, TableName="t", Key={"pk": {"S": "a"}}) == "ThrottlingException"
        assert error_code(sqs.list_queues) == "ThrottlingException"
        time.sleep(0.2)  # no refill: still throttled
    control(endpoint, "DELETE", "throttle")
    ec2.describe_vpcs()
    dynamodb.list_tables()


def test_a_bucket_can_be_restricted_to_one_service(endpoint, ec2):
    dynamodb = client(endpoint, "dynamodb")
    control(endpoint, "POST", "throttle", {"actions": "all", "service": "dynamodb", "burst": 0, "refill_per_second": 0})
    control(endpoint, "POST", "throttle", {"actions": ["DescribeVpcs"], "service": "dynamodb", "burst": 0,
                                           "refill_per_second": 0})
    assert error_code(dynamodb.list_tables) == "ThrottlingException"
    ec2.describe_vpcs()  # named in a bucket, but of another service
    new_filter(ec2)
    client(endpoint, "sqs").list_queues()
    assert control(endpoint, "GET", "throttle")["buckets"][0] == {
        "actions": "all", "service": "dynamodb", "burst": 0, "refill_per_second": 0}
    control(endpoint, "DELETE", "throttle")
    control(endpoint, "POST", "throttle", {"actions": "mutating", "service": "ec2", "burst": 0, "refill_per_second": 0})
    assert error_code(new_filter, ec2) == "RequestLimitExceeded"
    ec2.describe_vpcs()
    dynamodb.list_tables()


def test_the_call_log_records_every_aws_call(endpoint, ec2):
    sqs, events = client(endpoint, "sqs"), client(endpoint, "events")
    queue = sqs.create_queue(QueueName="q")["QueueUrl"]
    control(endpoint, "DELETE", "calls")
    control(endpoint, "POST", "faults", {"action": "DescribeTrafficMirrorFilters", "code": "InternalError", "status": 500})
    new_filter(ec2)
    error_code(ec2.describe_traffic_mirror_filters)
    sqs.send_message(QueueUrl=queue, MessageBody="m")
    events.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}])
    calls = control(endpoint, "GET", "calls")["calls"]
    assert [(c["service"], c["action"], c["status"]) for c in calls] == [
        ("ec2", "CreateTrafficMirrorFilter", 200), ("ec2", "DescribeTrafficMirrorFilters", 500),
        ("sqs", "SendMessage", 200), ("events", "PutEvents", 200)]
    assert calls[1]["error"] == "InternalError" and calls[0]["error"] is None
    assert all(c["start"] <= c["end"] for c in calls)
    control(endpoint, "DELETE", "calls")
    assert control(endpoint, "GET", "calls") == {"calls": []}


def test_conditional_writes_are_atomic_under_concurrency(endpoint):
    dynamodb = client(endpoint, "dynamodb")
    dynamodb.create_table(TableName="race", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    clients = [client(endpoint, "dynamodb") for _ in range(20)]
    winners, losers = [], []
    barrier = threading.Barrier(20)

    def claim(n):
        barrier.wait()
        try:
            clients[n].put_item(TableName="race", Item={"pk": {"S": "k"}, "by": {"N": str(n)}},
                                ConditionExpression="attribute_not_exists(pk)")
            winners.append(n)
        except ClientError as error:
            losers.append(error.response["Error"]["Code"])

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert losers == ["ConditionalCheckFailedException"] * 19


def test_latency_is_slept_per_action(endpoint, ec2):
    control(endpoint, "POST", "config", {"latency_ms": {"DescribeTrafficMirrorFilters": 100}})
    started = time.monotonic()
    ec2.describe_traffic_mirror_filters()
    assert time.monotonic() - started >= 0.1
    started = time.monotonic()
    ec2.describe_traffic_mirror_targets()
    assert time.monotonic() - started < 0.1


def test_latency_is_an_actions_else_its_services_else_the_default(endpoint, ec2):
    control(endpoint, "POST", "config", {"latency_ms": {"default": 0, "ec2": 200, "DescribeVpcs": 0}})
    started = time.perf_counter()
    ec2.describe_subnets()
    by_service = time.perf_counter() - started
    started = time.perf_counter()
    ec2.describe_vpcs()
    by_action = time.perf_counter() - started
    started = time.perf_counter()
    client(endpoint, "sqs").list_queues()
    by_default = time.perf_counter() - started
    assert by_service >= 0.2 and by_action < 0.15 and by_default < 0.15, (by_service, by_action, by_default)


def test_latency_is_slept_outside_the_lock(endpoint):
    control(endpoint, "POST", "config", {"latency_ms": {"default": 300}})
    clients = [client(endpoint, "ec2") for _ in range(4)]
    threads = [threading.Thread(target=c.describe_traffic_mirror_filters) for c in clients]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.0  # four sleeps overlapped; serialised they would take 1.2 s


def test_aws_requests_are_served_one_at_a_time(endpoint):
    """The lock, seen from the log: the spans in which requests were served never overlap."""
    dynamodb = client(endpoint, "dynamodb")
    dynamodb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    clients = [client(endpoint, "dynamodb") for _ in range(20)]
    control(endpoint, "DELETE", "calls")
    barrier = threading.Barrier(20)

    def put(n):
        barrier.wait()
        for i in range(5):
            clients[n].put_item(TableName="t", Item={"pk": {"S": f"{n}-{i}"}, "blob": {"S": "x" * 20000}})

    threads = [threading.Thread(target=put, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = sorted((c["served"], c["end"]) for c in control(endpoint, "GET", "calls")["calls"])
    assert len(spans) == 100
    assert all(previous_end <= served for (_, previous_end), (served, _) in zip(spans, spans[1:]))


# ---------------------------------------------------------------- DynamoDB: secondary indexes lag

def indexed_table(endpoint):
    """A table keyed by pk and sk, with a GSI on g, as the ledger's indexes are."""
    dynamodb = client(endpoint, "dynamodb")
    dynamodb.create_table(
        TableName="t", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "g")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    return dynamodb


def item(pk, sk="1", **extra):
    return {"pk": {"S": pk}, "sk": {"S": sk}, "g": {"S": "x"}, **{k: {"S": v} for k, v in extra.items()}}


def in_index(dynamodb, **extra):
    answer = dynamodb.query(TableName="t", IndexName="by-g", KeyConditionExpression="g = :g",
                            ExpressionAttributeValues={":g": {"S": "x"}}, **extra)
    return answer, sorted((i["pk"]["S"], i["sk"]["S"]) for i in answer.get("Items", []))


def test_index_queries_do_not_see_recent_writes_of_any_kind(endpoint):
    dynamodb = indexed_table(endpoint)
    for key in ("old", "updated", "transact-updated"):
        dynamodb.put_item(TableName="t", Item=item(key))
    dynamodb.put_item(TableName="t", Item=item("old", "2"))
    time.sleep(1.1)
    control(endpoint, "POST", "config", {"index_lag_ms": 1000})
    assert len(in_index(dynamodb)[1]) == 4  # written more than index_lag_ms ago
    dynamodb.put_item(TableName="t", Item=item("old", "3"))  # same partition key, another item
    dynamodb.put_item(TableName="t", Item=item("put"))
    dynamodb.update_item(TableName="t", Key={"pk": {"S": "updated"}, "sk": {"S": "1"}},
                         UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"S": "new"}})
    dynamodb.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": item("batch")}}]})
    dynamodb.transact_write_items(TransactItems=[
        {"Put": {"TableName": "t", "Item": item("transact")}},
        {"Update": {"TableName": "t", "Key": {"pk": {"S": "transact-updated"}, "sk": {"S": "1"}},
                    "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": {"S": "new"}}}}])
    answer, keys = in_index(dynamodb)
    assert keys == [("old", "1"), ("old", "2")]
    assert (answer["Count"], answer["ScannedCount"]) == (2, 2)
    # The table itself is strongly consistent as far as we care: GetItem, Scan and Query see every write.
    assert dynamodb.get_item(TableName="t", Key={"pk": {"S": "put"}, "sk": {"S": "1"}})["Item"] == item("put")
    assert dynamodb.scan(TableName="t")["Count"] == 8
    assert dynamodb.query(TableName="t", KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": "old"}})["Count"] == 3
    control(endpoint, "POST", "config", {"index_lag_ms": 0})
    assert len(in_index(dynamodb)[1]) == 8


def test_index_lag_is_off_by_default_and_counts_from_each_write(endpoint):
    dynamodb = indexed_table(endpoint)
    dynamodb.put_item(TableName="t", Item=item("a"))
    assert in_index(dynamodb)[1] == [("a", "1")]  # default 0: no lag
    control(endpoint, "POST", "config", {"index_lag_ms": 60000})
    assert in_index(dynamodb)[1] == []
    assert in_index(dynamodb, Select="COUNT")[0]["Count"] == 1  # no items to hide: moto's answer, unfiltered
    dynamodb.delete_item(TableName="t", Key={"pk": {"S": "a"}, "sk": {"S": "1"}})
    dynamodb.put_item(TableName="t", Item=item("b"))
    control(endpoint, "POST", "config", {"index_lag_ms": 300})
    time.sleep(0.35)
    assert in_index(dynamodb)[1] == [("b", "1")]


def test_a_new_vpcs_default_group_admits_its_own_members(ec2):
    """As on AWS (moto's default group admits nothing): the delivery check
    reads these rules, so a target in the default group admits VXLAN from a
    source in it."""
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                   {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    assert len(groups) == 1
    permissions = groups[0]["IpPermissions"]
    assert [p["IpProtocol"] for p in permissions] == ["-1"]
    assert [pair["GroupId"] for pair in permissions[0]["UserIdGroupPairs"]] == [groups[0]["GroupId"]]


def test_put_events_refuses_entries_of_256_kb_or_more(endpoint):
    events = client(endpoint, "events")
    small = {"Source": "traffic-mirroring", "DetailType": "x", "Detail": json.dumps({"a": "b" * 1000})}
    assert events.put_events(Entries=[small])["FailedEntryCount"] == 0
    big = dict(small, Detail=json.dumps({"a": "b" * (256 * 1024)}))
    with pytest.raises(ClientError) as refused:
        events.put_events(Entries=[big])
    assert refused.value.response["Error"]["Code"] == "ValidationException"


# ---------------------------------------------------------------- mirrorctl's view of a deployed stack (moto's own)

def test_a_stacks_function_settings_and_the_callers_identity_are_readable(endpoint):
    """What `mirrorctl --stack NAME` reads, served by moto as it is: the stack's
    TrafficMirroringFunction (DescribeStackResource) names the function, whose
    configuration holds the deployment's settings; GetCallerIdentity names the
    operator. The function's role must exist, so the template makes it (moto's
    Lambda refuses a role IAM does not have, as AWS does); AWS::Serverless
    (SAM) is not expanded by moto, so the function is a plain AWS::Lambda::Function."""
    settings = {"TABLE_NAME": "ledger", "EVENT_BUS_NAME": "completions", "OWNER": "team-a",
                "ALLOWED_TARGETS": "eni-0a1b2c3d4e5f60718,tmt-0123456789abcdef0"}
    template = {"Resources": {
        "FunctionRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}}},
        "TrafficMirroringFunction": {"Type": "AWS::Lambda::Function", "Properties": {
            "Runtime": "provided.al2023", "Handler": "bootstrap", "Code": {"ZipFile": "#!/bin/sh\n"},
            "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]}, "Environment": {"Variables": settings}}}}}
    cloudformation, awslambda = client(endpoint, "cloudformation"), client(endpoint, "lambda")
    cloudformation.create_stack(StackName="mirroring", TemplateBody=json.dumps(template),
                                Capabilities=["CAPABILITY_IAM"])
    assert cloudformation.describe_stacks(StackName="mirroring")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    resource = cloudformation.describe_stack_resource(
        StackName="mirroring", LogicalResourceId="TrafficMirroringFunction")["StackResourceDetail"]
    assert resource["ResourceType"] == "AWS::Lambda::Function"
    function = resource["PhysicalResourceId"]  # moto names it <stack>-<logical id>-<random>, as AWS does
    assert function.startswith("mirroring-TrafficMirroringFunction-")
    assert awslambda.get_function_configuration(FunctionName=function)["Environment"]["Variables"] == settings
    for stack, logical_id in (("mirroring", "Other"), ("no-such-stack", "TrafficMirroringFunction")):
        with pytest.raises(ClientError) as missing:
            cloudformation.describe_stack_resource(StackName=stack, LogicalResourceId=logical_id)
        assert missing.value.response["Error"]["Code"] == "ValidationError"

    # Any access key is moto's default user; assumed-role credentials are that role's session.
    sts = client(endpoint, "sts")
    assert sts.get_caller_identity()["Arn"] == "arn:aws:sts::123456789012:user/moto"
    assert sts.get_caller_identity()["Account"] == "123456789012"
    credentials = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/operator",
                                  RoleSessionName="alice")["Credentials"]
    as_alice = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])
    assert as_alice.get_caller_identity()["Arn"] == "arn:aws:sts::123456789012:assumed-role/operator/alice"


# ---------------------------------------------------------------- accounts, AWS RAM and shared targets

HUB, MEMBER, OTHER = "123456789012", "111111111111", "222222222222"  # the hub is moto's default account
MEMBER_ROLE = f"arn:aws:iam::{MEMBER}:role/TrafficMirroringMember"


def assumed(endpoint, role_arn, **config):
    """A client factory acting in the role's account, with the credentials
    sts:AssumeRole returns (the hub mode's way into a member account)."""
    credentials = client(endpoint, "sts").assume_role(RoleArn=role_arn, RoleSessionName="hub")["Credentials"]
    config.setdefault("retries", {"total_max_attempts": 1})

    def make(service):
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"], config=Config(**config))

    return make


@pytest.fixture
def member(endpoint):
    return assumed(endpoint, MEMBER_ROLE)


def a_subnet(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]


def target_arn(target_id, account=HUB):
    return f"arn:aws:ec2:us-east-1:{account}:traffic-mirror-target/{target_id}"


def targets_listed(ec2):
    pages = ec2.get_paginator("describe_traffic_mirror_targets").paginate()
    return {t["TrafficMirrorTargetId"]: t["OwnerId"] for p in pages for t in p["TrafficMirrorTargets"]}


def ram_error(call, **kwargs):
    """(code, x-amzn-ErrorType header, HTTP status) of a refused RAM call."""
    response = failure(call, **kwargs)
    metadata = response["ResponseMetadata"]
    return response["Error"]["Code"], metadata["HTTPHeaders"].get("x-amzn-errortype"), metadata["HTTPStatusCode"]


def test_accounts_are_kept_apart_by_their_credentials(endpoint, ec2, subnet, member):
    """Assumed-role credentials act in the role's account, in moto and in our
    model alike; dummy keys stay in moto's default account."""
    hub_target, hub_filter = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    hub_session = session(ec2, eni(ec2, subnet), hub_target, hub_filter, 1)
    assert hub_session["OwnerId"] == HUB
    member_ec2 = member("ec2")
    assert member("sts").get_caller_identity()["Account"] == MEMBER
    assert member_ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"] == []
    assert member_ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"] == []
    assert sessions(member_ec2) == []
    # The member's own mirroring works on the member's ENIs (moto keeps them in its account).
    member_subnet = a_subnet(member_ec2)
    member_target, member_filter = target(member_ec2, eni(member_ec2, member_subnet)), new_filter(member_ec2)
    instance_id, source = instance(member_ec2, member_subnet)
    created = session(member_ec2, source, member_target, member_filter, 1)
    assert created["OwnerId"] == MEMBER
    assert targets_listed(member_ec2) == {member_target: MEMBER}
    assert targets_listed(ec2) == {hub_target: HUB}
    assert [s["TrafficMirrorSessionId"] for s in sessions(ec2)] == [hub_session["TrafficMirrorSessionId"]]
    # Ids of the other account are unknown, for use and for tags; the instance type rule reads the member's instance.
    assert error_code(session, member_ec2, eni(member_ec2, member_subnet), member_target, hub_filter, 2) == \
        "InvalidTrafficMirrorFilterId.NotFound"
    assert error_code(member_ec2.create_tags, Resources=[hub_target], Tags=[{"Key": "k", "Value": "v"}]) == \
        "InvalidTrafficMirrorTargetId.NotFound"
    _, t2_source = instance(member_ec2, member_subnet, "t2.micro")
    assert error_code(session, member_ec2, t2_source, member_target, member_filter, 1) == "NetworkInterfaceNotSupported"
    # Terminating the member's instance drops its session; the hub's stays.
    member_ec2.terminate_instances(InstanceIds=[instance_id])
    assert sessions(member_ec2) == []
    assert len(sessions(ec2)) == 1
    # A member VPC's default group admits its own members; rename reaches the member's ENIs.
    vpc = member_ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    group = member_ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"][0]
    assert [p["IpProtocol"] for p in group["IpPermissions"]] == ["-1"]
    old = eni(member_ec2, member_subnet)
    control(endpoint, "POST", "rename", {"from": old, "to": "eni-0aaaabbbbccccdddd", "account": MEMBER})
    assert member_ec2.describe_network_interfaces(NetworkInterfaceIds=["eni-0aaaabbbbccccdddd"])["NetworkInterfaces"]
    calls = control(endpoint, "GET", "calls")["calls"]
    assert {c["account"] for c in calls if c["action"] == "CreateTrafficMirrorTarget"} == {HUB, MEMBER}


def test_ram_creates_lists_associates_and_disassociates_shares(endpoint, ec2, subnet, member):
    ram, hub_target = client(endpoint, "ram"), target(ec2, eni(ec2, subnet))
    share = ram.create_resource_share(name="mirror-targets", resourceArns=[target_arn(hub_target)],
                                      principals=[MEMBER], tags=[{"key": "team", "value": "net"}])["resourceShare"]
    arn = share["resourceShareArn"]
    assert arn.startswith(f"arn:aws:ram:us-east-1:{HUB}:resource-share/")
    assert (share["name"], share["owningAccountId"], share["status"], share["allowExternalPrincipals"],
            share["tags"]) == ("mirror-targets", HUB, "ACTIVE", True, [{"key": "team", "value": "net"}])
    assert share["creationTime"] and share["lastUpdatedTime"]
    for n in range(2):  # three shares: GetResourceShares pages at two
        ram.create_resource_share(name=f"other-{n}")
    first = ram.get_resource_shares(resourceOwner="SELF")
    assert len(first["resourceShares"]) == 2 and first["nextToken"]
    pages = ram.get_paginator("get_resource_shares").paginate(resourceOwner="SELF")
    assert sorted(s["name"] for p in pages for s in p["resourceShares"]) == ["mirror-targets", "other-0", "other-1"]
    assert [s["resourceShareArn"] for s in ram.get_resource_shares(
        resourceOwner="SELF", tagFilters=[{"tagKey": "team", "tagValues": ["net"]}])["resourceShares"]] == [arn]
    assert [s["resourceShareArn"] for s in ram.get_resource_shares(
        resourceOwner="SELF", name="mirror-targets")["resourceShares"]] == [arn]
    # The member sees it as shared with it, and owns none.
    member_ram = member("ram")
    assert [s["resourceShareArn"] for s in member_ram.get_resource_shares(resourceOwner="OTHER-ACCOUNTS")[
        "resourceShares"]] == [arn]
    assert member_ram.get_resource_shares(resourceOwner="SELF")["resourceShares"] == []

    def associations(kind, **kwargs):
        found = ram.get_resource_share_associations(associationType=kind, resourceShareArns=[arn], **kwargs)
        return [(a["associatedEntity"], a["status"]) for a in found["resourceShareAssociations"]]

    assert associations("PRINCIPAL") == [(MEMBER, "ASSOCIATED")]
    assert associations("RESOURCE") == [(target_arn(hub_target), "ASSOCIATED")]
    added = ram.associate_resource_share(resourceShareArn=arn, principals=[OTHER])["resourceShareAssociations"]
    assert [(a["associatedEntity"], a["associationType"], a["status"], a["resourceShareName"]) for a in added] == [
        (OTHER, "PRINCIPAL", "ASSOCIATED", "mirror-targets")]
    removed = ram.disassociate_resource_share(resourceShareArn=arn, principals=[MEMBER])["resourceShareAssociations"]
    assert [(a["associatedEntity"], a["status"]) for a in removed] == [(MEMBER, "DISASSOCIATED")]
    assert associations("PRINCIPAL", associationStatus="ASSOCIATED") == [(OTHER, "ASSOCIATED")]
    assert associations("PRINCIPAL", principal=MEMBER) == [(MEMBER, "DISASSOCIATED")]
    assert member_ram.get_resource_shares(resourceOwner="OTHER-ACCOUNTS")["resourceShares"] == []
    # Deleting a share: listed as DELETED, every association gone, the target itself stays.
    assert ram.delete_resource_share(resourceShareArn=arn)["returnValue"] is True
    assert [s["status"] for s in ram.get_resource_shares(resourceOwner="SELF", resourceShareArns=[arn])[
        "resourceShares"]] == ["DELETED"]
    assert {status for _, status in associations("PRINCIPAL") + associations("RESOURCE")} == {"DISASSOCIATED"}
    assert targets_listed(ec2) == {hub_target: HUB}
    assert ram_error(ram.associate_resource_share, resourceShareArn=arn, principals=[MEMBER])[0] == \
        "UnknownResourceException"
    calls = [(c["service"], c["action"]) for c in control(endpoint, "GET", "calls")["calls"] if c["service"] == "ram"]
    assert ("ram", "CreateResourceShare") in calls and ("ram", "DeleteResourceShare") in calls
    control(endpoint, "POST", "reset")
    assert ram.get_resource_shares(resourceOwner="SELF")["resourceShares"] == []


def test_ram_refuses_what_aws_refuses_in_its_error_shape(endpoint, ec2, subnet, member):
    ram, hub_target = client(endpoint, "ram"), target(ec2, eni(ec2, subnet))
    member_ec2 = member("ec2")
    member_target = target(member_ec2, eni(member_ec2, a_subnet(member_ec2)))
    unknown = target_arn("tmt-0123456789abcdef0")
    assert ram_error(ram.create_resource_share, name="s", resourceArns=[unknown]) == \
        ("UnknownResourceException", "UnknownResourceException", 400)
    # Another account's target is not the caller's to share, whoever asks.
    assert ram_error(ram.create_resource_share, name="s", resourceArns=[target_arn(member_target, MEMBER)])[0] == \
        "UnknownResourceException"
    assert ram_error(member("ram").create_resource_share, name="s", resourceArns=[target_arn(hub_target)])[0] == \
        "UnknownResourceException"
    assert ram_error(ram.create_resource_share, name="s", resourceArns=["not-an-arn"])[0] == "MalformedArnException"
    assert ram_error(ram.create_resource_share, name="s", principals=["o-abc123"])[0] == "InvalidParameterException"
    not_ours = f"arn:aws:organizations::{HUB}:organization/o-abc123"  # the hub is in no organization
    assert ram_error(ram.create_resource_share, name="s", principals=[not_ours])[0] == "UnknownResourceException"
    assert ram.get_resource_shares(resourceOwner="SELF")["resourceShares"] == []  # nothing was created
    missing = f"arn:aws:ram:us-east-1:{HUB}:resource-share/0b1c2d3e-0000-4000-8000-000000000000"
    assert ram_error(ram.associate_resource_share, resourceShareArn=missing, principals=[MEMBER])[0] == \
        "UnknownResourceException"
    arn = ram.create_resource_share(name="s", resourceArns=[target_arn(hub_target)])["resourceShare"]
    arn = arn["resourceShareArn"]
    assert ram_error(ram.disassociate_resource_share, resourceShareArn=arn, principals=[MEMBER])[0] == \
        "UnknownResourceException"  # never associated
    assert ram_error(ram.get_resource_shares, resourceOwner="SELF", nextToken="garbage")[0] == \
        "InvalidNextTokenException"
    # The member cannot touch the hub's share.
    assert ram_error(member("ram").delete_resource_share, resourceShareArn=arn)[0] == "UnknownResourceException"
    # clientToken: the same call again answers as the first and creates nothing; other parameters are a mismatch.
    once = ram.create_resource_share(name="t", clientToken="token-1")["resourceShare"]["resourceShareArn"]
    assert ram.create_resource_share(name="t", clientToken="token-1")["resourceShare"]["resourceShareArn"] == once
    assert ram_error(ram.create_resource_share, name="u", clientToken="token-1")[0] == \
        "IdempotentParameterMismatchException"
    assert len(list(s for p in ram.get_paginator("get_resource_shares").paginate(resourceOwner="SELF")
                    for s in p["resourceShares"])) == 2
    control(endpoint, "POST", "throttle", {"actions": "all", "service": "ram", "burst": 0, "refill_per_second": 0})
    assert ram_error(ram.get_resource_shares, resourceOwner="SELF") == \
        ("ThrottlingException", "ThrottlingException", 429)


def member_source(member):
    """(member ec2 client, a source ENI in the member account, a member filter)."""
    member_ec2 = member("ec2")
    member_subnet = a_subnet(member_ec2)
    return member_ec2, member_subnet, new_filter(member_ec2)


def test_a_member_session_needs_the_hubs_target_shared_with_it(endpoint, ec2, subnet, member):
    ram, hub_target = client(endpoint, "ram"), target(ec2, eni(ec2, subnet))
    member_ec2, member_subnet, member_filter = member_source(member)
    source = eni(member_ec2, member_subnet)
    # Unshared: the hub's target id is unknown in the member account, DryRun too.
    assert error_code(session, member_ec2, source, hub_target, member_filter, 1) == \
        "InvalidTrafficMirrorTargetId.NotFound"
    assert error_code(session, member_ec2, source, hub_target, member_filter, 1, DryRun=True) == \
        "InvalidTrafficMirrorTargetId.NotFound"
    assert hub_target not in targets_listed(member_ec2)
    arn = ram.create_resource_share(name="hub", resourceArns=[target_arn(hub_target)],
                                    principals=[MEMBER])["resourceShare"]["resourceShareArn"]
    assert error_code(session, member_ec2, source, hub_target, member_filter, 1, DryRun=True) == "DryRunOperation"
    created = session(member_ec2, source, hub_target, member_filter, 1)
    assert (created["OwnerId"], created["TrafficMirrorTargetId"]) == (MEMBER, hub_target)
    assert [(s["OwnerId"], s["TrafficMirrorTargetId"]) for s in sessions(member_ec2)] == [(MEMBER, hub_target)]
    # Shared targets are listed to the member with the hub's ownerId; the hub sees the member's session on its target.
    assert targets_listed(member_ec2) == {hub_target: HUB}
    assert [(s["TrafficMirrorSessionId"], s["OwnerId"]) for s in sessions(ec2)] == [
        (created["TrafficMirrorSessionId"], MEMBER)]
    # The member may not delete the hub's target.
    assert error_code(member_ec2.delete_traffic_mirror_target, TrafficMirrorTargetId=hub_target) == \
        "InvalidTrafficMirrorTargetId.NotFound"
    # Unshared again: new sessions are refused; the one made stays.
    ram.disassociate_resource_share(resourceShareArn=arn, principals=[MEMBER])
    assert error_code(session, member_ec2, eni(member_ec2, member_subnet), hub_target, member_filter, 1) == \
        "InvalidTrafficMirrorTargetId.NotFound"
    assert hub_target not in targets_listed(member_ec2)
    assert len(sessions(member_ec2)) == 1
    # The owner may delete a shared target only other accounts' sessions use; theirs stay, naming it.
    ec2.delete_traffic_mirror_target(TrafficMirrorTargetId=hub_target)
    assert [s["TrafficMirrorTargetId"] for s in sessions(member_ec2)] == [hub_target]


def test_the_sources_of_a_shared_target_are_counted_across_accounts(endpoint, ec2, subnet, member):
    ram, hub_target, hub_filter = client(endpoint, "ram"), target(ec2, eni(ec2, subnet)), new_filter(ec2)
    ram.create_resource_share(name="hub", resourceArns=[target_arn(hub_target)], principals=[MEMBER])
    member_ec2, member_subnet, member_filter = member_source(member)
    for _ in range(6):
        session(ec2, eni(ec2, subnet), hub_target, hub_filter, 1)
    for _ in range(4):
        session(member_ec2, eni(member_ec2, member_subnet), hub_target, member_filter, 1)
    assert error_code(session, member_ec2, eni(member_ec2, member_subnet), hub_target, member_filter, 1) == \
        "TrafficMirrorSourcesPerTargetLimitExceeded"
    assert error_code(session, ec2, eni(ec2, subnet), hub_target, hub_filter, 1) == \
        "TrafficMirrorSourcesPerTargetLimitExceeded"


def test_a_target_shared_with_the_organization_reaches_its_members_only(endpoint, ec2, subnet):
    """Organizations are moto's: the hub creates one and a member account in it."""
    organizations, ram = client(endpoint, "organizations"), client(endpoint, "ram")
    organizations.create_organization(FeatureSet="ALL")
    organization = organizations.describe_organization()["Organization"]["Arn"]
    status = organizations.create_account(AccountName="member", Email="member@example.com")["CreateAccountStatus"]
    in_org = status["AccountId"]
    hub_target = target(ec2, eni(ec2, subnet))
    share = ram.create_resource_share(name="org", resourceArns=[target_arn(hub_target)], principals=[organization],
                                      allowExternalPrincipals=False)["resourceShare"]["resourceShareArn"]
    inside = assumed(endpoint, f"arn:aws:iam::{in_org}:role/TrafficMirroringMember")
    outside = assumed(endpoint, f"arn:aws:iam::{OTHER}:role/TrafficMirroringMember")
    inside_ec2, inside_subnet, inside_filter = member_source(inside)
    assert session(inside_ec2, eni(inside_ec2, inside_subnet), hub_target, inside_filter, 1)["OwnerId"] == in_org
    outside_ec2, outside_subnet, outside_filter = member_source(outside)
    assert error_code(session, outside_ec2, eni(outside_ec2, outside_subnet), hub_target, outside_filter, 1) == \
        "InvalidTrafficMirrorTargetId.NotFound"
    # An account outside the organization cannot be added to a share that allows no external principals.
    assert ram_error(ram.associate_resource_share, resourceShareArn=share, principals=[OTHER])[0] == \
        "OperationNotPermittedException"
    external = ram.create_resource_share(name="ext", principals=[OTHER, in_org])["resourceShare"]["resourceShareArn"]
    found = ram.get_resource_share_associations(associationType="PRINCIPAL", resourceShareArns=[external])
    assert sorted((a["associatedEntity"], a["external"]) for a in found["resourceShareAssociations"]) == sorted(
        [(OTHER, True), (in_org, False)])


def test_a_refused_role_answers_access_denied_and_every_assume_role_is_logged(endpoint):
    sts = client(endpoint, "sts")
    assert control(endpoint, "POST", "refuse-role", {"roleArn": MEMBER_ROLE}) == {"roleArns": [MEMBER_ROLE]}
    control(endpoint, "DELETE", "calls")
    refused = failure(sts.assume_role, RoleArn=MEMBER_ROLE, RoleSessionName="hub")
    assert refused["Error"]["Code"] == "AccessDenied"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused["Error"]["Message"] == (f"User: arn:aws:sts::{HUB}:user/moto is not authorized to perform: "
                                           f"sts:AssumeRole on resource: {MEMBER_ROLE}")
    other_role = f"arn:aws:iam::{OTHER}:role/TrafficMirroringMember"
    credentials = sts.assume_role(RoleArn=other_role, RoleSessionName="hub")["Credentials"]
    # The message names the caller as AWS does, here an assumed role's session.
    as_other = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["SessionToken"])
    assert failure(as_other.assume_role, RoleArn=MEMBER_ROLE, RoleSessionName="again")["Error"]["Message"].startswith(
        f"User: arn:aws:sts::{OTHER}:assumed-role/TrafficMirroringMember/hub is not authorized")
    calls = [(c["service"], c["action"], c["status"], c["error"]) for c in control(endpoint, "GET", "calls")["calls"]]
    assert calls == [("sts", "AssumeRole", 403, "AccessDenied"), ("sts", "AssumeRole", 200, None),
                     ("sts", "AssumeRole", 403, "AccessDenied")]
    assert control(endpoint, "GET", "refuse-role") == {"roleArns": [MEMBER_ROLE]}
    assert control(endpoint, "DELETE", "refuse-role") == {"roleArns": []}
    sts.assume_role(RoleArn=MEMBER_ROLE, RoleSessionName="hub")
    control(endpoint, "POST", "refuse-role", {"roleArn": MEMBER_ROLE})
    control(endpoint, "POST", "reset")
    sts.assume_role(RoleArn=MEMBER_ROLE, RoleSessionName="hub")
    for bad in ({"roleArn": "TrafficMirroringMember"}, {"role": MEMBER_ROLE}):
        with pytest.raises(urllib.error.HTTPError) as raised:
            control(endpoint, "POST", "refuse-role", bad)
        assert raised.value.code == 400


def test_a_per_account_bucket_gives_each_account_its_own_tokens(endpoint, ec2, member):
    """EC2 throttles each account apart: with `per_account`, one account
    spending its tokens leaves another's untouched; without it, one bucket
    serves them all."""
    member_ec2 = member("ec2")
    bucket = {"actions": "mutating", "burst": 2, "refill_per_second": 0.001, "per_account": True}
    assert control(endpoint, "POST", "throttle", bucket)["buckets"] == [{**bucket, "service": None}]
    new_filter(ec2)
    new_filter(ec2)
    assert error_code(new_filter, ec2) == "RequestLimitExceeded"
    new_filter(member_ec2)  # the member's own tokens, full
    new_filter(member_ec2)
    assert error_code(new_filter, member_ec2) == "RequestLimitExceeded"
    member_ec2.describe_traffic_mirror_filters()  # reads are not in the "mutating" bucket
    throttled = [c["account"] for c in control(endpoint, "GET", "calls")["calls"] if c["error"] == "RequestLimitExceeded"]
    assert throttled == [HUB, MEMBER]
    control(endpoint, "DELETE", "throttle")
    shared = {"actions": "mutating", "burst": 2, "refill_per_second": 0.001}
    assert control(endpoint, "POST", "throttle", shared)["buckets"] == [{**shared, "service": None}]
    new_filter(ec2)
    new_filter(member_ec2)
    assert error_code(new_filter, member_ec2) == "RequestLimitExceeded"  # one bucket for both
    assert error_code(new_filter, ec2) == "RequestLimitExceeded"
    control(endpoint, "DELETE", "throttle")
    with pytest.raises(urllib.error.HTTPError) as raised:
        control(endpoint, "POST", "throttle", {**bucket, "per_account": "yes"})
    assert raised.value.code == 400
