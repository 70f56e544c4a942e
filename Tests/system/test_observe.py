"""Watching a running vxland: `show cores` (cycle accounting per polling core), `log level` (live), `show stats --watch`."""
import json
import re
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import NULL_CONFIG, NULL_EAL, VXLANCTL, Vxland, port_counters

LEVELS = "trace, debug, info, notice, warning, error, critical"


def vxlan_pcap(path, count):
    """`count` VXLAN frames for VNI 42 from 10.99.0.2 to vxland's VTEP address: each is decapsulated and flooded to
    the VNI's one access port."""
    from scapy.all import IP, UDP, Ether, wrpcap
    from scapy.layers.vxlan import VXLAN
    frames = []
    for i in range(count):
        inner = Ether(dst="02:00:00:00:42:01", src="02:00:00:00:42:02") / IP(src="192.168.42.2", dst="192.168.42.1") \
            / UDP(sport=1024 + i, dport=5201) / (b"x" * 18)
        frames.append(Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:02") / IP(src="10.99.0.2", dst="10.99.0.1")
                      / UDP(sport=49152 + i, dport=4789, chksum=0) / VXLAN(vni=42) / inner)
    wrpcap(str(path), frames)


def test_show_cores_counts_the_packets_the_ports_received(tmp_path):
    """The underlay replays a pcap of known frames once (net_pcap without infinite_rx), then stays idle."""
    frames = 300
    pcap = tmp_path / "in.pcap"
    vxlan_pcap(pcap, frames)
    eal = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--vdev", f"net_pcap0,rx_pcap={pcap}", "--vdev", "net_null1,no-rx=1"]
    daemon = Vxland(tmp_path, eal, NULL_CONFIG.replace("net_null0", "net_pcap0"))
    try:
        stats = daemon.wait_for(lambda s: port_counters(s, "net_pcap0")["rx_packets"] >= frames)
        time.sleep(0.3)
        stats = daemon.stats()
        report = json.loads(daemon.ctl("show", "cores", "--json").stdout)
        assert report["tsc_hz"] > 0 and report["since"] == "start" and report["uptime_seconds"] > 0
        assert [c["lcore"] for c in report["cores"]] == [1]
        core = report["cores"][0]
        received = sum(p["counters"]["rx_packets"] for p in stats["cores"][0]["ports"])
        assert received == frames and core["packets"] == frames
        assert stats["totals"]["pipeline"]["decapsulated"] == frames
        assert port_counters(stats, "net_null1")["tx_packets"] == frames
        # Busy only while the replay lasted; idle since.
        assert 0 < core["busy_share"] < 1
        assert 0 < core["idle_rounds"] < core["rounds"]
        assert core["busy_cycles"] > 0 and core["idle_cycles"] > 0
        assert core["cycles_per_packet"] == pytest.approx(core["busy_cycles"] / frames)
        # The cycles the core accounted for are the time it has polled: no more than vxland has run.
        polled = (core["busy_cycles"] + core["idle_cycles"]) / report["tsc_hz"]
        assert 0 < polled <= report["uptime_seconds"] + 0.1

        table = daemon.ctl("show", "cores").stdout
        assert "since start" in table and "BUSY" in table and "CYCLES/PKT" in table
        row = next(line.split() for line in table.splitlines() if line.startswith("1 "))
        assert row[3] == str(frames) and row[1].endswith("%")

        # stats clear: a new baseline for the cores too.
        daemon.ctl("stats", "clear")
        cleared = json.loads(daemon.ctl("show", "cores", "--json").stdout)
        core = cleared["cores"][0]
        assert cleared["since"] == "stats clear"
        assert core["packets"] == 0 and "cycles_per_packet" not in core and core["busy_share"] == 0
        assert core["rounds"] == core["idle_rounds"]
        assert "-" in daemon.ctl("show", "cores").stdout.splitlines()[-1].split()
    finally:
        status, log = daemon.stop()
    assert status == 0, log


