/// What turns the running configuration into another one (`vxlanctl apply FILE`, SIGHUP): the changes, in the order
/// they can be made without ever referring to something missing, and what cannot change without a restart.
/// Objects that are the same in both are not touched: their traffic and counters go on.
public struct ConfigPlan: Equatable, Sendable {
    public enum Change: Equatable, Sendable, CustomStringConvertible {
        case detachPort(VTEPConfiguration.AccessPort)
        case removeFDB(VTEPConfiguration.FDBEntry)
        case removeVNI(VTEPConfiguration.VNISettings)
        case removeNeighbor(VTEPConfiguration.Neighbor)
        case addNeighbor(VTEPConfiguration.Neighbor)
        case addVNI(VTEPConfiguration.VNISettings)
        case updateVNI(from: VTEPConfiguration.VNISettings, to: VTEPConfiguration.VNISettings)
        case addFDB(VTEPConfiguration.FDBEntry)
        case attachPort(VTEPConfiguration.AccessPort)
        /// An attached port taken out of its VNIs, and later mapped into others: the port itself (a VM's vhost-user
        /// device) untouched, only its frames pause in between.
        case unmapPort(VTEPConfiguration.AccessPort)
        case mapPort(VTEPConfiguration.AccessPort)

        /// The change that undoes this one (to roll back a plan that failed part-way).
        public var inverse: Change {
            switch self {
            case .detachPort(let p): .attachPort(p)
            case .attachPort(let p): .detachPort(p)
            case .removeFDB(let e): .addFDB(e)
            case .addFDB(let e): .removeFDB(e)
            case .removeVNI(let s): .addVNI(s)
            case .addVNI(let s): .removeVNI(s)
            case .removeNeighbor(let n): .addNeighbor(n)
            case .addNeighbor(let n): .removeNeighbor(n)
            case .updateVNI(let from, let to): .updateVNI(from: to, to: from)
            case .unmapPort(let p): .mapPort(p)
            case .mapPort(let p): .unmapPort(p)
            }
        }

        public var description: String {
            switch self {
            case .detachPort(let p): "detach port \(p.port)"
            case .attachPort(let p): "attach port \(p.port) " + Self.mapping(p)
            case .removeFDB(let e): "fdb del vni \(e.vni) \(e.mac)"
            case .addFDB(let e): "fdb add vni \(e.vni) \(e.mac) remote \(e.remote)"
            case .removeVNI(let s): "vni del \(s.vni)"
            case .addVNI(let s): "vni add \(s.vni)" + Self.settings(s)
            case .removeNeighbor(let n): "neighbor del \(n.ip)"
            case .addNeighbor(let n): "neighbor add \(n.ip) \(n.mac)"
            case .updateVNI(let from, let to): "vni \(to.vni): " + Self.differences(from, to).joined(separator: "; ")
            case .unmapPort(let p): "unmap port \(p.port)"
            case .mapPort(let p): "map port \(p.port) " + Self.mapping(p)
            }
        }

        /// A VNI's flood list and every setting that is not the default, as `vni add` takes them.
        static func settings(_ s: VTEPConfiguration.VNISettings) -> String {
            let d = VTEPConfiguration.VNISettings(vni: s.vni, flood: [])
            var out = s.flood.isEmpty ? "" : " flood \(s.flood.map(\.description).joined(separator: ","))"
            if s.learning != d.learning { out += " learning \(s.learning)" }
            if s.ageing != d.ageing { out += " ageing \(s.ageing)" }
            if s.maxLearned != d.maxLearned { out += " max_learned \(s.maxLearned)" }
            if let a = s.allowedRemotes { out += " allowed_remotes [" + a.map(\.description).joined(separator: ",") + "]" }
            return out
        }

        public static func mapping(_ p: VTEPConfiguration.AccessPort) -> String {
            if let vni = p.vni { return "vni \(vni)" }
            return "vlans " + p.vlans.map { "\($0.vlan)=\($0.vni)" }.joined(separator: ",")
        }

