import CDPDK
import PollMode
import VTEPConfig

/// One polling core's rings to and from the slow path: single producer, single consumer each, so neither side
/// ever waits on the other.
public struct SlowPathRings: @unchecked Sendable {
    /// Core -> slow path: ARP, and ICMP for the VTEP address (mbufs).
    public let punt: OpaquePointer
    /// Slow path -> core: frames to send on the underlay (mbufs).
    public let inject: OpaquePointer
    /// Core -> slow path: 32-byte learning events (see `LearnEvent`).
    public let learn: OpaquePointer
    public init(punt: OpaquePointer, inject: OpaquePointer, learn: OpaquePointer) {
        self.punt = punt; self.inject = inject; self.learn = learn
    }
}

/// A source MAC seen behind a remote VTEP or a local endpoint, as it travels from a core to the slow path in
/// 32 bytes: word 0 is the FDB key's first word (VNI, MAC bytes 0-3), word 1 holds MAC bytes 4-5, the kind and
/// a 32-bit value (IPv4 address or endpoint), words 2-3 an IPv6 address.
public enum LearnEvent {
    public static let remote: UInt64 = 1, local: UInt64 = 2, remote6: UInt64 = 3

    @inlinable @inline(__always)
    public static func encode(key0: UInt64, key1: UInt64, kind: UInt64, value: UInt32, v6: (UInt64, UInt64) = (0, 0))
        -> (UInt64, UInt64, UInt64, UInt64) {
        (key0, key1 | kind << 16 | UInt64(value) << 32, v6.0, v6.1)
    }

    public static func decode(_ e: UnsafeMutablePointer<UInt64>) -> (vni: UInt32, mac: MACAddress, target: FDBTargetRequest) {
        let w0 = e[0], w1 = e[1]
        let vni = UInt32(truncatingIfNeeded: w0)
        let low = UInt32(truncatingIfNeeded: w0 >> 32), high = UInt16(truncatingIfNeeded: w1)
        let mac = MACAddress(bytes: [UInt8(low & 0xff), UInt8(low >> 8 & 0xff), UInt8(low >> 16 & 0xff), UInt8(low >> 24),
                                     UInt8(high & 0xff), UInt8(high >> 8)])!
        let value = UInt32(truncatingIfNeeded: w1 >> 32)
        switch w1 >> 16 & 0xff {
        case remote: return (vni, mac, .remote(.v4(IPv4Address(value))))
        case remote6:
            var bytes = [UInt8](repeating: 0, count: 16)
            withUnsafeBytes(of: (e[2], e[3])) { for i in 0..<16 { bytes[i] = $0[i] } }
            return (vni, mac, .remote(.v6(IPv6Address(bytes: bytes)!)))
        default: return (vni, mac, .port(Int(value)))
        }
    }
}

/// Where a core saw a source MAC: the slow path turns a remote address into a tunnel.
public enum FDBTargetRequest: Equatable, Sendable {
    case remote(IPAddress)
    case port(Int)
}

/// The per-core VXLAN pipeline. From access ports: learn the source MAC, look up the destination, then
/// encapsulate towards its remote VTEP, switch to another local port, or flood (local ports and, by head-end
/// replication, the VNI's remotes). From the underlay: validate, look up the VNI, learn inner source -> outer
/// source IP, strip the outer headers and deliver to the destination's local port or to all of the VNI's
/// local ports; never back into the underlay (split horizon).
/// Each burst is handled in passes so that table lookups are done in bulk (cache first, then rte_hash for the
/// misses). Nothing here allocates, retains or dispatches dynamically per packet.
public struct VXLANProcessor: BurstProcessor {
    public let tables: ForwardingTables
    public let counterBlock: CounterBlock

    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    @usableFromInline let templates: UnsafeMutableRawPointer
    @usableFromInline let partialSums: UnsafeMutablePointer<UInt32>
    @usableFromInline let activeCopy: UnsafeMutablePointer<Int32>
    @usableFromInline let tunnelRemote: UnsafeMutablePointer<UInt32>
    @usableFromInline let tunnelIsIPv6: UnsafeMutablePointer<UInt8>
    @usableFromInline let tunnelRemote6: UnsafeMutablePointer<UInt64>
    @usableFromInline let segments: UnsafeMutablePointer<ForwardingTables.SegmentEntry>
    @usableFromInline let floodTunnels: UnsafeMutablePointer<Int32>
    @usableFromInline let segmentFiltered: UnsafeMutablePointer<UInt8>
    @usableFromInline let remoteFilters: UnsafeMutablePointer<RemoteFilter>
    @usableFromInline let accessPorts: UnsafeMutablePointer<Int32>
    @usableFromInline let endpointPort: UnsafeMutablePointer<Int32>
    @usableFromInline let endpointVLAN: UnsafeMutablePointer<UInt16>
    @usableFromInline let endpointSegment: UnsafeMutablePointer<Int32>
    @usableFromInline let portEndpoint: UnsafeMutablePointer<Int32>
    @usableFromInline let vlanEndpoint: UnsafeMutablePointer<Int32>
    @usableFromInline let fdbHash: OpaquePointer
    @usableFromInline let fdbLastSeen: UnsafeMutablePointer<UInt32>
    /// Bounds of a usable FDB target or stamp slot: anything else found in the table is treated as a miss.
    @usableFromInline let tunnelLimit: UInt32
    @usableFromInline let endpointLimit: UInt32
    @usableFromInline let stampLimit: UInt32
    @usableFromInline let vniHash: OpaquePointer
    @usableFromInline let clock: UnsafeMutablePointer<UInt32>
    @usableFromInline let generation: UnsafeMutablePointer<UInt64>
    @usableFromInline let qsbr: OpaquePointer
    @usableFromInline let reader: UInt32
    @usableFromInline let underlayPort: Int
    @usableFromInline let underlayAddress: UInt32
    @usableFromInline let hasAddress6: Bool
    @usableFromInline let underlayAddress6: (UInt64, UInt64)
    @usableFromInline let udpPort: UInt16
    @usableFromInline let strict: Bool
    @usableFromInline let maxInnerFrame: Int
    @usableFromInline let maxInnerFrame6: Int
    /// The underlay MAC as the low 48 bits of a little-endian 8-byte load of the frame start.
    @usableFromInline let underlayMACBits: UInt64
    /// Hand-off rings to and from the slow path (nil: control frames are dropped and nothing is learned).
    @usableFromInline let slowPath: SlowPathRings?

