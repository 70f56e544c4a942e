#!/usr/bin/env bash
# The seed experiment (not a test): iperf3 TCP from the VM to the remote across the overlay of the namespace test
# bed (scripts/netns-topology.sh), four ways in one run on this machine:
#   vxland-on    vxland (release build) between dpacc and dpund, the VM's offloads on (TSO/GSO, TX checksum)
#   vxland-off   the same with the VM's offloads off (OFFLOADS=off: MTU-sized frames with finished checksums)
#   kernel-on    the Linux kernel doing vxland's job in its namespace: a bridge joining dpacc with a kernel vxlan
#                device (VNI 42, local 10.99.0.1 on dpund, the same remote; netns-topology.sh kernel-vtep), offloads on
#   kernel-off   the same with the offloads off
# The underlay side has its offloads off in all four (as the test bed has it). Each variant gets a fresh test bed;
# iperf3 runs REPEATS times for SECONDS each, and the table shows the median of what the remote received, in
# Gbit/s, and its ratio to kernel-on. A variant that fails (vxland does not start, iperf3 errors or stalls) is
# reported as such and the others still run. vxland polls on lcore 1 (its control thread on lcore 0): on a
# 2-vCPU machine its polling core takes one of the two CPUs, shared with iperf3 and the kernel's own work.
# Usage: scripts/seed-experiment.sh [SECONDS [REPEATS]]   (default 10 and 3)
#        VARIANTS="kernel-on kernel-off" scripts/seed-experiment.sh ...   (a subset; default all four)
#        BUILD=0 to use .build/release as it is; ACCESS_PORT="net_af_packet1,iface=dpacc,..." for other devargs
#        on vxland's access port (default: 64 KiB frames, framesz=65408,blocksz=2093056,framecnt=512).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}" repeats="${2:-3}"
[[ "$seconds" =~ ^[1-9][0-9]*$ && "$repeats" =~ ^[1-9][0-9]*$ ]] \
    || { echo "seed-experiment: SECONDS and REPEATS must be positive whole numbers" >&2; exit 2; }
(( EUID == 0 )) || { echo "seed-experiment: run as root (namespaces, raw sockets)" >&2; exit 1; }
variants=(${VARIANTS:-vxland-on vxland-off kernel-on kernel-off})
for v in "${variants[@]}"; do
    [[ "$v" =~ ^(vxland|kernel)-(on|off)$ ]] || { echo "seed-experiment: unknown variant '$v'" >&2; exit 2; }
done
for tool in iperf3 ethtool python3; do command -v "$tool" >/dev/null || { echo "seed-experiment: $tool is missing" >&2; exit 1; }; done

bin=.build/release
access_port="${ACCESS_PORT:-net_af_packet1,iface=dpacc,framesz=65408,blocksz=2093056,framecnt=512}"
if [[ " ${variants[*]} " == *" vxland-"* ]]; then
    if [[ "${BUILD:-1}" != 0 ]]; then
        echo "== building (release)" >&2
        swift build -c release --product vxland >/dev/null
        swift build -c release --product vxlanctl >/dev/null
    fi
    [[ -x "$bin/vxland" && -x "$bin/vxlanctl" ]] || { echo "seed-experiment: $bin/vxland is missing" >&2; exit 1; }
    # 1 GiB: the access port's pool holds 64 KiB mbufs. Hugepages when there are enough free ones.
    memory=(--no-huge -m 1024)
    if ./hugepages-setup.sh 512 >/dev/null 2>&1 && (( $(awk '/^HugePages_Free/ {print $2}' /proc/meminfo) >= 512 )); then
        memory=(-m 1024)
    fi
fi

prefix="bs-" vm="bs-vm" dp="bs-dp" hv="bs-hv"
work=$(mktemp -d /tmp/seed-experiment.XXXXXX)
vxland_pid=""
stop_vxland() {
    if [[ -n "$vxland_pid" ]] && kill -0 "$vxland_pid" 2>/dev/null; then
        kill -TERM "$vxland_pid"; wait "$vxland_pid" 2>/dev/null || true
    fi
    vxland_pid=""
}
cleanup() {
    trap - EXIT INT TERM
    stop_vxland
    scripts/netns-topology.sh down "$prefix"
    rm -rf "$work" /var/run/dpdk/bdseed
}
trap cleanup EXIT INT TERM

ctl() { "$bin/vxlanctl" "$@" --socket "$work/vxland.sock"; }

