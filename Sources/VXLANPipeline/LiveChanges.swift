import CDPDK
import Glibc
import PollMode
import VTEPConfig

/// Why a run-time change was refused. Nothing was changed when it is thrown.
public struct ChangeError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Run-time changes to the tables while the cores forward: VNIs, flood lists, access-port mappings and static FDB
/// entries. One writer at a time (the slow path's lock, see `UnderlayControl`). Each change checks everything
/// first and then publishes complete objects only:
/// - a VNI's block (`VNIBlock`: settings, access endpoints, flood tunnels, remote filter) is built whole and
///   replaced with one release store; the old block is freed after a grace period;
/// - endpoint and VNI slots are written while no core can reach them and reused only after a grace period;
/// - every removal bumps `generation`, so cores drop cached lookups at their next burst.
/// `configuration` follows every change, so that it is always the running state (`vxlanctl show config`).
extension ForwardingTables {
    /// The slow path's view of one VNI slot.
    struct VNIState {
        var settings: VTEPConfiguration.VNISettings
        /// Tunnel indices, in flood-list order.
        var floodTunnels: [Int]
        /// Local endpoints in this VNI, in the order they were attached.
        var endpoints: [Int32]
        /// Remotes of static FDB entries in this VNI (always allowed by its remote filter), with their counts.
        var staticRemotes: [IPAddress: Int] = [:]
    }

    /// Something the cores may still hold, freed once a grace period has passed.
    enum Retired {
        case vniBlock(UnsafeMutablePointer<VNIBlock>)
        case vniSlot(Int)
        case endpointSlot(Int32)
        case stampSlot(Int32)

        /// As it waits in the defer queue: (kind, value).
        var element: (kind: Int, value: UInt64) {
            switch self {
            case .vniBlock(let b): (1, UInt64(UInt(bitPattern: b)))
            case .vniSlot(let s): (2, UInt64(s))
            case .endpointSlot(let e): (3, UInt64(e))
            case .stampSlot(let s): (4, UInt64(s))
            }
        }
    }

    // MARK: - VNIs

    /// The VNI's slot, if it is configured.
    public func vniSlot(vni: UInt32) -> Int? { vniSlots[vni] }

    /// Adds a VNI with its settings and flood list. Throws, changing nothing, when it exists, is out of range, a
    /// flood remote is unreachable, or `resources.vnis` / `resources.tunnels` are exhausted.
    public func addVNI(_ segment: VTEPConfiguration.VNISettings) throws {
        let vni = segment.vni
        guard VTEPConfiguration.vniRange.contains(vni) else {
            throw ChangeError("VNI \(vni) out of range (\(VTEPConfiguration.minVNI)-\(VTEPConfiguration.maxVNI))")
        }
        guard vniSlots[vni] == nil else { throw ChangeError("VNI \(vni) already exists") }
        try checkFloodList(segment.flood, vni: vni)
        if freeVNISlots.isEmpty && waiting[2] > 0 { waitForGracePeriod { !self.freeVNISlots.isEmpty } }
        func full() -> ChangeError {
            ChangeError("cannot add VNI \(vni): all \(vniCapacity) VNIs (resources.vnis) are in use"
                + (waiting[2] == 0 ? "" : " or waiting for the cores to let go of them"))
        }
        guard !freeVNISlots.isEmpty else { throw full() }
        let flood = try pinAll(segment.flood, vni: vni)
        // Taken only now: pinning may have waited for a grace period and given slots back to the free list.
        guard let slot = freeVNISlots.popLast() else {
            for t in flood { unpin(tunnel: t) }
            throw full()
        }
        vniSlotTaken?(slot)
        vniState[slot] = VNIState(settings: segment, floodTunnels: flood, endpoints: [])
        learnedPerVNI[slot] = 0
        publishVNI(slot)
        Self.writeVNIKey(key, vni: vni)
        let rc = rte_hash_add_key_data(fastPath.vniHash, key, UnsafeMutableRawPointer(bitPattern: slot + 1))
        guard rc == 0 else {
            // The VNI never became reachable; its block and slot go back the usual way.
            let block = fastPath.vniBlocks[slot]
            vx_store_release_ptr(fastPath.vniBlocks + slot, emptyVNIBlock)
            retire(.vniBlock(block)); retire(.vniSlot(slot))
            vniState[slot] = nil
            for t in flood { unpin(tunnel: t) }
            throw ChangeError(rc == -ENOSPC ? "cannot add VNI \(vni): the VNI table is full" : "cannot add VNI \(vni) to the VNI table (error \(rc))")
        }
        vniSlots[vni] = slot
        configuration.vnis.append(segment)
    }

