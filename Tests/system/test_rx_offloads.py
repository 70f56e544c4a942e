"""The underlay's receive side against the Linux kernel: zero UDP checksums over IPv6 (RFC 6935/6936, the kernel's
udp6zerocsumtx/udp6zerocsumrx) both ways, and what vxland does with them when it is not configured for them; and two
polling cores on a two-queue underlay (net_af_packet qpairs=2: PACKET_FANOUT by flow hash) both decapsulating."""
import contextlib
import json
import os
import subprocess
import time

from conftest import TOPOLOGY, Vxland, netns_testbed, ping, sh

PREFIX_ZERO = f"rxz{os.getpid() % 10000}-"
PREFIX_MIXED = f"rxm{os.getpid() % 10000}-"
PREFIX_CORES = f"rxc{os.getpid() % 10000}-"

# Sniffs VXLAN frames from vxland (fd00::1) on the remote's underlay interface and prints their UDP checksums.
SNIFF = """
import json, sys
from scapy.all import sniff, IPv6, UDP
frames = sniff(iface="hv0", count=int(sys.argv[1]), timeout=20, started_callback=lambda: print("ready", flush=True),
               lfilter=lambda p: IPv6 in p and UDP in p and p[IPv6].src == "fd00::1" and p[UDP].dport == 4789)
print(json.dumps([p[UDP].chksum for p in frames]), flush=True)
"""


def kernel_vtep_with_zero_checksums(hv):
    """Replaces the remote's vx42 (netns-topology.sh, mode ipv6, remote 1) by the same device with
    udp6zerocsumtx and udp6zerocsumrx, which the kernel does not let a running device change."""
    sh("ip", "-n", hv, "link", "del", "vx42")
    sh("ip", "-n", hv, "link", "add", "vx42", "type", "vxlan", "id", "42", "local", "fd00::2", "remote", "fd00::1",
       "dstport", "4789", "dev", "hv0", "udp6zerocsumtx", "udp6zerocsumrx")
    sh("ip", "netns", "exec", hv, "sysctl", "-qw", "net.ipv6.conf.vx42.disable_ipv6=1")
    sh("ip", "-n", hv, "link", "set", "vx42", "address", "02:00:00:00:42:02", "mtu", "1430", "up")
    sh("ip", "-n", hv, "addr", "add", "192.168.42.2/24", "dev", "vx42")
    if sh("ip", "netns", "exec", hv, "ethtool", "-K", "vx42", "tx", "off", "tso", "off", "gso", "off", "gro", "off",
          check=False).returncode != 0:
        sh("ip", "netns", "exec", hv, "ethtool", "-K", "vx42", "tx", "off")
    details = sh("ip", "-n", hv, "-d", "link", "show", "vx42").stdout
    assert "udp6zerocsumtx" in details and "udp6zerocsumrx" in details, details


def zero_checksum_config(text):
    return text.replace("  mtu: 1500\n", "  mtu: 1500\n  udp6_zero_checksum: { tx: true, rx: true }\n")


