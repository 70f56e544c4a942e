import CDPDK
import PollMode
import Synchronization
import VTEPConfig

/// Packet tracing (`vxlanctl trace`), as VPP's packet trace: the next N packets received (optionally on one
/// port) are recorded with what the pipeline decided for each, by the core that received them.
///
/// Off, it costs one relaxed load of a shared word per burst (`PacketTraceCore.isArmed`): nothing per packet.
/// Armed, the control word holds the packets still to trace, the port filter and the session; a core takes
/// packets from it with one compare-and-swap per burst, copies each one's first bytes into its own preallocated
/// buffer, and records at the decision points (classification, FDB result, the outcome). Outcomes are read as
/// the difference of the core's own counters around each packet's second pass, and drops through `drop`: the
/// forwarding functions call the hooks here only behind a branch on the burst's `tracing` flag. At the end of the burst the core publishes its records
/// with one release store; the control thread reads only published records.
public final class PacketTraceControl: @unchecked Sendable {
    /// At most this many packets per trace (and so per core buffer).
    public static let maxPackets = 1000
    /// Records per core: every packet of a trace may arrive on one core.
    public static let coreCapacity = 1024

    /// Bits 0-23: packets still to trace (0: off); 24-39: local port + 1 (0: any); 40-63: the session.
    @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt64>>
    private let state = Mutex<State>(State())

    private struct State {
        var cores: [PacketTraceCore] = []
        var session: UInt64 = 0
        var active: ActiveTrace?
    }

    /// The trace running (or finished and not yet collected).
    public struct ActiveTrace: Sendable {
        public var session: UInt64
        public var requested: Int
        public var port: Int?
        public var started: Double
        public var deadline: Double
    }

    public init() {
        word = .allocate(capacity: 1)
        word.initialize(to: Atomic(0))
    }

    deinit {
        state.withLock { s in for c in s.cores { c.deallocate() } }
        word.deinitialize(count: 1)
        word.deallocate()
    }

    /// A core's buffer (one per processor), allocated here and freed with the control.
    func makeCore(counterCount: Int) -> PacketTraceCore {
        let core = PacketTraceCore(word: word, counterCount: counterCount)
        state.withLock { $0.cores.append(core) }
        return core
    }

    public var active: ActiveTrace? { state.withLock { $0.active } }

    /// Arms a new session for `count` packets (from local port `port`, or any). Fails when one is active: the
    /// caller ends it first (`finish`).
    public func start(count: Int, port: Int?, now: Double, timeout: Double) -> ActiveTrace? {
        precondition((1...Self.maxPackets).contains(count))
        return state.withLock { s in
            if s.active != nil { return nil }
            s.session = (s.session + 1) & 0xFF_FFFF
            if s.session == 0 { s.session = 1 }
            let trace = ActiveTrace(session: s.session, requested: count, port: port, started: now, deadline: now + timeout)
            s.active = trace
            let filter = UInt64(port.map { $0 + 1 } ?? 0) & 0xFFFF
            word.pointee.store(s.session << 40 | filter << 24 | UInt64(count), ordering: .releasing)
            return trace
        }
    }

    /// Records published so far for the active session.
    public func published(session: UInt64) -> Int {
        let cores = state.withLock { $0.cores }
        return cores.reduce(0) { $0 + $1.published(session: session) }
    }

    /// Disarms the active session, waits (at most `grace` seconds) for the packets cores already took to be
    /// published, and returns its records in the order they were taken. The session is over afterwards.
    public func finish(grace: Double = 0.1) -> (trace: ActiveTrace, packets: [TracedPacket])? {
        guard let trace = state.withLock({ $0.active }) else { return nil }
        // Disarm: keep the session bits, no packets left. What was left tells how many the cores took.
        var left = 0
        var w = word.pointee.load(ordering: .acquiring)
        while true {
            let (done, seen) = word.pointee.compareExchange(expected: w, desired: w & ~0xFF_FFFF, ordering: .acquiringAndReleasing)
            if done { left = w >> 40 == trace.session ? Int(w & 0xFF_FFFF) : 0; break }
            w = seen
        }
        let taken = trace.requested - left
        let cores = state.withLock { $0.cores }
        let until = monotonicClock() + grace
        while cores.reduce(0, { $0 + $1.published(session: trace.session) }) < taken && monotonicClock() < until {
            usleep(1000)
        }
        var packets: [TracedPacket] = []
        for c in cores { packets += c.collect(session: trace.session, requested: trace.requested) }
        packets.sort { $0.index < $1.index }
        state.withLock { $0.active = nil }
        return (trace, packets)
    }
}

