"""vhost-user access ports: vxland serves (or connects to) a vhost-user socket, vxlan-guest plays the VM on the other
end with a virtio_user port, the underlay is net_pcap and scapy decodes what leaves it.

The guest sends TCP the way a Linux VM with TSO does: 64000-byte frames carrying tso_segsz. They reach vxland whole
(one 64 KB frame each) and vxland cuts them into segments that fit the underlay MTU, with valid checksums and
contiguous sequence numbers, the payload intact.
"""
import json
import math
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, rdpcap, wrpcap
from scapy.layers.vxlan import VXLAN

from conftest import BUILD, ROOT, Vxland, nonzero_drops, port_counters

GUEST = BUILD / "vxlan-guest"
OUR_MAC, REMOTE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
VM, REMOTE_VM = "02:00:00:00:42:01", "02:00:00:00:42:02"
MTU = 1500
PAYLOAD = 64000
MSS = 1400
HUGEPAGES = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")


def config(socket_path, client=False, port="net_vhost0", tso=True):
    return f"""
underlay: {{ port: net_pcap0, ip: 10.99.0.1/24, mac: "{OUR_MAC}", mtu: {MTU} }}
access: [ {{ port: {port}, vni: 42, vhost: {{ socket: {socket_path}, client: {str(client).lower()}, tso: {str(tso).lower()} }} }} ]
vnis: [ {{ vni: 42, flood: [10.99.0.2] }} ]
fdb: [ {{ vni: 42, mac: "{REMOTE_VM}", remote: 10.99.0.2 }} ]
neighbors: [ {{ ip: 10.99.0.2, mac: "{REMOTE_MAC}" }} ]
"""


def pattern(offset, length):
    """The guest's TCP stream: byte k is (k * 7 + 3) & 0xFF."""
    return bytes(((k * 7 + 3) & 0xFF) for k in range(offset, offset + length))


@pytest.fixture(scope="module")
def hugepages():
    """The guest's memory must be shareable (virtio_user needs hugepages); reserve some if too few are free."""
    def free():
        try:
            return int((HUGEPAGES / "free_hugepages").read_text())
        except OSError:
            return 0
    needed = 256
    if free() < needed and (HUGEPAGES / "nr_hugepages").exists():
        total = int((HUGEPAGES / "nr_hugepages").read_text()) + needed - free()
        subprocess.run([str(ROOT / "hugepages-setup.sh"), str(total)], capture_output=True, timeout=120)
    mounted = any(line.split()[2] == "hugetlbfs" for line in Path("/proc/mounts").read_text().splitlines())
    if free() < needed or not mounted:
        pytest.skip(f"needs {needed} free 2 MiB hugepages on hugetlbfs (hugepages-setup.sh could not reserve them)")


def vxland_eal(tmp_path, huge=True, rx_pcap=None):
    pcap = f"net_pcap0,tx_pcap={tmp_path}/underlay_out.pcap"
    if rx_pcap:
        pcap += f",rx_pcap={rx_pcap},infinite_rx=1"
    return ["-l", "0,1", *([] if huge else ["--no-huge", "-m", "256"]), "--no-pci", "--vdev", pcap]


