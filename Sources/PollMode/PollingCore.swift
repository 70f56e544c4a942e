import CDPDK
import CTapPort
import Glibc
import Synchronization

/// What a polling core runs on every received burst. Implementations consume every mbuf they are given:
/// they stage it on `tx` or free it. Called with up to `PollingCore.burstSize` packets.
public protocol BurstProcessor {
    mutating func process(_ packets: UnsafeMutablePointer<OpaquePointer?>, count: Int, fromPort port: Int, tx: TxStage)
    /// Called after every poll round, once all queues were read (timers, housekeeping). Default: nothing.
    mutating func afterPollRound(tx: TxStage)
}

extension BurstProcessor {
    @inlinable public mutating func afterPollRound(tx: TxStage) {}
}

/// One RX queue a core polls: the local port index (into the dataplane's port list) and its DPDK ids, or for a
/// tap port (TapPort.swift) the tap queue the core reads itself.
public struct RxQueue: @unchecked Sendable {
    public var localPort: Int
    public var portID: UInt16
    public var queueID: UInt16
    public var tap: OpaquePointer?
    public init(localPort: Int, portID: UInt16, queueID: UInt16, tap: OpaquePointer? = nil) {
        self.localPort = localPort; self.portID = portID; self.queueID = queueID; self.tap = tap
    }

    /// Queue `queue` of `port`, whichever kind of port it is.
    public init(localPort: Int, port: EthPort, queue: Int) {
        self.init(localPort: localPort, portID: port.id, queueID: UInt16(queue), tap: port.tapQueue(queue))
    }
}

/// A polling core's back-off when it receives nothing (as OVS's `pmd-sleep-max`): polling at full load costs
/// nothing more, an idle core gives its CPU back, and the first packet after a pause waits at most
/// `maxMicroseconds` (plus the kernel's wake-up).
public struct IdleSleep: Sendable, Equatable {
    public var maxMicroseconds: Int
    /// Empty rounds in a row before the first sleep.
    public var spinRounds: Int
    public init(maxMicroseconds: Int, spinRounds: Int = 1000) { self.maxMicroseconds = maxMicroseconds; self.spinRounds = spinRounds }
}

/// A request to stop, set from a signal handler or the control plane and read once per poll round.
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func request() { flag.store(true, ordering: .relaxed) }
    public var isRequested: Bool { flag.load(ordering: .relaxed) }
}

/// The run-to-completion loop of one polling core: receive a burst from each of its queues, hand it to
/// the processor, send what was staged. Everything it touches per packet was allocated before it started.
public struct PollingCore<Processor: BurstProcessor> {
    public static var burstSize: Int { 32 }

    public var processor: Processor
    public let tx: TxStage
    public let portCounters: CounterBlock
    /// The core's own round and cycle accounting (`CoreCounter`), written by the core only.
    public let cycleCounters: CounterBlock
    /// The queues this core reads, in slots of which the first `queueCount` may be in use; a slot is read only
    /// while `queueActive` is 1. Ports come and go at run time (`activate`/`deactivate`, from the control thread):
    /// a deactivated slot (2) is reused only after `reclaimQueues()`, which the control thread calls once the core
    /// has passed a quiescent state (it may have been reading the slot); only free slots (0) are written.
    @usableFromInline let queues: UnsafeMutablePointer<RxQueue>
    @usableFromInline let queueActive: UnsafeMutablePointer<UInt8>
    @usableFromInline let queueCountPointer: UnsafeMutablePointer<UInt32>
    public let queueCapacity: Int
    @usableFromInline let rxBuffer: UnsafeMutablePointer<OpaquePointer?>
    /// Owns the arrays above.
    let arena = Arena()
    /// What the control thread may change while the core runs, without touching the core's own struct.
    public let control: PollingCoreControl
    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    @usableFromInline let cycles: UnsafeMutablePointer<UInt64>
    /// The TSC at the end of the previous round (or when polling started).
    @usableFromInline var lastTSC: UInt64
    /// Backing off when idle; nil: spin (set before `run`).
    public var idleSleep: IdleSleep?

