#!/usr/bin/env python3
"""Throughput of the encrypted inter-region backbone, beside its baselines in one run.

Three cases, in interleaved rounds (the machine is shared; a round runs each case once):

1. iperf3 between two instances across an inter-region peering (us-east-1 to
   us-west-2): instance -> VPC router -> TUN -> vpcd's WireGuard worker ->
   UDP on the underlay -> the peer gateway's worker -> TUN -> router -> instance.
2. The same across a same-region peering (a veth between the two routers).
3. vpcd's backbone engine alone (`bare_tunnel engine`: the same boringtun
   sessions, the same batched TUN/UDP I/O and the same peering tag as
   between region gateways) between two bare namespaces joined by a veth,
   TUN MTU 1500 as on the inter-region path: the tunnel with no routers,
   nft rules, conntrack, instance veths or gateway namespaces around it.
   This is the baseline the backbone's ratio is taken against.
4. boringtun's own WireGuard device (its `device` module, what boringtun-cli
   runs; `bare_tunnel device`), set up the same way: the crate's reference
   loop, one packet per system call.

Each figure is the median of the rounds' iperf3 runs (one TCP stream). The load
average before and after is recorded. Figures go to docs/perf.md between the
backbone-bench markers. Run as root: scripts/bench-backbone.sh.
"""
import datetime
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api as common  # noqa: E402
import bench_dataplane as dpb  # noqa: E402

ROOT = common.ROOT
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECS = dpb.SECS
EXAMPLE = ROOT / "target" / "release" / "examples" / "bare_tunnel"
A, B = common.ACCOUNTS


def sh(*args, check=True):
    return dpb.sh(*args, check=check)


