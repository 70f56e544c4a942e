import XCTest
@testable import VTEPConfig

/// `underlay.verify_udp_checksum` and `underlay.udp6_zero_checksum`: defaults, both spellings, and every refusal
/// naming the key and its line.
final class ReceiveChecksumConfigTests: XCTestCase {
    static func config(_ extra: String, ip6: Bool = true) -> String {
        """
        underlay:
          port: net_af_packet0
          ip: 10.99.0.1/24
        \(ip6 ? "  ip6: \"fd00::1/64\"" : "  mtu: 1500")
        \(extra)
        access:
          - { port: net_af_packet1, vni: 42 }
        vnis:
          - { vni: 42, flood: [10.99.0.2] }
        """
    }

    func assertError(_ yaml: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ConfigParser.parse(yaml), file: file, line: line) { error in
            XCTAssertEqual("\(error)", expected, file: file, line: line)
        }
    }

    func testOffByDefault() throws {
        let u = try ConfigParser.parse(Self.config("")).underlay
        XCTAssertFalse(u.verifyUDPChecksum)
        XCTAssertEqual(u.udp6ZeroChecksum, .init(tx: false, rx: false))
    }

    func testVerifyUDPChecksum() throws {
        XCTAssertTrue(try ConfigParser.parse(Self.config("  verify_udp_checksum: true")).underlay.verifyUDPChecksum)
        XCTAssertFalse(try ConfigParser.parse(Self.config("  verify_udp_checksum: off")).underlay.verifyUDPChecksum)
        assertError(Self.config("  verify_udp_checksum: sometimes"),
                    "underlay.verify_udp_checksum (line 5): expected true or false, got 'sometimes'")
    }

    func testZeroChecksumAsAMappingOrOneSwitchForBoth() throws {
        XCTAssertEqual(try ConfigParser.parse(Self.config("  udp6_zero_checksum: { tx: true, rx: true }")).underlay.udp6ZeroChecksum,
                       .init(tx: true, rx: true))
        XCTAssertEqual(try ConfigParser.parse(Self.config("  udp6_zero_checksum: { tx: true }")).underlay.udp6ZeroChecksum,
                       .init(tx: true, rx: false))
        XCTAssertEqual(try ConfigParser.parse(Self.config("  udp6_zero_checksum:\n    rx: yes")).underlay.udp6ZeroChecksum,
                       .init(tx: false, rx: true))
        XCTAssertEqual(try ConfigParser.parse(Self.config("  udp6_zero_checksum: true")).underlay.udp6ZeroChecksum,
                       .init(tx: true, rx: true))
        XCTAssertEqual(try ConfigParser.parse(Self.config("  udp6_zero_checksum: false")).underlay.udp6ZeroChecksum,
                       .init(tx: false, rx: false))
        // Off says nothing about IPv6, so an IPv4-only VTEP may carry it.
        XCTAssertEqual(try ConfigParser.parse(Self.config("  udp6_zero_checksum: { tx: false, rx: false }", ip6: false))
                        .underlay.udp6ZeroChecksum, .init())
    }

    func testZeroChecksumRefusals() {
        assertError(Self.config("  udp6_zero_checksum: { tx: true, rxx: true }"),
                    "underlay.udp6_zero_checksum.rxx (line 5): unknown key (expected one of: tx, rx)")
        assertError(Self.config("  udp6_zero_checksum: { tx: 2 }"),
                    "underlay.udp6_zero_checksum.tx (line 5): expected true or false, got '2'")
        assertError(Self.config("  udp6_zero_checksum: [tx, rx]"),
                    "underlay.udp6_zero_checksum (line 5): expected true, false or a mapping { tx: true|false, rx: true|false }")
        assertError(Self.config("  udp6_zero_checksum: maybe"),
                    "underlay.udp6_zero_checksum (line 5): expected true or false, got 'maybe'")
        assertError(Self.config("  udp6_zero_checksum: { rx: true }", ip6: false),
                    "underlay.udp6_zero_checksum (line 5): zero UDP checksums are for VXLAN over IPv6, and the VTEP has no ip6")
    }
}
