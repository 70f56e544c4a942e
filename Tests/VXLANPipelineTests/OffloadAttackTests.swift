import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// Hostile frames against the offload stage: lying lengths and flags, headers split across buffers, ICMP
/// corner cases, floods and exhausted pools. Each test decodes what leaves with its own code and checks that
/// every mbuf is back in its pool.
final class OffloadAttackTests: XCTestCase {
    typealias S = SegmentationTests
    var h: PipelineHarness!
    var model: NICModel?

    func makePipeline(mtu: Int = 1500, poolSize: Int = 4095, model: NICModel? = nil, ipv6Underlay: Bool = false,
                      underlayTxSize: UInt32 = 1024) throws {
        self.model = model
        let plan = model.map { TunnelTxPlan(enabled: $0.capabilities) } ?? .software
        h = try PipelineHarness(accessPorts: 1, poolSize: poolSize, slowPath: false, underlayTxSize: underlayTxSize, plan: plan,
                                completeChecksumPorts: [1],
                                underlayModel: model) { S.configuration($0, ipv6Underlay: ipv6Underlay, mtu: mtu) }
    }

    override func tearDown() {
        if let h {
            let pool = h.release()
            XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        }
        if let model { XCTAssertEqual(model.violations, [], "the NIC model found driver-contract violations") }
        h = nil; model = nil
    }

    func payload(_ n: Int, _ seed: String = #function) -> [UInt8] {
        var g = SeededGenerator.forTest(seed)
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// An mbuf chain whose first buffer holds `first` bytes of `frame` and whose data room just past them holds
    /// `stale` (what a reused buffer may hold), then the rest in 1900-byte buffers.
    func splitAfter(_ frame: [UInt8], first: Int, stale: [UInt8]) -> OpaquePointer {
        let head = Mbuf.make(Array(frame[0..<first]) + stale, pool: h.pool)
        XCTAssertEqual(vx_mbuf_trim(head, UInt16(stale.count)), 0)
        let tail = Mbuf.makeChained(Array(frame[first...]), pool: h.pool)
        XCTAssertEqual(vx_mbuf_chain(head, tail), 0)
        return head
    }

    /// The inner frames of VXLAN packets from the underlay, after checking the outer headers.
    func inner(_ wire: [[UInt8]], mtu: Int = 1500, file: StaticString = #filePath, line: UInt = #line) -> [[UInt8]] {
        wire.map { p in
            XCTAssertLessThanOrEqual(p.count - 14, mtu, "over the underlay MTU", file: file, line: line)
            XCTAssertEqual(Int(p[16]) << 8 | Int(p[17]), p.count - 14, "outer IP length", file: file, line: line)
            XCTAssertEqual(S.sum(p[14..<34]), 0xffff, "outer IP checksum", file: file, line: line)
            XCTAssertEqual(Int(p[38]) << 8 | Int(p[39]), p.count - 34, "outer UDP length", file: file, line: line)
            return Array(p[50...])
        }
    }

    // MARK: findings

    /// A kernel-attached port (af_packet) hands over UDP with the checksum left to the NIC (the pseudo-header
    /// sum). Without DF and over the overlay MTU the datagram is fragmented: the checksum must be completed first,
    /// or the receiver's reassembled datagram fails its checksum and is dropped.
    func testPartialUDPChecksumIsCompletedBeforeFragmenting() throws {
        try makePipeline()
        let data = payload(3000)
        var udp = Frames.udp(sport: 5000, dport: 6000, payload: data)
        let src = Frames.ip("192.168.42.1"), dst = Frames.ip("192.168.42.2")
        let partial = UInt16(S.pseudo(src: src, dst: dst, proto: 17, length: udp.count))
        udp[6] = UInt8(partial >> 8); udp[7] = UInt8(partial & 0xff)
        let frame = Frames.ethernet(dst: S.remoteVMMAC, src: S.vmMAC, type: 0x0800,
                                    payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 17, payload: udp,
                                                         flagsFragment: 0, id: 99))
        h.rings[1].inject([Mbuf.makeChained(frame, pool: h.pool)])
        h.core.pollOnce()
        var reassembled = [UInt8](repeating: 0, count: udp.count)
        for f in inner(h.rings[0].drain()) {
            let ip = 14
            let field = Int(f[ip + 6]) << 8 | Int(f[ip + 7])
            let offset = (field & 0x1fff) * 8, length = (Int(f[ip + 2]) << 8 | Int(f[ip + 3])) - 20
            reassembled.replaceSubrange(offset..<offset + length, with: f[(ip + 20)...])
        }
        XCTAssertEqual(h.pipeline(.framesFragmented), 1)
        XCTAssertEqual(Array(reassembled[8...]), data)
        XCTAssertEqual(S.sum(ArraySlice(reassembled), initial: S.pseudo(src: src, dst: dst, proto: 17, length: udp.count)), 0xffff,
                       "the reassembled datagram's UDP checksum")
    }

