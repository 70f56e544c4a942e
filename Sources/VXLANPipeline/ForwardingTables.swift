import CDPDK
import Foundation
import PollMode
import VTEPConfig

/// The role of each local port, in the order the dataplane numbered them.
public enum PortRole: Equatable, Sendable {
    case underlay
    case access(vni: UInt32)
}

/// Everything the fast path looks up, built once from the configuration and read-only afterwards: VNI and
/// FDB hashes (DPDK rte_hash, looked up in bulk), the tunnels' header templates, flood lists and the VNI's
/// access ports. Memory is raw and cache-aligned; the polling cores see only pointers into it.
public final class ForwardingTables: @unchecked Sendable {
    /// One (VNI, remote VTEP) pair; its header template starts at `templates + index * templateStride`.
    public struct Tunnel: Sendable, Equatable {
        public var vni: UInt32
        public var remote: IPv4Address
        /// Whose MAC goes into the outer Ethernet header: the remote itself, or the gateway when off-link.
        public var nextHop: IPv4Address
        /// The headers with the next hop's MAC left zero; each published copy fills it in.
        public var template: OuterHeaderTemplate
    }

    /// Per segment (VNI): where its flood list and access ports start in the index arrays.
    public struct SegmentEntry {
        public var vni: UInt32
        public var floodStart: Int32
        public var floodCount: Int32
        public var accessStart: Int32
        public var accessCount: Int32
    }

    /// Each tunnel has two header copies (`templates + (tunnel * 2 + copy) * templateStride`): the slow path
    /// writes the one the cores are not using, publishes it through `activeCopy`, and rewrites the other only
    /// after an RCU grace period.
    public static let templateStride = 64
    /// Both hashes use 16-byte keys: DPDK compares those with one vector instruction, shorter ones with memcmp.
    public static let keyLength = 16

    public let roles: [PortRole]
    public let underlayPort: Int
    public let underlayMAC: MACAddress
    public private(set) var tunnels: [Tunnel]
    public let configuration: VTEPConfiguration

    // Fast-path views.
    public let templates: UnsafeMutableRawPointer
    /// Per tunnel: 0 or 1, the copy in use; -1 while its next hop's MAC is unknown (packets are dropped).
    public let activeCopy: UnsafeMutablePointer<Int32>
    /// Readers (polling cores) report a quiescent state once per poll round.
    public let qsbr: OpaquePointer
    public let maxReaders: Int
    /// Per tunnel: the RCU token taken when a copy was last published (slow path only).
    private var publishTokens: [UInt64?]
    public let partialSums: UnsafeMutablePointer<UInt32>
    public let segments: UnsafeMutablePointer<SegmentEntry>
    public let segmentCount: Int
    public let floodTunnels: UnsafeMutablePointer<Int32>
    public let accessPorts: UnsafeMutablePointer<Int32>
    /// For each local port: its segment index, or -1 for the underlay.
    public let portSegment: UnsafeMutablePointer<Int32>
    /// (vni, MAC) -> tunnel index + 1.
    public let fdbHash: OpaquePointer
    /// VNI -> segment index + 1.
    public let vniHash: OpaquePointer
    /// Bumped by the control plane whenever an entry is removed or changes its result; polling cores compare
    /// it once per burst and flush their exact-match caches when it moved. One writer, read without locks.
    public let generation: UnsafeMutablePointer<UInt64>
    public let underlayAddress: UInt32
    public let udpPort: UInt16
    /// Largest inner frame that fits the underlay MTU once encapsulated.
    public let maxInnerFrame: Int


    /// - Parameters:
    ///   - roles: local port index -> role; exactly one underlay.
    ///   - underlayMAC: source MAC of outer frames (the config's, or the port's own).
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
        self.generation = .allocate(capacity: 1)
        self.generation.initialize(to: 0)
        self.udpPort = configuration.underlay.udpPort
        self.maxInnerFrame = configuration.underlay.mtu - VTEPConfiguration.ipv4Overhead

        // Tunnels: one per (VNI, remote) used by a flood list or an FDB entry.
        var tunnels: [Tunnel] = []
        func tunnelIndex(_ vni: UInt32, _ remote: IPv4Address) throws -> Int {
            if let i = tunnels.firstIndex(where: { $0.vni == vni && $0.remote == remote }) { return i }
            guard let nextHop = configuration.underlay.nextHop(for: remote) else {
                throw SetupError("remote \(remote) is off the underlay subnet and there is no gateway")
            }
            tunnels.append(Tunnel(vni: vni, remote: remote, nextHop: nextHop, template: OuterHeaderTemplate(
                sourceMAC: underlayMAC, destinationMAC: .zero, source: configuration.underlay.address,
                destination: remote, vni: vni, udpDestinationPort: configuration.underlay.udpPort,
                ttl: configuration.underlay.ttl)))
            return tunnels.count - 1
        }

        var flood: [Int32] = []
        var access: [Int32] = []
        var entries: [SegmentEntry] = []
        for segment in configuration.segments {
            let floodStart = flood.count
            for remote in segment.flood { flood.append(Int32(try tunnelIndex(segment.vni, remote))) }
            let accessStart = access.count
            for (port, role) in roles.enumerated() where role == .access(vni: segment.vni) { access.append(Int32(port)) }
            entries.append(SegmentEntry(vni: segment.vni, floodStart: Int32(floodStart), floodCount: Int32(flood.count - floodStart),
                                        accessStart: Int32(accessStart), accessCount: Int32(access.count - accessStart)))
        }
        var fdbTunnels: [(UInt32, MACAddress, Int)] = []
        for e in configuration.fdb { fdbTunnels.append((e.vni, e.mac, try tunnelIndex(e.vni, e.remote))) }
        self.tunnels = tunnels

