import CDPDK
import PollMode

/// What a polling core needs for offload work: the underlay's TX plan, buffers for segmentation and ICMP,
/// which access ports hand over frames whose checksums may be unfinished, and the ICMP rate limiter.
public struct OffloadSettings: @unchecked Sendable {
    public struct Pools: @unchecked Sendable {
        /// Header mbufs of segments, ICMP errors, flood copies.
        public let direct: OpaquePointer
        /// Mbufs without data room that point into a segmented frame (rte_gso's indirect mbufs).
        public let indirect: OpaquePointer
        public init(direct: OpaquePointer, indirect: OpaquePointer) { self.direct = direct; self.indirect = indirect }
    }

    public var plan: TunnelTxPlan
    /// Without pools, frames over the MTU are dropped (`over_mtu`) as they were before segmentation existed.
    public var pools: Pools?
    /// Local port indexes whose frames may carry partial checksums without saying so (kernel-attached
    /// `net_af_packet` ports: the kernel's checksum offload leaves the TCP/UDP sum unfinished and there is no
    /// virtio-net header to tell). Every TCP/UDP frame from them has its checksum computed.
    public var completeChecksumPorts: Set<Int>
    public var limiter: TooBigLimiter
    /// The underlay's driver reports receive checksum status in `ol_flags` (its RX checksum offloads are enabled):
    /// GOOD skips the software check of the outer IPv4 header and UDP checksum, BAD drops (`RxChecksums`).
    public var underlayRxChecksums: Bool
    /// The underlay says per frame, in its RX flags, what a virtio-net header said (a tap port): the inner checksum
    /// left unfinished (`L4_CKSUM_NONE`), a GSO frame (`RX_LRO`). Read per decapsulated frame only when set.
    public var underlayAnnouncesOffloads: Bool

    public init(plan: TunnelTxPlan = .software, pools: Pools? = nil, completeChecksumPorts: Set<Int> = [],
                limiter: TooBigLimiter = TooBigLimiter(), underlayRxChecksums: Bool = false, underlayAnnouncesOffloads: Bool = false) {
        self.plan = plan; self.pools = pools; self.completeChecksumPorts = completeChecksumPorts; self.limiter = limiter
        self.underlayRxChecksums = underlayRxChecksums; self.underlayAnnouncesOffloads = underlayAnnouncesOffloads
    }
}