def test_show_cores_and_telemetry_under_continuous_traffic(tmp_path):
    """net_null0 hands the core a full burst every round: every round is busy."""
    daemon = Vxland(tmp_path, NULL_EAL, NULL_CONFIG)
    try:
        daemon.wait_for(lambda s: s["totals"]["drops"]["not_our_mac"] > 1000)
        before = json.loads(daemon.ctl("show", "cores", "--json").stdout)["cores"][0]
        result = subprocess.run(["/usr/bin/dpdk-telemetry.py", "-f", daemon.prefix], input="/vxland/cores\n",
                                capture_output=True, text=True, timeout=30)
        stats = daemon.stats()
        after = json.loads(daemon.ctl("show", "cores", "--json").stdout)["cores"][0]
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    assert before["busy_share"] > 0.99
    assert before["cycles_per_packet"] > 0
    # Cores' packets and the ports' counters are kept by the same core: their sums agree within one report's skew.
    assert before["packets"] <= stats["totals"]["ports"][0]["counters"]["rx_packets"] <= after["packets"]
    answers = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            answers.update(json.loads(line))
    telemetry = answers["/vxland/cores"]["lcore1"]
    assert before["packets"] <= telemetry["packets"] <= after["packets"]
    assert before["busy_cycles"] <= telemetry["busy_cycles"] <= after["busy_cycles"]
    assert telemetry["tsc_hz"] > 0 and telemetry["rounds"] >= before["rounds"] and telemetry["cycles_per_packet"] > 0
    assert 0.99 < float(telemetry["busy_share"]) <= 1
    assert "drop_not_our_mac" in telemetry, "the pipeline counters are still there"


