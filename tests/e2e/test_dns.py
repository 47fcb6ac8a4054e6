"""The Amazon-provided DNS server of each VPC, with real lookups from inside instances.

vpcd (as root) serves each VPC's resolver at its primary CIDR base + 2 and at
169.254.169.253 inside the VPC's router namespace, and writes
/etc/netns/<instance-id>/resolv.conf, so `ip netns exec <id> dig NAME` and
`getent hosts NAME` use it without flags. Every lookup here has a 1 s timeout and
one try, and the test asserts how long it took: an answered lookup well under a
second, a lookup that gets no answer never more than its one-second timeout.

The VPCs use 10.79-10.89; traffic only ever goes between namespaces this module's
vpcd created. Needs root: the module fails (does not skip) otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from types import SimpleNamespace

import pytest

from helpers import A_ID, active_peering, default_sg, main_route_table, wait_for, wait_pcx
from netprobe import Dp, ping, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

ANSWERED_WITHIN = 0.9  # seconds: a lookup that gets an answer
TIMEOUT_BOUND = 1.4    # seconds: dig's one 1-second try, plus process start-up


@pytest.fixture(scope="module")
def dp(dp_server):
    return Dp(dp_server)


# -- lookups ----------------------------------------------------------------------

class Lookup(SimpleNamespace):
    """What one dig run saw: status (None when no server answered), answers, seconds."""


def dig(ns: str, name: str, rtype: str = "A", server: str | None = None, tcp: bool = False,
        reverse: bool = False) -> Lookup:
    argv = ["ip", "netns", "exec", ns, "dig", "+time=1", "+tries=1", "+noall", "+comments", "+answer"]
    if tcp:
        argv.append("+tcp")
    if server:
        argv.append(f"@{server}")
    argv += ["-x", name] if reverse else [name, rtype]
    start = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    took = time.monotonic() - start
    m = re.search(r"status: (\w+)", p.stdout)
    answers = []
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 5 and not line.startswith(";") and parts[3] in ("A", "AAAA", "PTR"):
            answers.append((parts[3], parts[4].rstrip(".")))
    return Lookup(status=m.group(1) if m else None, answers=answers, took=took, rc=p.returncode,
                  out=p.stdout + p.stderr, argv=" ".join(argv))


def resolves(ns: str, name: str, want: str, **kw) -> Lookup:
    r = dig(ns, name, **kw)
    assert r.status == "NOERROR" and r.answers == [("PTR" if kw.get("reverse") else "A", want)], \
        f"{r.argv}: wanted {want}, got {r.status} {r.answers}\n{r.out}"
    assert r.took < ANSWERED_WITHIN, f"{r.argv} took {r.took:.2f}s"
    return r


def no_answer(ns: str, name: str, **kw) -> Lookup:
    r = dig(ns, name, **kw)
    assert r.status is None and r.rc == 9, f"{r.argv}: expected no answer at all, got {r.status}\n{r.out}"
    assert r.took < TIMEOUT_BOUND, f"{r.argv} took {r.took:.2f}s"
    return r


def status(ns: str, name: str, want: str, **kw) -> Lookup:
    r = dig(ns, name, **kw)
    assert r.status == want and not r.answers, f"{r.argv}: wanted {want}, got {r.status} {r.answers}\n{r.out}"
    assert r.took < ANSWERED_WITHIN, f"{r.argv} took {r.took:.2f}s"
    return r


def getent(ns: str, name: str) -> tuple[int, str, float]:
    start = time.monotonic()
    p = subprocess.run(["ip", "netns", "exec", ns, "getent", "hosts", name], capture_output=True, text=True,
                       timeout=10)
    return p.returncode, p.stdout.strip(), time.monotonic() - start


def wait_resolver(ns: str, server: str, timeout: float = 10.0):
    """Waits until the VPC's server answers at all (it starts once the router namespace exists)."""
    wait_until(lambda: dig(ns, "example.com", server=server).status is not None, timeout,
               interval=0.1, what=f"the resolver {server} answering inside {ns}")