    /// Removes a VNI: its static and learned FDB entries go with it. Refused while an access port maps to it.
    public func removeVNI(vni: UInt32) throws {
        guard let slot = vniSlots[vni], let state = vniState[slot] else { throw ChangeError("VNI \(vni) does not exist") }
        guard state.endpoints.isEmpty else {
            let users = Set(state.endpoints.map { Int(fastPath.endpointPort[Int($0)]) }).sorted().map(portName)
            throw ChangeError("VNI \(vni) is mapped to access port(s) \(users.joined(separator: ", ")); detach or remap them first")
        }
        // First the cores stop finding it, then what it named goes.
        Self.writeVNIKey(key, vni: vni)
        _ = rte_hash_del_key(fastPath.vniHash, key)
        let block = fastPath.vniBlocks[slot]
        vx_store_release_ptr(fastPath.vniBlocks + slot, emptyVNIBlock)
        removeEntries { $0.vni == vni }
        for t in state.floodTunnels { unpin(tunnel: t) }
        vniState[slot] = nil
        vniSlots[vni] = nil
        configuration.vnis.removeAll { $0.vni == vni }
        configuration.fdb.removeAll { $0.vni == vni }
        bumpGeneration()
        retire(.vniBlock(block))
        retire(.vniSlot(slot))
    }

    /// Replaces a VNI's settings and flood list (what `apply` does to a VNI whose settings changed). The flood
    /// tunnels that stay are the same tunnels: their traffic is not disturbed.
    public func updateVNI(_ segment: VTEPConfiguration.VNISettings) throws {
        guard let slot = vniSlots[segment.vni], let before = vniState[slot] else {
            throw ChangeError("VNI \(segment.vni) does not exist")
        }
        try checkFloodList(segment.flood, vni: segment.vni)
        let old = before.settings.flood
        var byRemote: [IPAddress: Int] = [:]
        for (r, t) in zip(old, before.floodTunnels) { byRemote[r] = t }
        let added = segment.flood.filter { !old.contains($0) }
        let removed = old.filter { !segment.flood.contains($0) }
        // Remotes that go are unpublished first and their tunnels given back, so that a VTEP whose tunnels are all
        // in use can swap remotes in one change: the cores stop seeing them (new block, generation) before the
        // grace period that frees their tunnels starts.
        if !removed.isEmpty {
            var shrunk = before
            shrunk.floodTunnels = old.filter { !removed.contains($0) }.map { byRemote[$0]! }
            shrunk.settings.flood = old.filter { !removed.contains($0) }
            vniState[slot] = shrunk
            publishVNI(slot)
            bumpGeneration()
            for r in removed { unpin(tunnel: byRemote[r]!) }
        }
        let addedTunnels: [Int]
        do { addedTunnels = try pinAll(added, vni: segment.vni) } catch {
            // Put the removed remotes back as they were (their tunnels are found again, or made anew).
            if !removed.isEmpty {
                if let back = try? pinAll(removed, vni: segment.vni) {
                    for (r, t) in zip(removed, back) { byRemote[r] = t }
                    var restored = before
                    restored.floodTunnels = old.map { byRemote[$0]! }
                    vniState[slot] = restored
                    publishVNI(slot)
                } else {
                    configuration.vnis[configuration.vniIndex(segment.vni)!].flood = vniState[slot]!.settings.flood
                    throw ChangeError("\(error); the flood list of VNI \(segment.vni) could not be restored and is now "
                        + vniState[slot]!.settings.flood.map(\.description).joined(separator: ", "))
                }
            }
            throw error
        }
        for (r, t) in zip(added, addedTunnels) { byRemote[r] = t }
        var state = vniState[slot]!
        state.settings = segment
        state.floodTunnels = segment.flood.map { byRemote[$0]! }
        vniState[slot] = state
        publishVNI(slot)
        if let i = configuration.vniIndex(segment.vni) { configuration.vnis[i] = segment }
    }

