#!/usr/bin/env bash
# Fuzzes what Sluice reads from outside (config text, ingest bodies,
# Last-Event-ID, Redis replies, templates, plugin results, JSON values) with
# cargo-fuzz, for a fixed time per target. See fuzz/README.md.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   scripts/fuzz.sh                # every target, 30 s each
#   scripts/fuzz.sh 600 config     # one target, 10 minutes
#
# Installs a nightly toolchain and cargo-fuzz when missing. Seed corpora
# come from the repository's own files (examples/, tests/, fixtures) and
# are written into fuzz/corpus/<target>/ on every run; what libFuzzer adds
# stays there, untracked, for the next run.
#
# Environment:
#   FUZZ_SANITIZER      cargo-fuzz --sanitizer (default: none; see below)
#   FUZZ_CODEGEN_UNITS  codegen units for the build (default: 16)
#
# Exits non-zero when a target crashed, timed out or ran out of memory; the
# input that did it is in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

all=(config interpolate ingest event_ids redis_entry template plugin_outputs json_scan)

usage() {
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    echo "targets: ${all[*]}" >&2
    exit 2
}

seconds=${1:-30}
case $seconds in
    '' | *[!0-9]*) usage ;;
esac
if [ $# -gt 0 ]; then shift; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=("${all[@]}"); fi
for t in "${targets[@]}"; do
    case " ${all[*]} " in
        *" $t "*) ;;
        *) echo "unknown target: $t" >&2; usage ;;
    esac
done

# cargo-fuzz needs nightly (sanitizer coverage flags). The repository's
# rust-toolchain.toml pins a stable release; `+nightly` overrides it.
toolchains=$(rustup toolchain list)
case $toolchains in
    *nightly*) ;;
    *) rustup toolchain install nightly --profile minimal ;;
esac
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The fuzz crate is its own workspace; start its lock file from the root
# one, so it builds the same versions the project is tested with.
if [ ! -f fuzz/Cargo.lock ]; then
    cp Cargo.lock fuzz/Cargo.lock
fi

# --- Seed corpora --------------------------------------------------------

# seed TARGET NAME: stdin becomes fuzz/corpus/TARGET/seed-NAME. Fixed names,
# so a rerun rewrites the seeds instead of piling up copies.
seed() {
    cat >"fuzz/corpus/$1/seed-$2"
}

for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
done

seeds_config() {
    local f
    for f in examples/*.toml deploy/*.toml; do
        if [ -f "$f" ]; then seed config "$(basename "$f")" <"$f"; fi
    done
    # The inline configs of the tests: raw strings (r#"…"#) that hold a
    # config section.
    find -H tests host/src -name '*.rs' -print0 | xargs -0 awk -v dir=fuzz/corpus/config '
        FNR == 1 { n = 0; name = FILENAME; gsub(/[^A-Za-z0-9_]/, "_", name) }
        !inside && /r#"/ { inside = 1; text = ""; sub(/.*r#"/, "") }
        inside {
            if (index($0, "\"#")) {
                sub(/"#.*/, "")
                text = text $0 "\n"
                inside = 0
                if (text ~ /\[(server|sources|sinks|plugins|routes|tables)/) {
                    n++
                    out = dir "/seed-" name "-" n
                    printf "%s", text > out
                    close(out)
                }
            } else {
                text = text $0 "\n"
            }
        }'
}

