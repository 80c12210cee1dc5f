#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine that has only the
# Rust toolchain, checks formatting and lints (clippy, -D warnings), then
# runs every test in the workspace.
#
# Needs: the wasm32-wasip2 target (plugins are built from source by the
# tests), redis-server (Debian's package; the Redis tests start their own
# servers on free ports, one with a TLS port), openssl (a test CA) and
# coreutils' mkfifo (the slow-sink test), and python3 with PyYAML and pip
# (deploy/check.sh). The
# tests start everything they talk to themselves (Kafka is librdkafka's
# in-process mock cluster unless SLUICE_TEST_KAFKA names a broker).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2

# redis-server (built with TLS in Debian) for the Redis tests, openssl to
# make their test CA.
# libssl-dev and pkg-config: librdkafka is built with OpenSSL (Kafka TLS
# and SASL); this kind of machine has them, a bare Debian may not.
if ! command -v redis-server >/dev/null || ! command -v openssl >/dev/null \
    || ! command -v pkg-config >/dev/null || ! pkg-config --exists openssl \
    || ! python3 -c 'import yaml' 2>/dev/null || ! command -v pip >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server redis-tools openssl libssl-dev pkg-config python3-yaml python3-pip
fi
# The package starts a system-wide server on 6379; the tests don't use it.

# Formatting and lints first: a red lint fails CI like a red test.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# cargo prints one result line per test binary, the last often for a crate
# with no doctests; end with the total.
passed=$(grep -E '^test result:' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -E '^test result:' "$log" | awk '{s += $6} END {print s + 0}')
echo
echo "${passed} passed, ${failed} failed"

# The image and manifests, without a Docker engine: YAML checks, hadolint,
# and the Dockerfile's build and run steps run natively.
deploy_status=0
./deploy/check.sh || deploy_status=$?
if [ "$status" -eq 0 ]; then status=$deploy_status; fi
exit "$status"