    @usableFromInline var seenGeneration: UInt64 = 0
    /// (VNI, MAC) -> (FDB target, stamp slot) and VNI -> segment, in front of the rte_hash tables.
    @usableFromInline let fdbCache: ExactMatchCache
    @usableFromInline let vniCache: ExactMatchCache
    @usableFromInline let destinations: LookupBatch
    @usableFromInline let sources: LookupBatch
    @usableFromInline let vnis: LookupBatch

    // Per-packet scratch, allocated once.
    /// What pass 2 does with the packet: a `State` constant, or an FDB target / segment index (>= 0).
    @usableFromInline let state: UnsafeMutablePointer<Int32>
    /// UDP source port (encap) or outer header length (decap).
    @usableFromInline let aux: UnsafeMutablePointer<Int32>
    @usableFromInline let innerLength: UnsafeMutablePointer<Int32>
    /// Decap: the outer source address, and the inner destination's FDB target (or `flood`).
    @usableFromInline let outerSource: UnsafeMutablePointer<UInt32>
    /// Decap over IPv6: the outer source (two words per packet), and whether the packet came over IPv6.
    @usableFromInline let outerSource6: UnsafeMutablePointer<UInt64>
    @usableFromInline let outerIsIPv6: UnsafeMutablePointer<UInt8>
    @usableFromInline let innerTarget: UnsafeMutablePointer<Int32>
    /// Encap: the local endpoint each frame came from.
    @usableFromInline let ingress: UnsafeMutablePointer<Int32>
    @usableFromInline let injectBuffer: UnsafeMutablePointer<UnsafeMutableRawPointer?>

    @usableFromInline static let maxBurst = 64
    @usableFromInline static let dropped: Int32 = -1
    @usableFromInline static let flood: Int32 = -2
    @usableFromInline static let lookup: Int32 = -3
    /// Cache value for a source MAC already reported to the slow path: do not report it again.
    @usableFromInline static let learnPending: Int32 = -2

    /// - Parameters:
    ///   - reader: this core's index among the tables' RCU readers.
    ///   - slowPath: where ARP, ICMP for the VTEP and learned MACs go, and where replies come from.
    public init(tables: ForwardingTables, reader: Int = 0, slowPath: SlowPathRings? = nil) {
        self.tables = tables
        counterBlock = CounterBlock(count: PipelineCounterLayout.count)
        counters = counterBlock.base
        templates = tables.templates
        partialSums = tables.partialSums
        activeCopy = tables.activeCopy
        tunnelRemote = tables.tunnelRemote
        tunnelIsIPv6 = tables.tunnelIsIPv6
        tunnelRemote6 = tables.tunnelRemote6
        segments = tables.segments
        floodTunnels = tables.floodTunnels
        accessPorts = tables.accessPorts
        segmentFiltered = tables.segmentFiltered
        remoteFilters = tables.remoteFilters
        endpointPort = tables.endpointPort
        endpointVLAN = tables.endpointVLAN
        endpointSegment = tables.endpointSegment
        portEndpoint = tables.portEndpoint
        vlanEndpoint = tables.vlanEndpoint
        fdbHash = tables.fdbHash
        fdbLastSeen = tables.fdbLastSeen
        tunnelLimit = UInt32(tables.tunnelCapacity)
        endpointLimit = UInt32(tables.endpointCount)
        stampLimit = UInt32(tables.fdbCapacity)
        vniHash = tables.vniHash
        clock = tables.clock
        generation = tables.generation
        qsbr = tables.qsbr
        self.reader = UInt32(reader)
        underlayPort = tables.underlayPort
        underlayAddress = tables.underlayAddress
        hasAddress6 = tables.underlayAddress6 != nil
        underlayAddress6 = tables.underlayAddress6 ?? (0, 0)
        udpPort = tables.udpPort
        strict = tables.strict
        maxInnerFrame = tables.maxInnerFrame
        maxInnerFrame6 = tables.maxInnerFrame6
        underlayMACBits = tables.underlayMAC.bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        self.slowPath = slowPath
        fdbCache = ExactMatchCache(capacity: 512)
        vniCache = ExactMatchCache(capacity: 64)
        let n = Self.maxBurst
        destinations = LookupBatch(capacity: n)
        sources = LookupBatch(capacity: n)
        vnis = LookupBatch(capacity: n)
        state = .allocate(capacity: n); state.initialize(repeating: 0, count: n)
        aux = .allocate(capacity: n); aux.initialize(repeating: 0, count: n)
        innerLength = .allocate(capacity: n); innerLength.initialize(repeating: 0, count: n)
        outerSource = .allocate(capacity: n); outerSource.initialize(repeating: 0, count: n)
        outerSource6 = .allocate(capacity: 2 * n); outerSource6.initialize(repeating: 0, count: 2 * n)
        outerIsIPv6 = .allocate(capacity: n); outerIsIPv6.initialize(repeating: 0, count: n)
        innerTarget = .allocate(capacity: n); innerTarget.initialize(repeating: 0, count: n)
        ingress = .allocate(capacity: n); ingress.initialize(repeating: 0, count: n)
        injectBuffer = .allocate(capacity: 32); injectBuffer.initialize(repeating: nil, count: 32)
        tables.registerReader(reader)
    }

