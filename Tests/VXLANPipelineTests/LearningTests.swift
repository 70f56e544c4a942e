import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// FDB learning on net_ring ports, with the slow path driven by hand: remote and local learning, local
/// switching, flooding with split horizon, MAC moves, ageing and the per-VNI limit.
final class LearningTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01"
    static let vmA = "02:00:00:00:0a:01", vmB = "02:00:00:00:0b:01", remoteVM = "02:00:00:00:77:01"

    var h: PipelineHarness!
    var tables: ForwardingTables { h.tables }
    var control: UnderlayControl { h.control! }
    var clock = 0.0

    func build(vni: String = "ageing: 30", flood: String = "10.99.0.2") throws {
        h = try PipelineHarness(accessPorts: 2) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "\(Self.ourMAC)" }
            access: [ { port: \(names[1]), vni: 42 }, { port: \(names[2]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [\(flood)], \(vni) } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: 10.99.0.5, mac: "02:00:00:00:00:05" } ]
            """ }
        control.poll(now: clock)
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    struct Out { var underlay: [[UInt8]]; var a: [[UInt8]]; var b: [[UInt8]] }

    /// Frames in, a poll round, the slow path (learning) `after` seconds later, another round; what went out.
    @discardableResult
    func run(underlay u: [[UInt8]] = [], a: [[UInt8]] = [], b: [[UInt8]] = [], after: Double = 0.01) -> Out {
        clock += after
        let out = h.run([0: u, 1: a, 2: b], now: clock)
        return Out(underlay: out[0], a: out[1], b: out[2])
    }

    func frame(from src: String, to dst: String, size: Int = 64) -> [UInt8] { Frames.innerUDP(dst: dst, src: src, size: size) }
    func fromRemote(_ inner: [UInt8], vtep: String = "10.99.0.5") -> [UInt8] {
        Frames.vxlanPacket(outerSrc: "02:00:00:00:00:05", srcIP: vtep, inner: inner)
    }
    func entry(_ mac: String) -> ForwardingTables.FDBEntry? { tables.fdbEntries(vni: 42).first { $0.entry.mac == MACAddress(mac)! }?.entry }
    func pipeline(_ c: PipelineCounter) -> UInt64 { h.pipeline(c) }
    func slow(_ c: UnderlayControl.Counter) -> UInt64 { control.counters[c.rawValue] }

    func testRemoteMACsAreLearnedBehindTheOuterSourceAndUsed() throws {
        try build()
        let hello = frame(from: Self.remoteVM, to: "ff:ff:ff:ff:ff:ff")
        let out = run(underlay: [fromRemote(hello)])
        XCTAssertEqual(out.a, [hello]); XCTAssertEqual(out.b, [hello])
        XCTAssertTrue(out.underlay.isEmpty, "split horizon: nothing decapsulated goes back into the underlay")
        let learned = try XCTUnwrap(entry(Self.remoteVM))
        guard case .tunnel(let t) = learned.target else { return XCTFail("\(learned)") }
        XCTAssertEqual(tables.tunnels[t].remote, IPAddress("10.99.0.5"))
        XCTAssertFalse(learned.isStatic)
        XCTAssertEqual(slow(.learned), 1)
        // Now known: unicast to it is tunnelled to 10.99.0.5, not flooded to the configured 10.99.0.2.
        let reply = frame(from: Self.vmA, to: Self.remoteVM)
        let sent = run(a: [reply]).underlay
        XCTAssertEqual(sent.count, 1)
        XCTAssertEqual(Array(sent[0][30..<34]), [10, 99, 0, 5])
        XCTAssertEqual(Array(sent[0][0..<6]), Frames.mac("02:00:00:00:00:05"))
        XCTAssertEqual(pipeline(.unknownUnicast), 0)
    }

    func testLocalMACsAreLearnedAndSwitchedLocally() throws {
        try build()
        // A's source is learned behind port 1; its broadcast reaches B and the remote, not A.
        let broadcast = frame(from: Self.vmA, to: "ff:ff:ff:ff:ff:ff")
        var out = run(a: [broadcast])
        XCTAssertEqual(out.b, [broadcast]); XCTAssertEqual(out.a, []); XCTAssertEqual(out.underlay.count, 1)
        XCTAssertEqual(entry(Self.vmA)?.target, .local(0))
        XCTAssertEqual(pipeline(.localFloodCopies), 1)
        // B to A: switched between the access ports, never tunnelled.
        let unicast = frame(from: Self.vmB, to: Self.vmA)
        out = run(b: [unicast])
        XCTAssertEqual(out.a, [unicast]); XCTAssertEqual(out.b, []); XCTAssertEqual(out.underlay, [])
        XCTAssertEqual(pipeline(.switchedLocally), 1)
        XCTAssertEqual(entry(Self.vmB)?.target, .local(1))
        // From the tunnel to A: delivered to A's port only.
        let fromFar = frame(from: Self.remoteVM, to: Self.vmA)
        out = run(underlay: [fromRemote(fromFar)])
        XCTAssertEqual(out.a, [fromFar]); XCTAssertEqual(out.b, [])
        // A frame for A arriving on A's own port is dropped and counted.
        out = run(a: [frame(from: Self.vmB, to: Self.vmA)])
        XCTAssertEqual(out.a, []); XCTAssertEqual(out.b, []); XCTAssertEqual(out.underlay, [])
        XCTAssertEqual(h.drops(.samePort), 1)
    }

    func testAMACThatMovesFollows() throws {
        try build()
        run(a: [frame(from: Self.vmA, to: "ff:ff:ff:ff:ff:ff")])
        XCTAssertEqual(entry(Self.vmA)?.target, .local(0))
        run(underlay: [fromRemote(frame(from: Self.vmA, to: "ff:ff:ff:ff:ff:ff"))])      // now behind 10.99.0.5
        guard case .tunnel(let t)? = entry(Self.vmA)?.target else { return XCTFail("not moved") }
        XCTAssertEqual(tables.tunnels[t].remote, IPAddress("10.99.0.5"))
        XCTAssertEqual(slow(.moved), 1)
        let out = run(b: [frame(from: Self.vmB, to: Self.vmA)])
        XCTAssertEqual(out.a, [], "no longer local")
        XCTAssertEqual(out.underlay.count, 1)
        XCTAssertEqual(Array(out.underlay[0][30..<34]), [10, 99, 0, 5])
    }

    func testLearnedEntriesAgeOutUnlessSeen() throws {
        try build(vni: "ageing: 30")
        run(a: [frame(from: Self.vmA, to: "ff:ff:ff:ff:ff:ff"), frame(from: Self.vmB, to: "ff:ff:ff:ff:ff:ff")])
        XCTAssertNotNil(entry(Self.vmA)); XCTAssertNotNil(entry(Self.vmB))
        // A keeps talking every 10 s; B falls silent.
        for _ in 0..<4 { run(a: [frame(from: Self.vmA, to: "ff:ff:ff:ff:ff:ff")], after: 10) }
        XCTAssertNotNil(entry(Self.vmA), "refreshed by traffic")
        XCTAssertNil(entry(Self.vmB), "aged out after 30 s unseen")
        XCTAssertEqual(slow(.aged), 1)
        // Static entries never age; unknown again, B's frames flood.
        XCTAssertEqual(run(a: [frame(from: Self.vmA, to: Self.vmB)]).b.count, 1)
    }

    func testThePerVNILimitRefusesAndCounts() throws {
        try build(vni: "max_learned: 2")
        run(a: [frame(from: "02:00:00:00:0a:01", to: "ff:ff:ff:ff:ff:ff"), frame(from: "02:00:00:00:0a:02", to: "ff:ff:ff:ff:ff:ff"),
                frame(from: "02:00:00:00:0a:03", to: "ff:ff:ff:ff:ff:ff")])
        XCTAssertEqual(tables.learnedCount(vni: 42), 2)
        XCTAssertEqual(slow(.learnLimitReached), 1)
        XCTAssertEqual(control.learnLimitHits(), [42: 1])
        XCTAssertNil(entry("02:00:00:00:0a:03"))
    }

    func testLearningCanBeSwitchedOff() throws {
        try build(vni: "learning: false")
        run(a: [frame(from: Self.vmA, to: "ff:ff:ff:ff:ff:ff")])
        run(underlay: [fromRemote(frame(from: Self.remoteVM, to: "ff:ff:ff:ff:ff:ff"))])
        XCTAssertTrue(tables.fdbEntries(vni: 42).isEmpty)
        XCTAssertEqual(pipeline(.learnEvents), 0)
    }

    /// A known source is reported once, not on every packet.
    func testASourceIsReportedOnce() throws {
        try build()
        let f = frame(from: Self.vmA, to: "ff:ff:ff:ff:ff:ff")
        run(a: Array(repeating: f, count: 20))
        run(a: Array(repeating: f, count: 20))
        XCTAssertEqual(pipeline(.learnEvents), 1)
        XCTAssertEqual(slow(.learned), 1)
    }
}
