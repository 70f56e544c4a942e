import XCTest
@testable import VTEPConfig

/// underlay.allowed_remotes and vnis[].allowed_remotes: who may send VXLAN to this VTEP (RFC 7348 section 7).
final class RemoteFilterTests: XCTestCase {
    func assertError(_ yaml: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ConfigParser.parse(yaml), file: file, line: line) { error in
            XCTAssertEqual("\(error)", expected, file: file, line: line)
        }
    }

    func ip(_ text: String) -> IPAddress { IPAddress(text)! }
    func prefix(_ text: String) -> IPPrefix { try! IPPrefix.parse(text).get() }

    func testListsAreParsedGloballyAndPerVNI() throws {
        let c = try ConfigParser.parse("""
            underlay:
              port: p0
              ip: 10.99.0.1/24
              ip6: "fd00::1/64"
              allowed_remotes: [10.99.0.0/24, "fd00::/64", 192.0.2.7, "2001:db8::9", 0.0.0.0/0]
            vnis:
              - { vni: 42, flood: [10.99.0.2], allowed_remotes: [10.99.0.0/28] }
              - { vni: 43, allowed_remotes: [] }
              - { vni: 44 }
            """)
        XCTAssertEqual(c.underlay.allowedRemotes, [prefix("10.99.0.0/24"), prefix("fd00::/64"), prefix("192.0.2.7/32"),
                                                   prefix("2001:db8::9/128"), prefix("0.0.0.0/0")])
        XCTAssertEqual(c.underlay.allowedRemotes?.map(\.description),
                       ["10.99.0.0/24", "fd00::/64", "192.0.2.7/32", "2001:db8::9/128", "0.0.0.0/0"])
        XCTAssertEqual(c.vnis.map(\.allowedRemotes), [[prefix("10.99.0.0/28")], [], nil])
        XCTAssertTrue(c.filtersRemotes)
        // Absent everywhere: no filtering at all.
        let open = try ConfigParser.parse("underlay: { port: p0, ip: 10.99.0.1/24 }\nvnis: [ { vni: 42, flood: [10.99.0.2] } ]")
        XCTAssertNil(open.underlay.allowedRemotes)
        XCTAssertNil(open.vnis[0].allowedRemotes)
        XCTAssertFalse(open.filtersRemotes)
        XCTAssertEqual(open.remoteFilters(), [.any])
        XCTAssertTrue(open.remoteFilter(vniSlots: 0).allows(IPv4Address(203, 0, 113, 9)))
        // The JSON form.
        let json = try ConfigParser.parse("""
            {"underlay": {"port": "p0", "ip": "10.99.0.1/24", "allowed_remotes": ["10.99.0.0/25", "fd00::/48"]},
             "vnis": [{"vni": 42, "allowed_remotes": ["10.99.0.128/25"]}]}
            """)
        XCTAssertEqual(json.underlay.allowedRemotes, [prefix("10.99.0.0/25"), prefix("fd00::/48")])
        XCTAssertEqual(json.vnis[0].allowedRemotes, [prefix("10.99.0.128/25")])
    }

    func testEachListErrorNamesTheKeyAndLine() {
        let u = "underlay:\n  port: p0\n  ip: 10.99.0.1/24\n  allowed_remotes: "
        func global(_ list: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
            assertError(u + list, expected, file: file, line: line)
        }
        global("[10.99.0/24]",
               "underlay.allowed_remotes[0] (line 4): expected an IPv4 or IPv6 prefix such as 10.99.0.0/24 or fd00::/64, or an address, got '10.99.0/24'")
        for bad in ["10.99.0.0/", "10.99.0.0/x", "10.99.0.0/+8", "10.99.0.0/24/8", "/24", "10.99.0.0/0024", "\"fd00::/ 64\"", "''"] {
            let raw = bad.hasPrefix("\"") || bad.hasPrefix("'") ? String(bad.dropFirst().dropLast()) : bad
            global("[10.99.0.0/24, \(bad)]",
                   "underlay.allowed_remotes[1] (line 4): expected an IPv4 or IPv6 prefix such as 10.99.0.0/24 or fd00::/64, or an address, got '\(raw)'")
        }
        global("[10.99.0.0/33]", "underlay.allowed_remotes[0] (line 4): prefix length 33 out of range (0-32 for IPv4)")
        global("[\"fd00::/129\"]", "underlay.allowed_remotes[0] (line 4): prefix length 129 out of range (0-128 for IPv6)")
        global("[10.99.0.7/24]",
               "underlay.allowed_remotes[0] (line 4): 10.99.0.7/24 has host bits set; write 10.99.0.0/24 for the subnet or 10.99.0.7/32 for the one host")
        global("[\"fd00::1:0/64\"]",
               "underlay.allowed_remotes[0] (line 4): fd00::1:0/64 has host bits set; write fd00::/64 for the subnet or fd00::1:0/128 for the one host")
        global("[1.2.3.4/0]", "underlay.allowed_remotes[0] (line 4): 1.2.3.4/0 has host bits set; write 0.0.0.0/0 for the subnet or 1.2.3.4/32 for the one host")
        global("[224.0.0.0/4]", "underlay.allowed_remotes[0] (line 4): 224.0.0.0/4 is multicast, never the source of a packet")
        global("[239.1.1.1]", "underlay.allowed_remotes[0] (line 4): 239.1.1.1/32 is multicast, never the source of a packet")
        global("[\"ff02::/16\"]", "underlay.allowed_remotes[0] (line 4): ff02::/16 is multicast, never the source of a packet")
        global("[\"::ffff:10.99.0.0/120\"]",
               "underlay.allowed_remotes[0] (line 4): ::ffff:10.99.0.0/120 is IPv4-mapped IPv6, never the source of a packet; write the IPv4 prefix")
        global("[10.99.0.0/24, 10.98.0.0/16, 10.99.0.0/24]", "underlay.allowed_remotes[2] (line 4): 10.99.0.0/24 is listed twice")
        global("[\"fd00::/64\", \"fd00:0:0:0::/64\"]", "underlay.allowed_remotes[1] (line 4): fd00::/64 is listed twice")
        global("10.99.0.0/24", "underlay.allowed_remotes (line 4): expected a list")
        global("[[10.99.0.0/24]]", "underlay.allowed_remotes[0] (line 4): expected a single value, not a list or mapping")
        global("\n    - 10.99.0.0/24\n    - 10.99.300.0/24",
               "underlay.allowed_remotes[1] (line 6): expected an IPv4 or IPv6 prefix such as 10.99.0.0/24 or fd00::/64, or an address, got '10.99.300.0/24'")
        for null in ["", "~", "null"] {
            global(null + "\nvnis: []",
                   "underlay.allowed_remotes (line 4): expected a list of prefixes ([] allows the static remotes only); leave the key out to allow any source")
        }
        global("[10.99.0.0/24]\n  allowed_remotes: []", "underlay.allowed_remotes (line 5): key given twice")
        let base = "underlay: { port: p0, ip: 10.99.0.1/24 }\nvnis:\n  - { vni: 42 }\n"
        assertError(base + "  - { vni: 43, flood: [10.99.0.2], allowed_remotes: [10.99.0.0/28, 10.99.0.1/28] }",
                    "vnis[1].allowed_remotes[1] (line 4): 10.99.0.1/28 has host bits set; write 10.99.0.0/28 for the subnet or 10.99.0.1/32 for the one host")
        assertError(base + "  - { vni: 43, allowed_remotes: ~ }",
                    "vnis[1].allowed_remotes (line 4): expected a list of prefixes ([] allows the static remotes only); leave the key out to allow any source")
        assertError(base + "  - { vni: 43, allowed_remotes: { a: 1 } }", "vnis[1].allowed_remotes (line 4): expected a list")
    }

    func testPrefixParsing() {
        XCTAssertEqual(prefix("10.99.0.0/24"), .v4(IPv4Address(10, 99, 0, 0), length: 24))
        XCTAssertEqual(prefix("10.99.0.5"), .v4(IPv4Address(10, 99, 0, 5), length: 32))
        XCTAssertEqual(prefix("0.0.0.0/0"), .v4(IPv4Address(0), length: 0))
        XCTAssertEqual(prefix("::/0"), .v6(IPv6Address("::")!, length: 0))
        XCTAssertEqual(prefix("fd00::5"), .v6(IPv6Address("fd00::5")!, length: 128))
        XCTAssertEqual(prefix("fd00:1:2:3:c000::/66").description, "fd00:1:2:3:c000::/66")
        XCTAssertEqual(IPPrefix.parse("fd00:1:2:3:e000::/66"), .failure(.hostBitsSet(
            address: ip("fd00:1:2:3:e000::"), length: 66, network: prefix("fd00:1:2:3:c000::/66"), host: prefix("fd00:1:2:3:e000::/128"))))
        XCTAssertEqual(IPPrefix.parse("10.0.0.0/33"), .failure(.lengthOutOfRange(length: 33, family: "IPv4", maximum: 32)))
        XCTAssertEqual(IPPrefix.parse("10.0.0.0/999"), .failure(.lengthOutOfRange(length: 999, family: "IPv4", maximum: 32)))
        XCTAssertEqual(IPPrefix.parse("10.0.0.0/1000"), .failure(.malformed))
        XCTAssertEqual(IPPrefix.parse(""), .failure(.malformed))
        XCTAssertEqual(IPPrefix.parse("fd00::/٦٤"), .failure(.malformed))
        XCTAssertTrue(prefix("10.99.0.0/28").contains(ip("10.99.0.15")))
        XCTAssertFalse(prefix("10.99.0.0/28").contains(ip("10.99.0.16")))
        XCTAssertFalse(prefix("0.0.0.0/0").contains(ip("fd00::1")))
        XCTAssertTrue(prefix("fd00:1:2:3:c000::/66").contains(ip("fd00:1:2:3:ffff::1")))
        XCTAssertFalse(prefix("fd00:1:2:3:c000::/66").contains(ip("fd00:1:2:3:bfff::1")))
        XCTAssertTrue(prefix("224.0.0.0/4").isMulticast)
        XCTAssertFalse(prefix("192.0.0.0/2").isMulticast, "covers unicast too")
        XCTAssertFalse(prefix("::/0").isIPv4Mapped)
        XCTAssertTrue(prefix("::ffff:0:0/96").isIPv4Mapped)
    }

    /// Filters by hand: prefix boundaries of both families, static remotes outside the prefixes, the empty list.
    func testFilterMatching() {
        let f = RemoteFilter(prefixes: [prefix("10.99.0.0/28"), prefix("fd00:0:0:1::/64"), prefix("172.16.0.0/12")],
                             staticRemotes: [ip("192.0.2.1"), ip("2001:db8::1"), ip("192.0.2.1"), ip("10.99.0.3")])
        XCTAssertFalse(f.allowsAny)
        for a in ["10.99.0.0", "10.99.0.15", "172.16.0.1", "172.31.255.255", "192.0.2.1", "fd00:0:0:1::", "fd00:0:0:1:ffff:ffff:ffff:ffff", "2001:db8::1"] {
            XCTAssertTrue(f.allows(ip(a)), a)
        }
        for a in ["10.99.0.16", "10.98.255.255", "172.32.0.0", "172.15.255.255", "192.0.2.2", "192.0.2.0", "0.0.0.0", "255.255.255.255",
                  "fd00:0:0:2::", "fd00::ffff", "2001:db8::2", "2001:db8::", "::", "::ffff:10.99.0.1"] {
            XCTAssertFalse(f.allows(ip(a)), a)
        }
        // The forms the dataplane calls.
        XCTAssertTrue(f.allows(IPv4Address(10, 99, 0, 7)))
        XCTAssertTrue(f.allows(words: IPv6Address("fd00:0:0:1::42")!.words))
        XCTAssertFalse(f.allows(words: IPv6Address("fd00:0:0:3::42")!.words))
        XCTAssertTrue(f.allows(words: IPv6Address("2001:db8::1")!.words))
        let none = RemoteFilter(prefixes: [])
        XCTAssertFalse(none.allows(IPv4Address(10, 99, 0, 2)))
        XCTAssertFalse(none.allows(words: (0, 0)))
        let everyV4 = RemoteFilter(prefixes: [prefix("0.0.0.0/0")])
        XCTAssertTrue(everyV4.allows(IPv4Address(UInt32.max)))
        XCTAssertFalse(everyV4.allows(ip("fd00::1")))
        let everyV6 = RemoteFilter(prefixes: [prefix("::/0")])
        XCTAssertTrue(everyV6.allows(ip("fd00::1")))
        XCTAssertFalse(everyV6.allows(IPv4Address(1, 2, 3, 4)))
        XCTAssertTrue(RemoteFilter.any.allows(ip("fd00::1")))
        // Many static remotes: found by binary search, each and only them.
        var many: [IPAddress] = []
        for i in 1...1000 {
            let high = UInt8(i >> 8), low = UInt8(i & 255)
            many.append(.v4(IPv4Address(10, 0, high, low)))
            var bytes = [UInt8](repeating: 0, count: 16)
            bytes[0] = 0xfd; bytes[14] = high; bytes[15] = low
            many.append(.v6(IPv6Address(bytes: bytes)!))
        }
        let hosts = RemoteFilter(prefixes: [], staticRemotes: many.reversed())
        for r in many { XCTAssertTrue(hosts.allows(r), "\(r)") }
        XCTAssertFalse(hosts.allows(ip("10.0.0.0")))
        XCTAssertFalse(hosts.allows(ip("10.0.3.233")))
        XCTAssertFalse(hosts.allows(ip("fd00::")))
        XCTAssertFalse(hosts.allows(ip("fd00::3e9")))
        XCTAssertTrue(hosts.allows(ip("fd00::3e8")))
    }

    /// Precedence: a VNI's own list, else the global list, else anyone; a VNI's static remotes always.
    func testEffectiveFilterPerSegment() throws {
        let c = try ConfigParser.parse("""
            underlay:
              port: p0
              ip: 10.99.0.1/16
              ip6: "fd00::1/64"
              gateway: 10.99.0.254
              allowed_remotes: [10.99.1.0/24, "fd00::100/120"]
            vnis:
              - { vni: 42, flood: [10.99.0.2, "fd00::2"], allowed_remotes: [10.99.2.0/28] }
              - { vni: 43, flood: [172.16.0.9] }
              - { vni: 44, allowed_remotes: [] }
              - { vni: 45, flood: [10.99.1.5], allowed_remotes: ["fd00::/64"] }
            fdb:
              - { vni: 44, mac: "02:00:00:00:44:01", remote: 10.99.3.3 }
              - { vni: 43, mac: "02:00:00:00:43:01", remote: "fd00::3" }
              - { vni: 44, mac: "02:00:00:00:44:02", remote: 10.99.4.4 }
            """)
        let filters = c.remoteFilters()
        XCTAssertEqual(filters.count, 4)
        for i in filters.indices { XCTAssertEqual(filters[i], c.remoteFilter(vniSlots: i), "segment \(i)") }
        func allowed(_ segment: Int, _ address: String) -> Bool { filters[segment].allows(ip(address)) }
        // VNI 42: its own list replaces the global one; its flood remotes are allowed outside it.
        XCTAssertTrue(allowed(0, "10.99.2.15"))
        XCTAssertFalse(allowed(0, "10.99.2.16"))
        XCTAssertFalse(allowed(0, "10.99.1.1"), "the global list does not apply where the VNI has its own")
        XCTAssertFalse(allowed(0, "fd00::101"))
        XCTAssertTrue(allowed(0, "10.99.0.2"))
        XCTAssertTrue(allowed(0, "fd00::2"))
        XCTAssertFalse(allowed(0, "172.16.0.9"), "another VNI's static remote")
        // VNI 43: the global list, its flood remote and its FDB remote.
        XCTAssertTrue(allowed(1, "10.99.1.200"))
        XCTAssertTrue(allowed(1, "fd00::1ff"))
        XCTAssertFalse(allowed(1, "fd00::200"))
        XCTAssertTrue(allowed(1, "172.16.0.9"))
        XCTAssertTrue(allowed(1, "fd00::3"))
        XCTAssertFalse(allowed(1, "10.99.2.1"))
        XCTAssertFalse(allowed(1, "10.99.0.2"), "VNI 42's flood remote")
        // VNI 44: an empty list: its static FDB remotes only.
        XCTAssertTrue(allowed(2, "10.99.3.3"))
        XCTAssertTrue(allowed(2, "10.99.4.4"))
        XCTAssertFalse(allowed(2, "10.99.1.1"))
        XCTAssertFalse(allowed(2, "10.99.3.4"))
        // VNI 45: an IPv6-only list admits no IPv4 source but its flood remote.
        XCTAssertTrue(allowed(3, "fd00::abcd"))
        XCTAssertTrue(allowed(3, "10.99.1.5"))
        XCTAssertFalse(allowed(3, "10.99.1.6"))
        // No global list: VNIs without their own admit anyone.
        let perVNI = try ConfigParser.parse("""
            underlay: { port: p0, ip: 10.99.0.1/16 }
            vnis: [ { vni: 1, flood: [10.99.0.2], allowed_remotes: [] }, { vni: 2 } ]
            """)
        XCTAssertTrue(perVNI.filtersRemotes)
        XCTAssertEqual(perVNI.remoteFilters()[1], .any)
        XCTAssertTrue(perVNI.remoteFilters()[0].allows(IPv4Address(10, 99, 0, 2)))
        XCTAssertFalse(perVNI.remoteFilters()[0].allows(IPv4Address(10, 99, 0, 3)))
    }

    /// The lists belong to the model: a configuration built or changed in code filters the same way.
    func testFiltersFollowTheModel() throws {
        var c = try ConfigParser.parse("underlay: { port: p0, ip: 10.99.0.1/24 }\nvnis: [ { vni: 7, flood: [10.99.0.2] } ]")
        XCTAssertEqual(c.remoteFilter(vniSlots: 0), .any)
        c.underlay.allowedRemotes = [prefix("10.99.0.128/25")]
        XCTAssertTrue(c.remoteFilter(vniSlots: 0).allows(IPv4Address(10, 99, 0, 200)))
        XCTAssertTrue(c.remoteFilter(vniSlots: 0).allows(IPv4Address(10, 99, 0, 2)))
        XCTAssertFalse(c.remoteFilter(vniSlots: 0).allows(IPv4Address(10, 99, 0, 3)))
        c.vnis[0].allowedRemotes = []
        XCTAssertFalse(c.remoteFilters()[0].allows(IPv4Address(10, 99, 0, 200)))
        XCTAssertTrue(c.remoteFilters()[0].allows(IPv4Address(10, 99, 0, 2)))
    }

    /// 200,000 segments under one global list: built in one pass, sharing the list.
    func testManySegmentsShareTheGlobalList() {
        let segments = (1...200_000).map { VTEPConfiguration.VNISettings(vni: UInt32($0), flood: [.v4(IPv4Address(10, 99, 0, UInt8($0 % 250 + 2)))]) }
        var underlay = VTEPConfiguration.Underlay(port: "p0", interface: IPv4Interface("10.99.0.1/24"))
        underlay.allowedRemotes = (0..<30).map { .v4(IPv4Address(10, UInt8($0), 0, 0), length: 16) }
        let c = VTEPConfiguration(underlay: underlay, access: [], vnis: segments, fdb: [], neighbors: [], resources: .init())
        let start = Date()
        let filters = c.remoteFilters()
        print("built \(filters.count) filters in \(Date().timeIntervalSince(start)) s")
        XCTAssertEqual(filters.count, 200_000)
        XCTAssertTrue(filters[199_999].allows(IPv4Address(10, 29, 1, 1)))
        XCTAssertFalse(filters[199_999].allows(IPv4Address(10, 30, 1, 1)))
        XCTAssertTrue(filters[199_999].allows(IPv4Address(10, 99, 0, 2)))
        XCTAssertFalse(filters[199_999].allows(IPv4Address(10, 99, 0, 3)))
    }
}