    /// - Parameters:
    ///   - rxQueues: the queues this core reads.
    ///   - txQueues: for every local port, the DPDK port and the TX queue this core owns on it.
    ///   - portCapacity: local ports the core can ever serve (ports attached at run time included); at least
    ///     `txQueues.count`.
    public init(processor: Processor, rxQueues: [RxQueue], txQueues: [(port: UInt16, queue: UInt16)], portCapacity: Int = 0) {
        self.processor = processor
        let ports = max(portCapacity, txQueues.count, (rxQueues.map(\.localPort).max() ?? -1) + 1)
        portCounters = CounterBlock(count: ports * PortCounter.allCases.count)
        tx = TxStage(ports: txQueues, capacity: ports, counters: portCounters)
        queueCapacity = max(ports, rxQueues.count)
        queues = arena.array(queueCapacity, of: RxQueue(localPort: 0, portID: 0, queueID: 0))
        for (i, q) in rxQueues.enumerated() { queues[i] = q }
        queueActive = arena.array(queueCapacity, of: 0)
        for i in rxQueues.indices { queueActive[i] = 1 }
        queueCountPointer = arena.array(1, of: UInt32(rxQueues.count))
        rxBuffer = arena.array(PollingCore.burstSize, of: nil)
        control = PollingCoreControl(queues: queues, queueActive: queueActive, queueCountPointer: queueCountPointer,
                                     queueCapacity: queueCapacity, tx: tx, portCounters: portCounters, arena: arena)
        counters = portCounters.base
        cycleCounters = CounterBlock(count: CoreCounter.allCases.count)
        cycles = cycleCounters.base
        lastTSC = vx_tsc()
    }

    /// One round over every queue. Returns the number of packets received.
    ///
    /// Cycle accounting, as OVS's `dpif-netdev/pmd-perf-show` splits a PMD's time: one TSC read per round, at its
    /// end; the cycles since the previous read are the round's, busy if it received at least one packet, idle
    /// otherwise. (Called outside `run`, a round also gets the time since the previous call.)
    @inlinable @discardableResult
    public mutating func pollOnce() -> Int {
        var total = 0
        let queueCount = Int(vx_load_acquire_u32(queueCountPointer))
        for slot in 0..<queueCount {
            if vx_load_acquire_u8(queueActive + slot) != 1 { continue }
            let q = queues[slot]
            let n = q.tap == nil ? Int(rte_eth_rx_burst(q.portID, q.queueID, rxBuffer, UInt16(PollingCore.burstSize)))
                : Int(vx_tap_rx_burst(q.tap, rxBuffer, UInt16(PollingCore.burstSize)))
            if n == 0 { continue }
            var bytes: UInt64 = 0
            for i in 0..<n { bytes &+= UInt64(vx_mbuf_pkt_len(rxBuffer[i])) }
            counters[PortCounter.slot(port: q.localPort, .rxPackets)] &+= UInt64(n)
            counters[PortCounter.slot(port: q.localPort, .rxBytes)] &+= bytes
            counters[PortCounter.slot(port: q.localPort, .rxBursts)] &+= 1
            processor.process(rxBuffer, count: n, fromPort: q.localPort, tx: tx)
            total &+= n
        }
        processor.afterPollRound(tx: tx)
        tx.flushAll()
        let now = vx_tsc()
        let spent = now &- lastTSC
        lastTSC = now
        if total > 0 {
            cycles[CoreCounter.busyCycles.rawValue] &+= spent
            cycles[CoreCounter.busyRounds.rawValue] &+= 1
            cycles[CoreCounter.packets.rawValue] &+= UInt64(total)
        } else {
            cycles[CoreCounter.idleCycles.rawValue] &+= spent
            cycles[CoreCounter.idleRounds.rawValue] &+= 1
        }
        return total
    }

