#!/bin/sh
# Builds plugin.wasm from app.py with componentize-py 0.25.1
# (pip install componentize-py==0.25.1), against this checkout's WIT and
# Python SDK.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
exec componentize-py -d "$root/wit" -w filter componentize app \
    -p "$here" -p "$root/plugins/sdk-python" -o "$here/plugin.wasm"
