#!/usr/bin/env python3
"""Console benchmark: time to first render of the VPC list and of the topology
with 1,000 VPCs and 500 peering connections, in headless Chromium (Debian's,
driven by Playwright), side by side with the same pages of an account that has
only its default VPC (the fixed cost of a page). Writes docs/perf.md.

Usage: scripts/bench-console.sh (builds the release binary and calls this).
Everything runs on 127.0.0.1.
"""
import concurrent.futures
import datetime
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("VPCD_BIN", str(ROOT / "target/release/vpcd"))
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
ACCOUNTS = {"big": ("111111111111", "AKIDCONSOLEA", "secretA"),
            "small": ("222222222222", "AKIDCONSOLEB", "secretB")}
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
PAGES = [("VPC list", "/console/vpcs", 200), ("Topology", "/console/topology", 2000)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, deadline=10.0):
    t0 = time.time()
    while time.time() - t0 < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("vpcd did not start")


def populate(url):
    acct = ACCOUNTS["big"]
    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1", aws_access_key_id=acct[1],
                       aws_secret_access_key=acct[2], config=Config(retries={"max_attempts": 1},
                                                                    max_pool_connections=16))
    t = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        vpcs = list(pool.map(lambda i: ec2.create_vpc(
            CidrBlock=f"10.{i // 256}.{i % 256}.0/24",
            TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": f"bench-{i}"}]}],
        )["Vpc"]["VpcId"], range(999)))  # plus the default VPC: 1,000
        pcx = list(pool.map(lambda i: ec2.create_vpc_peering_connection(
            VpcId=vpcs[2 * i], PeerVpcId=vpcs[2 * i + 1])["VpcPeeringConnection"]["VpcPeeringConnectionId"],
            range(499)))
        default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        pcx.append(ec2.create_vpc_peering_connection(VpcId=default, PeerVpcId=vpcs[998])
                   ["VpcPeeringConnection"]["VpcPeeringConnectionId"])
        time.sleep(0.5)  # past initiating-request
        list(pool.map(lambda p: ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=p), pcx[:250]))
    return len(vpcs) + 1, len(pcx), time.time() - t


def sign_in(ctx, url, acct):
    page = ctx.new_page()
    page.goto(url + "/console/signin")
    page.fill('input[name="access_key_id"]', acct[1])
    page.fill('input[name="secret_access_key"]', acct[2])
    with page.expect_navigation():
        page.click('main.signin button[type="submit"]')
    return page


TIMING = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {ttfb: n.responseStart - n.startTime, html: n.responseEnd - n.startTime,
          fcp: fcp ? fcp.startTime : null, load: n.loadEventEnd - n.startTime,
          bytes: n.transferSize, nodes: document.getElementsByTagName('*').length};
}"""


def measure(page, url, path):
    page.goto(url + path, wait_until="load")  # warm-up, not counted (first use of the region)
    runs = []
    for _ in range(RUNS):
        page.goto(url + path, wait_until="load")
        page.wait_for_function("() => performance.getEntriesByName('first-contentful-paint').length > 0",
                               timeout=10_000)
        runs.append(page.evaluate(TIMING))
    med = {k: statistics.median(r[k] for r in runs) for k in ("ttfb", "html", "fcp", "load")}
    med["bytes"] = runs[-1]["bytes"]
    med["nodes"] = runs[-1]["nodes"]
    return med


def write_doc(section):
    doc = ROOT / "docs/perf.md"
    text = doc.read_text()
    start, end = "<!-- console-bench:start -->", "<!-- console-bench:end -->"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="vpcd-console-bench-"))
    data = tmp / "data"
    for a in ACCOUNTS.values():
        subprocess.run([BIN, "account", "add", "--data-dir", str(data), "--id", a[0],
                        "--access-key-id", a[1], "--secret-access-key", a[2]], check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                             "--quotas", "relaxed", "--no-dataplane"], stdout=subprocess.DEVNULL)
    try:
        wait_port(port)
        vpcs, peerings, populate_s = populate(url)
        rows = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            version = browser.version
            for who in ("small", "big"):
                ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                page = sign_in(ctx, url, ACCOUNTS[who])
                for label, path, goal in PAGES:
                    rows.append((who, label, path, goal, measure(page, url, path)))
                ctx.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    today = datetime.date.today().isoformat()
    lines = [
        "## Web console: time to first render",
        "",
        f"Measured {today} by `scripts/bench-console.sh` on {os.cpu_count()} cores: release build, "
        f"`--quotas relaxed --no-dataplane`, headless Chromium {version} (Debian's, driven by Playwright) "
        f"on the same machine, median of {RUNS} navigations per row after one warm-up (each a full page load, signed in; lists show their first page of 100 rows, as AWS's console pages its tables).",
        "",
        f"Stored state for the big account: {vpcs} VPCs and {peerings} peering connections "
        f"(250 active, the rest pending acceptance), all in us-east-1 (populated in {populate_s:.1f} s through boto3). "
        "Baseline: the same pages for an account with only its default VPC, in the same run.",
        "",
        "| page | account | server answer (TTFB) ms | HTML received ms | first contentful paint ms | load ms | bytes | DOM nodes | goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for who, label, path, goal, m in rows:
        acct = "baseline (1 VPC)" if who == "small" else f"{vpcs} VPCs, {peerings} peerings"
        lines.append(f"| {label} (`{path}`) | {acct} | {m['ttfb']:.1f} | {m['html']:.1f} | {m['fcp']:.1f} | "
                     f"{m['load']:.1f} | {m['bytes']} | {m['nodes']} | "
                     f"{'< ' + str(goal) + ' ms' if who == 'big' else ''} |")
    section = "\n".join(lines)
    write_doc(section)
    print(section)


if __name__ == "__main__":
    main()
