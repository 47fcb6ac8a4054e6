"""The data plane across vpcd restarts, and `vpcd teardown`: each test has its own server.

Needs root: fails (does not skip) otherwise. See test_dataplane.py for the probes.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from helpers import B_ID, active_peering
from netprobe import Dp, listener, netns_exists, netns_inode, netns_list, ping_background, ping_stats, tcp_stream
from test_dataplane import allow, peer_routes, subnet, vpc

pytestmark = pytest.mark.usefixtures("require_root")


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


# -- 11. traffic keeps flowing while vpcd restarts ---------------------------------

def test_traffic_survives_restart_and_namespaces_are_adopted(dp_server_factory):
    server = dp_server_factory()
    dp = Dp(server)
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.70.0.0/16"), vpc(b, "10.71.0.0/16")
    ia = dp.launch(a, subnet(a, va, "10.70.1.0/24"), "10.70.1.10")
    ib = dp.launch(b, subnet(b, vb, "10.71.1.0/24"), "10.71.1.10")
    pcx = active_peering(a, b, va.id, vb.id, B_ID)
    peer_routes(a, va, b, vb, pcx)
    allow(b, vb.sg, "-1", va.cidr)
    allow(a, va.sg, "icmp", vb.cidr)
    dp.ok_ping(ia, ib.ip, "before the restarts")
    dp.converge()  # also creates the barrier VPC before the inodes are taken

    watched = [ia.ns, ib.ns, dp.router_ns(va.id), dp.router_ns(vb.id)]
    inodes = {ns: netns_inode(ns) for ns in watched}

    with listener(ib.ns, 8080, ident="b"):
        stream = tcp_stream(ia.ns, ib.ip, 8080, duration=60, interval=0.02)
        try:
            time.sleep(0.5)
            for how in ("SIGTERM", "SIGKILL"):
                pinger = ping_background(ia.ns, ib.ip, count=150, interval=0.02)  # 3 s
                time.sleep(0.5)
                t0 = time.monotonic()
                if how == "SIGTERM":
                    server.terminate()
                else:
                    server.kill9()
                time.sleep(0.5)  # the kernel forwards on its own while vpcd is down
                server.start()
                down = time.monotonic() - t0
                dp.converge(force=True)  # the restarted server's first reconcile passes are done
                out = pinger.finish(timeout=20)
                tx, rx = ping_stats(out)
                print(f"{how} restart: vpcd down {down:.2f}s, {tx - rx} of {tx} pings lost")
                assert tx == 150, out
                assert tx - rx <= 1, f"{tx - rx} of {tx} pings lost across a {how} restart (down {down:.2f}s):\n{out}"
                for ns, ino in inodes.items():
                    assert netns_exists(ns), f"{ns} is gone after the {how} restart"
                    assert netns_inode(ns) == ino, f"{ns} was recreated, not adopted, by the {how} restart"
            time.sleep(0.3)
        finally:
            res = json.loads(stream.finish(timeout=10, interrupt=True).strip().splitlines()[-1])
    assert res["error"] is None, f"the TCP connection did not survive the restarts: {res}"
    assert res["ok"] >= res["sent"] - 1 and res["ok"] > 50, res
    assert res["max_gap"] < 1.0, f"the TCP stream stalled for {res['max_gap']:.2f}s: {res}"
    print(f"TCP stream across both restarts: {res}")

    # The restarted server still realizes changes.
    dp.ok_ping(ia, ib.ip, "after both restarts")
    b.revoke_security_group_ingress(GroupId=vb.sg, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": va.cidr}]}])
    dp.no_ping(ia, ib.ip, "a rule revoked after the restarts")


# -- 13. teardown leaves nothing ------------------------------------------------------

def test_teardown_removes_everything(dp_server_factory):
    links_before = host_links()
    server = dp_server_factory()
    dp = Dp(server)
    a, b = dp.ec2("A"), dp.ec2("B")
    va, vb = vpc(a, "10.72.0.0/16"), vpc(b, "10.73.0.0/16")
    sa = subnet(a, va, "10.72.1.0/24")
    igw = a.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    a.attach_internet_gateway(InternetGatewayId=igw, VpcId=va.id)
    eip = a.allocate_address(Domain="vpc")["AllocationId"]
    nat = a.create_nat_gateway(SubnetId=sa, AllocationId=eip)["NatGateway"]["NatGatewayId"]
    ia = dp.launch(a, sa, "10.72.1.10", public=True)
    ib = dp.launch(b, subnet(b, vb, "10.73.1.0/24"), "10.73.1.10")
    pcx = active_peering(a, b, va.id, vb.id, B_ID)
    peer_routes(a, va, b, vb, pcx)
    allow(b, vb.sg, "icmp", va.cidr)
    dp.ok_ping(ia, ib.ip, "a working setup")
    tag = dp.tag()
    dp.inet_ns()

    expected = {ia.ns, ib.ns, f"vpcd{tag}-{va.id}", f"vpcd{tag}-{vb.id}", f"vpcd{tag}-{nat}", f"vpcd{tag}-inet"}
    dp.converge()
    present = netns_list()
    assert expected <= present, f"missing namespaces: {sorted(expected - present)}"
    ours = {n for n in present if n.startswith(f"vpcd{tag}-")} | set(server.instance_ids) & present

    server.terminate()
    assert ours <= netns_list(), "stopping vpcd must leave the data plane running (a restart adopts it)"

    for attempt in (1, 2):  # the second run finds nothing to do, and says so with exit status 0
        p = server.vpcd("teardown", "--data-dir", str(server.data_dir), check=False)
        assert p.returncode == 0, f"teardown #{attempt}: rc={p.returncode} {p.stdout} {p.stderr}"
        left = ours & netns_list()
        assert not left, f"left after teardown #{attempt}: {sorted(left)}"
    new_links = host_links() - links_before
    assert not new_links, f"links appeared in the host namespace: {sorted(new_links)}"
