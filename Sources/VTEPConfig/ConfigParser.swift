import Foundation
import Yams

/// A configuration the dataplane refuses, naming the key (and line) that is wrong and why.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let line: Int?
    public let problem: String

    public init(_ path: String, line: Int? = nil, _ problem: String) {
        self.path = path; self.line = line
        // Messages quote what they refuse; a hostile or broken file must not turn that into a 50 MB log line.
        self.problem = problem.count <= Self.maxProblem ? problem
            : String(problem.prefix(Self.maxProblem)) + "... (\(problem.utf8.count) bytes in all)"
    }

    static let maxProblem = 400

    public var description: String {
        let location = path.isEmpty ? "configuration" : path
        return line.map { "\(location) (line \($0)): \(problem)" } ?? "\(location): \(problem)"
    }
}

/// Reads the YAML (or JSON, which YAML includes) configuration. Scalars are read from their raw text, so a
/// MAC such as 12:00:00:00:00:01 is never mistaken for a YAML 1.1 base-60 integer.
public enum ConfigParser {
    /// A configuration is at most this large (a million static FDB entries fit in about 50 MB).
    public static let maxFileBytes = 64 << 20

    public static func load(path: String) throws -> VTEPConfiguration {
        // Opened first, then checked and read through the one descriptor (nothing swapped in between); without
        // blocking, so that a FIFO named by mistake is refused rather than waited on.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ConfigError("", "cannot read configuration file '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ConfigError("", "cannot read configuration file '\(path)': \(String(cString: strerror(errno)))") }
        // Only a file: a device, a FIFO or a directory is never read (`apply /dev/zero` would never end).
        guard info.st_mode & S_IFMT == S_IFREG else { throw ConfigError("", "'\(path)' is not a regular file") }
        if Int(info.st_size) > maxFileBytes {
            throw ConfigError("", "configuration file '\(path)' is \(info.st_size) bytes; at most \(maxFileBytes >> 20) MiB is accepted")
        }
        guard let read = try? FileHandle(fileDescriptor: fd, closeOnDealloc: false).readToEnd() else {
            throw ConfigError("", "cannot read configuration file '\(path)'")
        }
        let data = read ?? Data()
        guard data.count <= maxFileBytes else {
            throw ConfigError("", "configuration file '\(path)' is more than \(maxFileBytes >> 20) MiB; at most that is accepted")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError("", "configuration file '\(path)' is not UTF-8 text")
        }
        return try parse(text)
    }

