"""Data transfer metered in the kernel, priced by the rate table, and shown through
Cost Explorer (boto3 and the aws CLI), `vpcd cost` and `/metrics`, with real traffic.

Needs root: fails (does not skip) otherwise. One server with its data plane, the meter
reading every second, and three peered VPCs:

    A (111111111111) us-east-1  10.88.0.0/16: a1 in us-east-1a, a2 in us-east-1b
    B (222222222222) us-east-1  10.89.0.0/16: b1 in us-east-1a      (pcx_same_region)
    B (222222222222) us-west-2  10.90.0.0/16: w1 in us-west-2a      (pcx_inter_region)

Known byte counts go a1 -> b1 (same zone), a2 -> b1 (across zones) and a1 -> w1
(across regions); the meter counts IP packet lengths, so a transfer of N payload bytes
must meter between N and N * 1.02 (TCP/IP headers, the handshake, the close).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import B_ID, active_peering, expect_error, wait_for
from netprobe import Dp
from test_dataplane import allow, route, vpc

pytestmark = pytest.mark.usefixtures("require_root")

A_ID, C_ID = "111111111111", "333333333333"
GB = 1 << 30
RATE_CROSS_AZ = 0.01          # rates/aws-rates.json: cross_az_per_gb
RATE_USE1_USW2 = 0.02         # inter_region_default_per_gb (no pair or source rate for us-east-1)
MB = 1 << 20

# A server that accepts one TCP connection, reads to EOF and prints the byte count.
SINK = r'''
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    n += len(b)
print(n, flush=True)
'''

# Sends argv[3] bytes to argv[1]:argv[2], in argv[4] equal slices argv[5] s apart, then closes.
SOURCE = r'''
import socket, sys, time
ip, port, total, slices, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
c = socket.create_connection((ip, port), timeout=10)
chunk = bytes(1 << 16); per = total // slices; sent = 0
for i in range(slices):
    want = per if i < slices - 1 else total - sent
    while want > 0:
        k = min(want, len(chunk)); c.sendall(chunk[:k]); want -= k; sent += k
    if i < slices - 1: time.sleep(gap)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
print(sent, flush=True)
'''


def transfer(src, dst, port: int, total: int, slices: int = 1, gap: float = 0.0, during=None):
    """Sends exactly `total` payload bytes from instance `src` to `dst` over TCP; returns it."""
    sink = subprocess.Popen(["ip", "netns", "exec", dst.ns, "python3", "-c", SINK, str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout.readline().strip() == "ready"
        source = subprocess.Popen(["ip", "netns", "exec", src.ns, "python3", "-c", SOURCE, dst.ip, str(port),
                                   str(total), str(slices), str(gap)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        if during:
            during()
        out, err = source.communicate(timeout=120)
        assert source.returncode == 0, err
        assert int(out.strip()) == total
        got = int(sink.communicate(timeout=30)[0].strip())
        assert got == total, (got, total)
        return total
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.communicate()


def subnet_in(ec2, v, cidr: str, az: str) -> str:
    return ec2.create_subnet(VpcId=v.id, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]


def cost_rows(server, *extra: str) -> list[dict]:
    p = server.vpcd("cost", "--data-dir", str(server.data_dir), "--csv", *extra)
    return list(csv.DictReader(io.StringIO(p.stdout)))


def metered(server, account: str, resource: str, kind: str, az: str = "", peer_az: str = "") -> int:
    return sum(int(r["bytes"]) for r in cost_rows(server, "--account", account)
               if r["resource"] == resource and r["kind"] == kind
               and (not az or r["zones"].startswith(az + " ")) and (not peer_az or r["zones"].endswith(" " + peer_az)))


def settle(server, account, resource, kind, at_least: int, **kw) -> int:
    """Waits until the stored usage reaches `at_least` and stops growing; returns it."""
    wait_for(lambda: metered(server, account, resource, kind, **kw) >= at_least, timeout=15, interval=0.5,
             what=f"{at_least} metered bytes on {resource} {kind}")
    prev = -1
    for _ in range(20):
        now = metered(server, account, resource, kind, **kw)
        if now == prev:
            return now
        prev = now
        time.sleep(1.2)
    return prev


def within(metered_bytes: int, sent: int, what: str, slack: float = 1.02):
    assert sent <= metered_bytes <= sent * slack, f"{what}: metered {metered_bytes} for {sent} payload bytes"


# The receiving router of an inter-region peering gets the transfer from the
# encrypted backbone's TUN device as the worker coalesced it (GRO of the
# 1500-byte packets of each batch): at worst nothing was coalesced and every
# 1448 payload bytes carry their own 52 bytes of IP and TCP headers (3.6%),
# what a 1500-MTU wire really carries.
INTER_REGION_RECEIVER_SLACK = 1 + 52 / 1448 + 0.01


def ce_query(ce, group_by=("USAGE_TYPE",), **kw):
    today = datetime.now(timezone.utc).date()
    q = {"TimePeriod": {"Start": str(today - timedelta(days=1)), "End": str(today + timedelta(days=1))},
         "Granularity": "MONTHLY", "Metrics": ["UnblendedCost", "UsageQuantity"], **kw}
    if group_by:
        q["GroupBy"] = [{"Type": "DIMENSION", "Key": k} for k in group_by]
    return ce.get_cost_and_usage(**q)


def by_usage_type(resp) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = {}
    for period in resp["ResultsByTime"]:
        for g in period["Groups"]:
            cost = float(g["Metrics"]["UnblendedCost"]["Amount"])
            gb = float(g["Metrics"]["UsageQuantity"]["Amount"])
            acc = out.setdefault(g["Keys"][-1], [0.0, 0.0])
            acc[0] += cost
            acc[1] += gb
    return {k: (v[0], v[1]) for k, v in out.items()}


def scrape(server) -> dict[tuple, float]:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(metrics, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


@pytest.fixture(scope="module")
def lab(require_root):
    from conftest import DP_LIMITS, Server, dp_stop_and_teardown, netns_names
    import shutil
    server = Server(limits=DP_LIMITS, dataplane=True, serve_args=["--meter-interval-secs", "1", "--metrics"])
    server.ns_before = netns_names()
    server.start()
    try:
        dp = Dp(server)
        a, b, bw = dp.ec2("A"), dp.ec2("B"), dp.ec2("B", "us-west-2")
        va, vb, vw = vpc(a, "10.88.0.0/16"), vpc(b, "10.89.0.0/16"), vpc(bw, "10.90.0.0/16")
        a1 = dp.launch(a, subnet_in(a, va, "10.88.1.0/24", "us-east-1a"), "10.88.1.10")
        a2 = dp.launch(a, subnet_in(a, va, "10.88.2.0/24", "us-east-1b"), "10.88.2.10")
        b1 = dp.launch(b, subnet_in(b, vb, "10.89.1.0/24", "us-east-1a"), "10.89.1.10")
        w1 = dp.launch(bw, subnet_in(bw, vw, "10.90.1.0/24", "us-west-2a"), "10.90.1.10")
        same = active_peering(a, b, va.id, vb.id, B_ID)
        inter = active_peering(a, bw, va.id, vw.id, B_ID, "us-west-2")
        route(a, va.rtb, vb.cidr, VpcPeeringConnectionId=same)
        route(b, vb.rtb, va.cidr, VpcPeeringConnectionId=same)
        route(a, va.rtb, vw.cidr, VpcPeeringConnectionId=inter)
        route(bw, vw.rtb, va.cidr, VpcPeeringConnectionId=inter)
        allow(b, vb.sg, "-1", va.cidr)
        allow(bw, vw.sg, "-1", va.cidr)
        dp.converge()
        yield SimpleNamespace(server=server, dp=dp, a=a, b=b, bw=bw, va=va, vb=vb, vw=vw,
                              a1=a1, a2=a2, b1=b1, w1=w1, same=same, inter=inter)
    finally:
        dp_stop_and_teardown(server)
        shutil.rmtree(server.tmp, ignore_errors=True)


def test_known_transfers_are_metered_within_two_percent_and_priced_per_side(lab):
    s = lab.server
    before = scrape(s)
    n_same = transfer(lab.a1, lab.b1, 7001, 24 * MB)
    n_cross = transfer(lab.a2, lab.b1, 7002, 32 * MB)
    n_inter = transfer(lab.a1, lab.w1, 7003, 16 * MB)

    same_out = settle(s, A_ID, lab.same, "peering-out", n_same, az="us-east-1a", peer_az="us-east-1a")
    cross_out = settle(s, A_ID, lab.same, "peering-out", n_cross, az="us-east-1b", peer_az="us-east-1a")
    inter_out = settle(s, A_ID, lab.inter, "peering-out", n_inter)
    cross_in = settle(s, B_ID, lab.same, "peering-in", n_cross, az="us-east-1a", peer_az="us-east-1b")
    inter_in = settle(s, B_ID, lab.inter, "peering-in", n_inter)
    print(f"metered: same zone {same_out}/{n_same}, cross zone {cross_out}/{n_cross} (receiver {cross_in}), "
          f"inter-region {inter_out}/{n_inter} (receiver {inter_in})")
    within(same_out, n_same, "same zone, sender")
    within(cross_out, n_cross, "across zones, sender")
    within(cross_in, n_cross, "across zones, receiver")
    within(inter_out, n_inter, "across regions, sender")
    within(inter_in, n_inter, "across regions, receiver", INTER_REGION_RECEIVER_SLACK)

    # vpcd cost: same zone is free; every other row is bytes x the rate.
    for r in cost_rows(s):
        if r["kind"].startswith("peering") and r["zones"].split()[0] == r["zones"].split()[-1]:
            assert r["usage_type"] == "(same zone: free)" and float(r["cost_usd"]) == 0, r
        else:
            assert abs(float(r["cost_usd"]) - int(r["bytes"]) / GB * float(r["rate_per_gb"])) < 1e-6, r

    # The readable table: a header, A's rows and A's total only.
    table = s.vpcd("cost", "--data-dir", str(s.data_dir), "--account", A_ID).stdout
    assert "ACCOUNT" in table and "USAGE_TYPE" in table and f"total for {A_ID}:" in table, table
    assert B_ID not in table and "(same zone: free)" in table, table
    bad = s.vpcd("cost", "--data-dir", str(s.data_dir), "--start", "2026-13-01", check=False)
    assert bad.returncode != 0 and "not a date" in bad.stderr, bad

    # Cost Explorer, account A (the sender of everything).
    a_ce = by_usage_type(ce_query(s.client("A", service="ce")))
    a_cross = sum(int(r["bytes"]) for r in cost_rows(s, "--account", A_ID)
                  if r["usage_type"] == "USE1-DataTransfer-Regional-Bytes")
    a_inter = sum(int(r["bytes"]) for r in cost_rows(s, "--account", A_ID)
                  if r["usage_type"] == "USE1-USW2-AWS-Out-Bytes")
    assert set(a_ce) >= {"USE1-DataTransfer-Regional-Bytes", "USE1-USW2-AWS-Out-Bytes"}, a_ce
    assert a_ce["USE1-DataTransfer-Regional-Bytes"][0] == pytest.approx(a_cross / GB * RATE_CROSS_AZ, rel=1e-6)
    assert a_ce["USE1-DataTransfer-Regional-Bytes"][0] == pytest.approx(n_cross / GB * RATE_CROSS_AZ, rel=0.02)
    assert a_ce["USE1-USW2-AWS-Out-Bytes"][0] == pytest.approx(a_inter / GB * RATE_USE1_USW2, rel=1e-6)
    assert a_ce["USE1-USW2-AWS-Out-Bytes"][0] == pytest.approx(n_inter / GB * RATE_USE1_USW2, rel=0.02)
    assert a_ce["USE1-USW2-AWS-Out-Bytes"][1] == pytest.approx(n_inter / GB, rel=0.02)
    # Same-zone bytes are nowhere in the bill: the billed quantity is cross-zone plus replies only.
    assert a_ce["USE1-DataTransfer-Regional-Bytes"][1] < (n_cross * 1.02 + n_same * 0.01) / GB

    # Account B pays its own receiving side across zones; inter-region ingress is free; it
    # never sees A's lines.
    b_ce = by_usage_type(ce_query(s.client("B", service="ce")))
    assert b_ce["USE1-DataTransfer-Regional-Bytes"][0] == pytest.approx(n_cross / GB * RATE_CROSS_AZ, rel=0.02)
    assert b_ce["USW2-USE1-AWS-In-Bytes"][0] == 0
    assert n_inter / GB <= b_ce["USW2-USE1-AWS-In-Bytes"][1] <= n_inter * INTER_REGION_RECEIVER_SLACK / GB
    assert "USE1-USW2-AWS-Out-Bytes" not in b_ce, b_ce
    linked = ce_query(s.client("B", service="ce"), group_by=("LINKED_ACCOUNT",))
    assert {g["Keys"][0] for p in linked["ResultsByTime"] for g in p["Groups"]} == {B_ID}
    # Account C has no traffic at all.
    c = ce_query(s.client("C", service="ce"), group_by=())
    assert all(float(p["Total"]["UnblendedCost"]["Amount"]) == 0 for p in c["ResultsByTime"]), c
    assert not any(r["account"] == C_ID for r in cost_rows(s))

    # A filter by dimension through the aws CLI: only the inter-region line.
    today = datetime.now(timezone.utc).date()
    out = s.aws("A", "ce", "get-cost-and-usage", "--time-period",
                f"Start={today - timedelta(days=1)},End={today + timedelta(days=1)}",
                "--granularity", "DAILY", "--metrics", "UnblendedCost", "UsageQuantity",
                "--group-by", "Type=DIMENSION,Key=SERVICE", "Type=DIMENSION,Key=USAGE_TYPE",
                "--filter", json.dumps({"Dimensions": {"Key": "USAGE_TYPE", "Values": ["USE1-USW2-AWS-Out-Bytes"]}}))
    groups = [g for p in out["ResultsByTime"] for g in p["Groups"]]
    assert groups and all(g["Keys"] == ["EC2 - Other", "USE1-USW2-AWS-Out-Bytes"] for g in groups), out
    assert sum(float(g["Metrics"]["UnblendedCost"]["Amount"]) for g in groups) == pytest.approx(
        a_ce["USE1-USW2-AWS-Out-Bytes"][0], rel=1e-6)
    assert out["GroupDefinitions"] == [{"Type": "DIMENSION", "Key": "SERVICE"},
                                       {"Type": "DIMENSION", "Key": "USAGE_TYPE"}]

    # /metrics: the peering byte counters moved with the traffic; API and reconciler counted.
    after = scrape(s)
    moved = (sample(after, "vpcd_data_transfer_bytes_total", kind="peering-out", resource=lab.same)
             - sample(before, "vpcd_data_transfer_bytes_total", kind="peering-out", resource=lab.same))
    assert moved >= n_same + n_cross, moved
    assert sample(after, "vpcd_data_transfer_packets_total", resource=lab.inter) > 0
    assert sample(after, "vpcd_api_requests_total", action="RunInstances", outcome="ok") >= 4
    assert sample(after, "vpcd_api_request_duration_seconds_count", action="GetCostAndUsage") >= 3
    assert sample(after, "vpcd_reconcile_passes_total", result="ok") > 0
    assert sample(after, "vpcd_reconcile_duration_seconds_count") > 0
    assert sample(after, "vpcd_kernel_objects", kind="router_namespaces") >= 3


def test_a_restart_mid_transfer_loses_no_more_than_one_interval(lab):
    s = lab.server
    base = metered(s, A_ID, lab.same, "peering-out", az="us-east-1b", peer_az="us-east-1a")

    def restart():
        time.sleep(1.5)
        s.kill9()
        time.sleep(1.0)
        s.start()

    n = transfer(lab.a2, lab.b1, 7010, 40 * MB, slices=8, gap=0.5, during=restart)
    got = settle(s, A_ID, lab.same, "peering-out", base + n, az="us-east-1b", peer_az="us-east-1a") - base
    print(f"across a kill -9 and restart: metered {got} for {n} payload bytes")
    # The kernel keeps counting while vpcd is down and the stored baselines resume the sums,
    # so nothing is lost at all; never more than one 1-second interval (~ the rate) may be.
    within(got, n, "across a restart")


def test_cost_explorer_refuses_bad_requests(lab):
    ce = lab.server.client("A", service="ce")
    with expect_error("ValidationException"):
        ce.get_cost_and_usage(TimePeriod={"Start": "2026-12-05", "End": "2026-12-01"}, Granularity="DAILY",
                              Metrics=["UnblendedCost"])
    with expect_error("ValidationException"):
        ce.get_cost_and_usage(TimePeriod={"Start": "2026-12-01", "End": "2026-12-05"}, Granularity="DAILY",
                              Metrics=["UnblendedCost"], GroupBy=[{"Type": "DIMENSION", "Key": "COLOUR"}])


def test_internet_and_nat_gateway_bytes_are_metered_and_priced(lab):
    s, dp, a = lab.server, lab.dp, lab.a
    v = vpc(a, "10.91.0.0/16")
    pub = subnet_in(a, v, "10.91.0.0/24", "us-east-1a")
    priv = subnet_in(a, v, "10.91.1.0/24", "us-east-1a")
    igw = a.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    a.attach_internet_gateway(InternetGatewayId=igw, VpcId=v.id)
    rt_pub = a.create_route_table(VpcId=v.id)["RouteTable"]["RouteTableId"]
    a.associate_route_table(RouteTableId=rt_pub, SubnetId=pub)
    route(a, rt_pub, "0.0.0.0/0", GatewayId=igw)
    eip = a.allocate_address(Domain="vpc")
    nat = a.create_nat_gateway(SubnetId=pub, AllocationId=eip["AllocationId"])["NatGateway"]["NatGatewayId"]
    wait_for(lambda: a.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]["State"],
             lambda st: st == "available", timeout=10, what=f"{nat} available")
    route(a, v.rtb, "0.0.0.0/0", NatGatewayId=nat)  # the private subnet uses the main table
    p = dp.launch(a, pub, "10.91.0.10", public=True)
    q = dp.launch(a, priv, "10.91.1.10")
    dp.converge()
    host = SimpleNamespace(ns=dp.inet_ns(), ip="198.51.100.10")

    n_direct = transfer(p, host, 7020, 12 * MB)
    n_nat = transfer(q, host, 7021, 20 * MB)
    out = settle(s, A_ID, igw, "internet-out", n_direct + n_nat)
    processed = settle(s, A_ID, nat, "nat-processed", n_nat)
    print(f"metered: internet out {out} for {n_direct + n_nat}, NAT processed {processed} for {n_nat}")
    within(out, n_direct + n_nat, "out through the internet gateway (direct and from the NAT gateway)")
    within(processed, n_nat, "through the NAT gateway")

    ce = by_usage_type(ce_query(s.client("A", service="ce")))
    assert ce["USE1-NatGateway-Bytes"][0] == pytest.approx(processed / GB * 0.045, rel=1e-6)
    assert ce["USE1-DataTransfer-Out-Bytes"][0] == pytest.approx(out / GB * 0.09, rel=1e-6)
    assert ce["USE1-DataTransfer-In-Bytes"][0] == 0
    assert "USE1-NatGateway-Bytes" not in by_usage_type(ce_query(s.client("B", service="ce")))


def test_dns_queries_are_counted(lab):
    before = sample(scrape(lab.server), "vpcd_dns_queries_total")
    name = "no-such-host.ec2.internal"
    for _ in range(3):
        subprocess.run(["ip", "netns", "exec", lab.a1.ns, "dig", "+time=1", "+tries=1", "@10.88.0.2", name],
                       capture_output=True, text=True, timeout=10)
    after = wait_for(lambda: sample(scrape(lab.server), "vpcd_dns_queries_total"),
                     lambda v: v >= before + 3, timeout=5, what="three more DNS queries counted")
    m = scrape(lab.server)
    assert sample(m, "vpcd_dns_queries_total", rcode="NXDOMAIN") >= 3, \
        {ls: v for (n, ls), v in m.items() if n == "vpcd_dns_queries_total"}


def test_rule_and_subnet_changes_mid_transfer_lose_no_count(lab):
    """A security-group change replaces the routers' filter tables, a new subnet rewrites
    the meter table's rules: neither may reset a counter."""
    s, a, b = lab.server, lab.a, lab.b
    base = metered(s, A_ID, lab.same, "peering-out", az="us-east-1b", peer_az="us-east-1a")
    base_in = metered(s, B_ID, lab.same, "peering-in", az="us-east-1a", peer_az="us-east-1b")

    def change():
        time.sleep(0.8)
        allow(b, lab.vb.sg, "tcp", "10.88.0.0/16", port=7777)
        time.sleep(0.8)
        subnet_in(a, lab.va, "10.88.3.0/24", "us-east-1c")
        subnet_in(b, lab.vb, "10.89.3.0/24", "us-east-1c")
        time.sleep(0.8)

    n = transfer(lab.a2, lab.b1, 7030, 36 * MB, slices=6, gap=0.5, during=change)
    got = settle(s, A_ID, lab.same, "peering-out", base + n, az="us-east-1b", peer_az="us-east-1a") - base
    got_in = settle(s, B_ID, lab.same, "peering-in", base_in + n, az="us-east-1a", peer_az="us-east-1b") - base_in
    print(f"across a rule change and two new subnets: sender {got}, receiver {got_in} for {n}")
    within(got, n, "sender, across the changes")
    within(got_in, n, "receiver, across the changes")
    # The new zone shows up as its own counters.
    table = subprocess.run(["ip", "netns", "exec", lab.dp.router_ns(lab.va.id), "nft", "list", "table", "inet",
                            "vpcd_meter"], capture_output=True, text=True, check=True).stdout
    assert f"pcx_{lab.same[-12:]}_out_us_east_1c_us_east_1c" in table, table
