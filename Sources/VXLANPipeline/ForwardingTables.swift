import CDPDK
import Foundation
import PollMode
import VTEPConfig

/// The role of each local port, in the order the dataplane numbered them.
public enum PortRole: Equatable, Sendable {
    case underlay
    /// Untagged: the whole port is one VNI.
    case access(vni: UInt32)
    /// 802.1Q: each mapped VLAN is its own VNI; other frames are dropped.
    case tagged([VTEPConfiguration.VLANMapping])
}


/// Everything the fast path looks up. The polling cores only read it, without locks; one writer (the slow-path
/// thread) adds learned entries and tunnels, moves and ages entries, and publishes neighbor MACs.
///
/// - VNI -> segment and (VNI, MAC) -> FDB entry are DPDK `rte_hash` tables with lock-free readers; deleted FDB
///   slots are reclaimed by DPDK only after an RCU (QSBR) grace period. An FDB entry's data word carries
///   everything a core needs (see `FDBData`): its target and its slot in `fdbLastSeen` (the second a core last saw
///   the MAC as a source). DPDK stores the data before it makes a new key visible (both release stores) and
///   replaces an existing key's data with one release store, so a core finds an entry complete or not at all.
///   Stamp slots, like hash slots, are reused only after a grace period.
/// - Each tunnel's 50 header bytes exist twice: the writer fills the copy the cores are not using, publishes it
///   through `activeCopy`, and reuses the other copy only after a grace period.
/// - `generation` moves whenever a lookup result changes or disappears; cores then flush their caches.
public final class ForwardingTables: @unchecked Sendable {
    public struct Tunnel: Sendable, Equatable {
        public var vni: UInt32
        public var remote: IPAddress
        /// Whose MAC goes into the outer Ethernet header: the remote itself, or the gateway when off-link.
        public var nextHop: IPAddress
        /// The headers (50 bytes over IPv4, 70 over IPv6) with the next hop's MAC left zero; each published copy
        /// fills it in.
        public var header: [UInt8]
        public var isIPv6: Bool
    }

    /// Per segment (VNI): where its flood list and access ports start in the index arrays, and its policy.
    public struct SegmentEntry {
        public var vni: UInt32
        public var floodStart: Int32
        public var floodCount: Int32
        public var accessStart: Int32
        public var accessCount: Int32
        public var learning: Bool
    }

    /// One FDB entry as the slow path keeps it (for ageing, limits and `show fdb`).
    public struct FDBEntry: Sendable, Equatable {
        public var vni: UInt32
        public var mac: MACAddress
        public var target: FDBTarget
        public var isStatic: Bool
        /// The entry's slot in `fdbLastSeen`.
        public var slot: Int32
    }

    /// The slow path's key for an FDB entry.
    struct EntryKey: Hashable {
        var vni: UInt32
        var mac: MACAddress
    }

    public static let templateStride = 128
    /// Both hashes use 16-byte keys: DPDK compares those with one vector instruction, shorter ones with memcmp.
    public static let keyLength = 16

    public let roles: [PortRole]
    public let underlayPort: Int
    public let underlayMAC: MACAddress
    /// By tunnel index. An index whose tunnel was reclaimed keeps its last tunnel until reused (`isLive`).
    public internal(set) var tunnels: [Tunnel]
    public let configuration: VTEPConfiguration

