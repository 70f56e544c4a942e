import CDPDK
import Foundation

/// DPDK's Environment Abstraction Layer. It initialises once per process; later calls are no-ops
/// that return the first result, so tests and tools in one process can share it.
public enum EAL {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var initialized = false

    /// Splits a command line by DPDK's convention `prog [EAL args] -- [app args]`.
    /// Without `--`, every argument belongs to the application.
    public static func splitArguments(_ argv: [String]) -> (eal: [String], app: [String]) {
        guard let program = argv.first else { return (["vxland"], []) }
        let rest = argv.dropFirst()
        guard let separator = rest.firstIndex(of: "--") else { return ([program], Array(rest)) }
        return ([program] + rest[..<separator], Array(rest[rest.index(after: separator)...]))
    }

    /// Initialises EAL with `arguments` (arguments[0] is the program name).
    public static func initialize(arguments: [String]) throws {
        lock.lock(); defer { lock.unlock() }
        if initialized { return }
        // EAL keeps pointers into argv (and permutes it): the copies live for the process.
        let argc = Int32(arguments.count)
        let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: arguments.count + 1)
        for (i, argument) in arguments.enumerated() { argv[i] = strdup(argument) }
        argv[arguments.count] = nil
        let consumed = rte_eal_init(argc, argv)
        if consumed < 0 {
            let code = vx_errno()
            if code == EALREADY { initialized = true; return }
            throw DPDKError("EAL initialisation (arguments: \(arguments.dropFirst().joined(separator: " ")))", code: code)
        }
        initialized = true
    }

    public static var isInitialized: Bool { lock.lock(); defer { lock.unlock() }; return initialized }

    /// Releases EAL's resources (hugepage memory, devices). Call after every port is closed.
    public static func cleanup() {
        lock.lock(); defer { lock.unlock() }
        guard initialized else { return }
        _ = rte_eal_cleanup()
        initialized = false
    }

    public static var mainLcore: UInt32 { rte_get_main_lcore() }

    /// Worker lcores (every enabled lcore except the main one), in id order.
    public static var workerLcores: [UInt32] {
        var result: [UInt32] = []
        var lcore = rte_get_next_lcore(UInt32.max, 1, 0)
        while lcore < UInt32(RTE_MAX_LCORE) {
            result.append(lcore)
            lcore = rte_get_next_lcore(lcore, 1, 0)
        }
        return result
    }

    public static func socketOf(lcore: UInt32) -> Int32 { Int32(bitPattern: rte_lcore_to_socket_id(lcore)) }

    public static var version: String { String(cString: rte_version()) }
}
