"""VPC flow logs through boto3: CreateFlowLogs, DescribeFlowLogs (filters, paging),
DeleteFlowLogs, and the errors and unsuccessful items AWS answers with.

The records themselves (real packets, real files) are in test_flow_logs.py.
"""

from __future__ import annotations

import pytest

from helpers import expect_error, is_id, make_vpc

DEFAULT_FORMAT = ("${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} "
                  "${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}")


@pytest.fixture(scope="module")
def ec2(client):
    return client("A")


def s3(ec2, resource: str, rtype: str = "VPC", dest: str = "arn:aws:s3:::flow-bucket", **kw) -> dict:
    return ec2.create_flow_logs(ResourceIds=[resource], ResourceType=rtype, LogDestinationType="s3",
                                LogDestination=dest, **kw)


def test_create_describe_delete_a_vpc_flow_log(ec2):
    vpc = make_vpc(ec2)
    out = s3(ec2, vpc, TrafficType="ALL", MaxAggregationInterval=60,
             TagSpecifications=[{"ResourceType": "vpc-flow-log", "Tags": [{"Key": "team", "Value": "net"}]}])
    assert out["Unsuccessful"] == []
    [fl] = out["FlowLogIds"]
    assert is_id("fl", fl)
    [d] = ec2.describe_flow_logs(FlowLogIds=[fl])["FlowLogs"]
    assert d["FlowLogId"] == fl
    assert d["ResourceId"] == vpc
    assert d["TrafficType"] == "ALL"
    assert d["LogDestinationType"] == "s3"
    assert d["LogDestination"] == "arn:aws:s3:::flow-bucket"
    assert d["LogFormat"] == DEFAULT_FORMAT
    assert d["MaxAggregationInterval"] == 60
    assert d["FlowLogStatus"] == "ACTIVE"
    assert d["DeliverLogsStatus"] == "SUCCESS"
    assert d["DestinationOptions"] == {"FileFormat": "plain-text", "HiveCompatiblePartitions": False,
                                       "PerHourPartition": False}
    assert d["Tags"] == [{"Key": "team", "Value": "net"}]
    assert d["CreationTime"].year >= 2020
    assert ec2.delete_flow_logs(FlowLogIds=[fl])["Unsuccessful"] == []
    assert ec2.describe_flow_logs(FlowLogIds=[fl])["FlowLogs"] == []


def test_subnet_and_interface_flow_logs_custom_format_and_local_file(ec2):
    vpc = make_vpc(ec2, "10.40.0.0/16")
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"]
    fmt = "${version} ${vpc-id} ${subnet-id} ${instance-id} ${flow-direction} ${traffic-path} ${vpcd-dropped-by}"
    a = s3(ec2, sub, "Subnet", "arn:aws:s3:::flow-bucket/team-a/", TrafficType="REJECT", LogFormat=fmt)
    b = ec2.create_flow_logs(ResourceIds=[eni], ResourceType="NetworkInterface", TrafficType="ACCEPT",
                             LogDestinationType="local-file", LogDestination="eni-flows.log")
    [fa], [fb] = a["FlowLogIds"], b["FlowLogIds"]
    [da] = ec2.describe_flow_logs(FlowLogIds=[fa])["FlowLogs"]
    assert da["LogFormat"] == fmt and da["MaxAggregationInterval"] == 600 and da["TrafficType"] == "REJECT"
    [db] = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [eni]}])["FlowLogs"]
    assert db["FlowLogId"] == fb and db["LogDestinationType"] == "local-file"
    assert db["LogDestination"] == "eni-flows.log" and "DestinationOptions" not in db
    ids = {f["FlowLogId"] for f in ec2.describe_flow_logs(
        Filters=[{"Name": "log-destination-type", "Values": ["s3"]}])["FlowLogs"]}
    assert fa in ids and fb not in ids
    ids = {f["FlowLogId"] for f in ec2.describe_flow_logs(
        Filters=[{"Name": "traffic-type", "Values": ["ACCEPT"]}])["FlowLogs"]}
    assert fb in ids and fa not in ids
    ec2.delete_flow_logs(FlowLogIds=[fa, fb])


