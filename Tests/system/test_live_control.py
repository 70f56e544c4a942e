"""Run-time changes to a running vxland: `vxlanctl vni|flood|fdb|neighbor|port ...`, `apply FILE`, `show vnis`,
`show config` and SIGHUP.

Every change is checked three ways: what vxlanctl prints (and its exit status), what `show config` says afterwards
(byte for byte unchanged after a refusal), and what the dataplane does with frames (injected on veths in a network
namespace of the test's own, decoded with scapy). Every change made must be logged by vxland as a notice naming it.
The expected messages, plans and YAML are written out here by hand, from what the commands are documented to do.
"""
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
from scapy.all import IP, UDP, Ether, Raw
from scapy.layers.vxlan import VXLAN

from conftest import VXLANCTL, Vxland

REFUSED = "Error: vxland refused the request: "
OUR_MAC, OUR_IP = "02:00:00:00:00:01", "10.99.0.1"
NEIGHBOR_MACS = {f"10.99.0.{n}": f"02:00:00:00:00:0{n}" for n in range(2, 7)}

# ---------------------------------------------------------------------------------------------------------------
# vxland on net_null ports (nothing received): the commands, their answers and what show config says.

NULL_EAL = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci", "--vdev", "net_null0,no-rx=1", "--vdev", "net_null1,no-rx=1",
            "--vdev", "net_null2,no-rx=1", "--vdev", "net_null3,no-rx=1"]
# net_null3 exists in EAL but vxland was not given it: it is none of vxland's ports.
NULL_CONFIG = """
underlay: { port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
access:
  - { port: net_null1, vni: 42 }
  - { port: net_null2, vni: 43 }
vnis:
  - { vni: 42, flood: [10.99.0.2] }
  - { vni: 43, flood: [10.99.0.2, 10.99.0.3] }
  - { vni: 44 }
fdb:
  - { vni: 44, mac: "02:00:00:00:44:02", remote: 10.99.0.3 }
neighbors:
  - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
"""

# What show config prints for NULL_CONFIG: every setting written out, defaults included.
NULL_UNDERLAY = """# vxland running configuration
underlay:
  port: net_null0
  ip: 10.99.0.1/24
  mac: "02:00:00:00:00:01"
  mtu: 1500
  udp_port: 4789
  ttl: 64
  neighbor_timeout: 300
  strict: false
  verify_udp_checksum: false
  offloads: auto
"""
NULL_TABLES = """access:
  - { port: net_null1, vni: 42, offloads: auto }
  - { port: net_null2, vni: 43, offloads: auto }
vnis:
  - { vni: 42, flood: [10.99.0.2], learning: true, ageing: 300, max_learned: 0 }
  - { vni: 43, flood: [10.99.0.2, 10.99.0.3], learning: true, ageing: 300, max_learned: 0 }
  - { vni: 44, flood: [], learning: true, ageing: 300, max_learned: 0 }
fdb:
  - { vni: 44, mac: "02:00:00:00:44:02", remote: 10.99.0.3 }
neighbors:
  - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
"""
DEFAULT_RESOURCES = """resources:
  mbufs: 16383
  rx_descriptors: 1024
  tx_descriptors: 1024
  fdb_entries: 65536
  tunnels: 4096
  vnis: 4096
  ports: 16
"""


def show_config(daemon):
    result = daemon.ctl("show", "config", check=False)
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def done(daemon, *args, changes):
    """Runs a change that must succeed; vxlanctl prints what was done, one change a line."""
    result = daemon.ctl(*args, check=False)
    assert (result.returncode, result.stderr) == (0, ""), f"vxlanctl {' '.join(args)}: {result.stderr}"
    assert result.stdout == "done:\n" + "".join(f"  {c}\n" for c in changes), result.stdout
    return result


def refused(daemon, *args, message, status=1, prefix=REFUSED, exact=True):
    """Runs a change that must be refused with `message`, and checks that show config did not move a byte."""
    before = show_config(daemon)
    result = daemon.ctl(*args, check=False)
    assert result.returncode == status, f"vxlanctl {' '.join(args)}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    assert result.stdout == ""
    if exact:
        assert result.stderr == prefix + message + "\n", result.stderr
    else:
        assert result.stderr.startswith(prefix + message), result.stderr
    assert show_config(daemon) == before, f"vxlanctl {' '.join(args)} was refused, yet show config changed"
    return result


def log_lines(daemon, level):
    """vxland's log lines of `level` (vxland:[VXLANDaemon] messages only), without their time stamps."""
    pattern = re.compile(rf"^\S+ {level} vxland: \[VXLANDaemon\] (.*)$")
    return [m.group(1) for m in map(pattern.match, daemon.log_path.read_text().splitlines()) if m]


def change_notices(daemon):
    """The notices vxland logged for changes (not its start-up or signal notices)."""
    return [line for line in log_lines(daemon, "notice") if line.startswith(("vxlanctl", "SIGHUP"))]


def vnis(daemon, *extra):
    result = daemon.ctl("show", "vnis", "--json", *extra, check=False)
    assert result.returncode == 0, result.stderr
    return {v["vni"]: v for v in json.loads(result.stdout)["vnis"]}


def stopped_cleanly(daemon):
    status, log = daemon.stop()
    assert status == 0, log


@contextlib.contextmanager
def running(tmp_path, config=NULL_CONFIG, eal=NULL_EAL, name="vxland", netns=None):
    daemon = Vxland(tmp_path, eal, config, name=name, netns=netns)
    try:
        yield daemon
    finally:
        if daemon.process.poll() is None:
            stopped_cleanly(daemon)
        else:
            daemon.stop()


def test_show_config_is_the_file_with_every_default_written_out(tmp_path):
    with running(tmp_path) as daemon:
        assert show_config(daemon) == NULL_UNDERLAY + NULL_TABLES + DEFAULT_RESOURCES
        # --json: the same text, as the daemon's own answer.
        assert json.loads(daemon.ctl("show", "config", "--json").stdout) == {"yaml": show_config(daemon)}


def test_vni_add_and_del(tmp_path):
    # Sixteen VNIs at most (the least resources.vnis may be): three configured, thirteen free.
    with running(tmp_path, NULL_CONFIG + "resources: { vnis: 16 }\n") as daemon:
        done(daemon, "vni", "add", "500", changes=["vni add 500"])
        done(daemon, "vni", "add", "16777215", "--flood", "10.99.0.4,10.99.0.5", "--learning", "false", "--ageing", "60",
             "--max-learned", "100", "--allowed-remotes", "10.99.0.0/25,192.0.2.0/24",
             changes=["vni add 16777215 flood 10.99.0.4,10.99.0.5 learning false ageing 60 max_learned 100 "
                      "allowed_remotes [10.99.0.0/25,192.0.2.0/24]"])
        done(daemon, "vni", "add", "1", "--allowed-remotes", "", changes=["vni add 1 allowed_remotes []"])
        shown = vnis(daemon)
        assert sorted(shown) == [1, 42, 43, 44, 500, 16777215]
        assert shown[16777215] == {
            "vni": 16777215, "flood": ["10.99.0.4", "10.99.0.5"], "ports": [], "learning": False, "learned": 0,
            "max_learned": 100, "ageing_seconds": 60, "allowed_remotes": ["10.99.0.0/25", "192.0.2.0/24"],
            "counters": {"encap_packets": 0, "encap_bytes": 0, "decap_packets": 0, "decap_bytes": 0, "drops": 0}}
        assert (shown[500]["flood"], shown[500]["learning"], shown[500]["ageing_seconds"], shown[500]["max_learned"]) == ([], True, 300, 0)
        assert "allowed_remotes" not in shown[500], "no allow-list of its own and none on the underlay: anyone may send"
        assert shown[1]["allowed_remotes"] == [], "an empty allow-list: only the VNI's static remotes"
        assert show_config(daemon).endswith(
            "  - { vni: 44, flood: [], learning: true, ageing: 300, max_learned: 0 }\n"
            "  - { vni: 500, flood: [], learning: true, ageing: 300, max_learned: 0 }\n"
            "  - { vni: 16777215, flood: [10.99.0.4, 10.99.0.5], learning: false, ageing: 60, max_learned: 100, "
            "allowed_remotes: [10.99.0.0/25, 192.0.2.0/24] }\n"
            "  - { vni: 1, flood: [], learning: true, ageing: 300, max_learned: 0, allowed_remotes: [] }\n"
            "fdb:\n  - { vni: 44, mac: \"02:00:00:00:44:02\", remote: 10.99.0.3 }\n"
            "neighbors:\n  - { ip: 10.99.0.2, mac: \"02:00:00:00:00:02\" }\n  - { ip: 10.99.0.3, mac: \"02:00:00:00:00:03\" }\n"
            "resources:\n  mbufs: 16383\n  rx_descriptors: 1024\n  tx_descriptors: 1024\n  fdb_entries: 65536\n"
            "  tunnels: 4096\n  vnis: 16\n  ports: 16\n")

        refused(daemon, "vni", "add", "16777216", message="VNI 16777216 out of range (1-16777215)")
        refused(daemon, "vni", "add", "0", message="VNI 0 out of range (1-16777215)")
        refused(daemon, "vni", "add", "abc", message="vni: 'abc' is not a VNI (a number, 1-16777215)")
        refused(daemon, "vni", "add", "42", message="VNI 42 already exists")
        refused(daemon, "vni", "add", "600", "--flood", "10.1.2.3",
                message="remote 10.1.2.3 is not on the underlay subnet 10.99.0.1/24 and no underlay.gateway is configured")
        refused(daemon, "vni", "add", "600", "--flood", "10.99.0.1", message="10.99.0.1 is this VTEP's own address")
        refused(daemon, "vni", "add", "600", "--flood", "10.99.0.2,10.99.0.2",
                message="10.99.0.2 is listed twice in the flood list of VNI 600")
        refused(daemon, "vni", "add", "600", "--flood", "nowhere", message="flood: 'nowhere' is not an IPv4 or IPv6 address")
        refused(daemon, "vni", "add", "600", "--learning", "maybe", message="learning: expected true or false, got 'maybe'")
        refused(daemon, "vni", "add", "600", "--ageing", "5", message="ageing: expected a whole number from 10 to 1000000, got '5'")
        refused(daemon, "vni", "add", "600", "--max-learned", "many",
                message="max_learned: expected a whole number from 0 to 16777215, got 'many'")
        refused(daemon, "vni", "add", "600", "--allowed-remotes", "224.0.0.0/4",
                message="allowed_remotes: 224.0.0.0/4 is multicast, never the source of a packet")
        refused(daemon, "vni", "del", "42", message="VNI 42 is mapped to access port(s) net_null1; detach or remap them first")
        refused(daemon, "vni", "del", "43", message="VNI 43 is mapped to access port(s) net_null2; detach or remap them first")
        refused(daemon, "vni", "del", "99", message="VNI 99 does not exist")
        refused(daemon, "vni", "del", "16777216", message="VNI 16777216 out of range (1-16777215)")

        # resources.vnis: 6 in use, 10 more fit, the 17th is refused naming the resource.
        for vni in range(601, 611):
            done(daemon, "vni", "add", str(vni), changes=[f"vni add {vni}"])
        refused(daemon, "vni", "add", "611", message="cannot add VNI 611: all 16 VNIs (resources.vnis) are in use")

        # A VNI with static entries goes with them (each listed), and nothing is left of it.
        done(daemon, "vni", "del", "44", changes=["fdb del vni 44 02:00:00:00:44:02", "vni del 44"])
        done(daemon, "vni", "del", "16777215", changes=["vni del 16777215"])
        assert 44 not in vnis(daemon) and 16777215 not in vnis(daemon)
        assert "vni: 44" not in show_config(daemon) and "fdb: []\n" in show_config(daemon)
        assert json.loads(daemon.ctl("show", "fdb", "--json").stdout)["entries"] == []
        # Its slot is free again.
        done(daemon, "vni", "add", "611", changes=["vni add 611"])

        assert change_notices(daemon) == [
            "vxlanctl: vni add 500", "vxlanctl: vni add 16777215 flood 10.99.0.4,10.99.0.5 learning false ageing 60 "
            "max_learned 100 allowed_remotes [10.99.0.0/25,192.0.2.0/24]", "vxlanctl: vni add 1 allowed_remotes []",
            *[f"vxlanctl: vni add {v}" for v in range(601, 611)],
            "vxlanctl: fdb del vni 44 02:00:00:00:44:02", "vxlanctl: vni del 44", "vxlanctl: vni del 16777215",
            "vxlanctl: vni add 611"]
        # Refusals that reached the tables are logged too, with the reason.
        info = log_lines(daemon, "info")
        assert "vxlanctl: 'vni add 42' refused: VNI 42 already exists" in info
        assert "vxlanctl: 'vni add 611' refused: cannot add VNI 611: all 16 VNIs (resources.vnis) are in use" in info


