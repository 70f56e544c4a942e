import CDPDK
import DPDKTestSupport
import PollMode
import XCTest

/// The test NIC (NICModel) against mbufs built by hand, its wire frames read back by a decoder written here,
/// with checksums verified word by word with end-around carry (RFC 1071) independently of the model's sum.
final class NICModelTests: XCTestCase {
    var pool: PacketPool!

    override func setUpWithError() throws {
        try TestEAL.start()
        pool = try PacketPool(name: TestEAL.uniqueName("nicpool"), count: 511, cacheSize: 0)
    }

    override func tearDown() {
        if let pool { XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked") }
        pool = nil
    }

    // MARK: Building packets

    static let vxlanTSOFlags = MbufFlag.txTunnelVXLAN | MbufFlag.txTCPSegmentation
    static let tcpFIN: UInt8 = 0x01, tcpPSH: UInt8 = 0x08, tcpACK: UInt8 = 0x10, tcpCWR: UInt8 = 0x80

    struct Shape {
        var outerV6 = false
        var innerV6 = false
        var innerVLAN = false
        var tcpOptions = 0
        var outerUDPChecksum = false
        var outerL3: Int { outerV6 ? 40 : 20 }
        var l2: Int { 30 + (innerVLAN ? 4 : 0) }
        var l3: Int { innerV6 ? 40 : 20 }
        var l4: Int { 20 + tcpOptions }
        /// Outer IP packet length minus the TCP payload (l2 covers outer UDP, VXLAN and inner Ethernet).
        var overhead: Int { outerL3 + l2 + l3 + l4 }
        var headers: Int { 14 + overhead }
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    /// A TCP segment whose checksum field holds garbage (the NIC must compute it from scratch).
    static func tcp(seq: UInt32, flags: UInt8, options: Int, payload: [UInt8]) -> [UInt8] {
        let opts: [UInt8] = options == 0 ? [] : [1, 1, 8, 10] + be32(0x0102_0304) + be32(0x0506_0708) + [UInt8](repeating: 1, count: options - 12)
        return Frames.be16(40000) + Frames.be16(443) + be32(seq) + be32(0xA0B0_C0D0) + [UInt8((20 + options) / 4) << 4, flags]
            + Frames.be16(65000) + [0xDE, 0xAD] + [0, 0] + opts + payload
    }

    /// A VXLAN packet carrying `l4` (TCP or UDP, protocol `proto`) in an inner IPv4/IPv6 packet; checksum fields
    /// that the NIC fills are left wrong on purpose.
    static func vxlan(_ s: Shape, l4: [UInt8], proto: UInt8 = 6, outerID: Int = 0xFFF0, innerID: Int = 0x1234) -> [UInt8] {
        let innerIP = s.innerV6 ? Frames.ipv6(src: "fd42::1", dst: "fd42::2", next: proto, payload: l4)
            : Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: proto, payload: l4, id: innerID, corruptChecksum: true)
        let type = s.innerV6 ? 0x86DD : 0x0800
        let inner = s.innerVLAN
            ? Frames.mac("02:00:00:00:42:02") + Frames.mac("02:00:00:00:42:01") + [0x81, 0x00] + Frames.be16(10) + Frames.be16(type) + innerIP
            : Frames.ethernet(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", type: type, payload: innerIP)
        let udp = Frames.udp(sport: 51000, dport: 4789, payload: Frames.vxlan(vni: 42, inner: inner))   // checksum 0
        let outerIP = s.outerV6 ? Frames.ipv6(src: "fd00::1", dst: "fd00::2", next: 17, payload: udp)
            : Frames.ipv4(src: "10.99.0.1", dst: "10.99.0.2", proto: 17, payload: udp, id: outerID, corruptChecksum: true)
        return Frames.ethernet(dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01", type: s.outerV6 ? 0x86DD : 0x0800, payload: outerIP)
    }

    /// The offload flags for `s` (tunnel TSO when `tso`, inner TCP checksum otherwise).
    static func flags(_ s: Shape, tso: Bool) -> UInt64 {
        var f = MbufFlag.txTunnelVXLAN | (tso ? MbufFlag.txTCPSegmentation : MbufFlag.txTCPChecksum)
        f |= s.outerV6 ? MbufFlag.txOuterIPv6 : MbufFlag.txOuterIPv4 | MbufFlag.txOuterIPChecksum
        f |= s.innerV6 ? MbufFlag.txIPv6 : MbufFlag.txIPv4 | MbufFlag.txIPChecksum
        if s.outerUDPChecksum { f |= MbufFlag.txOuterUDPChecksum }
        return f
    }

    /// `bytes` in a chain: `first` bytes in the first segment, then `rest` per segment.
    func chain(_ bytes: [UInt8], first: Int, rest: Int = 2000) -> OpaquePointer {
        var head: OpaquePointer?
        var off = 0
        while off < bytes.count {
            let n = min(head == nil ? first : rest, bytes.count - off)
            let m = Mbuf.make(Array(bytes[off..<(off + n)]), pool: pool)
            if let head { XCTAssertEqual(rte_pktmbuf_chain(head, m), 0) } else { head = m }
            off += n
        }
        return head!
    }

    func send(_ model: NICModel, _ packets: [OpaquePointer]) {
        var burst: [OpaquePointer?] = packets
        let taken = burst.withUnsafeMutableBufferPointer { model.transmit($0.baseAddress!, count: $0.count) }
        XCTAssertEqual(taken, packets.count)
    }

    func payload(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededGenerator(seed: seed)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    // MARK: Decoding the wire (independent of the model)

    /// Ones'-complement sum with end-around carry after every word; 0xFFFF over data whose checksum is right.
    static func onesSum(_ bytes: [UInt8]) -> UInt16 {
        var s: UInt16 = 0
        var i = 0
        while i < bytes.count {
            let word = UInt16(bytes[i]) << 8 | UInt16(i + 1 < bytes.count ? bytes[i + 1] : 0)
            let (r, carry) = s.addingReportingOverflow(word)
            s = carry ? r + 1 : r
            i += 2
        }
        return s
    }

    static func be16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }

    static func pseudo(_ f: [UInt8], ip: Int, v6: Bool, proto: UInt8, length: Int) -> [UInt8] {
        v6 ? Array(f[(ip + 8)..<(ip + 40)]) + be32(UInt32(length)) + [0, 0, 0, proto]
            : Array(f[(ip + 12)..<(ip + 20)]) + [0, proto] + Frames.be16(length)
    }

    struct Wire {
        var outerIPLength = 0, outerID = 0, udpChecksum = 0, vni = 0
        var innerID = 0
        var seq: UInt32 = 0
        var tcpFlags: UInt8 = 0
        var tcpOptions: [UInt8] = []
        var payload: [UInt8] = []
    }

    struct DecodeError: Error { let why: String }

    /// Reads a VXLAN frame carrying TCP or UDP, asserting every length and checksum on the way.
    func decode(_ f: [UInt8], _ what: String, file: StaticString = #filePath, line: UInt = #line) throws -> Wire {
        func need(_ n: Int) throws { if f.count < n { throw DecodeError(why: "\(what): \(f.count) bytes, need \(n)") } }
        var w = Wire()
        try need(14)
        let outerV6 = Self.be16(f, 12) == 0x86DD
        let o = 14
        let u: Int
        if outerV6 {
            try need(o + 40)
            XCTAssertEqual(f[o + 6], 17, "\(what): outer next header", file: file, line: line)
            w.outerIPLength = 40 + Self.be16(f, o + 4)
            u = o + 40
        } else {
            XCTAssertEqual(Self.be16(f, 12), 0x0800, "\(what): outer EtherType", file: file, line: line)
            try need(o + 20)
            let ihl = Int(f[o] & 0xF) * 4
            XCTAssertEqual(Self.onesSum(Array(f[o..<(o + ihl)])), 0xFFFF, "\(what): outer IPv4 header checksum", file: file, line: line)
            XCTAssertEqual(f[o + 9], 17, "\(what): outer protocol", file: file, line: line)
            w.outerIPLength = Self.be16(f, o + 2)
            w.outerID = Self.be16(f, o + 4)
            u = o + ihl
        }
        XCTAssertEqual(w.outerIPLength, f.count - o, "\(what): outer IP length", file: file, line: line)
        try need(u + 16)
        XCTAssertEqual(Self.be16(f, u + 2), 4789, "\(what): VXLAN port", file: file, line: line)
        XCTAssertEqual(Self.be16(f, u + 4), f.count - u, "\(what): outer UDP length", file: file, line: line)
        w.udpChecksum = Self.be16(f, u + 6)
        if w.udpChecksum != 0 {
            let sum = Self.onesSum(Self.pseudo(f, ip: o, v6: outerV6, proto: 17, length: f.count - u) + Array(f[u...]))
            XCTAssertEqual(sum, 0xFFFF, "\(what): outer UDP checksum", file: file, line: line)
        } else {
            XCTAssertFalse(outerV6, "\(what): zero UDP checksum over IPv6", file: file, line: line)
        }
        XCTAssertEqual(f[u + 8], 0x08, "\(what): VXLAN flags", file: file, line: line)
        w.vni = Int(f[u + 12]) << 16 | Int(f[u + 13]) << 8 | Int(f[u + 14])
        var e = u + 16 + 12
        try need(e + 2)
        if Self.be16(f, e) == 0x8100 { e += 4 }
        let innerV6 = Self.be16(f, e) == 0x86DD
        let i = e + 2
        let t: Int
        let proto: UInt8
        if innerV6 {
            try need(i + 40)
            XCTAssertEqual(40 + Self.be16(f, i + 4), f.count - i, "\(what): inner IPv6 length", file: file, line: line)
            proto = f[i + 6]
            t = i + 40
        } else {
            try need(i + 20)
            let ihl = Int(f[i] & 0xF) * 4
            XCTAssertEqual(Self.onesSum(Array(f[i..<(i + ihl)])), 0xFFFF, "\(what): inner IPv4 header checksum", file: file, line: line)
            XCTAssertEqual(Self.be16(f, i + 2), f.count - i, "\(what): inner IPv4 length", file: file, line: line)
            w.innerID = Self.be16(f, i + 4)
            proto = f[i + 9]
            t = i + ihl
        }
        let l4 = Self.onesSum(Self.pseudo(f, ip: i, v6: innerV6, proto: proto, length: f.count - t) + Array(f[t...]))
        XCTAssertEqual(l4, 0xFFFF, "\(what): inner L4 checksum", file: file, line: line)
        if proto == 17 {
            try need(t + 8)
            XCTAssertNotEqual(Self.be16(f, t + 6), 0, "\(what): inner UDP checksum left out", file: file, line: line)
            w.payload = Array(f[(t + 8)...])
            return w
        }
        XCTAssertEqual(proto, 6, "\(what): inner protocol", file: file, line: line)
        try need(t + 20)
        w.seq = UInt32(Self.be16(f, t + 4)) << 16 | UInt32(Self.be16(f, t + 6))
        w.tcpFlags = f[t + 13]
        let doff = Int(f[t + 12] >> 4) * 4
        try need(t + doff)
        w.tcpOptions = Array(f[(t + 20)..<(t + doff)])
        w.payload = Array(f[(t + doff)...])
        return w
    }

    // MARK: TSO

    /// One 64000-byte superframe through the E810 model: every segment fits the MTU with valid checksums,
    /// sequence numbers follow on, ids count up, flags sit where they belong and the payload reassembles.
    func checkTSO(_ s: Shape, mss: Int, first: Int, rest: Int = 2000, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = NICModel(profile: .e810, mtu: 1500)
        let data = payload(64000, seed: seed)
        let seq0: UInt32 = 0xFFFF_0000     // wraps within the burst
        let flags0 = Self.tcpCWR | Self.tcpACK | Self.tcpPSH | Self.tcpFIN
        let bytes = Self.vxlan(s, l4: Self.tcp(seq: seq0, flags: flags0, options: s.tcpOptions, payload: data))
        XCTAssertEqual(bytes.count, s.headers + data.count)
        let m = chain(bytes, first: first, rest: rest)
        vx_mbuf_set_tx_offload(m, Self.flags(s, tso: true), 14, UInt16(s.outerL3), UInt16(s.l2), UInt16(s.l3), UInt16(s.l4), UInt16(mss))
        send(model, [m])

        XCTAssertEqual(model.violations, [], file: file, line: line)
        let frames = model.takeWire()
        XCTAssertEqual(frames.count, (data.count + mss - 1) / mss, file: file, line: line)
        XCTAssertEqual(model.packetsIn, 1, file: file, line: line)
        XCTAssertEqual(model.framesOut, frames.count, file: file, line: line)
        XCTAssertEqual(model.packetsRejected, 0, file: file, line: line)
        var reassembled: [UInt8] = []
        for (k, frame) in frames.enumerated() {
            let w = try decode(frame, "segment \(k)", file: file, line: line)
            XCTAssertLessThanOrEqual(w.outerIPLength, 1500, "segment \(k) over the MTU", file: file, line: line)
            XCTAssertEqual(w.payload.count, k == frames.count - 1 ? data.count - k * mss : mss, "segment \(k) size", file: file, line: line)
            XCTAssertEqual(w.seq, seq0 &+ UInt32(reassembled.count), "segment \(k) sequence number", file: file, line: line)
            XCTAssertEqual(w.vni, 42, file: file, line: line)
            if !s.outerV6 { XCTAssertEqual(w.outerID, (0xFFF0 + k) & 0xFFFF, "segment \(k) outer id", file: file, line: line) }
            if !s.innerV6 { XCTAssertEqual(w.innerID, 0x1234 + k, "segment \(k) inner id", file: file, line: line) }
            if s.outerUDPChecksum { XCTAssertNotEqual(w.udpChecksum, 0, "segment \(k) outer UDP checksum", file: file, line: line) }
            if !s.outerUDPChecksum && !s.outerV6 { XCTAssertEqual(w.udpChecksum, 0, "segment \(k): the packet's 0 stays", file: file, line: line) }
            let last = k == frames.count - 1
            XCTAssertEqual(w.tcpFlags, Self.tcpACK | (k == 0 ? Self.tcpCWR : 0) | (last ? Self.tcpPSH | Self.tcpFIN : 0),
                           "segment \(k) TCP flags", file: file, line: line)
            XCTAssertEqual(w.tcpOptions.count, s.tcpOptions, file: file, line: line)
            XCTAssertEqual(Array(frame[0..<12]), Array(bytes[0..<12]), "segment \(k) MACs", file: file, line: line)
            reassembled += w.payload
        }
        XCTAssertEqual(reassembled.count, data.count, file: file, line: line)
        XCTAssertTrue(reassembled == data, "payload reassembles byte for byte", file: file, line: line)
    }

    func testTSOInnerIPv4OverIPv4() throws {
        try checkTSO(Shape(), mss: 1398, first: 1000, seed: 1)
    }

    /// Segments exactly at the MTU.
    func testTSOInnerIPv6WithTCPOptionsOverIPv4WithOuterUDPChecksum() throws {
        let s = Shape(innerV6: true, tcpOptions: 12, outerUDPChecksum: true)
        try checkTSO(s, mss: 1500 - s.overhead, first: 1500, seed: 2)
    }

    func testTSOInnerIPv4BehindAVLANTagOverIPv6() throws {
        try checkTSO(Shape(outerV6: true, innerVLAN: true, outerUDPChecksum: true), mss: 1386, first: 700, rest: 1111, seed: 3)
    }

    /// Headers alone in the first segment, full 2 KB buffers after it.
    func testTSOInnerIPv6OverIPv6() throws {
        let s = Shape(outerV6: true, innerV6: true, outerUDPChecksum: true)
        try checkTSO(s, mss: 1000, first: s.headers, rest: 2048, seed: 4)
    }

    // MARK: Checksums without TSO

    /// Garbage in every checksum field; the model computes each from scratch (inner and outer).
    func testChecksumOffloadsFillInnerAndOuterChecksums() throws {
        let model = NICModel(profile: .checksumOnly)
        var packets: [OpaquePointer] = []
        var shapes: [Shape] = []
        for outerV6 in [false, true] {
            for innerV6 in [false, true] {
                let s = Shape(outerV6: outerV6, innerV6: innerV6, outerUDPChecksum: true)
                let bytes = Self.vxlan(s, l4: Self.tcp(seq: 7, flags: Self.tcpACK, options: 0, payload: payload(501, seed: 5)))
                let m = chain(bytes, first: s.headers + 1, rest: 300)
                vx_mbuf_set_tx_offload(m, Self.flags(s, tso: false), 14, UInt16(s.outerL3), UInt16(s.l2), UInt16(s.l3), 0, 0)
                packets.append(m)
                shapes.append(s)
            }
        }
        // Inner UDP over IPv6, odd length, over IPv6.
        let s = Shape(outerV6: true, innerV6: true, outerUDPChecksum: true)
        let udp = Frames.be16(1000) + Frames.be16(2000) + Frames.be16(8 + 77) + [0x12, 0x34] + payload(77, seed: 6)
        let m = Mbuf.make(Self.vxlan(s, l4: udp, proto: 17), pool: pool)
        let udpFlags = MbufFlag.txTunnelVXLAN | MbufFlag.txOuterIPv6 | MbufFlag.txOuterUDPChecksum | MbufFlag.txIPv6 | MbufFlag.txUDPChecksum
        vx_mbuf_set_tx_offload(m, udpFlags, 14, 40, 30, 40, 8, 0)
        packets.append(m)
        send(model, packets)

        XCTAssertEqual(model.violations, [])
        let frames = model.takeWire()
        XCTAssertEqual(frames.count, 5)
        for (k, frame) in frames.enumerated() {
            let w = try decode(frame, "frame \(k)")
            XCTAssertNotEqual(w.udpChecksum, 0, "frame \(k): outer UDP checksum requested")
            XCTAssertEqual(w.payload.count, k < 4 ? 501 : 77)
        }
        XCTAssertEqual(model.packetsIn, 5)
        XCTAssertEqual(model.framesOut, 5)
    }

    /// No metadata: the frame leaves as it is, chained or not, on every profile.
    func testFramesWithoutOffloadsLeaveUnchanged() throws {
        for profile in NICModel.Profile.allCases {
            let model = NICModel(profile: profile)
            let bytes = Frames.vxlanPacket(inner: Frames.innerUDP(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", size: 900))
            send(model, [chain(bytes, first: 100, rest: 300), Mbuf.make(bytes, pool: pool)])
            XCTAssertEqual(model.violations, [], "\(profile)")
            XCTAssertEqual(model.wire, [bytes, bytes], "\(profile)")
            model.reset()
            XCTAssertEqual(model.wire, [])
            XCTAssertEqual(model.packetsIn, 0)
        }
    }

    // MARK: Violations

    /// Sends one packet built by `make`; expects it refused with a violation containing `expected`, and no frame.
    func expectViolation(_ expected: String, profile: NICModel.Profile = .e810, file: StaticString = #filePath, line: UInt = #line,
                         _ make: () -> OpaquePointer) {
        let model = NICModel(profile: profile)
        send(model, [make()])
        XCTAssertTrue(model.violations.contains { $0.contains(expected) }, "expected “\(expected)” in \(model.violations)",
                      file: file, line: line)
        XCTAssertEqual(model.wire, [], file: file, line: line)
        XCTAssertEqual(model.packetsRejected, 1, file: file, line: line)
        XCTAssertEqual(model.framesOut, 0, file: file, line: line)
    }

    /// A TSO superframe of `size` payload bytes in 1000/2000-byte segments, with the metadata of `s`.
    func superframe(_ s: Shape = Shape(), size: Int = 20000, flags: UInt64? = nil, l2: Int? = nil, segsz: Int? = nil,
                    first: Int = 1000) -> OpaquePointer {
        let bytes = Self.vxlan(s, l4: Self.tcp(seq: 1, flags: Self.tcpACK, options: s.tcpOptions, payload: payload(size, seed: 7)))
        let m = chain(bytes, first: first)
        vx_mbuf_set_tx_offload(m, flags ?? Self.flags(s, tso: true), 14, UInt16(s.outerL3), UInt16(l2 ?? s.l2), UInt16(s.l3), UInt16(s.l4),
                               UInt16(segsz ?? 1500 - s.overhead))
        return m
    }

    func testWrongL2LengthIsAViolation() {
        expectViolation("l2_len 14 but outer UDP + VXLAN + inner Ethernet is 30") { superframe(l2: 14) }
        expectViolation("l2_len 30 but outer UDP + VXLAN + inner Ethernet is 34") { superframe(Shape(innerVLAN: true), l2: 30) }
    }

    func testTunnelFlagWithoutAnInnerRequestIsAViolation() {
        expectViolation("TUNNEL_VXLAN without an inner offload request") {
            superframe(size: 500, flags: MbufFlag.txTunnelVXLAN | MbufFlag.txOuterIPv4 | MbufFlag.txOuterIPChecksum)
        }
    }

    func testTSOOnTheChecksumOnlyProfileIsAViolation() {
        expectViolation("needs vxlan_tnl_tso, which the checksumOnly profile lacks", profile: .checksumOnly) { superframe() }
        expectViolation("needs tcp_cksum, which the none profile lacks", profile: .none) {
            let m = self.superframe(size: 500)
            vx_mbuf_set_tx_offload(m, Self.flags(Shape(), tso: false), 14, 20, 30, 20, 20, 0)
            return m
        }
    }

    func testMissingOuterIPv4FlagIsAViolation() {
        let f = Self.flags(Shape(), tso: true) & ~(MbufFlag.txOuterIPv4 | MbufFlag.txOuterIPChecksum)
        expectViolation("TUNNEL_VXLAN without OUTER_IPV4 or OUTER_IPV6") { superframe(flags: f) }
        expectViolation("outer header is IPv4 but OUTER_IPV4 is not set") { superframe(flags: f) }
        // Tunnel TSO over IPv4 also needs the outer header checksum (every segment's header differs).
        expectViolation("without OUTER_IP_CKSUM") { superframe(flags: Self.flags(Shape(), tso: true) & ~MbufFlag.txOuterIPChecksum) }
    }

    func testTSOSegmentSizeOutOfRangeIsAViolation() {
        expectViolation("tso_segsz 32 outside 64...9728") { superframe(segsz: 32) }
        expectViolation("TCP_SEG with tso_segsz 0") { superframe(segsz: 0) }
        expectViolation("exceed the MTU 1500") { superframe(segsz: 1420) }
    }

    func testOverMTUWithoutTSOIsAViolation() {
        expectViolation("1540 IP bytes exceed the MTU 1500 without TCP_SEG") {
            let m = superframe(size: 1540 - Shape().overhead)
            vx_mbuf_set_tx_offload(m, Self.flags(Shape(), tso: false), 14, 20, 30, 20, 20, 0)
            return m
        }
    }

    func testTooManySegmentsOrTooShortWithoutTSOIsAViolation() {
        expectViolation("9 segments without TCP_SEG (at most 8)") {
            let m = self.chain(Self.vxlan(Shape(), l4: Self.tcp(seq: 1, flags: Self.tcpACK, options: 0, payload: self.payload(800, seed: 9))),
                               first: 104, rest: 100)
            vx_mbuf_set_tx_offload(m, Self.flags(Shape(), tso: false), 14, 20, 30, 20, 20, 0)
            return m
        }
        expectViolation("first segment data_len 16 outside 17...1526", profile: .none) {
            Mbuf.make([UInt8](repeating: 0xFF, count: 16), pool: self.pool)
        }
    }

    /// ice in 22.11 checks the first segment against the max frame even for TSO.
    func testFirstSegmentOverTheMaxFrameIsAViolation() {
        expectViolation("first segment data_len 1800 outside 17...1526") { superframe(first: 1800) }
    }

    func testFlagsThatContradictTheBytesAreViolations() {
        let s = Shape()
        expectViolation("inner header is IPv4 but IPV4 is not set") {
            superframe(flags: Self.flags(s, tso: true) & ~(MbufFlag.txIPv4 | MbufFlag.txIPChecksum) | MbufFlag.txIPv6)
        }
        expectViolation("outer header is IPv6 but OUTER_IPV6 is not set") {
            superframe(Shape(outerV6: true), flags: Self.flags(Shape(outerV6: true), tso: true) & ~MbufFlag.txOuterIPv6 | MbufFlag.txOuterIPv4)
        }
        expectViolation("l4_len 20 but the TCP header is 32") {
            let m = self.superframe(Shape(tcpOptions: 12))
            vx_mbuf_set_tx_offload(m, Self.flags(s, tso: true), 14, 20, 30, 20, 20, 1300)
            return m
        }
        expectViolation("headers end at 104 but the first segment holds 90 bytes") { superframe(first: 90) }
        expectViolation("TCP_SEG over IPv4 without IP_CKSUM") { superframe(flags: Self.flags(s, tso: true) & ~MbufFlag.txIPChecksum) }
    }

    /// Random metadata on random and on valid bytes: never a crash, every packet either sent or refused, every
    /// mbuf freed.
    func testGarbageMetadataNeverCrashes() {
        var rng = SeededGenerator.forTest("testGarbageMetadataNeverCrashes")
        let model = NICModel(profile: .e810)
        let bits: [UInt64] = (41...60).map { 1 << UInt64($0) }
        let valid = Self.vxlan(Shape(), l4: Self.tcp(seq: 1, flags: Self.tcpACK, options: 0, payload: payload(3000, seed: 8)))
        for round in 0..<300 {
            var bytes = round % 2 == 0 ? valid : (0..<Int.random(in: 0...3000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            for _ in 0..<Int.random(in: 0...4, using: &rng) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            let m = bytes.isEmpty ? pool.allocate()! : chain(bytes, first: Int.random(in: 1...1600, using: &rng), rest: Int.random(in: 200...2048, using: &rng))
            var f: UInt64 = 0
            for b in bits where Bool.random(using: &rng) { f |= b }
            if Bool.random(using: &rng) { f = Self.flags(Shape(), tso: Bool.random(using: &rng)) ^ (Bool.random(using: &rng) ? bits.randomElement(using: &rng)! : 0) }
            vx_mbuf_set_tx_offload(m, f, UInt16.random(in: 0...127, using: &rng), UInt16.random(in: 0...100, using: &rng),
                                   UInt16.random(in: 0...127, using: &rng), UInt16.random(in: 0...100, using: &rng),
                                   UInt16.random(in: 0...80, using: &rng), UInt16.random(in: 0...3000, using: &rng))
            send(model, [m])
        }
        XCTAssertEqual(model.packetsIn, 300)
        XCTAssertGreaterThan(model.packetsRejected, 0)
        _ = model.takeWire()
        // A nil pointer in the burst is a violation, not a crash.
        var burst: [OpaquePointer?] = [nil]
        XCTAssertEqual(burst.withUnsafeMutableBufferPointer { model.transmit($0.baseAddress!, count: 1) }, 1)
        XCTAssertTrue(model.violations.last?.contains("nil mbuf") ?? false)
    }

    // MARK: In the TX stage

    /// `TxStage.setModel` hands the stage's bursts to the model instead of the driver.
    func testTxStageHandsBurstsToTheModel() throws {
        let model = NICModel(profile: .e810)
        let counters = CounterBlock(count: PortCounter.allCases.count)
        let stage = TxStage(ports: [(port: 0, queue: 0)], counters: counters)
        stage.setModel(model, port: 0)
        let s = Shape()
        stage.push(superframe(s, size: 10000), to: 0)
        stage.push(superframe(s, size: 500, segsz: 10), to: 0)
        stage.flushAll()
        XCTAssertEqual(model.packetsIn, 2)
        XCTAssertEqual(model.packetsRejected, 1)
        XCTAssertEqual(model.framesOut, (10000 + 1500 - s.overhead - 1) / (1500 - s.overhead))
        XCTAssertEqual(counters[PortCounter.slot(port: 0, .txPackets)], 2)
        XCTAssertEqual(counters[PortCounter.slot(port: 0, .txDropped)], 0)
    }
}
