#!/usr/bin/env bash
# The built-in test bed: three network namespaces on one machine.
#
#   PREFIXvm  (the VM)            vm0  02:00:00:00:42:01  192.168.42.1/24
#        |  veth
#   PREFIXdp  (vxland's ports)    dpacc  <- net_af_packet, access, VNI 42
#                                 dpund  <- net_af_packet, underlay, 02:00:00:00:00:01, VTEP 10.99.0.1
#        |  veth
#   PREFIXhv  (remote hypervisor) hv0  02:00:00:00:00:02  10.99.0.2/24
#                                 vx42: the Linux kernel's vxlan device, VNI 42, 192.168.42.2/24
#
# Usage: netns-topology.sh up PREFIX CONFIG_OUT   creates it and writes vxland's configuration
#        netns-topology.sh down PREFIX            removes it (namespaces take their interfaces with them)
set -euo pipefail
action="${1:?usage: netns-topology.sh up|down PREFIX [CONFIG_OUT]}"
prefix="${2:?usage: netns-topology.sh up|down PREFIX [CONFIG_OUT]}"
vm="${prefix}vm" dp="${prefix}dp" hv="${prefix}hv"

down() {
    for ns in "$vm" "$dp" "$hv"; do ip netns del "$ns" 2>/dev/null || true; done
}

quiet_ipv6() {   # no router solicitations, MLD or DAD traffic: only what the test sends crosses the overlay
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

up() {
    local config="${1:?CONFIG_OUT is required for up}"
    down
    ip netns add "$vm"; ip netns add "$dp"; ip netns add "$hv"
    for ns in "$vm" "$dp" "$hv"; do quiet_ipv6 "$ns"; ip -n "$ns" link set lo up; done

    ip link add vm0 netns "$vm" type veth peer name dpacc netns "$dp"
    ip link add hv0 netns "$hv" type veth peer name dpund netns "$dp"

    ip -n "$vm" link set vm0 address 02:00:00:00:42:01 mtu 1450 up
    ip -n "$vm" addr add 192.168.42.1/24 dev vm0
    ip -n "$dp" link set dpacc up
    ip -n "$dp" link set dpund address 02:00:00:00:00:01 up
    ip -n "$hv" link set hv0 address 02:00:00:00:00:02 up
    ip -n "$hv" addr add 10.99.0.2/24 dev hv0
    ip -n "$hv" link add vx42 type vxlan id 42 local 10.99.0.2 remote 10.99.0.1 dstport 4789 dev hv0
    ip -n "$hv" link set vx42 address 02:00:00:00:42:02 mtu 1450 up
    ip -n "$hv" addr add 192.168.42.2/24 dev vx42

    # A veth with TX checksum offload hands af_packet frames whose checksums are unfinished: compute them.
    ip netns exec "$vm" ethtool -K vm0 tx off >/dev/null
    ip netns exec "$hv" ethtool -K hv0 tx off >/dev/null
    ip netns exec "$dp" ethtool -K dpacc tx off >/dev/null
    ip netns exec "$dp" ethtool -K dpund tx off >/dev/null

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
  - { vni: 42, flood: [10.99.0.2] }     # MACs are learned; 10.99.0.2's MAC is resolved by ARP
CONF
}

case "$action" in
    up) up "${3:-}" ;;
    down) down ;;
    *) echo "usage: netns-topology.sh up|down PREFIX [CONFIG_OUT]" >&2; exit 2 ;;
esac
