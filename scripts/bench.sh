#!/usr/bin/env bash
# Benchmark (not a test): encap and decap Mpps on one polling core for 64- and 1500-byte inner frames, with
# testpmd's io forwarding over the same vdevs in the same run as the floor. Extra arguments go to vxlan-bench
# (--seconds, --sizes, --flows, --skip-testpmd). Uses hugepages when they can be reserved, --no-huge otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
swift build -c release --product vxlan-bench >/dev/null
huge=()
if ./hugepages-setup.sh 1200 >/dev/null 2>&1; then huge=(--hugepages); else echo "bench: no hugepages, using --no-huge"; fi
exec .build/release/vxlan-bench "${huge[@]}" "$@"
