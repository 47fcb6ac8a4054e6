#!/usr/bin/env bash
# Runs one cargo-fuzz target for a number of seconds.
#
#   scripts/fuzz.sh dispatch 600        # target, seconds (default: dispatch, 120)
#
# Installs cargo-fuzz if it is missing. Builds with nightly into its own target
# directory (FUZZ_TARGET_DIR, default fuzz/target), because sanitizer flags
# would otherwise rebuild the shared one. The working corpus grows in
# fuzz/corpus/<target> (not committed); the committed seeds in fuzz/seeds/<target>
# are read as well. Crashes land in fuzz/artifacts/<target>.
set -euo pipefail

target="${1:-dispatch}"
seconds="${2:-120}"
root="$(cd "$(dirname "$0")/.." && pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$root/fuzz/target}"
cd "$root/fuzz"
mkdir -p "corpus/$target"
exec cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -dict=dispatch.dict -max_total_time="$seconds" -rss_limit_mb=4096 -jobs=1 -workers=1