class Guest:
    """vxlan-guest on a virtio_user port to `sock` (server=1: it listens and vxland connects)."""

    def __init__(self, tmp_path, sock, *args, server=False, name="guest"):
        self.prefix = f"vg{os.getpid()}{name}"
        self.log_path = tmp_path / f"{name}.log"
        vdev = f"virtio_user0,path={sock}" + (",server=1" if server else "")
        cmd = [str(GUEST), "-l", "0", "--no-pci", "--single-file-segments", "--file-prefix", self.prefix,
               "--log-level", "*:warning", "--vdev", vdev, "--", *args]
        self.out = open(tmp_path / f"{name}.out", "w+")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, stdout=self.out, stderr=self.log)

    def wait(self, timeout=90):
        """The exit status and the JSON summary line."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"vxlan-guest did not finish in {timeout} s:\n{self.log_path.read_text()}")
        finally:
            subprocess.run(["rm", "-rf", f"/var/run/dpdk/{self.prefix}"], check=False)
        self.out.seek(0)
        lines = [l for l in self.out.read().splitlines() if l.startswith("{")]
        assert self.process.returncode == 0 and lines, f"vxlan-guest: status {self.process.returncode}\n{self.log_path.read_text()}"
        return json.loads(lines[-1])


def run_guest(tmp_path, sock, *args, **kwargs):
    return Guest(tmp_path, sock, *args, **kwargs).wait()


def tunnel_frames(pcap):
    """The inner frames of the VXLAN packets in `pcap`, after checking each outer packet's size and VNI."""
    inner = []
    for p in rdpcap(str(pcap)):
        pkt = Ether(bytes(p))
        if UDP not in pkt or pkt[UDP].dport != 4789:
            continue
        assert pkt.dst == REMOTE_MAC and pkt[IP].dst == "10.99.0.2"
        assert len(bytes(pkt)) - 14 <= MTU, f"outer packet of {len(bytes(pkt)) - 14} bytes exceeds the {MTU}-byte MTU"
        assert pkt[VXLAN].vni == 42
        inner.append(Ether(bytes(pkt[UDP].payload)[8:]))
    return inner


def check_stream(frames, ipv6, payload_bytes, mss_eff, seq=1000):
    """Every inner frame is a valid TCP segment of the guest's stream, in order, carrying it whole."""
    stream = b""
    next_seq = seq
    for f in frames:
        assert (f.src, f.dst) == (VM, REMOTE_VM)
        l3 = f[IPv6] if ipv6 else f[IP]
        tcp = f[TCP]
        data = bytes(tcp.payload)
        if not ipv6:
            assert l3.len == 20 + 20 + len(data)
            fresh = l3.copy()
            del fresh.chksum
            assert IP(bytes(fresh)).chksum == l3.chksum, "inner IPv4 checksum"
        else:
            assert l3.plen == 20 + len(data)
        fresh = l3.copy()
        del fresh[TCP].chksum
        rebuilt = (IPv6 if ipv6 else IP)(bytes(fresh))
        assert rebuilt[TCP].chksum == tcp.chksum, f"inner TCP checksum of the segment at seq {tcp.seq}"
        assert (tcp.sport, tcp.dport) == (40000, 5201)
        assert tcp.seq == next_seq & 0xFFFFFFFF, f"sequence numbers not contiguous: {tcp.seq} after {next_seq}"
        assert 0 < len(data) <= mss_eff
        next_seq += len(data)
        stream += data
    assert len(stream) == payload_bytes
    assert stream == pattern(0, payload_bytes), "reassembled payload differs from the guest's pattern"


def mss_fitting(ipv6):
    """The largest TCP payload whose inner frame fits the underlay MTU after VXLAN over IPv4 (36 bytes)."""
    return MTU - 36 - 14 - (40 if ipv6 else 20) - 20


@pytest.mark.parametrize("ipv6,mss", [(False, MSS), (True, MSS), (False, 1448)], ids=["ipv4", "ipv6", "ipv4-mss-above-fit"])
def test_guest_tso_frames_are_segmented_to_the_underlay_mtu(tmp_path, hugepages, ipv6, mss):
    """The guest's MSS is kept where segments of that size fit the underlay MTU, reduced to what fits otherwise (1410
    bytes over IPv4, 1390 over IPv6 for a 1500-byte underlay with an IPv4 outer header)."""
    sock = tmp_path / "vm1.sock"
    daemon = Vxland(tmp_path, vxland_eal(tmp_path), config(sock))
    try:
        assert sock.is_socket(), "vxland is the vhost-user server: it created the socket"
        summary = run_guest(tmp_path, sock, "send", "--count", "3", "--payload", str(PAYLOAD), "--mss", str(mss),
                            *(["--ipv6"] if ipv6 else []))
        assert summary["sent"] == 3 and summary["failed"] == 0, summary
        assert "tcp_tso" in summary["tx_offloads"], "virtio_user negotiated TSO with vxland's vhost port"
        header = 14 + (40 if ipv6 else 20) + 20
        stats = daemon.wait_for(lambda s: port_counters(s, "net_vhost0")["rx_packets"] >= 3)
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    assert not sock.exists(), "the server socket is removed when vxland stops"

    # The plumbing: the three frames arrived whole, as sent (one 64 KB frame each, not segmented by anyone).
    vhost = port_counters(stats, "net_vhost0")
    assert (vhost["rx_packets"], vhost["rx_bytes"]) == (3, 3 * (PAYLOAD + header)), vhost
    pipeline = stats["totals"]["pipeline"]
    mss_eff = min(mss, mss_fitting(ipv6))
    frames = tunnel_frames(tmp_path / "underlay_out.pcap")
    assert len(frames) == 3 * math.ceil(PAYLOAD / mss_eff), f"{len(frames)} VXLAN packets"
    assert pipeline["frames_segmented"] == 3 and pipeline["segments_out"] == len(frames), pipeline
    assert nonzero_drops(stats) == {}
    check_stream(frames, ipv6, 3 * PAYLOAD, mss_eff)