# -- API helpers ------------------------------------------------------------------

def dns_vpc(ec2, cidr: str, subnet_cidr: str, hostnames: bool = True) -> SimpleNamespace:
    vid = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    if hostnames:
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
    sub = ec2.create_subnet(VpcId=vid, CidrBlock=subnet_cidr)["Subnet"]["SubnetId"]
    base = cidr.split("/")[0].split(".")
    return SimpleNamespace(id=vid, cidr=cidr, subnet=sub, resolver=".".join(base[:3] + [str(int(base[3]) + 2)]),
                           sg=default_sg(ec2, vid), rtb=main_route_table(ec2, vid)["RouteTableId"])


def private_name(ip: str, region: str = "us-east-1") -> str:
    host = "ip-" + ip.replace(".", "-")
    return f"{host}.ec2.internal" if region == "us-east-1" else f"{host}.{region}.compute.internal"


def public_name(ip: str, region: str = "us-east-1") -> str:
    host = "ec2-" + ip.replace(".", "-")
    return f"{host}.compute-1.amazonaws.com" if region == "us-east-1" else f"{host}.{region}.compute.amazonaws.com"


# -- tests ------------------------------------------------------------------------

def test_own_names_ptr_resolv_conf_and_no_filtering_by_acls(dp):
    ec2 = dp.ec2("A")
    v = dns_vpc(ec2, "10.80.0.0/16", "10.80.1.0/24")
    i = dp.launch(ec2, v.subnet, "10.80.1.10")
    dp.launch(ec2, v.subnet, "10.80.1.11")

    conf = open(f"/etc/netns/{i.id}/resolv.conf").read()
    assert "nameserver 10.80.0.2\n" in conf and "search ec2.internal\n" in conf, conf
    wait_resolver(i.ns, v.resolver)     # once base + 2 answers, every address of the server does

    name = private_name("10.80.1.10")
    desc = dp.describe(ec2, i.id)
    assert desc["PrivateDnsName"] == name
    resolves(i.ns, name, "10.80.1.10")                                  # resolv.conf's server
    resolves(i.ns, name, "10.80.1.10", server="169.254.169.253")
    resolves(i.ns, name, "10.80.1.10", server="10.80.0.2", tcp=True)
    resolves(i.ns, private_name("10.80.1.11"), "10.80.1.11")            # a neighbour
    resolves(i.ns, "10.80.1.11", private_name("10.80.1.11"), reverse=True)
    status(i.ns, name, "NOERROR", rtype="AAAA")                         # the name exists, no AAAA
    status(i.ns, private_name("10.80.1.99"), "NXDOMAIN")                # nobody holds .99
    status(i.ns, private_name("10.80.1.10", "eu-west-1"), "NXDOMAIN")   # wrong region's domain
    status(i.ns, "10.80.1.99", "NXDOMAIN", reverse=True)

    # getent through the system resolver; the short name through the search domain.
    rc, out, took = getent(i.ns, name)
    assert rc == 0 and out.split() == ["10.80.1.10", name], out
    assert took < ANSWERED_WITHIN, took
    rc, out, took = getent(i.ns, "ip-10-80-1-11")
    assert rc == 0 and out.split()[0] == "10.80.1.11", out

    # A name outside vpcd's zones: NXDOMAIN at once, never a hang (no upstream by default).
    status(i.ns, "example.com", "NXDOMAIN")
    rc, out, took = getent(i.ns, "www.example.com")
    assert rc == 2 and out == "", (rc, out)
    assert took < ANSWERED_WITHIN, f"getent of an outside name took {took:.2f}s"

    # Network ACLs and security groups do not filter the resolver: a custom ACL
    # with no entries (deny all) on the subnet, and no egress rule in the group.
    acl = ec2.create_network_acl(VpcId=v.id)["NetworkAcl"]["NetworkAclId"]
    assoc = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [v.subnet]}])[
        "NetworkAcls"][0]["Associations"]
    assoc = next(a["NetworkAclAssociationId"] for a in assoc if a["SubnetId"] == v.subnet)
    ec2.replace_network_acl_association(AssociationId=assoc, NetworkAclId=acl)
    ec2.revoke_security_group_egress(GroupId=v.sg, IpPermissions=[{"IpProtocol": "-1",
                                                                   "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    dp.converge()
    ping(i.ns, "10.80.1.11", expect=False)                               # instance-to-instance traffic is blocked
    resolves(i.ns, name, "10.80.1.10")
    resolves(i.ns, name, "10.80.1.10", server="169.254.169.253", tcp=True)

    # The file goes with the namespace.
    ec2.terminate_instances(InstanceIds=[i.id])
    wait_until(lambda: not os.path.exists(f"/etc/netns/{i.id}"), 10, what=f"/etc/netns/{i.id} removed")


def test_peering_names_the_dns_option_and_the_peers_resolver(dp):
    ec2 = dp.ec2("A")
    va = dns_vpc(ec2, "10.81.0.0/16", "10.81.1.0/24")
    vb = dns_vpc(ec2, "10.82.0.0/16", "10.82.1.0/24")
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vb.id)
    ia = dp.launch(ec2, va.subnet, "10.81.1.10")
    ib = dp.launch(ec2, vb.subnet, "10.82.1.10", public=True)
    for v in (va, vb):
        ec2.authorize_security_group_ingress(GroupId=v.sg, IpPermissions=[
            {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.80.0.0/12"}]}])
    wait_resolver(ia.ns, va.resolver)
    wait_resolver(ib.ns, vb.resolver)
    b_private, b_public = private_name("10.82.1.10"), public_name(ib.public_ip)
    assert dp.describe(ec2, ib.id)["PublicDnsName"] == b_public

    # Not peered: a's resolver knows nothing of b's private name; b's public name is public.
    status(ia.ns, b_private, "NXDOMAIN")
    resolves(ia.ns, b_public, ib.public_ip)
    resolves(ib.ns, b_public, "10.82.1.10")                             # split horizon inside b

    pcx = ec2.create_vpc_peering_connection(VpcId=va.id, PeerVpcId=vb.id)["VpcPeeringConnection"][
        "VpcPeeringConnectionId"]
    wait_pcx(ec2, pcx, "pending-acceptance")
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    wait_pcx(ec2, pcx, "active")
    ec2.create_route(RouteTableId=va.rtb, DestinationCidrBlock=vb.cidr, VpcPeeringConnectionId=pcx)
    ec2.create_route(RouteTableId=vb.rtb, DestinationCidrBlock=va.cidr, VpcPeeringConnectionId=pcx)
    dp.converge()
    ping(ib.ns, ia.ip)                                                  # the peering carries traffic

    # Same region, RFC 1918: the peer's private name and PTR resolve without the option.
    resolves(ia.ns, b_private, "10.82.1.10")
    resolves(ia.ns, "10.82.1.10", b_private, reverse=True)
    # The public name: the public IP until b's side (the accepter) allows DNS resolution.
    resolves(ia.ns, b_public, ib.public_ip)
    ec2.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pcx,
                                              RequesterPeeringConnectionOptions={
                                                  "AllowDnsResolutionFromRemoteVpc": True})
    resolves(ia.ns, b_public, ib.public_ip)                             # a's own side: no change for b's names
    ec2.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pcx,
                                              AccepterPeeringConnectionOptions={
                                                  "AllowDnsResolutionFromRemoteVpc": True})
    resolves(ia.ns, b_public, "10.82.1.10")
    ec2.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pcx,
                                              AccepterPeeringConnectionOptions={
                                                  "AllowDnsResolutionFromRemoteVpc": False})
    resolves(ia.ns, b_public, ib.public_ip)                             # off: at once

    # The peer VPC's resolver cannot be queried across the peering, over UDP or TCP.
    no_answer(ib.ns, private_name("10.81.1.10"), server=va.resolver)
    no_answer(ib.ns, private_name("10.81.1.10"), server=va.resolver, tcp=True)
    no_answer(ia.ns, b_private, server=vb.resolver)
    # …while each instance's own resolver answers the same question.
    resolves(ib.ns, private_name("10.81.1.10"), "10.81.1.10")

    # Deleting the peering withdraws the peer's names.
    ec2.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    wait_for(lambda: dig(ia.ns, b_private).status, lambda s: s == "NXDOMAIN", timeout=5,
             what="b's private name to stop resolving from a after the peering is deleted")


def test_inter_region_peer_names_need_the_option(dp):
    east, west = dp.ec2("A"), dp.ec2("A", "us-west-2")
    va = dns_vpc(east, "10.85.0.0/16", "10.85.1.0/24")
    vb = dns_vpc(west, "10.86.0.0/16", "10.86.1.0/24")
    ia = dp.launch(east, va.subnet, "10.85.1.10")
    ib = dp.launch(west, vb.subnet, "10.86.1.10")
    conf = open(f"/etc/netns/{ib.id}/resolv.conf").read()
    assert "nameserver 10.86.0.2\n" in conf and "search us-west-2.compute.internal\n" in conf, conf
    wait_resolver(ia.ns, va.resolver)
    wait_resolver(ib.ns, vb.resolver)
    b_name = private_name("10.86.1.10", "us-west-2")
    assert dp.describe(west, ib.id)["PrivateDnsName"] == b_name
    resolves(ib.ns, b_name, "10.86.1.10")
    rc, out, _ = getent(ib.ns, "ip-10-86-1-10")                         # the region's search domain
    assert rc == 0 and out.split() == ["10.86.1.10", b_name], out

    pcx = active_peering(east, west, va.id, vb.id, b_owner=A_ID, b_region="us-west-2")
    # Inter-region: even RFC 1918 private names need the option of the side they belong to.
    status(ia.ns, b_name, "NXDOMAIN")
    status(ia.ns, "10.86.1.10", "NXDOMAIN", reverse=True)
    west.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pcx, AccepterPeeringConnectionOptions={
        "AllowDnsResolutionFromRemoteVpc": True})
    resolves(ia.ns, b_name, "10.86.1.10")
    resolves(ia.ns, "10.86.1.10", b_name, reverse=True)
    status(ib.ns, private_name("10.85.1.10"), "NXDOMAIN")              # a's side has not allowed it
    west.modify_vpc_peering_connection_options(VpcPeeringConnectionId=pcx, AccepterPeeringConnectionOptions={
        "AllowDnsResolutionFromRemoteVpc": False})
    status(ia.ns, b_name, "NXDOMAIN")


def test_dns_attributes_switch_names_and_the_server(dp):
    ec2 = dp.ec2("A")
    v = dns_vpc(ec2, "10.83.0.0/16", "10.83.1.0/24", hostnames=False)
    i = dp.launch(ec2, v.subnet, "10.83.1.10")
    wait_resolver(i.ns, v.resolver)
    name = private_name("10.83.1.10")

    # Support on, hostnames off (a new VPC's default): the server answers, the names do not exist.
    status(i.ns, name, "NXDOMAIN")
    ec2.modify_vpc_attribute(VpcId=v.id, EnableDnsHostnames={"Value": True})
    resolves(i.ns, name, "10.83.1.10")

    # Support off: no answer at all from either address.
    ec2.modify_vpc_attribute(VpcId=v.id, EnableDnsHostnames={"Value": False})
    ec2.modify_vpc_attribute(VpcId=v.id, EnableDnsSupport={"Value": False})
    attr = ec2.describe_vpc_attribute(VpcId=v.id, Attribute="enableDnsSupport")
    assert attr["EnableDnsSupport"]["Value"] is False
    dp.converge()
    no_answer(i.ns, name)
    no_answer(i.ns, name, server="169.254.169.253")
    no_answer(i.ns, name, server=v.resolver, tcp=True)
    rc, out, took = getent(i.ns, name)
    assert rc == 2 and out == "", (rc, out)

    # And back on: it answers again.
    ec2.modify_vpc_attribute(VpcId=v.id, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=v.id, EnableDnsHostnames={"Value": True})
    wait_resolver(i.ns, v.resolver)
    resolves(i.ns, name, "10.83.1.10")


def read_conf(instance_id: str) -> str:
    with open(f"/etc/netns/{instance_id}/resolv.conf") as f:
        return f.read()


def conf_lines(instance_id: str) -> list[str]:
    return [ln for ln in read_conf(instance_id).splitlines() if not ln.startswith("#")]


def test_dhcp_options_drive_the_instances_resolver_configuration(dp):
    ec2 = dp.ec2("A")
    v = dns_vpc(ec2, "10.87.0.0/16", "10.87.1.0/24")
    i = dp.launch(ec2, v.subnet, "10.87.1.10")
    wait_resolver(i.ns, v.resolver)
    name = private_name("10.87.1.10")
    default_set = ec2.describe_vpcs(VpcIds=[v.id])["Vpcs"][0]["DhcpOptionsId"]
    assert conf_lines(i.id) == ["nameserver 10.87.0.2", "search ec2.internal", "options timeout:1 attempts:2"]

    def associate(dopt: str, want: list[str]):
        ec2.associate_dhcp_options(DhcpOptionsId=dopt, VpcId=v.id)
        wait_until(lambda: conf_lines(i.id) == want, 5, what=f"resolv.conf of {i.id} to become {want}")

    # Two search domains: the short name completes through the second one.
    corp = ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "domain-name", "Values": ["corp.example ec2.internal"]},
        {"Key": "domain-name-servers", "Values": ["AmazonProvidedDNS"]},
        {"Key": "ntp-servers", "Values": ["169.254.169.123"]}])["DhcpOptions"]["DhcpOptionsId"]
    associate(corp, ["nameserver 10.87.0.2", "search corp.example ec2.internal", "options timeout:1 attempts:2"])
    rc, out, took = getent(i.ns, "ip-10-87-1-10")
    assert rc == 0 and out.split() == ["10.87.1.10", name], out
    assert took < ANSWERED_WITHIN, took

    # A custom server that nobody runs: lookups through resolv.conf get no answer (in
    # one 1-second try), while the VPC's own resolver still answers when asked directly.
    custom = ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "domain-name-servers", "Values": ["10.87.0.99"]}])["DhcpOptions"]["DhcpOptionsId"]
    associate(custom, ["nameserver 10.87.0.99", "options timeout:1 attempts:2"])
    no_answer(i.ns, name)
    resolves(i.ns, name, "10.87.1.10", server=v.resolver)

    # `default` (no options): no nameserver at all; nothing answers, at once.
    associate("default", ["options timeout:1 attempts:2"])
    r = dig(i.ns, name)
    assert r.status is None and r.took < TIMEOUT_BOUND, r.out
    assert ec2.describe_vpcs(VpcIds=[v.id])["Vpcs"][0]["DhcpOptionsId"] == "default"

    # Back to the region's default set: resolves again through resolv.conf.
    associate(default_set, ["nameserver 10.87.0.2", "search ec2.internal", "options timeout:1 attempts:2"])
    resolves(i.ns, name, "10.87.1.10")
    for d in (corp, custom):
        ec2.delete_dhcp_options(DhcpOptionsId=d)
    ec2.terminate_instances(InstanceIds=[i.id])
    wait_until(lambda: not os.path.exists(f"/etc/netns/{i.id}"), 10, what=f"/etc/netns/{i.id} removed")