    /// ICMP errors are never sent about ICMP errors (RFC 1122 3.2.2). The type byte of an over-MTU ICMP
    /// "destination unreachable" is in the second buffer of its chain; what the first buffer's data room holds past
    /// its end (here 8, echo request, as a reused buffer may) must not decide.
    func testNoFragmentationNeededAboutAnICMPErrorWhoseTypeIsInTheSecondBuffer() throws {
        try makePipeline()
        let icmp: [UInt8] = [3, 1, 0, 0, 0, 0, 0, 0] + payload(2000)
        let frame = Frames.ethernet(dst: S.remoteVMMAC, src: S.vmMAC, type: 0x0800,
                                    payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 1, payload: icmp))
        h.rings[1].inject([splitAfter(frame, first: 34, stale: [8, 0])])
        h.core.pollOnce()
        XCTAssertEqual(h.rings[1].drain().count, 0, "an ICMP error about an ICMP error")
        XCTAssertEqual(h.pipeline(.tooBigSent), 0)
        XCTAssertEqual(h.drops(.overMTU), 1)
        XCTAssertTrue(h.rings[0].drain().isEmpty)
    }

    /// The same over IPv6: an over-MTU ICMPv6 error (type < 128) whose type is in the second buffer.
    func testNoPacketTooBigAboutAnICMPv6ErrorWhoseTypeIsInTheSecondBuffer() throws {
        try makePipeline()
        let body = Frames.icmp6(src: "fd42::1", dst: "fd42::2", type: 1, code: 4, body: [0, 0, 0, 0] + payload(2000))
        let frame = Frames.mac(S.remoteVMMAC) + Frames.mac(S.vmMAC) + Frames.be16(0x86DD)
            + Frames.ipv6(src: "fd42::1", dst: "fd42::2", next: 58, payload: body)
        h.rings[1].inject([splitAfter(frame, first: 54, stale: [128, 0])])
        h.core.pollOnce()
        XCTAssertEqual(h.rings[1].drain().count, 0, "an ICMPv6 error about an ICMPv6 error")
        XCTAssertEqual(h.pipeline(.tooBigSent), 0)
        XCTAssertEqual(h.drops(.overMTU), 1)
    }

    /// RFC 4443 2.4 (e): no ICMPv6 error about a packet whose source does not identify one node, the
    /// unspecified address or a multicast address (Linux: icmp6_send "addr_any/mcast source").
    func testNoPacketTooBigToAnUnspecifiedOrMulticastIPv6Source() throws {
        try makePipeline()
        for source in ["::", "ff02::1", "ff0e::1234"] {
            let udp = Frames.udp6(src: source, dst: "fd42::2", sport: 1, dport: 2, payload: payload(2000))
            let frame = Frames.mac(S.remoteVMMAC) + Frames.mac(S.vmMAC) + Frames.be16(0x86DD)
                + Frames.ipv6(src: source, dst: "fd42::2", next: 17, payload: udp)
            h.rings[1].inject([Mbuf.makeChained(frame, pool: h.pool)])
            h.core.pollOnce()
            XCTAssertEqual(h.rings[1].drain().count, 0, "packet too big sent to \(source)")
        }
        XCTAssertEqual(h.pipeline(.tooBigSent), 0)
        XCTAssertEqual(h.drops(.overMTU), 3)
    }

    /// A guest (vhost-user, RX_LRO) may announce any gso_size. Below the NIC's smallest TSO segment (ice: 64) the
    /// hardware path must not hand the frame to the NIC, whose tx_prepare refuses it: the frame would be lost where
    /// the software path delivers it.
    func testTinyGuestSegmentSizeOnTheHardwarePathIsNotRefusedByTheNIC() throws {
        try makePipeline(model: NICModel(profile: .e810))
        let data = payload(6000)
        let m = Mbuf.makeChained(S.tcpFrame(payload: data), pool: h.pool)
        vx_mbuf_set_ol_flags(m, MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone)
        vx_mbuf_set_tso_segsz(m, 40)
        h.rings[1].inject([m])
        h.core.pollOnce()
        let wire = model!.takeWire()
        XCTAssertEqual(model!.packetsRejected, 0)
        XCTAssertEqual(h.port(0, .txPrepareRejected), 0)
        let segments = wire.compactMap { S.decode($0) }
        XCTAssertEqual(segments.flatMap(\.payload), data, "the payload arrives")
    }

    /// A TCP segment with SYN (or RST) never becomes several: each copy would carry the flag (a SYN per segment,
    /// each with another sequence number, or a reset repeated). Linux never hands such a frame to GSO; a hostile
    /// guest may.
    func testOverMTUSYNWithDataIsNotCutIntoSeveralSYNs() throws {
        try makePipeline()
        h.rings[1].inject([Mbuf.makeChained(S.tcpFrame(payload: payload(4000), flags: 0x02), pool: h.pool),
                           Mbuf.makeChained(S.tcpFrame(ipv6: true, payload: payload(4000), flags: 0x04), pool: h.pool)])
        h.core.pollOnce()
        let segments = h.rings[0].drain().compactMap { S.decode($0) }
        XCTAssertLessThanOrEqual(segments.filter { $0.flags & 0x02 != 0 }.count, 1, "SYN on more than one segment")
        XCTAssertLessThanOrEqual(segments.filter { $0.flags & 0x04 != 0 }.count, 1, "RST on more than one segment")
    }
}

