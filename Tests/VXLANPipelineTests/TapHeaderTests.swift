import CDPDK
import CTapPort
import DPDKTestSupport
import PollMode
import XCTest

/// The tap port's virtio-net header translation (CTapPort): what the kernel's header says about a received frame
/// becomes DPDK's RX flags, or a drop reason when it lies; DPDK's TX offload request becomes the header the
/// kernel expects, with the pseudo-header sums Linux's convention wants (length included, also for GSO). Expected
/// values are computed here from the bytes (Frames' RFC 1071 sums), not by the code under test.
final class TapHeaderTests: XCTestCase {
    static var pool: PacketPool!
    let offloads = UInt32(VX_TUN_F_CSUM | VX_TUN_F_TSO4 | VX_TUN_F_TSO6 | VX_TUN_F_UDP_TUNNEL_GSO | VX_TUN_F_UDP_TUNNEL_GSO_CSUM)
    let underlayMode: UInt32 = 0x10000      // VX_TAP_MODE_UNDERLAY

    override class func setUp() {
        super.setUp()
        try! TestEAL.start()
        pool = try! PacketPool(name: TestEAL.uniqueName("taphdr"), count: 1023)
    }

    override func tearDown() {
        XCTAssertEqual(Self.pool.available, Self.pool.capacity, "every mbuf back in the pool")
        super.tearDown()
    }

    // MARK: frames

    static func tcp(payload: Int, flags: UInt8 = 0x10) -> [UInt8] {
        Frames.be16(40000) + Frames.be16(5201) + [0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags] + Frames.be16(65535) + [0, 0, 0, 0]
            + (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    }

    static func tcp4Frame(payload: Int) -> [UInt8] {
        Frames.ethernet(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", type: 0x0800,
                        payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 6, payload: tcp(payload: payload)))
    }

    static func tcp6Frame(payload: Int) -> [UInt8] {
        Frames.ethernet(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", type: 0x86DD,
                        payload: Frames.ipv6(src: "fd42::1", dst: "fd42::2", next: 6, payload: tcp(payload: payload)))
    }

    /// A VXLAN frame around `inner` over IPv4 (UDP checksum 0) or IPv6 (checksum 0 here; the test fills what it needs).
    static func vxlan(_ inner: [UInt8], outer6: Bool) -> [UInt8] {
        let udp = Frames.udp(sport: 50000, dport: 4789, payload: Frames.vxlan(vni: 42, inner: inner))
        if outer6 {
            return Frames.ethernet(dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01", type: 0x86DD,
                                   payload: Frames.ipv6(src: "fd00::1", dst: "fd00::2", next: 17, payload: udp))
        }
        return Frames.ethernet(dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01", type: 0x0800,
                               payload: Frames.ipv4(src: "10.99.0.1", dst: "10.99.0.2", proto: 17, payload: udp))
    }

    func header(flags: UInt8 = UInt8(VX_VNET_F_NEEDS_CSUM), gso: Int32, gsoSize: UInt16 = 1448, hdrLen: UInt16 = 66,
                start: UInt16 = 34, offset: UInt16 = 16, outerTH: UInt16 = 0, innerNH: UInt16 = 0) -> vx_vnet_hdr {
        var h = vx_vnet_hdr()
        h.flags = flags; h.gso_type = UInt8(gso); h.gso_size = gsoSize; h.hdr_len = hdrLen
        h.csum_start = start; h.csum_offset = offset; h.outer_th_offset = outerTH; h.inner_nh_offset = innerNH
        return h
    }

    /// vx_vnet_rx_apply's verdict on `bytes` (chained in 2 KB buffers, as the port reads them) and the mbuf's
    /// flags and segment size; the mbuf is freed.
    func receive(_ bytes: [UInt8], _ h: vx_vnet_hdr, offloads: UInt32? = nil) -> (verdict: Int32, flags: UInt64, segment: UInt16, bytes: [UInt8]) {
        let m = Mbuf.makeChained(bytes, pool: Self.pool, segment: 2048)
        var h = h
        let verdict = vx_vnet_rx_apply(&h, m, offloads ?? self.offloads)
        let result = (verdict, vx_mbuf_ol_flags(m), UInt16(vx_mbuf_tso_segsz(m)), Mbuf.bytes(m))
        vx_mbuf_free(m)
        return result
    }

