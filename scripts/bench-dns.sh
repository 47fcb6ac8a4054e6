#!/usr/bin/env bash
# DNS benchmark (root): one VPC's resolver against dnsmasq with the same records,
# measured with dnsperf in the same run. Updates docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in dnsperf:dnsperf dnsmasq:dnsmasq-base dig:dnsutils taskset:util-linux; do
    command -v "${t%%:*}" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${t#*:}"; }
done
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
cargo build --release --quiet -p vpcd
exec python3 scripts/bench_dns.py "$@"