/// Access frames that need more than a header prepended: over the tunnel's MTU (TCP is segmented, anything else
/// answered with ICMP "too big"), or carrying a checksum the sender left to the NIC (completed). Marked in pass 1
/// of `encapsulate`; handled here once the destination is known, so the MTU is the right tunnel's and the work
/// goes to the NIC when the underlay can do it (`TunnelTxPlan`): DPDK's tunnel TSO / checksum metadata, with
/// `rte_eth_tx_prepare` run by the TX stage. Everything else is done in software (Segment.swift).
extension VXLANProcessor {
    @inline(never) @usableFromInline
    func forwardWithOffload(_ m: OpaquePointer, target: Int32, from: Int32, flowHash: UInt32, portCompletes: Bool, tx: TxStage) {
        var m = m
        // A chain of many small buffers is more than a NIC gathers one frame from (and may split the headers):
        // copied into full buffers first. Ports deliver full buffers, so this is for hostile or odd drivers only.
        let buffers = Int(vx_mbuf_nb_segs(m))
        if buffers >= Self.maxGatherBuffers && Int(vx_mbuf_pkt_len(m)) / buffers < 1024, let pool = offload.pools?.direct {
            guard let copy = vx_mbuf_copy_range(m, pool, 0, vx_mbuf_pkt_len(m)) else { drop(m, .copyFailed); return }
            vx_mbuf_free(m)
            m = copy
        }
        // Resolve the destination as `forward` would, once for all the segments.
        var target = target
        if target >= FDBTarget.localBase {
            if target &- FDBTarget.localBase == from { drop(m, .samePort); return }
            if view.endpointVNISlot[Int(target &- FDBTarget.localBase)] != view.endpointVNISlot[Int(from)] {
                count(.unknownUnicast); target = Self.flood
            }
        }
        let tunnel = target >= 0 && target < FDBTarget.localBase ? Int(target) : -1
        let tunnelIPv6 = tunnel >= 0 && view.tunnelIsIPv6[tunnel] != 0
        // The largest inner frame the destination takes; for floods and local ports the smaller of the two families'.
        let limit = tunnel >= 0 ? (tunnelIPv6 ? view.maxInnerFrame6 : view.maxInnerFrame) : workThreshold
        let length = Int(vx_mbuf_pkt_len(m))
        let flags = vx_mbuf_ol_flags(m)
        let unfinished = portCompletes || flags & MbufFlag.rxLRO != 0 || flags & MbufFlag.rxL4ChecksumMask == MbufFlag.rxL4ChecksumNone
        // Marked only for its size (dual-stack: over the IPv6 limit) but it fits this tunnel: nothing to do.
        if !unfinished && length <= limit { return forward(m, target: target, from: from, innerLength: length, flowHash: flowHash, tx: tx) }

        // Over IPv6 the outer UDP checksum covers the inner bytes: the NIC may fill inner fields only if it also
        // computes that checksum afterwards.
        // With zero UDP checksums over IPv6 (udp6_zero_checksum.tx) there is no outer sum to keep right.
        let headers: InnerHeaders
        switch InnerHeaders.parse(m) {
        case .ip(let h): headers = h
        case .notIP:
            if length > limit { drop(m, .overMTU); return }
            return forward(m, target: target, from: from, innerLength: length, flowHash: flowHash, tx: tx)
        case .malformed:
            drop(m, .innerMalformed); return
        }
        // IPv6 extension headers stay with software: NICs differ in what they parse behind them.
        let hardwareInner = tunnel >= 0 && offload.plan.innerChecksums
            && (!tunnelIPv6 || offload.plan.outerUDPChecksum || view.udp6ZeroChecksumTx)
            && (!headers.ipv6 || headers.l3Length == 40)
        let hardwareTSO = hardwareInner && offload.plan.tunnelTSO
        let frameLength = Int(vx_mbuf_pkt_len(m))                 // padding trimmed
        let lro = vx_mbuf_ol_flags(m) & MbufFlag.rxLRO != 0 ? Int(vx_mbuf_tso_segsz(m)) : 0
        // A GSO frame is cut at its sender's segment size even when it would fit one packet.
        let senderCut = lro > 0 && headers.isTCP && headers.ipLength &- headers.l3Length &- headers.l4Length > lro
        if frameLength <= limit && !senderCut {
            if hardwareInner && (headers.isTCP || headers.isUDP) {
                setTunnelMetadata(m, headers, tunnelIPv6: tunnelIPv6, mss: 0)
                count(.hardwareChecksum)
            } else {
                vx_mbuf_clear_tx_offload(m)
                if !headers.completeChecksum(m) { drop(m, .innerMalformed); return }
                if headers.isTCP || headers.isUDP { count(.checksumsCompleted) }
            }
            return forward(m, target: target, from: from, innerLength: frameLength, flowHash: flowHash, tx: tx)
        }
        // A SYN or RST is never cut in several: each piece would carry the flag (Linux never hands one to GSO).
        guard headers.isTCP && !headers.synOrReset(m) else {
            // IPv4 without DF may be fragmented (the inner packet, never the outer: RFC 7348); with DF, or IPv6,
            // the sender is told the MTU it can use, as Linux's bridge + vxlan path does.
            if !headers.ipv6 && !headers.dontFragment {
                // The fragments carry the datagram's checksum as it is: one the sender may have left unfinished (a
                // kernel-attached port, or flagged so) is completed first.
                if unfinished {
                    vx_mbuf_clear_tx_offload(m)
                    if !headers.completeChecksum(m) { drop(m, .innerMalformed); return }
                    if headers.isTCP || headers.isUDP { count(.checksumsCompleted) }
                }
                return fragment(m, mtu: limit &- InnerHeaders.l2, target: target, from: from, flowHash: flowHash, tx: tx)
            }
            sendTooBig(for: m, headers, mtu: limit &- InnerHeaders.l2, toEndpoint: from, tx: tx)
            drop(m, .overMTU); return
        }
        var mss = limit &- headers.headerLength
        if lro > 0 { mss = min(mss, lro) }
        // A sender's segment size is its own business, up to a point: no frame becomes more than `maxSegments`
        // packets, on the NIC or here (a VM asking for 64 KB in 8-byte segments gets its frame dropped).
        let payload = headers.ipLength &- headers.l3Length &- headers.l4Length
        if mss < 8 || (payload &+ mss &- 1) / mss > Self.maxSegments { drop(m, .segmentationFailed); return }
        let outer = tunnelIPv6 ? VXLANLayout.outerLength6 : VXLANLayout.outerLength
        if hardwareTSO && mss >= Self.minimumHardwareMSS && frameLength &+ outer &- VXLANLayout.ethernetLength <= 65535
            && tsoGatherFits(m, headerLength: headers.headerLength, mss: mss), let head = splitHeaders(m, headers) {
            setTunnelMetadata(head, headers, tunnelIPv6: tunnelIPv6, mss: mss)
            count(.hardwareTSO)
            return forward(head, target: target, from: from, innerLength: frameLength, flowHash: flowHash, tx: tx)
        }
        let n = segmentTCP(m, headers, mss: mss)
        if n <= 0 { return }
        let hardwareChecksum = hardwareInner
        for i in 0..<n {
            let s = segmentScratch[i].unsafelyUnwrapped
            if !headers.ipv6 { vx_ipv4_cksum_fill(UnsafeMutableRawPointer(vx_mbuf_data(s)) + InnerHeaders.l2) }
            if hardwareChecksum {
                setTunnelMetadata(s, headers, tunnelIPv6: tunnelIPv6, mss: 0)
            } else if !L4Checksum.fill(s, l3: InnerHeaders.l2, l4: InnerHeaders.l2 &+ headers.l3Length, ipv6: headers.ipv6, udp: false) {
                drop(s, .innerMalformed); continue
            }
            forward(s, target: target, from: from, innerLength: Int(vx_mbuf_pkt_len(s)), flowHash: flowHash, tx: tx)
        }
        if !hardwareChecksum { count(.checksumsCompleted, UInt64(n)) } else { count(.hardwareChecksum, UInt64(n)) }
    }