seeds_interpolate() {
    local f n=0 line
    for f in examples/*.toml; do
        seed interpolate "$(basename "$f")" <"$f"
    done
    while IFS= read -r line; do
        n=$((n + 1))
        printf '%s' "$line" | seed interpolate "line-$n"
    done < <(grep -h '\$' examples/*.toml)
    printf 'a = "${SET}"\nb = "${unset:-fallback}"\nc = "$$5 $x"\nd = "${SET:-no}"' |
        seed interpolate mixed
    printf 'a = "${A}"\nb = "${b}" ${bad name}\n${open' | seed interpolate errors
    printf 'listen = "${LISTEN:-127.0.0.1:8080}"\000%s' 127.0.0.1:9999 | seed interpolate value
}

# Ingest: one byte of max_records ("@" is 64), the query line, header
# lines, an empty line, the body.
seeds_ingest() {
    printf '@\ncontent-type: application/x-ndjson\n\n{"key":"k","value":{"a":1},"headers":{"H":"v"}}\n\n{"value":"text"}\n' |
        seed ingest ndjson
    printf '@\ncontent-type: application/x-ndjson; charset=utf-8\n\n{"value":1,"timestamp":1700000000000}\n{nope' |
        seed ingest ndjson-bad-line
    printf '\001\ncontent-type: application/x-ndjson\n\n{"value":1}\n{"value":2}\n' |
        seed ingest ndjson-too-many
    printf '@\ncontent-type: application/x-ndjson\n\n{"value":"\\u00e9\\n","key":"c1","extra":1}\n' |
        seed ingest ndjson-unknown-key
    printf '@key=c%%201&x=y+z\nsluice-key: client-1\nsluice-timestamp: 77\nsluice-header-trace: abc\n\n{"hello":1}' |
        seed ingest raw
    printf '@\nsluice-timestamp: soon\n\nbody' | seed ingest raw-bad-timestamp
}

seeds_event_ids() {
    local id n=0
    for id in 1700000000000-5 12 0-0 18446744073709551615-18446744073709551615 \
        ' 7-1 ' x-1 - 1- -1 1-2-3 18446744073709551616-0 \
        'client_id=a&last_event_id=5-1' 'last_event_id=%31%37-0' 'last_event_id=+1-+2'; do
        n=$((n + 1))
        printf '%s' "$id" | seed event_ids "$n"
    done
}

# Redis entries: a flags byte (see fuzz_targets/redis_entry.rs), then an
# entry id and NUL-separated fields, or (flag 0x80) an encoded reply.
seeds_redis_entry() {
    printf '\0051700000000000-5\000key\000c1\000value\000hello\000trace\000t1' |
        seed redis_entry sink-default
    printf '\0107-0\000user_id\0001\000command\000register' | seed redis_entry json-object
    printf '\1255-1\000value\000{"a":1,"b":null}\000ts\0001700\000key\000k\000h\000v' |
        seed redis_entry json-writer
    printf '\005bad\000key\000\377\376\000value\000\000\377\000x' | seed redis_entry binary
    # [[stream, [[id, [field, value]]]]]
    printf '\200\004\001\004\002\001\002s1\004\001\004\002\001\0031-0\004\002\001\001f\001\001v' |
        seed redis_entry read-reply
    # [[id, nil]]: an entry deleted while pending.
    printf '\205\004\001\004\002\001\0032-0\000' | seed redis_entry deleted-entry
}

# Templates: template, key, value, origin topic, glob, header pairs,
# separated by 0xFF.
seeds_template() {
    local t n=0
    while IFS= read -r t; do
        n=$((n + 1))
        printf '%s\377c1\377{"region":"eu","n":1,"s":"a\\"b"}\377orders-stream\377*-stream\377h\377x' "$t" |
            seed template "repo-$n"
    done < <(grep -rhoE '"[^"${}]*\{[a-z.A-Z_]+\}[^"]*"' examples host/src/template.rs | tr -d '"' | sort -u)
    printf 'a-{key}-{header.h}-{field.region}\377c1\377{"region":"eu"}\377t\377t\377h\377x' |
        seed template all-kinds
    printf '{origin.source}/{origin.topic}/{origin.partition}/{origin.db}\377\377\377device:1:stream\377device:*:stream' |
        seed template origin
    printf '{header.}{field.}{nope}{key' | seed template invalid
}

seeds_plugin_outputs() {
    head -c 512 /dev/zero | seed plugin_outputs zeros
    head -c 512 /dev/zero | tr '\0' '\377' | seed plugin_outputs ones
    head -c 512 /dev/zero | tr '\0' '\001' | seed plugin_outputs small
}

seeds_json_scan() {
    local f n=0
    while IFS= read -r -d '' f; do
        n=$((n + 1))
        seed json_scan "fixture-$n" <"$f"
    done < <(find plugins deploy -name '*.json' -size -64k -not -path '*/node_modules/*' -print0)
    printf ' {"a":"x\\"y","n":12,"o":{"k":["}",1]},"z":null, "b" : true } ' | seed json_scan mixed
    printf '{"client_id":"c1","event":"login","seq":1,"f":-1.5e-3}' | seed json_scan event
    printf '{"a":1,"a":2,"\\u0061":3}' | seed json_scan repeated
    printf '{"\\u00e9":"\\ud83d\\ude00","e\\u0301":"\\/"}' | seed json_scan escapes
    printf '{"a":[[[[[[[[{"b":"]"}]]]]]]]]}' | seed json_scan nested
    printf '{}' | seed json_scan empty
}

for t in "${targets[@]}"; do
    "seeds_$t"
done

# --- Build ---------------------------------------------------------------

# No sanitizer by default: the host and the format crate deny unsafe code,
# so what fuzzing finds here is panics, overflows (debug assertions are on),
# stack overflows, hangs and runaway memory, all of which libFuzzer catches
# without ASan, at twice the speed and a much shorter build. Several codegen
# units: cargo-fuzz otherwise uses one per crate, and wasmtime and
# librdkafka in one unit each take very long on a small machine.
# The same flags go to `build` and `run`, or `run` would rebuild.
flags=(-O -a -s "${FUZZ_SANITIZER:-none}")
if cargo +nightly fuzz build --help 2>/dev/null | grep -q -- '--codegen-units'; then
    flags+=(--codegen-units "${FUZZ_CODEGEN_UNITS:-16}")
fi
cargo +nightly fuzz build "${flags[@]}"

# --- Run -----------------------------------------------------------------

logs=fuzz/target/fuzz-logs
mkdir -p "$logs"
declare -A runs results
failed=0
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    marker="$logs/$t.started"
    touch "$marker"
    set +e
    cargo +nightly fuzz run "${flags[@]}" "$t" "$root/fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
        -timeout=20 -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e

    n=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | awk '{print $2}' || true)
    if [ -z "$n" ]; then
        n=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)
    fi
    runs[$t]=${n:--}

    artifact=$(find "fuzz/artifacts/$t" -type f -newer "$marker" ! -name 'slow-unit-*' | head -1)
    if [ -n "$artifact" ]; then
        kind=$(basename "$artifact")
        results[$t]="${kind%%-*}: $artifact"
    elif [ "$status" -ne 0 ]; then
        results[$t]="failed (exit $status, see $log)"
    else
        results[$t]=ok
    fi
    echo "$t: ${runs[$t]} runs in ${seconds} s: ${results[$t]}"
    if [ "${results[$t]}" != ok ]; then
        failed=1
        tail -n 40 "$log" >&2
    fi
done

echo
printf '%-16s %14s  %s\n' target runs result
for t in "${targets[@]}"; do
    printf '%-16s %14s  %s\n' "$t" "${runs[$t]}" "${results[$t]}"
done
if [ "$failed" -ne 0 ]; then
    echo
    echo "Reproduce with: cargo +nightly fuzz run ${flags[*]} <target> <artifact>" >&2
fi
exit "$failed"
