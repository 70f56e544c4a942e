#!/usr/bin/env bash
# Where the CPU time goes when TCP crosses the namespace test bed (not a test): for each path and direction, one
# iperf3 run of SECONDS while the whole machine is sampled (perf record -a, cpu-clock: this machine kind has no
# hardware counters), and what each 64 KB of TCP payload cost:
#   core us/64KB     vxland's polling core while busy (rounds that received something; its tap or af_packet reads and
#                    writes are system calls on that core, so the copies into and out of the kernel count here)
#   machine us/64KB  every CPU's non-idle time (/proc/stat), less vxland's idle polling, over the bytes received
# and the five largest entries of the profile (process; symbol), in per cent of all samples.
# Paths: tap (vxland on its tap ports), af_packet (vxland on net_af_packet ports), kernel (the kernel's own vxlan
# in vxland's place). Usage: scripts/where-time-goes.sh [SECONDS [PATHS...]]   (default 5, all three); BUILD=0
# to use .build/release as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"; shift || true
paths=("${@:-tap af_packet kernel}"); paths=(${paths[*]})
(( EUID == 0 )) || { echo "where-time-goes: run as root" >&2; exit 1; }
for tool in perf iperf3; do command -v "$tool" >/dev/null || { echo "where-time-goes: $tool is missing (apt-get install linux-perf iperf3)" >&2; exit 1; }; done
bin=.build/release
[[ "${BUILD:-1}" == 0 ]] || { swift build -c release --product vxland >/dev/null; swift build -c release --product vxlanctl >/dev/null; }
prefix="wt-" vm="wt-vm" dp="wt-dp" hv="wt-hv"
work=$(mktemp -d /tmp/where-time-goes.XXXXXX)
vxland_pid=""
stop_vxland() { [[ -n "$vxland_pid" ]] && { kill -TERM "$vxland_pid" 2>/dev/null; wait "$vxland_pid" 2>/dev/null || true; }; vxland_pid=""; }
cleanup() { trap - EXIT INT TERM; stop_vxland; scripts/netns-topology.sh down "$prefix"; rm -rf "$work" /var/run/dpdk/wtgo; }
trap cleanup EXIT INT TERM
ctl() { "$bin/vxlanctl" "$@" --socket "$work/vxland.sock"; }
large="framesz=65408,blocksz=2093056,framecnt=512"

busy_cycles() { [[ -n "$vxland_pid" ]] && ctl show cores --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["cores"][0]; print(c["busy_cycles"], c["idle_cycles"])' || echo "0 0"; }
cpu_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6}' /proc/stat; }   # non-idle, idle (USER_HZ ticks)

start() {
    case "$1" in
        kernel) scripts/netns-topology.sh up "$prefix" "$work/vxland.yaml" >/dev/null; scripts/netns-topology.sh kernel-vtep "$prefix" ;;
        tap|af_packet)
            local eal=() ports=af_packet
            [[ "$1" == tap ]] && ports=taps
            PORTS=$ports scripts/netns-topology.sh up "$prefix" "$work/vxland.yaml" >/dev/null
            [[ "$1" == af_packet ]] && eal=(--vdev "net_af_packet0,iface=dpund,$large" --vdev "net_af_packet1,iface=dpacc,$large")
            ip netns exec "$dp" "$bin/vxland" -l 0,1 --no-huge -m 1024 --no-pci --file-prefix wtgo --log-level '*:warning' \
                "${eal[@]}" -- --config "$work/vxland.yaml" --socket "$work/vxland.sock" >"$work/vxland.log" 2>&1 &
            vxland_pid=$!
            for _ in $(seq 100); do [[ -S "$work/vxland.sock" ]] && break; sleep 0.1; done
            [[ "$1" == tap ]] && scripts/netns-topology.sh taps "$prefix" both ;;
    esac
    ip netns exec "$vm" ping -c 3 -i 0.3 -W 3 192.168.42.2 >/dev/null
}

echo "| path | direction | Gbit/s | core us/64KB | machine us/64KB | largest in the profile |"
echo "|---|---|---:|---:|---:|---|"
for path in "${paths[@]}"; do
    start "$path"
    for direction in out in; do
        reverse=(); [[ "$direction" == in ]] && reverse=(-R)
        ip netns exec "$hv" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
        server=$!
        sleep 0.5
        read -r b0 i0 < <(busy_cycles); read -r n0 d0 < <(cpu_ticks); t0=$(date +%s.%N)
        perf record -q -a -e cpu-clock -F 499 -o "$work/perf.data" -- \
            ip netns exec "$vm" iperf3 -c 192.168.42.2 -p 5201 -t "$seconds" -J "${reverse[@]}" >"$work/iperf3.json" 2>/dev/null
        t1=$(date +%s.%N); read -r n1 d1 < <(cpu_ticks); read -r b1 i1 < <(busy_cycles)
        wait "$server" 2>/dev/null || true
        # "12.34%  iperf3  [k] _copy_from_iter": per cent, process, symbol (Swift's long names cut to 48 characters).
        top=$(perf report -q -i "$work/perf.data" --sort comm,sym --percent-limit 3 2>/dev/null | head -5 \
              | sed -E 's/^ *([0-9.]+%) +([^ ]+) +\[[.k]\] +(.{0,48}).*/\1 \2 \3/' | paste -sd ';' - | sed 's/;/; /g')
        python3 - "$work/iperf3.json" "$path" "$direction" "$b0" "$i0" "$b1" "$i1" "$n0" "$n1" "$t0" "$t1" "$top" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
path, direction = sys.argv[2], sys.argv[3]
b0, i0, b1, i1, n0, n1 = map(int, sys.argv[4:10])
t0, t1 = float(sys.argv[10]), float(sys.argv[11])
received = r["end"]["sum_received"]["bytes"]
blocks = received / 65536
hz = os.sysconf("SC_CLK_TCK")
elapsed = t1 - t0
cycles = (b1 - b0) + (i1 - i0)
busy_s = elapsed * (b1 - b0) / cycles if cycles else 0.0
idle_s = elapsed - busy_s if cycles else 0.0
machine_s = (n1 - n0) / hz - idle_s
core = f"{busy_s / blocks * 1e6:.1f}" if cycles else "-"
print(f"| {path} | {'VM -> remote' if direction == 'out' else 'remote -> VM'} | {r['end']['sum_received']['bits_per_second'] / 1e9:.2f} "
      f"| {core} | {machine_s / blocks * 1e6:.1f} | {sys.argv[12]} |")
PY
    done
    stop_vxland
    scripts/netns-topology.sh down "$prefix"
done
echo
echo "machine: $(nproc) vCPUs, Linux $(uname -r), $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); $seconds s per run; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
