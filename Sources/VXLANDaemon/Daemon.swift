import CDPDK
import ControlProtocol
import Foundation
import Logging
import PollMode
import VTEPConfig
import VXLANPipeline

/// vxland's options, after DPDK's `--`.
public struct DaemonOptions: Sendable {
    public var configPath: String
    public var socketPath: String = ControlProtocol.defaultSocketPath
    /// The polling cores' longest sleep when idle, in microseconds; 0 spins (`IdleSleep`).
    public var idleSleepMaxMicroseconds = 0
    public init(configPath: String) { self.configPath = configPath }
}

/// The daemon's life: configuration first (so a bad file never touches hugepages), then EAL, ports, cores,
/// the control socket; on SIGINT/SIGTERM/SIGQUIT the reverse, down to rte_eal_cleanup. A stop signal during
/// start-up is honoured between phases, through the same way out (see `DaemonSignals`).
public enum Daemon {
    /// Runs until a stop signal; returns the process exit status (0 for a requested stop, also during start-up).
    public static func run(eal ealArguments: [String], options: DaemonOptions, logger: Logger) -> Int32 {
        DaemonSignals.install()  // main installs them first thing; again here for any other caller
        func stopRequested(_ phase: String) -> Bool {
            guard DaemonSignals.check(logger: logger) else { return false }
            logger.notice("start-up interrupted (\(phase))")
            return true
        }

        let configuration: VTEPConfiguration
        do {
            configuration = try ConfigParser.load(path: options.configPath)
        } catch {
            logger.critical("invalid configuration \(options.configPath): \(error)")
            return 2
        }
        if stopRequested("before EAL") { return 0 }

        do {
            try EAL.initialize(arguments: ealArguments)
        } catch {
            logger.critical("\(error)")
            return 1
        }
        // dpdk-dumpcap / dpdk-pdump (secondary processes) may capture any port while vxland runs; they need
        // vxland's hugepage files, so not under --no-huge or --no-shconf (then pdump stays off, said once).
        let capture = rte_eal_has_hugepages() != 0 && rte_pdump_init() == 0
        if !capture { logger.info("packet capture (dpdk-dumpcap) unavailable: needs hugepages and a shared configuration") }
        defer {
            if capture { _ = rte_pdump_uninit() }
            EAL.cleanup()
            logger.debug("EAL released")
        }
        if stopRequested("after EAL initialisation") { return 0 }

        let workers = EAL.workerLcores
        let lcores = workers.isEmpty ? [EAL.mainLcore] : workers
        let dataplane: Dataplane
        do {
            dataplane = try Dataplane(configuration: configuration, lcores: lcores)
            try dataplane.startPorts()
        } catch {
            logger.critical("cannot start the dataplane: \(error)")
            return 1
        }
        dataplane.logger = logger
        defer {
            dataplane.stop()
            logger.debug("polling cores stopped, ports closed, buffers released")
        }
        if stopRequested("after starting ports") { return 0 }

        let server: ControlServer
        do {
            server = try ControlServer(path: options.socketPath, logger: logger) { request in
                try ControlMethods.handle(request, dataplane: dataplane)
            }
        } catch {
            logger.critical("control socket: \(error)")
            return 1
        }
        server.start()
        defer {
            server.stop()
            logger.debug("control socket closed")
        }
        if stopRequested("after opening the control socket") { return 0 }

        for (i, port) in dataplane.ports.enumerated() {
            let role = dataplane.roles[i] == .underlay ? "underlay \(configuration.underlay.addressesDescription)" : "access"
            logger.info("port \(i): \(port.name) (id \(port.id), \(port.capabilities.driver)) \(role), \(port.queueCount) queue(s)")
        }
        logger.info("\(dataplane.underlay.tunnelRemotes().count) tunnel(s), \(configuration.fdb.count) static FDB entries; polling on lcore(s) \(lcores.map(String.init).joined(separator: ",")); control socket \(options.socketPath)")

        if stopRequested("before launching the polling cores") { return 0 }
        Telemetry.attach(dataplane)
        // SIGHUP: the file vxland started from, applied again (only what changed in it changes).
        let path = URL(fileURLWithPath: options.configPath).standardizedFileURL.path
        let reload = {
            logger.notice("SIGHUP: applying \(path)")
            do {
                let plan = try dataplane.apply(file: path, origin: "SIGHUP \(path)")
                if !plan.changes.isEmpty { logger.notice("SIGHUP: \(plan.changes.count) change(s) made") }
            } catch {
                logger.error("SIGHUP: \(error)")
            }
        }
        defer { Telemetry.detach() }
        if options.idleSleepMaxMicroseconds > 0 {
            dataplane.idleSleep = IdleSleep(maxMicroseconds: options.idleSleepMaxMicroseconds)
            logger.info("idle polling cores sleep up to \(options.idleSleepMaxMicroseconds) us between rounds")
        }
        dataplane.startSlowPath()
        // From here a stop signal reaches the cores through dataplane.stopSignal: the watcher forwards it (and also
        // one that arrived since the last check above: the request is never cleared).
        let stop = dataplane.stopSignal
        if workers.isEmpty {
            logger.notice("no worker lcore given: polling on the main lcore (give EAL -l with two or more cores to keep them apart)")
            let watcher = Thread { setThreadName("vxland-signals"); DaemonSignals.watch(stopping: stop, logger: logger, reload: reload) }
            watcher.name = "vxland-signals"
            watcher.start()
            dataplane.runOnCurrentThread()
        } else {
            do { try dataplane.launch() } catch {
                logger.critical("\(error)")
                return 1
            }
            DaemonSignals.watch(stopping: stop, logger: logger, reload: reload)
        }
        logger.notice("stopping: \(dataplane.statsReport().totals.pipeline.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        return 0
    }
}