    public static func parse(_ text: String) throws -> VTEPConfiguration {
        let root: YAMLNode
        do {
            guard let node = try YAMLNode.load(text) else { throw ConfigError("", "the configuration is empty") }
            root = node
        } catch let error as ConfigError {
            throw error
        } catch {
            // Where it is wrong and libyaml's words for what, never the text around it: the file may not be a
            // configuration at all (`vxlanctl apply /etc/shadow`), and errors go to clients and the log.
            do {
                _ = try Yams.compose(yaml: text)
            } catch let error as YamlError {
                throw ConfigError("", "not valid YAML or JSON: \(Self.describe(error))")
            } catch {
                throw ConfigError("", "not valid YAML or JSON")
            }
            throw ConfigError("", "not valid YAML or JSON")
        }
        let topKeys = ["underlay", "access", "vnis", "fdb", "neighbors", "resources"]
        // A file with none of the keys is not a configuration: say so without quoting any of it.
        guard let pairs = root.mapping, pairs.contains(where: { topKeys.contains($0.key.scalar?.string ?? "") }) else {
            throw ConfigError("", line: root.line, "not a vxland configuration (it has none of the keys \(topKeys.joined(separator: ", ")))")
        }
        let top = try Mapping(root, path: "", allowed: topKeys)

        let u = try Mapping(try top.required("underlay"), path: "underlay",
                            allowed: ["port", "ip", "ip6", "mac", "mtu", "udp_port", "ttl", "gateway", "gateway6", "neighbor_timeout", "strict",
                                      "allowed_remotes", "offloads", "verify_udp_checksum", "udp6_zero_checksum", "tap"])
        guard u.optional("ip") != nil || u.optional("ip6") != nil else {
            throw u.error("ip", "required key is missing (give ip, ip6 or both)")
        }
        var underlay = VTEPConfiguration.Underlay(
            port: try u.port("port"),
            interface: u.optional("ip") == nil ? nil
                : try u.parse("ip", expected: "an IPv4 address with prefix length, such as 10.99.0.1/24") { IPv4Interface($0) },
            interface6: u.optional("ip6") == nil ? nil
                : try u.parse("ip6", expected: "an IPv6 address with prefix length, such as fd00::1/64") { IPv6Interface($0) })
        if let _ = u.optional("mac") {
            let mac = try u.parse("mac", expected: "a MAC address such as 02:00:00:00:00:01") { MACAddress($0) }
            guard !mac.isMulticast, !mac.isZero else { throw u.error("mac", "\(mac) is not a unicast address") }
            underlay.mac = mac
        }
        if u.optional("mtu") != nil { underlay.mtu = try u.integer("mtu", in: 576...9216) }
        if u.optional("udp_port") != nil { underlay.udpPort = UInt16(try u.integer("udp_port", in: 1...65535)) }
        if u.optional("ttl") != nil { underlay.ttl = UInt8(try u.integer("ttl", in: 1...255)) }
        if u.optional("strict") != nil { underlay.strict = try u.boolean("strict") }
        if u.optional("offloads") != nil { underlay.offloads = try u.offloadMode("offloads") }
        if u.present("tap") { underlay.tap = try tapPort(u, path: "underlay.tap", underlay: true) }
        if u.optional("verify_udp_checksum") != nil { underlay.verifyUDPChecksum = try u.boolean("verify_udp_checksum") }
        if let node = u.optional("udp6_zero_checksum") {
            if node.mapping != nil {
                let z = try Mapping(node, path: "underlay.udp6_zero_checksum", allowed: ["tx", "rx"])
                if z.optional("tx") != nil { underlay.udp6ZeroChecksum.tx = try z.boolean("tx") }
                if z.optional("rx") != nil { underlay.udp6ZeroChecksum.rx = try z.boolean("rx") }
            } else if node.scalar == nil {
                throw u.error("udp6_zero_checksum", "expected true, false or a mapping { tx: true|false, rx: true|false }")
            } else {
                let both = try u.boolean("udp6_zero_checksum")
                underlay.udp6ZeroChecksum = .init(tx: both, rx: both)
            }
            if underlay.interface6 == nil && (underlay.udp6ZeroChecksum.tx || underlay.udp6ZeroChecksum.rx) {
                throw u.error("udp6_zero_checksum", "zero UDP checksums are for VXLAN over IPv6, and the VTEP has no ip6")
            }
        }
        if u.optional("neighbor_timeout") != nil { underlay.neighborTimeout = try u.integer("neighbor_timeout", in: 5...86400) }
        underlay.allowedRemotes = try u.prefixes("allowed_remotes")
        if let interface = underlay.interface {
            let address = interface.address
            guard !address.isMulticast, !address.isUnspecified, !address.isLimitedBroadcast, !address.isLoopback else {
                throw u.error("ip", "\(interface) cannot be a VTEP address")
            }
            if interface.reservesNetworkAndBroadcast, address == interface.network || address == interface.broadcast {
                let role = address == interface.network ? "network" : "broadcast"
                throw u.error("ip", "\(address) is the \(role) address of \(interface.subnet); give the VTEP a host address")
            }
        }
        if let interface6 = underlay.interface6 {
            let address = interface6.address
            guard !address.isMulticast, !address.isUnspecified, !address.isLoopback, !address.isIPv4Mapped else {
                throw u.error("ip6", "\(interface6) cannot be a VTEP address")
            }
            if interface6.reservesSubnetRouterAnycast, address == interface6.network {
                throw u.error("ip6", "\(address) is the subnet-router anycast address of \(interface6.subnet); give the VTEP a host address")
            }
        }
        if u.optional("gateway") != nil {
            let gateway = try u.parse("gateway", expected: "an IPv4 address") { IPv4Address($0) }
            guard let interface = underlay.interface else { throw u.error("gateway", "an IPv4 gateway needs an IPv4 ip") }
            if let problem = ConfigRules.notAPeer(.v4(gateway), underlay: underlay, role: .nextHop) { throw u.error("gateway", problem) }
            guard interface.contains(gateway) else {
                throw u.error("gateway", "\(gateway) is not another host on the underlay subnet \(interface)")
            }
            underlay.gateway = gateway
        }
        if u.optional("gateway6") != nil {
            let gateway = try u.parse("gateway6", expected: "an IPv6 address") { IPv6Address($0) }
            guard let interface6 = underlay.interface6 else { throw u.error("gateway6", "an IPv6 gateway needs an ip6") }
            if let problem = ConfigRules.notAPeer(.v6(gateway), underlay: underlay, role: .nextHop) { throw u.error("gateway6", problem) }
            guard interface6.contains(gateway) || gateway.isLinkLocal else {
                throw u.error("gateway6", "\(gateway) is not another host on the underlay prefix \(interface6)")
            }
            underlay.gateway6 = gateway
        }

        // What is read here is each key's syntax and range; the rules between objects (a VNI declared once, a
        // port's VNI declared, remotes reachable, resources enough) are ConfigRules', checked once all is read.
        let vniNodes = try top.sequence("vnis")
        var vnis: [VTEPConfiguration.VNISettings] = []
        vnis.reserveCapacity(vniNodes.count)
        for (i, node) in vniNodes.enumerated() {
            let m = try Mapping(node, list: "vnis", index: i, allowed: segmentKeys)
            let vni = try m.vni("vni")
            let floodNodes = try m.sequence("flood")
            var flood: [IPAddress] = []
            flood.reserveCapacity(floodNodes.count)
            for (j, f) in floodNodes.enumerated() {
                flood.append(try m.parseScalar(f, key: "flood[\(j)]", expected: "an IPv4 or IPv6 address") { IPAddress($0) })
            }
            var segment = VTEPConfiguration.VNISettings(vni: vni, flood: flood)
            if m.optional("learning") != nil { segment.learning = try m.boolean("learning") }
            if m.optional("ageing") != nil { segment.ageing = try m.integer("ageing", in: 10...1_000_000) }
            if m.optional("max_learned") != nil { segment.maxLearned = try m.integer("max_learned", in: 0...16_777_215) }
            segment.allowedRemotes = try m.prefixes("allowed_remotes")
            vnis.append(segment)
        }

        var access: [VTEPConfiguration.AccessPort] = []
        for (i, node) in try top.sequence("access").enumerated() {
            let m = try Mapping(node, path: "access[\(i)]", allowed: ["port", "vni", "vlans", "offloads", "vhost", "tap"])
            let port = try m.port("port")
            let vhost = try m.optional("vhost") == nil ? nil : vhostPort(m, index: i)
            switch (m.optional("vni"), m.optional("vlans")) {
            case (.some, .some):
                throw m.error("vlans", "give either vni (an untagged port) or vlans (a tagged port), not both")
            case (.none, .none):
                throw m.error("vni", "required key is missing (or give vlans for a tagged port)")
            case (.some, .none):
                access.append(.init(port: port, vni: try m.vni("vni"), vhost: vhost))
            case (.none, .some):
                var mappings: [VTEPConfiguration.VLANMapping] = []
                for (j, v) in try m.sequence("vlans").enumerated() {
                    let vm = try Mapping(v, path: "access[\(i)].vlans[\(j)]", allowed: ["vlan", "vni"])
                    mappings.append(.init(vlan: UInt16(try vm.integer("vlan", in: 1...4094)), vni: try vm.vni("vni")))
                }
                access.append(.init(port: port, vlans: mappings, vhost: vhost))
            }
            if m.optional("offloads") != nil { access[access.count - 1].offloads = try m.offloadMode("offloads") }
            if m.present("tap") { access[access.count - 1].tap = try tapPort(m, path: "access[\(i)].tap", underlay: false) }
        }

        var neighbors: [VTEPConfiguration.Neighbor] = []
        for (i, node) in try top.sequence("neighbors").enumerated() {
            let m = try Mapping(node, list: "neighbors", index: i, allowed: ["ip", "mac"])
            let ip = try m.parse("ip", expected: "an IPv4 or IPv6 address") { IPAddress($0) }
            let mac = try m.parse("mac", expected: "a MAC address such as 02:00:00:00:00:02") { MACAddress($0) }
            neighbors.append(.init(ip: ip, mac: mac))
        }

        let fdbNodes = try top.sequence("fdb")
        var fdb: [VTEPConfiguration.FDBEntry] = []
        fdb.reserveCapacity(fdbNodes.count)
        for (i, node) in fdbNodes.enumerated() {
            let m = try Mapping(node, list: "fdb", index: i, allowed: fdbEntryKeys)
            let vni = try m.vni("vni")
            let mac = try m.parse("mac", expected: "a MAC address such as 02:00:00:00:42:02") { MACAddress($0) }
            let remote = try m.parse("remote", expected: "an IPv4 or IPv6 address") { IPAddress($0) }
            fdb.append(.init(vni: vni, mac: mac, remote: remote))
        }

        var resources = VTEPConfiguration.Resources()
        if let r = top.optional("resources") {
            let m = try Mapping(r, path: "resources",
                                allowed: ["mbufs", "rx_descriptors", "tx_descriptors", "fdb_entries", "tunnels", "vnis", "ports"])
            if m.optional("fdb_entries") != nil { resources.fdbEntries = try m.integer("fdb_entries", in: 1024...16_777_216) }
            if m.optional("tunnels") != nil { resources.tunnels = try m.integer("tunnels", in: 16...1_048_576) }
            if m.optional("vnis") != nil { resources.vnis = try m.integer("vnis", in: 16...1_048_576) }
            if m.optional("ports") != nil { resources.ports = try m.integer("ports", in: 2...256) }
            if m.optional("mbufs") != nil { resources.mbufs = try m.integer("mbufs", in: 1023...16_777_215) }
            if m.optional("rx_descriptors") != nil { resources.rxDescriptors = try m.integer("rx_descriptors", in: 32...32768) }
            if m.optional("tx_descriptors") != nil { resources.txDescriptors = try m.integer("tx_descriptors", in: 32...32768) }
        }

        let configuration = VTEPConfiguration(underlay: underlay, access: access, vnis: vnis, fdb: fdb,
                                              neighbors: neighbors, resources: resources)
        do {
            try ConfigRules.check(configuration)
        } catch let e as ConfigError {
            throw ConfigError(e.path, line: root.line(at: e.path), e.problem)
        }
        return configuration
    }

