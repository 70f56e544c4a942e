import ControlProtocol
import Foundation
import DPDKTestSupport
import Logging
import XCTest
@testable import VXLANDaemon

/// The control server against clients that misbehave: none of them may stop it, and a well-behaved client
/// must always get through.
final class ControlServerLimitsTests: XCTestCase {
    var path = ""
    var server: ControlServer?

    override func setUp() {
        path = NSTemporaryDirectory() + "vxcs-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    override func tearDown() {
        server?.stop()
        server = nil
        unlink(path)
    }

    /// `ping` answers "pong"; `big` answers about `size` bytes; `slow` waits a little.
    func start(_ limits: ControlServer.Limits = .init(), size: Int = 1 << 20) throws {
        let payload = String(repeating: "x", count: size)
        let s = try ControlServer(path: path, logger: Logger(label: "test"), limits: limits) { request in
            switch request.method {
            case "big": return try JSONEncoder.control.encode(["data": payload])
            default: return try JSONEncoder.control.encode(["pong": "vxland"])
            }
        }
        s.start()
        server = s
    }

    func raw() throws -> Int32 { try UnixSocket.connect(path: path, timeout: 2) }

    func ping(timeout: Double = 2) throws -> [String: String] {
        try ControlClient(path: path, timeout: timeout).call("ping", as: [String: String].self)
    }

    func testClientsThatLeaveBeforeTheAnswerCostNothing() throws {
        try start()
        for i in 0..<200 {
            let fd = try raw()
            XCTAssertTrue(UnixSocket.writeAll(fd, Data(#"{"id":\#(i),"method":"big"}"#.utf8 + [10])))
            if i % 2 == 0 { shutdown(fd, Int32(SHUT_RDWR)) }
            close(fd)
        }
        XCTAssertEqual(try ping()["pong"], "vxland")
        // A 1 MiB answer arrives whole.
        let big = try ControlClient(path: path).call("big", as: [String: String].self)
        XCTAssertEqual(big["data"]?.count, 1 << 20)
    }

    func testIdleConnectionsNeverLockOutAClient() throws {
        var limits = ControlServer.Limits()
        limits.maxConnections = 16
        try start(limits)
        var idle: [Int32] = []
        defer { idle.forEach { close($0) } }
        for _ in 0..<200 { idle.append(try raw()) }
        XCTAssertEqual(try ping(timeout: 1)["pong"], "vxland", "the longest-idle connection makes room")
        XCTAssertGreaterThan(server!.tally.evicted, 0)
    }

    func testBusyConnectionsAreNotEvictedAndNewcomersAreToldWhy() throws {
        var limits = ControlServer.Limits()
        limits.maxConnections = 4
        limits.requestTimeout = 30
        try start(limits)
        var busy: [Int32] = []
        defer { busy.forEach { close($0) } }
        for _ in 0..<4 {
            let fd = try raw()
            XCTAssertTrue(UnixSocket.writeAll(fd, Data(#"{"method":"pi"#.utf8)))    // a request in progress
            busy.append(fd)
        }
        // The server has taken all four in (whatever the host's speed) before the fifth knocks.
        let server = try XCTUnwrap(self.server)
        XCTAssertTrue(waitUntil(seconds: 10) { server.connectionCount == 4 }, "open: \(server.connectionCount)")
        XCTAssertThrowsError(try ping(timeout: 1)) {
            XCTAssertEqual(($0 as? ControlFailure)?.code, "busy", "\($0)")
            XCTAssertTrue("\($0)".contains("maximum of 4 control connections"), "\($0)")
        }
        // Finishing a request frees nothing by itself, but closing one does.
        close(busy.removeFirst())
        XCTAssertTrue(waitUntil(seconds: 10) { server.connectionCount == 3 }, "open: \(server.connectionCount)")
        XCTAssertEqual(try ping(timeout: 1)["pong"], "vxland")
    }

    func testOversizedRequestGetsAnErrorAndTheServerGoesOn() throws {
        try start()
        let fd = try raw()
        defer { close(fd) }
        // 1 MiB without a newline, sent while the server reads it: answered once 64 KiB are exceeded.
        let chunk = Data(repeating: UInt8(ascii: "a"), count: 1 << 16)
        var reader = LineReader(fd: fd)
        for _ in 0..<2 { _ = UnixSocket.writeAll(fd, chunk) }
        let answer = try ControlResponse.decodeLine(XCTUnwrap(reader.next()))
        XCTAssertEqual(answer.error?.code, "request_too_large")
        XCTAssertNil(reader.next(), "the connection is closed after the error")
        XCTAssertEqual(try ping()["pong"], "vxland")
    }

    func testHalfSentRequestTimesOut() throws {
        var limits = ControlServer.Limits()
        limits.requestTimeout = 0.3
        try start(limits)
        let fd = try raw()
        defer { close(fd) }
        XCTAssertTrue(UnixSocket.writeAll(fd, Data(#"{"method":"pi"#.utf8)))
        var reader = LineReader(fd: fd)
        let answer = try ControlResponse.decodeLine(XCTUnwrap(reader.next()))
        XCTAssertEqual(answer.error?.code, "timeout")
        XCTAssertNil(reader.next())
    }

    func testAClientThatNeverReadsIsDroppedAndOthersAreServed() throws {
        var limits = ControlServer.Limits()
        limits.writeTimeout = 0.3
        try start(limits, size: 2 << 20)
        let fd = try raw()
        defer { close(fd) }
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        for i in 0..<3 { XCTAssertTrue(UnixSocket.writeAll(fd, Data(#"{"id":\#(i),"method":"big"}"#.utf8 + [10]))) }
        XCTAssertEqual(try ping()["pong"], "vxland", "answered while another client's unread answers wait")
        let deadline = monotonicNow() + 5
        while server!.connectionCount > 0 && monotonicNow() < deadline { usleep(50_000) }
        XCTAssertEqual(server!.connectionCount, 0, "the stalled client was closed")
    }

    func testClientTimesOutOnADaemonThatNeverAnswers() throws {
        // A listener nobody serves: connect succeeds (backlog), the answer never comes.
        let fd = try UnixSocket.listen(path: path)
        defer { close(fd) }
        let started = monotonicNow()
        XCTAssertThrowsError(try ControlClient(path: path, timeout: 0.5).call("ping")) {
            XCTAssertTrue("\($0)".contains("vxland did not answer within 0.5 s"), "\($0)")
        }
        XCTAssertLessThan(monotonicNow() - started, 3)
    }

    func testOnlyAStaleSocketIsReplaced() throws {
        // A regular file at the path is refused and left as it was.
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8)))
        XCTAssertThrowsError(try ControlServer(path: path, logger: Logger(label: "test")) { _ in Data() }) {
            XCTAssertEqual("\($0)", "\(path) exists and is not a socket; refusing to replace it (give --socket another path)")
        }
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data("keep me".utf8))
        unlink(path)
        // A socket nobody listens on (left by a crash) is replaced.
        let stale = try UnixSocket.listen(path: path)
        close(stale)
        try start()
        XCTAssertEqual(try ping()["pong"], "vxland")
        // And stop removes only its own socket file.
        server!.stop()
        server = nil
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }
}
