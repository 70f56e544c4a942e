import ControlProtocol
import DPDKTestSupport
import Foundation
import Logging
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANDaemon

/// What a test handler was given.
final class LogRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [(Logger.Level, String)] = []
    func add(_ level: Logger.Level, _ message: String) { lock.lock(); entries.append((level, message)); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return entries.map { "\($0.0) \($0.1)" } }
}

struct RecordingHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { recorder.add(event.level, "\(event.message)") }
}

final class LogLevelTests: XCTestCase {
    func testEveryLoggerFollowsTheSharedLevel() {
        let live = LiveLogLevel(.info), recorder = LogRecorder()
        let logger = Logger(label: "a") { _ in LiveLevelLogHandler(RecordingHandler(recorder: recorder), level: live) }
        var copy = logger
        copy[metadataKey: "k"] = "v"
        logger.debug("hidden")
        XCTAssertEqual(logger.logLevel, .info)
        live.level = .debug
        XCTAssertEqual(logger.logLevel, .debug, "a logger made before the change sees it")
        logger.debug("shown")
        copy.trace("hidden")
        XCTAssertEqual(live.exchange(.trace), .debug)
        copy.trace("shown too")
        XCTAssertEqual(copy[metadataKey: "k"], "v")
        XCTAssertNil(logger[metadataKey: "k"], "metadata stays per logger")

        // A logger given a level of its own keeps it; the others still follow the shared one.
        var own = logger
        own.logLevel = .error
        own.warning("hidden")
        logger.warning("shown")
        live.level = .critical
        own.error("still shown")
        logger.error("hidden")
        XCTAssertEqual(recorder.lines, ["debug shown", "trace shown too", "warning shown", "error still shown"])
    }

    func testTheChangeIsLoggedAtNoticeWhicheverLevelShowsIt() throws {
        let live = LiveLogLevel(.warning), recorder = LogRecorder()
        let logger = Logger(label: "vxland") { _ in LiveLevelLogHandler(RecordingHandler(recorder: recorder), level: live) }
        XCTAssertEqual(try ObserveMethods.logLevel([:], live: live, logger: logger), LogLevelReport(level: "warning"))
        // warning -> debug: logged once debug is in force; debug -> error: logged before error is.
        XCTAssertEqual(try ObserveMethods.logLevel(["level": "debug", "client": "vxlanctl"], live: live, logger: logger),
                       LogLevelReport(level: "debug", previous: "warning"))
        XCTAssertEqual(live.level, .debug)
        _ = try ObserveMethods.logLevel(["level": "ERROR", "client": "vxlanctl"], live: live, logger: logger)
        XCTAssertEqual(live.level, .error)
        // error -> critical: neither level shows notices.
        _ = try ObserveMethods.logLevel(["level": "critical", "client": "bad\nname"], live: live, logger: logger)
        _ = try ObserveMethods.logLevel(["level": "info"], live: live, logger: logger)
        _ = try ObserveMethods.logLevel(["level": "info"], live: live, logger: logger)
        XCTAssertEqual(recorder.lines, [
            "notice log level changed from warning to debug by vxlanctl",
            "notice log level changed from debug to error by vxlanctl",
            "notice log level changed from critical to info by a control client",
            "notice log level stays info (set again by a control client)",
        ])

        XCTAssertThrowsError(try ObserveMethods.logLevel(["level": "loud"], live: live, logger: logger)) {
            XCTAssertEqual($0 as? ControlFailure, ControlFailure(
                code: "bad_params", message: "level: 'loud' is not a log level; valid levels: trace, debug, info, notice, warning, error, critical"))
        }
        XCTAssertEqual(live.level, .info, "a refused level changes nothing")
        XCTAssertEqual(LogLevelReport.levels, Logger.Level.allCases.map(\.rawValue))
    }

    func testTheLevelIsSafeToChangeWhileOtherThreadsLog() {
        let live = LiveLogLevel(.info), recorder = LogRecorder()
        let logger = Logger(label: "t") { _ in LiveLevelLogHandler(RecordingHandler(recorder: recorder), level: live) }
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            for n in 0..<2000 {
                if i == 0 { live.level = n % 2 == 0 ? .trace : .critical } else { logger.error("e") }
            }
        }
        XCTAssertTrue(recorder.lines.allSatisfy { $0 == "error e" })
    }
}

/// `show.cores` on the assembled dataplane, driven round by round.
final class CoresReportTests: XCTestCase {
    func testRoundsPacketsAndTheClearedBaseline() throws {
        try TestEAL.start()
        let u = try RingPort(), a = try RingPort()
        defer { u.destroy(); a.destroy() }
        let dataplane = try Dataplane(configuration: try ConfigParser.parse("""
            underlay: { port: \(u.name), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access: [ { port: \(a.name), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            """), lcores: [EAL.mainLcore])
        defer { dataplane.stop() }
        try dataplane.startPorts()
        let frame = Frames.innerUDP(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01")
        a.inject((0..<5).map { _ in Mbuf.make(frame, pool: dataplane.pool) })
        dataplane.pollOnce()
        dataplane.pollOnce()
        dataplane.pollOnce()
        XCTAssertEqual(u.drain().count, 5)

        var report = dataplane.coresReport()
        XCTAssertEqual(report.since, "start")
        XCTAssertGreaterThan(report.tscHz, 0)
        var core = try XCTUnwrap(report.cores.first)
        XCTAssertEqual(core.lcore, EAL.mainLcore)
        XCTAssertEqual(core.packets, 5)
        XCTAssertEqual(core.packets, dataplane.statsReport().totals.ports.reduce(0) { $0 + $1.counters["rx_packets"]! })
        XCTAssertEqual(core.rounds, 3)
        XCTAssertEqual(core.idleRounds, 2)
        XCTAssertGreaterThan(core.busyCycles, 0)
        XCTAssertGreaterThan(core.idleCycles, 0)
        XCTAssertGreaterThan(core.busyShare, 0)
        XCTAssertLessThan(core.busyShare, 1)
        XCTAssertEqual(core.cyclesPerPacket, Double(core.busyCycles) / 5)

        XCTAssertEqual(dataplane.statsReport().statsClears, 0)
        dataplane.clearStats()
        XCTAssertEqual(dataplane.statsReport().statsClears, 1)
        dataplane.pollOnce()
        report = dataplane.coresReport()
        core = try XCTUnwrap(report.cores.first)
        XCTAssertEqual(report.since, "stats clear")
        XCTAssertEqual([core.packets, core.rounds, core.idleRounds, core.busyCycles], [0, 1, 1, 0])
        XCTAssertNil(core.cyclesPerPacket)

        // The same through the control methods.
        let answer = try ControlMethods.handle(ControlRequest(id: 1, method: "show.cores"), dataplane: dataplane)
        XCTAssertEqual(try JSONDecoder.control.decode(CoresReport.self, from: answer).cores.count, 1)
    }
}