def test_flood_add_and_del(tmp_path):
    with running(tmp_path) as daemon:
        done(daemon, "flood", "add", "42", "10.99.0.3", "10.99.0.4", changes=["vni 42: flood add 10.99.0.3,10.99.0.4"])
        done(daemon, "flood", "add", "44", "10.99.0.5", changes=["vni 44: flood add 10.99.0.5"])
        done(daemon, "flood", "del", "43", "10.99.0.2", changes=["vni 43: flood del 10.99.0.2"])
        done(daemon, "flood", "del", "42", "10.99.0.2", "10.99.0.4", changes=["vni 42: flood del 10.99.0.2,10.99.0.4"])
        shown = vnis(daemon)
        assert [shown[v]["flood"] for v in (42, 43, 44)] == [["10.99.0.3"], ["10.99.0.3"], ["10.99.0.5"]]
        assert ("  - { vni: 42, flood: [10.99.0.3], learning: true, ageing: 300, max_learned: 0 }\n"
                "  - { vni: 43, flood: [10.99.0.3], learning: true, ageing: 300, max_learned: 0 }\n"
                "  - { vni: 44, flood: [10.99.0.5], learning: true, ageing: 300, max_learned: 0 }\n") in show_config(daemon)

        refused(daemon, "flood", "add", "42", "10.1.2.3",
                message="remote 10.1.2.3 is not on the underlay subnet 10.99.0.1/24 and no underlay.gateway is configured")
        refused(daemon, "flood", "add", "42", "10.99.0.1", message="10.99.0.1 is this VTEP's own address")
        refused(daemon, "flood", "add", "42", "10.99.0.255",
                message="10.99.0.255 is the broadcast address of the underlay subnet 10.99.0.0/24")
        refused(daemon, "flood", "add", "42", "239.1.1.1",
                message="239.1.1.1 is not a unicast address (multicast underlays are not supported)")
        refused(daemon, "flood", "add", "42", "10.99.0.3", message="10.99.0.3 is already in the flood list of VNI 42")
        # Two remotes, the second already there: neither is added.
        refused(daemon, "flood", "add", "42", "10.99.0.6", "10.99.0.3", message="10.99.0.3 is already in the flood list of VNI 42")
        refused(daemon, "flood", "add", "42", "10.99.0.6", "10.99.0.6", message="remotes: an address is given twice")
        refused(daemon, "flood", "add", "42", "banana", message="remotes: 'banana' is not an IPv4 or IPv6 address")
        refused(daemon, "flood", "add", "99", "10.99.0.6", message="VNI 99 does not exist")
        refused(daemon, "flood", "add", "abc", "10.99.0.6", message="vni: 'abc' is not a VNI (a number, 1-16777215)")
        refused(daemon, "flood", "del", "42", "10.99.0.9", message="10.99.0.9 is not in the flood list of VNI 42 (10.99.0.3)")
        refused(daemon, "flood", "del", "42", "10.99.0.3", "10.99.0.9",
                message="10.99.0.9 is not in the flood list of VNI 42 (10.99.0.3)")
        done(daemon, "flood", "del", "44", "10.99.0.5", changes=["vni 44: flood del 10.99.0.5"])
        refused(daemon, "flood", "del", "44", "10.99.0.5", message="10.99.0.5 is not in the flood list of VNI 44 (it is empty)")
        refused(daemon, "flood", "del", "99", "10.99.0.5", message="VNI 99 does not exist")
        # No remote at all is a usage error of vxlanctl itself.
        missing = daemon.ctl("flood", "add", "42", check=False)
        assert missing.returncode == 64 and "Missing expected argument '<remotes> ...'" in missing.stderr

        assert change_notices(daemon) == [
            "vxlanctl: vni 42: flood add 10.99.0.3,10.99.0.4", "vxlanctl: vni 44: flood add 10.99.0.5",
            "vxlanctl: vni 43: flood del 10.99.0.2", "vxlanctl: vni 42: flood del 10.99.0.2,10.99.0.4",
            "vxlanctl: vni 44: flood del 10.99.0.5"]


def test_fdb_add_del_and_flush(tmp_path):
    with running(tmp_path) as daemon:
        done(daemon, "fdb", "add", "42", "02:00:00:00:42:09", "10.99.0.2", changes=["fdb add vni 42 02:00:00:00:42:09 remote 10.99.0.2"])
        # Any unicast remote on the subnet, in the flood list or not.
        done(daemon, "fdb", "add", "43", "02:00:00:00:43:09", "10.99.0.5", changes=["fdb add vni 43 02:00:00:00:43:09 remote 10.99.0.5"])
        entries = json.loads(daemon.ctl("show", "fdb", "--json").stdout)["entries"]
        assert sorted((e["vni"], e["mac"], e["destination"], e["type"]) for e in entries) == [
            (42, "02:00:00:00:42:09", "remote 10.99.0.2", "static"), (43, "02:00:00:00:43:09", "remote 10.99.0.5", "static"),
            (44, "02:00:00:00:44:02", "remote 10.99.0.3", "static")]
        assert ("fdb:\n"
                "  - { vni: 44, mac: \"02:00:00:00:44:02\", remote: 10.99.0.3 }\n"
                "  - { vni: 42, mac: \"02:00:00:00:42:09\", remote: 10.99.0.2 }\n"
                "  - { vni: 43, mac: \"02:00:00:00:43:09\", remote: 10.99.0.5 }\n"
                "neighbors:\n") in show_config(daemon)

        refused(daemon, "fdb", "add", "42", "01:00:5e:00:00:01", "10.99.0.2",
                message="01:00:5e:00:00:01 is not a unicast address (broadcast and multicast follow the flood list)")
        refused(daemon, "fdb", "add", "42", "ff:ff:ff:ff:ff:ff", "10.99.0.2",
                message="ff:ff:ff:ff:ff:ff is not a unicast address (broadcast and multicast follow the flood list)")
        refused(daemon, "fdb", "add", "99", "02:00:00:00:99:01", "10.99.0.2", message="VNI 99 does not exist")
        refused(daemon, "fdb", "add", "42", "02:00:00:00:42:09", "10.99.0.2",
                message="02:00:00:00:42:09 already has a static entry in VNI 42 (to 10.99.0.2); delete it first")
        refused(daemon, "fdb", "add", "42", "02:00:00:00:42:09", "10.99.0.3",
                message="02:00:00:00:42:09 already has a static entry in VNI 42 (to 10.99.0.2); delete it first")
        refused(daemon, "fdb", "add", "42", "02:00:00:00:42:0a", "10.1.2.3",
                message="remote 10.1.2.3 is not on the underlay subnet 10.99.0.1/24 and no underlay.gateway is configured")
        refused(daemon, "fdb", "add", "42", "02:00:00:00:42:0a", "10.99.0.1", message="10.99.0.1 is this VTEP's own address")
        refused(daemon, "fdb", "add", "42", "02:00:00:00:42", "10.99.0.2",
                message="mac: '02:00:00:00:42' is not a MAC address (such as 02:00:00:00:00:01)")
        refused(daemon, "fdb", "add", "42", "02:00:00:00:42:0a", "ten", message="remote: 'ten' is not an IPv4 or IPv6 address")
        refused(daemon, "fdb", "del", "42", "02:00:00:00:42:0b",
                message="02:00:00:00:42:0b has no static entry in VNI 42 (learned entries go with fdb flush)")
        refused(daemon, "fdb", "del", "43", "02:00:00:00:42:09",
                message="02:00:00:00:42:09 has no static entry in VNI 43 (learned entries go with fdb flush)")
        refused(daemon, "fdb", "del", "99", "02:00:00:00:42:09", message="VNI 99 does not exist")
        refused(daemon, "fdb", "flush", "--vni", "99", message="VNI 99 does not exist")
        refused(daemon, "fdb", "flush", "--vni", "0", message="VNI 0 out of range (1-16777215)")

        done(daemon, "fdb", "del", "42", "02:00:00:00:42:09", changes=["fdb del vni 42 02:00:00:00:42:09"])
        # Nothing is learned on net_null ports: a flush removes nothing, static entries stay.
        done(daemon, "fdb", "flush", changes=["fdb flush all: 0 learned entries removed"])
        done(daemon, "fdb", "flush", "--vni", "43", changes=["fdb flush vni 43: 0 learned entries removed"])
        entries = json.loads(daemon.ctl("show", "fdb", "--json").stdout)["entries"]
        assert sorted((e["vni"], e["mac"]) for e in entries) == [(43, "02:00:00:00:43:09"), (44, "02:00:00:00:44:02")]
        # Deleted, it may be added again, to another remote.
        done(daemon, "fdb", "add", "42", "02:00:00:00:42:09", "10.99.0.3", changes=["fdb add vni 42 02:00:00:00:42:09 remote 10.99.0.3"])

        assert change_notices(daemon) == [
            "vxlanctl: fdb add vni 42 02:00:00:00:42:09 remote 10.99.0.2", "vxlanctl: fdb add vni 43 02:00:00:00:43:09 remote 10.99.0.5",
            "vxlanctl: fdb del vni 42 02:00:00:00:42:09", "vxlanctl: fdb flush (every VNI): 0 learned entries removed",
            "vxlanctl: fdb flush vni 43: 0 learned entries removed", "vxlanctl: fdb add vni 42 02:00:00:00:42:09 remote 10.99.0.3"]


