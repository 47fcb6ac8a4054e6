"""An egress-only internet gateway with real packets (root only).

IPv6 from an instance reaches the simulated internet through the gateway and
the replies come back; the internet opens no connection to the instance, even
though its security group admits it; an internet gateway in its place does.
VPCs here are in 10.39.0.0/16.
"""

from __future__ import annotations

import ipaddress

import pytest

from helpers import default_sg, main_route_table, vpc_ipv6_block
from netprobe import Dp, listener

pytestmark = pytest.mark.usefixtures("require_root")

INET_HOST6 = "2001:db8:ffff::10"


@pytest.fixture(scope="module")
def dp(dp_server):
    return Dp(dp_server)


def test_egress_only_gateway_lets_ipv6_out_and_nothing_in(dp):
    ec2 = dp.ec2("A")
    vid = ec2.create_vpc(CidrBlock="10.39.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]

    block = vpc_ipv6_block(ec2, vid)
    sub64 = str(next(ipaddress.ip_network(block).subnets(new_prefix=64)))
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.39.1.0/24", Ipv6CidrBlock=sub64)["Subnet"]["SubnetId"]
    sg = default_sg(ec2, vid)
    # The group admits anything from anywhere: only the gateway can refuse.
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    inst = dp.launch(ec2, sid, "10.39.1.10", ipv6=1)
    rtb = main_route_table(ec2, vid)["RouteTableId"]
    eigw = ec2.create_egress_only_internet_gateway(VpcId=vid)["EgressOnlyInternetGateway"][
        "EgressOnlyInternetGatewayId"]
    dp.no_ping(inst, INET_HOST6, "no ::/0 route yet")
    ec2.create_route(RouteTableId=rtb, DestinationIpv6CidrBlock="::/0", EgressOnlyInternetGatewayId=eigw)
    dp.converge(force=True)
    inet = dp.inet_ns()
    dp.ok_ping(inst, INET_HOST6, "IPv6 out through the egress-only gateway, replies back")
    with listener(inet, 8443, ident="internet"):
        dp.ok_tcp(inst, INET_HOST6, 8443, "a TCP connection out and its replies")
    with listener(inst.ns, 8080, ident="instance"):
        dp.no_tcp(inet, inst.ipv6[0], 8080, "the internet cannot open a connection through an egress-only gateway")
        dp.no_ping(inet, inst.ipv6[0], "nor ping in")

    # The control: an internet gateway in its place admits the same connection.
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    ec2.replace_route(RouteTableId=rtb, DestinationIpv6CidrBlock="::/0", GatewayId=igw)
    dp.converge(force=True)
    with listener(inst.ns, 8080, ident="instance"):
        dp.ok_tcp(inet, inst.ipv6[0], 8080, "through an internet gateway the internet may connect")

    # Back to egress-only, the internet gateway gone: refused again; the route to a deleted
    # egress-only gateway is a blackhole.
    ec2.replace_route(RouteTableId=rtb, DestinationIpv6CidrBlock="::/0", EgressOnlyInternetGatewayId=eigw)
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    ec2.delete_internet_gateway(InternetGatewayId=igw)
    dp.converge(force=True)
    dp.ok_ping(inst, INET_HOST6, "out again through the egress-only gateway")
    with listener(inst.ns, 8080, ident="instance"):
        dp.no_tcp(inet, inst.ipv6[0], 8080, "refused again")
    ec2.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId=eigw)
    dp.no_ping(inst, INET_HOST6, "the gateway is gone")
    states = [r["State"] for r in ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
              if r.get("DestinationIpv6CidrBlock") == "::/0"]
    assert states == ["blackhole"], states
