#!/usr/bin/env bash
# Long soak of the differential test (root): random topologies realised in
# the kernel, every probe's real outcome compared with the reachability
# evaluator's verdict. Runs the test in release mode for a time budget and
# records the result in docs/perf.md between the differential-soak markers.
#
#   scripts/soak-differential.sh [SECONDS]      (default 300)
#
# VPCD_DIFF_CASES caps the number of topologies, VPCD_DIFF_SEED replays a run.
# Exits non-zero when the test fails (any disagreement).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "the differential soak must run as root (it creates network namespaces)" >&2
    exit 1
fi
for t in ip:iproute2 nft:nftables conntrack:conntrack ping:iputils-ping python3:python3; do
    command -v "${t%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${t#*:}"; }
done

seconds="${1:-${VPCD_DIFF_SECONDS:-300}}"
log="$(mktemp -t soak-differential.XXXXXX.log)"
cores="$(nproc)"

echo "== building the differential test (release)"
cargo test --release -p vpc-dataplane --test differential --no-run --quiet

echo "== soaking for ${seconds}s (log: $log)"
set +e
VPCD_DIFF_SECONDS="$seconds" cargo test --release -p vpc-dataplane --test differential --quiet \
    -- --nocapture --test-threads=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

summary="$(grep -E '^DIFF-SUMMARY ' "$log" | tail -n 1 || true)"
if [ -z "$summary" ]; then
    echo "no DIFF-SUMMARY line in the test output; docs/perf.md left as it was" >&2
    exit "${status:-1}"
fi
echo "== $summary"

SUMMARY="$summary" CORES="$cores" STATUS="$status" python3 - <<'EOF'
import datetime, os, pathlib, re

fields = dict(kv.split("=", 1) for kv in os.environ["SUMMARY"].split()[1:])
path = pathlib.Path("docs/perf.md")
text = path.read_text() if path.exists() else "# Performance\n"
start, end = "<!-- differential-soak:start -->", "<!-- differential-soak:end -->"
verdict = "passed" if os.environ["STATUS"] == "0" and fields["disagreements"] == "0" else "FAILED"
block = "\n".join([
    start,
    "",
    "## Differential soak: reachability evaluator against the kernel",
    "",
    f"Run {datetime.date.today().isoformat()} by `scripts/soak-differential.sh` "
    f"(release build, as root, {os.environ['CORES']} cores): random topologies (2–4 VPCs, "
    "some overlapping, in three accounts and two regions; peerings pending, active, "
    "rejected, deleted or failed; routes to peers, transit and 0.0.0.0/0 through "
    "peerings or internet gateways; security-group rules from CIDRs and group "
    "references; network ACL entries in both directions; public IPs; stopped "
    "instances) realised with a fresh data plane each, then up to 12 probes per "
    "topology (ping, TCP connect, UDP echo, from an explicit client port) compared "
    "with `reach::analyze_opts`'s verdict. The test is "
    "`crates/vpc-dataplane/tests/differential/`.",
    "",
    "| date | topologies | tuples probed | reachable | disagreements | seconds | seed | result |",
    "|---|---:|---:|---:|---:|---:|---:|---|",
    f"| {datetime.date.today().isoformat()} | {fields['topologies']} | {fields['tuples']} | "
    f"{fields.get('reachable', '-')} | {fields['disagreements']} | {fields['seconds']} | "
    f"{fields.get('seed', '-')} | {verdict} |",
    "",
    end,
])
if start in text and end in text:
    text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
path.write_text(text)
print(f"docs/perf.md: differential soak {verdict}")
EOF
exit "$status"