    /// Polls until `stop` is requested.
    @inlinable
    public mutating func run(until stop: StopSignal) {
        lastTSC = vx_tsc()
        if let idle = idleSleep, idle.maxMicroseconds > 0 {
            runBackingOff(until: stop, idle)
        } else {
            while !stop.isRequested { pollOnce() }
        }
        tx.flushAll()
    }

    /// `run` with `IdleSleep`: after `spinRounds` empty rounds in a row the core sleeps between rounds, 1 us at
    /// first, doubling up to `maxMicroseconds`; a round that receives anything goes back to spinning. The sleeps
    /// are counted (`sleeps`, `sleptCycles`); the timer slack is 1 us so that a sleep ends when asked.
    @usableFromInline
    mutating func runBackingOff(until stop: StopSignal, _ idle: IdleSleep) {
        _ = vx_set_timer_slack_ns(1000)
        var empty = 0, sleep = 0
        while !stop.isRequested {
            if pollOnce() > 0 { empty = 0; sleep = 0; continue }
            empty &+= 1
            if empty < idle.spinRounds { continue }
            sleep = min(max(sleep &* 2, 1), idle.maxMicroseconds)
            let before = vx_tsc()
            usleep(UInt32(sleep))
            cycles[CoreCounter.sleptCycles.rawValue] &+= vx_tsc() &- before
            cycles[CoreCounter.sleeps.rawValue] &+= 1
        }
    }

    /// Frees what is still staged once the core has stopped (not sent); the buffers go with the core (its arena).
    public func release() {
        tx.discardAll()
    }
}

/// A polling core's side that the control thread works on while the core runs: the RX queue slots (ports attached
/// and detached at run time), the TX stage's port table and the port counters of a slot being set up. It holds the
/// same raw arrays as the core (handed over with the protocol each method states: release stores, slots reused only
/// after a grace period), never the core's struct itself, which only the core's thread touches while it runs.
public struct PollingCoreControl: @unchecked Sendable {
    let queues: UnsafeMutablePointer<RxQueue>
    let queueActive: UnsafeMutablePointer<UInt8>
    let queueCountPointer: UnsafeMutablePointer<UInt32>
    let queueCapacity: Int
    public let tx: TxStage
    public let portCounters: CounterBlock
    /// Keeps the arrays alive as long as this control is held.
    let arena: Arena

    /// Starts reading `queue` (control thread; the core picks it up at its next round). The port's TX side must
    /// be set first (`tx.setPort`).
    public func activate(_ queue: RxQueue) -> Bool {
        let count = Int(vx_load_acquire_u32(queueCountPointer))
        guard let slot = (0..<queueCapacity).first(where: { queueActive[$0] == 0 }) else { return false }
        queues[slot] = queue
        vx_store_release_u8(queueActive + slot, 1)
        if slot >= count { vx_store_release_u32(queueCountPointer, UInt32(slot + 1)) }
        return true
    }

    /// Reads local port `port`'s deactivated queues again (an unplug that could not wait for the core).
    public func reactivate(localPort port: Int) {
        let count = Int(vx_load_acquire_u32(queueCountPointer))
        for slot in 0..<count where queueActive[slot] == 2 && queues[slot].localPort == port {
            vx_store_release_u8(queueActive + slot, 1)
        }
    }

    /// Makes the slots of deactivated queues reusable; only once the core passed a quiescent state since.
    public func reclaimQueues() {
        for slot in 0..<queueCapacity where queueActive[slot] == 2 { queueActive[slot] = 0 }
    }

    /// Stops reading every queue of local port `port` (control thread). The core may be in the middle of a round
    /// that reads it: wait for it to pass a quiescent state before stopping the port.
    public func deactivate(localPort port: Int) {
        let count = Int(vx_load_acquire_u32(queueCountPointer))
        for slot in 0..<count where queueActive[slot] == 1 && queues[slot].localPort == port {
            vx_store_release_u8(queueActive + slot, 2)
        }
    }

}
