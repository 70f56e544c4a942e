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
    public init(configPath: String) { self.configPath = configPath }
}

/// The daemon's life: configuration first (so a bad file never touches hugepages), then EAL, ports, cores,
/// the control socket; on SIGINT/SIGTERM the reverse, down to rte_eal_cleanup.
public enum Daemon {
    nonisolated(unsafe) static var signalTarget: StopSignal?

    /// Runs until a signal; returns the process exit status.
    public static func run(eal ealArguments: [String], options: DaemonOptions, logger: Logger) -> Int32 {
        let configuration: VTEPConfiguration
        do {
            configuration = try ConfigParser.load(path: options.configPath)
        } catch {
            logger.critical("invalid configuration \(options.configPath): \(error)")
            return 2
        }

        do {
            try EAL.initialize(arguments: ealArguments)
        } catch {
            logger.critical("\(error)")
            return 1
        }
        defer {
            EAL.cleanup()
            logger.debug("EAL released")
        }

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
        defer {
            dataplane.stop()
            logger.debug("polling cores stopped, ports closed, buffers released")
        }

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

        signalTarget = dataplane.stopSignal
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { _ in Daemon.signalTarget?.request() }
        }

        for (i, port) in dataplane.ports.enumerated() {
            let role = dataplane.roles[i] == .underlay ? "underlay \(configuration.underlay.addressesDescription)" : "access"
            logger.info("port \(i): \(port.name) (id \(port.id), \(port.capabilities.driver)) \(role), \(port.queueCount) queue(s)")
        }
        logger.info("\(dataplane.underlay.tunnelRemotes().count) tunnel(s), \(configuration.fdb.count) static FDB entries; polling on lcore(s) \(lcores.map(String.init).joined(separator: ",")); control socket \(options.socketPath)")

        dataplane.startSlowPath()
        if workers.isEmpty {
            logger.notice("no worker lcore given: polling on the main lcore (give EAL -l with two or more cores to keep them apart)")
            dataplane.runOnCurrentThread()
        } else {
            do { try dataplane.launch() } catch {
                logger.critical("\(error)")
                return 1
            }
            while !dataplane.stopSignal.isRequested { usleep(100_000) }
        }
        logger.notice("stopping: \(dataplane.statsReport().totals.pipeline.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        return 0
    }
}
