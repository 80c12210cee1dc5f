#!/usr/bin/env bash
# The container image's build step (the Dockerfile runs exactly this), and
# what deploy/check.sh runs natively so the step is checked without a
# Docker engine.
#
#   deploy/build.sh OUT [release|debug]
#
# Writes OUT/bin/sluice and, in OUT/plugins, the bundled plugins built for
# wasm32-wasip2 (`.wasm`) and precompiled for this very sluice build
# (`.cwasm`, loaded with `allow_precompiled = true`, no compile at start).
set -euo pipefail
out=$(realpath -m "$1")
profile=${2:-release}
cd "$(dirname "$0")/.."

case "$profile" in
    release) flag=(--release) ;;
    debug) flag=() ;;
    *) echo "profile must be release or debug, not $profile" >&2; exit 2 ;;
esac

cargo build "${flag[@]}" --locked -p sluice
plugins=(client-filter json-transform json-enrich port-router snapshot)
cargo build --release --locked --target wasm32-wasip2 "${plugins[@]/#/-p=}"

mkdir -p "$out/bin" "$out/plugins"
install -m 0755 "target/$profile/sluice" "$out/bin/sluice"
for p in "${plugins[@]}"; do
    wasm="target/wasm32-wasip2/release/${p//-/_}.wasm"
    install -m 0644 "$wasm" "$out/plugins/"
    "$out/bin/sluice" compile "$wasm" -o "$out/plugins/${p//-/_}.cwasm"
done
ls -l "$out/bin" "$out/plugins"
