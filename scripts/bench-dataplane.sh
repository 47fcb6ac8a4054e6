#!/usr/bin/env bash
# Data-plane benchmarks (root): iperf3, ping, convergence, scale, realize. Updates docs/perf.md.
# `realize` alone: VPCD_BASELINE_REALIZE_BIN=<realize_bench of another commit> scripts/bench-dataplane.sh realize
set -euo pipefail
cd "$(dirname "$0")/.."
for t in iperf3:iperf3 nft:nftables conntrack:conntrack ping:iputils-ping; do
    command -v "${t%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${t#*:}"; }
done
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
cargo build --release --quiet -p vpcd
cargo build --release --quiet -p vpc-dataplane --example realize_bench
exec python3 scripts/bench_dataplane.py "$@"