// MARK: what held up

extension OffloadAttackTests {
    /// One hostile frame and how it goes in.
    struct Case {
        var name: String
        var frame: [UInt8]
        var segment = 1900
        var flags: UInt64 = 0
        var segsz: UInt16 = 0
    }

    static func ipv4Frame(proto: UInt8, l4: [UInt8], options: Int = 0, df: Bool = true, fragment: Int = 0,
                          totalLength: Int? = nil, src: String = "192.168.42.1", dst: String = "192.168.42.2",
                          dstMAC: String = S.remoteVMMAC, srcMAC: String = S.vmMAC) -> [UInt8] {
        let ihl = 5 + options / 4
        var ip: [UInt8] = [UInt8(0x40 | ihl), 0] + Frames.be16(totalLength ?? (ihl * 4 + l4.count)) + [0x12, 0x34]
            + Frames.be16((df ? 0x4000 : 0) | fragment) + [64, proto, 0, 0] + Frames.ip(src) + Frames.ip(dst)
        ip += [UInt8](repeating: 1, count: options)               // NOPs
        let c = Frames.checksum(ip)
        ip[10] = UInt8(c >> 8); ip[11] = UInt8(c & 0xff)
        return Frames.mac(dstMAC) + Frames.mac(srcMAC) + Frames.be16(0x0800) + ip + l4
    }

    static func tcp(_ payload: [UInt8], dataOffset: Int = 5, flags: UInt8 = 0x18) -> [UInt8] {
        Frames.be16(40000) + Frames.be16(5201) + [0, 0, 0, 1, 0, 0, 0, 1, UInt8(dataOffset << 4), flags] + Frames.be16(502)
            + [0, 0, 0, 0] + [UInt8](repeating: 1, count: max(0, dataOffset * 4 - 20)) + payload
    }

