import CDPDK
import Foundation
import PollMode

/// A NIC for tests (`TxStage.setModel`): no device here advertises VXLAN offloads, so this one stands in. It
/// checks each mbuf's TX metadata as the driver and the hardware would, then performs the offloads in software
/// and records the frames the wire would carry. It parses and builds the bytes itself (no rte_net, rte_gso or
/// pipeline code), so that a mistake in the pipeline is not repeated here.
///
/// - Driver checks are those of Intel ice in DPDK 22.11 (`ice_prep_pkts`, `rte_validate_tx_offload`,
///   `rte_net_intel_cksum_prepare`) for every profile; the profile only decides which offloads exist.
/// - IPv4 ids: TSO segment i carries the superframe's id + i (mod 2^16) in its inner and in its outer IPv4
///   header, as Linux GSO does.
/// - A packet with a violation is freed and sends nothing. Wire frames carry no Ethernet padding or FCS.
public final class NICModel: TransmitModel {
    public enum Profile: String, CaseIterable, Sendable {
        /// Intel E810 (ice): every offload the pipeline can use, tunnel TSO included.
        case e810
        /// Inner and outer checksums, no TSO.
        case checksumOnly
        /// A NIC that knows no tunnels (ixgbe 82599, igb): TCP/UDP/IPv4 checksums and plain TSO, nothing outer.
        case plainChecksum
        /// Chained mbufs only.
        case none

        public var capabilities: TxOffloads {
            switch self {
            case .e810: TxOffloads.all
            case .checksumOnly: [.ipv4Checksum, .tcpChecksum, .udpChecksum, .outerIPv4Checksum, .outerUDPChecksum, .multiSegments]
            case .plainChecksum: [.ipv4Checksum, .tcpChecksum, .udpChecksum, .tcpTSO, .multiSegments]
            case .none: .multiSegments
            }
        }
    }

    // ice (DPDK 22.11 drivers/net/ice/ice_rxtx.c, ice_ethdev.h).
    public static let minTSOSegment = 64            // ICE_MIN_TSO_MSS
    public static let maxTSOSegment = 9728          // ICE_MAX_TSO_MSS
    public static let maxTSOFrame = 262_144         // ICE_MAX_TSO_FRAME_SIZE
    public static let minPacket = 17                // ICE_TX_MIN_PKT_LEN
    public static let ethernetOverhead = 26         // ICE_ETH_OVERHEAD: MTU to max frame (2 VLAN tags, CRC)
    /// The hardware builds a frame (for TSO: one segment, headers included) from at most 8 buffers; ice in
    /// 22.11 does not check it in tx_prepare, later releases and the Linux driver do (more is a malicious-driver event).
    public static let maxBuffersPerFrame = 8
    public static let vxlanPort = 4789

    public let profile: Profile
    public let capabilities: TxOffloads
    /// IP MTU of the wire.
    public let mtu: Int

    private let lock = NSLock()
    private var _violations: [String] = []
    private var _wire: [[UInt8]] = []
    private var _packetsIn = 0
    private var _framesOut = 0
    private var _packetsRejected = 0

    /// - Parameter capabilities: what the model advertises and accepts, when not the profile's own (a NIC without
    ///   one of its offloads).
    public init(profile: Profile, capabilities: TxOffloads? = nil, mtu: Int = 1500) {
        self.profile = profile
        self.capabilities = capabilities ?? profile.capabilities
        self.mtu = mtu
    }

    /// Every violation found so far, one readable line each ("packet 3 [TCP_SEG ...]: ...").
    public var violations: [String] { locked { _violations } }
    /// The frames sent so far, in order.
    public var wire: [[UInt8]] { locked { _wire } }
    /// Packets handed to `transmit`.
    public var packetsIn: Int { locked { _packetsIn } }
    /// Frames put on the wire (TSO makes several of one packet).
    public var framesOut: Int { locked { _framesOut } }
    /// Packets freed unsent because of at least one violation.
    public var packetsRejected: Int { locked { _packetsRejected } }

    /// Returns the frames sent so far and forgets them.
    public func takeWire() -> [[UInt8]] {
        locked { defer { _wire = [] }; return _wire }
    }

