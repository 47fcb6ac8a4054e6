"""Resource-based names, AAAA records and the resolver's IPv6 address, with real lookups.

AWS gives every instance a resource name (`i-0123456789abcdef0.ec2.internal`) beside
its IP names; whether it answers A and/or AAAA is the instance's
`PrivateDnsNameOptions`, which a launch takes from its subnet's
`PrivateDnsNameOptionsOnLaunch` (ModifySubnetAttribute) unless RunInstances says
otherwise, and ModifyPrivateDnsNameOptions changes later. The resolver also answers at
fd00:ec2::253 (UDP and TCP) for instances with an IPv6 address. Every lookup has a 1 s
timeout and one try. The VPCs use 10.90-10.92; traffic only goes between namespaces
this module's vpcd made. Needs root: fails (does not skip) otherwise.
"""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from netprobe import Dp, Inst
from test_dns import ANSWERED_WITHIN, dig, no_answer, resolves, status, wait_resolver

pytestmark = pytest.mark.usefixtures("require_root")

V6_RESOLVER = "fd00:ec2::253"


@pytest.fixture(scope="module")
def dp(dp_server):
    return Dp(dp_server)


def dual_stack_vpc(ec2, cidr: str, subnet_cidr: str, support: bool = True):
    vid = ec2.create_vpc(CidrBlock=cidr, AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    if support:
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
    else:
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsSupport={"Value": False})
    deadline = time.monotonic() + 5
    block = None
    while block is None and time.monotonic() < deadline:
        for a in ec2.describe_vpcs(VpcIds=[vid])["Vpcs"][0].get("Ipv6CidrBlockAssociationSet", []):
            if a["Ipv6CidrBlockState"]["State"] == "associated":
                block = a["Ipv6CidrBlock"]
    assert block, "the VPC got no IPv6 block"
    sub64 = block.replace("::/56", "::/64")
    sid = ec2.create_subnet(VpcId=vid, CidrBlock=subnet_cidr, Ipv6CidrBlock=sub64)["Subnet"]["SubnetId"]
    return vid, sid


def run(dp, ec2, subnet: str, ip: str, **kw) -> Inst:
    desc = ec2.run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                             SubnetId=subnet, PrivateIpAddress=ip, Ipv6AddressCount=1, **kw)["Instances"][0]
    dp.server.instance_ids.add(desc["InstanceId"])
    inst = Inst(desc, "A", ec2.meta.region_name)
    dp.wait_ready(inst)
    return inst


def aaaa(ns: str, name: str, want: str, **kw):
    r = dig(ns, name, rtype="AAAA", **kw)
    assert r.status == "NOERROR" and r.answers == [("AAAA", want)], \
        f"{r.argv}: wanted {want}, got {r.status} {r.answers}\n{r.out}"
    assert r.took < ANSWERED_WITHIN, f"{r.argv} took {r.took:.2f}s"


