"""The emulator's own tests: each AWS rule it adds to moto holds, over HTTP,
through boto3, as the product's SDK would see it."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def endpoint():
    process = subprocess.Popen([sys.executable, os.path.join(HERE, "emulator.py"), "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("EMULATOR_READY port="), line
    yield f"http://127.0.0.1:{line.strip().split('=')[1]}"
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


def client(endpoint, service, retries=1):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": retries}))


@pytest.fixture
def ec2(endpoint):
    return client(endpoint, "ec2")


@pytest.fixture
def subnet(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]


def eni(ec2, subnet):
    return ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]


def target(ec2, eni_id, **extra):
    return ec2.create_traffic_mirror_target(NetworkInterfaceId=eni_id, **extra)["TrafficMirrorTarget"]["TrafficMirrorTargetId"]


def new_filter(ec2, **extra):
    return ec2.create_traffic_mirror_filter(**extra)["TrafficMirrorFilter"]["TrafficMirrorFilterId"]


def session(ec2, source, target_id, filter_id, number, **extra):
    return ec2.create_traffic_mirror_session(NetworkInterfaceId=source, TrafficMirrorTargetId=target_id,
                                             TrafficMirrorFilterId=filter_id, SessionNumber=number,
                                             **extra)["TrafficMirrorSession"]


def error_code(call, *args, **kwargs):
    with pytest.raises(ClientError) as raised:
        call(*args, **kwargs)
    return raised.value.response["Error"]["Code"]


def rule(ec2, filter_id, number, direction="ingress", **extra):
    return ec2.create_traffic_mirror_filter_rule(
        TrafficMirrorFilterId=filter_id, TrafficDirection=direction, RuleNumber=number, RuleAction="accept",
        SourceCidrBlock="0.0.0.0/0", DestinationCidrBlock="0.0.0.0/0", **extra)["TrafficMirrorFilterRule"]


def test_a_session_round_trips_with_its_fields(ec2, subnet):
    source, t = eni(ec2, subnet), target(ec2, eni(ec2, subnet))
    f = new_filter(ec2)
    created = session(ec2, source, t, f, 5, PacketLength=100, VirtualNetworkId=7, Description="d",
                      TagSpecifications=[{"ResourceType": "traffic-mirror-session", "Tags": [{"Key": "k", "Value": "v"}]}])
    described = ec2.describe_traffic_mirror_sessions(TrafficMirrorSessionIds=[created["TrafficMirrorSessionId"]])
    found = described["TrafficMirrorSessions"][0]
    assert (found["SessionNumber"], found["PacketLength"], found["VirtualNetworkId"]) == (5, 100, 7)
    assert found["Tags"] == [{"Key": "k", "Value": "v"}]
    assert found["NetworkInterfaceId"] == source


def test_unknown_ids_and_enis_answer_not_found(ec2, subnet):
    assert error_code(ec2.delete_traffic_mirror_session, TrafficMirrorSessionId="tms-0123456789abcdef0") == "InvalidTrafficMirrorSessionId.NotFound"
    assert error_code(ec2.delete_traffic_mirror_target, TrafficMirrorTargetId="tmt-0123456789abcdef0") == "InvalidTrafficMirrorTargetId.NotFound"
    assert error_code(ec2.delete_traffic_mirror_filter, TrafficMirrorFilterId="tmf-0123456789abcdef0") == "InvalidTrafficMirrorFilterId.NotFound"
    assert error_code(ec2.delete_traffic_mirror_filter_rule, TrafficMirrorFilterRuleId="tmfr-0123456789abcdef0") == "InvalidTrafficMirrorFilterRuleId.NotFound"
    assert error_code(target, ec2, "eni-0123456789abcdef0") == "InvalidNetworkInterfaceID.NotFound"
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    assert error_code(session, ec2, "eni-0123456789abcdef0", t, f, 1) == "InvalidNetworkInterfaceID.NotFound"


def test_an_eni_takes_at_most_three_sessions_with_distinct_numbers(ec2, subnet):
    source = eni(ec2, subnet)
    f = new_filter(ec2)
    session(ec2, source, target(ec2, eni(ec2, subnet)), f, 1)
    assert error_code(session, ec2, source, target(ec2, eni(ec2, subnet)), f, 1) == "InvalidParameterValue"
    session(ec2, source, target(ec2, eni(ec2, subnet)), f, 2)
    session(ec2, source, target(ec2, eni(ec2, subnet)), f, 3)
    assert error_code(session, ec2, source, target(ec2, eni(ec2, subnet)), f, 4) == "TrafficMirrorSessionsPerInterfaceLimitExceeded"


def test_an_eni_target_takes_at_most_ten_sources(ec2, subnet):
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    for _ in range(10):
        session(ec2, eni(ec2, subnet), t, f, 1)
    assert error_code(session, ec2, eni(ec2, subnet), t, f, 1) == "TrafficMirrorSourcesPerTargetLimitExceeded"


def test_a_target_eni_cannot_be_a_source(ec2, subnet):
    target_eni = eni(ec2, subnet)
    t, f = target(ec2, target_eni), new_filter(ec2)
    other = target(ec2, eni(ec2, subnet))
    assert error_code(session, ec2, target_eni, t, f, 1) == "InvalidParameterValue"
    assert error_code(session, ec2, target_eni, other, f, 1) == "InvalidParameterValue"


def test_xen_instances_cannot_be_sources(ec2, subnet):
    def instance_eni(instance_type):
        run = ec2.run_instances(ImageId="ami-12c6146b", InstanceType=instance_type, SubnetId=subnet, MinCount=1, MaxCount=1)
        return run["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    assert error_code(session, ec2, instance_eni("t2.micro"), t, f, 1) == "NetworkInterfaceNotSupported"
    assert session(ec2, instance_eni("m5.large"), t, f, 1)["SessionNumber"] == 1


def test_filter_rules_limits_and_duplicates(ec2):
    f = new_filter(ec2)
    rule(ec2, f, 1)
    assert error_code(rule, ec2, f, 1) == "TrafficMirrorFilterRuleAlreadyExists"
    rule(ec2, f, 1, direction="egress")
    for number in range(2, 10):
        rule(ec2, f, number)
    assert error_code(rule, ec2, f, 50) == "TrafficMirrorFilterRuleLimitExceeded"
    assert error_code(rule, ec2, new_filter(ec2), 1, Protocol=1, SourcePortRange={"FromPort": 1, "ToPort": 2}) == "InvalidParameterValue"
    described = ec2.describe_traffic_mirror_filters(TrafficMirrorFilterIds=[f])["TrafficMirrorFilters"][0]
    assert (len(described["IngressFilterRules"]), len(described["EgressFilterRules"])) == (9, 1)


def test_in_use_filters_and_targets_cannot_be_deleted(ec2, subnet):
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    rule(ec2, f, 1)
    s = session(ec2, eni(ec2, subnet), t, f, 1)["TrafficMirrorSessionId"]
    assert error_code(ec2.delete_traffic_mirror_filter, TrafficMirrorFilterId=f) == "TrafficMirrorFilterInUse"
    assert error_code(ec2.delete_traffic_mirror_target, TrafficMirrorTargetId=t) == "TrafficMirrorTargetInUseException"
    ec2.delete_traffic_mirror_session(TrafficMirrorSessionId=s)
    ec2.delete_traffic_mirror_filter(TrafficMirrorFilterId=f)
    ec2.delete_traffic_mirror_target(TrafficMirrorTargetId=t)
    assert ec2.describe_traffic_mirror_filter_rules()["TrafficMirrorFilterRules"] == []


def test_client_tokens_make_creates_idempotent(ec2, subnet):
    target_eni = eni(ec2, subnet)
    first = target(ec2, target_eni, ClientToken="tok-1")
    assert target(ec2, target_eni, ClientToken="tok-1") == first
    assert len(ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]) == 1
    assert error_code(target, ec2, eni(ec2, subnet), ClientToken="tok-1") == "IdempotentParameterMismatch"
    ec2.delete_traffic_mirror_target(TrafficMirrorTargetId=first)
    # As AWS: the token still answers with the first result, deleted or not.
    assert target(ec2, target_eni, ClientToken="tok-1") == first
    assert ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"] == []


def test_describes_page_and_filter(ec2, subnet):
    source_enis = [eni(ec2, subnet) for _ in range(5)]
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    tagged = [{"ResourceType": "traffic-mirror-session", "Tags": [{"Key": "team", "Value": "blue"}]}]
    for index, source in enumerate(source_enis):
        session(ec2, source, t, f, 1, **({"TagSpecifications": tagged} if index < 2 else {}))
    first = ec2.describe_traffic_mirror_sessions()
    assert len(first["TrafficMirrorSessions"]) == 2 and "NextToken" in first
    pages = ec2.get_paginator("describe_traffic_mirror_sessions").paginate()
    assert sum(len(p["TrafficMirrorSessions"]) for p in pages) == 5
    by_eni = ec2.describe_traffic_mirror_sessions(Filters=[{"Name": "network-interface-id", "Values": source_enis[3:]}])
    assert len(by_eni["TrafficMirrorSessions"]) == 2
    by_tag = ec2.describe_traffic_mirror_sessions(Filters=[{"Name": "tag:team", "Values": ["blue"]}])
    assert len(by_tag["TrafficMirrorSessions"]) == 2


def test_deleting_an_eni_deletes_its_sessions_but_not_filter_or_target(ec2, subnet):
    source = eni(ec2, subnet)
    t, f = target(ec2, eni(ec2, subnet)), new_filter(ec2)
    session(ec2, source, t, f, 1)
    ec2.delete_network_interface(NetworkInterfaceId=source)
    assert ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"] == []
    assert len(ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]) == 1
    assert len(ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]) == 1


def test_dry_run_changes_nothing(ec2, subnet):
    assert error_code(ec2.create_traffic_mirror_filter, DryRun=True) == "DryRunOperation"
    assert ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"] == []


def test_faults_skip_then_fail_then_pass(endpoint, ec2):
    control(endpoint, "POST", "faults", {"action": "CreateTrafficMirrorFilter", "code": "InternalError",
                                         "status": 500, "count": 1, "after": 1})
    new_filter(ec2)
    assert error_code(new_filter, ec2) == "InternalError"
    new_filter(ec2)
    assert len(ec2.describe_traffic_mirror_filters(MaxResults=5)["TrafficMirrorFilters"]) == 2


def test_faults_on_json_services_use_their_error_shape(endpoint):
    dynamodb = client(endpoint, "dynamodb")
    control(endpoint, "POST", "faults", {"action": "ListTables", "code": "ProvisionedThroughputExceededException",
                                         "status": 400, "count": 1})
    assert error_code(dynamodb.list_tables) == "ProvisionedThroughputExceededException"
    assert dynamodb.list_tables()["TableNames"] == []


def test_token_buckets_throttle_mutating_calls(endpoint, ec2):
    control(endpoint, "POST", "throttle", {"actions": "mutating", "burst": 2, "refill_per_second": 0.001})
    new_filter(ec2)
    new_filter(ec2)
    with pytest.raises(ClientError) as raised:
        new_filter(ec2)
    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    ec2.describe_traffic_mirror_filters()  # reads are not in the "mutating" bucket


def test_the_call_log_records_every_aws_call(endpoint, ec2):
    control(endpoint, "DELETE", "calls")
    new_filter(ec2)
    ec2.describe_traffic_mirror_filters()
    actions = [c["action"] for c in control(endpoint, "GET", "calls")["calls"]]
    assert actions == ["CreateTrafficMirrorFilter", "DescribeTrafficMirrorFilters"]


def test_conditional_writes_are_atomic_under_concurrency(endpoint):
    dynamodb = client(endpoint, "dynamodb")
    dynamodb.create_table(TableName="race", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    winners = []

    def claim(n):
        try:
            client(endpoint, "dynamodb").put_item(TableName="race", Item={"pk": {"S": "k"}, "by": {"N": str(n)}},
                                                  ConditionExpression="attribute_not_exists(pk)")
            winners.append(n)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_latency_is_slept_per_action(endpoint, ec2):
    control(endpoint, "POST", "config", {"latency_ms": {"DescribeTrafficMirrorFilters": 150}})
    started = time.monotonic()
    ec2.describe_traffic_mirror_filters()
    assert time.monotonic() - started >= 0.15
