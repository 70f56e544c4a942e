"""A tagged access port: VLAN 10 and VLAN 20 of one VM port reach two VNIs on the Linux kernel's VTEP."""
import json
import os
from pathlib import Path

from conftest import netns_testbed, sh

PREFIX = f"vz{os.getpid() % 100000}-"


def test_two_vlans_on_one_port_reach_two_vnis(tmp_path):
    with netns_testbed(tmp_path, PREFIX, "1", "300", "vlans") as daemon:
        daemon.wait_until_neighbors_reachable()
        # The VM (scapy, tagged frames) ARPs for and pings the remote VM of each VNI; Linux answers on vx42 / vx43.
        vm = sh("ip", "netns", "exec", PREFIX + "vm", "/usr/bin/python3", str(Path(__file__).with_name("vlan_vm.py")))
        results = json.loads(vm.stdout)
        assert results == [
            {"vlan": 10, "arp": {"vlan": 10, "hwsrc": "02:00:00:00:42:02", "psrc": "192.168.42.2"},
             "echo": {"vlan": 10, "type": 0, "src": "192.168.42.2"}},
            {"vlan": 20, "arp": {"vlan": 20, "hwsrc": "02:00:00:00:43:02", "psrc": "192.168.43.2"},
             "echo": {"vlan": 20, "type": 0, "src": "192.168.43.2"}},
        ], vm.stdout + vm.stderr
        # Each VLAN's traffic went into its own VNI: the kernel saw it on vx42 and vx43 respectively.
        for dev in ("vx42", "vx43"):
            rx = int(sh("ip", "netns", "exec", PREFIX + "hv", "cat", f"/sys/class/net/{dev}/statistics/rx_packets").stdout)
            assert rx >= 2, f"{dev} received {rx}"
        entries = json.loads(daemon.ctl("show", "fdb", "--json").stdout)["entries"]
        local = {(e["vni"], e["destination"]) for e in entries if e["mac"] == "02:00:00:00:42:01"}
        assert local == {(42, "port net_af_packet1 vlan 10"), (43, "port net_af_packet1 vlan 20")}, entries
        ports = json.loads(daemon.ctl("show", "ports", "--json").stdout)["ports"]
        assert ports[1]["vlans"] == {"10": 42, "20": 43}
        stats = daemon.stats()
        assert stats["totals"]["drops"]["vlan_not_mapped"] == 0 and stats["totals"]["drops"]["inner_vlan"] == 0
