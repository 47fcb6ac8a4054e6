"""Cluster hosts benchmark (scripts/bench-cluster.sh): on a `vpcd lab` with
three simulated hosts, in one run,

* throughput across a VPC peering between two hosts (over the VXLAN underlay)
  against the same peering on one host: one iperf3 TCP stream of 5 s each,
  interleaved rounds, median kept (goal: cross-host >= 0.7 of same-host);
* convergence: from a CreateRoute answered by an API server until the first
  ping reply crosses that route between instances on two hosts (goal: p50
  < 200 ms). The route is deleted between trials and the ping (every 2 ms,
  from the instance on h1 to the one on h2) runs throughout; the first reply
  timestamped (ping -D) after the call returned ends a trial.

Writes the figures to docs/perf.md between the cluster-hosts-bench markers.
Needs root, etcd and iperf3.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/e2e"))

from labkit import Lab  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TRIALS = int(os.environ.get("BENCH_TRIALS", "20"))
B_ID = "222222222222"


def sh(*argv, timeout=60, check=True):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def wait(fn, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def pings(ns, ip):
    return sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def setup(lab):
    a, b = lab.client(0, "A"), lab.client(1, "B")

    def vpc(ec2, cidr):
        vid = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        rtb = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vid]}])["RouteTables"][0]
        sg = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])["SecurityGroups"][0]
        ec2.authorize_security_group_ingress(GroupId=sg["GroupId"], IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
        return vid, rtb["RouteTableId"]

    va, rta = vpc(a, "10.91.0.0/16")
    vb, rtb = vpc(b, "10.92.0.0/16")
    sa = a.create_subnet(VpcId=va, CidrBlock="10.91.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    sb1 = b.create_subnet(VpcId=vb, CidrBlock="10.92.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    sb2 = b.create_subnet(VpcId=vb, CidrBlock="10.92.2.0/24", AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
    pcx = a.create_vpc_peering_connection(VpcId=va, PeerVpcId=vb, PeerOwnerId=B_ID)["VpcPeeringConnection"][
        "VpcPeeringConnectionId"]
    wait(lambda: b.describe_vpc_peering_connections(Filters=[
        {"Name": "vpc-peering-connection-id", "Values": [pcx]},
        {"Name": "status-code", "Values": ["pending-acceptance"]}])["VpcPeeringConnections"], what="the request")
    b.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    wait(lambda: a.describe_vpc_peering_connections(Filters=[
        {"Name": "vpc-peering-connection-id", "Values": [pcx]},
        {"Name": "status-code", "Values": ["active"]}])["VpcPeeringConnections"], what="active")
    a.create_route(RouteTableId=rta, DestinationCidrBlock="10.92.0.0/16", VpcPeeringConnectionId=pcx)
    b.create_route(RouteTableId=rtb, DestinationCidrBlock="10.91.0.0/16", VpcPeeringConnectionId=pcx)

    def launch(ec2, subnet):
        i = ec2.run_instances(ImageId="ami-12345678", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                              SubnetId=subnet)["Instances"][0]
        return i["InstanceId"], i["PrivateIpAddress"]

    src = launch(a, sa)
    near = launch(b, sb1)   # h1, like src
    far = launch(b, sb2)    # h2
    for ns, ip in ((src[0], near[1]), (src[0], far[1])):
        wait(lambda: pings(ns, ip), timeout=60, what=f"{ns} -> {ip}")
    return a, rta, pcx, src, near, far


def iperf(client_ns, server_ns, ip):
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", ip],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = sh("ip", "netns", "exec", client_ns, "iperf3", "-c", ip, "-t", "5", "-J", timeout=60)
        return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        srv.wait(timeout=10)


def convergence(a, rta, pcx, src, far):
    times = []
    p = subprocess.Popen(["ip", "netns", "exec", src[0], "ping", "-n", "-D", "-i", "0.002", "-W", "1", far[1]],
                         stdout=subprocess.PIPE, text=True, bufsize=1)
    replies: list[float] = []

    import threading

    def read():
        for line in p.stdout:
            if line.startswith("[") and "bytes from" in line:
                replies.append(float(line[1:line.index("]")]))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        for _ in range(TRIALS):
            a.delete_route(RouteTableId=rta, DestinationCidrBlock="10.92.0.0/16")
            # Until the replies have stopped for 300 ms.
            wait(lambda: replies and time.time() - replies[-1] > 0.3, what="the replies to stop")
            a.create_route(RouteTableId=rta, DestinationCidrBlock="10.92.0.0/16", VpcPeeringConnectionId=pcx)
            acked = time.time()
            first = wait(lambda: next((r for r in replies if r > acked), None), timeout=30, what="a reply")
            times.append((first - acked) * 1000)
            time.sleep(0.2)
    finally:
        p.kill()
        p.wait()
    return times


def main():
    if os.geteuid() != 0:
        sys.exit("bench_cluster_hosts.py: needs root (the lab's hosts are network namespaces)")
    load_before = os.getloadavg()
    lab = Lab(etcd=3, api=2, hosts=3)
    try:
        a, rta, pcx, src, near, far = setup(lab)
        same, cross = [], []
        for _ in range(ROUNDS):
            same.append(iperf(src[0], near[0], near[1]))
            cross.append(iperf(src[0], far[0], far[1]))
        conv = convergence(a, rta, pcx, src, far)
    finally:
        lab.down()
    r = {
        "same": same, "cross": cross, "conv": conv,
        "load": (load_before, os.getloadavg()),
        "bin": os.environ.get("VPCD_BIN", ""),
    }
    print(json.dumps(r, indent=1))
    write_perf(r)


def write_perf(r):
    same, cross, conv = statistics.median(r["same"]), statistics.median(r["cross"]), sorted(r["conv"])
    q = statistics.quantiles(conv, n=100) if len(conv) > 1 else conv * 99
    lb, la = r["load"]
    build = "release" if "/release/" in r["bin"] else "debug"
    text = f"""<!-- cluster-hosts-bench:start -->

