import CDPDK
import PollMode

/// Software TCP segmentation of an inner frame larger than the tunnel allows: each output is a complete frame
/// (inner headers copied, lengths, IP id, sequence number and flags per segment) carrying at most `mss` bytes
/// of payload. The pipeline then encapsulates each one like any other frame, so one path serves IPv4 and IPv6
/// underlays, flooding and local switching alike. Checksums are left to the caller (Offload.swift).
///
/// TCP/IPv4 uses DPDK's rte_gso (header mbuf + indirect mbufs into the original: no payload copy). Written here,
/// as a header mbuf + a copy of the payload window: TCP/IPv6, which DPDK 22.11's rte_gso does not segment, and
/// frames in indirect or external buffers (a vhost-user port with external buffers, clones), because rte_gso
/// copies the input's `ol_flags`, INDIRECT and EXTERNAL included, into the header mbufs it allocates.
extension VXLANProcessor {
    /// Most segments one frame may become: a 64 KiB frame at the smallest MSS a guest's TCP uses (Linux's
    /// tcp_min_snd_mss, 48: a peer may announce that little, and the guest's TSO frames are cut to it).
    @usableFromInline static let maxSegments = 65535 / 48 + 1

    /// Segments `m` into `segmentScratch`; consumes `m` in every case. Returns the number of segments, or -1
    /// after counting the drop.
    @usableFromInline
    func segmentTCP(_ m: OpaquePointer, _ h: InnerHeaders, mss: Int) -> Int {
        guard let pools = offload.pools else { drop(m, .overMTU); return -1 }
        let n: Int
        // rte_gso's segments point into the input's buffers, one per buffer a segment touches: from a chain of tiny
        // buffers that is more than a NIC gathers one frame from (Offload.swift, maxGatherBuffers), so copy. A first
        // buffer holding the headers alone gives the first segment an empty buffer (a NIC's zero-length descriptor).
        if h.ipv6 || vx_mbuf_ol_flags(m) & MbufFlag.indirectOrExternal != 0
            || Int(vx_mbuf_data_len(m)) == h.headerLength
            || !tsoGatherFits(m, headerLength: h.headerLength, mss: mss) {
            n = segmentByCopy(m, h, mss: mss, pool: pools.direct)
        } else {
            vx_mbuf_set_tx_offload(m, MbufFlag.txTCPSegmentation | MbufFlag.txIPv4, 0, 0,
                                   UInt16(InnerHeaders.l2), UInt16(h.l3Length), UInt16(h.l4Length), UInt16(mss))
            let rc = Int(vx_gso_segment(m, pools.direct, pools.indirect, vx_tx_offload_tcp_tso(),
                                        UInt16(h.headerLength &+ mss), segmentScratch, UInt16(Self.maxSegments)))
            if rc == 0 {
                // rte_gso found nothing to cut (the frame already fits): pass it on whole.
                vx_mbuf_clear_tx_offload(m)
                segmentScratch[0] = m
                return 1
            }
            n = rc
        }
        if n <= 0 { drop(m, .segmentationFailed); return -1 }
        vx_mbuf_free(m)                       // the segments hold their own references to its data
        let l4 = InnerHeaders.l2 &+ h.l3Length
        for i in 0..<n {
            let s = segmentScratch[i].unsafelyUnwrapped
            vx_mbuf_set_ol_flags(s, 0)               // fresh direct mbufs: nothing of the input's flags applies
            let f = UnsafeMutableRawPointer(vx_mbuf_data(s))
            // RFC 3168: CWR only on the first segment (as Linux's and NICs' TSO do); rte_gso leaves it.
            if i > 0 { f.storeBytes(of: f.load(fromByteOffset: l4 &+ 13, as: UInt8.self) & ~0x80, toByteOffset: l4 &+ 13, as: UInt8.self) }
        }
        count(.framesSegmented)
        count(.segmentsOut, UInt64(n))
        return n
    }

    /// A header mbuf with the frame's headers, then a copy of the payload window chained to it.
    @usableFromInline
    func segmentByCopy(_ m: OpaquePointer, _ h: InnerHeaders, mss: Int, pool: OpaquePointer) -> Int {
        let headers = h.headerLength
        let payload = h.ipLength &- h.l3Length &- h.l4Length
        let n = (payload &+ mss &- 1) / mss
        guard n > 0, n <= Self.maxSegments else { return -1 }
        let source = UnsafeMutableRawPointer(vx_mbuf_data(m))
        let l4 = InnerHeaders.l2 &+ h.l3Length
        let sequence = load32(source, l4 &+ 4)
        let flags = source.load(fromByteOffset: l4 &+ 13, as: UInt8.self)
        for i in 0..<n {
            let offset = i &* mss
            let size = min(mss, payload &- offset)
            guard let head = vx_mbuf_alloc(pool) else { freeVNISlots(i); return -1 }
            guard let p = vx_mbuf_append(head, UInt16(headers)) else { vx_mbuf_free(head); freeVNISlots(i); return -1 }
            segmentScratch[i] = head
            let f = UnsafeMutableRawPointer(p)
            f.copyMemory(from: source, byteCount: headers)
            guard let body = vx_mbuf_copy_range(m, pool, UInt32(headers &+ offset), UInt32(size)) else {
                freeVNISlots(i &+ 1); return -1
            }
            if vx_mbuf_chain(head, body) != 0 { vx_mbuf_free(body); freeVNISlots(i &+ 1); return -1 }
            if h.ipv6 {
                // Payload length covers any extension headers as well.
                store16(f, InnerHeaders.l2 &+ 4, UInt16(h.l3Length &- 40 &+ h.l4Length &+ size))
            } else {
                store16(f, InnerHeaders.l2 &+ 2, UInt16(h.l3Length &+ h.l4Length &+ size))
                store16(f, InnerHeaders.l2 &+ 4, load16(source, InnerHeaders.l2 &+ 4) &+ UInt16(truncatingIfNeeded: i))
            }
            store32(f, l4 &+ 4, sequence &+ UInt32(truncatingIfNeeded: offset))
            // FIN and PSH only on the last segment, CWR only on the first.
            var segmentFlags = flags
            if i &+ 1 < n { segmentFlags &= ~0x09 }
            f.storeBytes(of: segmentFlags, toByteOffset: l4 &+ 13, as: UInt8.self)
        }
        return n
    }

    @usableFromInline
    func freeVNISlots(_ n: Int) {
        for i in 0..<n { vx_mbuf_free(segmentScratch[i].unsafelyUnwrapped) }
    }
}
