import XCTest
@testable import VTEPConfig

final class ConfigParserTests: XCTestCase {
    static let valid = """
        underlay:
          port: net_af_packet0      # DPDK port name or id
          ip: 10.99.0.1/24
          mac: 02:00:00:00:00:01
          mtu: 1500
          udp_port: 4789
        access:
          - { port: net_af_packet1, vni: 42 }
        vnis:
          - { vni: 42, flood: [10.99.0.2] }
        fdb:
          - { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 }
        neighbors:
          - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
        """

    func testTheIssueExampleParses() throws {
        let c = try ConfigParser.parse(Self.valid)
        XCTAssertEqual(c.underlay.port, "net_af_packet0")
        XCTAssertEqual(c.underlay.interface, IPv4Interface(address: IPv4Address(10, 99, 0, 1), prefixLength: 24))
        XCTAssertEqual(c.underlay.mac, MACAddress("02:00:00:00:00:01"))
        XCTAssertEqual(c.underlay.mtu, 1500)
        XCTAssertEqual(c.underlay.udpPort, 4789)
        XCTAssertEqual(c.underlay.ttl, 64)
        XCTAssertEqual(c.access, [.init(port: "net_af_packet1", vni: 42)])
        XCTAssertEqual(c.vnis, [.init(vni: 42, flood: [.v4(IPv4Address(10, 99, 0, 2))])])
        XCTAssertEqual(c.fdb, [.init(vni: 42, mac: MACAddress("02:00:00:00:42:02")!, remote: .v4(IPv4Address(10, 99, 0, 2)))])
        XCTAssertEqual(c.neighbors, [.init(ip: .v4(IPv4Address(10, 99, 0, 2)), mac: MACAddress("02:00:00:00:00:02")!)])
    }

    func testJSONIsAcceptedToo() throws {
        let json = """
            {"underlay": {"port": "0", "ip": "10.99.0.1/24", "udp_port": 8472, "ttl": 16},
             "access": [{"port": "1", "vni": 42}],
             "vnis": [{"vni": 42, "flood": ["10.99.0.2"]}],
             "neighbors": [{"ip": "10.99.0.2", "mac": "02:00:00:00:00:02"}]}
            """
        let c = try ConfigParser.parse(json)
        XCTAssertEqual(c.underlay.port, "0")
        XCTAssertNil(c.underlay.mac, "defaults to the port's MAC")
        XCTAssertEqual(c.underlay.udpPort, 8472)
        XCTAssertEqual(c.underlay.ttl, 16)
        XCTAssertEqual(c.underlay.mtu, 1500)
    }

    /// YAML 1.1 would read 12:00:00:00:00:01 unquoted as a base-60 integer; we read scalars as text.
    /// Remotes need no static neighbor: ARP resolves them, through the gateway when they are off-link.
    func testRemotesResolveThroughTheGatewayWhenOffLink() throws {
        let c = try ConfigParser.parse("""
            underlay: { port: p0, ip: 10.99.0.1/24, gateway: 10.99.0.254, neighbor_timeout: 60 }
            vnis: [ { vni: 7, flood: [10.99.0.2, 172.16.5.5] } ]
            """)
        XCTAssertEqual(c.underlay.gateway, IPv4Address(10, 99, 0, 254))
        XCTAssertEqual(c.underlay.neighborTimeout, 60)
        XCTAssertEqual(c.underlay.nextHop(for: IPAddress("10.99.0.2")!), IPAddress("10.99.0.2"))
        XCTAssertEqual(c.underlay.nextHop(for: IPAddress("172.16.5.5")!), IPAddress("10.99.0.254"))
        XCTAssertEqual(c.remotes, [IPAddress("10.99.0.2")!, IPAddress("172.16.5.5")!])
        XCTAssertTrue(c.neighbors.isEmpty)
    }

    func testTaggedAccessPortsMapEachVLANToAVNI() throws {
        let c = try ConfigParser.parse("""
            underlay: { port: p0, ip: 10.99.0.1/24 }
            access: [ { port: p1, vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ] }, { port: p2, vni: 42 } ]
            vnis: [ { vni: 42 }, { vni: 43 } ]
            """)
        XCTAssertEqual(c.access, [.init(port: "p1", vlans: [.init(vlan: 10, vni: 42), .init(vlan: 20, vni: 43)]), .init(port: "p2", vni: 42)])
        let base = "underlay: { port: p0, ip: 10.99.0.1/24 }\nvnis: [ { vni: 42 } ]\n"
        assertError(base + "access: [ { port: p1, vni: 42, vlans: [ { vlan: 10, vni: 42 } ] } ]",
                    "access[0].vlans (line 3): give either vni (an untagged port) or vlans (a tagged port), not both")
        assertError(base + "access: [ { port: p1, vlans: [ { vlan: 4095, vni: 42 } ] } ]",
                    "access[0].vlans[0].vlan (line 3): expected an integer from 1 to 4094, got '4095'")
        assertError(base + "access: [ { port: p1, vlans: [ { vlan: 10, vni: 42 }, { vlan: 10, vni: 42 } ] } ]",
                    "access[0].vlans[1].vlan (line 3): VLAN 10 is mapped twice")
        assertError(base + "access: [ { port: p1, vlans: [ { vlan: 10, vni: 7 } ] } ]",
                    "access[0].vlans[0].vni (line 3): VNI 7 is not declared under vnis")
        assertError(base + "access: [ { port: p1 } ]", "access[0].vni (line 3): required key is missing (or give vlans for a tagged port)")
    }