def dig_out(ns: str, name: str, rtype: str) -> str:
    p = subprocess.run(["ip", "netns", "exec", ns, "dig", "+time=1", "+tries=1", "+short", name, rtype],
                       capture_output=True, text=True, timeout=10)
    return p.stdout.strip()


def test_private_hosted_zone_records_resolve_in_associated_vpcs_only(dp):
    ec2 = dp.ec2("A")
    r53 = dp.server.client("A", service="route53")
    va = dns_vpc(ec2, "10.88.0.0/16", "10.88.1.0/24")
    vb = dns_vpc(ec2, "10.89.0.0/16", "10.89.1.0/24")
    ia = dp.launch(ec2, va.subnet, "10.88.1.10")
    ib = dp.launch(ec2, vb.subnet, "10.89.1.10")
    wait_resolver(ia.ns, va.resolver)
    wait_resolver(ib.ns, vb.resolver)
    zid = r53.create_hosted_zone(Name="corp.example", CallerReference=f"dns-{va.id}",
                                 VPC={"VPCRegion": "us-east-1", "VPCId": va.id})["HostedZone"]["Id"]

    def rr(name, rtype, *values):
        return {"Action": "CREATE", "ResourceRecordSet": {
            "Name": name, "Type": rtype, "TTL": 60, "ResourceRecords": [{"Value": v} for v in values]}}
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [
        rr("db.corp.example", "A", "10.88.1.10"),
        rr("db.corp.example", "AAAA", "fd00:88::10"),
        rr("www.corp.example", "CNAME", "db.corp.example"),
        rr("corp.example", "TXT", '"v=spf1 -all"'),
        rr("_pg._tcp.corp.example", "SRV", "1 5 5432 db.corp.example"),
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": "app.corp.example", "Type": "A",
            "AliasTarget": {"HostedZoneId": zid.split("/")[-1], "DNSName": private_name("10.88.1.10"),
                            "EvaluateTargetHealth": False}}},
    ]})

    # From the associated VPC: every type, the CNAME followed, the alias to an instance's name.
    resolves(ia.ns, "db.corp.example", "10.88.1.10")
    r = dig(ia.ns, "db.corp.example", rtype="AAAA")
    assert r.status == "NOERROR" and r.answers == [("AAAA", "fd00:88::10")], r.out
    r = dig(ia.ns, "www.corp.example")
    assert r.status == "NOERROR" and r.answers == [("A", "10.88.1.10")] and "CNAME" in r.out, r.out
    assert dig_out(ia.ns, "corp.example", "TXT") == '"v=spf1 -all"'
    assert dig_out(ia.ns, "_pg._tcp.corp.example", "SRV") == "1 5 5432 db.corp.example."
    resolves(ia.ns, "app.corp.example", "10.88.1.10")
    resolves(ia.ns, "db.corp.example", "10.88.1.10", server="169.254.169.253", tcp=True)
    # Inside the zone: a missing name is NXDOMAIN, a missing type NODATA; no fall-through.
    status(ia.ns, "nope.corp.example", "NXDOMAIN")
    status(ia.ns, "db.corp.example", "NOERROR", rtype="MX")
    # From a VPC the zone is not associated with: NXDOMAIN.
    status(ib.ns, "db.corp.example", "NXDOMAIN")
    status(ib.ns, "app.corp.example", "NXDOMAIN")

    # The zone as the VPC's DHCP domain-name: short names complete through it.
    dopt = ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "domain-name", "Values": ["corp.example"]},
        {"Key": "domain-name-servers", "Values": ["AmazonProvidedDNS"]}])["DhcpOptions"]["DhcpOptionsId"]
    ec2.associate_dhcp_options(DhcpOptionsId=dopt, VpcId=va.id)
    wait_until(lambda: "search corp.example" in read_conf(ia.id), 5, what="the search domain in resolv.conf")
    rc, out, took = getent(ia.ns, "db")                                 # `getent hosts` asks AAAA first
    assert rc == 0 and out.split() == ["fd00:88::10", "db.corp.example"], out
    assert took < ANSWERED_WITHIN, took

    # Changes take effect at once: UPSERT, associate the second VPC, disassociate it.
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": "db.corp.example", "Type": "A", "TTL": 60,
                              "ResourceRecords": [{"Value": "10.88.1.99"}]}}]})
    resolves(ia.ns, "db.corp.example", "10.88.1.99")
    r53.associate_vpc_with_hosted_zone(HostedZoneId=zid, VPC={"VPCRegion": "us-east-1", "VPCId": vb.id})
    resolves(ib.ns, "db.corp.example", "10.88.1.99")
    r53.disassociate_vpc_from_hosted_zone(HostedZoneId=zid, VPC={"VPCRegion": "us-east-1", "VPCId": vb.id})
    status(ib.ns, "db.corp.example", "NXDOMAIN")
    # Without hostnames in the querying VPC, private zones do not resolve there (AWS needs both attributes).
    ec2.modify_vpc_attribute(VpcId=va.id, EnableDnsHostnames={"Value": False})
    status(ia.ns, "db.corp.example", "NXDOMAIN")
    ec2.modify_vpc_attribute(VpcId=va.id, EnableDnsHostnames={"Value": True})
    resolves(ia.ns, "db.corp.example", "10.88.1.99")