## Cluster: hosts over the VXLAN underlay

Measured {time.strftime('%Y-%m-%d')} by `scripts/bench-cluster.sh` (`scripts/bench_cluster_hosts.py`) on a `vpcd lab` with 3 etcd members, 2 API servers and 3 simulated hosts on 2 shared cores ({build} build of vpcd; load average before {lb[0]:.2f}, after {la[0]:.2f}). One iperf3 TCP stream of 5 s per case per round, {len(r['same'])} interleaved rounds, median kept; the two cases cross the same peering from the same instance, to an instance on the same host or on another host.

| path | Gbit/s (median) | runs | vs same host | goal |
|---|---:|---|---:|---|
| across the peering, same host | {same:.2f} | {', '.join(f'{x:.2f}' for x in r['same'])} | 1.00 | baseline |
| across the peering, another host (VXLAN underlay) | {cross:.2f} | {', '.join(f'{x:.2f}' for x in r['cross'])} | {cross / same:.2f} | ≥ 0.70 |

Convergence, from a `CreateRoute` answered by an API server until the first ping reply across it between instances on two hosts ({len(conv)} trials; the ping runs every 2 ms): p50 {statistics.median(conv):.0f} ms, p90 {q[89]:.0f} ms, max {conv[-1]:.0f} ms (goal: p50 < 200 ms). It covers the commit in etcd, the watch to the agent of the sending host, its reconcile and the first packet's round trip.

<!-- cluster-hosts-bench:end -->"""
    path = ROOT / "docs/perf.md"
    doc = path.read_text()
    start, end = "<!-- cluster-hosts-bench:start -->", "<!-- cluster-hosts-bench:end -->"
    if start in doc:
        doc = doc[:doc.index(start)] + text + doc[doc.index(end) + len(end):]
    else:
        anchor = "<!-- cluster-bench:end -->"
        doc = doc.replace(anchor, anchor + "\n\n" + text, 1)
    path.write_text(doc)


if __name__ == "__main__":
    main()
