import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Minimal blocking Unix-domain stream sockets for the control channel (not on any fast path).
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
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else { throw Failure(message: "socket path too long (\(bytes.count) bytes, at most \(capacity - 1)): \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return addr
    }

    /// Connects to a listening socket; the descriptor is the caller's to close.
    public static func connect(path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("cannot create a socket for", path) }
        var addr = try address(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let failure = Failure("cannot connect to", path)
            close(fd)
            throw failure
        }
        return fd
    }

    /// Binds and listens; an existing socket file at `path` is replaced only if nothing answers on it.
    public static func listen(path: String, mode: mode_t = 0o600) throws -> Int32 {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o700])
        }
        if FileManager.default.fileExists(atPath: path) {
            if let fd = try? connect(path: path) {
                close(fd)
                throw Failure(message: "another vxland is already listening on \(path)")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
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
        guard Glibc.listen(fd, 16) == 0 else { let f = Failure("cannot listen on", path); close(fd); throw f }
        return fd
    }

    /// Writes all of `data`.
    public static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
    }
}

/// Reads newline-terminated lines from a descriptor.
public struct LineReader {
    let fd: Int32
    var buffer = Data()
    public static let maxLine = 1 << 20

    public init(fd: Int32) { self.fd = fd }

    /// The next line without its newline; nil at end of stream (or on an over-long line).
    public mutating func next() -> Data? {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[buffer.startIndex..<nl]
                buffer.removeSubrange(buffer.startIndex...nl)
                return Data(line)
            }
            if buffer.count > LineReader.maxLine { return nil }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}

/// A client of the daemon's control socket: one request, one response.
public final class ControlClient {
    let fd: Int32
    var reader: LineReader
    var nextID = 1
    public let path: String

    public init(path: String) throws {
        self.path = path
        do {
            fd = try UnixSocket.connect(path: path)
        } catch {
            throw UnixSocket.Failure(message: "\(error) (is vxland running, and is this its --socket?)")
        }
        reader = LineReader(fd: fd)
    }

    /// Sends one request and returns the raw JSON of its result, or throws the daemon's error.
    public func call(_ method: String, params: [String: String] = [:]) throws -> Data {
        let request = ControlRequest(id: nextID, method: method, params: params)
        nextID += 1
        var line = try JSONEncoder.control.encode(request)
        line.append(UInt8(ascii: "\n"))
        guard UnixSocket.writeAll(fd, line) else { throw UnixSocket.Failure("cannot send to", path) }
        guard let answer = reader.next() else { throw UnixSocket.Failure(message: "vxland closed \(path) without answering") }
        let response = try ControlResponse.decodeLine(answer)
        if let error = response.error { throw error }
        guard response.ok, let result = response.result else { throw ControlFailure(code: "internal", message: "empty response") }
        return result
    }

    public func call<T: Decodable>(_ method: String, params: [String: String] = [:], as type: T.Type) throws -> T {
        try JSONDecoder.control.decode(T.self, from: try call(method, params: params))
    }

    deinit { close(fd) }
}
