"""vxland and two Linux kernel VTEPs on one underlay bridge, nothing static but the kernels' own vxlan devices:
flooding to both remotes, learning, iperf3 across the overlay, and ageing once traffic stops; over an IPv4 and
over an IPv6 underlay."""
import json
import os
import subprocess
import time

import pytest

from conftest import netns_testbed, ping, port_counters, sh, vx42_rx

AGEING = 10
UNDERLAYS = {"ipv4": ("untagged", "10.99.0.2", "10.99.0.3"), "ipv6": ("ipv6", "fd00::2", "fd00::3")}


def fdb(daemon):
    return {(e["mac"], e["destination"]) for e in json.loads(daemon.ctl("show", "fdb", "--json").stdout)["entries"]}


class Bed:
    def __init__(self, daemon, prefix, remotes):
        self.daemon, self.remotes = daemon, remotes
        self.vm, self.hv1, self.hv2 = prefix + "vm", prefix + "hv", prefix + "hv2"


@pytest.fixture(scope="module", params=sorted(UNDERLAYS))
def bed(request, tmp_path_factory):
    mode, first, second = UNDERLAYS[request.param]
    prefix = f"v{request.param[-1]}{os.getpid() % 100000}-"
    with netns_testbed(tmp_path_factory.mktemp("two-vteps"), prefix, "2", str(AGEING), mode) as daemon:
        yield Bed(daemon, prefix, (first, second))


def test_flooding_reaches_both_remotes_and_everything_is_learned(bed):
    testbed, VM, HV1, HV2 = bed.daemon, bed.vm, bed.hv1, bed.hv2
    before = testbed.stats()["totals"]["pipeline"]["flood_copies"]
    hv2_before = vx42_rx(HV2)
    # The VM's ARP for 192.168.42.2 is broadcast: one copy to each remote VTEP.
    ping(VM, "192.168.42.2")
    assert testbed.stats()["totals"]["pipeline"]["flood_copies"] - before >= 2
    assert vx42_rx(HV2) > hv2_before, "the second remote got the flooded ARP too"
    ping(VM, "192.168.42.3")
    ping(HV1, "192.168.42.1")
    ping(HV2, "192.168.42.1")
    ping(HV1, "192.168.42.3")           # kernel to kernel, straight over the underlay bridge
    entries = fdb(testbed)
    assert ("02:00:00:00:42:02", f"remote {bed.remotes[0]}") in entries
    assert ("02:00:00:00:42:03", f"remote {bed.remotes[1]}") in entries
    assert ("02:00:00:00:42:01", "port net_af_packet1") in entries
    neighbors = {n["ip"]: n["state"] for n in json.loads(testbed.ctl("show", "neighbors", "--json").stdout)["neighbors"]}
    assert neighbors == {bed.remotes[0]: "reachable", bed.remotes[1]: "reachable"}


def test_iperf3_tcp_and_udp_across_the_overlay(bed):
    testbed, VM, HV1 = bed.daemon, bed.vm, bed.hv1
    before = testbed.stats()
    for mode in (["-t", "3"], ["-u", "-b", "50M", "-t", "3"]):
        server = subprocess.Popen(["ip", "netns", "exec", HV1, "iperf3", "-s", "-1", "-p", "5201"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            client = sh("ip", "netns", "exec", VM, "iperf3", "-c", "192.168.42.2", "-p", "5201", "-J", *mode, timeout=30)
            result = json.loads(client.stdout)
            assert "error" not in result, result.get("error")
            if "-u" in mode:
                assert result["end"]["sum"]["packets"] > 1000
                assert result["end"]["sum"]["lost_percent"] < 1.0, result["end"]["sum"]
            else:
                assert result["end"]["sum_received"]["bytes"] > 1_000_000
        finally:
            server.wait(timeout=15)
    after = testbed.stats()

    def delta(port, counter):
        return port_counters(after, port)[counter] - port_counters(before, port)[counter]

    def pipeline(name):
        return after["totals"]["pipeline"][name] - before["totals"]["pipeline"][name]

    # The counters add up: everything sent on the underlay was encapsulated or injected by the slow path,
    # everything sent to the VM was decapsulated, and nothing the VM sent was lost in the dataplane. The VM has its
    # offloads on: each of its TCP super-frames left as segments_out / frames_segmented encapsulated packets.
    assert delta("net_af_packet0", "tx_packets") == pipeline("encapsulated") + pipeline("injected")
    assert delta("net_af_packet1", "tx_packets") == pipeline("decapsulated")
    assert delta("net_af_packet1", "rx_packets") == (pipeline("encapsulated") - pipeline("segments_out") + pipeline("frames_segmented")
                                                     - pipeline("flood_copies") + pipeline("flooded"))
    assert pipeline("frames_segmented") > 0 and pipeline("checksums_completed") > 0
    drops = {k: after["totals"]["drops"][k] - before["totals"]["drops"][k] for k in after["totals"]["drops"]}
    # The underlay bridge may flood the kernels' own unicast to us before it learns: that is all we may drop.
    assert {k: v for k, v in drops.items() if v and k != "not_our_mac"} == {}
    assert pipeline("encapsulated") > 1000 and pipeline("decapsulated") > 1000
    assert after["mempool"]["in_use"] == 0, after["mempool"]


def test_learned_entries_age_out_when_traffic_stops(bed):
    testbed = bed.daemon
    ping(bed.vm, "192.168.42.3", 1)
    assert any(dest == f"remote {bed.remotes[1]}" for _, dest in fdb(testbed))
    deadline = time.time() + AGEING + 15
    while time.time() < deadline and fdb(testbed):
        time.sleep(1)
    assert fdb(testbed) == set(), "learned entries should age out after the VNI's ageing time without traffic"
    counters = json.loads(testbed.ctl("show", "neighbors", "--json").stdout)["counters"]
    assert counters["fdb_aged"] >= 3