        let templates = Self.alignedAllocate(max(1, tunnels.count) * 2 * Self.templateStride)
        let partialSums = Self.alignedAllocate(max(1, tunnels.count) * 4).bindMemory(to: UInt32.self, capacity: max(1, tunnels.count))
        for (i, t) in tunnels.enumerated() { partialSums[i] = t.template.ipv4PartialSum }
        self.templates = templates
        self.partialSums = partialSums
        activeCopy = .allocate(capacity: max(1, tunnels.count))
        activeCopy.initialize(repeating: -1, count: max(1, tunnels.count))
        publishTokens = Array(repeating: nil, count: tunnels.count)
        maxReaders = max(1, readers)
        let qsbrSize = Int(rte_rcu_qsbr_get_memsize(UInt32(maxReaders)))
        guard qsbrSize > 0, let qsbrMemory = rte_zmalloc("vxlan_qsbr", qsbrSize, UInt32(RTE_CACHE_LINE_SIZE)) else {
            throw DPDKError.fromErrno("allocating RCU state for \(readers) reader(s)")
        }
        qsbr = OpaquePointer(qsbrMemory)
        _ = rte_rcu_qsbr_init(qsbr, UInt32(maxReaders))
        segmentCount = entries.count
        segments = .allocate(capacity: max(1, entries.count))
        segments.initialize(from: entries, count: entries.count)
        floodTunnels = .allocate(capacity: max(1, flood.count))
        floodTunnels.initialize(from: flood, count: flood.count)
        accessPorts = .allocate(capacity: max(1, access.count))
        accessPorts.initialize(from: access, count: access.count)
        portSegment = .allocate(capacity: max(1, roles.count))
        for (i, role) in roles.enumerated() {
            switch role {
            case .underlay: portSegment[i] = -1
            case .access(let vni):
                guard let s = configuration.segments.firstIndex(where: { $0.vni == vni }) else {
                    throw SetupError("access port \(i) names VNI \(vni), which is not configured")
                }
                portSegment[i] = Int32(s)
            }
        }

        let id = dpdkObjectSerial.next()
        vniHash = try Self.makeHash(name: "vni\(id)", entries: max(64, entries.count * 2), keyLength: Self.keyLength)
        fdbHash = try Self.makeHash(name: "fdb\(id)", entries: max(1024, fdbTunnels.count * 2), keyLength: Self.keyLength)
        let key = UnsafeMutableRawPointer.allocate(byteCount: Self.keyLength, alignment: 16)
        defer { key.deallocate() }
        for (i, e) in entries.enumerated() {
            Self.writeVNIKey(key, vni: e.vni)
            let rc = rte_hash_add_key_data(vniHash, key, UnsafeMutableRawPointer(bitPattern: i + 1))
            guard rc == 0 else { throw DPDKError("adding VNI \(e.vni) to the VNI table", code: rc) }
        }
        for (vni, mac, tunnel) in fdbTunnels {
            Self.writeFDBKey(key, vni: vni, mac: mac.bytes)
            let rc = rte_hash_add_key_data(fdbHash, key, UnsafeMutableRawPointer(bitPattern: tunnel + 1))
            guard rc == 0 else { throw DPDKError("adding \(mac) in VNI \(vni) to the FDB", code: rc) }
        }
        // Static neighbors resolve their tunnels now; the rest wait for ARP.
        for (t, tunnel) in self.tunnels.enumerated() {
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
            // Lock-free readers: lets the control plane add entries while polling cores look up.
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

    /// Tunnels whose outer Ethernet destination is `nextHop`'s MAC.
    public func tunnels(through nextHop: IPv4Address) -> [Int] {
        tunnels.indices.filter { tunnels[$0].nextHop == nextHop }
    }

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
        tunnels[t].template.bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        for (i, b) in mac.bytes.enumerated() { p.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        vx_store_release_i32(activeCopy + t, Int32(next))
        publishTokens[t] = vx_qsbr_start(qsbr)
        return true
    }

    /// Tunnel index for (vni, mac), as the fast path would find it; nil when unknown.
    public func lookupFDB(vni: UInt32, mac: MACAddress) -> Int? {
        let key = UnsafeMutableRawPointer.allocate(byteCount: Self.keyLength, alignment: 16)
        defer { key.deallocate() }
        Self.writeFDBKey(key, vni: vni, mac: mac.bytes)
        var data: UnsafeMutableRawPointer?
        guard rte_hash_lookup_data(fdbHash, key, &data) >= 0, let d = data else { return nil }
        return Int(bitPattern: d) - 1
    }

    deinit {
        generation.deallocate()
        activeCopy.deallocate()
        rte_free(UnsafeMutableRawPointer(qsbr))
        rte_hash_free(fdbHash)
        rte_hash_free(vniHash)
        templates.deallocate()
        UnsafeMutableRawPointer(partialSums).deallocate()
        segments.deallocate()
        floodTunnels.deallocate()
        accessPorts.deallocate()
        portSegment.deallocate()
    }
}

/// Unique names for DPDK objects (hash tables and rings are named; names must not clash within a process).
let dpdkObjectSerial = SerialNumber()

final class SerialNumber: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}
