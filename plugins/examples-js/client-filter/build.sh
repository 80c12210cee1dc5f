#!/bin/sh
# Builds plugin.wasm from plugin.js with componentize-js 0.23.0
# (npm install -g @bytecodealliance/componentize-js@0.23.0), against this
# checkout's WIT. componentize-js loads modules only from inside the source's
# directory, so the plugin and the SDK (a symlink here) are staged together.
# `--disable http fetch-event`: Sluice does not link wasi:http.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$here/plugin.js" "$stage/"
cp -RL "$here/sluice-sdk" "$stage/sluice-sdk"
componentize-js "$stage/plugin.js" --wit "$root/wit" --world-name filter \
    --disable http fetch-event -o "$here/plugin.wasm"
