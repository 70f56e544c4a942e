import CDPDK
import ControlProtocol
import Foundation
import Logging
import PollMode
import VTEPConfig
import VXLANPipeline

/// Run-time changes to the running dataplane: every `vxlanctl` change and `apply` (and SIGHUP) becomes a list of
/// `ConfigPlan.Change`s made in order while the cores forward. All or nothing: when a change fails, the ones
/// already made are undone (in reverse) and the error names what was refused. Every change made is logged.
extension Dataplane {
    /// Makes `changes` in order, or none of them. `origin` says who asked, for the log ("vxlanctl", "SIGHUP").
    public func apply(_ changes: [ConfigPlan.Change], origin: String) throws {
        _ = try change(origin: origin) { _ in changes }
    }

    /// Builds the changes from the running configuration and makes them, under one lock: two requests (a client,
    /// SIGHUP) never build on the same state and then both change it. Returns the changes made.
    @discardableResult
    public func change(origin: String, _ build: (VTEPConfiguration) throws -> [ConfigPlan.Change]) throws -> [ConfigPlan.Change] {
        changeLock.lock(); defer { changeLock.unlock() }
        let before = configuration
        let changes = try build(before)
        if changes.isEmpty { return [] }
        // Everything that can be known before a change is made is checked first (and the result must be a
        // configuration vxland could start from): what is left to fail part-way is a resource running out.
        do {
            try preflight(changes, from: before)
            let after = ConfigPlan.applying(changes, to: before)
            // The file's rules, checked on the configuration itself (never written out and read back).
            do { try ConfigRules.check(after) } catch let e as ConfigError {
                // The file's rule that the result would break: the object's own problem, or the limit it exceeds.
                // VNI and tunnel counts the tables check themselves, more strictly (learned tunnels count too) and
                // naming the VNI or remote that does not fit.
                if e.path != "resources.vnis" && e.path != "resources.tunnels" {
                    throw ChangeError(e.path.hasPrefix("resources") ? "\(e.path): \(e.problem)" : e.problem)
                }
            }
        } catch {
            logger.info("\(origin): '\(changes.map { "\($0)" }.joined(separator: "; "))' refused: \(error)")
            throw error
        }
        var done: [ConfigPlan.Change] = []
        do {
            for change in changes {
                try execute(change)
                done.append(change)
            }
        } catch {
            for change in done.reversed() {
                do { try execute(change.inverse) } catch {
                    logger.error("\(origin): undoing '\(change)' failed: \(error)")
                }
            }
            underlay.change { $0.restoreOrder(of: before) }
            if changes.count > 1 {
                logger.warning("\(origin): '\(changes[done.count])' refused (\(error)); the \(done.count) change(s) before it were undone")
            } else {
                logger.info("\(origin): '\(changes.first.map { "\($0)" } ?? "")' refused: \(error)")
            }
            guard !done.isEmpty else { throw error }
            // Undone is not untouched: say so (a VNI removed and added back lost its learned MACs and counters).
            throw ChangeError("'\(changes[done.count])' refused: \(error); the \(done.count) change(s) before it were made and undone "
                + "(learned MACs of VNIs removed and restored are learned again from traffic)")
        }
        for change in done { logger.notice("\(origin): \(change)") }
        return done
    }

