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
# Usage: netns-topology.sh up PREFIX CONFIG_OUT [REMOTES [AGEING]]   (REMOTES 1-8, default 1)
#        netns-topology.sh down PREFIX
set -euo pipefail
action="${1:?usage: netns-topology.sh up|down PREFIX [CONFIG_OUT [REMOTES [AGEING]]]}"
prefix="${2:?usage: netns-topology.sh up|down PREFIX [CONFIG_OUT [REMOTES [AGEING]]]}"
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

# Frames must reach af_packet as they are on the wire: no unfinished checksums (TX checksum offload) and
# no 64 KiB super-packets (TSO/GSO/GRO) on the veths around the dataplane.
plain() { ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || ip netns exec "$1" ethtool -K "$2" tx off >/dev/null; }

up() {
    local config="${1:?CONFIG_OUT is required for up}" remotes="${2:-1}" ageing="${3:-300}"
    [[ "$remotes" =~ ^[1-8]$ ]] || { echo "netns-topology: REMOTES must be 1-8, got '$remotes'" >&2; exit 2; }
    down
    ip netns add "$vm"; ip netns add "$dp"; ip netns add "$ul"
    for ns in "$vm" "$dp" "$ul"; do quiet_ipv6 "$ns"; ip -n "$ns" link set lo up; done
    ip -n "$ul" link add br0 type bridge
    ip -n "$ul" link set br0 up

    ip link add vm0 netns "$vm" type veth peer name dpacc netns "$dp"
    ip link add dpund netns "$dp" type veth peer name p0 netns "$ul"
    ip -n "$vm" link set vm0 address 02:00:00:00:42:01 mtu 1450 up
    ip -n "$vm" addr add 192.168.42.1/24 dev vm0
    ip -n "$dp" link set dpacc up
    ip -n "$dp" link set dpund address 02:00:00:00:00:01 up
    ip -n "$ul" link set p0 master br0 up
    plain "$vm" vm0; plain "$dp" dpacc; plain "$dp" dpund; plain "$ul" p0

    local flood="" i
    for (( i = 1; i <= remotes; i++ )); do
        local hv n=$(( i + 1 )); hv=$(hv_name "$i")
        ip netns add "$hv"; quiet_ipv6 "$hv"; ip -n "$hv" link set lo up
        ip link add hv0 netns "$hv" type veth peer name "p$i" netns "$ul"
        ip -n "$ul" link set "p$i" master br0 up
        ip -n "$hv" link set hv0 address "02:00:00:00:00:0$n" up
        ip -n "$hv" addr add "10.99.0.$n/24" dev hv0
        ip -n "$hv" link add vx42 type vxlan id 42 local "10.99.0.$n" remote 10.99.0.1 dstport 4789 dev hv0
        ip -n "$hv" link set vx42 address "02:00:00:00:42:0$n" mtu 1450 up
        ip -n "$hv" addr add "192.168.42.$n/24" dev vx42
        plain "$hv" hv0; plain "$hv" vx42; plain "$ul" "p$i"
        flood+="${flood:+, }10.99.0.$n"
    done
    # Every kernel VTEP floods to all the others too (vxland never sends decapsulated traffic back: split horizon).
    for (( i = 1; i <= remotes; i++ )); do
        local j hv; hv=$(hv_name "$i")
        for (( j = 1; j <= remotes; j++ )); do
            (( i == j )) || ip netns exec "$hv" bridge fdb append 00:00:00:00:00:00 dev vx42 dst "10.99.0.$(( j + 1 ))"
        done
    done

    cat > "$config" <<CONF
# vxland's configuration for the namespace test bed (scripts/netns-topology.sh)
underlay:
  port: net_af_packet0          # dpund
  ip: 10.99.0.1/24
  mac: 02:00:00:00:00:01
  mtu: 1500
  udp_port: 4789
access:
  - { port: net_af_packet1, vni: 42 }   # dpacc, towards the VM
vnis:
  # MACs are learned; the remotes' MACs are resolved by ARP. Nothing here is static.
  - { vni: 42, flood: [$flood], ageing: $ageing }
CONF
}

case "$action" in
    up) up "${3:-}" "${4:-1}" "${5:-300}" ;;
    down) down ;;
    *) echo "usage: netns-topology.sh up|down PREFIX [CONFIG_OUT [REMOTES [AGEING]]]" >&2; exit 2 ;;
esac