    /// Sums `bytes` from `start` to the end as the kernel finishes a partial checksum, and stores it at `start + offset`.
    static func finish(_ bytes: inout [UInt8], start: Int, offset: Int) {
        let c = Frames.checksum(Array(bytes[start...]))
        bytes[start + offset] = UInt8(c >> 8); bytes[start + offset + 1] = UInt8(c & 0xff)
    }

    static func be16(_ b: [UInt8], _ at: Int) -> Int { Int(b[at]) << 8 | Int(b[at + 1]) }

    // MARK: receive

    func testTCPGSOFramesBecomeLRO() {
        let v4 = receive(Self.tcp4Frame(payload: 60_000), header(gso: VX_VNET_GSO_TCPV4))
        XCTAssertEqual(v4.verdict, -1)
        XCTAssertEqual(v4.flags & MbufFlag.rxLRO, MbufFlag.rxLRO)
        XCTAssertEqual(v4.flags & MbufFlag.rxL4ChecksumMask, MbufFlag.rxL4ChecksumNone)
        XCTAssertEqual(v4.segment, 1448)
        let v6 = receive(Self.tcp6Frame(payload: 60_000), header(gso: VX_VNET_GSO_TCPV6, hdrLen: 86, start: 54))
        XCTAssertEqual(v6.verdict, -1)
        XCTAssertEqual(v6.flags & MbufFlag.rxLRO, MbufFlag.rxLRO)
        // A checksum the kernel finished: nothing to do, the frame as it is.
        let valid = receive(Self.tcp4Frame(payload: 100), header(flags: UInt8(VX_VNET_F_DATA_VALID), gso: VX_VNET_GSO_NONE))
        XCTAssertEqual(valid.verdict, -1)
        XCTAssertEqual(valid.flags & MbufFlag.rxL4ChecksumMask, MbufFlag.rxL4ChecksumGood)
    }

    func testTunnelGSOFramesFromTheKernel() {
        for outer6 in [false, true] {
            let frame = Self.vxlan(Self.tcp4Frame(payload: 60_000), outer6: outer6)
            let outerTH: UInt16 = outer6 ? 54 : 34
            let innerNH = outerTH + 8 + 8 + 14
            let h = header(flags: UInt8(VX_VNET_F_NEEDS_CSUM | (outer6 ? VX_VNET_F_UDP_TUNNEL_CSUM : 0)),
                           gso: VX_VNET_GSO_TCPV4 | (outer6 ? VX_VNET_GSO_UDP_TUNNEL_IPV6 : VX_VNET_GSO_UDP_TUNNEL_IPV4),
                           hdrLen: innerNH + 40, start: innerNH + 20, outerTH: outerTH, innerNH: innerNH)
            let r = receive(frame, h, offloads: offloads | underlayMode)
            XCTAssertEqual(r.verdict, -1, "outer IPv6 \(outer6)")
            XCTAssertEqual(r.flags & MbufFlag.rxLRO, MbufFlag.rxLRO)
            XCTAssertEqual(r.flags & MbufFlag.rxOuterL4ChecksumMask, MbufFlag.rxOuterL4ChecksumGood)
            // Without UDP-tunnel GSO negotiated, the kernel cannot send it: a header that says so lies.
            XCTAssertEqual(receive(frame, h, offloads: UInt32(VX_TUN_F_CSUM | VX_TUN_F_TSO4 | VX_TUN_F_TSO6)).verdict,
                           Int32(outer6 ? VX_TAP_RX_BAD_FLAGS.rawValue : VX_TAP_RX_UNSUPPORTED_GSO.rawValue))
        }
    }

    func testOnTheUnderlayThePartialSumSaysWhichChecksumIsUnfinished() {
        let frame = Self.vxlan(Self.tcp4Frame(payload: 500), outer6: false)
        // Only the outer UDP sum partial (the inner one finished): nothing for the pipeline to finish.
        let outer = receive(frame, header(gso: VX_VNET_GSO_NONE, start: 34, offset: 6), offloads: offloads | underlayMode)
        XCTAssertEqual(outer.verdict, -1)
        XCTAssertEqual(outer.flags & MbufFlag.rxOuterL4ChecksumMask, MbufFlag.rxOuterL4ChecksumGood)
        XCTAssertNotEqual(outer.flags & MbufFlag.rxL4ChecksumMask, MbufFlag.rxL4ChecksumNone)
        // The inner TCP sum partial: flagged for the pipeline to finish after decapsulation.
        let inner = receive(frame, header(gso: VX_VNET_GSO_NONE, start: 84, offset: 16), offloads: offloads | underlayMode)
        XCTAssertEqual(inner.verdict, -1)
        XCTAssertEqual(inner.flags & MbufFlag.rxL4ChecksumMask, MbufFlag.rxL4ChecksumNone)
        // No header flags (a frame from a wire the kernel only bridged): nothing is vouched for.
        XCTAssertEqual(receive(frame, header(flags: 0, gso: VX_VNET_GSO_NONE), offloads: offloads | underlayMode).flags, 0)
    }

