import CDPDK
import PollMode
import VTEPConfig

/// Underlay -> access: validated VXLAN (ValidateOuter.swift) is mapped to its VNI slot by VNI, checked against
/// `allowed_remotes`, its inner source learned behind the outer source, its outer headers stripped, and it goes
/// to the destination's local endpoint or to all of the VNI's (never back into the underlay: split horizon).
/// What is not VXLAN for us is punted to the slow path (ARP, ICMP, ND) or dropped under its reason.
extension VXLANProcessor {
    // MARK: - Underlay -> access

    @inlinable
    func decapsulate(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, now: UInt32, tx: TxStage) {
        // Last-key checks: consecutive packets mostly share the VNI and the inner source.
        var lastVNI: UInt64 = .max, lastVNISlot: Int32 = -1
        var lastSource: (UInt64, UInt64, UInt64, UInt64, UInt8) = (0, 0, 0, 0, 0)
        for i in 0..<n {
            let m = packets[i].unsafelyUnwrapped
            if i &+ 1 < n { vx_mbuf_prefetch_data(packets[i &+ 1].unsafelyUnwrapped) }
            let reason = validate(m, index: i)
            if reason >= 0 {
                decapSlot[i] = Self.dropped
                puntOrDrop(m, DropReason(rawValue: reason).unsafelyUnwrapped)
                continue
            }
            let w0 = UInt64(decapVNI[i])
            if w0 == lastVNI {
                if !admits(i, vniSlot: lastVNISlot) { decapSlot[i] = Self.dropped; drop(m, .remoteNotAllowed, vniSlot: lastVNISlot); continue }
                decapSlot[i] = lastVNISlot
                lastSource = classifyInner(m, index: i, vniSlot: lastVNISlot, now: now, lastSource: lastSource)
                continue
            }
            let slot = vniCache.slot(w0, 0)
            let cached = vniCache.lookup(w0, 0, slot: slot)
            if cached.value >= 0 {
                lastVNI = w0
                lastVNISlot = cached.value
                if !admits(i, vniSlot: cached.value) { decapSlot[i] = Self.dropped; drop(m, .remoteNotAllowed, vniSlot: cached.value); continue }
                decapSlot[i] = cached.value
                lastSource = classifyInner(m, index: i, vniSlot: cached.value, now: now, lastSource: lastSource)
                continue
            }
            decapSlot[i] = Self.lookup
            vnis.add(w0, 0, owner: i, slot: slot)
        }
        if vnis.count > 0 {
            var hits: UInt64 = 0
            _ = rte_hash_lookup_bulk_data(view.vniHash, vnis.keyPointers, UInt32(vnis.count), &hits, vnis.data)
            for k in 0..<vnis.count {
                let owner = Int(vnis.owner[k])
                if hits & (1 << UInt64(k)) != 0 {
                    let vniSlot = Int32(truncatingIfNeeded: Int(bitPattern: vnis.data[k]) &- 1)
                    vniCache.insert(vnis.word0(k), 0, slot: Int(vnis.slot[k]), value: vniSlot)
                    if !admits(owner, vniSlot: vniSlot) {
                        decapSlot[owner] = Self.dropped
                        drop(packets[owner].unsafelyUnwrapped, .remoteNotAllowed, vniSlot: vniSlot)
                        continue
                    }
                    decapSlot[owner] = vniSlot
                    lastSource = classifyInner(packets[owner].unsafelyUnwrapped, index: owner, vniSlot: vniSlot, now: now,
                                               lastSource: lastSource)
                } else {
                    decapSlot[owner] = Self.dropped
                    drop(packets[owner].unsafelyUnwrapped, .unknownVNI)
                }
            }
            vnis.count = 0
        }
        _ = resolveDestinations(into: innerTarget)
        resolveSources(expected: -1, now: now)
        let tracing = self.tracing
        if tracing { traceClassified(packets, count: n, decap: true) }
        // Memo of the last VNI slot with a single untagged endpoint: its frames go straight to that port.
        var memoVNISlot: Int32 = -1, memoPort = -1
        // A kernel-attached underlay without a header (net_af_packet) hands over the remote kernel's unfinished inner
        // checksums and 64 KB GSO frames unannounced: all its frames go through the offload stage (Offload.swift).
        let underlayCompletes = completesChecksums[view.underlayPort] != 0
        let announced = offload.underlayAnnouncesOffloads
        for i in 0..<n {
            if tracing { traceStep(i, outcome: decapSlot) }
            let s = decapSlot[i]
            if s < 0 { continue }
            let m = packets[i].unsafelyUnwrapped
            countVNI(s, .decapPackets)
            countVNI(s, .decapBytes, UInt64(UInt32(bitPattern: innerLength[i])))
            // Strip the outer headers and any Ethernet padding after the VXLAN payload.
            _ = vx_mbuf_adj(m, UInt16(truncatingIfNeeded: outerLength[i]))
            let excess = Int(vx_mbuf_pkt_len(m)) &- Int(innerLength[i])
            // rte_pktmbuf_trim cuts the last buffer only: more after the packet than that (a chained frame whose
            // outer IP length is short; VXLAN is never short enough for Ethernet padding) is dropped, never delivered.
            if excess > 0 && vx_mbuf_trim(m, UInt16(truncatingIfNeeded: excess)) != 0 { drop(m, .innerMalformed); continue }
            let target = innerTarget[i]
            if underlayCompletes || Int(innerLength[i]) > view.maxInnerFrame || (announced && announcesOffloadWork(m)) {
                deliverWithOffload(m, vniSlot: s, target: target, tx: tx)
                continue
            }
            if target == Self.flood {
                if s != memoVNISlot {
                    let entry = view.vniBlock(Int(s))
                    memoVNISlot = s
                    memoPort = -1
                    if entry.accessCount == 1 {
                        let e = Int(entry.access(0))
                        if view.endpointVLAN[e] == 0 { memoPort = Int(view.endpointPort[e]) }
                    }
                }
                if memoPort >= 0 {
                    if view.portTakesLargeFrames[memoPort] != 0 { stageForCoalescing(m, port: memoPort); continue }
                    tx.push(m, to: memoPort)
                    count(.decapsulated)
                    continue
                }
            }
            if target >= FDBTarget.localBase, view.endpointVNISlot[Int(target &- FDBTarget.localBase)] == s,
               view.endpointVLAN[Int(target &- FDBTarget.localBase)] == 0 {
                let port = Int(view.endpointPort[Int(target &- FDBTarget.localBase)])
                if view.portTakesLargeFrames[port] != 0 { stageForCoalescing(m, port: port); continue }
            }
            deliverDecapsulated(m, vniSlot: s, target: target, tx: tx)
        }
        if tracing { traceStep(-1, outcome: decapSlot) }
        if coalesceCount > 0 { flushCoalesced(tx: tx) }
    }

