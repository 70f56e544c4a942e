import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Unix-domain stream sockets for the control channel (not on any fast path). Every write uses `MSG_NOSIGNAL`:
/// a peer that went away is an error return, never a SIGPIPE.
public enum UnixSocket {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ what: String, _ path: String) { description = "\(what) \(path): \(String(cString: strerror(errno)))" }
        public init(message: String) { description = message }
    }

    static func address(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        // An empty path (or one starting with NUL) would name an abstract socket, which file permissions do not
        // protect: any local user could connect.
        guard let first = bytes.first, first != 0, !bytes.contains(0) else {
            throw Failure(message: "socket path is empty; give a file path such as \(ControlProtocol.defaultSocketPath)")
        }
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { throw Failure(message: "socket path too long (\(bytes.count) bytes, at most \(capacity - 1)): \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return addr
    }

    /// Connects to a listening socket, waiting at most `timeout` seconds (a daemon whose backlog is full makes
    /// a plain connect wait forever); the descriptor is the caller's to close.
    public static func connect(path: String, timeout: Double = 5) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("cannot create a socket for", path) }
        // A Unix stream connect waits for room in the listener's backlog for up to SO_SNDTIMEO.
        var tv = timeval(seconds: timeout)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = try address(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let failure = errno == EAGAIN || errno == EINPROGRESS
                ? Failure(message: "timed out after \(timeout) s connecting to \(path): vxland is not accepting connections")
                : Failure("cannot connect to", path)
            close(fd)
            throw failure
        }
        return fd
    }

    /// Binds and listens. An existing file at `path` is replaced only if it is a socket nothing answers on (a
    /// stale one from a vxland that did not stop cleanly); any other file is left alone and refused.
    public static func listen(path: String, mode: mode_t = 0o600, backlog: Int32 = 128) throws -> Int32 {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o700])
        }
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw Failure(message: "\(path) exists and is not a socket; refusing to replace it (give --socket another path)")
            }
            // Stale only if connecting is refused outright: a live daemon whose backlog is full, or that is slow to
            // accept, makes connect wait or fail with EAGAIN, and its socket must not be taken over.
            switch probe(path) {
            case 0: throw Failure(message: "another vxland is already listening on \(path)")
            case ECONNREFUSED: unlink(path)
            case let code: throw Failure(message: "something holds \(path) but does not accept connections (\(String(cString: strerror(code)))); refusing to replace it")
            }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("cannot create a socket for", path) }
        var addr = try address(path)
        // Created with no permissions for others from the start, then set to `mode` (root-only by default).
        let old = umask(0o177)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(old)
        guard rc == 0 else { let f = Failure("cannot bind", path); close(fd); throw f }
        chmod(path, mode)
        guard Glibc.listen(fd, backlog) == 0 else { let f = Failure("cannot listen on", path); close(fd); throw f }
        return fd
    }

    /// Connects to `path` without waiting: 0 when something accepts, else the errno (ECONNREFUSED: nobody listens).
    static func probe(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0, var addr = try? address(path) else { return errno }
        defer { close(fd) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return rc == 0 ? 0 : errno
    }

    /// The inode of the socket file at `path`, to remove it on stop only if it is still ours.
    public static func inode(_ path: String) -> ino_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_ino : nil
    }

    public static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// Writes all of `data` on a blocking descriptor (tests and simple tools).
    public static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
    }
}

extension timeval {
    init(seconds: Double) {
        let s = max(0, seconds)
        self.init(tv_sec: Int(s), tv_usec: Int((s - s.rounded(.down)) * 1e6))
    }
}

/// Reads newline-terminated lines from a blocking descriptor (tests and simple tools).
public struct LineReader {
    let fd: Int32
    var buffer: LineBuffer

    public init(fd: Int32, maxLine: Int = ControlProtocol.maxResponseBytes) {
        self.fd = fd
        buffer = LineBuffer(maxLine: maxLine)
    }

