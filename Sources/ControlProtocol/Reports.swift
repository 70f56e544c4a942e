/// `show.ports`: every port the dataplane drives.
public struct PortsReport: Codable, Equatable, Sendable {
    public struct Port: Codable, Equatable, Sendable {
        public var index: Int
        public var name: String
        public var portId: Int
        public var driver: String
        /// `underlay` or `access`.
        public var role: String
        public var vni: UInt32?
        /// A tagged access port's VLAN -> VNI map.
        public var vlans: [String: UInt32]?
        public var mac: String
        public var ip: String?
        public var linkUp: Bool
        public var speedMbps: UInt32
        public var queues: Int
        public var txOffloads: [String]
        /// The underlay's TX path: `hardware_tso`, `hardware_checksum` or `software` (TunnelTxPlan).
        public var txPath: String?
        public var rxOffloads: [String]?
        /// Access ports: whether the VM takes large TCP frames (GRO and whole GSO frames go to it).
        public var gro: Bool?
        /// The driver's own totals (rte_eth_stats), a cross-check of the per-core counters.
        public var hardware: [String: UInt64]
        /// A tap port vxland made: its interface, what the kernel agreed to hand over, its own counters.
        public var tap: Tap?

        public init(index: Int, name: String, portId: Int, driver: String, role: String, vni: UInt32?, vlans: [String: UInt32]? = nil,
                    mac: String, ip: String?,
                    linkUp: Bool, speedMbps: UInt32, queues: Int, txOffloads: [String], txPath: String? = nil, rxOffloads: [String]? = nil,
                    gro: Bool? = nil, hardware: [String: UInt64], tap: Tap? = nil) {
            self.txPath = txPath; self.rxOffloads = rxOffloads; self.gro = gro; self.tap = tap
            self.index = index; self.name = name; self.portId = portId; self.driver = driver; self.role = role; self.vni = vni
            self.vlans = vlans
            self.mac = mac; self.ip = ip; self.linkUp = linkUp; self.speedMbps = speedMbps; self.queues = queues
            self.txOffloads = txOffloads; self.hardware = hardware
        }
    }
    public struct Tap: Codable, Equatable, Sendable {
        public var interface: String
        /// TUNSETOFFLOAD flags the kernel accepted: csum, tso4, tso6, udp_tunnel_gso, udp_tunnel_gso_csum.
        public var offloads: [String]
        /// Frames, bytes, GSO frames and segments each way, checksums, and drops by reason (`rx_bad_*`).
        public var counters: [String: UInt64]
        /// Receive buffers held for the next reads (33 of 2 KB per queue): in use in the pool while the port runs.
        public var buffersHeld: Int
        public init(interface: String, offloads: [String], counters: [String: UInt64], buffersHeld: Int) {
            self.interface = interface; self.offloads = offloads; self.counters = counters; self.buffersHeld = buffersHeld
        }
    }
    public var ports: [Port]
    public init(ports: [Port]) { self.ports = ports }
}

/// `show.stats`: counters per polling core and summed over cores.
public struct StatsReport: Codable, Equatable, Sendable {
    public struct PortCounters: Codable, Equatable, Sendable {
        public var port: String
        public var counters: [String: UInt64]
        public init(port: String, counters: [String: UInt64]) { self.port = port; self.counters = counters }
    }
    public struct Core: Codable, Equatable, Sendable {
        public var lcore: UInt32
        public var ports: [PortCounters]
        public var pipeline: [String: UInt64]
        public var drops: [String: UInt64]
        public init(lcore: UInt32, ports: [PortCounters], pipeline: [String: UInt64], drops: [String: UInt64]) {
            self.lcore = lcore; self.ports = ports; self.pipeline = pipeline; self.drops = drops
        }
    }
    public struct Totals: Codable, Equatable, Sendable {
        public var ports: [PortCounters]
        public var pipeline: [String: UInt64]
        public var drops: [String: UInt64]
        public var dropsTotal: UInt64
    }

    /// Packet buffer pool occupancy: `in_use` that keeps growing while traffic is idle means a leak.
    public struct Mempool: Codable, Equatable, Sendable {
        public var name: String
        public var capacity: Int
        public var available: Int
        public var inUse: Int
        public init(name: String, capacity: Int, available: Int, inUse: Int) {
            self.name = name; self.capacity = capacity; self.available = available; self.inUse = inUse
        }
    }

