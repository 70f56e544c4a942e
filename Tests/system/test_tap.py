"""vxland's own tap ports (virtio-net header): the VM's 64 KiB TSO frames and the remote kernel's UDP-tunnel GSO
frames cross vxland whole, both ways, with real TCP stacks at both ends; the taps are created by vxland and moved
by the test bed (scripts/netns-topology.sh taps) into the VM's namespace and onto the underlay bridge after
vxland started. Counters must add up between the two ports and the pipeline, and the kernels must count no
checksum error. The taps go with vxland however it ends."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import (ACCESS_PORT, TOPOLOGY, UNDERLAY_PORT, VXLAND, Vxland, nonzero_drops, ping, sh, topology)
from test_offloads import csum_errors, iperf3

PREFIX = f"tp{os.getpid() % 100000}-"
VM, DP, UL, HV = PREFIX + "vm", PREFIX + "dp", PREFIX + "ul", PREFIX + "hv"
EAL = ["-l", "0,1", "--no-huge", "-m", "1024", "--no-pci"]


def tap_config(which="both", mode="untagged", udp_tunnel_gso=True):
    """vxland's configuration for the test bed with tap ports on `which` side(s) (af_packet on the other)."""
    underlay = "port: net_af_packet0"
    access = "port: net_af_packet1"
    if which != "access":
        underlay = f"port: tapund, tap: {{ name: tapund, udp_tunnel_gso: {str(udp_tunnel_gso).lower()} }}"
    if which != "underlay":
        access = "port: tapacc, tap: { name: tapacc }"
    addresses, flood = ("ip6: \"fd00::1/64\"", "\"fd00::2\"") if mode == "ipv6" else ("ip: 10.99.0.1/24", "10.99.0.2")
    return (f"underlay: {{ {underlay}, {addresses}, mac: \"02:00:00:00:00:01\", mtu: 1500 }}\n"
            f"access: [ {{ {access}, vni: 42 }} ]\n"
            f"vnis: [ {{ vni: 42, flood: [{flood}] }} ]\n")


class TapBed:
    """The namespace test bed with vxland's taps in place of its veths."""

    def __init__(self, tmp_path, which="both", mode="untagged", udp_tunnel_gso=True, app_args=()):
        self.daemon = None
        topology("up", PREFIX, str(tmp_path / "topology.yaml"), "1", "300", mode)
        eal = list(EAL)
        if which == "access":
            eal += ["--vdev", UNDERLAY_PORT]
        if which == "underlay":
            eal += ["--vdev", ACCESS_PORT]
        self.daemon = Vxland(tmp_path, eal, tap_config(which, mode, udp_tunnel_gso), netns=DP, app_args=app_args)
        topology("taps", PREFIX, which, mode)
        self.daemon.wait_until_neighbors_reachable()

    def ports(self):
        return {p["name"]: p for p in json.loads(self.daemon.ctl("show", "ports", "--json").stdout)["ports"]}

    def close(self):
        try:
            if self.daemon:
                status, log = self.daemon.stop()
                assert status == 0, log
        finally:
            subprocess.run([str(TOPOLOGY), "down", PREFIX], check=False, capture_output=True, timeout=60)


@pytest.fixture
def bed(tmp_path, request):
    b = TapBed(tmp_path, **getattr(request, "param", {}))
    yield b
    b.close()


def delta(after, before, key):
    return after[key] - before[key]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("bed", [{"mode": "untagged"}, {"mode": "ipv6"}], indirect=True, ids=["ipv4-underlay", "ipv6-underlay"])