    func testVhostUserAccessPorts() throws {
        let c = try ConfigParser.parse("""
            underlay: { port: p0, ip: 10.99.0.1/24 }
            access:
              - { port: net_vhost0, vni: 42, vhost: { socket: /run/vxland/vm1.sock } }
              - { port: net_vhost1, vlans: [ { vlan: 10, vni: 42 } ], vhost: { socket: /run/qemu/vm2.sock, client: true, tso: false } }
              - { port: net_vhost2, vni: 42 }
            vnis: [ { vni: 42 } ]
            """)
        XCTAssertEqual(c.access, [
            .init(port: "net_vhost0", vni: 42, vhost: .init(socket: "/run/vxland/vm1.sock", client: false, tso: true)),
            .init(port: "net_vhost1", vlans: [.init(vlan: 10, vni: 42)], vhost: .init(socket: "/run/qemu/vm2.sock", client: true, tso: false)),
            // Without vhost the port is EAL's (a --vdev net_vhost2,... on the command line).
            .init(port: "net_vhost2", vni: 42),
        ])

        let base = "underlay: { port: p0, ip: 10.99.0.1/24 }\nvnis: [ { vni: 42 } ]\naccess:\n"
        assertError(base + "  - { port: net_pcap1, vni: 42, vhost: { socket: /tmp/vm.sock } }",
                    "access[0].port (line 4): 'net_pcap1' cannot carry vhost: a vhost-user port's name must start with net_vhost (such as net_vhost0)")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: vm.sock } }",
                    "access[0].vhost.socket (line 4): expected the absolute path of the vhost-user socket, got 'vm.sock'")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: \"\" } }",
                    "access[0].vhost.socket (line 4): expected the absolute path of the vhost-user socket, got ''")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { client: true } }",
                    "access[0].vhost.socket (line 4): required key is missing")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: /tmp/ } }",
                    "access[0].vhost.socket (line 4): '/tmp/' names a directory, not a socket")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: \"/tmp/a,b.sock\" } }",
                    "access[0].vhost.socket (line 4): '/tmp/a,b.sock' contains a comma, '=' or a blank, which DPDK's device arguments cannot carry")
        let long = "/tmp/" + String(repeating: "s", count: 103)
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: \(long) } }",
                    "access[0].vhost.socket (line 4): '\(long)' is 108 bytes; a UNIX socket path is at most 107")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: /tmp/vm.sock } }\n  - { port: net_vhost1, vni: 42, vhost: { socket: /tmp/vm.sock } }",
                    "access[1].vhost.socket (line 5): '/tmp/vm.sock' is the socket of another access port too")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: /tmp/vm.sock, client: maybe } }",
                    "access[0].vhost.client (line 4): expected true or false, got 'maybe'")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: /tmp/vm.sock, queues: 2 } }",
                    "access[0].vhost.queues (line 4): unknown key (expected one of: socket, client, tso)")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: /tmp/vm.sock }",
                    "access[0].vhost (line 4): expected a mapping of keys (socket, client, tso)")
        assertError(base + "  - { port: net_vhost0, vni: 42, extra: 1 }",
                    "access[0].extra (line 4): unknown key (expected one of: port, vni, vlans, offloads, vhost, tap)")
    }

    /// Tap ports: the interface's name as Linux takes it, each used once, never with vhost.
    func testTapPorts() throws {
        let c = try ConfigParser.parse("""
            underlay: { port: und0, tap: { name: und0 }, ip: 10.99.0.1/24 }
            vnis: [ { vni: 42 } ]
            access: [ { port: vm1, vni: 42, tap: { name: vm1 } }, { port: net_af_packet1, vni: 42 } ]
            """)
        XCTAssertEqual(c.underlay.tap, .init(name: "und0", udpTunnelGSO: true))
        XCTAssertEqual(c.access.map(\.tap), [.init(name: "vm1"), nil])
        let base = "underlay: { port: p0, ip: 10.99.0.1/24 }\nvnis: [ { vni: 42 } ]\naccess:\n"
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: a234567890123456 } }",
                    "access[0].tap.name (line 4): an interface name has 1 to 15 characters, got 'a234567890123456' (16)")
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: \"\" } }",
                    "access[0].tap.name (line 4): an interface name has 1 to 15 characters, got '' (0)")
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: \"a/b\" } }",
                    "access[0].tap.name (line 4): 'a/b' cannot be an interface name: no '/', ':', '%', blanks or control characters, not '.' or '..'")
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: \"..\" } }",
                    "access[0].tap.name (line 4): '..' cannot be an interface name: no '/', ':', '%', blanks or control characters, not '.' or '..'")
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: \"a b\" } }",
                    "access[0].tap.name (line 4): 'a b' cannot be an interface name: no '/', ':', '%', blanks or control characters, not '.' or '..'")
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: t1 } }\n  - { port: vm2, vni: 42, tap: { name: t1 } }",
                    "access[1].tap.name (line 5): 't1' is the tap of another port too")
        assertError("underlay: { port: p0, ip: 10.99.0.1/24, tap: { name: t1 } }\nvnis: [ { vni: 42 } ]\naccess: [ { port: vm1, vni: 42, tap: { name: t1 } } ]",
                    "access[0].tap.name (line 3): 't1' is the tap of another port too")
        assertError(base + "  - { port: net_vhost0, vni: 42, vhost: { socket: /tmp/vm.sock }, tap: { name: t1 } }",
                    "access[0].tap (line 4): a port is a vhost-user port or a tap, not both")
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: t1, queues: 2 } }",
                    "access[0].tap.queues (line 4): unknown key (expected one of: name)")
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: t1, udp_tunnel_gso: true } }",
                    "access[0].tap.udp_tunnel_gso (line 4): unknown key (expected one of: name)")
        assertError(base + "  - { port: vm1, vni: 42, tap: { name: \"tap%d\" } }",
                    "access[0].tap.name (line 4): 'tap%d' cannot be an interface name: no '/', ':', '%', blanks or control characters, not '.' or '..'")
        assertError(base + "  - { port: vm1, vni: 42, tap: }",
                    "access[0].tap (line 4): expected a mapping of keys (name)")
        assertError(base + "  - { port: \"0\", vni: 42, tap: { name: t0 } }",
                    "access[0].port (line 4): '0' cannot name a tap port: a number is a DPDK port id")
        assertError(base + "  - { port: net_vhost3, vni: 42, tap: { name: t0 } }",
                    "access[0].port (line 4): 'net_vhost3' cannot name a tap port: net_vhost names are vhost-user ports")
        assertError("underlay: { port: p0, ip: 10.99.0.1/24, tap: { udp_tunnel_gso: true } }\nvnis: [ { vni: 42 } ]",
                    "underlay.tap.name (line 1): required key is missing")
        assertError("underlay: { port: p0, ip: 10.99.0.1/24, tap: { name: t1, udp_tunnel_gso: maybe } }\nvnis: [ { vni: 42 } ]",
                    "underlay.tap.udp_tunnel_gso (line 1): expected true or false, got 'maybe'")
    }

    /// An IPv6-only VTEP, and a dual-stack one with remotes of both families in one VNI.
    func testIPv6AndDualStackUnderlays() throws {
        let v6 = try ConfigParser.parse("""
            underlay: { port: p0, ip6: "fd00::1/64", gateway6: "fd00::fe" }
            vnis: [ { vni: 7, flood: ["fd00::2", "2001:db8::9"] } ]
            neighbors: [ { ip: "fd00::2", mac: "02:00:00:00:00:02" } ]
            """)
        XCTAssertNil(v6.underlay.interface)
        XCTAssertEqual(v6.underlay.address6, IPv6Address("fd00::1"))
        XCTAssertEqual(v6.underlay.nextHop(for: IPAddress("2001:db8::9")!), IPAddress("fd00::fe"))
        XCTAssertEqual(v6.neighbors.first?.ip, IPAddress("fd00::2"))
        let dual = try ConfigParser.parse("""
            underlay: { port: p0, ip: 10.99.0.1/24, ip6: "fd00::1/64" }
            vnis: [ { vni: 7, flood: [10.99.0.2, "fd00::2"] } ]
            """)
        XCTAssertEqual(dual.vnis[0].flood, [IPAddress("10.99.0.2")!, IPAddress("fd00::2")!])
        XCTAssertEqual(dual.underlay.addressesDescription, "10.99.0.1/24, fd00::1/64")
        assertError("underlay: { port: p0 }", "underlay.ip (line 1): required key is missing (give ip, ip6 or both)")
        assertError("underlay: { port: p0, ip6: \"fd00::1\" }",
                    "underlay.ip6 (line 1): expected an IPv6 address with prefix length, such as fd00::1/64, got 'fd00::1'")
        assertError("underlay: { port: p0, ip6: \"fd00::1/64\" }\nvnis: [ { vni: 7, flood: [\"fd01::2\"] } ]",
                    "vnis[0].flood[0] (line 2): remote fd01::2 is not on the underlay prefix fd00::1/64 and no underlay.gateway6 is configured")
        XCTAssertEqual(IPv6Address("fd00::1")?.solicitedNode.description, "ff02::1:ff00:1")
        XCTAssertNil(IPv6Address("fd00::1::2"))
    }

    func testUnquotedMACThatLooksLikeBase60IsAMAC() throws {
        let c = try ConfigParser.parse(Self.valid.replacingOccurrences(of: "mac: 02:00:00:00:00:01", with: "mac: 12:00:00:00:00:01"))
        XCTAssertEqual(c.underlay.mac?.description, "12:00:00:00:00:01")
    }

    func assertError(_ yaml: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ConfigParser.parse(yaml), file: file, line: line) { error in
            XCTAssertEqual("\(error)", expected, file: file, line: line)
        }
    }

    func replacing(_ a: String, _ b: String) -> String {
        precondition(Self.valid.contains(a), "test fixture does not contain \(a)")
        return Self.valid.replacingOccurrences(of: a, with: b)
    }

    func testEachErrorNamesTheKeyAndTheProblem() {
        assertError("", "configuration: the configuration is empty")
        assertError("- 1\n- 2", "configuration (line 1): not a vxland configuration (it has none of the keys underlay, access, vnis, fdb, neighbors, resources)")
        assertError("access: []", "underlay (line 1): required key is missing")
        assertError(replacing("mtu: 1500", "mtuu: 1500"),
                    "underlay.mtuu (line 5): unknown key (expected one of: port, ip, ip6, mac, mtu, udp_port, ttl, gateway, gateway6, neighbor_timeout, strict, allowed_remotes, offloads, verify_udp_checksum, udp6_zero_checksum, tap)")
        assertError(replacing("ip: 10.99.0.1/24", "ip: 10.99.0.300/24"),
                    "underlay.ip (line 3): expected an IPv4 address with prefix length, such as 10.99.0.1/24, got '10.99.0.300/24'")
        assertError(replacing("ip: 10.99.0.1/24", "ip: 10.99.0.1"),
                    "underlay.ip (line 3): expected an IPv4 address with prefix length, such as 10.99.0.1/24, got '10.99.0.1'")
        assertError(replacing("ip: 10.99.0.1/24", "ip: 10.99.0.255/24"),
                    "underlay.ip (line 3): 10.99.0.255 is the broadcast address of 10.99.0.0/24; give the VTEP a host address")
        assertError(replacing("mac: 02:00:00:00:00:01", "mac: 02:00:00:00:01"),
                    "underlay.mac (line 4): expected a MAC address such as 02:00:00:00:00:01, got '02:00:00:00:01'")
        assertError(replacing("mac: 02:00:00:00:00:01", "mac: 01:00:5e:00:00:01"),
                    "underlay.mac (line 4): 01:00:5e:00:00:01 is not a unicast address")
        assertError(replacing("mtu: 1500", "mtu: 100"), "underlay.mtu (line 5): expected an integer from 576 to 9216, got '100'")
        assertError(replacing("mtu: 1500", "mtu: big"), "underlay.mtu (line 5): expected an integer from 576 to 9216, got 'big'")
        assertError(replacing("udp_port: 4789", "udp_port: 70000"),
                    "underlay.udp_port (line 6): expected an integer from 1 to 65535, got '70000'")
        assertError(replacing("port: net_af_packet0      # DPDK port name or id", "port: [a, b]"),
                    "underlay.port (line 2): expected a single value, not a list or mapping")
        assertError(replacing("- { port: net_af_packet1, vni: 42 }", "- { port: net_af_packet1, vni: 43 }"),
                    "access[0].vni (line 8): VNI 43 is not declared under vnis")
        assertError(replacing("- { port: net_af_packet1, vni: 42 }", "- { port: net_af_packet0, vni: 42 }"),
                    "access[0].port (line 8): 'net_af_packet0' is already the underlay port")
        assertError(replacing("- { port: net_af_packet1, vni: 42 }", "- { port: p1, vni: 42 }\n  - { port: p1, vni: 42 }"),
                    "access[1].port (line 9): 'p1' is listed twice")
        assertError(replacing("- { vni: 42, flood: [10.99.0.2] }", "- { vni: 16777216, flood: [10.99.0.2] }"),
                    "vnis[0].vni (line 10): VNI 16777216 out of range (1-16777215)")
        assertError(replacing("- { vni: 42, flood: [10.99.0.2] }", "- { vni: 42, flood: [10.99.0.2] }\n  - { vni: 42 }"),
                    "vnis[1].vni (line 11): VNI 42 is declared twice")
        assertError(replacing("flood: [10.99.0.2]", "flood: [10.99.0.1]"), "vnis[0].flood[0] (line 10): 10.99.0.1 is this VTEP's own address")
        assertError(replacing("flood: [10.99.0.2]", "flood: [239.1.1.1]"),
                    "vnis[0].flood[0] (line 10): 239.1.1.1 is not a unicast address (multicast underlays are not supported)")
        assertError(replacing("flood: [10.99.0.2]", "flood: [fd00::2]"),
                    "vnis[0].flood[0] (line 10): remote fd00::2 is IPv6 but the VTEP has no IPv6 address (underlay.ip6)")
        assertError(replacing("flood: [10.99.0.2]", "flood: [10.99.0.2, 10.98.0.7]"),
                    "vnis[0].flood[1] (line 10): remote 10.98.0.7 is not on the underlay subnet 10.99.0.1/24 and no underlay.gateway is configured")
        assertError(replacing("udp_port: 4789", "udp_port: 4789\n  gateway: 10.98.0.1"),
                    "underlay.gateway (line 7): 10.98.0.1 is not another host on the underlay subnet 10.99.0.1/24")
        assertError(replacing("- { ip: 10.99.0.2, mac: \"02:00:00:00:00:02\" }", "- { ip: 10.98.0.2, mac: \"02:00:00:00:00:02\" }"),
                    "neighbors[0].ip (line 14): 10.98.0.2 is not on an underlay subnet of this VTEP")
        assertError(replacing("flood: [10.99.0.2]", "flood: 10.99.0.2"), "vnis[0].flood (line 10): expected a list")
        assertError(replacing("flood: [10.99.0.2]", "flood: [10.99.0.2, 10.99.0.3, 10.99.0.2]"), "vnis[0].flood[2] (line 10): 10.99.0.2 is listed twice")
        assertError(replacing("flood: [10.99.0.2]", "flood: [10.99.0.2, 10.99.0.3, 10.99.0.4, 10.99.0.5, 10.99.0.6, 10.99.0.7, 10.99.0.8, 10.99.0.9, 10.99.0.10, 10.99.0.11, 10.99.0.12, 10.99.0.13, 10.99.0.14, 10.99.0.15, 10.99.0.16, 10.99.0.17, 10.99.0.18, 10.99.0.19, 10.99.0.20, 10.99.0.21, 10.99.0.22, 10.99.0.23, 10.99.0.24, 10.99.0.25, 10.99.0.26, 10.99.0.27, 10.99.0.28, 10.99.0.29, 10.99.0.30, 10.99.0.31, 10.99.0.32, 10.99.0.33, 10.99.0.34, 10.99.0.35, 10.99.0.36, 10.99.0.37, 10.99.0.38, 10.99.0.39, 10.99.0.40, 10.99.0.41, 10.99.0.41]"),
                    "vnis[0].flood[40] (line 10): 10.99.0.41 is listed twice")
        assertError(replacing("mac: \"02:00:00:00:42:02\"", "mac: \"ff:ff:ff:ff:ff:ff\""),
                    "fdb[0].mac (line 12): ff:ff:ff:ff:ff:ff is not a unicast address (broadcast and multicast follow the flood list)")
        assertError(replacing("remote: 10.99.0.2 }", "remote: 172.16.0.8 }"),
                    "fdb[0].remote (line 12): remote 172.16.0.8 is not on the underlay subnet 10.99.0.1/24 and no underlay.gateway is configured")
        assertError(replacing("- { vni: 42, mac: \"02:00:00:00:42:02\", remote: 10.99.0.2 }",
                              "- { vni: 42, mac: \"02:00:00:00:42:02\", remote: 10.99.0.2 }\n  - { vni: 42, mac: \"02:00:00:00:42:02\", remote: 10.99.0.2 }"),
                    "fdb[1].mac (line 13): 02:00:00:00:42:02 already has an entry in VNI 42")
        assertError(replacing("- { ip: 10.99.0.2, mac: \"02:00:00:00:00:02\" }", "- { ip: 10.99.0.2 }"),
                    "neighbors[0].mac (line 14): required key is missing")
        assertError(Self.valid + "\nresources: { mbufs: 10 }", "resources.mbufs (line 15): expected an integer from 1023 to 16777215, got '10'")
        assertError(replacing("udp_port: 4789", "udp_port: 4789\n  strict: maybe"), "underlay.strict (line 7): expected true or false, got 'maybe'")
        assertError(replacing("- { vni: 42, flood: [10.99.0.2] }", "- { vni: 42, flood: [10.99.0.2], ageing: 5 }"),
                    "vnis[0].ageing (line 10): expected an integer from 10 to 1000000, got '5'")
        assertError(Self.valid + "\nextra: 1", "extra (line 15): unknown key (expected one of: underlay, access, vnis, fdb, neighbors, resources)")
    }

    /// VNI 0 is reserved (and means "none" in the dataplane's tables): refused wherever a VNI is given.
    func testVNIsAreOneTo16777215Everywhere() throws {
        assertError(replacing("- { vni: 42, flood: [10.99.0.2] }", "- { vni: 0, flood: [10.99.0.2] }"),
                    "vnis[0].vni (line 10): VNI 0 out of range (1-16777215)")
        assertError(replacing("- { port: net_af_packet1, vni: 42 }", "- { port: net_af_packet1, vni: 0 }"),
                    "access[0].vni (line 8): VNI 0 out of range (1-16777215)")
        assertError(replacing("- { port: net_af_packet1, vni: 42 }", "- { port: net_af_packet1, vlans: [ { vlan: 10, vni: 0 } ] }"),
                    "access[0].vlans[0].vni (line 8): VNI 0 out of range (1-16777215)")
        assertError(replacing("- { vni: 42, mac: \"02:00:00:00:42:02\"", "- { vni: 0, mac: \"02:00:00:00:42:02\""),
                    "fdb[0].vni (line 12): VNI 0 out of range (1-16777215)")
        assertError(replacing("- { vni: 42, flood: [10.99.0.2] }", "- { vni: -1 }"), "vnis[0].vni (line 10): VNI -1 out of range (1-16777215)")
        assertError(replacing("- { vni: 42, flood: [10.99.0.2] }", "- { vni: forty }"),
                    "vnis[0].vni (line 10): expected an integer from 1 to 16777215, got 'forty'")
        XCTAssertEqual(VTEPConfiguration.vniRange, 1...16_777_215)
        let c = try ConfigParser.parse("""
            underlay: { port: p0, ip: 10.99.0.1/24 }
            access: [ { port: p1, vni: 1 }, { port: p2, vlans: [ { vlan: 5, vni: 16777215 } ] } ]
            vnis: [ { vni: 1 }, { vni: 16777215 } ]
            fdb: [ { vni: 16777215, mac: "02:00:00:00:00:09", remote: 10.99.0.9 } ]
            """)
        XCTAssertEqual(c.vnis.map(\.vni), [1, 16_777_215])
        XCTAssertNil(c.vniSettings(0))
    }

    /// Remote VTEPs, static neighbors and the gateway must be other hosts of the underlay: not this VTEP, nor the
    /// subnet's network or broadcast address (prefixes shorter than /31).
    func testIPv4PeersMustBeOtherHostsOnTheSubnet() throws {
        assertError(replacing("flood: [10.99.0.2]", "flood: [10.99.0.0]"),
                    "vnis[0].flood[0] (line 10): 10.99.0.0 is the network address of the underlay subnet 10.99.0.0/24")
        assertError(replacing("flood: [10.99.0.2]", "flood: [10.99.0.2, 10.99.0.255]"),
                    "vnis[0].flood[1] (line 10): 10.99.0.255 is the broadcast address of the underlay subnet 10.99.0.0/24")
        assertError(replacing("flood: [10.99.0.2]", "flood: [127.0.0.1]"), "vnis[0].flood[0] (line 10): 127.0.0.1 is a loopback address")
        assertError(replacing("flood: [10.99.0.2]", "flood: [255.255.255.255]"),
                    "vnis[0].flood[0] (line 10): 255.255.255.255 is not a unicast address (multicast underlays are not supported)")
        assertError(replacing("remote: 10.99.0.2 }", "remote: 10.99.0.0 }"),
                    "fdb[0].remote (line 12): 10.99.0.0 is the network address of the underlay subnet 10.99.0.0/24")
        assertError(replacing("remote: 10.99.0.2 }", "remote: 10.99.0.255 }"),
                    "fdb[0].remote (line 12): 10.99.0.255 is the broadcast address of the underlay subnet 10.99.0.0/24")
        assertError(replacing("remote: 10.99.0.2 }", "remote: 10.99.0.1 }"), "fdb[0].remote (line 12): 10.99.0.1 is this VTEP's own address")
        assertError(replacing("- { ip: 10.99.0.2,", "- { ip: 10.99.0.255,"),
                    "neighbors[0].ip (line 14): 10.99.0.255 is the broadcast address of the underlay subnet 10.99.0.0/24")
        assertError(replacing("- { ip: 10.99.0.2,", "- { ip: 10.99.0.0,"),
                    "neighbors[0].ip (line 14): 10.99.0.0 is the network address of the underlay subnet 10.99.0.0/24")
        assertError(replacing("- { ip: 10.99.0.2,", "- { ip: 10.99.0.1,"), "neighbors[0].ip (line 14): 10.99.0.1 is this VTEP's own address")
        assertError(replacing("- { ip: 10.99.0.2,", "- { ip: 224.0.0.5,"), "neighbors[0].ip (line 14): 224.0.0.5 is not a unicast address")
        assertError(replacing("udp_port: 4789", "udp_port: 4789\n  gateway: 10.99.0.0"),
                    "underlay.gateway (line 7): 10.99.0.0 is the network address of the underlay subnet 10.99.0.0/24")
        assertError(replacing("udp_port: 4789", "udp_port: 4789\n  gateway: 10.99.0.255"),
                    "underlay.gateway (line 7): 10.99.0.255 is the broadcast address of the underlay subnet 10.99.0.0/24")
        assertError(replacing("udp_port: 4789", "udp_port: 4789\n  gateway: 10.99.0.1"),
                    "underlay.gateway (line 7): 10.99.0.1 is this VTEP's own address")
        // Off the VTEP's subnet the address is someone else's host: .0 and .255 of another /24 are fine.
        XCTAssertNoThrow(try ConfigParser.parse("""
            underlay: { port: p0, ip: 10.99.0.1/24, gateway: 10.99.0.254 }
            vnis: [ { vni: 7, flood: [10.98.1.0, 10.98.0.255] } ]
            """))
        // A /31 (RFC 3021) has no network or broadcast address: both addresses are hosts.
        let p2p = try ConfigParser.parse("""
            underlay: { port: p0, ip: 10.99.0.0/31, gateway: 10.99.0.1 }
            vnis: [ { vni: 7, flood: [10.99.0.1, 172.16.0.0] } ]
            neighbors: [ { ip: 10.99.0.1, mac: "02:00:00:00:00:02" } ]
            """)
        XCTAssertEqual(p2p.underlay.address, IPv4Address(10, 99, 0, 0))
        XCTAssertNoThrow(try ConfigParser.parse("underlay: { port: p0, ip: 10.99.0.1/31 }\nvnis: [ { vni: 7, flood: [10.99.0.0] } ]"))
    }

    /// resources.vnis and resources.ports size tables that also hold what is added at run time: the VNIs and ports
    /// the file configures must fit in them.
    func testVNIAndPortCapacities() throws {
        let defaults = try ConfigParser.parse(Self.valid).resources
        XCTAssertEqual(defaults.vnis, 4096)
        XCTAssertEqual(defaults.ports, 16)
        let smallest = try ConfigParser.parse(Self.valid + "\nresources: { vnis: 16, ports: 2 }").resources
        XCTAssertEqual(smallest.vnis, 16)
        XCTAssertEqual(smallest.ports, 2)
        let largest = try ConfigParser.parse(Self.valid + "\nresources:\n  vnis: 1048576\n  ports: 256").resources
        XCTAssertEqual(largest.vnis, 1_048_576)
        XCTAssertEqual(largest.ports, 256)
        XCTAssertEqual(largest.tunnels, 4096, "the other resources keep their defaults")

        assertError(Self.valid + "\nresources: { vnis: 15 }", "resources.vnis (line 15): expected an integer from 16 to 1048576, got '15'")
        assertError(Self.valid + "\nresources: { vnis: 1048577 }",
                    "resources.vnis (line 15): expected an integer from 16 to 1048576, got '1048577'")
        assertError(Self.valid + "\nresources: { ports: 1 }", "resources.ports (line 15): expected an integer from 2 to 256, got '1'")
        assertError(Self.valid + "\nresources: { ports: 257 }", "resources.ports (line 15): expected an integer from 2 to 256, got '257'")
        assertError(Self.valid + "\nresources: { ports: many }", "resources.ports (line 15): expected an integer from 2 to 256, got 'many'")
        assertError(Self.valid + "\nresources: { queues: 2 }",
                    "resources.queues (line 15): unknown key (expected one of: mbufs, rx_descriptors, tx_descriptors, fdb_entries, tunnels, vnis, ports)")

        func vnis(_ count: Int, resources: String = "") -> String {
            (["underlay: { port: p0, ip: 10.99.0.1/24 }", resources, "vnis:"] + (1...count).map { "  - { vni: \($0) }" }).joined(separator: "\n")
        }
        XCTAssertEqual(try ConfigParser.parse(vnis(16, resources: "resources: { vnis: 16 }")).vnis.count, 16)
        assertError(vnis(17, resources: "resources: { vnis: 16 }"), "resources.vnis (line 2): 16 is fewer than the 17 VNIs configured")
        XCTAssertEqual(try ConfigParser.parse(vnis(4096)).vnis.count, 4096)
        assertError(vnis(4097), "resources.vnis: 4096 is fewer than the 4097 VNIs configured")
        assertError(vnis(6000, resources: "resources: { vnis: 5000 }"), "resources.vnis (line 2): 5000 is fewer than the 6000 VNIs configured")
        XCTAssertEqual(try ConfigParser.parse(vnis(6000, resources: "resources: { vnis: 6000 }")).vnis.count, 6000)

        func ports(_ count: Int, resources: String = "") -> String {
            (["underlay: { port: p0, ip: 10.99.0.1/24 }", resources, "vnis: [ { vni: 42 } ]", "access:"]
             + (1...count).map { "  - { port: p\($0), vni: 42 }" }).joined(separator: "\n")
        }
        // The underlay is a port too: two ports hold it and one access port.
        XCTAssertEqual(try ConfigParser.parse(ports(1, resources: "resources: { ports: 2 }")).access.count, 1)
        assertError(ports(2, resources: "resources: { ports: 2 }"),
                    "resources.ports (line 2): 2 is fewer than the 3 ports configured (the underlay and 2 access ports)")
        XCTAssertEqual(try ConfigParser.parse(ports(15)).access.count, 15)
        assertError(ports(16), "resources.ports: 16 is fewer than the 17 ports configured (the underlay and 16 access ports)")
        XCTAssertEqual(try ConfigParser.parse(ports(255, resources: "resources: { ports: 256 }")).access.count, 255)
        assertError(ports(256, resources: "resources: { ports: 256 }"),
                    "resources.ports (line 2): 256 is fewer than the 257 ports configured (the underlay and 256 access ports)")
    }

    func testTheVTEPAddressIsAHostAddress() {
        assertError(replacing("ip: 10.99.0.1/24", "ip: 10.99.0.0/24"),
                    "underlay.ip (line 3): 10.99.0.0 is the network address of 10.99.0.0/24; give the VTEP a host address")
        assertError(replacing("ip: 10.99.0.1/24", "ip: 10.99.255.255/16"),
                    "underlay.ip (line 3): 10.99.255.255 is the broadcast address of 10.99.0.0/16; give the VTEP a host address")
        assertError(replacing("ip: 10.99.0.1/24", "ip: 127.0.0.1/8"), "underlay.ip (line 3): 127.0.0.1/8 cannot be a VTEP address")
        assertError("underlay: { port: p0, ip6: \"fd00::/64\" }",
                    "underlay.ip6 (line 1): fd00:: is the subnet-router anycast address of fd00::/64; give the VTEP a host address")
        assertError("underlay: { port: p0, ip6: \"fd00:0:0:100::/56\" }",
                    "underlay.ip6 (line 1): fd00:0:0:100:: is the subnet-router anycast address of fd00:0:0:100::/56; give the VTEP a host address")
        assertError("underlay: { port: p0, ip6: \"::1/128\" }", "underlay.ip6 (line 1): ::1/128 cannot be a VTEP address")
        XCTAssertNoThrow(try ConfigParser.parse("underlay: { port: p0, ip: 10.99.0.1/32 }"))
        XCTAssertNoThrow(try ConfigParser.parse("underlay: { port: p0, ip6: \"fd00::/127\" }\nvnis: [ { vni: 7, flood: [\"fd00::1\"] } ]"))
        XCTAssertNoThrow(try ConfigParser.parse("underlay: { port: p0, ip6: \"fd00::/128\" }"))
    }

    func testIPv6PeersMustBeOtherHostsOnThePrefix() throws {
        let base = "underlay: { port: p0, ip6: \"fd00::1/64\" }\n"
        func flood(_ remote: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
            assertError(base + "vnis: [ { vni: 7, flood: [\"\(remote)\"] } ]", expected, file: file, line: line)
        }
        flood("fd00::", "vnis[0].flood[0] (line 2): fd00:: is the subnet-router anycast address of the underlay prefix fd00::/64")
        flood("fd00::1", "vnis[0].flood[0] (line 2): fd00::1 is this VTEP's own address")
        flood("::1", "vnis[0].flood[0] (line 2): ::1 is a loopback address")
        flood("::", "vnis[0].flood[0] (line 2): :: is not a unicast address (multicast underlays are not supported)")
        flood("0.0.0.0", "vnis[0].flood[0] (line 2): 0.0.0.0 is not a unicast address (multicast underlays are not supported)")
        flood("ff02::1", "vnis[0].flood[0] (line 2): ff02::1 is not a unicast address (multicast underlays are not supported)")
        flood("fe80::2",
              "vnis[0].flood[0] (line 2): fe80::2 is link-local and not on the underlay prefix fd00::1/64, and no gateway forwards link-local traffic")
        flood("::ffff:10.99.0.2", "vnis[0].flood[0] (line 2): ::ffff:10.99.0.2 is an IPv4-mapped IPv6 address; write the IPv4 address")
        assertError(base + "vnis: [ { vni: 7 } ]\nfdb: [ { vni: 7, mac: \"02:00:00:00:00:09\", remote: \"fd00::\" } ]",
                    "fdb[0].remote (line 3): fd00:: is the subnet-router anycast address of the underlay prefix fd00::/64")
        assertError(base + "vnis: [ { vni: 7 } ]\nfdb: [ { vni: 7, mac: \"02:00:00:00:00:09\", remote: \"fe80::9\" } ]",
                    "fdb[0].remote (line 3): fe80::9 is link-local and not on the underlay prefix fd00::1/64, and no gateway forwards link-local traffic")
        assertError(base + "neighbors: [ { ip: \"fd00::\", mac: \"02:00:00:00:00:02\" } ]",
                    "neighbors[0].ip (line 2): fd00:: is the subnet-router anycast address of the underlay prefix fd00::/64")
        assertError(base + "neighbors: [ { ip: \"fd00::1\", mac: \"02:00:00:00:00:02\" } ]",
                    "neighbors[0].ip (line 2): fd00::1 is this VTEP's own address")
        assertError("underlay: { port: p0, ip6: \"fd00::1/64\", gateway6: \"fd00::\" }",
                    "underlay.gateway6 (line 1): fd00:: is the subnet-router anycast address of the underlay prefix fd00::/64")
        assertError("underlay: { port: p0, ip6: \"fd00::1/64\", gateway6: \"fd00::1\" }",
                    "underlay.gateway6 (line 1): fd00::1 is this VTEP's own address")
        assertError("underlay: { port: p0, ip6: \"fd00::1/64\", gateway6: \"::1\" }", "underlay.gateway6 (line 1): ::1 is a loopback address")
        // A link-local next hop is how routers are usually reached; a link-local remote works only on a link-local prefix.
        let c = try ConfigParser.parse("""
            underlay: { port: p0, ip6: "fd00::1/64", gateway6: "fe80::1" }
            vnis: [ { vni: 7, flood: ["2001:db8::9", "fd00::2"] } ]
            neighbors: [ { ip: "fe80::1", mac: "02:00:00:00:00:02" } ]
            """)
        XCTAssertEqual(c.underlay.nextHop(for: IPAddress("2001:db8::9")!), IPAddress("fe80::1"))
        XCTAssertNoThrow(try ConfigParser.parse("underlay: { port: p0, ip6: \"fe80::1/64\" }\nvnis: [ { vni: 7, flood: [\"fe80::2\"] } ]"))
    }

    /// Parsing and validation are proportional to the file: 200,000 VNIs took 17 s when every check searched
    /// the entries parsed so far, and 2 s through Yams' Node tree. Read from libyaml's events, a release build
    /// takes about 0.65 s of CPU for 200,000 VNIs (1.7 s with 200,000 FDB entries too), half of it libyaml's;
    /// debug is several times slower, so the test uses 50,000 VNIs and 10,000 FDB entries and checks what was
    /// read rather than how fast.
    func testALargeFileIsReadCompletely() throws {
        let vnis = 50_000, entries = 10_000
        var lines = ["underlay: { port: p0, ip: 10.99.0.1/16, gateway: 10.99.0.254 }",
                     "resources: { fdb_entries: 1048576, tunnels: 1048576, vnis: 65536 }", "neighbors:"]
        for i in 0..<200 { lines.append("  - { ip: 10.99.1.\(i + 1), mac: \"02:00:00:00:01:\(hex(i))\" }") }
        lines.append("vnis:")
        for vni in 1...vnis { lines.append("  - { vni: \(vni), flood: [10.99.0.2] }") }
        lines.append("fdb:")
        for i in 0..<entries {
            lines.append("  - { vni: \(vnis - i), mac: \"02:00:00:\(hex(i >> 16)):\(hex(i >> 8 & 255)):\(hex(i & 255))\", remote: 10.99.\(i % 200 + 2).7 }")
        }
        let text = lines.joined(separator: "\n")
        let start = Date()
        let c = try ConfigParser.parse(text)
        print("parsed \(vnis) VNIs and \(entries) FDB entries (\(text.utf8.count) bytes) in \(Date().timeIntervalSince(start)) s")
        XCTAssertEqual(c.vnis.count, vnis)
        XCTAssertEqual(c.fdb.count, entries)
        XCTAssertEqual(c.vnis.last, .init(vni: UInt32(vnis), flood: [IPAddress("10.99.0.2")!]))
        XCTAssertEqual(c.fdb[257], .init(vni: UInt32(vnis - 257), mac: MACAddress("02:00:00:00:01:01")!, remote: IPAddress("10.99.59.7")!))
        for vni in stride(from: 1, through: vnis, by: 997) { XCTAssertEqual(c.vniSettings(UInt32(vni))?.vni, UInt32(vni)) }
        XCTAssertEqual(c.vniIndex(UInt32(vnis)), vnis - 1)
        XCTAssertNil(c.vniSettings(UInt32(vnis + 1)))
        XCTAssertEqual(c.neighbor(IPAddress("10.99.1.200")!)?.mac, MACAddress("02:00:00:00:01:c7"))
        XCTAssertEqual(c.remotes.count, 201)
    }

    private func hex(_ byte: Int) -> String { byte < 16 ? "0" + String(byte, radix: 16) : String(byte, radix: 16) }

    func testDuplicatesFarApartAreFound() {
        var lines = ["underlay: { port: p0, ip: 10.99.0.1/16 }", "vnis:"]
        for vni in 1...3000 { lines.append("  - { vni: \(vni) }") }
        let vnis = lines.joined(separator: "\n")
        assertError(vnis + "\n  - { vni: 1 }", "vnis[3000].vni (line 3003): VNI 1 is declared twice")
        assertError(vnis + "\nfdb:\n  - { vni: 3000, mac: \"02:00:00:00:00:01\", remote: 10.99.0.2 }"
                    + "\n  - { vni: 1, mac: \"02:00:00:00:00:01\", remote: 10.99.0.2 }"
                    + "\n  - { vni: 3000, mac: \"02:00:00:00:00:01\", remote: 10.99.0.3 }",
                    "fdb[2].mac (line 3006): 02:00:00:00:00:01 already has an entry in VNI 3000")
        assertError(vnis + "\nneighbors:\n  - { ip: 10.99.0.2, mac: \"02:00:00:00:00:02\" }\n  - { ip: 10.99.0.2, mac: \"02:00:00:00:00:03\" }",
                    "neighbors[1].ip (line 3005): 10.99.0.2 is listed twice")
    }

    func testLookupsFollowChangesToTheLists() throws {
        var c = try ConfigParser.parse(Self.valid)
        XCTAssertEqual(c.vniSettings(42)?.flood, [IPAddress("10.99.0.2")!])
        c.vnis.append(.init(vni: 43, flood: []))
        c.vnis[0].learning = false
        XCTAssertEqual(c.vniIndex(43), 1)
        XCTAssertEqual(c.vniSettings(42)?.learning, false)
        c.vnis.removeFirst()
        XCTAssertNil(c.vniSettings(42))
        XCTAssertEqual(c.vniIndex(43), 0)
        c.neighbors = []
        XCTAssertNil(c.neighbor(IPAddress("10.99.0.2")!))
        XCTAssertEqual(try ConfigParser.parse(Self.valid), try ConfigParser.parse(Self.valid))
    }

    func testInvalidYAMLIsReportedAsSuch() {
        XCTAssertThrowsError(try ConfigParser.parse("underlay: [")) { error in
            XCTAssertTrue("\(error)".hasPrefix("configuration: not valid YAML or JSON:"), "\(error)")
        }
    }

    func testMissingFileIsNamed() {
        XCTAssertThrowsError(try ConfigParser.load(path: "/nonexistent/vxland.yaml")) { error in
            XCTAssertEqual("\(error)", "configuration: cannot read configuration file '/nonexistent/vxland.yaml': No such file or directory")
        }
    }

    func testAddressParsing() {
        XCTAssertNil(IPv4Address("1.2.3"))
        XCTAssertNil(IPv4Address("1.2.3.4.5"))
        XCTAssertNil(IPv4Address("01234.1.1.1"))
        XCTAssertNil(IPv4Address("+1.1.1.1"))
        XCTAssertNil(IPv4Address("1.2.3.256"))
        XCTAssertNil(IPv4Address("1..3.4"))
        XCTAssertNil(IPv4Address("1.2.3.4."))
        XCTAssertNil(IPv4Address(".1.2.3"))
        XCTAssertNil(IPv4Address(""))
        XCTAssertNil(IPv4Address("1.2.3.٤"))
        XCTAssertEqual(IPv4Address("010.0.0.255")?.value, 0x0A00_00FF)
        XCTAssertEqual(IPv4Interface("10.99.0.77/26")?.network, IPv4Address(10, 99, 0, 64))
        XCTAssertEqual(IPv4Interface("10.99.0.77/26")?.broadcast, IPv4Address(10, 99, 0, 127))
        XCTAssertEqual(IPv4Interface("10.99.0.77/0")?.subnet, "0.0.0.0/0")
        XCTAssertEqual(IPv6Interface("fd00:1:2:3:4::1/66")?.subnet, "fd00:1:2:3::/66")
        XCTAssertEqual(IPv6Interface("fd00:1:2:3:ffff::1/66")?.network.description, "fd00:1:2:3:c000::")
        XCTAssertTrue(IPv6Address("::1")!.isLoopback)
        XCTAssertFalse(IPv6Address("::2")!.isLoopback)
        XCTAssertTrue(IPv6Address("::ffff:1.2.3.4")!.isIPv4Mapped)
        XCTAssertEqual(IPv4Address("192.168.0.1")?.value, 0xC0A8_0001)
        XCTAssertNil(IPv4Interface("10.0.0.1/33"))
        XCTAssertTrue(IPv4Interface("10.99.0.1/24")!.contains(IPv4Address("10.99.0.200")!))
        XCTAssertFalse(IPv4Interface("10.99.0.1/24")!.contains(IPv4Address("10.99.1.1")!))
        XCTAssertNil(MACAddress("02:00:00:00:00:0g"))
        XCTAssertEqual(MACAddress("02-AB-00-00-00-01")?.description, "02:ab:00:00:00:01")
        XCTAssertEqual(MACAddress("fe:dc:ba:98:76:54")?.bytes, [0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54])
        XCTAssertNil(MACAddress("+f:00:00:00:00:01"))
        XCTAssertNil(MACAddress("02:00:00:00:00:01:"))
        XCTAssertNil(MACAddress("02:00:00:00:00"))
        XCTAssertNil(MACAddress("020:00:00:00:00:1"))
        XCTAssertNil(MACAddress("02.00.00.00.00.01"))
        XCTAssertTrue(MACAddress("01:00:5e:00:00:01")!.isMulticast)
    }
}

