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

/// Where an FDB entry sends a frame, as the fast path stores it: a tunnel index, or a local endpoint (an access
/// port, or one VLAN of a tagged access port).
public enum FDBTarget: Equatable, Sendable {
    case tunnel(Int)
    case local(Int)

    /// Tunnels are 0..<localBase; local endpoint e is localBase + e.
    public static let localBase: Int32 = 1 << 24

    public init(raw: Int32) { self = raw >= FDBTarget.localBase ? .local(Int(raw - FDBTarget.localBase)) : .tunnel(Int(raw)) }

    public var raw: Int32 {
        switch self {
        case .tunnel(let t): Int32(t)
        case .local(let e): FDBTarget.localBase + Int32(e)
        }
    }
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
    public private(set) var tunnels: [Tunnel]
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

    /// Test hook: runs right after a learned key became visible to the cores.
    var afterFDBInsert: (() -> Void)?
    /// Tunnels in use (flood lists, static entries, learned entries, and those waiting to be reclaimed).
    public private(set) var liveTunnelCount = 0

    // Slow-path state.
    private var publishTokens: [UInt64?]
    struct TunnelKey: Hashable {
        var vni: UInt32
        var remote: IPAddress
    }
    /// Live tunnels by (vni, remote).
    private var tunnelIndex: [TunnelKey: Int] = [:]
    /// Per tunnel index: learned FDB entries pointing at it; flood-list and static-entry tunnels are permanent.
    private var tunnelReferences: [Int] = []
    private var tunnelPermanent: [Bool] = []
    private var tunnelLive: [Bool] = []
    /// Indices no core can hold any more, ready for reuse.
    private var freeTunnels: [Int] = []
    /// Tunnels nothing refers to, by index: the grace-period token taken when the last reference went.
    private var dyingTunnels: [Int: UInt64] = [:]
    /// Live tunnels per next hop.
    private var nextHopUsers: [IPAddress: Int] = [:]
    private var entries: [EntryKey: FDBEntry] = [:]
    private var learnedPerSegment: [Int]
    private var segmentIndex: [UInt32: Int] = [:]
    /// Stamp slots no entry uses and no core can still write; slots of deleted entries wait in `pendingStamps`
    /// for a grace period.
    private var freeStamps: [Int32]
    private var pendingStamps: [(token: UInt64, slots: [Int32])] = []
    private let key = UnsafeMutableRawPointer.allocate(byteCount: ForwardingTables.keyLength, alignment: 16)

    /// - Parameter readers: how many polling cores will read the tables (each registers as an RCU reader).
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
        _ = rte_rcu_qsbr_init(qsbr, UInt32(maxReaders))

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
        guard rcuResult == 0 else { throw DPDKError("attaching RCU reclamation to the FDB", code: rcuResult) }

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