    /// A decapsulated frame to its local endpoint, or to every access port of its VNI. Split horizon: it only
    /// ever goes to local ports of its own VNI.
    @inlinable @inline(__always)
    func deliverDecapsulated(_ m: OpaquePointer, vniSlot s: Int32, target: Int32, tx: TxStage) {
        if target >= FDBTarget.localBase && view.endpointVNISlot[Int(target &- FDBTarget.localBase)] == s {
            send(m, toEndpoint: target &- FDBTarget.localBase, tx: tx)
            count(.decapsulated)
        } else {
            deliver(m, vniSlot: Int(s), tx: tx)
        }
    }

    /// Whether packet i's outer source may send VXLAN for `vniSlot` (`allowed_remotes`): checked before any
    /// lookup or learning. Without a list for the VNI it costs one byte load.
    @inlinable @inline(__always)
    func admits(_ i: Int, vniSlot: Int32) -> Bool {
        guard let filter = view.vniBlock(Int(vniSlot)).filter else { return true }
        return outerIsIPv6[i] != 0
            ? filter.pointee.allows(words: (outerSource6[2 &* i], outerSource6[2 &* i &+ 1]))
            : filter.pointee.allows(IPv4Address(outerSource[i]))
    }

    /// Inner addresses of a frame in a known VNI: the destination picks the local port (lookup queued when
    /// not cached), the source is learned behind the outer source address.
    @inlinable @inline(__always)
    func classifyInner(_ m: OpaquePointer, index i: Int, vniSlot: Int32, now: UInt32,
                       lastSource: (UInt64, UInt64, UInt64, UInt64, UInt8)) -> (UInt64, UInt64, UInt64, UInt64, UInt8) {
        var lastSource = lastSource
        let entry = view.vniBlock(Int(vniSlot))
        let inner = vx_mbuf_data(m) + Int(outerLength[i])
        if entry.learning && slowPath != nil && inner.load(fromByteOffset: FrameLayout.ethSource, as: UInt8.self) & 1 == 0 {
            let (s0, s1) = Self.fdbKey(vni: entry.vni, inner + 6)
            let v6 = outerIsIPv6[i]
            let (r0, r1) = v6 != 0 ? (outerSource6[2 &* i], outerSource6[2 &* i &+ 1]) : (UInt64(outerSource[i]), 0)
            if s0 != lastSource.0 || s1 != lastSource.1 || r0 != lastSource.2 || r1 != lastSource.3 || v6 &+ 1 != lastSource.4 {
                checkSource(i, s0, s1, expected: -1, now: now)
                lastSource = (s0, s1, r0, r1, v6 &+ 1)
            }
        }
        if inner.load(as: UInt8.self) & 1 == 1 || entry.accessCount <= 1 {
            innerTarget[i] = Self.flood                    // one local port, or BUM: no lookup needed
        } else {
            let (d0, d1) = Self.fdbKey(vni: entry.vni, inner)
            lookUpDestination(i, d0, d1, into: innerTarget)
        }
        return lastSource
    }

