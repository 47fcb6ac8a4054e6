#!/usr/bin/env bash
# Metering overhead (root): iperf3 across a peering with metering on and off, same run. Updates docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in iperf3:iperf3 nft:nftables conntrack:conntrack ping:iputils-ping; do
    command -v "${t%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${t#*:}"; }
done
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
[ -n "${VPCD_BIN:-}" ] || cargo build --release --quiet -p vpcd  # the kernel carries the traffic: any build of vpcd measures the same
exec python3 scripts/bench_metering.py "$@"
