import Foundation

/// `show.cores`: how each polling core spends its time, since vxland started or the last `stats.clear`. A core
/// reads the TSC once per poll round; the cycles of a round that received at least one packet are busy, the others
/// idle (OVS's `dpif-netdev/pmd-perf-show` splits a PMD thread's cycles the same way).
public struct CoresReport: Codable, Equatable, Sendable {
    public struct Core: Codable, Equatable, Sendable {
        public var lcore: UInt32
        public var busyCycles: UInt64
        public var idleCycles: UInt64
        /// Poll rounds (one burst read from every queue), busy and idle.
        public var rounds: UInt64
        public var idleRounds: UInt64
        /// Packets received, all ports (the sum of the core's `rx_packets`).
        public var packets: UInt64
        /// busy / (busy + idle) cycles, from 0 to 1; 0 before the first round.
        public var busyShare: Double
        /// busy cycles / packets received; absent while no packet was received.
        public var cyclesPerPacket: Double?
        /// Idle back-off (`vxland --idle-sleep-max-us`): sleeps taken and the cycles they took (part of idle).
        public var sleeps: UInt64
        public var sleptCycles: UInt64

        public init(lcore: UInt32, busyCycles: UInt64, idleCycles: UInt64, busyRounds: UInt64, idleRounds: UInt64, packets: UInt64,
                    sleeps: UInt64 = 0, sleptCycles: UInt64 = 0) {
            self.sleeps = sleeps
            self.sleptCycles = sleptCycles
            self.lcore = lcore
            self.busyCycles = busyCycles
            self.idleCycles = idleCycles
            self.rounds = busyRounds &+ idleRounds
            self.idleRounds = idleRounds
            self.packets = packets
            let cycles = Double(busyCycles) + Double(idleCycles)
            busyShare = cycles > 0 ? Double(busyCycles) / cycles : 0
            cyclesPerPacket = packets > 0 ? Double(busyCycles) / Double(packets) : nil
        }
    }

    /// TSC ticks per second (`rte_get_tsc_hz`).
    public var tscHz: UInt64
    public var uptimeSeconds: Double
    /// What the counters count from: `start` or `stats clear`.
    public var since: String
    public var cores: [Core]

    public init(tscHz: UInt64, uptimeSeconds: Double, since: String, cores: [Core]) {
        self.tscHz = tscHz; self.uptimeSeconds = uptimeSeconds; self.since = since; self.cores = cores
    }
}

/// `log.level`: vxland's log level (`level`), and the one it replaced when the request set it (`previous`).
public struct LogLevelReport: Codable, Equatable, Sendable {
    public var level: String
    public var previous: String?
    public init(level: String, previous: String? = nil) { self.level = level; self.previous = previous }

    /// swift-log's levels, most verbose first: what `log.level` takes.
    public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    /// The error for a level that is not one of `levels`.
    public static func unknown(_ level: String) -> String {
        "'\(level)' is not a log level; valid levels: \(levels.joined(separator: ", "))"
    }
}

/// Rates between two `show.stats` answers, as `vxlanctl show stats --watch` prints them: per port packets and bits
/// per second each way, and drops per second by reason (only reasons that moved). Computed by the client from the
/// counters' differences over the time between the answers (their `uptime_seconds`, else the client's clock).
public struct StatsRates: Codable, Equatable, Sendable {
    public struct Port: Codable, Equatable, Sendable {
        public var port: String
        public var rxPps: Double
        public var rxBitsPerSecond: Double
        public var txPps: Double
        public var txBitsPerSecond: Double
        public init(port: String, rxPps: Double, rxBitsPerSecond: Double, txPps: Double, txBitsPerSecond: Double) {
            self.port = port; self.rxPps = rxPps; self.rxBitsPerSecond = rxBitsPerSecond
            self.txPps = txPps; self.txBitsPerSecond = txBitsPerSecond
        }
    }

    /// The interval's length in seconds.
    public var seconds: Double
    /// The counters went back (a `stats clear` in between, or vxland restarted): no rates for this interval.
    public var reset: Bool
    public var ports: [Port]
    /// Drops per second by reason, non-zero ones only.
    public var drops: [String: Double]
    /// When the later answer arrived (seconds since 1970), for the printed timestamp.
    public var time: Double

    public init(seconds: Double, reset: Bool, ports: [Port], drops: [String: Double], time: Double = 0) {
        self.seconds = seconds; self.reset = reset; self.ports = ports; self.drops = drops; self.time = time
    }

