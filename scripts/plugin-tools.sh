#!/usr/bin/env bash
# Installs the Python and JavaScript plugin toolchains into target/tools
# (nothing system-wide) and prints the directory to put on PATH:
#
#   export PATH="$(scripts/plugin-tools.sh):$PATH"
#
# componentize-py 0.25.1 and pytest from PyPI; componentize-js 0.23.0 from
# npm (`jco componentize` 1.35 fails on WIT paths; this CLI works). Needs
# python3 with pip, and node with npm. Re-running is cheap: what is there
# at the right version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$PWD/target/tools
mkdir -p "$tools/bin"

py_version=0.25.1
js_version=0.23.0

if ! PYTHONPATH="$tools/python" python3 -c "import componentize_py, pytest" 2>/dev/null \
    || [ "$(cat "$tools/python/.version" 2>/dev/null)" != "$py_version" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$tools/python" \
        --upgrade "componentize-py==$py_version" pytest >&2
    echo "$py_version" >"$tools/python/.version"
fi
cat >"$tools/bin/componentize-py" <<SH
#!/bin/sh
PYTHONPATH="$tools/python\${PYTHONPATH:+:\$PYTHONPATH}" exec python3 -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "\$@"
SH
cat >"$tools/bin/pytest" <<SH
#!/bin/sh
PYTHONPATH="$tools/python\${PYTHONPATH:+:\$PYTHONPATH}" exec python3 -m pytest "\$@"
SH

if [ ! -x "$tools/node/node_modules/.bin/componentize-js" ] \
    || [ "$(cat "$tools/node/.version" 2>/dev/null)" != "$js_version" ]; then
    npm install --silent --no-audit --no-fund --prefix "$tools/node" \
        "@bytecodealliance/componentize-js@$js_version" >&2
    echo "$js_version" >"$tools/node/.version"
fi
ln -sfn "$tools/node/node_modules/.bin/componentize-js" "$tools/bin/componentize-js"
chmod +x "$tools/bin/"*
echo "$tools/bin"