def test_tunnel_capacity_is_all_or_nothing(tmp_path):
    # Tunnels are per VNI and remote: 42->.2, 43->.2, 43->.3 and the static entry 44->.3 hold 4 of the 16.
    with running(tmp_path, NULL_CONFIG + "resources: { tunnels: 16 }\n") as daemon:
        twelve = [f"10.99.0.{n}" for n in range(10, 22)]
        refused(daemon, "flood", "add", "44", *twelve, "10.99.0.22",
                message="cannot create the tunnel to 10.99.0.22 in VNI 44: all 16 tunnels (resources.tunnels) are in use")
        refused(daemon, "vni", "add", "45", "--flood", ",".join(twelve + ["10.99.0.22"]),
                message="cannot create the tunnel to 10.99.0.22 in VNI 45: all 16 tunnels (resources.tunnels) are in use")
        done(daemon, "flood", "add", "44", *twelve, changes=[f"vni 44: flood add {','.join(twelve)}"])
        refused(daemon, "fdb", "add", "42", "02:00:00:00:42:09", "10.99.0.3",
                message="cannot create the tunnel to 10.99.0.3 in VNI 42: all 16 tunnels (resources.tunnels) are in use")
        # A static entry to a remote the VNI already has a tunnel to takes none.
        done(daemon, "fdb", "add", "44", "02:00:00:00:44:09", "10.99.0.10", changes=["fdb add vni 44 02:00:00:00:44:09 remote 10.99.0.10"])
        # Given back, they are there for another VNI.
        done(daemon, "flood", "del", "44", *twelve[1:], changes=[f"vni 44: flood del {','.join(twelve[1:])}"])
        done(daemon, "vni", "add", "45", "--flood", ",".join(twelve[1:]), changes=[f"vni add 45 flood {','.join(twelve[1:])}"])
        refused(daemon, "vni", "add", "46", "--flood", "10.99.0.2",
                message="cannot create the tunnel to 10.99.0.2 in VNI 46: all 16 tunnels (resources.tunnels) are in use")


def test_neighbor_add_and_del(tmp_path):
    with running(tmp_path) as daemon:
        done(daemon, "neighbor", "add", "10.99.0.4", "02:00:00:00:00:04", changes=["neighbor add 10.99.0.4 02:00:00:00:00:04"])
        done(daemon, "neighbor", "del", "10.99.0.2", changes=["neighbor del 10.99.0.2"])
        neighbors = {n["ip"]: n for n in json.loads(daemon.ctl("show", "neighbors", "--json").stdout)["neighbors"]}
        assert (neighbors["10.99.0.4"]["state"], neighbors["10.99.0.4"]["mac"]) == ("permanent", "02:00:00:00:00:04")
        # 10.99.0.2 is still a flood remote: it is resolved by ARP now, no longer permanent.
        assert neighbors["10.99.0.2"]["state"] != "permanent"
        assert ("neighbors:\n  - { ip: 10.99.0.3, mac: \"02:00:00:00:00:03\" }\n"
                "  - { ip: 10.99.0.4, mac: \"02:00:00:00:00:04\" }\nresources:\n") in show_config(daemon)

        refused(daemon, "neighbor", "add", "10.1.2.3", "02:00:00:00:00:09", message="10.1.2.3 is not on an underlay subnet of this VTEP")
        refused(daemon, "neighbor", "add", "10.99.0.3", "02:00:00:00:00:09",
                message="10.99.0.3 already has a static neighbor entry (02:00:00:00:00:03); delete it first")
        refused(daemon, "neighbor", "add", "10.99.0.1", "02:00:00:00:00:09", message="10.99.0.1 is this VTEP's own address")
        refused(daemon, "neighbor", "add", "10.99.0.9", "ff:ff:ff:ff:ff:ff", message="ff:ff:ff:ff:ff:ff is not a unicast address")
        refused(daemon, "neighbor", "add", "10.99.0.9", "00:00:00:00:00:00", message="00:00:00:00:00:00 is not a unicast address")
        refused(daemon, "neighbor", "add", "10.99.0.9", "nomac", message="mac: 'nomac' is not a MAC address (such as 02:00:00:00:00:01)")
        refused(daemon, "neighbor", "del", "10.99.0.9", message="10.99.0.9 has no static neighbor entry")
        refused(daemon, "neighbor", "del", "10.99.0.2", message="10.99.0.2 has no static neighbor entry")
        refused(daemon, "neighbor", "del", "here", message="ip: 'here' is not an IPv4 or IPv6 address")

        assert change_notices(daemon) == ["vxlanctl: neighbor add 10.99.0.4 02:00:00:00:00:04", "vxlanctl: neighbor del 10.99.0.2"]


def test_port_attach_and_detach(tmp_path):
    with running(tmp_path) as daemon:
        refused(daemon, "port", "attach", "net_null7", "--vni", "42",
                message="port net_null7 not found; ports: net_null0, net_null1, net_null2; not in use: net_null3")
        refused(daemon, "port", "attach", "net_vhost5", "--vni", "42",
                message="net_vhost5 is a vhost-user port name: give its socket (vhost) for vxland to create it")
        # An EAL port vxland does not poll yet is added while the others forward, and stays vxland's once detached.
        done(daemon, "port", "attach", "net_null3", "--vni", "42", changes=["attach port net_null3 vni 42"])
        assert vnis(daemon)[42]["ports"] == ["net_null1", "net_null3"]
        done(daemon, "port", "detach", "net_null3", changes=["detach port net_null3"])
        assert vnis(daemon)[42]["ports"] == ["net_null1"]
        refused(daemon, "port", "attach", "net_null1", "--vni", "43",
                message="port net_null1 is already attached (vni 42); detach it first")
        refused(daemon, "port", "attach", "net_null0", "--vni", "42", message="net_null0 is the underlay port")
        refused(daemon, "port", "detach", "net_null3", message="port net_null3 is not attached; attached: net_null1, net_null2")
        refused(daemon, "port", "detach", "net_null0", message="port net_null0 is not attached; attached: net_null1, net_null2")

        done(daemon, "port", "detach", "net_null2", changes=["detach port net_null2"])
        assert vnis(daemon)[43]["ports"] == [] and vnis(daemon)[42]["ports"] == ["net_null1"]
        assert "  - { port: net_null2" not in show_config(daemon)
        ports = {p["name"]: p for p in json.loads(daemon.ctl("show", "ports", "--json").stdout)["ports"]}
        assert set(ports) == {"net_null0", "net_null1", "net_null2", "net_null3"}, "a detached port is still vxland's"
        assert (ports["net_null2"]["role"], ports["net_null3"]["role"]) == ("detached", "detached")

        refused(daemon, "port", "detach", "net_null2", message="port net_null2 is not attached; attached: net_null1")
        refused(daemon, "port", "attach", "net_null2", "--vni", "99", message="VNI 99 does not exist")
        refused(daemon, "port", "attach", "net_null2", "--vlans", "10=42,20=99", message="VLAN 20: VNI 99 does not exist")
        refused(daemon, "port", "attach", "net_null2", message="give vni (an untagged port) or vlans (VLAN=VNI,...)")
        refused(daemon, "port", "attach", "net_null2", "--vni", "42", "--vlans", "10=43",
                message="give either vni (an untagged port) or vlans (a tagged port), not both")
        refused(daemon, "port", "attach", "net_null2", "--vlans", "4095=42", message="vlans: VLAN 4095 out of range (1-4094)")
        refused(daemon, "port", "attach", "net_null2", "--vlans", "10=42,10=43", message="vlans: VLAN 10 is mapped twice")
        refused(daemon, "port", "attach", "net_null2", "--vlans", "10", message="vlans: '10' is not VLAN=VNI (such as 10=5000)")
        refused(daemon, "port", "attach", "net_null2", "--vlans", "10=16777216",
                message="vlans: VLAN 10: VNI '16777216' out of range (1-16777215)")
        refused(daemon, "port", "attach", "net_null2", "--vni", "16777216", message="VNI 16777216 out of range (1-16777215)")

        # A port may join another VNI than before, untagged, and then tagged.
        done(daemon, "port", "attach", "net_null2", "--vni", "44", changes=["attach port net_null2 vni 44"])
        assert vnis(daemon)[44]["ports"] == ["net_null2"] and vnis(daemon)[43]["ports"] == []
        assert "  - { port: net_null2, vni: 44, offloads: auto }\n" in show_config(daemon)
        # ... which makes VNI 43 free to go, and 44 bound.
        done(daemon, "vni", "del", "43", changes=["vni del 43"])
        refused(daemon, "vni", "del", "44", message="VNI 44 is mapped to access port(s) net_null2; detach or remap them first")
        done(daemon, "port", "detach", "net_null2", changes=["detach port net_null2"])
        done(daemon, "port", "attach", "net_null2", "--vlans", "10=42,20=44", changes=["attach port net_null2 vlans 10=42,20=44"])
        shown = vnis(daemon)
        assert shown[42]["ports"] == ["net_null1", "net_null2 vlan 10"] and shown[44]["ports"] == ["net_null2 vlan 20"]
        assert ("access:\n  - { port: net_null1, vni: 42, offloads: auto }\n"
                "  - { port: net_null2, vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 44 } ], offloads: auto }\n") in show_config(daemon)
        refused(daemon, "port", "attach", "net_null2", "--vni", "42",
                message="port net_null2 is already attached (vlans 10=42,20=44); detach it first")
        refused(daemon, "vni", "del", "44", message="VNI 44 is mapped to access port(s) net_null2; detach or remap them first")
        # Every port detached: an empty access list.
        done(daemon, "port", "detach", "net_null1", changes=["detach port net_null1"])
        done(daemon, "port", "detach", "net_null2", changes=["detach port net_null2"])
        assert "access: []\n" in show_config(daemon)
        refused(daemon, "port", "detach", "net_null1", message="port net_null1 is not attached; attached: none")

        assert change_notices(daemon) == [
            "vxlanctl: attach port net_null3 vni 42", "vxlanctl: detach port net_null3",
            "vxlanctl: detach port net_null2", "vxlanctl: attach port net_null2 vni 44", "vxlanctl: vni del 43",
            "vxlanctl: detach port net_null2", "vxlanctl: attach port net_null2 vlans 10=42,20=44",
            "vxlanctl: detach port net_null1", "vxlanctl: detach port net_null2"]


