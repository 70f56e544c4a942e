import CDPDK
import PollMode
import VTEPConfig

/// Access -> underlay: classify each frame (port or VLAN -> endpoint -> VNI), learn its source, look up its
/// destination, then prepend the tunnel's outer headers (IPv4 or IPv6), switch it to another local endpoint of
/// the VNI, or hand it to flooding (Replicate.swift).
extension VXLANProcessor {
    // MARK: - Access -> underlay

    /// Access -> underlay. `endpoint` is the port's endpoint when it is untagged, `PortKind.tagged` otherwise
    /// (each frame's VLAN then picks it).
    @inlinable
    func encapsulate(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, port: Int, endpoint untaggedEndpoint: Int32,
                     now: UInt32, tx: TxStage) {
        // An untagged port's VNI slot is the same for the whole burst: read it once.
        let fixedVNISlot = untaggedEndpoint >= 0 ? Int(view.endpointVNISlot[Int(untaggedEndpoint)]) : -1
        let fixedEntry = view.vniBlock(max(fixedVNISlot, 0))
        // Last-key check (as VPP does): a burst from one VM mostly repeats its source MAC; check it once.
        var lastSource: (UInt64, UInt64, Int32) = (0, 0, -1)
        let portCompletes = completesChecksums[port] != 0
        for i in 0..<n {
            let m = packets[i].unsafelyUnwrapped
            if i &+ 1 < n { vx_mbuf_prefetch_data(packets[i &+ 1].unsafelyUnwrapped) }
            if Int(vx_mbuf_data_len(m)) < VXLANLayout.minimumInnerFrame {
                encapTarget[i] = Self.dropped; drop(m, .runtFrame); continue
            }
            // Which endpoint (and so which VNI): the port's, or its VLAN's, with the tag removed.
            var endpoint = untaggedEndpoint
            let tagged = load16(vx_mbuf_data(m), 12) == VXLANLayout.etherTypeVLAN
            if endpoint >= 0 {
                if tagged { encapTarget[i] = Self.dropped; drop(m, .vlanNotMapped); continue }
            } else {
                let vid = tagged && vx_mbuf_data_len(m) >= 18 ? Int(load16(vx_mbuf_data(m), 14) & 0x0FFF) : 0
                endpoint = vid == 0 ? -1 : view.vlanEndpoint[port &* 4096 &+ vid]
                if endpoint < 0 || vx_vlan_strip(m) != 0 { encapTarget[i] = Self.dropped; drop(m, .vlanNotMapped); continue }
            }
            ingress[i] = endpoint
            let vniSlot = fixedVNISlot >= 0 ? Int32(fixedVNISlot) : view.endpointVNISlot[Int(endpoint)]
            let entry = fixedVNISlot >= 0 ? fixedEntry : view.vniBlock(Int(vniSlot))
            let length = Int(vx_mbuf_pkt_len(m))
            innerLength[i] = Int32(truncatingIfNeeded: length)
            if length < VXLANLayout.minimumInnerFrame { encapTarget[i] = Self.dropped; drop(m, .runtFrame); continue }
            countVNI(vniSlot, .encapPackets)
            countVNI(vniSlot, .encapBytes, UInt64(length))
            // Over the MTU, a sender's unfinished checksum (virtio NEEDS_CSUM / GSO), or a port that never says:
            // Offload.swift takes the frame once its destination is known.
            let flags = vx_mbuf_ol_flags(m)
            work[i] = length > workThreshold || portCompletes || flags & MbufFlag.rxLRO != 0
                || flags & MbufFlag.rxL4ChecksumMask == MbufFlag.rxL4ChecksumNone
                || Int(vx_mbuf_nb_segs(m)) >= Self.maxGatherBuffers ? 1 : 0
            let frame = vx_mbuf_data(m)
            // Pass 2 may write 50 bytes in front of the frame: that line is cold, so ask for it now.
            vx_mbuf_prefetch_headroom_for_write(m)
            let hash = vx_mbuf_has_rss_hash(m) != 0 ? vx_mbuf_rss_hash(m) : innerFlowHash(frame, length: length)
            flowHash[i] = hash
            if entry.learning && slowPath != nil && frame.load(fromByteOffset: FrameLayout.ethSource, as: UInt8.self) & 1 == 0 {
                let (s0, s1) = Self.fdbKey(vni: entry.vni, frame + 6)
                if s0 != lastSource.0 || s1 != lastSource.1 || endpoint != lastSource.2 {
                    checkSource(i, s0, s1, expected: FDBTarget.localBase &+ endpoint, now: now)
                    lastSource = (s0, s1, endpoint)
                }
            }
            if frame.load(as: UInt8.self) & 1 == 1 {
                encapTarget[i] = Self.flood                      // broadcast or multicast
            } else {
                let (d0, d1) = Self.fdbKey(vni: entry.vni, frame)
                lookUpDestination(i, d0, d1, into: encapTarget)
            }
        }
        let unknown = resolveDestinations(into: encapTarget)
        if unknown > 0 { count(.unknownUnicast, UInt64(unknown)) }
        resolveSources(expected: 0, now: now)
        let tracing = self.tracing
        if tracing { traceClassified(packets, count: n, decap: false) }
        for i in 0..<n {
            if tracing { traceStep(i, outcome: encapTarget) }
            let s = encapTarget[i]
            if s == Self.dropped { continue }
            let m = packets[i].unsafelyUnwrapped
            if work[i] != 0 {
                forwardWithOffload(m, target: s, from: ingress[i], flowHash: flowHash[i], portCompletes: portCompletes, tx: tx)
            } else {
                forward(m, target: s, from: ingress[i], innerLength: Int(innerLength[i]), flowHash: flowHash[i], tx: tx)
            }
        }
        if tracing { traceStep(-1, outcome: encapTarget) }
    }