    /// `vhost: { socket, client, tso }` of access port `index`, whose `port` must then name a net_vhost device.
    private static func vhostPort(_ m: Mapping, index i: Int) throws -> VTEPConfiguration.Vhost {
        let v = try Mapping(try m.required("vhost"), path: "access[\(i)].vhost", allowed: ["socket", "client", "tso"])
        let socket = v.trimmed(try v.text(try v.required("socket"), key: "socket"))
        var vhost = VTEPConfiguration.Vhost(socket: socket)
        if v.optional("client") != nil { vhost.client = try v.boolean("client") }
        if v.optional("tso") != nil { vhost.tso = try v.boolean("tso") }
        return vhost
    }

    /// `tap: { name, udp_tunnel_gso }` of the underlay, `tap: { name }` of an access port (no tunnels there).
    private static func tapPort(_ m: Mapping, path: String, underlay: Bool) throws -> VTEPConfiguration.Tap {
        let keys = underlay ? ["name", "udp_tunnel_gso"] : ["name"]
        guard let node = m.optional("tap") else { throw m.error("tap", "expected a mapping of keys (\(keys.joined(separator: ", ")))") }
        let t = try Mapping(node, path: path, allowed: keys)
        var tap = VTEPConfiguration.Tap(name: t.trimmed(try t.text(try t.required("name"), key: "name")))
        if t.optional("udp_tunnel_gso") != nil { tap.udpTunnelGSO = try t.boolean("udp_tunnel_gso") }
        return tap
    }