def options(ec2, instance_id: str) -> dict:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def test_resource_names_answer_a_and_aaaa_as_the_options_say(dp):
    ec2 = dp.ec2("A")
    vid, sid = dual_stack_vpc(ec2, "10.90.0.0/16", "10.90.1.0/24")
    sub = ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]
    assert sub["PrivateDnsNameOptionsOnLaunch"] == {"HostnameType": "ip-name",
                                                    "EnableResourceNameDnsARecord": False,
                                                    "EnableResourceNameDnsAAAARecord": False}

    # The subnet's options on launch, one attribute per call, as the CLI and Terraform send them.
    ec2.modify_subnet_attribute(SubnetId=sid, PrivateDnsHostnameTypeOnLaunch="resource-name")
    ec2.modify_subnet_attribute(SubnetId=sid, EnableResourceNameDnsARecordOnLaunch={"Value": True})
    ec2.modify_subnet_attribute(SubnetId=sid, EnableResourceNameDnsAAAARecordOnLaunch={"Value": True})
    with pytest.raises(ClientError) as e:
        ec2.modify_subnet_attribute(SubnetId=sid, PrivateDnsHostnameTypeOnLaunch="host-name")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    sub = ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]
    assert sub["PrivateDnsNameOptionsOnLaunch"] == {"HostnameType": "resource-name",
                                                    "EnableResourceNameDnsARecord": True,
                                                    "EnableResourceNameDnsAAAARecord": True}

    # a takes the subnet's options; b overrides them at launch.
    a = run(dp, ec2, sid, "10.90.1.10")
    b = run(dp, ec2, sid, "10.90.1.11", PrivateDnsNameOptions={
        "HostnameType": "ip-name", "EnableResourceNameDnsARecord": False,
        "EnableResourceNameDnsAAAARecord": False})
    da, db = options(ec2, a.id), options(ec2, b.id)
    assert da["PrivateDnsNameOptions"] == {"HostnameType": "resource-name", "EnableResourceNameDnsARecord": True,
                                           "EnableResourceNameDnsAAAARecord": True}
    assert db["PrivateDnsNameOptions"] == {"HostnameType": "ip-name", "EnableResourceNameDnsARecord": False,
                                           "EnableResourceNameDnsAAAARecord": False}
    a_name, b_name = f"{a.id}.ec2.internal", f"{b.id}.ec2.internal"
    assert da["PrivateDnsName"] == a_name                        # the hostname type decides what is shown
    assert db["PrivateDnsName"] == "ip-10-90-1-11.ec2.internal"
    assert ec2.describe_instances(Filters=[{"Name": "private-dns-name", "Values": [a_name]}])[
        "Reservations"][0]["Instances"][0]["InstanceId"] == a.id

    wait_resolver(a.ns, "10.90.0.2")
    resolves(a.ns, a_name, "10.90.1.10")
    aaaa(a.ns, a_name, a.ipv6[0])
    resolves(a.ns, "ip-10-90-1-10.ec2.internal", "10.90.1.10")      # the IP name stays, A only
    status(a.ns, "ip-10-90-1-10.ec2.internal", "NOERROR", rtype="AAAA")
    status(a.ns, b_name, "NXDOMAIN")                                 # both of b's flags off
    status(a.ns, b_name, "NXDOMAIN", rtype="AAAA")
    status(a.ns, "i-0123456789abcdef0.ec2.internal", "NXDOMAIN")     # nobody
    status(a.ns, f"{a.id}.eu-west-1.compute.internal", "NXDOMAIN")   # wrong region's domain

    # The record flags change at once on a running instance; the hostname type only when stopped.
    ec2.modify_private_dns_name_options(InstanceId=b.id, EnableResourceNameDnsARecord=True)
    resolves(a.ns, b_name, "10.90.1.11")
    status(a.ns, b_name, "NOERROR", rtype="AAAA")                    # the name exists, AAAA is off
    ec2.modify_private_dns_name_options(InstanceId=a.id, EnableResourceNameDnsARecord=False)
    status(a.ns, a_name, "NOERROR")                                  # A off, AAAA still on
    aaaa(a.ns, a_name, a.ipv6[0])
    with pytest.raises(ClientError) as e:
        ec2.modify_private_dns_name_options(InstanceId=b.id, PrivateDnsHostnameType="resource-name")
    assert e.value.response["Error"]["Code"] == "IncorrectInstanceState"
    with pytest.raises(ClientError) as e:
        ec2.modify_private_dns_name_options(InstanceId=b.id, PrivateDnsHostnameType="dns-name")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert options(ec2, b.id)["PrivateDnsNameOptions"]["HostnameType"] == "ip-name"

    # Names of a VPC without hostnames do not resolve; no PTR for IPv6 addresses (AWS has none).
    status(a.ns, a.ipv6[0], "NXDOMAIN", reverse=True)
    ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": False})
    status(a.ns, f"{b.id}.ec2.internal", "NXDOMAIN")
    status(a.ns, a_name, "NXDOMAIN", rtype="AAAA")


def test_the_resolver_answers_at_fd00_ec2_253_over_udp_and_tcp(dp):
    ec2 = dp.ec2("A")
    _, sid = dual_stack_vpc(ec2, "10.91.0.0/16", "10.91.1.0/24")
    ec2.modify_subnet_attribute(SubnetId=sid, EnableResourceNameDnsAAAARecordOnLaunch={"Value": True})
    a = run(dp, ec2, sid, "10.91.1.10")
    wait_resolver(a.ns, V6_RESOLVER)
    resolves(a.ns, "ip-10-91-1-10.ec2.internal", "10.91.1.10", server=V6_RESOLVER)
    resolves(a.ns, "ip-10-91-1-10.ec2.internal", "10.91.1.10", server=V6_RESOLVER, tcp=True)
    aaaa(a.ns, f"{a.id}.ec2.internal", a.ipv6[0], server=V6_RESOLVER)
    aaaa(a.ns, f"{a.id}.ec2.internal", a.ipv6[0], server=V6_RESOLVER, tcp=True)
    status(a.ns, f"{a.id}.ec2.internal", "NOERROR", server=V6_RESOLVER)     # A is off on this subnet

    # A VPC without DNS support: nothing answers at fd00:ec2::253 (nor at its IPv4 addresses).
    _, sid2 = dual_stack_vpc(ec2, "10.92.0.0/16", "10.92.1.0/24", support=False)
    c = run(dp, ec2, sid2, "10.92.1.10")
    resolves(a.ns, "ip-10-91-1-10.ec2.internal", "10.91.1.10", server=V6_RESOLVER)  # c's VPC is up
    no_answer(c.ns, "ip-10-92-1-10.ec2.internal", server=V6_RESOLVER)
    no_answer(c.ns, "ip-10-92-1-10.ec2.internal", server=V6_RESOLVER, tcp=True)
    no_answer(c.ns, "ip-10-92-1-10.ec2.internal", server="169.254.169.253")
