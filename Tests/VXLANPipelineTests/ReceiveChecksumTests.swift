import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// The underlay's receive checksums: what the NIC reports in `ol_flags` (GOOD skips the software check, BAD
/// drops, UNKNOWN/NONE/INVALID fall back to software; IP/L4 flags of a tunnel-parsed packet speak of the inner
/// headers and are not used), `verify_udp_checksum` over IPv4, and zero UDP checksums over IPv6
/// (`udp6_zero_checksum`). Every expectation is computed here, independently of the pipeline.
final class ReceiveChecksumTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01", vm = "02:00:00:00:42:01", far = "02:00:00:00:77:01", v6RemoteMAC = "02:00:00:00:00:06"
    /// RTE_PTYPE_L2_ETHER | L3_IPV4_EXT_UNKNOWN | L4_UDP | TUNNEL_VXLAN | INNER_L2_ETHER: the NIC parsed the tunnel.
    static let tunnelParsed: UInt32 = 0x0000_0001 | 0x0000_0090 | 0x0000_0200 | 0x0000_3000 | 0x0001_0000
    /// The same without the tunnel: only the outer headers were parsed.
    static let outerParsed: UInt32 = 0x0000_0001 | 0x0000_0090 | 0x0000_0200

    var h: PipelineHarness!

    func build(underlayExtra: String = "", trusted: Bool = true) throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 1023, underlayRxChecksums: trusted) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "\(Self.ourMAC)", mtu: 1500\(underlayExtra) }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2, "fd00::2"] } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "\(Self.v6RemoteMAC)" } ]
            """ }
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    static func inner(_ n: Int = 0, size: Int = 90) -> [UInt8] {
        Frames.innerUDP(dst: vm, src: far, sport: 1000 + n, size: size)
    }

    /// An IPv4 VXLAN frame whose UDP checksum is filled in (RFC 768 over the pseudo-header), computed here.
    static func withUDPChecksum(_ frame: [UInt8]) -> [UInt8] {
        var f = frame
        let udp = Array(f[34...])
        var c = Frames.checksum(Array(f[26..<34]) + [0, 17] + Frames.be16(udp.count) + udp)
        if c == 0 { c = 0xFFFF }
        f[40] = UInt8(c >> 8); f[41] = UInt8(c & 0xff)
        return f
    }

    /// Each frame with its flags; returns what reached the VM.
    func deliver(_ frames: [([UInt8], UInt64, UInt32)]) -> [[UInt8]] {
        h.runUnderlay(frames.map { (bytes: $0.0, flags: $0.1, packetType: $0.2) }, now: 1)[1]
    }

    // MARK: - The NIC's verdict

    func testOuterIPv4HeaderChecksumFollowsTheNIC() throws {
        try build()
        let good = (0..<9).map { Frames.vxlanPacket(sport: 50000 + $0, inner: Self.inner($0)) }
        let corrupt = (0..<9).map { Frames.vxlanPacket(sport: 50000 + $0, inner: Self.inner($0), corruptChecksum: true) }
        XCTAssertNotEqual(Frames.checksum(Array(corrupt[0][14..<34])), 0, "the corrupt header really is wrong")
        let out = deliver([
            (corrupt[0], MbufFlag.rxIPChecksumGood, Self.outerParsed),            // the NIC vouched: accepted as is
            (corrupt[1], MbufFlag.rxIPChecksumGood | MbufFlag.rxL4ChecksumGood, 0), // packet type not given: still the outer
            (good[2], MbufFlag.rxIPChecksumBad, Self.outerParsed),                // BAD: dropped though the bytes are right
            (good[3], MbufFlag.rxOuterIPChecksumBad | MbufFlag.rxIPChecksumGood, Self.tunnelParsed),  // outer BAD, inner GOOD
            (corrupt[4], 0, 0),                                                   // UNKNOWN: software finds it wrong
            (corrupt[5], MbufFlag.rxIPChecksumNone, Self.outerParsed),            // NONE: software as well
            (corrupt[6], MbufFlag.rxIPChecksumGood, Self.tunnelParsed),           // GOOD of the inner header: software
            (good[7], 0, 0),                                                      // UNKNOWN and right
            (good[8], MbufFlag.rxIPChecksumGood, Self.tunnelParsed),              // inner GOOD, outer checked in software
        ])
        XCTAssertEqual(out, [Self.inner(0), Self.inner(1), Self.inner(7), Self.inner(8)])
        XCTAssertEqual(h.drops(.badIPChecksum), 5)
        XCTAssertEqual(h.pipeline(.decapsulated), 4)
        XCTAssertEqual(h.totalDrops, 5)
    }

    func testOuterIPv6UDPChecksumFollowsTheNIC() throws {
        try build()
        func packet(_ n: Int, corrupt: Bool = false) -> [UInt8] {
            var p = Frames.vxlanPacket6(inner: Self.inner(n))
            if corrupt { p[61] ^= 0x5a }
            return p
        }
        let out = deliver([
            (packet(0, corrupt: true), MbufFlag.rxL4ChecksumGood, Self.outerParsed),             // vouched: accepted
            (packet(1, corrupt: true), MbufFlag.rxOuterL4ChecksumGood, Self.tunnelParsed),       // outer GOOD
            (packet(2, corrupt: true), MbufFlag.rxOuterL4ChecksumGood | MbufFlag.rxL4ChecksumBad, Self.tunnelParsed),
            (packet(3), MbufFlag.rxL4ChecksumBad, Self.outerParsed),                             // BAD: dropped
            (packet(4), MbufFlag.rxOuterL4ChecksumBad | MbufFlag.rxL4ChecksumGood, Self.tunnelParsed),
            (packet(5, corrupt: true), MbufFlag.rxL4ChecksumGood, Self.tunnelParsed),            // inner GOOD: software
            (packet(6, corrupt: true), MbufFlag.rxL4ChecksumNone, Self.outerParsed),             // NONE: software
            (packet(7, corrupt: true), MbufFlag.rxOuterL4ChecksumInvalid, Self.tunnelParsed),    // INVALID: software
            (packet(8, corrupt: true), 0, 0),                                                    // UNKNOWN: software
            (packet(9), 0, 0),
            (packet(10), MbufFlag.rxL4ChecksumGood, Self.tunnelParsed),                          // software finds it right
        ])
        XCTAssertEqual(out, [Self.inner(0), Self.inner(1), Self.inner(2), Self.inner(9), Self.inner(10)])
        XCTAssertEqual(h.drops(.badUDPChecksum), 6)
        XCTAssertEqual(h.totalDrops, 6)
    }

    /// A zero checksum over IPv6 is a matter of configuration, not of the NIC: GOOD does not admit it.
    func testZeroIPv6ChecksumIsRefusedWhateverTheNICSays() throws {
        try build()
        let zero = Frames.vxlanPacket6(inner: Self.inner(), checksum: 0)
        let out = deliver([(zero, MbufFlag.rxL4ChecksumGood, Self.outerParsed), (zero, MbufFlag.rxOuterL4ChecksumGood, Self.tunnelParsed)])
        XCTAssertEqual(out, [])
        XCTAssertEqual(h.drops(.badUDPChecksum), 2)
    }

    /// A port whose RX checksum offloads are off (net_ring, net_af_packet) is not believed: its mbufs' flags may be
    /// left over from wherever the buffer was before.
    func testFlagsFromAPortWithoutRxChecksumOffloadsAreIgnored() throws {
        try build(trusted: false)
        var v6 = Frames.vxlanPacket6(inner: Self.inner(1))
        v6[61] ^= 0x5a
        let out = deliver([
            (Frames.vxlanPacket(inner: Self.inner(0), corruptChecksum: true), MbufFlag.rxIPChecksumGood, Self.outerParsed),
            (v6, MbufFlag.rxL4ChecksumGood, Self.outerParsed),
            (Frames.vxlanPacket(sport: 50002, inner: Self.inner(2)), MbufFlag.rxIPChecksumBad, Self.outerParsed),
            (Self.withUDPChecksum(Frames.vxlanPacket(sport: 50003, inner: Self.inner(3))), MbufFlag.rxL4ChecksumBad, Self.outerParsed),
        ])
        XCTAssertEqual(out, [Self.inner(2), Self.inner(3)])
        XCTAssertEqual(h.drops(.badIPChecksum), 1)
        XCTAssertEqual(h.drops(.badUDPChecksum), 1)
    }

    // MARK: - verify_udp_checksum (IPv4)

    func testIPv4UDPChecksumsAreNotCheckedByDefault() throws {
        try build(trusted: false)
        var wrong = Self.withUDPChecksum(Frames.vxlanPacket(inner: Self.inner(0)))
        wrong[41] ^= 0x33
        XCTAssertEqual(deliver([(wrong, 0, 0)]), [Self.inner(0)], "RFC 7348: a receiver may skip the check")
        XCTAssertEqual(h.totalDrops, 0)
    }

    /// Without verify_udp_checksum the NIC's BAD still drops: the check cost nothing.
    func testNICsBadUDPChecksumDropsEvenWithoutVerification() throws {
        try build()
        let right = Self.withUDPChecksum(Frames.vxlanPacket(inner: Self.inner(0)))
        let zero = Frames.vxlanPacket(sport: 50001, inner: Self.inner(1))
        var wrong = Self.withUDPChecksum(Frames.vxlanPacket(sport: 50002, inner: Self.inner(2)))
        wrong[41] ^= 0x33
        let out = deliver([(right, MbufFlag.rxL4ChecksumBad, Self.outerParsed), (zero, MbufFlag.rxL4ChecksumBad, Self.outerParsed),
                           (wrong, 0, Self.outerParsed)])
        XCTAssertEqual(out, [Self.inner(1), Self.inner(2)], "zero means no checksum over IPv4; UNKNOWN is not checked without the option")
        XCTAssertEqual(h.drops(.badUDPChecksum), 1)
    }

    func testVerifyUDPChecksumOverIPv4() throws {
        try build(underlayExtra: ", verify_udp_checksum: true")
        let right = (0..<6).map { Self.withUDPChecksum(Frames.vxlanPacket(sport: 50000 + $0, inner: Self.inner($0, size: 91 + $0))) }
        var wrong = right
        for i in wrong.indices { wrong[i][41] ^= 0x33 }
        let zero = Frames.vxlanPacket(sport: 50010, inner: Self.inner(10))
        let out = deliver([
            (right[0], 0, 0), (wrong[1], 0, 0), (zero, 0, 0),
            (wrong[2], MbufFlag.rxL4ChecksumGood, Self.outerParsed),                    // the NIC vouched
            (right[3], MbufFlag.rxOuterL4ChecksumBad, Self.tunnelParsed),
            (wrong[4], MbufFlag.rxL4ChecksumGood, Self.tunnelParsed),                   // inner GOOD: software, wrong
            (zero, MbufFlag.rxL4ChecksumBad, Self.outerParsed),                         // zero is always accepted
        ])
        XCTAssertEqual(out, [Self.inner(0, size: 91), Self.inner(10), Self.inner(2, size: 93), Self.inner(10)])
        XCTAssertEqual(h.drops(.badUDPChecksum), 3)
        XCTAssertEqual(h.totalDrops, 3)
        // Padded to a minimum frame and spread over several segments (odd boundaries): the same verdicts.
        let small = Self.withUDPChecksum(Frames.vxlanPacket(sport: 50020, inner: Self.inner(20, size: 60)))
        var smallWrong = small
        smallWrong[40] ^= 0x01
        let big = Self.withUDPChecksum(Frames.vxlanPacket(sport: 50021, inner: Self.inner(21, size: 1401)))
        var bigWrong = big
        bigWrong[big.count - 1] ^= 0x10                                                 // the last byte, in the last segment
        h.rings[0].inject([Mbuf.makeChained(big, pool: h.pool, segment: 333), Mbuf.makeChained(bigWrong, pool: h.pool, segment: 333),
                           Mbuf.make(small + [0, 0, 0, 0], pool: h.pool), Mbuf.make(smallWrong, pool: h.pool)])
        let chained = h.run([:], now: 1)[1]
        XCTAssertEqual(chained, [Self.inner(21, size: 1401), Self.inner(20, size: 60)])
        XCTAssertEqual(h.drops(.badUDPChecksum), 5)
    }

    // MARK: - udp6_zero_checksum

    func testZeroChecksumReceiveMode() throws {
        try build(underlayExtra: ", udp6_zero_checksum: { rx: true }")
        var wrong = Frames.vxlanPacket6(inner: Self.inner(2))
        wrong[61] ^= 0x5a
        let out = deliver([(Frames.vxlanPacket6(inner: Self.inner(0), checksum: 0), 0, 0), (Frames.vxlanPacket6(inner: Self.inner(1)), 0, 0),
                           (wrong, 0, 0)])
        XCTAssertEqual(out, [Self.inner(0), Self.inner(1)], "zero accepted, non-zero still verified")
        XCTAssertEqual(h.drops(.badUDPChecksum), 1)
        // Receiving zeros does not mean sending them.
        let sent = h.run([1: [Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, size: 77)]], now: 1)[0]
        let v6 = try XCTUnwrap(sent.first { $0[12] == 0x86 })
        XCTAssertNotEqual(Array(v6[60...61]), [0, 0])
    }

    func testZeroChecksumTransmitMode() throws {
        try build(underlayExtra: ", udp6_zero_checksum: { tx: true }")
        let far6 = "02:00:00:00:66:01"
        // Learn a MAC behind fd00::2 (from a checksummed packet), then send it unicast, and flood a broadcast.
        XCTAssertEqual(deliver([(Frames.vxlanPacket6(inner: Frames.innerUDP(dst: Self.vm, src: far6)), 0, 0)]).count, 1)
        _ = h.run([:], now: 1.5)
        let unicast = Frames.innerUDP(dst: far6, src: Self.vm, size: 201)
        let broadcast = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, sport: 7, size: 77)
        for inner in [unicast, broadcast] {
            let sent = h.run([1: [inner]], now: 2)[0]
            let v6 = try XCTUnwrap(sent.first { $0[12] == 0x86 }, "nothing over IPv6 for \(inner.prefix(6))")
            let expected = Frames.ethernet(dst: Self.v6RemoteMAC, src: Self.ourMAC, type: 0x86DD,
                                           payload: Frames.ipv6(src: "fd00::1", dst: "fd00::2", next: 17,
                                                                payload: Frames.udp6(src: "fd00::1", dst: "fd00::2",
                                                                                     sport: ReferenceFlowHash.sourcePort(inner), dport: 4789,
                                                                                     payload: Frames.vxlan(vni: 42, inner: inner), checksum: 0),
                                                                flow: ReferenceFlowHash.flowLabel(inner)))
            XCTAssertEqual(v6, expected, "zero UDP checksum, every other field as usual")
        }
        // Sending zeros does not mean accepting them.
        XCTAssertEqual(deliver([(Frames.vxlanPacket6(inner: Self.inner(3), checksum: 0), 0, 0)]), [])
        XCTAssertEqual(h.drops(.badUDPChecksum), 1)
    }

    // MARK: - udp6_zero_checksum.tx with a NIC

    /// Frames from a VM through an IPv6 tunnel whose underlay is `model` (or a TX ring): the wire and the counters.
    func sendThroughIPv6Tunnel(zeroTx: Bool, model: NICModel?) throws -> (wire: [[UInt8]], hardwareChecksums: UInt64) {
        let S = SegmentationTests.self
        let plan = model.map { TunnelTxPlan(enabled: $0.capabilities) } ?? .software
        let h = try PipelineHarness(accessPorts: 1, poolSize: 4095, slowPath: false, plan: plan, completeChecksumPorts: [1],
                                    underlayModel: model) { names in """
            underlay: { port: \(names[0]), ip6: "fd00::1/64", mac: "02:00:00:00:00:01"\(zeroTx ? ", udp6_zero_checksum: { tx: true }" : "") }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: ["fd00::2"] } ]
            fdb: [ { vni: 42, mac: "\(S.remoteVMMAC)", remote: "fd00::2" } ]
            neighbors: [ { ip: "fd00::2", mac: "02:00:00:00:00:02" } ]
            """ }
        h.rings[1].inject(HardwarePathTests.traffic().map { Mbuf.makeChained($0, pool: h.pool) })
        h.core.pollOnce()
        let wire = model?.takeWire() ?? h.rings[0].drain()
        XCTAssertEqual(h.totalDrops, 0)
        let counted = h.pipeline(.hardwareChecksum)
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        return (wire, counted)
    }

    /// A NIC with inner checksum offloads but no outer UDP checksum offload: over IPv6 it may fill the inner
    /// checksums only when the outer UDP checksum is zero. With `udp6_zero_checksum.tx` it does, and no frame asks
    /// it for OUTER_UDP_CKSUM; the wire is the software path's (checksummed) wire with the outer UDP checksum 0.
    func testZeroChecksumTransmitLetsTheNICFillInnerChecksumsWithoutOuterUDPOffload() throws {
        var offloads = NICModel.Profile.checksumOnly.capabilities
        offloads.remove(.outerUDPChecksum)
        let reference = try sendThroughIPv6Tunnel(zeroTx: false, model: nil).wire
        for p in reference { _ = SegmentationTests.decode(p) }                  // valid lengths and checksums
        let without = NICModel(profile: .checksumOnly, capabilities: offloads)
        XCTAssertEqual(try sendThroughIPv6Tunnel(zeroTx: false, model: without).hardwareChecksums, 0,
                       "without zero checksums the inner sums stay in software over IPv6")
        let model = NICModel(profile: .checksumOnly, capabilities: offloads)
        let zero = try sendThroughIPv6Tunnel(zeroTx: true, model: model)
        XCTAssertEqual(model.violations, [], "metadata the NIC would refuse (OUTER_UDP_CKSUM it lacks)")
        XCTAssertGreaterThan(zero.hardwareChecksums, 0)
        XCTAssertEqual(zero.wire.count, reference.count)
        for (i, (a, b)) in zip(zero.wire, reference).enumerated() {
            var expected = b
            expected[60] = 0; expected[61] = 0
            XCTAssertEqual(a, expected, "packet \(i)")
        }
    }
}
