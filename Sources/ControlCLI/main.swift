import ArgumentParser
import ControlProtocol
import Foundation

/// vxlanctl: the operator's view of a running vxland, over its control socket.
struct Vxlanctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vxlanctl",
        abstract: "Control and inspect a running vxland.",
        subcommands: [Show.self, Stats.self, VNI.self, Flood.self, FDB.self, Neighbor.self, Port.self, Apply.self, LogCommands.self, Trace.self, Ping.self])
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Act on the counters.", subcommands: [Clear.self])

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start every counter from zero (per port, per core, pipeline, drops); forwarding is not disturbed.")
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let client = try connection.client()
            _ = try perform { try client.call("stats.clear", as: [String: String].self) }
            print("counters cleared")
        }
    }
}

struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "vxland's control socket.")
    var socket: String = ProcessInfo.processInfo.environment["VXLAND_SOCKET"] ?? ControlProtocol.defaultSocketPath

    @Option(name: .long, help: "Seconds to wait for vxland to accept and to answer each request.")
    var timeout: Double = 5

    func validate() throws {
        guard timeout > 0, timeout <= 3600 else { throw ValidationError("--timeout must be more than 0 and at most 3600 seconds, got \(timeout)") }
    }

    func client() throws -> ControlClient {
        do { return try ControlClient(path: socket, timeout: timeout) } catch {
            throw CLIError("\(error)")
        }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a call, turning transport and daemon errors into one clear line and a non-zero exit.
func perform<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as ControlFailure {
        throw CLIError("vxland refused the request: \(error.message)")
    } catch let error as DecodingError {
        throw CLIError("vxland answered something this vxlanctl does not understand: \(error)")
    } catch {
        throw CLIError("\(error)")
    }
}

extension CLIError: LocalizedError { var errorDescription: String? { description } }

/// The shape of every `show` command: the daemon's JSON as it is with `--json`, else the report rendered.
func show<Report: Decodable>(_ method: String, params: [String: String] = [:], connection: ConnectionOptions, json: Bool,
                             as type: Report.Type, render: (Report) -> String) throws {
    let client = try connection.client()
    if json {
        print(String(decoding: try perform { try client.call(method, params: params) }, as: UTF8.self))
    } else {
        print(render(try perform { try client.call(method, params: params, as: Report.self) }), terminator: "")
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the dataplane's state.", subcommands: [Ports.self, Stats.self, FDB.self, Neighbors.self, VNIs.self, Config.self, ShowCores.self])

    struct Ports: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ports, their roles, links and driver totals.")
        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print JSON (the daemon's own answer) instead of a table.") var json = false

        func run() throws {
            try show("show.ports", connection: connection, json: json, as: PortsReport.self, render: Render.ports)
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Counters: per port, pipeline, drops by reason.")
        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print JSON (the daemon's own answer) instead of a table.") var json = false
        @Flag(name: .customLong("per-core"), help: "Also show each polling core's counters.") var perCore = false
        @OptionGroup var watch: WatchOptions

        func run() throws {
            if watch.watch { return try watchStats(connection: connection, options: watch, json: json) }
            try show("show.stats", connection: connection, json: json, as: StatsReport.self) { Render.stats($0, perCore: perCore) }
        }
    }
}

extension Show {
    struct FDB: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fdb", abstract: "MAC table: static and learned entries, their destination and age.",
            discussion: "The table is read in pages of --page-size entries; without --limit every page is read and printed.")
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Only this VNI.") var vni: UInt32?
        @Option(help: "Print at most this many entries (and the cursor to continue from).") var limit: Int?
        @Option(help: "Start after this entry (VNI/MAC, as printed by --limit).") var after: String?
        @Option(help: "Entries per request.") var pageSize: Int = ControlProtocol.defaultPageSize
        @Flag(help: "Print JSON instead of a table.") var json = false

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
            guard (1...ControlProtocol.maxPageSize).contains(pageSize) else {
                throw ValidationError("--page-size must be from 1 to \(ControlProtocol.maxPageSize), got \(pageSize)")
            }
        }

        func run() throws {
            let client = try connection.client()
            var report = FDBReport(entries: [], segments: [])
            var cursor = after
            var first = true
            repeat {
                let want = limit.map { min(pageSize, $0 - report.entries.count) } ?? pageSize
                var params = ["limit": String(want)]
                if let vni { params["vni"] = String(vni) }
                if let cursor { params["after"] = cursor }
                let page = try perform { try client.call("show.fdb", params: params, as: FDBReport.self) }
                report.entries += page.entries
                if first { report.segments = page.segments; report.total = page.total; first = false }
                cursor = page.next
                report.next = page.next
            } while cursor != nil && (limit.map { report.entries.count < $0 } ?? true)
            if json {
                let encoder = JSONEncoder.control
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(Render.fdb(report), terminator: "")
            }
        }
    }

    struct Neighbors: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Underlay next hops: MACs resolved by ARP or static, their state and age.")
        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print JSON (the daemon's own answer) instead of a table.") var json = false

        func run() throws {
            try show("show.neighbors", connection: connection, json: json, as: NeighborsReport.self, render: Render.neighbors)
        }
    }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that vxland answers on its control socket.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let client = try connection.client()
        let answer = try perform { try client.call("ping", as: [String: String].self) }
        print("vxland answers on \(connection.socket) (protocol \(answer["protocol"] ?? "?"), \(answer["dpdk"] ?? "DPDK ?"))")
    }
}

// A daemon that closes the socket under us is an error to report, not a signal that kills us.
signal(SIGPIPE, SIG_IGN)
Vxlanctl.main()
