import CDPDK
import ControlProtocol
import Foundation
import Logging
import PollMode
import VTEPConfig
import VXLANPipeline

/// The running VTEP: its ports, mempool, tables and polling cores. Built after EAL is up; `stop()` tears down
/// in order (cores, ports, buffers) so that nothing leaks and net_pcap outputs are flushed.
public final class Dataplane: @unchecked Sendable {
    public struct Core {
        public let lcore: UInt32
        public let portCounters: CounterBlock
        public let pipelineCounters: CounterBlock
        /// Per-VNI counters (`VNICounter`), by VNI slot.
        public let vniCounters: CounterBlock
        /// Rounds, busy and idle cycles, packets received (`CoreCounter`).
        public let cycleCounters: CounterBlock
        /// What the control thread changes while the core runs (queues, TX ports), never through the core itself.
        let control: PollingCoreControl
        /// Per local port: the frames from it may carry unfinished checksums (the core's `completesChecksums`).
        let completesChecksums: UnsafeMutablePointer<UInt8>
    }

    /// The running configuration: the file's, with every change made since.
    public var configuration: VTEPConfiguration { underlay.configuration }
    /// Local port index -> port: 0 is the underlay, then the access ports in configuration order, then ports
    /// attached at run time. A port removed at run time (a VM's vhost-user port) stays in its slot, closed and
    /// listed in `removedPorts`, until a new port reuses the slot.
    public var ports: [EthPort] { portsLock.withLock { portList } }
    var portList: [EthPort]
    /// Slots whose port was removed (closed); reports skip them.
    public var removedPorts: Set<Int> { portsLock.withLock { removedList } }
    var removedList: Set<Int> = []
    /// Per local port: the offloads mode it was configured with (changing it needs the port configured again).
    var portOffloads: [Int: VTEPConfiguration.OffloadMode] = [:]
    let portsLock = NSLock()
    /// Each local port's role now (`.detached` once detached).
    public var roles: [PortRole] { underlay.change { $0.roles } }
    public let pool: PacketPool
    /// Mbufs without data room for rte_gso's segments; one pool of 64 KB mbufs per large-frame af_packet port.
    public let indirectPool: PacketPool
    public internal(set) var largeFramePools: [PacketPool]
    /// For names of pools made later (ports attached at run time).
    let instance: Int
    let poolSocket: Int32
    /// How encapsulated packets leave through the underlay: what its NIC does, what vxland does in software.
    public let txPlan: TunnelTxPlan
    public let tables: ForwardingTables
    /// ARP and ICMP for the VTEP address, next-hop resolution: the slow path, on its own thread.
    public let underlay: UnderlayControl
    private var slowPathThread: Thread?
    public private(set) var cores: [Core] = []
    public let stopSignal = StopSignal()
    let lcores: [UInt32]
    /// Packet tracing (`vxlanctl trace`, TraceMethods.swift), shared by every polling core.
    public let trace = PacketTraceControl()
    private let started = Date()
    var pollingCores: [UnsafeMutablePointer<PollingCore<VXLANProcessor>>] = []
    private var launchedOnWorkers = false
    private var stopped = false
    static let instances = Counter()
    let vhostPorts: VhostPorts
    /// Run-time changes (LiveConfig.swift) one at a time, whoever asks (the control socket, SIGHUP).
    let changeLock = NSLock()
    /// Where every run-time change is logged.
    public var logger = Logger(label: "vxland")
    /// Per VNI slot: its VNI counters (summed over cores) when the VNI was added or the stats last cleared.
    var vniBaselines: [Int: [UInt64]] = [:]

    /// The frame size a `net_af_packet` port was created with (`framesz=` in its devargs; the PMD's default is
    /// 2048), or nil for other drivers.
    static func afPacketFrameSize(_ port: EthPort) -> Int? {
        guard port.capabilities.driver == "net_af_packet" else { return nil }
        guard let args = vx_port_devargs(port.id).map({ String(cString: $0) }) else { return 2048 }
        for part in args.split(separator: ",") where part.hasPrefix("framesz=") {
            return Int(part.dropFirst("framesz=".count)) ?? 2048
        }
        return 2048
    }