def test_tcp_crosses_whole_both_ways_and_the_counters_add_up(bed):
    ping(VM, "192.168.42.2")
    ports = bed.ports()
    assert ports["tapund"]["tap"]["offloads"] == ["csum", "tso4", "tso6", "udp_tunnel_gso", "udp_tunnel_gso_csum"]
    assert ports["tapund"]["tx_path"] == "hardware_tso"
    assert ports["tapacc"]["tap"]["offloads"] == ["csum", "tso4", "tso6"] and ports["tapacc"]["gro"] is True
    # Renamed by the test bed after vxland made them: shown by the names they have now.
    assert ports["tapacc"]["tap"]["interface"] == "vm0" and ports["tapund"]["tap"]["interface"] == "p0"
    errors = {ns: csum_errors(ns) for ns in (VM, HV)}
    before, stats0 = bed.ports(), bed.daemon.stats()

    out = iperf3(VM, HV, "192.168.42.2", "-t", "3")
    back = iperf3(VM, HV, "192.168.42.2", "-t", "3", "-R")
    # Not a speed check (hosts differ): enough data that every kind of frame crossed many times.
    assert out["end"]["sum_received"]["bytes"] > 20_000_000
    assert back["end"]["sum_received"]["bytes"] > 20_000_000
    assert {ns: csum_errors(ns) for ns in (VM, HV)} == errors

    after, stats1 = bed.ports(), bed.daemon.stats()
    acc0, acc1 = before["tapacc"]["tap"]["counters"], after["tapacc"]["tap"]["counters"]
    und0, und1 = before["tapund"]["tap"]["counters"], after["tapund"]["tap"]["counters"]
    pipe = {k: stats1["totals"]["pipeline"][k] - stats0["totals"]["pipeline"][k] for k in stats1["totals"]["pipeline"]}
    # VM -> remote: the VM's TSO frames leave as UDP-tunnel GSO frames, as many and as many segments; what was
    # cut in software instead is counted as such.
    assert delta(acc1, acc0, "rx_gso_frames") > 100
    assert delta(und1, und0, "tx_tunnel_gso_frames") == pipe["hardware_tso"] > 100
    assert delta(acc1, acc0, "rx_gso_frames") == pipe["hardware_tso"] + pipe["frames_segmented"]
    assert delta(acc1, acc0, "rx_gso_segments") == delta(und1, und0, "tx_gso_segments") + pipe["segments_out"]
    # remote -> VM: the remote's tunnel GSO frames arrive whole and reach the VM whole (or merged by GRO).
    assert delta(und1, und0, "rx_tunnel_gso_frames") > 100
    assert delta(acc1, acc0, "tx_gso_frames") == pipe["large_frames_delivered"] + pipe["gro_frames"]
    assert pipe["large_frames_delivered"] >= delta(und1, und0, "rx_tunnel_gso_frames") - pipe["frames_segmented"]
    # Every frame read was forwarded or dropped for a reason; none was refused by a kernel.
    for c0, c1 in ((acc0, acc1), (und0, und1)):
        for key in c1:
            if key.startswith("rx_bad") or key.endswith("errors") or key in ("tx_bad_metadata", "rx_gso_without_csum",
                                                                             "rx_gso_type_mismatch", "rx_unsupported_gso"):
                assert delta(c1, c0, key) == 0, key
    assert delta(acc1, acc0, "rx_frames") == delta(stats1["totals"]["ports"][1]["counters"], stats0["totals"]["ports"][1]["counters"], "rx_packets")
    assert not {k: v for k, v in nonzero_drops(stats1).items() if k not in ("wrong_destination", "neighbor_unresolved")}
    # No mbuf is lost: at rest only the taps' read buffers are out of the pool.
    held = sum(p["tap"]["buffers_held"] for p in after.values())
    pool = bed.daemon.wait_for(lambda s: s["pools"][0]["in_use"] == held, timeout=10)["pools"][0]
    assert pool["in_use"] == held == 2 * 33


