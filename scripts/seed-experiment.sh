#!/usr/bin/env bash
# The seed experiment (not a test): TCP across the overlay of the namespace test bed (scripts/netns-topology.sh),
# both directions, in one run on this machine.
#
# Table 1, iperf3 TCP between the VM and the remote, VM -> remote and remote -> VM (iperf3 -R), four ways:
#   vxland-on    vxland (release build) between dpacc and dpund; every device of the test bed keeps the kernel's
#                default offloads (the VM and the remote send 64 KiB TSO/GSO frames with partial checksums)
#   vxland-off   the same with the offloads off everywhere (OFFLOADS=off: MTU-sized frames, finished checksums)
#   kernel-on    the Linux kernel doing vxland's job in its namespace: a bridge joining dpacc with a kernel vxlan
#                device (VNI 42, local 10.99.0.1 on dpund, the same remote; netns-topology.sh kernel-vtep),
#                default offloads
#   kernel-off   the same with the offloads off everywhere
# Each variant gets a fresh test bed; iperf3 runs REPEATS times for SECONDS in each direction (alternating), and
# the table shows the median of what the receiver got, in Gbit/s, and its ratio to kernel-on in that direction.
#
#   tap-on       vxland with its own tap ports on both sides (virtio-net header: the VM's TSO frames and the
#                remote's UDP-tunnel GSO frames cross whole), offloads on; tap-on6 the same over an IPv6 underlay,
#                against kernel-on6 (the kernel's vxlan over IPv6 on the same bed)
#   tap-vm       a tap towards the VM, af_packet on the underlay;  tap-und  af_packet towards the VM, a tap underlay
#
# Table 2, a vhost-user VM: vxlan-guest on a virtio_user port (hugepages) sends 64000-byte TCP frames with TSO
# metadata (MSS 1400) through vxland's vhost-user access port as fast as the ring takes them, for SECONDS,
# REPEATS times (median). No TCP socket takes this crafted stream, so what is counted is the TCP payload that
# leaves vxland as VXLAN segments:
#   vhost-null     vxland's underlay is net_null: payload = the underlay's tx_bytes less 104 header bytes per
#                  packet (outer Ethernet/IPv4/UDP/VXLAN 50, inner Ethernet/IPv4/TCP 54), no kernel involved
#   vhost-tap      the same towards the remote, through a tap underlay (64 KB VXLAN frames, UDP-tunnel GSO)
#   vhost-remote   vxland's underlay is the test bed's dpund (af_packet, offloads on): payload = what the remote
#                  kernel's vx42 received (rx_bytes less 40 per packet: it counts the inner IP packet), sent to a
#                  MAC behind the remote that is not vx42's own (02:00:00:00:42:99, static in vxland's FDB), so
#                  the remote kernel decapsulates and counts each segment and then drops it (not for this host)
#                  instead of answering a TCP stream no socket takes
# Either way, per polling core (vxland polls on one), over the guest's sending time.
#
# A variant that fails (vxland does not start, iperf3 errors or stalls) is reported as such and the others still
# run. vxland polls on lcore 1 (its control thread on lcore 0): on a 2-vCPU machine its polling core takes one of
# the two CPUs, shared with iperf3 and the kernel's own work (the guest of table 2 spins on CPU 0).
# Usage: scripts/seed-experiment.sh [SECONDS [REPEATS]]   (default 10 and 3)
#        VARIANTS="kernel-on vhost-null" scripts/seed-experiment.sh ...   (a subset; default all)
#        BUILD=0 to use .build/release as it is
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}" repeats="${2:-3}"
[[ "$seconds" =~ ^[1-9][0-9]*$ && "$repeats" =~ ^[1-9][0-9]*$ ]] \
    || { echo "seed-experiment: SECONDS and REPEATS must be positive whole numbers" >&2; exit 2; }
(( EUID == 0 )) || { echo "seed-experiment: run as root (namespaces, raw sockets)" >&2; exit 1; }
all_variants="vxland-on vxland-off kernel-on kernel-off tap-on tap-vm tap-und kernel-on6 tap-on6 vhost-null vhost-remote vhost-tap"
variants=(${VARIANTS:-$all_variants})
for v in "${variants[@]}"; do
    [[ " $all_variants " == *" $v "* ]] || { echo "seed-experiment: unknown variant '$v'" >&2; exit 2; }
