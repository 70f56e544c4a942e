import CDPDK
import Foundation
import PollMode
import Synchronization
import VTEPConfig
import VXLANPipeline

/// A thread that can be waited for (Foundation's `Thread` cannot be joined).
public final class TestThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var finished = false

    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in
            body()
            done.signal()
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Waits until the body has returned (at most `timeout` seconds); false on timeout.
    @discardableResult
    public func join(timeout: Double = 60) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if finished { return true }
        finished = done.wait(timeout: .now() + timeout) == .success
        return finished
    }
}

struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// What one polling core thread did, written by that thread only (atomics: the test reads them while it runs).
public final class CoreActivity: Sendable {
    /// Poll rounds that received at least one packet.
    public let busyRounds = Atomic<Int>(0)
    /// All poll rounds.
    public let rounds = Atomic<Int>(0)
    /// Busy rounds during which another core completed a round of its own: both threads were running at once.
    public let overlappingRounds = Atomic<Int>(0)
    public init() {}
}

/// The pipeline as the daemon runs it with several polling cores, each on a thread of its own: every port has one
/// RX and one TX queue per core; core c polls queue c of every port with its own `VXLANProcessor` (RCU reader c,
/// its own slow-path rings) and sends on TX queue c. The slow path (`UnderlayControl`) runs on another thread with
/// a clock the test supplies. Port 0 is the underlay, the others are access ports in configuration order.
///
/// Threads: the test feeds RX queues from one thread (each RX ring has a single producer) and drains TX queues
/// from one thread (a single consumer); each core is the only consumer of its RX rings and producer of its TX rings.
public final class MultiCoreHarness: @unchecked Sendable {
    public let pool: PacketPool
    public let rings: [RingPort]
    public let ports: [EthPort]
    public let tables: ForwardingTables
    public let control: UnderlayControl
    public let coreCount: Int
    public let portCounters: [CounterBlock]
    public let pipelineCounters: [CounterBlock]
    public let vniCounters: [CounterBlock]
    public let activity: [CoreActivity]
    private let cores: [UnsafeMutablePointer<PollingCore<VXLANProcessor>>]
    private let stopCoresSignal = StopSignal()
    private let stopSlowPathSignal = StopSignal()
    private var coreThreads: [TestThread] = []
    private var slowPathThread: TestThread?
    private var released = false

    /// - Parameters:
    ///   - cores: polling cores (and queues per port).
    ///   - accessPorts: access ports after the underlay.
    ///   - config: the YAML, given the ports' DPDK names (underlay first).
    public init(cores: Int, accessPorts: Int, poolSize: Int = 4095, config: ([String]) -> String) throws {
        try TestEAL.start()
        coreCount = cores
        pool = try PacketPool(name: TestEAL.uniqueName("mcpool"), count: poolSize, cacheSize: 0)
        rings = try (0...accessPorts).map { _ in try RingPort(queues: cores) }
        let configuration = try ConfigParser.parse(config(rings.map(\.name)))
        let roles: [PortRole] = [.underlay] + configuration.access.map { a in a.vni.map { PortRole.access(vni: $0) } ?? .tagged(a.vlans) }
        let mac = configuration.underlay.mac ?? MACAddress("02:00:00:00:00:01")!
        tables = try ForwardingTables(configuration: configuration, roles: roles, underlayMAC: mac, readers: cores)
        control = try UnderlayControl(tables: tables, pool: pool, cores: cores)
        ports = try rings.map { try EthPort(id: $0.id) }
        for p in ports {
            try p.configure(PortSetup(queues: cores), pool: pool)
            try p.start()
        }
        var built: [UnsafeMutablePointer<PollingCore<VXLANProcessor>>] = []
        for c in 0..<cores {
            let core = UnsafeMutablePointer<PollingCore<VXLANProcessor>>.allocate(capacity: 1)
            core.initialize(to: PollingCore(
                processor: VXLANProcessor(tables: tables, reader: c, slowPath: control.rings[c]),
                rxQueues: ports.enumerated().map { RxQueue(localPort: $0.offset, portID: $0.element.id, queueID: UInt16(c)) },
                txQueues: ports.map { (port: $0.id, queue: UInt16(c)) }))
            built.append(core)
        }
        self.cores = built
        portCounters = built.map { $0.pointee.portCounters }
        pipelineCounters = built.map { $0.pointee.processor.counterBlock }
        vniCounters = built.map { $0.pointee.processor.vniCounterBlock }
        activity = (0..<cores).map { _ in CoreActivity() }
    }

