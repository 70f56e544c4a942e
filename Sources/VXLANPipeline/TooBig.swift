import CDPDK
import PollMode

/// "Fragmentation needed" (ICMP type 3 code 4) or "packet too big" (ICMPv6 type 2) back to the VM for a frame
/// that does not fit the tunnel and cannot be segmented, so that path MTU discovery finds the overlay MTU
/// instead of a black hole. As the Linux bridge + vxlan path does (since 5.9), the message comes from the
/// original destination's addresses, MACs swapped, quoting as much of the packet as RFC 1812 / RFC 4443 allow.
/// Rate-limited per core by a token bucket (`TooBigLimiter`).
extension VXLANProcessor {
    /// Sends the ICMP error for `m` (not consumed) to `endpoint`, if allowed and worth sending.
    @usableFromInline
    func sendTooBig(for m: OpaquePointer, _ h: InnerHeaders, mtu: Int, toEndpoint endpoint: Int32, tx: TxStage) {
        guard let pool = offload.pools?.direct else { return }
        let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
        let l3 = InnerHeaders.l2
        // Never an error about an error, a fragment's tail, or a packet from or to a group, broadcast, loopback,
        // reserved or unspecified address (RFC 1812 4.3.2.7, RFC 4443 2.4), at the link layer either.
        if h.isFragment && !h.ipv6 && load16(f, l3 &+ 6) & 0x1FFF != 0 { return }
        if f.load(fromByteOffset: FrameLayout.ethSource, as: UInt8.self) & 1 != 0 { return }
        if f.load(fromByteOffset: FrameLayout.ethDestination, as: UInt8.self) & 1 != 0 { return }
        // The ICMP type may be in the second buffer when the first ends with the IP header.
        var typeByte: UInt8 = 0
        func icmpType() -> UInt8? {
            withUnsafeMutableBytes(of: &typeByte) { b in
                vx_mbuf_read(m, UInt32(l3 &+ h.l3Length), 1, b.baseAddress!).map { $0.load(as: UInt8.self) }
            }
        }
        if h.ipv6 {
            if h.proto == VXLANLayout.protocolICMPv6 { guard let type = icmpType(), type >= 128 else { return } }
            if f.load(fromByteOffset: l3 &+ 24, as: UInt8.self) == 0xFF { return }
            // RFC 4443 2.4 (e): never to a source that is not one node (unspecified or multicast).
            if f.load(fromByteOffset: l3 &+ 8, as: UInt8.self) == 0xFF { return }
            if load32(f, l3 &+ 8) | load32(f, l3 &+ 12) | load32(f, l3 &+ 16) == 0 && load32(f, l3 &+ 20) <= 1 { return }   // :: and ::1
        } else {
            if h.proto == VXLANLayout.protocolICMP {
                guard let type = icmpType(), type == 0 || type == 8 else { return }
            }
            let destination = load32(f, l3 &+ 16), source = load32(f, l3 &+ 12)
            if destination >> 28 == 0xE || destination == 0xFFFF_FFFF { return }
            if source == 0 || source >> 28 >= 0xE || source >> 24 == 127 { return }
        }
        if !offload.limiter.take() { count(.tooBigRateLimited); return }
        // RFC 1812: the reply at most 576 bytes; RFC 4443: at most the IPv6 minimum MTU, 1280.
        let header = h.ipv6 ? 40 : 20
        let quoted = min(h.ipLength, (h.ipv6 ? 1280 : 576) &- header &- 8)
        let total = l3 &+ header &+ 8 &+ quoted
        guard let r = vx_mbuf_alloc(pool) else { count(.tooBigRateLimited); return }
        guard let p = vx_mbuf_append(r, UInt16(total)) else { vx_mbuf_free(r); count(.tooBigRateLimited); return }
        let o = UnsafeMutableRawPointer(p)
        o.copyMemory(from: f + 6, byteCount: 6)          // back to the sender
        o.advanced(by: 6).copyMemory(from: f, byteCount: 6)
        store16(o, 12, h.ipv6 ? VXLANLayout.etherTypeIPv6 : VXLANLayout.etherTypeIPv4)
        let icmp = l3 &+ header
        // rte_pktmbuf_read copies into our buffer only when the bytes span segments; else it points into the mbuf.
        let quote = o + (icmp &+ 8)
        guard let source = vx_mbuf_read(m, UInt32(l3), UInt32(quoted), quote) else { vx_mbuf_free(r); return }
        if source != UnsafeRawPointer(quote) { quote.copyMemory(from: source, byteCount: quoted) }
        if h.ipv6 {
            store32(o, l3, 0x6000_0000)
            store16(o, l3 &+ 4, UInt16(8 &+ quoted))
            o.storeBytes(of: VXLANLayout.protocolICMPv6, toByteOffset: l3 &+ 6, as: UInt8.self)
            o.storeBytes(of: 64, toByteOffset: l3 &+ 7, as: UInt8.self)
            o.advanced(by: l3 &+ 8).copyMemory(from: f + (l3 &+ 24), byteCount: 16)    // from the original destination
            o.advanced(by: l3 &+ 24).copyMemory(from: f + (l3 &+ 8), byteCount: 16)    // to the original source
            o.storeBytes(of: 2, toByteOffset: icmp, as: UInt8.self)                    // packet too big
            o.storeBytes(of: 0, toByteOffset: icmp &+ 1, as: UInt8.self)
            store16(o, icmp &+ 2, 0)
            store32(o, icmp &+ 4, UInt32(mtu))
            o.storeBytes(of: vx_ipv6_l4_cksum(o + l3, o + icmp), toByteOffset: icmp &+ 2, as: UInt16.self)
        } else {
            store16(o, l3, 0x45C0)                                                      // internetwork control
            store16(o, l3 &+ 2, UInt16(header &+ 8 &+ quoted))
            store32(o, l3 &+ 4, 0)
            o.storeBytes(of: 64, toByteOffset: l3 &+ 8, as: UInt8.self)
            o.storeBytes(of: VXLANLayout.protocolICMP, toByteOffset: l3 &+ 9, as: UInt8.self)
            o.advanced(by: l3 &+ 12).copyMemory(from: f + (l3 &+ 16), byteCount: 4)
            o.advanced(by: l3 &+ 16).copyMemory(from: f + (l3 &+ 12), byteCount: 4)
            vx_ipv4_cksum_fill(o + l3)
            o.storeBytes(of: 3, toByteOffset: icmp, as: UInt8.self)                    // destination unreachable
            o.storeBytes(of: 4, toByteOffset: icmp &+ 1, as: UInt8.self)               // fragmentation needed
            store32(o, icmp &+ 2, 0)
            store16(o, icmp &+ 6, UInt16(mtu))
            o.storeBytes(of: ~rawChecksum(o + icmp, length: 8 &+ quoted), toByteOffset: icmp &+ 2, as: UInt16.self)
        }
        count(.tooBigSent)
        send(r, toEndpoint: endpoint, tx: tx)
    }
}

/// A token bucket on the TSC: `rate` messages per second, bursts of `burst`. One per core, so no atomics.
public final class TooBigLimiter: @unchecked Sendable {
    @usableFromInline var tokens: Double
    @usableFromInline var last: UInt64
    @usableFromInline let perCycle: Double
    @usableFromInline let burst: Double

    public init(rate: Double = 100, burst: Double = 20) {
        self.burst = burst
        tokens = burst
        last = vx_tsc()
        perCycle = rate / Double(max(vx_tsc_hz(), 1))
    }

    @usableFromInline
    func take() -> Bool {
        let now = vx_tsc()
        tokens = min(burst, tokens + Double(now &- last) * perCycle)
        last = now
        if tokens < 1 { return false }
        tokens -= 1
        return true
    }
}