    /// Walks the changes over a model of the running state and refuses, before anything is made, the first that
    /// names something missing or already there (a VNI, a port, an entry, a neighbor) or a port vxland cannot find.
    private func preflight(_ changes: [ConfigPlan.Change], from running: VTEPConfiguration) throws {
        func checkFlood(_ s: VTEPConfiguration.VNISettings) throws {
            var seen = Set<IPAddress>()
            for r in s.flood {
                if let problem = ConfigRules.problem(remote: r, underlay: running.underlay) { throw ChangeError(problem) }
                guard seen.insert(r).inserted else { throw ChangeError("\(r) is listed twice in the flood list of VNI \(s.vni)") }
            }
        }
        var vnis = Set(running.vnis.map(\.vni))
        var ports = Dictionary(running.access.map { ($0.port, $0) }, uniquingKeysWith: { a, _ in a })
        var detachedTaps: [EthPort] = []
        struct Key: Hashable { var vni: UInt32; var mac: MACAddress }
        var fdb = Dictionary(running.fdb.map { (Key(vni: $0.vni, mac: $0.mac), $0.remote) }, uniquingKeysWith: { a, _ in a })
        var neighbors = Dictionary(running.neighbors.map { ($0.ip, $0.mac) }, uniquingKeysWith: { a, _ in a })
        func uses(_ p: VTEPConfiguration.AccessPort, _ vni: UInt32) -> Bool { p.vni == vni || p.vlans.contains { $0.vni == vni } }
        for change in changes {
            switch change {
            case .addVNI(let s):
                guard vnis.insert(s.vni).inserted else { throw ChangeError("VNI \(s.vni) already exists") }
                try checkFlood(s)
            case .removeVNI(let s):
                guard vnis.remove(s.vni) != nil else { throw ChangeError("VNI \(s.vni) does not exist") }
                let users = ports.values.filter { uses($0, s.vni) }.map(\.port).sorted()
                if !users.isEmpty { throw ChangeError("VNI \(s.vni) is mapped to access port(s) \(users.joined(separator: ", ")); detach or remap them first") }
                fdb = fdb.filter { $0.key.vni != s.vni }
            case .updateVNI(_, let s):
                guard vnis.contains(s.vni) else { throw ChangeError("VNI \(s.vni) does not exist") }
                try checkFlood(s)
            case .addFDB(let e):
                guard vnis.contains(e.vni) else { throw ChangeError("VNI \(e.vni) does not exist") }
                if let problem = ConfigRules.problem(unicast: e.mac) { throw ChangeError(problem + " (broadcast and multicast follow the flood list)") }
                if let problem = ConfigRules.problem(remote: e.remote, underlay: running.underlay) { throw ChangeError(problem) }
                if let remote = fdb[Key(vni: e.vni, mac: e.mac)] {
                    throw ChangeError("\(e.mac) already has a static entry in VNI \(e.vni) (to \(remote)); delete it first")
                }
                fdb[Key(vni: e.vni, mac: e.mac)] = e.remote
            case .removeFDB(let e):
                guard fdb.removeValue(forKey: Key(vni: e.vni, mac: e.mac)) != nil else { throw ChangeError("\(e.mac) has no static entry in VNI \(e.vni)") }
            case .addNeighbor(let n):
                if let problem = ConfigRules.problem(neighbor: n.ip, underlay: running.underlay) { throw ChangeError(problem) }
                if let problem = ConfigRules.problem(unicast: n.mac) { throw ChangeError(problem) }
                if let mac = neighbors[n.ip] { throw ChangeError("\(n.ip) already has a static neighbor entry (\(mac)); delete it first") }
                neighbors[n.ip] = n.mac
            case .removeNeighbor(let n):
                guard neighbors.removeValue(forKey: n.ip) != nil else { throw ChangeError("\(n.ip) has no static neighbor entry") }
            case .attachPort(let p), .mapPort(let p):
                guard ports[p.port] == nil else { throw ChangeError("port \(p.port) is already attached") }
                for vni in p.vni.map({ [$0] }) ?? p.vlans.map(\.vni) where !vnis.contains(vni) {
                    throw ChangeError(p.vni != nil ? "VNI \(vni) does not exist" : "VLAN \(p.vlans.first { $0.vni == vni }!.vlan): VNI \(vni) does not exist")
                }
                if case .attachPort = change { try checkAttachable(p, detachedTaps: detachedTaps) }
                ports[p.port] = p
            case .detachPort(let p), .unmapPort(let p):
                guard ports.removeValue(forKey: p.port) != nil else { throw ChangeError("port \(p.port) is not attached") }
                // A tap port this plan detaches goes (with its interface) before what comes after it is made.
                if case .detachPort = change, let index = portIndex(p.port), self.ports[index].tap != nil { detachedTaps.append(self.ports[index]) }
            }
        }
    }

    /// The offloads mode a port vxland polls was configured with.
    func offloads(ofPort name: String) -> VTEPConfiguration.OffloadMode? {
        guard let index = portIndex(name) else { return nil }
        return portsLock.withLock { portOffloads[index] }
    }

