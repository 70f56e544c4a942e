"""Run inside the VM namespace: speak for 192.168.42.1 on VLAN 10 and 192.168.43.1 on VLAN 20 over vm0 with
tagged frames, ARP for and ping the remote VM of each VNI, and print what came back as JSON."""
import json
import sys

from scapy.all import ARP, ICMP, IP, Dot1Q, Ether, conf, srp1

conf.verb = 0
VM_MAC = "02:00:00:00:42:01"
results = []
for vlan, ours, theirs in ((10, "192.168.42.1", "192.168.42.2"), (20, "192.168.43.1", "192.168.43.2")):
    arp = srp1(Ether(dst="ff:ff:ff:ff:ff:ff", src=VM_MAC) / Dot1Q(vlan=vlan) / ARP(op=1, hwsrc=VM_MAC, psrc=ours, pdst=theirs),
               iface="vm0", timeout=3)
    entry = {"vlan": vlan, "arp": None, "echo": None}
    if arp is not None and ARP in arp:
        entry["arp"] = {"vlan": arp[Dot1Q].vlan if Dot1Q in arp else None, "hwsrc": arp[ARP].hwsrc, "psrc": arp[ARP].psrc}
        echo = srp1(Ether(dst=arp[ARP].hwsrc, src=VM_MAC) / Dot1Q(vlan=vlan) / IP(src=ours, dst=theirs) / ICMP(id=vlan, seq=1),
                    iface="vm0", timeout=3)
        if echo is not None and ICMP in echo:
            entry["echo"] = {"vlan": echo[Dot1Q].vlan if Dot1Q in echo else None, "type": echo[ICMP].type, "src": echo[IP].src}
    results.append(entry)
json.dump(results, sys.stdout)
