#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine that has only the
# Rust toolchain, then runs every test in the workspace.
#
# Needs: the wasm32-wasip2 target (plugins are built from source by the
# tests), coreutils' mkfifo (the slow-sink test). Nothing else: the tests
# start everything they talk to themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2

cargo test --workspace --no-fail-fast