    /// Whether vxland can attach `p`: a port it polls (with the same offloads), a vhost-user port or tap it can
    /// create, or an EAL port not in use. `detachedTaps`: tap ports the same plan detaches before (their names and
    /// interfaces are free by then).
    private func checkAttachable(_ p: VTEPConfiguration.AccessPort, detachedTaps: [EthPort] = []) throws {
        if p.port == configuration.underlay.port || EthPort.id(of: p.port).map({ $0 == ports[0].id }) == true {
            throw ChangeError("\(p.port) is the underlay port")
        }
        let endpoints = p.vni != nil ? 1 : p.vlans.count
        let room = underlay.change { $0.endpointRoom }
        guard endpoints <= room else {
            throw ChangeError("no room for \(endpoints) more access endpoint(s): \(tables.endpointCapacity) in all (twice resources.vnis), \(room) free")
        }
        // A polled tap port the plan detaches first is made anew: checked as a new port below.
        if let index = portIndex(p.port), !detachedTaps.contains(where: { $0 === ports[index] }) {
            if p.tap != nil {
                throw ChangeError("\(p.port) is a port vxland polls; a tap port needs a name of its own")
            }
            if let mode = portsLock.withLock({ portOffloads[index] }), mode != p.offloads {
                throw ChangeError("port \(p.port) runs with offloads \(mode.rawValue); changing it to \(p.offloads.rawValue) needs a restart")
            }
            return
        }
        if let tap = p.tap {
            if p.vhost != nil { throw ChangeError("port \(p.port): a port is a vhost-user port or a tap, not both") }
            if let problem = ConfigRules.problem(interfaceName: tap.name) { throw ChangeError("port \(p.port) tap: \(problem)") }
            if let problem = ConfigRules.problem(tapPortName: p.port) { throw ChangeError(problem) }
            if EthPort.id(of: p.port) != nil { throw ChangeError("a DPDK port named \(p.port) exists already; name the tap port otherwise") }
            try checkTapInterfaceFree(tap.name, detachedTaps: detachedTaps)
            return
        }
        if detachedTaps.contains(where: { $0.name == p.port }) {
            throw ChangeError("\(p.port) is vxland's tap port; a port of another kind needs a name of its own")
        }
        if p.vhost != nil {
            guard p.port.hasPrefix("net_vhost") else { throw ChangeError("'\(p.port)' cannot carry vhost: a vhost-user port's name must start with net_vhost") }
            if EthPort.id(of: p.port) != nil { throw ChangeError("a port named \(p.port) exists already; vxland creates vhost-user ports itself") }
            return
        }
        if p.port.hasPrefix("net_vhost") {
            throw ChangeError("\(p.port) is a vhost-user port name: give its socket (vhost) for vxland to create it")
        }
        guard EthPort.id(of: p.port) != nil else { throw ChangeError("port \(p.port) not found; ports: \(knownPorts())") }
    }

    /// A tap is made only under a free interface name: checked before a plan starts, so that a change refused for
    /// it has detached nothing (a tap re-created to undo a detach would come back in vxland's namespace, not where
    /// an operator had moved it). A name held here by one of `detachedTaps` counts as free: it is that tap, found
    /// by name now and under the index it was made with (one moved away and another interface of its old name
    /// here is not).
    private func checkTapInterfaceFree(_ name: String, detachedTaps: [EthPort]) throws {
        let index = if_nametoindex(name)
        guard index != 0 else { return }
        if detachedTaps.contains(where: { $0.tapNameNow == name && $0.tapIndex == Int32(bitPattern: index) }) { return }
        throw ChangeError("an interface named \(name) exists already; a tap needs a name of its own")
    }

    /// The plan from the running configuration to the file at `path` (parsed and checked whole first).
    public func plan(file path: String) throws -> ConfigPlan {
        var desired: VTEPConfiguration
        do { desired = try ConfigParser.load(path: path) } catch { throw ChangeError("\(path): \(error)") }
        // A port the file names by id is the port of that name (as the running state and `show config` name it).
        for i in desired.access.indices { desired.access[i].port = canonicalPort(desired.access[i].port) }
        return ConfigPlan(from: configuration, to: desired)
    }

