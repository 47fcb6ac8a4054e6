"""A security-group rule naming a managed prefix list, with real packets (root only).

The rule admits sources in the list's entries and refuses the rest; changing the
list's entries changes what the kernel admits; `vpcd reach --probe` agrees with
the kernel both ways. VPCs here are in 10.24.0.0/16.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import VPCD_BIN
from netprobe import Dp, listener

pytestmark = pytest.mark.usefixtures("require_root")


@pytest.fixture(scope="module")
def dp(dp_server):
    return Dp(dp_server)


def probe(dp: Dp, src: str, dst: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(VPCD_BIN), "reach", src, dst, "--protocol", "tcp", "--port", str(port),
                           "--probe", "--data-dir", str(dp.server.data_dir)],
                          capture_output=True, text=True, timeout=60)


def test_a_rule_naming_a_prefix_list_admits_its_entries_only(dp):
    ec2 = dp.ec2("A")
    vid = ec2.create_vpc(CidrBlock="10.24.0.0/16")["Vpc"]["VpcId"]
    s1 = ec2.create_subnet(VpcId=vid, CidrBlock="10.24.1.0/24")["Subnet"]["SubnetId"]
    s2 = ec2.create_subnet(VpcId=vid, CidrBlock="10.24.2.0/24")["Subnet"]["SubnetId"]
    pl = ec2.create_managed_prefix_list(PrefixListName="trusted", AddressFamily="IPv4", MaxEntries=4,
                                        Entries=[{"Cidr": "10.24.2.0/28"}])["PrefixList"]
    sg = ec2.create_security_group(GroupName="guarded", Description="from the list", VpcId=vid)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
        "PrefixListIds": [{"PrefixListId": pl["PrefixListId"]}]}])
    server = dp.launch(ec2, s1, "10.24.1.10", groups=[sg])
    inside = dp.launch(ec2, s2, "10.24.2.10")
    outside = dp.launch(ec2, s2, "10.24.2.100")
    dp.converge(force=True)
    with listener(server.ns, 8080, ident="guarded"):
        dp.ok_tcp(inside, server.ip, 8080, "10.24.2.10 is in the list's 10.24.2.0/28")
        dp.no_tcp(outside, server.ip, 8080, "10.24.2.100 is outside every entry of the list")
        # Another port is not in the rule, whatever the source.
        dp.no_tcp(inside, server.ip, 8081, "the rule admits port 8080 only")
    # The analyzer agrees with the kernel (the probe runs its own listener).
    p = probe(dp, inside.id, server.id, 8080)
    assert p.returncode == 0 and "kernel: delivered — agrees" in p.stdout, p.stdout + p.stderr
    p = probe(dp, outside.id, server.id, 8080)
    assert p.returncode == 1 and "kernel: dropped — agrees" in p.stdout, p.stdout + p.stderr

    # A new version of the list: the outside instance's /27 is added, the /28 removed.
    ec2.modify_managed_prefix_list(PrefixListId=pl["PrefixListId"], CurrentVersion=1,
                                   AddEntries=[{"Cidr": "10.24.2.96/27"}],
                                   RemoveEntries=[{"Cidr": "10.24.2.0/28"}])
    dp.converge(force=True)
    with listener(server.ns, 8080, ident="guarded"):
        dp.ok_tcp(outside, server.ip, 8080, "the list now holds 10.24.2.96/27")
        dp.no_tcp(inside, server.ip, 8080, "10.24.2.0/28 left the list")
    p = probe(dp, outside.id, server.id, 8080)
    assert p.returncode == 0 and "kernel: delivered — agrees" in p.stdout, p.stdout + p.stderr
    p = probe(dp, inside.id, server.id, 8080)
    assert p.returncode == 1 and "kernel: dropped — agrees" in p.stdout, p.stdout + p.stderr