class BareTunnel:
    """Two namespaces joined by a veth, each running a bare tunnel end: `mode` is
    "engine" (vpcd's backbone engine) or "device" (boringtun's own device)."""

    def __init__(self, tag, mode):
        self.mode = mode
        self.ns = [f"vpcdbench{tag}-wga", f"vpcdbench{tag}-wgb"]
        self.dev = [f"wgb{tag}a", f"wgb{tag}b"]
        self.under = ["192.0.2.1", "192.0.2.2"]
        self.inner = ["10.99.0.1", "10.99.0.2"]
        self.procs = []
        for ns in self.ns:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns[0], "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", self.ns[1])
        keys = [secrets.token_hex(32) for _ in self.ns]
        pubs = [subprocess.run([str(EXAMPLE), "pubkey", k], capture_output=True, text=True, check=True).stdout.strip()
                for k in keys]
        for i, ns in enumerate(self.ns):
            sh("ip", "-n", ns, "addr", "add", f"{self.under[i]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "mtu", "9000", "up")
            other = 1 - i
            if mode == "engine":
                args = ["engine", self.dev[i], keys[i], pubs[other], self.under[i], self.under[other],
                        self.inner[i]]
            else:
                args = ["device", self.dev[i], "2"]
            p = subprocess.Popen(["ip", "netns", "exec", ns, str(EXAMPLE), *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.procs.append(p)
            line = p.stdout.readline().strip()
            assert line == "ready", f"bare_tunnel {mode} did not start: {line}"
            if mode == "device":
                self.uapi(self.dev[i], [
                    "set=1", f"private_key={keys[i]}", "listen_port=51820", "replace_peers=true",
                    f"public_key={pubs[other]}", f"endpoint={self.under[other]}:51820",
                    "replace_allowed_ips=true", "allowed_ip=0.0.0.0/0"])
                sh("ip", "-n", ns, "addr", "add", f"{self.inner[i]}/24", "dev", self.dev[i])
            # As a peering's TUN device in a VPC router (backbone/mod.rs).
            sh("ip", "-n", ns, "link", "set", self.dev[i], "mtu", "1500", "txqueuelen", "4096",
               "gso_max_segs", "64", "up")
        dpb.wait(lambda: dpb.ping_ok(self.ns[0], self.inner[1]), 10, "the bare tunnel")

    @staticmethod
    def uapi(dev, lines):
        path = f"/var/run/wireguard/{dev}.sock"
        dpb.wait(lambda: os.path.exists(path), 5, path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall(("\n".join(lines) + "\n\n").encode())
            reply = s.recv(4096).decode()
        assert "errno=0" in reply, f"uapi {dev}: {reply}"

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in self.ns:
            sh("ip", "netns", "del", ns, check=False)
        for dev in self.dev:
            Path(f"/var/run/wireguard/{dev}.sock").unlink(missing_ok=True)


def pair(d, cidr_a, cidr_b, region_b):
    ca, cb = d.client(A), d.client(B, region_b)
    a = dpb.vpc_with_instance(ca, f"{cidr_a}.0.0/16", f"{cidr_a}.1.0/24", f"{cidr_a}.1.10")
    b = dpb.vpc_with_instance(cb, f"{cidr_b}.0.0/16", f"{cidr_b}.1.0/24", f"{cidr_b}.1.10")
    kw = {"PeerRegion": region_b} if region_b != "us-east-1" else {}
    pcx = ca.create_vpc_peering_connection(VpcId=a["vpc"], PeerVpcId=b["vpc"], PeerOwnerId=B[0], **kw)[
        "VpcPeeringConnection"]["VpcPeeringConnectionId"]
    def state(c):
        try:
            return c.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])[
                "VpcPeeringConnections"][0]["Status"]["Code"]
        except Exception:  # not visible in the accepter's region yet
            return None
    dpb.wait(lambda: state(cb) == "pending-acceptance", 10, "pending")
    cb.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    dpb.wait(lambda: state(cb) == "active", 10, "active")
    ca.create_route(RouteTableId=a["rtb"], DestinationCidrBlock=f"{cidr_b}.0.0/16", VpcPeeringConnectionId=pcx)
    cb.create_route(RouteTableId=b["rtb"], DestinationCidrBlock=f"{cidr_a}.0.0/16", VpcPeeringConnectionId=pcx)
    dpb.allow_all_from(cb, b["sg"], f"{cidr_a}.0.0/16")
    dpb.allow_all_from(ca, a["sg"], f"{cidr_b}.0.0/16")
    dpb.wait(lambda: dpb.ping_ok(a["id"], b["ip"]), 15, f"ping across the peering to {region_b}")
    return a, b


def load():
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def replace_block(text, block):
    start, end = "<!-- backbone-bench:start -->", "<!-- backbone-bench:end -->"
    return dpb.replace_block(text, start, end, block)


def main():
    load_before = load()
    if os.geteuid() != 0:
        sys.exit("the backbone benchmark needs root")
    d = dpb.Vpcd({"peering_transition_ms": 200})
    bare = device = None
    try:
        inter = pair(d, "10.71", "10.72", "us-west-2")
        same = pair(d, "10.73", "10.74", "us-east-1")
        bare = BareTunnel(secrets.token_hex(2), "engine")
        device = BareTunnel(secrets.token_hex(2), "device")
        runs = {"inter": [], "same": [], "bare": [], "device": []}
        for r in range(ROUNDS):
            runs["inter"].append(dpb.iperf_once(inter[1]["id"], inter[0]["id"], inter[1]["ip"]))
            runs["same"].append(dpb.iperf_once(same[1]["id"], same[0]["id"], same[1]["ip"]))
            runs["bare"].append(dpb.iperf_once(bare.ns[1], bare.ns[0], bare.inner[1]))
            runs["device"].append(dpb.iperf_once(device.ns[1], device.ns[0], device.inner[1]))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in runs.items()), flush=True)
        status = subprocess.run([str(common.BIN), "regions", "status", "--data-dir", str(d.data)],
                                capture_output=True, text=True).stdout
    finally:
        for t in (bare, device):
            if t:
                t.close()
        d.close()
    med = {k: statistics.median(v) for k, v in runs.items()}
    load_after = load()
    print(status)
    today = datetime.date.today().isoformat()
    ratio = med["inter"] / med["bare"] if med["bare"] else 0
    ratio_device = med["inter"] / med["device"] if med["device"] else 0
    runs_text = {k: ", ".join(f"{x:.2f}" for x in v) for k, v in runs.items()}
    block = "\n".join([
        "<!-- backbone-bench:start -->",
        "",
        "## Encrypted inter-region backbone",
        "",
        f"Measured {today} by `scripts/bench-backbone.sh` (release build, as root; median of {ROUNDS} "
        f"interleaved rounds, one iperf3 TCP stream of {SECS} s per case per round; load average "
        f"before {load_before}, after {load_after}: the 2 cores are shared with other work).",
        "",
        "| measure | Gbit/s | runs | inter-region against it | target |",
        "|---|---:|---|---:|---|",
        f"| across an inter-region peering (WireGuard backbone, 1500 MTU) | {med['inter']:.2f} | "
        f"{runs_text['inter']} | | ≥ 1.5 Gbit/s and ≥ 90% of the bare tunnel |",
        f"| bare tunnel: vpcd's backbone engine alone between two namespaces (TUN MTU 1500) | "
        f"{med['bare']:.2f} | {runs_text['bare']} | {ratio:.0%} | baseline |",
        f"| boringtun's own device alone between two namespaces (TUN MTU 1500) | {med['device']:.2f} | "
        f"{runs_text['device']} | {ratio_device:.0%} | the crate's reference loop |",
        f"| across a same-region peering (veth, 9001 MTU) | {med['same']:.2f} | "
        f"{runs_text['same']} | | |",
        "",
        "<!-- backbone-bench:end -->",
    ])
    perf = ROOT / "docs" / "perf.md"
    text = perf.read_text()
    if "<!-- backbone-bench:start -->" not in text:
        text = text.rstrip("\n") + "\n\n<!-- backbone-bench:start -->\n<!-- backbone-bench:end -->\n"
    perf.write_text(replace_block(text, block))
    print(block)


if __name__ == "__main__":
    main()
