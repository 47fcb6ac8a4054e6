"""Egress-only internet gateways through boto3 and the aws CLI: create,
describe (ids, tags, paging), routes to them, delete, the analyzer's verdicts,
and AWS's error codes."""

from __future__ import annotations

import ipaddress

from helpers import expect_error, is_id, make_vpc, tags_of, run_analysis, vpc_ipv6_block


def eigw(ec2, vpc_id: str, **kw) -> dict:
    return ec2.create_egress_only_internet_gateway(VpcId=vpc_id, **kw)["EgressOnlyInternetGateway"]


def test_create_describe_delete(client, aws):
    ec2 = client("A")
    vid = make_vpc(ec2)
    g = eigw(ec2, vid, TagSpecifications=[{"ResourceType": "egress-only-internet-gateway",
                                           "Tags": [{"Key": "Name", "Value": "out"}]}])
    gid = g["EgressOnlyInternetGatewayId"]
    assert is_id("eigw", gid)
    assert g["Attachments"] == [{"State": "attached", "VpcId": vid}] and tags_of(g) == {"Name": "out"}
    got = ec2.describe_egress_only_internet_gateways(EgressOnlyInternetGatewayIds=[gid])
    assert got["EgressOnlyInternetGateways"][0]["EgressOnlyInternetGatewayId"] == gid
    by_tag = ec2.describe_egress_only_internet_gateways(Filters=[{"Name": "tag:Name", "Values": ["out"]}])
    assert [x["EgressOnlyInternetGatewayId"] for x in by_tag["EgressOnlyInternetGateways"]] == [gid]
    with expect_error("InvalidParameterValue"):
        ec2.describe_egress_only_internet_gateways(Filters=[{"Name": "vpc-idd", "Values": [vid]}])
    # Paging, five at a time.
    more = [eigw(ec2, make_vpc(ec2))["EgressOnlyInternetGatewayId"] for _ in range(5)]
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5, **({"NextToken": token} if token else {})}
        page = ec2.describe_egress_only_internet_gateways(**kw)
        assert len(page["EgressOnlyInternetGateways"]) <= 5
        seen += [x["EgressOnlyInternetGatewayId"] for x in page["EgressOnlyInternetGateways"]]
        token = page.get("NextToken")
        if not token:
            break
    assert set(more + [gid]) <= set(seen) and len(seen) == len(set(seen))
    with expect_error("InvalidParameterValue"):
        ec2.describe_egress_only_internet_gateways(MaxResults=300)
    # A VPC with one cannot be deleted.
    with expect_error("DependencyViolation"):
        ec2.delete_vpc(VpcId=vid)
    with expect_error("DryRunOperation", 412):
        ec2.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId=gid, DryRun=True)
    assert ec2.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId=gid)["ReturnCode"] is True
    with expect_error("InvalidEgressOnlyInternetGatewayId.NotFound"):
        ec2.describe_egress_only_internet_gateways(EgressOnlyInternetGatewayIds=[gid])
    with expect_error("InvalidEgressOnlyInternetGatewayId.NotFound"):
        ec2.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId=gid)
    with expect_error("InvalidEgressOnlyInternetGatewayId.Malformed"):
        ec2.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId="nope")
    with expect_error("InvalidVpcID.NotFound"):
        eigw(ec2, "vpc-0123456789abcdef0")
    with expect_error("DryRunOperation", 412):
        eigw(ec2, vid, DryRun=True)
    ec2.delete_vpc(VpcId=vid)
    out = aws("A", "ec2", "describe-egress-only-internet-gateways", "--egress-only-internet-gateway-ids", more[0])
    assert out["EgressOnlyInternetGateways"][0]["Attachments"][0]["State"] == "attached"
    # Another account sees nothing of it.
    with expect_error("InvalidEgressOnlyInternetGatewayId.NotFound"):
        client("B").describe_egress_only_internet_gateways(EgressOnlyInternetGatewayIds=[more[0]])


def test_quota(server_factory):
    s = server_factory(limits={"igws_per_region": 2})
    ec2 = s.client("A")
    vid = make_vpc(ec2)
    eigw(ec2, vid)
    eigw(ec2, vid)
    with expect_error("EgressOnlyInternetGatewayLimitExceeded"):
        eigw(ec2, vid)


def test_routes_to_an_egress_only_gateway(client):
    ec2 = client("A")
    vid = ec2.create_vpc(CidrBlock="10.37.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]

    block = vpc_ipv6_block(ec2, vid)
    sub64 = str(next(ipaddress.ip_network(block).subnets(new_prefix=64)))
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.37.1.0/24", Ipv6CidrBlock=sub64)["Subnet"]["SubnetId"]
    iid = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=sid,
                            Ipv6AddressCount=1)["Instances"][0]["InstanceId"]
    rtb = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"][0]["RouteTableId"]
    gid = eigw(ec2, vid)["EgressOnlyInternetGatewayId"]
    other = eigw(ec2, make_vpc(ec2))["EgressOnlyInternetGatewayId"]
    with expect_error("InvalidParameterValue") as h:
        ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", EgressOnlyInternetGatewayId=gid)
    assert "IPv6" in h.error.response["Error"]["Message"]
    with expect_error("InvalidParameterValue"):
        ec2.create_route(RouteTableId=rtb, DestinationIpv6CidrBlock="::/0", EgressOnlyInternetGatewayId=other)
    with expect_error("InvalidEgressOnlyInternetGatewayId.NotFound"):
        ec2.create_route(RouteTableId=rtb, DestinationIpv6CidrBlock="::/0",
                         EgressOnlyInternetGatewayId="eigw-0123456789abcdef0")
    assert run_analysis(ec2, iid, "2001:db8:ffff::10")["NetworkPathFound"] is False
    ec2.create_route(RouteTableId=rtb, DestinationIpv6CidrBlock="::/0", EgressOnlyInternetGatewayId=gid)
    r = [x for x in ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
         if x.get("DestinationIpv6CidrBlock") == "::/0"]
    assert r == [{"DestinationIpv6CidrBlock": "::/0", "EgressOnlyInternetGatewayId": gid,
                  "State": "active", "Origin": "CreateRoute"}], r
    by_filter = ec2.describe_route_tables(Filters=[
        {"Name": "route.egress-only-internet-gateway-id", "Values": [gid]}])["RouteTables"]
    assert [t["RouteTableId"] for t in by_filter] == [rtb]
    got = run_analysis(ec2, iid, "2001:db8:ffff::10")
    assert got["NetworkPathFound"] is True, got.get("Explanations")
    assert gid in [h["Component"]["Id"] for h in got["ForwardPathComponents"]]
    ec2.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId=gid)
    r = [x for x in ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
         if x.get("DestinationIpv6CidrBlock") == "::/0"]
    assert r[0]["State"] == "blackhole"
    assert run_analysis(ec2, iid, "2001:db8:ffff::10")["NetworkPathFound"] is False
