"""vxland and vxlanctl as an operator meets them: start-up errors, the control socket, a clean stop."""
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import VXLAND, VXLANCTL, Vxland

NULL_CONFIG = """
underlay: { port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
access: [ { port: net_null1, vni: 42 } ]
vnis: [ { vni: 42, flood: [10.99.0.2] } ]
neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
"""


def hugepages_usable():
    try:
        free = int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read_text())
    except OSError:
        return False
    return free >= 64 and any(line.split()[2] == "hugetlbfs" for line in Path("/proc/mounts").read_text().splitlines())


def hugepage_files(prefix):
    dirs = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[2] == "hugetlbfs"]
    return [f for d in dirs for f in os.listdir(d) if f.startswith(prefix)]


def run_vxland(tmp_path, config_text, eal, prefix):
    config = tmp_path / "c.yaml"
    config.write_text(config_text)
    return subprocess.run([str(VXLAND), *eal, "--file-prefix", prefix, "--", "--config", str(config),
                           "--socket", str(tmp_path / "s.sock")], capture_output=True, text=True, timeout=60)


def test_config_error_names_the_key_exits_nonzero_and_touches_no_hugepages(tmp_path):
    prefix = f"vxbad{os.getpid()}"
    result = run_vxland(tmp_path, NULL_CONFIG.replace('mac: "02:00:00:00:00:01" }', 'mac: "02:00:00:00:00:01", mtu: 100 }'),
                        ["-l", "0", "--no-pci", "--vdev", "net_null0", "--vdev", "net_null1"], prefix)
    assert result.returncode == 2
    assert "underlay.mtu (line 2): expected an integer from 576 to 9216, got '100'" in result.stderr
    assert hugepage_files(prefix) == []
    assert not Path(f"/var/run/dpdk/{prefix}").exists()


@pytest.mark.skipif(not hugepages_usable(), reason="needs free 2 MiB hugepages (hugepages-setup.sh)")
def test_unknown_port_is_named_and_hugepage_files_are_removed(tmp_path):
    prefix = f"vxport{os.getpid()}"
    result = run_vxland(tmp_path, NULL_CONFIG.replace("net_null1", "net_null7"),
                        ["-l", "0", "--no-pci", "-m", "128", "--vdev", "net_null0", "--vdev", "net_null1"], prefix)
    assert result.returncode == 1
    assert "access[0].port: no DPDK port named 'net_null7'; ports present: net_null0, net_null1" in result.stderr
    assert hugepage_files(prefix) == [], "EAL had mapped hugepages; they must be gone"
    assert not Path(f"/var/run/dpdk/{prefix}").exists()


