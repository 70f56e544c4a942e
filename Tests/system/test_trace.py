"""vxlanctl trace while traffic flows: net_pcap replays known frames forever (infinite_rx) on the underlay and on an
access port, and the trace shows each packet's headers, VNI, FDB result and outcome."""
import json
import re
import socket
import subprocess
import time

from scapy.all import ARP, IP, UDP, Ether, Raw, wrpcap
from scapy.layers.vxlan import VXLAN

from conftest import VXLANCTL, Vxland

OUR_MAC, VM, REMOTE_VM = "02:00:00:00:00:01", "02:00:00:00:42:01", "02:00:00:00:42:02"

CONFIG = f"""
underlay: {{ port: net_pcap0, ip: 10.99.0.1/24, mac: "{OUR_MAC}" }}
access: [ {{ port: net_pcap1, vni: 42 }}, {{ port: net_null0, vni: 42 }} ]
vnis: [ {{ vni: 42, flood: [10.99.0.2, 10.99.0.3] }} ]
fdb: [ {{ vni: 42, mac: "{REMOTE_VM}", remote: 10.99.0.2 }} ]
neighbors:
  - {{ ip: 10.99.0.2, mac: "02:00:00:00:00:02" }}
  - {{ ip: 10.99.0.3, mac: "02:00:00:00:00:03" }}
"""


def vxlan_in(inner, vni=42):
    return (Ether(dst=OUR_MAC, src="02:00:00:00:00:02") / IP(src="10.99.0.2", dst="10.99.0.1")
            / UDP(sport=50000, dport=4789) / VXLAN(vni=vni) / inner)


def start(tmp_path):
    known = Ether(dst=REMOTE_VM, src=VM) / IP(src="192.168.42.1", dst="192.168.42.2") / UDP(sport=1000, dport=2000) / Raw(b"\xab" * 22)
    arp = Ether(dst="ff:ff:ff:ff:ff:ff", src=VM) / ARP(op=1, hwsrc=VM, psrc="192.168.42.1", pdst="192.168.42.2")
    reply = Ether(dst=VM, src=REMOTE_VM) / IP(src="192.168.42.2", dst="192.168.42.1") / UDP(sport=2000, dport=1000) / Raw(b"x" * 22)
    wrpcap(str(tmp_path / "access.pcap"), [known, arp])
    wrpcap(str(tmp_path / "underlay.pcap"), [vxlan_in(reply), vxlan_in(reply, vni=4242)])
    eal = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci",
           "--vdev", f"net_pcap0,rx_pcap={tmp_path}/underlay.pcap,infinite_rx=1",
           "--vdev", f"net_pcap1,rx_pcap={tmp_path}/access.pcap,infinite_rx=1",
           "--vdev", "net_null0,no-rx=1"]
    daemon = Vxland(tmp_path, eal, CONFIG)
    # Traffic flows, and the VM's MAC has been learned behind net_pcap1 (the decapsulated frames' destination).
    daemon.wait_for(lambda s: s["totals"]["pipeline"]["encapsulated"] > 1000 and s["totals"]["pipeline"]["learn_events"] >= 1)
    deadline = time.time() + 10
    while VM not in daemon.ctl("show", "fdb").stdout:
        assert time.time() < deadline, "the VM's MAC was never learned"
        time.sleep(0.05)
    return daemon


def request(daemon, method, **params):
    """One request on the control socket, as vxlanctl sends it; returns the decoded response."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(daemon.socket))
        s.sendall(json.dumps({"id": 1, "method": method, "params": params, "version": 1}).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "vxland closed the connection"
            answer += chunk
    return json.loads(answer)


def wait_until_tracing(daemon, timeout=10.0):
    """Waits for a trace started by another client to be running."""
    deadline = time.time() + timeout
    while True:
        answer = request(daemon, "trace.show")
        if answer["ok"] and answer["result"]["state"] == "running":
            return answer["result"]
        assert time.time() < deadline, f"no trace running: {answer}"
        time.sleep(0.05)


def blocks(output):
    """The per-packet blocks of vxlanctl trace's output."""
    return [b for b in output.split("\n\n") if b.startswith("Packet ")]