done
for tool in iperf3 ethtool python3; do command -v "$tool" >/dev/null || { echo "seed-experiment: $tool is missing" >&2; exit 1; }; done

bin=.build/release
# Both af_packet ports take 64 KiB frames whole: the VM's TSO/GSO frames and the remote's GSO VXLAN frames.
large="framesz=65408,blocksz=2093056,framecnt=512"
underlay_port="net_af_packet0,iface=dpund,$large" access_port="net_af_packet1,iface=dpacc,$large"
if [[ " ${variants[*]} " == *" vxland-"* || " ${variants[*]} " == *" vhost-"* || " ${variants[*]} " == *" tap-"* ]]; then
    if [[ "${BUILD:-1}" != 0 ]]; then
        echo "== building (release)" >&2
        for product in vxland vxlanctl vxlan-guest; do swift build -c release --product "$product" >/dev/null; done
    fi
    for tool in vxland vxlanctl vxlan-guest; do
        [[ -x "$bin/$tool" ]] || { echo "seed-experiment: $bin/$tool is missing" >&2; exit 1; }
    done
    # 1 GiB: each af_packet port's pool holds 64 KiB mbufs. Hugepages when there are enough free ones (the
    # vhost-user guest needs 128 more of its own).
    memory=(--no-huge -m 1024)
    if ./hugepages-setup.sh 768 >/dev/null 2>&1 && (( $(awk '/^HugePages_Free/ {print $2}' /proc/meminfo) >= 640 )); then
        memory=(-m 1024)
    fi
fi

prefix="sd-" vm="sd-vm" dp="sd-dp" hv="sd-hv"
work=$(mktemp -d /tmp/seed-experiment.XXXXXX)
vxland_pid="" guest_prefix="sdguest"
stop_vxland() {
    if [[ -n "$vxland_pid" ]] && kill -0 "$vxland_pid" 2>/dev/null; then
        kill -TERM "$vxland_pid"; wait "$vxland_pid" 2>/dev/null || true
    fi
    vxland_pid=""
    rm -f "$work/vxland.sock"
}
cleanup() {
    trap - EXIT INT TERM
    stop_vxland
    scripts/netns-topology.sh down "$prefix"
    rm -rf "$work" /var/run/dpdk/sdseed "/var/run/dpdk/$guest_prefix"
}
trap cleanup EXIT INT TERM

ctl() { "$bin/vxlanctl" "$@" --socket "$work/vxland.sock"; }

# Starts vxland (in namespace $1, or "none" for this one, with the EAL port arguments after it); returns non-zero (with its log on
# stderr) when it does not come up or does not resolve the remote VTEP.
start_vxland() {
    local netns=("ip" "netns" "exec" "$1")
    [[ "$1" == none ]] && netns=()
    shift
    "${netns[@]}" "$bin/vxland" -l 0,1 "${memory[@]}" --no-pci --file-prefix sdseed --log-level '*:warning' \
        "$@" -- --config "$work/vxland.yaml" --socket "$work/vxland.sock" >"$work/vxland.log" 2>&1 &
    vxland_pid=$!
    local _
    for _ in $(seq 300); do
        [[ -S "$work/vxland.sock" ]] && break
        kill -0 "$vxland_pid" 2>/dev/null || { vxland_pid=""; tail -n 5 "$work/vxland.log" >&2; return 1; }
        sleep 0.1
    done
    [[ -S "$work/vxland.sock" ]] || { tail -n 5 "$work/vxland.log" >&2; return 1; }
    # Tap ports are in place only once netns-topology.sh has moved them: their variants wait afterwards.
    grep -q "tap:" "$work/vxland.yaml" || wait_resolved
}

wait_resolved() {
    local _
    for _ in $(seq 100); do
        ctl show neighbors --json 2>/dev/null | grep -qE '"state":"(reachable|permanent)"' && return 0
        sleep 0.1
    done
    echo "seed-experiment: vxland did not resolve the remote VTEP" >&2; return 1
}

vxland_note() {   # why vxland did not start, from its log
    grep -m1 -iE 'error|fail|fit' "$work/vxland.log" || tail -n 1 "$work/vxland.log"
}