        static func differences(_ a: VTEPConfiguration.VNISettings, _ b: VTEPConfiguration.VNISettings) -> [String] {
            var out: [String] = []
            let added = b.flood.filter { !a.flood.contains($0) }, removed = a.flood.filter { !b.flood.contains($0) }
            if !added.isEmpty { out.append("flood add \(added.map(\.description).joined(separator: ","))") }
            if !removed.isEmpty { out.append("flood del \(removed.map(\.description).joined(separator: ","))") }
            if added.isEmpty && removed.isEmpty && a.flood != b.flood { out.append("flood list reordered") }
            if a.learning != b.learning { out.append("learning \(a.learning) -> \(b.learning)") }
            if a.ageing != b.ageing { out.append("ageing \(a.ageing) -> \(b.ageing)") }
            if a.maxLearned != b.maxLearned { out.append("max_learned \(a.maxLearned) -> \(b.maxLearned)") }
            if a.allowedRemotes != b.allowedRemotes {
                func text(_ p: [IPPrefix]?) -> String { p.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "none" }
                out.append("allowed_remotes \(text(a.allowedRemotes)) -> \(text(b.allowedRemotes))")
            }
            return out
        }
    }

    /// The changes, in order.
    public var changes: [Change]
    /// What differs but needs vxland restarted (the underlay, the resources, a port's driver settings), each
    /// naming the key. A plan with any of these is refused whole.
    public var needsRestart: [String]

    public var isEmpty: Bool { changes.isEmpty && needsRestart.isEmpty }

    public init(changes: [Change] = [], needsRestart: [String] = []) { self.changes = changes; self.needsRestart = needsRestart }

    /// The plan from `running` to `desired` (both valid configurations).
    public init(from running: VTEPConfiguration, to desired: VTEPConfiguration) {
        var restart: [String] = []
        if running.underlay != desired.underlay {
            restart += Self.underlayDifferences(running.underlay, desired.underlay).map { "underlay.\($0)" }
        }
        if running.resources != desired.resources { restart.append("resources") }

        // Ports: by name. A changed mapping is an unmap first and a map last (only that port pauses; a VM stays
        // connected); a vhost-user port vxland creates is re-created with changed settings; another port's offloads
        // need the port configured again: a restart.
        let oldPorts = Dictionary(running.access.map { ($0.port, $0) }, uniquingKeysWith: { a, _ in a })
        let newPorts = Dictionary(desired.access.map { ($0.port, $0) }, uniquingKeysWith: { a, _ in a })
        var detach: [VTEPConfiguration.AccessPort] = [], attach: [VTEPConfiguration.AccessPort] = []
        var unmap: [Change] = [], map: [Change] = []
        for p in running.access {
            guard let q = newPorts[p.port] else { detach.append(p); continue }
            let mappingOnly = p.vhost == q.vhost && p.tap == q.tap && p.offloads == q.offloads
            if mappingOnly {
                if p.vni != q.vni || p.vlans != q.vlans { unmap.append(.unmapPort(p)); map.append(.mapPort(q)) }
            } else if p.vhost != nil || q.vhost != nil || p.tap != nil || q.tap != nil {
                // vxland's own vhost-user device or tap: re-created with the new settings (the VM reconnects; a
                // tap comes back in vxland's namespace).
                detach.append(p); attach.append(q)
            } else {
                restart.append("access port \(p.port): offloads \(p.offloads.rawValue) -> \(q.offloads.rawValue)")
            }
        }
        for q in desired.access where oldPorts[q.port] == nil { attach.append(q) }

        // VNIs: by number; settings and flood lists change in place.
        var removeVNIs: [VTEPConfiguration.VNISettings] = [], addVNIs: [VTEPConfiguration.VNISettings] = []
        var update: [Change] = []
        for s in running.vnis {
            guard let t = desired.vniSettings(s.vni) else { removeVNIs.append(s); continue }
            if s != t { update.append(.updateVNI(from: s, to: t)) }
        }
        for t in desired.vnis where running.vniSettings(t.vni) == nil { addVNIs.append(t) }

        // Static FDB entries: by (VNI, MAC); another remote is a delete and an add. Entries of a removed VNI go
        // with it, but are listed so that the plan says so.
        struct Key: Hashable { var vni: UInt32; var mac: MACAddress }
        let oldFDB = Dictionary(running.fdb.map { (Key(vni: $0.vni, mac: $0.mac), $0) }, uniquingKeysWith: { a, _ in a })
        let newFDB = Dictionary(desired.fdb.map { (Key(vni: $0.vni, mac: $0.mac), $0) }, uniquingKeysWith: { a, _ in a })
        let removeFDB = running.fdb.filter { newFDB[Key(vni: $0.vni, mac: $0.mac)] != $0 }
        let addFDB = desired.fdb.filter { oldFDB[Key(vni: $0.vni, mac: $0.mac)] != $0 }

        let removeNeighbors = running.neighbors.filter { desired.neighbor($0.ip) != $0 }
        let addNeighbors = desired.neighbors.filter { running.neighbor($0.ip) != $0 }

        changes = detach.map(Change.detachPort) + unmap + removeFDB.map(Change.removeFDB) + removeVNIs.map(Change.removeVNI)
            + removeNeighbors.map(Change.removeNeighbor) + addNeighbors.map(Change.addNeighbor) + addVNIs.map(Change.addVNI)
            + update + addFDB.map(Change.addFDB) + map + attach.map(Change.attachPort)
        needsRestart = restart
    }

