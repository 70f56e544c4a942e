"""A VM with the kernel's default offloads behind vxland: TCP super-frames of up to 64 KiB (TSO/GSO) and TCP/UDP
with partial checksums (TX checksum offload) arrive on the access port. vxland completes the checksums, segments
TCP at the overlay MTU in software, and answers over-MTU non-TCP frames with ICMP "fragmentation needed"; the
remote's kernel VTEP sees only finished, MTU-sized frames. The remote has its default offloads too: its 64 KiB GSO
VXLAN frames arrive on the underlay port, and vxland completes and cuts them for the VM. The kernel baselines (the same test bed with the
Linux kernel doing vxland's job) check the test bed and the measurements themselves."""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import TOPOLOGY, netns_testbed, nonzero_drops, ping, port_counters, sh, topology

PREFIX = f"bo{os.getpid() % 100000}-"
VM, DP, HV, HV2 = PREFIX + "vm", PREFIX + "dp", PREFIX + "hv", PREFIX + "hv2"
CSUM_ERRORS = ("TcpInCsumErrors", "UdpInCsumErrors")


def csum_errors(ns):
    """The checksum-error counters of the kernel in `ns` (nstat: absolute values, zeros too, history untouched)."""
    out = sh("ip", "netns", "exec", ns, "nstat", "-asz", *CSUM_ERRORS).stdout
    counters = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line and not line.startswith("#")}
    assert set(counters) == set(CSUM_ERRORS), out
    return counters


def iperf3(client_ns, server_ns, server_ip, *args, timeout=40):
    """One iperf3 run from `client_ns` to a one-shot server in `server_ns`; returns the client's JSON result."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        try:
            client = sh("ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", "5201", "-J", *args,
                        check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            # What a VTEP that forwards partial checksums unfinished looks like: even the control connection stalls.
            raise AssertionError(f"iperf3 {' '.join(args)} did not finish in {timeout} s; the remote's checksum "
                                 f"errors: {csum_errors(server_ns)}") from None
        result = json.loads(client.stdout)
        assert "error" not in result, result.get("error")
        return result
    finally:
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def offloads(ns, dev):
    out = sh("ip", "netns", "exec", ns, "ethtool", "-k", dev).stdout
    return {m.group(1): m.group(2) == "on" for m in re.finditer(r"^([\w-]+): (on|off)", out, re.M)}


def pipeline_delta(before, after, name):
    return after["totals"]["pipeline"][name] - before["totals"]["pipeline"][name]


def idle_and_no_leak(daemon):
    """Once traffic has stopped, every mbuf is back in its pool: the main one, the indirect one the segments
    were cut with, and the access port's pool of 64 KiB mbufs."""
    return daemon.wait_for(lambda s: all(p["in_use"] == 0 for p in [s["mempool"], *s.get("pools", [])]), timeout=10)


@pytest.fixture
def testbed(tmp_path):
    with netns_testbed(tmp_path, PREFIX) as daemon:
        daemon.wait_until_neighbors_reachable()
        ping(VM, "192.168.42.2")
        yield daemon


# --- the test bed itself and the kernel baselines (no vxland) ---

@pytest.fixture
def kernel_bed(tmp_path, request):
    """The test bed with the Linux kernel's vxlan in vxland's namespace (netns-topology.sh kernel-vtep)."""
    mode = request.param
    try:
        topology("up", PREFIX, str(tmp_path / "unused.yaml"), offloads=mode)
        topology("kernel-vtep", PREFIX, offloads=mode)
        ping(VM, "192.168.42.2")
        yield mode
    finally:
        subprocess.run([str(TOPOLOGY), "down", PREFIX], check=False, capture_output=True, timeout=60)


@pytest.mark.parametrize("kernel_bed", ["on", "off"], indirect=True)
def test_every_device_has_the_kernels_default_offloads_or_none(kernel_bed):
    """OFFLOADS=on is a host as the kernel sets it up (TX checksum, TSO and GSO on every veth and vxlan device);
    OFFLOADS=off switches those and GRO off on every one, VM side and underlay side alike."""
    on = kernel_bed == "on"
    devices = ((VM, "vm0"), (DP, "dpacc"), (DP, "dpund"), (DP, "vxk"), (PREFIX + "ul", "p0"), (PREFIX + "ul", "p1"),
               (HV, "hv0"), (HV, "vx42"))
    for ns, dev in devices:
        features = offloads(ns, dev)
        for name in ("tx-checksumming", "tcp-segmentation-offload", "generic-segmentation-offload"):
            assert features[name] is on, (dev, name, features[name])
        if not on:
            assert features["generic-receive-offload"] is False, dev


@pytest.mark.parametrize("kernel_bed", ["on", "off"], indirect=True)
def test_kernel_baseline_tcp_and_udp_arrive_with_good_checksums(kernel_bed):
    """What the vxland tests below measure, with the kernel's own vxlan as the local VTEP: the transfer completes
    and the remote counts no checksum errors."""
    before = csum_errors(HV)
    tcp = iperf3(VM, HV, "192.168.42.2", "-t", "3")
    assert tcp["end"]["sum_received"]["bytes"] > 10_000_000, tcp["end"]["sum_received"]
    udp = iperf3(VM, HV, "192.168.42.2", "-u", "-b", "50M", "-l", "1400", "-t", "3")
    assert udp["end"]["sum"]["packets"] > 1000 and udp["end"]["sum"]["lost_percent"] < 1.0, udp["end"]["sum"]
    assert csum_errors(HV) == before
    vm_before = csum_errors(VM)
    reverse = iperf3(VM, HV, "192.168.42.2", "-R", "-t", "3")
    assert reverse["end"]["sum_received"]["bytes"] > 10_000_000, reverse["end"]["sum_received"]
    assert csum_errors(VM) == vm_before


