/// The checks a single object gets when it is added at run time (`vxlanctl vni add`, `flood add`, `fdb add`,
/// `neighbor add`): the same rules the file's parser applies, with messages that name the object instead of a
/// key path.
extension ConfigParser {
    /// Why `remote` cannot be a remote VTEP of this underlay (flood list, static FDB entry), or nil.
    public static func problem(remote: IPAddress, underlay: VTEPConfiguration.Underlay) -> String? {
        if let problem = notAPeer(remote, underlay: underlay, role: .remote) { return problem }
        guard underlay.nextHop(for: remote) == nil else { return nil }
        switch remote {
        case .v4: return underlay.interface.map { "remote \(remote) is not on the underlay subnet \($0) and no underlay.gateway is configured" }
            ?? "remote \(remote) is IPv4 but the VTEP has no IPv4 address (underlay.ip)"
        case .v6: return underlay.interface6.map { "remote \(remote) is not on the underlay prefix \($0) and no underlay.gateway6 is configured" }
            ?? "remote \(remote) is IPv6 but the VTEP has no IPv6 address (underlay.ip6)"
        }
    }

    /// Why `ip` cannot be a static neighbor (a next hop on an underlay subnet), or nil.
    public static func problem(neighbor ip: IPAddress, underlay: VTEPConfiguration.Underlay) -> String? {
        if let problem = notAPeer(ip, underlay: underlay, role: .nextHop) { return problem }
        switch ip {
        case .v4(let a): if underlay.interface?.contains(a) ?? false { return nil }
        case .v6(let a): if (underlay.interface6?.contains(a) ?? false) || (a.isLinkLocal && underlay.interface6 != nil) { return nil }
        }
        return "\(ip) is not on an underlay subnet of this VTEP"
    }

    /// Why `mac` cannot be a static FDB entry's or neighbor's address, or nil.
    public static func problem(unicast mac: MACAddress) -> String? {
        mac.isMulticast || mac.isZero ? "\(mac) is not a unicast address" : nil
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
}
