"""The data plane with real packets: vpcd (as root) realizes VPCs, peerings, routes,
security groups and network ACLs in the kernel; the tests drive it through the EC2 API
(boto3) and probe from the instances' network namespaces (see netprobe.py).

Every test makes its own VPCs with their own CIDRs (10.10-10.69 here; 10.254 is the
convergence barrier's) and checks the negative cases as carefully as the positive
ones: a probe expected to fail runs only after every earlier API change is realized
(Dp.converge), for about a second. Traffic only ever goes between namespaces this
module's vpcd created. One server for the module; its teardown runs `vpcd teardown`
and checks that none of its namespaces is left (conftest.dp_server).

Needs root: the module fails (does not skip) otherwise.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from types import SimpleNamespace

import pytest

from helpers import A_ID, B_ID, C_ID, active_peering, default_sg, main_route_table, request_peering, wait_for, wait_pcx, vpc_ipv6_block
from netprobe import Dp, forwarded, last_output, listener, make_middlebox, netns_exists, ping_stats, tcp_stream, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

INET_HOST = "198.51.100.10"
INET_HOST6 = "2001:db8:ffff::10"
ICMP_ALL = {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1}


@pytest.fixture(scope="module")
def dp(dp_server):
    return Dp(dp_server)


# -- API helpers -------------------------------------------------------------------

def vpc(ec2, cidr: str, ipv6: bool = False) -> SimpleNamespace:
    kw = {"AmazonProvidedIpv6CidrBlock": True} if ipv6 else {}
    vid = ec2.create_vpc(CidrBlock=cidr, **kw)["Vpc"]["VpcId"]
    v = SimpleNamespace(id=vid, cidr=cidr, sg=default_sg(ec2, vid), rtb=main_route_table(ec2, vid)["RouteTableId"],
                        v6=None)
    if ipv6:
        v.v6 = vpc_ipv6_block(ec2, vid)
    return v


def subnet(ec2, v: SimpleNamespace, cidr: str, v6_index: int | None = None) -> str:
    kw = {}
    if v6_index is not None:
        net = ipaddress.ip_network(v.v6)
        kw["Ipv6CidrBlock"] = str(list(net.subnets(new_prefix=64))[v6_index])
    return ec2.create_subnet(VpcId=v.id, CidrBlock=cidr, **kw)["Subnet"]["SubnetId"]


def route(ec2, rtb: str, dest: str, **target):
    key = "DestinationIpv6CidrBlock" if ":" in dest else "DestinationCidrBlock"
    ec2.create_route(RouteTableId=rtb, **{key: dest}, **target)


def route_state(ec2, rtb: str, dest: str) -> str:
    rt = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]
    found = [r for r in rt["Routes"] if dest in (r.get("DestinationCidrBlock"), r.get("DestinationIpv6CidrBlock"))]
    assert len(found) == 1, rt["Routes"]
    return found[0]["State"]


def allow(ec2, sg: str, proto: str = "icmp", cidr: str | None = None, port: int | None = None,
          group: str | None = None, user: str | None = None, egress: bool = False) -> dict:
    perm: dict = {"IpProtocol": proto}
    if proto in ("icmp", "icmpv6"):
        perm.update(FromPort=-1, ToPort=-1)
    elif proto != "-1":
        perm.update(FromPort=port, ToPort=port)
    if cidr and ":" in cidr:
        perm["Ipv6Ranges"] = [{"CidrIpv6": cidr}]
    elif cidr:
        perm["IpRanges"] = [{"CidrIp": cidr}]
    if group:
        pair = {"GroupId": group}
        if user:
            pair["UserId"] = user
        perm["UserIdGroupPairs"] = [pair]
    fn = ec2.authorize_security_group_egress if egress else ec2.authorize_security_group_ingress
    fn(GroupId=sg, IpPermissions=[perm])
    return perm


def peer_routes(a, va, b, vb, pcx: str, v6: bool = False):
    """Routes both ways: A's main table to B's block via pcx, and B's to A's."""
    route(a, va.rtb, vb.v6 if v6 else vb.cidr, VpcPeeringConnectionId=pcx)
    route(b, vb.rtb, va.v6 if v6 else va.cidr, VpcPeeringConnectionId=pcx)


def default_acl(ec2, vpc_id: str) -> dict:
    acls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                              {"Name": "default", "Values": ["true"]}])["NetworkAcls"]
    assert len(acls) == 1, acls
    return acls[0]


def acl_entry(ec2, acl: str, rule: int, proto: str, action: str, cidr: str, egress: bool = False,
              ports: tuple[int, int] | None = None):
    kw = {}
    if proto == "1":
        kw["IcmpTypeCode"] = {"Type": -1, "Code": -1}
    if ports:
        kw["PortRange"] = {"From": ports[0], "To": ports[1]}
    ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=rule, Protocol=proto, RuleAction=action,
                                 Egress=egress, CidrBlock=cidr, **kw)


def router_links(dp: Dp, vpc_id: str) -> str:
    return subprocess.run(["ip", "-n", dp.router_ns(vpc_id), "-br", "link"], capture_output=True,
                          text=True).stdout


def two_peered(dp: Dp, cidr_a: str, cidr_b: str, b_acct: str = "B", b_region: str = "us-east-1",
               allow_icmp: bool = True, ipv6: bool = False):
    """A (account A, us-east-1) and B, each with one subnet and one instance, peered and routed both ways."""
    a, b = dp.ec2("A"), dp.ec2(b_acct, b_region)
    va, vb = vpc(a, cidr_a, ipv6), vpc(b, cidr_b, ipv6)
    sa = subnet(a, va, cidr_a.replace(".0.0/16", ".1.0/24"), 0 if ipv6 else None)
    sb = subnet(b, vb, cidr_b.replace(".0.0/16", ".1.0/24"), 0 if ipv6 else None)
    ia = dp.launch(a, sa, cidr_a.replace(".0.0/16", ".1.10"), ipv6=1 if ipv6 else 0)
    ib = dp.launch(b, sb, cidr_b.replace(".0.0/16", ".1.10"), ipv6=1 if ipv6 else 0)
    owner = {"A": A_ID, "B": B_ID, "C": C_ID}[b_acct]
    pcx = active_peering(a, b, va.id, vb.id, owner, b_region if b_region != "us-east-1" else None)
    peer_routes(a, va, b, vb, pcx)
    if allow_icmp:
        allow(b, vb.sg, "icmp", va.cidr)
        allow(a, va.sg, "icmp", vb.cidr)
    return SimpleNamespace(a=a, b=b, va=va, vb=vb, sa=sa, sb=sb, ia=ia, ib=ib, pcx=pcx)


# -- 1. the seed workflow ------------------------------------------------------------

def test_seed_workflow_step_by_step(dp):
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.10.0.0/16"), vpc(b, "10.20.0.0/16")
    sa, sb = subnet(a, va, "10.10.1.0/24"), subnet(b, vb, "10.20.1.0/24")
    ia = dp.launch(a, sa, "10.10.1.10")
    ib = dp.launch(b, sb, "10.20.1.10")

    dp.no_ping(ia, ib.ip, "before any peering exists")

    pid = request_peering(a, va.id, vb.id, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    route(a, va.rtb, vb.cidr, VpcPeeringConnectionId=pid)
    assert route_state(a, va.rtb, vb.cidr) == "blackhole"
    dp.no_ping(ia, ib.ip, "while the peering is pending-acceptance (A's route is a blackhole)")
    a.delete_route(RouteTableId=va.rtb, DestinationCidrBlock=vb.cidr)

    b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    wait_pcx(a, pid, "active")
    dp.no_ping(ia, ib.ip, "peering active, but no routes")

    route(a, va.rtb, vb.cidr, VpcPeeringConnectionId=pid)
    assert route_state(a, va.rtb, vb.cidr) == "active"
    dp.no_ping(ia, ib.ip, "only A's route: B has no route back")

    route(b, vb.rtb, va.cidr, VpcPeeringConnectionId=pid)
    dp.no_ping(ia, ib.ip, "routes both ways, but B's default group admits only its own members")

    allow(b, vb.sg, "icmp", va.cidr)
    dp.ok_ping(ia, ib.ip, "after B allows ICMP from 10.10.0.0/16")
    dp.no_ping(ib, ia.ip, "the other way: A's default group does not admit B")

    with listener(ib.ns, 8080, "tcp", ident="b"):
        dp.no_tcp(ia, ib.ip, 8080, "B's group allows only ICMP")
        allow(b, vb.sg, "tcp", va.cidr, port=8080)
        assert dp.ok_tcp(ia, ib.ip, 8080, "after the tcp 8080 rule") == "b:hello"
    with listener(ib.ns, 8081, "tcp", ident="b"):
        dp.no_tcp(ia, ib.ip, 8081, "the tcp rule is for port 8080 only")

    with listener(ib.ns, 8080, "udp", ident="b") as srv:
        dp.no_udp(ia, ib.ip, 8080, "no UDP rule yet")
        assert srv.received() == [], "the datagram should have been dropped before B's instance"
        allow(b, vb.sg, "udp", va.cidr, port=8080)
        assert dp.ok_udp(ia, ib.ip, 8080, "after the udp 8080 rule") == "b:hello"


# -- 2. inside one VPC ---------------------------------------------------------------

def test_same_and_cross_subnet_in_one_vpc(dp):
    a = dp.ec2("A")
    v = vpc(a, "10.11.0.0/16")
    s1, s2 = subnet(a, v, "10.11.1.0/24"), subnet(a, v, "10.11.2.0/24")
    i1 = dp.launch(a, s1, "10.11.1.10")
    i2 = dp.launch(a, s1, "10.11.1.11")
    i3 = dp.launch(a, s2, "10.11.2.10")
    lonely = a.create_security_group(GroupName="lonely", Description="no rules", VpcId=v.id)["GroupId"]
    i4 = dp.launch(a, s2, "10.11.2.20", groups=[lonely])

    dp.ok_ping(i1, i2.ip, "same subnet, default group")
    dp.ok_ping(i1, i3.ip, "other subnet, default group")
    dp.ok_ping(i3, i1.ip, "other subnet, the way back")
    with listener(i3.ns, 8080, ident="i3"):
        assert dp.ok_tcp(i2, i3.ip, 8080, "default group admits its members on every port") == "i3:hello"
    with listener(i4.ns, 8080, ident="i4"):
        dp.no_ping(i1, i4.ip, "i4's group has no ingress rules")
        dp.no_tcp(i1, i4.ip, 8080, "i4's group has no ingress rules")
    dp.no_ping(i4, i1.ip, "i4 is not a member of the default group, which admits only its members")


# -- 3. network ACLs -----------------------------------------------------------------

def test_network_acls_are_stateless_and_ordered(dp):
    t = two_peered(dp, "10.12.0.0/16", "10.22.0.0/16")
    b, ia, ib, va, vb = t.b, t.ia, t.ib, t.va, t.vb
    allow(b, vb.sg, "tcp", va.cidr, port=8080)
    allow(b, vb.sg, "udp", va.cidr, port=8080)
    dacl = default_acl(b, vb.id)
    dp.ok_ping(ia, ib.ip, "default ACL allows everything")

    acl_entry(b, dacl["NetworkAclId"], 50, "1", "deny", va.cidr)
    dp.no_ping(ia, ib.ip, "rule 50 denies ICMP from A's block, before the default allow-all (100)")
    with listener(ib.ns, 8080, ident="b"):
        dp.ok_tcp(ia, ib.ip, 8080, "rule 50 denies ICMP only")
    b.delete_network_acl_entry(NetworkAclId=dacl["NetworkAclId"], RuleNumber=50, Egress=False)
    dp.ok_ping(ia, ib.ip, "deny entry removed")

    # A custom ACL admitting tcp/udp 8080 in, but nothing out: only the replies are dropped.
    cacl = b.create_network_acl(VpcId=vb.id)["NetworkAcl"]["NetworkAclId"]
    acl_entry(b, cacl, 100, "6", "allow", va.cidr, ports=(8080, 8080))
    acl_entry(b, cacl, 110, "17", "allow", va.cidr, ports=(8080, 8080))
    assoc = next(x["NetworkAclAssociationId"] for x in dacl["Associations"] if x["SubnetId"] == t.sb)
    b.replace_network_acl_association(AssociationId=assoc, NetworkAclId=cacl)

    dp.no_ping(ia, ib.ip, "the custom ACL has no ICMP entry")
    with listener(ib.ns, 8080, ident="b"):
        dp.no_tcp(ia, ib.ip, 8080, "inbound 8080 allowed, but the SYN-ACK has no outbound rule")
    with listener(ib.ns, 8080, "udp", ident="b") as srv:
        dp.no_udp(ia, ib.ip, 8080, "inbound allowed, the reply has no outbound rule")
        assert "hello" in srv.received(), \
            f"the inbound datagram should have reached B (only the reply is dropped): {srv.events()}"

    acl_entry(b, cacl, 100, "6", "allow", va.cidr, egress=True, ports=(1024, 65535))
    acl_entry(b, cacl, 110, "17", "allow", va.cidr, egress=True, ports=(1024, 65535))
    with listener(ib.ns, 8080, ident="b"):
        assert dp.ok_tcp(ia, ib.ip, 8080, "outbound 1024-65535 added") == "b:hello"
    with listener(ib.ns, 8080, "udp", ident="b"):
        assert dp.ok_udp(ia, ib.ip, 8080, "outbound 1024-65535 added") == "b:hello"
    dp.no_ping(ia, ib.ip, "still no ICMP entry")

    # An outbound deny with a lower number wins over the allow.
    acl_entry(b, cacl, 90, "6", "deny", va.cidr, egress=True, ports=(1024, 65535))
    with listener(ib.ns, 8080, ident="b"):
        dp.no_tcp(ia, ib.ip, 8080, "outbound rule 90 denies the replies before rule 100 allows them")


# -- 4. security groups by reference ------------------------------------------------

def test_security_group_reference_across_peering(dp):
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.13.0.0/16"), vpc(b, "10.23.0.0/16")
    sa, sb = subnet(a, va, "10.13.1.0/24"), subnet(b, vb, "10.23.1.0/24")
    clients = a.create_security_group(GroupName="clients", Description="c", VpcId=va.id)["GroupId"]
    web = b.create_security_group(GroupName="web", Description="w", VpcId=vb.id)["GroupId"]
    a1 = dp.launch(a, sa, "10.13.1.10", groups=[clients])
    a2 = dp.launch(a, sa, "10.13.1.20")  # default group only
    b1 = dp.launch(b, sb, "10.23.1.10", groups=[web])
    pcx = active_peering(a, b, va.id, vb.id)
    peer_routes(a, va, b, vb, pcx)
    perm = allow(b, web, "tcp", port=8080, group=clients, user=A_ID)

    with listener(b1.ns, 8080, ident="b1") as srv:
        assert dp.ok_tcp(a1, b1.ip, 8080, "a1 is in the referenced peer group") == "b1:hello"
        dp.no_tcp(a2, b1.ip, 8080, "a2 is not in the referenced group")
        dp.no_ping(a1, b1.ip, "the reference admits tcp 8080 only")
        assert {e["conn"].removeprefix("::ffff:") for e in srv.events() if "conn" in e} <= {a1.ip}

        # Membership follows the interface's groups.
        a.modify_network_interface_attribute(NetworkInterfaceId=a2.eni, Groups=[clients])
        dp.ok_tcp(a2, b1.ip, 8080, "a2 joined the referenced group")
        a.modify_network_interface_attribute(NetworkInterfaceId=a2.eni, Groups=[va.sg])
        dp.no_tcp(a2, b1.ip, 8080, "a2 left the referenced group")

        b.revoke_security_group_ingress(GroupId=web, IpPermissions=[perm])
        dp.no_tcp(a1, b1.ip, 8080, "the rule was revoked")


# -- 4b. security groups are stateful; egress rules apply -----------------------------

def test_security_groups_are_stateful_and_egress_rules_apply(dp):
    t = two_peered(dp, "10.19.0.0/16", "10.29.0.0/16")
    perm = allow(t.b, t.vb.sg, "tcp", t.va.cidr, port=8080)
    with listener(t.ib.ns, 8080, ident="b"):
        # The stream must start only once the rule is in the kernel.
        dp.ok_tcp(t.ia, t.ib.ip, 8080, "the new rule admits A")
        stream = tcp_stream(t.ia.ns, t.ib.ip, 8080, duration=30, interval=0.02)
        try:
            time.sleep(0.3)
            t.b.revoke_security_group_ingress(GroupId=t.vb.sg, IpPermissions=[perm])
            dp.no_tcp(t.ia, t.ib.ip, 8080, "the rule was revoked: new connections are refused")
            time.sleep(0.3)
        finally:
            res = json.loads(stream.finish(timeout=10, interrupt=True).strip().splitlines()[-1])
        assert res["error"] is None and res["ok"] > 20, \
            f"a tracked connection should survive the removal of the rule that admitted it: {res}"

        # Egress: A's default group allows all outbound; without it, A starts nothing.
        allow(t.b, t.vb.sg, "tcp", t.va.cidr, port=8080)
        dp.ok_tcp(t.ia, t.ib.ip, 8080, "rule back")
        t.a.revoke_security_group_egress(GroupId=t.va.sg, IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        dp.no_tcp(t.ia, t.ib.ip, 8080, "A's group has no egress rule left")
        dp.no_ping(t.ia, t.ib.ip, "A's group has no egress rule left")
        allow(t.a, t.va.sg, "tcp", t.vb.cidr, port=8080, egress=True)
        dp.ok_tcp(t.ia, t.ib.ip, 8080, "egress tcp 8080 to B allowed")
        dp.no_ping(t.ia, t.ib.ip, "egress allows tcp 8080 only")
        # The replies to B's pings are tracked: A's missing egress rule does not block them.
        dp.ok_ping(t.ib, t.ia.ip, "A answers B's pings whatever A's egress rules")


# -- 5. no transit ---------------------------------------------------------------------

def test_peering_is_not_transitive(dp):
    a, b, c = dp.ec2("A"), dp.ec2("B"), dp.ec2("C")
    va, vb, vc = vpc(a, "10.51.0.0/16"), vpc(b, "10.52.0.0/16"), vpc(c, "10.53.0.0/16")
    ia = dp.launch(a, subnet(a, va, "10.51.1.0/24"), "10.51.1.10")
    ib = dp.launch(b, subnet(b, vb, "10.52.1.0/24"), "10.52.1.10")
    ic = dp.launch(c, subnet(c, vc, "10.53.1.0/24"), "10.53.1.10")
    ab = active_peering(a, b, va.id, vb.id, B_ID)
    bc = active_peering(b, c, vb.id, vc.id, C_ID)
    # Everyone routes everything it can towards its peers, transit included.
    route(a, va.rtb, vb.cidr, VpcPeeringConnectionId=ab)
    route(a, va.rtb, vc.cidr, VpcPeeringConnectionId=ab)
    route(b, vb.rtb, va.cidr, VpcPeeringConnectionId=ab)
    route(b, vb.rtb, vc.cidr, VpcPeeringConnectionId=bc)
    route(c, vc.rtb, vb.cidr, VpcPeeringConnectionId=bc)
    route(c, vc.rtb, va.cidr, VpcPeeringConnectionId=bc)
    for ec2, v in ((a, va), (b, vb), (c, vc)):
        allow(ec2, v.sg, "icmp", "10.0.0.0/8")

    dp.ok_ping(ia, ib.ip, "A-B peered")
    dp.ok_ping(ib, ia.ip, "A-B peered")
    dp.ok_ping(ib, ic.ip, "B-C peered")
    dp.ok_ping(ic, ib.ip, "B-C peered")
    dp.no_ping(ia, ic.ip, "A-C would need transit through B")
    dp.no_ping(ic, ia.ip, "C-A would need transit through B")
    dp.no_ping(ia, "10.52.1.1", "a peer's router (its subnet gateway) is not reachable across the peering")


# -- 6. no edge-to-edge routing -------------------------------------------------------

def test_no_use_of_a_peers_internet_or_nat_gateway(dp):
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.60.0.0/16"), vpc(b, "10.61.0.0/16")
    sa = subnet(a, va, "10.60.1.0/24")
    pub, priv = subnet(b, vb, "10.61.0.0/24"), subnet(b, vb, "10.61.1.0/24")
    igw = b.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    b.attach_internet_gateway(InternetGatewayId=igw, VpcId=vb.id)
    rt_pub = b.create_route_table(VpcId=vb.id)["RouteTable"]["RouteTableId"]
    rt_priv = b.create_route_table(VpcId=vb.id)["RouteTable"]["RouteTableId"]
    b.associate_route_table(RouteTableId=rt_pub, SubnetId=pub)
    b.associate_route_table(RouteTableId=rt_priv, SubnetId=priv)
    route(b, rt_pub, "0.0.0.0/0", GatewayId=igw)
    eip = b.allocate_address(Domain="vpc")
    nat = b.create_nat_gateway(SubnetId=pub, AllocationId=eip["AllocationId"])["NatGateway"]["NatGatewayId"]
    wait_for(lambda: b.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]["State"],
             lambda s: s == "available", timeout=10, what=f"{nat} available")
    route(b, rt_priv, "0.0.0.0/0", NatGatewayId=nat)
    route(b, vb.rtb, "0.0.0.0/0", NatGatewayId=nat)  # even B's main table offers the NAT gateway

    ia = dp.launch(a, sa, "10.60.1.10")
    b_pub = dp.launch(b, pub, "10.61.0.10", public=True)
    b_nopub = dp.launch(b, pub, "10.61.0.11", public=False)
    b_priv = dp.launch(b, priv, "10.61.1.10")
    assert b_nopub.public_ip is None and b_priv.public_ip is None

    pcx = active_peering(a, b, va.id, vb.id)
    route(a, va.rtb, "0.0.0.0/0", VpcPeeringConnectionId=pcx)
    for rt in (rt_pub, rt_priv, vb.rtb):
        route(b, rt, va.cidr, VpcPeeringConnectionId=pcx)
    allow(b, vb.sg, "-1", va.cidr)
    inet = dp.inet_ns()

    dp.ok_ping(b_pub, INET_HOST, "B's instance with a public IP, through B's internet gateway")
    dp.ok_ping(b_priv, INET_HOST, "B's private instance, through B's NAT gateway")
    dp.no_ping(b_nopub, INET_HOST, "no public IP and no NAT gateway on its route")
    dp.ok_ping(ia, b_pub.ip, "A's default route via the peering reaches B's instances")
    dp.no_ping(ia, INET_HOST, "A must not use B's internet gateway or NAT gateway")
    dp.no_ping(ia, b_pub.public_ip, "A must not reach B's public IP through the peering")
    dp.no_ping(ia, eip["PublicIp"], "nor the NAT gateway's Elastic IP")

    with listener(inet, 8080, ident="inet") as srv:
        assert dp.ok_tcp(b_pub, INET_HOST, 8080, "to the internet host") == "inet:hello"
        assert dp.ok_tcp(b_priv, INET_HOST, 8080, "through the NAT gateway") == "inet:hello"
        dp.no_tcp(ia, INET_HOST, 8080, "A through B's gateways")
        dp.no_tcp(b_nopub, INET_HOST, 8080, "no public IP")
        peers = [e["conn"].removeprefix("::ffff:") for e in srv.events() if "conn" in e]
        assert peers == [b_pub.public_ip, eip["PublicIp"]], \
            f"the internet host should see B's public IP, then the NAT gateway's Elastic IP: {peers}"
    # And the internet reaches B's public instance, once its group allows it.
    allow(b, vb.sg, "icmp", "0.0.0.0/0")
    dp.ok_ping(inet, b_pub.public_ip, "inbound to the public IP (DNAT) through the internet gateway")


def test_elastic_ip_association(dp):
    b = dp.ec2("B")
    v = vpc(b, "10.64.0.0/16")
    s = subnet(b, v, "10.64.1.0/24")
    igw = b.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    b.attach_internet_gateway(InternetGatewayId=igw, VpcId=v.id)
    route(b, v.rtb, "0.0.0.0/0", GatewayId=igw)
    i = dp.launch(b, s, "10.64.1.10")
    inet = dp.inet_ns()
    dp.no_ping(i, INET_HOST, "no public address yet")
    eip = b.allocate_address(Domain="vpc")
    assoc = b.associate_address(AllocationId=eip["AllocationId"], InstanceId=i.id)["AssociationId"]
    assert Dp.describe(b, i.id).get("PublicIpAddress") == eip["PublicIp"]
    with listener(inet, 8080, ident="inet") as srv:
        assert dp.ok_tcp(i, INET_HOST, 8080, "with an Elastic IP") == "inet:hello"
        assert [e["conn"].removeprefix("::ffff:") for e in srv.events() if "conn" in e] == [eip["PublicIp"]]
    allow(b, v.sg, "icmp", f"{INET_HOST}/32")
    dp.ok_ping(inet, eip["PublicIp"], "the internet reaches the instance at its Elastic IP")
    b.disassociate_address(AssociationId=assoc)
    dp.no_ping(i, INET_HOST, "Elastic IP disassociated")
    dp.no_ping(inet, eip["PublicIp"], "Elastic IP disassociated")


def test_ipv6_internet_through_own_gateway_only(dp):
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.62.0.0/16", ipv6=True), vpc(b, "10.63.0.0/16", ipv6=True)
    ia = dp.launch(a, subnet(a, va, "10.62.1.0/24", 0), "10.62.1.10", ipv6=1)
    ib = dp.launch(b, subnet(b, vb, "10.63.1.0/24", 0), "10.63.1.10", ipv6=1)
    igw = b.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    b.attach_internet_gateway(InternetGatewayId=igw, VpcId=vb.id)
    dp.no_ping(ib, INET_HOST6, "no ::/0 route yet")
    route(b, vb.rtb, "::/0", GatewayId=igw)
    dp.ok_ping(ib, INET_HOST6, "B's IPv6 address is public through B's internet gateway")
    pcx = active_peering(a, b, va.id, vb.id)
    route(a, va.rtb, "::/0", VpcPeeringConnectionId=pcx)
    route(b, vb.rtb, va.v6, VpcPeeringConnectionId=pcx)
    allow(b, vb.sg, "icmpv6", va.v6)
    dp.ok_ping(ia, ib.ipv6[0], "A's ::/0 via the peering reaches B's instance")
    dp.no_ping(ia, INET_HOST6, "A must not use B's internet gateway over IPv6 either")


# -- 7. identical CIDRs, not peered ---------------------------------------------------

def test_unpeered_identical_cidrs_stay_isolated(dp):
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.30.0.0/16"), vpc(b, "10.30.0.0/16")
    sa, sb = subnet(a, va, "10.30.1.0/24"), subnet(b, vb, "10.30.1.0/24")
    a1, a2 = dp.launch(a, sa, "10.30.1.10"), dp.launch(a, sa, "10.30.1.20")
    b1, b2 = dp.launch(b, sb, "10.30.1.10"), dp.launch(b, sb, "10.30.1.20")
    assert len({a1.ns, a2.ns, b1.ns, b2.ns}) == 4
    dp.ok_ping(a1, "10.30.1.20", "A's own neighbour")
    dp.ok_ping(b1, "10.30.1.20", "B's own neighbour")
    with listener(a2.ns, 8080, ident="A") as la, listener(b2.ns, 8080, ident="B") as lb:
        for k in range(3):
            assert dp.ok_tcp(a1, "10.30.1.20", 8080) == "A:hello", "A's instance reached the wrong 10.30.1.20"
            assert dp.ok_tcp(b1, "10.30.1.20", 8080) == "B:hello", "B's instance reached the wrong 10.30.1.20"
        assert len(la.received()) == 3 and len(lb.received()) == 3, (la.events(), lb.events())


# -- 8. deleting a peering -----------------------------------------------------------

def test_deleted_peering_stops_traffic_and_blackholes_routes(dp):
    t = two_peered(dp, "10.15.0.0/16", "10.25.0.0/16")
    dp.ok_ping(t.ia, t.ib.ip, "peered")
    dp.ok_ping(t.ib, t.ia.ip, "peered, the other way")
    suffix = t.pcx.rsplit("-", 1)[1][-12:]
    assert f"p-{suffix}" in router_links(dp, t.va.id), router_links(dp, t.va.id)

    t.a.delete_vpc_peering_connection(VpcPeeringConnectionId=t.pcx)
    wait_for(lambda: t.a.describe_vpc_peering_connections(VpcPeeringConnectionIds=[t.pcx])
             ["VpcPeeringConnections"][0]["Status"]["Code"], lambda s: s == "deleted", timeout=5,
             what="deleted")
    assert route_state(t.a, t.va.rtb, t.vb.cidr) == "blackhole"
    assert route_state(t.b, t.vb.rtb, t.va.cidr) == "blackhole"
    dp.no_ping(t.ia, t.ib.ip, "the peering was deleted")
    dp.no_ping(t.ib, t.ia.ip, "the peering was deleted")
    for v in (t.va, t.vb):
        links = router_links(dp, v.id)
        assert f"p-{suffix}" not in links, f"the peering link is still in {dp.router_ns(v.id)}:\n{links}"


# -- 9. IPv6 ------------------------------------------------------------------------

def test_ipv6_across_a_peering(dp):
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.16.0.0/16", ipv6=True), vpc(b, "10.26.0.0/16", ipv6=True)
    assert not ipaddress.ip_network(va.v6).overlaps(ipaddress.ip_network(vb.v6))
    ia = dp.launch(a, subnet(a, va, "10.16.1.0/24", 0), "10.16.1.10", ipv6=1)
    ib = dp.launch(b, subnet(b, vb, "10.26.1.0/24", 0), "10.26.1.10", ipv6=1)
    assert ia.ipv6 and ib.ipv6, (ia, ib)
    assert ipaddress.ip_address(ia.ipv6[0]) in ipaddress.ip_network(va.v6)
    pcx = active_peering(a, b, va.id, vb.id)
    allow(b, vb.sg, "icmpv6", va.v6)
    allow(a, va.sg, "icmpv6", vb.v6)
    allow(b, vb.sg, "icmp", va.cidr)

    route(a, va.rtb, vb.v6, VpcPeeringConnectionId=pcx)
    dp.no_ping(ia, ib.ipv6[0], "only A has an IPv6 route; B has none back")
    route(b, vb.rtb, va.v6, VpcPeeringConnectionId=pcx)
    dp.ok_ping(ia, ib.ipv6[0], "IPv6 routes both ways and icmpv6 allowed")
    dp.ok_ping(ib, ia.ipv6[0], "the other way")
    dp.no_ping(ia, ib.ip, "IPv4 has no route: the families are independent")

    a.delete_route(RouteTableId=va.rtb, DestinationIpv6CidrBlock=vb.v6)
    dp.no_ping(ia, ib.ipv6[0], "A's IPv6 route deleted")
    dp.no_ping(ib, ia.ipv6[0], "A's IPv6 route deleted: the replies have no way back")


# -- 10. inter-region peering and MTU --------------------------------------------------

def test_inter_region_peering_mtu_1500(dp):
    t = two_peered(dp, "10.17.0.0/16", "10.27.0.0/16", b_region="us-west-2")
    assert t.ib.region == "us-west-2"
    dp.ok_ping(t.ia, t.ib.ip, "across the inter-region peering")
    dp.ok_ping(t.ib, t.ia.ip, "the other way")
    dp.ok_ping(t.ia, t.ib.ip, "1500-byte packets fit", size=1472, df=True)
    dp.no_ping(t.ia, t.ib.ip, "8028-byte packets with DF do not fit an inter-region link", size=8000, df=True)
    assert re.search(r"mtu ?= ?1500", last_output()), \
        f"the router should answer 'fragmentation needed' with mtu 1500:\n{last_output()}"
    dp.ok_ping(t.ia, t.ib.ip, "without DF, the router fragments", size=8000, pmtu="dont")


def test_same_region_peering_jumbo_frames_and_routes_written_while_pending(dp):
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.18.0.0/16"), vpc(b, "10.28.0.0/16")
    ia = dp.launch(a, subnet(a, va, "10.18.1.0/24"), "10.18.1.10")
    ib = dp.launch(b, subnet(b, vb, "10.28.1.0/24"), "10.28.1.10")
    allow(b, vb.sg, "icmp", va.cidr)
    pid = request_peering(a, va.id, vb.id, B_ID)
    wait_pcx(a, pid, "pending-acceptance")
    route(a, va.rtb, vb.cidr, VpcPeeringConnectionId=pid)
    assert route_state(a, va.rtb, vb.cidr) == "blackhole"
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=pid)
    wait_pcx(b, pid, "active")
    route(b, vb.rtb, va.cidr, VpcPeeringConnectionId=pid)
    assert route_state(a, va.rtb, vb.cidr) == "active"
    dp.ok_ping(ia, ib.ip, "the route written while pending carries traffic once active")
    dp.ok_ping(ia, ib.ip, "jumbo frames across a same-region peering", size=8000, df=True)
    dp.ok_ping(ia, ib.ip, "a 9000-byte packet", size=8972, df=True)


# -- 12. source/destination check ------------------------------------------------------

def test_source_destination_check(dp):
    a = dp.ec2("A")
    v = vpc(a, "10.40.0.0/16")
    s = subnet(a, v, "10.40.1.0/24")
    i1, i2 = dp.launch(a, s, "10.40.1.10"), dp.launch(a, s, "10.40.1.20")
    spoofed = "192.168.77.1"
    # i1 acts as a router for 192.168.77.0/24 (as a NAT instance would): the VPC routes it
    # to i1's interface, and i2's group admits it.
    route(a, v.rtb, "192.168.77.0/24", NetworkInterfaceId=i1.eni)
    allow(a, v.sg, "icmp", "192.168.77.0/24")
    p = subprocess.run(["ip", "-n", i1.ns, "addr", "add", f"{spoofed}/32", "dev", "eth0"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr

    dp.ok_ping(i1, i2.ip, "from i1's own address")
    dp.no_ping(i1, i2.ip, "source 192.168.77.1 is not i1's: the source/destination check drops it", source=spoofed)

    a.modify_network_interface_attribute(NetworkInterfaceId=i1.eni, SourceDestCheck={"Value": False})
    eni = a.describe_network_interfaces(NetworkInterfaceIds=[i1.eni])["NetworkInterfaces"][0]
    assert eni["SourceDestCheck"] is False
    dp.ok_ping(i1, i2.ip, "SourceDestCheck=false: the spoofed source and the reply to it pass", source=spoofed)

    a.modify_network_interface_attribute(NetworkInterfaceId=i1.eni, SourceDestCheck={"Value": True})
    dp.no_ping(i1, i2.ip, "SourceDestCheck back on", source=spoofed)
    dp.ok_ping(i1, i2.ip, "its own address still works")


def test_a_route_through_a_middlebox_goes_through_it(dp):
    """A route whose target is an interface hands the packet to it whatever its destination
    (the one-host twin of test_cluster_hosts.py's middlebox test): A and B route each
    other's subnets through M, which forwards. The check on: nothing passes; off: ping and
    TCP pass both ways and M's own forwarding counter counts every request and reply; a
    group on M that admits nothing stops it again."""
    a = dp.ec2("A")
    v = vpc(a, "10.42.0.0/16")
    sa, sm, sb = subnet(a, v, "10.42.1.0/24"), subnet(a, v, "10.42.2.0/24"), subnet(a, v, "10.42.3.0/24")
    allow(a, v.sg, "icmp", v.cidr)
    allow(a, v.sg, "tcp", v.cidr, port=7000)
    closed = a.create_security_group(GroupName="mbox-closed", Description="no ingress", VpcId=v.id)["GroupId"]
    ia, im, ib = dp.launch(a, sa, "10.42.1.10"), dp.launch(a, sm, "10.42.2.10"), dp.launch(a, sb, "10.42.3.10")
    make_middlebox(im.ns)
    for sub, dst in ((sa, "10.42.3.0/24"), (sb, "10.42.1.0/24")):
        rt = a.create_route_table(VpcId=v.id)["RouteTable"]["RouteTableId"]
        a.associate_route_table(RouteTableId=rt, SubnetId=sub)
        route(a, rt, dst, NetworkInterfaceId=im.eni)

    dp.ok_ping(ia, im.ip, "M itself, directly")
    f0 = forwarded(im.ns)
    dp.no_ping(ia, ib.ip, "M's source/destination check is on")
    assert forwarded(im.ns) == f0

    a.modify_network_interface_attribute(NetworkInterfaceId=im.eni, SourceDestCheck={"Value": False})
    dp.ok_ping(ia, ib.ip, "through M, its check off")
    f0 = forwarded(im.ns)
    p = subprocess.run(["ip", "netns", "exec", ia.ns, "ping", "-n", "-q", "-c", "20", "-i", "0.05", "-W", "1",
                        ib.ip], capture_output=True, text=True, timeout=15)
    assert ping_stats(p.stdout) == (20, 20), p.stdout
    assert forwarded(im.ns) - f0 >= 40, (f0, forwarded(im.ns))
    f0 = forwarded(im.ns)
    with listener(ib.ns, 7000):
        dp.ok_tcp(ia, ib.ip, 7000, "through M")
    with listener(ia.ns, 7000):
        dp.ok_tcp(ib, ia.ip, 7000, "back through M")
    assert forwarded(im.ns) - f0 >= 10, (f0, forwarded(im.ns))

    a.modify_network_interface_attribute(NetworkInterfaceId=im.eni, Groups=[closed])
    f0 = forwarded(im.ns)
    dp.no_ping(ia, ib.ip, "M's group admits nothing")
    assert forwarded(im.ns) == f0
    a.modify_network_interface_attribute(NetworkInterfaceId=im.eni, Groups=[v.sg])
    dp.ok_ping(ia, ib.ip, "M's group back")


# -- 13. stop, start, terminate ----------------------------------------------------------

def instance_state(ec2, iid: str) -> str:
    return Dp.describe(ec2, iid)["State"]["Name"]


def test_stop_start_and_terminate(dp):
    a = dp.ec2("A")
    v = vpc(a, "10.41.0.0/16")
    s = subnet(a, v, "10.41.1.0/24")
    i1, i2 = dp.launch(a, s, "10.41.1.10"), dp.launch(a, s, "10.41.1.20")
    wait_for(lambda: instance_state(a, i2.id), lambda st: st == "running", timeout=5, what="running")
    dp.ok_ping(i1, i2.ip, "both running")
    eni_link = f"e-{i2.eni.rsplit('-', 1)[1][-12:]}"
    assert eni_link in router_links(dp, v.id)

    a.stop_instances(InstanceIds=[i2.id])
    wait_for(lambda: instance_state(a, i2.id), lambda st: st == "stopped", timeout=5, what="stopped")
    dp.no_ping(i1, i2.ip, "i2 is stopped")
    a.start_instances(InstanceIds=[i2.id])
    dp.wait_ready(i2)
    dp.ok_ping(i1, i2.ip, "i2 started again, same address")

    a.terminate_instances(InstanceIds=[i2.id])
    wait_until(lambda: not netns_exists(i2.ns), 5, what=f"namespace {i2.ns} removed after TerminateInstances")
    assert eni_link not in router_links(dp, v.id), router_links(dp, v.id)
    assert instance_state(a, i2.id) in ("shutting-down", "terminated")
    dp.no_ping(i1, i2.ip, "i2 is terminated")
    wait_for(lambda: instance_state(a, i2.id), lambda st: st == "terminated", timeout=5, what="terminated")
    # Its address is free again: a new instance takes it and answers.
    i3 = dp.launch(a, s, "10.41.1.20")
    assert i3.ns != i2.ns
    dp.ok_ping(i1, i3.ip, "a new instance on the freed address")
