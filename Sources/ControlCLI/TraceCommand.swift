import ArgumentParser
import ControlProtocol
import Foundation

/// `vxlanctl trace N [--port P] [--timeout S]`: the pipeline's decision for the next N packets received, one block
/// per packet. vxland arms the trace and answers at once; this command then asks for the result until every
/// packet was recorded or the timeout passed (vxland ends the trace itself then, even if this command is gone).
struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Trace the next N packets received: headers, VNI, FDB result and what became of each.",
        usage: "vxlanctl trace <count> [--port <port>] [--timeout <seconds>] [--json] [--socket <socket>]\nvxlanctl trace stop [--json] [--socket <socket>]",
        discussion: """
            Each packet is shown as the polling core that received it saw it: the outer headers of VXLAN, the inner or \
            access frame, the VNI it was classified into, the FDB result, and the action (encapsulated, switched, \
            flooded, decapsulated, punted) or the drop reason. Tracing costs nothing while no trace runs. \
            'vxlanctl trace stop' ends a running trace (one may run at a time).
            """,
        subcommands: [Run.self, Stop.self], defaultSubcommand: Run.self)

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Trace the next N packets (the default).")
        @Argument(help: "How many packets (1-1000).") var count: String
        @Option(help: "Only packets received on this port (its DPDK name, as in 'show ports').") var port: String?
        @Option(help: "Seconds to wait for the packets; then what was recorded is shown.") var timeout: Double = 10
        @Flag(help: "Print JSON (the daemon's own answer) instead of one block per packet.") var json = false
        @Option(name: .long, help: "vxland's control socket.")
        var socket: String = ProcessInfo.processInfo.environment["VXLAND_SOCKET"] ?? ControlProtocol.defaultSocketPath

        func validate() throws {
            guard timeout > 0, timeout <= 3600 else { throw ValidationError("--timeout must be more than 0 and at most 3600 seconds, got \(timeout)") }
        }

        func run() throws {
            // Each request is answered at once; --timeout is the trace's (the connection's is the usual 5 s).
            let client = try ConnectionOptions.parse(["--socket", socket]).client()
            var params = ["count": count, "timeout": String(timeout)]
            if let port { params["port"] = port }
            let started = try perform { try client.call("trace.start", params: params, as: TraceReport.self) }
            var answer = Data()
            var report = started
            var pause = 0.01
            // vxland ends the trace at its timeout; ask once more a little after it in any case.
            let giveUp = monotonicNow() + started.timeoutSeconds + 5
            while report.isRunning {
                Thread.sleep(forTimeInterval: pause)
                pause = min(pause * 2, 0.1)
                let method = monotonicNow() > giveUp ? "trace.stop" : "trace.show"
                answer = try perform {
                    do { return try client.call(method, params: ["id": String(started.id)]) } catch let e as ControlFailure where e.code == "not_running" {
                        throw CLIError("trace \(started.id) was ended by another client (vxlanctl trace stop), which got its packets")
                    }
                }
                report = try perform { try JSONDecoder.control.decode(TraceReport.self, from: answer) }
            }
            if json {
                print(String(decoding: answer, as: UTF8.self))
            } else {
                print(Render.trace(report), terminator: "")
            }
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End the running trace and print what it recorded.")
        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print JSON (the daemon's own answer).") var json = false

        func run() throws {
            let client = try connection.client()
            let answer = try perform { try client.call("trace.stop") }
            if json { print(String(decoding: answer, as: UTF8.self)); return }
            print(Render.trace(try perform { try JSONDecoder.control.decode(TraceReport.self, from: answer) }), terminator: "")
        }
    }
}