    /// Frees the scratch memory and leaves RCU; call once the core has stopped.
    public func release() {
        tables.unregisterReader(Int(reader))
        fdbCache.deallocate(); vniCache.deallocate()
        destinations.deallocate(); sources.deallocate(); vnis.deallocate()
        state.deallocate(); aux.deallocate(); innerLength.deallocate(); outerSource.deallocate(); innerTarget.deallocate()
        ingress.deallocate(); outerSource6.deallocate(); outerIsIPv6.deallocate()
        injectBuffer.deallocate()
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
        if vx_load_acquire_u64(generation) != seenGeneration {
            seenGeneration = generation.pointee
            fdbCache.clear()
            vniCache.clear()
        }
        let now = clock.pointee
        var start = 0
        // Bursts larger than the scratch space (not produced by PollingCore) are handled in slices.
        while start < n {
            let slice = min(n &- start, Self.maxBurst)
            let kind = portEndpoint[port]
            if kind == ForwardingTables.PortKind.underlay {
                decapsulate(packets + start, count: slice, now: now, tx: tx)
            } else {
                encapsulate(packets + start, count: slice, port: port, endpoint: kind, now: now, tx: tx)
            }
            start &+= slice
        }
    }

    // MARK: - Lookups

    /// The FDB key words for (vni, the MAC at `mac`).
    @inlinable @inline(__always)
    static func fdbKey(vni: UInt32, _ mac: UnsafeMutableRawPointer) -> (UInt64, UInt64) {
        (UInt64(vni) | UInt64(mac.loadUnaligned(as: UInt32.self)) << 32, UInt64(mac.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
    }

    /// Destination lookup for packet i: the cached FDB target into `targets[i]`, or queued for the bulk lookup.
    @inlinable @inline(__always)
    func lookUpDestination(_ i: Int, _ w0: UInt64, _ w1: UInt64, into targets: UnsafeMutablePointer<Int32>) {
        let slot = fdbCache.slot(w0, w1)
        let cached = fdbCache.lookup(w0, w1, slot: slot)
        if cached.value >= 0 { targets[i] = cached.value; return }
        targets[i] = Self.lookup
        destinations.add(w0, w1, owner: i, slot: slot)
    }

    /// Whether a target read from the table can be used: a tunnel index or a local endpoint in range (a
    /// negative or out-of-range value counts as a miss, never as an index).
    @inlinable @inline(__always)
    func isUsable(_ target: Int32) -> Bool {
        UInt32(bitPattern: target) < tunnelLimit || UInt32(bitPattern: target &- FDBTarget.localBase) < endpointLimit
    }

    /// Resolves the queued destinations: hits get their target (and go into the cache), misses `flood`.
    /// The target comes with the key (the entry's data word), so a key that is found is complete.
    @inlinable @inline(__always)
    func resolveDestinations(into targets: UnsafeMutablePointer<Int32>) -> Int {
        let n = destinations.count
        if n == 0 { return 0 }
        var misses = 0
        var hits: UInt64 = 0
        _ = rte_hash_lookup_bulk_data(fdbHash, destinations.keyPointers, UInt32(n), &hits, destinations.data)
        for k in 0..<n {
            let owner = Int(destinations.owner[k])
            let data = destinations.data[k]
            let target = FDBData.target(data)
            if hits & (1 &<< UInt64(k)) != 0 && isUsable(target) {
                targets[owner] = target
                fdbCache.insert(destinations.word0(k), destinations.word1(k), slot: Int(destinations.slot[k]), value: target,
                                aux: FDBData.slot(data))
            } else {
                targets[owner] = Self.flood
                misses &+= 1
            }
        }
        destinations.count = 0
        return misses
    }

    /// Source learning for packet i seen behind `expected` (local port target, or a tunnel whose remote is
    /// `remote`): refreshes a known entry, or queues the MAC for a bulk check.
    @inlinable @inline(__always)
    func checkSource(_ i: Int, _ w0: UInt64, _ w1: UInt64, expected: Int32, now: UInt32) {
        if w0 >> 32 == 0 && w1 == 0 { return }                 // 00:00:00:00:00:00 is never learned
        let slot = fdbCache.slot(w0, w1)
        let cached = fdbCache.lookup(w0, w1, slot: slot)
        if cached.value == Self.learnPending { return }
        if cached.value >= 0 && matches(cached.value, expected: expected, packet: i) {
            refresh(slot: cached.aux, now: now)
            return
        }
        sources.add(w0, w1, owner: i, slot: slot)
    }

    /// Whether a source's FDB target is where packet i says it is: its ingress endpoint (`expected`), or for a
    /// decapsulated packet (expected -1) a tunnel to the packet's outer source address. `target` is usable.
    @inlinable @inline(__always)
    func matches(_ target: Int32, expected: Int32, packet i: Int) -> Bool {
        if expected >= 0 { return target == expected }
        if UInt32(bitPattern: target) >= tunnelLimit { return false }
        let t = Int(target)
        if outerIsIPv6[i] != 0 {
            return tunnelIsIPv6[t] != 0 && tunnelRemote6[2 &* t] == outerSource6[2 &* i] && tunnelRemote6[2 &* t &+ 1] == outerSource6[2 &* i &+ 1]
        }
        return tunnelIsIPv6[t] == 0 && tunnelRemote[t] == outerSource[i]
    }

    @inlinable @inline(__always)
    func refresh(slot: Int32, now: UInt32) {
        // Written at most once a second per entry, so the line is rarely shared between cores.
        if UInt32(bitPattern: slot) < stampLimit && fdbLastSeen[Int(slot)] != now { fdbLastSeen[Int(slot)] = now }
    }

    /// Checks the queued sources in bulk; reports new or moved ones to the slow path.
    /// - Parameter local: true for access frames (expected behind their ingress endpoint), false for decapsulated
    ///   ones (expected behind a tunnel to their outer source).
    @inlinable @inline(__always)
    func resolveSources(expected local: Int32, now: UInt32) {
        let n = sources.count
        if n == 0 { return }
        var hits: UInt64 = 0
        _ = rte_hash_lookup_bulk_data(fdbHash, sources.keyPointers, UInt32(n), &hits, sources.data)
        for k in 0..<n {
            let owner = Int(sources.owner[k])
            let expected = local >= 0 ? FDBTarget.localBase &+ ingress[owner] : -1
            let data = sources.data[k]
            let target = FDBData.target(data)
            if hits & (1 &<< UInt64(k)) != 0 && isUsable(target) && matches(target, expected: expected, packet: owner) {
                let slot = FDBData.slot(data)
                fdbCache.insert(sources.word0(k), sources.word1(k), slot: Int(sources.slot[k]), value: target, aux: slot)
                refresh(slot: slot, now: now)
                continue
            }
            // Several packets of a burst may carry the same new source: report it once.
            if fdbCache.lookup(sources.word0(k), sources.word1(k), slot: Int(sources.slot[k])).value == Self.learnPending { continue }
            report(sources.word0(k), sources.word1(k), expected: expected, packet: owner, slot: Int(sources.slot[k]))
        }
        sources.count = 0
    }

    @inline(never) @usableFromInline
    func report(_ w0: UInt64, _ w1: UInt64, expected: Int32, packet i: Int, slot: Int) {
        guard let rings = slowPath else { return }
        let event = expected >= 0
            ? LearnEvent.encode(key0: w0, key1: w1, kind: LearnEvent.local, value: UInt32(expected - FDBTarget.localBase))
            : outerIsIPv6[i] != 0
                ? LearnEvent.encode(key0: w0, key1: w1, kind: LearnEvent.remote6, value: 0, v6: (outerSource6[2 * i], outerSource6[2 * i + 1]))
                : LearnEvent.encode(key0: w0, key1: w1, kind: LearnEvent.remote, value: outerSource[i])
        if vx_ring32_enqueue(rings.learn, event.0, event.1, event.2, event.3) == 0 {
            count(.learnEvents)
            fdbCache.insert(w0, w1, slot: slot, value: Self.learnPending)
        } else {
            count(.learnQueueFull)
        }
    }

    // MARK: - Access -> underlay

    /// Access -> underlay. `endpoint` is the port's endpoint when it is untagged, `PortKind.tagged` otherwise
    /// (each frame's VLAN then picks it).
    @inlinable
    func encapsulate(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, port: Int, endpoint portEndpoint: Int32,
                     now: UInt32, tx: TxStage) {
        // An untagged port's segment is the same for the whole burst: read it once.
        let fixedSegment = portEndpoint >= 0 ? Int(endpointSegment[Int(portEndpoint)]) : -1
        let fixedEntry = segments[max(fixedSegment, 0)]
        // Last-key check (as VPP does): a burst from one VM mostly repeats its source MAC; check it once.
        var lastSource: (UInt64, UInt64, Int32) = (0, 0, -1)
        for i in 0..<n {
            let m = packets[i].unsafelyUnwrapped
            if i &+ 1 < n { vx_mbuf_prefetch_data(packets[i &+ 1].unsafelyUnwrapped) }
            if Int(vx_mbuf_data_len(m)) < VXLANLayout.minimumInnerFrame {
                state[i] = Self.dropped; drop(m, .runtFrame); continue
            }
            // Which endpoint (and so which VNI): the port's, or its VLAN's, with the tag removed.
            var endpoint = portEndpoint
            let tagged = load16(vx_mbuf_data(m), 12) == VXLANLayout.etherTypeVLAN
            if endpoint >= 0 {
                if tagged { state[i] = Self.dropped; drop(m, .vlanNotMapped); continue }
            } else {
                let vid = tagged && vx_mbuf_data_len(m) >= 18 ? Int(load16(vx_mbuf_data(m), 14) & 0x0FFF) : 0
                endpoint = vid == 0 ? -1 : vlanEndpoint[port &* 4096 &+ vid]
                if endpoint < 0 || vx_vlan_strip(m) != 0 { state[i] = Self.dropped; drop(m, .vlanNotMapped); continue }
            }
            ingress[i] = endpoint
            let entry = fixedSegment >= 0 ? fixedEntry : segments[Int(endpointSegment[Int(endpoint)])]
            let length = Int(vx_mbuf_pkt_len(m))
            innerLength[i] = Int32(truncatingIfNeeded: length)
            if length < VXLANLayout.minimumInnerFrame { state[i] = Self.dropped; drop(m, .runtFrame); continue }
            if length > maxInnerFrame { state[i] = Self.dropped; drop(m, .overMTU); continue }
            let frame = vx_mbuf_data(m)
            // Pass 2 may write 50 bytes in front of the frame: that line is cold, so ask for it now.
            vx_mbuf_prefetch_headroom_for_write(m)
            let hash = vx_mbuf_has_rss_hash(m) != 0 ? vx_mbuf_rss_hash(m) : innerFlowHash(frame, length: length)
            aux[i] = Int32(bitPattern: hash)
            if entry.learning && slowPath != nil && frame.load(fromByteOffset: 6, as: UInt8.self) & 1 == 0 {
                let (s0, s1) = Self.fdbKey(vni: entry.vni, frame + 6)
                if s0 != lastSource.0 || s1 != lastSource.1 || endpoint != lastSource.2 {
                    checkSource(i, s0, s1, expected: FDBTarget.localBase &+ endpoint, now: now)
                    lastSource = (s0, s1, endpoint)
                }
            }
            if frame.load(as: UInt8.self) & 1 == 1 {
                state[i] = Self.flood                      // broadcast or multicast
            } else {
                let (d0, d1) = Self.fdbKey(vni: entry.vni, frame)
                lookUpDestination(i, d0, d1, into: state)
            }
        }
        let unknown = resolveDestinations(into: state)
        if unknown > 0 { count(.unknownUnicast, UInt64(unknown)) }
        resolveSources(expected: 0, now: now)
        for i in 0..<n {
            let s = state[i]
            if s == Self.dropped { continue }
            let m = packets[i].unsafelyUnwrapped
            let from = ingress[i]
            if s == Self.flood {
                flood(m, segment: Int(endpointSegment[Int(from)]), ingress: from, innerLength: Int(innerLength[i]),
                      flowHash: UInt32(bitPattern: aux[i]), tx: tx)
            } else if s < FDBTarget.localBase {
                push(m, tunnel: Int(s), innerLength: Int(innerLength[i]), flowHash: UInt32(bitPattern: aux[i]), tx: tx)
            } else if s &- FDBTarget.localBase == from {
                drop(m, .samePort)
            } else if endpointSegment[Int(s &- FDBTarget.localBase)] != endpointSegment[Int(from)] {
                // Never switched into another segment: a target outside the frame's VNI is no target at all.
                count(.unknownUnicast)
                flood(m, segment: Int(endpointSegment[Int(from)]), ingress: from, innerLength: Int(innerLength[i]),
                      flowHash: UInt32(bitPattern: aux[i]), tx: tx)
            } else {
                send(m, toEndpoint: s &- FDBTarget.localBase, tx: tx)
                count(.switchedLocally)
            }
        }
    }

    /// Stages a frame on a local endpoint, adding its VLAN tag when it has one.
    @inlinable @inline(__always)
    func send(_ m: OpaquePointer, toEndpoint e: Int32, tx: TxStage) {
        let vlan = endpointVLAN[Int(e)]
        if vlan != 0 && vx_vlan_insert(m, vlan) != 0 { drop(m, .noHeadroom); return }
        tx.push(m, to: Int(endpointPort[Int(e)]))
    }

    /// Prepends the tunnel's template, patches the per-packet fields and stages the packet on the underlay.
    @inlinable @inline(__always)
    func push(_ m: OpaquePointer, tunnel: Int, innerLength: Int, flowHash: UInt32, tx: TxStage) {
        let copy = vx_load_acquire_i32(activeCopy + tunnel)
        if copy < 0 { drop(m, .neighborUnresolved); return }
        if tunnelIsIPv6[tunnel] != 0 { return push6(m, tunnel: tunnel, copy: Int(copy), innerLength: innerLength, flowHash: flowHash, tx: tx) }
        let sourcePort = vxlanSourcePort(flowHash: flowHash)
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

    /// The same over IPv6: 70 bytes, and a UDP checksum over the whole packet (RFC 8200).
    @inline(never) @usableFromInline
    func push6(_ m: OpaquePointer, tunnel: Int, copy: Int, innerLength: Int, flowHash: UInt32, tx: TxStage) {
        if innerLength > maxInnerFrame6 { drop(m, .overMTU); return }
        guard let header = vx_mbuf_prepend(m, UInt16(VXLANLayout.outerLength6)) else { drop(m, .noHeadroom); return }
        let h = UnsafeMutableRawPointer(header)
        h.copyMemory(from: templates + (tunnel &* 2 &+ copy) &* ForwardingTables.templateStride, byteCount: VXLANLayout.outerLength6)
        let innerSum = vx_mbuf_nb_segs(m) == 1
            ? rawChecksum(h + VXLANLayout.outerLength6, length: innerLength)
            : vx_mbuf_raw_cksum(m, UInt32(VXLANLayout.outerLength6), UInt32(innerLength))
        OuterHeaderTemplate6.patch(h, innerLength: innerLength, sourcePort: vxlanSourcePort(flowHash: flowHash), flowHash: flowHash,
                                   partialSum: partialSums[tunnel], innerSum: innerSum)
        tx.push(m, to: underlayPort)
        count(.encapsulated)
    }

    /// BUM from an access port: a copy to every other local port of the VNI, and by head-end replication one
    /// to every remote in its flood list. The original goes out last.
    @inline(never) @usableFromInline
    func flood(_ m: OpaquePointer, segment: Int, ingress: Int32, innerLength: Int, flowHash: UInt32, tx: TxStage) {
        let entry = segments[segment]
        let localCount = Int(entry.accessCount), remoteCount = Int(entry.floodCount)
        let destinations = remoteCount &+ localCount &- 1        // the ingress port is one of the local ones
        if destinations <= 0 { drop(m, .noDestination); return }
        count(.flooded)
        var sent = 0
        for d in 0..<(localCount &+ remoteCount) {
            let isLocal = d < localCount
            let endpoint = isLocal ? accessPorts[Int(entry.accessStart) &+ d] : -1
            if isLocal && endpoint == ingress { continue }
            sent &+= 1
            let packet: OpaquePointer
            if sent == destinations {
                packet = m
            } else if let c = rte_pktmbuf_copy(m, vx_mbuf_pool(m), 0, UInt32.max) {
                packet = c
            } else {
                counters[PipelineCounterLayout.slot(.copyFailed)] &+= 1
                continue
            }
            if isLocal {
                send(packet, toEndpoint: endpoint, tx: tx)
                count(.localFloodCopies)
            } else {
                count(.floodCopies)
                push(packet, tunnel: Int(floodTunnels[Int(entry.floodStart) &+ d &- localCount]), innerLength: innerLength,
                     flowHash: flowHash, tx: tx)
            }
        }
    }

    // MARK: - Underlay -> access

    @inlinable
    func decapsulate(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, now: UInt32, tx: TxStage) {
        // Last-key checks: consecutive packets mostly share the VNI and the inner source.
        var lastVNI: UInt64 = .max, lastSegment: Int32 = -1
        var lastSource: (UInt64, UInt64, UInt64, UInt64, UInt8) = (0, 0, 0, 0, 0)
        for i in 0..<n {
            let m = packets[i].unsafelyUnwrapped
            if i &+ 1 < n { vx_mbuf_prefetch_data(packets[i &+ 1].unsafelyUnwrapped) }
            let reason = validate(m, index: i)
            if reason >= 0 {
                state[i] = Self.dropped
                puntOrDrop(m, DropReason(rawValue: reason).unsafelyUnwrapped)
                continue
            }
            let w0 = UInt64(UInt32(bitPattern: state[i]))   // validate left the VNI there
            if w0 == lastVNI {
                if !admits(i, segment: lastSegment) { state[i] = Self.dropped; drop(m, .remoteNotAllowed); continue }
                state[i] = lastSegment
                lastSource = classifyInner(m, index: i, segment: lastSegment, now: now, lastSource: lastSource)
                continue
            }
            let slot = vniCache.slot(w0, 0)
            let cached = vniCache.lookup(w0, 0, slot: slot)
            if cached.value >= 0 {
                lastVNI = w0
                lastSegment = cached.value
                if !admits(i, segment: cached.value) { state[i] = Self.dropped; drop(m, .remoteNotAllowed); continue }
                state[i] = cached.value
                lastSource = classifyInner(m, index: i, segment: cached.value, now: now, lastSource: lastSource)
                continue
            }
            state[i] = Self.lookup
            vnis.add(w0, 0, owner: i, slot: slot)
        }
        if vnis.count > 0 {
            var hits: UInt64 = 0
            _ = rte_hash_lookup_bulk_data(vniHash, vnis.keyPointers, UInt32(vnis.count), &hits, vnis.data)
            for k in 0..<vnis.count {
                let owner = Int(vnis.owner[k])
                if hits & (1 << UInt64(k)) != 0 {
                    let segment = Int32(truncatingIfNeeded: Int(bitPattern: vnis.data[k]) &- 1)
                    vniCache.insert(vnis.word0(k), 0, slot: Int(vnis.slot[k]), value: segment)
                    if !admits(owner, segment: segment) {
                        state[owner] = Self.dropped
                        drop(packets[owner].unsafelyUnwrapped, .remoteNotAllowed)
                        continue
                    }
                    state[owner] = segment
                    lastSource = classifyInner(packets[owner].unsafelyUnwrapped, index: owner, segment: segment, now: now,
                                               lastSource: lastSource)
                } else {
                    state[owner] = Self.dropped
                    drop(packets[owner].unsafelyUnwrapped, .unknownVNI)
                }
            }
            vnis.count = 0
        }
        _ = resolveDestinations(into: innerTarget)
        resolveSources(expected: -1, now: now)
        // Memo of the last segment with a single untagged endpoint: its frames go straight to that port.
        var memoSegment: Int32 = -1, memoPort = -1
        for i in 0..<n {
            let s = state[i]
            if s < 0 { continue }
            let m = packets[i].unsafelyUnwrapped
            // Strip the outer headers and any Ethernet padding after the VXLAN payload.
            _ = vx_mbuf_adj(m, UInt16(truncatingIfNeeded: aux[i]))
            let excess = Int(vx_mbuf_pkt_len(m)) &- Int(innerLength[i])
            if excess > 0 { _ = vx_mbuf_trim(m, UInt16(truncatingIfNeeded: excess)) }
            let target = innerTarget[i]
            if target == Self.flood {
                if s != memoSegment {
                    let entry = segments[Int(s)]
                    memoSegment = s
                    memoPort = -1
                    if entry.accessCount == 1 {
                        let e = Int(accessPorts[Int(entry.accessStart)])
                        if endpointVLAN[e] == 0 { memoPort = Int(endpointPort[e]) }
                    }
                }
                if memoPort >= 0 {
                    tx.push(m, to: memoPort)
                    count(.decapsulated)
                    continue
                }
            }
            // Split horizon: a decapsulated frame only ever goes to local ports of its own VNI.
            if target >= FDBTarget.localBase && endpointSegment[Int(target &- FDBTarget.localBase)] == s {
                send(m, toEndpoint: target &- FDBTarget.localBase, tx: tx)
                count(.decapsulated)
            } else {
                deliver(m, segment: Int(s), tx: tx)
            }
        }
    }

    /// Whether packet i's outer source may send VXLAN for `segment` (`allowed_remotes`): checked before any
    /// lookup or learning. Without a list for the segment it costs one byte load.
    @inlinable @inline(__always)
    func admits(_ i: Int, segment: Int32) -> Bool {
        if segmentFiltered[Int(segment)] == 0 { return true }
        return outerIsIPv6[i] != 0
            ? remoteFilters[Int(segment)].allows(words: (outerSource6[2 &* i], outerSource6[2 &* i &+ 1]))
            : remoteFilters[Int(segment)].allows(IPv4Address(outerSource[i]))
    }

    /// Inner addresses of a frame in a known segment: the destination picks the local port (lookup queued when
    /// not cached), the source is learned behind the outer source address.
    @inlinable @inline(__always)
    func classifyInner(_ m: OpaquePointer, index i: Int, segment: Int32, now: UInt32,
                       lastSource: (UInt64, UInt64, UInt64, UInt64, UInt8)) -> (UInt64, UInt64, UInt64, UInt64, UInt8) {
        var lastSource = lastSource
        let entry = segments[Int(segment)]
        let inner = vx_mbuf_data(m) + Int(aux[i])
        if entry.learning && slowPath != nil && inner.load(fromByteOffset: 6, as: UInt8.self) & 1 == 0 {
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
    /// its VNI (in `state[i]`), outer header length, inner length and outer source are recorded.
    @inlinable @inline(__always)
    func validate(_ m: OpaquePointer, index i: Int) -> Int {
        let dataLength = Int(vx_mbuf_data_len(m))
        let packetLength = Int(vx_mbuf_pkt_len(m))
        if dataLength < VXLANLayout.ethernetLength { return DropReason.truncated.rawValue }
        let f = vx_mbuf_data(m)
        // Destination MAC: ours, or group-addressed (those are not VXLAN for us and fail below).
        let first = f.load(as: UInt8.self)
        if first & 1 == 0 && (f.loadUnaligned(as: UInt64.self) & 0xFFFF_FFFF_FFFF) != underlayMACBits {
            return DropReason.notOurMAC.rawValue
        }
        let type = load16(f, 12)
        if type == VXLANLayout.etherTypeIPv6 { return validate6(m, f, index: i, dataLength: dataLength, packetLength: packetLength) }
        if type != VXLANLayout.etherTypeIPv4 { return DropReason.notIP.rawValue }
        if dataLength < VXLANLayout.ethernetLength &+ VXLANLayout.ipv4Length { return DropReason.truncated.rawValue }
        let versionIHL = f.load(fromByteOffset: 14, as: UInt8.self)
        let ihl = Int(versionIHL & 0x0F) &* 4
        let ipLength = Int(load16(f, 16))
        if versionIHL >> 4 != 4 || ihl < VXLANLayout.ipv4Length || ipLength < ihl { return DropReason.badIPHeader.rawValue }
        if VXLANLayout.ethernetLength &+ ipLength > packetLength || VXLANLayout.ethernetLength &+ ihl > dataLength {
            return DropReason.truncated.rawValue
        }
        if !ipv4HeaderChecksumIsValid(f + VXLANLayout.ipOffset, length: ihl) { return DropReason.badIPChecksum.rawValue }
        if load16(f, 20) & 0x3FFF != 0 { return DropReason.ipFragment.rawValue }
        if load32(f, VXLANLayout.ipDestinationOffset) != underlayAddress { return DropReason.wrongDestination.rawValue }
        if f.load(fromByteOffset: 23, as: UInt8.self) != VXLANLayout.protocolUDP { return DropReason.notUDP.rawValue }
        let udp = VXLANLayout.ethernetLength &+ ihl
        if ipLength < ihl &+ VXLANLayout.udpLength || dataLength < udp &+ VXLANLayout.udpLength { return DropReason.truncated.rawValue }
        let reason = validateVXLAN(f, index: i, udp: udp, ipPayload: ipLength &- ihl, dataLength: dataLength)
        if reason < 0 {
            outerSource[i] = load32(f, VXLANLayout.ipSourceOffset)
            outerIsIPv6[i] = 0
        }
        return reason
    }

    /// The IPv6 half of `validate`: fixed header, no extension headers, our address, a UDP checksum that is
    /// present and right (RFC 8200).
    @inline(never) @usableFromInline
    func validate6(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, index i: Int, dataLength: Int, packetLength: Int) -> Int {
        let fixed = VXLANLayout.ethernetLength &+ 40
        if dataLength < fixed { return DropReason.truncated.rawValue }
        if f.load(fromByteOffset: 14, as: UInt8.self) >> 4 != 6 { return DropReason.badIPHeader.rawValue }
        let payload = Int(load16(f, 18))
        if fixed &+ payload > packetLength { return DropReason.truncated.rawValue }
        let next = f.load(fromByteOffset: 20, as: UInt8.self)
        if next == 44 { return DropReason.ipFragment.rawValue }
        if !hasAddress6 || f.loadUnaligned(fromByteOffset: VXLANLayout.ip6DestinationOffset, as: UInt64.self) != underlayAddress6.0
            || f.loadUnaligned(fromByteOffset: VXLANLayout.ip6DestinationOffset &+ 8, as: UInt64.self) != underlayAddress6.1 {
            return DropReason.wrongDestination.rawValue
        }
        if next != VXLANLayout.protocolUDP { return DropReason.notUDP.rawValue }
        if payload < VXLANLayout.udpLength || dataLength < fixed &+ VXLANLayout.udpLength { return DropReason.truncated.rawValue }
        if load16(f, VXLANLayout.udp6Offset &+ 2) != udpPort { return DropReason.wrongUDPPort.rawValue }
        if load16(f, VXLANLayout.udp6ChecksumOffset) == 0 || !udp6ChecksumIsValid(m, f, payload: payload, dataLength: dataLength) {
            return DropReason.badUDPChecksum.rawValue
        }
        let reason = validateVXLAN(f, index: i, udp: fixed, ipPayload: payload, dataLength: dataLength)
        if reason < 0 {
            outerSource6[2 &* i] = f.loadUnaligned(fromByteOffset: VXLANLayout.ip6SourceOffset, as: UInt64.self)
            outerSource6[2 &* i &+ 1] = f.loadUnaligned(fromByteOffset: VXLANLayout.ip6SourceOffset &+ 8, as: UInt64.self)
            outerIsIPv6[i] = 1
        }
        return reason
    }

    /// Verifies the UDP checksum of an IPv6 packet: pseudo-header (addresses, length, next header) plus the whole
    /// UDP datagram, checksum included, must sum to 0xFFFF.
    @inlinable @inline(__always)
    func udp6ChecksumIsValid(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, payload: Int, dataLength: Int) -> Bool {
        let udpLength = Int(load16(f, VXLANLayout.udp6LengthOffset))
        guard udpLength <= payload, VXLANLayout.udp6Offset &+ udpLength <= dataLength else {
            return vx_ipv6_l4_cksum_verify(m, 14, UInt16(VXLANLayout.udp6Offset)) == 0     // spans segments
        }
        var sum = UInt32(rawChecksum(f + VXLANLayout.ip6SourceOffset, length: 32))
        sum &+= UInt32(UInt16(truncatingIfNeeded: udpLength).byteSwapped) &+ UInt32(UInt16(VXLANLayout.protocolUDP).byteSwapped)
        sum &+= UInt32(rawChecksum(f + VXLANLayout.udp6Offset, length: udpLength))
        return foldChecksum(sum) == 0xFFFF
    }

    /// UDP length, VXLAN flags and the inner frame, for either outer family (`udp`: offset of the UDP header).
    @inlinable @inline(__always)
    func validateVXLAN(_ f: UnsafeMutableRawPointer, index i: Int, udp: Int, ipPayload: Int, dataLength: Int) -> Int {
        let headers = udp &+ VXLANLayout.udpLength &+ VXLANLayout.vxlanLength
        if load16(f, udp &+ 2) != udpPort { return DropReason.wrongUDPPort.rawValue }
        let udpLength = Int(load16(f, udp &+ 4))
        if udpLength > ipPayload || udpLength < VXLANLayout.udpLength &+ VXLANLayout.vxlanLength || dataLength < headers {
            return DropReason.truncated.rawValue
        }
        let inner = udpLength &- VXLANLayout.udpLength &- VXLANLayout.vxlanLength
        if inner < VXLANLayout.minimumInnerFrame || dataLength < headers &+ VXLANLayout.minimumInnerFrame {
            return DropReason.innerTooShort.rawValue
        }
        let vxlan = udp &+ VXLANLayout.udpLength
        if f.load(fromByteOffset: vxlan, as: UInt8.self) & VXLANLayout.flagI == 0 { return DropReason.badFlags.rawValue }
        if load16(f, headers &+ 12) == VXLANLayout.etherTypeVLAN { return DropReason.innerVLAN.rawValue }
        // Strict: flags exactly I, reserved bytes 1-3 and 7 zero.
        if strict && (load32(f, vxlan) != 0x0800_0000 || f.load(fromByteOffset: vxlan &+ 7, as: UInt8.self) != 0) {
            return DropReason.reservedBits.rawValue
        }
        state[i] = Int32(bitPattern: load32(f, vxlan &+ 4) >> 8)
        aux[i] = Int32(headers)
        innerLength[i] = Int32(inner)
        return -1
    }

    /// ARP, and ICMP to the VTEP address, go to the slow path; everything else that is not VXLAN is dropped.
    @inline(never) @usableFromInline
    func puntOrDrop(_ m: OpaquePointer, _ reason: DropReason) {
        if let rings = slowPath {
            let f = vx_mbuf_data(m)
            let type = load16(f, 12)
            // ICMPv6 may be addressed to the VTEP's solicited-node group rather than to it (Neighbor Discovery).
            let forControl = (reason == .notIP && type == VXLANLayout.etherTypeARP)
                || (reason == .notUDP && type == VXLANLayout.etherTypeIPv4
                    && f.load(fromByteOffset: 23, as: UInt8.self) == VXLANLayout.protocolICMP)
                || ((reason == .notUDP || reason == .wrongDestination) && type == VXLANLayout.etherTypeIPv6 && hasAddress6
                    && vx_mbuf_data_len(m) >= 54 && f.load(fromByteOffset: 20, as: UInt8.self) == VXLANLayout.protocolICMPv6)
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
        if entry.accessCount == 1 {
            send(m, toEndpoint: accessPorts[Int(entry.accessStart)], tx: tx)
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
            send(copy, toEndpoint: accessPorts[Int(entry.accessStart) &+ p], tx: tx)
        }
        count(.decapsulated)
    }
}