    /// `vxlanctl apply FILE` and SIGHUP: the plan, refused whole when part of it needs a restart. The plan is
    /// computed and made under the change lock, against the state it changes.
    @discardableResult
    public func apply(file path: String, dryRun: Bool = false, origin: String) throws -> ConfigPlan {
        var desired: VTEPConfiguration
        do { desired = try ConfigParser.load(path: path) } catch { throw ChangeError("\(path): \(error)") }
        // A port the file names by id is the port of that name (as the running state and `show config` name it).
        for i in desired.access.indices { desired.access[i].port = canonicalPort(desired.access[i].port) }
        var plan = ConfigPlan()
        try change(origin: origin) { running in
            plan = ConfigPlan(from: running, to: desired)
            guard plan.needsRestart.isEmpty else {
                throw ChangeError("\(path) changes what needs vxland restarted: \(plan.needsRestart.joined(separator: "; ")); nothing was changed")
            }
            return dryRun ? [] : plan.changes
        }
        if plan.changes.isEmpty && !dryRun { logger.info("\(origin): \(path) matches the running configuration; nothing to change") }
        return plan
    }

    /// One change, under `changeLock`.
    private func execute(_ change: ConfigPlan.Change) throws {
        switch change {
        case .addVNI(let segment):
            try underlay.change { try $0.addVNI(segment) }
        case .removeVNI(let segment):
            try underlay.change { try $0.removeVNI(vni: segment.vni) }
        case .updateVNI(_, let segment):
            try underlay.change { try $0.updateVNI(segment) }
        case .addFDB(let e):
            try underlay.change { try $0.addStaticEntry(vni: e.vni, mac: e.mac, remote: e.remote) }
        case .removeFDB(let e):
            try underlay.change { try $0.removeStaticEntry(vni: e.vni, mac: e.mac) }
        case .addNeighbor(let n):
            try underlay.addNeighbor(ip: n.ip, mac: n.mac)
        case .removeNeighbor(let n):
            try underlay.removeNeighbor(ip: n.ip)
        case .attachPort(let p):
            // DPDK's own refusals (configure, start) are refusals of the change too.
            do { try attachPort(p) } catch let e as ChangeError { throw e } catch { throw ChangeError("\(error)") }
        case .detachPort(let p):
            try detachPort(p.port)
        case .unmapPort(let p):
            guard let index = portIndex(p.port) else { throw ChangeError("port \(p.port) not found; ports: \(knownPorts())") }
            try underlay.change { try $0.detach(port: index) }
        case .mapPort(let p):
            guard let index = portIndex(p.port) else { throw ChangeError("port \(p.port) not found; ports: \(knownPorts())") }
            try underlay.change { try $0.attach(port: index, role: p.vni.map { PortRole.access(vni: $0) } ?? .tagged(p.vlans), settings: p) }
        }
    }

    // MARK: - Access ports

    /// The local port index of the port `reference` names (DPDK name or id), if the dataplane has it (and it was
    /// not removed).
    func portIndex(_ reference: String) -> Int? {
        let (list, removed) = portsLock.withLock { (portList, removedList) }
        let live = list.indices.filter { !removed.contains($0) }
        if let i = live.first(where: { list[$0].name == reference }) { return i }
        if let id = UInt16(reference) { return live.first { list[$0].id == id } }
        return nil
    }

    private func knownPorts() -> String {
        let names = ports.indices.filter { !removedPorts.contains($0) }.map { ports[$0].name }
        let others = EthPort.all().compactMap { EthPort.name(of: $0) }.filter { !names.contains($0) }
        return names.joined(separator: ", ") + (others.isEmpty ? "" : "; not in use: " + others.joined(separator: ", "))
    }

    /// Maps an access port: one the dataplane polls already (detached earlier), or a new one — a vhost-user port
    /// vxland creates (a VM that just started), or an EAL port not in use — configured, started and added to every
    /// polling core without pausing the others.
    private func attachPort(_ p: VTEPConfiguration.AccessPort) throws {
        let role = p.vni.map { PortRole.access(vni: $0) } ?? .tagged(p.vlans)
        for vni in p.vni.map({ [$0] }) ?? p.vlans.map(\.vni) where configuration.vniSettings(vni) == nil {
            throw ChangeError(p.vni != nil ? "VNI \(vni) does not exist" : "VLAN \(p.vlans.first { $0.vni == vni }!.vlan): VNI \(vni) does not exist")
        }
        if let index = portIndex(p.port) {
            try checkAttachable(p)      // refuses a tap of a polled port's name
            try underlay.change { try $0.attach(port: index, role: role, settings: p) }
            return
        }
        try hotplug(p, role: role)
        if let index = portIndex(p.port) { portsLock.withLock { portOffloads[index] = p.offloads } }
    }