def test_bad_command_line_is_refused(tmp_path):
    result = subprocess.run([str(VXLAND), "--no-huge", "--", "--config"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "--config" in result.stderr
    result = subprocess.run([str(VXLAND), "--", "--config", "x.yaml", "--log-level", "loud"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "--log-level 'loud' is not one of" in result.stderr


def test_vxlanctl_without_a_daemon_says_so(tmp_path):
    result = subprocess.run([str(VXLANCTL), "show", "stats", "--socket", str(tmp_path / "none.sock")],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 1
    assert "cannot connect to" in result.stderr and "is vxland running" in result.stderr


def test_control_socket_show_commands_and_clean_stop(tmp_path):
    eal = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--vdev", "net_null0", "--vdev", "net_null1,no-rx=1"]
    daemon = Vxland(tmp_path, eal, NULL_CONFIG)
    try:
        mode = stat.S_IMODE(os.stat(daemon.socket).st_mode)
        assert mode == 0o600, f"control socket must be root-only, is {oct(mode)}"
        assert "vxland answers on" in daemon.ctl("ping").stdout

        ports = json.loads(daemon.ctl("show", "ports", "--json").stdout)["ports"]
        assert [(p["name"], p["role"], p.get("vni")) for p in ports] == [("net_null0", "underlay", None), ("net_null1", "access", 42)]
        assert ports[0]["ip"] == "10.99.0.1/24" and ports[0]["mac"] == "02:00:00:00:00:01"
        table = daemon.ctl("show", "ports").stdout
        assert "net_null0" in table and "underlay" in table and "10.99.0.1/24" in table
        # net_null offers no offload: the underlay's TX path is software, the access port takes no large frames.
        assert (ports[0]["tx_path"], ports[0]["tx_offloads"]) == ("software", [])
        assert ports[1]["gro"] is False and "tx_path" not in ports[1]
        assert "TX PATH" in table and "software" in table

        # net_null0's receive side produces all-zero frames: not for our MAC, each dropped and counted.
        stats = daemon.wait_for(lambda s: s["totals"]["drops"]["not_our_mac"] > 1000)
        assert stats["totals"]["ports"][0]["counters"]["rx_packets"] > 1000
        text = daemon.ctl("show", "stats", "--per-core").stdout
        assert "not_our_mac" in text and "lcore 1:" in text and "mbufs" in text

        # stats clear: every counter starts again from zero, forwarding goes on.
        time.sleep(1)
        before = daemon.stats()
        assert "counters cleared" in daemon.ctl("stats", "clear").stdout
        after = daemon.stats()
        assert after["totals"]["drops"]["not_our_mac"] < before["totals"]["drops"]["not_our_mac"] // 2
        assert after["totals"]["ports"][0]["counters"]["rx_packets"] < before["totals"]["ports"][0]["counters"]["rx_packets"] // 2
        assert daemon.wait_for(lambda s: s["totals"]["drops"]["not_our_mac"] > after["totals"]["drops"]["not_our_mac"])

        neighbors = json.loads(daemon.ctl("show", "neighbors", "--json").stdout)
        assert [(n["ip"], n["state"]) for n in neighbors["neighbors"]] == [("10.99.0.2", "permanent")]
        assert "permanent" in daemon.ctl("show", "neighbors").stdout

        unknown = daemon.ctl("show", "everything", check=False)
        assert unknown.returncode != 0
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    assert not daemon.socket.exists(), "socket removed on exit"
    assert "stopping" in log


def test_telemetry_shows_vxlands_counters(tmp_path):
    """DPDK's own telemetry client reads vxland's counters next to ethdev's (/vxland/stats, /ports, /cores)."""
    eal = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--vdev", "net_null0", "--vdev", "net_null1"]
    daemon = Vxland(tmp_path, eal, NULL_CONFIG)
    try:
        before = daemon.wait_for(lambda s: s["totals"]["drops"]["not_our_mac"] > 1000 and s["totals"]["pipeline"]["encapsulated"] > 1000)
        before_vnis = json.loads(daemon.ctl("show", "vnis", "--json").stdout)["vnis"]
        result = subprocess.run(["/usr/bin/dpdk-telemetry.py", "-f", daemon.prefix],
                                input="/vxland/stats\n/vxland/ports\n/vxland/cores\n/vxland/vnis\n",
                                capture_output=True, text=True, timeout=30)
        answers = {}
        for line in result.stdout.splitlines():
            if line.startswith("{"):
                answers.update(json.loads(line))
        after = daemon.stats()
        after_vnis = json.loads(daemon.ctl("show", "vnis", "--json").stdout)["vnis"]
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    stats, ports, cores = answers["/vxland/stats"], answers["/vxland/ports"], answers["/vxland/cores"]
    # Per VNI: the access port's frames (net_null1 produces them) counted in VNI 42, between the two socket reads.
    vnis = answers["/vxland/vnis"]
    assert set(vnis) == {"vni42"}
    assert set(vnis["vni42"]) == {"encap_packets", "encap_bytes", "decap_packets", "decap_bytes", "drops", "learned"}
    assert before_vnis[0]["counters"]["encap_packets"] <= vnis["vni42"]["encap_packets"] <= after_vnis[0]["counters"]["encap_packets"]
    assert vnis["vni42"]["encap_packets"] > 0 and vnis["vni42"]["encap_bytes"] == 64 * vnis["vni42"]["encap_packets"]
    # Counters only grow: what telemetry read lies between the two control-socket reads.
    assert before["totals"]["drops"]["not_our_mac"] <= stats["drop_not_our_mac"] <= after["totals"]["drops"]["not_our_mac"]
    assert set(stats) == set(after["totals"]["pipeline"]) | {f"drop_{k}" for k in after["totals"]["drops"]}
    assert set(ports) == {"net_null0", "net_null1"}
    assert before["totals"]["ports"][0]["counters"]["rx_packets"] <= ports["net_null0"]["rx_packets"]
    assert list(cores) == ["lcore1"] and cores["lcore1"]["drop_not_our_mac"] >= before["totals"]["drops"]["not_our_mac"]


@pytest.mark.skipif(not hugepages_usable(), reason="dpdk-dumpcap attaches as a secondary process: needs hugepages")
def test_dpdk_dumpcap_captures_a_port_while_vxland_forwards(tmp_path):
    from scapy.all import UDP, Ether, rdpcap
    from scapy.layers.vxlan import VXLAN
    eal = ["-l", "0,1", "-m", "256", "--no-pci", "--vdev", "net_null0", "--vdev", "net_null1"]
    daemon = Vxland(tmp_path, eal, NULL_CONFIG)
    out = tmp_path / "capture.pcapng"
    try:
        daemon.wait_for(lambda s: s["totals"]["pipeline"]["encapsulated"] > 1000)
        result = subprocess.run(["/usr/bin/dpdk-dumpcap", f"--file-prefix={daemon.prefix}", "-i", "net_null0", "-c", "50",
                                 "-w", str(out)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        after = daemon.stats()
    finally:
        status, log = daemon.stop()
    assert status == 0, log
    packets = [Ether(bytes(p)) for p in rdpcap(str(out))]
    assert len(packets) >= 50
    # What net_null0 sent: the access port's frames (all-zero, so flooded) encapsulated towards 10.99.0.2.
    tunnelled = [p for p in packets if UDP in p and p[UDP].dport == 4789]
    assert tunnelled and all(p[VXLAN].vni == 42 and len(bytes(p[VXLAN].payload)) == 64 for p in tunnelled)
    assert after["totals"]["drops"]["not_our_mac"] > 0
    # Wireshark's decoder reads the same file: the same VXLAN packets, VNI 42, to 10.99.0.2.
    fields = subprocess.run(["tshark", "-r", str(out), "-Y", "vxlan", "-T", "fields", "-e", "vxlan.vni", "-e", "ip.dst"],
                            capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    rows = [line.split("\t") for line in fields if line]
    assert len(rows) == len(tunnelled) and all(r == ["42", "10.99.0.2"] for r in rows), rows[:5]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completions_cover_every_command(tmp_path, shell):
    """`vxlanctl --generate-completion-script SHELL` (the argument parser's) names every subcommand; bash loads it."""
    script = subprocess.run([str(VXLANCTL), "--generate-completion-script", shell], capture_output=True, text=True,
                            check=True, timeout=10).stdout
    for word in ["show", "vnis", "config", "vni", "flood", "fdb", "neighbor", "port", "attach", "detach", "apply", "flush"]:
        assert word in script, f"{shell} completion lacks '{word}'"
    if shell == "bash":
        path = tmp_path / "vxlanctl.bash"
        path.write_text(script)
        loaded = subprocess.run(["bash", "-c", f"source {path} && complete -p vxlanctl"], capture_output=True, text=True, timeout=10)
        assert loaded.returncode == 0 and "_vxlanctl" in loaded.stdout, loaded.stderr