# Starts vxland on the test bed; returns non-zero (with its log on stderr) when it does not come up.
start_vxland() {
    ip netns exec "$dp" "$bin/vxland" -l 0,1 "${memory[@]}" --no-pci --file-prefix bdseed --log-level '*:warning' \
        --vdev net_af_packet0,iface=dpund --vdev "$access_port" \
        -- --config "$work/vxland.yaml" --socket "$work/vxland.sock" >"$work/vxland.log" 2>&1 &
    vxland_pid=$!
    local _
    for _ in $(seq 300); do
        [[ -S "$work/vxland.sock" ]] && break
        kill -0 "$vxland_pid" 2>/dev/null || { vxland_pid=""; tail -n 5 "$work/vxland.log" >&2; return 1; }
        sleep 0.1
    done
    [[ -S "$work/vxland.sock" ]] || { tail -n 5 "$work/vxland.log" >&2; return 1; }
    for _ in $(seq 100); do
        ctl show neighbors --json 2>/dev/null | grep -q '"state":"reachable"' && return 0
        sleep 0.1
    done
    echo "seed-experiment: vxland did not resolve the remote VTEP" >&2; return 1
}

# One iperf3 run; prints the Gbit/s the remote received, or nothing when the run failed.
run_iperf3() {
    ip netns exec "$hv" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
    local server=$!
    sleep 0.5
    timeout $(( seconds + 30 )) ip netns exec "$vm" iperf3 -c 192.168.42.2 -p 5201 -t "$seconds" -J >"$work/iperf3.json" 2>&1 || true
    kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
    python3 - "$work/iperf3.json" <<'PY'
import json, sys
try:
    result = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(0)
received = result.get("end", {}).get("sum_received", {})
if "error" not in result and received.get("bytes", 0) > 0:
    print(f"{received['bits_per_second'] / 1e9:.3f}")
PY
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

load=$(cut -d" " -f1-3 /proc/loadavg)
declare -A result note
for variant in "${variants[@]}"; do
    stack="${variant%-*}" offloads="${variant#*-}"
    echo "== $variant: test bed up (OFFLOADS=$offloads)" >&2
    OFFLOADS="$offloads" scripts/netns-topology.sh up "$prefix" "$work/vxland.yaml"
    ready=1
    if [[ "$stack" == kernel ]]; then
        OFFLOADS="$offloads" scripts/netns-topology.sh kernel-vtep "$prefix"
    else
        start_vxland || { ready=0; note[$variant]="vxland did not start: $(grep -m1 -iE 'error|fail|fit' "$work/vxland.log" || tail -n 1 "$work/vxland.log")"; }
    fi
    if (( ready )) && ! ip netns exec "$vm" ping -c 3 -i 0.2 -W 2 192.168.42.2 >/dev/null; then
        ready=0; note[$variant]="no ping across the overlay"
    fi
    runs=()
    if (( ready )); then
        for (( r = 1; r <= repeats; r++ )); do
            gbps=$(run_iperf3)
            echo "   run $r: ${gbps:-failed} Gbit/s" >&2
            [[ -n "$gbps" ]] && runs+=("$gbps")
        done
        (( ${#runs[@]} == repeats )) || note[$variant]="$(( repeats - ${#runs[@]} )) of $repeats iperf3 runs failed or stalled"
        if [[ "$stack" == vxland ]]; then
            ctl show stats --json >"$work/stats.json" 2>/dev/null && python3 - "$work/stats.json" >&2 <<'PY' || true
import json, sys
s = json.load(open(sys.argv[1]))
p, d = s["totals"]["pipeline"], {k: v for k, v in s["totals"]["drops"].items() if v}
keys = ("encapsulated", "decapsulated", "frames_segmented", "segments_out", "checksums_completed")
pools = s.get("pools") or [s["mempool"]]
in_use = ", ".join(f"{q['name']} {q['in_use']}" for q in pools)
print("   vxland: " + ", ".join(f"{k} {p[k]}" for k in keys if k in p) + f"; drops {d or 'none'}; mbufs in use: {in_use}")
PY
        fi
    fi
    (( ${#runs[@]} )) && result[$variant]=$(median "${runs[@]}")
    stop_vxland
    scripts/netns-topology.sh down "$prefix"
done

base="${result[kernel-on]:-}"
echo
echo "iperf3 TCP, VM -> remote across the overlay, ${seconds} s per run, median of ${repeats}"
echo
echo "| variant | Gbit/s | vs kernel-on | note |"
echo "|---|---:|---:|---|"
for variant in "${variants[@]}"; do
    value="${result[$variant]:-}" ratio="-"
    [[ -n "$value" && -n "$base" ]] && ratio=$(awk -v a="$value" -v b="$base" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
    echo "| $variant | ${value:-failed} | $ratio | ${note[$variant]:-} |"
done
echo
echo "machine: $(nproc) vCPUs, Linux $(uname -r), $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); load average before the run $load; vxlan-dataplane $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
