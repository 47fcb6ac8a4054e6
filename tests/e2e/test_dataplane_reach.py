"""`vpcd reach --probe`: the analyzer's verdict against a real packet through vpcd's
kernel data plane (root only, like every test_dataplane*.py module).

Each case converges the data plane first (Dp.converge), then runs
`vpcd reach SRC DST ... --probe --data-dir <the server's data dir>` and checks both the
verdict (exit status) and the probe's line: "kernel: delivered|dropped — agrees".
VPCs here are in 10.80-10.89.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import VPCD_BIN
from helpers import B_ID, active_peering, default_sg, main_route_table
from netprobe import Dp

pytestmark = pytest.mark.usefixtures("require_root")


@pytest.fixture(scope="module")
def dp(dp_server):
    return Dp(dp_server)


def reach(dp: Dp, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VPCD_BIN), "reach", *args, "--data-dir", str(dp.server.data_dir)],
                          capture_output=True, text=True, timeout=60)


def show(p: subprocess.CompletedProcess) -> str:
    return f"rc={p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"


def test_probe_agrees_with_the_analyzer(dp):
    a, b = dp.ec2("A"), dp.ec2("B")
    va = a.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
    vb = b.create_vpc(CidrBlock="10.81.0.0/16")["Vpc"]["VpcId"]
    sa = a.create_subnet(VpcId=va, CidrBlock="10.80.1.0/24")["Subnet"]["SubnetId"]
    sb = b.create_subnet(VpcId=vb, CidrBlock="10.81.1.0/24")["Subnet"]["SubnetId"]
    ia = dp.launch(a, sa, "10.80.1.10")
    ib = dp.launch(b, sb, "10.81.1.10")
    pcx = active_peering(a, b, va, vb, B_ID)
    rta, rtb = main_route_table(a, va)["RouteTableId"], main_route_table(b, vb)["RouteTableId"]
    a.create_route(RouteTableId=rta, DestinationCidrBlock="10.81.0.0/16", VpcPeeringConnectionId=pcx)
    b.create_route(RouteTableId=rtb, DestinationCidrBlock="10.80.0.0/16", VpcPeeringConnectionId=pcx)
    sg = default_sg(b, vb)
    b.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.80.0.0/16"}]},
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "10.80.0.0/16"}]},
        {"IpProtocol": "udp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "10.80.0.0/16"}]},
    ])
    dp.converge(force=True)

    for args in (("--protocol", "icmp"), ("--protocol", "tcp", "--port", "8080"),
                 ("--protocol", "udp", "--port", "8080")):
        p = reach(dp, ia.id, ib.id, *args, "--probe")
        assert p.returncode == 0, show(p)
        assert "kernel: delivered — agrees" in p.stdout, show(p)

    # Not allowed by B's group: both say no.
    p = reach(dp, ia.id, ib.ip, "--protocol", "tcp", "--port", "9090", "--probe")
    assert p.returncode == 1, show(p)
    assert "kernel: dropped — agrees" in p.stdout, show(p)

    # No route back from B: both say no.
    b.delete_route(RouteTableId=rtb, DestinationCidrBlock="10.80.0.0/16")
    dp.converge()
    p = reach(dp, ia.id, ib.id, "--protocol", "icmp", "--probe", "--json")
    assert p.returncode == 1, show(p)
    j = json.loads(p.stdout)
    assert j["reachable"] is False, j
    assert j["probe"]["delivered"] is False and j["probe"]["agrees"] is True, j


def test_probe_needs_a_realized_data_plane(server_factory):
    s = server_factory()
    a = s.client("A")
    vid = a.create_vpc(CidrBlock="10.82.0.0/16")["Vpc"]["VpcId"]
    sid = a.create_subnet(VpcId=vid, CidrBlock="10.82.1.0/24")["Subnet"]["SubnetId"]
    iid = [i["InstanceId"] for i in a.run_instances(ImageId="ami-12345678", MinCount=2, MaxCount=2,
                                                    SubnetId=sid)["Instances"]]
    p = subprocess.run([str(VPCD_BIN), "reach", iid[0], iid[1], "--protocol", "icmp", "--probe",
                        "--data-dir", str(s.data_dir)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, show(p)
    assert "--probe needs" in p.stderr, show(p)
