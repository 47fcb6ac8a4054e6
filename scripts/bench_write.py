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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_api import ACCOUNTS, BIN, CONNS, DURATION, ROOT, client, free_port, signed, wait_port, wrk

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))


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
        return wrk(url, h, b, label, tmp)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="vpcd-bench-write-"))
    runs = []
    try:
        # Alternate the two so that drift on the machine hits both alike.
        for _ in range(ROUNDS):
            runs.append(measure(False, tmp))
            runs.append(measure(True, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(runs, indent=2))
    write_perf(runs)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def write_perf(runs):
    path = ROOT / "docs/perf.md"
    text = path.read_text()
    start, end = "<!-- write-bench:start -->", "<!-- write-bench:end -->"
    single = [r["rps"] for r in runs if "no-group-commit" in r["label"]]
    grouped = [r["rps"] for r in runs if "no-group-commit" not in r["label"]]
    lines = [start, "", "## Durable writes: group commit", "",
             f"Measured {datetime.date.today().isoformat()} by `scripts/bench-write.sh` on {os.cpu_count()} cores: "
             f"release build pinned to core 0, wrk pinned to core 1 ({CONNS} connections, {DURATION} per row), "
             "a fresh data directory per row, the two modes alternated. Every answer is sent only after its "
             "change is fsynced (SQLite WAL, synchronous=FULL).", "",
             "| request | requests/s | p50 ms | p90 ms | p99 ms | non-2xx |", "|---|---:|---:|---:|---:|---:|"]
    for x in runs:
        lines.append(f"| {x['label']} | {x['rps']:.0f} | {x['p50']:.2f} | {x['p90']:.2f} | {x['p99']:.2f} | {x['non2xx']} |")
    ratio = median(grouped) / median(single) if median(single) else float("inf")
    lines += ["", f"Median: {median(grouped):.0f} vs {median(single):.0f} CreateVpc/s, **{ratio:.1f}×**. "
              "Goal (issue 8): at least 5× and at least 5,000/s at 32 concurrent clients.", "", end]
    block = "\n".join(lines)
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
