#!/usr/bin/env bash
# The tests: installs what is missing, builds, runs the Swift unit and in-process DPDK tests, then the system
# tests (pcap, kernel vxlan interop in namespaces, daemon and CLI). Run as root from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh

# Hugepages let the tests check that vxland removes its hugepage files; everything else runs with --no-huge.
./hugepages-setup.sh 128 || echo "test: no hugepages; the hugepage-file test will be skipped"

echo "== swift build"
swift build --build-tests

echo "== swift test (unit and in-process DPDK tests)"
swift test 2>&1 | tee .build/swift-test.log
# swift test exits non-zero on failure; this guards against a run that executed nothing.
grep -Eq "Executed [1-9][0-9]* tests, with 0 failures" .build/swift-test.log

echo "== system tests (pcap, Linux vxlan interop, daemon and CLI)"
/usr/bin/python3 -m pytest -p no:cacheprovider -v Tests/system
