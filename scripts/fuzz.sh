#!/usr/bin/env bash
# Runs a libFuzzer target for a set time: scripts/fuzz.sh config|control [SECONDS (default 600)] [libFuzzer flags...]
# Builds with -sanitize=fuzzer,address into .build-fuzz, starts from the committed seed corpus (Fuzz/corpus/NAME,
# read only) and keeps what it finds in .build-fuzz/corpus/NAME. A failing input is written to Fuzz/crashes/; copy
# it into Fuzz/corpus/NAME once fixed, and the corpus replay test (swift test) keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/fuzz.sh config|control [SECONDS] [libFuzzer flags...]}"
seconds="${2:-600}"
shift $(( $# >= 2 ? 2 : 1 ))
case "$target" in
    config|control) ;;
    *) echo "fuzz: unknown target '$target' (config, control)" >&2; exit 2 ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }

swift build -c debug --scratch-path .build-fuzz --product "$target-fuzzer" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING >&2
binary=".build-fuzz/debug/$target-fuzzer"
work=".build-fuzz/corpus/$target"
mkdir -p "$work" Fuzz/crashes
echo "fuzz: $target for ${seconds}s (seeds: Fuzz/corpus/$target, new inputs: $work)" >&2
exec "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix="Fuzz/crashes/$target-" -print_final_stats=1 "$@" "$work" "Fuzz/corpus/$target"