    /// Adds remote VTEPs to a VNI's flood list (each must be new to it).
    public func addFlood(vni: UInt32, remotes: [IPAddress]) throws {
        guard let segment = configuration.vniSettings(vni) else { throw ChangeError("VNI \(vni) does not exist") }
        for r in remotes where segment.flood.contains(r) { throw ChangeError("\(r) is already in the flood list of VNI \(vni)") }
        guard Set(remotes).count == remotes.count else { throw ChangeError("a remote is given twice") }
        var changed = segment
        changed.flood += remotes
        try updateVNI(changed)
    }

    /// Removes remote VTEPs from a VNI's flood list.
    public func removeFlood(vni: UInt32, remotes: [IPAddress]) throws {
        guard let segment = configuration.vniSettings(vni) else { throw ChangeError("VNI \(vni) does not exist") }
        for r in remotes where !segment.flood.contains(r) {
            throw ChangeError("\(r) is not in the flood list of VNI \(vni)"
                + (segment.flood.isEmpty ? " (it is empty)" : " (\(segment.flood.map(\.description).joined(separator: ", ")))"))
        }
        var changed = segment
        changed.flood.removeAll { remotes.contains($0) }
        try updateVNI(changed)
    }

    func checkFloodList(_ flood: [IPAddress], vni: UInt32) throws {
        var seen = Set<IPAddress>()
        for r in flood {
            if let problem = ConfigRules.problem(remote: r, underlay: configuration.underlay) { throw ChangeError(problem) }
            guard seen.insert(r).inserted else { throw ChangeError("\(r) is listed twice in the flood list of VNI \(vni)") }
        }
    }

    /// Pins one tunnel per remote; on failure the pins taken are given back and the error rethrown.
    func pinAll(_ remotes: [IPAddress], vni: UInt32) throws -> [Int] {
        var pinned: [Int] = []
        do {
            for r in remotes { pinned.append(try pinTunnel(vni: vni, remote: r)) }
        } catch {
            for t in pinned { unpin(tunnel: t) }
            throw error
        }
        return pinned
    }

