import CDPDK

/// The inner frame's IP and L4 headers, as the offload stages need them: where they are, how long, and whether
/// the frame's bytes agree with the IP lengths. Parsed only for frames that need offload work (over the MTU,
/// or with a checksum the sender left for the NIC), never on the fast path. The VLAN tag, if any, is already gone.
@usableFromInline
struct InnerHeaders {
    @usableFromInline static let l2 = 14
    @usableFromInline var ipv6: Bool
    /// IPv4 header length (IHL * 4) or 40.
    @usableFromInline var l3Length: Int
    /// 6 (TCP), 17 (UDP), or another protocol number (then `l4Length` is 0).
    @usableFromInline var proto: UInt8
    @usableFromInline var l4Length: Int
    /// IPv4 total length or IPv6 payload length + 40: the frame is `l2 + ipLength` bytes.
    @usableFromInline var ipLength: Int
    @usableFromInline var dontFragment: Bool
    @usableFromInline var isFragment: Bool

    @usableFromInline var isTCP: Bool { proto == 6 && l4Length > 0 }
    @usableFromInline var isUDP: Bool { proto == 17 && l4Length > 0 }
    @usableFromInline var headerLength: Int { Self.l2 &+ l3Length &+ l4Length }

    @usableFromInline enum Result {
        case ip(InnerHeaders)
        /// Not IPv4/IPv6 (ARP, ...): nothing to complete or segment.
        case notIP
        /// IP lengths that overrun the frame (a truncated capture) or headers that are not in the first segment.
        case malformed
    }

    /// Parses `m`, trimming Ethernet padding beyond the IP length.
    @usableFromInline
    static func parse(_ m: OpaquePointer) -> Result {
        let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
        let first = Int(vx_mbuf_data_len(m))
        let total = Int(vx_mbuf_pkt_len(m))
        guard first >= l2 else { return .malformed }
        var h = InnerHeaders(ipv6: false, l3Length: 0, proto: 0, l4Length: 0, ipLength: 0, dontFragment: false, isFragment: false)
        switch load16(f, 12) {
        case VXLANLayout.etherTypeIPv4:
            guard first >= l2 &+ 20 else { return .malformed }
            let vihl = f.load(fromByteOffset: l2, as: UInt8.self)
            h.l3Length = Int(vihl & 0x0F) &* 4
            guard vihl >> 4 == 4, h.l3Length >= 20, first >= l2 &+ h.l3Length else { return .malformed }
            h.ipLength = Int(load16(f, l2 &+ 2))
            let fragment = load16(f, l2 &+ 6)
            h.dontFragment = fragment & 0x4000 != 0
            h.isFragment = fragment & 0x3FFF != 0
            h.proto = f.load(fromByteOffset: l2 &+ 9, as: UInt8.self)
            guard h.ipLength >= h.l3Length else { return .malformed }
        case VXLANLayout.etherTypeIPv6:
            guard first >= l2 &+ 40, f.load(fromByteOffset: l2, as: UInt8.self) >> 4 == 6 else { return .malformed }
            h.ipv6 = true
            h.ipLength = Int(load16(f, l2 &+ 4)) &+ 40
            h.dontFragment = true                                        // IPv6 is never fragmented on the way
            // Extension headers (hop-by-hop, routing, destination options, AH) are part of the L3 header here;
            // a fragment header makes it a fragment.
            var next = f.load(fromByteOffset: l2 &+ 6, as: UInt8.self)
            var offset = 40
            var hops = 0
            while next == 0 || next == 43 || next == 60 || next == 51 || next == 44 {
                guard hops < 8, first >= l2 &+ offset &+ 8 else { return .malformed }
                if next == 44 { h.isFragment = true }
                let length = next == 51 ? (Int(f.load(fromByteOffset: l2 &+ offset &+ 1, as: UInt8.self)) &+ 2) &* 4
                    : next == 44 ? 8 : (Int(f.load(fromByteOffset: l2 &+ offset &+ 1, as: UInt8.self)) &+ 1) &* 8
                next = f.load(fromByteOffset: l2 &+ offset, as: UInt8.self)
                offset &+= length
                hops &+= 1
            }
            h.l3Length = offset
            h.proto = next
            guard h.ipLength >= h.l3Length else { return .malformed }
        default:
            return .notIP
        }
        guard l2 &+ h.ipLength <= total else { return .malformed }
        if l2 &+ h.ipLength < total, vx_mbuf_trim(m, UInt16(truncatingIfNeeded: total &- l2 &- h.ipLength)) != 0 { return .malformed }
        if h.isFragment { h.proto = 0; return .ip(h) }                   // no L4 header to speak of
        let l4 = l2 &+ h.l3Length
        if h.proto == 6 {
            guard first >= l4 &+ 20 else { return .malformed }
            h.l4Length = Int(f.load(fromByteOffset: l4 &+ 12, as: UInt8.self) >> 4) &* 4
            guard h.l4Length >= 20, first >= l4 &+ h.l4Length, h.ipLength >= h.l3Length &+ h.l4Length else { return .malformed }
        } else if h.proto == 17 {
            guard first >= l4 &+ 8, h.ipLength >= h.l3Length &+ 8 else { return .malformed }
            // A UDP length that contradicts the IP length: no checksum is right for it (neither ours nor a NIC's),
            // so the datagram is passed on as it is, as a bridge would.
            if Int(load16(f, l4 &+ 4)) == h.ipLength &- h.l3Length { h.l4Length = 8 }
        }
        return .ip(h)
    }

    /// A TCP segment with SYN or RST (the flags byte is in the first buffer: `parse` checked the TCP header).
    @usableFromInline
    func synOrReset(_ m: OpaquePointer) -> Bool {
        isTCP && UnsafeRawPointer(vx_mbuf_data(m)).load(fromByteOffset: Self.l2 &+ l3Length &+ 13, as: UInt8.self) & 0x06 != 0
    }

    /// Writes the TCP or UDP checksum from scratch (a sender's partial checksum is replaced). False when the
    /// lengths do not allow it; an IPv4 UDP datagram sent without checksum (0) keeps none.
    @usableFromInline
    func completeChecksum(_ m: OpaquePointer) -> Bool {
        guard isTCP || isUDP else { return true }
        let l4 = Self.l2 &+ l3Length
        if isUDP && !ipv6 && load16(UnsafeMutableRawPointer(vx_mbuf_data(m)), l4 &+ 6) == 0 { return true }
        return L4Checksum.fill(m, l3: Self.l2, l4: l4, ipv6: ipv6, udp: isUDP)
    }
}