    // Fast-path views.
    public let templates: UnsafeMutableRawPointer
    public let partialSums: UnsafeMutablePointer<UInt32>
    /// Per tunnel: 0 or 1, the copy in use; -1 while its next hop's MAC is unknown (packets are dropped).
    public let activeCopy: UnsafeMutablePointer<Int32>
    /// Per tunnel: its remote VTEP address (host order), so a core can tell whether a learned MAC moved.
    public let tunnelRemote: UnsafeMutablePointer<UInt32>
    /// Per tunnel: 1 for an IPv6 tunnel, whose remote is in `tunnelRemote6` (two words per tunnel).
    public let tunnelIsIPv6: UnsafeMutablePointer<UInt8>
    public let tunnelRemote6: UnsafeMutablePointer<UInt64>
    public let tunnelCapacity: Int
    public let segments: UnsafeMutablePointer<SegmentEntry>
    /// Per segment: 1 when an `allowed_remotes` list applies (then `remoteFilters[segment]` decides), 0 when any
    /// source may send VXLAN for it (one byte load on the fast path).
    public let segmentFiltered: UnsafeMutablePointer<UInt8>
    /// Per segment: who may send VXLAN for it (built once from the configuration, never changed).
    public let remoteFilters: UnsafeMutablePointer<RemoteFilter>
    public let segmentCount: Int
    public let floodTunnels: UnsafeMutablePointer<Int32>
    /// Per segment, from `accessStart`: the local endpoints in it.
    public let accessPorts: UnsafeMutablePointer<Int32>
    /// Local endpoints: (port, VLAN; 0 = untagged) pairs, each in one segment.
    public let endpointPort: UnsafeMutablePointer<Int32>
    public let endpointVLAN: UnsafeMutablePointer<UInt16>
    public let endpointSegment: UnsafeMutablePointer<Int32>
    public let endpointCount: Int
    /// For each local port: its endpoint when untagged, `PortKind.underlay` or `PortKind.tagged`.
    public let portEndpoint: UnsafeMutablePointer<Int32>
    /// Per local port: 1 when it takes TCP frames larger than the MTU with segmentation metadata (a vhost-user
    /// guest that negotiated TSO and partial checksums). Written by the control side as guests come and go,
    /// read by the cores as a plain byte: a stale value only means one burst delivered the other way.
    public let portTakesLargeFrames: UnsafeMutablePointer<UInt8>
    /// For tagged ports: `vlanEndpoint[port * 4096 + vid]`, -1 when the VLAN is not mapped.
    public let vlanEndpoint: UnsafeMutablePointer<Int32>
    public enum PortKind { public static let underlay: Int32 = -1, tagged: Int32 = -2 }
    /// (vni, MAC) -> `FDBData` (target and stamp slot).
    public let fdbHash: OpaquePointer
    public let fdbCapacity: Int
    /// By stamp slot (`FDBData.slot`): the second (of `clock`) a core last saw this MAC as a source.
    public let fdbLastSeen: UnsafeMutablePointer<UInt32>
    /// VNI -> segment index + 1.
    public let vniHash: OpaquePointer
    /// Seconds since start, advanced by the slow path; cores stamp `fdbLastSeen` with it.
    public let clock: UnsafeMutablePointer<UInt32>
    public let generation: UnsafeMutablePointer<UInt64>
    public let qsbr: OpaquePointer
    public let maxReaders: Int
    public let underlayAddress: UInt32
    /// The IPv6 VTEP address as two native-order words, when there is one.
    public let underlayAddress6: (UInt64, UInt64)?
    public let udpPort: UInt16
    public let strict: Bool
    /// Largest inner frame that fits the underlay MTU once encapsulated (IPv4 and IPv6 outer headers).
    public let maxInnerFrame: Int
    public let maxInnerFrame6: Int

    /// What the polling cores read, gathered once (FastPathView.swift).
    public let fastPath: FastPathView

    /// Test hook: runs right after a learned key became visible to the cores.
    var afterFDBInsert: (() -> Void)?
    /// Tunnels in use (flood lists, static entries, learned entries, and those waiting to be reclaimed).
    public internal(set) var liveTunnelCount = 0

