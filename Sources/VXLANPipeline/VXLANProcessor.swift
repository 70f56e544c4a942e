import CDPDK
import PollMode
import VTEPConfig

/// The per-core VXLAN pipeline: frames from access ports are encapsulated towards remote VTEPs, VXLAN from the
/// underlay is validated, decapsulated and delivered to the VNI's access ports. Each burst is handled in two
/// passes so table lookups are done in bulk: parse and classify, look up, then rewrite and stage.
/// Nothing here allocates, retains or dispatches dynamically per packet.
public struct VXLANProcessor: BurstProcessor {
    public let tables: ForwardingTables
    public let counterBlock: CounterBlock

    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    @usableFromInline let templates: UnsafeMutableRawPointer
    @usableFromInline let partialSums: UnsafeMutablePointer<UInt32>
    @usableFromInline let segments: UnsafeMutablePointer<ForwardingTables.SegmentEntry>
    @usableFromInline let floodTunnels: UnsafeMutablePointer<Int32>
    @usableFromInline let accessPorts: UnsafeMutablePointer<Int32>
    @usableFromInline let portSegment: UnsafeMutablePointer<Int32>
    @usableFromInline let fdbHash: OpaquePointer
    @usableFromInline let vniHash: OpaquePointer
    @usableFromInline let underlayPort: Int
    @usableFromInline let underlayAddress: UInt32
    @usableFromInline let udpPort: UInt16
    @usableFromInline let maxInnerFrame: Int
    /// The underlay MAC as the low 48 bits of a little-endian 8-byte load of the frame start.
    @usableFromInline let underlayMACBits: UInt64

    @usableFromInline let activeCopy: UnsafeMutablePointer<Int32>
    @usableFromInline let qsbr: OpaquePointer
    @usableFromInline let reader: UInt32
    /// Hand-off rings to and from the slow path (nil: control-plane frames are dropped, as in unit tests).
    @usableFromInline let slowPath: SlowPathRings?
    @usableFromInline let injectBuffer: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    @usableFromInline let generation: UnsafeMutablePointer<UInt64>
    @usableFromInline var seenGeneration: UInt64 = 0
    /// (VNI, MAC) -> tunnel and VNI -> segment, in front of the rte_hash tables.
    @usableFromInline let fdbCache: ExactMatchCache
    @usableFromInline let vniCache: ExactMatchCache
    /// Per lookup: the cache slot to fill when rte_hash finds the key.
    @usableFromInline let cacheSlot: UnsafeMutablePointer<Int32>

    // Per-burst scratch, allocated once.
    @usableFromInline let keys: UnsafeMutableRawPointer
    @usableFromInline let keyPointers: UnsafeMutablePointer<UnsafeRawPointer?>
    @usableFromInline let lookupData: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    @usableFromInline let keyOwner: UnsafeMutablePointer<Int32>
    /// Per packet: what pass 2 does with it (see the `State` constants) or the tunnel/segment index.
    @usableFromInline let state: UnsafeMutablePointer<Int32>
    /// Per packet: UDP source port (encap) or outer header length (decap).
    @usableFromInline let aux: UnsafeMutablePointer<Int32>
    /// Per packet: inner frame length.
    @usableFromInline let innerLength: UnsafeMutablePointer<Int32>

    @usableFromInline static let maxBurst = 64
    @usableFromInline static let keyStride = 16
    @usableFromInline static let dropped: Int32 = -1
    @usableFromInline static let flood: Int32 = -2
    @usableFromInline static let lookup: Int32 = -3
}

/// One polling core's rings to and from the slow path: single producer, single consumer each, so neither side
/// ever waits on the other.
public struct SlowPathRings: @unchecked Sendable {
    public let punt: OpaquePointer
    public let inject: OpaquePointer
    public init(punt: OpaquePointer, inject: OpaquePointer) { self.punt = punt; self.inject = inject }
}

extension VXLANProcessor {