BURST = r"""
import random, socket, struct, sys, time
server, total, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def query(qid, name):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.connect((server, 53))
s.settimeout(2)
want, got, formerr = {}, {}, 0
for window in range(total // 50):              # windows of 50 queries in flight at once
    for i in range(window * 50, window * 50 + 50):
        if i == 125:
            s.send(struct.pack(">HHHHHH", 0xfff0, 0x0100, 1, 0, 0, 0) + b"\x3fbroken")  # question cut short
        if i == 260:
            s.send(b"\x12\x34\x01")                                                   # not even a header
        want[i + 1] = names[i % len(names)]
        s.send(query(i + 1, want[i + 1]))
    try:
        while len(got) < len(want) or (window >= 2 and not formerr):
            r = s.recv(4096)
            qid, flags = struct.unpack(">HH", r[:4])
            if qid == 0xfff0:
                formerr = flags & 0xf
                continue
            got[qid] = (flags & 0xf, ".".join(str(b) for b in r[-4:]))
    except socket.timeout:
        pass
print(len(want), len(got), formerr)
for qid, name in want.items():
    print(name, *got.get(qid, ("-", "-")))
"""


def burst(ns: str, server: str, total: int, names: list[str]) -> tuple[list[str], list[str]]:
    p = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", BURST, server, str(total), *names],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    return lines[0].split(), lines[1:]


