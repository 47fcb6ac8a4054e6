"""The aws CLI, end to end: the seed workflow across two accounts, and CLI error handling.

Each CLI call is a new Python process (~0.5 s), so this file keeps the call count low.
"""

from __future__ import annotations

import json
import time

import pytest

from helpers import A_ID, B_ID, AwsCliError, is_id


def cli_pcx(aws, account, pid, region="us-east-1"):
    r = aws(account, "ec2", "describe-vpc-peering-connections", "--vpc-peering-connection-ids", pid, region=region)
    [p] = r["VpcPeeringConnections"]
    return p


def cli_wait(aws, account, pid, status, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        p = cli_pcx(aws, account, pid)
        if p["Status"]["Code"] == status:
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"{pid} still {p['Status']['Code']}, wanted {status}")
        time.sleep(0.1)


def test_cli_seed_workflow(aws):
    va = aws("A", "ec2", "create-vpc", "--cidr-block", "10.1.0.0/16",
             "--tag-specifications", "ResourceType=vpc,Tags=[{Key=Name,Value=cli-a}]")["Vpc"]
    vb = aws("B", "ec2", "create-vpc", "--cidr-block", "10.2.0.0/16")["Vpc"]
    assert is_id("vpc", va["VpcId"]) and va["OwnerId"] == A_ID and va["CidrBlock"] == "10.1.0.0/16"
    assert va["Tags"] == [{"Key": "Name", "Value": "cli-a"}]
    assert vb["OwnerId"] == B_ID

    r = aws("A", "ec2", "create-vpc-peering-connection", "--vpc-id", va["VpcId"],
            "--peer-vpc-id", vb["VpcId"], "--peer-owner-id", B_ID)["VpcPeeringConnection"]
    pid = r["VpcPeeringConnectionId"]
    assert is_id("pcx", pid)
    assert r["Status"]["Code"] == "initiating-request"
    assert r["AccepterVpcInfo"]["OwnerId"] == B_ID
    cli_wait(aws, "A", pid, "pending-acceptance")

    # The requester cannot accept: non-zero exit and the AWS code on stderr.
    with pytest.raises(AwsCliError) as ei:
        aws("A", "ec2", "accept-vpc-peering-connection", "--vpc-peering-connection-id", pid)
    assert ei.value.code == "OperationNotPermitted"

    acc = aws("B", "ec2", "accept-vpc-peering-connection", "--vpc-peering-connection-id", pid)["VpcPeeringConnection"]
    assert acc["VpcPeeringConnectionId"] == pid
    assert acc["Status"]["Code"] in ("provisioning", "active")
    p = cli_wait(aws, "B", pid, "active")
    assert p["AccepterVpcInfo"]["CidrBlock"] == "10.2.0.0/16"

    rt = aws("A", "ec2", "describe-route-tables", "--filters",
             f"Name=vpc-id,Values={va['VpcId']}", "Name=association.main,Values=true")["RouteTables"]
    assert len(rt) == 1
    r = aws("A", "ec2", "create-route", "--route-table-id", rt[0]["RouteTableId"],
            "--destination-cidr-block", "10.2.0.0/16", "--vpc-peering-connection-id", pid)
    assert r == {"Return": True}

    sgs = aws("B", "ec2", "describe-security-groups", "--filters",
              f"Name=vpc-id,Values={vb['VpcId']}", "Name=group-name,Values=default")["SecurityGroups"]
    sga = aws("A", "ec2", "describe-security-groups", "--filters",
              f"Name=vpc-id,Values={va['VpcId']}", "Name=group-name,Values=default")["SecurityGroups"]
    perms = json.dumps([{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                         "UserIdGroupPairs": [{"GroupId": sga[0]["GroupId"], "UserId": A_ID}]}])
    r = aws("B", "ec2", "authorize-security-group-ingress", "--group-id", sgs[0]["GroupId"],
            "--ip-permissions", perms)
    assert r["Return"] is True
    assert r["SecurityGroupRules"][0]["ReferencedGroupInfo"]["GroupId"] == sga[0]["GroupId"]

    listed = aws("A", "ec2", "describe-vpc-peering-connections",
                 "--filters", "Name=status-code,Values=active",
                 f"Name=requester-vpc-info.vpc-id,Values={va['VpcId']}")["VpcPeeringConnections"]
    assert [x["VpcPeeringConnectionId"] for x in listed] == [pid]
    assert listed[0]["RequesterVpcInfo"]["CidrBlock"] == "10.1.0.0/16"
    assert listed[0]["AccepterVpcInfo"]["CidrBlock"] == "10.2.0.0/16"


def test_cli_errors_and_pagination(aws, client):
    with pytest.raises(AwsCliError) as ei:
        aws("A", "ec2", "describe-vpcs", "--vpc-ids", "vpc-0123456789abcdef0")
    assert ei.value.code == "InvalidVpcID.NotFound"
    with pytest.raises(AwsCliError) as ei:
        aws("A", "ec2", "create-vpc", "--cidr-block", "10.0.0.0/8")
    assert ei.value.code == "InvalidVpc.Range"
    with pytest.raises(AwsCliError) as ei:
        aws("A", "ec2", "create-vpc", "--cidr-block", "10.3.0.0/16", "--dry-run")
    assert ei.value.code == "DryRunOperation"

    # The CLI follows NextToken by itself: --page-size 5 still returns everything.
    ec2 = client("A")
    for i in range(6):
        ec2.create_vpc(CidrBlock=f"10.{10 + i}.0.0/16")
    want = sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"])
    got = aws("A", "ec2", "describe-vpcs", "--page-size", "5")["Vpcs"]
    assert sorted(v["VpcId"] for v in got) == want
