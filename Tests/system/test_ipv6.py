"""vxland over an IPv6 underlay, and dual stack (an IPv4 and an IPv6 remote in one VNI), against the Linux kernel's
vxlan devices. Nothing static: Neighbor Discovery resolves the remotes, MACs are learned."""
import json
import os

from conftest import netns_testbed, ping, sh, vx42_rx

PREFIX6 = f"w6{os.getpid() % 100000}-"
PREFIXD = f"wd{os.getpid() % 100000}-"


def test_ipv6_underlay(tmp_path):
    with netns_testbed(tmp_path, PREFIX6, "1", "300", "ipv6") as daemon:
        vm, hv = PREFIX6 + "vm", PREFIX6 + "hv"
        ping(vm, "192.168.42.2")
        ping(hv, "192.168.42.1")
        neighbors = json.loads(daemon.ctl("show", "neighbors", "--json").stdout)
        assert [(n["ip"], n["mac"], n["state"]) for n in neighbors["neighbors"]] == [("fd00::2", "02:00:00:00:00:02", "reachable")]
        assert neighbors["counters"]["nd_solicitations_sent"] >= 1
        entries = {(e["mac"], e["destination"]) for e in json.loads(daemon.ctl("show", "fdb", "--json").stdout)["entries"]}
        assert ("02:00:00:00:42:02", "remote fd00::2") in entries
        # The VTEP address answers Neighbor Discovery and ping6.
        sh("ip", "-n", hv, "-6", "neigh", "flush", "dev", "hv0")
        ping(hv, "fd00::1", 2)
        learned = sh("ip", "-n", hv, "-6", "neigh", "show", "fd00::1", "dev", "hv0").stdout
        assert "lladdr 02:00:00:00:00:01" in learned, learned
        counters = json.loads(daemon.ctl("show", "neighbors", "--json").stdout)["counters"]
        assert counters["nd_advertisements_sent"] >= 1 and counters["icmpv6_echo_replies"] == 2, counters
        stats = daemon.stats()
        assert stats["totals"]["drops"]["bad_udp_checksum"] == 0, "the kernel's UDP checksums over IPv6 verify"
        assert stats["totals"]["pipeline"]["decapsulated"] >= 6 and stats["mempool"]["in_use"] == 0


def test_dual_stack_remotes_in_one_vni(tmp_path):
    with netns_testbed(tmp_path, PREFIXD, "2", "300", "dual") as daemon:
        vm, hv4, hv6 = PREFIXD + "vm", PREFIXD + "hv", PREFIXD + "hv2"
        daemon.wait_until_neighbors_reachable()
        before6 = vx42_rx(hv6)
        ping(vm, "192.168.42.2")          # over IPv4
        assert vx42_rx(hv6) > before6, "the VM's broadcast ARP reached the IPv6 remote too"
        ping(vm, "192.168.42.3")          # over IPv6
        ping(hv4, "192.168.42.1")
        ping(hv6, "192.168.42.1")
        entries = {(e["mac"], e["destination"]) for e in json.loads(daemon.ctl("show", "fdb", "--json").stdout)["entries"]}
        assert {("02:00:00:00:42:02", "remote 10.99.0.2"), ("02:00:00:00:42:03", "remote fd00::3")} <= entries, entries
        neighbors = {n["ip"]: n["state"] for n in json.loads(daemon.ctl("show", "neighbors", "--json").stdout)["neighbors"]}
        assert neighbors == {"10.99.0.2": "reachable", "fd00::3": "reachable"}
