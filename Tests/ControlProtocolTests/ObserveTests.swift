import Foundation
import XCTest
@testable import ControlProtocol

/// `show stats --watch`'s rates and `show cores`' arithmetic, on reports built by hand.
final class ObserveTests: XCTestCase {
    /// Two ports, one polling core; counters as given.
    func report(uptime: Double, underlay: [String: UInt64], access: [String: UInt64], drops: [String: UInt64],
                clears: UInt64? = nil) -> StatsReport {
        var r = StatsReport(uptimeSeconds: uptime, cores: [.init(lcore: 1, ports: [.init(port: "u", counters: underlay),
                                                                                    .init(port: "a", counters: access)],
                                                                  pipeline: [:], drops: drops)])
        r.statsClears = clears
        return r
    }

    var earlier: StatsReport {
        report(uptime: 10.0,
               underlay: ["rx_packets": 1000, "rx_bytes": 64000, "tx_packets": 500, "tx_bytes": 57000],
               access: ["rx_packets": 40, "rx_bytes": 4000, "tx_packets": 0, "tx_bytes": 0],
               drops: ["not_our_mac": 100, "unknown_vni": 5, "runt_frame": 0], clears: 0)
    }

    var later: StatsReport {
        report(uptime: 12.5,
               underlay: ["rx_packets": 3500, "rx_bytes": 224_000, "tx_packets": 1750, "tx_bytes": 199_500],
               access: ["rx_packets": 40, "rx_bytes": 4000, "tx_packets": 10, "tx_bytes": 1000],
               drops: ["not_our_mac": 350, "unknown_vni": 5, "runt_frame": 0, "bad_flags": 3], clears: 0)
    }

    func testRatesAreCounterDifferencesOverTheUptimeBetweenAnswers() {
        // 2.5 s between the answers by their uptime (the client's own clock, 2.6 s, is not used).
        let r = StatsRates.between(earlier, later, elapsed: 2.6, time: 1000)
        XCTAssertFalse(r.reset)
        XCTAssertEqual(r.seconds, 2.5)
        XCTAssertEqual(r.time, 1000)
        XCTAssertEqual(r.ports, [
            // u: 2500 packets, 160000 bytes in; 1250 packets, 142500 bytes out, over 2.5 s.
            .init(port: "u", rxPps: 1000, rxBitsPerSecond: 512_000, txPps: 500, txBitsPerSecond: 456_000),
            // a: nothing in; 10 packets, 1000 bytes out.
            .init(port: "a", rxPps: 0, rxBitsPerSecond: 0, txPps: 4, txBitsPerSecond: 3200),
        ])
        // 250 more not_our_mac, 3 bad_flags (a reason absent before counts from 0); unknown_vni did not move.
        XCTAssertEqual(r.drops, ["not_our_mac": 100, "bad_flags": 1.2])
    }

    func testTheClientsClockIsUsedWhenUptimesDoNotAdvance() {
        var same = later
        same.uptimeSeconds = earlier.uptimeSeconds
        let r = StatsRates.between(earlier, same, elapsed: 2.0)
        XCTAssertFalse(r.reset)
        XCTAssertEqual(r.seconds, 2.0)
        XCTAssertEqual(r.ports[0].rxPps, 1250)
        XCTAssertEqual(r.drops["not_our_mac"], 125)
    }

    func testCountersGoingBackMakeTheIntervalAReset() {
        // stats clear between the answers: the underlay's counters restarted from zero.
        let cleared = report(uptime: 12.5, underlay: ["rx_packets": 200, "rx_bytes": 12800, "tx_packets": 100, "tx_bytes": 11400],
                             access: ["rx_packets": 0], drops: ["not_our_mac": 20], clears: 1)
        let r = StatsRates.between(earlier, cleared, elapsed: 2.5)
        XCTAssertTrue(r.reset)
        XCTAssertEqual(r.ports, [])
        XCTAssertEqual(r.drops, [:])
        XCTAssertEqual(r.seconds, 2.5)

        // Without the clear count (an older vxland), the counters alone tell: one drop counter went back.
        var back = later
        back.statsClears = nil
        back.cores[0].drops["unknown_vni"] = 4
        back = StatsReport(uptimeSeconds: back.uptimeSeconds, cores: back.cores)
        var before = earlier
        before.statsClears = nil
        XCTAssertTrue(StatsRates.between(before, back, elapsed: 2.5).reset)

        // A clear the counters cannot show (every counter since the clear already above its old value) still is one.
        var moved = later
        moved.statsClears = 1
        XCTAssertTrue(StatsRates.between(earlier, moved, elapsed: 2.5).reset)

        // vxland restarted: uptime went back.
        var restarted = later
        restarted.uptimeSeconds = 1
        XCTAssertTrue(StatsRates.between(earlier, restarted, elapsed: 2.5).reset)
    }

    func testRenderedRates() {
        let r = StatsRates.between(earlier, later, elapsed: 2.5)
        XCTAssertEqual(Render.rates(r, timestamp: "12:00:00.000"), """
            12:00:00.000  over 2.50 s
            PORT  RX PPS  RX BIT/S  TX PPS  TX BIT/S
            u     1.00k   512k      500     456k
            a     0       0         4.0     3.20k
            drops/s: bad_flags 1.2, not_our_mac 100

            """)
        XCTAssertEqual(Render.rates(StatsRates(seconds: 1, reset: true, ports: [], drops: [:]), timestamp: "T"),
                       "T  reset: counters went back (stats clear, or vxland restarted); rates resume next interval\n")
        XCTAssertEqual([0, 0.5, 950, 12_345, 1_250_000, 40e9, 123.4e6].map(Render.siRate), ["0", "0.5", "950", "12.3k", "1.25M", "40.0G", "123M"])
    }

    func testCoreShareAndCyclesPerPacket() throws {
        let core = CoresReport.Core(lcore: 3, busyCycles: 750, idleCycles: 250, busyRounds: 3, idleRounds: 7, packets: 30)
        XCTAssertEqual(core.busyShare, 0.75)
        XCTAssertEqual(core.cyclesPerPacket, 25)
        XCTAssertEqual(core.rounds, 10)
        let idle = CoresReport.Core(lcore: 3, busyCycles: 0, idleCycles: 0, busyRounds: 0, idleRounds: 0, packets: 0)
        XCTAssertEqual(idle.busyShare, 0)
        XCTAssertNil(idle.cyclesPerPacket)
        let report = CoresReport(tscHz: 2_000_000_000, uptimeSeconds: 5, since: "start", cores: [core, idle])
        let json = String(decoding: try JSONEncoder.control.encode(report), as: UTF8.self)
        XCTAssertTrue(json.contains(#""busy_share":0.75,"cycles_per_packet":25,"idle_cycles":250"#), json)
        XCTAssertTrue(json.contains(#""tsc_hz":2000000000"#), json)
        XCTAssertEqual(try JSONDecoder.control.decode(CoresReport.self, from: Data(json.utf8)), report)
        let text = Render.cores(report)
        XCTAssertTrue(text.hasPrefix("TSC 2.000 GHz; since start; 2 polling core(s)\n"), text)
        XCTAssertTrue(text.contains("3      75.00%  25.0        30       10      7            0.0"), text)
    }
}