def test_a_burst_of_queries_with_malformed_ones_among_them_is_answered_in_full(dp):
    """400 queries over UDP, 50 in flight at a time, with a cut-short question
    and a 3-byte datagram among them: every query gets its own answer, the cut-short
    one FORMERR, and the loop keeps serving; from outside the VPC (the peer
    VPC's instance asking this VPC's resolver) nothing is answered."""
    ec2 = dp.ec2("A")
    v = dns_vpc(ec2, "10.79.0.0/16", "10.79.1.0/24")
    ips = [f"10.79.1.{10 + k}" for k in range(3)]
    insts = [dp.launch(ec2, v.subnet, ip) for ip in ips]
    i = insts[0]
    wait_resolver(i.ns, v.resolver)
    counts, rows = burst(i.ns, v.resolver, 400, [private_name(ip) for ip in ips])
    assert counts == ["400", "400", "1"], counts      # all answered; FORMERR (rcode 1) for the broken one
    for row in rows:
        name, rcode, ip = row.split()
        assert rcode == "0" and private_name(ip) == name, row
    resolves(i.ns, private_name(ips[1]), ips[1])     # still serving afterwards

    # From outside the VPC: an instance of another VPC, routed to this one
    # through a peering, gets no answer from this VPC's resolver (not even FORMERR).
    o = dns_vpc(ec2, "10.78.0.0/16", "10.78.1.0/24")
    out = dp.launch(ec2, o.subnet, "10.78.1.10")
    pcx = ec2.create_vpc_peering_connection(VpcId=o.id, PeerVpcId=v.id)["VpcPeeringConnection"][
        "VpcPeeringConnectionId"]
    wait_pcx(ec2, pcx, "pending-acceptance")
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    wait_pcx(ec2, pcx, "active")
    ec2.create_route(RouteTableId=o.rtb, DestinationCidrBlock=v.cidr, VpcPeeringConnectionId=pcx)
    ec2.create_route(RouteTableId=v.rtb, DestinationCidrBlock=o.cidr, VpcPeeringConnectionId=pcx)
    ec2.authorize_security_group_ingress(GroupId=v.sg, IpPermissions=[
        {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": o.cidr}]}])
    dp.converge()
    ping(out.ns, ips[0])                              # the path is there
    counts, _ = burst(out.ns, v.resolver, 50, [private_name(ips[0])])
    assert counts == ["50", "0", "0"], counts
    resolves(i.ns, private_name(ips[0]), ips[0])


def test_dns_upstream_forwards_names_outside_vpcds_zones(dp_server_factory):
    """--dns-upstream: a dnsmasq this test starts on loopback answers the names vpcd does not own."""
    import shutil
    import socket as socketlib
    if shutil.which("dnsmasq") is None:
        pytest.fail("dnsmasq is not installed (apt-get install dnsmasq-base); scripts/test.sh installs it")
    with socketlib.socket(socketlib.AF_INET, socketlib.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    upstream = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
         "--no-poll", "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}", "--pid-file=",
         "--user=root", "--address=/outside.test/198.51.100.7", "--address=/ec2.internal/198.51.100.8"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        server = dp_server_factory(serve_args=["--dns-upstream", f"127.0.0.1:{port}"])
        d = Dp(server)
        ec2 = d.ec2("A")
        v = dns_vpc(ec2, "10.84.0.0/16", "10.84.1.0/24")
        i = d.launch(ec2, v.subnet, "10.84.1.10")
        wait_resolver(i.ns, v.resolver)
        # Outside vpcd's zones: the upstream's answer. vpcd's own names never go upstream.
        resolves(i.ns, "www.outside.test", "198.51.100.7")
        resolves(i.ns, private_name("10.84.1.10"), "10.84.1.10")
        status(i.ns, private_name("10.84.1.99"), "NXDOMAIN")
        # The upstream gone: SERVFAIL within the one-second try, never a hang.
        upstream.kill()
        upstream.wait(timeout=5)
        r = dig(i.ns, "www.outside.test")
        assert r.status == "SERVFAIL" and r.took < TIMEOUT_BOUND, (r.status, r.took, r.out)
    finally:
        if upstream.poll() is None:
            upstream.kill()
            upstream.wait(timeout=5)


def test_restart_serves_again_and_teardown_removes_the_resolver_files(dp_server_factory):
    server = dp_server_factory()
    d = Dp(server)
    ec2 = d.ec2("A")
    v = dns_vpc(ec2, "10.84.0.0/16", "10.84.1.0/24")
    i = d.launch(ec2, v.subnet, "10.84.1.10")
    wait_resolver(i.ns, v.resolver)
    name = private_name("10.84.1.10")
    resolves(i.ns, name, "10.84.1.10")

    # kill -9 and start again: the new process binds in the existing router namespace.
    server.restart()
    wait_resolver(i.ns, v.resolver)
    resolves(i.ns, name, "10.84.1.10", tcp=True)

    # kill -9 (nothing cleaned up by the server itself), then `vpcd teardown`.
    server.kill9()
    assert os.path.exists(f"/etc/netns/{i.id}/resolv.conf")
    p = server.vpcd("teardown", "--data-dir", str(server.data_dir), check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not os.path.exists(f"/etc/netns/{i.id}"), f"/etc/netns/{i.id} left after teardown"
    assert not os.path.exists(f"/run/netns/{i.id}")
