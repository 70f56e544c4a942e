/// Prints a configuration in the file format ConfigParser reads: what `vxlanctl show config` shows and what an
/// operator restarts from, so `ConfigParser.parse(ConfigWriter.yaml(c)) == c` for every configuration it accepts.
///
/// Every setting is written, defaults included, so that the file says what runs; only what the configuration does
/// not have (a gateway, a MAC of its own, an allow-list) is left out, since absence is its meaning. Sections are
/// block mappings and each list entry is one flow mapping on a line, as the README writes them. The text depends
/// on the configuration alone, lists in its order.
public enum ConfigWriter {
    static func tap(_ t: VTEPConfiguration.Tap, underlay: Bool) -> String {
        underlay ? "{ name: \(string(t.name)), udp_tunnel_gso: \(t.udpTunnelGSO) }" : "{ name: \(string(t.name)) }"
    }

    public static func yaml(_ c: VTEPConfiguration) -> String {
        var out = "# vxland running configuration\n"
        // About 60 bytes a list entry: one allocation for a file of 200,000 VNIs rather than a few dozen.
        out.reserveCapacity(1024 + 64 * (c.access.count + c.vnis.count + c.fdb.count + c.neighbors.count))

        let u = c.underlay
        out += "underlay:\n"
        out += "  port: \(string(u.port))\n"
        if let ip = u.interface { out += "  ip: \(ip)\n" }
        if let ip6 = u.interface6 { out += "  ip6: \"\(ip6)\"\n" }
        if let m = u.mac { out += "  mac: \(mac(m))\n" }
        out += "  mtu: \(u.mtu)\n"
        out += "  udp_port: \(u.udpPort)\n"
        out += "  ttl: \(u.ttl)\n"
        if let gateway = u.gateway { out += "  gateway: \(gateway)\n" }
        if let gateway6 = u.gateway6 { out += "  gateway6: \"\(gateway6)\"\n" }
        out += "  neighbor_timeout: \(u.neighborTimeout)\n"
        out += "  strict: \(u.strict)\n"
        out += "  verify_udp_checksum: \(u.verifyUDPChecksum)\n"
        // Only VXLAN over IPv6 has zero checksums: a VTEP without ip6 has them off, and the key would be noise.
        if u.interface6 != nil || u.udp6ZeroChecksum != .init() {
            out += "  udp6_zero_checksum: { tx: \(u.udp6ZeroChecksum.tx), rx: \(u.udp6ZeroChecksum.rx) }\n"
        }
        out += "  offloads: \(u.offloads.rawValue)\n"
        if let t = u.tap { out += "  tap: \(tap(t, underlay: true))\n" }
        if let allowed = u.allowedRemotes { out += "  allowed_remotes: \(prefixes(allowed))\n" }

        out += c.access.isEmpty ? "access: []\n" : "access:\n"
        for a in c.access {
            out += "  - { port: \(string(a.port)), "
            if let vni = a.vni {
                out += "vni: \(vni)"
            } else {
                out += "vlans: [ \(a.vlans.map { "{ vlan: \($0.vlan), vni: \($0.vni) }" }.joined(separator: ", ")) ]"
            }
            out += ", offloads: \(a.offloads.rawValue)"
            if let v = a.vhost { out += ", vhost: { socket: \(string(v.socket)), client: \(v.client), tso: \(v.tso) }" }
            if let t = a.tap { out += ", tap: \(tap(t, underlay: false))" }
            out += " }\n"
        }

        out += c.vnis.isEmpty ? "vnis: []\n" : "vnis:\n"
        for s in c.vnis {
            out += "  - { vni: \(s.vni), flood: [\(s.flood.map(address).joined(separator: ", "))], learning: \(s.learning), "
            out += "ageing: \(s.ageing), max_learned: \(s.maxLearned)"
            if let allowed = s.allowedRemotes { out += ", allowed_remotes: \(prefixes(allowed))" }
            out += " }\n"
        }

        out += c.fdb.isEmpty ? "fdb: []\n" : "fdb:\n"
        for e in c.fdb { out += "  - { vni: \(e.vni), mac: \(mac(e.mac)), remote: \(address(e.remote)) }\n" }

        out += c.neighbors.isEmpty ? "neighbors: []\n" : "neighbors:\n"
        for n in c.neighbors { out += "  - { ip: \(address(n.ip)), mac: \(mac(n.mac)) }\n" }

        let r = c.resources
        out += "resources:\n"
        out += "  mbufs: \(r.mbufs)\n"
        out += "  rx_descriptors: \(r.rxDescriptors)\n"
        out += "  tx_descriptors: \(r.txDescriptors)\n"
        out += "  fdb_entries: \(r.fdbEntries)\n"
        out += "  tunnels: \(r.tunnels)\n"
        out += "  vnis: \(r.vnis)\n"
        out += "  ports: \(r.ports)\n"
        return out
    }

