import ControlProtocol
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Serves the control socket on its own thread (never a polling core). Each connection is read line by line;
/// a bad request gets an error response naming the problem and the connection stays usable.
public final class ControlServer: @unchecked Sendable {
    public typealias Handler = (ControlRequest) throws -> Data

    public let path: String
    private let listener: Int32
    private let handler: Handler
    private let logger: Logger
    private var thread: Thread?
    private let lock = NSLock()
    private var stopping = false

    public init(path: String, logger: Logger, handler: @escaping Handler) throws {
        self.path = path
        self.handler = handler
        self.logger = logger
        listener = try UnixSocket.listen(path: path)
    }

    public func start() {
        let t = Thread { [self] in acceptLoop() }
        t.name = "vxland-control"
        thread = t
        t.start()
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    private var clients: Set<Int32> = []

    private func acceptLoop() {
        while !isStopping {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 200)
            if ready <= 0 { continue }
            let client = accept(listener, nil, nil)
            if client < 0 { continue }
            lock.lock(); clients.insert(client); lock.unlock()
            // One thread per connection: an idle `vxlanctl` session never holds up another.
            let t = Thread { [self] in
                serve(client)
                lock.lock(); clients.remove(client); lock.unlock()
                close(client)
            }
            t.name = "vxland-control-client"
            t.start()
        }
    }

    private func serve(_ fd: Int32) {
        var reader = LineReader(fd: fd)
        while !isStopping, let line = reader.next() {
            if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
            let response = respond(to: line)
            guard let data = try? response.encodeLine(), UnixSocket.writeAll(fd, data) else { return }
        }
    }

    func respond(to line: Data) -> ControlResponse {
        let request: ControlRequest
        do {
            request = try JSONDecoder.control.decode(ControlRequest.self, from: line)
        } catch {
            return .failure(id: 0, ControlFailure(code: "bad_request", message: "request is not a JSON object with a string 'method': \(error)"))
        }
        guard request.version == ControlProtocol.version else {
            return .failure(id: request.id, ControlFailure(code: "unsupported_version",
                message: "protocol version \(request.version) is not supported; this vxland speaks version \(ControlProtocol.version)"))
        }
        do {
            return .success(id: request.id, result: try handler(request))
        } catch let failure as ControlFailure {
            return .failure(id: request.id, failure)
        } catch {
            logger.error("control request \(request.method) failed: \(error)")
            return .failure(id: request.id, ControlFailure(code: "internal", message: "\(error)"))
        }
    }

    /// Stops accepting, waits for the thread and removes the socket file.
    public func stop() {
        lock.lock()
        stopping = true
        for client in clients { shutdown(client, Int32(SHUT_RDWR)) }   // wakes their readers
        lock.unlock()
        while let t = thread, !t.isFinished { usleep(10_000) }
        close(listener)
        unlink(path)
    }
}