@pytest.mark.timeout(180)
def test_inner_tcp_over_ipv6_crosses_whole_both_ways(bed):
    # The overlay carries IPv6 too: the VM's and the remote's TCP/IPv6 TSO frames, over the IPv4 underlay.
    for ns, dev, address in ((VM, "vm0", "fd42::1/64"), (HV, "vx42", "fd42::2/64")):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", f"net.ipv6.conf.{dev}.disable_ipv6=0")
        sh("ip", "-n", ns, "-6", "addr", "add", address, "dev", dev, "nodad")
    sh("ip", "netns", "exec", VM, "ping", "-6", "-c", "2", "-W", "3", "fd42::2")
    errors = {ns: csum_errors(ns) for ns in (VM, HV)}
    before = bed.ports()
    out = iperf3(VM, HV, "fd42::2", "-t", "2")
    back = iperf3(VM, HV, "fd42::2", "-t", "2", "-R")
    assert out["end"]["sum_received"]["bytes"] > 5_000_000 and back["end"]["sum_received"]["bytes"] > 5_000_000
    assert {ns: csum_errors(ns) for ns in (VM, HV)} == errors
    after = bed.ports()
    acc0, acc1 = before["tapacc"]["tap"]["counters"], after["tapacc"]["tap"]["counters"]
    und0, und1 = before["tapund"]["tap"]["counters"], after["tapund"]["tap"]["counters"]
    assert delta(acc1, acc0, "rx_gso_frames") > 50 and delta(und1, und0, "tx_tunnel_gso_frames") > 50
    assert delta(und1, und0, "rx_tunnel_gso_frames") > 50 and delta(acc1, acc0, "tx_gso_frames") > 50


@pytest.mark.timeout(180)
@pytest.mark.parametrize("bed", [{"udp_tunnel_gso": False}], indirect=True, ids=["no-udp-tunnel-gso"])
def test_without_udp_tunnel_gso_the_underlay_falls_back_to_segments(bed):
    ports = bed.ports()
    assert "udp_tunnel_gso" not in ports["tapund"]["tap"]["offloads"]
    assert ports["tapund"]["tx_path"] == "hardware_checksum"
    errors = {ns: csum_errors(ns) for ns in (VM, HV)}
    stats0 = bed.daemon.stats()
    out = iperf3(VM, HV, "192.168.42.2", "-t", "2")
    back = iperf3(VM, HV, "192.168.42.2", "-t", "2", "-R")
    assert out["end"]["sum_received"]["bytes"] > 5_000_000 and back["end"]["sum_received"]["bytes"] > 5_000_000
    assert {ns: csum_errors(ns) for ns in (VM, HV)} == errors
    c = bed.ports()["tapund"]["tap"]["counters"]
    assert c["tx_tunnel_gso_frames"] == 0 and c["rx_tunnel_gso_frames"] == 0
    stats1 = bed.daemon.stats()
    assert stats1["totals"]["pipeline"]["segments_out"] - stats0["totals"]["pipeline"]["segments_out"] > 1000
    # The VM still takes large frames: vxland merges the remote's segments (GRO).
    assert bed.ports()["tapacc"]["tap"]["counters"]["tx_gso_frames"] > 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("which", ["access", "underlay"])
def test_a_tap_on_one_side_works_with_af_packet_on_the_other(tmp_path, which):
    bed = TapBed(tmp_path, which=which)
    try:
        ping(VM, "192.168.42.2")
        errors = {ns: csum_errors(ns) for ns in (VM, HV)}
        out = iperf3(VM, HV, "192.168.42.2", "-t", "2")
        back = iperf3(VM, HV, "192.168.42.2", "-t", "2", "-R")
        assert out["end"]["sum_received"]["bytes"] > 1_000_000 and back["end"]["sum_received"]["bytes"] > 1_000_000
        assert {ns: csum_errors(ns) for ns in (VM, HV)} == errors
    finally:
        bed.close()


@pytest.mark.timeout(120)
def test_a_deleted_tap_is_reported_and_the_other_port_goes_on(bed):
    ping(VM, "192.168.42.2")
    sh("ip", "-n", VM, "link", "del", "vm0")
    def gone():
        p = bed.ports()["tapacc"]
        return not p["link_up"] and p["tap"]["counters"]["interface_gone"] == 1
    deadline = time.time() + 10
    while not gone():
        assert time.time() < deadline, bed.ports()["tapacc"]
        time.sleep(0.1)
    # The underlay still works: the VTEP answers the remote's ping, and vxland says what happened.
    ping(HV, "10.99.0.1")
    assert bed.ports()["tapund"]["link_up"]
    deadline = time.time() + 10
    while "its tap interface (made as tapacc) is gone" not in bed.daemon.log_path.read_text():
        assert time.time() < deadline, bed.daemon.log_path.read_text()
        time.sleep(0.1)