    /// Pass 2's action for one frame: into its tunnel, to another local endpoint of its VNI, or flooded.
    @inlinable @inline(__always)
    func forward(_ m: OpaquePointer, target s: Int32, from: Int32, innerLength: Int, flowHash: UInt32, tx: TxStage) {
        if s == Self.flood {
            flood(m, vniSlot: Int(view.endpointVNISlot[Int(from)]), ingress: from, innerLength: innerLength, flowHash: flowHash, tx: tx)
        } else if s < FDBTarget.localBase {
            push(m, tunnel: Int(s), innerLength: innerLength, flowHash: flowHash, tx: tx)
        } else if s &- FDBTarget.localBase == from {
            drop(m, .samePort, vniSlot: view.endpointVNISlot[Int(from)])
        } else if view.endpointVNISlot[Int(s &- FDBTarget.localBase)] != view.endpointVNISlot[Int(from)] {
            // Never switched into another VNI: a target outside the frame's VNI is no target at all.
            count(.unknownUnicast)
            flood(m, vniSlot: Int(view.endpointVNISlot[Int(from)]), ingress: from, innerLength: innerLength, flowHash: flowHash, tx: tx)
        } else {
            send(m, toEndpoint: s &- FDBTarget.localBase, tx: tx)
            count(.switchedLocally)
        }
    }

    /// Stages a frame on a local endpoint, adding its VLAN tag when it has one.

    /// Prepends the tunnel's template, patches the per-packet fields and stages the packet on the underlay.
    @inlinable @inline(__always)
    func push(_ m: OpaquePointer, tunnel: Int, innerLength: Int, flowHash: UInt32, tx: TxStage) {
        let copy = vx_load_acquire_i32(view.activeCopy + tunnel)
        if copy < 0 { drop(m, .neighborUnresolved); return }
        if view.tunnelIsIPv6[tunnel] != 0 { return push6(m, tunnel: tunnel, copy: Int(copy), innerLength: innerLength, flowHash: flowHash, tx: tx) }
        let sourcePort = vxlanSourcePort(flowHash: flowHash)
        guard let header = vx_mbuf_prepend(m, UInt16(VXLANLayout.outerLength)) else { drop(m, .noHeadroom); return }
        let h = UnsafeMutableRawPointer(header)
        let t = view.templates + (tunnel &* 2 &+ Int(copy)) &* ForwardingTables.templateStride
        // 50 bytes as six 8-byte words and one 2-byte word: no call, no loop.
        h.storeBytes(of: t.load(fromByteOffset: 0, as: UInt64.self), toByteOffset: 0, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 16, as: UInt64.self), toByteOffset: 16, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 24, as: UInt64.self), toByteOffset: 24, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 32, as: UInt64.self), toByteOffset: 32, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 40, as: UInt64.self), toByteOffset: 40, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 48, as: UInt16.self), toByteOffset: 48, as: UInt16.self)
        OuterHeaderTemplate.patch(h, innerLength: innerLength, sourcePort: sourcePort, partialSum: view.partialSums[tunnel])
        tx.push(m, to: view.underlayPort)
        count(.encapsulated)
    }

    /// The same over IPv6: 70 bytes, and a UDP checksum over the whole packet (RFC 8200), unless zero checksums
    /// were configured (`udp6_zero_checksum.tx`).
    @inline(never) @usableFromInline
    func push6(_ m: OpaquePointer, tunnel: Int, copy: Int, innerLength: Int, flowHash: UInt32, tx: TxStage) {
        if innerLength > view.maxInnerFrame6 && vx_mbuf_ol_flags(m) & MbufFlag.txTCPSegmentation == 0 { drop(m, .overMTU); return }
        guard let header = vx_mbuf_prepend(m, UInt16(VXLANLayout.outerLength6)) else { drop(m, .noHeadroom); return }
        let h = UnsafeMutableRawPointer(header)
        h.copyMemory(from: view.templates + (tunnel &* 2 &+ copy) &* ForwardingTables.templateStride, byteCount: VXLANLayout.outerLength6)
        // Zero checksum (udp6_zero_checksum.tx, RFC 6935/6936: the receiver must accept it) or the NIC's sum.
        if view.udp6ZeroChecksumTx || vx_mbuf_ol_flags(m) & MbufFlag.txOuterUDPChecksum != 0 {
            // The NIC sums the datagram (rte_eth_tx_prepare seeds the pseudo-header where the driver needs it).
            OuterHeaderTemplate6.patch(h, innerLength: innerLength, sourcePort: vxlanSourcePort(flowHash: flowHash), flowHash: flowHash,
                                       partialSum: view.partialSums[tunnel], innerSum: 0)
            h.storeBytes(of: 0, toByteOffset: VXLANLayout.udp6ChecksumOffset, as: UInt16.self)
            tx.push(m, to: view.underlayPort)
            count(.encapsulated)
            return
        }
        let innerSum = vx_mbuf_nb_segs(m) == 1
            ? rawChecksum(h + VXLANLayout.outerLength6, length: innerLength)
            : L4Checksum.chainSum(m, from: VXLANLayout.outerLength6, length: innerLength)
        OuterHeaderTemplate6.patch(h, innerLength: innerLength, sourcePort: vxlanSourcePort(flowHash: flowHash), flowHash: flowHash,
                                   partialSum: view.partialSums[tunnel], innerSum: innerSum)
        tx.push(m, to: view.underlayPort)
        count(.encapsulated)
    }

    /// BUM from an access port: a copy to every other local port of the VNI, and by head-end replication one
}