/// One traced packet as the control thread reads it: the record and the packet's first bytes.
public struct TracedPacket: Sendable {
    /// Order among the packets of its trace (0 first).
    public var index: Int
    public var record: PacketTraceRecord
    /// The packet's first bytes as received (at most `PacketTraceRecord.capturedBytes`).
    public var bytes: [UInt8]
}

/// An address a record holds (a tunnel's remote), as plain values.
public struct TraceAddress: Sendable, Equatable {
    public var isIPv6: Bool = false
    /// IPv4, host order.
    public var v4: UInt32 = 0
    /// IPv6 as the fast path keeps it: two native-order loads of the bytes.
    public var w0: UInt64 = 0, w1: UInt64 = 0

    public var address: IPAddress {
        if !isIPv6 { return .v4(IPv4Address(v4)) }
        var words = (w0, w1)
        let bytes = withUnsafeBytes(of: &words) { Array($0) }
        return .v6(IPv6Address(bytes: bytes)!)
    }
}

/// What the pipeline did with one packet. Plain values only: written by one core, read once published.
public struct PacketTraceRecord: Sendable {
    public static let capturedBytes = 128

    public enum Direction: UInt8, Sendable { case access, underlay, detached }
    /// The FDB: not looked up (dropped before), hit, miss (flooded), group destination (flooded without a
    /// lookup), or a VNI with one local port (decapsulated to it without a lookup).
    public enum Lookup: UInt8, Sendable { case none, hit, miss, broadcast, singlePort }
    public enum Action: UInt8, Sendable {
        case none
        /// Into a tunnel (`remote`).
        case encapsulated
        /// To another local endpoint (`port`, `vlan`).
        case switched
        /// Local copies and head-end replication (`copies` destinations).
        case flooded
        /// To one access port (`port`, `vlan`).
        case decapsulated
        /// To every access port of the VNI (`copies`).
        case decapsulatedToAll
        case punted
        case dropped
    }
    public enum Segmentation: UInt8, Sendable { case none, segmented, fragmented }

    /// The value of the trace's packet counter this packet took (requested ... 1).
    public var claim: UInt32 = 0
    public var lcore: UInt32 = 0
    /// Local port index it was received on.
    public var port: Int32 = 0
    public var length: UInt32 = 0
    public var captured: UInt16 = 0
    public var direction: Direction = .access
    /// Classification: VNI slot and VNI (VNI slot -1: not classified), the access endpoint it came from.
    public var vniSlot: Int32 = -1
    public var vni: UInt32 = 0
    public var endpoint: Int32 = -1
    public var endpointPort: Int32 = -1
    public var endpointVLAN: UInt16 = 0
    /// The FDB result; for a hit the target, as a remote or a local port (and VLAN).
    public var lookup: Lookup = .none
    public var target: Int32 = -1
    public var targetRemote = TraceAddress()
    public var targetPort: Int32 = -1
    public var targetVLAN: UInt16 = 0
    /// The outcome.
    public var action: Action = .none
    public var copies: UInt32 = 0
    public var remote = TraceAddress()
    public var actionPort: Int32 = -1
    public var actionVLAN: UInt16 = 0
    public var segmentation: Segmentation = .none
    public var segments: UInt32 = 0
    /// The first drop reason met (`DropReason` raw value, -1: none) and how many drops (copies, segments) in all.
    public var dropReason: Int16 = -1
    public var drops: UInt16 = 0

    public var drop: DropReason? { dropReason >= 0 ? DropReason(rawValue: Int(dropReason)) : nil }
}