def test_show_vnis(tmp_path):
    with running(tmp_path) as daemon:
        table = daemon.ctl("show", "vnis").stdout.splitlines()
        assert table[0].split() == ["VNI", "PORTS", "FLOOD", "LEARNING", "LEARNED", "ENCAP", "PKTS", "ENCAP", "BYTES",
                                    "DECAP", "PKTS", "DECAP", "BYTES", "DROPS"]
        assert [row.split() for row in table[1:4]] == [
            ["42", "net_null1", "10.99.0.2", "on,", "300s", "0", "0", "0", "0", "0", "0"],
            ["43", "net_null2", "10.99.0.2,10.99.0.3", "on,", "300s", "0", "0", "0", "0", "0", "0"],
            ["44", "-", "-", "on,", "300s", "0", "0", "0", "0", "0", "0"]]
        assert table[4] == "3 VNI(s) of at most 4096"
        only = json.loads(daemon.ctl("show", "vnis", "--vni", "43", "--json").stdout)
        assert [v["vni"] for v in only["vnis"]] == [43] and only["capacity"] == 4096
        assert only["vnis"][0]["ports"] == ["net_null2"] and only["vnis"][0]["flood"] == ["10.99.0.2", "10.99.0.3"]
        for vni, message in (("99", "VNI 99 does not exist"), ("abc", "vni: 'abc' is not a VNI (a number, 1-16777215)"),
                             ("16777216", "VNI 16777216 out of range (1-16777215)")):
            result = daemon.ctl("show", "vnis", "--vni", vni, check=False)
            assert (result.returncode, result.stdout, result.stderr) == (1, "", REFUSED + message + "\n")


def test_apply_refusals_change_nothing(tmp_path):
    with running(tmp_path) as daemon:
        original = show_config(daemon)
        missing = tmp_path / "missing.yaml"
        refused(daemon, "apply", str(missing), message=f"cannot read {missing}", prefix="Error: ")
        refused(daemon, "apply", str(missing), "--dry-run", message=f"cannot read {missing}", prefix="Error: ")

        typo = tmp_path / "typo.yaml"
        typo.write_text(NULL_CONFIG.replace("  - { vni: 44 }", "  - { vni: 44, flod: [10.99.0.3] }"))
        refused(daemon, "apply", str(typo), message=f"{typo}: vnis[2].flod (line 9): unknown key (expected one of: vni, flood, "
                "learning, ageing, max_learned, allowed_remotes)")
        bad_value = tmp_path / "bad-value.yaml"
        bad_value.write_text(NULL_CONFIG.replace("  - { vni: 44 }", "  - { vni: 44, ageing: 1 }"))
        refused(daemon, "apply", str(bad_value), message=f"{bad_value}: vnis[2].ageing (line 9): ", exact=False)
        syntax = tmp_path / "syntax.yaml"
        syntax.write_text(NULL_CONFIG.replace("  - { vni: 44 }", "  - { vni: 44"))
        result = refused(daemon, "apply", str(syntax), message=f"{syntax}: configuration: not valid YAML or JSON: ", exact=False)
        assert "line 9" in result.stderr, "a YAML error names the line"

        # What needs a restart is refused whole, naming the key, with a dry run too. The plan's other changes
        # (the flood remote) are not made either.
        for name, edit, key in (
                ("ip", lambda t: t.replace("ip: 10.99.0.1/24", "ip: 10.99.0.7/24"), "underlay.ip"),
                ("mac", lambda t: t.replace('mac: "02:00:00:00:00:01" }', 'mac: "02:00:00:00:00:07" }'), "underlay.mac"),
                ("mtu", lambda t: t.replace('"02:00:00:00:00:01" }', '"02:00:00:00:00:01", mtu: 9000 }'), "underlay.mtu"),
                ("port", lambda t: t.replace("port: net_null0", "port: net_null3"), "underlay.port (net_null0 -> net_null3)"),
                ("resources", lambda t: t + "resources: { fdb_entries: 4096 }\n", "resources")):
            path = tmp_path / f"restart-{name}.yaml"
            path.write_text(edit(NULL_CONFIG).replace("  - { vni: 44 }", "  - { vni: 44, flood: [10.99.0.4] }"))
            for dry in ((), ("--dry-run",)):
                refused(daemon, "apply", str(path), *dry,
                        message=f"{path} changes what needs vxland restarted: {key}; nothing was changed")
        both = tmp_path / "both.yaml"
        both.write_text(NULL_CONFIG.replace("ip: 10.99.0.1/24", "ip: 10.99.0.7/24") + "resources: { vnis: 64 }\n")
        refused(daemon, "apply", str(both), message=f"{both} changes what needs vxland restarted: underlay.ip; resources; nothing was changed")

        assert show_config(daemon) == original
        assert change_notices(daemon) == [], "a refused apply changes nothing, so it logs no change"
        # The file it started from: nothing to change, and said so.
        result = daemon.ctl("apply", str(daemon.config))
        assert result.stdout == "nothing to change\n"
        assert f"vxlanctl apply {daemon.config}: {daemon.config} matches the running configuration; nothing to change" in log_lines(daemon, "info")


def test_apply_dry_run_then_apply(tmp_path):
    with running(tmp_path) as daemon:
        original = show_config(daemon)
        target = tmp_path / "target.yaml"
        target.write_text("""
underlay: { port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
access:
  - { port: net_null1, vni: 42 }
  - { port: net_null2, vlans: [ { vlan: 7, vni: 45 } ] }
vnis:
  - { vni: 42, flood: [10.99.0.2, 10.99.0.4], learning: false }
  - { vni: 45, flood: [10.99.0.3] }
fdb:
  - { vni: 45, mac: "02:00:00:00:45:02", remote: 10.99.0.3 }
neighbors:
  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
  - { ip: 10.99.0.4, mac: "02:00:00:00:00:04" }
""")
        # net_null2 only moves to other VNIs: unmapped first and mapped last, the port itself untouched.
        plan = ["unmap port net_null2", "fdb del vni 44 02:00:00:00:44:02", "vni del 43", "vni del 44",
                "neighbor del 10.99.0.2", "neighbor add 10.99.0.4 02:00:00:00:00:04", "vni add 45 flood 10.99.0.3",
                "vni 42: flood add 10.99.0.4; learning true -> false",
                "fdb add vni 45 02:00:00:00:45:02 remote 10.99.0.3", "map port net_null2 vlans 7=45"]
        dry = daemon.ctl("apply", str(target), "--dry-run")
        assert dry.stdout == "would do (dry run):\n" + "".join(f"  {c}\n" for c in plan)
        assert json.loads(daemon.ctl("apply", str(target), "--dry-run", "--json").stdout) == {"applied": False, "changes": plan}
        assert show_config(daemon) == original, "a dry run changes nothing"
        assert change_notices(daemon) == []

        applied = daemon.ctl("apply", str(target))
        assert applied.stdout == "done:\n" + "".join(f"  {c}\n" for c in plan)
        assert show_config(daemon) == NULL_UNDERLAY + """access:
  - { port: net_null1, vni: 42, offloads: auto }
  - { port: net_null2, vlans: [ { vlan: 7, vni: 45 } ], offloads: auto }
vnis:
  - { vni: 42, flood: [10.99.0.2, 10.99.0.4], learning: false, ageing: 300, max_learned: 0 }
  - { vni: 45, flood: [10.99.0.3], learning: true, ageing: 300, max_learned: 0 }
fdb:
  - { vni: 45, mac: "02:00:00:00:45:02", remote: 10.99.0.3 }
neighbors:
  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
  - { ip: 10.99.0.4, mac: "02:00:00:00:00:04" }
""" + DEFAULT_RESOURCES
        assert daemon.ctl("apply", str(target)).stdout == "nothing to change\n"
        assert change_notices(daemon) == [f"vxlanctl apply {target}: {c}" for c in plan]
        # And back to the file it started from: the same configuration (a static neighbor added again is listed
        # after the ones that stayed).
        back = daemon.ctl("apply", str(daemon.config))
        assert back.stdout == ("done:\n  unmap port net_null2\n  fdb del vni 45 02:00:00:00:45:02\n  vni del 45\n"
                               "  neighbor del 10.99.0.4\n  neighbor add 10.99.0.2 02:00:00:00:00:02\n  vni add 43 flood 10.99.0.2,10.99.0.3\n"
                               "  vni add 44\n  vni 42: flood del 10.99.0.4; learning false -> true\n"
                               "  fdb add vni 44 02:00:00:00:44:02 remote 10.99.0.3\n  map port net_null2 vni 43\n")
        assert sorted(show_config(daemon).splitlines()) == sorted(original.splitlines())
        assert daemon.ctl("apply", str(daemon.config)).stdout == "nothing to change\n"
        # A relative path is read from vxlanctl's directory, not vxland's.
        relative = subprocess.run([str(VXLANCTL), "apply", target.name,
                                   "--dry-run", "--socket", str(daemon.socket)], cwd=tmp_path, capture_output=True, text=True, timeout=10)
        assert relative.returncode == 0 and relative.stdout == "would do (dry run):\n" + "".join(f"  {c}\n" for c in plan)


def test_apply_changes_settings_in_place(tmp_path):
    """A VNI's flood order and settings change in place: the VNI is not removed and added again."""
    with running(tmp_path) as daemon:
        target = tmp_path / "target.yaml"
        target.write_text(NULL_CONFIG.replace("  - { vni: 43, flood: [10.99.0.2, 10.99.0.3] }",
                                              "  - { vni: 43, flood: [10.99.0.3, 10.99.0.2], ageing: 30, max_learned: 9, "
                                              "allowed_remotes: [10.99.0.0/28] }"))
        change = "vni 43: flood list reordered; ageing 300 -> 30; max_learned 0 -> 9; allowed_remotes none -> [10.99.0.0/28]"
        assert daemon.ctl("apply", str(target)).stdout == f"done:\n  {change}\n"
        shown = vnis(daemon)[43]
        assert (shown["flood"], shown["ageing_seconds"], shown["max_learned"], shown["allowed_remotes"], shown["ports"]) == (
            ["10.99.0.3", "10.99.0.2"], 30, 9, ["10.99.0.0/28"], ["net_null2"])
        assert ("  - { vni: 43, flood: [10.99.0.3, 10.99.0.2], learning: true, ageing: 30, max_learned: 9, "
                "allowed_remotes: [10.99.0.0/28] }\n") in show_config(daemon)
        assert change_notices(daemon) == [f"vxlanctl apply {target}: {change}"]
        assert daemon.ctl("apply", str(target)).stdout == "nothing to change\n"