    /// Builds the slot's block from its state and publishes it; the block it replaces waits for a grace period.
    func publishVNI(_ slot: Int) {
        guard let state = vniState[slot] else { return }
        let members = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, state.endpoints.count + state.floodTunnels.count))
        members.initialize(from: state.endpoints + state.floodTunnels.map(Int32.init), count: state.endpoints.count + state.floodTunnels.count)
        var filter: UnsafeMutablePointer<RemoteFilter>? = nil
        if let prefixes = state.settings.allowedRemotes ?? configuration.underlay.allowedRemotes {
            let f = UnsafeMutablePointer<RemoteFilter>.allocate(capacity: 1)
            f.initialize(to: RemoteFilter(prefixes: prefixes, staticRemotes: state.settings.flood + state.staticRemotes.keys))
            filter = f
        }
        let block = UnsafeMutablePointer<VNIBlock>.allocate(capacity: 1)
        block.initialize(to: VNIBlock(vni: state.settings.vni, learning: state.settings.learning,
                                          accessCount: Int32(state.endpoints.count), floodCount: Int32(state.floodTunnels.count),
                                          members: members, filter: filter))
        let old = fastPath.vniBlocks[slot]
        vx_store_release_ptr(fastPath.vniBlocks + slot, block)
        if old != emptyVNIBlock { retire(.vniBlock(old)) }
    }

    static func free(_ block: UnsafeMutablePointer<VNIBlock>) {
        block.pointee.members.deallocate()
        if let f = block.pointee.filter { f.deinitialize(count: 1); f.deallocate() }
        block.deallocate()
    }

    // MARK: - Access ports

    /// Maps local port `port` (attached, not the underlay) into its VNI, or its VLANs into theirs. `settings` is
    /// what `show config` prints for it.
    public func attach(port: Int, role: PortRole, settings: VTEPConfiguration.AccessPort?) throws {
        guard port >= 0, port < portCapacity else {
            throw ChangeError("port slot \(port) is beyond resources.ports (\(portCapacity))")
        }
        guard port != underlayPort else { throw ChangeError("\(portName(port)) is the underlay port") }
        if port < roles.count, roles[port] != .detached { throw ChangeError("\(portName(port)) is already attached") }
        let mappings: [(vlan: UInt16, vni: UInt32)]
        switch role {
        case .access(let vni): mappings = [(0, vni)]
        case .tagged(let list):
            guard !list.isEmpty else { throw ChangeError("a tagged port needs at least one VLAN mapping") }
            mappings = list.map { ($0.vlan, $0.vni) }
            var seen = Set<UInt16>()
            for m in list {
                guard (1...4094).contains(m.vlan) else { throw ChangeError("VLAN \(m.vlan) out of range (1-4094)") }
                guard seen.insert(m.vlan).inserted else { throw ChangeError("VLAN \(m.vlan) is mapped twice") }
            }
        case .underlay, .detached: throw ChangeError("an access port needs a VNI or VLAN mappings")
        }
        for m in mappings where vniSlots[m.vni] == nil {
            throw ChangeError(m.vlan == 0 ? "VNI \(m.vni) does not exist" : "VLAN \(m.vlan): VNI \(m.vni) does not exist")
        }
        if freeEndpoints.count < mappings.count { waitForGracePeriod { self.freeEndpoints.count >= mappings.count } }
        guard freeEndpoints.count >= mappings.count else {
            throw ChangeError("no room for \(mappings.count) more access endpoint(s): \(endpointCapacity) in all (twice resources.vnis)")
        }
        // Endpoint slots first (no core can reach them yet), then the VNIs' blocks, then the port's own mapping.
        var slots: [Int32] = []
        for m in mappings {
            let e = freeEndpoints.removeLast()
            let slot = vniSlots[m.vni]!
            fastPath.endpointPort[Int(e)] = Int32(port)
            fastPath.endpointVLAN[Int(e)] = m.vlan
            fastPath.endpointVNISlot[Int(e)] = Int32(slot)
            fastPath.endpointEpoch[Int(e)] &+= 1
            endpointLive[Int(e)] = true
            slots.append(e)
            vniState[slot]!.endpoints.append(e)
        }
        for slot in Set(mappings.map { vniSlots[$0.vni]! }) { publishVNI(slot) }
        if case .tagged = role {
            for (e, m) in zip(slots, mappings) { vx_store_release_i32(fastPath.vlanEndpoint + port * 4096 + Int(m.vlan), e) }
            vx_store_release_i32(fastPath.portEndpoint + port, PortKind.tagged)
        } else {
            vx_store_release_i32(fastPath.portEndpoint + port, slots[0])
        }
        while roles.count <= port { roles.append(.detached); accessSettings.append(nil) }
        roles[port] = role
        portEndpoints[port] = slots
        accessSettings[port] = settings
        configuration.access = accessSettings.compactMap { $0 }
    }

    /// Unmaps a port: its frames are dropped (`port_detached`) from the cores' next burst, the MACs learned behind it
    /// are forgotten, and its endpoint slots are reused after a grace period. The port itself is not touched.
    public func detach(port: Int) throws {
        guard port >= 0, port < roles.count, port != underlayPort, roles[port] != .detached else {
            throw ChangeError("\(portName(port)) is not attached")
        }
        vx_store_release_i32(fastPath.portEndpoint + port, PortKind.detached)
        let slots = portEndpoints[port]
        for e in slots where fastPath.endpointVLAN[Int(e)] != 0 { vx_store_release_i32(fastPath.vlanEndpoint + port * 4096 + Int(fastPath.endpointVLAN[Int(e)]), -1) }
        var touched = Set<Int>()
        for e in slots {
            let slot = Int(fastPath.endpointVNISlot[Int(e)])
            vniState[slot]?.endpoints.removeAll { $0 == e }
            touched.insert(slot)
        }
        for slot in touched { publishVNI(slot) }
        // No longer a valid target for the slow path (a learn event still in a ring must not bring an entry back
        // to a slot that will be reused); the cores may still hold it until the grace period is over.
        for e in slots { endpointLive[Int(e)] = false }
        let gone = Set(slots.map { FDBTarget.local(Int($0)) })
        removeEntries { gone.contains($0.target) }
        bumpGeneration()
        for e in slots { retire(.endpointSlot(e)) }
        portEndpoints[port] = []
        roles[port] = .detached
        accessSettings[port] = nil
        configuration.access = accessSettings.compactMap { $0 }
    }

    /// How reports and errors name a local port: its configured name, or its slot.
    func portName(_ port: Int) -> String {
        if port == underlayPort { return configuration.underlay.port }
        return port < accessSettings.count ? accessSettings[port]?.port ?? "port \(port)" : "port \(port)"
    }

    /// Endpoint slots free, or waiting for a grace period (free in microseconds while the cores poll).
    public var endpointRoom: Int {
        freeEndpoints.count + waiting[3]
    }

    // MARK: - Static FDB entries

    /// Adds a static entry (a learned one for the same MAC is replaced). Refused when a static entry exists.
    public func addStaticEntry(vni: UInt32, mac: MACAddress, remote: IPAddress) throws {
        guard let slot = vniSlots[vni] else { throw ChangeError("VNI \(vni) does not exist") }
        if let problem = ConfigRules.problem(unicast: mac) {
            throw ChangeError(problem + " (broadcast and multicast follow the flood list)")
        }
        if let problem = ConfigRules.problem(remote: remote, underlay: configuration.underlay) { throw ChangeError(problem) }
        let entryKey = EntryKey(vni: vni, mac: mac)
        if let existing = entries[entryKey], existing.isStatic {
            let target = existing.target
            var to = "\(target)"
            if case .tunnel(let t) = target { to = "\(tunnels[t].remote)" }
            throw ChangeError("\(mac) already has a static entry in VNI \(vni) (to \(to)); delete it first")
        }
        if entries[entryKey] == nil {
            if freeStamps.isEmpty && waiting[4] > 0 { waitForGracePeriod { !self.freeStamps.isEmpty } }
            guard !freeStamps.isEmpty else { throw ChangeError("the FDB is full (resources.fdb_entries \(fdbCapacity))") }
        }
        let t = try pinTunnel(vni: vni, remote: remote)
        Self.writeFDBKey(key, vni: vni, mac: mac.bytes)
        if var learned = entries[entryKey] {
            // One store of the data word: cores see the learned target or the static one.
            guard rte_hash_add_key_data(fastPath.fdbHash, key, FDBData.pack(target: FDBTarget.tunnel(t).raw, slot: learned.slot)) == 0 else {
                unpin(tunnel: t)
                throw ChangeError("the FDB refused \(mac) in VNI \(vni)")
            }
            release(learned.target)
            learnedPerVNI[slot] -= 1
            learned.target = .tunnel(t); learned.isStatic = true
            entries[entryKey] = learned
        } else {
            let stamp = freeStamps.removeLast()
            guard rte_hash_add_key_data(fastPath.fdbHash, key, FDBData.pack(target: FDBTarget.tunnel(t).raw, slot: stamp)) == 0 else {
                freeStamps.append(stamp)
                unpin(tunnel: t)
                throw ChangeError("the FDB is full (resources.fdb_entries \(fdbCapacity), counting entries waiting to be reclaimed)")
            }
            entries[entryKey] = FDBEntry(vni: vni, mac: mac, target: .tunnel(t), isStatic: true, slot: stamp)
        }
        vniState[slot]!.staticRemotes[remote, default: 0] += 1
        if vniState[slot]!.staticRemotes[remote] == 1, fastPath.vniBlocks[slot].pointee.filter != nil { publishVNI(slot) }
        configuration.fdb.append(.init(vni: vni, mac: mac, remote: remote))
        bumpGeneration()
    }

    /// Removes a static entry.
    public func removeStaticEntry(vni: UInt32, mac: MACAddress) throws {
        guard let slot = vniSlots[vni] else { throw ChangeError("VNI \(vni) does not exist") }
        guard let entry = entries[EntryKey(vni: vni, mac: mac)], entry.isStatic else {
            throw ChangeError("\(mac) has no static entry in VNI \(vni)")
        }
        let remote = configuration.fdb.first { $0.vni == vni && $0.mac == mac }?.remote
        removeEntries(keys: [EntryKey(vni: vni, mac: mac)])
        if let remote, var state = vniState[slot] {
            state.staticRemotes[remote, default: 1] -= 1
            if state.staticRemotes[remote] == 0 { state.staticRemotes[remote] = nil }
            vniState[slot] = state
            if state.staticRemotes[remote] == nil, fastPath.vniBlocks[slot].pointee.filter != nil { publishVNI(slot) }
        }
        configuration.fdb.removeAll { $0.vni == vni && $0.mac == mac }
    }

    /// Forgets learned entries (of one VNI, or all). Returns how many went.
    @discardableResult
    public func flushLearned(vni: UInt32?) throws -> Int {
        if let vni, vniSlots[vni] == nil { throw ChangeError("VNI \(vni) does not exist") }
        return removeEntries { !$0.isStatic && (vni == nil || $0.vni == vni) }
    }

    /// Removes the entries `matching` selects, static or learned: keys out of the hash (DPDK reuses them after
    /// a grace period), stamp slots retired, tunnels released. Returns how many went.
    @discardableResult
    func removeEntries(matching: (FDBEntry) -> Bool) -> Int {
        removeEntries(keys: entries.filter { matching($0.value) }.map(\.key))
    }

    @discardableResult
    func removeEntries(keys: [EntryKey]) -> Int {
        var released: [Int32] = []
        for entryKey in keys {
            guard let entry = entries[entryKey] else { continue }
            Self.writeFDBKey(key, vni: entry.vni, mac: entry.mac.bytes)
            guard rte_hash_del_key(fastPath.fdbHash, key) >= 0 else { continue }
            entries[entryKey] = nil
            released.append(entry.slot)
            if entry.isStatic {
                if case .tunnel(let t) = entry.target { unpin(tunnel: t) }
            } else {
                if let s = vniSlots[entry.vni] { learnedPerVNI[s] -= 1 }
                release(entry.target)
            }
        }
        if !released.isEmpty {
            bumpGeneration()
            for slot in released { retire(.stampSlot(slot)) }
        }
        return released.count
    }

    /// After a change was undone: the running configuration's lists in the order they had before (undoing a
    /// removal appends). Only when the same objects are there.
    public func restoreOrder(of before: VTEPConfiguration) {
        func same<T, K: Hashable>(_ a: [T], _ b: [T], _ key: (T) -> K) -> Bool { Set(a.map(key)) == Set(b.map(key)) && a.count == b.count }
        if same(configuration.vnis, before.vnis, { $0.vni }), Set(configuration.vnis.map { "\($0)" }) == Set(before.vnis.map { "\($0)" }) {
            configuration.vnis = before.vnis
        }
        if same(configuration.fdb, before.fdb, { "\($0)" }) { configuration.fdb = before.fdb }
        if same(configuration.neighbors, before.neighbors, { "\($0)" }) { configuration.neighbors = before.neighbors }
    }

    // MARK: - Reclaiming

    /// Queues `item` until every core has let go of it (DPDK's defer queue takes the grace-period token).
    func retire(_ item: Retired) {
        let (kind, value) = item.element
        // Full even after DPDK reclaimed what it could (it holds far more than every slot and stamp at once): the
        // cores are slow to let go. Wait for a grace period, whoever the caller (a change or the slow path's
        // ageing), and try again; a minute without one means a polling core has stopped.
        let deadline = monotonicSeconds() + 60
        while vx_dq_enqueue(reclaimQueue, UInt64(kind), value) != 0 {
            precondition(monotonicSeconds() < deadline, "the RCU defer queue stays full: a polling core has stopped passing quiescent states")
            let token = vx_qsbr_start(fastPath.qsbr)
            while vx_qsbr_check(fastPath.qsbr, token) != 1 && monotonicSeconds() < deadline { usleep(20) }
            _ = vx_dq_reclaim(reclaimQueue)
        }
        waiting[kind] += 1
    }

    /// Frees what every core has let go of (called by `reclaim()` every slow-path round, and by changes short of
    /// a slot).
    func reclaimRetired() {
        if waiting[1] + waiting[2] + waiting[3] + waiting[4] > 0 { _ = vx_dq_reclaim(reclaimQueue) }
    }

    /// Everything still waiting for the cores to let go (tests: 0 once the cores have passed a quiescent state).
    public var waitingForGracePeriod: Int { waiting.reduce(0, +) }

    /// DPDK's defer queue calls this for each element whose grace period is over.
    static let freeRetired: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UInt32) -> Void = { p, e, n in
        guard let p, let e else { return }
        let sink = Unmanaged<ReclaimSink>.fromOpaque(p).takeUnretainedValue()
        let words = e.assumingMemoryBound(to: UInt64.self)
        for i in 0..<Int(n) {
            // While the tables go (their deinit empties the queue), only memory is freed: the slots go with them.
            if sink.closing {
                if words[2 * i] == 1 { ForwardingTables.free(UnsafeMutablePointer<VNIBlock>(bitPattern: UInt(words[2 * i + 1]))!) }
            } else {
                sink.tables.released(kind: Int(words[2 * i]), value: words[2 * i + 1])
            }
        }
    }

    func released(kind: Int, value: UInt64) {
        waiting[kind] -= 1
        switch kind {
        case 1: Self.free(UnsafeMutablePointer<VNIBlock>(bitPattern: UInt(value))!)
        case 2: freeVNISlots.append(Int(value))
        case 3:
            let e = Int(value)
            fastPath.endpointPort[e] = -1; fastPath.endpointVNISlot[e] = -1; fastPath.endpointVLAN[e] = 0
            freeEndpoints.append(Int32(e))
        default:
            fastPath.fdbLastSeen[Int(value)] = 0
            freeStamps.append(Int32(value))
        }
    }

    /// Tunnels created since the last call (the slow path starts resolving their next hops).
    public func takeCreatedTunnels() -> [Int] {
        defer { createdTunnels = [] }
        return createdTunnels
    }
}

/// The defer queue's way back to its tables: not the tables themselves, which must not be retained from inside
/// their own deinit (where the queue is emptied).
final class ReclaimSink {
    unowned(unsafe) var tables: ForwardingTables!
    var closing = false
}