    func cases() -> [Case] {
        let p = payload(66000, "hostile")
        var c: [Case] = []
        let tcpBig = S.tcpFrame(payload: Array(p[0..<5000]))
        c.append(Case(name: "ipv4 and tcp options at their largest", frame: Self.ipv4Frame(proto: 6, l4: Self.tcp(Array(p[0..<5000]), dataOffset: 15), options: 40)))
        c.append(Case(name: "tcp data offset 4", frame: Self.ipv4Frame(proto: 6, l4: Self.tcp(Array(p[0..<5000]), dataOffset: 4))))
        c.append(Case(name: "tcp data offset past the packet", frame: Self.ipv4Frame(proto: 6, l4: Array(Self.tcp([], dataOffset: 15).prefix(30)))))
        c.append(Case(name: "ihl 4", frame: { var f = tcpBig; f[14] = 0x44; return f }()))
        c.append(Case(name: "ihl 15 without options", frame: { var f = tcpBig; f[14] = 0x4f; return f }()))
        c.append(Case(name: "ip length larger than the frame", frame: Self.ipv4Frame(proto: 6, l4: Self.tcp(Array(p[0..<3000])), totalLength: 4000)))
        c.append(Case(name: "ip length smaller than the frame", frame: Self.ipv4Frame(proto: 6, l4: Self.tcp(Array(p[0..<3000])), totalLength: 100)))
        c.append(Case(name: "ip length below the tcp header", frame: Self.ipv4Frame(proto: 6, l4: Self.tcp(Array(p[0..<3000])), totalLength: 30)))
        c.append(Case(name: "zero-payload tcp padded over the mtu", frame: Self.ipv4Frame(proto: 6, l4: Self.tcp([]) + [UInt8](repeating: 0, count: 3000), totalLength: 40)))
        for flags: UInt8 in [0x01, 0x11, 0x19, 0x80, 0xC2] {
            c.append(Case(name: "tcp flags \(flags) over the mtu", frame: S.tcpFrame(payload: Array(p[0..<4001]), flags: flags)))
        }
        c.append(Case(name: "first fragment over the mtu", frame: Self.ipv4Frame(proto: 17, l4: Array(p[0..<3000]), df: false, fragment: 0x2000)))
        c.append(Case(name: "middle fragment over the mtu", frame: Self.ipv4Frame(proto: 6, l4: Array(p[0..<3000]), df: false, fragment: 0x2000 | 100)))
        c.append(Case(name: "last fragment with DF over the mtu", frame: Self.ipv4Frame(proto: 17, l4: Array(p[0..<3000]), df: true, fragment: 300)))
        c.append(Case(name: "ipv4 with options, no DF, over the mtu", frame: Self.ipv4Frame(proto: 17, l4: Frames.udp(sport: 1, dport: 2, payload: Array(p[0..<3001])), options: 40, df: false)))
        c.append(Case(name: "65535-byte tcp", frame: Self.ipv4Frame(proto: 6, l4: Self.tcp(Array(p[0..<(65535 - 40)])))))
        let udp64 = Frames.udp(sport: 1, dport: 2, payload: Array(p[0..<(65535 - 28)]))
        c.append(Case(name: "65535-byte udp without DF", frame: Self.ipv4Frame(proto: 17, l4: udp64, df: false)))
        c.append(Case(name: "65535-byte udp with DF", frame: Self.ipv4Frame(proto: 17, l4: udp64, df: true)))
        c.append(Case(name: "65535-byte icmp echo", frame: Self.ipv4Frame(proto: 1, l4: [8, 0, 0, 0] + Array(udp64[4...]), df: true)))
        c.append(Case(name: "odd-length chain, 333", frame: S.tcpFrame(payload: Array(p[0..<9999])), segment: 333))
        c.append(Case(name: "odd-length chain, 7", frame: S.tcpFrame(payload: Array(p[0..<2999])), segment: 7))
        c.append(Case(name: "headers across buffers, 54", frame: S.tcpFrame(payload: Array(p[0..<5000])), segment: 54))
        c.append(Case(name: "ipv6 with a hop-by-hop header over the mtu",
                      frame: Frames.mac(S.remoteVMMAC) + Frames.mac(S.vmMAC) + Frames.be16(0x86DD)
                        + Frames.ipv6(src: "fd42::1", dst: "fd42::2", next: 0, payload: [6, 0, 1, 4, 0, 0, 0, 0] + Self.tcp(Array(p[0..<3000])))))
        c.append(Case(name: "ipv6 tcp 60000", frame: S.tcpFrame(ipv6: true, payload: Array(p[0..<60000]))))
        c.append(Case(name: "ipv6 payload length lies", frame: { var f = S.tcpFrame(ipv6: true, payload: Array(p[0..<3000])); f[18] = 0xff; return f }()))
        for segsz: UInt16 in [0, 1, 7, 8, 63, 64, 65535] {
            c.append(Case(name: "LRO \(segsz) on tcp", frame: S.tcpFrame(payload: Array(p[0..<20000])), flags: MbufFlag.rxLRO, segsz: segsz))
            c.append(Case(name: "LRO \(segsz) on udp", frame: Self.ipv4Frame(proto: 17, l4: Frames.udp(sport: 1, dport: 2, payload: Array(p[0..<3000])), df: false),
                          flags: MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone, segsz: segsz))
            c.append(Case(name: "LRO \(segsz) on arp", frame: Frames.ethernet(dst: S.remoteVMMAC, src: S.vmMAC, type: 0x0806, payload: Array(p[0..<28])),
                          flags: MbufFlag.rxLRO, segsz: segsz))
        }
        c.append(Case(name: "L4 checksum none on arp", frame: Frames.ethernet(dst: S.remoteVMMAC, src: S.vmMAC, type: 0x0806, payload: Array(p[0..<28])),
                      flags: MbufFlag.rxL4ChecksumNone))
        c.append(Case(name: "big arp", frame: Frames.ethernet(dst: S.remoteVMMAC, src: S.vmMAC, type: 0x0806, payload: Array(p[0..<3000]))))
        for (mac, dst, src) in [("ff:ff:ff:ff:ff:ff", "192.168.42.255", "192.168.42.1"), ("01:00:5e:00:00:01", "224.0.0.1", "192.168.42.1"),
                                (S.remoteVMMAC, "255.255.255.255", "192.168.42.1"), (S.remoteVMMAC, "192.168.42.2", "0.0.0.0"),
                                (S.remoteVMMAC, "192.168.42.2", "224.1.1.1")] {
            c.append(Case(name: "DF udp over the mtu to \(mac) \(dst) from \(src)",
                          frame: Self.ipv4Frame(proto: 17, l4: Frames.udp(sport: 1, dport: 2, payload: Array(p[0..<3000])), src: src, dst: dst, dstMAC: mac)))
        }
        c.append(Case(name: "DF udp over the mtu from a multicast MAC",
                      frame: Self.ipv4Frame(proto: 17, l4: Frames.udp(sport: 1, dport: 2, payload: Array(p[0..<3000])), srcMAC: "01:00:5e:00:00:01")))
        c.append(Case(name: "icmp time exceeded over the mtu", frame: Self.ipv4Frame(proto: 1, l4: [11, 0, 0, 0, 0, 0, 0, 0] + Array(p[0..<3000]))))
        c.append(Case(name: "icmp with ihl options, header only", frame: Self.ipv4Frame(proto: 1, l4: [], options: 40, totalLength: 60) + Array(p[0..<3000])))
        return c
    }

