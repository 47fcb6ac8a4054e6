#!/usr/bin/env python3
"""DNS benchmark: one VPC's Amazon-provided resolver against dnsmasq serving the same records.

One vpcd (release build, as root) with a VPC, NAMES instances (their IP names)
and a Route 53 private hosted zone of ZONE_RECORDS A records associated with
the VPC. dnsmasq is given the same names and addresses (a hosts file) and runs
in the VPC's router namespace, listening on the same address as vpcd's
resolver (the VPC's base + 2) on another port, so both servers' queries and
answers take the same path: the instance's veth and the router's hooks.

vpcd and dnsmasq are pinned to core 0, dnsperf to core 1. For each server, in
interleaved rounds: dnsperf at full speed (100 queries outstanding) for the
rate, and dnsperf at a fixed rate (-Q, verbose, every query's latency) for the
percentiles. Run as root: scripts/bench-dns.sh. Figures go to docs/perf.md
between the dns-bench markers.
"""
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api as common  # noqa: E402
import bench_dataplane as dpb  # noqa: E402

ROOT = common.ROOT
SECS = int(os.environ.get("BENCH_DNS_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_DNS_ROUNDS", "3"))
FIXED_QPS = int(os.environ.get("BENCH_DNS_FIXED_QPS", "5000"))
NAMES = 10
ZONE_RECORDS = 200
DNSMASQ_PORT = 5300
A = common.ACCOUNTS[0]


def route53(url):
    return boto3.client("route53", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=A[1], aws_secret_access_key=A[2],
                        config=Config(retries={"max_attempts": 1}))


def dnsperf(ns, server, port, qfile, extra):
    p = dpb.netns_exec(ns, "taskset", "-c", "1", "dnsperf", "-s", server, "-p", str(port), "-d", qfile,
                       "-l", str(SECS), "-c", "1", "-T", "1", "-t", "1", *extra, check=True)
    return p.stdout


