#!/usr/bin/env bash
# Console benchmark: builds the release binary, installs Debian's Chromium and
# Playwright (a driver only; it never downloads a browser) if needed, populates
# 1,000 VPCs and 500 peerings, measures time to first render of the VPC list and
# the topology, and updates docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }
python3 -c 'import boto3, playwright' 2>/dev/null || python3 -m pip install --quiet boto3 playwright
cargo build --release --quiet -p vpcd
exec python3 scripts/bench_console.py
