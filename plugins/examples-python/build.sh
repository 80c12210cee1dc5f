#!/bin/sh
# build.sh WORLD: builds plugin.wasm from app.py in the calling example's
# directory with componentize-py 0.25.1 (pip install componentize-py==0.25.1),
# against this checkout's WIT and Python SDK.
set -eu
world=$1
here=$PWD
root=$(cd "$(dirname "$0")/../.." && pwd)
exec componentize-py -d "$root/wit" -w "$world" componentize app \
    -p "$here" -p "$root/plugins/sdk-python" -o "$here/plugin.wasm"