    /// Resolves and configures the ports, builds the tables and one polling core per lcore in `lcores`.
    /// Nothing is started yet. Throws, naming the port or key, when the configuration cannot be applied.
    ///   - txPlanOverride: the underlay TX plan to use whatever the port advertises (benchmarks of the hardware
    ///     path on ports that offer no offload; never set by vxland).
    public init(configuration: VTEPConfiguration, lcores: [UInt32], txPlanOverride: TunnelTxPlan? = nil) throws {
        guard !lcores.isEmpty else { throw SetupError("no lcore to poll on") }
        vhostPorts = try VhostPorts(configuration: configuration, queues: lcores.count)
        var ports: [EthPort] = []
        var roles: [PortRole] = []
        let underlayPort: EthPort
        do {
            if let tap = configuration.underlay.tap {
                underlayPort = try Dataplane.makeTap(name: configuration.underlay.port, tap, mode: configuration.underlay.offloads, underlay: true)
            } else {
                underlayPort = try EthPort(reference: configuration.underlay.port)
            }
        } catch { throw SetupError("underlay.port: \(error)") }
        ports.append(underlayPort); roles.append(.underlay)
        for (i, a) in configuration.access.enumerated() {
            let port: EthPort
            do {
                if let tap = a.tap {
                    port = try Dataplane.makeTap(name: a.port, tap, mode: a.offloads, underlay: false)
                } else {
                    port = try EthPort(reference: a.port)
                }
            } catch {
                for made in ports { made.close() }      // taps made so far go again
                throw SetupError("access[\(i)].port: \(error)")
            }
            if ports.contains(where: { $0.id == port.id }) {
                throw SetupError("access[\(i)].port: '\(a.port)' is port \(port.id), which is already in use")
            }
            ports.append(port)
            roles.append(a.vni.map { PortRole.access(vni: $0) } ?? .tagged(a.vlans))
        }
        self.portList = ports
        try Dataplane.checkTapBuffers(taps: ports.filter { $0.tap != nil }.count, queues: lcores.count, mbufs: configuration.resources.mbufs)
        for (i, a) in configuration.access.enumerated() { portOffloads[i + 1] = a.offloads }
        self.lcores = lcores

        let socket = lcores.first.map { EAL.socketOf(lcore: $0) } ?? Int32(SOCKET_ID_ANY)
        let poolSocket = socket < 0 ? Int32(SOCKET_ID_ANY) : socket
        let instance = Dataplane.instances.next()
        pool = try PacketPool(name: "vxland_mbufs\(instance)", count: configuration.resources.mbufs, socket: poolSocket)
        // Segments point into the frame they were cut from through mbufs without data room (rte_gso).
        indirectPool = try PacketPool(name: "vxland_indirect\(instance)", count: 8191, dataRoom: 0, socket: poolSocket)

        let mac = configuration.underlay.mac ?? MACAddress(bytes: underlayPort.macAddress)!
        tables = try ForwardingTables(configuration: configuration, roles: roles, underlayMAC: mac, readers: lcores.count)
        underlay = try UnderlayControl(tables: tables, pool: pool, cores: lcores.count)

        var largeFramePools: [PacketPool] = []
        for (index, port) in ports.enumerated() {
            let mode = index == 0 ? configuration.underlay.offloads : configuration.access[index - 1].offloads
            if let large = try Dataplane.configure(port, index: index, mode: mode, configuration: configuration, queues: lcores.count,
                                                   pool: pool, tag: "\(instance)_\(index)", socket: poolSocket) {
                largeFramePools.append(large)
            }
        }
        self.largeFramePools = largeFramePools
        self.instance = instance
        self.poolSocket = poolSocket
        txPlan = txPlanOverride ?? (configuration.underlay.offloads == .software
            ? .software : TunnelTxPlan(enabled: TxOffloads(rawValue: underlayPort.enabledTxOffloads)))
        // Kernel-attached ports: the kernel's checksum offload leaves TCP/UDP sums unfinished and af_packet has no
        // virtio-net header to say so, so every TCP/UDP checksum from them is computed (on an underlay port: the
        // inner ones, after decapsulation).
        let completeChecksumPorts = Set(ports.indices.filter { Dataplane.completesChecksums(ports[$0]) })
        for (c, lcore) in lcores.enumerated() {
            let rx = ports.enumerated().map { RxQueue(localPort: $0.offset, port: $0.element, queue: c) }
            let tx = ports.map { (port: $0.id, queue: UInt16(c)) }
            let core = UnsafeMutablePointer<PollingCore<VXLANProcessor>>.allocate(capacity: 1)
            let offload = OffloadSettings(plan: txPlan, pools: .init(direct: pool.pointer, indirect: indirectPool.pointer),
                                          completeChecksumPorts: completeChecksumPorts,
                                          underlayRxChecksums: RxChecksums.reported(byPortWith: underlayPort.enabledRxOffloads),
                                          underlayAnnouncesOffloads: underlayPort.tap != nil)
            let processor = VXLANProcessor(tables: tables, reader: c, slowPath: underlay.rings[c], offload: offload, trace: trace)
            core.initialize(to: PollingCore(processor: processor, rxQueues: rx, txQueues: tx, portCapacity: tables.portCapacity))
            for (index, port) in ports.enumerated() where port.tap != nil { core.pointee.tx.setPort(index, port, queue: c) }
            core.pointee.tx.setPrepare(txPlan.usesHardware, port: 0)
            pollingCores.append(core)
            cores.append(Core(lcore: lcore, portCounters: core.pointee.portCounters, pipelineCounters: core.pointee.processor.counterBlock,
                              vniCounters: core.pointee.processor.vniCounterBlock,
                              cycleCounters: core.pointee.cycleCounters, control: core.pointee.control,
                              completesChecksums: core.pointee.processor.completesChecksumsFlags))
        }
        // A VNI added at run time starts its counters from zero: the baseline is taken for its slot before the VNI
        // is published, while no core can count into the slot (it was freed a grace period after its last VNI
        // went), so no packet counted once the VNI is reachable is left out.
        tables.vniSlotTaken = { [unowned self] slot in self.takeVNIBaseline(slot: slot) }
    }