# One iperf3 run (extra client arguments: -R for remote -> VM); prints the Gbit/s the receiver got, or nothing
# when the run failed.
run_iperf3() {
    ip netns exec "$hv" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
    local server=$!
    sleep 0.5
    timeout $(( seconds + 30 )) ip netns exec "$vm" iperf3 -c 192.168.42.2 -p 5201 -t "$seconds" -J "$@" >"$work/iperf3.json" 2>&1 || true
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

vxland_stats() {   # a one-line summary of vxland's counters, on stderr
    ctl show stats --json >"$work/stats.json" 2>/dev/null && python3 - "$work/stats.json" >&2 <<'PY' || true
import json, sys
s = json.load(open(sys.argv[1]))
p, d = s["totals"]["pipeline"], {k: v for k, v in s["totals"]["drops"].items() if v}
keys = ("encapsulated", "decapsulated", "frames_segmented", "segments_out", "checksums_completed")
pools = s.get("pools") or [s["mempool"]]
in_use = ", ".join(f"{q['name']} {q['in_use']}" for q in pools)
print("   vxland: " + ", ".join(f"{k} {p[k]}" for k in keys if k in p) + f"; drops {d or 'none'}; mbufs in use: {in_use}")
PY
    ctl show ports --json >"$work/ports.json" 2>/dev/null && python3 - "$work/ports.json" >&2 <<'PY' || true
import json, sys
for p in json.load(open(sys.argv[1]))["ports"]:
    if p.get("tap"):
        c = p["tap"]["counters"]
        keys = ("rx_frames", "rx_gso_frames", "rx_tunnel_gso_frames", "tx_frames", "tx_gso_frames", "tx_tunnel_gso_frames")
        bad = {k: v for k, v in c.items() if v and (k.startswith("rx_bad") or k.endswith("errors") or k == "tx_bad_metadata")}
        print(f"   tap {p['tap']['interface']} ({','.join(p['tap']['offloads'])}): " + ", ".join(f"{k} {c[k]}" for k in keys) + f"; errors {bad or 'none'}")
PY
}

# Counters for the vhost-user rows: "packets bytes" of vxland's underlay port (net_null) or of the remote's vx42.
underlay_counters() {
    ctl show stats --json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["totals"]["ports"]:
    if p["port"] == "net_null0":
        print(p["counters"]["tx_packets"], p["counters"]["tx_bytes"])'
}
remote_counters() {
    echo "$(ip netns exec "$hv" cat /sys/class/net/vx42/statistics/rx_packets) $(ip netns exec "$hv" cat /sys/class/net/vx42/statistics/rx_bytes)"
}

# One run of the guest; prints "payload-Gbit/s guest-Gbit/s" (delivered, and what the ring took), or nothing.
run_guest() {
    local counters="$1" per_packet="$2" before after
    before=$($counters)
    rm -rf "/var/run/dpdk/$guest_prefix"
    "$bin/vxlan-guest" -l 0 -m 256 --no-pci --single-file-segments --file-prefix "$guest_prefix" --log-level '*:warning' \
        --vdev "virtio_user0,path=$work/vm1.sock" -- send --seconds "$seconds" --count 512 --payload 64000 --mss 1400 \
        --dst-mac 02:00:00:00:42:99 --dst-ip 192.168.42.99 --linger 1 >"$work/guest.json" 2>"$work/guest.log" || { tail -n 3 "$work/guest.log" >&2; return 0; }
    after=$($counters)
    python3 - "$work/guest.json" "$before" "$after" "$per_packet" <<'PY'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("{")][-1]
guest = json.loads(line)
(p0, b0), (p1, b1) = (map(int, sys.argv[k].split()) for k in (2, 3))
packets, payload = p1 - p0, (b1 - b0) - (p1 - p0) * int(sys.argv[4])
print(f"{payload * 8 / guest['seconds'] / 1e9:.3f} {guest['gbps']:.3f} {packets}", end=" ")
print(f"{guest['payload_bytes']} {payload}")
PY
}

