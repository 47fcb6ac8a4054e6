"""IPv6-only (`Ipv6Native`) subnets through boto3 and the aws CLI, and with real packets.

An IPv6-only subnet has an IPv6 /64 and no IPv4 block: CreateSubnet needs
`Ipv6CidrBlock` and refuses `CidrBlock` (AWS's codes and messages); it is
described with `Ipv6Native`, no `CidrBlock`, `AvailableIpAddressCount` 0,
`AssignIpv6AddressOnCreation` on and resource-name hostnames. Instances launched
into it get one IPv6 address and no private IPv4 (Xen types, private IPv4
addresses, public IPv4 addresses, `ip-name` hostnames and A records refused). The
packet tests (root only) ping and connect over IPv6 inside a VPC and across a
peering, check that security groups, network ACLs and missing routes refuse, go out
through an egress-only internet gateway, and resolve the resource name's AAAA
record. VPCs of the packet tests are in 10.94-10.95.
"""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from helpers import A_ID, active_peering, default_sg, expect_error, main_route_table, make_vpc, wait_for
from netprobe import Dp, listener

IMAGE = "ami-0123456789abcdef0"
INET_HOST6 = "2001:db8:ffff::10"


def v6_vpc(ec2, cidr: str | None = None) -> tuple[str, ipaddress.IPv6Network]:
    """A VPC with an Amazon-provided IPv6 block, once the block is associated."""
    vid = make_vpc(ec2, cidr, AmazonProvidedIpv6CidrBlock=True)

    def block():
        for a in ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0].get("Ipv6CidrBlockAssociationSet", []):
            if a["Ipv6CidrBlockState"]["State"] == "associated":
                return a["Ipv6CidrBlock"]
        return None

    return vid, ipaddress.ip_network(wait_for(block, timeout=5, what="an IPv6 block"))


def sixty_four(block: ipaddress.IPv6Network, n: int) -> str:
    """The `n`th /64 of the VPC's /56."""
    return str(ipaddress.IPv6Network((int(block.network_address) + (n << 64), 64)))


def native_subnet(ec2, vid: str, block, n: int = 1, **kw) -> dict:
    return ec2.create_subnet(VpcId=vid, Ipv6Native=True, Ipv6CidrBlock=sixty_four(block, n), **kw)["Subnet"]


def launch(ec2, sid: str, **kw) -> dict:
    args = {"ImageId": IMAGE, "InstanceType": "t3.micro", "MinCount": 1, "MaxCount": 1, "SubnetId": sid, **kw}
    return ec2.run_instances(**args)["Instances"][0]


def subnets_of(ec2, vid: str) -> list[dict]:
    return ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]


# -- the API ------------------------------------------------------------------------

