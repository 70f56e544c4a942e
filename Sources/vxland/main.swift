import ArgumentParser
import ControlProtocol
import Foundation
import Logging
import PollMode
import VXLANDaemon

/// vxland [EAL arguments] -- --config FILE [--socket PATH]
struct Vxland: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vxland",
        abstract: "VXLAN tunnel endpoint on DPDK polling cores.",
        usage: "vxland [EAL arguments] -- --config FILE [--socket PATH]",
        discussion: """
            Arguments before `--` go to DPDK's EAL (cores with -l, devices with -a or --vdev, --file-prefix, \
            --no-huge, ...). Arguments after it are vxland's own. Cores: the main lcore serves the control socket, \
            every other lcore polls one RX and one TX queue on every port.
            """)

    @Option(name: .long, help: "Configuration file (YAML or JSON).")
    var config: String

    @Option(name: .long, help: "Control socket path (created root-only).")
    var socket: String = ControlProtocol.defaultSocketPath

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: ArgumentHelp("Idle polling cores sleep between rounds, up to this many microseconds (0: always spin).",
                                             discussion: "After 1000 empty rounds a core sleeps 1 us, doubling up to this; the first packet ends it."))
    var idleSleepMaxUs: Int = 0

    func validate() throws {
        guard (0...100_000).contains(idleSleepMaxUs) else {
            throw ValidationError("--idle-sleep-max-us must be from 0 to 100000 microseconds, got \(idleSleepMaxUs)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
    }
}

/// Asks CSignals' load-time constructor to install vxland's handlers before the Swift runtime and Foundation
/// start, so that a stop signal in the process's first milliseconds is a clean stop too (see vx_signals.h).
@_cdecl("vx_install_signals_at_load")
public func installSignalsAtLoad() -> Int32 { 1 }

// Signals first, before anything is parsed or started: from here on SIGINT/SIGTERM/SIGQUIT mean a clean stop
// (checked between start-up phases), SIGHUP/SIGUSR1/SIGUSR2 never kill vxland, SIGPIPE is ignored. They are
// already installed at load time; this installs them again in case something replaced them since.
DaemonSignals.install()

let (ealArguments, appArguments) = EAL.splitArguments(CommandLine.arguments)
let command: Vxland
do {
    command = try Vxland.parse(appArguments)
} catch {
    Vxland.exit(withError: error)
}
// One level for every logger, changed live by `vxlanctl log level` (LiveLogLevel).
LiveLogLevel.shared.level = Logger.Level(rawValue: command.logLevel) ?? .info
LoggingSystem.bootstrap { label in
    LiveLevelLogHandler(StreamLogHandler.standardError(label: label))
}
// Whatever the umask vxland was started with, what it creates is its own: hugepage files, DPDK's runtime directory,
// and vhost-user sockets (DPDK binds them with the process umask; a VM manager of another user is given access
// explicitly, never by a permissive umask). The control socket's mode is set explicitly as well.
umask(0o077)
var options = DaemonOptions(configPath: command.config)
options.socketPath = command.socket
options.idleSleepMaxMicroseconds = command.idleSleepMaxUs
exit(Daemon.run(eal: ealArguments, options: options, logger: Logger(label: "vxland")))