    /// A YAML error as libyaml's problem and where it is (line, column), without the file's text.
    static func describe(_ error: YamlError) -> String {
        func at(_ problem: String, _ mark: Mark, _ context: YamlError.Context?) -> String {
            "\(problem) at line \(mark.line), column \(mark.column)"
                + (context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? "")
        }
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return at(problem, mark, context)
        case .reader(let problem, _, _, _): return problem
        default: return "unreadable YAML"
        }
    }

    // The keys of the entries a file may hold hundreds of thousands of, built once.
    private static let segmentKeys = ["vni", "flood", "learning", "ageing", "max_learned", "allowed_remotes"]
    private static let fdbEntryKeys = ["vni", "mac", "remote"]

}

/// A YAML mapping being read, which knows its own path for error messages and refuses unknown keys.
struct Mapping {
    let node: YAMLNode
    /// Where the mapping is, as in `vnis[7]`: built only for a message (a file may hold hundreds of thousands).
    var path: String { Mapping.path(list, index) }
    private let list: String
    private let index: Int?
    let pairs: [(String, YAMLNode)]

    init(_ node: YAMLNode, path: String, allowed: [String]) throws {
        try self.init(node, list: path, index: nil, allowed: allowed)
    }

    /// The mapping at `index` in the list at path `list`.
    init(_ node: YAMLNode, list: String, index: Int?, allowed: [String]) throws {
        self.list = list
        self.index = index
        func path() -> String { Mapping.path(list, index) }
        guard let mapping = node.mapping else {
            throw ConfigError(path(), line: Mapping.line(node), "expected a mapping of keys (\(allowed.joined(separator: ", ")))")
        }
        self.node = node
        var pairs: [(String, YAMLNode)] = []
        pairs.reserveCapacity(mapping.count)
        for (k, v) in mapping {
            let key = k.scalar?.string ?? ""
            guard allowed.contains(key) else {
                throw ConfigError(path().isEmpty ? key : "\(path()).\(key)", line: Mapping.line(k),
                                  "unknown key (expected one of: \(allowed.joined(separator: ", ")))")
            }
            if pairs.contains(where: { $0.0 == key }) {
                throw ConfigError(path().isEmpty ? key : "\(path()).\(key)", line: Mapping.line(k), "key given twice")
            }
            pairs.append((key, v))
        }
        self.pairs = pairs
    }

