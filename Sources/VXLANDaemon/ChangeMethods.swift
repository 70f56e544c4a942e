import ControlProtocol
import CDPDK
import Foundation
import PollMode
import VTEPConfig
import VXLANPipeline

/// The control methods that change the running dataplane (and `show.vnis`, `show.config`). Each request's
/// parameters are checked whole before anything changes; the change itself is all or nothing (`Dataplane.apply`).
enum ChangeMethods {
    /// Method -> the parameters it takes (any other is refused, naming it).
    static let parameters: [String: [String]] = [
        "show.vnis": ["vni"],
        "show.config": [],
        "vni.add": ["vni", "flood", "learning", "ageing", "max_learned", "allowed_remotes"],
        "vni.del": ["vni"],
        "flood.add": ["vni", "remotes"],
        "flood.del": ["vni", "remotes"],
        "fdb.add": ["vni", "mac", "remote"],
        "fdb.del": ["vni", "mac"],
        "fdb.flush": ["vni"],
        "neighbor.add": ["ip", "mac"],
        "neighbor.del": ["ip"],
        "port.attach": ["port", "vni", "vlans", "vhost_socket", "vhost_client", "vhost_tso", "tap", "offloads"],
        "port.detach": ["port"],
        "config.apply": ["path", "dry_run"],
    ]
    static let origin = "vxlanctl"

    /// Answers `request` if it is one of these methods; nil otherwise.
    static func handle(_ request: ControlRequest, dataplane: Dataplane) throws -> Data? {
        guard let allowed = parameters[request.method] else { return nil }
        let p = Params(request.params, method: request.method, allowed: allowed)
        try p.checkKnown()
        let encoder = JSONEncoder.control
        switch request.method {
        case "vni.add", "vni.del", "flood.add", "flood.del", "fdb.add", "fdb.del", "neighbor.add", "neighbor.del", "port.attach", "port.detach":
            // Built from the running state and made under one lock (no other request changes it in between).
            let made = try dataplane.change(origin: origin) { running in try changes(request.method, p, running: running, dataplane: dataplane) }
            return try encoder.encode(ChangeReport(applied: true, changes: made.map(\.description)))
        default:
            return try answer(request.method, p, dataplane: dataplane)
        }
    }

    static func answer(_ method: String, _ p: Params, dataplane: Dataplane) throws -> Data? {
        let encoder = JSONEncoder.control
        let running = dataplane.configuration
        switch method {
        case "show.vnis":
            let vni = try p.optionalVNI("vni")
            if let vni, running.vniSettings(vni) == nil { throw p.failure("VNI \(vni) does not exist") }
            return try encoder.encode(dataplane.vnisReport(vni: vni))
        case "show.config":
            return try encoder.encode(ConfigReport(yaml: ConfigWriter.yaml(running)))

        case "fdb.flush":
            let vni = try p.optionalVNI("vni")
            let n = try dataplane.underlay.change { try $0.flushLearned(vni: vni) }
            dataplane.logger.notice("\(origin): fdb flush \(vni.map { "vni \($0)" } ?? "(every VNI)"): \(n) learned entries removed")
            return try encoder.encode(ChangeReport(applied: true, changes: ["fdb flush \(vni.map { "vni \($0)" } ?? "all"): \(n) learned entries removed"]))

        case "config.apply":
            let path = try p.required("path")
            guard path.hasPrefix("/") else { throw p.failure("path: '\(path)' is not absolute (vxland reads it from its own directory)") }
            let dryRun = try p.boolean("dry_run") ?? false
            let plan: ConfigPlan
            do { plan = try dataplane.apply(file: path, dryRun: dryRun, origin: "vxlanctl apply \(path)") } catch let e as ChangeError {
                throw ControlFailure(code: "refused", message: e.description)
            }
            return try encoder.encode(ChangeReport(applied: !dryRun, changes: plan.changes.map(\.description)))
        default:
            return nil
        }
    }
}

