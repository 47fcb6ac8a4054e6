#!/usr/bin/env python3
"""Data-plane benchmarks for vpcd, each beside its baseline in the same run.

1. iperf3 throughput, instance -> instance across an active peering with the
   full rule pipeline, against a raw veth pair between two namespaces, in
   interleaved rounds: the raw pair with the kernel's defaults and with the
   same BIG TCP size as vpcd's fast path, and the peering with the fast path
   on and off (a second vpcd with VPCD_BIG_TCP=0). Besides Gbit/s, each run's
   CPU seconds per GB (iperf3's own accounting of sender and receiver, which
   includes the softirq work done on their behalf) is recorded: on a shared
   machine it varies much less than the throughput does.
2. The same with 1,000 security-group rules on the receiving interface.
3. Ping latency across the peering against the raw veth pair.
4. Convergence: from the response to the last API call to the first packet.
5. Realization of 200 VPCs with 10 instances each, then the latency of one
   security-group rule change at that scale against the same at small scale.
6. ("realize") The data plane alone realizing that World: one reconcile
   pass from the World to the last namespace configured
   (crates/vpc-dataplane/examples/realize_bench.rs, no API in the way),
   against the same example built from another commit
   (VPCD_BASELINE_REALIZE_BIN), in interleaved rounds.

Run as root: scripts/bench-dataplane.sh. Traffic stays inside namespaces this
script's vpcd creates (plus one raw veth pair it creates and deletes itself).
Figures go to docs/perf.md between the dataplane-bench markers.
"""
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api as common  # noqa: E402