    /// The next line without its newline; nil at end of stream or on an over-long line.
    public mutating func next() -> Data? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            switch buffer.next() {
            case .line(let line): return Data(line)
            case .tooLong: return nil
            case .incomplete: break
            }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            chunk.withUnsafeBytes { buffer.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }
}

/// A client of the daemon's control socket: one request, one response, each step bounded by `timeout`.
public final class ControlClient {
    let fd: Int32
    var input = LineBuffer(maxLine: ControlProtocol.maxResponseBytes)
    var nextID = 1
    public let path: String
    /// Seconds a call may take from sending the request to the last byte of its answer.
    public let timeout: Double

    public init(path: String, timeout: Double = 5) throws {
        self.path = path
        self.timeout = timeout
        do {
            fd = try UnixSocket.connect(path: path, timeout: timeout)
        } catch {
            throw UnixSocket.Failure(message: "\(error) (is vxland running, and is this its --socket?)")
        }
        UnixSocket.setNonBlocking(fd)
    }

    /// Sends one request and returns the raw JSON of its result, or throws the daemon's error.
    public func call(_ method: String, params: [String: String] = [:]) throws -> Data {
        let request = ControlRequest(id: nextID, method: method, params: params)
        nextID += 1
        var line = try JSONEncoder.control.encode(request)
        line.append(UInt8(ascii: "\n"))
        let deadline = monotonicNow() + timeout
        do {
            try send(Array(line), deadline: deadline)
        } catch {
            // A daemon that refused the connection (`busy`) said why before closing: report that instead.
            if let said = try? receiveLine(deadline: min(deadline, monotonicNow() + 0.5)),
               let refusal = try? ControlResponse.decodeLine(Data(said)), let reason = refusal.error { throw reason }
            throw error
        }
        let answer = try receiveLine(deadline: deadline)
        let response = try ControlResponse.decodeLine(Data(answer))
        if let error = response.error { throw error }
        guard response.ok, let result = response.result else { throw ControlFailure(code: "internal", message: "empty response") }
        return result
    }

    public func call<T: Decodable>(_ method: String, params: [String: String] = [:], as type: T.Type) throws -> T {
        try JSONDecoder.control.decode(T.self, from: try call(method, params: params))
    }

    private func wait(_ events: Int16, deadline: Double, doing what: String) throws {
        while true {
            let left = deadline - monotonicNow()
            guard left > 0 else { throw UnixSocket.Failure(message: "vxland did not answer within \(formatSeconds(timeout)) s (\(what)); see --timeout") }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&pfd, 1, Int32(min(left * 1000 + 1, 60_000)))
            if rc > 0 { return }
            if rc < 0 && errno != EINTR { throw UnixSocket.Failure("poll on", path) }
        }
    }

    private func send(_ bytes: [UInt8], deadline: Double) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 { offset += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { try wait(Int16(POLLOUT), deadline: deadline, doing: "sending"); continue }
            throw UnixSocket.Failure("cannot send to", path)
        }
    }

    private func receiveLine(deadline: Double) throws -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            switch input.next() {
            case .line(let line): return line
            case .tooLong:
                throw UnixSocket.Failure(message: "vxland's answer exceeds \(ControlProtocol.maxResponseBytes >> 20) MiB; ask for less (e.g. --vni, --limit)")
            case .incomplete: break
            }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 { chunk.withUnsafeBytes { input.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { try wait(Int16(POLLIN), deadline: deadline, doing: "waiting for the answer"); continue }
            throw UnixSocket.Failure(message: input.pending > 0 ? "vxland closed \(path) in the middle of its answer"
                                                                : "vxland closed \(path) without answering")
        }
    }

    deinit { close(fd) }
}

func formatSeconds(_ s: Double) -> String { s == s.rounded() ? String(Int(s)) : String(s) }

/// Monotonic seconds, for deadlines.
public func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