    /// IPv4 fragments of the inner packet (DPDK's rte_ipv4_fragment_packet), each encapsulated like any frame.
    @usableFromInline
    func fragment(_ m: OpaquePointer, mtu: Int, target: Int32, from: Int32, flowHash: UInt32, tx: TxStage) {
        guard let pools = offload.pools, vx_mbuf_ol_flags(m) & MbufFlag.indirectOrExternal == 0 else { drop(m, .overMTU); return }
        var ethernet: (UInt64, UInt32, UInt16) = (0, 0, 0)
        withUnsafeMutableBytes(of: &ethernet) { $0.baseAddress!.copyMemory(from: vx_mbuf_data(m), byteCount: InnerHeaders.l2) }
        _ = vx_mbuf_adj(m, UInt16(InnerHeaders.l2))                  // the library takes the IP packet alone
        let n = Int(rte_ipv4_fragment_packet(m, segmentScratch, UInt16(Self.maxSegments), UInt16(mtu), pools.direct, pools.indirect))
        vx_mbuf_free(m)
        if n <= 0 { counters[PipelineCounterLayout.slot(DropReason.segmentationFailed)] &+= 1; return }
        count(.framesFragmented)
        count(.fragmentsOut, UInt64(n))
        for i in 0..<n {
            let f = segmentScratch[i].unsafelyUnwrapped
            guard let header = vx_mbuf_prepend(f, UInt16(InnerHeaders.l2)) else { drop(f, .noHeadroom); continue }
            withUnsafeBytes(of: &ethernet) { UnsafeMutableRawPointer(header).copyMemory(from: $0.baseAddress!, byteCount: InnerHeaders.l2) }
            vx_ipv4_cksum_fill(UnsafeMutableRawPointer(header) + InnerHeaders.l2)   // the library leaves it 0
            forward(f, target: target, from: from, innerLength: Int(vx_mbuf_pkt_len(f)), flowHash: flowHash, tx: tx)
        }
    }

    /// The smallest TSO segment size handed to a NIC: drivers refuse smaller ones in tx_prepare (ice: 64, i40e: 256),
    /// and a guest may announce any gso_size. Below it the software path segments.
    @usableFromInline static let minimumHardwareMSS = 256
    /// Buffers a NIC gathers one frame from (for TSO: one segment, its header buffer included); more is a
    /// malicious-driver event on Intel NICs, which ice's tx_prepare in 22.11 does not check.
    @usableFromInline static let maxGatherBuffers = 8

