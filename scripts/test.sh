#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine that has only the
# Rust toolchain, checks formatting and lints (clippy, -D warnings), then
# runs every test in the workspace.
#
# Needs: the wasm32-wasip2 target (plugins are built from source by the
# tests), chromium (Debian's package, headless, for the console's browser
# test), redis-server (Debian's package; the Redis tests start their own
# servers on free ports, one with a TLS port), openssl (a test CA) and
# coreutils' mkfifo (the slow-sink test), a nightly toolchain and
# cargo-fuzz (scripts/fuzz.sh installs both), python3 with PyYAML and pip
# (deploy/check.sh), and node with npm: the Python and JS plugin toolchains
# (componentize-py, componentize-js, pytest) go into target/tools
# (scripts/plugin-tools.sh). The
# tests start everything they talk to themselves (Kafka is librdkafka's
# in-process mock cluster unless SLUICE_TEST_KAFKA names a broker).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2

# The SSE tests hold over a thousand sockets in one process (clients and
# server): lift the soft limit on open files to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# A clean clone is built once: incremental caches would only take disk
# (several GB over the test binaries) on a machine that may have little.
export CARGO_INCREMENTAL=0
df -h . | tail -1 | awk '{print "disk: " $4 " free before the build"}'

# redis-server (built with TLS in Debian) for the Redis tests, openssl to
# make their test CA.
# libssl-dev and pkg-config: librdkafka is built with OpenSSL (Kafka TLS
# and SASL); this kind of machine has them, a bare Debian may not.
if ! command -v redis-server >/dev/null || ! command -v openssl >/dev/null \
    || ! command -v pkg-config >/dev/null || ! pkg-config --exists openssl \
    || ! python3 -c 'import yaml' 2>/dev/null || ! command -v pip >/dev/null \
    || ! command -v chromium >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server redis-tools openssl libssl-dev pkg-config python3-yaml python3-pip chromium
fi
# node and npm for componentize-js and the JS SDK's tests. Separately: a
# nodesource nodejs (which has npm inside) conflicts with Debian's npm.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y nodejs npm
fi
# The package starts a system-wide server on 6379; the tests don't use it.

# The Python and JavaScript plugin toolchains, for the polyglot tests.
tools=$(scripts/plugin-tools.sh)
export PATH="$tools:$PATH"

# Formatting and lints first: a red lint fails CI like a red test.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# The chaos soak (tests/soak.rs; `#[ignore]`d in plain `cargo test`): 60 s
# of faults, about 2 minutes. librdkafka's mock broker, which it runs
# against, can abort on its own assertion under heavy consumer-group churn
# in the classic group protocol (rd_kafka_mock_cgrp.c: `!member->resp`):
# that is the test broker failing, not Sluice, so then it gets one more
# try, with another seed and the KIP-848 group protocol, whose mock code
# has no such assertion. A lost or reordered record fails at once.
soak_log=$(mktemp)
soak_status=0
for protocol in classic consumer; do
    set +e
    SLUICE_SOAK_GROUP_PROTOCOL=$protocol SLUICE_SOAK_SECS=${SLUICE_SOAK_SECS:-60} \
        cargo test -p sluice --test soak -- --ignored --nocapture 2>&1 | tee "$soak_log"
    soak_status=${PIPESTATUS[0]}
    set -e
    if [ "$soak_status" -eq 0 ] || ! grep -q 'rdkafka_mock.*Assertion' "$soak_log"; then
        break
    fi
    echo "soak: librdkafka's mock broker aborted on its own assertion ($protocol group protocol)"
done
grep -E '^test result:' "$soak_log" >> "$log" || true
rm -f "$soak_log"
if [ "$status" -eq 0 ]; then status=$soak_status; fi

# The fuzz targets (fuzz/, cargo-fuzz on a nightly toolchain, which the
# script installs when missing): 30 s each, after one instrumented build.
# A crash, a hang or a runaway allocation fails CI; the input that did it
# is in fuzz/artifacts/. Each target that ran clean counts as one test.
fuzz_log=$(mktemp)
set +e
scripts/fuzz.sh "${SLUICE_FUZZ_SECS:-30}" 2>&1 | tee "$fuzz_log"
fuzz_status=${PIPESTATUS[0]}
set -e
fuzz_passed=$( (grep -E '^[a-z_]+: [0-9-]+ runs in [0-9]+ s: ok$' "$fuzz_log" || true) | wc -l)
fuzz_failed=$( (grep -E '^[a-z_]+: [0-9-]+ runs in [0-9]+ s: ' "$fuzz_log" || true) | grep -vcE ': ok$' || true)
if [ "$fuzz_status" -ne 0 ] && [ "$fuzz_failed" -eq 0 ]; then fuzz_failed=1; fi
rm -f "$fuzz_log"
if [ "$status" -eq 0 ]; then status=$fuzz_status; fi

# The SDKs' and example plugins' native tests (no wasm): pytest and
# node --test.
sdk_log=$(mktemp)
trap 'rm -f "$log" "$sdk_log"' EXIT
set +e
pytest -q -p no:cacheprovider plugins/sdk-python plugins/examples-python 2>&1 | tee "$sdk_log"
py_status=${PIPESTATUS[0]}
node --import ./plugins/sdk-js/src/native/register.js --test \
    plugins/sdk-js/test/ plugins/examples-js/ 2>&1 | tee -a "$sdk_log" | grep -E '^# (tests|pass|fail)'
js_status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 0 ]; then status=$py_status; fi
if [ "$status" -eq 0 ]; then status=$js_status; fi

# cargo prints one result line per test binary, the last often for a crate
# with no doctests; end with the total (with the SDKs' tests).
passed=$(grep -E '^test result:' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -E '^test result:' "$log" | awk '{s += $6} END {print s + 0}')
py_passed=$( (grep -oE '[0-9]+ passed' "$sdk_log" || true) | awk '{s += $1} END {print s + 0}')
py_failed=$( (grep -oE '[0-9]+ failed' "$sdk_log" || true) | awk '{s += $1} END {print s + 0}')
js_passed=$( (grep -E '^# pass ' "$sdk_log" || true) | awk '{s += $3} END {print s + 0}')
js_failed=$( (grep -E '^# fail ' "$sdk_log" || true) | awk '{s += $3} END {print s + 0}')
passed=$((passed + py_passed + js_passed + fuzz_passed))
failed=$((failed + py_failed + js_failed + fuzz_failed))
echo
echo "${passed} passed, ${failed} failed"
du -sh target 2>/dev/null | awk '{print "target/: " $1}'

# The image and manifests, without a Docker engine: YAML checks, hadolint,
# and the Dockerfile's build and run steps run natively.
deploy_status=0
./deploy/check.sh || deploy_status=$?
if [ "$status" -eq 0 ]; then status=$deploy_status; fi
exit "$status"