    static func line(_ node: YAMLNode) -> Int? { node.line }
    static func path(_ list: String, _ index: Int?) -> String { index.map { "\(list)[\($0)]" } ?? list }

    /// The text without leading and trailing blanks (spaces, tabs, other Unicode spaces; not line breaks),
    /// as trimmingCharacters(in: .whitespaces) but without bridging: the common case is a lookup of two bytes.
    func trimmed(_ raw: String) -> String {
        guard let first = raw.utf8.first, let last = raw.utf8.last else { return raw }
        if first > 0x20, first < 0x80, last > 0x20, last < 0x80 { return raw }
        let blank: (Character) -> Bool = { $0.isWhitespace && !$0.isNewline }
        guard let start = raw.firstIndex(where: { !blank($0) }), let end = raw.lastIndex(where: { !blank($0) }) else { return "" }
        return String(raw[start...end])
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func optional(_ key: String) -> YAMLNode? {
        guard let node = pairs.first(where: { $0.0 == key })?.1 else { return nil }
        guard let s = node.scalar, s.plain else { return node }
        switch s.string {
        case "", "~", "null", "Null", "NULL": return nil
        default: return node
        }
    }

    /// Whether `key` is written at all, null included (`tap:` with nothing after it is a mistake, not "no tap").
    func present(_ key: String) -> Bool { pairs.contains { $0.0 == key } }

    func required(_ key: String) throws -> YAMLNode {
        guard let node = optional(key) else {
            throw ConfigError(keyPath(key), line: Mapping.line(self.node), "required key is missing")
        }
        return node
    }

    func error(_ key: String, _ problem: String) -> ConfigError {
        ConfigError(keyPath(key), line: optional(key).flatMap(Mapping.line) ?? Mapping.line(node), problem)
    }

    /// A missing or null sequence is empty.
    func sequence(_ key: String) throws -> [YAMLNode] {
        guard let node = optional(key) else { return [] }
        guard let seq = node.sequence else { throw ConfigError(keyPath(key), line: Mapping.line(node), "expected a list") }
        return seq
    }

    /// An allow-list of source prefixes (IPv4 and IPv6 may be mixed); nil when the key is absent. A null value is
    /// refused rather than read as absent: `allowed_remotes:` with nothing after it would otherwise allow anyone,
    /// the opposite of `[]`.
    func prefixes(_ key: String) throws -> [IPPrefix]? {
        guard let node = pairs.first(where: { $0.0 == key })?.1 else { return nil }
        guard optional(key) != nil else {
            throw ConfigError(keyPath(key), line: Mapping.line(node) ?? Mapping.line(self.node),
                              "expected a list of prefixes ([] allows the static remotes only); leave the key out to allow any source")
        }
        guard let list = node.sequence else { throw ConfigError(keyPath(key), line: Mapping.line(node), "expected a list") }
        var prefixes: [IPPrefix] = []
        var seen = Set<IPPrefix>()
        for (j, element) in list.enumerated() {
            let elementKey = "\(key)[\(j)]"
            let raw = try text(element, key: elementKey)
            func fail(_ problem: String) -> ConfigError { ConfigError(keyPath(elementKey), line: Mapping.line(element), problem) }
            switch IPPrefix.parse(trimmed(raw)) {
            case .failure(.malformed):
                throw fail("expected an IPv4 or IPv6 prefix such as 10.99.0.0/24 or fd00::/64, or an address, got '\(raw)'")
            case .failure(let problem):
                throw fail(problem.description)
            case .success(let prefix):
                if prefix.isMulticast { throw fail("\(prefix) is multicast, never the source of a packet") }
                if prefix.isIPv4Mapped { throw fail("\(prefix) is IPv4-mapped IPv6, never the source of a packet; write the IPv4 prefix") }
                guard seen.insert(prefix).inserted else { throw fail("\(prefix) is listed twice") }
                prefixes.append(prefix)
            }
        }
        return prefixes
    }

    func text(_ node: YAMLNode, key: @autoclosure () -> String) throws -> String {
        guard let s = node.scalar else { throw ConfigError(keyPath(key()), line: Mapping.line(node), "expected a single value, not a list or mapping") }
        return s.string
    }

    func parseScalar<T>(_ node: YAMLNode, key: @autoclosure () -> String, expected: String, _ make: (String) -> T?) throws -> T {
        let raw = try text(node, key: key())
        guard let value = make(trimmed(raw)) else {
            throw ConfigError(keyPath(key()), line: Mapping.line(node), "expected \(expected), got '\(raw)'")
        }
        return value
    }

    func parse<T>(_ key: String, expected: String, _ make: (String) -> T?) throws -> T {
        try parseScalar(try required(key), key: key, expected: expected, make)
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int {
        let node = try required(key)
        let raw = try text(node, key: key)
        guard let value = Int(trimmed(raw)), range.contains(value) else {
            throw ConfigError(keyPath(key), line: Mapping.line(node),
                              "expected an integer from \(range.lowerBound) to \(range.upperBound), got '\(raw)'")
        }
        return value
    }

    func offloadMode(_ key: String) throws -> VTEPConfiguration.OffloadMode {
        try parse(key, expected: "auto (use what the port offers) or software (use no offload)") {
            VTEPConfiguration.OffloadMode(rawValue: $0.lowercased())
        }
    }

    func boolean(_ key: String) throws -> Bool {
        let node = try required(key)
        switch try text(node, key: key).lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        case let other: throw ConfigError(keyPath(key), line: Mapping.line(node), "expected true or false, got '\(other)'")
        }
    }

    /// A VNI: 1-16777215 (24 bits; VNI 0 is reserved).
    func vni(_ key: String) throws -> UInt32 {
        let range = VTEPConfiguration.vniRange
        let node = try required(key)
        let raw = try text(node, key: key)
        guard let value = Int(trimmed(raw)) else {
            throw ConfigError(keyPath(key), line: Mapping.line(node),
                              "expected an integer from \(range.lowerBound) to \(range.upperBound), got '\(raw)'")
        }
        guard value >= Int(range.lowerBound), value <= Int(range.upperBound) else {
            throw ConfigError(keyPath(key), line: Mapping.line(node),
                              "VNI \(value) out of range (\(range.lowerBound)-\(range.upperBound))")
        }
        return UInt32(value)
    }

    func port(_ key: String) throws -> String {
        let node = try required(key)
        let raw = trimmed(try text(node, key: key))
        guard !raw.isEmpty, !raw.contains(where: { $0.isWhitespace }) else {
            throw ConfigError(keyPath(key), line: Mapping.line(node), "expected a DPDK port name or id, got '\(raw)'")
        }
        return raw
    }
}
