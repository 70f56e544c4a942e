#!/usr/bin/env bash
# The tests: installs what is missing, builds, runs the Swift unit and in-process DPDK tests, then the system
# tests (pcap, kernel vxlan interop in namespaces, daemon and CLI). Run as root from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh

# Hugepages: the vhost-user, hugepage-cleanup and capture tests need them, and nothing may skip.
./hugepages-setup.sh 128

# Each Swift test has a time limit, and a run with a failed, skipped or timed-out test, or none at all, fails
# (scripts/swift-test-guard.py reads XCTest's per-test lines as they come).
guard=(/usr/bin/python3 scripts/swift-test-guard.py --timeout "${VXLAN_TEST_TIMEOUT:-300}")

echo "== swift build (debug, with tests)"
swift build --build-tests

echo "== swift test (unit and in-process DPDK tests)"
"${guard[@]}" --log .build/swift-test.log -- swift test --skip-build

# The in-process DPDK tests again, optimized as vxland ships: races and ordering bugs that debug builds hide show
# here, and the stress tests run their full length. Release builds refuse `@testable import` unless built with
# -enable-testing; that flag changes every module, so this build has a directory of its own.
testable=(-c release -Xswiftc -enable-testing --scratch-path .build-testing)
echo "== swift build -c release -Xswiftc -enable-testing (for the in-process DPDK tests)"
swift build "${testable[@]}" --build-tests

echo "== swift test -c release (in-process DPDK tests, optimized)"
"${guard[@]}" --log .build/swift-test-release.log \
    --require testTwoCoresAndTheSlowPathKeepTenantsApartWhileMACsMoveAndAge \
    --require testChangesAtThousandsPerSecondNeverDisturbAnUntouchedVNI \
    --require testACoreOnAnotherThreadSeesEachNewEntryWholeOrNotAtAll \
    -- swift test "${testable[@]}" --skip-build --filter 'VXLANPipelineTests|VXLANDaemonTests'

# The system tests run what ships: the release binaries.
echo "== swift build -c release (vxland, vxlanctl, vxlan-guest: the binaries the system tests run)"
swift build -c release

# As the Docker image's build stage builds them (the Swift runtime linked in): the packaging test checks that the
# image's runtime stage installs every library they need.
echo "== swift build -c release --static-swift-stdlib (the Docker image's binaries)"
swift build -c release --static-swift-stdlib --scratch-path .build-static --product vxland
swift build -c release --static-swift-stdlib --scratch-path .build-static --product vxlanctl

echo "== system tests (pcap, Linux vxlan interop, daemon and CLI; release binaries)"
VXLAN_BUILD_DIR="$PWD/.build/release" /usr/bin/python3 -m pytest -p no:cacheprovider -v Tests/system
