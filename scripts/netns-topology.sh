#!/usr/bin/env bash
# The built-in test bed: network namespaces on one machine, joined by an underlay bridge.
#
#   PREFIXvm  (the VM)              vm0  02:00:00:00:42:01  192.168.42.1/24
#        |  veth
#   PREFIXdp  (vxland's ports)      dpacc  <- net_af_packet1, access, VNI 42
#                                   dpund  <- net_af_packet0, underlay, 02:00:00:00:00:01, VTEP 10.99.0.1
#        |  veth
#   PREFIXul  (the underlay)        br0: a plain Linux bridge
#        |  veth, one per remote
#   PREFIXhv, PREFIXhv2, ...        hv0  02:00:00:00:00:0N  10.99.0.N/24 (N = 2, 3, ...)
#   (remote hypervisors)            vx42: the Linux kernel's vxlan device, VNI 42, 192.168.42.N/24,
#                                   MAC 02:00:00:00:42:0N, flooding to vxland and to every other remote
#
# With MODE "vlans", vxland's access port is tagged (VLAN 10 -> VNI 42, VLAN 20 -> VNI 43), vm0 carries tagged
# frames (192.168.42.1 on VLAN 10, 192.168.43.1 on VLAN 20, crafted by the test), and every remote also has vx43
# (VNI 43, 192.168.43.N/24).
#
# With MODE "ipv6", the underlay is IPv6: vxland is fd00::1, remote N is fd00::N. With MODE "dual", vxland has
# both addresses and the remotes alternate: remote 1 over IPv4 (10.99.0.2), remote 2 over IPv6 (fd00::3), ...
#
# Offloads: OFFLOADS=on (the default) leaves every device with the kernel's defaults, as on a host: the VM (vm0),
# vxland's two ports (dpacc, dpund), the bridge ports (p0..pN), the remotes' hv0 and vx42 (vx43; vxk of
# kernel-vtep). So the VM sends TCP super-frames of up to 64 KiB (TSO/GSO) and TCP/UDP with partial checksums (TX
# checksum offload), and a remote's kernel sends its VXLAN the same way: 64 KiB GSO VXLAN frames whose inner
# checksums are unfinished arrive on dpund. vxland's ports must take them (net_af_packet with framesz=65408 on
# both) and finish them. OFFLOADS=off switches TX checksum, TSO, GSO and GRO off on every one of those devices:
# every frame anywhere is MTU-sized with finished checksums, for comparison.
# Measured (ethtool -k, veth, Linux 6.x): by default veths have tx-checksumming, TSO, GSO, tx-udp-segmentation and
# tx-udp_tnl-segmentation on, GRO off, gso_max_size 65536; a vxlan device has TSO/GSO and GRO on; dpacc receives
# TCP frames of up to ~64.4 KB, every TCP/UDP frame with a partial checksum. plain() (OFFLOADS=off) turns
# tx-checksumming/TSO/GSO/GRO/tx-udp-segmentation off (scatter-gather and tx-udp_tnl-segmentation stay on, inert
# without TSO). With OFFLOADS=on vm0 still has tx-udp-segmentation off: af_packet carries no segment size for UDP
# GSO frames (see the README on kernel-attached VMs).
#
# The "kernel-vtep" action turns vxland's namespace into the Linux kernel doing vxland's job, for baselines: a
# bridge joining dpacc with a kernel vxlan device vxk (VNI 42, local 10.99.0.1 on dpund, or fd00::1 on an IPv6
# test bed, flooding to every remote, learning), with that address on dpund. vxland must not run on that test bed.
#
# The "taps" action puts vxland's own tap ports where the veths were, once vxland (in PREFIXdp) has created them:
# WHICH "access" moves tap `tapacc` into the VM's namespace as vm0 (the veth vm0/dpacc goes), "underlay" moves tap
# `tapund` onto the bridge as p0 (the veth dpund/p0 goes), "both" does both; the kernel's offloads stay on.
#
# With PORTS=taps, `up` writes vxland's configuration with tap ports (tapund, tapacc) instead of af_packet ones.
#
# Usage: [OFFLOADS=on|off] [PORTS=af_packet|taps] netns-topology.sh up PREFIX CONFIG_OUT [REMOTES [AGEING [MODE]]]   (REMOTES 1-8, default 1)
#        [OFFLOADS=on|off] netns-topology.sh kernel-vtep PREFIX
#        [OFFLOADS=on|off] netns-topology.sh taps PREFIX access|underlay|both [MODE]
#        netns-topology.sh down PREFIX
set -euo pipefail
usage="usage: [OFFLOADS=on|off] netns-topology.sh up|kernel-vtep|taps|down PREFIX [CONFIG_OUT [REMOTES [AGEING [MODE]]] | WHICH [MODE]]"
action="${1:?$usage}"
prefix="${2:?$usage}"
offloads="${OFFLOADS:-on}"
[[ "$offloads" == on || "$offloads" == off ]] || { echo "netns-topology: OFFLOADS must be on or off, got '$offloads'" >&2; exit 2; }
vm="${prefix}vm" dp="${prefix}dp" ul="${prefix}ul"
hv_name() { if (( $1 == 1 )); then echo "${prefix}hv"; else echo "${prefix}hv$1"; fi; }