def test_create_and_describe_an_ipv6_only_subnet(client, aws):
    ec2 = client("A")
    vid, block = v6_vpc(ec2)
    s = native_subnet(ec2, vid, block, TagSpecifications=[
        {"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": "v6only"}]}])
    sid = s["SubnetId"]
    assert s["Ipv6Native"] is True
    assert "CidrBlock" not in s, s
    assert s["AvailableIpAddressCount"] == 0
    assert s["AssignIpv6AddressOnCreation"] is True and s["MapPublicIpOnLaunch"] is False
    assert s["PrivateDnsNameOptionsOnLaunch"] == {"HostnameType": "resource-name",
                                                  "EnableResourceNameDnsARecord": False,
                                                  "EnableResourceNameDnsAAAARecord": False}
    assert [a["Ipv6CidrBlock"] for a in s["Ipv6CidrBlockAssociationSet"]] == [sixty_four(block, 1)]
    # Filters: ipv6-native, and an IPv4 filter it has no value for.
    got = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                        {"Name": "ipv6-native", "Values": ["true"]}])["Subnets"]
    assert [x["SubnetId"] for x in got] == [sid]
    dual = ec2.create_subnet(VpcId=vid, CidrBlock=ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0]["CidrBlock"]
                             .replace(".0.0/16", ".2.0/24"), Ipv6CidrBlock=sixty_four(block, 2))["Subnet"]
    assert dual["Ipv6Native"] is False and dual["AvailableIpAddressCount"] == 251
    got = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]},
                                        {"Name": "ipv6-native", "Values": ["false"]}])["Subnets"]
    assert [x["SubnetId"] for x in got] == [dual["SubnetId"]]
    out = aws("A", "ec2", "describe-subnets", "--subnet-ids", sid)["Subnets"][0]
    assert out["Ipv6Native"] is True and "CidrBlock" not in out

    # Wrong combinations: AWS's codes and messages; nothing is created.
    before = len(subnets_of(ec2, vid))
    with expect_error("MissingParameter") as e:
        ec2.create_subnet(VpcId=vid, Ipv6Native=True)
    assert e.error.response["Error"]["Message"] == \
        "Either 'ipv6CidrBlock' or 'ipv6IpamPoolId' should be provided."
    with expect_error("InvalidParameterCombination") as e:
        ec2.create_subnet(VpcId=vid, Ipv6Native=True, Ipv6CidrBlock=sixty_four(block, 3), CidrBlock="10.0.3.0/24")
    assert e.error.response["Error"]["Message"] == \
        "When specifying ipv4 parameters, cidrBlock or ipv4IpamPoolId, you cannot set ipv6Native to true."
    with expect_error("InvalidSubnet.Range"):
        ec2.create_subnet(VpcId=vid, Ipv6Native=True, Ipv6CidrBlock="2001:db8:1:1::/64")
    with expect_error("InvalidSubnet.Conflict"):
        native_subnet(ec2, vid, block, 1)
    with expect_error("MissingParameter"):
        ec2.create_subnet(VpcId=vid, Ipv6CidrBlock=sixty_four(block, 4))  # not IPv6-only: needs CidrBlock
    with expect_error("DryRunOperation", 412):
        native_subnet(ec2, vid, block, 5, DryRun=True)
    # A VPC without an IPv6 block has no /64 to give.
    plain = make_vpc(ec2)
    with expect_error("InvalidSubnet.Range"):
        ec2.create_subnet(VpcId=plain, Ipv6Native=True, Ipv6CidrBlock=sixty_four(block, 6))
    assert len(subnets_of(ec2, vid)) == before
    assert subnets_of(ec2, plain) == []


def test_attributes_an_ipv6_only_subnet_refuses(client):
    ec2 = client("A")
    vid, block = v6_vpc(ec2)
    sid = native_subnet(ec2, vid, block)["SubnetId"]
    with expect_error("InvalidParameterValue"):
        ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": True})
    with expect_error("InvalidParameterValue"):
        ec2.modify_subnet_attribute(SubnetId=sid, AssignIpv6AddressOnCreation={"Value": False})
    with expect_error("InvalidParameterValue") as e:
        ec2.modify_subnet_attribute(SubnetId=sid, PrivateDnsHostnameTypeOnLaunch="ip-name")
    assert "'ip-name'" in e.error.response["Error"]["Message"]
    with expect_error("InvalidParameterValue"):
        ec2.modify_subnet_attribute(SubnetId=sid, EnableResourceNameDnsARecordOnLaunch={"Value": True})
    # What an IPv6-only subnet does use.
    ec2.modify_subnet_attribute(SubnetId=sid, EnableResourceNameDnsAAAARecordOnLaunch={"Value": True})
    ec2.modify_subnet_attribute(SubnetId=sid, EnableDns64={"Value": True})
    s = ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]
    assert s["PrivateDnsNameOptionsOnLaunch"] == {"HostnameType": "resource-name",
                                                  "EnableResourceNameDnsARecord": False,
                                                  "EnableResourceNameDnsAAAARecord": True}
    assert s["EnableDns64"] is True and s["MapPublicIpOnLaunch"] is False and s["AssignIpv6AddressOnCreation"]
    # Its only IPv6 block cannot go.
    assoc = s["Ipv6CidrBlockAssociationSet"][0]["AssociationId"]
    with expect_error("OperationNotPermitted"):
        ec2.disassociate_subnet_cidr_block(AssociationId=assoc)
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["Ipv6CidrBlockAssociationSet"][0][
        "Ipv6CidrBlockState"]["State"] == "associated"
    # No NAT gateway: it needs an IPv4 address.
    with expect_error("InvalidParameterValue"):
        ec2.create_nat_gateway(SubnetId=sid, ConnectivityType="private")