def cpu_seconds(pid):
    """User + system CPU time of a process so far (all its threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(ns, server, port, qfile, pid):
    cpu_before = cpu_seconds(pid)
    out = dnsperf(ns, server, port, qfile, ["-q", "100"])
    cpu = cpu_seconds(pid) - cpu_before
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    return qps, lost, cpu / max(completed, 1) * 1e6


def latencies(ns, server, port, qfile):
    out = dnsperf(ns, server, port, qfile, ["-q", "100", "-Q", str(FIXED_QPS), "-v"])
    lat = [float(m.group(1)) * 1e6 for m in re.finditer(r"^> \S+ .* ([\d.]+)$", out, re.M)]
    if not lat:
        sys.exit(f"no latencies in dnsperf -v output:\n{out[:2000]}")
    return lat


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    if os.geteuid() != 0:
        sys.exit("the DNS benchmark needs root")
    d = dpb.Vpcd({"instances_per_region": 100})
    tmp = Path(tempfile.mkdtemp(prefix="vpcd-dnsbench-"))
    dnsmasq = None
    try:
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(d.proc.pid)], check=True, capture_output=True)
        ec2 = d.client(A)
        vpc = ec2.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        sn = ec2.create_subnet(VpcId=vpc, CidrBlock="10.90.1.0/24")["Subnet"]["SubnetId"]
        ids = [ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, SubnetId=sn,
                                 PrivateIpAddress=f"10.90.1.{10 + i}")["Instances"][0]["InstanceId"]
               for i in range(NAMES)]
        client = ids[0]
        records = {f"ip-10-90-1-{10 + i}.ec2.internal": f"10.90.1.{10 + i}" for i in range(NAMES)}
        r53 = route53(d.url)
        zid = r53.create_hosted_zone(Name="bench.example", CallerReference="dns-bench",
                                     VPC={"VPCRegion": "us-east-1", "VPCId": vpc})["HostedZone"]["Id"]
        zone = {f"r{i}.bench.example": f"10.91.{i // 250}.{i % 250 + 1}" for i in range(ZONE_RECORDS)}
        r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": {"Name": n, "Type": "A", "TTL": 60,
                                                       "ResourceRecords": [{"Value": ip}]}}
            for n, ip in zone.items()]})
        records.update(zone)
        qfile = tmp / "queries.txt"
        qfile.write_text("".join(f"{n} A\n" for n in records))
        hosts = tmp / "hosts"
        hosts.write_text("".join(f"{ip} {n}\n" for n, ip in records.items()))

        dpb.wait(lambda: dpb.netns_exec(client, "dig", "+time=1", "+tries=1", "+short", "r0.bench.example",
                                        check=False).stdout.strip() == zone["r0.bench.example"], 20,
                 "the VPC resolver answering")
        [router] = [n.split()[0] for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                         text=True, check=True).stdout.splitlines()
                    if n.split()[0].endswith(f"-{vpc}")]
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", router, "taskset", "-c", "0", "dnsmasq", "--keep-in-foreground",
             "--conf-file=/dev/null", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--no-poll",
             "--bind-interfaces", "--listen-address=10.90.0.2", f"--port={DNSMASQ_PORT}", "--pid-file=",
             "--user=root", "--local-ttl=60", "--cache-size=1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dpb.wait(lambda: dpb.netns_exec(client, "dig", "+time=1", "+tries=1", "+short", "-p", str(DNSMASQ_PORT),
                                        "@10.90.0.2", "r0.bench.example", check=False).stdout.strip()
                 == zone["r0.bench.example"], 10, "dnsmasq answering")
        # Every name answers the same from both before anything is measured.
        for n, ip in list(records.items())[:: max(1, len(records) // 20)]:
            for args in (["@10.90.0.2"], ["-p", str(DNSMASQ_PORT), "@10.90.0.2"]):
                got = dpb.netns_exec(client, "dig", "+time=1", "+tries=1", "+short", *args, n).stdout.strip()
                assert got == ip, (n, args, got, ip)

        servers = {"vpcd": ("10.90.0.2", 53, d.proc.pid), "dnsmasq": ("10.90.0.2", DNSMASQ_PORT, dnsmasq.pid)}
        res = {k: {"qps": [], "lost": 0, "lat": [], "cpu_us": []} for k in servers}
        load_before = " ".join(open("/proc/loadavg").read().split()[:3])
        for _ in range(ROUNDS):
            for name, (ip, port, pid) in servers.items():
                qps, lost, cpu_us = rate(client, ip, port, str(qfile), pid)
                res[name]["qps"].append(qps)
                res[name]["lost"] += lost
                res[name]["cpu_us"].append(cpu_us)
                res[name]["lat"] += latencies(client, ip, port, str(qfile))
        load_after = " ".join(open("/proc/loadavg").read().split()[:3])
        summary = {}
        for name, r in res.items():
            summary[name] = {"qps": statistics.median(r["qps"]), "qps_all": r["qps"], "lost": r["lost"],
                             "cpu_us": statistics.median(r["cpu_us"]),
                             "p50_us": pct(r["lat"], 50), "p99_us": pct(r["lat"], 99),
                             "max_us": max(r["lat"]), "n": len(r["lat"])}
        print(summary)
        write_perf(summary, len(records), load_before, load_after)
    finally:
        if dnsmasq is not None:
            dnsmasq.kill()
            dnsmasq.wait()
        d.close()


def write_perf(s, n_records, load_before, load_after):
    path = ROOT / "docs/perf.md"
    text = path.read_text()
    start, end = "<!-- dns-bench:start -->", "<!-- dns-bench:end -->"
    v, m = s["vpcd"], s["dnsmasq"]
    lines = [start, "", "## VPC DNS resolver", "",
             f"Measured {datetime.date.today().isoformat()} by `scripts/bench-dns.sh` (release build, as root, "
             f"{os.cpu_count()} cores: vpcd and dnsmasq pinned to core 0, dnsperf to core 1). One VPC's resolver "
             f"(base + 2, answering from the World: {NAMES} instance IP names and a private hosted zone of "
             f"{ZONE_RECORDS} A records) against dnsmasq 2.x with the same {n_records} names in a hosts file, "
             "running in the VPC's router namespace on the resolver's own address (another port), so both "
             f"servers' packets take the same veth and router hooks. {ROUNDS} interleaved rounds per server: dnsperf at full speed (100 outstanding, {SECS} s) "
             f"for the rate, then at a fixed {FIXED_QPS} queries/s ({SECS} s, every query's latency) for the "
             f"percentiles. Load average {load_before} before, {load_after} after.", "",
             "| measure | vpcd | dnsmasq | ratio | target |", "|---|---:|---:|---:|---|",
             f"| queries per second, median of {ROUNDS} (each run) | {v['qps']:,.0f} ({', '.join(f'{q:,.0f}' for q in v['qps_all'])}) | "
             f"{m['qps']:,.0f} ({', '.join(f'{q:,.0f}' for q in m['qps_all'])}) | {v['qps'] / m['qps']:.2f}× | ≥ dnsmasq |",
             f"| queries lost at full speed (all rounds) | {v['lost']} | {m['lost']} | | |",
             f"| server CPU time per answered query at full speed (µs, user + system, median) | "
             f"{v['cpu_us']:.2f} | {m['cpu_us']:.2f} | {v['cpu_us'] / m['cpu_us']:.2f}× | |",
             f"| latency p50 at {FIXED_QPS}/s (µs, {v['n']:,} / {m['n']:,} queries) | {v['p50_us']:.0f} | {m['p50_us']:.0f} | | |",
             f"| latency p99 at {FIXED_QPS}/s (µs) | {v['p99_us']:.0f} | {m['p99_us']:.0f} | | < 1000 µs |",
             f"| latency max at {FIXED_QPS}/s (µs) | {v['max_us']:.0f} | {m['max_us']:.0f} | | |",
             ""]
    if float(load_before.split()[0]) > (os.cpu_count() or 1):
        lines += ["The machine was loaded well beyond its cores during this run (other builds and tests), "
                  "so the tail latencies of both servers measure the scheduler more than the servers; the "
                  "p99 goal needs a run on an idle machine.", ""]
    lines += [end]
    block = "\n".join(lines)
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