    /// The rates from `earlier` to `later`. `elapsed` is the time the client measured between the answers, used when
    /// their uptimes do not give a positive interval. Any counter lower in `later` than in `earlier`, a moved
    /// `stats_clears`, a lower uptime or another set of ports makes the interval a reset.
    public static func between(_ earlier: StatsReport, _ later: StatsReport, elapsed: Double, time: Double = 0) -> StatsRates {
        let byUptime = later.uptimeSeconds - earlier.uptimeSeconds
        let seconds = byUptime > 0 ? byUptime : elapsed
        let reset = StatsRates(seconds: seconds, reset: true, ports: [], drops: [:], time: time)
        guard later.uptimeSeconds >= earlier.uptimeSeconds, earlier.statsClears == later.statsClears,
              earlier.totals.ports.map(\.port) == later.totals.ports.map(\.port), seconds > 0 else { return reset }

        var wentBack = false
        func delta(_ a: UInt64?, _ b: UInt64?) -> Double {
            let a = a ?? 0, b = b ?? 0
            if b < a { wentBack = true; return 0 }
            return Double(b - a)
        }
        var ports: [Port] = []
        for (a, b) in zip(earlier.totals.ports, later.totals.ports) {
            let rxPackets = delta(a.counters["rx_packets"], b.counters["rx_packets"])
            let rxBytes = delta(a.counters["rx_bytes"], b.counters["rx_bytes"])
            let txPackets = delta(a.counters["tx_packets"], b.counters["tx_packets"])
            let txBytes = delta(a.counters["tx_bytes"], b.counters["tx_bytes"])
            ports.append(Port(port: b.port, rxPps: rxPackets / seconds, rxBitsPerSecond: rxBytes * 8 / seconds,
                              txPps: txPackets / seconds, txBitsPerSecond: txBytes * 8 / seconds))
        }
        var drops: [String: Double] = [:]
        for (reason, count) in later.totals.drops {
            let d = delta(earlier.totals.drops[reason], count)
            if d > 0 { drops[reason] = d / seconds }
        }
        if wentBack { return reset }
        return StatsRates(seconds: seconds, reset: false, ports: ports, drops: drops, time: time)
    }
}

extension Render {
    public static func cores(_ report: CoresReport) -> String {
        let ghz = Double(report.tscHz) / 1e9
        let out = "TSC \(String(format: "%.3f", ghz)) GHz; since \(report.since); \(report.cores.count) polling core(s)\n"
        var rows = [["LCORE", "BUSY", "CYCLES/PKT", "PACKETS", "ROUNDS", "IDLE ROUNDS", "SLEPT", "SECONDS"]]
        for c in report.cores {
            let total = Double(c.busyCycles) + Double(c.idleCycles)
            let seconds = report.tscHz > 0 ? total / Double(report.tscHz) : 0
            rows.append([String(c.lcore), String(format: "%.2f%%", c.busyShare * 100),
                         c.cyclesPerPacket.map { String(format: "%.1f", $0) } ?? "-",
                         String(c.packets), String(c.rounds), String(c.idleRounds),
                         total > 0 ? String(format: "%.1f%%", Double(c.sleptCycles) / total * 100) : "-", String(format1: seconds)])
        }
        return out + table(rows)
    }

    /// One interval of `show stats --watch`: a timestamped header, a row per port, drops per second by reason.
    public static func rates(_ r: StatsRates, timestamp: String) -> String {
        if r.reset {
            return "\(timestamp)  reset: counters went back (stats clear, or vxland restarted); rates resume next interval\n"
        }
        var out = "\(timestamp)  over \(String(format: "%.2f", r.seconds)) s\n"
        var rows = [["PORT", "RX PPS", "RX BIT/S", "TX PPS", "TX BIT/S"]]
        for p in r.ports {
            rows.append([p.port, siRate(p.rxPps), siRate(p.rxBitsPerSecond), siRate(p.txPps), siRate(p.txBitsPerSecond)])
        }
        out += table(rows)
        let drops = r.drops.sorted { $0.key < $1.key }
        out += "drops/s: " + (drops.isEmpty ? "none" : drops.map { "\($0.key) \(siRate($0.value))" }.joined(separator: ", ")) + "\n"
        return out
    }

    /// A rate in at most four significant characters with an SI prefix: 0, 0.5, 950, 12.3k, 1.25M, 40.0G.
    public static func siRate(_ value: Double) -> String {
        if value <= 0 { return "0" }
        if value < 10 { return String(format: "%.1f", value) }
        if value < 1000 { return String(format: "%.0f", value) }
        let prefixes = ["k", "M", "G", "T", "P"]
        var scaled = value
        var index = -1
        while scaled >= 1000 && index < prefixes.count - 1 { scaled /= 1000; index += 1 }
        let text = scaled < 10 ? String(format: "%.2f", scaled) : scaled < 100 ? String(format: "%.1f", scaled) : String(format: "%.0f", scaled)
        return text + prefixes[index]
    }
}
