#!/usr/bin/env bash
# Cluster benchmark: API read/write throughput SQLite vs etcd (one and two API
# servers), cross-server visibility lag, clock-leader failover; then, as root, on
# simulated hosts: cross-host (VXLAN) vs same-host throughput across a peering and
# convergence to the first packet on a remote host. Updates docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3; }
command -v etcd >/dev/null || { apt-get update -qq && apt-get install -y -qq etcd-server; }
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
cargo build --release --quiet -p vpcd
export VPCD_BIN="${VPCD_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/vpcd}"
python3 scripts/bench_cluster.py
exec python3 scripts/bench_cluster_hosts.py