extension ChangeMethods {
    /// The changes a request asks for, built from the running configuration (under the change lock).
    static func changes(_ method: String, _ p: Params, running: VTEPConfiguration, dataplane: Dataplane) throws -> [ConfigPlan.Change] {
        switch method {
        case "vni.add":
            var segment = VTEPConfiguration.VNISettings(vni: try p.vni("vni"), flood: try p.addresses("flood") ?? [])
            if let v = try p.boolean("learning") { segment.learning = v }
            if let v = try p.integer("ageing", in: 10...1_000_000) { segment.ageing = v }
            if let v = try p.integer("max_learned", in: 0...16_777_215) { segment.maxLearned = v }
            segment.allowedRemotes = try p.prefixes("allowed_remotes")
            return ([.addVNI(segment)])
        case "vni.del":
            let vni = try p.vni("vni")
            guard let segment = running.vniSettings(vni) else { throw p.failure("VNI \(vni) does not exist") }
            // Its static entries go first, as their own changes, so that a refusal can put them back.
            return (running.fdb.filter { $0.vni == vni }.map(ConfigPlan.Change.removeFDB) + [.removeVNI(segment)])
        case "flood.add", "flood.del":
            let vni = try p.vni("vni")
            guard let remotes = try p.addresses("remotes"), !remotes.isEmpty else { throw p.failure("remotes: at least one address is required") }
            guard let segment = running.vniSettings(vni) else { throw p.failure("VNI \(vni) does not exist") }
            guard Set(remotes).count == remotes.count else { throw p.failure("remotes: an address is given twice") }
            var changed = segment
            if method == "flood.add" {
                for r in remotes where segment.flood.contains(r) { throw p.failure("\(r) is already in the flood list of VNI \(vni)") }
                changed.flood += remotes
            } else {
                for r in remotes where !segment.flood.contains(r) {
                    throw p.failure("\(r) is not in the flood list of VNI \(vni) ("
                        + (segment.flood.isEmpty ? "it is empty" : segment.flood.map(\.description).joined(separator: ", ")) + ")")
                }
                changed.flood.removeAll { remotes.contains($0) }
            }
            return ([.updateVNI(from: segment, to: changed)])

        case "fdb.add":
            let entry = VTEPConfiguration.FDBEntry(vni: try p.vni("vni"), mac: try p.mac("mac"), remote: try p.address("remote"))
            return ([.addFDB(entry)])
        case "fdb.del":
            let vni = try p.vni("vni"), mac = try p.mac("mac")
            guard running.vniSettings(vni) != nil else { throw p.failure("VNI \(vni) does not exist") }
            guard let entry = running.fdb.first(where: { $0.vni == vni && $0.mac == mac }) else {
                throw p.failure("\(mac) has no static entry in VNI \(vni) (learned entries go with fdb flush)")
            }
            return ([.removeFDB(entry)])
        case "neighbor.add":
            return ([.addNeighbor(.init(ip: try p.address("ip"), mac: try p.mac("mac")))])
        case "neighbor.del":
            let ip = try p.address("ip")
            guard let n = running.neighbor(ip) else { throw p.failure("\(ip) has no static neighbor entry") }
            return ([.removeNeighbor(n)])

        case "port.attach":
            let name = canonicalPort(try p.required("port"))
            let vni = try p.optionalVNI("vni")
            let vlans = try p.vlans("vlans")
            if vni != nil && vlans != nil { throw p.failure("give either vni (an untagged port) or vlans (a tagged port), not both") }
            if vni == nil && vlans == nil { throw p.failure("give vni (an untagged port) or vlans (VLAN=VNI,...)") }
            if let existing = running.access.first(where: { $0.port == name }) {
                throw p.failure("port \(name) is already attached (\(ConfigPlan.Change.mapping(existing))); detach it first")
            }
            var port = vni.map { VTEPConfiguration.AccessPort(port: name, vni: $0) } ?? .init(port: name, vlans: vlans!)
            if let socket = p.values["vhost_socket"] {
                guard name.hasPrefix("net_vhost") else {
                    throw p.failure("port: '\(name)' cannot carry vhost: a vhost-user port's name must start with net_vhost (such as net_vhost0)")
                }
                if let problem = ConfigRules.problem(vhostSocket: socket) { throw p.failure("vhost_socket: \(problem)") }
                if running.access.contains(where: { $0.vhost?.socket == socket }) {
                    throw p.failure("vhost_socket: '\(socket)' is the socket of another access port")
                }
                port.vhost = .init(socket: socket, client: try p.boolean("vhost_client") ?? false, tso: try p.boolean("vhost_tso") ?? true)
            } else if p.values["vhost_client"] != nil || p.values["vhost_tso"] != nil {
                throw p.failure("vhost_client and vhost_tso need vhost_socket")
            }
            if let tap = p.values["tap"] {
                if port.vhost != nil { throw p.failure("tap: a port is a vhost-user port or a tap, not both") }
                if let problem = ConfigRules.problem(interfaceName: tap) { throw p.failure("tap: \(problem)") }
                if running.underlay.tap?.name == tap || running.access.contains(where: { $0.tap?.name == tap }) {
                    throw p.failure("tap: '\(tap)' is the tap of another port")
                }
                port.tap = .init(name: tap)
            }
            if let mode = p.values["offloads"] {
                guard let m = VTEPConfiguration.OffloadMode(rawValue: mode) else { throw p.failure("offloads: expected auto or software, got '\(mode)'") }
                port.offloads = m
            } else if let mode = dataplane.offloads(ofPort: name) {
                port.offloads = mode          // a port vxland polls keeps the mode it was configured with
            }
            return ([.attachPort(port)])
        case "port.detach":
            let name = canonicalPort(try p.required("port"))
            guard let port = running.access.first(where: { $0.port == name }) else {
                throw p.failure("port \(name) is not attached; attached: "
                    + (running.access.isEmpty ? "none" : running.access.map(\.port).joined(separator: ", ")))
            }
            return ([.detachPort(port)])

        default:
            return []
        }
    }
}

/// The DPDK name of the port a request names by name or by numeric id (as `EthPort(reference:)` reads it), so
/// that the running configuration and its messages always use the name.
func canonicalPort(_ reference: String) -> String {
    if let id = UInt16(reference), rte_eth_dev_is_valid_port(id) != 0, let name = EthPort.name(of: id) { return name }
    return reference
}