# --- vxland with a VM that has its offloads on ---

def test_tcp_from_a_vm_with_offloads_is_checksummed_and_segmented(testbed):
    before, errors_before = testbed.stats(), csum_errors(HV)
    result = iperf3(VM, HV, "192.168.42.2", "-t", "5")
    assert result["end"]["sum_received"]["bytes"] > 10_000_000, result["end"]["sum_received"]
    after = idle_and_no_leak(testbed)
    # The remote's kernel found every TCP and UDP checksum good: vxland finished the partial ones, and the
    # segments it cut carry checksums of their own.
    assert csum_errors(HV) == errors_before
    assert pipeline_delta(before, after, "frames_segmented") > 0
    assert pipeline_delta(before, after, "segments_out") > pipeline_delta(before, after, "frames_segmented")
    assert pipeline_delta(before, after, "checksums_completed") > 0
    drops = {k: after["totals"]["drops"][k] - before["totals"]["drops"][k] for k in after["totals"]["drops"]}
    # The underlay bridge may flood the kernel's own unicast to us before it learns: that is all we may drop.
    assert {k: v for k, v in drops.items() if v and k != "not_our_mac"} == {}, nonzero_drops(after)


def test_udp_from_a_vm_with_offloads_gets_its_checksums_completed(testbed):
    before, errors_before = testbed.stats(), csum_errors(HV)
    result = iperf3(VM, HV, "192.168.42.2", "-u", "-b", "50M", "-l", "1400", "-t", "3")
    sent = result["end"]["sum"]
    assert sent["packets"] > 1000 and sent["lost_percent"] < 1.0, sent
    after = idle_and_no_leak(testbed)
    assert csum_errors(HV) == errors_before
    # Every datagram left the VM with a partial checksum (TX checksum offload): each one was completed.
    assert pipeline_delta(before, after, "checksums_completed") >= sent["packets"], after["totals"]["pipeline"]


def test_tcp_from_a_remote_with_offloads_is_completed_and_cut_to_the_overlay_mtu(testbed):
    """The other direction (iperf3 -R): the remote's kernel sends 64 KiB GSO VXLAN frames with unfinished inner
    checksums; vxland's underlay port takes them whole, and vxland completes the checksums and cuts the frames to
    the overlay MTU for the VM (an af_packet port takes no segmentation metadata)."""
    before, errors_before = testbed.stats(), csum_errors(VM)
    result = iperf3(VM, HV, "192.168.42.2", "-R", "-t", "5")
    assert result["end"]["sum_received"]["bytes"] > 10_000_000, result["end"]["sum_received"]
    after = idle_and_no_leak(testbed)
    assert csum_errors(VM) == errors_before
    under_before, under_after = port_counters(before, "net_af_packet0"), port_counters(after, "net_af_packet0")
    rx_packets = under_after["rx_packets"] - under_before["rx_packets"]
    rx_bytes = under_after["rx_bytes"] - under_before["rx_bytes"]
    assert rx_packets > 0 and rx_bytes / rx_packets > 1514, (rx_packets, rx_bytes)   # GSO frames arrived whole
    assert pipeline_delta(before, after, "frames_segmented") > 0
    assert pipeline_delta(before, after, "segments_out") > pipeline_delta(before, after, "frames_segmented")
    assert pipeline_delta(before, after, "checksums_completed") > 0
    drops = {k: after["totals"]["drops"][k] - before["totals"]["drops"][k] for k in after["totals"]["drops"]}
    assert {k: v for k, v in drops.items() if v and k != "not_our_mac"} == {}, nonzero_drops(after)


@pytest.fixture
def mtu_bed(tmp_path):
    """Two remotes (one for ping, one for tracepath: each learns the path MTU from vxland's ICMP afresh) and a VM
    whose MTU, 1500, is above the overlay's, 1450."""
    with netns_testbed(tmp_path, PREFIX, "2") as daemon:
        daemon.wait_until_neighbors_reachable()
        ping(VM, "192.168.42.2")
        ping(VM, "192.168.42.3")
        sh("ip", "-n", VM, "link", "set", "vm0", "mtu", "1500")
        yield daemon


def test_over_mtu_frames_from_the_vm_get_frag_needed_from_vxland(mtu_bed):
    # 1472 bytes of ICMP data with DF: a 1500-byte IP packet, 50 bytes too many for the overlay. Nothing but vxland
    # can answer (the kernel VTEP behind it never sees the frame): the first echo gets "fragmentation needed" back,
    # the kernel records the path MTU, and the next ones fail locally.
    before = mtu_bed.stats()
    result = sh("ip", "netns", "exec", VM, "ping", "-M", "do", "-s", "1472", "-c", "3", "-i", "0.3", "-W", "1",
                "192.168.42.2", check=False)
    out = result.stdout + result.stderr
    assert re.search(r"Frag needed.*mtu = 1450", out), out
    assert "message too long, mtu=1450" in out, out
    assert pipeline_delta(before, mtu_bed.stats(), "icmp_too_big_sent") >= 1
    route = sh("ip", "-n", VM, "route", "get", "192.168.42.2").stdout
    assert "mtu 1450" in route, route
    # tracepath to the other remote starts at the VM's 1500, hears the same from vxland and reaches the remote at 1450.
    trace = sh("ip", "netns", "exec", VM, "tracepath", "-n", "-m", "3", "192.168.42.3", check=False, timeout=30).stdout
    assert re.search(r"Resume: pmtu 1450\b", trace), trace
    # Frames that fit still cross.
    ping(VM, "192.168.42.2")
    idle_and_no_leak(mtu_bed)
