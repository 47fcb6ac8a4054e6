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


QUERIER = r"""
import socket, struct, sys, time
servers, name, secs = sys.argv[1].split(","), sys.argv[2], float(sys.argv[3])
q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
lost, worst, n, qid = [], 0.0, 0, 0
end = time.monotonic() + secs
while time.monotonic() < end:
    for server in servers:
        qid = (qid + 1) & 0xffff
        fam = socket.AF_INET6 if ":" in server else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        t = time.monotonic()
        s.sendto(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + b"\0\1\0\1", (server, 53))
        try:
            while True:
                data = s.recv(2048)
                if struct.unpack(">H", data[:2])[0] == qid:
                    break
            worst = max(worst, time.monotonic() - t)
        except socket.timeout:
            lost.append((server, round(time.monotonic() - end + secs, 2)))
        s.close()
        n += 1
print(n, len(lost), round(worst * 1000, 1), lost[:10])
"""


def test_no_query_is_lost_while_the_servers_converge(dp):
    """Queries in a loop at all three addresses while other VPCs' router namespaces come and
    go and this VPC changes (each change makes the DNS manager converge): none may be lost."""
    import subprocess
    ec2 = dp.ec2("A")
    vid, sid = dual_stack_vpc(ec2, "10.93.0.0/16", "10.93.1.0/24")
    a = run(dp, ec2, sid, "10.93.1.10")
    for server in ("10.93.0.2", "169.254.169.253", V6_RESOLVER):
        wait_resolver(a.ns, server)
    other = ec2.create_vpc(CidrBlock="10.94.0.0/16")["Vpc"]["VpcId"]
    other_sub = ec2.create_subnet(VpcId=other, CidrBlock="10.94.1.0/24")["Subnet"]["SubnetId"]
    querier = subprocess.Popen(["ip", "netns", "exec", a.ns, "python3", "-c", QUERIER,
                                f"10.93.0.2,169.254.169.253,{V6_RESOLVER}", "ip-10-93-1-10.ec2.internal",
                                "12"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 11
        k = 0
        while time.monotonic() < end:
            k += 1
            # Another VPC's router namespace appears and goes (its server starts and stops) ...
            o = ec2.run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                  SubnetId=other_sub)["Instances"][0]["InstanceId"]
            dp.server.instance_ids.add(o)
            # ... and this VPC changes (a neighbour comes and goes; its tags change).
            n = ec2.run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                  SubnetId=sid)["Instances"][0]["InstanceId"]
            dp.server.instance_ids.add(n)
            ec2.create_tags(Resources=[vid], Tags=[{"Key": "round", "Value": str(k)}])
            time.sleep(0.3)
            ec2.terminate_instances(InstanceIds=[o, n])
            time.sleep(0.3)
        out, err = querier.communicate(timeout=30)
    finally:
        if querier.poll() is None:
            querier.kill()
    assert querier.returncode == 0, err
    sent, lost, worst_ms, which = out.split(maxsplit=3)
    assert int(sent) > 100, out
    assert int(lost) == 0, f"{lost} of {sent} queries got no answer within 1 s: {which} (worst {worst_ms} ms)"


def test_every_resolver_address_answers_as_soon_as_the_vpc_has_one(dp):
    """Fresh VPCs, one after another: once base + 2 answers, 169.254.169.253 answers at
    the first try. (A server bound before its router namespace had any address
    answered 169.254.169.253's queries from base + 2, and the client dropped them: this
    failed for about one VPC in ten.)"""
    ec2 = dp.ec2("A")
    late = []
    for k in range(25):
        net = f"10.{100 + k}"
        vid = ec2.create_vpc(CidrBlock=f"{net}.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
        sid = ec2.create_subnet(VpcId=vid, CidrBlock=f"{net}.1.0/24")["Subnet"]["SubnetId"]
        i = dp.launch(ec2, sid, f"{net}.1.10")
        wait_resolver(i.ns, f"{net}.0.2")
        name = f"ip-{net.replace('.', '-')}-1-10.ec2.internal"
        for server in ("169.254.169.253", f"{net}.0.2"):
            r = dig(i.ns, name, server=server)
            if r.status != "NOERROR" or r.answers != [("A", f"{net}.1.10")] or r.took >= ANSWERED_WITHIN:
                late.append((vid, server, r.status, round(r.took, 2)))
    assert not late, late