    /// A tap port vxland creates (`tap:` in the configuration): with the kernel's offloads unless `software`.
    static func makeTap(name: String, _ tap: VTEPConfiguration.Tap, mode: VTEPConfiguration.OffloadMode, underlay: Bool) throws -> EthPort {
        try TapPort.create(name: name, .init(interface: tap.name, offloads: mode == .auto, udpTunnelGSO: underlay && tap.udpTunnelGSO,
                                             underlay: underlay))
    }

    /// Each tap queue holds the buffers of one 64 KB read (33 of 2 KB) from the main pool: taps may hold at most a
    /// quarter of it, so that the frames in flight always find buffers.
    static let tapBuffersPerQueue = 33

    static func checkTapBuffers(taps: Int, queues: Int, mbufs: Int) throws {
        let held = taps * queues * tapBuffersPerQueue
        guard held <= mbufs / 4 else {
            throw SetupError("\(taps) tap port(s) with \(queues) queue(s) each hold \(held) buffers for their reads, more than a quarter of resources.mbufs (\(mbufs)): raise resources.mbufs to at least \(held * 4)")
        }
    }

    /// Whether frames from local port `index` may carry checksums left unfinished without a flag saying so: a
    /// kernel-attached af_packet port (a tap port's header says so frame by frame).
    static func completesChecksums(_ port: EthPort) -> Bool {
        port.capabilities.driver == "net_af_packet"
    }