def test_trace_shows_vni_fdb_result_and_action_while_traffic_flows(tmp_path):
    daemon = start(tmp_path)
    try:
        out = daemon.ctl("trace", "5").stdout
        packets = blocks(out)
        assert len(packets) == 5, out
        assert out.rstrip().endswith("5 packets traced"), out
        for p in packets:
            assert re.match(r"Packet \d: lcore 1, port net_pcap[01], \d+ bytes", p), p

        # Access side only: the known unicast and the broadcast, alternating.
        out = daemon.ctl("trace", "5", "--port", "net_pcap1").stdout
        packets = blocks(out)
        assert len(packets) == 5 and all(", port net_pcap1, " in p for p in packets), out
        known = [p for p in packets if f"-> {REMOTE_VM}" in p]
        broadcast = [p for p in packets if "-> ff:ff:ff:ff:ff:ff" in p]
        assert known and broadcast and len(known) + len(broadcast) == 5, out
        for p in known:
            assert f"frame: {VM} -> {REMOTE_VM}, ipv4 192.168.42.1 -> 192.168.42.2 udp 1000 -> 2000" in p, p
            assert "classify: vni 42 (from net_pcap1)" in p, p
            assert "fdb: hit: tunnel to 10.99.0.2" in p, p
            assert "action: encapsulated to remote 10.99.0.2" in p, p
        for p in broadcast:
            assert "arp" in p and "classify: vni 42" in p, p
            assert "fdb: group destination -> flood" in p, p
            assert "action: flooded to 3 destinations" in p, p   # two remotes and the other local port

        # Underlay side only: VXLAN for the VM (learned behind net_pcap1) and for a VNI nobody configured.
        out = daemon.ctl("trace", "4", "--port", "net_pcap0").stdout
        packets = blocks(out)
        assert len(packets) == 4 and all(", port net_pcap0, " in p for p in packets), out
        for p in packets:
            assert "outer: 02:00:00:00:00:02 -> 02:00:00:00:00:01, 10.99.0.2 -> 10.99.0.1 udp 50000 -> 4789" in p, p
            assert f"inner: {REMOTE_VM} -> {VM}, ipv4 192.168.42.2 -> 192.168.42.1 udp 2000 -> 1000" in p, p
        to_vm = [p for p in packets if "vxlan vni 42\n" in p]
        unknown = [p for p in packets if "vxlan vni 4242\n" in p]
        assert to_vm and unknown and len(to_vm) + len(unknown) == 4, out
        for p in to_vm:
            assert "classify: vni 42" in p and "fdb: hit: local port net_pcap1" in p, p
            assert "action: decapsulated to port net_pcap1" in p, p
        for p in unknown:
            assert "classify:" not in p and "fdb:" not in p, p
            assert "action: dropped: unknown_vni" in p, p

        # --json: the daemon's answer.
        report = json.loads(daemon.ctl("trace", "2", "--port", "net_pcap1", "--json").stdout)
        assert report["state"] == "complete" and report["requested"] == 2 and report["port"] == "net_pcap1"
        assert [p["index"] for p in report["packets"]] == [0, 1]
        for p in report["packets"]:
            assert p["vni"] == 42 and p["port"] == "net_pcap1" and p["lcore"] == 1
            if p["frame"]["dst_mac"] == REMOTE_VM:
                assert p["fdb"] == {"result": "hit", "remote": "10.99.0.2"}
                assert p["action"] == {"kind": "encapsulated", "remote": "10.99.0.2"}
            else:
                assert p["fdb"] == {"result": "broadcast"} and p["action"] == {"kind": "flooded", "destinations": 3}
    finally:
        status, log = daemon.stop()
    assert status == 0, log


def test_trace_errors_exit_nonzero_with_their_reason(tmp_path):
    daemon = start(tmp_path)
    try:
        for count in ("0", "1001", "many"):
            r = daemon.ctl("trace", count, check=False)
            assert r.returncode != 0 and f"count: '{count}' is not a packet count (1-1000)" in r.stderr, r
        r = daemon.ctl("trace", "5", "--port", "net_nosuch", check=False)
        assert r.returncode != 0
        assert "port: no port named 'net_nosuch'; ports: net_pcap0, net_pcap1, net_null0" in r.stderr, r

        # net_null0 receives nothing: this trace waits for its timeout, and meanwhile no other may start.
        waiting = subprocess.Popen([str(VXLANCTL), "trace", "3", "--port", "net_null0", "--timeout", "3",
                                    "--socket", str(daemon.socket)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running = wait_until_tracing(daemon)
        assert running["requested"] == 3 and running["port"] == "net_null0" and running["captured"] == 0
        r = daemon.ctl("trace", "5", check=False)
        assert r.returncode != 0 and "a trace is already running (trace " in r.stderr and "on port net_null0" in r.stderr, r
        # The control socket still answers everything else meanwhile.
        assert daemon.stats()["totals"]["pipeline"]["encapsulated"] > 0
        out, err = waiting.communicate(timeout=15)
        assert waiting.returncode == 0, err
        assert "timed out after 3.0 s: 0 of 3 packets traced on port net_null0" in out, out

        # Over: the next one runs. `trace stop` ends one early, and the waiting client says so.
        assert len(blocks(daemon.ctl("trace", "1").stdout)) == 1
        waiting = subprocess.Popen([str(VXLANCTL), "trace", "3", "--port", "net_null0", "--socket", str(daemon.socket)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until_tracing(daemon)
        assert "stopped: 0 of 3 packets traced on port net_null0" in daemon.ctl("trace", "stop").stdout
        out, err = waiting.communicate(timeout=15)
        assert waiting.returncode != 0 and "was ended by another client" in err, (out, err)
        r = daemon.ctl("trace", "stop", check=False)
        assert r.returncode != 0 and "no trace is running" in r.stderr, r
    finally:
        status, log = daemon.stop()
    assert status == 0, log