    /// Whether every TSO segment of `m` gathers from at most `maxGatherBuffers` buffers once its headers
    /// (`headerLength` bytes of the first buffer) have a buffer of their own. A chain of tiny buffers does not.
    @usableFromInline
    func tsoGatherFits(_ m: OpaquePointer, headerLength: Int, mss: Int) -> Bool {
        if Int(vx_mbuf_nb_segs(m)) < Self.maxGatherBuffers { return true }
        var buffer: OpaquePointer? = m
        var skip = headerLength, position = 0
        var window = -1, buffers = 0
        while let s = buffer {
            let size = Int(vx_mbuf_data_len(s)) &- skip
            skip = 0
            buffer = vx_mbuf_next(s)
            if size <= 0 { continue }
            let first = position / mss, last = (position &+ size &- 1) / mss
            if first == window { buffers &+= 1 } else { buffers = 1 }
            if buffers &+ 1 > Self.maxGatherBuffers { return false }
            if last != first { window = last; buffers = 1 } else { window = first }
            position &+= size
        }
        return true
    }

    /// For the NIC's TSO the headers go in a buffer of their own, the payload chained behind: drivers bound the
    /// first segment (ice in DPDK 22.11 refuses one longer than MTU + 26 bytes even for TSO), and a 60 KB af_packet
    /// buffer or a 2 KB vhost one would exceed it. Nil (nothing changed) when no buffer is free.
    @usableFromInline
    func splitHeaders(_ m: OpaquePointer, _ h: InnerHeaders) -> OpaquePointer? {
        let length = h.headerLength
        if Int(vx_mbuf_data_len(m)) == length { return m }
        guard let pool = offload.pools?.direct, let head = vx_mbuf_alloc(pool) else { return nil }
        guard let p = vx_mbuf_append(head, UInt16(length)) else { vx_mbuf_free(head); return nil }
        UnsafeMutableRawPointer(p).copyMemory(from: vx_mbuf_data(m), byteCount: length)
        _ = vx_mbuf_adj(m, UInt16(length))
        if vx_mbuf_chain(head, m) != 0 {
            // Too many segments to chain: put the headers back and let software segment it.
            _ = vx_mbuf_prepend(m, UInt16(length))
            vx_mbuf_free(head)
            return nil
        }
        return head
    }

    /// DPDK's VXLAN TX contract: TUNNEL_VXLAN with OUTER_IPV4/6, inner IPV4/6, the inner L4 request (TCP_SEG,
    /// which implies TCP_CKSUM, or TCP/UDP_CKSUM); `l2_len` = outer UDP + VXLAN + inner Ethernet. Outer IPv4
    /// checksum by the NIC only for TSO (each segment's outer header differs; otherwise the template's is right);
    /// outer UDP checksum over IPv6 by the NIC when it can (`push6` then skips its software sum).
    @usableFromInline
    func setTunnelMetadata(_ m: OpaquePointer, _ h: InnerHeaders, tunnelIPv6: Bool, mss: Int) {
        var flags = MbufFlag.txTunnelVXLAN
        if tunnelIPv6 {
            flags |= MbufFlag.txOuterIPv6
            if offload.plan.outerUDPChecksum && !view.udp6ZeroChecksumTx { flags |= MbufFlag.txOuterUDPChecksum }
        } else {
            flags |= MbufFlag.txOuterIPv4
            if mss > 0 { flags |= MbufFlag.txOuterIPChecksum }
        }
        flags |= h.ipv6 ? MbufFlag.txIPv6 : MbufFlag.txIPv4
        if mss > 0 {
            flags |= MbufFlag.txTCPSegmentation
            if !h.ipv6 { flags |= MbufFlag.txIPChecksum }          // every segment's inner IPv4 header differs
        } else {
            flags |= h.isTCP ? MbufFlag.txTCPChecksum : MbufFlag.txUDPChecksum
        }
        let outerL3 = tunnelIPv6 ? 40 : 20
        vx_mbuf_set_tx_offload(m, flags, UInt16(VXLANLayout.ethernetLength), UInt16(outerL3),
                               UInt16(VXLANLayout.udpLength &+ VXLANLayout.vxlanLength &+ InnerHeaders.l2),
                               UInt16(h.l3Length), UInt16(h.l4Length), UInt16(mss))
    }
}

