#!/usr/bin/env bash
# API benchmark: builds the release binary, installs wrk and boto3 if needed,
# populates 1,000 VPCs and 500 peerings, measures, and updates docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
cargo build --release --quiet -p vpcd
exec python3 scripts/bench_api.py
