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
        XCTAssertEqual(c.segments, [.init(vni: 42, flood: [.v4(IPv4Address(10, 99, 0, 2))])])
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
        XCTAssertEqual(dual.segments[0].flood, [IPAddress("10.99.0.2")!, IPAddress("fd00::2")!])
        XCTAssertEqual(dual.underlay.addressesDescription, "10.99.0.1/24, fd00::1/64")
        assertError("underlay: { port: p0 }", "underlay.ip (line 1): required key is missing (give ip, ip6 or both)")
        assertError("underlay: { port: p0, ip6: \"fd00::1\" }",
                    "underlay.ip6 (line 1): expected an IPv6 address with prefix length, such as fd00::1/64, got 'fd00::1'")
        assertError("underlay: { port: p0, ip6: \"fd00::1/64\" }\nvnis: [ { vni: 7, flood: [\"fd01::2\"] } ]",
                    "vnis[0].flood[0]: remote fd01::2 is not on the underlay prefix fd00::1/64 and no underlay.gateway6 is configured")
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
        assertError("- 1\n- 2", "configuration (line 1): expected a mapping of keys (underlay, access, vnis, fdb, neighbors, resources)")
        assertError("access: []", "underlay (line 1): required key is missing")
        assertError(replacing("mtu: 1500", "mtuu: 1500"),
                    "underlay.mtuu (line 5): unknown key (expected one of: port, ip, ip6, mac, mtu, udp_port, ttl, gateway, gateway6, neighbor_timeout, strict)")
        assertError(replacing("ip: 10.99.0.1/24", "ip: 10.99.0.300/24"),
                    "underlay.ip (line 3): expected an IPv4 address with prefix length, such as 10.99.0.1/24, got '10.99.0.300/24'")
        assertError(replacing("ip: 10.99.0.1/24", "ip: 10.99.0.1"),
                    "underlay.ip (line 3): expected an IPv4 address with prefix length, such as 10.99.0.1/24, got '10.99.0.1'")
        assertError(replacing("ip: 10.99.0.1/24", "ip: 10.99.0.255/24"), "underlay.ip (line 3): 10.99.0.255/24 cannot be a VTEP address")
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
                    "vnis[0].vni (line 10): expected an integer from 0 to 16777215, got '16777216'")
        assertError(replacing("- { vni: 42, flood: [10.99.0.2] }", "- { vni: 42, flood: [10.99.0.2] }\n  - { vni: 42 }"),
                    "vnis[1].vni (line 11): VNI 42 is declared twice")
        assertError(replacing("flood: [10.99.0.2]", "flood: [10.99.0.1]"), "vnis[0].flood[0] (line 10): 10.99.0.1 is this VTEP's own address")
        assertError(replacing("flood: [10.99.0.2]", "flood: [239.1.1.1]"),
                    "vnis[0].flood[0] (line 10): 239.1.1.1 is not a unicast address (multicast underlays are not supported)")
        assertError(replacing("flood: [10.99.0.2]", "flood: [fd00::2]"),
                    "vnis[0].flood[0]: remote fd00::2 is IPv6 but the VTEP has no IPv6 address (underlay.ip6)")
        assertError(replacing("flood: [10.99.0.2]", "flood: [10.99.0.2, 10.98.0.7]"),
                    "vnis[0].flood[1]: remote 10.98.0.7 is not on the underlay subnet 10.99.0.1/24 and no underlay.gateway is configured")
        assertError(replacing("udp_port: 4789", "udp_port: 4789\n  gateway: 10.98.0.1"),
                    "underlay.gateway (line 7): 10.98.0.1 is not another host on the underlay subnet 10.99.0.1/24")
        assertError(replacing("- { ip: 10.99.0.2, mac: \"02:00:00:00:00:02\" }", "- { ip: 10.98.0.2, mac: \"02:00:00:00:00:02\" }"),
                    "neighbors[0].ip: 10.98.0.2 is not on an underlay subnet of this VTEP")
        assertError(replacing("flood: [10.99.0.2]", "flood: 10.99.0.2"), "vnis[0].flood (line 10): expected a list")
        assertError(replacing("mac: \"02:00:00:00:42:02\"", "mac: \"ff:ff:ff:ff:ff:ff\""),
                    "fdb[0].mac (line 12): ff:ff:ff:ff:ff:ff is not a unicast address (broadcast and multicast follow the flood list)")
        assertError(replacing("remote: 10.99.0.2 }", "remote: 172.16.0.8 }"),
                    "fdb[0].remote: remote 172.16.0.8 is not on the underlay subnet 10.99.0.1/24 and no underlay.gateway is configured")
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

    func testInvalidYAMLIsReportedAsSuch() {
        XCTAssertThrowsError(try ConfigParser.parse("underlay: [")) { error in
            XCTAssertTrue("\(error)".hasPrefix("configuration: not valid YAML or JSON:"), "\(error)")
        }
    }

    func testMissingFileIsNamed() {
        XCTAssertThrowsError(try ConfigParser.load(path: "/nonexistent/vxland.yaml")) { error in
            XCTAssertEqual("\(error)", "configuration: cannot read configuration file '/nonexistent/vxland.yaml'")
        }
    }

    func testAddressParsing() {
        XCTAssertNil(IPv4Address("1.2.3"))
        XCTAssertNil(IPv4Address("1.2.3.4.5"))
        XCTAssertNil(IPv4Address("01234.1.1.1"))
        XCTAssertNil(IPv4Address("+1.1.1.1"))
        XCTAssertEqual(IPv4Address("192.168.0.1")?.value, 0xC0A8_0001)
        XCTAssertNil(IPv4Interface("10.0.0.1/33"))
        XCTAssertTrue(IPv4Interface("10.99.0.1/24")!.contains(IPv4Address("10.99.0.200")!))
        XCTAssertFalse(IPv4Interface("10.99.0.1/24")!.contains(IPv4Address("10.99.1.1")!))
        XCTAssertNil(MACAddress("02:00:00:00:00:0g"))
        XCTAssertEqual(MACAddress("02-AB-00-00-00-01")?.description, "02:ab:00:00:00:01")
        XCTAssertTrue(MACAddress("01:00:5e:00:00:01")!.isMulticast)
    }
}
