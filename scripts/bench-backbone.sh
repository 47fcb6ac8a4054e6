#!/usr/bin/env bash
# The encrypted inter-region backbone (root): iperf3 across an inter-region
# peering, against a same-region peering, vpcd's tunnel engine alone and
# boringtun's own device between two bare namespaces, in one run. Updates
# docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in iperf3:iperf3 nft:nftables conntrack:conntrack ping:iputils-ping; do
    command -v "${t%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${t#*:}"; }
done
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
cargo build --release --quiet -p vpcd
cargo build --release --quiet -p vpc-dataplane --example bare_tunnel
exec python3 scripts/bench_backbone.py "$@"
