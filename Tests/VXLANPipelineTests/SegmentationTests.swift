import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// Large and checksum-offloaded frames from VMs: software segmentation to the underlay MTU, checksum completion
/// and ICMP "too big". Every output is decoded here, field by field, and checked against values computed in the
/// test (RFC 1071 sums, sequence arithmetic), never against the pipeline's own helpers.
final class SegmentationTests: XCTestCase {
    static let vmMAC = "02:00:00:00:42:01", remoteVMMAC = "02:00:00:00:42:02"
    var h: PipelineHarness!

    func makePipeline(ipv6Underlay: Bool = false, mtu: Int = 1500, plan: TunnelTxPlan = .software, model: TransmitModel? = nil) throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 4095, slowPath: false, plan: plan, completeChecksumPorts: [1],
                                underlayModel: model) { Self.configuration($0, ipv6Underlay: ipv6Underlay, mtu: mtu) }
    }

    /// One access port (VNI 42, kernel-attached in these tests) and one remote VM behind 10.99.0.2 or fd00::2.
    static func configuration(_ names: [String], ipv6Underlay: Bool, mtu: Int) -> String {
        let remote = ipv6Underlay ? "\"fd00::2\"" : "10.99.0.2"
        return """
            underlay: { port: \(names[0]), \(ipv6Underlay ? "ip6: \"fd00::1/64\"" : "ip: 10.99.0.1/24"), mac: "02:00:00:00:00:01", mtu: \(mtu) }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [\(remote)] } ]
            fdb: [ { vni: 42, mac: "\(remoteVMMAC)", remote: \(remote) } ]
            neighbors: [ { ip: \(remote), mac: "02:00:00:00:00:02" } ]
            """
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    // MARK: frames built here

    static func sum(_ bytes: ArraySlice<UInt8>, initial: UInt32 = 0) -> UInt32 {
        var s = initial
        var i = bytes.startIndex
        while i + 1 < bytes.endIndex { s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.endIndex { s += UInt32(bytes[i]) << 8 }
        while s >> 16 != 0 { s = (s & 0xffff) + (s >> 16) }
        return s
    }

    /// Pseudo-header sum (RFC 793 / RFC 8200) for an L4 segment of `length` bytes.
    static func pseudo(src: [UInt8], dst: [UInt8], proto: UInt8, length: Int) -> UInt32 {
        sum(ArraySlice(src + dst + [0, proto] + Frames.be16(length)))
    }

    /// An inner TCP frame VM -> remote VM; the TCP checksum left as a kernel leaves it for the NIC (pseudo-header
    /// sum only) when `partial`, else complete.
    static func tcpFrame(ipv6: Bool = false, payload: [UInt8], seq: UInt32 = 1_000_000, flags: UInt8 = 0x18, id: Int = 0x1234,
                         partial: Bool = true, df: Bool = true) -> [UInt8] {
        var tcp = Frames.be16(40000) + Frames.be16(5201) + [UInt8(seq >> 24), UInt8(seq >> 16 & 0xff), UInt8(seq >> 8 & 0xff), UInt8(seq & 0xff)]
            + [0, 0, 0, 1] + [0x50, flags] + Frames.be16(502) + [0, 0, 0, 0] + payload
        let src = ipv6 ? Frames.ip6("fd42::1") : Frames.ip("192.168.42.1")
        let dst = ipv6 ? Frames.ip6("fd42::2") : Frames.ip("192.168.42.2")
        let ph = pseudo(src: src, dst: dst, proto: 6, length: tcp.count)
        let c = partial ? UInt16(ph) : ~UInt16(sum(ArraySlice(tcp), initial: ph))
        tcp[16] = UInt8(c >> 8); tcp[17] = UInt8(c & 0xff)
        if ipv6 {
            let ip: [UInt8] = [0x60, 0, 0, 0] + Frames.be16(tcp.count) + [6, 64] + src + dst
            return Frames.mac(remoteVMMAC) + Frames.mac(vmMAC) + Frames.be16(0x86DD) + ip + tcp
        }
        return Frames.ethernet(dst: remoteVMMAC, src: vmMAC, type: 0x0800,
                               payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 6, payload: tcp,
                                                    flagsFragment: df ? 0x4000 : 0, id: id))
    }

    // MARK: decoding what came out

    struct Segment { var seq: UInt32; var flags: UInt8; var payload: [UInt8]; var ipID: Int; var sourcePort: Int }

    /// Decodes one VXLAN packet and checks every length and checksum on the way; returns the inner TCP segment.
    static func decode(_ p: [UInt8], mtu: Int = 1500, file: StaticString = #filePath, line: UInt = #line) -> Segment? {
        let outer6 = p[12] == 0x86 && p[13] == 0xDD
        let ipLen = outer6 ? 40 : 20
        XCTAssertLessThanOrEqual(p.count - 14, mtu, "over the underlay MTU", file: file, line: line)
        let udp = 14 + ipLen
        if outer6 {
            XCTAssertEqual(Int(p[18]) << 8 | Int(p[19]), p.count - 54, file: file, line: line)
            let l = p.count - udp
            let s = sum(p[udp...], initial: pseudo(src: Array(p[22..<38]), dst: Array(p[38..<54]), proto: 17, length: l))
            XCTAssertEqual(s, 0xffff, "outer UDP checksum", file: file, line: line)
        } else {
            XCTAssertEqual(Int(p[16]) << 8 | Int(p[17]), p.count - 14, "outer IP length", file: file, line: line)
            XCTAssertEqual(sum(p[14..<34]), 0xffff, "outer IP checksum", file: file, line: line)
        }
        XCTAssertEqual(Int(p[udp + 2]) << 8 | Int(p[udp + 3]), 4789, file: file, line: line)
        XCTAssertEqual(Int(p[udp + 4]) << 8 | Int(p[udp + 5]), p.count - udp, "UDP length", file: file, line: line)
        let sourcePort = Int(p[udp]) << 8 | Int(p[udp + 1])
        XCTAssertGreaterThanOrEqual(sourcePort, 49152, file: file, line: line)
        XCTAssertEqual(Array(p[udp + 8..<udp + 16]), [0x08, 0, 0, 0, 0, 0, 42, 0], file: file, line: line)
        let inner = udp + 16
        let l3 = inner + 14
        let inner6 = p[inner + 12] == 0x86
        let l4: Int, ipID: Int
        let proto = inner6 ? p[l3 + 6] : p[l3 + 9]
        if inner6 {
            l4 = l3 + 40
            XCTAssertEqual(Int(p[l3 + 4]) << 8 | Int(p[l3 + 5]), p.count - l4, "inner IPv6 payload length", file: file, line: line)
            let s = sum(p[l4...], initial: pseudo(src: Array(p[l3 + 8..<l3 + 24]), dst: Array(p[l3 + 24..<l3 + 40]), proto: proto, length: p.count - l4))
            XCTAssertEqual(s, 0xffff, "inner L4 checksum", file: file, line: line)
            ipID = 0
        } else {
            l4 = l3 + 20
            XCTAssertEqual(Int(p[l3 + 2]) << 8 | Int(p[l3 + 3]), p.count - l3, "inner IP length", file: file, line: line)
            XCTAssertEqual(sum(p[l3..<l4]), 0xffff, "inner IP checksum", file: file, line: line)
            let s = sum(p[l4...], initial: pseudo(src: Array(p[l3 + 12..<l3 + 16]), dst: Array(p[l3 + 16..<l3 + 20]), proto: proto, length: p.count - l4))
            XCTAssertEqual(s, 0xffff, "inner L4 checksum", file: file, line: line)
            ipID = Int(p[l3 + 4]) << 8 | Int(p[l3 + 5])
        }
        guard proto == 6 else { return nil }
        let seq = UInt32(p[l4 + 4]) << 24 | UInt32(p[l4 + 5]) << 16 | UInt32(p[l4 + 6]) << 8 | UInt32(p[l4 + 7])
        let doff = Int(p[l4 + 12] >> 4) * 4
        return Segment(seq: seq, flags: p[l4 + 13], payload: Array(p[(l4 + doff)...]), ipID: ipID, sourcePort: sourcePort)
    }

    /// Checks a run of segments against the frame they were cut from.
    static func checkSegments(_ segments: [Segment], payload: [UInt8], seq: UInt32, flags: UInt8, mss: Int, ipID: Int?,
                              file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(segments.count, (payload.count + mss - 1) / mss, "segment count", file: file, line: line)
        var expected = seq
        for (i, s) in segments.enumerated() {
            XCTAssertEqual(s.seq, expected, "segment \(i) sequence", file: file, line: line)
            expected &+= UInt32(s.payload.count)
            let last = i == segments.count - 1
            // FIN and PSH only on the last segment, CWR only on the first (RFC 3168).
            let want = (last ? flags : flags & ~0x09) & (i == 0 ? 0xff : ~0x80)
            XCTAssertEqual(s.flags, want, "segment \(i) flags", file: file, line: line)
            if !last { XCTAssertEqual(s.payload.count, mss, file: file, line: line) }
            if let ipID { XCTAssertEqual(s.ipID, (ipID + i) & 0xffff, "segment \(i) IP id", file: file, line: line) }
            XCTAssertEqual(s.sourcePort, segments[0].sourcePort, "one outer source port per flow", file: file, line: line)
        }
        XCTAssertEqual(segments.flatMap(\.payload), payload, "payload reassembles", file: file, line: line)
    }

    func randomPayload(_ n: Int, _ name: String) -> [UInt8] {
        var g = SeededGenerator.forTest(name)
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    // MARK: tests

    func testLargeTCPv4FrameBecomesSegmentsThatFitTheMTU() throws {
        try makePipeline()
        let payload = randomPayload(64000, #function)
        let frame = Self.tcpFrame(payload: payload, flags: 0x19 | 0x80)          // CWR, PSH, ACK, FIN
        h.rings[1].inject([Mbuf.makeChained(frame, pool: h.pool)])
        h.core.pollOnce()
        let out = h.rings[0].drain()
        let segments = out.compactMap { Self.decode($0) }
        // 1500 - 20 (outer IP) - 8 - 8 - 14 (inner Ethernet) - 20 - 20 = 1410 bytes of payload per segment.
        Self.checkSegments(segments, payload: payload, seq: 1_000_000, flags: 0x99, mss: 1410, ipID: 0x1234)
        XCTAssertEqual(h.pipeline(.framesSegmented), 1)
        XCTAssertEqual(h.pipeline(.segmentsOut), UInt64(out.count))
        XCTAssertEqual(h.pipeline(.encapsulated), UInt64(out.count))
        XCTAssertEqual(h.totalDrops, 0)
    }

    func testLargeTCPv6FrameIsSegmentedToo() throws {
        try makePipeline()
        let payload = randomPayload(30000, #function)
        h.rings[1].inject([Mbuf.makeChained(Self.tcpFrame(ipv6: true, payload: payload, flags: 0x18), pool: h.pool)])
        h.core.pollOnce()
        let segments = h.rings[0].drain().compactMap { Self.decode($0) }
        // 1500 - 36 - 14 - 40 - 20 = 1390
        Self.checkSegments(segments, payload: payload, seq: 1_000_000, flags: 0x18, mss: 1390, ipID: nil)
        XCTAssertEqual(h.pipeline(.framesSegmented), 1)
    }

    func testOverAnIPv6UnderlayTheMSSLeavesRoomForTheLargerHeader() throws {
        try makePipeline(ipv6Underlay: true)
        let payload = randomPayload(20000, #function)
        h.rings[1].inject([Mbuf.makeChained(Self.tcpFrame(payload: payload), pool: h.pool)])
        h.core.pollOnce()
        let segments = h.rings[0].drain().compactMap { Self.decode($0) }
        // 1500 - 40 - 8 - 8 - 14 - 20 - 20 = 1390
        Self.checkSegments(segments, payload: payload, seq: 1_000_000, flags: 0x18, mss: 1390, ipID: 0x1234)
    }

    func testTheSendersSegmentSizeIsKeptWhenSmaller() throws {
        try makePipeline()
        let payload = randomPayload(10000, #function)
        // Odd-sized buffers: checksums must pair bytes across buffer boundaries at odd positions.
        let m = Mbuf.makeChained(Self.tcpFrame(payload: payload), pool: h.pool, segment: 999)
        vx_mbuf_set_ol_flags(m, MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone)     // as vhost-user marks a guest's TSO frame
        vx_mbuf_set_tso_segsz(m, 1000)
        h.rings[1].inject([m])
        h.core.pollOnce()
        let segments = h.rings[0].drain().compactMap { Self.decode($0) }
        Self.checkSegments(segments, payload: payload, seq: 1_000_000, flags: 0x18, mss: 1000, ipID: 0x1234)
    }

    func testAGSOFrameThatFitsOnePacketIsStillCutAtTheSendersSize() throws {
        // 1100 bytes of payload from a sender whose segments are 536 bytes: three segments, not one packet.
        try makePipeline()
        let payload = randomPayload(1100, #function)
        let m = Mbuf.make(Self.tcpFrame(payload: payload), pool: h.pool)
        vx_mbuf_set_ol_flags(m, MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone)
        vx_mbuf_set_tso_segsz(m, 536)
        h.rings[1].inject([m])
        h.core.pollOnce()
        let segments = h.rings[0].drain().compactMap { Self.decode($0) }
        Self.checkSegments(segments, payload: payload, seq: 1_000_000, flags: 0x18, mss: 536, ipID: 0x1234)
        XCTAssertEqual(segments.count, 3)
    }

    func testSmallFramesGetTheirChecksumsCompleted() throws {
        try makePipeline()
        let payload = randomPayload(700, #function)
        h.rings[1].inject([Mbuf.makeChained(Self.tcpFrame(payload: payload), pool: h.pool, segment: 333),
                           Mbuf.make(Self.tcpFrame(payload: payload, partial: false), pool: h.pool)])
        h.core.pollOnce()
        let out = h.rings[0].drain()
        XCTAssertEqual(out.count, 2)
        for p in out { XCTAssertEqual(Self.decode(p)?.payload, payload) }
        XCTAssertEqual(h.pipeline(.checksumsCompleted), 2)
        XCTAssertEqual(h.pipeline(.framesSegmented), 0)
    }

    func testOverMTUDatagramGetsFragmentationNeededRateLimited() throws {
        try makePipeline()
        let udp = Frames.udp(sport: 5000, dport: 6000, payload: [UInt8](repeating: 0xab, count: 1472))
        let frame = Frames.ethernet(dst: Self.remoteVMMAC, src: Self.vmMAC, type: 0x0800,
                                    payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 17, payload: udp))
        h.rings[1].inject((0..<30).map { _ in Mbuf.make(frame, pool: h.pool) })
        h.core.pollOnce()
        XCTAssertTrue(h.rings[0].drain().isEmpty)
        let replies = h.rings[1].drain()
        XCTAssertEqual(replies.count, 20, "the token bucket's burst")
        XCTAssertEqual(h.pipeline(.tooBigSent), 20)
        XCTAssertEqual(h.pipeline(.tooBigRateLimited), 10)
        XCTAssertEqual(h.drops(.overMTU), 30)
        let r = replies[0]
        XCTAssertEqual(Array(r[0..<6]), Frames.mac(Self.vmMAC))
        XCTAssertEqual(Array(r[6..<12]), Frames.mac(Self.remoteVMMAC))
        XCTAssertEqual(Array(r[26..<30]), Frames.ip("192.168.42.2"), "from the original destination")
        XCTAssertEqual(Array(r[30..<34]), Frames.ip("192.168.42.1"))
        XCTAssertEqual(Self.sum(r[14..<34]), 0xffff)
        XCTAssertEqual(r[23], 1)
        XCTAssertEqual(Array(r[34..<36]), [3, 4], "destination unreachable, fragmentation needed")
        XCTAssertEqual(Int(r[40]) << 8 | Int(r[41]), 1450, "the overlay's IP MTU")
        XCTAssertEqual(Self.sum(r[34...]), 0xffff, "ICMP checksum")
        XCTAssertEqual(r.count, 14 + 576, "RFC 1812: at most 576 bytes")
        XCTAssertEqual(Array(r[42..<62]), Array(frame[14..<34]), "quotes the original IP header")
    }

    func testOverMTUIPv6GetsPacketTooBig() throws {
        try makePipeline()
        let udp = Frames.udp6(src: "fd42::1", dst: "fd42::2", sport: 5000, dport: 6000, payload: [UInt8](repeating: 1, count: 1452))
        let ip: [UInt8] = [0x60, 0, 0, 0] + Frames.be16(udp.count) + [17, 64] + Frames.ip6("fd42::1") + Frames.ip6("fd42::2")
        let frame = Frames.mac(Self.remoteVMMAC) + Frames.mac(Self.vmMAC) + Frames.be16(0x86DD) + ip + udp
        h.rings[1].inject([Mbuf.make(frame, pool: h.pool)])
        h.core.pollOnce()
        let replies = h.rings[1].drain()
        XCTAssertEqual(replies.count, 1)
        let r = replies[0]
        XCTAssertEqual(r[54], 2, "packet too big")
        XCTAssertEqual(Int(r[58]) << 24 | Int(r[59]) << 16 | Int(r[60]) << 8 | Int(r[61]), 1450)
        XCTAssertEqual(Array(r[22..<38]), Frames.ip6("fd42::2"))
        let s = Self.sum(r[54...], initial: Self.pseudo(src: Array(r[22..<38]), dst: Array(r[38..<54]), proto: 58, length: r.count - 54))
        XCTAssertEqual(s, 0xffff, "ICMPv6 checksum")
        XCTAssertEqual(r.count, 14 + 1280, "RFC 4443: at most the minimum MTU")
    }

    func testTruncatedFrameIsDroppedNotSent() throws {
        try makePipeline()
        var frame = Self.tcpFrame(payload: [UInt8](repeating: 7, count: 3000))
        frame.removeLast(500)                                                  // IP length says 500 bytes more
        h.rings[1].inject([Mbuf.makeChained(frame, pool: h.pool)])
        h.core.pollOnce()
        XCTAssertTrue(h.rings[0].drain().isEmpty)
        XCTAssertEqual(h.drops(.innerMalformed), 1)
    }
}

extension SegmentationTests {
    /// A kernel port's frame: one 64 KB buffer (net_af_packet copies each frame into one mbuf), and clones of it.
    func testOneLargeBufferAndItsClones() throws {
        try makePipeline()
        let large = try PacketPool(name: TestEAL.uniqueName("large"), count: 7, cacheSize: 0, dataRoom: 65535)
        let clones = try PacketPool(name: TestEAL.uniqueName("clones"), count: 63, cacheSize: 0, dataRoom: 0)
        let payload = randomPayload(64000, #function)
        let m = Mbuf.make(Self.tcpFrame(payload: payload), pool: large)
        vx_mbuf_set_ol_flags(m, MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone)
        vx_mbuf_set_tso_segsz(m, 1448)
        // Rounds 0-1: clones (the copy path; rte_gso would copy their INDIRECT flag into its own buffers);
        // rounds 2-3: the buffer itself, referenced 16 times (rte_gso).
        for round in 0..<4 {
            if round < 2 {
                h.rings[1].inject((0..<16).map { _ in rte_pktmbuf_clone(m, clones.pointer)! })
            } else {
                rte_mbuf_refcnt_update(m, 16)
                h.rings[1].inject([OpaquePointer](repeating: m, count: 16))
            }
            h.core.pollOnce()
            let out = h.rings[0].drain()
            for k in 0..<16 {
                let segments = out[(k * 46)..<min(out.count, (k + 1) * 46)].compactMap { Self.decode($0) }
                Self.checkSegments(segments, payload: payload, seq: 1_000_000, flags: 0x18, mss: 1410, ipID: 0x1234)
            }
            XCTAssertEqual(h.totalDrops, 0, "round \(round)")
            XCTAssertEqual(h.indirectPool.available, h.indirectPool.capacity, "round \(round)")
        }
        vx_mbuf_free(m)
        XCTAssertEqual(large.available, large.capacity)
        XCTAssertEqual(clones.available, clones.capacity)
    }
}

/// The receive side: what a remote Linux VTEP sends through a kernel underlay (veths, bridges) with its default
/// offloads: inner checksums unfinished, and 64 KB GSO frames.
extension SegmentationTests {
    func makeKernelUnderlayPipeline() throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 4095, slowPath: false, completeChecksumPorts: [0, 1]) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            """
        }
    }

    /// The frame as the remote VM sends it towards ours (addresses swapped).
    static func fromRemote(_ frame: [UInt8]) -> [UInt8] {
        var f = frame
        f.replaceSubrange(0..<6, with: Frames.mac(vmMAC)); f.replaceSubrange(6..<12, with: Frames.mac(remoteVMMAC))
        return f
    }

    func testGSOFrameFromAKernelUnderlayIsCutToTheOverlayMTU() throws {
        try makeKernelUnderlayPipeline()
        let payload = randomPayload(60000, #function)
        let inner = Self.fromRemote(Self.tcpFrame(payload: payload))       // partial checksum, as the kernel leaves it
        h.rings[0].inject([Mbuf.makeChained(Frames.vxlanPacket(inner: inner), pool: h.pool, segment: 1001)])
        h.core.pollOnce()
        let out = h.rings[1].drain()
        // Re-wrap each delivered frame so that the encap-side decoder checks it: IP and TCP lengths and checksums.
        let segments = out.compactMap { frame -> Segment? in
            XCTAssertLessThanOrEqual(frame.count, 1464, "within the overlay MTU")
            return Self.decode(Frames.vxlanPacket(inner: frame, flagsFragment: 0))
        }
        Self.checkSegments(segments.map { var s = $0; s.sourcePort = 0; return s }, payload: payload, seq: 1_000_000,
                           flags: 0x18, mss: 1410, ipID: 0x1234)
        XCTAssertEqual(h.pipeline(.decapsulated), UInt64(out.count))
        XCTAssertEqual(h.totalDrops, 0)
    }

    func testUnfinishedInnerChecksumsFromAKernelUnderlayAreCompleted() throws {
        try makeKernelUnderlayPipeline()
        let payload = randomPayload(1200, #function)
        let inner = Self.fromRemote(Self.tcpFrame(payload: payload))
        h.rings[0].inject([Mbuf.make(Frames.vxlanPacket(inner: inner), pool: h.pool)])
        h.core.pollOnce()
        let out = h.rings[1].drain()
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(Self.decode(Frames.vxlanPacket(inner: out[0], flagsFragment: 0))?.payload, payload)
        XCTAssertEqual(h.pipeline(.checksumsCompleted), 1)
    }
}

extension SegmentationTests {
    func testOverMTUDatagramWithoutDFIsFragmentedNotRefused() throws {
        try makePipeline()
        var g = SeededGenerator.forTest(#function)
        let data = (0..<3000).map { _ in UInt8.random(in: 0...255, using: &g) }
        let udp = Frames.udp(sport: 5000, dport: 6000, payload: data)
        let frame = Frames.ethernet(dst: Self.remoteVMMAC, src: Self.vmMAC, type: 0x0800,
                                    payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 17, payload: udp,
                                                         flagsFragment: 0, id: 77))
        h.rings[1].inject([Mbuf.makeChained(frame, pool: h.pool)])
        h.core.pollOnce()
        let out = h.rings[0].drain()
        XCTAssertTrue(h.rings[1].drain().isEmpty, "no ICMP for a packet that may be fragmented")
        XCTAssertEqual(out.count, 3)
        var reassembled = [UInt8](repeating: 0, count: udp.count)
        var covered = 0
        for p in out {
            XCTAssertLessThanOrEqual(p.count - 14, 1500)
            let ip = 64
            XCTAssertEqual(Self.sum(p[ip..<ip + 20]), 0xffff, "fragment's IP header checksum")
            XCTAssertEqual(Int(p[ip + 4]) << 8 | Int(p[ip + 5]), 77, "the original id")
            let field = Int(p[ip + 6]) << 8 | Int(p[ip + 7])
            let offset = (field & 0x1fff) * 8, length = (Int(p[ip + 2]) << 8 | Int(p[ip + 3])) - 20
            XCTAssertEqual(field & 0x2000 != 0, offset + length < udp.count, "more-fragments on all but the last")
            reassembled.replaceSubrange(offset..<offset + length, with: p[(ip + 20)...])
            covered += length
        }
        XCTAssertEqual(covered, udp.count)
        XCTAssertEqual(reassembled, udp)
        XCTAssertEqual(h.pipeline(.framesFragmented), 1)
        XCTAssertEqual(h.totalDrops, 0)
    }
}

/// Regressions from review: each failed before its fix.
extension SegmentationTests {
    func testFragmentsOfADatagramWithAnUnfinishedChecksumReassembleToAValidOne() throws {
        try makePipeline()
        let data = [UInt8](repeating: 0x42, count: 2000)
        var udp = Frames.udp(sport: 5000, dport: 6000, payload: data)
        let ph = Self.pseudo(src: Frames.ip("192.168.42.1"), dst: Frames.ip("192.168.42.2"), proto: 17, length: udp.count)
        udp[6] = UInt8(ph >> 8); udp[7] = UInt8(ph & 0xff)                       // partial, as the kernel leaves it
        let frame = Frames.ethernet(dst: Self.remoteVMMAC, src: Self.vmMAC, type: 0x0800,
                                    payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 17, payload: udp, flagsFragment: 0))
        h.rings[1].inject([Mbuf.makeChained(frame, pool: h.pool)])
        h.core.pollOnce()
        var datagram = [UInt8](repeating: 0, count: udp.count)
        for p in h.rings[0].drain() {
            let field = Int(p[70]) << 8 | Int(p[71]), length = (Int(p[66]) << 8 | Int(p[67])) - 20
            datagram.replaceSubrange((field & 0x1fff) * 8..<(field & 0x1fff) * 8 + length, with: p[84...])
        }
        XCTAssertEqual(Self.sum(ArraySlice(datagram), initial: ph), 0xffff, "UDP checksum of the reassembled datagram")
    }

    func testADualStackVTEPSendsFullSizeIPv4FramesUntouched() throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 4095, slowPath: false) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01" }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            fdb: [ { vni: 42, mac: "\(Self.remoteVMMAC)", remote: 10.99.0.2 } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            """
        }
        let frame = Self.tcpFrame(payload: [UInt8](repeating: 3, count: 1464 - 54), partial: false)   // fits IPv4, not IPv6
        h.rings[1].inject([Mbuf.make(frame, pool: h.pool)])
        h.rings[0].inject([Mbuf.make(Frames.vxlanPacket(inner: Self.fromRemote(frame)), pool: h.pool)])
        h.core.pollOnce()
        XCTAssertEqual(h.rings[0].drain().map { Array($0[50...]) }, [frame], "one packet, the frame as it was")
        XCTAssertEqual(h.rings[1].drain(), [Self.fromRemote(frame)], "delivered whole, not cut to the IPv6 limit")
        XCTAssertEqual(h.pipeline(.checksumsCompleted) + h.pipeline(.framesSegmented), 0)
    }

    func testAGuestAskingForTinySegmentsCannotMultiplyItsFrame() throws {
        try makePipeline()
        let m = Mbuf.makeChained(Self.tcpFrame(payload: [UInt8](repeating: 1, count: 60000)), pool: h.pool)
        vx_mbuf_set_ol_flags(m, MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone)
        vx_mbuf_set_tso_segsz(m, 16)                                              // 3750 segments
        h.rings[1].inject([m])
        h.core.pollOnce()
        XCTAssertTrue(h.rings[0].drain().isEmpty)
        XCTAssertEqual(h.drops(.segmentationFailed), 1)
    }

    func testIPv6WithExtensionHeadersIsCompletedAndSegmented() throws {
        try makePipeline()
        let payload = randomPayload(5000, #function)
        var f = Self.tcpFrame(ipv6: true, payload: payload)
        // Insert an 8-byte hop-by-hop header (PadN) between the IPv6 header and TCP.
        let hopByHop: [UInt8] = [6, 0, 1, 4, 0, 0, 0, 0]
        f.insert(contentsOf: hopByHop, at: 54)
        f[20] = 0                                                                 // next header: hop-by-hop
        let plen = Int(f[18]) << 8 | Int(f[19]) + 8
        f[18] = UInt8(plen >> 8); f[19] = UInt8(plen & 0xff)
        h.rings[1].inject([Mbuf.makeChained(f, pool: h.pool)])
        h.core.pollOnce()
        let out = h.rings[0].drain()
        XCTAssertGreaterThan(out.count, 1)
        var stream: [UInt8] = []
        for p in out {
            XCTAssertLessThanOrEqual(p.count - 14, 1500)
            let l3 = 64, l4 = l3 + 48
            XCTAssertEqual(Int(p[l3 + 4]) << 8 | Int(p[l3 + 5]), p.count - l3 - 40, "payload length covers the extension header")
            let s = Self.sum(p[l4...], initial: Self.pseudo(src: Array(p[l3 + 8..<l3 + 24]), dst: Array(p[l3 + 24..<l3 + 40]), proto: 6,
                                                           length: p.count - l4))
            XCTAssertEqual(s, 0xffff, "TCP checksum")
            stream += p[(l4 + 20)...]
        }
        XCTAssertEqual(stream, payload)
    }

    func testNoTooBigForALinkLayerBroadcast() throws {
        try makePipeline(ipv6Underlay: false)
        let udp = Frames.udp(sport: 5000, dport: 6000, payload: [UInt8](repeating: 0, count: 1472))
        let frame = Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: Self.vmMAC, type: 0x0800,
                                    payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.255", proto: 17, payload: udp))
        h.rings[1].inject([Mbuf.make(frame, pool: h.pool)])
        h.core.pollOnce()
        XCTAssertTrue(h.rings[1].drain().isEmpty)
        XCTAssertEqual(h.pipeline(.tooBigSent), 0)
        XCTAssertEqual(h.drops(.overMTU), 1)
    }
}
