import ArgumentParser
import ControlProtocol
import Foundation
import Synchronization

/// `vxlanctl show cores`: each polling core's busy share, cycles per packet, packets and rounds.
struct ShowCores: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cores",
        abstract: "Polling cores: busy share of their cycles, cycles per packet, packets, rounds (since start or stats clear).",
        discussion: """
            Each core reads the TSC once per poll round. A round that received at least one packet is busy, the others \
            idle; BUSY is busy cycles over all cycles, CYCLES/PKT busy cycles over packets received.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print JSON (the daemon's own answer) instead of a table.") var json = false

    func run() throws {
        try show("show.cores", connection: connection, json: json, as: CoresReport.self, render: Render.cores)
    }
}

/// `vxlanctl log level [LEVEL]`.
struct LogCommands: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "log", abstract: "vxland's logging.", subcommands: [Level.self])

    struct Level: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print vxland's log level, or set it live.",
            discussion: "Levels, most verbose first: \(LogLevelReport.levels.joined(separator: ", ")). The change applies at once to all of vxland's logging and is itself logged at notice level.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The new level.") var level: String?
        @Flag(help: "Print JSON (the daemon's own answer).") var json = false

        func validate() throws {
            if let level, !LogLevelReport.levels.contains(level.lowercased()) { throw ValidationError(LogLevelReport.unknown(level)) }
        }

        func run() throws {
            let client = try connection.client()
            var params: [String: String] = [:]
            if let level { params = ["level": level.lowercased(), "client": "vxlanctl"] }
            if json {
                print(String(decoding: try perform { try client.call("log.level", params: params) }, as: UTF8.self))
                return
            }
            let answer = try perform { try client.call("log.level", params: params, as: LogLevelReport.self) }
            if let previous = answer.previous {
                print(previous == answer.level ? "log level \(answer.level) (unchanged)" : "log level \(answer.level) (was \(previous))")
            } else {
                print(answer.level)
            }
        }
    }
}

/// `show stats --watch`: the options, added to `show stats`.
struct WatchOptions: ParsableArguments {
    @Flag(help: "Print live rates every interval until Ctrl-C: per port pps and bit/s each way, drops per second by reason (all cores; with --json one object per interval).")
    var watch = false
    @Option(name: .customLong("interval"), help: "Seconds between samples with --watch (default 1).") var intervalOption: Double?
    @Option(help: "With --watch: stop after this many intervals.") var count: Int?

    var interval: Double { intervalOption ?? 1 }

    func validate() throws {
        if !watch && (intervalOption != nil || count != nil) { throw ValidationError("--interval and --count go with --watch") }
        guard interval >= 0.1, interval <= 3600 else { throw ValidationError("--interval must be from 0.1 to 3600 seconds, got \(interval)") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
    }
}

/// Samples `show.stats` every `options.interval` and prints the rates between consecutive answers, until SIGINT
/// (then exits 0), `--count` intervals, or stdout going away.
func watchStats(connection: ConnectionOptions, options: WatchOptions, json: Bool) throws {
    Interrupt.install()
    var client = try connection.client()
    func sample() throws -> (report: StatsReport, at: Double, wall: Double) {
        do {
            let report = try perform { try client.call("show.stats", as: StatsReport.self) }
            return (report, monotonicNow(), Date().timeIntervalSince1970)
        } catch {
            // The connection may have gone (vxland restarted, or closed it): one fresh attempt.
            guard !Interrupt.requested else { throw error }
            client = try connection.client()
            let report = try perform { try client.call("show.stats", as: StatsReport.self) }
            return (report, monotonicNow(), Date().timeIntervalSince1970)
        }
    }
    let start = monotonicNow()
    var previous = try sample()
    var printed = 0
    while !Interrupt.requested {
        if let count = options.count, printed >= count { break }
        Interrupt.sleep(until: start + Double(printed + 1) * options.interval)
        if Interrupt.requested { break }
        let current: (report: StatsReport, at: Double, wall: Double)
        do { current = try sample() } catch { if Interrupt.requested { break } else { throw error } }
        let rates = StatsRates.between(previous.report, current.report, elapsed: current.at - previous.at, time: current.wall)
        if json {
            print(String(decoding: try JSONEncoder.control.encode(rates), as: UTF8.self))
        } else {
            print(Render.rates(rates, timestamp: clockTime(current.wall)))
        }
        fflush(stdout)
        if ferror(stdout) != 0 { break }   // the reader went away (SIGPIPE is ignored)
        previous = current
        printed += 1
    }
}

/// Local wall-clock time of day, `HH:MM:SS.mmm`.
func clockTime(_ seconds: Double) -> String {
    var t = time_t(seconds)
    var parts = tm()
    localtime_r(&t, &parts)
    let millis = Int((seconds - seconds.rounded(.down)) * 1000)
    return String(format: "%02d:%02d:%02d.%03d", parts.tm_hour, parts.tm_min, parts.tm_sec, millis)
}

/// Ctrl-C while watching: the handler only sets a flag; the loop ends and vxlanctl exits 0.
enum Interrupt {
    static let flag = Atomic<Bool>(false)

    static func install() {
        _ = flag.load(ordering: .relaxed)   // initialised here, never first in the handler
        signal(SIGINT) { _ in Interrupt.flag.store(true, ordering: .relaxed) }
    }

    static var requested: Bool { flag.load(ordering: .relaxed) }

    /// Sleeps until the monotonic time `deadline`, waking early on an interrupt.
    static func sleep(until deadline: Double) {
        while !requested {
            let left = deadline - monotonicNow()
            if left <= 0 { return }
            var request = timespec(tv_sec: 0, tv_nsec: Int(min(left, 0.1) * 1e9))
            nanosleep(&request, nil)
        }
    }
}