/// A core's side of tracing: pointers into memory the control owns, no reference counting.
public struct PacketTraceCore: @unchecked Sendable {
    @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt64>>
    /// session << 32 | records published, stored (release) by the core at the end of a burst.
    let publishedWord: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let core: UnsafeMutablePointer<CoreState>
    @usableFromInline let records: UnsafeMutablePointer<PacketTraceRecord>
    @usableFromInline let bytes: UnsafeMutableRawPointer
    /// Per packet of the burst: its record, or -1.
    @usableFromInline let slots: UnsafeMutablePointer<Int32>
    /// The core's counters when the packet in hand (`current`) began its second pass.
    @usableFromInline let snapshot: UnsafeMutablePointer<UInt64>
    @usableFromInline let counterCount: Int

    @usableFromInline struct CoreState {
        var session: UInt64 = 0
        var used = 0
        /// Records of this burst start here.
        var burstFirst = 0
        /// The record of the packet in its second pass, or -1.
        var current: Int32 = -1
        var burst: UnsafeMutablePointer<OpaquePointer?>? = nil
        var burstCount = 0
    }

    init(word: UnsafeMutablePointer<Atomic<UInt64>>, counterCount: Int) {
        self.word = word
        publishedWord = .allocate(capacity: 1); publishedWord.initialize(to: Atomic(0))
        core = .allocate(capacity: 1); core.initialize(to: CoreState())
        records = .allocate(capacity: PacketTraceControl.coreCapacity)
        records.initialize(repeating: PacketTraceRecord(), count: PacketTraceControl.coreCapacity)
        bytes = .allocate(byteCount: PacketTraceControl.coreCapacity * PacketTraceRecord.capturedBytes, alignment: 64)
        slots = .allocate(capacity: VXLANProcessor.maxBurst); slots.initialize(repeating: -1, count: VXLANProcessor.maxBurst)
        self.counterCount = counterCount
        snapshot = .allocate(capacity: counterCount); snapshot.initialize(repeating: 0, count: counterCount)
    }

    func deallocate() {
        publishedWord.deinitialize(count: 1); publishedWord.deallocate()
        core.deallocate(); records.deallocate(); bytes.deallocate(); slots.deallocate(); snapshot.deallocate()
    }

    /// Once per burst: whether a trace wants packets (one relaxed load).
    @inlinable @inline(__always)
    var isArmed: Bool { word.pointee.load(ordering: .relaxed) & 0xFF_FFFF != 0 }

    func published(session: UInt64) -> Int {
        let w = publishedWord.pointee.load(ordering: .acquiring)
        return w >> 32 == session ? Int(w & 0xFFFF_FFFF) : 0
    }

    func collect(session: UInt64, requested: Int) -> [TracedPacket] {
        let n = published(session: session)
        return (0..<n).map { i in
            let r = records[i]
            let b = UnsafeRawBufferPointer(start: bytes + i * PacketTraceRecord.capturedBytes, count: Int(r.captured))
            return TracedPacket(index: requested - Int(r.claim), record: r, bytes: Array(b))
        }
    }

    /// Takes packets of this burst for the trace (one compare-and-swap), copies their first bytes and starts
    /// their records. Returns whether any was taken.
    @usableFromInline
    func begin(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, port: Int, direction: PacketTraceRecord.Direction) -> Bool {
        var w = word.pointee.load(ordering: .acquiring)
        var take = 0, used = 0
        while true {
            let left = Int(w & 0xFF_FFFF)
            let filter = Int(w >> 24 & 0xFFFF)
            if left == 0 || (filter != 0 && filter - 1 != port) { return false }
            used = w >> 40 == core.pointee.session ? core.pointee.used : 0
            take = min(left, n, PacketTraceControl.coreCapacity - used)
            if take <= 0 { return false }
            let (done, seen) = word.pointee.compareExchange(expected: w, desired: w - UInt64(take), ordering: .acquiringAndReleasing)
            if done { break }
            w = seen
        }
        let session = w >> 40
        if session != core.pointee.session {
            core.pointee.session = session
            core.pointee.used = 0
            publishedWord.pointee.store(session << 32, ordering: .releasing)
        }
        let left = UInt32(w & 0xFF_FFFF)
        let lcore = vx_lcore_id()
        for i in 0..<n {
            guard i < take else { slots[i] = -1; continue }
            let m = packets[i].unsafelyUnwrapped
            let index = used &+ i
            slots[i] = Int32(index)
            let captured = min(Int(vx_mbuf_data_len(m)), PacketTraceRecord.capturedBytes)
            (bytes + index &* PacketTraceRecord.capturedBytes).copyMemory(from: vx_mbuf_data(m), byteCount: captured)
            var r = PacketTraceRecord()
            r.claim = left &- UInt32(i)
            r.lcore = lcore
            r.port = Int32(port)
            r.length = vx_mbuf_pkt_len(m)
            r.captured = UInt16(captured)
            r.direction = direction
            records[index] = r
        }
        core.pointee.used = used &+ take
        core.pointee.burstFirst = used
        core.pointee.current = -1
        core.pointee.burst = packets
        core.pointee.burstCount = n
        return true
    }