    private func hotplug(_ p: VTEPConfiguration.AccessPort, role: PortRole) throws {
        let slot = portsLock.withLock { removedList.min() ?? portList.count }
        guard slot < tables.portCapacity else {
            throw ChangeError("cannot attach \(p.port): all \(tables.portCapacity) port slots (resources.ports) are in use")
        }
        if p.vhost != nil {
            do { try vhostPorts.create(p, queues: lcores.count, key: "port \(p.port) vhost") } catch { throw ChangeError("\(error)") }
        } else if p.tap == nil && p.port.hasPrefix("net_vhost") {
            throw ChangeError("\(p.port) is a vhost-user port name: give its socket (vhost) for vxland to create it")
        }
        var port: EthPort?
        do {
            let resolved: EthPort
            if let tap = p.tap {
                let taps = portsLock.withLock { portList.indices.filter { !removedList.contains($0) && portList[$0].tap != nil }.count }
                do { try Dataplane.checkTapBuffers(taps: taps + 1, queues: lcores.count, mbufs: configuration.resources.mbufs) } catch {
                    throw ChangeError("cannot attach \(p.port): \(error)")
                }
                do { resolved = try Dataplane.makeTap(name: p.port, tap, mode: p.offloads, underlay: false) } catch { throw ChangeError("\(error)") }
            } else {
                // Checked by id before an EthPort is made: an EthPort closes its port when it goes.
                guard let id = EthPort.id(of: p.port) else { throw ChangeError("port \(p.port) not found; ports: \(knownPorts())") }
                if let used = livePorts.first(where: { $0.element.id == id }) {
                    throw ChangeError(used.offset == 0 ? "\(p.port) is the underlay port" : "\(p.port) is in use as \(used.element.name)")
                }
                resolved = try EthPort(id: id)
            }
            port = resolved
            let tag = "\(instance)_\(slot)_\(Dataplane.instances.next())"
            let large = try Dataplane.configure(resolved, index: slot, mode: p.offloads, configuration: configuration,
                                                queues: lcores.count, pool: pool, tag: tag, socket: poolSocket)
            try resolved.start()
            vhostPorts.restrictServerSockets()
            // No core reaches the slot yet (no queue, no endpoint): its TX side and counters are set from here.
            for (c, core) in cores.enumerated() {
                core.control.tx.setPort(slot, resolved, queue: c)
                core.completesChecksums[slot] = Dataplane.completesChecksums(resolved) ? 1 : 0
                let base = core.portCounters.base
                for counter in PortCounter.allCases { base[PortCounter.slot(port: slot, counter)] = 0 }
            }
            clearPortBaselines(slot)
            portsLock.withLock {
                if slot == portList.count { portList.append(resolved) } else { portList[slot] = resolved }
                removedList.remove(slot)
                if let large { largeFramePools.append(large) }
            }
            for (c, core) in cores.enumerated() {
                _ = core.control.activate(RxQueue(localPort: slot, port: resolved, queue: c))
            }
            do { try underlay.change { try $0.attach(port: slot, role: role, settings: p) } } catch {
                try? unplug(slot)
                throw error
            }
            if p.vhost != nil && p.offloads == .auto { watchVhostGuest(slot) }
            if p.tap != nil { tables.setPortTakesLargeFrames(slot, p.offloads == .auto) }
            logger.info("port \(p.port) (id \(resolved.id), \(resolved.capabilities.driver)) added as local port \(slot)")
        } catch {
            if let port, portIndex(p.port) == nil { port.close() }
            if p.vhost != nil, portIndex(p.port) == nil { vhostPorts.remove(name: p.port) }
            throw error
        }
    }

    /// Unmaps an access port. A vhost-user port or tap vxland created goes completely (a VM that stopped): taken off every
    /// core, stopped and closed once the cores let go of it (its queued frames are freed), the device removed. A
    /// port EAL created stays, polled, its frames dropped as `port_detached`, until attached again.
    private func detachPort(_ reference: String) throws {
        guard let index = portIndex(reference) else {
            throw ChangeError("port \(reference) not found; ports: \(knownPorts())")
        }
        let previous = underlay.change { t in (t.roles[index], t.configuration.access.first { $0.port == ports[index].name }) }
        try underlay.change { try $0.detach(port: index) }
        guard vhostPorts.owns(ports[index].name) || ports[index].tap != nil else { return }
        do { try unplug(index) } catch {
            // Not detached after all: mapped again as it was.
            try? underlay.change { try $0.attach(port: index, role: previous.0, settings: previous.1) }
            throw error
        }
    }