    /// IPv4 bare, as operators write it; IPv6 quoted, since `::` and `:` mean something to YAML.
    static func address(_ ip: IPAddress) -> String {
        switch ip {
        case .v4(let a): a.description
        case .v6(let a): "\"\(a)\""
        }
    }

    static func prefixes(_ list: [IPPrefix]) -> String {
        "[" + list.map { p in
            switch p {
            case .v4: p.description
            case .v6: "\"\(p)\""
            }
        }.joined(separator: ", ") + "]"
    }

    /// Quoted: YAML 1.1 readers take 12:00:00:00:00:01 for a base-60 integer (ours does not, other tools may).
    static func mac(_ mac: MACAddress) -> String { "\"\(mac)\"" }

    /// A name or path as a scalar every YAML reader takes for that same string: bare when it is plainly a word or a
    /// path, double-quoted otherwise. Bare means it starts with a letter, `_` or `/`, holds nothing but ASCII
    /// letters, digits and `_./-`, and is no YAML 1.1 boolean or null: a port named `yes`, `123`, `0000:3b:00.0`,
    /// `a#b` or `~` is quoted. (ConfigParser itself reads bare `yes` as the text; Python's yaml would not.)
    static func string(_ s: String) -> String {
        isBare(s) ? s : quoted(s)
    }

    static func isBare(_ s: String) -> Bool {
        func letter(_ c: UInt8) -> Bool { (c | 0x20) >= UInt8(ascii: "a") && (c | 0x20) <= UInt8(ascii: "z") }
        func digit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
        guard let first = s.utf8.first, letter(first) || first == UInt8(ascii: "_") || first == UInt8(ascii: "/") else { return false }
        guard s.utf8.allSatisfy({ letter($0) || digit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
                                   || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "-") }) else { return false }
        return !yaml11Words.contains(s.lowercased())
    }

    /// The words YAML 1.1 resolves to booleans or null, in any capitalisation (1.1 itself lists three of each).
    private static let yaml11Words: Set<String> = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]

    /// Printable ASCII as it is; `"` and `\` escaped; everything else as an escape of its code point, so that no
    /// control, line-break, invisible or look-alike character reaches the file (or an operator's terminal) raw.
    static func quoted(_ s: String) -> String {
        var q = "\""
        for scalar in s.unicodeScalars {
            switch scalar.value {
            case 0x22: q += "\\\""
            case 0x5C: q += "\\\\"
            case 0x20...0x7E: q.unicodeScalars.append(scalar)
            case 0...0xFF: q += "\\x" + hex(scalar.value, digits: 2)
            case 0x100...0xFFFF: q += "\\u" + hex(scalar.value, digits: 4)
            default: q += "\\U" + hex(scalar.value, digits: 8)
            }
        }
        return q + "\""
    }

    private static func hex(_ value: UInt32, digits: Int) -> String {
        let s = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, digits - s.count)) + s
    }
}
