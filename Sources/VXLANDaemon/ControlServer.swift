import CDPDK
import ControlProtocol
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Serves the control socket on one thread (never a polling core) with a `poll()` loop: no thread per client,
/// a fixed cap on connections, non-blocking reads and writes, and every wait bounded in time. Nothing a client
/// does (closing early, never reading, sending garbage or a huge line, opening thousands of connections) can
/// stop the loop or the dataplane; the worst it gets is its own connection closed.
public final class ControlServer: @unchecked Sendable {
    public typealias Handler = ControlSession.Handler

    public struct Limits: Sendable {
        /// Open connections at most. When full, a new one takes the place of the connection idle longest; if
        /// every one is busy (a request or answer in progress) the new one is told `busy` and closed.
        public var maxConnections = 64
        public var maxRequestBytes = ControlProtocol.maxRequestBytes
        /// A request line must be complete this long after its first byte.
        public var requestTimeout = 10.0
        /// An answer must make progress (the client reads) at least this often.
        public var writeTimeout = 10.0
        /// Stop reading further requests from a client while this much of its answers is unread.
        public var maxPendingOutput = 4 << 20
        public init() {}
    }

    public let path: String
    public let limits: Limits
    private let listener: Int32
    private let socketInode: ino_t?
    private let handler: Handler
    private let logger: Logger
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private let wake: (read: Int32, write: Int32)
    /// Set by `stop()`; read by the loop after the wake pipe fires.
    private let stopping = ManagedAtomicFlag()
    /// Kept open so that when descriptors run out (EMFILE) one can be freed to accept and refuse a client,
    /// instead of leaving it in the backlog and the listener readable forever.
    private var reserve: Int32 = -1

    private final class Connection {
        let fd: Int32
        var session: ControlSession
        var output: [UInt8] = []
        var sent = 0
        var lastActivity: Double
        var requestStarted: Double?
        var lastProgress: Double
        var peerClosed = false
        var closing = false
        init(fd: Int32, session: ControlSession, now: Double) {
            self.fd = fd; self.session = session; lastActivity = now; lastProgress = now; accepted = now
        }
        var unsent: Int { output.count - sent }
        let accepted: Double
        /// Nothing in progress: may be closed to make room.
        var idle: Bool { unsent == 0 && session.pendingInput == 0 && !closing }
    }

    private var connections: [Int32: Connection] = [:]
    /// For tests and diagnostics, updated by the loop and readable from any thread: connections accepted,
    /// refused (`busy`), and closed to make room.
    public struct Tally: Sendable, Equatable { public var open = 0, accepted = 0, refused = 0, evicted = 0 }
    private let tallyLock = NSLock()
    private var tallyValue = Tally()
    public var tally: Tally { tallyLock.withLock { tallyValue } }
    private func count(_ change: (inout Tally) -> Void) { tallyLock.withLock { change(&tallyValue) } }

    public init(path: String, logger: Logger, limits: Limits = Limits(), handler: @escaping Handler) throws {
        self.path = path
        self.handler = handler
        self.logger = logger
        self.limits = limits
        listener = try UnixSocket.listen(path: path)
        socketInode = UnixSocket.inode(path)
        UnixSocket.setNonBlocking(listener)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            close(listener)
            throw UnixSocket.Failure(message: "cannot create the control loop's wake pipe: \(String(cString: strerror(errno)))")
        }
        wake = (fds[0], fds[1])
        for fd in fds { UnixSocket.setNonBlocking(fd); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        reserve = open("/dev/null", O_RDONLY | O_CLOEXEC)
    }