ROOT = common.ROOT
BIN = common.BIN
SECS = int(os.environ.get("BENCH_IPERF_SECONDS", "5"))
SCALE_VPCS = int(os.environ.get("BENCH_SCALE_VPCS", "200"))
SCALE_INSTANCES = int(os.environ.get("BENCH_SCALE_INSTANCES", "10"))
A, B = common.ACCOUNTS


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def netns_exec(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def ping_ok(ns, ip, timeout=1):
    return netns_exec(ns, "ping", "-c1", f"-W{timeout}", ip, check=False).returncode == 0


def wait(fn, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if fn():
            return time.time() - t0
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


ROUNDS = int(os.environ.get("BENCH_IPERF_ROUNDS", "3"))
BIG_TCP_SIZE = 196608  # vpc_dataplane::offload::BIG_TCP_SIZE


def iperf(server_ns, client_ns, ip, runs=3):
    """Median of `runs` iperf3 runs (single runs vary by ±15% on this VM)."""
    return statistics.median(iperf_once(server_ns, client_ns, ip) for _ in range(runs))


def iperf_run(server_ns, client_ns, ip):
    """One iperf3 run: (Gbit/s, CPU seconds per GB of sender and receiver together)."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", ip],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = netns_exec(client_ns, "iperf3", "-c", ip, "-t", str(SECS), "-J").stdout
        end = json.loads(out)["end"]
        rx = end["sum_received"]
        cpu = end["cpu_utilization_percent"]
        cpu_s = (cpu["host_total"] + cpu["remote_total"]) / 100 * rx["seconds"]
        return rx["bits_per_second"] / 1e9, cpu_s / (rx["bytes"] / 1e9)
    finally:
        srv.kill()
        srv.wait()


def iperf_once(server_ns, client_ns, ip):
    return iperf_run(server_ns, client_ns, ip)[0]


SET_IPV4_GSO = r"""
import socket, struct, sys
dev, size = sys.argv[1], int(sys.argv[2])
def attr(t, d):
    return struct.pack("HH", 4 + len(d), t) + d + b"\0" * (-len(d) % 4)
body = struct.pack("BxHiII", 0, 0, 0, 0, 0) + attr(3, dev.encode() + b"\0") \
    + attr(63, struct.pack("I", size)) + attr(64, struct.pack("I", size))
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.send(struct.pack("IHHII", 16 + len(body), 16, 5, 1, 0) + body)
err = struct.unpack("i", s.recv(4096)[16:20])[0]
sys.exit(f"RTM_NEWLINK: error {err}" if err else 0)
"""


def set_ipv4_gso(ns, dev, size):
    """IPv4 GSO/GRO maximum size of a link (what vpcd's fast path sets; iproute2 6.1 cannot)."""
    netns_exec(ns, "python3", "-c", SET_IPV4_GSO, dev, str(size))


def ping_rtt(ns, ip, count=200):
    out = netns_exec(ns, "ping", "-q", "-c", str(count), "-i", "0.005", ip).stdout
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    return float(m.group(2)) * 1000  # average, microseconds


class RawPair:
    """Two bare namespaces joined by one veth pair: the baseline."""

    def __init__(self, tag):
        self.a, self.b = f"vpcdbench{tag}-a", f"vpcdbench{tag}-b"
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        sh("ip", "-n", self.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", self.b)
        for ns, ip in ((self.a, "192.0.2.1/24"), (self.b, "192.0.2.2/24")):
            sh("ip", "-n", ns, "addr", "add", ip, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "mtu", "9001", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def close(self):
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns, check=False)


class Vpcd:
    def __init__(self, limits, env=None, bin=None):
        bin = bin or BIN
        self.bin = bin
        self.tmp = Path(tempfile.mkdtemp(prefix="vpcd-dpbench-"))
        self.log = self.tmp / "vpcd.log"
        self.data = self.tmp / "data"
        lim = self.tmp / "limits.json"
        lim.write_text(json.dumps(limits))
        for a in common.ACCOUNTS:
            sh(bin, "account", "add", "--data-dir", str(self.data), "--id", a[0],
               "--access-key-id", a[1], "--secret-access-key", a[2])
        self.port = common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The reconciler's debug lines ("reconciled … plan_us=… us=…") give the
        # planning and kernel shares of the data plane's time.
        penv = dict(os.environ, VPCD_LOG="warn,vpc_dataplane=debug", NO_COLOR="1", **(env or {}))
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([bin, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir",
                                          str(self.data), "--limits", str(lim)], stdout=log, stderr=log, env=penv)
        common.wait_port(self.port)

    def client(self, acct, region="us-east-1"):
        return common.client(self.url, acct, region)

    def log_offset(self):
        return self.log.stat().st_size

    def reconciles(self, start, end):
        """(passes, full plans, planning s, reconcile s) logged between two log offsets."""
        with open(self.log, "rb") as f:
            f.seek(start)
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read(end - start).decode(errors="replace"))
        passes = full = 0
        plan_us = total_us = 0
        for line in text.splitlines():
            if " reconciled " not in line or "plan_us=" not in line:
                continue
            passes += 1
            full += "full_plan=true" in line
            plan_us += int(re.search(r"plan_us=(\d+)", line).group(1))
            total_us += int(re.search(r" us=(\d+)", line).group(1))
        return {"passes": passes, "full_plans": full, "plan_s": plan_us / 1e6, "reconcile_s": total_us / 1e6}

    def periodic_pass(self, start, end):
        """Seconds of the longest full pass that changed nothing, between two log offsets."""
        with open(self.log, "rb") as f:
            f.seek(start)
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read(end - start).decode(errors="replace"))
        best = None
        for line in text.splitlines():
            if " reconciled " not in line or "full_plan=true" not in line:
                continue
            if not re.search(r"created=0 updated=0 deleted=0", line):
                continue
            us = int(re.search(r" us=(\d+)", line).group(1))
            best = max(best or 0, us)
        return None if best is None else best / 1e6

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        sh(self.bin, "teardown", "--data-dir", str(self.data), check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def vpc_with_instance(ec2, cidr, subnet, ip):
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    sn = ec2.create_subnet(VpcId=vpc, CidrBlock=subnet)["Subnet"]["SubnetId"]
    inst = ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, SubnetId=sn,
                             PrivateIpAddress=ip)["Instances"][0]
    sg = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                               {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
    rtb = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                             {"Name": "association.main", "Values": ["true"]}])["RouteTables"][0]["RouteTableId"]
    return {"vpc": vpc, "subnet": sn, "id": inst["InstanceId"], "ip": ip, "sg": sg, "rtb": rtb}


def peer(ca, cb, a, b):
    pcx = ca.create_vpc_peering_connection(VpcId=a["vpc"], PeerVpcId=b["vpc"], PeerOwnerId=B[0])[
        "VpcPeeringConnection"]["VpcPeeringConnectionId"]
    wait(lambda: ca.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])[
        "VpcPeeringConnections"][0]["Status"]["Code"] == "pending-acceptance", 5, "pending")
    cb.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    wait(lambda: cb.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])[
        "VpcPeeringConnections"][0]["Status"]["Code"] == "active", 5, "active")
    return pcx


