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
    /// A port slot with no mapping: detached at run time (frames from it are dropped).
    case detached
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
@dynamicMemberLookup
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

    /// One VNI as the cores see it: an immutable block, replaced whole (one release store of its pointer in
    /// `vniBlocks`) when the VNI's flood list, access ports or settings change, and freed only after a grace
    /// period. `members` holds the access endpoints first, then the flood tunnels.
    public struct VNIBlock {
        public var vni: UInt32
        public var learning: Bool
        public var accessCount: Int32
        public var floodCount: Int32
        public var members: UnsafeMutablePointer<Int32>
        /// Who may send VXLAN for it (`allowed_remotes`); nil: anyone (one load on the fast path).
        public var filter: UnsafeMutablePointer<RemoteFilter>?

        /// Local endpoint `i` (0..<accessCount).
        @inlinable @inline(__always) public func access(_ i: Int) -> Int32 { members[i] }
        /// Flood tunnel `i` (0..<floodCount).
        @inlinable @inline(__always) public func floodTunnel(_ i: Int) -> Int32 { members[Int(accessCount) &+ i] }
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

    /// By local port: its role; `.detached` for a slot whose port was detached (or never attached).
    public internal(set) var roles: [PortRole]
    public let underlayPort: Int
    public let underlayMAC: MACAddress
    /// By tunnel index. An index whose tunnel was reclaimed keeps its last tunnel until reused (`isLive`).
    public internal(set) var tunnels: [Tunnel]
    /// The running configuration: the file's, with every change made since (LiveChanges.swift) applied.
    public internal(set) var configuration: VTEPConfiguration

    // Fast-path views.
    public let tunnelCapacity: Int
    public let emptyVNIBlock: UnsafeMutablePointer<VNIBlock>
    /// VNI slots, endpoint slots and local ports the tables can hold (`resources.vnis`, `resources.ports`).
    public let vniCapacity: Int
    public let endpointCapacity: Int
    public let portCapacity: Int
    public enum PortKind {
        public static let underlay: Int32 = -1, tagged: Int32 = -2
        /// A port slot with no access mapping (detached, or not attached yet): its frames are dropped.
        public static let detached: Int32 = -3
    }
    public let fdbCapacity: Int
    public let maxReaders: Int
    public let underlayAddress: UInt32
    /// The IPv6 VTEP address as two native-order words, when there is one.
    public let underlayAddress6: (UInt64, UInt64)?
    public let udpPort: UInt16
    public let strict: Bool
    /// Largest inner frame that fits the underlay MTU once encapsulated (IPv4 and IPv6 outer headers).
    public let maxInnerFrame: Int
    public let maxInnerFrame6: Int

    /// What the polling cores read, gathered once (FastPathView.swift): the only place the tables keep their
    /// shared memory, written through it by the writer (`fastPath.endpointPort[e] = ...`) and read through it by
    /// reports (`tables.endpointPort`, forwarded by dynamic member lookup).
    public let fastPath: FastPathView
    public subscript<T>(dynamicMember keyPath: KeyPath<FastPathView, T>) -> T { fastPath[keyPath: keyPath] }

    /// Test hook: runs right after a learned key became visible to the cores.
    var afterFDBInsert: (() -> Void)?
    /// Tunnels in use (flood lists, static entries, learned entries, and those waiting to be reclaimed).
    public internal(set) var liveTunnelCount = 0

    // Slow-path state.
    var publishTokens: [UInt64?]
    /// Per tunnel: the copy in use when it was last unpublished (`publish(mac: nil)`), rewritten last.
    var parkedCopy: [Int32] = []
    struct TunnelKey: Hashable {
        var vni: UInt32
        var remote: IPAddress
    }
    /// Live tunnels by (vni, remote).
    var tunnelIndex: [TunnelKey: Int] = [:]
    /// Per tunnel index: learned FDB entries pointing at it; flood-list and static-entry tunnels are permanent.
    var tunnelReferences: [Int] = []
    /// Per tunnel index: flood lists and static FDB entries naming it; pinned tunnels are never reclaimed.
    var tunnelPins: [Int] = []
    var tunnelLive: [Bool] = []
    /// Indices no core can hold any more, ready for reuse.
    var freeTunnels: [Int] = []
    /// Tunnels nothing refers to, by index: the grace-period token taken when the last reference went. Kept here
    /// rather than in the defer queue: a tunnel referred to again before its grace period ends (a MAC learned
    /// behind the same remote) must stay, and DPDK's queue cannot take an entry back.
    var dyingTunnels: [Int: UInt64] = [:]
    /// Set by the tables' writer: waits until the condition (a grace period being over) holds or a deadline passes
    /// (UnderlayControl: only inside a change, with its lock held).
    public var awaitGracePeriod: ((() -> Bool) -> Void)?
    /// Called as a run-time change gives a VNI slot to a VNI, before any core can reach it (the daemon's per-VNI
    /// counters start from there).
    public var vniSlotTaken: ((Int) -> Void)?
    /// Live tunnels per next hop.
    var nextHopUsers: [IPAddress: Int] = [:]
    var entries: [EntryKey: FDBEntry] = [:]
    /// By VNI slot: learned entries, and the slow path's view of the VNI (nil: a free slot).
    var learnedPerVNI: [Int]
    var vniState: [VNIState?]
    /// VNI -> VNI slot.
    var vniSlots: [UInt32: Int] = [:]
    /// VNI slots no core can reach, and slots (with the blocks they pointed to) waiting for a grace period.
    var freeVNISlots: [Int]
    var freeEndpoints: [Int32]
    /// Per endpoint slot: whether learned entries may point at it (from attach until detach).
    var endpointLive: [Bool]
    /// Local port -> its endpoint slots (one for an untagged port, one per VLAN for a tagged one).
    var portEndpoints: [[Int32]]
    /// By local port: how `show config` describes it (nil: detached, or the underlay).
    var accessSettings: [VTEPConfiguration.AccessPort?] = []
    /// Tunnels reclaimed that the slow path has not been told about (`takeGoneTunnels`).
    var goneTunnels: [(tunnel: Int, nextHop: IPAddress)] = []
    /// Tunnels created by run-time changes that the slow path has not started resolving yet.
    var createdTunnels: [Int] = []
    /// Memory and slots the cores may still hold (VNI blocks and slots, endpoint slots, stamp slots), in DPDK's RCU
    /// defer queue until every core has passed a quiescent state since they were unpublished (`retire`, `reclaim`).
    var reclaimQueue: OpaquePointer!
    /// What the defer queue's free function reaches the tables through (it must not retain them while they go).
    let reclaimSink = ReclaimSink()
    /// How many of each kind wait in `reclaimQueue` (`Retired.kind`).
    var waiting = [Int](repeating: 0, count: 5)
    /// Stamp slots no entry uses and no core can still write; slots of deleted entries wait for a grace period.
    var freeStamps: [Int32]
    let key = UnsafeMutableRawPointer.allocate(byteCount: ForwardingTables.keyLength, alignment: 16)

    /// - Parameter readers: how many polling cores will read the tables (each registers as an RCU reader).
    /// Marks whether `port` takes large TCP frames (GRO and whole GSO frames go to it); see `portTakesLargeFrames`.
    public func setPortTakesLargeFrames(_ port: Int, _ takes: Bool) {
        guard port >= 0 && port < roles.count else { return }
        vx_store_release_u8(fastPath.portTakesLargeFrames + port, takes ? 1 : 0)
    }

    public init(configuration config: VTEPConfiguration, roles: [PortRole], underlayMAC: MACAddress, readers: Int = 1) throws {
        let configuration = config
        guard let underlay = roles.firstIndex(of: .underlay), roles.filter({ $0 == .underlay }).count == 1 else {
            throw SetupError("exactly one underlay port is required")
        }
        self.configuration = configuration
        self.roles = roles.map { $0 == .underlay ? .underlay : .detached }
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

        let templates = Self.alignedAllocate(tunnelCapacity * 2 * Self.templateStride)
        let partialSums = Self.alignedAllocate(tunnelCapacity * 4).bindMemory(to: UInt32.self, capacity: tunnelCapacity)
        let activeCopy: UnsafeMutablePointer<Int32> = .allocate(capacity: tunnelCapacity)
        activeCopy.initialize(repeating: -1, count: tunnelCapacity)
        let tunnelRemote: UnsafeMutablePointer<UInt32> = .allocate(capacity: tunnelCapacity)
        tunnelRemote.initialize(repeating: 0, count: tunnelCapacity)
        let tunnelIsIPv6: UnsafeMutablePointer<UInt8> = .allocate(capacity: tunnelCapacity)
        tunnelIsIPv6.initialize(repeating: 0, count: tunnelCapacity)
        let tunnelRemote6: UnsafeMutablePointer<UInt64> = .allocate(capacity: tunnelCapacity * 2)
        tunnelRemote6.initialize(repeating: 0, count: tunnelCapacity * 2)
        publishTokens = []
        let generation: UnsafeMutablePointer<UInt64> = .allocate(capacity: 1)
        generation.initialize(to: 0)
        let clock: UnsafeMutablePointer<UInt32> = .allocate(capacity: 1)
        clock.initialize(to: 0)
        let fdbLastSeen: UnsafeMutablePointer<UInt32> = .allocate(capacity: fdbCapacity)
        fdbLastSeen.initialize(repeating: 0, count: fdbCapacity)
        freeStamps = (0..<Int32(fdbCapacity)).reversed()
        vniCapacity = max(configuration.resources.vnis, configuration.vnis.count, 1)
        portCapacity = max(configuration.resources.ports, roles.count)
        learnedPerVNI = Array(repeating: 0, count: vniCapacity)
        vniState = Array(repeating: nil, count: vniCapacity)
        freeVNISlots = (0..<vniCapacity).reversed()

        maxReaders = max(1, readers)
        let qsbrSize = Int(rte_rcu_qsbr_get_memsize(UInt32(maxReaders)))
        guard qsbrSize > 0, let qsbrMemory = rte_zmalloc("vxlan_qsbr", qsbrSize, UInt32(RTE_CACHE_LINE_SIZE)) else {
            throw DPDKError.fromErrno("allocating RCU state for \(readers) reader(s)")
        }
        let qsbr = OpaquePointer(qsbrMemory)
        guard rte_rcu_qsbr_init(qsbr, UInt32(maxReaders)) == 0 else {
            throw DPDKError.fromErrno("initialising RCU state for \(readers) reader(s)")
        }

        // Every slot of every table exists from the start, so that nothing a core indexes is ever reallocated.
        var configuredEndpoints = 0
        for role in roles {
            if case .access = role { configuredEndpoints += 1 }
            if case .tagged(let m) = role { configuredEndpoints += m.count }
        }
        endpointCapacity = max(2 * vniCapacity, configuredEndpoints + vniCapacity)
        emptyVNIBlock = .allocate(capacity: 1)
        let noMembers = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        noMembers.initialize(to: -1)
        emptyVNIBlock.initialize(to: VNIBlock(vni: 0, learning: false, accessCount: 0, floodCount: 0, members: noMembers, filter: nil))
        let vniBlocks: UnsafeMutablePointer<UnsafeMutablePointer<VNIBlock>> = .allocate(capacity: vniCapacity)
        vniBlocks.initialize(repeating: emptyVNIBlock, count: vniCapacity)
        let endpointPort: UnsafeMutablePointer<Int32> = .allocate(capacity: endpointCapacity)
        endpointPort.initialize(repeating: -1, count: endpointCapacity)
        let endpointVLAN: UnsafeMutablePointer<UInt16> = .allocate(capacity: endpointCapacity)
        endpointVLAN.initialize(repeating: 0, count: endpointCapacity)
        let endpointVNISlot: UnsafeMutablePointer<Int32> = .allocate(capacity: endpointCapacity)
        endpointVNISlot.initialize(repeating: -1, count: endpointCapacity)
        let endpointEpoch: UnsafeMutablePointer<UInt32> = .allocate(capacity: endpointCapacity)
        endpointEpoch.initialize(repeating: 0, count: endpointCapacity)
        freeEndpoints = (0..<Int32(endpointCapacity)).reversed()
        endpointLive = Array(repeating: false, count: endpointCapacity)
        portEndpoints = Array(repeating: [], count: portCapacity)
        let portEndpoint: UnsafeMutablePointer<Int32> = .allocate(capacity: portCapacity)
        portEndpoint.initialize(repeating: PortKind.detached, count: portCapacity)
        let portTakesLargeFrames: UnsafeMutablePointer<UInt8> = .allocate(capacity: portCapacity)
        portTakesLargeFrames.initialize(repeating: 0, count: portCapacity)
        let vlanEndpoint: UnsafeMutablePointer<Int32> = .allocate(capacity: portCapacity * 4096)
        vlanEndpoint.initialize(repeating: -1, count: portCapacity * 4096)
        portEndpoint[underlay] = PortKind.underlay

        let id = dpdkObjectSerial.next()
        let vniHash = try Self.makeHash(name: "vni\(id)", entries: max(64, vniCapacity * 2), keyLength: Self.keyLength)
        let fdbHash = try Self.makeHash(name: "fdb\(id)", entries: fdbCapacity, keyLength: Self.keyLength)
        // Deleted keys go back to each table only after every polling core passed a quiescent state.
        for (hash, what) in [(fdbHash, "the FDB"), (vniHash, "the VNI table")] {
            var rcu = rte_hash_rcu_config()
            rcu.v = qsbr
            rcu.mode = RTE_HASH_QSBR_MODE_DQ
            // It returns 1 and says why in rte_errno.
            guard rte_hash_rcu_qsbr_add(hash, &rcu) == 0 else { throw DPDKError.fromErrno("attaching RCU reclamation to \(what)") }
        }
        fastPath = FastPathView(
            templates: templates, partialSums: partialSums, activeCopy: activeCopy, tunnelRemote: tunnelRemote,
            tunnelIsIPv6: tunnelIsIPv6, tunnelRemote6: tunnelRemote6, tunnelCapacity: tunnelCapacity,
            vniBlocks: vniBlocks, endpointPort: endpointPort, endpointVLAN: endpointVLAN, endpointVNISlot: endpointVNISlot,
            endpointEpoch: endpointEpoch, endpointCount: endpointCapacity, portEndpoint: portEndpoint, portTakesLargeFrames: portTakesLargeFrames, vlanEndpoint: vlanEndpoint,
            fdbHash: fdbHash, fdbLastSeen: fdbLastSeen, fdbCapacity: fdbCapacity, vniHash: vniHash,
            clock: clock, generation: generation, qsbr: qsbr,
            underlayPort: underlayPort, underlayMAC: underlayMAC, underlayAddress: underlayAddress, underlayAddress6: underlayAddress6,
            udpPort: udpPort, strict: strict, verifyUDPChecksum: configuration.underlay.verifyUDPChecksum,
            udp6ZeroChecksum: configuration.underlay.udp6ZeroChecksum, maxInnerFrame: maxInnerFrame, maxInnerFrame6: maxInnerFrame6)

        // Large enough for every slot and stamp at once, and for blocks of VNIs changed many times over before the
        // cores pass a quiescent state (DPDK reclaims by itself when it is full; `retire` waits beyond that).
        var queueSize = 4 * vniCapacity + 2 * endpointCapacity + fdbCapacity + 4096
        queueSize = 1 << (Int.bitWidth - (queueSize - 1).leadingZeroBitCount)
        reclaimSink.tables = self
        let queue = vx_dq_create("rdq\(id)", UInt32(queueSize), qsbr, Self.freeRetired, Unmanaged.passUnretained(reclaimSink).toOpaque())
        guard let queue else { throw DPDKError.fromErrno("creating the RCU defer queue (\(queueSize) entries)") }
        reclaimQueue = queue

        // The file's state, through the same code as run-time changes: VNIs (flood tunnels first, in file order),
        // then the access ports, then the static FDB. Static neighbors resolve their tunnels now; the rest wait
        // for ARP.
        self.configuration.vnis = []
        self.configuration.fdb = []
        self.configuration.access = []
        for segment in configuration.vnis { try addVNI(segment) }
        accessSettings = Array(repeating: nil, count: roles.count)
        // The k-th access port in the file is the k-th port that is not the underlay.
        for (k, port) in roles.indices.filter({ roles[$0] != .underlay }).enumerated() {
            try attach(port: port, role: roles[port], settings: k < configuration.access.count ? configuration.access[k] : nil)
        }
        for e in configuration.fdb { try addStaticEntry(vni: e.vni, mac: e.mac, remote: e.remote) }
        self.configuration = configuration
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
        _ = rte_rcu_qsbr_thread_register(fastPath.qsbr, UInt32(reader))
        vx_qsbr_online(fastPath.qsbr, UInt32(reader))
    }

    public func unregisterReader(_ reader: Int) {
        vx_qsbr_offline(fastPath.qsbr, UInt32(reader))
        _ = rte_rcu_qsbr_thread_unregister(fastPath.qsbr, UInt32(reader))
    }

    /// Tells the cores that cached lookup results may be stale.
    public func bumpGeneration() { vx_store_release_u64(fastPath.generation, fastPath.generation.pointee &+ 1) }


    /// The port and VLAN (0: untagged) of local endpoint `e`.
    public func endpoint(_ e: Int) -> (port: Int, vlan: UInt16) { (Int(fastPath.endpointPort[e]), fastPath.endpointVLAN[e]) }


    deinit {
        key.deallocate()
        fastPath.generation.deallocate()
        fastPath.clock.deallocate()
        fastPath.activeCopy.deallocate()
        fastPath.tunnelRemote.deallocate()
        fastPath.tunnelIsIPv6.deallocate()
        fastPath.tunnelRemote6.deallocate()
        fastPath.fdbLastSeen.deallocate()
        rte_hash_free(fastPath.fdbHash)
        rte_hash_free(fastPath.vniHash)
        fastPath.templates.deallocate()
        UnsafeMutableRawPointer(fastPath.partialSums).deallocate()
        for s in 0..<vniCapacity where fastPath.vniBlocks[s] != emptyVNIBlock { Self.free(fastPath.vniBlocks[s]) }
        // The cores are gone (no reader holds a grace period back): everything queued is freed now.
        reclaimSink.closing = true
        if let reclaimQueue { _ = vx_dq_delete(reclaimQueue) }
        // Only now: deleting the queue reads the RCU variable.
        rte_free(UnsafeMutableRawPointer(fastPath.qsbr))
        emptyVNIBlock.pointee.members.deallocate()
        emptyVNIBlock.deallocate()
        fastPath.vniBlocks.deallocate()
        fastPath.endpointPort.deallocate(); fastPath.endpointVLAN.deallocate(); fastPath.endpointVNISlot.deallocate(); fastPath.endpointEpoch.deallocate()
        fastPath.portEndpoint.deallocate(); fastPath.vlanEndpoint.deallocate(); fastPath.portTakesLargeFrames.deallocate()
    }
}


/// Unique names for DPDK objects (hash tables and rings are named; names must not clash within a process).
let dpdkObjectSerial = SerialNumber()

final class SerialNumber: @unchecked Sendable {
    var value = 0
    let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}
