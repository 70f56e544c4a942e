"""vxland between a VM namespace and the Linux kernel's own vxlan driver in a remote-hypervisor namespace."""
import json
import os

import pytest

from conftest import netns_testbed, nonzero_drops, ping, port_counters, sh

PREFIX = f"vxt{os.getpid() % 100000}-"
VM, DP, HV = PREFIX + "vm", PREFIX + "dp", PREFIX + "hv"


def kernel_vxlan_counter(name):
    return int(sh("ip", "netns", "exec", HV, "cat", f"/sys/class/net/vx42/statistics/{name}").stdout)


@pytest.fixture
def testbed(tmp_path):
    with netns_testbed(tmp_path, PREFIX) as daemon:
        yield daemon


def test_ping_both_ways_through_the_linux_vxlan_driver(testbed):
    # Nothing is static: vxland resolves the remote VTEP by ARP and answers the kernel's ARP for 10.99.0.1.
    # First contact on the overlay: the inner ARP is broadcast, flooded by head-end replication, answered back.
    ping(VM, "192.168.42.2", 3)
    ping(HV, "192.168.42.1", 3)
    # Nothing in vxland's FDB is static: the remote VM was learned behind the kernel's VTEP, the VM behind its port.
    fdb = json.loads(testbed.ctl("show", "fdb", "--json").stdout)
    learned = {(e["mac"], e["destination"], e["type"]) for e in fdb["entries"]}
    assert learned == {("02:00:00:00:42:02", "remote 10.99.0.2", "learned"), ("02:00:00:00:42:01", "port net_af_packet1", "learned")}, fdb
    assert "learned" in testbed.ctl("show", "fdb", "--vni", "42").stdout
    refused = testbed.ctl("show", "fdb", "--vni", "43", check=False)
    assert refused.returncode != 0 and "VNI 43 is not configured" in refused.stderr
    neighbors = json.loads(testbed.ctl("show", "neighbors", "--json").stdout)
    assert [(n["ip"], n["mac"], n["state"]) for n in neighbors["neighbors"]] == [("10.99.0.2", "02:00:00:00:00:02", "reachable")]

    # The VTEP address answers ARP and ping (operators ping VTEPs).
    sh("ip", "-n", HV, "neigh", "flush", "dev", "hv0")
    ping(HV, "10.99.0.1", 3)
    learned = sh("ip", "-n", HV, "neigh", "show", "10.99.0.1", "dev", "hv0").stdout
    assert "lladdr 02:00:00:00:00:01" in learned, learned
    counters = json.loads(testbed.ctl("show", "neighbors", "--json").stdout)["counters"]
    assert counters["arp_replies_sent"] >= 1 and counters["icmp_echo_replies"] == 3, counters

    # Then count exactly: with the inner neighbors pinned (and the kernel's entry for our VTEP, so no ARP
    # probe lands in the window), only ICMP crosses the overlay.
    sh("ip", "-n", HV, "neigh", "replace", "10.99.0.1", "lladdr", "02:00:00:00:00:01", "dev", "hv0", "nud", "permanent")
    sh("ip", "-n", VM, "neigh", "replace", "192.168.42.2", "lladdr", "02:00:00:00:42:02", "dev", "vm0", "nud", "permanent")
    sh("ip", "-n", HV, "neigh", "replace", "192.168.42.1", "lladdr", "02:00:00:00:42:01", "dev", "vx42", "nud", "permanent")
    before = testbed.stats()
    kernel_rx_before = kernel_vxlan_counter("rx_packets")
    ping(VM, "192.168.42.2", 5)
    ping(HV, "192.168.42.1", 5)
    after = testbed.wait_for(lambda s: s["totals"]["pipeline"]["decapsulated"] >= before["totals"]["pipeline"]["decapsulated"] + 10)

    def delta(path):
        a, b = after, before
        for key in path:
            a, b = a[key], b[key]
        return a - b

    # 5 requests VM->remote plus 5 replies VM->remote are encapsulated; the same number come back decapsulated.
    assert delta(["totals", "pipeline", "encapsulated"]) == 10
    assert delta(["totals", "pipeline", "decapsulated"]) == 10
    assert delta(["totals", "pipeline", "flood_copies"]) == 0
    assert delta(["totals", "drops_total"]) == 0, nonzero_drops(after)
    under_b, under_a = port_counters(before, "net_af_packet0"), port_counters(after, "net_af_packet0")
    acc_b, acc_a = port_counters(before, "net_af_packet1"), port_counters(after, "net_af_packet1")
    assert under_a["tx_packets"] - under_b["tx_packets"] == 10
    assert under_a["rx_packets"] - under_b["rx_packets"] == 10
    assert acc_a["rx_packets"] - acc_b["rx_packets"] == 10
    assert acc_a["tx_packets"] - acc_b["tx_packets"] == 10
    # ICMP echo of 56 data bytes: 98-byte inner frames, 148 bytes on the underlay.
    assert under_a["tx_bytes"] - under_b["tx_bytes"] == 10 * 148
    assert acc_a["tx_bytes"] - acc_b["tx_bytes"] == 10 * 98
    # The kernel's vxlan device decapsulated every one of ours.
    assert kernel_vxlan_counter("rx_packets") - kernel_rx_before == 10
    assert after["mempool"]["in_use"] == 0, after["mempool"]
