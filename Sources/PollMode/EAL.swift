import CDPDK
import Foundation

/// flock(2): Swift imports the C struct `flock` (for fcntl) under the same name and hides the function.
@_silgen_name("flock") private func flockFile(_ fd: Int32, _ operation: Int32) -> Int32

/// DPDK's Environment Abstraction Layer. It initialises once per process; later calls are no-ops
/// that return the first result, so tests and tools in one process can share it.
///
/// Files. A primary EAL keeps its shared state in files: one per hugepage (`<hugetlbfs>/<prefix>map_N`) and a
/// runtime directory (`/var/run/dpdk/<prefix>`: `config`, memseg arrays, the multi-process socket). Secondary
/// processes (dpdk-dumpcap, dpdk-pdump, dpdk-proc-info) attach through them, so vxland runs with them by default;
/// EAL's `--in-memory` (no shared files at all) and `--huge-unlink` (hugepage files unlinked once mapped) would
/// make stale files impossible but shut those tools out, so vxland does not add them. An operator may pass
/// them; the clean-up below then finds less or nothing to remove. Since EAL itself removes neither on
/// rte_eal_cleanup nor on a failed rte_eal_init, vxland removes its own prefix's files on every way out after
/// EAL started. Only a SIGKILL leaves files behind; EAL's next start with that prefix reuses the runtime directory
/// and removes the hugepage files no process holds (clear_hugedir).
public enum EAL {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var initialized = false
    nonisolated(unsafe) private static var filePrefix = "rte"
    nonisolated(unsafe) private static var hugeDirectories: [String] = []
    nonisolated(unsafe) private static var runtimeDirectory: String?
    nonisolated(unsafe) private static var ownsFiles = false

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
        let prefix = option("--file-prefix", in: arguments) ?? "rte"
        // The prefix names files and a directory that vxland removes on exit: it must be a plain name.
        guard !prefix.isEmpty, !prefix.contains("/"), prefix != ".", prefix != ".." else {
            throw SetupError("--file-prefix '\(prefix)' must be a plain name (no '/', not '.' or '..'): it names vxland's hugepage files and runtime directory")
        }
        let hugeDirs = option("--huge-dir", in: arguments).map { [$0] } ?? hugetlbfsMounts()
        let argc = Int32(arguments.count)
        let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: arguments.count + 1)
        for (i, argument) in arguments.enumerated() { argv[i] = strdup(argument) }
        argv[arguments.count] = nil
        let consumed = rte_eal_init(argc, argv)
        if consumed < 0 {
            let code = vx_errno()
            if code == EALREADY { initialized = true; return }
            let operation = "EAL initialisation (arguments: \(arguments.dropFirst().joined(separator: " ")))"
            // A secondary process's files are its primary's: never remove them.
            if rte_eal_process_type() == RTE_PROC_PRIMARY, option("--proc-type", in: arguments) != "secondary" {
                let keeper = removeLeftovers(prefix: prefix, hugeDirectories: hugeDirs,
                                             runtimeDirectory: currentRuntimeDirectory() ?? defaultRuntimeDirectory(prefix: prefix))
                if let pid = keeper {
                    throw SetupError("EAL initialisation failed: --file-prefix \(prefix) is in use by \(pid > 0 ? "process \(pid)" : "another process") (its files were left alone); give this vxland its own --file-prefix")
                }
            }
            throw DPDKError(operation, code: code)
        }
        initialized = true
        filePrefix = prefix
        hugeDirectories = hugeDirs
        runtimeDirectory = currentRuntimeDirectory()
        ownsFiles = rte_eal_process_type() == RTE_PROC_PRIMARY
    }

    private static func currentRuntimeDirectory() -> String? {
        guard let dir = rte_eal_get_runtime_dir(), dir.pointee != 0 else { return nil }
        return String(cString: dir)
    }

    /// Where EAL puts the runtime directory (eal_create_runtime_dir), for a failure before EAL said so.
    static func defaultRuntimeDirectory(prefix: String) -> String {
        let base = getuid() == 0 ? "/var/run" : (ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? "/tmp")
        return base + "/dpdk/" + prefix
    }

    /// A file's identity.
    struct FileID: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    static func fileID(_ path: String) -> FileID? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The files this process has open (/proc/self/fd) or mapped (/proc/self/maps). After a failed rte_eal_init,
    /// those of our prefix are EAL's own, created by this process: it locked them, so a lock test cannot tell.
    /// (EAL keeps hugepage files open in dynamic memory mode; in legacy mode it closes them and keeps the mapping,
    /// whose open file still holds the lock.)
    static func filesOfThisProcess() -> Set<FileID> {
        var ids = Set<FileID>()
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let id = fileID("/proc/self/fd/" + fd) { ids.insert(id) }
        }
        // "start-end perms offset major:minor inode path", numbers of the device in hex.
        let maps = readProcFile("/proc/self/maps")
        for line in maps.split(separator: "\n") {
            let field = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard field.count >= 5, let inode = UInt64(field[4]), inode != 0 else { continue }
            let dev = field[3].split(separator: ":")
            guard dev.count == 2, let major = UInt64(dev[0], radix: 16), let minor = UInt64(dev[1], radix: 16) else { continue }
            // glibc's makedev
            let device = ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff)
            ids.insert(FileID(device: device, inode: inode))
        }
        return ids
    }

    /// The process (0: one not visible here) other than this one that holds a lock on the open file `fd`: a POSIX
    /// record lock (EAL's on `config`) or a flock (EAL's on hugepage files and memseg arrays), or nil. A flock this
    /// function takes to find out is kept: the caller closes `fd`.
    static func lockHolder(fd: Int32) -> pid_t? {
        var record = flock()
        record.l_type = Int16(F_WRLCK)
        record.l_whence = Int16(SEEK_SET)
        // F_GETLK never reports this process's own record locks.
        if fcntl(fd, F_GETLK, &record) == 0, record.l_type != Int16(F_UNLCK) { return record.l_pid }
        return flockFile(fd, LOCK_EX | LOCK_NB) == 0 ? nil : 0
    }

    /// After a failed rte_eal_init, which leaves its files and cannot be undone with rte_eal_cleanup: removes our
    /// prefix's hugepage files and runtime directory, except what another process holds a lock on, as EAL's own
    /// clear_hugedir does at start-up. A primary EAL holds a flock on every hugepage file and memseg array it uses
    /// and a write lock on its `config`. A second process with the same prefix fails at that lock, before it maps
    /// any page. Returns the pid of a process whose files were kept (0 when not visible), or nil.
    static func removeLeftovers(prefix: String, hugeDirectories: [String], runtimeDirectory: String,
                                ours: Set<FileID> = filesOfThisProcess()) -> pid_t? {
        var keeper: pid_t?
        let fm = FileManager.default
        for dir in hugeDirectories {
            for name in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix(prefix + "map_") {
                let path = dir + "/" + name
                if let id = fileID(path), ours.contains(id) { unlink(path); continue }
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { continue }
                // Unlinked while holding the lock, as clear_hugedir does, so no process can take the page meanwhile.
                if let pid = lockHolder(fd: fd) { keeper = keeper ?? pid } else { unlink(path) }
                close(fd)
            }
        }
        guard runtimeDirectory.hasSuffix("/" + prefix),
              let names = try? fm.contentsOfDirectory(atPath: runtimeDirectory) else { return keeper }
        var inUse = false
        // `config` first: its record lock names the process.
        for name in names.filter({ $0 == "config" }) + names.filter({ $0 != "config" }) {
            let path = runtimeDirectory + "/" + name
            if let id = fileID(path), ours.contains(id) { continue }
            // Sockets do not open; a process's socket alone does not make it the owner.
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
            guard fd >= 0 else { continue }
            let holder = lockHolder(fd: fd)
            close(fd)
            if let pid = holder {
                inUse = true
                if keeper == nil || keeper == 0 { keeper = pid }
                if pid > 0 { break }
            }
        }
        if !inUse { try? fm.removeItem(atPath: runtimeDirectory) }
        return keeper
    }

    /// The value of `--name value` or `--name=value`.
    static func option(_ name: String, in arguments: [String]) -> String? {
        for (i, a) in arguments.enumerated() {
            if a == name, i + 1 < arguments.count { return arguments[i + 1] }
            if a.hasPrefix(name + "=") { return String(a.dropFirst(name.count + 1)) }
        }
        return nil
    }

    /// The whole of a /proc file (Foundation's readers stop after the first 4 KiB of one: they trust its size, 0).
    static func readProcFile(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes.append(contentsOf: chunk[..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func hugetlbfsMounts() -> [String] {
        return readProcFile("/proc/mounts").split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count > 2 && f[2] == "hugetlbfs" ? String(f[1]) : nil
        }
    }

    public static var isInitialized: Bool { lock.lock(); defer { lock.unlock() }; return initialized }

    /// Releases EAL's resources (hugepage memory, devices). Call after every port is closed.
    /// DPDK 22.11 leaves a primary's hugepage files (`<prefix>map_*`) and runtime directory in place after
    /// rte_eal_cleanup; a stopped dataplane should leave nothing behind, so this removes those of our own
    /// `--file-prefix`. "Our own" is decided as after a failed start: the files this process has open or mapped
    /// just before rte_eal_cleanup, and those no other process holds a lock on. Having started as a primary does
    /// not prove the prefix was ours alone: with `--no-shconf` a second vxland starts beside a running one with the
    /// same prefix, and must not take that one's files with it. A secondary removes nothing.
    public static func cleanup() {
        lock.lock(); defer { lock.unlock() }
        guard initialized else { return }
        let ours = ownsFiles ? filesOfThisProcess() : []
        _ = rte_eal_cleanup()
        initialized = false
        guard ownsFiles else { return }
        _ = removeLeftovers(prefix: filePrefix, hugeDirectories: hugeDirectories,
                            runtimeDirectory: runtimeDirectory ?? defaultRuntimeDirectory(prefix: filePrefix), ours: ours)
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
