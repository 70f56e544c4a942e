import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// What the underlay can make the slow path create is bounded and given back: tunnels for learned remotes and
/// their neighbor entries are created only for entries that are admitted, and reclaimed (after an RCU grace
/// period) when nothing refers to them; ARP/ND requests are rate-limited.
final class UnderlayResourceTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01"

    var h: PipelineHarness!
    var tables: ForwardingTables { h.tables }
    var control: UnderlayControl { h.control! }

    func build(subnet: String = "10.99.0.1/24", vni: String = "", flood: String = "10.99.0.2", tunnels: Int = 64,
               neighbors: String = "[ { ip: 10.99.0.2, mac: \"02:00:00:00:00:02\" } ]", poolSize: Int = 2047) throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: poolSize) { names in """
            underlay: { port: \(names[0]), ip: \(subnet), mac: "\(Self.ourMAC)" }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [\(flood)]\(vni) } ]
            neighbors: \(neighbors)
            resources: { tunnels: \(tunnels) }
            """ }
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    func counter(_ c: UnderlayControl.Counter) -> UInt64 { control.counters[c.rawValue] }

    func fromRemote(_ ip: String, innerSource: String) -> [UInt8] {
        Frames.vxlanPacket(srcIP: ip, inner: Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: innerSource))
    }

    /// The target address of an ARP request, nil for anything else.
    func arpRequestTarget(_ f: [UInt8]) -> [UInt8]? {
        f.count >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 1 ? Array(f[38..<42]) : nil
    }

    static func randomUnicastMAC(_ rng: inout SeededGenerator) -> String {
        var bytes = (0..<6).map { _ in UInt8.random(in: 0...255, using: &rng) }
        bytes[0] = bytes[0] & 0xFC | 0x02                       // locally administered unicast
        return bytes.map { String(format: "%02x", $0) }.joined(separator: ":")
    }

    /// Thousands of spoofed on-subnet outer sources, each with random inner MACs, fill the tunnel table; once
    /// their entries age out (and a grace period passed) everything they made is gone and a legitimate remote
    /// is learned, resolved and reached.
    func testSpoofedRemotesAreReclaimedAfterTheyAgeOut() throws {
        var rng = SeededGenerator.forTest(name)
        try build(subnet: "10.99.0.1/16", vni: ", ageing: 10", tunnels: 64, poolSize: 4095)
        var now = 0.0
        var sources = 0
        while sources < 3000 {
            let batch = (0..<32).map { _ -> [UInt8] in
                let ip = "10.99.\(Int.random(in: 1...254, using: &rng)).\(Int.random(in: 1...254, using: &rng))"
                return fromRemote(ip, innerSource: Self.randomUnicastMAC(&rng))
            }
            sources += batch.count
            let out = h.run([0: batch], now: now)
            XCTAssertEqual(out[1].count, batch.count, "delivered")
            now += 0.002
        }
        XCTAssertEqual(tables.liveTunnelCount, 64, "the flood tunnel and 63 learned ones")
        XCTAssertGreaterThan(counter(.tunnelsFull), 0)
        XCTAssertLessThanOrEqual(control.neighbors(now: now).count, 64)
        XCTAssertEqual(counter(.injectFull), 0)

        // Nothing more from them: after the ageing time and a grace period, all of it is given back.
        while now < 14 {
            _ = h.run(now: now)
            now += 0.5
        }
        XCTAssertEqual(tables.learnedCount(vni: 42), 0)
        XCTAssertEqual(tables.liveTunnelCount, 1, "only the flood-list tunnel is left")
        XCTAssertEqual(control.neighbors(now: now).map(\.ip), [IPAddress("10.99.0.2")!], "no neighbor left for reclaimed tunnels")
        XCTAssertEqual(counter(.tunnelsReclaimed), 63)
        XCTAssertEqual(h.pool.available, h.pool.capacity, "mempool back to full")
        let quiet = h.run(now: now + 5)
        XCTAssertEqual(quiet[0].compactMap(arpRequestTarget), [], "reclaimed next hops are no longer probed")
        now += 5

        // A legitimate remote is learned, resolved and reached.
        let vm = "02:00:00:00:55:01"
        var out = h.run([0: [fromRemote("10.99.0.5", innerSource: vm)]], now: now)
        XCTAssertEqual(out[0].compactMap(arpRequestTarget), [[10, 99, 0, 5]], "its next hop is resolved")
        let reply = Frames.ethernet(dst: Self.ourMAC, src: "02:00:00:00:00:05", type: 0x0806,
                                    payload: Frames.be16(1) + Frames.be16(0x0800) + [6, 4] + Frames.be16(2) + Frames.mac("02:00:00:00:00:05")
                                        + Frames.ip("10.99.0.5") + Frames.mac(Self.ourMAC) + Frames.ip("10.99.0.1"))
        _ = h.run([0: [reply]], now: now + 0.1)
        out = h.run([1: [Frames.innerUDP(dst: vm, src: "02:00:00:00:0a:01")]], now: now + 0.2)
        XCTAssertEqual(out[0].count, 1)
        XCTAssertEqual(out[0].first.map { Array($0[0..<6]) }, Frames.mac("02:00:00:00:00:05"))
        XCTAssertEqual(out[0].first.map { Array($0[30..<34]) }, [10, 99, 0, 5])
        XCTAssertEqual(tables.liveTunnelCount, 2)
    }

    /// A learn event refused by `max_learned` creates neither a tunnel nor a neighbor entry.
    func testARefusedLearnEventCreatesNoTunnel() throws {
        try build(vni: ", max_learned: 2")
        let frames = (1...5).map { fromRemote("10.99.0.\(10 + $0)", innerSource: "02:00:00:00:66:0\($0)") }
        _ = h.run([0: frames], now: 0)
        XCTAssertEqual(tables.learnedCount(vni: 42), 2)
        XCTAssertEqual(counter(.learnLimitReached), 3)
        XCTAssertEqual(tables.liveTunnelCount, 3, "the flood tunnel and the two admitted remotes'")
        XCTAssertEqual(control.neighbors(now: 0).map(\.ip), ["10.99.0.2", "10.99.0.11", "10.99.0.12"].map { IPAddress($0)! })
    }

    /// A tunnel nothing refers to any more keeps its index until every core passed a quiescent state: until
    /// then the index is not reused (a new remote waits), afterwards the tunnel and its neighbor are gone.
    func testATunnelIsReclaimedOnlyAfterAGracePeriod() throws {
        try build(vni: ", ageing: 10", tunnels: 16)
        let remotes = (1...15).map { "10.99.0.\(20 + $0)" }
        _ = h.run([0: remotes.enumerated().map { fromRemote($1, innerSource: "02:00:00:00:66:\(String(format: "%02x", $0))") }], now: 0)
        XCTAssertEqual(tables.liveTunnelCount, 16)
        _ = h.run([0: [fromRemote("10.99.0.99", innerSource: "02:00:00:00:67:01")]], now: 0.5)
        XCTAssertEqual(counter(.tunnelsFull), 1, "the table is full")
        XCTAssertNil(control.neighbors(now: 0.5).first { $0.ip == IPAddress("10.99.0.99")! })

        // The slow path alone (no core round in between) ages the entries out: the tunnels wait.
        control.poll(now: 11)
        XCTAssertEqual(tables.learnedCount(vni: 42), 0)
        control.poll(now: 11.5)
        XCTAssertEqual(tables.liveTunnelCount, 16, "a core may still hold their indices")
        // A quiescent state from the core, then the slow path: reclaimed, neighbors gone.
        h.core.pollOnce()
        control.poll(now: 11.6)
        XCTAssertEqual(tables.liveTunnelCount, 1)
        XCTAssertEqual(control.neighbors(now: 11.6).count, 1)
        _ = h.run(now: 11.7)
        _ = h.run([0: [fromRemote("10.99.0.99", innerSource: "02:00:00:00:67:01")]], now: 12)
        XCTAssertEqual(tables.liveTunnelCount, 2, "indices are reused")
    }

    /// Next-hop requests never exceed the token bucket, whatever is due; the postponed ones go out later and
    /// our own requests never overflow the inject ring.
    func testSolicitationsAreRateLimited() throws {
        // 1500 remotes on the subnet, none resolved: all of them are due at once.
        let remotes = (0..<1500).map { "10.99.\(1 + $0 / 250).\(1 + $0 % 250)" }
        try build(subnet: "10.99.0.1/16", flood: remotes.joined(separator: ", "), tunnels: 2048, neighbors: "[]")
        var samples: [(now: Double, requests: [[UInt8]])] = []
        var now = 0.0
        while now < 2.0 {
            samples.append((now, h.run(now: now)[0].compactMap(arpRequestTarget)))
            now += 0.005
        }
        let rate = UnderlayControl.solicitationRate, burst = UnderlayControl.solicitationBurst
        var worst = -Double.infinity
        for i in samples.indices {
            var sent = 0
            for j in i..<samples.count {
                sent += samples[j].requests.count
                worst = max(worst, Double(sent) - (burst + rate * (samples[j].now - samples[i].now)))
            }
        }
        XCTAssertLessThanOrEqual(worst, 1e-6, "requests over any window exceed the bucket by \(worst)")
        let all = samples.flatMap(\.requests)
        XCTAssertGreaterThan(all.count, 100, "the bucket refills")
        XCTAssertEqual(Set(all).count, all.count, "postponed requests go first, before anyone is asked twice")
        XCTAssertGreaterThan(counter(.solicitationsRateLimited), 0)
        XCTAssertEqual(counter(.injectFull), 0)
    }
}