    /// Checks an inner frame with its own decoder: IP lengths match the bytes, IPv4 header checksum, and the TCP
    /// or UDP checksum of an unfragmented packet. Returns a description of what is wrong, or nil.
    static func innerProblem(_ f: [UInt8]) -> String? {
        guard f.count >= 14 else { return "short" }
        let type = Int(f[12]) << 8 | Int(f[13])
        if type == 0x0800 {
            let ihl = Int(f[14] & 0x0f) * 4
            guard ihl >= 20, f.count >= 14 + ihl else { return "ihl" }
            if Int(f[16]) << 8 | Int(f[17]) != f.count - 14 { return "ipv4 length \(Int(f[16]) << 8 | Int(f[17])) for \(f.count - 14) bytes" }
            if S.sum(f[14..<14 + ihl]) != 0xffff { return "ipv4 header checksum" }
            let fragment = (Int(f[20]) << 8 | Int(f[21])) & 0x3fff
            let proto = f[23]
            if fragment == 0 && (proto == 6 || proto == 17) {
                let l4 = 14 + ihl
                if proto == 17 && f.count >= l4 + 8 && f[l4 + 6] == 0 && f[l4 + 7] == 0 { return nil }
                if S.sum(f[l4...], initial: S.pseudo(src: Array(f[26..<30]), dst: Array(f[30..<34]), proto: proto, length: f.count - l4)) != 0xffff {
                    return "l4 checksum"
                }
            }
        } else if type == 0x86DD {
            guard f.count >= 54 else { return "ipv6 short" }
            if Int(f[18]) << 8 | Int(f[19]) != f.count - 54 { return "ipv6 payload length" }
            let next = f[20]
            if next == 6 || next == 17 {
                if S.sum(f[54...], initial: S.pseudo(src: Array(f[22..<38]), dst: Array(f[38..<54]), proto: next, length: f.count - 54)) != 0xffff {
                    return "l4 checksum"
                }
            }
        }
        return nil
    }

