#!/bin/sh
# Builds plugin.wasm here (see ../build.sh).
cd "$(dirname "$0")" && exec sh ../build.sh packed-filter