final class MACAddressParsingTests: XCTestCase {
    func testOneSeparatorThroughout() {
        XCTAssertEqual(MACAddress("02:00:00:00:00:0a")?.bytes, [2, 0, 0, 0, 0, 10])
        XCTAssertEqual(MACAddress("02-00-00-00-00-0A")?.bytes, [2, 0, 0, 0, 0, 10])
        XCTAssertNil(MACAddress("02:00-00:00:00:0a"), "mixed separators are a typo")
        XCTAssertNil(MACAddress("02:00:00:00:00"))
        XCTAssertNil(MACAddress("02:00:00:00:00:0g"))
    }
}

/// A file that is not a configuration is refused without a word of its text; ports and files are checked.
final class ForeignFileTests: XCTestCase {
    func refusal(_ text: String) -> String {
        do { _ = try ConfigParser.parse(text); return "accepted" } catch { return "\(error)" }
    }

    func testAFileThatIsNotAConfigurationIsNeverQuoted() {
        let shadow = "root:$6$Secret.Hash$abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
        let environ = "TOKEN=supersecret\u{0}HOME=/root\u{0}"
        let keyed = "api_token: supersecret\nother: [1, 2]\n"
        let broken = "underlay: { port: p0, ip: \"10.99.0.1/24\nsecret: 'unterminated\n"
        for (text, words) in [(shadow, ["Secret", "root", "19000"]), (environ, ["supersecret", "TOKEN"]),
                              (keyed, ["supersecret", "api_token"]), (broken, ["secret", "unterminated"])] {
            let said = refusal(text)
            XCTAssertTrue(said.contains("not a vxland configuration") || said.contains("not valid YAML"), said)
            for w in words { XCTAssertFalse(said.contains(w), "\(said) quotes \(w)") }
        }
        XCTAssertTrue(refusal(broken).contains("line"), refusal(broken))
    }

    func testOnlyRegularFilesAreRead() {
        for path in ["/dev/zero", "/tmp", "/proc/self/environ"] {
            do { _ = try ConfigParser.load(path: path); XCTFail("\(path) was read") } catch {
                // /proc files are regular but not a configuration.
                XCTAssertTrue("\(error)".contains("not a regular file") || "\(error)".contains("not a vxland configuration")
                              || "\(error)".contains("not valid YAML"), "\(path): \(error)")
                XCTAssertFalse("\(error)".contains("PATH="), "\(error)")
            }
        }
    }

    func testAFIFOIsRefusedWithoutWaitingForAWriter() throws {
        let path = NSTemporaryDirectory() + "vxland-fifo-\(getpid())"
        unlink(path)
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        defer { unlink(path) }
        XCTAssertThrowsError(try ConfigParser.load(path: path)) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
    }

    func testPortNamesCannotCarryDeviceArguments() {
        let text = ConfigParserTests.valid.replacingOccurrences(of: "port: net_af_packet1,", with: "port: \"net_vhost0,iface=/tmp/x\",")
        XCTAssertTrue(refusal(text).contains("is not a DPDK port name"), refusal(text))
    }
}
