#!/usr/bin/env bash
# The whole test suite: static checks, Rust unit and property tests, and the
# end-to-end tests that drive the real vpcd binary with boto3 and the aws CLI.
# It installs what it needs, so it runs on a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
need=()
for tool in ip:iproute2 nft:nftables conntrack:conntrack iperf3:iperf3 ping:iputils-ping nc:netcat-openbsd dig:dnsutils getent:libc-bin dnsmasq:dnsmasq-base etcd:etcd-server etcdctl:etcd-client openssl:openssl protoc:protobuf-compiler; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: ${need[*]} (run as root or install them)" >&2
        exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
if ! command -v pip3 >/dev/null && ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-pip
fi
python3 -m pip install --quiet --disable-pip-version-check boto3 awscli pytest prometheus_client 2>&1 | grep -v "Running pip as the 'root' user" || true
# The web console's browser tests (tests/e2e/test_console.py): Debian's Chromium,
# driven by Playwright's Python package used only as a driver (pointed at
# /usr/bin/chromium; `playwright install` is never run, no browser is downloaded).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: chromium chromium-driver (run as root or install them)" >&2
        exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
python3 -m pip install --quiet --disable-pip-version-check playwright 2>&1 | grep -v "Running pip as the 'root' user" || true

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== build"
cargo build --workspace --quiet

echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --quiet
fi

echo "== end-to-end tests (real vpcd, boto3, aws CLI)"
VPCD_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/vpcd" python3 -m pytest tests/e2e -q -p no:cacheprovider