    /// End of the burst: records without an outcome but with a drop are drops; then one release store publishes
    /// them.
    @usableFromInline
    func publish() {
        let c = core.pointee
        for i in c.burstFirst..<c.used where records[i].action == .none && records[i].dropReason >= 0 {
            records[i].action = .dropped
        }
        core.pointee.current = -1
        core.pointee.burst = nil
        publishedWord.pointee.store(c.session << 32 | UInt64(c.used), ordering: .releasing)
    }

    /// The record `m` belongs to: the packet in its second pass, else the burst's packet that is `m`.
    func record(for m: OpaquePointer) -> Int {
        let c = core.pointee
        if c.current >= 0 { return Int(c.current) }
        guard let burst = c.burst else { return -1 }
        for i in 0..<c.burstCount where slots[i] >= 0 && burst[i] == m { return Int(slots[i]) }
        return -1
    }
}

/// The pipeline's decision points, called only while a burst is traced (`VXLANProcessor.tracing`).
extension VXLANProcessor {
    /// `drop` of a traced burst: the reason goes to the packet's record.
    @inline(never) @usableFromInline
    func traceDrop(_ m: OpaquePointer, _ reason: DropReason) {
        guard let t = trace else { return }
        let r = t.record(for: m)
        if r < 0 { return }
        if t.records[r].dropReason < 0 { t.records[r].dropReason = Int16(reason.rawValue) }
        t.records[r].drops &+= 1
    }

    /// A traced underlay frame handed to the slow path.
    @inline(never) @usableFromInline
    func tracePunt(_ m: OpaquePointer) {
        guard let t = trace else { return }
        let r = t.record(for: m)
        if r >= 0 { t.records[r].action = .punted }
    }

    func traceAddress(tunnel: Int) -> TraceAddress {
        var a = TraceAddress()
        if view.tunnelIsIPv6[tunnel] != 0 {
            a.isIPv6 = true
            a.w0 = view.tunnelRemote6[2 &* tunnel]; a.w1 = view.tunnelRemote6[2 &* tunnel &+ 1]
        } else {
            a.v4 = view.tunnelRemote[tunnel]
        }
        return a
    }

    /// After pass 1: the VNI each traced packet was classified into and its FDB result.
    @inline(never) @usableFromInline
    func traceClassified(_ packets: UnsafeMutablePointer<OpaquePointer?>, count n: Int, decap: Bool) {
        guard let t = trace else { return }
        for i in 0..<n {
            let r = Int(t.slots[i])
            if r < 0 || (decap ? decapSlot[i] : encapTarget[i]) == Self.dropped { continue }
            let m = packets[i].unsafelyUnwrapped
            let vniSlot: Int32, target: Int32, destination: UnsafeMutableRawPointer
            if decap {
                vniSlot = decapSlot[i]
                target = innerTarget[i]
                destination = vx_mbuf_data(m) + Int(outerLength[i])
            } else {
                let e = ingress[i]
                vniSlot = view.endpointVNISlot[Int(e)]
                target = encapTarget[i]
                destination = vx_mbuf_data(m)
                t.records[r].endpoint = e
                t.records[r].endpointPort = view.endpointPort[Int(e)]
                t.records[r].endpointVLAN = view.endpointVLAN[Int(e)]
            }
            let entry = view.vniBlock(Int(vniSlot))
            t.records[r].vniSlot = vniSlot
            t.records[r].vni = entry.vni
            if destination.load(as: UInt8.self) & 1 == 1 {
                t.records[r].lookup = .broadcast
            } else if decap && entry.accessCount <= 1 {
                t.records[r].lookup = .singlePort
            } else if target == Self.flood {
                t.records[r].lookup = .miss
            } else if target >= 0 {
                t.records[r].lookup = .hit
                t.records[r].target = target
                if target >= FDBTarget.localBase {
                    let e = Int(target &- FDBTarget.localBase)
                    t.records[r].targetPort = view.endpointPort[e]
                    t.records[r].targetVLAN = view.endpointVLAN[e]
                } else {
                    t.records[r].targetRemote = traceAddress(tunnel: Int(target))
                }
            }
        }
    }