def test_instances_get_only_an_ipv6_address(client, aws):
    ec2 = client("A")
    vid, block = v6_vpc(ec2)
    sid = native_subnet(ec2, vid, block)["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=sid, EnableResourceNameDnsAAAARecordOnLaunch={"Value": True})
    net = ipaddress.ip_network(sixty_four(block, 1))

    def count():
        return len(ec2.describe_instances(Filters=[{"Name": "subnet-id", "Values": [sid]}])["Reservations"])

    # Refusals first: nothing is launched by any of them.
    with expect_error("UnsupportedOperation") as e:
        launch(ec2, sid, InstanceType="t2.micro")
    assert "t2.micro" in e.error.response["Error"]["Message"]
    with expect_error("InvalidParameterValue"):
        launch(ec2, sid, PrivateIpAddress="10.0.1.10")
    with expect_error("InvalidParameterValue"):
        launch(ec2, sid, Ipv6AddressCount=0)
    with expect_error("InvalidParameterValue"):
        launch(ec2, sid, PrivateDnsNameOptions={"HostnameType": "ip-name"})
    with expect_error("InvalidParameterValue"):
        launch(ec2, sid, PrivateDnsNameOptions={"EnableResourceNameDnsARecord": True})
    with expect_error("InvalidParameterValue"):
        ec2.run_instances(ImageId=IMAGE, InstanceType="t3.micro", MinCount=1, MaxCount=1, NetworkInterfaces=[
            {"DeviceIndex": 0, "SubnetId": sid, "AssociatePublicIpAddress": True}])
    with expect_error("InvalidParameterValue"):
        ec2.run_instances(ImageId=IMAGE, InstanceType="t3.micro", MinCount=1, MaxCount=1, NetworkInterfaces=[
            {"DeviceIndex": 0, "SubnetId": sid, "SecondaryPrivateIpAddressCount": 1}])
    assert count() == 0
    assert ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [sid]}])[
        "NetworkInterfaces"] == []

    i = launch(ec2, sid)
    iid = i["InstanceId"]
    assert "PrivateIpAddress" not in i, i
    assert i["PrivateDnsName"] == f"{iid}.ec2.internal"
    assert i["PrivateDnsNameOptions"] == {"HostnameType": "resource-name", "EnableResourceNameDnsARecord": False,
                                          "EnableResourceNameDnsAAAARecord": True}
    [ni] = i["NetworkInterfaces"]
    assert "PrivateIpAddress" not in ni and ni["PrivateIpAddresses"] == []
    [v6] = [a["Ipv6Address"] for a in ni["Ipv6Addresses"]]
    assert ipaddress.ip_address(v6) in net
    d = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert "PrivateIpAddress" not in d and "PublicIpAddress" not in d
    eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[ni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert "PrivateIpAddress" not in eni and eni["PrivateIpAddresses"] == []
    assert [a["Ipv6Address"] for a in eni["Ipv6Addresses"]] == [v6]
    out = aws("A", "ec2", "describe-instances", "--instance-ids", iid)["Reservations"][0]["Instances"][0]
    assert "PrivateIpAddress" not in out and out["NetworkInterfaces"][0]["Ipv6Addresses"][0]["Ipv6Address"] == v6
    # A second instance gets another address of the /64.
    j = launch(ec2, sid)
    v6b = j["NetworkInterfaces"][0]["Ipv6Addresses"][0]["Ipv6Address"]
    assert v6b != v6 and ipaddress.ip_address(v6b) in net

    # A network interface made on its own gets the same: one IPv6 address, no IPv4.
    eni = ec2.create_network_interface(SubnetId=sid)["NetworkInterface"]
    assert "PrivateIpAddress" not in eni and eni["PrivateIpAddresses"] == []
    assert len(eni["Ipv6Addresses"]) == 1
    with expect_error("InvalidParameterValue"):
        ec2.create_network_interface(SubnetId=sid, PrivateIpAddress="10.0.1.20")
    with expect_error("InvalidParameterValue"):
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                        SecondaryPrivateIpAddressCount=1)
    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])

    # Hostname type ip-name, an A record, an Elastic IP, a Xen type: all need IPv4.
    with expect_error("InvalidParameterValue"):
        ec2.modify_private_dns_name_options(InstanceId=iid, EnableResourceNameDnsARecord=True)
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    with expect_error("InvalidParameterValue"):
        ec2.associate_address(AllocationId=alloc, InstanceId=iid)
    ec2.release_address(AllocationId=alloc)
    ec2.stop_instances(InstanceIds=[iid])
    wait_for(lambda: ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"],
             lambda s: s == "stopped", timeout=10, what="stopped")
    with expect_error("InvalidParameterValue"):
        ec2.modify_private_dns_name_options(InstanceId=iid, PrivateDnsHostnameType="ip-name")
    with expect_error("UnsupportedOperation"):
        ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t2.micro"})
    ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "m5.large"})
    ec2.start_instances(InstanceIds=[iid])

    # The reachability analyzer answers over IPv6 for IPv6-only ends: the default group
    # admits its own members; a group without rules refuses.
    def analyse(src: str, dst: str) -> dict:
        path = ec2.create_network_insights_path(Source=src, Destination=dst, Protocol="tcp",
                                                DestinationPort=22)["NetworkInsightsPath"]
        started = ec2.start_network_insights_analysis(
            NetworkInsightsPathId=path["NetworkInsightsPathId"])["NetworkInsightsAnalysis"]
        [got] = ec2.describe_network_insights_analyses(
            NetworkInsightsAnalysisIds=[started["NetworkInsightsAnalysisId"]])["NetworkInsightsAnalyses"]
        assert got["Status"] == "succeeded", got
        return got

    wait_for(lambda: ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"],
             lambda s: s == "running", timeout=10, what="running")
    wait_for(lambda: ec2.describe_instances(InstanceIds=[j["InstanceId"]])["Reservations"][0]["Instances"][0][
        "State"]["Name"], lambda s: s == "running", timeout=10, what="running")
    assert analyse(iid, j["InstanceId"])["NetworkPathFound"] is True
    closed = ec2.create_security_group(GroupName="closed", Description="no ingress", VpcId=vid)["GroupId"]
    k = launch(ec2, sid, SecurityGroupIds=[closed])
    wait_for(lambda: ec2.describe_instances(InstanceIds=[k["InstanceId"]])["Reservations"][0]["Instances"][0][
        "State"]["Name"], lambda s: s == "running", timeout=10, what="running")
    assert analyse(iid, k["InstanceId"])["NetworkPathFound"] is False

    # The subnet goes once its instances have.
    with expect_error("DependencyViolation"):
        ec2.delete_subnet(SubnetId=sid)
    ids = [iid, j["InstanceId"], k["InstanceId"]]
    ec2.terminate_instances(InstanceIds=ids)
    wait_for(lambda: ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [sid]}])[
        "NetworkInterfaces"], lambda x: x == [], timeout=10, what="interfaces gone")
    ec2.delete_subnet(SubnetId=sid)