    /// `running` with `changes` made, as the tables will hold it (for checking the result before it is made).
    public static func applying(_ changes: [Change], to running: VTEPConfiguration) -> VTEPConfiguration {
        var c = running
        var vnis = c.vnis
        for change in changes {
            switch change {
            case .addVNI(let s): vnis.append(s)
            case .removeVNI(let s): vnis.removeAll { $0.vni == s.vni }; c.fdb.removeAll { $0.vni == s.vni }
            case .updateVNI(_, let s): if let i = vnis.firstIndex(where: { $0.vni == s.vni }) { vnis[i] = s }
            case .addFDB(let e): c.fdb.append(e)
            case .removeFDB(let e): c.fdb.removeAll { $0.vni == e.vni && $0.mac == e.mac }
            case .addNeighbor(let n): c.neighbors.append(n)
            case .removeNeighbor(let n): c.neighbors.removeAll { $0.ip == n.ip }
            case .attachPort(let p): c.access.append(p)
            case .detachPort(let p): c.access.removeAll { $0.port == p.port }
            case .unmapPort(let p): c.access.removeAll { $0.port == p.port }
            case .mapPort(let p): c.access.append(p)
            }
        }
        c.vnis = vnis
        return c
    }

    static func underlayDifferences(_ a: VTEPConfiguration.Underlay, _ b: VTEPConfiguration.Underlay) -> [String] {
        var keys: [String] = []
        if a.port != b.port { keys.append("port (\(a.port) -> \(b.port))") }
        if a.interface != b.interface { keys.append("ip") }
        if a.interface6 != b.interface6 { keys.append("ip6") }
        if a.mac != b.mac { keys.append("mac") }
        if a.mtu != b.mtu { keys.append("mtu") }
        if a.udpPort != b.udpPort { keys.append("udp_port") }
        if a.ttl != b.ttl { keys.append("ttl") }
        if a.gateway != b.gateway { keys.append("gateway") }
        if a.gateway6 != b.gateway6 { keys.append("gateway6") }
        if a.neighborTimeout != b.neighborTimeout { keys.append("neighbor_timeout") }
        if a.strict != b.strict { keys.append("strict") }
        if a.verifyUDPChecksum != b.verifyUDPChecksum { keys.append("verify_udp_checksum") }
        if a.udp6ZeroChecksum != b.udp6ZeroChecksum { keys.append("udp6_zero_checksum") }
        if a.offloads != b.offloads { keys.append("offloads") }
        if a.tap != b.tap { keys.append("tap") }
        if a.allowedRemotes != b.allowedRemotes { keys.append("allowed_remotes") }
        return keys.isEmpty ? ["(settings)"] : keys
    }
}