    public var uptimeSeconds: Double
    /// The main packet pool.
    public var mempool: Mempool?
    /// Every pool the dataplane owns (main, indirect for segmentation, large frames): all must return to full.
    public var pools: [Mempool]?
    public var cores: [Core]
    public var totals: Totals
    /// How many times `stats.clear` ran since vxland started: counters restarted from zero when it moves.
    public var statsClears: UInt64?

    /// Sums the cores; port order is that of the first core.
    public init(uptimeSeconds: Double, mempool: Mempool? = nil, cores: [Core]) {
        self.uptimeSeconds = uptimeSeconds
        self.mempool = mempool
        self.cores = cores
        var ports: [PortCounters] = cores.first?.ports.map { PortCounters(port: $0.port, counters: [:]) } ?? []
        var pipeline: [String: UInt64] = [:]
        var drops: [String: UInt64] = [:]
        for core in cores {
            for (i, p) in core.ports.enumerated() where i < ports.count {
                ports[i].counters.merge(p.counters, uniquingKeysWith: +)
            }
            pipeline.merge(core.pipeline, uniquingKeysWith: +)
            drops.merge(core.drops, uniquingKeysWith: +)
        }
        totals = Totals(ports: ports, pipeline: pipeline, drops: drops, dropsTotal: drops.values.reduce(0, +))
    }
}

/// `show.neighbors`: the underlay next hops (remote VTEPs on the subnet, the gateway) and static neighbors.
public struct NeighborsReport: Codable, Equatable, Sendable {
    public struct Neighbor: Codable, Equatable, Sendable {
        public var ip: String
        public var mac: String?
        /// `permanent` (static), `reachable`, `probing` (timed out, being confirmed), `resolving` (no MAC yet).
        public var state: String
        public var ageSeconds: Double?
        public var probes: Int
        /// Tunnels whose outer Ethernet header uses this MAC.
        public var tunnels: Int
        public init(ip: String, mac: String?, state: String, ageSeconds: Double?, probes: Int, tunnels: Int) {
            self.ip = ip; self.mac = mac; self.state = state; self.ageSeconds = ageSeconds; self.probes = probes; self.tunnels = tunnels
        }
    }
    public var neighbors: [Neighbor]
    /// ARP and ICMP work done by the slow path.
    public var counters: [String: UInt64]
    public init(neighbors: [Neighbor], counters: [String: UInt64]) { self.neighbors = neighbors; self.counters = counters }
}

/// `show.fdb`: MAC table entries per VNI.
public struct FDBReport: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var vni: UInt32
        public var mac: String
        /// `remote 10.99.0.2` or `port net_af_packet1`.
        public var destination: String
        /// `static` or `learned`.
        public var type: String
        /// Seconds since last seen (learned entries).
        public var ageSeconds: UInt32?
        public init(vni: UInt32, mac: String, destination: String, type: String, ageSeconds: UInt32?) {
            self.vni = vni; self.mac = mac; self.destination = destination; self.type = type; self.ageSeconds = ageSeconds
        }
    }
    public struct Segment: Codable, Equatable, Sendable {
        public var vni: UInt32
        public var learning: Bool
        public var ageingSeconds: Int
        public var learned: Int
        public var maxLearned: Int
        public var limitReached: UInt64
        public init(vni: UInt32, learning: Bool, ageingSeconds: Int, learned: Int, maxLearned: Int, limitReached: UInt64) {
            self.vni = vni; self.learning = learning; self.ageingSeconds = ageingSeconds; self.learned = learned
            self.maxLearned = maxLearned; self.limitReached = limitReached
        }
    }
    public var entries: [Entry]
    /// The VNIs' learning state: on the first page only (no `after`).
    public var segments: [Segment]
    /// Entries matching the request in the whole table, across pages.
    public var total: Int?
    /// The cursor for the next page (`after`), absent on the last page.
    public var next: String?
    public init(entries: [Entry], segments: [Segment], total: Int? = nil, next: String? = nil) {
        self.entries = entries; self.segments = segments; self.total = total; self.next = next
    }
}