@pytest.mark.parametrize("mode,ipv6,huge", [("--no-tso", False, True), ("--partial-checksum", False, True),
                                            ("--partial-checksum", True, True), ("--no-tso", False, False)],
                         ids=["complete-checksum", "partial-checksum", "partial-checksum-ipv6", "vxland-without-hugepages"])
def test_guest_mtu_sized_frames_are_tunnelled_whole(tmp_path, hugepages, mode, ipv6, huge):
    """Frames that fit: encapsulated as they are. A partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM) leaves complete.
    vxland itself needs no hugepages: the vhost library maps the guest's memory, the guest's side must share it."""
    sock = tmp_path / "vm1.sock"
    daemon = Vxland(tmp_path, vxland_eal(tmp_path, huge=huge), config(sock))
    try:
        mss = min(MSS, mss_fitting(ipv6))
        summary = run_guest(tmp_path, sock, "send", "--count", "1", "--payload", str(PAYLOAD), "--mss", str(mss), mode,
                            *(["--ipv6"] if ipv6 else []))
        segments = math.ceil(PAYLOAD / mss)
        assert (summary["sent"], summary["failed"]) == (segments, 0), summary
        stats = daemon.wait_for(lambda s: port_counters(s, "net_pcap0")["tx_packets"] >= segments)
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    assert nonzero_drops(stats) == {}
    assert port_counters(stats, "net_vhost0")["rx_packets"] == segments
    # vxland asks the vhost port for the receive checksum offloads: partial checksums arrive flagged, and vxland
    # (not the driver) completes them.
    completed = stats["totals"]["pipeline"]["checksums_completed"]
    assert completed == (segments if mode == "--partial-checksum" else 0), stats["totals"]["pipeline"]
    frames = tunnel_frames(tmp_path / "underlay_out.pcap")
    assert len(frames) == segments
    check_stream(frames, ipv6, PAYLOAD, mss)


def test_decapsulated_frames_reach_the_guest(tmp_path, hugepages):
    inner = Ether(dst=VM, src=REMOTE_VM) / IP(src="192.168.42.2", dst="192.168.42.1") / UDP(sport=7, dport=9) / Raw(b"v" * 1000)
    outer = (Ether(dst=OUR_MAC, src=REMOTE_MAC) / IP(src="10.99.0.2", dst="10.99.0.1", flags="DF")
             / UDP(sport=50000, dport=4789) / VXLAN(flags=0x08, vni=42) / inner)
    wrpcap(str(tmp_path / "underlay_in.pcap"), [outer])
    sock = tmp_path / "vm1.sock"
    # The underlay replays the packet without end: those that arrive before the guest connects are dropped.
    daemon = Vxland(tmp_path, vxland_eal(tmp_path, rx_pcap=tmp_path / "underlay_in.pcap"), config(sock))
    try:
        summary = run_guest(tmp_path, sock, "receive", "--seconds", "20", "--count", "10", "--pcap", str(tmp_path / "guest.pcap"))
        stats = daemon.stats()
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    assert summary["received"] >= 10, summary
    got = rdpcap(str(tmp_path / "guest.pcap"))
    assert len(got) == summary["received"]
    assert all(bytes(p) == bytes(inner) for p in got), "the guest receives exactly the inner frame"
    assert port_counters(stats, "net_vhost0")["tx_packets"] >= 10


