import CDPDK
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

/// One RX queue a core polls: the local port index (into the dataplane's port list) and its DPDK ids.
public struct RxQueue: Sendable {
    public var localPort: Int
    public var portID: UInt16
    public var queueID: UInt16
    public init(localPort: Int, portID: UInt16, queueID: UInt16) {
        self.localPort = localPort; self.portID = portID; self.queueID = queueID
    }
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
    @usableFromInline let queues: UnsafeMutableBufferPointer<RxQueue>
    @usableFromInline let rxBuffer: UnsafeMutablePointer<OpaquePointer?>
    @usableFromInline let counters: UnsafeMutablePointer<UInt64>
    @usableFromInline let cycles: UnsafeMutablePointer<UInt64>
    /// The TSC at the end of the previous round (or when polling started).
    @usableFromInline var lastTSC: UInt64

    /// - Parameters:
    ///   - rxQueues: the queues this core reads.
    ///   - txQueues: for every local port, the DPDK port and the TX queue this core owns on it.
    public init(processor: Processor, rxQueues: [RxQueue], txQueues: [(port: UInt16, queue: UInt16)]) {
        self.processor = processor
        portCounters = CounterBlock(count: txQueues.count * PortCounter.allCases.count)
        tx = TxStage(ports: txQueues, counters: portCounters)
        queues = .allocate(capacity: rxQueues.count)
        _ = queues.initialize(from: rxQueues)
        rxBuffer = .allocate(capacity: PollingCore.burstSize)
        rxBuffer.initialize(repeating: nil, count: PollingCore.burstSize)
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
        for q in queues {
            let n = Int(rte_eth_rx_burst(q.portID, q.queueID, rxBuffer, UInt16(PollingCore.burstSize)))
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
        while !stop.isRequested { pollOnce() }
        tx.flushAll()
    }

    /// Releases the core's buffers once it has stopped; staged packets are freed, not sent.
    public func release() {
        tx.discardAll()
        tx.deallocate()
        queues.deallocate()
        rxBuffer.deallocate()
    }
}
