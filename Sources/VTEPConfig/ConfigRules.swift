/// The rules a whole configuration keeps, whatever wrote it: the file's parser checks them once it has read the
/// keys, and the daemon checks the configuration a run-time change (`vxlanctl`, `apply`, SIGHUP) would leave, with
/// the same words, without writing it out and reading it back. The checks of single objects a change adds
/// (`problem(remote:)`, ...) are here too. Every check is a hash lookup: the time taken grows with the
/// configuration, never with its square.
public enum ConfigRules {
    /// Throws the first rule `c` breaks, naming the key path as in the file (`vnis[3].flood[1]`) and no line (the
    /// parser finds it).
    public static func check(_ c: VTEPConfiguration) throws {
        let underlay = c.underlay
        var declared = Set<UInt32>(minimumCapacity: c.vnis.count)
        for (i, s) in c.vnis.enumerated() {
            guard VTEPConfiguration.vniRange.contains(s.vni) else {
                throw ConfigError("vnis[\(i)].vni", "VNI \(s.vni) out of range (\(VTEPConfiguration.minVNI)-\(VTEPConfiguration.maxVNI))")
            }
            guard declared.insert(s.vni).inserted else { throw ConfigError("vnis[\(i)].vni", "VNI \(s.vni) is declared twice") }
            // Flood lists are mostly short: a set pays for itself only beyond a few dozen remotes.
            var listed: Set<IPAddress>? = s.flood.count > 32 ? Set(minimumCapacity: s.flood.count) : nil
            for (j, ip) in s.flood.enumerated() {
                if let problem = notAPeer(ip, underlay: underlay, role: .remote) { throw ConfigError("vnis[\(i)].flood[\(j)]", problem) }
                let repeated = listed != nil ? !listed!.insert(ip).inserted : s.flood[..<j].contains(ip)
                guard !repeated else { throw ConfigError("vnis[\(i)].flood[\(j)]", "\(ip) is listed twice") }
            }
        }

        if let problem = problem(portName: underlay.port) { throw ConfigError("underlay.port", problem) }
        var ports = Set<String>(minimumCapacity: c.access.count)
        var sockets = Set<String>()
        var interfaces = Set<String>()
        if let tap = underlay.tap {
            if let problem = problem(interfaceName: tap.name) { throw ConfigError("underlay.tap.name", problem) }
            if let problem = problem(tapPortName: underlay.port) { throw ConfigError("underlay.port", problem) }
            interfaces.insert(tap.name)
        }
        for (i, p) in c.access.enumerated() {
            let path = "access[\(i)]"
            if let problem = problem(portName: p.port) { throw ConfigError("\(path).port", problem) }
            if p.port == underlay.port { throw ConfigError("\(path).port", "'\(p.port)' is already the underlay port") }
            guard ports.insert(p.port).inserted else { throw ConfigError("\(path).port", "'\(p.port)' is listed twice") }
            if let vhost = p.vhost {
                // rte_vdev_init picks the driver by the name's prefix: anything else would not be a vhost-user port.
                guard p.port.hasPrefix("net_vhost") else {
                    throw ConfigError("\(path).port", "'\(p.port)' cannot carry vhost: a vhost-user port's name must start with net_vhost (such as net_vhost0)")
                }
                if let problem = problem(vhostSocket: vhost.socket) { throw ConfigError("\(path).vhost.socket", problem) }
                guard sockets.insert(vhost.socket).inserted else {
                    throw ConfigError("\(path).vhost.socket", "'\(vhost.socket)' is the socket of another access port too")
                }
            }
            if let tap = p.tap {
                if p.vhost != nil { throw ConfigError("\(path).tap", "a port is a vhost-user port or a tap, not both") }
                if let problem = problem(interfaceName: tap.name) { throw ConfigError("\(path).tap.name", problem) }
                if let problem = problem(tapPortName: p.port) { throw ConfigError("\(path).port", problem) }
                guard interfaces.insert(tap.name).inserted else {
                    throw ConfigError("\(path).tap.name", "'\(tap.name)' is the tap of another port too")
                }
            }
            if let vni = p.vni {
                guard declared.contains(vni) else { throw ConfigError("\(path).vni", "VNI \(vni) is not declared under vnis") }
            } else {
                if p.vlans.isEmpty { throw ConfigError("\(path).vlans", "expected at least one { vlan, vni } mapping") }
                var mapped = Set<UInt16>()
                for (j, m) in p.vlans.enumerated() {
                    guard (1...4094).contains(m.vlan) else {
                        throw ConfigError("\(path).vlans[\(j)].vlan", "expected an integer from 1 to 4094, got '\(m.vlan)'")
                    }
                    guard mapped.insert(m.vlan).inserted else { throw ConfigError("\(path).vlans[\(j)].vlan", "VLAN \(m.vlan) is mapped twice") }
                    guard declared.contains(m.vni) else { throw ConfigError("\(path).vlans[\(j)].vni", "VNI \(m.vni) is not declared under vnis") }
                }
            }
        }

        var neighbors = Set<IPAddress>(minimumCapacity: c.neighbors.count)
        for (i, n) in c.neighbors.enumerated() {
            if let problem = notAPeer(n.ip, underlay: underlay, role: .nextHop) { throw ConfigError("neighbors[\(i)].ip", problem) }
            if let problem = problem(unicast: n.mac) { throw ConfigError("neighbors[\(i)].mac", problem) }
            guard neighbors.insert(n.ip).inserted else { throw ConfigError("neighbors[\(i)].ip", "\(n.ip) is listed twice") }
        }

        var fdbKeys = Set<FDBKey>(minimumCapacity: c.fdb.count)
        for (i, e) in c.fdb.enumerated() {
            guard declared.contains(e.vni) else { throw ConfigError("fdb[\(i)].vni", "VNI \(e.vni) is not declared under vnis") }
            if let problem = problem(unicast: e.mac) {
                throw ConfigError("fdb[\(i)].mac", problem + " (broadcast and multicast follow the flood list)")
            }
            if let problem = notAPeer(e.remote, underlay: underlay, role: .remote) { throw ConfigError("fdb[\(i)].remote", problem) }
            guard fdbKeys.insert(FDBKey(vni: e.vni, mac: e.mac.integer)).inserted else {
                throw ConfigError("fdb[\(i)].mac", "\(e.mac) already has an entry in VNI \(e.vni)")
            }
        }

        // Every remote needs a next hop on the underlay subnet, whose MAC ARP (or a static neighbor) gives.
        for (i, s) in c.vnis.enumerated() {
            for (j, ip) in s.flood.enumerated() where underlay.nextHop(for: ip) == nil {
                throw ConfigError("vnis[\(i)].flood[\(j)]", offLink(ip, underlay: underlay))
            }
        }
        for (i, e) in c.fdb.enumerated() where underlay.nextHop(for: e.remote) == nil {
            throw ConfigError("fdb[\(i)].remote", offLink(e.remote, underlay: underlay))
        }
        for (i, n) in c.neighbors.enumerated() where !isOnLink(n.ip, underlay: underlay) {
            throw ConfigError("neighbors[\(i)].ip", "\(n.ip) is not on an underlay subnet of this VTEP")
        }

        // The tables are sized from resources once, at start-up, and hold what is added at run time too: what the
        // configuration holds must fit.
        let resources = c.resources
        if c.vnis.count > resources.vnis {
            throw ConfigError("resources.vnis", "\(resources.vnis) is fewer than the \(c.vnis.count) VNIs configured")
        }
        if 1 + c.access.count > resources.ports {
            throw ConfigError("resources.ports",
                              "\(resources.ports) is fewer than the \(1 + c.access.count) ports configured (the underlay and \(c.access.count) access ports)")
        }
        var tunnels = Set<Tunnel>(minimumCapacity: c.vnis.count + c.fdb.count)
        for s in c.vnis { for remote in s.flood { tunnels.insert(Tunnel(vni: s.vni, remote: remote)) } }
        for e in c.fdb { tunnels.insert(Tunnel(vni: e.vni, remote: e.remote)) }
        if tunnels.count > resources.tunnels {
            throw ConfigError("resources.tunnels", "\(resources.tunnels) is fewer than the \(tunnels.count) tunnels the flood lists and FDB need")
        }
        if c.fdb.count > resources.fdbEntries / 2 {
            throw ConfigError("resources.fdb_entries", "\(resources.fdbEntries) leaves no room for \(c.fdb.count) static entries and learning")
        }
    }