    // Slow-path state.
    var publishTokens: [UInt64?]
    struct TunnelKey: Hashable {
        var vni: UInt32
        var remote: IPAddress
    }
    /// Live tunnels by (vni, remote).
    var tunnelIndex: [TunnelKey: Int] = [:]
    /// Per tunnel index: learned FDB entries pointing at it; flood-list and static-entry tunnels are permanent.
    var tunnelReferences: [Int] = []
    var tunnelPermanent: [Bool] = []
    var tunnelLive: [Bool] = []
    /// Indices no core can hold any more, ready for reuse.
    var freeTunnels: [Int] = []
    /// Tunnels nothing refers to, by index: the grace-period token taken when the last reference went.
    var dyingTunnels: [Int: UInt64] = [:]
    /// Live tunnels per next hop.
    var nextHopUsers: [IPAddress: Int] = [:]
    var entries: [EntryKey: FDBEntry] = [:]
    var learnedPerSegment: [Int]
    var segmentIndex: [UInt32: Int] = [:]
    /// Stamp slots no entry uses and no core can still write; slots of deleted entries wait in `pendingStamps`
    /// for a grace period.
    var freeStamps: [Int32]
    var pendingStamps: [(token: UInt64, slots: [Int32])] = []
    let key = UnsafeMutableRawPointer.allocate(byteCount: ForwardingTables.keyLength, alignment: 16)

    /// - Parameter readers: how many polling cores will read the tables (each registers as an RCU reader).
    /// Marks whether `port` takes large TCP frames (GRO and whole GSO frames go to it); see `portTakesLargeFrames`.
    public func setPortTakesLargeFrames(_ port: Int, _ takes: Bool) {
        guard port >= 0 && port < roles.count else { return }
        vx_store_release_u8(portTakesLargeFrames + port, takes ? 1 : 0)
    }