    /// - Parameters:
    ///   - reader: this core's index among the tables' RCU readers.
    ///   - slowPath: where ARP and ICMP for the VTEP go, and where replies come from.
    public init(tables: ForwardingTables, reader: Int = 0, slowPath: SlowPathRings? = nil) {
        self.tables = tables
        activeCopy = tables.activeCopy
        qsbr = tables.qsbr
        self.reader = UInt32(reader)
        self.slowPath = slowPath
        injectBuffer = .allocate(capacity: 32)
        injectBuffer.initialize(repeating: nil, count: 32)
        tables.registerReader(reader)
        counterBlock = CounterBlock(count: PipelineCounterLayout.count)
        counters = counterBlock.base
        templates = tables.templates
        partialSums = tables.partialSums
        segments = tables.segments
        floodTunnels = tables.floodTunnels
        accessPorts = tables.accessPorts
        portSegment = tables.portSegment
        fdbHash = tables.fdbHash
        vniHash = tables.vniHash
        underlayPort = tables.underlayPort
        underlayAddress = tables.underlayAddress
        udpPort = tables.udpPort
        maxInnerFrame = tables.maxInnerFrame
        generation = tables.generation
        fdbCache = ExactMatchCache(capacity: 512)
        vniCache = ExactMatchCache(capacity: 64)
        cacheSlot = .allocate(capacity: Self.maxBurst); cacheSlot.initialize(repeating: 0, count: Self.maxBurst)
        underlayMACBits = tables.underlayMAC.bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        let n = Self.maxBurst
        keys = .allocate(byteCount: n * Self.keyStride, alignment: 64)
        keys.initializeMemory(as: UInt8.self, repeating: 0, count: n * Self.keyStride)
        keyPointers = .allocate(capacity: n)
        for i in 0..<n { keyPointers[i] = UnsafeRawPointer(keys + i * Self.keyStride) }
        lookupData = .allocate(capacity: n); lookupData.initialize(repeating: nil, count: n)
        keyOwner = .allocate(capacity: n); keyOwner.initialize(repeating: 0, count: n)
        state = .allocate(capacity: n); state.initialize(repeating: 0, count: n)
        aux = .allocate(capacity: n); aux.initialize(repeating: 0, count: n)
        innerLength = .allocate(capacity: n); innerLength.initialize(repeating: 0, count: n)
    }

    /// Frees the scratch memory; call once the core has stopped.
    public func release() {
        tables.unregisterReader(Int(reader))
        injectBuffer.deallocate()
        fdbCache.deallocate(); vniCache.deallocate(); cacheSlot.deallocate()
        keys.deallocate(); keyPointers.deallocate(); lookupData.deallocate(); keyOwner.deallocate()
        state.deallocate(); aux.deallocate(); innerLength.deallocate()
    }

    @inlinable @inline(__always)
    func count(_ c: PipelineCounter, _ n: UInt64 = 1) { counters[PipelineCounterLayout.slot(c)] &+= n }

    @inlinable @inline(__always)
    func drop(_ m: OpaquePointer, _ reason: DropReason) {
        counters[PipelineCounterLayout.slot(reason)] &+= 1
        vx_mbuf_free(m)
    }

    /// Once per poll round: send what the slow path queued, and tell RCU this core holds no table pointers.
    @inlinable
    public mutating func afterPollRound(tx: TxStage) {
        if let rings = slowPath {
            let n = Int(vx_ring_dequeue_burst(rings.inject, injectBuffer, 32))
            for i in 0..<n { tx.push(OpaquePointer(injectBuffer[i].unsafelyUnwrapped), to: underlayPort) }
            if n > 0 { count(.injected, UInt64(n)) }
        }
        vx_qsbr_quiescent(qsbr, reader)
    }

    @inlinable
    public mutating func process(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, fromPort port: Int, tx: TxStage) {
        if generation.pointee != seenGeneration {
            seenGeneration = generation.pointee
            fdbCache.clear()
            vniCache.clear()
        }
        var start = 0
        // Bursts larger than the scratch space (not produced by PollingCore) are handled in slices.
        while start < n {
            let slice = min(n &- start, Self.maxBurst)
            let segment = portSegment[port]
            if segment < 0 {
                decapsulate(packets + start, count: slice, tx: tx)
            } else {
                encapsulate(packets + start, count: slice, segment: Int(segment), tx: tx)
            }
            start &+= slice
        }
    }

    // MARK: - Access -> underlay

