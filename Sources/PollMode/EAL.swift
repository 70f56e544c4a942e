import CDPDK
import Foundation

/// DPDK's Environment Abstraction Layer. It initialises once per process; later calls are no-ops
/// that return the first result, so tests and tools in one process can share it.
public enum EAL {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var initialized = false
    nonisolated(unsafe) private static var filePrefix = "rte"
    nonisolated(unsafe) private static var hugeDirectories: [String] = []
    nonisolated(unsafe) private static var runtimeDirectory: String?

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
        filePrefix = option("--file-prefix", in: arguments) ?? "rte"
        hugeDirectories = option("--huge-dir", in: arguments).map { [$0] } ?? hugetlbfsMounts()
        runtimeDirectory = rte_eal_get_runtime_dir().map { String(cString: $0) }
    }

    /// The value of `--name value` or `--name=value`.
    static func option(_ name: String, in arguments: [String]) -> String? {
        for (i, a) in arguments.enumerated() {
            if a == name, i + 1 < arguments.count { return arguments[i + 1] }
            if a.hasPrefix(name + "=") { return String(a.dropFirst(name.count + 1)) }
        }
        return nil
    }

    static func hugetlbfsMounts() -> [String] {
        guard let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return [] }
        return mounts.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count > 2 && f[2] == "hugetlbfs" ? String(f[1]) : nil
        }
    }

    public static var isInitialized: Bool { lock.lock(); defer { lock.unlock() }; return initialized }

    /// Releases EAL's resources (hugepage memory, devices). Call after every port is closed.
    /// DPDK 22.11 leaves a primary's hugepage files (`<prefix>map_*`) and runtime directory in place after
    /// rte_eal_cleanup; a stopped dataplane should leave nothing behind, so this removes those of our own
    /// `--file-prefix`, and nothing else.
    public static func cleanup() {
        lock.lock(); defer { lock.unlock() }
        guard initialized else { return }
        _ = rte_eal_cleanup()
        initialized = false
        let fm = FileManager.default
        for dir in hugeDirectories {
            for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix(filePrefix + "map_") {
                try? fm.removeItem(atPath: dir + "/" + name)
            }
        }
        if let runtime = runtimeDirectory, runtime.hasSuffix("/" + filePrefix) { try? fm.removeItem(atPath: runtime) }
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