    private struct FDBKey: Hashable { let vni: UInt32; let mac: UInt64 }
    private struct Tunnel: Hashable { let vni: UInt32; let remote: IPAddress }

    // MARK: - Single objects

    /// Why `remote` cannot be a remote VTEP of this underlay (flood list, static FDB entry), or nil.
    public static func problem(remote: IPAddress, underlay: VTEPConfiguration.Underlay) -> String? {
        if let problem = notAPeer(remote, underlay: underlay, role: .remote) { return problem }
        return underlay.nextHop(for: remote) == nil ? offLink(remote, underlay: underlay) : nil
    }

    /// Why `ip` cannot be a static neighbor (a next hop on an underlay subnet), or nil.
    public static func problem(neighbor ip: IPAddress, underlay: VTEPConfiguration.Underlay) -> String? {
        if let problem = notAPeer(ip, underlay: underlay, role: .nextHop) { return problem }
        return isOnLink(ip, underlay: underlay) ? nil : "\(ip) is not on an underlay subnet of this VTEP"
    }

    /// Why `mac` cannot be a static FDB entry's or neighbor's address, or nil.
    public static func problem(unicast mac: MACAddress) -> String? {
        mac.isMulticast || mac.isZero ? "\(mac) is not a unicast address" : nil
    }