    public init(configuration config: VTEPConfiguration, roles: [PortRole], underlayMAC: MACAddress, readers: Int = 1) throws {
        let configuration = config
        guard let underlay = roles.firstIndex(of: .underlay), roles.filter({ $0 == .underlay }).count == 1 else {
            throw SetupError("exactly one underlay port is required")
        }
        self.configuration = configuration
        self.roles = roles
        self.underlayPort = underlay
        self.underlayMAC = underlayMAC
        self.underlayAddress = configuration.underlay.address.value
        self.udpPort = configuration.underlay.udpPort
        self.strict = configuration.underlay.strict
        self.maxInnerFrame = configuration.underlay.mtu - VTEPConfiguration.ipv4Overhead
        self.maxInnerFrame6 = configuration.underlay.mtu - VTEPConfiguration.ipv6Overhead
        self.underlayAddress6 = configuration.underlay.address6?.words
        tunnels = []
        tunnelCapacity = max(configuration.resources.tunnels, 1)
        fdbCapacity = configuration.resources.fdbEntries

        templates = Self.alignedAllocate(tunnelCapacity * 2 * Self.templateStride)
        partialSums = Self.alignedAllocate(tunnelCapacity * 4).bindMemory(to: UInt32.self, capacity: tunnelCapacity)
        activeCopy = .allocate(capacity: tunnelCapacity)
        activeCopy.initialize(repeating: -1, count: tunnelCapacity)
        tunnelRemote = .allocate(capacity: tunnelCapacity)
        tunnelRemote.initialize(repeating: 0, count: tunnelCapacity)
        tunnelIsIPv6 = .allocate(capacity: tunnelCapacity)
        tunnelIsIPv6.initialize(repeating: 0, count: tunnelCapacity)
        tunnelRemote6 = .allocate(capacity: tunnelCapacity * 2)
        tunnelRemote6.initialize(repeating: 0, count: tunnelCapacity * 2)
        publishTokens = []
        generation = .allocate(capacity: 1)
        generation.initialize(to: 0)
        clock = .allocate(capacity: 1)
        clock.initialize(to: 0)
        fdbLastSeen = .allocate(capacity: fdbCapacity)
        fdbLastSeen.initialize(repeating: 0, count: fdbCapacity)
        freeStamps = (0..<Int32(fdbCapacity)).reversed()
        learnedPerSegment = Array(repeating: 0, count: configuration.segments.count)
        for (i, segment) in configuration.segments.enumerated() { segmentIndex[segment.vni] = i }

        maxReaders = max(1, readers)
        let qsbrSize = Int(rte_rcu_qsbr_get_memsize(UInt32(maxReaders)))
        guard qsbrSize > 0, let qsbrMemory = rte_zmalloc("vxlan_qsbr", qsbrSize, UInt32(RTE_CACHE_LINE_SIZE)) else {
            throw DPDKError.fromErrno("allocating RCU state for \(readers) reader(s)")
        }
        qsbr = OpaquePointer(qsbrMemory)
        guard rte_rcu_qsbr_init(qsbr, UInt32(maxReaders)) == 0 else {
            throw DPDKError.fromErrno("initialising RCU state for \(readers) reader(s)")
        }

        // Local endpoints in port order: an untagged port is one, a tagged port one per mapped VLAN.
        var endpoints: [(port: Int, vlan: UInt16, vni: UInt32)] = []
        for (port, role) in roles.enumerated() {
            switch role {
            case .underlay: break
            case .access(let vni): endpoints.append((port, 0, vni))
            case .tagged(let mappings): for m in mappings { endpoints.append((port, m.vlan, m.vni)) }
            }
        }
        var flood: [Int32] = []
        var access: [Int32] = []
        var segmentEntries: [SegmentEntry] = []
        var pendingFlood: [(UInt32, IPAddress)] = []
        for segment in configuration.segments {
            let floodStart = flood.count
            for remote in segment.flood { pendingFlood.append((segment.vni, remote)); flood.append(Int32(pendingFlood.count - 1)) }
            let accessStart = access.count
            for (e, endpoint) in endpoints.enumerated() where endpoint.vni == segment.vni { access.append(Int32(e)) }
            segmentEntries.append(SegmentEntry(vni: segment.vni, floodStart: Int32(floodStart), floodCount: Int32(flood.count - floodStart),
                                               accessStart: Int32(accessStart), accessCount: Int32(access.count - accessStart),
                                               learning: segment.learning))
        }
        segmentCount = segmentEntries.count
        segments = .allocate(capacity: max(1, segmentEntries.count))
        // Never uninitialised, even with no VNI (the fast path may read slot 0 speculatively).
        let padded = segmentEntries.isEmpty
            ? [SegmentEntry(vni: 0, floodStart: 0, floodCount: 0, accessStart: 0, accessCount: 0, learning: false)] : segmentEntries
        segments.initialize(from: padded, count: padded.count)
        let filters = configuration.remoteFilters()
        remoteFilters = .allocate(capacity: max(1, filters.count))
        remoteFilters.initialize(repeating: .any, count: max(1, filters.count))
        segmentFiltered = .allocate(capacity: max(1, filters.count))
        segmentFiltered.initialize(repeating: 0, count: max(1, filters.count))
        for (i, f) in filters.enumerated() {
            remoteFilters[i] = f
            segmentFiltered[i] = f.allowsAny ? 0 : 1
        }
        floodTunnels = .allocate(capacity: max(1, flood.count))
        floodTunnels.initialize(from: flood, count: flood.count)
        accessPorts = .allocate(capacity: max(1, access.count))
        accessPorts.initialize(from: access, count: access.count)
        endpointCount = endpoints.count
        endpointPort = .allocate(capacity: max(1, endpoints.count))
        endpointVLAN = .allocate(capacity: max(1, endpoints.count))
        endpointSegment = .allocate(capacity: max(1, endpoints.count))
        portEndpoint = .allocate(capacity: max(1, roles.count))
        portTakesLargeFrames = .allocate(capacity: max(1, roles.count))
        portTakesLargeFrames.initialize(repeating: 0, count: max(1, roles.count))
        portEndpoint.initialize(repeating: PortKind.underlay, count: max(1, roles.count))
        vlanEndpoint = .allocate(capacity: max(1, roles.count) * 4096)
        vlanEndpoint.initialize(repeating: -1, count: max(1, roles.count) * 4096)
        for (e, endpoint) in endpoints.enumerated() {
            guard let s = configuration.segments.firstIndex(where: { $0.vni == endpoint.vni }) else {
                throw SetupError("access port \(endpoint.port) names VNI \(endpoint.vni), which is not configured")
            }
            endpointPort[e] = Int32(endpoint.port)
            endpointVLAN[e] = endpoint.vlan
            endpointSegment[e] = Int32(s)
            if endpoint.vlan == 0 {
                portEndpoint[endpoint.port] = Int32(e)
            } else {
                portEndpoint[endpoint.port] = PortKind.tagged
                vlanEndpoint[endpoint.port * 4096 + Int(endpoint.vlan)] = Int32(e)
            }
        }

        let id = dpdkObjectSerial.next()
        vniHash = try Self.makeHash(name: "vni\(id)", entries: max(64, segmentEntries.count * 2), keyLength: Self.keyLength)
        fdbHash = try Self.makeHash(name: "fdb\(id)", entries: fdbCapacity, keyLength: Self.keyLength)
        // Deleted FDB slots go back to the table only after every polling core passed a quiescent state.
        var rcu = rte_hash_rcu_config()
        rcu.v = qsbr
        rcu.mode = RTE_HASH_QSBR_MODE_DQ
        let rcuResult = rte_hash_rcu_qsbr_add(fdbHash, &rcu)
        // It returns 1 and says why in rte_errno.
        guard rcuResult == 0 else { throw DPDKError.fromErrno("attaching RCU reclamation to the FDB") }
        fastPath = FastPathView(
            templates: templates, partialSums: partialSums, activeCopy: activeCopy, tunnelRemote: tunnelRemote,
            tunnelIsIPv6: tunnelIsIPv6, tunnelRemote6: tunnelRemote6, tunnelCapacity: tunnelCapacity,
            segments: segments, floodTunnels: floodTunnels, segmentFiltered: segmentFiltered, remoteFilters: remoteFilters,
            accessPorts: accessPorts, endpointPort: endpointPort, endpointVLAN: endpointVLAN, endpointSegment: endpointSegment,
            endpointCount: endpointCount, portEndpoint: portEndpoint, portTakesLargeFrames: portTakesLargeFrames, vlanEndpoint: vlanEndpoint,
            fdbHash: fdbHash, fdbLastSeen: fdbLastSeen, fdbCapacity: fdbCapacity, vniHash: vniHash,
            clock: clock, generation: generation, qsbr: qsbr,
            underlayPort: underlayPort, underlayMAC: underlayMAC, underlayAddress: underlayAddress, underlayAddress6: underlayAddress6,
            udpPort: udpPort, strict: strict, verifyUDPChecksum: configuration.underlay.verifyUDPChecksum,
            udp6ZeroChecksum: configuration.underlay.udp6ZeroChecksum, maxInnerFrame: maxInnerFrame, maxInnerFrame6: maxInnerFrame6)

        for (i, e) in segmentEntries.enumerated() {
            Self.writeVNIKey(key, vni: e.vni)
            let rc = rte_hash_add_key_data(vniHash, key, UnsafeMutableRawPointer(bitPattern: i + 1))
            guard rc == 0 else { throw DPDKError("adding VNI \(e.vni) to the VNI table", code: rc) }
        }
        // Flood-list tunnels first (their indices were reserved above in order), then the static FDB.
        for (vni, remote) in pendingFlood { _ = try permanentTunnel(vni: vni, remote: remote) }
        for e in configuration.fdb {
            let tunnel = try permanentTunnel(vni: e.vni, remote: e.remote)
            guard let slot = freeStamps.popLast() else { throw SetupError("resources.fdb_entries is too small for the static FDB") }
            Self.writeFDBKey(key, vni: e.vni, mac: e.mac.bytes)
            let rc = rte_hash_add_key_data(fdbHash, key, FDBData.pack(target: FDBTarget.tunnel(tunnel).raw, slot: slot))
            guard rc == 0 else { throw DPDKError("adding \(e.mac) in VNI \(e.vni) to the FDB", code: rc) }
            entries[EntryKey(vni: e.vni, mac: e.mac)] = FDBEntry(vni: e.vni, mac: e.mac, target: .tunnel(tunnel), isStatic: true, slot: slot)
        }
        // Static neighbors resolve their tunnels now; the rest wait for ARP.
        for (t, tunnel) in tunnels.enumerated() {
            if let neighbor = configuration.neighbor(tunnel.nextHop) { _ = publish(mac: neighbor.mac, tunnel: t) }
        }
    }