    /// Forgets frames, violations and counters.
    public func reset() {
        locked { _violations = []; _wire = []; _packetsIn = 0; _framesOut = 0; _packetsRejected = 0 }
    }

    /// Takes every packet, as a TX ring with room would: what the NIC refuses is freed and recorded here rather
    /// than left to the caller (so the TX stage counts it as sent).
    public func transmit(_ packets: UnsafeMutablePointer<OpaquePointer?>, count: Int) -> Int {
        guard count > 0 else { return 0 }
        lock.lock(); defer { lock.unlock() }
        for i in 0..<count {
            _packetsIn += 1
            guard let m = packets[i] else {
                reject(["packet \(_packetsIn): nil mbuf"])
                continue
            }
            let prefix = "packet \(_packetsIn) [\(Self.describe(vx_mbuf_ol_flags(m)))]"
            let (frames, problems) = process(m)
            vx_mbuf_free(m)
            if problems.isEmpty {
                _wire.append(contentsOf: frames)
                _framesOut += frames.count
            } else {
                reject(problems.map { "\(prefix): \($0)" })
            }
        }
        return count
    }

    private func reject(_ lines: [String]) {
        _violations.append(contentsOf: lines)
        _packetsRejected += 1
    }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock(); defer { lock.unlock() }
        return body()
    }

    // MARK: Flags

    private enum F {
        static let outerUDPCksum = MbufFlag.txOuterUDPChecksum
        static let udpSeg: UInt64 = vx_dpdk_flag(16)   // RTE_MBUF_F_TX_UDP_SEG
        static let secOffload: UInt64 = vx_dpdk_flag(17)
        static let macsec: UInt64 = vx_dpdk_flag(18)
        static let tunnelMask = MbufFlag.txTunnelMask
        static let vxlan = MbufFlag.txTunnelVXLAN
        static let qinq: UInt64 = vx_dpdk_flag(21)
        static let tso = MbufFlag.txTCPSegmentation
        static let ieee1588 = MbufFlag.txIEEE1588
        static let l4Mask = MbufFlag.txL4Mask
        static let tcpCksum = MbufFlag.txTCPChecksum
        static let sctpCksum: UInt64 = 2 << 52
        static let udpCksum = MbufFlag.txUDPChecksum
        static let ipCksum = MbufFlag.txIPChecksum
        static let ipv4 = MbufFlag.txIPv4
        static let ipv6 = MbufFlag.txIPv6
        static let vlan = MbufFlag.txVLAN
        static let outerIPCksum = MbufFlag.txOuterIPChecksum
        static let outerIPv4 = MbufFlag.txOuterIPv4
        static let outerIPv6 = MbufFlag.txOuterIPv6
        // RTE_MBUF_F_TX_OFFLOAD_MASK: bits outside it are RX flags and mean nothing to TX.
        static let offloadMask: UInt64 = outerIPv6 | outerIPv4 | outerIPCksum | vlan | ipv6 | ipv4 | ipCksum | l4Mask | ieee1588
            | tso | qinq | tunnelMask | macsec | secOffload | udpSeg | outerUDPCksum
    }

    /// The TX flags of `flags` by their DPDK names, for violation messages.
    public static func describe(_ flags: UInt64) -> String {
        let f = flags & F.offloadMask
        var names: [String] = []
        let tunnel = f & F.tunnelMask
        if tunnel == F.vxlan { names.append("TUNNEL_VXLAN") } else if tunnel != 0 { names.append("TUNNEL_\(tunnel >> 45)") }
        let single: [(UInt64, String)] = [
            (F.tso, "TCP_SEG"), (F.outerIPv4, "OUTER_IPV4"), (F.outerIPv6, "OUTER_IPV6"), (F.outerIPCksum, "OUTER_IP_CKSUM"),
            (F.outerUDPCksum, "OUTER_UDP_CKSUM"), (F.ipv4, "IPV4"), (F.ipv6, "IPV6"), (F.ipCksum, "IP_CKSUM"),
            (F.vlan, "VLAN"), (F.qinq, "QINQ"), (F.ieee1588, "IEEE1588_TMST"), (F.macsec, "MACSEC"),
            (F.secOffload, "SEC_OFFLOAD"), (F.udpSeg, "UDP_SEG"),
        ]
        names += single.filter { f & $0.0 != 0 }.map(\.1)
        switch f & F.l4Mask {
        case F.tcpCksum: names.append("TCP_CKSUM")
        case F.sctpCksum: names.append("SCTP_CKSUM")
        case F.udpCksum: names.append("UDP_CKSUM")
        default: break
        }
        return names.isEmpty ? "no offloads" : names.joined(separator: " ")
    }

    // MARK: Checks

    /// Where the headers are, as parsed from the bytes.
    private struct Layout {
        var tunnel = false
        var outerL3Off = 0, outerIsV6 = false, udpOff = 0
        var innerL3Off = 0, innerIsV6 = false, innerL3Len = 0
        var l4Off = 0, l4Len = 0
        /// Where the inner IP packet ends by its length field.
        var innerIPEnd = 0
    }

    /// The packet's frames on the wire, or why it may not be sent.
    private func process(_ m: OpaquePointer) -> ([[UInt8]], [String]) {
        var problems: [String] = []
        let nbSegs = Int(vx_mbuf_nb_segs(m))
        let pktLen = Int(vx_mbuf_pkt_len(m))
        // Copy the chain, trusting neither nb_segs nor pkt_len to bound the walk.
        var bytes: [UInt8] = []
        var segmentEnds: [Int] = []
        var seg: OpaquePointer? = m
        while let s = seg, segmentEnds.count < max(nbSegs, 1), segmentEnds.count < 4096 {
            let len = Int(vx_mbuf_data_len(s))
            if len > 0 { bytes.append(contentsOf: UnsafeRawBufferPointer(start: vx_mbuf_data(s), count: len)) }
            segmentEnds.append(bytes.count)
            seg = vx_mbuf_next(s)
        }
        if seg != nil || segmentEnds.count != nbSegs {
            problems.append("nb_segs \(nbSegs) but the chain has \(seg == nil ? "\(segmentEnds.count)" : "more") segments")
        }
        if bytes.count != pktLen { problems.append("pkt_len \(pktLen) but the segments hold \(bytes.count) bytes") }
        if !problems.isEmpty { return ([], problems) }

        let flags = vx_mbuf_ol_flags(m)
        let meta = Meta(flags: flags & F.offloadMask, outerL2: Int(vx_mbuf_outer_l2_len(m)), outerL3: Int(vx_mbuf_outer_l3_len(m)),
                        l2: Int(vx_mbuf_l2_len(m)), l3: Int(vx_mbuf_l3_len(m)), l4: Int(vx_mbuf_l4_len(m)),
                        segsz: Int(vx_mbuf_tso_segsz(m)), segmentEnds: segmentEnds)
        problems += checkFlags(meta)
        let (layout, parseProblems) = parse(bytes, meta)
        problems += parseProblems
        guard problems.isEmpty, let layout else { return ([], problems) }
        return (perform(bytes, layout, meta), [])
    }

    private struct Meta {
        let flags: UInt64
        let outerL2, outerL3, l2, l3, l4, segsz: Int
        let segmentEnds: [Int]
        var tso: Bool { flags & F.tso != 0 }
        var tunnel: Bool { flags & F.tunnelMask == F.vxlan }
        var l4Request: UInt64 { flags & F.l4Mask }
        var innerRequest: Bool { flags & (F.ipCksum | F.tso | F.l4Mask) != 0 }
        var firstLength: Int { segmentEnds.first ?? 0 }
    }

    /// What the flags and lengths say on their own, before looking at the bytes.
    private func checkFlags(_ m: Meta) -> [String] {
        var p: [String] = []
        let f = m.flags
        let unmodelled: [(UInt64, String)] = [(F.vlan, "VLAN"), (F.qinq, "QINQ"), (F.ieee1588, "IEEE1588_TMST"), (F.macsec, "MACSEC"),
                                               (F.secOffload, "SEC_OFFLOAD"), (F.udpSeg, "UDP_SEG")]
        for (bit, name) in unmodelled where f & bit != 0 { p.append("\(name) is not modelled") }
        if m.l4Request == F.sctpCksum { p.append("SCTP_CKSUM is not modelled") }
        if f & F.tunnelMask != 0 && !m.tunnel { p.append("tunnel type \((f & F.tunnelMask) >> 45) is not VXLAN") }

        // Capabilities of the profile.
        func need(_ o: TxOffloads, _ what: String) {
            if !capabilities.contains(o) { p.append("\(what) needs \(o), which the \(profile) profile lacks") }
        }
        if f & F.ipCksum != 0 { need(.ipv4Checksum, "IP_CKSUM") }
        if m.l4Request == F.tcpCksum { need(.tcpChecksum, "TCP_CKSUM") }
        if m.l4Request == F.udpCksum { need(.udpChecksum, "UDP_CKSUM") }
        if m.tso { m.tunnel ? need(.vxlanTunnelTSO, "TCP_SEG with TUNNEL_VXLAN") : need(.tcpTSO, "TCP_SEG") }
        if f & F.outerIPCksum != 0 { need(.outerIPv4Checksum, "OUTER_IP_CKSUM") }
        if f & F.outerUDPCksum != 0 { need(.outerUDPChecksum, "OUTER_UDP_CKSUM") }
        if m.tunnel && capabilities.isDisjoint(with: [.outerIPv4Checksum, .outerUDPChecksum, .vxlanTunnelTSO]) {
            p.append("TUNNEL_VXLAN on a port without tunnel offloads (\(profile) profile)")
        }
        if m.segmentEnds.count > 1 { need(.multiSegments, "a chain of \(m.segmentEnds.count) segments") }

        // rte_validate_tx_offload.
        if f & F.ipCksum != 0 && f & F.ipv6 != 0 { p.append("IP_CKSUM with IPV6") }
        if (m.l4Request != 0 || m.tso) && f & (F.ipv4 | F.ipv6) == 0 { p.append("L4 offload without IPV4 or IPV6") }
        if m.tso && m.segsz == 0 { p.append("TCP_SEG with tso_segsz 0") }
        if m.tso && f & F.ipv4 != 0 && f & F.ipCksum == 0 { p.append("TCP_SEG over IPv4 without IP_CKSUM") }
        if f & F.outerIPCksum != 0 && f & F.outerIPv4 == 0 { p.append("OUTER_IP_CKSUM without OUTER_IPV4") }
        if f & F.ipv4 != 0 && f & F.ipv6 != 0 { p.append("both IPV4 and IPV6") }
        if f & F.outerIPv4 != 0 && f & F.outerIPv6 != 0 { p.append("both OUTER_IPV4 and OUTER_IPV6") }

        // Tunnel flags: the driver builds the tunnel context only for a tunnel type, and rte_net shifts the inner
        // offsets by the outer lengths only when OUTER_IPV4/6 is set.
        if m.tunnel && !m.innerRequest { p.append("TUNNEL_VXLAN without an inner offload request (IP_CKSUM, L4 checksum or TCP_SEG)") }
        if m.tunnel && f & (F.outerIPv4 | F.outerIPv6) == 0 { p.append("TUNNEL_VXLAN without OUTER_IPV4 or OUTER_IPV6") }
        if !m.tunnel && f & (F.outerIPv4 | F.outerIPv6 | F.outerIPCksum | F.outerUDPCksum) != 0 {
            p.append("outer flags without TUNNEL_VXLAN")
        }
        // Every segment's outer IPv4 header differs, so its checksum must be the NIC's.
        if m.tunnel && m.tso && f & F.outerIPv4 != 0 && f & F.outerIPCksum == 0 {
            p.append("TCP_SEG over an outer IPv4 header without OUTER_IP_CKSUM")
        }

        // ice_prep_pkts (22.11 checks the first segment's data_len against the max frame even for TSO).
        if m.tso && (m.segsz < Self.minTSOSegment || m.segsz > Self.maxTSOSegment) {
            p.append("tso_segsz \(m.segsz) outside \(Self.minTSOSegment)...\(Self.maxTSOSegment)")
        }
        let total = m.segmentEnds.last ?? 0
        if m.tso && total > Self.maxTSOFrame { p.append("TSO frame of \(total) bytes over \(Self.maxTSOFrame)") }
        let maxFrame = mtu + Self.ethernetOverhead
        if m.firstLength < Self.minPacket || m.firstLength > maxFrame {
            p.append("first segment data_len \(m.firstLength) outside \(Self.minPacket)...\(maxFrame) (MTU \(mtu) + \(Self.ethernetOverhead))")
        }
        var start = 0
        for (i, end) in m.segmentEnds.enumerated() {
            if end == start { p.append("segment \(i) is empty") }
            start = end
        }
        if !m.tso && m.segmentEnds.count > Self.maxBuffersPerFrame {
            p.append("\(m.segmentEnds.count) segments without TCP_SEG (at most \(Self.maxBuffersPerFrame))")
        }
        return p
    }

    private struct ParseFailure: Error { let why: String }

    /// Finds the headers in the bytes and compares them with the metadata; nil layout when the bytes do not parse.
    private func parse(_ b: [UInt8], _ m: Meta) -> (Layout?, [String]) {
        var p: [String] = []
        do {
            let layout = try parse(b, m, into: &p)
            return (layout, p)
        } catch let e as ParseFailure {
            return (nil, p + [e.why])
        } catch {
            return (nil, p + ["\(error)"])
        }
    }

    private func parse(_ b: [UInt8], _ m: Meta, into p: inout [String]) throws -> Layout {
        let f = m.flags
        var L = Layout()
        guard let eth = Self.ethernet(b, at: 0) else { throw ParseFailure(why: "\(b.count) bytes: no Ethernet header") }
        let parseInner = m.innerRequest || f & (F.ipv4 | F.ipv6) != 0
        var innerType = eth.type
        if m.tunnel {
            L.tunnel = true
            if m.outerL2 != eth.length { p.append("outer_l2_len \(m.outerL2) but the outer Ethernet header is \(eth.length)") }
            let o = eth.length
            L.outerL3Off = o
            let outerL3Len: Int
            switch eth.type {
            case 0x0800:
                let ihl = try Self.ipv4Header(b, at: o, "outer")
                if f & F.outerIPv4 == 0 { p.append("outer header is IPv4 but OUTER_IPV4 is not set") }
                if m.outerL3 != ihl { p.append("outer_l3_len \(m.outerL3) but the outer IPv4 header is \(ihl)") }
                guard b[o + 9] == 17 else { throw ParseFailure(why: "outer IPv4 protocol \(b[o + 9]) is not UDP") }
                if !m.tso && Self.be16(b, o + 2) != b.count - o {
                    p.append("outer IPv4 total length \(Self.be16(b, o + 2)) but \(b.count - o) bytes follow the Ethernet header")
                }
                outerL3Len = ihl
            case 0x86DD:
                try Self.ipv6Header(b, at: o, "outer")
                L.outerIsV6 = true
                if f & F.outerIPv6 == 0 { p.append("outer header is IPv6 but OUTER_IPV6 is not set") }
                if m.outerL3 != 40 { p.append("outer_l3_len \(m.outerL3) but the outer IPv6 header is 40") }
                guard b[o + 6] == 17 else {
                    throw ParseFailure(why: "outer IPv6 next header \(b[o + 6]) is not UDP (extension headers are not modelled)")
                }
                if !m.tso && 40 + Self.be16(b, o + 4) != b.count - o {
                    p.append("outer IPv6 payload length \(Self.be16(b, o + 4)) but \(b.count - o - 40) bytes follow its header")
                }
                outerL3Len = 40
            default:
                throw ParseFailure(why: "outer EtherType 0x\(String(eth.type, radix: 16)) is neither IPv4 nor IPv6")
            }
            let u = o + outerL3Len
            L.udpOff = u
            guard b.count >= u + 16 else { throw ParseFailure(why: "\(b.count) bytes end before the VXLAN header does") }
            guard Self.be16(b, u + 2) == Self.vxlanPort else {
                throw ParseFailure(why: "TUNNEL_VXLAN but UDP destination port \(Self.be16(b, u + 2)) is not \(Self.vxlanPort)")
            }
            if !m.tso && Self.be16(b, u + 4) != b.count - u {
                p.append("outer UDP length \(Self.be16(b, u + 4)) but the datagram has \(b.count - u) bytes")
            }
            if b[u + 8] & 0x08 == 0 { p.append("VXLAN header without the I flag") }
            guard let inner = Self.ethernet(b, at: u + 16) else { throw ParseFailure(why: "inner Ethernet header truncated") }
            let l2 = 16 + inner.length
            if m.l2 != l2 { p.append("l2_len \(m.l2) but outer UDP + VXLAN + inner Ethernet is \(l2)") }
            innerType = inner.type
            L.innerL3Off = u + l2
        } else {
            L.innerL3Off = eth.length
            if m.innerRequest && m.l2 != eth.length { p.append("l2_len \(m.l2) but the Ethernet header is \(eth.length)") }
        }

        if parseInner {
            let o = L.innerL3Off
            let proto: UInt8
            switch innerType {
            case 0x0800:
                L.innerL3Len = try Self.ipv4Header(b, at: o, "inner")
                if f & F.ipv4 == 0 { p.append("inner header is IPv4 but IPV4 is not set") }
                proto = b[o + 9]
                L.innerIPEnd = o + Self.be16(b, o + 2)
                if m.l4Request != 0 || m.tso, Self.be16(b, o + 6) & 0x3FFF != 0 { p.append("inner IPv4 packet is a fragment") }
            case 0x86DD:
                try Self.ipv6Header(b, at: o, "inner")
                L.innerIsV6 = true
                L.innerL3Len = 40
                if f & F.ipv6 == 0 { p.append("inner header is IPv6 but IPV6 is not set") }
                proto = b[o + 6]
                L.innerIPEnd = o + 40 + Self.be16(b, o + 4)
            default:
                throw ParseFailure(why: "inner EtherType 0x\(String(innerType, radix: 16)) is neither IPv4 nor IPv6")
            }
            if m.innerRequest && m.l3 != L.innerL3Len { p.append("l3_len \(m.l3) but the inner IP header is \(L.innerL3Len)") }
            L.l4Off = o + L.innerL3Len
            var headerEnd = L.l4Off
            if m.tso || m.l4Request == F.tcpCksum {
                guard proto == 6 else { throw ParseFailure(why: "TCP offload but the inner protocol is \(proto)") }
                guard b.count >= L.l4Off + 20 else { throw ParseFailure(why: "inner TCP header truncated") }
                let doff = Int(b[L.l4Off + 12] >> 4) * 4
                guard doff >= 20, b.count >= L.l4Off + doff else { throw ParseFailure(why: "inner TCP data offset \(doff) is wrong") }
                // l4_len is needed for TSO only; given, it must be right.
                if m.tso ? m.l4 != doff : (m.l4 != 0 && m.l4 != doff) { p.append("l4_len \(m.l4) but the TCP header is \(doff)") }
                L.l4Len = doff
            } else if m.l4Request == F.udpCksum {
                guard proto == 17 else { throw ParseFailure(why: "UDP_CKSUM but the inner protocol is \(proto)") }
                guard b.count >= L.l4Off + 8 else { throw ParseFailure(why: "inner UDP header truncated") }
                if m.l4 != 0 && m.l4 != 8 { p.append("l4_len \(m.l4) but the UDP header is 8") }
                if Self.be16(b, L.l4Off + 4) != L.innerIPEnd - L.l4Off {
                    p.append("inner UDP length \(Self.be16(b, L.l4Off + 4)) but the IP payload is \(L.innerIPEnd - L.l4Off)")
                }
                L.l4Len = 8
            }
            headerEnd += L.l4Len
            if !m.tso && (L.innerIPEnd > b.count || L.innerIPEnd < headerEnd) {
                p.append("inner IP length ends the packet at \(L.innerIPEnd) but it has \(b.count) bytes")
            }
            // rte_net_intel_cksum_prepare refuses headers split across segments (ENOTSUP).
            if m.innerRequest && m.firstLength < headerEnd {
                p.append("headers end at \(headerEnd) but the first segment holds \(m.firstLength) bytes")
            }
            if m.tso {
                let payload = b.count - headerEnd
                let largest = headerEnd - eth.length + min(m.segsz, payload)
                if payload <= 0 { p.append("TCP_SEG without TCP payload") }
                if m.segsz > 0 && largest > mtu {
                    p.append("TSO segments of \(largest) IP bytes (headers \(headerEnd - eth.length) + \(m.segsz)) exceed the MTU \(mtu)")
                }
                if m.segsz > 0 && payload > 0 {
                    var lo = headerEnd
                    while lo < b.count {
                        let hi = min(lo + m.segsz, b.count)
                        let n = Self.buffers(m.segmentEnds, touching: [0..<headerEnd, lo..<hi])
                        if n > Self.maxBuffersPerFrame {
                            p.append("TSO segment at byte \(lo) gathers from \(n) buffers (at most \(Self.maxBuffersPerFrame))")
                            break
                        }
                        lo = hi
                    }
                }
            }
        }
        if !m.tso && b.count - eth.length > mtu {
            p.append("\(b.count - eth.length) IP bytes exceed the MTU \(mtu) without TCP_SEG")
        }
        return L
    }

    /// The Ethernet header at `off`: its length (with up to two VLAN tags) and the EtherType after them.
    private static func ethernet(_ b: [UInt8], at off: Int) -> (length: Int, type: Int)? {
        var len = 14
        guard b.count >= off + len else { return nil }
        var type = be16(b, off + 12)
        while type == 0x8100 || type == 0x88A8, len < 22 {
            guard b.count >= off + len + 4 else { return nil }
            type = be16(b, off + len + 2)
            len += 4
        }
        return (len, type)
    }

    /// Checks an IPv4 header is there; returns its length.
    private static func ipv4Header(_ b: [UInt8], at o: Int, _ which: String) throws -> Int {
        guard b.count >= o + 20, b[o] >> 4 == 4 else { throw ParseFailure(why: "\(which) IPv4 header truncated or not version 4") }
        let ihl = Int(b[o] & 0x0F) * 4
        guard ihl >= 20, b.count >= o + ihl else { throw ParseFailure(why: "\(which) IPv4 header length \(ihl) is wrong") }
        return ihl
    }

    private static func ipv6Header(_ b: [UInt8], at o: Int, _ which: String) throws {
        guard b.count >= o + 40, b[o] >> 4 == 6 else { throw ParseFailure(why: "\(which) IPv6 header truncated or not version 6") }
    }

    /// How many of the segments (ending at `ends`) hold bytes of any of `ranges`.
    private static func buffers(_ ends: [Int], touching ranges: [Range<Int>]) -> Int {
        var start = 0, n = 0
        for end in ends {
            if ranges.contains(where: { $0.overlaps(start..<end) }) { n += 1 }
            start = end
        }
        return n
    }

    // MARK: Offloads

    private func perform(_ b: [UInt8], _ L: Layout, _ m: Meta) -> [[UInt8]] {
        let f = m.flags
        if m.tso { return segment(b, L, m) }
        var out = b
        if f & F.ipCksum != 0 { Self.fillIPv4Checksum(&out, at: L.innerL3Off) }
        if m.l4Request == F.tcpCksum {
            Self.fillL4Checksum(&out, ip: L.innerL3Off, v6: L.innerIsV6, l4: L.l4Off, length: L.innerIPEnd - L.l4Off, proto: 6)
        } else if m.l4Request == F.udpCksum {
            Self.fillL4Checksum(&out, ip: L.innerL3Off, v6: L.innerIsV6, l4: L.l4Off, length: L.innerIPEnd - L.l4Off, proto: 17)
        }
        finishOuter(&out, L, f)
        return [out]
    }

    /// TSO: the headers repeated in front of every tso_segsz bytes of TCP payload, lengths, ids, sequence
    /// numbers and flags adjusted, checksums filled.
    private func segment(_ b: [UInt8], _ L: Layout, _ m: Meta) -> [[UInt8]] {
        let headerEnd = L.l4Off + L.l4Len
        let header = Array(b[0..<headerEnd])
        let count = (b.count - headerEnd + m.segsz - 1) / m.segsz
        let outerID = L.tunnel && !L.outerIsV6 ? Self.be16(b, L.outerL3Off + 4) : 0
        let innerID = L.innerIsV6 ? 0 : Self.be16(b, L.innerL3Off + 4)
        let seq = UInt32(Self.be16(b, L.l4Off + 4)) << 16 | UInt32(Self.be16(b, L.l4Off + 6))
        let tcpFlags = b[L.l4Off + 13]
        var frames: [[UInt8]] = []
        for i in 0..<count {
            let lo = headerEnd + i * m.segsz
            var s = header
            s.append(contentsOf: b[lo..<min(lo + m.segsz, b.count)])
            if L.tunnel {
                let o = L.outerL3Off
                if L.outerIsV6 {
                    Self.put16(&s, o + 4, s.count - o - 40)
                } else {
                    Self.put16(&s, o + 2, s.count - o)
                    Self.put16(&s, o + 4, (outerID + i) & 0xFFFF)
                }
                Self.put16(&s, L.udpOff + 4, s.count - L.udpOff)
            }
            let o = L.innerL3Off
            if L.innerIsV6 {
                Self.put16(&s, o + 4, s.count - o - 40)
            } else {
                Self.put16(&s, o + 2, s.count - o)
                Self.put16(&s, o + 4, (innerID + i) & 0xFFFF)
                Self.fillIPv4Checksum(&s, at: o)
            }
            let n = seq &+ UInt32(truncatingIfNeeded: i * m.segsz)
            Self.put16(&s, L.l4Off + 4, Int(n >> 16))
            Self.put16(&s, L.l4Off + 6, Int(n & 0xFFFF))
            var flags = tcpFlags
            if i != count - 1 { flags &= ~(0x01 | 0x08) }     // FIN, PSH: last segment only
            if i != 0 { flags &= ~0x80 }                       // CWR: first segment only
            s[L.l4Off + 13] = flags
            Self.fillL4Checksum(&s, ip: o, v6: L.innerIsV6, l4: L.l4Off, length: s.count - L.l4Off, proto: 6)
            finishOuter(&s, L, m.flags)
            frames.append(s)
        }
        return frames
    }

    /// Outer checksums, after the inner ones (the outer UDP checksum covers them). Without OUTER_UDP_CKSUM the
    /// outer UDP checksum stays as the packet had it.
    private func finishOuter(_ s: inout [UInt8], _ L: Layout, _ f: UInt64) {
        guard L.tunnel else { return }
        if f & F.outerIPCksum != 0 { Self.fillIPv4Checksum(&s, at: L.outerL3Off) }
        if f & F.outerUDPCksum != 0 {
            Self.fillL4Checksum(&s, ip: L.outerL3Off, v6: L.outerIsV6, l4: L.udpOff, length: s.count - L.udpOff, proto: 17)
        }
    }

    private static func fillIPv4Checksum(_ s: inout [UInt8], at o: Int) {
        let ihl = Int(s[o] & 0x0F) * 4
        put16(&s, o + 10, 0)
        put16(&s, o + 10, Int(finish(sum(s, o..<(o + ihl)))))
    }

    /// TCP or UDP checksum over the pseudo-header and `length` bytes at `l4`, whatever the field held.
    private static func fillL4Checksum(_ s: inout [UInt8], ip: Int, v6: Bool, l4: Int, length: Int, proto: UInt8) {
        let field = l4 + (proto == 6 ? 16 : 6)
        put16(&s, field, 0)
        var acc: UInt64 = v6 ? sum(s, (ip + 8)..<(ip + 40)) : sum(s, (ip + 12)..<(ip + 20))
        acc += UInt64(length >> 16) + UInt64(length & 0xFFFF) + UInt64(proto)
        var c = finish(sum(s, l4..<(l4 + length), acc))
        if proto == 17 && c == 0 { c = 0xFFFF }     // 0 means "no checksum" in UDP
        put16(&s, field, Int(c))
    }

    /// Ones'-complement sum of big-endian 16-bit words (RFC 1071), unfolded.
    private static func sum(_ b: [UInt8], _ r: Range<Int>, _ initial: UInt64 = 0) -> UInt64 {
        b.withUnsafeBufferPointer { p in
            var s = initial
            var i = r.lowerBound
            while i + 1 < r.upperBound {
                s += UInt64(p[i]) << 8 | UInt64(p[i + 1])
                i += 2
            }
            if i < r.upperBound { s += UInt64(p[i]) << 8 }
            return s
        }
    }

    private static func finish(_ s: UInt64) -> UInt16 {
        var s = s
        while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
        return ~UInt16(s)
    }

    private static func be16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }

    private static func put16(_ b: inout [UInt8], _ i: Int, _ v: Int) {
        b[i] = UInt8(truncatingIfNeeded: v >> 8)
        b[i + 1] = UInt8(truncatingIfNeeded: v)
    }
}