def vx42_counter(ns, counter):
    return int(sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/vx42/statistics/{counter}").stdout)


def iperf3(server_ns, client_ns, server_ip, *args):
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        result = json.loads(sh("ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", "5201", "-J", *args,
                               timeout=60).stdout)
        assert "error" not in result, result.get("error")
        return result
    finally:
        server.wait(timeout=20)


def test_zero_udp6_checksums_both_ways_with_the_kernel(tmp_path):
    with netns_testbed(tmp_path, PREFIX_ZERO, "1", "300", "ipv6", edit_config=zero_checksum_config) as daemon:
        vm, hv = PREFIX_ZERO + "vm", PREFIX_ZERO + "hv"
        kernel_vtep_with_zero_checksums(hv)
        sniffer = subprocess.Popen(["ip", "netns", "exec", hv, "/usr/bin/python3", "-c", SNIFF, "4"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert sniffer.stdout.readline().strip() == "ready", sniffer.stderr.read()
            ping(vm, "192.168.42.2", 4)
            ping(hv, "192.168.42.1", 4)
            checksums = json.loads(sniffer.communicate(timeout=30)[0].strip().splitlines()[-1])
        finally:
            if sniffer.poll() is None:
                sniffer.kill()
                sniffer.wait()
        assert len(checksums) == 4 and set(checksums) == {0}, f"vxland's UDP checksums over IPv6: {checksums}"
        # TCP both ways: the kernel and vxland each send only zero checksums and accept them.
        up = iperf3(vm, hv, "192.168.42.1", "-t", "3")
        down = iperf3(vm, hv, "192.168.42.1", "-t", "3", "-R")
        assert up["end"]["sum_received"]["bytes"] > 1_000_000 and down["end"]["sum_received"]["bytes"] > 1_000_000
        stats = daemon.stats()
        totals = stats["totals"]
        assert totals["drops"]["bad_udp_checksum"] == 0, totals["drops"]
        assert totals["pipeline"]["decapsulated"] > 1000 and totals["pipeline"]["encapsulated"] > 1000, totals["pipeline"]
        assert stats["mempool"]["in_use"] == 0
        # The kernel took every one of them: no UDP checksum errors on its side.
        errors = sh("ip", "netns", "exec", hv, "nstat", "-az", "Udp6InCsumErrors").stdout
        assert any(line.split()[:2] == ["Udp6InCsumErrors", "0"] for line in errors.splitlines()), errors


def test_zero_udp6_checksums_are_dropped_unless_configured(tmp_path):
    """vxland with its defaults (checksums required over IPv6) against a kernel that sends zeros: every frame the
    kernel's vxlan device sends is dropped and counted as bad_udp_checksum, and nothing is decapsulated."""
    with netns_testbed(tmp_path, PREFIX_MIXED, "1", "300", "ipv6") as daemon:
        hv = PREFIX_MIXED + "hv"
        kernel_vtep_with_zero_checksums(hv)
        before = vx42_counter(hv, "tx_packets")
        result = sh("ip", "netns", "exec", hv, "ping", "-c", "3", "-i", "0.2", "-W", "1", "192.168.42.1", check=False)
        assert " 0 received" in result.stdout, result.stdout

        def settled(stats):
            sent = vx42_counter(hv, "tx_packets") - before
            return sent > 0 and stats["totals"]["drops"]["bad_udp_checksum"] == sent

        time.sleep(3)           # the kernel's ARP retries for 192.168.42.1 end
        stats = daemon.wait_for(settled)
        assert stats["totals"]["pipeline"]["decapsulated"] == 0
        assert stats["totals"]["drops"]["bad_udp_checksum"] == vx42_counter(hv, "tx_packets") - before


# The test bed keeps the kernel's offloads: both ports take 64 KB frames (as conftest's ports), on two queues each.
TWO_CORE_FRAMES = "framesz=65408,blocksz=2093056,framecnt=128"
TWO_CORE_EAL = ["--lcores", "0@0,1@0,2@1", "--no-huge", "-m", "1024", "--no-pci",
                "--vdev", f"net_af_packet0,iface=dpund,qpairs=2,{TWO_CORE_FRAMES}",
                "--vdev", f"net_af_packet1,iface=dpacc,qpairs=2,{TWO_CORE_FRAMES}"]


@contextlib.contextmanager
def two_core_testbed(tmp_path, prefix):
    """netns-topology.sh (IPv4, one remote) with vxland polling on lcores 1 and 2, two queue pairs per port."""
    config = tmp_path / "topology.yaml"
    daemon = None
    try:
        sh(str(TOPOLOGY), "up", prefix, str(config), "1", "300", "untagged")
        daemon = Vxland(tmp_path, TWO_CORE_EAL, config.read_text(), netns=prefix + "dp")
        yield daemon
    finally:
        if daemon:
            status, log = daemon.stop()
            assert status == 0, log
        sh(str(TOPOLOGY), "down", prefix, check=False)


def test_two_polling_cores_share_the_underlay(tmp_path):
    with two_core_testbed(tmp_path, PREFIX_CORES) as daemon:
        vm, hv = PREFIX_CORES + "vm", PREFIX_CORES + "hv"
        ports = {p["name"]: p for p in json.loads(daemon.ctl("show", "ports", "--json").stdout)["ports"]}
        assert ports["net_af_packet0"]["queues"] == 2 and ports["net_af_packet1"]["queues"] == 2, ports
        ping(vm, "192.168.42.2")
        # Eight TCP flows from the kernel: its vxlan device picks each one's outer source port from the inner flow's
        # hash, and the kernel's fanout hashes the outer headers over the two sockets (queues) of the underlay port.
        result = iperf3(vm, hv, "192.168.42.1", "-t", "3", "-P", "8")
        # Traffic, not speed: two busy-polling lcores share one CPU here (--lcores), so TCP crawls on a loaded host.
        assert result["end"]["sum_received"]["bytes"] > 100_000
        stats = json.loads(daemon.ctl("show", "stats", "--json", "--per-core").stdout)
        cores = {c["lcore"]: c["pipeline"].get("decapsulated", 0) for c in stats["cores"]}
        assert set(cores) == {1, 2}, stats["cores"]
        assert all(n > 100 for n in cores.values()), f"decapsulated per lcore: {cores}"
        assert sum(cores.values()) == stats["totals"]["pipeline"]["decapsulated"]
        # Nothing of the tunnel traffic is lost on the way in (a stray frame of the test bed, such as one IP packet
        # for another address, may be dropped under its reason).
        drops = stats["totals"]["drops"]
        assert all(drops[r] == 0 for r in ("bad_ip_checksum", "bad_udp_checksum", "truncated", "unknown_vni")), drops
        assert stats["totals"]["drops_total"] <= 3, drops
        print(f"decapsulated per lcore: {cores}")