    /// Configures one port for `queues` polling cores as its role wants; returns the pool of 64 KB buffers made for
    /// a kernel-attached port that takes large frames, if one was.
    static func configure(_ port: EthPort, index: Int, mode: VTEPConfiguration.OffloadMode, configuration: VTEPConfiguration,
                          queues: Int, pool: PacketPool, tag: String, socket: Int32) throws -> PacketPool? {
        var setup = PortSetup(queues: queues)
        setup.rxDescriptors = configuration.resources.rxDescriptors
        setup.txDescriptors = configuration.resources.txDescriptors
        // Chained mbufs (jumbo RX, segments) must be sendable everywhere. The underlay is offered every tunnel
        // offload it advertises; access ports the receive checksum offloads, so that a VM's unfinished
        // checksums arrive flagged (vhost-user) instead of being completed by the driver.
        setup.wantedTxOffloads = TxOffloads.multiSegments.rawValue
        if index == 0 && mode == .auto { setup.wantedTxOffloads = TxOffloads.all.rawValue }
        if index > 0 && mode == .auto {
            setup.wantedRxOffloads = vx_rx_offload_tcp_cksum() | vx_rx_offload_udp_cksum()
            // vhost-user: partial checksums and (with the guest's TSO) segmentation metadata go to the guest.
            setup.wantedTxOffloads |= TxOffloads.tcpChecksum.rawValue | TxOffloads.udpChecksum.rawValue
        }
        if index == 0 && mode == .auto { setup.wantedRxOffloads = RxChecksums.offloads; setup.udpTunnel = (configuration.underlay.udpPort, UInt8(RTE_ETH_TUNNEL_TYPE_VXLAN.rawValue)) }
        var rxPool = pool
        var large: PacketPool? = nil
        if let frame = Dataplane.afPacketFrameSize(port), frame > 2048 {
            // net_af_packet copies each kernel frame (64 KB GSO frames with framesz=65424) into one mbuf.
            let p = try PacketPool(name: "vxland_large\(tag)", count: 1023, cacheSize: 32,
                                   dataRoom: min(65535, frame + Int(RTE_PKTMBUF_HEADROOM)), socket: socket)
            large = p
            rxPool = p
        }
        do { try port.configure(setup, pool: rxPool) } catch { throw SetupError("port \(port.name): \(error)") }
        return large
    }

    /// Starts the ports. Polling happens in `launch()` (worker lcores) or `runOnCurrentThread()`.
    public func startPorts() throws {
        for port in ports { try port.start() }
        vhostPorts.restrictServerSockets()
        watchVhostGuests()
    }

    /// Runs the slow path (ARP, ICMP, neighbor timers) every millisecond on a plain thread until `stop()`.
    public func startSlowPath() {
        let underlay = self.underlay, stop = stopSignal
        let thread = Thread { [weak self] in
            setThreadName("vxland-slowpath")
            var nextPortCheck = monotonicSeconds()
            while !stop.isRequested {
                let now = monotonicSeconds()
                underlay.poll(now: now)
                if now >= nextPortCheck { self?.reportGoneTaps(); nextPortCheck = now + 1 }
                usleep(1000)
            }
        }
        thread.name = "vxland-slowpath"
        slowPathThread = thread
        thread.start()
    }

    /// Tap ports whose interface an operator deleted: said once in the log (`show ports`: link down, counter
    /// `interface_gone`); the other ports go on.
    var goneTaps: Set<String> = []

    func reportGoneTaps() {
        let gone = portsLock.withLock {
            portList.indices.filter { !removedList.contains($0) && portList[$0].tap != nil && !portList[$0].link.up }.map { portList[$0] }
        }
        for port in gone where !goneTaps.contains(port.name) {
            goneTaps.insert(port.name)
            logger.error("port \(port.name): its tap interface (made as \(port.tapInterface ?? "?")) is gone (deleted?); frames to it are dropped, the other ports go on")
        }
        goneTaps.formIntersection(gone.map(\.name))      // a port of that name made again is watched again
    }

    /// Which access ports take large TCP frames (GRO, whole GSO frames): vhost-user ports whose guest negotiated
    /// TSO and partial checksums, unless the port's `offloads` is `software`. Guests come and go: net_vhost's
    /// link-state event (raised on the vhost thread when a guest attaches or leaves) publishes the flag; it is
    /// also read once when the ports start, for a guest that attached before.
    var watchedVhostPorts: [Int: VhostGuestWatch] = [:]

