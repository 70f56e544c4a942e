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
        var generator = SeededGenerator.forTest("testSourcePortStaysInRFCRangeAndSpreads")
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

/// The flow hash behind the outer UDP source port and the IPv6 flow label, against a bit-by-bit CRC32-C written
/// from the polynomial (`ReferenceCRC32C`) and the README's description of what is hashed (`ReferenceFlowHash`).
final class FlowHashTests: XCTestCase {
    func pipelineHash(_ frame: [UInt8]) -> UInt32 {
        var f = frame
        return f.withUnsafeMutableBytes { innerFlowHash($0.baseAddress!, length: $0.count) }
    }

    /// The reference itself, on the standard check value and RFC 3720's iSCSI test vectors (appendix B.4).
    func testReferenceCRC32CMatchesPublishedVectors() {
        XCTAssertEqual(ReferenceCRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(ReferenceCRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(ReferenceCRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(ReferenceCRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
    }

    /// DPDK's CRC32-C (the SSE4.2 instruction), as the pipeline calls it, is the reference's running update.
    func testDPDKCRCAgreesWithTheReference() {
        var generator = SeededGenerator.forTest("testDPDKCRCAgreesWithTheReference")
        for length in 0..<80 {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let initial = UInt32.random(in: 0...UInt32.max, using: &generator)
            let dpdk = data.withUnsafeBytes { vx_hash_crc($0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, UInt32(length), initial) }
            XCTAssertEqual(dpdk, ReferenceCRC32C.update(initial, data), "\(length) bytes")
            if length == 4 || length == 8 {
                let crc = length == 4 ? vx_hash_crc_4byte(data.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }, initial)
                                      : vx_hash_crc_8byte(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }, initial)
                XCTAssertEqual(crc, ReferenceCRC32C.update(initial, data), "\(length)-byte word")
            }
        }
    }

    /// Fixed vectors, worked out by a third, separate CRC32-C implementation: a UDP flow (seed 17, addresses, ports)
    /// and a broadcast ARP frame (seed 0x0806, the MACs).
    func testFlowHashFixedVectors() {
        let udp = Frames.innerUDP(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01")   // 192.168.42.1:1000 -> .2:2000
        XCTAssertEqual(ReferenceFlowHash.hash(udp), 0xF25E_1CAE)
        XCTAssertEqual(pipelineHash(udp), 0xF25E_1CAE)
        XCTAssertEqual(ReferenceFlowHash.sourcePort(udp), 61168)
        XCTAssertEqual(Int(vxlanSourcePort(flowHash: pipelineHash(udp))), 61168)
        XCTAssertEqual(ReferenceFlowHash.flowLabel(udp), 0xE1CAE)
        let arp = Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: "02:00:00:00:42:01", type: 0x0806, payload: [UInt8](repeating: 1, count: 28))
        XCTAssertEqual(pipelineHash(arp), 0x4C34_0F0E)
        XCTAssertEqual(ReferenceFlowHash.sourcePort(arp), 49978)
    }

    /// Random inner frames of every shape the hash distinguishes: IPv4 TCP/UDP/other, fragments, options, headers
    /// too short for the ports; IPv6 TCP/UDP/other; non-IP; random bytes. Hash and source port agree with the
    /// reference on every one.
    func testFlowHashAgreesWithTheReferenceOnRandomFrames() {
        var g = SeededGenerator.forTest("testFlowHashAgreesWithTheReferenceOnRandomFrames")
        func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) } }
        for trial in 0..<20_000 {
            var f: [UInt8]
            let shape = trial % 6
            switch shape {
            case 0, 1:       // IPv4: options, protocol, fragment bits and length all vary
                let ihl = Bool.random(using: &g) ? 5 : Int.random(in: 0...15, using: &g)
                let proto: UInt8 = [6, 17, 1, 47, UInt8.random(in: 0...255, using: &g)].randomElement(using: &g)!
                var ip = bytes(max(20, ihl * 4) + Int.random(in: 0...40, using: &g))
                ip[0] = 0x40 | UInt8(ihl)
                ip[9] = proto
                if Bool.random(using: &g) { ip[6] &= 0xC0; ip[7] = 0 }          // most not fragments
                f = bytes(12) + [0x08, 0x00] + ip
                f = Array(f.prefix(Int.random(in: 14...f.count, using: &g)))
            case 2, 3:       // IPv6
                let next: UInt8 = [6, 17, 58, 44, UInt8.random(in: 0...255, using: &g)].randomElement(using: &g)!
                var ip = bytes(40 + Int.random(in: 0...30, using: &g))
                ip[0] = 0x60
                ip[6] = next
                f = bytes(12) + [0x86, 0xDD] + ip
                f = Array(f.prefix(Int.random(in: 14...f.count, using: &g)))
            case 4:          // non-IP
                f = bytes(12) + [[0x08, 0x06], [0x88, 0xB5], [0x86, 0xDD], [0x08, 0x00], bytes(2)].randomElement(using: &g)!
                f += bytes(Int.random(in: 0...(f[12] == 0x08 || f[12] == 0x86 ? 19 : 60), using: &g))
            default:
                f = bytes(Int.random(in: 14...120, using: &g))
            }
            let expected = ReferenceFlowHash.hash(f)
            let actual = pipelineHash(f)
            XCTAssertEqual(actual, expected, "frame \(f)")
            XCTAssertEqual(Int(vxlanSourcePort(flowHash: actual)), ReferenceFlowHash.sourcePort(f))
            if actual != expected { return }
        }
    }
}

final class ChecksumTests: XCTestCase {
    /// The 8-bytes-a-step sum agrees with DPDK's rte_raw_cksum for every length and alignment.
    func testRawChecksumAgreesWithDPDK() {
        var generator = SeededGenerator.forTest("testRawChecksumAgreesWithDPDK")
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
        var generator = SeededGenerator.forTest("testIPv4ChecksumCheckAgreesWithRFC1071")
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
