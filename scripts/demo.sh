#!/usr/bin/env bash
# The main job on the built-in default: installs what is missing, builds in release mode, reserves hugepages
# (or falls back to --no-huge), creates the namespace test bed (a VM, vxland's ports, a remote hypervisor whose
# Linux kernel vxlan device is the remote VTEP), runs vxland between them on its own tap ports (the VM's NIC and
# the underlay bridge's port, with the kernel's offloads), pings across the overlay both ways while printing live
# counters, runs TCP both ways for a few seconds, and tears everything down on exit or Ctrl-C.
# Usage: scripts/demo.sh [SECONDS]   (default 20; 0 runs until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "demo: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }
(( EUID == 0 )) || { echo "demo: run as root (namespaces, hugepages, raw sockets)" >&2; exit 1; }
source scripts/install-deps.sh

echo "== building (release)"
swift build -c release --product vxland >/dev/null
swift build -c release --product vxlanctl >/dev/null
bin=.build/release

if ./hugepages-setup.sh 512; then memory=(-m 1024); else
    echo "demo: no hugepages; running with --no-huge"; memory=(--no-huge -m 1024); fi

prefix="vxdemo-"
work=$(mktemp -d /tmp/vxlan-demo.XXXXXX)
vxland_pid="" ping_pids=()
cleanup() {
    trap - EXIT INT TERM
    for p in "${ping_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -n "$vxland_pid" ]] && kill -0 "$vxland_pid" 2>/dev/null; then
        kill -TERM "$vxland_pid"; wait "$vxland_pid" 2>/dev/null || true
        echo "== vxland stopped; its last words:"; tail -n 2 "$work/vxland.log"
    fi
    scripts/netns-topology.sh down "$prefix"
    rm -rf "$work"
    echo "== torn down"
}
trap cleanup EXIT INT TERM

echo "== test bed: ${prefix}vm <-> vxland (${prefix}dp) <-> ${prefix}hv (Linux vxlan, VNI 42)"
PORTS=taps scripts/netns-topology.sh up "$prefix" "$work/vxland.yaml"
cores=$(( $(nproc) > 1 ? 1 : 0 ))
# vxland creates its two tap ports in its namespace; the test bed then moves them into place: one becomes the
# VM's NIC (vm0), the other a port of the underlay bridge, as an operator would after starting it.
ip netns exec "${prefix}dp" "$bin/vxland" -l "0-$cores" "${memory[@]}" --no-pci --file-prefix vxdemo \
    -- --config "$work/vxland.yaml" --socket "$work/vxland.sock" >"$work/vxland.log" 2>&1 &
vxland_pid=$!
for _ in $(seq 100); do [[ -S "$work/vxland.sock" ]] && break; kill -0 "$vxland_pid" || { cat "$work/vxland.log"; exit 1; }; sleep 0.1; done
scripts/netns-topology.sh taps "$prefix" both
"$bin/vxlanctl" show ports --socket "$work/vxland.sock"
# Frames for a remote whose MAC ARP has not resolved yet are dropped (and counted): wait for it first.
for _ in $(seq 100); do
    "$bin/vxlanctl" show neighbors --json --socket "$work/vxland.sock" | grep -q '"state":"reachable"' && break
    sleep 0.1
done
"$bin/vxlanctl" show neighbors --socket "$work/vxland.sock"

echo "== ping across the overlay: VM 192.168.42.1 <-> remote 192.168.42.2"
deadline=(); (( seconds > 0 )) && deadline=(-w "$seconds")
ip netns exec "${prefix}vm" ping -i 0.5 "${deadline[@]}" 192.168.42.2 >"$work/ping-vm.log" 2>&1 &
ping_pids+=($!)
ip netns exec "${prefix}hv" ping -i 0.5 "${deadline[@]}" 192.168.42.1 >"$work/ping-hv.log" 2>&1 &
ping_pids+=($!)

start=$(date +%s)
while kill -0 "${ping_pids[0]}" 2>/dev/null; do
    sleep 2
    [[ -t 1 ]] && clear
    echo "vxland live counters ($(( $(date +%s) - start ))s; Ctrl-C to stop)"
    "$bin/vxlanctl" show stats --socket "$work/vxland.sock" || true
    echo; tail -n 1 "$work/ping-vm.log"
done
wait "${ping_pids[@]}" 2>/dev/null || true
echo "== VM -> remote:";  tail -n 2 "$work/ping-vm.log"
echo "== remote -> VM:";  tail -n 2 "$work/ping-hv.log"
echo "== TCP across the overlay (iperf3, 3 s each way; the VM's and the remote's 64 KB frames cross whole)"
ip netns exec "${prefix}hv" iperf3 -s -D -p 5201 --pidfile "$work/iperf3.pid"
sleep 0.5
for direction in "VM -> remote" "remote -> VM"; do
    reverse=(); [[ "$direction" == remote* ]] && reverse=(-R)
    timeout 30 ip netns exec "${prefix}vm" iperf3 -c 192.168.42.2 -p 5201 -t 3 "${reverse[@]}" 2>&1 | grep -E "receiver" \
        | sed "s/^/  $direction: /" || echo "  iperf3 $direction failed"
done
kill "$(cat "$work/iperf3.pid")" 2>/dev/null || true
"$bin/vxlanctl" show ports --socket "$work/vxland.sock"
"$bin/vxlanctl" show stats --socket "$work/vxland.sock"
echo "== learned on the way (nothing was configured statically):"
"$bin/vxlanctl" show fdb --socket "$work/vxland.sock"
grep -q " 0% packet loss" "$work/ping-vm.log" && grep -q " 0% packet loss" "$work/ping-hv.log" \
    && echo "== overlay OK: both directions answered every ping" \
    || { echo "== overlay lost pings"; exit 1; }