    func watchVhostGuests() {
        let access = configuration.access
        // A tap's kernel takes large frames (GSO with partial checksums) whenever its offloads are on.
        for (index, port) in ports.enumerated() where index > 0 && port.tap != nil && index - 1 < access.count {
            tables.setPortTakesLargeFrames(index, access[index - 1].offloads == .auto)
        }
        for (index, port) in ports.enumerated() where index > 0 && port.capabilities.driver == "net_vhost" {
            guard index - 1 < access.count, access[index - 1].offloads == .auto else { continue }
            watchVhostGuest(index)
        }
    }

    func watchVhostGuest(_ index: Int) {
        let watch = VhostGuestWatch(port: ports[index].id, flag: tables.portTakesLargeFrames + index)
        if watch.start() != 0 { logger.warning("port \(ports[index].name): cannot watch its guest's link events; large frames only as at start") }
        watchedVhostPorts[index] = watch
    }

    func unwatchVhostGuest(_ index: Int) {
        watchedVhostPorts.removeValue(forKey: index)?.stop()
    }

    /// A slot reused by a new port: its counters start from zero in every report.
    func clearPortBaselines(_ slot: Int) {
        baselineLock.lock(); defer { baselineLock.unlock() }
        for c in baselines.indices {
            for counter in PortCounter.allCases where PortCounter.slot(port: slot, counter) < baselines[c].ports.count {
                baselines[c].ports[PortCounter.slot(port: slot, counter)] = 0
            }
        }
    }

    func unwatchVhostGuests() {
        for watch in watchedVhostPorts.values { watch.stop() }
        watchedVhostPorts = [:]
    }

    /// The polling cores' back-off when idle (`vxland --idle-sleep-max-us`); nil spins. Set before they run.
    public var idleSleep: IdleSleep? {
        didSet { for core in pollingCores { core.pointee.idleSleep = idleSleep } }
    }

    /// Runs each polling core on its own worker lcore until `stopSignal`.
    public func launch() throws {
        for (i, core) in cores.enumerated() {
            let polling = pollingCores[i]
            let stop = stopSignal
            try Lcores.launch(on: core.lcore) { polling.pointee.run(until: stop) }
        }
        launchedOnWorkers = true
    }

    /// Runs the single polling core on the calling thread (the main lcore) until `stopSignal`.
    public func runOnCurrentThread() {
        pollingCores[0].pointee.run(until: stopSignal)
    }

    /// One poll round on every core, on the calling thread (tests drive the dataplane this way).
    @discardableResult
    public func pollOnce() -> Int { pollingCores.reduce(0) { $0 + $1.pointee.pollOnce() } }

