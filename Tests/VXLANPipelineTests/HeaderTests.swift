import CDPDK
import DPDKTestSupport
import VTEPConfig
import XCTest
@testable import VXLANPipeline

final class HeaderTests: XCTestCase {
    func template(vni: UInt32 = 42, ttl: UInt8 = 64) -> OuterHeaderTemplate {
        OuterHeaderTemplate(sourceMAC: MACAddress("02:00:00:00:00:01")!, destinationMAC: MACAddress("02:00:00:00:00:02")!,
                            source: IPv4Address("10.99.0.1")!, destination: IPv4Address("10.99.0.2")!,
                            vni: vni, udpDestinationPort: 4789, ttl: ttl)
    }

    func patched(_ t: OuterHeaderTemplate, innerLength: Int, sourcePort: UInt16) -> [UInt8] {
        var bytes = t.bytes
        bytes.withUnsafeMutableBytes {
            OuterHeaderTemplate.patch($0.baseAddress!, innerLength: innerLength, sourcePort: sourcePort, partialSum: t.ipv4PartialSum)
        }
        return bytes
    }

    /// RFC 7348 layout for a 64-byte inner frame, laid out by hand (and checked with an independent tool).
    func testHeaderMatchesFixedVector() {
        let expected: [UInt8] = [
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,              // Ethernet
            0x45, 0x00, 0x00, 0x64, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x25, 0xc1, 0x0a, 0x63, 0x00, 0x01,  // IPv4, DF,
            0x0a, 0x63, 0x00, 0x02,                                                                          // TTL 64
            0xc1, 0x23, 0x12, 0xb5, 0x00, 0x50, 0x00, 0x00,                                                  // UDP, csum 0
            0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00,                                                  // VXLAN I, VNI 42
        ]
        XCTAssertEqual(patched(template(), innerLength: 64, sourcePort: 0xC123), expected)
    }

    func testTemplateLeavesPerPacketFieldsZero() {
        let t = template(vni: 0xABCDEF, ttl: 7)
        XCTAssertEqual(t.bytes.count, 50)
        XCTAssertEqual(Array(t.bytes[16...17]), [0, 0], "IP total length is patched per packet")
        XCTAssertEqual(Array(t.bytes[24...25]), [0, 0], "IP checksum is patched per packet")
        XCTAssertEqual(t.bytes[22], 7)
        XCTAssertEqual(Array(t.bytes[42...49]), [0x08, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0], "only the I flag; reserved bytes zero")
    }

    func testChecksumIsRightForEveryLength() {
        let t = template()
        for inner in stride(from: 14, through: 9000, by: 7) {
            let h = patched(t, innerLength: inner, sourcePort: 50000)
            XCTAssertEqual(Frames.checksum(Array(h[14..<34])), 0, "IPv4 checksum wrong for inner length \(inner)")
            XCTAssertEqual(Int(h[16]) << 8 | Int(h[17]), inner + 36)
            XCTAssertEqual(Int(h[38]) << 8 | Int(h[39]), inner + 16)
        }
    }

    func testSourcePortStaysInRFCRangeAndSpreads() {
        var seen = Set<UInt16>()
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20000 {
            let port = vxlanSourcePort(flowHash: UInt32.random(in: 0...UInt32.max, using: &generator))
            XCTAssert((49152...65535).contains(port), "source port \(port) outside 49152-65535")
            seen.insert(port)
        }
        XCTAssertGreaterThan(seen.count, 10000, "hash does not spread over the range")
        XCTAssertEqual(vxlanSourcePort(flowHash: 0), 49152)
        XCTAssertEqual(vxlanSourcePort(flowHash: 0x3FFF), 65535)
    }

    func testFlowHashFollowsTheInnerFlow() {
        func hash(_ frame: [UInt8]) -> UInt32 {
            var f = frame
            return f.withUnsafeMutableBytes { innerFlowHash($0.baseAddress!, length: $0.count) }
        }
        let a = Frames.innerUDP(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", sport: 1000)
        let sameFlowOtherPayload = Frames.innerUDP(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", sport: 1000, size: 300)
        XCTAssertEqual(hash(a), hash(sameFlowOtherPayload), "one flow must keep one source port")
        var ports = Set<UInt16>()
        for sport in 1000..<1100 {
            ports.insert(vxlanSourcePort(flowHash: hash(Frames.innerUDP(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", sport: sport))))
        }
        XCTAssertGreaterThan(ports.count, 90, "different L4 flows should get different outer source ports")
        let arp1 = Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: "02:00:00:00:42:01", type: 0x0806, payload: [UInt8](repeating: 1, count: 28))
        let arp2 = Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: "02:00:00:00:42:09", type: 0x0806, payload: [UInt8](repeating: 1, count: 28))
        XCTAssertNotEqual(hash(arp1), hash(arp2), "non-IP frames hash by their MAC addresses")
    }
}

final class ChecksumTests: XCTestCase {
    /// The 8-bytes-a-step sum agrees with DPDK's rte_raw_cksum for every length and alignment.
    func testRawChecksumAgreesWithDPDK() {
        var generator = SystemRandomNumberGenerator()
        let buffer = (0..<2100).map { _ in UInt8.random(in: 0...255, using: &generator) }
        buffer.withUnsafeBytes { raw in
            for length in 0..<300 {
                for start in 0..<8 {
                    XCTAssertEqual(rawChecksum(raw.baseAddress! + start, length: length), vx_raw_cksum(raw.baseAddress! + start, length),
                                   "length \(length) at offset \(start)")
                }
            }
            for length in [1499, 1500, 1514, 2048] {
                XCTAssertEqual(rawChecksum(raw.baseAddress!, length: length), vx_raw_cksum(raw.baseAddress!, length))
            }
            let ones = [UInt8](repeating: 0xFF, count: 64)
            ones.withUnsafeBytes { XCTAssertEqual(rawChecksum($0.baseAddress!, length: 64), vx_raw_cksum($0.baseAddress!, 64)) }
        }
    }

    /// The 32-bit-word check agrees with RFC 1071 on random headers, with and without options.
    func testIPv4ChecksumCheckAgreesWithRFC1071() {
        var generator = SystemRandomNumberGenerator()
        for trial in 0..<5000 {
            let words = 5 + trial % 11
            var header = (0..<(words * 4)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            header[10] = 0; header[11] = 0
            let c = Frames.checksum(header)
            header[10] = UInt8(c >> 8); header[11] = UInt8(c & 0xff)
            let valid = header.withUnsafeMutableBytes { ipv4HeaderChecksumIsValid($0.baseAddress!, length: $0.count) }
            XCTAssertTrue(valid, "header \(header)")
            header[Int.random(in: 0..<header.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
            let corrupt = header.withUnsafeMutableBytes { ipv4HeaderChecksumIsValid($0.baseAddress!, length: $0.count) }
            XCTAssertFalse(corrupt && Frames.checksum(header) != 0, "corruption not caught: \(header)")
        }
    }
}