    func runCases(model makeModel: (() -> NICModel)?, ipv6Underlay: Bool) throws {
        for c in cases() {
            try makePipeline(model: makeModel?(), ipv6Underlay: ipv6Underlay)
            let m = Mbuf.makeChained(c.frame, pool: h.pool, segment: c.segment)
            if c.flags != 0 { vx_mbuf_set_ol_flags(m, c.flags); vx_mbuf_set_tso_segsz(m, c.segsz) }
            h.rings[1].inject([m])
            h.core.pollOnce()
            let wire = model?.takeWire() ?? h.rings[0].drain()
            let back = h.rings[1].drain()
            let drops = h.totalDrops
            if wire.isEmpty {
                XCTAssertGreaterThanOrEqual(drops, 1, "\(c.name): nothing sent and no drop counted")
            } else {
                XCTAssertEqual(drops, 0, "\(c.name): sent and dropped")
            }
            for p in wire {
                XCTAssertLessThanOrEqual(p.count - 14, 1500, "\(c.name): over the underlay MTU")
                let outer = ipv6Underlay ? 14 + 40 + 16 : 14 + 20 + 16
                if ipv6Underlay {
                    XCTAssertEqual(Int(p[18]) << 8 | Int(p[19]), p.count - 54, "\(c.name): outer IPv6 length")
                } else {
                    XCTAssertEqual(Int(p[16]) << 8 | Int(p[17]), p.count - 14, "\(c.name): outer IP length")
                    XCTAssertEqual(S.sum(p[14..<34]), 0xffff, "\(c.name): outer IP checksum")
                }
                if let problem = Self.innerProblem(Array(p[outer...])) { XCTFail("\(c.name): \(problem)") }
            }
            for r in back {
                if let problem = Self.innerProblem(r) { XCTFail("\(c.name): ICMP reply: \(problem)") }
            }
            tearDown()
        }
    }

    func testHostileFramesThroughTheSoftwarePath() throws { try runCases(model: nil, ipv6Underlay: false) }
    func testHostileFramesThroughTheSoftwarePathOverIPv6() throws { try runCases(model: nil, ipv6Underlay: true) }
    func testHostileFramesThroughTheHardwarePath() throws {
        for profile in NICModel.Profile.allCases {
            try runCases(model: { NICModel(profile: profile) }, ipv6Underlay: false)
            try runCases(model: { NICModel(profile: profile) }, ipv6Underlay: true)
        }
    }

    /// 4000 over-MTU DF datagrams in one go: at most a burst of ICMP errors, every frame dropped and counted,
    /// every buffer back.
    func testAFloodOfOverMTUFramesIsRateLimited() throws {
        try makePipeline()
        let frame = Self.ipv4Frame(proto: 17, l4: Frames.udp(sport: 1, dport: 2, payload: payload(2000)))
        var replies = 0
        for _ in 0..<125 {
            h.rings[1].inject((0..<32).map { _ in Mbuf.make(frame, pool: h.pool) })
            h.core.pollOnce()
            replies += h.rings[1].drain().count
            XCTAssertTrue(h.rings[0].drain().isEmpty)
        }
        XCTAssertEqual(h.drops(.overMTU), 4000)
        XCTAssertEqual(UInt64(replies), h.pipeline(.tooBigSent))
        XCTAssertEqual(h.pipeline(.tooBigSent) + h.pipeline(.tooBigRateLimited), 4000)
        XCTAssertLessThanOrEqual(replies, 40, "a burst of 20 plus what 100 per second refills")
        XCTAssertEqual(h.pool.available, h.pool.capacity)
    }

