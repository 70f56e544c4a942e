#!/usr/bin/env bash
# Runs a libFuzzer target for a set time: scripts/fuzz.sh config|control|packet [SECONDS (default 600)] [libFuzzer flags...]
# Builds with -sanitize=fuzzer,address into .build-fuzz, starts from the committed seed corpus (Fuzz/corpus/NAME,
# read only) and keeps what it finds in .build-fuzz/corpus/NAME. A failing input is written to Fuzz/crashes/; copy
# it into Fuzz/corpus/NAME once fixed, and the corpus replay test (swift test) keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/fuzz.sh config|control|packet [SECONDS] [libFuzzer flags...]}"
seconds="${2:-600}"
shift $(( $# >= 2 ? 2 : 1 ))
case "$target" in
    config|control|packet) ;;
    *) echo "fuzz: unknown target '$target' (config, control, packet)" >&2; exit 2 ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }

swift build -c debug --scratch-path .build-fuzz --product "$target-fuzzer" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING >&2
binary=".build-fuzz/debug/$target-fuzzer"
work=".build-fuzz/corpus/$target"
mkdir -p "$work" Fuzz/crashes
extra=()
# The packet target keeps one pipeline (EAL, pools, tables) for the whole run, which LeakSanitizer reports as
# leaked on the first input (Swift stores some of those pointers tagged, out of its sight); it checks buffers
# itself instead: every mbuf must be back in the pool after each input.
[[ "$target" != packet ]] || { extra=(-detect_leaks=0); export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"; }
echo "fuzz: $target for ${seconds}s (seeds: Fuzz/corpus/$target, new inputs: $work)" >&2
exec "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix="Fuzz/crashes/$target-" -print_final_stats=1 "${extra[@]}" "$@" "$work" "Fuzz/corpus/$target"
