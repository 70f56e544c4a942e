#!/usr/bin/env bash
# Installs what the build, the demo and the tests need on Debian 12, skipping what is already there.
set -euo pipefail

packages=(dpdk dpdk-dev libdpdk-dev libnuma-dev pkg-config iproute2 ethtool iputils-ping procps kmod
          python3 python3-scapy python3-pytest python3-pytest-timeout python3-yaml iperf3 iputils-tracepath tshark binutils)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
    (( EUID == 0 )) || { echo "install-deps: run as root to install: ${missing[*]}" >&2; exit 1; }
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Swift toolchain does not come from Debian's archive: it must be on PATH (swift.org's Debian 12 build).
if ! command -v swift >/dev/null 2>&1; then
    for dir in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
        [[ -x "$dir/swift" ]] && export PATH="$dir:$PATH"
    done
fi
command -v swift >/dev/null 2>&1 || {
    echo "install-deps: no Swift toolchain found; install Swift 6 for Debian 12 from swift.org and put it on PATH" >&2
    exit 1
}
echo "install-deps: ready ($(swift --version 2>&1 | head -1); DPDK $(pkg-config --modversion libdpdk))"