def test_refused_vni_del_keeps_the_fdb_list_in_order(tmp_path):
    config = NULL_CONFIG.replace("fdb:\n", 'fdb:\n  - { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 }\n')
    with running(tmp_path, config) as daemon:
        refused(daemon, "vni", "del", "42", message="VNI 42 is mapped to access port(s) net_null1; detach or remap them first")


def test_apply_refused_part_way_leaves_show_config_as_it_was(tmp_path):
    with running(tmp_path) as daemon:
        target = tmp_path / "target.yaml"
        target.write_text(NULL_CONFIG.replace("  - { vni: 43, flood: [10.99.0.2, 10.99.0.3] }\n", "")
                          .replace("  - { port: net_null2, vni: 43 }", "  - { port: net_null7, vni: 42 }")
                          .replace('  - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }\n', ""))
        dry = daemon.ctl("apply", str(target), "--dry-run")
        assert dry.stdout == ("would do (dry run):\n  detach port net_null2\n  vni del 43\n  neighbor del 10.99.0.2\n"
                              "  attach port net_null7 vni 42\n")
        refused(daemon, "apply", str(target), message="port net_null7 not found; ports: net_null0, net_null1, net_null2; not in use: net_null3")


def test_port_detach_by_id(tmp_path):
    with running(tmp_path) as daemon:
        done(daemon, "port", "detach", "2", changes=["detach port net_null2"])


def test_port_attached_by_id_is_known_by_its_name(tmp_path):
    with running(tmp_path) as daemon:
        done(daemon, "port", "detach", "net_null2", changes=["detach port net_null2"])
        done(daemon, "port", "attach", "2", "--vni", "43", changes=["attach port net_null2 vni 43"])
        assert show_config(daemon) == NULL_UNDERLAY + NULL_TABLES + DEFAULT_RESOURCES
        done(daemon, "port", "detach", "net_null2", changes=["detach port net_null2"])


def test_reattached_port_keeps_its_offloads_setting(tmp_path):
    config = NULL_CONFIG.replace("{ port: net_null2, vni: 43 }", "{ port: net_null2, vni: 43, offloads: software }")
    with running(tmp_path, config) as daemon:
        before = show_config(daemon)
        assert "  - { port: net_null2, vni: 43, offloads: software }\n" in before
        done(daemon, "port", "detach", "net_null2", changes=["detach port net_null2"])
        done(daemon, "port", "attach", "net_null2", "--vni", "43", changes=["attach port net_null2 vni 43"])
        assert daemon.ctl("apply", str(daemon.config), check=False).stdout == "nothing to change\n"
        assert show_config(daemon) == before


def test_vni_add_names_its_settings_in_the_log_and_the_plan(tmp_path):
    with running(tmp_path) as daemon:
        daemon.ctl("vni", "add", "500", "--learning", "false", "--ageing", "60", "--max-learned", "100",
                   "--allowed-remotes", "10.99.0.0/25")
        target = tmp_path / "target.yaml"
        target.write_text(NULL_CONFIG.replace("  - { vni: 44 }", "  - { vni: 44 }\n  - { vni: 501, learning: false, ageing: 60 }"))
        plan = daemon.ctl("apply", str(target), "--dry-run").stdout
        notice = [line for line in change_notices(daemon) if "vni add 500" in line]
        assert len(notice) == 1
        for setting in ("learning", "60", "100", "10.99.0.0/25"):
            assert setting in notice[0], f"the log of vni add 500 does not say {setting}: {notice[0]!r}"
        for setting in ("learning", "60"):
            assert setting in plan.split("vni add 501")[1].splitlines()[0], f"the plan does not say {setting}: {plan!r}"


# ---------------------------------------------------------------------------------------------------------------
# The round trip: a running configuration changed live, written out, started from, written out again.

ROUND_TRIP_CONFIG = """
underlay: { port: net_null0, ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", ttl: 32, neighbor_timeout: 120,
            gateway: 10.99.0.254, allowed_remotes: [10.99.0.0/24, 192.0.2.0/24, "fd00::/64"] }
access:
  - { port: net_null1, vni: 42 }
  - { port: net_null2, vni: 43 }
  - { port: net_null3, vlans: [ { vlan: 10, vni: 42 }, { vlan: 11, vni: 44 } ] }
vnis:
  - { vni: 42, flood: [10.99.0.2] }
  - { vni: 43, flood: [10.99.0.2, 10.99.0.3], ageing: 120 }
  - { vni: 44, flood: ["fd00::2"] }
fdb:
  - { vni: 44, mac: "02:00:00:00:44:02", remote: 10.99.0.3 }
  - { vni: 42, mac: "02:00:00:00:42:02", remote: "fd00::3" }
neighbors:
  - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
resources: { vnis: 64, tunnels: 256, ports: 8 }
"""


def test_show_config_round_trips_through_a_restart(tmp_path):
    with running(tmp_path, ROUND_TRIP_CONFIG) as daemon:
        first = show_config(daemon)
        underlay_section = first[:first.index("access:\n")]
        resources_section = first[first.index("resources:\n"):]
        assert 'ip6: "fd00::1/64"\n' in underlay_section and "ttl: 32\n" in underlay_section
        assert "gateway: 10.99.0.254\n" in underlay_section
        assert 'allowed_remotes: [10.99.0.0/24, 192.0.2.0/24, "fd00::/64"]\n' in underlay_section
        assert resources_section == ("resources:\n  mbufs: 16383\n  rx_descriptors: 1024\n  tx_descriptors: 1024\n"
                                     "  fdb_entries: 65536\n  tunnels: 256\n  vnis: 64\n  ports: 8\n")

        # Several of each command.
        done(daemon, "vni", "add", "500", "--flood", "10.99.0.4,fd00::4", "--learning", "off", "--ageing", "60",
             "--max-learned", "100", "--allowed-remotes", "10.99.0.0/25,fd00::/120",
             changes=["vni add 500 flood 10.99.0.4,fd00::4 learning false ageing 60 max_learned 100 "
                      "allowed_remotes [10.99.0.0/25,fd00::/120]"])
        done(daemon, "vni", "add", "501", "--allowed-remotes", "", changes=["vni add 501 allowed_remotes []"])
        done(daemon, "vni", "add", "502", "--learning", "yes", changes=["vni add 502"])
        done(daemon, "port", "detach", "net_null2", changes=["detach port net_null2"])
        done(daemon, "vni", "del", "43", changes=["vni del 43"])
        done(daemon, "flood", "add", "42", "10.99.0.5", "fd00::5", changes=["vni 42: flood add 10.99.0.5,fd00::5"])
        done(daemon, "flood", "add", "502", "10.99.0.2", "192.0.2.7", changes=["vni 502: flood add 10.99.0.2,192.0.2.7"])
        done(daemon, "flood", "del", "42", "10.99.0.2", changes=["vni 42: flood del 10.99.0.2"])
        done(daemon, "flood", "del", "44", "fd00::2", changes=["vni 44: flood del fd00::2"])
        done(daemon, "fdb", "add", "500", "02:00:00:05:00:01", "10.99.0.4", changes=["fdb add vni 500 02:00:00:05:00:01 remote 10.99.0.4"])
        done(daemon, "fdb", "add", "501", "02:00:00:05:01:01", "fd00::6", changes=["fdb add vni 501 02:00:00:05:01:01 remote fd00::6"])
        done(daemon, "fdb", "add", "42", "02:00:00:00:42:03", "10.99.0.5", changes=["fdb add vni 42 02:00:00:00:42:03 remote 10.99.0.5"])
        done(daemon, "fdb", "del", "44", "02:00:00:00:44:02", changes=["fdb del vni 44 02:00:00:00:44:02"])
        done(daemon, "neighbor", "add", "10.99.0.4", "02:00:00:00:00:04", changes=["neighbor add 10.99.0.4 02:00:00:00:00:04"])
        done(daemon, "neighbor", "add", "fd00::4", "02:00:00:00:00:14", changes=["neighbor add fd00::4 02:00:00:00:00:14"])
        done(daemon, "neighbor", "add", "fe80::99", "02:00:00:00:00:99", changes=["neighbor add fe80::99 02:00:00:00:00:99"])
        done(daemon, "neighbor", "del", "10.99.0.2", changes=["neighbor del 10.99.0.2"])
        done(daemon, "port", "detach", "net_null3", changes=["detach port net_null3"])
        done(daemon, "port", "attach", "net_null3", "--vlans", "20=500,30=502", changes=["attach port net_null3 vlans 20=500,30=502"])
        done(daemon, "port", "attach", "net_null2", "--vni", "501", changes=["attach port net_null2 vni 501"])
        done(daemon, "fdb", "flush", changes=["fdb flush all: 0 learned entries removed"])

        dump1 = show_config(daemon)
        shown = vnis(daemon)
        assert shown[502]["allowed_remotes"] == ["10.99.0.0/24", "192.0.2.0/24", "fd00::/64"], "the underlay's allow-list"
        assert shown[500]["allowed_remotes"] == ["10.99.0.0/25", "fd00::/120"] and shown[501]["allowed_remotes"] == []
        sections = dump1[dump1.index("access:\n"):dump1.index("resources:\n")]
        assert sections == """access:
  - { port: net_null1, vni: 42, offloads: auto }
  - { port: net_null2, vni: 501, offloads: auto }
  - { port: net_null3, vlans: [ { vlan: 20, vni: 500 }, { vlan: 30, vni: 502 } ], offloads: auto }
vnis:
  - { vni: 42, flood: [10.99.0.5, "fd00::5"], learning: true, ageing: 300, max_learned: 0 }
  - { vni: 44, flood: [], learning: true, ageing: 300, max_learned: 0 }
  - { vni: 500, flood: [10.99.0.4, "fd00::4"], learning: false, ageing: 60, max_learned: 100, allowed_remotes: [10.99.0.0/25, "fd00::/120"] }
  - { vni: 501, flood: [], learning: true, ageing: 300, max_learned: 0, allowed_remotes: [] }
  - { vni: 502, flood: [10.99.0.2, 192.0.2.7], learning: true, ageing: 300, max_learned: 0 }
fdb:
  - { vni: 42, mac: "02:00:00:00:42:02", remote: "fd00::3" }
  - { vni: 500, mac: "02:00:00:05:00:01", remote: 10.99.0.4 }
  - { vni: 501, mac: "02:00:00:05:01:01", remote: "fd00::6" }
  - { vni: 42, mac: "02:00:00:00:42:03", remote: 10.99.0.5 }
neighbors:
  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
  - { ip: 10.99.0.4, mac: "02:00:00:00:00:04" }
  - { ip: "fd00::4", mac: "02:00:00:00:00:14" }
  - { ip: "fe80::99", mac: "02:00:00:00:00:99" }
"""
        assert dump1 == underlay_section + sections + resources_section, "live changes never touch the underlay or resources"
        (tmp_path / "dump1.yaml").write_text(dump1)
        stopped_cleanly(daemon)

    with running(tmp_path, dump1, name="restarted") as again:
        dump2 = show_config(again)
        (tmp_path / "dump2.yaml").write_text(dump2)
        assert dump2.encode() == dump1.encode()
        for dry in (("--dry-run",), ()):
            result = again.ctl("apply", str(tmp_path / "dump1.yaml"), *dry)
            assert (result.returncode, result.stdout, result.stderr) == (0, "nothing to change\n", "")
        assert show_config(again) == dump1
        # The file it was first started from is a plan back, changing nothing that needs a restart.
        back = again.ctl("apply", str(tmp_path / "vxland.yaml"), "--dry-run")
        assert back.returncode == 0 and back.stdout.startswith("would do (dry run):\n") and "map port net_null2 vni 43\n" in back.stdout
        assert change_notices(again) == []