extension UnderlayResourceTests {
    /// A MAC seen behind another remote whose move is refused (no tunnel left) is not refreshed where it was: it
    /// ages out there instead of living on at its old place.
    func testARefusedMoveDoesNotKeepTheEntryAlive() throws {
        try build(vni: ", ageing: 10", tunnels: 16)
        let mac = MACAddress("02:00:00:00:42:77")!
        // The flood tunnel and 15 learned ones: the table is full.
        XCTAssertEqual(tables.learn(vni: 42, mac: mac, remote: IPAddress("10.99.0.3")!, resolve: { _ in nil }), .added)
        for i in 4..<18 {
            XCTAssertEqual(tables.learn(vni: 42, mac: MACAddress("02:00:00:00:43:\(String(format: "%02x", i))")!,
                                        remote: IPAddress("10.99.0.\(i)")!, resolve: { _ in nil }), .added)
        }
        tables.clock.pointee = 5
        XCTAssertEqual(tables.learn(vni: 42, mac: mac, remote: IPAddress("10.99.0.100")!, resolve: { _ in nil }), .tunnelsFull)
        tables.clock.pointee = 10
        tables.age()
        XCTAssertNil(tables.fdbEntries().first { $0.entry.mac == mac },
                     "last seen at 0 where it is; the refused sighting at 5 must not keep it")
    }
}