def links(ns):
    return sh("ip", "-n", ns, "-o", "link", "show").stdout


@pytest.mark.timeout(120)
def test_taps_go_with_vxland_after_sigterm_sigkill_and_a_failed_start(tmp_path):
    ns = PREFIX + "life"
    sh("ip", "netns", "add", ns)
    config = ("underlay: { port: und, tap: { name: vxund }, ip: 10.99.0.1/24 }\n"
              "access: [ { port: acc, vni: 42, tap: { name: vxacc } } ]\nvnis: [ { vni: 42, flood: [10.99.0.2] } ]\n")
    try:
        # SIGKILL first: the second start (stopped with SIGTERM) reuses the names a killed vxland had.
        for how in (signal.SIGKILL, signal.SIGTERM):
            daemon = Vxland(tmp_path, EAL, config, netns=ns, name=f"life{int(how)}")
            assert "vxund" in links(ns) and "vxacc" in links(ns)
            daemon.process.send_signal(how)
            daemon.process.wait(timeout=20)
            daemon.stop()
            assert "vxund" not in links(ns) and "vxacc" not in links(ns), f"after {how.name}: {links(ns)}"
        # A start that fails half way (the access tap's name is taken) leaves no tap behind, and says why.
        sh("ip", "-n", ns, "link", "add", "vxacc", "type", "veth", "peer", "name", "vxpeer")
        (tmp_path / "fail.yaml").write_text(config)
        failed = subprocess.run(["ip", "netns", "exec", ns, str(VXLAND), *EAL,
                                 "--file-prefix", f"{PREFIX}fail", "--", "--config", str(tmp_path / "fail.yaml"),
                                 "--socket", str(tmp_path / "fail.sock")], capture_output=True, text=True, timeout=60)
        assert failed.returncode != 0
        assert "an interface named vxacc exists already" in failed.stdout + failed.stderr
        assert "vxund" not in links(ns)
    finally:
        sh("ip", "netns", "del", ns, check=False)
        sh("rm", "-rf", f"/var/run/dpdk/{PREFIX}fail", check=False)


@pytest.mark.timeout(120)
def test_changes_to_a_tap_are_checked_before_anything_is_detached(bed, tmp_path):
    running = bed.daemon.ctl("show", "config").stdout
    # A tap under a name that exists (lo): refused whole, the VM keeps its NIC.
    bad = tmp_path / "bad.yaml"
    bad.write_text(running.replace("{ port: tapacc, vni: 42", "{ port: acc2, vni: 42").replace("tap: { name: tapacc }", "tap: { name: lo }"))
    refused = bed.daemon.ctl("apply", str(bad), check=False)
    assert refused.returncode != 0 and "an interface named lo exists already" in refused.stderr, refused.stderr
    assert "vm0" in links(VM)
    ping(VM, "192.168.42.2")
    assert bed.daemon.ctl("show", "config").stdout == running
    # A tap's interface renamed in the file: the port is made again (in vxland's namespace), as the dry run says.
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(running.replace("tap: { name: tapacc }", "tap: { name: tapnew }"))
    plan = bed.daemon.ctl("apply", str(renamed), "--dry-run").stdout
    assert "detach port tapacc" in plan and "attach port tapacc" in plan, plan
    bed.daemon.ctl("apply", str(renamed))
    assert "tapnew" in links(DP)
    assert bed.ports()["tapacc"]["tap"]["interface"] == "tapnew"
    # The port renamed, its interface kept: the old tap goes first, so its interface's name is free again.
    moved = tmp_path / "moved.yaml"
    moved.write_text(renamed.read_text().replace("{ port: tapacc, vni: 42", "{ port: vmnew, vni: 42"))
    bed.daemon.ctl("apply", str(moved))
    assert "tapnew" in links(DP) and "vmnew" in bed.ports() and "tapacc" not in bed.ports()
    # A tap port made into a port of another kind under its name: refused before anything is detached.
    other = tmp_path / "other.yaml"
    other.write_text(moved.read_text().replace(", tap: { name: tapnew }", ""))
    refused = bed.daemon.ctl("apply", str(other), check=False)
    assert refused.returncode != 0 and "vmnew is vxland's tap port" in refused.stderr, refused.stderr
    assert "tapnew" in links(DP)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bed", [{"app_args": ["--idle-sleep-max-us", "500"]}], indirect=True, ids=["idle-sleep"])
