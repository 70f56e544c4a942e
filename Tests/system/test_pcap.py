"""vxland on net_pcap: frames crafted with scapy go in, scapy decodes what comes out, field by field."""
import struct

from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, Raw, defragment, rdpcap, wrpcap
from scapy.layers.vxlan import VXLAN

from conftest import Vxland, nonzero_drops, port_counters

OUR_MAC, OUR_IP = "02:00:00:00:00:01", "10.99.0.1"
REMOTES = {"10.99.0.2": "02:00:00:00:00:02", "10.99.0.3": "02:00:00:00:00:03"}
VM, REMOTE_VM = "02:00:00:00:42:01", "02:00:00:00:42:02"

CONFIG = f"""
underlay: {{ port: net_pcap0, ip: {OUR_IP}/24, mac: "{OUR_MAC}", mtu: 1500, udp_port: 4789, ttl: 64 }}
access: [ {{ port: net_pcap1, vni: 42 }} ]
vnis: [ {{ vni: 42, flood: [10.99.0.2, 10.99.0.3] }} ]
fdb: [ {{ vni: 42, mac: "{REMOTE_VM}", remote: 10.99.0.2 }} ]
neighbors:
  - {{ ip: 10.99.0.2, mac: "{REMOTES['10.99.0.2']}" }}
  - {{ ip: 10.99.0.3, mac: "{REMOTES['10.99.0.3']}" }}
"""


def sized(frame, size):
    """Pads a frame with payload bytes to exactly `size` bytes."""
    return frame / Raw(b"\xab" * (size - len(frame)))


def vxlan_in(inner, vni=42, flags=0x08, dst_ip=OUR_IP, dport=4789, dst_mac=OUR_MAC, ip_flags="DF", frag=0, proto=None):
    ip = IP(src="10.99.0.2", dst=dst_ip, flags=ip_flags, frag=frag, ttl=64)
    if proto is not None:
        return Ether(dst=dst_mac, src=REMOTES["10.99.0.2"]) / IP(src="10.99.0.2", dst=dst_ip, proto=proto) / Raw(b"\0" * 40)
    return Ether(dst=dst_mac, src=REMOTES["10.99.0.2"]) / ip / UDP(sport=50000, dport=dport) / VXLAN(flags=flags, vni=vni) / inner