    /// Takes a port off every core and closes it; removes its vhost device.
    private func unplug(_ index: Int) throws {
        let port = ports[index]
        unwatchVhostGuest(index)
        for core in cores { core.control.deactivate(localPort: index) }
        // Twice: a core reports its quiescent state before it flushes the round's TX bursts, so the second
        // grace period is the one after which nothing of this port is in any core's hands.
        guard waitForCores(), waitForCores() else {
            for core in cores { core.control.reactivate(localPort: index) }
            throw ChangeError("the polling cores did not let go of \(port.name) within 2 s; it stays polled")
        }
        for core in cores { core.control.reclaimQueues() }
        // Listed as removed and closed under portsLock: reports read a port's ethdev stats under it. A port EAL made
        // is only stopped (closing would destroy it until vxland restarts); vxland's own vhost device goes.
        let owned = vhostPorts.owns(port.name)
        portsLock.withLock {
            if port.tap != nil { baselineLock.withLock { tapBaselines[ObjectIdentifier(port)] = nil } }
            removedList.insert(index)
            if owned || port.tap != nil { port.close() } else { port.relinquish() }
        }
        if owned { vhostPorts.remove(name: port.name) }
        tables.setPortTakesLargeFrames(index, false)
        logger.info("port \(port.name) removed (local port \(index))")
    }

    /// Waits until every polling core has passed a quiescent state (at most 2 s).
    private func waitForCores() -> Bool {
        let token = vx_qsbr_start(tables.qsbr)
        let deadline = monotonicSeconds() + 2
        while vx_qsbr_check(tables.qsbr, token) != 1 {
            if monotonicSeconds() > deadline { return false }
            usleep(50)
        }
        return true
    }

    // MARK: - Reports

    /// Starts a slot's VNI counters from zero (a slot keeps the counts of the VNI that held it before). Called by
    /// the tables as they give the slot to a VNI, before the VNI is reachable (`ForwardingTables.vniSlotTaken`).
    func takeVNIBaseline(slot: Int) {
        let range = VNICounter.slot(vniSlot: slot, .encapPackets)..<VNICounter.slot(vniSlot: slot + 1, .encapPackets)
        var group = [UInt64](repeating: 0, count: range.count)
        for core in cores {
            for (k, i) in range.enumerated() { group[k] &+= core.vniCounters.base[i] }
        }
        baselineLock.lock(); defer { baselineLock.unlock() }
        vniBaselines[slot] = group
    }

    public func vnisReport(vni: UInt32? = nil) -> VNIsReport {
        let (config, slots, roles) = underlay.change { t in
            (t.configuration, Dictionary(uniqueKeysWithValues: t.configuration.vnis.compactMap { s in t.vniSlot(vni: s.vni).map { (s.vni, $0) } }), t.roles)
        }
        let sums = vniCounterSums()
        baselineLock.lock()
        let baselines = vniBaselines
        baselineLock.unlock()
        var members: [UInt32: [String]] = [:]
        for (index, role) in roles.enumerated() where index < ports.count {
            switch role {
            case .access(let v): members[v, default: []].append(ports[index].name)
            case .tagged(let list): for m in list { members[m.vni, default: []].append("\(ports[index].name) vlan \(m.vlan)") }
            case .underlay, .detached: break
            }
        }
        let vnis = config.vnis.filter { vni == nil || $0.vni == vni }.map { s -> VNIsReport.VNI in
            var counters: [String: UInt64] = [:]
            if let slot = slots[s.vni] {
                for c in VNICounter.allCases {
                    let value = sums[VNICounter.slot(vniSlot: slot, c)]
                    counters[c.name] = value &- (baselines[slot]?[c.rawValue] ?? 0)
                }
            }
            return VNIsReport.VNI(vni: s.vni, flood: s.flood.map(\.description), ports: members[s.vni] ?? [], learning: s.learning,
                                  learned: underlay.learnedCount(vni: s.vni), maxLearned: s.maxLearned, ageingSeconds: s.ageing,
                                  allowedRemotes: (s.allowedRemotes ?? config.underlay.allowedRemotes)?.map(\.description), counters: counters)
        }
        return VNIsReport(vnis: vnis, capacity: tables.vniCapacity)
    }
}
