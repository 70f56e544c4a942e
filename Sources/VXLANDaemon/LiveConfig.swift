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
        changeLock.lock(); defer { changeLock.unlock() }
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
            if changes.count > 1 {
                logger.warning("\(origin): '\(changes[done.count])' refused (\(error)); the \(done.count) change(s) before it were undone")
            } else {
                logger.info("\(origin): '\(changes.first.map { "\($0)" } ?? "")' refused: \(error)")
            }
            throw error
        }
        for change in done { logger.notice("\(origin): \(change)") }
    }

    /// The plan from the running configuration to the file at `path` (parsed and checked whole first).
    public func plan(file path: String) throws -> ConfigPlan {
        let desired: VTEPConfiguration
        do { desired = try ConfigParser.load(path: path) } catch { throw ChangeError("\(path): \(error)") }
        return ConfigPlan(from: configuration, to: desired)
    }

    /// `vxlanctl apply FILE` and SIGHUP: the plan, refused whole when part of it needs a restart.
    @discardableResult
    public func apply(file path: String, dryRun: Bool = false, origin: String) throws -> ConfigPlan {
        let plan = try self.plan(file: path)
        guard plan.needsRestart.isEmpty else {
            throw ChangeError("\(path) changes what needs vxland restarted: \(plan.needsRestart.joined(separator: "; ")); nothing was changed")
        }
        if !dryRun && !plan.changes.isEmpty { try apply(plan.changes, origin: origin) }
        if plan.changes.isEmpty && !dryRun { logger.info("\(origin): \(path) matches the running configuration; nothing to change") }
        return plan
    }

    /// One change, under `changeLock`.
    private func execute(_ change: ConfigPlan.Change) throws {
        switch change {
        case .addVNI(let segment):
            try underlay.change { try $0.addSegment(segment) }
            resetVNICounters(vni: segment.vni)
        case .removeVNI(let segment):
            try underlay.change { try $0.removeSegment(vni: segment.vni) }
        case .updateVNI(_, let segment):
            try underlay.change { try $0.updateSegment(segment) }
        case .addFDB(let e):
            try underlay.change { try $0.addStaticEntry(vni: e.vni, mac: e.mac, remote: e.remote) }
        case .removeFDB(let e):
            try underlay.change { try $0.removeStaticEntry(vni: e.vni, mac: e.mac) }
        case .addNeighbor(let n):
            try underlay.addNeighbor(ip: n.ip, mac: n.mac)
        case .removeNeighbor(let n):
            try underlay.removeNeighbor(ip: n.ip)
        case .attachPort(let p):
            try attachPort(p)
        case .detachPort(let p):
            try detachPort(p.port)
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
        for vni in p.vni.map({ [$0] }) ?? p.vlans.map(\.vni) where configuration.segment(vni) == nil {
            throw ChangeError(p.vni != nil ? "VNI \(vni) does not exist" : "VLAN \(p.vlans.first { $0.vni == vni }!.vlan): VNI \(vni) does not exist")
        }
        if let index = portIndex(p.port) {
            try underlay.change { try $0.attach(port: index, role: role, settings: p) }
            return
        }
        try hotplug(p, role: role)
    }

    private func hotplug(_ p: VTEPConfiguration.AccessPort, role: PortRole) throws {
        let slot = portsLock.withLock { removedList.min() ?? portList.count }
        guard slot < tables.portCapacity else {
            throw ChangeError("cannot attach \(p.port): all \(tables.portCapacity) port slots (resources.ports) are in use")
        }
        if p.vhost != nil {
            do { try vhostPorts.create(p, queues: lcores.count, key: "port \(p.port) vhost") } catch { throw ChangeError("\(error)") }
        } else if p.port.hasPrefix("net_vhost") {
            throw ChangeError("\(p.port) is a vhost-user port name: give its socket (vhost) for vxland to create it")
        }
        var port: EthPort?
        do {
            let resolved: EthPort
            do { resolved = try EthPort(reference: p.port) } catch {
                throw ChangeError("port \(p.port) not found; ports: \(knownPorts())")
            }
            port = resolved
            if resolved.id == ports[0].id { throw ChangeError("\(p.port) is the underlay port") }
            let tag = "\(instance)_\(slot)_\(Dataplane.instances.next())"
            let large = try Dataplane.configure(resolved, index: slot, mode: p.offloads, configuration: configuration,
                                                queues: lcores.count, pool: pool, tag: tag, socket: poolSocket)
            try resolved.start()
            // No core reaches the slot yet (no queue, no endpoint): its TX side and counters are set from here.
            for (c, core) in pollingCores.enumerated() {
                core.pointee.tx.setPort(slot, port: resolved.id, queue: UInt16(c))
                core.pointee.processor.setCompletesChecksums(resolved.capabilities.driver == "net_af_packet", port: slot)
                let base = core.pointee.portCounters.base
                for counter in PortCounter.allCases { base[PortCounter.slot(port: slot, counter)] = 0 }
            }
            clearPortBaselines(slot)
            portsLock.withLock {
                if slot == portList.count { portList.append(resolved) } else { portList[slot] = resolved }
                removedList.remove(slot)
                if let large { largeFramePools.append(large) }
            }
            for (c, core) in pollingCores.enumerated() {
                _ = core.pointee.activate(RxQueue(localPort: slot, portID: resolved.id, queueID: UInt16(c)))
            }
            do { try underlay.change { try $0.attach(port: slot, role: role, settings: p) } } catch {
                try? unplug(slot)
                throw error
            }
            if p.vhost != nil && p.offloads == .auto { watchVhostGuest(slot) }
            logger.info("port \(p.port) (id \(resolved.id), \(resolved.capabilities.driver)) added as local port \(slot)")
        } catch {
            if let port, portIndex(p.port) == nil { port.close() }
            if p.vhost != nil, portIndex(p.port) == nil { vhostPorts.remove(name: p.port) }
            throw error
        }
    }

    /// Unmaps an access port. A vhost-user port vxland created goes completely (a VM that stopped): taken off every
    /// core, stopped and closed once the cores let go of it (its queued frames are freed), the device removed. A
    /// port EAL created stays, polled, its frames dropped as `port_detached`, until attached again.
    private func detachPort(_ reference: String) throws {
        guard let index = portIndex(reference) else {
            throw ChangeError("port \(reference) not found; ports: \(knownPorts())")
        }
        try underlay.change { try $0.detach(port: index) }
        if vhostPorts.owns(ports[index].name) { try unplug(index) }
    }

    /// Takes a port off every core and closes it; removes its vhost device.
    private func unplug(_ index: Int) throws {
        let port = ports[index]
        unwatchVhostGuest(index)
        for core in pollingCores { core.pointee.deactivate(localPort: index) }
        // Twice: a core reports its quiescent state before it flushes the round's TX bursts, so the second
        // grace period is the one after which nothing of this port is in any core's hands.
        guard waitForCores(), waitForCores() else {
            for (c, core) in pollingCores.enumerated() {
                core.pointee.reclaimQueues()
                _ = core.pointee.activate(RxQueue(localPort: index, portID: port.id, queueID: UInt16(c)))
            }
            throw ChangeError("the polling cores did not let go of \(port.name) within 2 s; it stays polled (detached)")
        }
        for core in pollingCores { core.pointee.reclaimQueues() }
        port.close()
        vhostPorts.remove(name: port.name)
        portsLock.withLock { _ = removedList.insert(index) }
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

    /// Starts a VNI's counters from zero (a slot keeps the counts of the VNI that held it before).
    private func resetVNICounters(vni: UInt32) {
        guard let slot = underlay.change({ $0.segmentSlot(vni: vni) }) else { return }
        let sums = vniCounterSums()
        baselineLock.lock(); defer { baselineLock.unlock() }
        vniBaselines[slot] = Array(sums[VNICounter.slot(segment: slot, .encapPackets)..<VNICounter.slot(segment: slot + 1, .encapPackets)])
    }

    public func vnisReport(vni: UInt32? = nil) -> VNIsReport {
        let (config, slots, roles) = underlay.change { t in
            (t.configuration, Dictionary(uniqueKeysWithValues: t.configuration.segments.compactMap { s in t.segmentSlot(vni: s.vni).map { (s.vni, $0) } }), t.roles)
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
        let vnis = config.segments.filter { vni == nil || $0.vni == vni }.map { s -> VNIsReport.VNI in
            var counters: [String: UInt64] = [:]
            if let slot = slots[s.vni] {
                for c in VNICounter.allCases {
                    let value = sums[VNICounter.slot(segment: slot, c)]
                    counters[c.name] = value &- (baselines[slot]?[c.rawValue] ?? 0)
                }
            }
            return VNIsReport.VNI(vni: s.vni, flood: s.flood.map(\.description), ports: members[s.vni] ?? [], learning: s.learning,
                                  learned: underlay.learnedCount(vni: s.vni), maxLearned: s.maxLearned, ageingSeconds: s.ageing,
                                  allowedRemotes: (s.allowedRemotes ?? config.underlay.allowedRemotes)?.map(\.description), counters: counters)
        }
        return VNIsReport(vnis: vnis, capacity: tables.segmentCapacity)
    }
}