    /// Checks one underlay frame; returns a DropReason raw value, or -1 when it is VXLAN for us, in which case

    /// ARP, and ICMP to the VTEP address, go to the slow path; everything else that is not VXLAN is dropped.
    @inline(never) @usableFromInline
    func puntOrDrop(_ m: OpaquePointer, _ reason: DropReason) {
        if let rings = slowPath {
            let f = vx_mbuf_data(m)
            let type = load16(f, FrameLayout.ethType)
            // ICMPv6 may be addressed to the VTEP's solicited-node group rather than to it (Neighbor Discovery).
            let forControl = (reason == .notIP && type == VXLANLayout.etherTypeARP)
                || (reason == .notUDP && type == VXLANLayout.etherTypeIPv4
                    && f.load(fromByteOffset: FrameLayout.ipProtocol, as: UInt8.self) == VXLANLayout.protocolICMP)
                || ((reason == .notUDP || reason == .wrongDestination) && type == VXLANLayout.etherTypeIPv6 && view.hasAddress6
                    && vx_mbuf_data_len(m) >= FrameLayout.ip6Payload && f.load(fromByteOffset: FrameLayout.ip6NextHeader, as: UInt8.self) == VXLANLayout.protocolICMPv6)
            if forControl {
                if vx_ring_enqueue(rings.punt, UnsafeMutableRawPointer(m)) == 0 {
                    count(.punted)
                    if tracing { tracePunt(m) }     // identity only: the slow path owns the buffer now
                } else {
                    drop(m, .slowPathBusy)
                }
                return
            }
        }
        drop(m, reason)
    }

    /// From an underlay with a virtio-net header (a tap port): the inner checksum is unfinished (L4_CKSUM_NONE) or
    /// the frame is a GSO one (RX_LRO, the sender's segment size in tso_segsz).
    @inlinable @inline(__always)
    func announcesOffloadWork(_ m: OpaquePointer) -> Bool {
        let flags = vx_mbuf_ol_flags(m)
        return flags & MbufFlag.rxLRO != 0 || flags & MbufFlag.rxL4ChecksumMask == MbufFlag.rxL4ChecksumNone
    }
}