/// The receive side: decapsulated frames from a kernel-attached underlay (the remote kernel left inner checksums
/// unfinished, or sent a 64 KB GSO frame through a veth or bridge) are completed, and cut to the overlay MTU for
/// VMs on ports that cannot take large frames, before delivery.
extension VXLANProcessor {
    @inline(never) @usableFromInline
    func deliverWithOffload(_ m: OpaquePointer, vniSlot s: Int32, target: Int32, tx: TxStage) {
        let headers: InnerHeaders
        switch InnerHeaders.parse(m) {
        case .ip(let h): headers = h
        case .notIP:
            if Int(vx_mbuf_pkt_len(m)) > workThreshold { count(.oversizeDelivered) }
            return deliverDecapsulated(m, vniSlot: s, target: target, tx: tx)
        case .malformed: drop(m, .innerMalformed); return
        }
        // The sender's segment size, where the underlay's header gave it (a tap's GSO frame); the other RX flags
        // spoke of the outer frame and say nothing here.
        let senderMSS = vx_mbuf_ol_flags(m) & MbufFlag.rxLRO != 0 ? Int(vx_mbuf_tso_segsz(m)) : 0
        vx_mbuf_set_ol_flags(m, vx_mbuf_ol_flags(m) & MbufFlag.indirectOrExternal)
        let length = Int(vx_mbuf_pkt_len(m))
        // A GSO frame is cut at its sender's segment size even when it would fit one frame: its receiver may
        // have asked for no more.
        let senderCut = senderMSS > 0 && headers.isTCP && headers.ipLength &- headers.l3Length &- headers.l4Length > senderMSS
        // Frames up to the larger family's limit go as they are (a dual-stack VTEP's IPv4 remotes send up to it);
        // what is cut is cut to the smaller, which every VM of a dual-stack overlay has as its MTU.
        if (length <= view.maxInnerFrame && !senderCut) || !headers.isTCP {
            if !headers.completeChecksum(m) { drop(m, .innerMalformed); return }
            if headers.isTCP || headers.isUDP { count(.checksumsCompleted) }
            if length > view.maxInnerFrame { count(.oversizeDelivered) }
            // A VM that takes large frames gets these merged too (Coalesce.swift), as from any other underlay.
            let port = length <= view.maxInnerFrame ? largeFramePort(vniSlot: s, target: target) : -1
            if port >= 0 { stageForCoalescing(m, port: port); return }
            return deliverDecapsulated(m, vniSlot: s, target: target, tx: tx)
        }
        var mss = workThreshold &- headers.headerLength
        if senderMSS > 0 && senderMSS < mss { mss = senderMSS }      // never larger than the connection's own
        if mss < 8 { drop(m, .segmentationFailed); return }          // as on encapsulation
        let port = largeFramePort(vniSlot: s, target: target)
        if port >= 0 {
            // The VM takes it whole: segmentation metadata, the TCP checksum left partial (virtio NEEDS_CSUM).
            let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
            let l3 = InnerHeaders.l2, l4 = l3 &+ headers.l3Length
            let length = headers.ipLength &- headers.l3Length
            let pseudo = UInt32(rawChecksum(f + (headers.ipv6 ? l3 &+ 8 : l3 &+ 12), length: headers.ipv6 ? 32 : 8))
                &+ UInt32(UInt16(6) << 8) &+ UInt32(UInt16(truncatingIfNeeded: length).byteSwapped)
            f.storeBytes(of: foldChecksum(pseudo), toByteOffset: l4 &+ 16, as: UInt16.self)
            let family = headers.ipv6 ? MbufFlag.txIPv6 : MbufFlag.txIPv4 | MbufFlag.txIPChecksum
            vx_mbuf_set_tx_offload(m, MbufFlag.txTCPSegmentation | MbufFlag.txTCPChecksum | family, 0, 0, UInt16(l3),
                                   UInt16(headers.l3Length), UInt16(headers.l4Length), UInt16(mss))
            count(.largeFramesDelivered)
            if coalesceCount > 0 { flushCoalesced(tx: tx) }      // what came before it goes before it
            tx.push(m, to: port)
            count(.decapsulated)
            return
        }
        let n = segmentTCP(m, headers, mss: mss)
        if n <= 0 { return }
        for i in 0..<n {
            let seg = segmentScratch[i].unsafelyUnwrapped
            if !headers.ipv6 { vx_ipv4_cksum_fill(UnsafeMutableRawPointer(vx_mbuf_data(seg)) + InnerHeaders.l2) }
            if !L4Checksum.fill(seg, l3: InnerHeaders.l2, l4: InnerHeaders.l2 &+ headers.l3Length, ipv6: headers.ipv6, udp: false) {
                drop(seg, .innerMalformed); continue
            }
            deliverDecapsulated(seg, vniSlot: s, target: target, tx: tx)
        }
        count(.checksumsCompleted, UInt64(n))
    }
}