    /// Stops the cores, then the ports; frees staged packets, drains RX queues and releases every buffer.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        stopSignal.request()
        if launchedOnWorkers { Lcores.waitAll() }
        // (Not from the slow path's own thread: a last reference dropped there ends here.)
        while let t = slowPathThread, !t.isFinished, Thread.current !== t { usleep(1000) }
        unwatchVhostGuests()
        for port in ports { port.stop() }
        for core in pollingCores {
            core.pointee.release()
            core.pointee.processor.release()
            core.deinitialize(count: 1)
            core.deallocate()
        }
        pollingCores = []
        underlay.release()
        for port in ports { port.close() }
        vhostPorts.remove()
    }

    public var uptime: Double { Date().timeIntervalSince(started) }

    /// One page of the FDB in (VNI, MAC) order: `query.limit` entries after `query.after`.
    public func fdbReport(_ query: FDBQuery) -> FDBReport {
        let hits = underlay.learnLimitHits()
        let tunnels = underlay.tunnelRemotes()
        let (all, keys) = fdbSnapshot(vni: query.vni, fresh: query.after == nil)
        // Sorted by (vni, mac): the page starts after the cursor.
        var first = 0
        if let after = query.after {
            var low = 0, high = all.count
            while low < high {
                let mid = (low + high) / 2
                if keys[mid] <= after { low = mid + 1 } else { high = mid }
            }
            first = low
        }
        let last = min(all.count, first + query.limit)
        let portList = ports
        let entries = all[first..<last].map { item -> FDBReport.Entry in
            let destination: String
            switch item.entry.target {
            case .tunnel(let t): destination = "remote " + (t < tunnels.count ? tunnels[t].description : "?")
            case .local(let e):
                // Read outside the tables' lock: an endpoint detached since the snapshot reads as port -1.
                let (port, vlan) = tables.endpoint(e)
                let list = portList
                destination = port >= 0 && port < list.count
                    ? "port " + list[port].name + (vlan == 0 ? "" : " vlan \(vlan)") : "a detached port"
            }
            return FDBReport.Entry(vni: item.entry.vni, mac: item.entry.mac.description, destination: destination,
                                   type: item.entry.isStatic ? "static" : "learned", ageSeconds: item.entry.isStatic ? nil : item.age)
        }
        let segments = query.after != nil ? [] : configuration.vnis.filter { query.vni == nil || $0.vni == query.vni }.map {
            FDBReport.Segment(vni: $0.vni, learning: $0.learning, ageingSeconds: $0.ageing, learned: underlay.learnedCount(vni: $0.vni),
                              maxLearned: $0.maxLearned, limitReached: hits[$0.vni] ?? 0)
        }
        let next = last < all.count && last > first ? FDBQuery.cursor(vni: all[last - 1].entry.vni, mac: all[last - 1].entry.mac) : nil
        return FDBReport(entries: entries, segments: segments, total: all.count, next: next)
    }

    private let fdbSnapshotLock = NSLock()
    private var fdbSnapshotCache: (vni: UInt32?, taken: Double, entries: [(entry: ForwardingTables.FDBEntry, age: UInt32)],
                                                      keys: [(UInt32, UInt64)])?

    /// The FDB sorted by (VNI, MAC). A client reading page after page gets one sorted copy, taken on its first
    /// page and reused for up to two seconds, instead of a sort of the whole table per page.
    private func fdbSnapshot(vni: UInt32?, fresh: Bool) -> ([(entry: ForwardingTables.FDBEntry, age: UInt32)], [(UInt32, UInt64)]) {
        fdbSnapshotLock.lock(); defer { fdbSnapshotLock.unlock() }
        let now = monotonicSeconds()
        if !fresh, let cached = fdbSnapshotCache, cached.vni == vni, now - cached.taken < 2 { return (cached.entries, cached.keys) }
        let keyed = underlay.fdb(vni: vni).map { (key: ($0.entry.vni, $0.entry.mac.integer), item: $0) }   // sorted already
        let entries = keyed.map(\.item), keys = keyed.map(\.key)
        fdbSnapshotCache = (vni, now, entries, keys)
        return (entries, keys)
    }

    public func fdbReport(vni: UInt32?) -> FDBReport { fdbReport(FDBQuery(vni: vni, limit: Int.max / 2)) }

    public func neighborsReport() -> NeighborsReport {
        let now = monotonicSeconds()
        let c = underlay.counters.snapshot()
        return NeighborsReport(
            neighbors: underlay.neighbors(now: now).map {
                NeighborsReport.Neighbor(ip: $0.ip.description, mac: $0.mac?.description, state: $0.state.rawValue,
                                         ageSeconds: $0.age.map { ($0 * 10).rounded() / 10 }, probes: $0.probes, tunnels: $0.tunnels)
            },
            counters: Dictionary(uniqueKeysWithValues: UnderlayControl.Counter.allCases.map { ($0.name, c[$0.rawValue]) }))
    }

    // MARK: - Reports

    /// Counter values at the last `clearStats()`, per core: reports show what happened since. The cores' own
    /// counters are never written from outside (they keep plain, unshared stores); clearing is a new baseline.
    var baselines: [(ports: [UInt64], pipeline: [UInt64])] = []
    /// Tap ports' counters at the last `clearStats()`, by port object (a port made since starts from zero).
    var tapBaselines: [ObjectIdentifier: [UInt64]] = [:]
    let baselineLock = NSLock()

    /// A tap port's counters since the last `clearStats()` (called under portsLock).
    func tapCounters(_ port: EthPort) -> [UInt64] {
        var values = port.tapStats
        let base = baselineLock.withLock { tapBaselines[ObjectIdentifier(port)] }
        if let base { for i in values.indices where i < base.count { values[i] &-= base[i] } }
        return values
    }

    /// `vxlanctl stats clear`: counters start again from zero in every report (the cores are not disturbed).
    public func clearStats() {
        // Under portsLock, then baselineLock (the order reports take them in): a tap port removed meanwhile is
        // either read here while alive or already gone from the list, never given a baseline after its removal.
        portsLock.lock(); defer { portsLock.unlock() }
        baselineLock.lock(); defer { baselineLock.unlock() }
        tapBaselines = [:]
        for (index, port) in portList.enumerated() where port.tap != nil && !removedList.contains(index) {
            tapBaselines[ObjectIdentifier(port)] = port.tapStats
        }
        baselines = cores.map { ($0.portCounters.snapshot(), $0.pipelineCounters.snapshot()) }
        vniBaselines = [:]
        cycleBaselines = cores.map { $0.cycleCounters.snapshot() }
        clears += 1
        let sums = vniCounterSums()
        for slot in 0..<tables.vniCapacity {
            let group = Array(sums[VNICounter.slot(vniSlot: slot, .encapPackets)..<VNICounter.slot(vniSlot: slot + 1, .encapPackets)])
            if group.contains(where: { $0 != 0 }) { vniBaselines[slot] = group }
        }
    }

    /// Every core's VNI counters added up, by slot.
    func vniCounterSums() -> [UInt64] {
        var sums = [UInt64](repeating: 0, count: tables.vniCapacity * VNICounter.stride)
        for core in cores {
            let b = core.vniCounters.base
            for i in sums.indices { sums[i] &+= b[i] }
        }
        return sums
    }

    /// The ports in use, with their local indices (removed ones left out).
    var livePorts: [(offset: Int, element: EthPort)] {
        let (list, removed) = portsLock.withLock { (portList, removedList) }
        return list.enumerated().filter { !removed.contains($0.offset) }.map { ($0.offset, $0.element) }
    }

    /// How many times `clearStats()` ran (reports carry it: a client computing rates sees its baseline move).
    private var clears: UInt64 = 0

    /// The cores' cycle counters at the last `clearStats()` (under `baselineLock`, as `baselines`).
    private var cycleBaselines: [[UInt64]] = []

    /// `show.cores`: per polling core, its busy and idle cycles, rounds and packets since start or the last
    /// `clearStats()`.
    public func coresReport() -> CoresReport {
        baselineLock.lock()
        let baselines = cycleBaselines
        baselineLock.unlock()
        let reports = cores.enumerated().map { index, core -> CoresReport.Core in
            var c = core.cycleCounters.snapshot()
            if index < baselines.count { for i in c.indices { c[i] &-= baselines[index][i] } }
            return CoresReport.Core(lcore: core.lcore, busyCycles: c[CoreCounter.busyCycles.rawValue],
                                    idleCycles: c[CoreCounter.idleCycles.rawValue], busyRounds: c[CoreCounter.busyRounds.rawValue],
                                    idleRounds: c[CoreCounter.idleRounds.rawValue], packets: c[CoreCounter.packets.rawValue],
                                    sleeps: c[CoreCounter.sleeps.rawValue], sleptCycles: c[CoreCounter.sleptCycles.rawValue])
        }
        return CoresReport(tscHz: vx_tsc_hz(), uptimeSeconds: uptime, since: baselines.isEmpty ? "start" : "stats clear", cores: reports)
    }

    public func statsReport() -> StatsReport {
        baselineLock.lock()
        let baselines = self.baselines
        let clears = self.clears
        baselineLock.unlock()
        let coreReports = cores.enumerated().map { index, core -> StatsReport.Core in
            var p = core.portCounters.snapshot()
            var q = core.pipelineCounters.snapshot()
            if index < baselines.count {
                for i in p.indices { p[i] &-= baselines[index].ports[i] }
                for i in q.indices { q[i] &-= baselines[index].pipeline[i] }
            }
            let portReports = livePorts.map { index, port in
                StatsReport.PortCounters(port: port.name, counters: Dictionary(uniqueKeysWithValues: PortCounter.allCases.map {
                    ($0.name, p[PortCounter.slot(port: index, $0)])
                }))
            }
            let pipeline = Dictionary(uniqueKeysWithValues: PipelineCounter.allCases.map { ($0.name, q[PipelineCounterLayout.slot($0)]) })
            let drops = Dictionary(uniqueKeysWithValues: DropReason.allCases.map { ($0.name, q[PipelineCounterLayout.slot($0)]) })
            return StatsReport.Core(lcore: core.lcore, ports: portReports, pipeline: pipeline, drops: drops)
        }
        let mempool = StatsReport.Mempool(name: pool.name, capacity: pool.capacity, available: pool.available, inUse: pool.inUse)
        var report = StatsReport(uptimeSeconds: uptime, mempool: mempool, cores: coreReports)
        report.statsClears = clears
        report.pools = ([pool, indirectPool] + portsLock.withLock { largeFramePools }).map {
            StatsReport.Mempool(name: $0.name, capacity: $0.capacity, available: $0.available, inUse: $0.inUse)
        }
        return report
    }

    public func portsReport() -> PortsReport {
        let roles = self.roles
        let configuration = self.configuration
        // Under portsLock: a port being removed (unplug) is closed under it too, never while its stats are read.
        portsLock.lock(); defer { portsLock.unlock() }
        let removed = removedList
        return PortsReport(ports: portList.enumerated().filter { !removed.contains($0.offset) }.map { index, port in
            let hw = port.hardwareStats
            let link = port.link
            let role = index < roles.count ? roles[index] : .detached     // a port being attached
            var vni: UInt32? = nil
            var vlans: [String: UInt32]? = nil
            if case .access(let v) = role { vni = v }
            if case .tagged(let mappings) = role { vlans = Dictionary(uniqueKeysWithValues: mappings.map { (String($0.vlan), $0.vni) }) }
            return PortsReport.Port(
                index: index, name: port.name, portId: Int(port.id), driver: port.capabilities.driver,
                role: role == .underlay ? "underlay" : role == .detached ? "detached" : "access", vni: vni, vlans: vlans,
                mac: (role == .underlay ? tables.underlayMAC : MACAddress(bytes: port.macAddress)!).description,
                ip: role == .underlay ? configuration.underlay.addressesDescription : nil,
                linkUp: link.up, speedMbps: link.speedMbps, queues: port.queueCount,
                txOffloads: TxOffloads(rawValue: port.enabledTxOffloads).names,
                txPath: role == .underlay ? txPlan.summary : nil,
                rxOffloads: port.enabledRxOffloads == 0 ? [] : ["0x" + String(port.enabledRxOffloads, radix: 16)],
                gro: role == .underlay ? nil : tables.portTakesLargeFrames[index] != 0,
                hardware: ["rx_packets": hw.rxPackets, "tx_packets": hw.txPackets, "rx_bytes": hw.rxBytes, "tx_bytes": hw.txBytes,
                           "rx_missed": hw.rxMissed, "rx_errors": hw.rxErrors, "tx_errors": hw.txErrors, "rx_nombuf": hw.rxNoBuffer],
                tap: port.tap == nil ? nil : PortsReport.Tap(
                    interface: port.tapCurrentInterface ?? "?", offloads: port.tapOffloads ?? [],
                    counters: Dictionary(uniqueKeysWithValues: zip(TapPort.counterNames, tapCounters(port))),
                    buffersHeld: port.tapBuffersHeld))
        })
    }

    deinit { stop() }
}

/// Numbers DPDK objects whose names must be unique in a process.
final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
}
