#!/usr/bin/env python3
"""What metering costs the data path: iperf3 across an active peering between two
accounts, on a vpcd that meters (a vpcd_meter table with per-zone-pair counters in
both routers, read every second), one that meters and also has a flow log
(TrafficType ALL, S3 layout) on both VPCs, and one started with VPCD_METER=0, in
interleaved rounds of the same run, so that a change in the machine's load hits
all alike. Goal: metered (and metered + flow-logged) throughput at least 0.95 of
unmetered.

Run as root: scripts/bench-metering.sh. Traffic stays inside namespaces the two
vpcds create. Figures go to docs/perf.md between the metering-bench markers.
"""
import datetime
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dataplane as dpb  # noqa: E402

ROOT = dpb.ROOT
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def meter_table(ns):
    p = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "vpcd_meter"],
                       capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else None


def router(d, vpc):
    tag = d.data.joinpath("vpcd.db")
    import sqlite3
    con = sqlite3.connect(f"file:{tag}?mode=ro", uri=True)
    t = con.execute("SELECT value FROM settings WHERE key='dp_tag'").fetchone()[0]
    con.close()
    return f"vpcd{t}-{vpc}"


def main():
    on = dpb.Vpcd({"peering_transition_ms": 200})
    off = dpb.Vpcd({"peering_transition_ms": 200}, env={"VPCD_METER": "0"})
    logged = dpb.Vpcd({"peering_transition_ms": 200})
    try:
        _, _, a, b = dpb.peered_pair(on)
        _, _, oa, ob = dpb.peered_pair(off)
        la_client, lb_client, la, lb = dpb.peered_pair(logged)
        for client, side in ((la_client, la), (lb_client, lb)):
            answer = client.create_flow_logs(
                ResourceType="VPC", ResourceIds=[side["vpc"]], TrafficType="ALL",
                LogDestinationType="s3", LogDestination="arn:aws:s3:::vpcd-bench-flow-logs")
            assert not answer.get("Unsuccessful"), answer
        dpb.wait(lambda: meter_table(router(on, a["vpc"])) is not None, 10, "the meter table")
        assert meter_table(router(off, oa["vpc"])) is None, "VPCD_METER=0 must leave no meter table"
        cases = {"metered": (b["id"], a["id"], b["ip"]), "unmetered": (ob["id"], oa["id"], ob["ip"]),
                 "flow_logged": (lb["id"], la["id"], lb["ip"])}
        runs = {k: [] for k in cases}
        for _ in range(ROUNDS):
            for k, c in cases.items():
                runs[k].append(dpb.iperf_run(*c))
        r = {k: {"gbps": statistics.median(x[0] for x in rs), "cpu": statistics.median(x[1] for x in rs),
                 "runs": [round(x[0], 2) for x in rs]} for k, rs in runs.items()}
        counters = meter_table(router(on, b["vpc"]))
    finally:
        on.close()
        off.close()
        logged.close()
    ratio = r["metered"]["gbps"] / r["unmetered"]["gbps"]
    cpu_ratio = r["metered"]["cpu"] / r["unmetered"]["cpu"]
    logged_ratio = r["flow_logged"]["gbps"] / r["unmetered"]["gbps"]
    logged_cpu_ratio = r["flow_logged"]["cpu"] / r["unmetered"]["cpu"]
    print(f"metered {r['metered']}, unmetered {r['unmetered']}, ratio {ratio:.3f}, CPU/GB ratio {cpu_ratio:.3f}")
    print(f"metered + flow log {r['flow_logged']}, ratio {logged_ratio:.3f}, CPU/GB ratio {logged_cpu_ratio:.3f}")
    print(counters)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = "\n".join([
        "<!-- metering-bench:start -->",
        "",
        "## Metering overhead",
        "",
        f"`scripts/bench-metering.sh`, {now}, {ROUNDS} interleaved rounds of one {dpb.SECS} s iperf3 TCP stream",
        "across an active peering between two accounts (same zone), on a vpcd that meters, one that meters",
        "and has a flow log (TrafficType ALL, S3 layout) on both VPCs, and one started with `VPCD_METER=0`,",
        "in the same run. Median of the rounds.",
        "",
        "| | metering on | metering + flow log | metering off | on / off | on + flow log / off |",
        "|---|---|---|---|---|---|",
        f"| throughput (Gbit/s) | {r['metered']['gbps']:.2f} | {r['flow_logged']['gbps']:.2f} | {r['unmetered']['gbps']:.2f} | **{ratio:.3f}** | **{logged_ratio:.3f}** |",
        f"| CPU seconds per GB (sender + receiver) | {r['metered']['cpu']:.2f} | {r['flow_logged']['cpu']:.2f} | {r['unmetered']['cpu']:.2f} | {cpu_ratio:.3f} | {logged_cpu_ratio:.3f} |",
        "",
        f"Runs (Gbit/s): on {r['metered']['runs']}, on + flow log {r['flow_logged']['runs']}, off {r['unmetered']['runs']}. Goal: at least 0.95.",
        "",
        "<!-- metering-bench:end -->",
    ])
    perf = ROOT / "docs" / "perf.md"
    perf.write_text(dpb.replace_block(perf.read_text(), "<!-- metering-bench:start -->",
                                      "<!-- metering-bench:end -->", block))


if __name__ == "__main__":
    main()
