"""Helpers for the system tests: run vxland as a real process, talk to it with vxlanctl, stop it by PID."""
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("VXLAN_BUILD_DIR", ROOT / ".build" / "debug"))
VXLAND = BUILD / "vxland"
VXLANCTL = BUILD / "vxlanctl"
TOPOLOGY = ROOT / "scripts" / "netns-topology.sh"

# vxland on two net_null ports (the underlay's receive side produces frames, the access port's none), for the
# tests of the daemon, its control plane and its start-up.
NULL_EAL = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--vdev", "net_null0", "--vdev", "net_null1,no-rx=1"]
NULL_CONFIG = """
underlay: { port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
access: [ { port: net_null1, vni: 42 } ]
vnis: [ { vni: 42, flood: [10.99.0.2] } ]
neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
"""


def pytest_configure(config):
    for binary in (VXLAND, VXLANCTL):
        if not binary.exists():
            raise pytest.UsageError(f"{binary} is missing: build first (swift build -c release)")
    config.addinivalue_line("markers", "timeout(seconds): this test's own time limit (pytest-timeout)")


# Nothing may skip on this project's machines (hugepages, namespaces, taps and the kernel's vxlan all work there):
# a skip would hide a test that never ran. A skip is turned into a failure that says why it would have skipped,
# unless VXLAN_ALLOW_SKIPS=1 says the machine is known to lack something.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("VXLAN_ALLOW_SKIPS") != "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and nothing may skip here (set VXLAN_ALLOW_SKIPS=1 on a machine that lacks it): {reason}"


class Vxland:
    """A vxland process started by a test; stopped with SIGTERM by its own PID."""

    def __init__(self, tmp_path: Path, eal_args, config_text: str, netns=None, name="vxland", wrapper=(), app_args=()):
        self.config = tmp_path / f"{name}.yaml"
        self.config.write_text(config_text)
        self.socket = tmp_path / f"{name}.sock"
        self.log_path = tmp_path / f"{name}.log"
        self.prefix = f"vx{os.getpid()}{name}"
        cmd = [str(VXLAND), *eal_args, "--file-prefix", self.prefix, "--log-level", "*:warning",
               "--", "--config", str(self.config), "--socket", str(self.socket), *app_args]
        cmd = [*wrapper, *cmd]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not self.socket.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"vxland exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            if time.time() > deadline:
                self.stop()
                raise AssertionError(f"vxland did not open its socket:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def ctl(self, *args, check=True):
        return subprocess.run([str(VXLANCTL), *args, "--socket", str(self.socket)], capture_output=True, text=True,
                              check=check, timeout=10)

    def stats(self):
        return json.loads(self.ctl("show", "stats", "--json").stdout)

    def wait_for(self, predicate, timeout=20.0):
        """Polls stats until predicate(stats) holds; returns the stats."""
        deadline = time.time() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.time() > deadline:
                raise AssertionError(f"condition not reached; last stats: {json.dumps(stats['totals'], indent=1)}")
            time.sleep(0.1)

    def wait_until_neighbors_reachable(self, timeout=10.0):
        """Waits for ARP to resolve every next hop (a first frame to an unresolved one is dropped, by design)."""
        deadline = time.time() + timeout
        while True:
            neighbors = json.loads(self.ctl("show", "neighbors", "--json").stdout)["neighbors"]
            if neighbors and all(n["state"] in ("reachable", "permanent") for n in neighbors):
                return neighbors
            if time.time() > deadline:
                raise AssertionError(f"next hops not resolved: {neighbors}")
            time.sleep(0.05)

    def stop(self):
        """SIGTERM, wait, and return the exit status and the log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("vxland did not stop within 20 s of SIGTERM")
        self.log.close()
        subprocess.run(["rm", "-rf", f"/var/run/dpdk/{self.prefix}"], check=False)
        return self.process.returncode, self.log_path.read_text()


# Both af_packet ports take 64 KiB frames whole: the access port what a VM with offloads sends (TSO/GSO frames),
# the underlay port what a remote kernel with offloads sends (64 KiB GSO VXLAN frames, inner checksums unfinished).
# af_packet copies each frame into one mbuf, and its queue setup wants framesz - 32 bytes of data room after the
# headroom (65408 - 32 = 65376 <= 65535 - 128). The PMD finds ring frame i at i * framesz, so a block must hold a
# whole number of frames with no slack (with framesz=65424,blocksz=65536 only the first frame is ever read): blocks
# of 32 frames, 32 * 65408 = 2093056 = 511 pages. The kernel writes a frame's data 66 bytes into its slot, so
# frames of up to 65342 bytes arrive whole (longer ones cut to that); the largest TSO frame of a 1450-byte-MTU VM is
# about 64.4 KB. 512 frames: 32 MiB of RX ring and 32 MiB of TX ring per port. -m leaves room for the two pools of
# 64 KiB mbufs.
LARGE_FRAMES = "framesz=65408,blocksz=2093056,framecnt=512"
ACCESS_PORT = f"net_af_packet1,iface=dpacc,{LARGE_FRAMES}"
UNDERLAY_PORT = f"net_af_packet0,iface=dpund,{LARGE_FRAMES}"
AF_PACKET_EAL = ["-l", "0,1", "--no-huge", "-m", "1024", "--no-pci",
                 "--vdev", UNDERLAY_PORT, "--vdev", ACCESS_PORT]


def topology(action: str, prefix: str, *args: str, offloads="on"):
    """scripts/netns-topology.sh with OFFLOADS=on|off (every device of the test bed: the kernel's defaults, or off)."""
    return subprocess.run([str(TOPOLOGY), action, prefix, *args], check=True, capture_output=True, timeout=60,
                          env={**os.environ, "OFFLOADS": offloads})


@contextlib.contextmanager
def netns_testbed(tmp_path: Path, prefix: str, *topology_args: str, edit_config=lambda text: text, offloads="on"):
    """The namespace test bed (scripts/netns-topology.sh) with vxland running between its ports, its configuration
    passed through `edit_config` first; torn down afterwards, even when it was only half built. `offloads` is every
    device of the test bed: "on" (the kernel's defaults, as a host has them) or "off"."""
    config = tmp_path / "topology.yaml"
    daemon = None
    try:
        topology("up", prefix, str(config), *topology_args, offloads=offloads)
        daemon = Vxland(tmp_path, AF_PACKET_EAL, edit_config(config.read_text()), netns=prefix + "dp")
        yield daemon
    finally:
        if daemon:
            status, log = daemon.stop()
            assert status == 0, log
        subprocess.run([str(TOPOLOGY), "down", prefix], check=False, capture_output=True, timeout=60)


def sh(*args, check=True, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


def ping(ns, target, count=3):
    """Pings from namespace `ns`; every echo must be answered."""
    result = sh("ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.2", "-W", "2", target, check=False)
    assert f"{count} packets transmitted, {count} received" in result.stdout, f"{ns} -> {target}:\n{result.stdout}{result.stderr}"


def vx42_rx(ns):
    """Packets the kernel's vxlan device in `ns` received."""
    return int(sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/vx42/statistics/rx_packets").stdout)


def port_counters(stats, port):
    for p in stats["totals"]["ports"]:
        if p["port"] == port:
            return p["counters"]
    raise KeyError(port)


def nonzero_drops(stats):
    return {k: v for k, v in stats["totals"]["drops"].items() if v}