    /// Segmenting with too few buffers: 64 KB frames through a pool that cannot hold their segments. Frames are
    /// dropped (counted), never half sent with a leak.
    func testSegmentingWithAnExhaustedPool() throws {
        for poolSize in [63, 127, 255] {
            try makePipeline(poolSize: poolSize)
            let frame = S.tcpFrame(payload: payload(60000))
            let m = Mbuf.makeChained(frame, pool: h.pool, segment: 1900)
            h.rings[1].inject([m])
            h.core.pollOnce()
            let wire = h.rings[0].drain()
            if wire.isEmpty { XCTAssertEqual(h.drops(.segmentationFailed), 1, "pool \(poolSize)") }
            for p in wire { if let problem = Self.innerProblem(Array(p[50...])) { XCTFail("pool \(poolSize): \(problem)") } }
            tearDown()
        }
    }
}

extension OffloadAttackTests {
    /// A first buffer that holds the headers alone (a chain cut at 54 bytes): rte_gso gave the first segment an
    /// empty buffer, which a NIC turns into a zero-length descriptor (found by the packet fuzzer's hardware path).
    func testHeadersAloneInTheFirstBufferGiveNoEmptyBuffer() throws {
        for profile in NICModel.Profile.allCases {
            try makePipeline(model: NICModel(profile: profile))
            let data = payload(5000)
            let m = Mbuf.makeChained(S.tcpFrame(payload: data), pool: h.pool, segment: 54)
            vx_mbuf_set_ol_flags(m, MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone)
            vx_mbuf_set_tso_segsz(m, 200)                          // below the hardware minimum: software segments
            h.rings[1].inject([m])
            h.core.pollOnce()
            let segments = model!.takeWire().compactMap { S.decode($0) }
            XCTAssertEqual(segments.flatMap(\.payload), data, "\(profile): the payload arrives")
            tearDown()
        }
    }
}

extension OffloadAttackTests {
    /// A frame within the MTU in a chain of many small buffers went to the NIC as it came: more buffers than a NIC
    /// gathers one frame from (ice: 8; more is a malicious-driver event, or tx_prepare's refusal) on every path,
    /// checksum offload or none (found by the packet fuzzer's hardware path).
    func testAFrameInManySmallBuffersIsNotHandedToTheNICAsIs() throws {
        for profile in NICModel.Profile.allCases {
            try makePipeline(model: NICModel(profile: profile))
            let data = payload(1300)
            h.rings[1].inject([Mbuf.makeChained(S.tcpFrame(payload: data), pool: h.pool, segment: 100)])
            h.core.pollOnce()
            let segments = model!.takeWire().compactMap { S.decode($0) }
            XCTAssertEqual(segments.flatMap(\.payload), data, "\(profile): the payload arrives")
            tearDown()
        }
    }
}

extension OffloadAttackTests {
    /// A UDP header whose length disagrees with the IP payload (1 of 26 here): the NIC was asked for the checksum
    /// of a datagram whose lengths contradict each other (found by the packet fuzzer's hardware path). Such a
    /// datagram is passed on as it is, on every path, as a bridge would.
    func testUDPLengthThatContradictsTheIPLengthIsNotHandedToTheNIC() throws {
        for udpLength in [1, 7, 9, 30, 0xffff] {
            for profile in NICModel.Profile.allCases {
                try makePipeline(model: NICModel(profile: profile))
                var udp = Frames.udp(sport: 1, dport: 2, payload: payload(18))
                udp[4] = UInt8(udpLength >> 8); udp[5] = UInt8(udpLength & 0xff); udp[6] = 0x12; udp[7] = 0x34
                let frame = Self.ipv4Frame(proto: 17, l4: udp)
                h.rings[1].inject([Mbuf.make(frame, pool: h.pool)])
                h.core.pollOnce()
                let wire = model!.takeWire()
                XCTAssertEqual(wire.count, 1, "\(profile), UDP length \(udpLength)")
                if let p = wire.first { XCTAssertEqual(Array(p[50...]), frame, "\(profile), UDP length \(udpLength): passed on as it is") }
                tearDown()
            }
        }
    }
}

