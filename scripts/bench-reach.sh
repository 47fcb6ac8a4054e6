#!/usr/bin/env bash
# Reachability analyzer benchmark: single analyses and the 1,000-instance
# matrix on a generated 1,000-VPC / 10,000-interface topology (the generator
# is described in crates/vpc-reach/examples/reach_bench.rs). Updates docs/perf.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p vpc-reach --example reach_bench
line=$(./target/release/examples/reach_bench | grep '^REACH-BENCH')
echo "$line"
python3 - "$line" <<'PY'
import datetime, os, sys
from pathlib import Path
kv = dict(x.split("=", 1) for x in sys.argv[1].split()[1:])
p = Path("docs/perf.md")
text = p.read_text() if p.exists() else "# Performance\n"
start, end = "<!-- reach-bench:start -->", "<!-- reach-bench:end -->"
block = f"""{start}

## Reachability analyzer

Measured {datetime.date.today().isoformat()} by `scripts/bench-reach.sh` (release build, one core) on the generated
topology of `crates/vpc-reach/examples/reach_bench.rs`: {kv['vpcs']} VPCs in a chain of active peerings with routes
both ways, {kv['enis']} interfaces (ten instances per VPC), tcp/22 admitted from 10.0.0.0/8, a custom ACL denying
tcp/23 in every tenth VPC.

| measure | vpcd | baseline | target |
|---|---:|---:|---|
| one analysis (`analyze_with`, {kv['queries']} mixed queries: neighbour, transitive, far; tcp 22 or 23), p50 / p99 | {kv['analyze_p50_us']} µs / {kv['analyze_p99_us']} µs | {kv['analyze_with_index_build_ms']} ms with the index built per call (`analyze`) | < 1 ms |
| index build, once per published World | {kv['index_ms']} ms | | |
| all-pairs matrix of {kv['matrix_instances']} instances ({kv['matrix_pairs']} pairs; 10 per VPC in 100 VPCs → {kv['matrix_classes']} classes, {kv['matrix_evaluated']} pairs evaluated) | {kv['matrix_s']} s | {kv['pairwise_s']} s pair by pair (verdicts agree: {kv['agree']}) | < 10 s |
| the same with one instance in each of the 1,000 VPCs ({kv['spread_classes']} classes: no sharing) | {kv['spread_s']} s | | < 10 s |

{end}"""
if start in text:
    text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + "\n\n" + block + "\n"
p.write_text(text)
PY