def test_pcap_encap_decap_field_by_field(tmp_path):
    known_udp = sized(Ether(dst=REMOTE_VM, src=VM) / IP(src="192.168.42.1", dst="192.168.42.2") / UDP(sport=1000, dport=2000), 64)
    known_tcp_full = sized(Ether(dst=REMOTE_VM, src=VM) / IP(src="192.168.42.1", dst="192.168.42.2") / TCP(sport=40000, dport=5201), 1464)
    arp = Ether(dst="ff:ff:ff:ff:ff:ff", src=VM) / ARP(op=1, hwsrc=VM, psrc="192.168.42.1", pdst="192.168.42.2")
    unknown = sized(Ether(dst="02:00:00:00:99:99", src=VM) / IP(src="192.168.42.1", dst="192.168.42.99") / UDP(), 100)
    # One byte over the overlay MTU: with DF the VM is told the MTU (ICMP); without, the inner packet is fragmented.
    too_big_df = sized(Ether(dst=REMOTE_VM, src=VM) / IP(src="192.168.42.1", dst="192.168.42.2", flags="DF") / UDP(), 1465)
    too_big = sized(Ether(dst=REMOTE_VM, src=VM) / IP(src="192.168.42.1", dst="192.168.42.2", id=99) / UDP(), 1465)
    runt = Raw(b"\xff" * 10)
    access_in = [known_udp, known_tcp_full, arp, unknown, too_big_df, too_big, runt]

    reply = Ether(dst=VM, src=REMOTE_VM) / IP(src="192.168.42.2", dst="192.168.42.1") / ICMP(type=0) / Raw(b"x" * 32)
    good = vxlan_in(reply)
    truncated = bytes(vxlan_in(reply))[:60]
    bad_checksum = vxlan_in(reply)
    bad_checksum[IP].chksum = 0x1234
    underlay_in = [
        good,
        vxlan_in(reply, flags=0x00),                          # bad_flags
        vxlan_in(reply, vni=4242),                            # unknown_vni
        vxlan_in(reply, dst_ip="10.99.0.9"),                  # wrong_destination
        vxlan_in(reply, dport=4790),                          # wrong_udp_port
        vxlan_in(reply, proto=6),                             # not_udp
        vxlan_in(reply, ip_flags="MF"),                       # ip_fragment
        bad_checksum,                                         # bad_ip_checksum
        Raw(truncated),                                       # truncated
        vxlan_in(Raw(b"\x02" * 10)),                          # inner_too_short
        Ether(dst="01:80:c2:00:00:0e", src=REMOTES["10.99.0.2"], type=0x88CC) / Raw(b"\x02\x07\x04" + b"\0" * 40),  # not_ip (LLDP)
        vxlan_in(reply, dst_mac="02:00:00:00:00:77"),         # not_our_mac
        # For the slow path: an ARP request for the VTEP address and an ICMP echo to it.
        Ether(dst="ff:ff:ff:ff:ff:ff", src=REMOTES["10.99.0.3"]) / ARP(op=1, hwsrc=REMOTES["10.99.0.3"], psrc="10.99.0.3", pdst=OUR_IP),
        Ether(dst=OUR_MAC, src=REMOTES["10.99.0.2"]) / IP(src="10.99.0.2", dst=OUR_IP) / ICMP(type=8, id=7, seq=1) / Raw(b"ping"),
    ]
    wrpcap(str(tmp_path / "access_in.pcap"), access_in)
    wrpcap(str(tmp_path / "underlay_in.pcap"), underlay_in)

    eal = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci",
           "--vdev", f"net_pcap0,rx_pcap={tmp_path}/underlay_in.pcap,tx_pcap={tmp_path}/underlay_out.pcap",
           "--vdev", f"net_pcap1,rx_pcap={tmp_path}/access_in.pcap,tx_pcap={tmp_path}/access_out.pcap"]
    daemon = Vxland(tmp_path, eal, CONFIG)
    try:
        stats = daemon.wait_for(lambda s: port_counters(s, "net_pcap0")["rx_packets"] == len(underlay_in)
                                and port_counters(s, "net_pcap1")["rx_packets"] == len(access_in)
                                and port_counters(s, "net_pcap0")["tx_packets"] == 10)
    finally:
        status, log = daemon.stop()
    assert status == 0, log

    # Counters: each malformed input under its own reason, nothing else.
    assert nonzero_drops(stats) == {
        "bad_flags": 1, "unknown_vni": 1, "wrong_destination": 1, "wrong_udp_port": 1, "not_udp": 1, "ip_fragment": 1,
        "bad_ip_checksum": 1, "truncated": 1, "inner_too_short": 1, "not_ip": 1, "not_our_mac": 1,
        "over_mtu": 1, "runt_frame": 1}
    # One learning event: the VM's MAC on the access port (the remote VM's entry is static).
    assert {k: v for k, v in stats["totals"]["pipeline"].items() if v} == {
        "encapsulated": 8, "decapsulated": 1, "flood_copies": 4, "unknown_unicast": 1, "punted": 2, "injected": 2,
        "learn_events": 1, "flooded": 2, "icmp_too_big_sent": 1, "frames_fragmented": 1, "fragments_out": 2}
    assert port_counters(stats, "net_pcap0")["tx_packets"] == 10
    assert port_counters(stats, "net_pcap1")["tx_packets"] == 2
    assert stats["mempool"]["in_use"] == 0, stats["mempool"]

    # Decapsulated: exactly the inner frame. And the ICMP "fragmentation needed" for the DF frame, from its
    # destination, with the overlay's MTU and the original's headers quoted.
    access_out = [bytes(p) for p in rdpcap(str(tmp_path / "access_out.pcap"))]
    assert bytes(reply) in access_out and len(access_out) == 2
    too_big_reply = Ether(next(p for p in access_out if p != bytes(reply)))
    assert (too_big_reply.dst, too_big_reply.src) == (VM, REMOTE_VM)
    assert (too_big_reply[IP].src, too_big_reply[IP].dst) == ("192.168.42.2", "192.168.42.1")
    assert (too_big_reply[ICMP].type, too_big_reply[ICMP].code, too_big_reply[ICMP].nexthopmtu) == (3, 4, 1450)
    assert bytes(too_big_reply[ICMP].payload)[:20] == bytes(too_big_df[IP])[:20]
    for layer in (IP, ICMP):
        fresh = too_big_reply[layer].copy()
        del fresh.chksum
        assert layer(bytes(fresh)).chksum == too_big_reply[layer].chksum, f"{layer.__name__} checksum of the ICMP error"

    # The slow path's answers: an ARP reply and an ICMP echo reply from the VTEP address.
    underlay_out = rdpcap(str(tmp_path / "underlay_out.pcap"))
    def outer_is_control(raw):   # by the outer headers only: VXLAN packets carry inner ARP and ICMP too
        pkt = Ether(raw)
        return pkt.type == 0x0806 or (pkt.type == 0x0800 and pkt[IP].proto == 1)

    answers = [Ether(bytes(p)) for p in underlay_out if outer_is_control(bytes(p))]
    assert len(answers) == 2
    arp_reply = next(p for p in answers if ARP in p)
    assert (arp_reply.dst, arp_reply.src) == (REMOTES["10.99.0.3"], OUR_MAC)
    assert (arp_reply[ARP].op, arp_reply[ARP].hwsrc, arp_reply[ARP].psrc) == (2, OUR_MAC, OUR_IP)
    assert (arp_reply[ARP].hwdst, arp_reply[ARP].pdst) == (REMOTES["10.99.0.3"], "10.99.0.3")
    echo = next(p for p in answers if ICMP in p)
    assert (echo.dst, echo.src, echo[IP].src, echo[IP].dst) == (REMOTES["10.99.0.2"], OUR_MAC, OUR_IP, "10.99.0.2")
    assert (echo[ICMP].type, echo[ICMP].id, echo[ICMP].seq, bytes(echo[ICMP].payload)) == (0, 7, 1, b"ping")
    for layer in (IP, ICMP):
        fresh = echo[layer].copy()
        del fresh.chksum
        assert layer(bytes(fresh)).chksum == echo[layer].chksum, f"{layer.__name__} checksum of the echo reply"

    # Encapsulated: decode every outer header with scapy.
    got = []
    for raw in (bytes(p) for p in underlay_out if not outer_is_control(bytes(p))):
        pkt = Ether(raw)
        ip, udp = pkt[IP], pkt[UDP]
        assert pkt.src == OUR_MAC and pkt.type == 0x0800
        assert pkt.dst == REMOTES[ip.dst], "outer destination MAC is the remote's neighbor entry"
        assert (ip.version, ip.ihl, ip.tos, ip.ttl, ip.proto, ip.src) == (4, 5, 0, 64, 17, OUR_IP)
        assert ip.flags == "DF" and ip.frag == 0
        assert ip.len == len(raw) - 14
        fresh = ip.copy()
        del fresh.chksum
        assert IP(bytes(fresh)).chksum == ip.chksum, "outer IPv4 checksum"
        assert udp.dport == 4789 and 49152 <= udp.sport <= 65535
        assert udp.chksum == 0, "RFC 7348: UDP checksum zero over IPv4"
        assert udp.len == ip.len - 20
        vx = bytes(udp.payload)[:8]
        assert vx == b"\x08\x00\x00\x00" + struct.pack("!I", 42)[1:] + b"\x00", "VXLAN: I flag only, VNI 42, reserved zero"
        assert isinstance(pkt[UDP].payload, VXLAN) and pkt[VXLAN].vni == 42
        got.append((ip.dst, bytes(udp.payload)[8:], udp.sport))
    inner = [(dst, frame) for dst, frame, _ in got]
    assert inner[:6] == [
        ("10.99.0.2", bytes(known_udp)), ("10.99.0.2", bytes(known_tcp_full)),
        ("10.99.0.2", bytes(arp)), ("10.99.0.3", bytes(arp)),
        ("10.99.0.2", bytes(unknown)), ("10.99.0.3", bytes(unknown)),
    ]
    # The frame without DF: two IPv4 fragments of the inner packet, each within the MTU, reassembling to it.
    fragments = [Ether(frame) for dst, frame in inner[6:]]
    assert len(fragments) == 2 and all(dst == "10.99.0.2" for dst, _ in inner[6:])
    assert all(len(bytes(f)) <= 1464 and f[IP].id == 99 for f in fragments)
    assert [f[IP].flags.MF for f in fragments] == [1, 0]
    whole = defragment([f[IP] for f in fragments])
    assert len(whole) == 1 and bytes(whole[0]) == bytes(too_big[IP])
    assert len(got[1][1]) + 50 == 1514, "a 1464-byte inner frame fills a 1500-byte underlay MTU exactly"
    assert got[2][2] == got[3][2], "flood copies of one frame share its flow's source port"