down() {
    for ns in "$vm" "$dp" "$ul" $(ip netns list | awk '{print $1}' | grep -E "^${prefix}hv[0-9]*$" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
}

quiet_ipv6() {   # no router solicitations, MLD or DAD traffic: only what the test sends crosses the overlay
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# Frames as they are on the wire: no unfinished checksums (TX checksum offload) and no 64 KiB super-packets
# (TSO/GSO/GRO).
plain() { ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || ip netns exec "$1" ethtool -K "$2" tx off >/dev/null; }

# Every device of the test bed: the kernel's defaults with OFFLOADS=on, plain() with OFFLOADS=off.
offloads_of() { [[ "$offloads" == on ]] || plain "$@"; }

up() {
    local config="${1:?CONFIG_OUT is required for up}" remotes="${2:-1}" ageing="${3:-300}" mode="${4:-untagged}"
    [[ "$remotes" =~ ^[1-8]$ ]] || { echo "netns-topology: REMOTES must be 1-8, got '$remotes'" >&2; exit 2; }
    down
    ip netns add "$vm"; ip netns add "$dp"; ip netns add "$ul"
    for ns in "$vm" "$dp" "$ul"; do quiet_ipv6 "$ns"; ip -n "$ns" link set lo up; done
    ip -n "$ul" link add br0 type bridge
    ip -n "$ul" link set br0 up

    ip link add vm0 netns "$vm" type veth peer name dpacc netns "$dp"
    ip link add dpund netns "$dp" type veth peer name p0 netns "$ul"
    local vm_mtu=1450; [[ "$mode" == ipv6 || "$mode" == dual ]] && vm_mtu=1430
    ip -n "$vm" link set vm0 address 02:00:00:00:42:01 mtu "$vm_mtu" up
    # In "vlans" mode the VM's side is tagged frames on vm0 itself (sent and read by the test with scapy):
    # not every kernel has 802.1Q devices, and the VTEP under test only sees the frames.
    [[ "$mode" == vlans ]] || ip -n "$vm" addr add 192.168.42.1/24 dev vm0
    ip -n "$dp" link set dpacc up
    ip -n "$dp" link set dpund address 02:00:00:00:00:01 up
    ip -n "$ul" link set p0 master br0 up
    offloads_of "$vm" vm0; offloads_of "$dp" dpacc; offloads_of "$dp" dpund; offloads_of "$ul" p0
    # UDP segmentation (UDP_SEGMENT, as QUIC uses) cannot cross af_packet: its super-frames carry no segment size,
    # so the VM's kernel must cut them itself (README, "Kernel-attached VMs").
    ip netns exec "$vm" ethtool -K vm0 tx-udp-segmentation off >/dev/null 2>&1 || true

    local flood="" i
    for (( i = 1; i <= remotes; i++ )); do
        local hv n=$(( i + 1 )); hv=$(hv_name "$i")
        ip netns add "$hv"; quiet_ipv6 "$hv"; ip -n "$hv" link set lo up
        ip link add hv0 netns "$hv" type veth peer name "p$i" netns "$ul"
        ip -n "$ul" link set "p$i" master br0 up
        ip -n "$hv" link set hv0 address "02:00:00:00:00:0$n" up
        local local_ip="10.99.0.$n" vtep=10.99.0.1
        if [[ "$mode" == ipv6 || ( "$mode" == dual && $(( i % 2 )) == 0 ) ]]; then
            # IPv6 underlay on this remote: no DAD delay, no router discovery; IPv6 stays off inside the overlay.
            ip netns exec "$hv" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.hv0.disable_ipv6=0 \
                net.ipv6.conf.hv0.accept_ra=0
            ip -n "$hv" -6 addr add "fd00::$n/64" dev hv0 nodad
            local_ip="fd00::$n" vtep=fd00::1
        else
            ip -n "$hv" addr add "10.99.0.$n/24" dev hv0
        fi
        ip -n "$hv" link add vx42 type vxlan id 42 local "$local_ip" remote "$vtep" dstport 4789 dev hv0
        ip netns exec "$hv" sysctl -qw net.ipv6.conf.vx42.disable_ipv6=1
        # The overlay MTU: 1500 less 50 bytes of VXLAN over IPv4, or 70 over IPv6.
        local overlay_mtu=1450; [[ "$local_ip" == fd00::* ]] && overlay_mtu=1430
        ip -n "$hv" link set vx42 address "02:00:00:00:42:0$n" mtu "$overlay_mtu" up
        ip -n "$hv" addr add "192.168.42.$n/24" dev vx42
        offloads_of "$hv" hv0; offloads_of "$hv" vx42; offloads_of "$ul" "p$i"
        if [[ "$mode" == vlans ]]; then
            ip -n "$hv" link add vx43 type vxlan id 43 local "10.99.0.$n" remote 10.99.0.1 dstport 4789 dev hv0
            ip -n "$hv" link set vx43 address "02:00:00:00:43:0$n" mtu 1450 up
            ip -n "$hv" addr add "192.168.43.$n/24" dev vx43
            offloads_of "$hv" vx43
        fi
        if [[ "$local_ip" == fd00::* ]]; then flood+="${flood:+, }\"$local_ip\""; else flood+="${flood:+, }$local_ip"; fi
    done
    # Every kernel VTEP floods to all the others too (vxland never sends decapsulated traffic back: split horizon).
    for (( i = 1; i <= remotes; i++ )); do
        local j hv; hv=$(hv_name "$i")
        for (( j = 1; j <= remotes; j++ )); do
            [[ "$mode" == dual ]] && continue        # remotes of different families cannot reach each other
            local peer="10.99.0.$(( j + 1 ))"; [[ "$mode" == ipv6 ]] && peer="fd00::$(( j + 1 ))"
            (( i == j )) || ip netns exec "$hv" bridge fdb append 00:00:00:00:00:00 dev vx42 dst "$peer"
            (( i == j )) || [[ "$mode" != vlans ]] || ip netns exec "$hv" bridge fdb append 00:00:00:00:00:00 dev vx43 dst "10.99.0.$(( j + 1 ))"
        done
    done

    local addresses="ip: 10.99.0.1/24"
    [[ "$mode" == ipv6 ]] && addresses='ip6: "fd00::1/64"'
    [[ "$mode" == dual ]] && addresses=$'ip: 10.99.0.1/24\n  ip6: "fd00::1/64"'
    local access="- { port: net_af_packet1, vni: 42 }   # dpacc, towards the VM"
    local underlay_port="port: net_af_packet0          # dpund"
    if [[ "${PORTS:-af_packet}" == taps ]]; then
        access="- { port: tapacc, vni: 42, tap: { name: tapacc } }   # becomes the VM's vm0 (taps action)"
        underlay_port=$'port: tapund                  # joins the underlay bridge as p0 (taps action)\n  tap: { name: tapund }'
    fi
    local vnis="- { vni: 42, flood: [$flood], ageing: $ageing }"
    if [[ "$mode" == vlans ]]; then
        access="- { port: net_af_packet1, vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ] }   # dpacc, tagged"
        vnis+=$'\n'"  - { vni: 43, flood: [$flood], ageing: $ageing }"
    fi
    cat > "$config" <<CONF
# vxland's configuration for the namespace test bed (scripts/netns-topology.sh)
underlay:
  $underlay_port
  $addresses
  mac: 02:00:00:00:00:01
  mtu: 1500
  udp_port: 4789
access:
  $access
vnis:
  # MACs are learned; the remotes' MACs are resolved by ARP. Nothing here is static.
  $vnis
CONF
}

kernel_vtep() {
    ip netns list | grep -q "^${dp}\b" || { echo "netns-topology: no test bed '$prefix': run up first" >&2; exit 2; }
    local family=4 hv1; hv1=$(hv_name 1)
    [[ -z "$(ip -n "$hv1" -4 -o addr show dev hv0)" ]] && family=6
    if (( family == 4 )); then
        ip -n "$dp" addr add 10.99.0.1/24 dev dpund
        ip -n "$dp" link add vxk type vxlan id 42 local 10.99.0.1 dstport 4789 dev dpund
        ip -n "$dp" link set vxk mtu 1450
    else
        # An IPv6 test bed (MODE ipv6): the same over fd00::1, the overlay MTU 70 bytes under the underlay's.
        ip netns exec "$dp" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.dpund.disable_ipv6=0 net.ipv6.conf.dpund.accept_ra=0
        ip -n "$dp" -6 addr add fd00::1/64 dev dpund nodad
        ip -n "$dp" link add vxk type vxlan id 42 local fd00::1 dstport 4789 dev dpund
        ip netns exec "$dp" sysctl -qw net.ipv6.conf.vxk.disable_ipv6=1
        ip -n "$dp" link set vxk mtu 1430
    fi
    ip -n "$dp" link add brk type bridge
    ip -n "$dp" link set dpacc master brk
    ip -n "$dp" link set vxk master brk up
    ip -n "$dp" link set brk up
    offloads_of "$dp" vxk
    local hv
    for hv in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}hv[0-9]*$"); do
        local remote; remote=$(ip -n "$hv" -"$family" -o addr show dev hv0 scope global | awk '{print $4}' | cut -d/ -f1)
        [[ -n "$remote" ]] || { echo "netns-topology: kernel-vtep needs one underlay family on every remote ($hv has no IPv$family)" >&2; exit 2; }
        ip netns exec "$dp" bridge fdb append 00:00:00:00:00:00 dev vxk dst "$remote"
    done
}

taps() {
    local which="${1:?taps needs access, underlay or both}" mode="${2:-untagged}"
    [[ "$which" == access || "$which" == underlay || "$which" == both ]] || { echo "netns-topology: taps access|underlay|both, got '$which'" >&2; exit 2; }
    if [[ "$which" != underlay ]]; then
        local vm_mtu=1450; [[ "$mode" == ipv6 || "$mode" == dual ]] && vm_mtu=1430
        ip -n "$dp" link del dpacc
        ip -n "$dp" link set tapacc netns "$vm"
        ip -n "$vm" link set tapacc name vm0
        ip -n "$vm" link set vm0 address 02:00:00:00:42:01 mtu "$vm_mtu" up
        [[ "$mode" == vlans ]] || ip -n "$vm" addr add 192.168.42.1/24 dev vm0
        offloads_of "$vm" vm0
    fi
    if [[ "$which" != access ]]; then
        ip -n "$dp" link del dpund
        ip -n "$dp" link set tapund netns "$ul"
        ip -n "$ul" link set tapund name p0
        ip -n "$ul" link set p0 master br0 up
        offloads_of "$ul" p0
    fi
}

case "$action" in
    up) up "${3:-}" "${4:-1}" "${5:-300}" "${6:-untagged}" ;;
    kernel-vtep) kernel_vtep ;;
    taps) taps "${3:-}" "${4:-untagged}" ;;
    down) down ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
