#!/usr/bin/env python3
"""Write benchmark for vpcd: CreateVpc at 32 concurrent clients, with group
commit (the default) and without it (`--no-group-commit`), side by side in
one run, on fresh data directories. Writes the figures to docs/perf.md.

Usage: scripts/bench-write.sh (builds the release binary and calls this).
Traffic goes to 127.0.0.1 only; every wrk run is bounded in time.
"""
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_api import ACCOUNTS, BIN, CONNS, DURATION, ROOT, client, free_port, signed, wait_port, wrk

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
# The realization workload of `scripts/bench-dataplane.sh scale`: VPCs x instances.
REALIZE_VPCS = int(os.environ.get("BENCH_REALIZE_VPCS", "200"))
REALIZE_INSTANCES = int(os.environ.get("BENCH_REALIZE_INSTANCES", "10"))


def measure(group_commit: bool, tmp: Path) -> dict:
    data = tmp / ("data-gc" if group_commit else "data-single")
    limits = tmp / "limits.json"
    limits.write_text(json.dumps({"vpcs_per_region": 10_000_000}))
    a = ACCOUNTS[0]
    subprocess.run([BIN, "account", "add", "--data-dir", str(data), "--id", a[0],
                    "--access-key-id", a[1], "--secret-access-key", a[2]], check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["taskset", "-c", "0", BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
            "--limits", str(limits), "--no-dataplane"]
    if not group_commit:
        args.append("--no-group-commit")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        # The first call in a region makes the default VPC; keep it out of the figures.
        client(url, a).describe_vpcs()
        h, b = signed(url, a, "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.250.0.0/16")
        label = "CreateVpc, group commit" if group_commit else "CreateVpc, one transaction and fsync each (--no-group-commit)"
        cpu0 = cpu_seconds(proc.pid)
        r = wrk(url, h, b, label, tmp)
        seconds = float(DURATION.rstrip("s"))
        r["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) / max(r["rps"] * seconds, 1) * 1e6
        return r
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_seconds(url):
    """Per action: (requests, seconds) the server spent answering, from /metrics."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    out = {}
    for m in re.finditer(r'^vpcd_api_request_duration_seconds_(sum|count)\{action="(\w+)"\} (\S+)$', text, re.M):
        kind, action, v = m.groups()
        n, s = out.get(action, (0, 0.0))
        out[action] = (int(float(v)), s) if kind == "count" else (n, float(v))
    return out


def realization_calls(tmp: Path) -> dict:
    """The API calls of the data-plane realization benchmark (VPC, subnet, RunInstances of
    REALIZE_INSTANCES, per VPC) one after another from boto3, data plane off: wall time and
    the server's own time per call (`vpcd_api_request_duration_seconds`)."""
    data = tmp / "data-realize"
    limits = tmp / "limits-realize.json"
    limits.write_text(json.dumps({"vpcs_per_region": 100000, "igws_per_region": 100000,
                                  "instances_per_region": 1000000, "security_groups_per_region": 1000000}))
    a = ACCOUNTS[0]
    subprocess.run([BIN, "account", "add", "--data-dir", str(data), "--id", a[0],
                    "--access-key-id", a[1], "--secret-access-key", a[2]], check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(["taskset", "-c", "0", BIN, "serve", "--listen", f"127.0.0.1:{port}",
                             "--data-dir", str(data), "--limits", str(limits), "--no-dataplane", "--metrics"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        ec2 = client(url, a)
        ec2.describe_vpcs()
        before = server_seconds(url)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.time()
        for v in range(REALIZE_VPCS):
            cidr = f"10.{v // 100}.{(v % 100) * 2}.0/23"
            vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
            sn = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
            ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=REALIZE_INSTANCES,
                              MaxCount=REALIZE_INSTANCES, SubnetId=sn)
        wall = time.time() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        after = server_seconds(url)
        per_action = {}
        for action in ("CreateVpc", "CreateSubnet", "RunInstances"):
            n = after.get(action, (0, 0.0))[0] - before.get(action, (0, 0.0))[0]
            s = after.get(action, (0, 0.0))[1] - before.get(action, (0, 0.0))[1]
            per_action[action] = {"calls": n, "server_s": s, "mean_ms": s / n * 1000 if n else 0.0}
        calls = sum(x["calls"] for x in per_action.values())
        server = sum(x["server_s"] for x in per_action.values())
        return {"vpcs": REALIZE_VPCS, "instances": REALIZE_VPCS * REALIZE_INSTANCES, "calls": calls,
                "wall_s": wall, "server_s": server, "server_cpu_s": cpu, "per_action": per_action}
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def load_average():
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    tmp = Path(tempfile.mkdtemp(prefix="vpcd-bench-write-"))
    runs = []
    load = {"before": load_average()}
    try:
        # Alternate the two so that drift on the machine hits both alike.
        for _ in range(ROUNDS):
            runs.append(measure(False, tmp))
            runs.append(measure(True, tmp))
        realize = realization_calls(tmp) if REALIZE_VPCS else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load["after"] = load_average()
    print(json.dumps({"runs": runs, "realize": realize, "load": load}, indent=2))
    write_perf(runs, realize, load)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def write_perf(runs, realize, load):
    path = ROOT / "docs/perf.md"
    text = path.read_text()
    start, end = "<!-- write-bench:start -->", "<!-- write-bench:end -->"
    single = [r["rps"] for r in runs if "no-group-commit" in r["label"]]
    grouped = [r["rps"] for r in runs if "no-group-commit" not in r["label"]]
    lines = [start, "", "## Durable writes: group commit", "",
             f"Measured {datetime.date.today().isoformat()} by `scripts/bench-write.sh` on {os.cpu_count()} cores: "
             f"release build pinned to core 0, wrk pinned to core 1 ({CONNS} connections, {DURATION} per row), "
             "a fresh data directory per row, the two modes alternated. Every answer is sent only after its "
             "change is fsynced (SQLite WAL, synchronous=FULL). "
             f"Load average (1 / 5 / 15 min) {load['before']} before, {load['after']} after.", "",
             "| request | requests/s | p50 ms | p90 ms | p99 ms | non-2xx | server CPU µs per request |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for x in runs:
        lines.append(f"| {x['label']} | {x['rps']:.0f} | {x['p50']:.2f} | {x['p90']:.2f} | {x['p99']:.2f} "
                     f"| {x['non2xx']} | {x['cpu_us']:.0f} |")
    ratio = median(grouped) / median(single) if median(single) else float("inf")
    lines += ["", f"Median: {median(grouped):.0f} vs {median(single):.0f} CreateVpc/s, **{ratio:.1f}×**. "
              "Goal (issue 8): at least 5× and at least 5,000/s at 32 concurrent clients.", ""]
    if realize:
        lines += [f"The API calls of the realization benchmark (`bench-dataplane.sh scale`: {realize['vpcs']} × "
                  "CreateVpc, CreateSubnet and RunInstances of "
                  f"{realize['instances'] // realize['vpcs']}), one after another from boto3, data plane off, "
                  "same binary: server time per call from `vpcd_api_request_duration_seconds` "
                  "(authentication to answer, durable).", "",
                  "| action | calls | server ms per call (mean) |", "|---|---:|---:|"]
        for action, x in realize["per_action"].items():
            lines.append(f"| {action} | {x['calls']} | {x['mean_ms']:.2f} |")
        lines += [f"| all | {realize['calls']} | {realize['server_s'] / max(realize['calls'], 1) * 1000:.2f} |", "",
                  f"Wall time of the {realize['calls']} calls: {realize['wall_s']:.1f} s, of which "
                  f"{realize['server_s']:.2f} s in the server (the rest is boto3 and the network round trips); "
                  f"the server used {realize['server_cpu_s']:.2f} s of CPU for them "
                  f"({realize['server_cpu_s'] / max(realize['calls'], 1) * 1000:.2f} ms per call): the rest of its "
                  "time per call is waiting for the disk to sync the commit.", ""]
    lines.append(end)
    block = "\n".join(lines)
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