# ---------------------------------------------------------------------------------------------------------------
# SIGHUP: vxland applies its own --config file again.

def hup_and_wait(daemon, needle, timeout=10.0):
    """SIGHUP, then waits for vxland to log `needle` once more than it had before."""
    seen = daemon.log_path.read_text().count(needle)
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.time() + timeout
    while daemon.log_path.read_text().count(needle) <= seen:
        assert time.time() < deadline, f"vxland never logged {needle!r} after SIGHUP:\n{daemon.log_path.read_text()}"
        time.sleep(0.05)
    assert daemon.process.poll() is None, daemon.log_path.read_text()


def test_sighup_applies_the_edited_file_and_survives_a_broken_one(tmp_path):
    with running(tmp_path) as daemon:
        path = str(daemon.config)
        original = show_config(daemon)
        # Unchanged: nothing to do, and said so.
        hup_and_wait(daemon, f"SIGHUP {path}: {path} matches the running configuration; nothing to change")
        assert show_config(daemon) == original

        daemon.config.write_text(NULL_CONFIG.replace("  - { vni: 44 }\n", "  - { vni: 44, flood: [10.99.0.3] }\n  - { vni: 46 }\n")
                                 .replace("  - { port: net_null2, vni: 43 }", "  - { port: net_null2, vni: 46 }"))
        hup_and_wait(daemon, "SIGHUP: 4 change(s) made")
        assert show_config(daemon) == NULL_UNDERLAY + """access:
  - { port: net_null1, vni: 42, offloads: auto }
  - { port: net_null2, vni: 46, offloads: auto }
vnis:
  - { vni: 42, flood: [10.99.0.2], learning: true, ageing: 300, max_learned: 0 }
  - { vni: 43, flood: [10.99.0.2, 10.99.0.3], learning: true, ageing: 300, max_learned: 0 }
  - { vni: 44, flood: [10.99.0.3], learning: true, ageing: 300, max_learned: 0 }
  - { vni: 46, flood: [], learning: true, ageing: 300, max_learned: 0 }
""" + NULL_TABLES[NULL_TABLES.index("fdb:\n"):] + DEFAULT_RESOURCES
        assert change_notices(daemon) == [f"SIGHUP: applying {path}", f"SIGHUP: applying {path}",
                                          f"SIGHUP {path}: unmap port net_null2", f"SIGHUP {path}: vni add 46",
                                          f"SIGHUP {path}: vni 44: flood add 10.99.0.3", f"SIGHUP {path}: map port net_null2 vni 46",
                                          "SIGHUP: 4 change(s) made"]
        changed = show_config(daemon)

        # A broken file: logged as an error naming the file and the problem; nothing changes, vxland goes on.
        daemon.config.write_text(NULL_CONFIG.replace("  - { vni: 44 }", "  - { vni: 44, flod: [] }"))
        hup_and_wait(daemon, f"SIGHUP: {path}: vnis[2].flod (line 9): unknown key")
        daemon.config.write_text("underlay: { port: net_null0, ip: 10.99.0.1/24\n")
        hup_and_wait(daemon, f"SIGHUP: {path}: configuration: not valid YAML or JSON")
        daemon.config.write_text("")
        hup_and_wait(daemon, f"SIGHUP: {path}: ")
        # One that needs a restart: refused whole, naming the key.
        daemon.config.write_text(NULL_CONFIG.replace("ip: 10.99.0.1/24", "ip: 10.99.0.9/24"))
        hup_and_wait(daemon, f"SIGHUP: {path} changes what needs vxland restarted: underlay.ip; nothing was changed")
        # Removed altogether.
        daemon.config.unlink()
        hup_and_wait(daemon, f"SIGHUP: {path}: ")
        errors = [line for line in log_lines(daemon, "error") if line.startswith("SIGHUP")]
        assert len(errors) == 5, errors
        assert show_config(daemon) == changed
        assert "vxland answers on" in daemon.ctl("ping").stdout
        assert change_notices(daemon)[7:] == [f"SIGHUP: applying {path}"] * 5, "five attempts, no change made"

        # Put back: the file applies again.
        daemon.config.write_text(NULL_CONFIG)
        hup_and_wait(daemon, "SIGHUP: 4 change(s) made")
        assert show_config(daemon) == original


# ---------------------------------------------------------------------------------------------------------------
# Frames: vxland on net_af_packet ports, veth pairs in a network namespace of the test's own. The test holds a raw
# socket on the far end of each veth: it sends what a VM or a remote VTEP would, and keeps whatever vxland sends.

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
PACKET_OUTGOING = 4
ETH_P_ALL = 3


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Wire:
    """A raw socket on `iface` in namespace `netns` (opened there, used from here): send frames, keep what arrives."""

    def __init__(self, netns, iface):
        home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
                self.sock.bind((iface, 0))
            finally:
                _setns(home)
        finally:
            os.close(home)
            os.close(target)
        self.name = iface
        self.sock.settimeout(0.05)
        self._frames = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while self._running:
            try:
                data, address = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if address[2] != PACKET_OUTGOING:
                with self._lock:
                    self._frames.append(data)

    def send(self, frame):
        self.sock.send(bytes(frame))

    def take(self):
        """What arrived since the last take."""
        with self._lock:
            frames, self._frames = self._frames, []
        return frames

    def wait(self, count, timeout=10.0, settle=0.3):
        """Waits for `count` frames to have arrived (then `settle` seconds more, so that extra ones show); takes them."""
        deadline = time.time() + timeout
        while True:
            with self._lock:
                have = len(self._frames)
            if have >= count or time.time() > deadline:
                break
            time.sleep(0.02)
        time.sleep(settle)
        return self.take()

    def close(self):
        self._running = False
        self._thread.join()
        self.sock.close()