    @inlinable
    func encapsulate(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, segment: Int, tx: TxStage) {
        let vni = segments[segment].vni
        var lookups = 0
        for i in 0..<n {
            let m = packets[i].unsafelyUnwrapped
            if i &+ 1 < n { vx_mbuf_prefetch_data(packets[i &+ 1].unsafelyUnwrapped) }
            let length = Int(vx_mbuf_pkt_len(m))
            innerLength[i] = Int32(truncatingIfNeeded: length)
            if length < VXLANLayout.minimumInnerFrame || Int(vx_mbuf_data_len(m)) < VXLANLayout.minimumInnerFrame {
                state[i] = Self.dropped; drop(m, .runtFrame); continue
            }
            if length > maxInnerFrame { state[i] = Self.dropped; drop(m, .overMTU); continue }
            let frame = vx_mbuf_data(m)
            // Pass 2 writes 50 bytes in front of the frame: that line is cold, so ask for it now.
            vx_mbuf_prefetch_headroom_for_write(m)
            let hash = vx_mbuf_has_rss_hash(m) != 0 ? vx_mbuf_rss_hash(m) : innerFlowHash(frame, length: length)
            aux[i] = Int32(vxlanSourcePort(flowHash: hash))
            if frame.load(as: UInt8.self) & 1 == 1 {
                state[i] = Self.flood                      // broadcast or multicast
            } else {
                // Key layout as ForwardingTables.writeFDBKey: VNI, destination MAC, zero padding.
                let w0 = UInt64(vni) | UInt64(frame.loadUnaligned(as: UInt32.self)) << 32
                let w1 = UInt64(frame.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
                let key = keys + lookups &* Self.keyStride
                key.storeBytes(of: w0, as: UInt64.self)
                key.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
                if cachedOrQueued(packet: i, w0, w1, cache: fdbCache, lookups: &lookups) { continue }
            }
        }
        if lookups > 0 {
            let hits = lookUpQueued(lookups, in: fdbHash, filling: fdbCache)
            for k in 0..<lookups where hits & (1 << UInt64(k)) == 0 {
                state[Int(keyOwner[k])] = Self.flood
                count(.unknownUnicast)
            }
        }
        for i in 0..<n {
            let s = state[i]
            if s == Self.dropped { continue }
            let m = packets[i].unsafelyUnwrapped
            let length = Int(innerLength[i])
            let sourcePort = UInt16(truncatingIfNeeded: aux[i])
            if s >= 0 {
                push(m, tunnel: Int(s), innerLength: length, sourcePort: sourcePort, tx: tx)
            } else {
                floodToRemotes(m, segment: segment, innerLength: length, sourcePort: sourcePort, tx: tx)
            }
        }
    }

    // MARK: - Lookups

    /// Resolves packet `i`'s key (two words, already written at key slot `lookups`) from the cache into
    /// `state[i]`, or queues it for the bulk lookup. Returns true on a cache hit.
    @inlinable @inline(__always)
    func cachedOrQueued(packet i: Int, _ w0: UInt64, _ w1: UInt64, cache: ExactMatchCache, lookups: inout Int) -> Bool {
        let slot = cache.slot(w0, w1)
        let cached = cache.lookup(w0, w1, slot: slot)
        if cached >= 0 { state[i] = cached; return true }
        state[i] = Self.lookup
        keyOwner[lookups] = Int32(truncatingIfNeeded: i)
        cacheSlot[lookups] = Int32(truncatingIfNeeded: slot)
        lookups &+= 1
        return false
    }

    /// One rte_hash bulk lookup of the queued keys: hits get their value in `state` and go into the cache.
    /// Returns the hit mask; the caller decides what a miss means.
    @inlinable @inline(__always)
    func lookUpQueued(_ lookups: Int, in hash: OpaquePointer, filling cache: ExactMatchCache) -> UInt64 {
        var hits: UInt64 = 0
        _ = rte_hash_lookup_bulk_data(hash, keyPointers, UInt32(lookups), &hits, lookupData)
        for k in 0..<lookups where hits & (1 << UInt64(k)) != 0 {
            let value = Int32(truncatingIfNeeded: Int(bitPattern: lookupData[k]) &- 1)
            state[Int(keyOwner[k])] = value
            let key = keys + k &* Self.keyStride
            cache.insert(key.load(as: UInt64.self), key.load(fromByteOffset: 8, as: UInt64.self), slot: Int(cacheSlot[k]), value: value)
        }
        return hits
    }

    /// Prepends the tunnel's template, patches the per-packet fields and stages the packet on the underlay.
    @inlinable @inline(__always)
    func push(_ m: OpaquePointer, tunnel: Int, innerLength: Int, sourcePort: UInt16, tx: TxStage) {
        let copy = vx_load_acquire_i32(activeCopy + tunnel)
        if copy < 0 { drop(m, .neighborUnresolved); return }
        guard let header = vx_mbuf_prepend(m, UInt16(VXLANLayout.outerLength)) else { drop(m, .noHeadroom); return }
        let h = UnsafeMutableRawPointer(header)
        let t = templates + (tunnel &* 2 &+ Int(copy)) &* ForwardingTables.templateStride
        // 50 bytes as six 8-byte words and one 2-byte word: no call, no loop.
        h.storeBytes(of: t.load(fromByteOffset: 0, as: UInt64.self), toByteOffset: 0, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 16, as: UInt64.self), toByteOffset: 16, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 24, as: UInt64.self), toByteOffset: 24, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 32, as: UInt64.self), toByteOffset: 32, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 40, as: UInt64.self), toByteOffset: 40, as: UInt64.self)
        h.storeBytes(of: t.load(fromByteOffset: 48, as: UInt16.self), toByteOffset: 48, as: UInt16.self)
        OuterHeaderTemplate.patch(h, innerLength: innerLength, sourcePort: sourcePort, partialSum: partialSums[tunnel])
        tx.push(m, to: underlayPort)
        count(.encapsulated)
    }

    /// Head-end replication: one copy per remote in the VNI's flood list; the original goes to the last one.
    @inline(never) @usableFromInline
    func floodToRemotes(_ m: OpaquePointer, segment: Int, innerLength: Int, sourcePort: UInt16, tx: TxStage) {
        let entry = segments[segment]
        let remotes = Int(entry.floodCount)
        if remotes == 0 { drop(m, .noDestination); return }
        for r in 0..<remotes {
            let tunnel = Int(floodTunnels[Int(entry.floodStart) &+ r])
            let last = r == remotes &- 1
            guard let copy = last ? m : rte_pktmbuf_copy(m, vx_mbuf_pool(m), 0, UInt32.max) else {
                counters[PipelineCounterLayout.slot(.copyFailed)] &+= 1
                continue
            }
            count(.floodCopies)
            push(copy, tunnel: tunnel, innerLength: innerLength, sourcePort: sourcePort, tx: tx)
        }
    }

    // MARK: - Underlay -> access

    @inlinable
    func decapsulate(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, tx: TxStage) {
        var lookups = 0
        for i in 0..<n {
            let m = packets[i].unsafelyUnwrapped
            if i &+ 1 < n { vx_mbuf_prefetch_data(packets[i &+ 1].unsafelyUnwrapped) }
            let reason = validate(m, index: i, keySlot: lookups)
            if reason >= 0 {
                state[i] = Self.dropped
                puntOrDrop(m, DropReason(rawValue: reason).unsafelyUnwrapped)
                continue
            }
            let key = keys + lookups &* Self.keyStride
            _ = cachedOrQueued(packet: i, key.load(as: UInt64.self), 0, cache: vniCache, lookups: &lookups)
        }
        if lookups > 0 {
            let hits = lookUpQueued(lookups, in: vniHash, filling: vniCache)
            for k in 0..<lookups where hits & (1 << UInt64(k)) == 0 {
                let owner = Int(keyOwner[k])
                state[owner] = Self.dropped
                drop(packets[owner].unsafelyUnwrapped, .unknownVNI)
            }
        }
        for i in 0..<n {
            let s = state[i]
            if s < 0 { continue }
            let m = packets[i].unsafelyUnwrapped
            // Strip the outer headers and any Ethernet padding after the VXLAN payload.
            _ = vx_mbuf_adj(m, UInt16(truncatingIfNeeded: aux[i]))
            let excess = Int(vx_mbuf_pkt_len(m)) &- Int(innerLength[i])
            if excess > 0 { _ = vx_mbuf_trim(m, UInt16(truncatingIfNeeded: excess)) }
            deliver(m, segment: Int(s), tx: tx)
        }
    }

    /// Checks one underlay frame; returns a DropReason raw value, or -1 when it is VXLAN for us, in which case
    /// its VNI key, outer header length and inner length are recorded for pass 2.
    @inlinable @inline(__always)
    func validate(_ m: OpaquePointer, index i: Int, keySlot: Int) -> Int {
        let dataLength = Int(vx_mbuf_data_len(m))
        let packetLength = Int(vx_mbuf_pkt_len(m))
        if dataLength < VXLANLayout.ethernetLength { return DropReason.truncated.rawValue }
        let f = vx_mbuf_data(m)
        // Destination MAC: ours, or group-addressed (those are not VXLAN for us and fail below).
        let first = f.load(as: UInt8.self)
        if first & 1 == 0 && (f.loadUnaligned(as: UInt64.self) & 0xFFFF_FFFF_FFFF) != underlayMACBits {
            return DropReason.notOurMAC.rawValue
        }
        if load16(f, 12) != VXLANLayout.etherTypeIPv4 { return DropReason.notIPv4.rawValue }
        if dataLength < VXLANLayout.ethernetLength &+ VXLANLayout.ipv4Length { return DropReason.truncated.rawValue }
        let versionIHL = f.load(fromByteOffset: 14, as: UInt8.self)
        let ihl = Int(versionIHL & 0x0F) &* 4
        let ipLength = Int(load16(f, 16))
        if versionIHL >> 4 != 4 || ihl < VXLANLayout.ipv4Length || ipLength < ihl { return DropReason.badIPHeader.rawValue }
        if VXLANLayout.ethernetLength &+ ipLength > packetLength || VXLANLayout.ethernetLength &+ ihl > dataLength {
            return DropReason.truncated.rawValue
        }
        // rte_raw_cksum returns the folded sum; over a correct header (checksum included) it is 0xFFFF.
        if vx_raw_cksum(f + VXLANLayout.ipOffset, ihl) != 0xFFFF {
            return DropReason.badIPChecksum.rawValue
        }
        if load16(f, 20) & 0x3FFF != 0 { return DropReason.ipFragment.rawValue }
        if load32(f, VXLANLayout.ipDestinationOffset) != underlayAddress { return DropReason.wrongDestination.rawValue }
        if f.load(fromByteOffset: 23, as: UInt8.self) != VXLANLayout.protocolUDP { return DropReason.notUDP.rawValue }
        let udp = VXLANLayout.ethernetLength &+ ihl
        let headers = udp &+ VXLANLayout.udpLength &+ VXLANLayout.vxlanLength
        if ipLength < ihl &+ VXLANLayout.udpLength || dataLength < udp &+ VXLANLayout.udpLength { return DropReason.truncated.rawValue }
        if load16(f, udp &+ 2) != udpPort { return DropReason.wrongUDPPort.rawValue }
        let udpLength = Int(load16(f, udp &+ 4))
        if udpLength > ipLength &- ihl || udpLength < VXLANLayout.udpLength &+ VXLANLayout.vxlanLength || dataLength < headers {
            return DropReason.truncated.rawValue
        }
        let inner = udpLength &- VXLANLayout.udpLength &- VXLANLayout.vxlanLength
        if inner < VXLANLayout.minimumInnerFrame || dataLength < headers &+ VXLANLayout.minimumInnerFrame {
            return DropReason.innerTooShort.rawValue
        }
        let vxlan = udp &+ VXLANLayout.udpLength
        if f.load(fromByteOffset: vxlan, as: UInt8.self) & VXLANLayout.flagI == 0 { return DropReason.badFlags.rawValue }
        let vni = load32(f, vxlan &+ 4) >> 8
        // Keys are packed in the order of the packets that reach the lookup.
        // Key layout as ForwardingTables.writeVNIKey: the VNI, zero padding.
        let key = keys + keySlot &* Self.keyStride
        key.storeBytes(of: UInt64(vni), as: UInt64.self)
        key.storeBytes(of: 0 as UInt64, toByteOffset: 8, as: UInt64.self)
        aux[i] = Int32(headers)
        innerLength[i] = Int32(inner)
        return -1
    }

    /// ARP, and ICMP to the VTEP address, go to the slow path; everything else that is not VXLAN is dropped.
    @inline(never) @usableFromInline
    func puntOrDrop(_ m: OpaquePointer, _ reason: DropReason) {
        if let rings = slowPath {
            let f = vx_mbuf_data(m)
            let forControl = (reason == .notIPv4 && load16(f, 12) == VXLANLayout.etherTypeARP)
                || (reason == .notUDP && f.load(fromByteOffset: 23, as: UInt8.self) == VXLANLayout.protocolICMP)
            if forControl {
                if vx_ring_enqueue(rings.punt, UnsafeMutableRawPointer(m)) == 0 { count(.punted) } else { drop(m, .slowPathBusy) }
                return
            }
        }
        drop(m, reason)
    }

    /// Sends a decapsulated frame to every access port of its VNI (a copy for all but the last).
    @inlinable @inline(__always)
    func deliver(_ m: OpaquePointer, segment: Int, tx: TxStage) {
        let entry = segments[segment]
        let ports = Int(entry.accessCount)
        if ports == 1 {
            tx.push(m, to: Int(accessPorts[Int(entry.accessStart)]))
            count(.decapsulated)
            return
        }
        deliverToMany(m, entry: entry, tx: tx)
    }

    @inline(never) @usableFromInline
    func deliverToMany(_ m: OpaquePointer, entry: ForwardingTables.SegmentEntry, tx: TxStage) {
        let ports = Int(entry.accessCount)
        if ports == 0 { drop(m, .noDestination); return }
        for p in 0..<ports {
            let last = p == ports &- 1
            guard let copy = last ? m : rte_pktmbuf_copy(m, vx_mbuf_pool(m), 0, UInt32.max) else {
                counters[PipelineCounterLayout.slot(.copyFailed)] &+= 1
                continue
            }
            tx.push(copy, to: Int(accessPorts[Int(entry.accessStart) &+ p]))
        }
        count(.decapsulated)
    }
}
