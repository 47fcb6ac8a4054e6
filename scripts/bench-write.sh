#!/usr/bin/env bash
# Write benchmark: CreateVpc at 32 concurrent clients with and without group
# commit, side by side; updates docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
cargo build --release --quiet -p vpcd
export VPCD_BIN="${VPCD_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/vpcd}"
exec python3 scripts/bench_write.py