@contextlib.contextmanager
def veth_lab(tag, names):
    """A namespace with one veth pair per name: NAME (vxland's af_packet port) and NAMEp (the test's end)."""
    netns = f"vxlc{os.getpid() % 100000}{tag}"
    subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    wires = {}
    try:
        # No IPv6 on any of them: no router solicitations, MLD or DAD, only what the test and vxland send.
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        for name in names:
            subprocess.run(["ip", "-n", netns, "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
            for end in (name, name + "p"):
                subprocess.run(["ip", "-n", netns, "link", "set", end, "up"], check=True)
        for name in names:
            wires[name] = Wire(netns, name + "p")
        yield netns, wires
    finally:
        for wire in wires.values():
            wire.close()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def af_packet_eal(names):
    eal = ["-l", "0,1", "--no-huge", "-m", "256", "--no-pci"]
    for i, name in enumerate(names):
        eal += ["--vdev", f"net_af_packet{i},iface={name}"]
    return eal


def frame(src, dst, tag, size=80):
    """An Ethernet frame of `size` bytes (ethertype 0x88b5, local experimental) carrying `tag`."""
    head = bytes(Ether(src=src, dst=dst, type=0x88B5) / Raw(tag))
    return head + b"\xa5" * (size - len(head))


def vxlan_from(remote, vni, inner):
    """VXLAN from remote VTEP `remote` to vxland."""
    return bytes(Ether(src=NEIGHBOR_MACS[remote], dst=OUR_MAC) / IP(src=remote, dst=OUR_IP, ttl=64)
                 / UDP(sport=50000, dport=4789) / VXLAN(vni=vni) / inner)


def decode_tunnelled(raw):
    """(remote, vni, inner frame) of a VXLAN packet vxland sent, after checking every outer field."""
    pkt = Ether(raw)
    assert pkt.type == 0x0800 and IP in pkt and UDP in pkt, pkt.summary()
    ip, udp = pkt[IP], pkt[UDP]
    assert (pkt.src, pkt.dst) == (OUR_MAC, NEIGHBOR_MACS[ip.dst]), "outer MACs: ours, and the remote's neighbor entry"
    assert (ip.src, ip.proto, ip.ttl, ip.len) == (OUR_IP, 17, 64, len(raw) - 14)
    assert (udp.dport, udp.len) == (4789, ip.len - 20)
    header = bytes(udp.payload)[:8]
    assert header[:4] == b"\x08\x00\x00\x00" and header[7] == 0, "VXLAN: I flag only, reserved bits zero"
    vni = int.from_bytes(header[4:7], "big")
    assert pkt[VXLAN].vni == vni
    return ip.dst, vni, bytes(udp.payload)[8:]


def port_detached(daemon):
    return daemon.stats()["totals"]["drops"]["port_detached"]


def counters(daemon, vni):
    return vnis(daemon)[vni]["counters"]


AF_NAMES = ["und", "acc1", "acc2"]
AF_CONFIG = """
underlay: { port: net_af_packet0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
access:
  - { port: net_af_packet1, vni: 100 }
  - { port: net_af_packet2, vni: 200 }
vnis:
  - { vni: 100, flood: [10.99.0.2] }
  - { vni: 200, flood: [10.99.0.3] }
  - { vni: 400, flood: [10.99.0.3] }
fdb:
  - { vni: 100, mac: "02:00:00:0a:00:02", remote: 10.99.0.2 }
neighbors:
  - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
"""
VM_A, VM_A_PEER = "02:00:00:0a:00:01", "02:00:00:0a:00:02"
VM_C, VM_C_PEER, VM_C_REMOTE = "02:00:00:0c:00:01", "02:00:00:0c:00:09", "02:00:00:0c:00:04"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def test_changes_take_effect_on_frames(tmp_path):
    with veth_lab("fx", AF_NAMES) as (netns, wires), running(tmp_path, AF_CONFIG, af_packet_eal(AF_NAMES), netns=netns) as daemon:
        und, acc1, acc2 = wires["und"], wires["acc1"], wires["acc2"]

        # Detached: the port's frames are dropped and counted as port_detached, nothing reaches the underlay.
        done(daemon, "port", "detach", "net_af_packet2", changes=["detach port net_af_packet2"])
        before = port_detached(daemon)
        for i in range(20):
            acc2.send(frame(VM_C, BROADCAST, b"detached %d" % i))
        daemon.wait_for(lambda s: s["totals"]["drops"]["port_detached"] >= before + 20)
        assert und.wait(1, timeout=0.5) == [] and acc1.take() == []
        assert port_detached(daemon) == before + 20
        assert counters(daemon, 200)["encap_packets"] == 0

        # A new VNI, the port attached to it, a remote in its flood list (with its neighbor): a broadcast from the
        # port goes to that remote, in that VNI, unchanged, and nowhere else.
        done(daemon, "vni", "add", "300", changes=["vni add 300"])
        done(daemon, "port", "attach", "net_af_packet2", "--vni", "300", changes=["attach port net_af_packet2 vni 300"])
        done(daemon, "neighbor", "add", "10.99.0.4", "02:00:00:00:00:04", changes=["neighbor add 10.99.0.4 02:00:00:00:00:04"])
        done(daemon, "flood", "add", "300", "10.99.0.4", changes=["vni 300: flood add 10.99.0.4"])
        broadcasts = [frame(VM_C, BROADCAST, b"broadcast %d" % i, size=60 + i) for i in range(10)]
        for f in broadcasts:
            acc2.send(f)
        out = [decode_tunnelled(raw) for raw in und.wait(10)]
        assert out == [("10.99.0.4", 300, f) for f in broadcasts]
        assert acc1.take() == [], "VNI 100 is another segment"

        # A static entry: unicast to that MAC goes to its remote only (not flooded to 10.99.0.4).
        done(daemon, "fdb", "add", "300", VM_C_PEER, "10.99.0.3", changes=[f"fdb add vni 300 {VM_C_PEER} remote 10.99.0.3"])
        unicasts = [frame(VM_C, VM_C_PEER, b"unicast %d" % i, size=100) for i in range(5)]
        for f in unicasts:
            acc2.send(f)
        assert [decode_tunnelled(raw) for raw in und.wait(5)] == [("10.99.0.3", 300, f) for f in unicasts]

        # From a remote in VNI 300 to the VM (learned behind the port): out of the port, exactly the inner frame.
        replies = [frame(VM_C_REMOTE, VM_C, b"reply %d" % i, size=90) for i in range(7)]
        for f in replies:
            und.send(vxlan_from("10.99.0.4", 300, f))
        assert acc2.wait(7) == replies
        assert und.take() == [] and acc1.take() == []

        # The VNI's counters: frames (and bytes) from its port, frames (and inner bytes) from the underlay.
        shown = vnis(daemon)[300]
        assert shown["counters"] == {"encap_packets": 15, "encap_bytes": sum(map(len, broadcasts + unicasts)),
                                     "decap_packets": 7, "decap_bytes": 7 * 90, "drops": 0}
        assert (shown["ports"], shown["flood"], shown["learned"]) == (["net_af_packet2"], ["10.99.0.4"], 2)
        assert counters(daemon, 200) == {"encap_packets": 0, "encap_bytes": 0, "decap_packets": 0, "decap_bytes": 0, "drops": 0}
        learned = {(e["mac"], e["destination"]) for e in json.loads(daemon.ctl("show", "fdb", "--vni", "300", "--json").stdout)["entries"]
                   if e["type"] == "learned"}
        assert learned == {(VM_C, "port net_af_packet2"), (VM_C_REMOTE, "remote 10.99.0.4")}

        # A static entry for a MAC learned behind a remote replaces the learned one: to the static remote now.
        done(daemon, "fdb", "add", "300", VM_C_REMOTE, "10.99.0.3", changes=[f"fdb add vni 300 {VM_C_REMOTE} remote 10.99.0.3"])
        assert vnis(daemon)[300]["learned"] == 1
        to_remote_vm = [frame(VM_C, VM_C_REMOTE, b"to remote vm %d" % i, size=70) for i in range(3)]
        for f in to_remote_vm:
            acc2.send(f)
        assert [decode_tunnelled(raw) for raw in und.wait(3)] == [("10.99.0.3", 300, f) for f in to_remote_vm]

        # Flush: the learned entry goes, the static ones stay; the VM's MAC is learned again by its next frame.
        done(daemon, "fdb", "flush", "--vni", "300", changes=["fdb flush vni 300: 1 learned entries removed"])
        entries = json.loads(daemon.ctl("show", "fdb", "--vni", "300", "--json").stdout)["entries"]
        assert [(e["mac"], e["destination"], e["type"]) for e in entries] == [
            (VM_C_REMOTE, "remote 10.99.0.3", "static"), (VM_C_PEER, "remote 10.99.0.3", "static")]
        assert vnis(daemon)[300]["learned"] == 0

        # fdb del: the MAC is unknown again, so flooded (to 10.99.0.4, the flood list).
        done(daemon, "fdb", "del", "300", VM_C_PEER, changes=[f"fdb del vni 300 {VM_C_PEER}"])
        acc2.send(unicasts[0])
        assert [decode_tunnelled(raw) for raw in und.wait(1)] == [("10.99.0.4", 300, unicasts[0])]
        assert vnis(daemon)[300]["learned"] == 1

        # flood del: nowhere to flood to; the frame is counted as a drop of the VNI.
        done(daemon, "flood", "del", "300", "10.99.0.4", changes=["vni 300: flood del 10.99.0.4"])
        acc2.send(broadcasts[0])
        assert und.wait(1, timeout=1) == []
        after = vnis(daemon)[300]["counters"]
        sent = broadcasts + unicasts + to_remote_vm + [unicasts[0], broadcasts[0]]
        assert after == {"encap_packets": len(sent), "encap_bytes": sum(map(len, sent)),
                         "decap_packets": 7, "decap_bytes": 7 * 90, "drops": 1}

        # Detached again: dropped as port_detached, the VNI's counters stand still, the VM's MAC is forgotten.
        done(daemon, "port", "detach", "net_af_packet2", changes=["detach port net_af_packet2"])
        assert vnis(daemon)[300]["learned"] == 0, "MACs learned behind a detached port are forgotten"
        before = port_detached(daemon)
        for f in broadcasts[:6]:
            acc2.send(f)
        daemon.wait_for(lambda s: s["totals"]["drops"]["port_detached"] >= before + 6)
        assert port_detached(daemon) == before + 6
        assert und.wait(1, timeout=0.5) == []
        assert vnis(daemon)[300]["counters"] == after

        # VNI deleted (its static entry with it): its VXLAN is an unknown VNI now.
        done(daemon, "vni", "del", "300", changes=[f"fdb del vni 300 {VM_C_REMOTE}", "vni del 300"])
        unknown = daemon.stats()["totals"]["drops"]["unknown_vni"]
        und.send(vxlan_from("10.99.0.4", 300, replies[0]))
        daemon.wait_for(lambda s: s["totals"]["drops"]["unknown_vni"] == unknown + 1)
        assert acc2.wait(1, timeout=0.5) == [] and acc1.take() == []

        assert change_notices(daemon) == [
            "vxlanctl: detach port net_af_packet2", "vxlanctl: vni add 300", "vxlanctl: attach port net_af_packet2 vni 300",
            "vxlanctl: neighbor add 10.99.0.4 02:00:00:00:00:04", "vxlanctl: vni 300: flood add 10.99.0.4",
            f"vxlanctl: fdb add vni 300 {VM_C_PEER} remote 10.99.0.3", f"vxlanctl: fdb add vni 300 {VM_C_REMOTE} remote 10.99.0.3",
            "vxlanctl: fdb flush vni 300: 1 learned entries removed", f"vxlanctl: fdb del vni 300 {VM_C_PEER}",
            "vxlanctl: vni 300: flood del 10.99.0.4", "vxlanctl: detach port net_af_packet2",
            f"vxlanctl: fdb del vni 300 {VM_C_REMOTE}", "vxlanctl: vni del 300"]


def test_allowed_remotes_follow_flood_and_fdb_changes(tmp_path):
    """A VNI whose allow-list is empty takes VXLAN only from its static remotes: its flood list and static entries,
    as they are changed."""
    with veth_lab("ar", AF_NAMES) as (netns, wires), running(tmp_path, AF_CONFIG, af_packet_eal(AF_NAMES), netns=netns) as daemon:
        und, acc2 = wires["und"], wires["acc2"]
        done(daemon, "vni", "add", "600", "--flood", "10.99.0.2", "--allowed-remotes", "", changes=["vni add 600 flood 10.99.0.2 allowed_remotes []"])
        done(daemon, "port", "detach", "net_af_packet2", changes=["detach port net_af_packet2"])
        done(daemon, "port", "attach", "net_af_packet2", "--vni", "600", changes=["attach port net_af_packet2 vni 600"])
        inner = frame("02:00:00:60:00:03", BROADCAST, b"from a remote in vni 600")

        def from_3_is_taken():
            drops = daemon.stats()["totals"]["drops"]["remote_not_allowed"]
            und.send(vxlan_from("10.99.0.3", 600, inner))
            delivered = acc2.wait(1, timeout=1.5)
            if delivered:
                assert delivered == [inner]
                return True
            daemon.wait_for(lambda s: s["totals"]["drops"]["remote_not_allowed"] == drops + 1)
            return False

        und.send(vxlan_from("10.99.0.2", 600, inner))
        assert acc2.wait(1) == [inner], "a flood remote may send"
        assert not from_3_is_taken()
        done(daemon, "fdb", "add", "600", "02:00:00:60:00:09", "10.99.0.3", changes=["fdb add vni 600 02:00:00:60:00:09 remote 10.99.0.3"])
        assert from_3_is_taken(), "a static entry's remote may send"
        done(daemon, "fdb", "del", "600", "02:00:00:60:00:09", changes=["fdb del vni 600 02:00:00:60:00:09"])
        assert not from_3_is_taken()
        done(daemon, "flood", "add", "600", "10.99.0.3", changes=["vni 600: flood add 10.99.0.3"])
        assert from_3_is_taken()
        done(daemon, "flood", "del", "600", "10.99.0.3", changes=["vni 600: flood del 10.99.0.3"])
        assert not from_3_is_taken()
        assert vnis(daemon)[600]["counters"]["drops"] == 3
        assert vnis(daemon)[600]["counters"]["decap_packets"] == 3


def arp_requests(frames):
    from scapy.all import ARP
    return [Ether(raw) for raw in frames if Ether(raw).type == 0x0806 and Ether(raw)[ARP].op == 1]


def test_neighbor_changes_steer_the_outer_destination_mac(tmp_path):
    from scapy.all import ARP
    with veth_lab("nb", AF_NAMES) as (netns, wires), running(tmp_path, AF_CONFIG, af_packet_eal(AF_NAMES), netns=netns) as daemon:
        und, acc1 = wires["und"], wires["acc1"]
        out = frame(VM_A, VM_A_PEER, b"to the peer")

        def outer_macs(count=1):
            for _ in range(count):
                acc1.send(out)
            got = [Ether(raw) for raw in und.wait(count) if Ether(raw).type == 0x0800]
            assert [bytes(p[UDP].payload)[8:] for p in got] == [out] * count
            return {(p.dst, p[IP].dst) for p in got}

        assert outer_macs() == {("02:00:00:00:00:02", "10.99.0.2")}
        # Without its static entry the next hop is resolved by ARP: vxland asks, the answer is used.
        done(daemon, "neighbor", "del", "10.99.0.2", changes=["neighbor del 10.99.0.2"])
        deadline = time.time() + 10
        requests = []
        while not requests:
            assert time.time() < deadline, "vxland never asked for 10.99.0.2"
            acc1.send(out)   # a frame to the unresolved next hop is dropped (neighbor_unresolved) and makes it ask
            time.sleep(0.2)
            requests = arp_requests(und.take())
        request = requests[0]
        assert (request.src, request[ARP].psrc, request[ARP].pdst, request[ARP].hwsrc) == (OUR_MAC, OUR_IP, "10.99.0.2", OUR_MAC)
        und.send(Ether(src="02:00:00:00:00:22", dst=OUR_MAC) / ARP(op=2, hwsrc="02:00:00:00:00:22", psrc="10.99.0.2",
                                                                   hwdst=OUR_MAC, pdst=OUR_IP))
        deadline = time.time() + 10
        while {n["ip"]: n for n in json.loads(daemon.ctl("show", "neighbors", "--json").stdout)["neighbors"]}["10.99.0.2"]["state"] != "reachable":
            assert time.time() < deadline, daemon.ctl("show", "neighbors").stdout
            time.sleep(0.05)
        und.take()
        assert outer_macs(3) == {("02:00:00:00:00:22", "10.99.0.2")}
        # A static entry again, with another MAC: used at once, and for good.
        done(daemon, "neighbor", "add", "10.99.0.2", "02:00:00:00:00:2f", changes=["neighbor add 10.99.0.2 02:00:00:00:00:2f"])
        assert outer_macs(3) == {("02:00:00:00:00:2f", "10.99.0.2")}
        neighbors = {n["ip"]: n for n in json.loads(daemon.ctl("show", "neighbors", "--json").stdout)["neighbors"]}
        assert (neighbors["10.99.0.2"]["state"], neighbors["10.99.0.2"]["mac"]) == ("permanent", "02:00:00:00:00:2f")
        assert '  - { ip: 10.99.0.2, mac: "02:00:00:00:00:2f" }\n' in show_config(daemon)


class Stream(threading.Thread):
    """Sends `count` frames through `wire`, one every `interval` seconds, `build(i)` making frame i."""

    def __init__(self, wire, count, build, interval=0.001):
        super().__init__(daemon=True)
        self.wire, self.count, self.build, self.interval = wire, count, build, interval
        self.sent = 0

    def run(self):
        for i in range(self.count):
            self.wire.send(self.build(i))
            self.sent += 1
            time.sleep(self.interval)


def test_apply_under_traffic_touches_only_what_changed(tmp_path):
    target = tmp_path / "target.yaml"
    target.write_text(AF_CONFIG.replace("  - { vni: 200, flood: [10.99.0.3] }\n  - { vni: 400, flood: [10.99.0.3] }\n",
                                        "  - { vni: 200, flood: [10.99.0.3, 10.99.0.4] }\n  - { vni: 300, flood: [10.99.0.4] }\n")
                      + '  - { ip: 10.99.0.4, mac: "02:00:00:00:00:04" }\n')
    plan = ["vni del 400", "neighbor add 10.99.0.4 02:00:00:00:00:04", "vni add 300 flood 10.99.0.4", "vni 200: flood add 10.99.0.4"]
    encap_count, decap_count = 3000, 1500
    with veth_lab("ap", AF_NAMES) as (netns, wires), running(tmp_path, AF_CONFIG, af_packet_eal(AF_NAMES), netns=netns) as daemon:
        und, acc1, acc2 = wires["und"], wires["acc1"], wires["acc2"]
        original = show_config(daemon)

        dry = daemon.ctl("apply", str(target), "--dry-run")
        assert dry.stdout == "would do (dry run):\n" + "".join(f"  {c}\n" for c in plan)
        assert show_config(daemon) == original and change_notices(daemon) == []

        # VNI 100 carries two flows the whole time: VM A to its peer behind 10.99.0.2 (a static entry), and back.
        outbound = Stream(acc1, encap_count, lambda i: frame(VM_A, VM_A_PEER, b"out %06d" % i, size=128))
        inbound = Stream(und, decap_count, lambda i: vxlan_from("10.99.0.2", 100, frame(VM_A_PEER, VM_A, b"in %06d" % i, size=96)),
                         interval=0.002)
        outbound.start()
        daemon.wait_for(lambda s: s["totals"]["pipeline"]["encapsulated"] > 0)
        inbound.start()
        deadline = time.time() + 10
        while counters(daemon, 100)["decap_packets"] == 0:
            assert time.time() < deadline, "no decapsulated frame in VNI 100"
            time.sleep(0.02)
        before = counters(daemon, 100)
        applied = daemon.ctl("apply", str(target))
        after = counters(daemon, 100)
        assert applied.stdout == "done:\n" + "".join(f"  {c}\n" for c in plan)
        assert outbound.is_alive() and inbound.is_alive(), "the apply happened while both flows ran (else: make them longer)"
        keys = ("encap_packets", "encap_bytes", "decap_packets", "decap_bytes")
        # Counting goes on after the apply (waited for while the flows still run, not slept for).
        deadline = time.time() + 20
        while True:
            later = counters(daemon, 100)
            if all(after[k] < later[k] for k in keys) or time.time() > deadline:
                break
            time.sleep(0.02)
        for key in keys:
            assert before[key] < after[key] < later[key], f"VNI 100 {key} stalled across the apply: {before} {after} {later}"
        outbound.join()
        inbound.join()

        # Nothing lost, nothing extra, nothing out of order, in either direction.
        tunnelled = [decode_tunnelled(raw) for raw in und.wait(encap_count, timeout=30)]
        assert len(tunnelled) == encap_count
        assert tunnelled == [("10.99.0.2", 100, frame(VM_A, VM_A_PEER, b"out %06d" % i, size=128)) for i in range(encap_count)]
        delivered = acc1.wait(decap_count, timeout=30)
        assert len(delivered) == decap_count
        assert delivered == [frame(VM_A_PEER, VM_A, b"in %06d" % i, size=96) for i in range(decap_count)]
        assert acc2.take() == []
        assert counters(daemon, 100) == {"encap_packets": encap_count, "encap_bytes": 128 * encap_count,
                                         "decap_packets": decap_count, "decap_bytes": 96 * decap_count, "drops": 0}

        # The plan made: VNI 400 gone, 300 there, 200 flooding to both remotes now.
        shown = vnis(daemon)
        assert sorted(shown) == [100, 200, 300]
        assert (shown[200]["flood"], shown[300]["flood"], shown[300]["ports"]) == (["10.99.0.3", "10.99.0.4"], ["10.99.0.4"], [])
        probe = frame("02:00:00:0b:00:01", BROADCAST, b"vni 200 probe")
        acc2.send(probe)
        assert sorted(decode_tunnelled(raw) for raw in und.wait(2)) == [("10.99.0.3", 200, probe), ("10.99.0.4", 200, probe)]

        assert daemon.ctl("apply", str(target)).stdout == "nothing to change\n"
        assert change_notices(daemon) == [f"vxlanctl apply {target}: {c}" for c in plan]
        assert f"vxlanctl apply {target}: {target} matches the running configuration; nothing to change" in log_lines(daemon, "info")
        assert daemon.stats()["totals"]["drops"].get("port_detached", 0) == 0


def test_apply_refused_part_way_keeps_learned_macs_and_counters(tmp_path):
    target = tmp_path / "target.yaml"
    # VNI 400 removed, and an access port vxland does not have: the attach fails after the vni del was made.
    target.write_text(AF_CONFIG.replace("  - { vni: 400, flood: [10.99.0.3] }\n", "")
                      .replace("  - { port: net_af_packet2, vni: 200 }\n", "  - { port: net_af_packet2, vni: 200 }\n"
                               "  - { port: net_af_packet7, vni: 100 }\n"))
    with veth_lab("rb", AF_NAMES) as (netns, wires), running(tmp_path, AF_CONFIG, af_packet_eal(AF_NAMES), netns=netns) as daemon:
        und = wires["und"]
        # A VM behind 10.99.0.3 in VNI 400 (which has no local port): learned, counted.
        for i in range(4):
            und.send(vxlan_from("10.99.0.3", 400, frame("02:00:00:40:00:03", BROADCAST, b"vni 400 %d" % i)))
        deadline = time.time() + 10
        while counters(daemon, 400)["decap_packets"] < 4:
            assert time.time() < deadline, vnis(daemon)[400]
            time.sleep(0.02)
        before = vnis(daemon)[400]
        assert before["learned"] == 1 and before["counters"]["decap_packets"] == 4
        result = daemon.ctl("apply", str(target), check=False)
        assert result.returncode == 1 and "port net_af_packet7 not found" in result.stderr
        assert vnis(daemon)[400] == before
