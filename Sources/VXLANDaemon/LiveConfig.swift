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

    /// The local port index of the port `reference` names (DPDK name or id), if the dataplane has it.
    func portIndex(_ reference: String) -> Int? {
        if let i = ports.firstIndex(where: { $0.name == reference }) { return i }
        if let id = UInt16(reference) { return ports.firstIndex { $0.id == id } }
        return nil
    }

    private func attachPort(_ p: VTEPConfiguration.AccessPort) throws {
        guard let index = portIndex(p.port) else {
            throw ChangeError("port \(p.port) not found; ports: \(ports.map(\.name).joined(separator: ", "))")
        }
        let role = p.vni.map { PortRole.access(vni: $0) } ?? .tagged(p.vlans)
        try underlay.change { try $0.attach(port: index, role: role, settings: p) }
    }

    private func detachPort(_ reference: String) throws {
        guard let index = portIndex(reference) else {
            throw ChangeError("port \(reference) not found; ports: \(ports.map(\.name).joined(separator: ", "))")
        }
        try underlay.change { try $0.detach(port: index) }
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
