import CDPDK
import PollMode
import VTEPConfig

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
    /// Per-VNI counters (`VNICounter`), by VNI slot.
    public let vniCounterBlock: CounterBlock
    @usableFromInline let vniCounters: UnsafeMutablePointer<UInt64>

    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    /// The tables as the fast path reads them (FastPathView.swift): built once by ForwardingTables.
    @usableFromInline let view: FastPathView
    @usableFromInline let reader: UInt32
    /// Hand-off rings to and from the slow path (nil: control frames are dropped and nothing is learned).
    @usableFromInline let slowPath: SlowPathChannel?

    @usableFromInline var seenGeneration: UInt64 = 0
    /// (VNI, MAC) -> (FDB target, stamp slot) and VNI -> VNI slot, in front of the rte_hash tables.
    @usableFromInline let fdbCache: ExactMatchCache
    @usableFromInline let vniCache: ExactMatchCache
    @usableFromInline let destinations: LookupBatch
    @usableFromInline let sources: LookupBatch
    @usableFromInline let vnis: LookupBatch

    /// Owns every scratch array below (and the caches' and batches' memory).
    @usableFromInline let arena: Arena

    // Per-packet scratch, allocated once.
    // One meaning per array, each written by one stage and read by the ones after it.
    /// Encap: what pass 2 does with the frame: its FDB target (>= 0), or `flood`, `lookup` (pending), `dropped`.
    @usableFromInline let encapTarget: UnsafeMutablePointer<Int32>
    /// Encap: the inner flow's hash (outer UDP source port, IPv6 flow label).
    @usableFromInline let flowHash: UnsafeMutablePointer<UInt32>
    /// Decap: the VNI in the VXLAN header (ValidateOuter.swift).
    @usableFromInline let decapVNI: UnsafeMutablePointer<UInt32>
    /// Decap: the VNI's slot (>= 0), or `lookup` (pending), `dropped`.
    @usableFromInline let decapSlot: UnsafeMutablePointer<Int32>
    /// Decap: the outer headers' length, stripped before delivery.
    @usableFromInline let outerLength: UnsafeMutablePointer<Int32>
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
    /// Encap: 1 when the frame needs offload work (Offload.swift), decided in pass 1.
    @usableFromInline let work: UnsafeMutablePointer<UInt8>
    /// Where a frame's segments go (Segment.swift).
    @usableFromInline let segmentScratch: UnsafeMutablePointer<OpaquePointer?>
    @usableFromInline let offload: OffloadSettings
    /// Per local port: 1 when its TCP/UDP checksums may be unfinished (`OffloadSettings.completeChecksumPorts`).
    @usableFromInline let completesChecksums: UnsafeMutablePointer<UInt8>
    /// Decapsulated frames kept for rte_gro until the end of the burst (Coalesce.swift), with their ports.
    @usableFromInline let coalesceFrames: UnsafeMutablePointer<OpaquePointer?>
    @usableFromInline let coalescePorts: UnsafeMutablePointer<Int32>
    @usableFromInline let coalesceRun: UnsafeMutablePointer<OpaquePointer?>
    @usableFromInline var coalesceCount: Int {
        get { coalesceState.pointee }
        nonmutating set { coalesceState.pointee = newValue }
    }
    @usableFromInline let coalesceState: UnsafeMutablePointer<Int>
    /// Frames longer than this need offload work: the smaller of the IPv4 and (with an IPv6 address) IPv6 limits.
    @usableFromInline let workThreshold: Int
    /// The underlay's `ol_flags` carry checksum status the NIC vouches for (`OffloadSettings.underlayRxChecksums`).
    @usableFromInline let underlayRxChecksums: Bool
    /// Packet tracing (PacketTrace.swift): this core's buffer, and whether the burst in hand is traced.
    @usableFromInline let trace: PacketTraceCore?
    @usableFromInline var tracing = false

    @usableFromInline static let maxBurst = 64
    @usableFromInline static let dropped: Int32 = -1
    @usableFromInline static let flood: Int32 = -2
    @usableFromInline static let lookup: Int32 = -3
    /// Cache value for a source MAC already reported to the slow path: do not report it again.
    @usableFromInline static let learnPending: Int32 = -2

    /// - Parameters:
    ///   - reader: this core's index among the tables' RCU readers.
    ///   - slowPath: where ARP, ICMP for the VTEP and learned MACs go, and where replies come from.
    ///   - offload: the underlay's TX plan, buffers for segmentation, ports with unfinished checksums.
    ///   - trace: the dataplane's packet trace control (`vxlanctl trace`), if it has one.
    public init(tables: ForwardingTables, reader: Int = 0, slowPath: SlowPathChannel? = nil, offload: OffloadSettings = OffloadSettings(),
                trace: PacketTraceControl? = nil) {
        self.tables = tables
        counterBlock = CounterBlock(count: PipelineCounterLayout.count)
        counters = counterBlock.base
        vniCounterBlock = CounterBlock(count: tables.vniCapacity * VNICounter.stride)
        vniCounters = vniCounterBlock.base
        view = tables.fastPath
        self.reader = UInt32(reader)
        self.slowPath = slowPath
        // Every scratch array of this core in one arena, freed when the last copy of the processor goes.
        let arena = Arena()
        self.arena = arena
        fdbCache = ExactMatchCache(capacity: 512, arena: arena)
        vniCache = ExactMatchCache(capacity: 64, arena: arena)
        let n = Self.maxBurst
        destinations = LookupBatch(capacity: n, arena: arena)
        sources = LookupBatch(capacity: n, arena: arena)
        vnis = LookupBatch(capacity: n, arena: arena)
        encapTarget = arena.array(n, of: 0)
        flowHash = arena.array(n, of: 0)
        decapVNI = arena.array(n, of: 0)
        decapSlot = arena.array(n, of: 0)
        outerLength = arena.array(n, of: 0)
        innerLength = arena.array(n, of: 0)
        outerSource = arena.array(n, of: 0)
        outerSource6 = arena.array(2 * n, of: 0)
        outerIsIPv6 = arena.array(n, of: 0)
        innerTarget = arena.array(n, of: 0)
        ingress = arena.array(n, of: 0)
        injectBuffer = arena.array(32, of: nil)
        work = arena.array(n, of: 0)
        coalesceFrames = arena.array(n, of: nil)
        coalescePorts = arena.array(n, of: 0)
        coalesceRun = arena.array(n, of: nil)
        coalesceState = arena.array(1, of: 0)
        segmentScratch = arena.array(Self.maxSegments, of: nil)
        self.offload = offload
        let ports = max(1, (offload.completeChecksumPorts.max() ?? 0) + 1, tables.roles.count, tables.portCapacity)
        completesChecksums = arena.array(ports, of: 0)
        for p in offload.completeChecksumPorts where p >= 0 { completesChecksums[p] = 1 }
        underlayRxChecksums = offload.underlayRxChecksums
        workThreshold = view.hasAddress6 ? min(view.maxInnerFrame, view.maxInnerFrame6) : view.maxInnerFrame
        self.trace = trace?.makeCore(counterCount: PipelineCounterLayout.count)
        tables.registerReader(reader)
    }

    /// Marks whether local port `port` leaves TCP/UDP checksums unfinished (a kernel-attached port attached at run
    /// time); only while no frame from it can be in the core's hands.
    public func setCompletesChecksums(_ on: Bool, port: Int) { completesChecksums[port] = on ? 1 : 0 }
    /// The same flags, for the control thread to set a port's while the core runs (before any frame of the port
    /// can reach the core).
    public var completesChecksumsFlags: UnsafeMutablePointer<UInt8> { completesChecksums }

    /// Leaves RCU; call once the core has stopped. The scratch memory goes with the processor (its arena).
    public func release() {
        tables.unregisterReader(Int(reader))
    }

    @inlinable @inline(__always)
    func count(_ c: PipelineCounter, _ n: UInt64 = 1) { counters[PipelineCounterLayout.slot(c)] &+= n }

    @inlinable @inline(__always)
    func countVNI(_ vniSlot: Int32, _ c: VNICounter, _ n: UInt64 = 1) {
        vniCounters[VNICounter.slot(vniSlot: Int(vniSlot), c)] &+= n
    }

    /// Drops a frame already classified into a VNI: counted under its reason and against the VNI.
    @inlinable @inline(__always)
    func drop(_ m: OpaquePointer, _ reason: DropReason, vniSlot: Int32) {
        vniCounters[VNICounter.slot(vniSlot: Int(vniSlot), .drops)] &+= 1
        drop(m, reason)
    }

    @inlinable @inline(__always)
    func drop(_ m: OpaquePointer, _ reason: DropReason) {
        counters[PipelineCounterLayout.slot(reason)] &+= 1
        if tracing { traceDrop(m, reason) }
        vx_mbuf_free(m)
    }

    /// Once per poll round: send what the slow path queued, and tell RCU this core holds no table pointers.
    @inlinable
    public mutating func afterPollRound(tx: TxStage) {
        if let rings = slowPath {
            let n = Int(vx_ring_dequeue_burst(rings.inject, injectBuffer, 32))
            for i in 0..<n { tx.push(OpaquePointer(injectBuffer[i].unsafelyUnwrapped), to: view.underlayPort) }
            if n > 0 { count(.injected, UInt64(n)) }
        }
        vx_qsbr_quiescent(view.qsbr, reader)
    }

    @inlinable
    public mutating func process(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, fromPort port: Int, tx: TxStage) {
        // One acquire load: the generation remembered is the one whose tables this burst's lookups will see (a
        // second, plain read could take a newer value whose changes this core then never flushes for).
        let generation = vx_load_acquire_u64(view.generation)
        if generation != seenGeneration {
            seenGeneration = generation
            fdbCache.clear()
            vniCache.clear()
        }
        let now = view.clock.pointee
        var start = 0
        // Bursts larger than the scratch space (not produced by PollingCore) are handled in slices.
        while start < n {
            let slice = min(n &- start, Self.maxBurst)
            let kind = view.portEndpoint[port]
            // Tracing: one load per burst when off (PacketTrace.swift).
            if let t = trace, t.isArmed {
                tracing = t.begin(packets + start, count: slice, port: port,
                                  direction: kind == ForwardingTables.PortKind.underlay ? .underlay
                                      : kind == ForwardingTables.PortKind.detached ? .detached : .access)
            }
            if kind == ForwardingTables.PortKind.underlay {
                decapsulate(packets + start, count: slice, now: now, tx: tx)
            } else if kind == ForwardingTables.PortKind.detached {
                for i in 0..<slice { drop(packets[start &+ i].unsafelyUnwrapped, .portDetached) }
            } else {
                encapsulate(packets + start, count: slice, port: port, endpoint: kind, now: now, tx: tx)
            }
            if tracing { trace.unsafelyUnwrapped.publish(); tracing = false }
            start &+= slice
        }
    }

}