@pytest.mark.parametrize("vm_first", [True, False], ids=["vm-first", "vxland-first"])
def test_client_mode_connects_to_the_vm_managers_socket(tmp_path, hugepages, vm_first):
    """client: true: the VM side (here vxlan-guest with virtio_user server=1, as QEMU's chardev server=on) owns the
    socket and vxland connects to it; started first, vxland retries until the socket appears."""
    sock = tmp_path / "qemu.sock"
    args = ("send", "--count", "1", "--payload", "5000", "--mss", str(MSS), "--no-tso")
    guest = daemon = None
    try:
        if vm_first:
            guest = Guest(tmp_path, sock, *args, server=True)
            deadline = time.time() + 30
            while not sock.exists():
                assert guest.process.poll() is None, f"vxlan-guest exited early:\n{guest.log_path.read_text()}"
                assert time.time() < deadline, "vxlan-guest did not create its socket"
                time.sleep(0.05)
        daemon = Vxland(tmp_path, vxland_eal(tmp_path), config(sock, client=True))
        if not vm_first:
            assert not sock.exists(), "in client mode vxland creates no socket"
            guest = Guest(tmp_path, sock, *args, server=True)
        summary = guest.wait()
        stats = daemon.wait_for(lambda s: port_counters(s, "net_pcap0")["tx_packets"] >= 4)
    finally:
        if daemon:
            status, log = daemon.stop()
        if guest and guest.process.poll() is None:
            guest.process.kill()
            guest.process.wait()
    assert status == 0, log
    assert summary["sent"] == 4, summary
    assert port_counters(stats, "net_vhost0")["rx_packets"] == 4
    check_stream(tunnel_frames(tmp_path / "underlay_out.pcap"), False, 5000, MSS)


def start_refused(tmp_path, config_text, extra_eal=()):
    """Runs vxland (without hugepages: refusals come before any guest) and returns its exit status and output."""
    (tmp_path / "refused.yaml").write_text(config_text)
    prefix = f"vx{os.getpid()}refused"
    cmd = [str(BUILD / "vxland"), "-l", "0", "--no-huge", "-m", "128", "--no-pci", "--file-prefix", prefix,
           "--vdev", f"net_pcap0,tx_pcap={tmp_path}/out.pcap", *extra_eal, "--log-level", "*:warning",
           "--", "--config", str(tmp_path / "refused.yaml"), "--socket", str(tmp_path / "refused-ctl.sock")]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["rm", "-rf", f"/var/run/dpdk/{prefix}"], check=False)
    return result.returncode, result.stdout + result.stderr


def test_configuration_and_socket_refusals(tmp_path):
    status, out = start_refused(tmp_path, config(tmp_path / "vm.sock", port="net_pcap1"))
    assert status == 2, out
    assert "access[0].port (line 3): 'net_pcap1' cannot carry vhost: a vhost-user port's name must start with net_vhost" in out

    status, out = start_refused(tmp_path, config("vm.sock"))
    assert status == 2 and "access[0].vhost.socket (line 3): expected the absolute path of the vhost-user socket, got 'vm.sock'" in out, out

    status, out = start_refused(tmp_path, config(tmp_path / "missing" / "vm.sock"))
    assert status == 1, out
    assert f"access[0].vhost.socket: cannot create {tmp_path}/missing/vm.sock: directory {tmp_path}/missing does not exist" in out

    regular = tmp_path / "file.sock"
    regular.write_text("not a socket")
    status, out = start_refused(tmp_path, config(regular))
    assert status == 1 and f"{regular} exists and is not a socket; vxland will not replace it" in out, out
    assert regular.read_text() == "not a socket"

    listening = tmp_path / "busy.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(listening))
    listener.listen(1)
    try:
        status, out = start_refused(tmp_path, config(listening))
    finally:
        listener.close()
    assert status == 1 and f"{listening} is in use: another process listens on it" in out, out

    status, out = start_refused(tmp_path, config(tmp_path / "vm.sock"), extra_eal=["--vdev", f"net_vhost0,iface={tmp_path}/other.sock"])
    assert status == 1 and "a port named net_vhost0 exists already" in out, out


