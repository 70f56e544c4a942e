import ArgumentParser
import ControlProtocol
import Foundation

/// Commands that change the running dataplane. Values are passed to vxland as typed: it checks them and says
/// what is wrong ("VNI 16777216 out of range (1-16777215)"), and makes each change whole or not at all.
func change(_ method: String, _ params: [String: String], connection: ConnectionOptions, json: Bool = false) throws {
    let client = try connection.client()
    let answer = try perform { try client.call(method, params: params) }
    if json { print(String(decoding: answer, as: UTF8.self)); return }
    let report = try perform { try JSONDecoder.control.decode(ChangeReport.self, from: answer) }
    print(Render.changes(report), terminator: "")
}

struct VNI: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vni", abstract: "Add or remove VNIs.", subcommands: [Add.self, Del.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a VNI (then attach ports to it, add remotes to its flood list).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The VNI (1-16777215).") var vni: String
        @Option(help: "Remote VTEPs for broadcast, multicast and unknown unicast, comma-separated.") var flood: String?
        @Option(help: "Learn source MACs: true or false (default true).") var learning: String?
        @Option(help: "Seconds a learned MAC lives unseen (default 300).") var ageing: String?
        @Option(help: "Learned MACs allowed in the VNI; 0: no limit (default).") var maxLearned: String?
        @Option(help: "Who may send VXLAN in this VNI (prefixes, comma-separated; empty: only its static remotes).")
        var allowedRemotes: String?

        func run() throws {
            var params = ["vni": vni]
            if let flood { params["flood"] = flood }
            if let learning { params["learning"] = learning }
            if let ageing { params["ageing"] = ageing }
            if let maxLearned { params["max_learned"] = maxLearned }
            if let allowedRemotes { params["allowed_remotes"] = allowedRemotes }
            try change("vni.add", params, connection: connection)
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a VNI with its static and learned FDB entries (refused while an access port maps to it).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The VNI.") var vni: String
        func run() throws { try change("vni.del", ["vni": vni], connection: connection) }
    }
}

struct Flood: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Change a VNI's flood list (head-end replication).", subcommands: [Add.self, Del.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add remote VTEPs to a VNI's flood list.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The VNI.") var vni: String
        @Argument(help: "Remote VTEP addresses.") var remotes: [String]
        func run() throws { try change("flood.add", ["vni": vni, "remotes": remotes.joined(separator: ",")], connection: connection) }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove remote VTEPs from a VNI's flood list.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The VNI.") var vni: String
        @Argument(help: "Remote VTEP addresses.") var remotes: [String]
        func run() throws { try change("flood.del", ["vni": vni, "remotes": remotes.joined(separator: ",")], connection: connection) }
    }
}

struct FDB: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fdb", abstract: "Change the MAC table.",
                                                    subcommands: [Add.self, Del.self, Flush.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a static entry: MAC in VNI is behind a remote VTEP (replaces a learned one).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The VNI.") var vni: String
        @Argument(help: "The MAC address.") var mac: String
        @Argument(help: "The remote VTEP's address.") var remote: String
        func run() throws { try change("fdb.add", ["vni": vni, "mac": mac, "remote": remote], connection: connection) }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a static entry.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The VNI.") var vni: String
        @Argument(help: "The MAC address.") var mac: String
        func run() throws { try change("fdb.del", ["vni": vni, "mac": mac], connection: connection) }
    }

    struct Flush: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Forget learned entries (static ones stay).")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Only this VNI.") var vni: String?
        func run() throws { try change("fdb.flush", vni.map { ["vni": $0] } ?? [:], connection: connection) }
    }
}

struct Neighbor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Static underlay neighbors (next-hop MACs used without ARP/ND).",
                                                    subcommands: [Add.self, Del.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a static neighbor.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The next hop's address (on an underlay subnet).") var ip: String
        @Argument(help: "Its MAC address.") var mac: String
        func run() throws { try change("neighbor.add", ["ip": ip, "mac": mac], connection: connection) }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a static neighbor (tunnels through it resolve it by ARP/ND again).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The next hop's address.") var ip: String
        func run() throws { try change("neighbor.del", ["ip": ip], connection: connection) }
    }
}