def test_describe_pages_through_every_flow_log(ec2):
    vpc = make_vpc(ec2)
    made = set()
    for i in range(5):
        made |= set(s3(ec2, vpc, dest=f"arn:aws:s3:::paging-bucket/p{i}")["FlowLogIds"])
    seen, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc]}], MaxResults=2, **kw)
        assert len(page["FlowLogs"]) <= 2
        seen += [f["FlowLogId"] for f in page["FlowLogs"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(made)
    with expect_error("InvalidParameterValue"):
        ec2.describe_flow_logs(MaxResults=0)
    with expect_error("InvalidParameterValue"):
        ec2.describe_flow_logs(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    ec2.delete_flow_logs(FlowLogIds=sorted(made))


def test_unknown_resources_and_duplicates_are_unsuccessful_items(ec2):
    vpc = make_vpc(ec2)
    out = ec2.create_flow_logs(ResourceIds=[vpc, "vpc-0123456789abcdef0"], ResourceType="VPC",
                               LogDestinationType="s3", LogDestination="arn:aws:s3:::dup-bucket")
    assert len(out["FlowLogIds"]) == 1
    [u] = out["Unsuccessful"]
    assert u["ResourceId"] == "vpc-0123456789abcdef0"
    assert u["Error"]["Code"] == "InvalidVpcID.NotFound"
    again = s3(ec2, vpc, dest="arn:aws:s3:::dup-bucket")
    assert again["FlowLogIds"] == []
    [u] = again["Unsuccessful"]
    assert u["Error"] == {"Code": "FlowLogAlreadyExists",
                          "Message": "Error. There is an existing Flow Log with the same configuration and log destination."}
    # Another destination is another flow log.
    assert len(s3(ec2, vpc, dest="arn:aws:s3:::dup-bucket/other")["FlowLogIds"]) == 1
    sub = s3(ec2, "subnet-0123456789abcdef0", "Subnet")
    assert sub["Unsuccessful"][0]["Error"]["Code"] == "InvalidSubnetID.NotFound"
    eni = s3(ec2, "eni-0123456789abcdef0", "NetworkInterface")
    assert eni["Unsuccessful"][0]["Error"]["Code"] == "InvalidNetworkInterfaceID.NotFound"


def test_delete_reports_unknown_ids_as_unsuccessful(ec2, client):
    vpc = make_vpc(ec2)
    [fl] = s3(ec2, vpc, dest="arn:aws:s3:::del-bucket")["FlowLogIds"]
    out = ec2.delete_flow_logs(FlowLogIds=["fl-0123456789abcdef0", fl])
    [u] = out["Unsuccessful"]
    assert u["ResourceId"] == "fl-0123456789abcdef0"
    assert u["Error"]["Code"] == "InvalidFlowLogId.NotFound"
    assert "fl-0123456789abcdef0" in u["Error"]["Message"]
    assert ec2.describe_flow_logs(FlowLogIds=[fl])["FlowLogs"] == []
    # Another account neither sees nor deletes A's flow log.
    [mine] = s3(ec2, vpc, dest="arn:aws:s3:::del-bucket/x")["FlowLogIds"]
    b = client("B")
    assert b.describe_flow_logs(FlowLogIds=[mine])["FlowLogs"] == []
    assert b.delete_flow_logs(FlowLogIds=[mine])["Unsuccessful"][0]["Error"]["Code"] == "InvalidFlowLogId.NotFound"
    assert len(ec2.describe_flow_logs(FlowLogIds=[mine])["FlowLogs"]) == 1
    # Another account's VPC is not found for B.
    assert s3(b, vpc)["Unsuccessful"][0]["Error"]["Code"] == "InvalidVpcID.NotFound"


def test_bad_input_gets_aws_errors_and_creates_nothing(ec2, server):
    vpc = make_vpc(ec2)
    raw = server.client("A", validate=False)
    before = len(ec2.describe_flow_logs()["FlowLogs"])
    cases = [
        ("InvalidParameterValue", dict(ResourceType="Bucket")),
        ("InvalidParameterValue", dict(TrafficType="SOME")),
        ("InvalidParameter", dict(MaxAggregationInterval=30)),
        ("InvalidParameter", dict(LogFormat="${srcaddr} ${no-such-field}")),
        ("InvalidParameter", dict(LogFormat="srcaddr dstaddr")),
        ("InvalidParameter", dict(LogDestination="s3://flow-bucket")),
        ("InvalidParameter", dict(LogDestination="arn:aws:s3:::flow-bucket/AWSLogs")),
        ("InvalidParameter", dict(LogDestination="arn:aws:s3:::flow-bucket/../../etc")),
        ("InvalidParameter", dict(LogDestinationType="local-file", LogDestination="../../etc/passwd")),
        ("InvalidParameterValue", dict(LogDestinationType="ftp")),
        ("InvalidParameter", dict(LogDestinationType="cloud-watch-logs", LogDestination=None,
                                  LogGroupName="g")),
    ]
    for code, over in cases:
        kw = dict(ResourceIds=[vpc], ResourceType="VPC", LogDestinationType="s3",
                  LogDestination="arn:aws:s3:::flow-bucket")
        kw.update(over)
        kw = {k: v for k, v in kw.items() if v is not None}
        with expect_error(code):
            raw.create_flow_logs(**kw)
    with expect_error("InvalidParameter") as h:
        raw.create_flow_logs(ResourceIds=[vpc], ResourceType="VPC", LogGroupName="g")
    assert "DeliverLogsPermissionArn can't be empty" in h.error.response["Error"]["Message"]
    with expect_error("MissingParameter"):
        raw.create_flow_logs(ResourceType="VPC", LogDestinationType="s3", LogDestination="arn:aws:s3:::b-1")
    with expect_error("MissingParameter"):
        raw.delete_flow_logs(FlowLogIds=[])
    assert len(ec2.describe_flow_logs()["FlowLogs"]) == before


def test_flow_logs_survive_a_restart(server, ec2):
    vpc = make_vpc(ec2)
    [fl] = s3(ec2, vpc, dest="arn:aws:s3:::restart-bucket", MaxAggregationInterval=60)["FlowLogIds"]
    server.restart()
    [d] = server.client("A").describe_flow_logs(FlowLogIds=[fl])["FlowLogs"]
    assert d["ResourceId"] == vpc and d["MaxAggregationInterval"] == 60