    /// Pass 2, before packet `i` (-1: after the last): settles the previous traced packet's outcome from what the
    /// core's counters did meanwhile, and notes where the next one starts.
    @inline(never) @usableFromInline
    func traceStep(_ i: Int, outcome: UnsafeMutablePointer<Int32>) {
        guard let t = trace else { return }
        let current = Int(t.core.pointee.current)
        if current >= 0 { traceSettle(t, record: current) }
        if i >= 0 && t.slots[i] >= 0 && outcome[i] != Self.dropped {
            t.snapshot.update(from: counters, count: t.counterCount)
            t.core.pointee.current = t.slots[i]
        } else {
            t.core.pointee.current = -1
        }
    }

    func traceSettle(_ t: PacketTraceCore, record r: Int) {
        func delta(_ c: PipelineCounter) -> UInt32 {
            UInt32(truncatingIfNeeded: counters[PipelineCounterLayout.slot(c)] &- t.snapshot[PipelineCounterLayout.slot(c)])
        }
        var rec = t.records[r]
        if delta(.framesSegmented) > 0 || (rec.direction == .underlay && delta(.segmentsOut) > 0) {
            rec.segmentation = .segmented; rec.segments = delta(.segmentsOut)
        } else if delta(.framesFragmented) > 0 {
            rec.segmentation = .fragmented; rec.segments = delta(.fragmentsOut)
        }
        if rec.action == .none {
            if rec.direction == .access {
                if delta(.flooded) > 0 {
                    rec.action = .flooded
                    rec.copies = delta(.floodCopies) &+ delta(.localFloodCopies)
                } else if delta(.switchedLocally) > 0 && rec.target >= FDBTarget.localBase {
                    rec.action = .switched
                    rec.actionPort = rec.targetPort; rec.actionVLAN = rec.targetVLAN
                } else if delta(.encapsulated) > 0 && rec.target >= 0 && rec.target < FDBTarget.localBase {
                    rec.action = .encapsulated
                    rec.copies = delta(.encapsulated)
                    rec.remote = rec.targetRemote
                }
            } else if rec.direction == .underlay && rec.vniSlot >= 0
                        && (delta(.decapsulated) > 0 || delta(.largeFramesDelivered) > 0 || rec.dropReason < 0) {
                // Delivered (or held for GRO until the end of the burst): to the destination's port, or every port.
                let entry = view.vniBlock(Int(rec.vniSlot))
                var e: Int32 = -1
                if rec.target >= FDBTarget.localBase && view.endpointVNISlot[Int(rec.target &- FDBTarget.localBase)] == rec.vniSlot {
                    e = rec.target &- FDBTarget.localBase
                } else if entry.accessCount == 1 {
                    e = entry.access(0)
                }
                if e >= 0 {
                    rec.action = .decapsulated
                    rec.actionPort = view.endpointPort[Int(e)]; rec.actionVLAN = view.endpointVLAN[Int(e)]
                } else if entry.accessCount > 1 {
                    rec.action = .decapsulatedToAll
                    rec.copies = UInt32(entry.accessCount)
                }
            }
        }
        t.records[r] = rec
    }
}

#if canImport(Glibc)
import Glibc
#endif

func monotonicClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