def allow_all_from(ec2, sg, cidr):
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": cidr}]}])


def peered_pair(d):
    """Two VPCs in two accounts, peered, routed and open to each other; their instances."""
    ca, cb = d.client(A), d.client(B)
    a = vpc_with_instance(ca, "10.61.0.0/16", "10.61.1.0/24", "10.61.1.10")
    b = vpc_with_instance(cb, "10.62.0.0/16", "10.62.1.0/24", "10.62.1.10")
    pcx = peer(ca, cb, a, b)
    ca.create_route(RouteTableId=a["rtb"], DestinationCidrBlock="10.62.0.0/16", VpcPeeringConnectionId=pcx)
    cb.create_route(RouteTableId=b["rtb"], DestinationCidrBlock="10.61.0.0/16", VpcPeeringConnectionId=pcx)
    allow_all_from(cb, b["sg"], "10.61.0.0/16")
    allow_all_from(ca, a["sg"], "10.62.0.0/16")
    wait(lambda: ping_ok(a["id"], b["ip"]), 10, "peering ping")
    return ca, cb, a, b


def bench_pair_and_rules(results):
    d = Vpcd({"peering_transition_ms": 200})
    slow = Vpcd({"peering_transition_ms": 200}, env={"VPCD_BIG_TCP": "0"})
    raw = RawPair(os.urandom(2).hex())
    big = RawPair(os.urandom(2).hex())
    try:
        ca, cb, a, b = peered_pair(d)
        _, _, sa, sb = peered_pair(slow)
        for ns in (big.a, big.b):
            set_ipv4_gso(ns, "eth0", BIG_TCP_SIZE)

        # Interleaved rounds, so that a change in the machine's load hits every case alike.
        cases = {"raw": (raw.b, raw.a, "192.0.2.2"), "raw_big": (big.b, big.a, "192.0.2.2"),
                 "peered": (b["id"], a["id"], b["ip"]), "peered_slow": (sb["id"], sa["id"], sb["ip"])}
        runs = {k: [] for k in cases}
        for _ in range(ROUNDS):
            for k, c in cases.items():
                runs[k].append(iperf_run(*c))
        for k, rs in runs.items():
            results[f"{k}_gbps"] = statistics.median(r[0] for r in rs)
            results[f"{k}_cpu_s_per_gb"] = statistics.median(r[1] for r in rs)
            results[f"{k}_runs"] = [round(r[0], 2) for r in rs]
        results["load"] = Path("/proc/loadavg").read_text().split()[:3]
        slow.close()
        slow = None
        results["raw_rtt_us"] = ping_rtt(raw.a, "192.0.2.2")
        results["peered_rtt_us"] = ping_rtt(a["id"], b["ip"])

        # 1,000 rules on the receiving interface under the DEFAULT quotas:
        # five groups of 200 (the first one also admits the sender's VPC).
        groups = []
        for g in range(5):
            gid = cb.create_security_group(GroupName=f"many{g}", Description="200 rules", VpcId=b["vpc"])["GroupId"]
            perms = [{"IpProtocol": "tcp", "FromPort": 10000 + i, "ToPort": 10000 + i,
                      "IpRanges": [{"CidrIp": f"10.99.{g}.{i}/32"}]} for i in range(199 if g == 0 else 200)]
            if g == 0:
                perms.append({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.61.0.0/16"}]})
            for k in range(0, len(perms), 100):
                cb.authorize_security_group_ingress(GroupId=gid, IpPermissions=perms[k:k + 100])
            groups.append(gid)
        eni = cb.describe_instances(InstanceIds=[b["id"]])["Reservations"][0]["Instances"][0][
            "NetworkInterfaces"][0]["NetworkInterfaceId"]
        cb.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=groups)
        time.sleep(1.0)
        wait(lambda: ping_ok(a["id"], b["ip"]), 10, "ping with 1000 rules")
        rules = sum(len(x["IpRanges"]) for g in cb.describe_security_groups(GroupIds=groups)[
            "SecurityGroups"] for x in g["IpPermissions"])
        results["many_rules"] = rules
        results["many_rules_gbps"] = iperf(b["id"], a["id"], b["ip"])
        results["peered_gbps_again"] = iperf(b["id"], a["id"], b["ip"])
    finally:
        raw.close()
        big.close()
        d.close()
        if slow:
            slow.close()


def first_reply_after(ns, ip, action):
    """Starts a 2 ms-interval ping, runs action() (the last API call), and
    returns seconds from action()'s return to the first echo reply."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-D", "-n", "-i", "0.002", "-W", "1", "-c", "1500", ip],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.05)
    action()
    t_done = time.time()
    first = None
    try:
        for line in p.stdout:
            m = re.match(r"\[([\d.]+)\] \d+ bytes from", line)
            if m:
                first = float(m.group(1))
                break
    finally:
        p.kill()
        p.wait()
    if first is None:
        raise RuntimeError("no reply")
    return max(0.0, first - t_done)


def bench_convergence(results, rounds=10):
    d = Vpcd({"peering_transition_ms": 200, "vpcs_per_region": 1000, "outstanding_peerings_per_account": 1000})
    try:
        ca, cb = d.client(A), d.client(B)
        samples_route, samples_accept = [], []
        for i in range(rounds):
            a = vpc_with_instance(ca, f"10.{100 + i}.0.0/16", f"10.{100 + i}.1.0/24", f"10.{100 + i}.1.10")
            b = vpc_with_instance(cb, f"10.{150 + i}.0.0/16", f"10.{150 + i}.1.0/24", f"10.{150 + i}.1.10")
            allow_all_from(cb, b["sg"], a["vpc"] and f"10.{100 + i}.0.0/16")
            allow_all_from(ca, a["sg"], f"10.{150 + i}.0.0/16")
            pcx = peer(ca, cb, a, b)
            ca.create_route(RouteTableId=a["rtb"], DestinationCidrBlock=f"10.{150 + i}.0.0/16", VpcPeeringConnectionId=pcx)
            samples_route.append(first_reply_after(a["id"], b["ip"], lambda: cb.create_route(
                RouteTableId=b["rtb"], DestinationCidrBlock=f"10.{100 + i}.0.0/16", VpcPeeringConnectionId=pcx)))
        # Accept as the last call (routes already written): includes the
        # provisioning -> active delay (peering_transition_ms = 200 ms).
        for i in range(rounds):
            j = 200 + i
            a = vpc_with_instance(ca, f"10.{j}.0.0/16", f"10.{j}.1.0/24", f"10.{j}.1.10")
            b = vpc_with_instance(cb, f"172.16.{i}.0/24", f"172.16.{i}.0/25", f"172.16.{i}.10")
            allow_all_from(cb, b["sg"], f"10.{j}.0.0/16")
            allow_all_from(ca, a["sg"], f"172.16.{i}.0/24")
            pcx = ca.create_vpc_peering_connection(VpcId=a["vpc"], PeerVpcId=b["vpc"], PeerOwnerId=B[0])[
                "VpcPeeringConnection"]["VpcPeeringConnectionId"]
            wait(lambda: ca.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])[
                "VpcPeeringConnections"][0]["Status"]["Code"] == "pending-acceptance", 5, "pending")
            ca.create_route(RouteTableId=a["rtb"], DestinationCidrBlock=f"172.16.{i}.0/24", VpcPeeringConnectionId=pcx)
            cb.create_route(RouteTableId=b["rtb"], DestinationCidrBlock=f"10.{j}.0.0/16", VpcPeeringConnectionId=pcx)
            samples_accept.append(first_reply_after(a["id"], b["ip"], lambda: cb.accept_vpc_peering_connection(
                VpcPeeringConnectionId=pcx)))
        results["converge_route_ms"] = [s * 1000 for s in samples_route]
        results["converge_accept_ms"] = [s * 1000 for s in samples_accept]
    finally:
        d.close()


def rule_change_latency(ec2, sg, src_ns, dst_ip, port, rounds=10):
    """API response of an AuthorizeSecurityGroupIngress -> first TCP SYN admitted."""
    out = []
    for k in range(rounds):
        p = port + k
        srv = subprocess.Popen(["ip", "netns", "exec", dst_ns_of[dst_ip], "python3", "-c",
                                f"import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                                f"s.bind(('{dst_ip}',{p}));s.listen(64);import time;time.sleep(30)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        if srv.poll() is not None:
            raise RuntimeError(f"the listener in {dst_ns_of[dst_ip]} on port {p} exited ({srv.returncode})")
        # A new non-blocking connect every 2 ms (a dropped SYN is only
        # retransmitted after a second, so each attempt probes one moment);
        # the first that completes gives the time, within 2 ms.
        prober = subprocess.Popen(["ip", "netns", "exec", src_ns, "python3", "-c", PROBER.format(ip=dst_ip, port=p)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(0.1)
        ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        t_done = time.time()
        line = prober.stdout.readline()
        prober.kill()
        srv.kill()
        out.append(max(0.0, float(line) - t_done) * 1000)
    return out


dst_ns_of = {}

PROBER = """
import selectors, socket, time
sel = selectors.DefaultSelector()
last = 0.0
while True:
    now = time.time()
    if now - last >= 0.002:
        s = socket.socket(); s.setblocking(False)
        try:
            s.connect(("{ip}", {port}))
        except BlockingIOError:
            pass
        sel.register(s, selectors.EVENT_WRITE)
        last = now
    for key, _ in sel.select(timeout=0.001):
        if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            print(time.time(), flush=True)
            raise SystemExit(0)
        sel.unregister(key.fileobj); key.fileobj.close()
"""


def bench_scale(results, planning, bin=None):
    """Realization of SCALE_VPCS x SCALE_INSTANCES and rule changes at both scales, with the
    reconciler planning incrementally ("incremental") or re-planning the whole World ("full"),
    or another build of vpcd (VPCD_BASELINE_BIN, "baseline") planning incrementally."""
    env = {"VPCD_PLAN": "full"} if planning == "full" else {}
    d = Vpcd({"vpcs_per_region": 10000, "igws_per_region": 10000, "instances_per_region": 100000,
              "security_groups_per_region": 100000}, env, bin)
    r = results.setdefault("scale", {}).setdefault(planning, {})
    try:
        ca = d.client(A)
        # Small scale first: one VPC, two instances.
        small = vpc_with_instance(ca, "10.200.0.0/16", "10.200.1.0/24", "10.200.1.10")
        small2 = ca.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, SubnetId=small["subnet"],
                                  PrivateIpAddress="10.200.1.11")["Instances"][0]["InstanceId"]
        g = ca.create_security_group(GroupName="probe", Description="p", VpcId=small["vpc"])["GroupId"]
        eni = ca.describe_instances(InstanceIds=[small2])["Reservations"][0]["Instances"][0][
            "NetworkInterfaces"][0]["NetworkInterfaceId"]
        ca.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[g])
        # The destination must be realized (its namespace holds its address)
        # before a listener can start in it; a ping that fails proves nothing
        # (the probe group refuses ICMP either way).
        wait(lambda: os.path.exists(f"/run/netns/{small2}") and "10.200.1.11" in netns_exec(
            small2, "ip", "-4", "-br", "addr", check=False).stdout, 60, "the destination instance realized")
        wait(lambda: ping_ok(small["id"], "10.200.1.11") is False, 5, "small setup")
        dst_ns_of["10.200.1.11"] = small2
        time.sleep(0.5)
        r["rule_change_small_ms"] = rule_change_latency(ca, g, small["id"], "10.200.1.11", 20000)

        t0 = time.time()
        log0 = d.log_offset()
        last = None
        ids = set()
        for v in range(SCALE_VPCS):
            cidr = f"10.{v // 100}.{(v % 100) * 2}.0/23"
            vpc = ca.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
            sn = ca.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
            res = ca.run_instances(ImageId="ami-0123456789abcdef0", MinCount=SCALE_INSTANCES,
                                   MaxCount=SCALE_INSTANCES, SubnetId=sn)
            last = res["Instances"][-1]["InstanceId"]
            ids.update(i["InstanceId"] for i in res["Instances"])
        api_s = time.time() - t0
        wait(lambda: os.path.exists(f"/run/netns/{last}") and netns_exec(last, "ip", "-br", "addr", check=False)
             .stdout.count("UP") >= 1, 900, "realization")
        # Every instance namespace exists (others' tests may run beside us: count ours only).
        wait(lambda: ids <= set(os.listdir("/run/netns")), 900, "all instance namespaces")
        r["api_s"] = api_s
        r["realized_s"] = time.time() - t0
        time.sleep(1)
        r["realization_reconciles"] = d.reconciles(log0, d.log_offset())
        r["rule_change_scale_ms"] = rule_change_latency(ca, g, small["id"], "10.200.1.11", 21000)
        # The periodic full pass (every 30 s), which in this build also compares
        # every namespace with the kernel: wait for one with nothing to do.
        log1 = d.log_offset()
        time.sleep(36)
        r["periodic_pass_s"] = d.periodic_pass(log1, d.log_offset())
    finally:
        d.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def replace_block(text, start, end, block):
    if start in text:
        return text[: text.index(start)] + block + text[text.index(end) + len(end):]
    return text.rstrip() + "\n\n" + block + "\n"


def scale_block(r):
    """Incremental against full planning, side by side from one run."""
    n = SCALE_VPCS * SCALE_INSTANCES
    inc, full = r["scale"].get("incremental", {}), r["scale"].get("full", {})
    base = r["scale"].get("baseline")

    def cell(x, f):
        try:
            return f(x)
        except (KeyError, ValueError, TypeError, IndexError):
            return "–"

    def p50_p90(key):
        return lambda x: f"{pct(x[key], 50):.0f} / {pct(x[key], 90):.0f}"

    def realized(x):
        return f"{x['api_s']:.1f} / {x['realized_s']:.1f}"

    def behind(x):
        return f"{x['realized_s'] - x['api_s']:.1f}"

    def passes(x):
        c = x["realization_reconciles"]
        return f"{c['passes']} ({c['full_plans']})"

    def seconds(x):
        c = x["realization_reconciles"]
        return f"{c['plan_s']:.1f} / {c['reconcile_s']:.1f}"

    rounds = len(inc.get("rule_change_scale_ms", []))
    rows = [
        (f"one security-group rule change → first admitted SYN, {SCALE_VPCS} VPCs × {SCALE_INSTANCES} instances "
         f"(ms, p50 / p90 of {rounds})", p50_p90("rule_change_scale_ms"), "p50 < 10 ms"),
        ("the same at 1 VPC × 2 instances, before the scale-up (ms, p50 / p90)", p50_p90("rule_change_small_ms"), ""),
        (f"realization of {n} instances: API calls done / all namespaces wired (s)", realized, "< 5 s"),
        ("the data plane finished after the last API call (s)", behind, ""),
        ("during it: reconciler passes (of which full plans)", passes, ""),
        ("afterwards: one periodic full pass that found nothing to change (s; a build with drift repair compares "
         "every namespace with the kernel)", lambda x: f"{x['periodic_pass_s']:.2f}", ""),
        ("during it: seconds planning / seconds reconciling in all (the rest of a pass is kernel work: netlink "
         "requests and `nft` transactions)", seconds, ""),
    ]
    lines = ["<!-- dataplane-scale-bench:start -->", "",
             "## Data plane at scale: incremental against full planning", "",
             f"Measured {datetime.date.today().isoformat()} by `scripts/bench-dataplane.sh scale` (release build, as "
             f"root, {os.cpu_count()} cores). Both columns come from the same run, one after the other; `full` is the "
             "same binary with `VPCD_PLAN=full`, which re-plans the whole World on every change. Planning and "
             "reconcile seconds are summed from the reconciler's debug log over the realization. "
             f"Load average (1, 5, 15 min): {r.get('load', 'not recorded')}.", "",
             ]
    if base is not None:
        lines[-2] += (" The `baseline` column is another build of vpcd "
                      f"({r.get('baseline_bin', '?')}), planning incrementally, in the same run, before the other two.")
        lines += ["| measure | incremental | full | baseline | target |", "|---|---:|---:|---:|---|"]
    else:
        lines += ["| measure | incremental | full | target |", "|---|---:|---:|---|"]
    for what, f, target in rows:
        extra = f" {cell(base, f)} |" if base is not None else ""
        lines.append(f"| {what} | {cell(inc, f)} | {cell(full, f)} |{extra} {target} |")
    lines += ["", "<!-- dataplane-scale-bench:end -->"]
    return "\n".join(lines)


def write_perf(r):
    path = ROOT / "docs/perf.md"
    text = path.read_text() if path.exists() else "# Performance\n"
    if "scale" in r:
        text = replace_block(text, "<!-- dataplane-scale-bench:start -->", "<!-- dataplane-scale-bench:end -->",
                             scale_block(r))
    if "realize" in r:
        text = replace_block(text, "<!-- dataplane-realize-bench:start -->", "<!-- dataplane-realize-bench:end -->",
                             realize_block(r))
    if "peered_gbps" not in r and "converge_route_ms" not in r:
        path.write_text(text)
        return
    start, end = "<!-- dataplane-bench:start -->", "<!-- dataplane-bench:end -->"
    med = statistics.median
    lines = [start, "", "## Data plane", "",
             f"Measured {datetime.date.today().isoformat()} by `scripts/bench-dataplane.sh` (release build, as root, "
             f"{os.cpu_count()} cores shared by sender, receiver and routers; each throughput is the median of "
             f"{ROUNDS} iperf3 runs of {SECS} s, one TCP stream"
             + (f"; the four cases of the first rows ran in interleaved rounds, load average {' / '.join(r['load'])}"
                if "load" in r else "") + ").", "",
             "| measure | vpcd | baseline | ratio | target |", "|---|---:|---:|---:|---|"]
    if "peered_gbps" in r:
        lines.append(f"| iperf3 across an active peering, full rule pipeline, fast path on (Gbit/s) | {r['peered_gbps']:.2f} | "
                     f"{r['raw_gbps']:.2f} (raw veth pair) | {r['peered_gbps'] / r['raw_gbps']:.0%} | ≥ 90% of raw |")
        lines.append(f"| same, fast path off (`VPCD_BIG_TCP=0`, Gbit/s) | {r['peered_slow_gbps']:.2f} | "
                     f"{r['raw_gbps']:.2f} (raw veth pair) | {r['peered_slow_gbps'] / r['raw_gbps']:.0%} | |")
        lines.append(f"| fast path on against a raw pair with the same BIG TCP size (Gbit/s) | {r['peered_gbps']:.2f} | "
                     f"{r['raw_big_gbps']:.2f} (raw pair, BIG TCP) | {r['peered_gbps'] / r['raw_big_gbps']:.0%} | |")
        lines.append(f"| CPU seconds per GB, sender + receiver: fast path on / off | {r['peered_cpu_s_per_gb']:.2f} / "
                     f"{r['peered_slow_cpu_s_per_gb']:.2f} | {r['raw_cpu_s_per_gb']:.2f} / {r['raw_big_cpu_s_per_gb']:.2f} "
                     f"(raw pair / raw pair BIG TCP) | | |")
        lines.append(f"| same with {r['many_rules']} security-group rules (5 groups, default quotas) on the receiving interface (Gbit/s) | "
                     f"{r['many_rules_gbps']:.2f} | {r['peered_gbps_again']:.2f} (few rules, same run) | "
                     f"{r['many_rules_gbps'] / r['peered_gbps_again']:.0%} | within 5% |")
        lines.append(f"| ping round trip across the peering (µs, average of 200) | {r['peered_rtt_us']:.0f} | "
                     f"{r['raw_rtt_us']:.0f} (raw veth pair) | +{r['peered_rtt_us'] - r['raw_rtt_us']:.0f} µs | overhead |")
    if "converge_route_ms" in r:
        c, a = r["converge_route_ms"], r["converge_accept_ms"]
        lines.append(f"| convergence, CreateRoute as the last call → first packet (ms, p50 / max of {len(c)}) | "
                     f"{med(c):.0f} / {max(c):.0f} | | | p50 < 100 ms |")
        lines.append(f"| convergence, AcceptVpcPeeringConnection as the last call → first packet (ms, p50 / max of {len(a)}); "
                     f"includes the 200 ms `provisioning` state | {med(a):.0f} / {max(a):.0f} | | | |")
    lines += ["", end]
    text = replace_block(text, start, end, "\n".join(lines))
    path.write_text(text)


REALIZE_ROUNDS = int(os.environ.get("BENCH_REALIZE_ROUNDS", "3"))
PHASES = re.compile(r"phases\S*?=\S*?(delete=\d+ms.*?conntrack=\d+ms)")


def realize_once(binary):
    """One realize_bench run: its JSON line and the first pass's phases."""
    env = dict(os.environ, RUST_LOG="vpc_dataplane=debug", NO_COLOR="1")
    p = subprocess.run([binary, str(SCALE_VPCS), str(SCALE_INSTANCES)], capture_output=True, text=True,
                       env=env, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"{binary} failed: {p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    phases = [m.group(1) for m in PHASES.finditer(re.sub(r"\x1b\[[0-9;]*m", "", p.stderr))]
    out["phases"] = phases[0] if phases else ""
    # The third pass is the periodic one (drift repair), for the same World.
    out["periodic_phases"] = phases[2] if len(phases) > 2 else ""
    return out


def bench_realize(results):
    this = str(ROOT / "target/release/examples/realize_bench")
    base = os.environ.get("VPCD_BASELINE_REALIZE_BIN")
    runs = {"this": [], "baseline": []}
    for _ in range(REALIZE_ROUNDS):
        for name, binary in [("baseline", base), ("this", this)]:
            if not binary:
                continue
            # Let the kernel finish tearing down the previous run's namespaces.
            time.sleep(float(os.environ.get("BENCH_REALIZE_PAUSE", "30")))
            load = " ".join(open("/proc/loadavg").read().split()[:3])
            r = realize_once(binary)
            r["load_before"] = load
            runs[name].append(r)
            print(name, json.dumps(r), flush=True)
    results["realize"] = runs
    results["realize_baseline_name"] = os.environ.get("VPCD_BASELINE_NAME", base or "")


def realize_block(r):
    runs = r["realize"]
    med = statistics.median
    lines = ["<!-- dataplane-realize-bench:start -->", "",
             "## Data plane alone: realizing 2,000 instances", "",
             f"Measured {datetime.date.today().isoformat()} by `scripts/bench-dataplane.sh realize` (release build, as "
             f"root, {os.cpu_count()} cores): one reconcile pass from a World of {SCALE_VPCS} VPCs × {SCALE_INSTANCES} "
             "instances (built through the model, no API calls) to the last namespace configured "
             "(`crates/vpc-dataplane/examples/realize_bench.rs`), this build against the same example built from "
             f"{r.get('realize_baseline_name') or 'a baseline commit'}, interleaved, {REALIZE_ROUNDS} rounds, "
             "30 s apart. Phases are the reconciler's own timings of that pass. `periodic` is the periodic "
             "pass after it for the same World (every namespace compared with the kernel, nothing to repair), "
             "with its `configure` phase (the comparison).", "",
             "| run | build | seconds | CPU s (process / nft) | phases | periodic s (configure) | load average before |",
             "|---|---|---:|---:|---|---:|---|"]
    for i in range(REALIZE_ROUNDS):
        for name in ["baseline", "this"]:
            if i < len(runs[name]):
                x = runs[name][i]
                cpu = f"{x['cpu_s']:.1f} / {x['children_cpu_s']:.1f}" if "cpu_s" in x else "–"
                periodic = "–"
                if "periodic_pass_s" in x:
                    m = re.search(r"configure=(\d+)ms", x.get("periodic_phases", ""))
                    periodic = f"{x['periodic_pass_s']:.2f}" + (f" ({int(m.group(1)) / 1000:.2f})" if m else "")
                lines.append(f"| {i + 1} | {name} | {x['realize_s']:.2f} | {cpu} | {x['phases']} | {periodic} "
                             f"| {x['load_before']} |")
    for name in ["baseline", "this"]:
        if runs[name]:
            per = [x["periodic_pass_s"] for x in runs[name] if "periodic_pass_s" in x]
            per = f"{med(per):.2f}" if per else ""
            lines.append(f"| median | {name} | {med(x['realize_s'] for x in runs[name]):.2f} | | | {per} | |")
    lines += ["", "<!-- dataplane-realize-bench:end -->"]
    return "\n".join(lines)


def main():
    if os.geteuid() != 0:
        sys.exit("the data-plane benchmark needs root")
    results = {}
    which = sys.argv[1:] or ["pair", "converge", "scale"]
    try:
        if "pair" in which:
            bench_pair_and_rules(results)
        if "converge" in which:
            bench_convergence(results)
        if "realize" in which:
            bench_realize(results)
        if "scale" in which:
            before = " ".join(open("/proc/loadavg").read().split()[:3])
            baseline = os.environ.get("VPCD_BASELINE_BIN")
            if baseline:
                results["baseline_bin"] = os.environ.get("VPCD_BASELINE_NAME", baseline)
                bench_scale(results, "baseline", baseline)
            # BENCH_SCALE_MODES=incremental leaves out the full-planning column.
            for planning in os.environ.get("BENCH_SCALE_MODES", "incremental,full").split(","):
                bench_scale(results, planning)
            after = " ".join(open("/proc/loadavg").read().split()[:3])
            results["load"] = f"{before} before, {after} after"
    finally:
        print(json.dumps(results, indent=2))
        write_perf(results)


if __name__ == "__main__":
    main()