    /// Starts one thread per core. An idle core yields its CPU (tests share machines), a busy one does not.
    public func startCores() {
        for c in 0..<coreCount {
            // The core's state belongs to its thread from here on; the harness touches it again only after `stopCores`.
            let box = UncheckedSendable(cores[c]), stop = stopCoresSignal, me = activity[c]
            let others = activity.enumerated().filter { $0.offset != c }.map(\.element)
            coreThreads.append(TestThread(name: "polling-core-\(c)") {
                let core = box.value
                while !stop.isRequested {
                    let othersBefore = others.reduce(0) { $0 + $1.rounds.load(ordering: .relaxed) }
                    let n = core.pointee.pollOnce()
                    me.rounds.add(1, ordering: .relaxed)
                    if n > 0 {
                        me.busyRounds.add(1, ordering: .relaxed)
                        if others.reduce(0, { $0 + $1.rounds.load(ordering: .relaxed) }) != othersBefore {
                            me.overlappingRounds.add(1, ordering: .relaxed)
                        }
                    } else {
                        sched_yield()
                    }
                }
                core.pointee.tx.flushAll()
            })
        }
    }

    /// Runs `control.poll(now: clock())` every `pause` microseconds on a thread of its own until `stopSlowPath`.
    public func startSlowPath(pause: UInt32 = 200, clock: @escaping @Sendable () -> Double) {
        let control = self.control, stop = stopSlowPathSignal
        slowPathThread = TestThread(name: "slow-path") {
            while !stop.isRequested {
                control.poll(now: clock())
                usleep(pause)
            }
        }
    }

    public func stopSlowPath() {
        stopSlowPathSignal.request()
        precondition(slowPathThread?.join() ?? true, "the slow path did not stop")
    }

    public func stopCores() {
        stopCoresSignal.request()
        for t in coreThreads { precondition(t.join(), "a polling core did not stop") }
    }

    // Counters, summed over the cores (plain loads of words only their core writes, as `vxlanctl show stats` does).
    public func pipeline(_ c: PipelineCounter) -> UInt64 { pipelineCounters.reduce(0) { $0 + $1[PipelineCounterLayout.slot(c)] } }
    public func drops(_ r: DropReason) -> UInt64 { pipelineCounters.reduce(0) { $0 + $1[PipelineCounterLayout.slot(r)] } }
    public var totalDrops: UInt64 { DropReason.allCases.reduce(0) { $0 + drops($1) } }
    public func port(_ index: Int, _ c: PortCounter) -> UInt64 { portCounters.reduce(0) { $0 + $1[PortCounter.slot(port: index, c)] } }
    public func port(core: Int, _ index: Int, _ c: PortCounter) -> UInt64 { portCounters[core][PortCounter.slot(port: index, c)] }
    public func slowPath(_ c: UnderlayControl.Counter) -> UInt64 { control.counters[c.rawValue] }

    /// Stops whatever still runs and releases everything; returns the pool's (available, capacity) just before it
    /// goes, for the leak check.
    @discardableResult
    public func release() -> (available: Int, capacity: Int) {
        guard !released else { return (pool.capacity, pool.capacity) }
        released = true
        stopSlowPath()
        stopCores()
        for core in cores {
            core.pointee.release()
            core.pointee.processor.release()
            core.deinitialize(count: 1)
            core.deallocate()
        }
        control.release()
        for r in rings { _ = r.drain(); r.discardReceived() }
        let state = (pool.available, pool.capacity)
        for p in ports { p.close() }
        for r in rings { r.destroy() }
        return state
    }
}