    public func start() {
        let t = Thread { [self] in
            setThreadName("vxland-control")
            loop()
            done.signal()
        }
        t.name = "vxland-control"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Stops accepting, closes every connection, waits for the loop to end and removes the socket file (if it is
    /// still the one this server created).
    public func stop() {
        guard !stopping.isSet else { return }
        stopping.set()
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        if thread != nil { done.wait() }
        for c in connections.values { close(c.fd) }
        connections.removeAll()
        close(listener)
        close(wake.read); close(wake.write)
        if reserve >= 0 { close(reserve) }
        if let ours = socketInode, UnixSocket.inode(path) == ours { unlink(path) }
    }

    /// Open connections right now.
    public var connectionCount: Int { tally.open }

    // MARK: - The loop

    private func loop() {
        var fds: [pollfd] = []
        var order: [Int32] = []
        var listenerPausedUntil = 0.0
        while !stopping.isSet {
            let now = monotonicNow()
            if reserve < 0 { reserve = open("/dev/null", O_RDONLY | O_CLOEXEC) }
            fds.removeAll(keepingCapacity: true)
            order.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0))
            let listening = now >= listenerPausedUntil
            fds.append(pollfd(fd: listening ? listener : -1, events: Int16(POLLIN), revents: 0))
            for (fd, c) in connections {
                var events: Int16 = 0
                if !c.closing && !c.peerClosed && c.unsent < limits.maxPendingOutput { events |= Int16(POLLIN) }
                if c.unsent > 0 { events |= Int16(POLLOUT) }
                fds.append(pollfd(fd: fd, events: events, revents: 0))
                order.append(fd)
            }
            let rc = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), 200) }
            if rc < 0 && errno != EINTR {
                logger.error("control socket: poll failed: \(String(cString: strerror(errno)))")
                usleep(100_000)
                continue
            }
            if stopping.isSet { break }
            let now2 = monotonicNow()
            if rc > 0 {
                if fds[0].revents != 0 { drainWake() }
                // Connections first, then new ones: an accept may reuse the descriptor number of a connection closed
                // to make room, and this round's events must not land on the newcomer.
                for (i, fd) in order.enumerated() {
                    let revents = fds[i + 2].revents
                    guard revents != 0, let c = connections[fd] else { continue }
                    if revents & Int16(POLLIN | POLLHUP) != 0 { readFrom(c, now: now2) }
                    if c.unsent > 0, revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 {
                        flush(c, now: now2)
                        answer(c, now: now2)    // requests held back while the client was not reading
                    }
                    if revents & Int16(POLLERR) != 0 { c.closing = true; c.output.removeAll(); c.sent = 0 }
                }
                if fds[1].revents & Int16(POLLIN) != 0, !acceptAll(now: now2) { listenerPausedUntil = now2 + 0.1 }
            }
            expire(now: now2)
            for c in connections.values where (c.closing || c.peerClosed) && c.unsent == 0 { drop(c) }
        }
    }

    private func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wake.read, &buffer, buffer.count) > 0 {}
    }

    /// Accepts every pending connection. Returns false when accept failed in a way that retrying at once would
    /// only spin (the listener is then left alone for a moment).
    private func acceptAll(now: Double) -> Bool {
        // A bounded number per round, so a connection storm cannot keep the loop from serving the others.
        for _ in 0..<Self.acceptsPerRound {
            let fd = acceptClient()
            if fd < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK: return true
                case EINTR, ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE:
                    // Out of descriptors: make room by closing the connection idle longest and take the newcomer;
                    // only when none is idle is it refused (through the reserve descriptor, so the listener does
                    // not stay readable and spin the loop).
                    if let victim = longestIdle(now: now) {
                        count { $0.evicted += 1 }
                        drop(victim)
                        continue
                    }
                    refuseWithReserve(now: now)
                    return false
                default:
                    logger.warning("control socket: accept failed: \(String(cString: strerror(errno)))")
                    return false
                }
            }
            admit(fd, now: now)
        }
        return true
    }

    static let acceptsPerRound = 16

    /// accept(2), the new descriptor non-blocking and close-on-exec (Glibc's module has no accept4).
    private func acceptClient() -> Int32 {
        let fd = accept(listener, nil, nil)
        if fd >= 0 {
            UnixSocket.setNonBlocking(fd)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        return fd
    }

    private func admit(_ fd: Int32, now: Double) {
        if connections.count >= limits.maxConnections {
            if let victim = longestIdle(now: now) {
                count { $0.evicted += 1 }
                drop(victim)
            } else {
                refuse(fd, ControlSession.busyLine(limit: limits.maxConnections))
                return
            }
        }
        count { $0.accepted += 1; $0.open += 1 }
        connections[fd] = Connection(fd: fd, session: ControlSession(maxRequest: limits.maxRequestBytes, handler: handler), now: now)
    }

    /// The connection idle longest, never one accepted this round (its request may not have been read yet) nor
    /// one with bytes waiting in its socket.
    private func longestIdle(now: Double) -> Connection? {
        connections.values.filter { c in
            guard c.idle, c.accepted < now else { return false }
            var waiting: Int32 = 0
            return ioctl(c.fd, UInt(FIONREAD), &waiting) == 0 && waiting == 0
        }.min(by: { $0.lastActivity < $1.lastActivity })
    }

    /// Tells a client there is no room and closes it (one non-blocking send: it may not even read it).
    private func refuse(_ fd: Int32, _ line: [UInt8]) {
        count { $0.refused += 1 }
        _ = line.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        close(fd)
    }

    private var lastDescriptorWarning = -Double.infinity

    private func refuseWithReserve(now: Double) {
        guard reserve >= 0 else { return }
        close(reserve)
        let fd = acceptClient()
        if fd >= 0 {
            refuse(fd, ControlSession.encode(.failure(id: 0, ControlFailure(code: "busy",
                message: "vxland is out of file descriptors (\(connections.count) control connections, all busy); try again"))))
        }
        reserve = open("/dev/null", O_RDONLY | O_CLOEXEC)
        if now - lastDescriptorWarning >= 10 {
            lastDescriptorWarning = now
            logger.warning("control socket: out of file descriptors with \(connections.count) connections, all busy; refusing new ones")
        }
    }

    /// One read buffer for the loop.
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)

    private func readFrom(_ c: Connection, now: Double) {
        // A few reads per round, so one fast sender cannot starve the others.
        for _ in 0..<4 {
            let n = chunk.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
            if n > 0 {
                c.lastActivity = now
                chunk.withUnsafeBytes { c.session.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                answer(c, now: now)
                // Only a request still being typed is on the clock; complete ones held back wait for the client to read.
                c.requestStarted = c.session.pendingInput > 0 && !c.session.mayHaveRequests ? (c.requestStarted ?? now) : nil
                if c.session.finished { c.closing = true; return }
                if c.unsent >= limits.maxPendingOutput { return }
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            // End of stream (or an error): answer what was asked, a last line without its newline included, then close.
            c.peerClosed = true
            append(c.session.endOfInput(), to: c, now: monotonicNow())
            return
        }
    }

    /// Answers the connection's buffered requests while its unread answers stay under `maxPendingOutput`; the rest
    /// wait until the client reads (see `loop`), so pipelining never costs more than the limit plus one answer.
    private func answer(_ c: Connection, now: Double) {
        guard c.session.mayHaveRequests, c.unsent < limits.maxPendingOutput else { return }
        append(c.session.answer(upTo: limits.maxPendingOutput - c.unsent), to: c, now: monotonicNow())
    }

    private func append(_ out: [UInt8], to c: Connection, now: Double) {
        guard !out.isEmpty else { return }
        if c.sent == c.output.count { c.output.removeAll(keepingCapacity: true); c.sent = 0 }
        c.output += out
        // The write timeout counts the client's time to read, not the time this thread spent answering.
        c.lastProgress = now
    }

    private func flush(_ c: Connection, now: Double) {
        while c.unsent > 0 {
            let n = c.output.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.sent, c.unsent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 {
                c.sent += n
                c.lastProgress = now
                c.lastActivity = now
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            // EPIPE, ECONNRESET: the client went away; what it asked for is moot.
            c.output.removeAll(); c.sent = 0
            c.closing = true
            return
        }
        c.output.removeAll(keepingCapacity: c.output.count <= 1 << 20)
        c.sent = 0
    }

    private func expire(now: Double) {
        for c in connections.values {
            if c.unsent > 0, now - c.lastProgress > limits.writeTimeout {
                logger.notice("control socket: client stopped reading for \(Int(limits.writeTimeout)) s; closing it")
                c.output.removeAll(); c.sent = 0
                c.closing = true
            } else if let started = c.requestStarted, !c.closing, now - started > limits.requestTimeout {
                c.output += ControlSession.timeoutLine(seconds: limits.requestTimeout)
                c.lastProgress = now
                c.requestStarted = nil
                c.closing = true
                flush(c, now: now)
            }
        }
    }

    private func drop(_ c: Connection) {
        guard connections.removeValue(forKey: c.fd) != nil else { return }
        count { $0.open -= 1 }
        close(c.fd)
    }
}

/// Names the calling thread for the kernel (`top -H`, /proc/PID/task/*/comm): Foundation's Thread.name does not
/// reach it on Linux. At most 15 characters.
public func setThreadName(_ name: String) {
    _ = rte_thread_setname(pthread_self(), String(name.prefix(15)))
}

/// A flag one thread sets and another reads.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