def test_a_core_that_sleeps_when_idle_still_forwards_both_ways(bed):
    # Pings 0.3 s apart: the core is asleep when each arrives (it backs off after 1000 empty rounds).
    sh("ip", "netns", "exec", VM, "ping", "-c", "3", "-W", "2", "192.168.42.2")
    before = json.loads(bed.daemon.ctl("show", "cores", "--json").stdout)["cores"][0]
    ping(VM, "192.168.42.2", count=5)
    ping(HV, "192.168.42.1", count=5)
    after = json.loads(bed.daemon.ctl("show", "cores", "--json").stdout)["cores"][0]
    assert after["sleeps"] > before["sleeps"]
    errors = {ns: csum_errors(ns) for ns in (VM, HV)}
    out = iperf3(VM, HV, "192.168.42.2", "-t", "2")
    assert out["end"]["sum_received"]["bytes"] > 5_000_000
    assert {ns: csum_errors(ns) for ns in (VM, HV)} == errors


@pytest.mark.timeout(120)
def test_stats_clear_starts_the_tap_counters_from_zero(bed):
    ping(VM, "192.168.42.2")
    assert bed.ports()["tapacc"]["tap"]["counters"]["rx_frames"] > 0
    bed.daemon.ctl("stats", "clear")
    counters = bed.ports()["tapacc"]["tap"]["counters"]
    assert counters["rx_frames"] <= 2 and counters["tx_frames"] <= 2, counters     # an ARP refresh at most
    ping(VM, "192.168.42.2", count=3)
    assert bed.ports()["tapacc"]["tap"]["counters"]["rx_frames"] >= 3


@pytest.mark.timeout(120)
def test_a_tap_attached_and_detached_at_run_time(bed):
    # A second VM: a tap vxland makes on request, moved into a namespace of its own.
    vm2 = PREFIX + "vm2"
    sh("ip", "netns", "add", vm2)
    try:
        bed.daemon.ctl("port", "attach", "vm2", "--vni", "42", "--tap", "tapvm2")
        sh("ip", "-n", DP, "link", "set", "tapvm2", "netns", vm2)
        sh("ip", "-n", vm2, "link", "set", "tapvm2", "address", "02:00:00:00:42:11", "mtu", "1450", "up")
        sh("ip", "-n", vm2, "addr", "add", "192.168.42.11/24", "dev", "tapvm2")
        ping(vm2, "192.168.42.2")
        ping(vm2, "192.168.42.1")
        refused = bed.daemon.ctl("port", "attach", "vm3", "--vni", "42", "--tap", "tapvm2", check=False)
        assert refused.returncode != 0 and "tapvm2" in refused.stderr
        template = bed.daemon.ctl("port", "attach", "vm4", "--vni", "42", "--tap", "vm%d", check=False)
        assert template.returncode != 0 and "'%'" in template.stderr, template.stderr
        bed.daemon.ctl("port", "detach", "vm2")
        assert "tapvm2" not in links(vm2)
        assert "vm2" not in bed.ports()
        ping(VM, "192.168.42.2")
    finally:
        sh("ip", "netns", "del", vm2, check=False)
