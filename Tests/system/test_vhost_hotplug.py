"""A VM's vhost-user port attached and detached at run time, again and again, while another access port keeps
traffic flowing: `vxlanctl port attach net_vhost1 --vni 42 --vhost SOCK` creates the port (vxland is the vhost-user
server), vxlan-guest plays the VM that starts, sends and stops, `vxlanctl port detach` removes the port. Every
guest frame reaches the underlay as VXLAN (scapy decodes the capture), the other port's stream never stops, and the
buffers do not creep up from cycle to cycle."""
import json
import time

from scapy.all import UDP, Ether, rdpcap
from scapy.layers.vxlan import VXLAN

from conftest import Vxland, port_counters
from test_vhost import REMOTE_VM, VM, hugepages, run_guest  # noqa: F401 (fixture)

OUR_MAC, REMOTE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
OTHER_VM = "02:00:00:00:43:01"
CYCLES = 5
FRAMES = 4


def config():
    return f"""
underlay: {{ port: net_pcap0, ip: 10.99.0.1/24, mac: "{OUR_MAC}" }}
access: [ {{ port: net_pcap1, vni: 43 }}, {{ port: net_pcap2, vni: 43 }} ]
vnis: [ {{ vni: 42, flood: [10.99.0.2] }}, {{ vni: 43, flood: [] }} ]
fdb: [ {{ vni: 42, mac: "{REMOTE_VM}", remote: 10.99.0.2 }} ]
neighbors: [ {{ ip: 10.99.0.2, mac: "{REMOTE_MAC}" }} ]
"""


def in_use(stats_json):
    return sum(p["in_use"] for p in stats_json["pools"])


def test_a_vms_port_comes_and_goes_while_another_port_forwards(tmp_path, hugepages):
    # The other ports: a VM on net_pcap1 sending to one on net_pcap2 in VNI 43, over and over (infinite_rx); VNI
    # 43 has no flood list, so the stream is switched locally and never fills the underlay's capture.
    from scapy.all import IP, UDP as U, wrpcap
    wrpcap(str(tmp_path / "other.pcap"), [Ether(src=OTHER_VM, dst="02:00:00:00:43:02") / IP(src="192.168.43.1", dst="192.168.43.2")
                                          / U(sport=1000, dport=2000) / (b"o" * 64)])
    wrpcap(str(tmp_path / "empty.pcap"), [])
    eal = ["-l", "0,1", "--no-pci", "-m", "512",
           "--vdev", f"net_pcap0,tx_pcap={tmp_path}/underlay_out.pcap",
           "--vdev", f"net_pcap1,rx_pcap={tmp_path}/other.pcap,infinite_rx=1,tx_iface=lo",
           "--vdev", f"net_pcap2,rx_pcap={tmp_path}/empty.pcap,tx_iface=lo"]
    daemon = Vxland(tmp_path, eal, config())
    sock = tmp_path / "vm1.sock"
    levels, other_rates, guest_sent = [], [], 0
    try:
        for cycle in range(CYCLES):
            before = port_counters(daemon.stats(), "net_pcap2")["tx_packets"]
            t0 = time.time()
            r = daemon.ctl("port", "attach", "net_vhost1", "--vni", "42", "--vhost", str(sock))
            assert "attach port net_vhost1 vni 42" in r.stdout, r.stdout
            assert sock.is_socket(), "vxland created the vhost-user socket"
            ports = {p["name"]: p for p in json.loads(daemon.ctl("show", "ports", "--json").stdout)["ports"]}
            assert ports["net_vhost1"]["role"] == "access" and ports["net_vhost1"]["vni"] == 42

            summary = run_guest(tmp_path, sock, "send", "--count", str(FRAMES), "--payload", "1000", "--mss", "1400",
                                "--no-tso", name=f"guest{cycle}")
            assert (summary["sent"], summary["failed"]) == (FRAMES, 0), summary
            guest_sent += summary["sent"]
            daemon.wait_for(lambda s: port_counters(s, "net_vhost1")["rx_packets"] >= FRAMES)

            r = daemon.ctl("port", "detach", "net_vhost1")
            assert "detach port net_vhost1" in r.stdout, r.stdout
            assert not sock.exists(), "the socket goes with the port"
            names = [p["name"] for p in json.loads(daemon.ctl("show", "ports", "--json").stdout)["ports"]]
            assert "net_vhost1" not in names
            after = port_counters(daemon.stats(), "net_pcap2")["tx_packets"]
            other_rates.append((after - before) / (time.time() - t0))
            levels.append(in_use(daemon.stats()))
        config_text = daemon.ctl("show", "config").stdout
        final = daemon.stats()
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    assert "net_vhost1" not in config_text

    # The other port forwarded through every cycle.
    assert all(rate > 1000 for rate in other_rates), f"net_pcap1 -> net_pcap2 frames/s per cycle: {other_rates}"
    # No creep: buffers in use after the last cycle are not more than after the first (plus what is in flight).
    assert levels[-1] <= levels[0] + 256, f"mbufs in use after each cycle: {levels}"
    assert final["totals"]["drops"].get("port_detached", 0) == 0

    # Every guest frame left as VXLAN in VNI 42 to the remote, decoded independently.
    vni42 = []
    for p in rdpcap(str(tmp_path / "underlay_out.pcap")):
        pkt = Ether(bytes(p))
        if UDP in pkt and pkt[UDP].dport == 4789 and pkt[VXLAN].vni == 42:
            inner = Ether(bytes(pkt[UDP].payload)[8:])
            assert (inner.src, inner.dst) == (VM, REMOTE_VM)
            vni42.append(inner)
    assert len(vni42) == guest_sent == CYCLES * FRAMES