    /// Why `name` cannot be a DPDK port's name, or nil: it goes into device arguments (a vhost-user port is created
    /// as `name,iface=...`), where ',' and '=' would be read as arguments of their own.
    public static func problem(portName name: String) -> String? {
        guard !name.isEmpty, !name.contains(where: { $0 == "," || $0 == "=" || $0.isWhitespace || $0.isNewline }) else {
            return "'\(name)' is not a DPDK port name (no ',', '=' or blanks)"
        }
        return nil
    }

    /// Why `name` cannot be a Linux interface name (what `dev_valid_name` refuses), or nil.
    public static func problem(interfaceName name: String) -> String? {
        let bytes = Array(name.utf8)
        guard (1...15).contains(bytes.count) else { return "an interface name has 1 to 15 characters, got '\(name)' (\(bytes.count))" }
        // '%' too: the kernel reads a tap's name with it as a template (tap%d) and would make another interface;
        // byte 0xA0 is a blank to the kernel's isspace (Latin-1).
        guard name != ".", name != "..", !bytes.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "%") || $0 <= 32 || $0 == 127 || $0 == 0xA0 }) else {
            return "'\(name)' cannot be an interface name: no '/', ':', '%', blanks or control characters, not '.' or '..'"
        }
        return nil
    }

    /// Why `name` cannot name a tap port, or nil: a number would read as a DPDK port id, and a net_vhost name is
    /// a vhost-user port's.
    public static func problem(tapPortName name: String) -> String? {
        if UInt16(name) != nil { return "'\(name)' cannot name a tap port: a number is a DPDK port id" }
        if name.hasPrefix("net_vhost") { return "'\(name)' cannot name a tap port: net_vhost names are vhost-user ports" }
        return nil
    }

    /// Why `socket` cannot be a vhost-user port's socket path, or nil.
    public static func problem(vhostSocket socket: String) -> String? {
        guard socket.hasPrefix("/") else { return "expected the absolute path of the vhost-user socket, got '\(socket)'" }
        guard socket.count > 1, !socket.hasSuffix("/") else { return "'\(socket)' names a directory, not a socket" }
        // DPDK's devargs split at ',' and '=', and sockaddr_un holds 107 bytes and a NUL.
        guard !socket.contains(","), !socket.contains("="), !socket.contains(where: { $0.isWhitespace || $0.isNewline }) else {
            return "'\(socket)' contains a comma, '=' or a blank, which DPDK's device arguments cannot carry"
        }
        guard socket.utf8.count <= 107 else { return "'\(socket)' is \(socket.utf8.count) bytes; a UNIX socket path is at most 107" }
        return nil
    }

    static func offLink(_ remote: IPAddress, underlay: VTEPConfiguration.Underlay) -> String {
        switch remote {
        case .v4: underlay.interface.map { "remote \(remote) is not on the underlay subnet \($0) and no underlay.gateway is configured" }
            ?? "remote \(remote) is IPv4 but the VTEP has no IPv4 address (underlay.ip)"
        case .v6: underlay.interface6.map { "remote \(remote) is not on the underlay prefix \($0) and no underlay.gateway6 is configured" }
            ?? "remote \(remote) is IPv6 but the VTEP has no IPv6 address (underlay.ip6)"
        }
    }

    static func isOnLink(_ ip: IPAddress, underlay: VTEPConfiguration.Underlay) -> Bool {
        switch ip {
        case .v4(let a): underlay.interface?.contains(a) ?? false
        case .v6(let a): (underlay.interface6?.contains(a) ?? false) || (a.isLinkLocal && underlay.interface6 != nil)
        }
    }

    /// What an address names: a remote VTEP (flood list, FDB), or a next hop on the underlay (gateway, static neighbor).
    enum PeerRole { case remote, nextHop }

    /// Why `ip` cannot be another host of the underlay, or nil if it can: this VTEP itself, multicast, broadcast,
    /// unspecified, loopback, the subnet's network or broadcast address, the prefix's Subnet-Router anycast address.
    /// A next hop may be link-local; a remote VTEP only when the VTEP's own prefix is link-local too (no gateway
    /// forwards link-local traffic).
    static func notAPeer(_ ip: IPAddress, underlay: VTEPConfiguration.Underlay, role: PeerRole) -> String? {
        if underlay.interface.map({ ip == .v4($0.address) }) == true || underlay.address6.map({ ip == .v6($0) }) == true {
            return "\(ip) is this VTEP's own address"
        }
        if ip.isMulticast || ip.isUnspecified {
            return role == .remote ? "\(ip) is not a unicast address (multicast underlays are not supported)"
                : "\(ip) is not a unicast address"
        }
        switch ip {
        case .v4(let a):
            if a.isLoopback { return "\(ip) is a loopback address" }
            if let interface = underlay.interface, interface.reservesNetworkAndBroadcast, interface.contains(a) {
                if a == interface.network { return "\(ip) is the network address of the underlay subnet \(interface.subnet)" }
                if a == interface.broadcast { return "\(ip) is the broadcast address of the underlay subnet \(interface.subnet)" }
            }
        case .v6(let a):
            if a.isLoopback { return "\(ip) is a loopback address" }
            if a.isIPv4Mapped { return "\(ip) is an IPv4-mapped IPv6 address; write the IPv4 address" }
            guard let interface6 = underlay.interface6 else { return nil }
            if interface6.reservesSubnetRouterAnycast, interface6.contains(a), a == interface6.network {
                return "\(ip) is the subnet-router anycast address of the underlay prefix \(interface6.subnet)"
            }
            if role == .remote, a.isLinkLocal, !interface6.contains(a) {
                return "\(ip) is link-local and not on the underlay prefix \(interface6), and no gateway forwards link-local traffic"
            }
        }
        return nil
    }
}
