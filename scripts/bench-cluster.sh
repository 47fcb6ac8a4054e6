#!/usr/bin/env bash
# Cluster benchmark: API read/write throughput SQLite vs etcd (one and two API
# servers), cross-server visibility lag, clock-leader failover; updates docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v etcd >/dev/null || { apt-get update -qq && apt-get install -y -qq etcd-server; }
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
cargo build --release --quiet -p vpcd
export VPCD_BIN="${VPCD_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/vpcd}"
exec python3 scripts/bench_cluster.py