def test_a_stale_server_socket_is_replaced_and_removed_on_stop(tmp_path):
    """A vxland killed with SIGKILL leaves its socket: the next one replaces it, and removes its own on exit."""
    sock = tmp_path / "vm1.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()
    assert sock.is_socket()
    daemon = Vxland(tmp_path, vxland_eal(tmp_path, huge=False), config(sock))
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(sock))  # vxland's vhost library listens on it now
        probe.close()
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    assert not sock.exists()


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_guest_that_takes_large_frames_gets_merged_segments(tmp_path, hugepages, ipv6):
    """Receive offload: a remote's TCP segments (one flow, pure ACKs) reach a guest that negotiated TSO and partial
    checksums as a few large frames (rte_gro for IPv4, vxland's own merge for IPv6; a virtio GSO header), their
    payload the same stream, in order."""
    base, size, count = 100_000, 1380 if ipv6 else 1400, 40      # each segment within the 1450-byte overlay MTU
    stream = pattern(0, size * count)
    segments = []
    for k in range(count):
        l3 = (IPv6(src="fd42::2", dst="fd42::1") if ipv6
              else IP(src="192.168.42.2", dst="192.168.42.1", flags="DF", id=k))
        inner = (Ether(dst=VM, src=REMOTE_VM) / l3
                 / TCP(sport=5201, dport=40000, seq=base + k * size, ack=1, flags="A" if k < count - 1 else "PA")
                 / Raw(stream[k * size:(k + 1) * size]))
        segments.append(Ether(dst=OUR_MAC, src=REMOTE_MAC) / IP(src="10.99.0.2", dst="10.99.0.1", flags="DF")
                        / UDP(sport=50000, dport=4789) / VXLAN(flags=0x08, vni=42) / Ether(bytes(inner)))
    wrpcap(str(tmp_path / "underlay_in.pcap"), segments)
    sock = tmp_path / "vm1.sock"
    daemon = Vxland(tmp_path, vxland_eal(tmp_path, rx_pcap=tmp_path / "underlay_in.pcap"), config(sock))
    try:
        summary = run_guest(tmp_path, sock, "receive", "--lro", "--settle", "1", "--seconds", "20", "--count", "3000",
                            "--pcap", str(tmp_path / "guest.pcap"))
        stats = daemon.stats()
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    pipeline = stats["totals"]["pipeline"]
    assert pipeline["gro_frames"] > 0 and pipeline["gro_merged_segments"] > 0, pipeline
    assert port_counters(stats, "net_vhost0")["gro_merged_segments"] == pipeline["gro_merged_segments"]
    assert summary["lro"] > 0 and summary["largest"] > 14 + MTU, summary
    frames = rdpcap(str(tmp_path / "guest.pcap"))
    merged = 0
    for f in frames:
        pkt = Ether(bytes(f))
        tcp = pkt[TCP]
        data = bytes(tcp.payload)
        offset = tcp.seq - base
        assert 0 <= offset and offset + len(data) <= len(stream) and offset % size == 0, (tcp.seq, len(data))
        assert data == stream[offset:offset + len(data)], "payload of a merged frame is the stream, in order"
        # Checksums: IPv4 by vhost-user, TCP completed by the guest from the partial sum vxland left (virtio).
        recomputed = Ether(bytes(pkt))
        if ipv6:
            assert pkt[IPv6].plen == len(bytes(pkt[IPv6].payload))
            del recomputed[TCP].chksum
            assert tcp.chksum == Ether(bytes(recomputed))[TCP].chksum
        else:
            assert pkt[IP].len == len(bytes(pkt[IP]))
            del recomputed[IP].chksum, recomputed[TCP].chksum
            recomputed = Ether(bytes(recomputed))
            assert (pkt[IP].chksum, tcp.chksum) == (recomputed[IP].chksum, recomputed[TCP].chksum)
        merged += len(data) > size
    assert merged > 0
