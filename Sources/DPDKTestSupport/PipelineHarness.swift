import CDPDK
import PollMode
import VTEPConfig
import VXLANPipeline

/// The pipeline on net_ring ports, driven by hand: port 0 is the underlay, the others are access ports in
/// configuration order. Frames go in through RX rings; `run` does a poll round, a slow-path round (when there
/// is a slow path) and another poll round, and returns what each port sent.
public final class PipelineHarness {
    public let pool: PacketPool
    public let rings: [RingPort]
    public let ports: [EthPort]
    public let tables: ForwardingTables
    public let control: UnderlayControl?
    public var core: PollingCore<VXLANProcessor>
    /// Mbufs without data room for segmentation (rte_gso), from the same EAL.
    public let indirectPool: PacketPool
    private var released = false

    /// - Parameters:
    ///   - accessPorts: how many access ports to create.
    ///   - config: the YAML, given the ports' DPDK names (underlay first).
    ///   - slowPath: run an `UnderlayControl` (ARP, ND, learning), or drop control frames as a bare processor does.
    ///   - plan: the underlay's TX offload plan (software unless a test stands a NIC model in: `underlayModel`).
    ///   - completeChecksumPorts: access ports treated as kernel-attached (every TCP/UDP checksum computed).
    ///   - underlayModel: a device model that takes the underlay's bursts instead of its TX ring.
    ///   - underlayRxChecksums: treat the underlay as a port whose RX checksum offloads are on (its frames' `ol_flags`
    ///     are believed); net_ring advertises none.
    ///   - trace: packet tracing for the core (`vxlanctl trace`); kept alive by the caller.
    public init(accessPorts: Int, poolSize: Int = 2047, slowPath: Bool = true, underlayTxSize: UInt32 = 1024,
                plan: TunnelTxPlan = .software, completeChecksumPorts: Set<Int> = [], underlayModel: TransmitModel? = nil,
                underlayRxChecksums: Bool = false, trace: PacketTraceControl? = nil, config: ([String]) -> String) throws {
        try TestEAL.start()
        pool = try PacketPool(name: TestEAL.uniqueName("hpool"), count: poolSize, cacheSize: 0)
        indirectPool = try PacketPool(name: TestEAL.uniqueName("ipool"), count: 4095, cacheSize: 0, dataRoom: 0)
        var rings = [try RingPort(txSize: underlayTxSize)]
        for _ in 0..<accessPorts { rings.append(try RingPort()) }
        self.rings = rings
        let configuration = try ConfigParser.parse(config(rings.map(\.name)))
        let roles: [PortRole] = [.underlay] + configuration.access.map { a in a.vni.map { PortRole.access(vni: $0) } ?? .tagged(a.vlans) }
        let mac = configuration.underlay.mac ?? MACAddress("02:00:00:00:00:01")!
        tables = try ForwardingTables(configuration: configuration, roles: roles, underlayMAC: mac)
        control = slowPath ? try UnderlayControl(tables: tables, pool: pool, cores: 1) : nil
        ports = try rings.map { try EthPort(id: $0.id) }
        for p in ports {
            try p.configure(PortSetup(queues: 1), pool: pool)
            try p.start()
        }
        let offload = OffloadSettings(plan: plan, pools: .init(direct: pool.pointer, indirect: indirectPool.pointer),
                                      completeChecksumPorts: completeChecksumPorts, underlayRxChecksums: underlayRxChecksums)
        core = PollingCore(processor: VXLANProcessor(tables: tables, reader: 0, slowPath: control?.rings[0], offload: offload, trace: trace),
                           rxQueues: ports.enumerated().map { RxQueue(localPort: $0.offset, portID: $0.element.id, queueID: 0) },
                           txQueues: ports.map { (port: $0.id, queue: UInt16(0)) })
        core.tx.setPrepare(plan.usesHardware, port: 0)
        if let underlayModel { core.tx.setModel(underlayModel, port: 0) }
    }

    /// Injects frames on the underlay with `ol_flags` (and `packet_type`) set as a NIC would, runs a round, returns
    /// each port's output.
    public func runUnderlay(_ frames: [(bytes: [UInt8], flags: UInt64, packetType: UInt32)], now: Double = 0) -> [[[UInt8]]] {
        rings[0].inject(frames.map { f in
            let m = Mbuf.make(f.bytes, pool: pool)
            vx_mbuf_set_ol_flags(m, f.flags)
            vx_mbuf_set_packet_type(m, f.packetType)
            return m
        })
        core.pollOnce()
        if let control {
            control.poll(now: now)
            core.pollOnce()
        }
        return rings.map { $0.drain() }
    }

    /// Injects `frames[port]` (mbufs from the harness's pool), runs a round, returns each port's output.
    public func run(_ frames: [Int: [[UInt8]]] = [:], now: Double = 0) -> [[[UInt8]]] {
        for (port, list) in frames where !list.isEmpty { rings[port].inject(list.map { Mbuf.make($0, pool: pool) }) }
        core.pollOnce()
        if let control {
            control.poll(now: now)
            core.pollOnce()
        }
        return rings.map { $0.drain() }
    }

    public func pipeline(_ c: PipelineCounter) -> UInt64 { core.processor.counterBlock[PipelineCounterLayout.slot(c)] }
    public func drops(_ r: DropReason) -> UInt64 { core.processor.counterBlock[PipelineCounterLayout.slot(r)] }
    public var totalDrops: UInt64 { DropReason.allCases.reduce(0) { $0 + drops($1) } }
    public func port(_ index: Int, _ c: PortCounter) -> UInt64 { core.portCounters[PortCounter.slot(port: index, c)] }

    /// Releases everything; returns the pool's (available, capacity) just before it goes, for the leak check.
    @discardableResult
    public func release() -> (available: Int, capacity: Int) {
        guard !released else { return (pool.capacity, pool.capacity) }
        released = true
        core.release()
        core.processor.release()
        control?.release()
        for r in rings { _ = r.drain() }
        let state = (pool.available + indirectPool.available - indirectPool.capacity, pool.capacity)
        for p in ports { p.close() }
        for r in rings { r.destroy() }
        return state
    }
}
