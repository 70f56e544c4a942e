import CDPDK

/// TCP/UDP checksums over an mbuf chain, for checksum completion and for every segment the software path cuts.
/// Hand-written over `rawChecksum` (8 bytes a step) because DPDK's rte_raw_cksum_mbuf sums 2 bytes a step as
/// compiled here: on 64 KB frames segmented to 1500 bytes it was 83% of the core's time (perf), and this took
/// the software segmentation path from 7.8 to the Gbit/s in the README's table.
@usableFromInline enum L4Checksum {
    /// Writes the complete TCP (or UDP) checksum of the packet whose IP header starts at `l3` and L4 header at
    /// `l4` (headers in the first buffer; the L4 length comes from the IP header). False, writing nothing, when
    /// the lengths do not fit the mbuf.
    @usableFromInline
    static func fill(_ m: OpaquePointer, l3: Int, l4: Int, ipv6: Bool, udp: Bool) -> Bool {
        let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
        let field = l4 &+ (udp ? 6 : 16)
        guard field &+ 2 <= Int(vx_mbuf_data_len(m)), l4 > l3 else { return false }
        let length: Int
        var sum: UInt32
        if ipv6 {
            length = Int(load16(f, l3 &+ 4)) &- (l4 &- l3 &- 40)
            sum = UInt32(rawChecksum(f + (l3 &+ 8), length: 32))
        } else {
            length = Int(load16(f, l3 &+ 2)) &- (l4 &- l3)
            sum = UInt32(rawChecksum(f + (l3 &+ 12), length: 8))
        }
        guard length >= (udp ? 8 : 20), l4 &+ length <= Int(vx_mbuf_pkt_len(m)) else { return false }
        // The rest of the pseudo-header in the same native word order as rawChecksum's sums.
        sum &+= UInt32(UInt16(udp ? 17 : 6) << 8) &+ UInt32(UInt16(truncatingIfNeeded: length).byteSwapped)
        if length > 0xFFFF { sum &+= UInt32(UInt16(truncatingIfNeeded: length >> 16).byteSwapped) }
        f.storeBytes(of: 0, toByteOffset: field, as: UInt16.self)
        sum &+= UInt32(chainSum(m, from: l4, length: length))
        var c = ~foldChecksum(sum)
        if c == 0 && udp { c = 0xFFFF }
        f.storeBytes(of: c, toByteOffset: field, as: UInt16.self)
        return true
    }

    /// The folded native-order sum of `length` bytes from `offset` across the chain. A buffer that starts at an
    /// odd position of the summed range pairs its bytes the other way round: its sum is byte-swapped (RFC 1071).
    @usableFromInline
    static func chainSum(_ m: OpaquePointer, from offset: Int, length: Int) -> UInt16 {
        var buffer: OpaquePointer? = m
        var skip = offset, left = length, position = 0
        var total: UInt32 = 0
        while let s = buffer, left > 0 {
            let size = Int(vx_mbuf_data_len(s))
            if skip >= size { skip &-= size; buffer = vx_mbuf_next(s); continue }
            let n = min(size &- skip, left)
            let part = rawChecksum(UnsafeRawPointer(vx_mbuf_data(s)) + skip, length: n)
            total &+= UInt32(position & 1 == 0 ? part : part.byteSwapped)
            position &+= n; left &-= n; skip = 0
            buffer = vx_mbuf_next(s)
        }
        return foldChecksum(total)
    }
}
