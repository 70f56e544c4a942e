"""The offload stage against a misbehaving or vanishing vhost-user guest and odd underlay MTUs: vxland keeps running,
every frame is accounted for, the bytes on the wire decode, and once traffic stops every mempool (`pools` in
`show stats`) is back to zero buffers in use."""
import math
import signal
import subprocess
import time

import pytest

from conftest import Vxland, nonzero_drops, port_counters
from test_vhost import Guest, check_stream, hugepages, pattern, vxland_eal  # noqa: F401 (fixture)
from scapy.all import IP, UDP, Ether, rdpcap
from scapy.layers.vxlan import VXLAN

VM, REMOTE_VM = "02:00:00:00:42:01", "02:00:00:00:42:02"


def config(sock, mtu=1500):
    return f"""
underlay: {{ port: net_pcap0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: {mtu} }}
access: [ {{ port: net_vhost0, vni: 42, vhost: {{ socket: {sock}, client: false, tso: true }} }} ]
vnis: [ {{ vni: 42, flood: [10.99.0.2] }} ]
fdb: [ {{ vni: 42, mac: "{REMOTE_VM}", remote: 10.99.0.2 }} ]
neighbors: [ {{ ip: 10.99.0.2, mac: "02:00:00:00:00:02" }} ]
"""


def idle_pools(daemon):
    return daemon.wait_for(lambda s: all(p["in_use"] == 0 for p in [s["mempool"], *s.get("pools", [])]), timeout=15)


def inner_frames(pcap, mtu):
    inner = []
    for p in rdpcap(str(pcap)):
        pkt = Ether(bytes(p))
        if UDP not in pkt or pkt[UDP].dport != 4789:
            continue
        assert len(bytes(pkt)) - 14 <= mtu, f"outer packet of {len(bytes(pkt)) - 14} bytes over the {mtu}-byte MTU"
        assert pkt[IP].len == len(bytes(pkt)) - 14
        inner.append(Ether(bytes(pkt[UDP].payload)[8:]))
    return inner


def test_guest_killed_mid_tso_burst_then_a_new_guest_and_no_buffer_left(tmp_path, hugepages):
    sock = tmp_path / "vm.sock"
    daemon = Vxland(tmp_path, vxland_eal(tmp_path), config(sock), name="atkill")
    try:
        guest = Guest(tmp_path, sock, "send", "--count", "250", "--payload", "64000", "--mss", "1400", name="atg1")
        daemon.wait_for(lambda s: port_counters(s, "net_vhost0")["rx_packets"] >= 20, timeout=60)
        guest.process.send_signal(signal.SIGKILL)
        guest.process.wait()
        subprocess.run(["rm", "-rf", f"/var/run/dpdk/{guest.prefix}"], check=False)
        time.sleep(1)
        assert daemon.process.poll() is None, daemon.log_path.read_text()
        before = daemon.stats()
        second = Guest(tmp_path, sock, "send", "--count", "3", "--payload", "64000", "--mss", "1400", name="atg2").wait()
        assert (second["sent"], second["failed"]) == (3, 0), second
        after = idle_pools(daemon)
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    received = port_counters(after, "net_vhost0")["rx_packets"] - port_counters(before, "net_vhost0")["rx_packets"]
    assert received == 3
    drops = nonzero_drops(after)
    assert set(drops) <= {"neighbor_unresolved"}, drops


def test_sigterm_under_tso_load_exits_cleanly(tmp_path, hugepages):
    sock = tmp_path / "vm.sock"
    daemon = Vxland(tmp_path, vxland_eal(tmp_path), config(sock), name="atterm")
    guest = Guest(tmp_path, sock, "send", "--count", "250", "--payload", "64000", "--mss", "1400", name="atg3")
    try:
        daemon.wait_for(lambda s: port_counters(s, "net_vhost0")["rx_packets"] >= 20, timeout=60)
        stats = daemon.stats()
        assert stats["totals"]["pipeline"]["frames_segmented"] > 0
    finally:
        status, log = daemon.stop()
        guest.process.kill()
        guest.process.wait()
        subprocess.run(["rm", "-rf", f"/var/run/dpdk/{guest.prefix}"], check=False)
    assert status == 0, log


@pytest.mark.parametrize("mtu,mss,ipv6", [(576, 1400, False), (1281, 1400, True), (9216, 8000, False), (1500, 64, False)])
def test_odd_underlay_mtus_and_small_guest_mss(tmp_path, hugepages, mtu, mss, ipv6):
    sock = tmp_path / "vm.sock"
    daemon = Vxland(tmp_path, vxland_eal(tmp_path), config(sock, mtu), name="atmtu")
    try:
        summary = Guest(tmp_path, sock, "send", "--count", "2", "--payload", "64000", "--mss", str(mss),
                        *(["--ipv6"] if ipv6 else []), name="atg4").wait()
        assert (summary["sent"], summary["failed"]) == (2, 0), summary
        stats = daemon.wait_for(lambda s: port_counters(s, "net_vhost0")["rx_packets"] >= 2)
        stats = idle_pools(daemon)
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    assert nonzero_drops(stats) == {}, stats["totals"]["drops"]
    fit = mtu - 36 - 14 - (40 if ipv6 else 20) - 20
    frames = inner_frames(tmp_path / "underlay_out.pcap", mtu)
    assert len(frames) == 2 * math.ceil(64000 / min(mss, fit))
    check_stream(frames, ipv6, 2 * 64000, min(mss, fit))