    private static func makeHash(name: String, entries: Int, keyLength: Int) throws -> OpaquePointer {
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

    private static func alignedAllocate(_ bytes: Int) -> UnsafeMutableRawPointer {
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

    /// The live tunnel for (vni, remote), if there is one. O(1).
    public func existingTunnel(vni: UInt32, remote: IPAddress) -> Int? { tunnelIndex[TunnelKey(vni: vni, remote: remote)] }

    public func isLive(tunnel t: Int) -> Bool { t >= 0 && t < tunnelLive.count && tunnelLive[t] }

    /// Creates the (unresolved) tunnel for (vni, remote) at a free index; nil when all `resources.tunnels` are
    /// in use (or waiting for a grace period) or when the VTEP has no address of the remote's family.
    private func createTunnel(vni: UInt32, remote: IPAddress, nextHop: IPAddress) -> Int? {
        let t: Int
        if let reused = freeTunnels.popLast() { t = reused } else if tunnels.count < tunnelCapacity { t = tunnels.count } else { return nil }
        let u = configuration.underlay
        let tunnel: Tunnel
        switch remote {
        case .v4(let address):
            let template = OuterHeaderTemplate(sourceMAC: underlayMAC, destinationMAC: .zero, source: u.address,
                                               destination: address, vni: vni, udpDestinationPort: u.udpPort, ttl: u.ttl)
            tunnel = Tunnel(vni: vni, remote: remote, nextHop: nextHop, header: template.bytes, isIPv6: false)
            partialSums[t] = template.ipv4PartialSum
            tunnelRemote[t] = address.value
            tunnelIsIPv6[t] = 0
        case .v6(let address):
            guard let source = u.address6 else {
                if t < tunnels.count { freeTunnels.append(t) }
                return nil
            }
            let template = OuterHeaderTemplate6(sourceMAC: underlayMAC, destinationMAC: .zero, source: source,
                                                destination: address, vni: vni, udpDestinationPort: u.udpPort, hopLimit: u.ttl)
            tunnel = Tunnel(vni: vni, remote: remote, nextHop: nextHop, header: template.bytes, isIPv6: true)
            partialSums[t] = template.udpPartialSum
            tunnelIsIPv6[t] = 1
            (tunnelRemote6[2 * t], tunnelRemote6[2 * t + 1]) = address.words
        }
        // No core holds index t (new, or reclaimed after a grace period): its fields are written in place and
        // reach the cores with the release store that publishes the first FDB entry pointing at it.
        vx_store_release_i32(activeCopy + t, -1)
        if t == tunnels.count {
            tunnels.append(tunnel); publishTokens.append(nil); tunnelReferences.append(0); tunnelPermanent.append(false)
            tunnelLive.append(true)
        } else {
            tunnels[t] = tunnel; publishTokens[t] = nil; tunnelReferences[t] = 0; tunnelPermanent[t] = false; tunnelLive[t] = true
        }
        tunnelIndex[TunnelKey(vni: vni, remote: remote)] = t
        nextHopUsers[nextHop, default: 0] += 1
        liveTunnelCount += 1
        return t
    }

    /// A flood-list or static-entry tunnel: never reclaimed.
    private func permanentTunnel(vni: UInt32, remote: IPAddress) throws -> Int {
        if let t = existingTunnel(vni: vni, remote: remote) { tunnelPermanent[t] = true; return t }
        guard let nextHop = configuration.underlay.nextHop(for: remote), let t = createTunnel(vni: vni, remote: remote, nextHop: nextHop) else {
            throw SetupError("cannot create the tunnel to \(remote) in VNI \(vni): resources.tunnels (\(tunnelCapacity)) exhausted or no route")
        }
        tunnelPermanent[t] = true
        return t
    }

    private func retain(_ target: FDBTarget) {
        guard case .tunnel(let t) = target else { return }
        tunnelReferences[t] += 1
        dyingTunnels[t] = nil                     // referred to again before it was reclaimed: it stays
    }

    /// Drops one reference. A learned tunnel nothing refers to is reclaimed after a grace period: cores may
    /// hold its index in a cache or an in-flight burst until they pass a quiescent state.
    private func release(_ target: FDBTarget) {
        guard case .tunnel(let t) = target else { return }
        tunnelReferences[t] -= 1
        guard tunnelReferences[t] == 0, !tunnelPermanent[t] else { return }
        bumpGeneration()                          // cores flush cached entries naming it at their next burst
        dyingTunnels[t] = vx_qsbr_start(qsbr)
    }

    private func destroyTunnel(_ t: Int) {
        let tunnel = tunnels[t]
        tunnelIndex[TunnelKey(vni: tunnel.vni, remote: tunnel.remote)] = nil
        nextHopUsers[tunnel.nextHop, default: 1] -= 1
        if nextHopUsers[tunnel.nextHop] == 0 { nextHopUsers[tunnel.nextHop] = nil }
        vx_store_release_i32(activeCopy + t, -1)
        publishTokens[t] = nil
        tunnelReferences[t] = 0
        tunnelLive[t] = false
        liveTunnelCount -= 1
        freeTunnels.append(t)
    }

    /// Live tunnels whose outer Ethernet destination is `nextHop`'s MAC.
    public func tunnels(through nextHop: IPAddress) -> [Int] {
        guard nextHopUsers[nextHop] != nil else { return [] }
        return tunnels.indices.filter { tunnelLive[$0] && tunnels[$0].nextHop == nextHop }
    }

    /// How many live tunnels go through `nextHop`. O(1).
    public func tunnelCount(through nextHop: IPAddress) -> Int { nextHopUsers[nextHop] ?? 0 }

    /// The MAC the tunnel currently sends to, nil while unresolved.
    public func publishedMAC(tunnel t: Int) -> MACAddress? {
        let copy = vx_load_acquire_i32(activeCopy + t)
        guard copy >= 0 else { return nil }
        let p = templates + (t * 2 + Int(copy)) * Self.templateStride
        return MACAddress(bytes: (0..<6).map { p.load(fromByteOffset: $0, as: UInt8.self) })
    }

    /// Points tunnel `t` at `mac` (nil: unresolved, its packets are dropped). Returns false, changing nothing,
    /// while the cores may still be reading the copy it would overwrite; call again later.
    public func publish(mac: MACAddress?, tunnel t: Int) -> Bool {
        guard let mac else {
            vx_store_release_i32(activeCopy + t, -1)
            return true
        }
        if publishedMAC(tunnel: t) == mac { return true }
        let current = vx_load_acquire_i32(activeCopy + t)
        let next = current == 0 ? 1 : 0
        if let token = publishTokens[t], vx_qsbr_check(qsbr, token) != 1 { return false }
        let p = templates + (t * 2 + Int(next)) * Self.templateStride
        tunnels[t].header.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        for (i, b) in mac.bytes.enumerated() { p.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        vx_store_release_i32(activeCopy + t, Int32(next))
        publishTokens[t] = vx_qsbr_start(qsbr)
        return true
    }

    public enum LearnResult: Equatable, Sendable {
        case added, moved, refreshed, staticEntry, limitReached, tableFull, learningOff, unknownVNI
        /// A local endpoint of another VNI, or a tunnel that does not exist or belongs to another VNI.
        case invalidTarget
        /// A new remote, and every one of `resources.tunnels` in use.
        case tunnelsFull
        /// A remote the VTEP cannot reach (off-link without a gateway, or of a family it has no address in).
        case noRoute
    }

    /// Where a learned MAC is: a target that exists, or a remote VTEP whose tunnel is created if the entry is
    /// admitted.
    enum Destination {
        case target(FDBTarget)
        case remote(IPAddress)
    }

    /// Whether `target` may be the target of an entry in segment `segment`.
    private func isValid(_ target: FDBTarget, segment: Int) -> Bool {
        switch target {
        case .local(let e): e >= 0 && e < endpointCount && Int(endpointSegment[e]) == segment
        case .tunnel(let t): isLive(tunnel: t) && tunnels[t].vni == configuration.segments[segment].vni
        }
    }

    /// Learns that `mac` in `vni` is behind `target` (a local endpoint, or an existing tunnel of the VNI).
    public func learn(vni: UInt32, mac: MACAddress, target: FDBTarget) -> LearnResult {
        learn(vni: vni, mac: mac, destination: .target(target), resolve: { _ in nil })
    }

    /// Learns that `mac` in `vni` is behind remote VTEP `remote`. Its tunnel is created only once the entry is
    /// admitted (VNI known, learning on, `max_learned` and the table leave room), and published with
    /// `resolve(nextHop)` when that MAC is known.
    public func learn(vni: UInt32, mac: MACAddress, remote: IPAddress, resolve: (IPAddress) -> MACAddress?) -> LearnResult {
        learn(vni: vni, mac: mac, destination: .remote(remote), resolve: resolve)
    }

    /// Adds `mac`, or moves an entry learned elsewhere. Static entries never move. Every limit is checked before
    /// anything (a tunnel) is created. The caller (the slow path) stamps the clock as last seen.
    func learn(vni: UInt32, mac: MACAddress, destination: Destination, resolve: (IPAddress) -> MACAddress?) -> LearnResult {
        guard let segment = segmentIndex[vni] else { return .unknownVNI }
        guard configuration.segments[segment].learning else { return .learningOff }
        let entryKey = EntryKey(vni: vni, mac: mac)
        let existing = entries[entryKey]
        if let entry = existing {
            fdbLastSeen[Int(entry.slot)] = clock.pointee
            if entry.isStatic { return .staticEntry }
            switch destination {
            case .target(let t) where t == entry.target: return .refreshed
            case .remote(let ip) where existingTunnel(vni: vni, remote: ip).map({ FDBTarget.tunnel($0) }) == entry.target: return .refreshed
            default: break
            }
        } else {
            let limit = configuration.segments[segment].maxLearned
            if limit > 0 && learnedPerSegment[segment] >= limit { return .limitReached }
            if freeStamps.isEmpty { reclaimStamps() }
            // (The hash itself may still refuse the key: a tunnel created for it is then undone at once. No
            // count check here: deleted keys waiting in DPDK's defer queue come back only when an add needs them.)
            if freeStamps.isEmpty { return .tableFull }
        }
        // Admitted: now the target, creating the remote's tunnel if need be.
        let target: FDBTarget
        var created = false
        switch destination {
        case .target(let t):
            guard isValid(t, segment: segment) else { return .invalidTarget }
            target = t
        case .remote(let ip):
            if let t = existingTunnel(vni: vni, remote: ip) {
                target = .tunnel(t)
            } else {
                guard let nextHop = configuration.underlay.nextHop(for: ip) else { return .noRoute }
                if case .v6 = ip, configuration.underlay.address6 == nil { return .noRoute }
                guard let t = createTunnel(vni: vni, remote: ip, nextHop: nextHop) else { return .tunnelsFull }
                created = true
                target = .tunnel(t)
                if let mac = resolve(nextHop) { _ = publish(mac: mac, tunnel: t) }      // a new tunnel: never refused
            }
        }
        retain(target)
        Self.writeFDBKey(key, vni: vni, mac: mac.bytes)
        if var entry = existing {
            // One release store of the key's data word: a core sees the old target or the new one.
            guard rte_hash_add_key_data(fdbHash, key, FDBData.pack(target: target.raw, slot: entry.slot)) == 0 else {
                undo(target, created: created)
                return .tableFull
            }
            release(entry.target)
            entry.target = target
            entries[entryKey] = entry
            bumpGeneration()
            return .moved
        }
        let slot = freeStamps.removeLast()
        fdbLastSeen[Int(slot)] = clock.pointee
        // The data word (target and stamp slot) is stored before the key becomes visible.
        guard rte_hash_add_key_data(fdbHash, key, FDBData.pack(target: target.raw, slot: slot)) == 0 else {
            freeStamps.append(slot)                 // never visible: free at once
            undo(target, created: created)
            return .tableFull
        }
        afterFDBInsert?()
        entries[entryKey] = FDBEntry(vni: vni, mac: mac, target: target, isStatic: false, slot: slot)
        learnedPerSegment[segment] += 1
        bumpGeneration()                 // cores drop their "learning pending" marks and find the new entry
        return .added
    }

    /// Takes back a reference that was never published; a tunnel created for it goes at once (no core saw it).
    private func undo(_ target: FDBTarget, created: Bool) {
        guard created, case .tunnel(let t) = target else { return release(target) }
        tunnelReferences[t] -= 1
        destroyTunnel(t)
    }

    /// A free stamp slot, taking back those whose grace period is over when none is left.
    private func takeStamp() -> Int32? {
        if freeStamps.isEmpty { reclaimStamps() }
        return freeStamps.popLast()
    }

    private func reclaimStamps() {
        while let first = pendingStamps.first, vx_qsbr_check(qsbr, first.token) == 1 {
            for slot in first.slots { fdbLastSeen[Int(slot)] = 0 }
            freeStamps.append(contentsOf: first.slots)
            pendingStamps.removeFirst()
        }
    }

    /// Removes learned entries not seen for their VNI's ageing time. Returns how many went.
    @discardableResult
    public func age() -> Int {
        let now = clock.pointee
        var released: [Int32] = []
        for (entryKey, entry) in entries where !entry.isStatic {
            guard let segment = segmentIndex[entry.vni] else { continue }
            let seen = fdbLastSeen[Int(entry.slot)]
            guard now &- seen >= UInt32(configuration.segments[segment].ageing) else { continue }
            Self.writeFDBKey(key, vni: entry.vni, mac: entry.mac.bytes)
            if rte_hash_del_key(fdbHash, key) >= 0 {
                entries[entryKey] = nil
                learnedPerSegment[segment] -= 1
                released.append(entry.slot)
                release(entry.target)
            }
        }
        if !released.isEmpty {
            bumpGeneration()
            // Cores may hold the slots (in a cache or a burst) until they pass a quiescent state.
            pendingStamps.append((vx_qsbr_start(qsbr), released))
        }
        return released.count
    }

    /// Gives back what waited for a grace period that is now over: stamp slots, and tunnels nothing refers to
    /// (returned, with their next hops, so that the slow path can stop resolving those). Called every round.
    @discardableResult
    public func reclaim() -> [(tunnel: Int, nextHop: IPAddress)] {
        reclaimStamps()
        guard !dyingTunnels.isEmpty else { return [] }
        var gone: [(tunnel: Int, nextHop: IPAddress)] = []
        for (t, token) in dyingTunnels where vx_qsbr_check(qsbr, token) == 1 {
            dyingTunnels[t] = nil
            gone.append((t, tunnels[t].nextHop))
            destroyTunnel(t)
        }
        return gone
    }

    /// Every FDB entry with its age in seconds (0 for static ones), for `show fdb`.
    public func fdbEntries(vni: UInt32? = nil) -> [(entry: FDBEntry, age: UInt32)] {
        let now = clock.pointee
        // The sort key is computed once per entry, not per comparison (a table can hold millions).
        var keyed: [(vni: UInt32, mac: UInt64, entry: FDBEntry)] = []
        keyed.reserveCapacity(entries.count)
        for e in entries.values where vni == nil || e.vni == vni { keyed.append((e.vni, e.mac.integer, e)) }
        keyed.sort { (a, b) -> Bool in a.vni != b.vni ? a.vni < b.vni : a.mac < b.mac }
        return keyed.map { item -> (entry: FDBEntry, age: UInt32) in
            (item.entry, item.entry.isStatic ? 0 : now &- fdbLastSeen[Int(item.entry.slot)])
        }
    }

    /// The port and VLAN (0: untagged) of local endpoint `e`.
    public func endpoint(_ e: Int) -> (port: Int, vlan: UInt16) { (Int(endpointPort[e]), endpointVLAN[e]) }

    public func learnedCount(vni: UInt32) -> Int {
        segmentIndex[vni].map { learnedPerSegment[$0] } ?? 0
    }

    /// Tunnel for (vni, mac), as the fast path would find it; nil when unknown or local.
    public func lookupFDB(vni: UInt32, mac: MACAddress) -> Int? {
        Self.writeFDBKey(key, vni: vni, mac: mac.bytes)
        var data: UnsafeMutableRawPointer?
        guard rte_hash_lookup_data(fdbHash, key, &data) >= 0, case .tunnel(let t) = FDBTarget(raw: FDBData.target(data)) else { return nil }
        return t
    }

    /// Test hook: puts a raw data word into the FDB, bypassing every check `learn` makes (as a stale or corrupt
    /// entry would look to a core).
    func insertUnchecked(vni: UInt32, mac: MACAddress, target: Int32, slot: Int32) {
        Self.writeFDBKey(key, vni: vni, mac: mac.bytes)
        _ = rte_hash_add_key_data(fdbHash, key, FDBData.pack(target: target, slot: slot))
        bumpGeneration()
    }

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
        portEndpoint.deallocate(); vlanEndpoint.deallocate()
    }
}

/// An FDB entry's data word in the hash: the target (`FDBTarget.raw`) in the low 32 bits, the entry's stamp slot
/// in the high 32. It travels with the key, so a core that finds the key finds both.
public enum FDBData {
    @inlinable @inline(__always)
    public static func pack(target: Int32, slot: Int32) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: UInt(UInt32(bitPattern: target)) | UInt(UInt32(bitPattern: slot)) << 32)
    }
    @inlinable @inline(__always)
    public static func target(_ data: UnsafeMutableRawPointer?) -> Int32 { Int32(truncatingIfNeeded: UInt(bitPattern: data)) }
    @inlinable @inline(__always)
    public static func slot(_ data: UnsafeMutableRawPointer?) -> Int32 { Int32(truncatingIfNeeded: UInt(bitPattern: data) >> 32) }
}

/// Unique names for DPDK objects (hash tables and rings are named; names must not clash within a process).
let dpdkObjectSerial = SerialNumber()

final class SerialNumber: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}