def test_an_ipv6_only_default_subnet(server_factory):
    s = server_factory()
    ec2 = s.client("A")
    vid = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    az = "us-east-1a"
    # As AWS documents: the zone's default subnet must go first.
    with expect_error("DefaultSubnetAlreadyExistsInAvailabilityZone"):
        ec2.create_default_subnet(AvailabilityZone=az, Ipv6Native=True)
    [old] = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]},
                                          {"Name": "availability-zone", "Values": [az]}])["Subnets"]
    ec2.delete_subnet(SubnetId=old["SubnetId"])
    with expect_error("InvalidParameterCombination"):
        ec2.create_default_subnet(AvailabilityZone=az, Ipv6Native=True)  # the default VPC has no IPv6 block
    ec2.associate_vpc_cidr_block(VpcId=vid, AmazonProvidedIpv6CidrBlock=True)

    def block():
        for a in ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0].get("Ipv6CidrBlockAssociationSet", []):
            if a["Ipv6CidrBlockState"]["State"] == "associated":
                return a["Ipv6CidrBlock"]
        return None

    v6 = ipaddress.ip_network(wait_for(block, timeout=5, what="an IPv6 block"))
    sub = ec2.create_default_subnet(AvailabilityZone=az, Ipv6Native=True)["Subnet"]
    assert sub["Ipv6Native"] is True and sub["DefaultForAz"] is True and "CidrBlock" not in sub
    [a] = sub["Ipv6CidrBlockAssociationSet"]
    got = ipaddress.ip_network(a["Ipv6CidrBlock"])
    assert got.prefixlen == 64 and got.subnet_of(v6)