    /// FDB key: VNI (4 bytes, native order), MAC (6 bytes), 6 bytes of zero padding.
    public static func writeFDBKey(_ key: UnsafeMutableRawPointer, vni: UInt32, mac: [UInt8]) {
        key.initializeMemory(as: UInt8.self, repeating: 0, count: keyLength)
        key.storeBytes(of: vni, as: UInt32.self)
        for i in 0..<6 { key.storeBytes(of: mac[i], toByteOffset: 4 + i, as: UInt8.self) }
    }

    /// VNI key: the VNI (4 bytes, native order), 12 bytes of zero padding.
    public static func writeVNIKey(_ key: UnsafeMutableRawPointer, vni: UInt32) {
        key.initializeMemory(as: UInt8.self, repeating: 0, count: keyLength)
        key.storeBytes(of: vni, as: UInt32.self)
    }

    static func makeHash(name: String, entries: Int, keyLength: Int) throws -> OpaquePointer {
        try name.withCString { cName in
            var params = rte_hash_parameters()
            params.name = cName
            params.entries = UInt32(entries)
            params.key_len = UInt32(keyLength)
            params.hash_func = nil          // DPDK's default: CRC32-C where SSE4.2 is present
            params.hash_func_init_val = 0
            params.socket_id = Int32(SOCKET_ID_ANY)
            // Lock-free readers: the slow path adds and removes entries while polling cores look up.
            params.extra_flag = UInt8(RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF)
            guard let hash = rte_hash_create(&params) else { throw DPDKError.fromErrno("creating hash table \(name)") }
            return hash
        }
    }