def raw_request(path, request):
    """One request on the control socket without vxlanctl (which checks the level itself)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def test_log_level_is_read_and_set_live(tmp_path):
    daemon = Vxland(tmp_path, NULL_EAL, NULL_CONFIG)
    try:
        assert daemon.ctl("log", "level").stdout.strip() == "info"
        assert daemon.ctl("log", "level", "debug").stdout.strip() == "log level debug (was info)"
        assert daemon.ctl("log", "level").stdout.strip() == "debug"
        assert json.loads(daemon.ctl("log", "level", "--json").stdout) == {"level": "debug"}

        bad = daemon.ctl("log", "level", "loud", check=False)
        assert bad.returncode != 0
        assert f"'loud' is not a log level; valid levels: {LEVELS}" in bad.stderr
        # vxland checks too, for clients other than vxlanctl; the level is untouched.
        answer = raw_request(daemon.socket, {"id": 7, "method": "log.level", "params": {"level": "verbose"}})
        assert answer["ok"] is False and answer["error"]["code"] == "bad_params"
        assert answer["error"]["message"] == f"level: 'verbose' is not a log level; valid levels: {LEVELS}"
        assert daemon.ctl("log", "level").stdout.strip() == "debug"
        unknown = raw_request(daemon.socket, {"id": 8, "method": "log.verbosity"})
        assert "show.cores" in unknown["error"]["message"] and "log.level" in unknown["error"]["message"]
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    before, changed, after = log.partition("log level changed from info to debug by vxlanctl")
    assert changed, log
    assert " notice vxland:" in before.splitlines()[-1] + changed, "the change is logged at notice level"
    assert not re.search(r" debug vxland:", before), "nothing at debug before the change"
    # Loggers made at start-up now let debug through: vxland's stop says what it released at debug level.
    assert re.search(r" debug vxland: .*control socket closed", after), after


def watch(daemon, *args, **kwargs):
    return subprocess.Popen([str(VXLANCTL), "show", "stats", "--watch", *args, "--socket", str(daemon.socket)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


HEADER = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  over (\d+\.\d\d) s$")
RATE = r"(\d+(?:\.\d+)?[kMGTP]?)"


def si(text):
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
    return float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)


def test_show_stats_watch_prints_rates(tmp_path):
    daemon = Vxland(tmp_path, NULL_EAL, NULL_CONFIG)
    try:
        daemon.wait_for(lambda s: s["totals"]["drops"]["not_our_mac"] > 1000)
        result = daemon.ctl("show", "stats", "--watch", "--count", "2", "--interval", "0.5")
        blocks = [b for b in result.stdout.split("\n\n") if b.strip()]
        assert len(blocks) == 2, result.stdout
        for block in blocks:
            lines = block.strip().splitlines()
            interval = HEADER.match(lines[0])
            assert interval and 0.3 <= float(interval.group(1)) <= 0.8, block
            assert lines[1].split() == ["PORT", "RX", "PPS", "RX", "BIT/S", "TX", "PPS", "TX", "BIT/S"]
            underlay = re.match(rf"^net_null0\s+{RATE}\s+{RATE}\s+{RATE}\s+{RATE}$", lines[2])
            assert underlay, block
            rx_pps, rx_bps = si(underlay.group(1)), si(underlay.group(2))
            # net_null's frames are 64 bytes: 512 bits each (within the rounding of three significant digits).
            assert rx_pps > 1000 and abs(rx_bps / rx_pps - 512) < 512 * 0.02, block
            assert re.match(r"^net_null1\s+0\s+0\s+0\s+0$", lines[3]), block
            drops = re.match(rf"^drops/s: not_our_mac {RATE}$", lines[4])
            assert drops and abs(si(drops.group(1)) - rx_pps) <= rx_pps * 0.1, block

        lines = daemon.ctl("show", "stats", "--watch", "--count", "2", "--interval", "0.5", "--json").stdout.splitlines()
        assert len(lines) == 2
        for line in lines:
            rates = json.loads(line)
            assert rates["reset"] is False and 0.3 <= rates["seconds"] <= 0.8
            assert [p["port"] for p in rates["ports"]] == ["net_null0", "net_null1"]
            assert rates["ports"][0]["rx_pps"] > 1000 and rates["ports"][1]["rx_pps"] == 0
            assert rates["ports"][0]["rx_bits_per_second"] == pytest.approx(rates["ports"][0]["rx_pps"] * 512)
            assert set(rates["drops"]) == {"not_our_mac"}

        misuse = daemon.ctl("show", "stats", "--count", "2", check=False)
        assert misuse.returncode != 0 and "--interval and --count go with --watch" in misuse.stderr
    finally:
        status, log = daemon.stop()
    assert status == 0, log


def test_show_stats_watch_shows_a_clear_as_a_reset_and_stops_on_ctrl_c(tmp_path):
    daemon = Vxland(tmp_path, NULL_EAL, NULL_CONFIG)
    try:
        daemon.wait_for(lambda s: s["totals"]["drops"]["not_our_mac"] > 1000)
        watcher = watch(daemon, "--interval", "0.3")
        # Read what it prints as it prints it: the clear comes after two blocks of rates, Ctrl-C after two more
        # (waited for, whatever the host's speed).
        seen = []

        def blocks_after(n, deadline=30):
            end = time.time() + deadline
            while sum(1 for l in seen if HEADER.match(l) or "reset: counters went back" in l) < n:
                assert time.time() < end, "".join(seen)
                ready, _, _ = select.select([watcher.stdout], [], [], 0.5)
                if ready:
                    line = watcher.stdout.readline()
                    assert line, "vxlanctl stopped printing: " + "".join(seen)
                    seen.append(line)
        blocks_after(2)
        daemon.ctl("stats", "clear")
        blocks_after(5)
        watcher.send_signal(signal.SIGINT)
        rest, err = watcher.communicate(timeout=10)
        out = "".join(seen) + rest
        assert watcher.returncode == 0, err
        assert err == ""
        blocks = [b.strip() for b in out.split("\n\n") if b.strip()]
        resets = [i for i, b in enumerate(blocks) if "reset: counters went back" in b]
        assert len(resets) == 1, out
        assert 0 < resets[0] < len(blocks) - 1, "rates before and after the reset"
        assert not re.search(r"\s-\d", out), "never a negative rate"
        assert all(HEADER.match(b.splitlines()[0]) for i, b in enumerate(blocks) if i not in resets)
    finally:
        status, log = daemon.stop()
    assert status == 0, log