# -- real packets (root) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def dp(dp_server):
    """The data-plane server (needs root: fails, does not skip, without it)."""
    return Dp(dp_server)


def no_ipv4_inside(ns: str):
    out = subprocess.run(["ip", "-n", ns, "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "", f"an IPv4 address inside {ns}: {out}"
    routes = subprocess.run(["ip", "-n", ns, "-4", "route", "show"], capture_output=True, text=True,
                            check=True).stdout
    assert routes.strip() == "", f"IPv4 routes inside {ns}: {routes}"
    v6 = subprocess.run(["ip", "-n", ns, "-6", "route", "show", "default"], capture_output=True, text=True,
                        check=True).stdout
    assert "via fe80::1" in v6, f"no default IPv6 route inside {ns}: {v6}"


def test_ipv6_only_instances_with_real_packets(dp):
    from test_dns import dig, wait_resolver

    ec2 = dp.ec2("A")
    vid, block = v6_vpc(ec2, "10.94.0.0/16")
    ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
    sid = native_subnet(ec2, vid, block, 1)["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=sid, EnableResourceNameDnsAAAARecordOnLaunch={"Value": True})
    dual = ec2.create_subnet(VpcId=vid, CidrBlock="10.94.2.0/24", Ipv6CidrBlock=sixty_four(block, 2))["Subnet"][
        "SubnetId"]
    a = dp.launch(ec2, sid)
    b = dp.launch(ec2, sid)
    c = dp.launch(ec2, dual, "10.94.2.10", ipv6=1)
    assert a.ip is None and len(a.ipv6) == 1
    no_ipv4_inside(a.ns)

    # Inside the VPC: IPv6-only to IPv6-only and to dual-stack, both ways; TCP too.
    dp.ok_ping(a, b.ipv6[0], "IPv6-only to IPv6-only")
    dp.ok_ping(a, c.ipv6[0], "IPv6-only to dual-stack")
    dp.ok_ping(c, a.ipv6[0], "dual-stack to IPv6-only")
    with listener(b.ns, 8080, ident="b"):
        dp.ok_tcp(a, b.ipv6[0], 8080, "TCP over IPv6")
    dp.no_ping(a, "10.94.2.10", "no IPv4 at all from an IPv6-only instance")

    # Its resource name answers AAAA with its address, at the IPv6 resolver its resolv.conf names.
    wait_resolver(a.ns, "fd00:ec2::253")
    r = dig(a.ns, f"{b.id}.ec2.internal", rtype="AAAA")
    assert r.status == "NOERROR" and r.answers == [("AAAA", b.ipv6[0])], r.out
    r = dig(a.ns, f"{b.id}.ec2.internal", rtype="A")
    assert r.status == "NOERROR" and r.answers == [], r.out

    # A security group without rules refuses.
    closed = ec2.create_security_group(GroupName="v6-closed", Description="no ingress", VpcId=vid)["GroupId"]
    d = dp.launch(ec2, sid, groups=[closed])
    dp.no_ping(a, d.ipv6[0], "the group admits nothing")
    with listener(d.ns, 8080, ident="d"):
        dp.no_tcp(a, d.ipv6[0], 8080, "the group admits nothing")
    ec2.authorize_security_group_ingress(GroupId=closed, IpPermissions=[
        {"IpProtocol": "icmpv6", "FromPort": -1, "ToPort": -1, "Ipv6Ranges": [{"CidrIpv6": str(block)}]}])
    dp.converge(force=True)
    dp.ok_ping(a, d.ipv6[0], "an ICMPv6 rule admits ping")

    # A network ACL deny from the dual-stack /64 stops it; the subnet's own traffic passes.
    acl = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [sid]}])[
        "NetworkAcls"][0]["NetworkAclId"]
    ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Protocol="-1", RuleAction="deny",
                                 Egress=False, Ipv6CidrBlock=sixty_four(block, 2))
    dp.converge(force=True)
    dp.no_ping(c, a.ipv6[0], "the ACL denies the dual-stack subnet")
    dp.ok_ping(b, a.ipv6[0], "the subnet's own traffic skips its ACL")
    ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=False)
    dp.converge(force=True)
    dp.ok_ping(c, a.ipv6[0], "the deny is gone")

    # A peering: refused without routes, passes with routes both ways.
    vid2, block2 = v6_vpc(ec2, "10.95.0.0/16")
    sid2 = native_subnet(ec2, vid2, block2, 1)["SubnetId"]
    ec2.authorize_security_group_ingress(GroupId=default_sg(ec2, vid2), IpPermissions=[
        {"IpProtocol": "icmpv6", "FromPort": -1, "ToPort": -1, "Ipv6Ranges": [{"CidrIpv6": str(block)}]}])
    e = dp.launch(ec2, sid2)
    pcx = active_peering(ec2, ec2, vid, vid2, b_owner=A_ID)
    dp.converge(force=True)
    dp.no_ping(a, e.ipv6[0], "no route across the peering yet")
    rtb1, rtb2 = main_route_table(ec2, vid)["RouteTableId"], main_route_table(ec2, vid2)["RouteTableId"]
    ec2.create_route(RouteTableId=rtb1, DestinationIpv6CidrBlock=str(block2), VpcPeeringConnectionId=pcx)
    ec2.create_route(RouteTableId=rtb2, DestinationIpv6CidrBlock=str(block), VpcPeeringConnectionId=pcx)
    dp.converge(force=True)
    dp.ok_ping(a, e.ipv6[0], "IPv6-only to IPv6-only across the peering")

    # Out through an egress-only internet gateway: replies come back, nothing comes in.
    eigw = ec2.create_egress_only_internet_gateway(VpcId=vid)["EgressOnlyInternetGateway"][
        "EgressOnlyInternetGatewayId"]
    ec2.authorize_security_group_ingress(GroupId=default_sg(ec2, vid), IpPermissions=[
        {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    dp.converge(force=True)
    dp.no_ping(a, INET_HOST6, "no ::/0 route yet")
    ec2.create_route(RouteTableId=rtb1, DestinationIpv6CidrBlock="::/0", EgressOnlyInternetGatewayId=eigw)
    dp.converge(force=True)
    dp.ok_ping(a, INET_HOST6, "out through the egress-only gateway")
    inet = dp.inet_ns()
    with listener(inet, 8443, ident="internet"):
        dp.ok_tcp(a, INET_HOST6, 8443, "a TCP connection out and its replies")
    with listener(a.ns, 8080, ident="a"):
        dp.no_tcp(inet, a.ipv6[0], 8080, "the internet cannot connect in")