    static func alignedAllocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: (bytes + 63) & ~63, alignment: 64)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: (bytes + 63) & ~63)
        return p
    }

    // MARK: - Slow-path updates (one writer: the control thread)

    /// Registers polling core `reader` (0..<maxReaders) with RCU; it then reports quiescent states.
    public func registerReader(_ reader: Int) {
        _ = rte_rcu_qsbr_thread_register(qsbr, UInt32(reader))
        vx_qsbr_online(qsbr, UInt32(reader))
    }

    public func unregisterReader(_ reader: Int) {
        vx_qsbr_offline(qsbr, UInt32(reader))
        _ = rte_rcu_qsbr_thread_unregister(qsbr, UInt32(reader))
    }

    /// Tells the cores that cached lookup results may be stale.
    public func bumpGeneration() { vx_store_release_u64(generation, generation.pointee &+ 1) }


    /// The port and VLAN (0: untagged) of local endpoint `e`.
    public func endpoint(_ e: Int) -> (port: Int, vlan: UInt16) { (Int(endpointPort[e]), endpointVLAN[e]) }


    deinit {
        key.deallocate()
        generation.deallocate()
        clock.deallocate()
        activeCopy.deallocate()
        tunnelRemote.deallocate()
        tunnelIsIPv6.deallocate()
        tunnelRemote6.deallocate()
        fdbLastSeen.deallocate()
        rte_hash_free(fdbHash)
        rte_hash_free(vniHash)
        rte_free(UnsafeMutableRawPointer(qsbr))
        templates.deallocate()
        UnsafeMutableRawPointer(partialSums).deallocate()
        segments.deallocate()
        remoteFilters.deinitialize(count: max(1, segmentCount)); remoteFilters.deallocate()
        segmentFiltered.deallocate()
        floodTunnels.deallocate()
        accessPorts.deallocate()
        endpointPort.deallocate(); endpointVLAN.deallocate(); endpointSegment.deallocate()
        portEndpoint.deallocate(); vlanEndpoint.deallocate(); portTakesLargeFrames.deallocate()
    }
}


/// Unique names for DPDK objects (hash tables and rings are named; names must not clash within a process).
let dpdkObjectSerial = SerialNumber()

final class SerialNumber: @unchecked Sendable {
    var value = 0
    let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}
