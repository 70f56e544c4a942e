import CDPDK
import Foundation
import PollMode
import VTEPConfig

/// Where an FDB entry sends a frame, as the fast path stores it: a tunnel index, or a local endpoint (an access
/// port, or one VLAN of a tagged access port).
public enum FDBTarget: Hashable, Sendable {
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

/// The forwarding database as the slow path (its only writer) keeps it: learning with every limit checked
/// before anything is created, moves, ageing, stamp slots reclaimed after a grace period, and the reports
/// `show fdb` reads. The cores read the same entries through `rte_hash` (FastPathView).
extension ForwardingTables {
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

    /// Whether `target` may be the target of an entry in vniSlot `vniSlot`.
    func isValid(_ target: FDBTarget, vniSlot: Int) -> Bool {
        switch target {
        case .local(let e): e >= 0 && e < endpointCapacity && endpointLive[e] && Int(fastPath.endpointVNISlot[e]) == vniSlot
        case .tunnel(let t): isLive(tunnel: t) && tunnels[t].vni == vniState[vniSlot]?.settings.vni
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
        guard let vniSlot = vniSlots[vni], let settings = vniState[vniSlot]?.settings else { return .unknownVNI }
        guard settings.learning else { return .learningOff }
        let entryKey = EntryKey(vni: vni, mac: mac)
        let existing = entries[entryKey]
        if let entry = existing {
            if entry.isStatic { return .staticEntry }
            // Seen where the entry says: refreshed. Seen elsewhere: stamped only once the move succeeds, so an
            // entry whose move is refused (no tunnel left) ages out rather than living on at the old place.
            switch destination {
            case .target(let t) where t == entry.target:
                fastPath.fdbLastSeen[Int(entry.slot)] = fastPath.clock.pointee
                return .refreshed
            case .remote(let ip) where existingTunnel(vni: vni, remote: ip).map({ FDBTarget.tunnel($0) }) == entry.target:
                fastPath.fdbLastSeen[Int(entry.slot)] = fastPath.clock.pointee
                return .refreshed
            default: break
            }
        } else {
            let limit = settings.maxLearned
            if limit > 0 && learnedPerVNI[vniSlot] >= limit { return .limitReached }
            if freeStamps.isEmpty { reclaimRetired() }
            // (The hash itself may still refuse the key: a tunnel created for it is then undone at once. No
            // count check here: deleted keys waiting in DPDK's defer queue come back only when an add needs them.)
            if freeStamps.isEmpty { return .tableFull }
        }
        // Admitted: now the target, creating the remote's tunnel if need be.
        let target: FDBTarget
        var created = false
        switch destination {
        case .target(let t):
            guard isValid(t, vniSlot: vniSlot) else { return .invalidTarget }
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
            guard rte_hash_add_key_data(fastPath.fdbHash, key, FDBData.pack(target: target.raw, slot: entry.slot)) == 0 else {
                undo(target, created: created)
                return .tableFull
            }
            release(entry.target)
            entry.target = target
            entries[entryKey] = entry
            fastPath.fdbLastSeen[Int(entry.slot)] = fastPath.clock.pointee
            bumpGeneration()
            return .moved
        }
        let slot = freeStamps.removeLast()
        fastPath.fdbLastSeen[Int(slot)] = fastPath.clock.pointee
        // The data word (target and stamp slot) is stored before the key becomes visible.
        guard rte_hash_add_key_data(fastPath.fdbHash, key, FDBData.pack(target: target.raw, slot: slot)) == 0 else {
            freeStamps.append(slot)                 // never visible: free at once
            undo(target, created: created)
            return .tableFull
        }
        afterFDBInsert?()
        entries[entryKey] = FDBEntry(vni: vni, mac: mac, target: target, isStatic: false, slot: slot)
        learnedPerVNI[vniSlot] += 1
        bumpGeneration()                 // cores drop their "learning pending" marks and find the new entry
        return .added
    }

    /// Takes back a reference that was never published; a tunnel created for it goes at once (no core saw it).
    func undo(_ target: FDBTarget, created: Bool) {
        guard created, case .tunnel(let t) = target else { return release(target) }
        tunnelReferences[t] -= 1
        destroyTunnel(t)
    }


    /// Removes learned entries not seen for their VNI's ageing time. Returns how many went.
    @discardableResult
    public func age() -> Int {
        let now = fastPath.clock.pointee
        var released: [Int32] = []
        // Which entries go is decided first and the dictionary changed after: removing while iterating would copy
        // the whole table (copy on write) every time anything ages.
        var expired: [(key: EntryKey, vniSlot: Int)] = []
        for (entryKey, entry) in entries where !entry.isStatic {
            guard let vniSlot = vniSlots[entry.vni], let ageing = vniState[vniSlot]?.settings.ageing else { continue }
            let seen = fastPath.fdbLastSeen[Int(entry.slot)]
            if now &- seen >= UInt32(ageing) { expired.append((entryKey, vniSlot)) }
        }
        for (entryKey, vniSlot) in expired {
            guard let entry = entries[entryKey] else { continue }
            Self.writeFDBKey(key, vni: entry.vni, mac: entry.mac.bytes)
            if rte_hash_del_key(fastPath.fdbHash, key) >= 0 {
                entries[entryKey] = nil
                learnedPerVNI[vniSlot] -= 1
                released.append(entry.slot)
                release(entry.target)
            }
        }
        if !released.isEmpty {
            bumpGeneration()
            // Cores may hold the slots (in a cache or a burst) until they pass a quiescent state.
            for slot in released { retire(.stampSlot(slot)) }
        }
        return released.count
    }

    /// Every FDB entry with its age in seconds (0 for static ones), for `show fdb`.
    public func fdbEntries(vni: UInt32? = nil) -> [(entry: FDBEntry, age: UInt32)] {
        Self.sorted(unsortedFDBEntries(vni: vni))
    }

    /// The entries and their ages, in no order: a copy quick enough to take under the slow path's lock, which
    /// learning and ARP also need (sort it outside with `sorted`).
    public func unsortedFDBEntries(vni: UInt32? = nil) -> [(entry: FDBEntry, age: UInt32)] {
        let now = fastPath.clock.pointee
        var out: [(entry: FDBEntry, age: UInt32)] = []
        out.reserveCapacity(vni == nil ? entries.count : 64)
        for e in entries.values where vni == nil || e.vni == vni {
            out.append((e, e.isStatic ? 0 : now &- fastPath.fdbLastSeen[Int(e.slot)]))
        }
        return out
    }

    /// By (VNI, MAC); the sort key is computed once per entry, not per comparison (a table can hold millions).
    public static func sorted(_ items: [(entry: FDBEntry, age: UInt32)]) -> [(entry: FDBEntry, age: UInt32)] {
        var keyed = items.map { (vni: $0.entry.vni, mac: $0.entry.mac.integer, item: $0) }
        keyed.sort { (a, b) -> Bool in a.vni != b.vni ? a.vni < b.vni : a.mac < b.mac }
        return keyed.map(\.item)
    }

    public func learnedCount(vni: UInt32) -> Int {
        vniSlots[vni].map { learnedPerVNI[$0] } ?? 0
    }

    /// Tunnel for (vni, mac), as the fast path would find it; nil when unknown or local.
    public func lookupFDB(vni: UInt32, mac: MACAddress) -> Int? {
        Self.writeFDBKey(key, vni: vni, mac: mac.bytes)
        var data: UnsafeMutableRawPointer?
        guard rte_hash_lookup_data(fastPath.fdbHash, key, &data) >= 0, case .tunnel(let t) = FDBTarget(raw: FDBData.target(data)) else { return nil }
        return t
    }

    /// VNI slot for `vni` as the fast path would find it in the VNI table; nil when a core would not.
    public func lookupVNI(_ vni: UInt32) -> Int? {
        Self.writeVNIKey(key, vni: vni)
        var data: UnsafeMutableRawPointer?
        guard rte_hash_lookup_data(fastPath.vniHash, key, &data) >= 0 else { return nil }
        return Int(bitPattern: data) - 1
    }

    /// Test hook: puts a raw data word into the FDB, bypassing every check `learn` makes (as a stale or corrupt
    /// entry would look to a core).
    func insertUnchecked(vni: UInt32, mac: MACAddress, target: Int32, slot: Int32) {
        Self.writeFDBKey(key, vni: vni, mac: mac.bytes)
        _ = rte_hash_add_key_data(fastPath.fdbHash, key, FDBData.pack(target: target, slot: slot))
        bumpGeneration()
    }
}