    func testOnTheUnderlayAPartialSumElsewhereIsFinishedByThePort() {
        // VXLAN in VXLAN (a VM running its own overlay): the kernel's partial sum is the innermost TCP's, which the
        // pipeline does not parse. The port finishes it; the outer UDP stays vouched for.
        let innermost = Self.tcp4Frame(payload: 300)
        let middle = Frames.ethernet(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", type: 0x0800,
                                     payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 17,
                                                          payload: Frames.udp(sport: 40001, dport: 4789, payload: Frames.vxlan(vni: 7, inner: innermost))))
        var frame = Self.vxlan(middle, outer6: false)
        let tcpStart = 50 + 50 + 34
        let pseudo = Frames.ip("192.168.42.1") + Frames.ip("192.168.42.2") + [0, 6] + Frames.be16(frame.count - tcpStart)
        let partial = ~Frames.checksum(pseudo)
        frame[tcpStart + 16] = UInt8(partial >> 8); frame[tcpStart + 17] = UInt8(partial & 0xff)
        let r = receive(frame, header(gso: VX_VNET_GSO_NONE, start: UInt16(tcpStart), offset: 16), offloads: offloads | underlayMode)
        XCTAssertEqual(r.verdict, -2, "finished by the port")
        XCTAssertEqual(r.flags & MbufFlag.rxOuterL4ChecksumMask, MbufFlag.rxOuterL4ChecksumGood)
        XCTAssertNotEqual(r.flags & MbufFlag.rxL4ChecksumMask, MbufFlag.rxL4ChecksumNone)
        XCTAssertEqual(Frames.checksum(pseudo + Array(r.bytes[tcpStart...])), 0)
    }

    func testTCPv6GSOBehindExtensionHeadersIsTaken() {
        // A hop-by-hop header (8 bytes, PadN) between IPv6 and TCP: csum_start points past it.
        let tcp = Self.tcp(payload: 20_000)
        let hopByHop: [UInt8] = [6, 0, 1, 4, 0, 0, 0, 0]
        var ip6 = Frames.ipv6(src: "fd42::1", dst: "fd42::2", next: 0, payload: hopByHop + tcp)
        ip6[6] = 0
        let frame = Frames.ethernet(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", type: 0x86DD, payload: ip6)
        let r = receive(frame, header(gso: VX_VNET_GSO_TCPV6, hdrLen: 14 + 48 + 20, start: 14 + 48))
        XCTAssertEqual(r.verdict, -1)
        XCTAssertEqual(r.flags & MbufFlag.rxLRO, MbufFlag.rxLRO)
        // csum_start inside the extension header is not TCP's.
        XCTAssertEqual(receive(frame, header(gso: VX_VNET_GSO_TCPV6, hdrLen: 14 + 48 + 20, start: 14 + 44)).verdict,
                       Int32(VX_TAP_RX_GSO_TYPE_MISMATCH.rawValue))
        // An IPv4 header length under 20 bytes is not a header.
        var short = Self.tcp4Frame(payload: 20_000)
        short[14] = 0x44
        XCTAssertEqual(receive(short, header(gso: VX_VNET_GSO_TCPV4, start: 30)).verdict, Int32(VX_TAP_RX_GSO_TYPE_MISMATCH.rawValue))
    }

    func testHeadersThatLieAreDroppedByReason() {
        let frame = Self.tcp4Frame(payload: 30_000)
        let udp = Frames.ethernet(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", type: 0x0800,
                                  payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 17,
                                                       payload: Frames.udp(sport: 1, dport: 2, payload: [UInt8](repeating: 1, count: 30_000))))
        let tunnel = Self.vxlan(Self.tcp4Frame(payload: 30_000), outer6: false)
        let cases: [(String, [UInt8], vx_vnet_hdr, vx_tap_stat)] = [
            ("gso_size 0", frame, header(gso: VX_VNET_GSO_TCPV4, gsoSize: 0), VX_TAP_RX_BAD_GSO_SIZE),
            ("hdr_len past the end", frame, header(gso: VX_VNET_GSO_TCPV4, hdrLen: 40_000), VX_TAP_RX_BAD_HDR_LEN),
            ("csum_start past the end", frame, header(gso: VX_VNET_GSO_NONE, start: 60_000), VX_TAP_RX_BAD_CSUM_OFFSETS),
            ("csum_start in the Ethernet header", frame, header(gso: VX_VNET_GSO_NONE, start: 4), VX_TAP_RX_BAD_CSUM_OFFSETS),
            ("csum_offset not TCP's", frame, header(gso: VX_VNET_GSO_TCPV4, offset: 6), VX_TAP_RX_BAD_CSUM_OFFSETS),
            ("GSO without NEEDS_CSUM", frame, header(flags: 0, gso: VX_VNET_GSO_TCPV4), VX_TAP_RX_GSO_WITHOUT_CSUM),
            ("TCPv6 GSO on IPv4", frame, header(gso: VX_VNET_GSO_TCPV6), VX_TAP_RX_GSO_TYPE_MISMATCH),
            ("TSO on UDP", udp, header(gso: VX_VNET_GSO_TCPV4), VX_TAP_RX_GSO_TYPE_MISMATCH),
            ("csum_start not at TCP", frame, header(gso: VX_VNET_GSO_TCPV4, start: 38), VX_TAP_RX_GSO_TYPE_MISMATCH),
            ("UFO", udp, header(gso: VX_VNET_GSO_UDP, offset: 6), VX_TAP_RX_UNSUPPORTED_GSO),
            ("USO", udp, header(gso: VX_VNET_GSO_UDP_L4, offset: 6), VX_TAP_RX_UNSUPPORTED_GSO),
            ("NEEDS_CSUM and DATA_VALID", frame, header(flags: 3, gso: VX_VNET_GSO_NONE), VX_TAP_RX_BAD_FLAGS),
            ("unknown flag", frame, header(flags: 0x40, gso: VX_VNET_GSO_NONE), VX_TAP_RX_BAD_FLAGS),
            ("tunnel of both families", tunnel, header(gso: VX_VNET_GSO_TCPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV6,
                                                        start: 84, outerTH: 34, innerNH: 64), VX_TAP_RX_UNSUPPORTED_GSO),
            ("outer offset elsewhere", tunnel, header(gso: VX_VNET_GSO_TCPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV4, start: 84, outerTH: 30, innerNH: 64),
             VX_TAP_RX_BAD_TUNNEL_OFFSETS),
            ("inner offset inside VXLAN", tunnel, header(gso: VX_VNET_GSO_TCPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV4, start: 84, outerTH: 34, innerNH: 44),
             VX_TAP_RX_BAD_TUNNEL_OFFSETS),
            ("inner offset past the first buffer", tunnel, header(gso: VX_VNET_GSO_TCPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV4, start: 84, outerTH: 34,
                                                                  innerNH: 4000), VX_TAP_RX_BAD_TUNNEL_OFFSETS),
            ("tunnel type on an IPv6 outer", tunnel, header(gso: VX_VNET_GSO_TCPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV6, start: 84, outerTH: 34, innerNH: 64),
             VX_TAP_RX_GSO_TYPE_MISMATCH),
            ("tunnel GSO on a plain frame", frame, header(gso: VX_VNET_GSO_TCPV4 | VX_VNET_GSO_UDP_TUNNEL_IPV4, start: 34, outerTH: 34, innerNH: 64),
             VX_TAP_RX_BAD_TUNNEL_OFFSETS),
            ("runt", [UInt8](frame[0..<10]), header(gso: VX_VNET_GSO_NONE), VX_TAP_RX_RUNT),
        ]
        for (what, bytes, h, reason) in cases {
            XCTAssertEqual(receive(bytes, h, offloads: offloads | underlayMode).verdict, Int32(reason.rawValue), what)
        }
    }

    func testAPartialChecksumElsewhereIsFinishedOnAccessPorts() {
        // A VLAN-tagged TCP frame whose checksum the kernel left partial: the pipeline parses untagged TCP/UDP only,
        // so the port finishes it as skb_checksum_help would.
        let plain = Self.tcp4Frame(payload: 500)
        var tagged = Array(plain[0..<12]) + [0x81, 0x00, 0x00, 0x0A] + Array(plain[12...])
        let l4 = 14 + 4 + 20
        let pseudo = Frames.ip("192.168.42.1") + Frames.ip("192.168.42.2") + [0, 6] + Frames.be16(tagged.count - l4)
        let partial = ~Frames.checksum(pseudo)
        tagged[l4 + 16] = UInt8(partial >> 8); tagged[l4 + 17] = UInt8(partial & 0xff)
        let r = receive(tagged, header(gso: VX_VNET_GSO_NONE, start: UInt16(l4), offset: 16))
        XCTAssertEqual(r.verdict, -2, "finished by the port")
        XCTAssertEqual(r.flags, 0)
        // The TCP checksum is right: pseudo-header plus segment sums to 0xFFFF.
        XCTAssertEqual(Frames.checksum(pseudo + Array(r.bytes[l4...])), 0)
    }

    // MARK: transmit

    func testTSOBecomesAGSOHeaderWithLinuxsPseudoHeaderSum() {
        let bytes = Self.tcp4Frame(payload: 50_000)
        let m = Mbuf.makeChained(bytes, pool: Self.pool, segment: 2048)
        vx_mbuf_set_tx_offload(m, MbufFlag.txTCPSegmentation | MbufFlag.txTCPChecksum | MbufFlag.txIPv4 | MbufFlag.txIPChecksum,
                               0, 0, 14, 20, 20, 1398)
        var h = vx_vnet_hdr()
        XCTAssertEqual(vx_vnet_tx_fill(&h, m, offloads), 0)
        XCTAssertEqual(h.flags, UInt8(VX_VNET_F_NEEDS_CSUM))
        XCTAssertEqual(Int32(h.gso_type), VX_VNET_GSO_TCPV4)
        XCTAssertEqual(h.gso_size, 1398)
        XCTAssertEqual(h.hdr_len, 54)
        XCTAssertEqual(h.csum_start, 34)
        XCTAssertEqual(h.csum_offset, 16)
        let out = Mbuf.bytes(m)
        vx_mbuf_free(m)
        // The kernel's GSO wants the pseudo-header sum with the whole TCP length, not DPDK's TSO one without.
        let pseudo = Frames.ip("192.168.42.1") + Frames.ip("192.168.42.2") + [0, 6] + Frames.be16(bytes.count - 34)
        XCTAssertEqual(UInt16(Self.be16(out, 34 + 16)), ~Frames.checksum(pseudo))
        XCTAssertEqual(Frames.checksum(Array(out[14..<34])), 0, "IPv4 header checksum filled")
    }

    func testTunnelTSOBecomesAUDPTunnelGSOHeader() {
        for outer6 in [false, true] {
            let bytes = Self.vxlan(Self.tcp4Frame(payload: 50_000), outer6: outer6)
            let outerL3 = outer6 ? 40 : 20
            let m = Mbuf.makeChained(bytes, pool: Self.pool, segment: 2048)
            var flags = MbufFlag.txTunnelVXLAN | MbufFlag.txTCPSegmentation | MbufFlag.txIPv4 | MbufFlag.txIPChecksum
            flags |= outer6 ? MbufFlag.txOuterIPv6 | MbufFlag.txOuterUDPChecksum : MbufFlag.txOuterIPv4 | MbufFlag.txOuterIPChecksum
            vx_mbuf_set_tx_offload(m, flags, 14, UInt16(outerL3), 8 + 8 + 14, 20, 20, 1398)
            var h = vx_vnet_hdr()
            XCTAssertEqual(vx_vnet_tx_fill(&h, m, offloads), 0)
            let outerTH = 14 + outerL3, innerNH = outerTH + 30
            XCTAssertEqual(Int32(h.gso_type), VX_VNET_GSO_TCPV4 | (outer6 ? VX_VNET_GSO_UDP_TUNNEL_IPV6 : VX_VNET_GSO_UDP_TUNNEL_IPV4))
            XCTAssertEqual(Int32(h.flags), VX_VNET_F_NEEDS_CSUM | (outer6 ? VX_VNET_F_UDP_TUNNEL_CSUM : 0))
            XCTAssertEqual(Int(h.outer_th_offset), outerTH)
            XCTAssertEqual(Int(h.inner_nh_offset), innerNH)
            XCTAssertEqual(Int(h.csum_start), innerNH + 20)
            XCTAssertEqual(Int(h.hdr_len), innerNH + 40)
            let out = Mbuf.bytes(m)
            vx_mbuf_free(m)
            if outer6 {
                let udpLength = bytes.count - outerTH
                let pseudo = Frames.ip6("fd00::1") + Frames.ip6("fd00::2") + [0, 0] + Frames.be16(udpLength) + [0, 0, 0, 17]
                XCTAssertEqual(UInt16(Self.be16(out, outerTH + 6)), ~Frames.checksum(pseudo), "outer UDP: pseudo-header sum")
            } else {
                XCTAssertEqual(Frames.checksum(Array(out[14..<34])), 0, "outer IPv4 header checksum filled")
                XCTAssertEqual(Self.be16(out, outerTH + 6), 0, "no outer UDP checksum over IPv4")
            }
            // Without UDP-tunnel GSO negotiated the request cannot be expressed: refused, never sent half right.
            let again = Mbuf.makeChained(bytes, pool: Self.pool, segment: 2048)
            vx_mbuf_set_tx_offload(again, flags, 14, UInt16(outerL3), 8 + 8 + 14, 20, 20, 1398)
            XCTAssertEqual(vx_vnet_tx_fill(&h, again, UInt32(VX_TUN_F_CSUM | VX_TUN_F_TSO4 | VX_TUN_F_TSO6)), -1)
            vx_mbuf_free(again)
        }
    }

    func testOneFrameWithTwoChecksumsLeavesTheInnerOneAndFinishesTheOuter() {
        // VXLAN over IPv6, inner TCP checksum left to the kernel, outer UDP checksum asked for: the outer one is
        // computed by local checksum offload, right once the kernel finishes the inner one.
        let bytes = Self.vxlan(Self.tcp4Frame(payload: 1000), outer6: true)
        let m = Mbuf.make(bytes, pool: Self.pool)
        vx_mbuf_set_tx_offload(m, MbufFlag.txTunnelVXLAN | MbufFlag.txOuterIPv6 | MbufFlag.txOuterUDPChecksum | MbufFlag.txTCPChecksum
                                  | MbufFlag.txIPv4, 14, 40, 30, 20, 20, 0)
        var h = vx_vnet_hdr()
        XCTAssertEqual(vx_vnet_tx_fill(&h, m, offloads), 0)
        XCTAssertEqual(Int32(h.gso_type), VX_VNET_GSO_NONE)
        XCTAssertEqual(Int(h.csum_start), 54 + 30 + 20)
        var out = Mbuf.bytes(m)
        vx_mbuf_free(m)
        Self.finish(&out, start: Int(h.csum_start), offset: Int(h.csum_offset))       // what the kernel does
        let innerPseudo = Frames.ip("192.168.42.1") + Frames.ip("192.168.42.2") + [0, 6] + Frames.be16(1020)
        XCTAssertEqual(Frames.checksum(innerPseudo + Array(out[104...])), 0, "inner TCP checksum right")
        let udpLength = out.count - 54
        let outerPseudo = Frames.ip6("fd00::1") + Frames.ip6("fd00::2") + [0, 0] + Frames.be16(udpLength) + [0, 0, 0, 17]
        XCTAssertEqual(Frames.checksum(outerPseudo + Array(out[54...])), 0, "outer UDP checksum right")
    }

    func testRequestsTheKernelCannotTakeAreRefused() {
        let m = Mbuf.make(Self.tcp4Frame(payload: 100), pool: Self.pool)
        vx_mbuf_set_tx_offload(m, MbufFlag.txTCPSegmentation | MbufFlag.txIPv4, 0, 0, 14, 20, 20, 0)   // no segment size
        var h = vx_vnet_hdr()
        XCTAssertEqual(vx_vnet_tx_fill(&h, m, offloads), -1)
        vx_mbuf_set_tx_offload(m, MbufFlag.txTCPChecksum | MbufFlag.txIPv4, 0, 0, 14, 3000, 20, 0)    // L4 past the buffer
        XCTAssertEqual(vx_vnet_tx_fill(&h, m, offloads), -1)
        vx_mbuf_set_tx_offload(m, MbufFlag.txTCPSegmentation | MbufFlag.txIPv4, 0, 0, 14, 20, 200, 536)  // TCP header past it
        XCTAssertEqual(vx_vnet_tx_fill(&h, m, offloads), -1)
        vx_mbuf_clear_tx_offload(m)
        XCTAssertEqual(vx_vnet_tx_fill(&h, m, offloads), 0)
        XCTAssertEqual(h.flags, 0, "no request, no header fields")
        vx_mbuf_free(m)
    }
}
