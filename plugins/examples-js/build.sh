#!/bin/sh
# build.sh WORLD: builds plugin.wasm from plugin.js in the calling example's
# directory with componentize-js 0.23.0
# (npm install -g @bytecodealliance/componentize-js@0.23.0), against this
# checkout's WIT. componentize-js loads modules only from inside the source's
# directory, so the plugin and the SDK (a symlink here) are staged together.
# `--disable http fetch-event`: Sluice does not link wasi:http.
set -eu
world=$1
here=$PWD
root=$(cd "$(dirname "$0")/../.." && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$here/plugin.js" "$stage/"
cp -RL "$here/sluice-sdk" "$stage/sluice-sdk"
componentize-js "$stage/plugin.js" --wit "$root/wit" --world-name "$world" \
    --disable http fetch-event ${SLUICE_JS_AOT:+--aot} -o "$here/plugin.wasm"