/// A request's parameters, read with messages that name the parameter and what was expected.
struct Params {
    let values: [String: String]
    let method: String
    let allowed: [String]
    init(_ values: [String: String], method: String, allowed: [String]) { self.values = values; self.method = method; self.allowed = allowed }

    func failure(_ message: String) -> ControlFailure { ControlFailure(code: "bad_params", message: message) }

    func checkKnown() throws {
        for key in values.keys.sorted() where !allowed.contains(key) {
            throw failure("\(method) takes no parameter '\(key)'" + (allowed.isEmpty ? "" : "; it takes: \(allowed.joined(separator: ", "))"))
        }
    }

    func required(_ key: String) throws -> String {
        guard let v = values[key], !v.isEmpty else { throw failure("\(key) is required") }
        return v
    }

    func vni(_ key: String) throws -> UInt32 {
        guard let v = try optionalVNI(key) else { throw failure("\(key) is required") }
        return v
    }

    func optionalVNI(_ key: String) throws -> UInt32? {
        guard let text = values[key] else { return nil }
        guard let n = UInt64(text) else { throw failure("\(key): '\(text)' is not a VNI (a number, \(VTEPConfiguration.minVNI)-\(VTEPConfiguration.maxVNI))") }
        guard n >= UInt64(VTEPConfiguration.minVNI), n <= UInt64(VTEPConfiguration.maxVNI) else {
            throw failure("VNI \(n) out of range (\(VTEPConfiguration.minVNI)-\(VTEPConfiguration.maxVNI))")
        }
        return UInt32(n)
    }

    func mac(_ key: String) throws -> MACAddress {
        let text = try required(key)
        guard let mac = MACAddress(text) else { throw failure("\(key): '\(text)' is not a MAC address (such as 02:00:00:00:00:01)") }
        return mac
    }

    func address(_ key: String) throws -> IPAddress {
        let text = try required(key)
        guard let ip = IPAddress(text) else { throw failure("\(key): '\(text)' is not an IPv4 or IPv6 address") }
        return ip
    }

    /// A comma-separated list of addresses; nil when absent, [] when empty.
    func addresses(_ key: String) throws -> [IPAddress]? {
        guard let text = values[key] else { return nil }
        return try text.split(separator: ",", omittingEmptySubsequences: true).map { part in
            let s = part.trimmingCharacters(in: .whitespaces)
            guard let ip = IPAddress(s) else { throw failure("\(key): '\(s)' is not an IPv4 or IPv6 address") }
            return ip
        }
    }

    /// A comma-separated list of prefixes; nil when absent, [] when given empty (only the VNI's static remotes).
    func prefixes(_ key: String) throws -> [IPPrefix]? {
        guard let text = values[key] else { return nil }
        var list: [IPPrefix] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: true) {
            let s = part.trimmingCharacters(in: .whitespaces)
            let prefix: IPPrefix
            switch IPPrefix.parse(s) {
            case .success(let p): prefix = p
            case .failure(let problem): throw failure("\(key): '\(s)': \(problem)")
            }
            if prefix.isMulticast { throw failure("\(key): \(prefix) is multicast, never the source of a packet") }
            guard !list.contains(prefix) else { throw failure("\(key): \(prefix) is listed twice") }
            list.append(prefix)
        }
        return list
    }

    func boolean(_ key: String) throws -> Bool? {
        guard let text = values[key] else { return nil }
        switch text {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw failure("\(key): expected true or false, got '\(text)'")
        }
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = values[key] else { return nil }
        guard let n = Int(text), range.contains(n) else {
            throw failure("\(key): expected a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return n
    }

    /// `VLAN=VNI,...` for a tagged port.
    func vlans(_ key: String) throws -> [VTEPConfiguration.VLANMapping]? {
        guard let text = values[key] else { return nil }
        var seen = Set<UInt16>()
        let list = try text.split(separator: ",").map { part -> VTEPConfiguration.VLANMapping in
            let pair = part.split(separator: "=", omittingEmptySubsequences: false)
            guard pair.count == 2, let vlan = UInt16(pair[0].trimmingCharacters(in: .whitespaces)) else {
                throw failure("\(key): '\(part)' is not VLAN=VNI (such as 10=5000)")
            }
            guard (1...4094).contains(vlan) else { throw failure("\(key): VLAN \(vlan) out of range (1-4094)") }
            guard seen.insert(vlan).inserted else { throw failure("\(key): VLAN \(vlan) is mapped twice") }
            let vniText = pair[1].trimmingCharacters(in: .whitespaces)
            guard let vni = UInt64(vniText), vni >= UInt64(VTEPConfiguration.minVNI), vni <= UInt64(VTEPConfiguration.maxVNI) else {
                throw failure("\(key): VLAN \(vlan): VNI '\(vniText)' out of range (\(VTEPConfiguration.minVNI)-\(VTEPConfiguration.maxVNI))")
            }
            return .init(vlan: vlan, vni: UInt32(vni))
        }
        guard !list.isEmpty else { throw failure("\(key): at least one VLAN=VNI mapping is required") }
        return list
    }
}