struct Port: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Attach access ports to VNIs, or detach them.", subcommands: [Attach.self, Detach.self])

    struct Attach: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Map an access port into a VNI (untagged) or its VLANs into VNIs (tagged).",
            discussion: """
                A port vxland does not poll yet is added to every polling core while the others forward: an EAL port \
                not in use, or, with --vhost, a vhost-user port vxland creates for a VM that just started, or, with \
                --tap, a tap interface vxland creates (a VM's or a namespace's NIC, with the kernel's offloads).
                """)
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The DPDK port name (as in show ports) or id.") var port: String
        @Option(help: "The VNI of an untagged port.") var vni: String?
        @Option(help: "VLAN=VNI mappings of a tagged port, comma-separated (such as 10=5000,20=5001).") var vlans: String?
        @Option(help: "A vhost-user port for a VM: vxland creates the net_vhost device with this socket.") var vhost: String?
        @Flag(help: "vhost-user client mode: connect to the VM manager's socket instead of creating it.") var client = false
        @Flag(name: .customLong("no-tso"), help: "Do not offer the guest TCP segmentation offload.") var noTSO = false
        @Option(help: "A tap port: vxland creates the tap interface of this name (the port argument is vxland's name for it).") var tap: String?
        @Option(help: "auto (default) or software: enable no checksum offload on the port.") var offloads: String?
        func validate() throws {
            if vhost == nil && (client || noTSO) { throw ValidationError("--client and --no-tso are for a vhost-user port: give --vhost SOCKET") }
            if vhost != nil && tap != nil { throw ValidationError("a port is a vhost-user port (--vhost) or a tap (--tap), not both") }
        }
        func run() throws {
            var params = ["port": port]
            if let vni { params["vni"] = vni }
            if let vlans { params["vlans"] = vlans }
            if let vhost { params["vhost_socket"] = vhost; params["vhost_client"] = String(client); params["vhost_tso"] = String(!noTSO) }
            if let tap { params["tap"] = tap }
            if let offloads { params["offloads"] = offloads }
            try change("port.attach", params, connection: connection)
        }
    }

    struct Detach: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Unmap an access port: its frames are dropped, its learned MACs forgotten.",
            discussion: "A vhost-user port or tap vxland created is removed (the VM stopped); frames in flight are freed.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The DPDK port name or id.") var port: String
        func run() throws { try change("port.detach", ["port": port], connection: connection) }
    }
}

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the running dataplane match a configuration file, changing only what differs.",
        discussion: """
            The file is read and checked whole, the difference from the running state is printed and made, all \
            or nothing. What needs a restart (the underlay, resources, a non-vhost port's offloads) is refused with \
            the key named; a vhost-user port whose settings changed is re-created. vxland does the same with its own \
            --config file on SIGHUP.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The configuration file.") var file: String
    @Flag(help: "Print the plan without changing anything.") var dryRun = false
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        let path = URL(fileURLWithPath: file).standardizedFileURL.path
        guard FileManager.default.isReadableFile(atPath: path) else { throw CLIError("cannot read \(file)") }
        try change("config.apply", ["path": path, "dry_run": dryRun ? "true" : "false"], connection: connection, json: json)
    }
}

extension Show {
    struct VNIs: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "vnis", abstract: "VNIs: ports, flood lists, learning, counters.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Only this VNI.") var vni: String?
        @Flag(help: "Print JSON (the daemon's own answer) instead of a table.") var json = false
        func run() throws {
            try show("show.vnis", params: vni.map { ["vni": $0] } ?? [:], connection: connection, json: json, as: VNIsReport.self, render: Render.vnis)
        }
    }

    struct Config: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The running configuration in the configuration file's format (vxland can start from it).")
        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print JSON (the daemon's own answer).") var json = false
        func run() throws {
            try show("show.config", connection: connection, json: json, as: ConfigReport.self) { $0.yaml }
        }
    }
}