tap_config() {   # $1: access|underlay|both (which side is a tap), $2: the address keys of the underlay, $3: flood list
    local u="port: net_af_packet0" a="port: net_af_packet1"
    [[ "$1" != access ]] && u="port: tapund, tap: { name: tapund }"
    [[ "$1" != underlay ]] && a="port: tapacc, tap: { name: tapacc }"
    cat > "$work/vxland.yaml" <<CONF
underlay: { $u, $2, mac: "02:00:00:00:00:01", mtu: 1500 }
access: [ { $a, vni: 42 } ]
vnis: [ { vni: 42, flood: [$3] } ]
CONF
}

# EAL ports for the sides that are not taps.
eal_ports() {
    [[ "$1" == access ]] && printf '%s\n' --vdev "$underlay_port"
    [[ "$1" == underlay ]] && printf '%s\n' --vdev "$access_port"
    return 0
}

vhost_config() {   # $1: the underlay block; a vhost-user access port, the guest's destination MAC static
    cat > "$work/vxland.yaml" <<CONF
underlay: $1
access: [ { port: net_vhost0, vni: 42, vhost: { socket: $work/vm1.sock, tso: true } } ]
vnis: [ { vni: 42, flood: [10.99.0.2] } ]
fdb: [ { vni: 42, mac: "02:00:00:00:42:99", remote: 10.99.0.2 } ]
CONF
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

load_start=$(cut -d" " -f1-3 /proc/loadavg)
declare -A result note
for variant in "${variants[@]}"; do
    stack="${variant%-*}" offloads="${variant#*-}" mode=untagged
    [[ "$stack" == vhost || "$stack" == tap ]] && offloads=on
    [[ "$variant" == *6 ]] && offloads=on mode=ipv6
    echo "== $variant: test bed up (OFFLOADS=$offloads${mode/untagged/})" >&2
    OFFLOADS="$offloads" scripts/netns-topology.sh up "$prefix" "$work/vxland.yaml" 1 300 "$mode"
    ready=1
    case "$variant" in
        kernel-*) OFFLOADS="$offloads" scripts/netns-topology.sh kernel-vtep "$prefix" ;;
        tap-*)
            which=both addresses="ip: 10.99.0.1/24" flood=10.99.0.2
            [[ "$variant" == tap-vm ]] && which=access
            [[ "$variant" == tap-und ]] && which=underlay
            [[ "$mode" == ipv6 ]] && addresses='ip6: "fd00::1/64"' flood='"fd00::2"'
            tap_config "$which" "$addresses" "$flood"
            mapfile -t ports < <(eal_ports "$which")
            if start_vxland "$dp" "${ports[@]}" && scripts/netns-topology.sh taps "$prefix" "$which" "$mode" && wait_resolved; then :; else
                ready=0; note[$variant]="vxland did not start: $(vxland_note)"
            fi ;;
        vhost-tap)
            vhost_config '{ port: tapund, tap: { name: tapund }, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 1500 }'
            if start_vxland "$dp" && scripts/netns-topology.sh taps "$prefix" underlay && wait_resolved; then :; else
                ready=0; note[$variant]="vxland did not start: $(vxland_note)"
            fi ;;
        vxland-*) start_vxland "$dp" --vdev "$underlay_port" --vdev "$access_port" || { ready=0; note[$variant]="vxland did not start: $(vxland_note)"; } ;;
        vhost-null)
            vhost_config '{ port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }'
            echo 'neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]' >>"$work/vxland.yaml"
            start_vxland none --vdev net_null0,no-rx=1 || { ready=0; note[$variant]="vxland did not start: $(vxland_note)"; } ;;
        vhost-remote)
            vhost_config '{ port: net_af_packet0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 1500 }'
            start_vxland "$dp" --vdev "$underlay_port" || { ready=0; note[$variant]="vxland did not start: $(vxland_note)"; } ;;
    esac
    if (( ready )) && [[ "$stack" != vhost ]] && ! ip netns exec "$vm" ping -c 3 -i 0.2 -W 2 192.168.42.2 >/dev/null; then
        ready=0; note[$variant]="no ping across the overlay"
    fi
    runs_out=() runs_in=() notes=()
    if (( ready )) && [[ "$stack" == vhost ]]; then
        counters=underlay_counters per_packet=104
        [[ "$variant" != vhost-null ]] && counters=remote_counters per_packet=40
        for (( r = 1; r <= repeats; r++ )); do
            line=$(run_guest "$counters" "$per_packet")
            read -r delivered took packets sent_bytes payload_bytes <<<"${line:-}"
            echo "   run $r: ${delivered:-failed} Gbit/s delivered (the ring took ${took:-?} Gbit/s; ${packets:-?} packets, payload ${payload_bytes:-?} of ${sent_bytes:-?} bytes)" >&2
            [[ -n "${delivered:-}" ]] && runs_out+=("$delivered")
        done
        (( ${#runs_out[@]} == repeats )) || notes+=("$(( repeats - ${#runs_out[@]} )) of $repeats guest runs failed")
        vxland_stats
    elif (( ready )); then
        for (( r = 1; r <= repeats; r++ )); do
            out=$(run_iperf3); in=$(run_iperf3 -R)
            echo "   run $r: VM -> remote ${out:-failed} Gbit/s, remote -> VM ${in:-failed} Gbit/s" >&2
            [[ -n "$out" ]] && runs_out+=("$out")
            [[ -n "$in" ]] && runs_in+=("$in")
        done
        (( ${#runs_out[@]} == repeats )) || notes+=("VM -> remote: $(( repeats - ${#runs_out[@]} )) of $repeats runs failed or stalled")
        (( ${#runs_in[@]} == repeats )) || notes+=("remote -> VM: $(( repeats - ${#runs_in[@]} )) of $repeats runs failed or stalled")
        [[ "$stack" == vxland || "$stack" == tap ]] && vxland_stats
    fi
    (( ${#notes[@]} )) && note[$variant]="${notes[*]}"
    (( ${#runs_out[@]} )) && result[$variant,out]=$(median "${runs_out[@]}")
    (( ${#runs_in[@]} )) && result[$variant,in]=$(median "${runs_in[@]}")
    stop_vxland
    scripts/netns-topology.sh down "$prefix"
done
load_end=$(cut -d" " -f1-3 /proc/loadavg)

ratio() { [[ -n "$1" && -n "$2" ]] && awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}' || echo "-"; }
iperf_rows="" vhost_rows=""
for variant in "${variants[@]}"; do
    out="${result[$variant,out]:-}" in="${result[$variant,in]:-}"
    if [[ "$variant" == vhost-* ]]; then
        what="vxlan-guest -> vxland -> net_null (vxland's underlay tx)"
        [[ "$variant" == vhost-remote ]] && what="vxlan-guest -> vxland -> af_packet -> remote kernel (its vx42 rx)"
        [[ "$variant" == vhost-tap ]] && what="vxlan-guest -> vxland -> tap -> remote kernel (its vx42 rx)"
        vhost_rows+="| $variant | $what | ${out:-failed} | ${note[$variant]:-} |"$'\n'
    else
        base=kernel-on; [[ "$variant" == *6 ]] && base=kernel-on6
        iperf_rows+="| $variant | ${out:-failed} | $(ratio "$out" "${result[$base,out]:-}") | ${in:-failed} | $(ratio "$in" "${result[$base,in]:-}") | ${note[$variant]:-} |"$'\n'
    fi
done
echo
if [[ -n "$iperf_rows" ]]; then
    echo "iperf3 TCP across the overlay, ${seconds} s per run, median of ${repeats}; Gbit/s received"
    echo
    echo "| variant | VM -> remote | vs kernel (same family) | remote -> VM | vs kernel (same family) | note |"
    echo "|---|---:|---:|---:|---:|---|"
    printf '%s' "$iperf_rows"
    echo
fi
if [[ -n "$vhost_rows" ]]; then
    echo "vhost-user VM (virtio_user, 64000-byte TSO frames, MSS 1400), one polling core, ${seconds} s per run, median of ${repeats}"
    echo
    echo "| variant | path (where counted) | payload Gbit/s | note |"
    echo "|---|---|---:|---|"
    printf '%s' "$vhost_rows"
    echo
fi
echo "machine: $(nproc) vCPUs, Linux $(uname -r), $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); vxlan-dataplane $(git rev-parse --short HEAD 2>/dev/null || echo '?'); vxland memory: ${memory[*]:-n/a}"
echo "load average at start $load_start, at end $load_end"