extension OffloadAttackTests {
    /// A guest's 64 KB TSO frame with a small MSS (a peer may announce down to Linux's tcp_min_snd_mss, 48): more
    /// than 256 segments, and the whole frame was dropped (`segmentation_failed`), every retransmission too, so the
    /// connection stalls. Every byte must arrive in segments of at most the guest's MSS.
    func testA64KBFrameWithASmallGuestMSSIsSegmentedNotDropped() throws {
        for (mss, ipv6) in [(48, false), (64, false), (100, true)] {
            try makePipeline(underlayTxSize: 2048)              // 1334 segments in one go
            let data = payload(64000)
            let m = Mbuf.makeChained(S.tcpFrame(ipv6: ipv6, payload: data), pool: h.pool)
            vx_mbuf_set_ol_flags(m, MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone)
            vx_mbuf_set_tso_segsz(m, UInt16(mss))
            h.rings[1].inject([m])
            var wire: [[UInt8]] = []
            for _ in 0..<8 { h.core.pollOnce(); wire += h.rings[0].drain() }
            let segments = wire.compactMap { S.decode($0) }
            XCTAssertEqual(h.drops(.segmentationFailed), 0, "MSS \(mss)")
            XCTAssertEqual(segments.flatMap(\.payload), data, "MSS \(mss): the payload arrives")
            XCTAssertTrue(segments.allSatisfy { $0.payload.count <= mss }, "MSS \(mss)")
            tearDown()
        }
    }
}

extension OffloadAttackTests {
    /// An underlay frame with more bytes after its IP packet than its last buffer holds (a chained, scattered
    /// jumbo frame whose outer IP length is short): the trim of the padding failed unchecked and the VM got the
    /// trailing bytes as part of its frame, over the MTU (found by the packet fuzzer's chained underlay frames).
    func testPaddingBeyondTheLastBufferIsNotDeliveredToTheVM() throws {
        try makePipeline()
        let inner = Frames.innerUDP(dst: S.vmMAC, src: S.remoteVMMAC, size: 100)
        let packet = Frames.vxlanPacket(inner: inner) + payload(2400, "junk")
        h.rings[0].inject([Mbuf.makeChained(packet, pool: h.pool, segment: 1900)])
        h.core.pollOnce()
        let delivered = h.rings[1].drain()
        for f in delivered { XCTAssertEqual(f.count, inner.count, "the inner frame, and nothing after it") }
        XCTAssertEqual(UInt64(delivered.count) + h.totalDrops, 1, "delivered or counted")
    }
}

extension OffloadAttackTests {
    /// GRO towards a guest that takes large frames: rte_gro merges segments without looking at their checksums,
    /// and the merged frame goes with a partial checksum (NEEDS_CSUM) that the guest completes itself. A segment
    /// damaged on the way (its TCP checksum no longer matches) became valid data in the guest: the end-to-end
    /// checksum was laundered. Linux's GRO merges only segments whose checksum it verified. A damaged segment must
    /// reach the guest as it came (its bad checksum intact), never inside a merged frame.
    func testGRONeverMergesASegmentWhoseChecksumIsWrong() throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 4095, slowPath: false) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            """
        }
        h.tables.setPortTakesLargeFrames(1, true)
        let chunks = (0..<6).map { payload(1400, "chunk\($0)") }
        var frames = chunks.enumerated().map { i, c in CoalesceTests.segment(seq: 5000 + UInt32(i * 1400), payload: c) }
        frames[2][14 + 20 + 20 + 100] ^= 0x40                       // one bit flipped in the third segment's payload
        h.rings[0].inject(frames.map { Mbuf.make(Frames.vxlanPacket(inner: $0), pool: h.pool) })
        h.core.pollOnce()
        let out = h.rings[1].drainMbufs()
        defer { out.forEach { vx_mbuf_free($0) } }
        let damaged = Array(frames[2][54...])
        for m in out {
            let b = Mbuf.bytes(m)
            let data = Array(b[54...])
            if vx_mbuf_ol_flags(m) & MbufFlag.txTCPSegmentation != 0 {
                XCTAssertFalse(data.count > 1400 && (0...(data.count - 1400)).contains { Array(data[$0..<$0 + 1400]) == damaged },
                               "the damaged segment's payload went into a merged frame with a partial checksum")
            }
        }
    }
}
