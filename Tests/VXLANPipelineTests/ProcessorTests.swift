import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// The pipeline on real DPDK ports (net_ring): frames in through RX rings, bytes out of TX rings, every counter
/// checked, and the mempool back to full after every test.
final class ProcessorTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01"
    static let vmMAC = "02:00:00:00:42:01"
    static let remoteVMMAC = "02:00:00:00:42:02"

    var h: PipelineHarness!
    var tables: ForwardingTables { h.tables }
    var pool: PacketPool { h.pool }
    var underlay: RingPort { h.rings[0] }
    var access: RingPort { h.rings[1] }

    func setUpPipeline(mtu: Int = 1500, flood: [String] = ["10.99.0.2"], underlayTxSize: UInt32 = 1024, strict: Bool = false) throws {
        h = try PipelineHarness(accessPorts: 1, slowPath: false, underlayTxSize: underlayTxSize) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "\(Self.ourMAC)", mtu: \(mtu), ttl: 64, strict: \(strict) }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [\(flood.joined(separator: ", "))] }, { vni: 7, flood: [] } ]
            fdb: [ { vni: 42, mac: "\(Self.remoteVMMAC)", remote: 10.99.0.2 } ]
            neighbors:
              - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
              - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
            """ }
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    /// Injects frames on one side, runs one poll round, returns what each side transmitted.
    func run(access frames: [[UInt8]] = [], underlay uframes: [[UInt8]] = []) -> (underlay: [[UInt8]], access: [[UInt8]]) {
        let out = h.run([0: uframes, 1: frames])
        return (out[0], out[1])
    }

    func pipeline(_ c: PipelineCounter) -> UInt64 { h.pipeline(c) }
    func drops(_ r: DropReason) -> UInt64 { h.drops(r) }
    func port(_ index: Int, _ c: PortCounter) -> UInt64 { h.port(index, c) }
    var totalDrops: UInt64 { h.totalDrops }

    /// Checks an encapsulated frame byte for byte against one built independently, the UDP source port included
    /// (computed from the inner frame by the reference flow hash, not read back from the output); returns the
    /// source port the output carries.
    @discardableResult
    func assertEncapsulated(_ out: [UInt8], inner: [UInt8], remoteMAC: String = "02:00:00:00:00:02", remoteIP: String = "10.99.0.2",
                            vni: Int = 42, file: StaticString = #filePath, line: UInt = #line) -> Int {
        XCTAssertEqual(out.count, inner.count + 50, file: file, line: line)
        guard out.count == inner.count + 50 else { return 0 }
        let sport = ReferenceFlowHash.sourcePort(inner)
        let expected = Frames.ethernet(dst: remoteMAC, src: Self.ourMAC, type: 0x0800,
                                       payload: Frames.ipv4(src: "10.99.0.1", dst: remoteIP, proto: 17,
                                                            payload: Frames.udp(sport: sport, dport: 4789, payload: Frames.vxlan(vni: vni, inner: inner))))
        XCTAssertEqual(out, expected, file: file, line: line)
        return Int(out[34]) << 8 | Int(out[35])
    }

    func testKnownUnicastIsEncapsulatedToItsRemote() throws {
        try setUpPipeline()
        let inner = Frames.innerUDP(dst: Self.remoteVMMAC, src: Self.vmMAC, size: 64)
        let out = run(access: [inner, inner])
        XCTAssertEqual(out.underlay.count, 2)
        XCTAssertTrue(out.access.isEmpty)
        let p1 = assertEncapsulated(out.underlay[0], inner: inner)
        let p2 = assertEncapsulated(out.underlay[1], inner: inner)
        XCTAssertEqual(p1, p2, "one flow, one source port")
        XCTAssertEqual(pipeline(.encapsulated), 2)
        XCTAssertEqual(pipeline(.floodCopies), 0)
        XCTAssertEqual(pipeline(.unknownUnicast), 0)
        XCTAssertEqual(port(1, .rxPackets), 2)
        XCTAssertEqual(port(1, .rxBytes), 128)
        XCTAssertEqual(port(0, .txPackets), 2)
        XCTAssertEqual(port(0, .txBytes), 2 * 114)
        XCTAssertEqual(totalDrops, 0)
    }

    func testBroadcastIsReplicatedToEveryRemoteInTheFloodList() throws {
        try setUpPipeline(flood: ["10.99.0.2", "10.99.0.3"])
        let arp = Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: Self.vmMAC, type: 0x0806, payload: [UInt8](repeating: 7, count: 46))
        let out = run(access: [arp])
        XCTAssertEqual(out.underlay.count, 2)
        assertEncapsulated(out.underlay[0], inner: arp, remoteMAC: "02:00:00:00:00:02", remoteIP: "10.99.0.2")
        assertEncapsulated(out.underlay[1], inner: arp, remoteMAC: "02:00:00:00:00:03", remoteIP: "10.99.0.3")
        XCTAssertEqual(pipeline(.encapsulated), 2)
        XCTAssertEqual(pipeline(.floodCopies), 2)
        XCTAssertEqual(pipeline(.unknownUnicast), 0)
        XCTAssertEqual(pipeline(.flooded), 1)
    }

    func testUnknownUnicastIsFlooded() throws {
        try setUpPipeline(flood: ["10.99.0.2", "10.99.0.3"])
        let inner = Frames.innerUDP(dst: "02:00:00:00:99:99", src: Self.vmMAC)
        let out = run(access: [inner])
        XCTAssertEqual(out.underlay.count, 2)
        XCTAssertEqual(pipeline(.unknownUnicast), 1)
        XCTAssertEqual(pipeline(.floodCopies), 2)
    }

    func testBUMWithEmptyFloodListIsDroppedAndCounted() throws {
        try setUpPipeline(flood: [])
        let out = run(access: [Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vmMAC)])
        XCTAssertTrue(out.underlay.isEmpty)
        XCTAssertEqual(drops(.noDestination), 1)
    }

    func testFramesOverTheUnderlayMTUAreDroppedAndCounted() throws {
        try setUpPipeline(mtu: 1500)
        let fits = Frames.innerUDP(dst: Self.remoteVMMAC, src: Self.vmMAC, size: 1464)     // 1464 + 36 = 1500
        let tooBig = Frames.innerUDP(dst: Self.remoteVMMAC, src: Self.vmMAC, size: 1465)
        let out = run(access: [fits, tooBig])
        XCTAssertEqual(out.underlay.count, 1)
        assertEncapsulated(out.underlay[0], inner: fits)
        XCTAssertEqual(drops(.overMTU), 1)
        XCTAssertEqual(totalDrops, 1)
    }

    func testRuntFramesFromAccessAreDropped() throws {
        try setUpPipeline()
        let out = run(access: [[UInt8](repeating: 0xff, count: 10)])
        XCTAssertTrue(out.underlay.isEmpty)
        XCTAssertEqual(drops(.runtFrame), 1)
    }

    func testVXLANIsDecapsulatedToTheAccessPort() throws {
        try setUpPipeline()
        let inner = Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC, size: 100)
        let packet = Frames.vxlanPacket(inner: inner)
        let out = run(underlay: [packet])
        XCTAssertEqual(out.access, [inner])
        XCTAssertTrue(out.underlay.isEmpty)
        XCTAssertEqual(pipeline(.decapsulated), 1)
        XCTAssertEqual(port(0, .rxPackets), 1)
        XCTAssertEqual(port(0, .rxBytes), UInt64(packet.count))
        XCTAssertEqual(port(1, .txPackets), 1)
        XCTAssertEqual(port(1, .txBytes), 100)
        XCTAssertEqual(totalDrops, 0)
    }

    func testEthernetPaddingAfterAShortPacketIsTrimmed() throws {
        try setUpPipeline()
        // 14-byte inner frame: the outer frame is 64 bytes, padded on the wire to 70 here.
        let inner = Frames.ethernet(dst: Self.vmMAC, src: Self.remoteVMMAC, type: 0x88B5, payload: [])
        let out = run(underlay: [Frames.vxlanPacket(inner: inner) + [0, 0, 0, 0, 0, 0]])
        XCTAssertEqual(out.access, [inner])
    }

    func testReservedFlagBitsAreIgnoredOnReceive() throws {
        try setUpPipeline()
        let inner = Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC)
        let out = run(underlay: [Frames.vxlanPacket(flags: 0x08 | 0x80, inner: inner)])
        XCTAssertEqual(out.access, [inner], "RFC 7348: reserved bits are ignored by the receiver")
    }

    func testStrictModeDropsReservedBits() throws {
        try setUpPipeline(strict: true)
        let inner = Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC)
        var reservedVNIByte = Frames.vxlanPacket(inner: inner)
        reservedVNIByte[49] = 1                                  // VXLAN byte 7
        let out = run(underlay: [Frames.vxlanPacket(flags: 0x0C, inner: inner), reservedVNIByte, Frames.vxlanPacket(inner: inner)])
        XCTAssertEqual(out.access, [inner])
        XCTAssertEqual(drops(.reservedBits), 2)
    }

    /// Each malformed or foreign underlay frame is dropped under its own reason and disturbs nothing else.
    func testEveryMalformedInputIsCountedUnderItsOwnReason() throws {
        try setUpPipeline()
        let inner = Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC)
        let good = Frames.vxlanPacket(inner: inner)
        let cases: [(DropReason, [UInt8])] = [
            (.badFlags, Frames.vxlanPacket(flags: 0x00, inner: inner)),
            (.unknownVNI, Frames.vxlanPacket(vni: 4242, inner: inner)),
            (.wrongDestination, Frames.vxlanPacket(dstIP: "10.99.0.9", inner: inner)),
            (.wrongUDPPort, Frames.vxlanPacket(dport: 4790, inner: inner)),
            (.notUDP, Frames.vxlanPacket(inner: inner, proto: 6)),
            (.ipFragment, Frames.vxlanPacket(inner: inner, flagsFragment: 0x2000)),
            (.ipFragment, Frames.vxlanPacket(inner: inner, flagsFragment: 0x0010)),
            (.badIPChecksum, Frames.vxlanPacket(inner: inner, corruptChecksum: true)),
            (.truncated, Array(good.prefix(60))),
            (.truncated, Array(good.prefix(10))),
            (.innerTooShort, Frames.vxlanPacket(inner: Array(inner.prefix(13)))),
            (.notIP, Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: "02:00:00:00:00:02", type: 0x0806, payload: [UInt8](repeating: 0, count: 28))),
            (.notOurMAC, Frames.vxlanPacket(outerDst: "02:00:00:00:00:77", inner: inner)),
            (.badIPHeader, { var p = good; p[14] = 0x65; return p }()),
        ]
        let out = run(underlay: cases.map(\.1) + [good])
        XCTAssertEqual(out.access, [inner], "only the good packet gets through")
        var expected: [DropReason: UInt64] = [:]
        for (reason, _) in cases { expected[reason, default: 0] += 1 }
        for reason in DropReason.allCases {
            XCTAssertEqual(drops(reason), expected[reason] ?? 0, "drop counter \(reason.name)")
        }
        XCTAssertEqual(pipeline(.decapsulated), 1)
        XCTAssertEqual(port(0, .rxPackets), UInt64(cases.count + 1))
    }

    func testWhatTheTXQueueRefusesIsFreedAndCounted() throws {
        try setUpPipeline(underlayTxSize: 8)            // a ring of 8 holds 7
        let inner = Frames.innerUDP(dst: Self.remoteVMMAC, src: Self.vmMAC)
        let out = run(access: Array(repeating: inner, count: 20))
        XCTAssertEqual(out.underlay.count, 7)
        XCTAssertEqual(port(0, .txPackets), 7)
        XCTAssertEqual(port(0, .txDropped), 13)
        XCTAssertEqual(pipeline(.encapsulated), 20)
    }

    /// The per-core exact-match cache follows the table: after a learned entry moves (which bumps the
    /// generation), the next packet uses the new target; the VNI cache likewise.
    func testCachesAreFlushedWhenTheTableGenerationChanges() throws {
        try setUpPipeline(flood: ["10.99.0.2", "10.99.0.3"])
        let mover = MACAddress("02:00:00:00:42:77")!
        let inner = Frames.innerUDP(dst: mover.description, src: Self.vmMAC)
        let toFirst = try XCTUnwrap(tables.tunnels.firstIndex { $0.remote == IPAddress("10.99.0.2")! })
        let toSecond = try XCTUnwrap(tables.tunnels.firstIndex { $0.remote == IPAddress("10.99.0.3")! })
        XCTAssertEqual(tables.learn(vni: 42, mac: mover, target: .tunnel(toFirst)), .added)
        XCTAssertEqual(run(access: [inner, inner]).underlay.map { Array($0[30..<34]) }, [[10, 99, 0, 2], [10, 99, 0, 2]])
        XCTAssertEqual(tables.learn(vni: 42, mac: mover, target: .tunnel(toSecond)), .moved)
        XCTAssertEqual(run(access: [inner]).underlay.map { Array($0[30..<34]) }, [[10, 99, 0, 3]])
        XCTAssertEqual(tables.lookupFDB(vni: 42, mac: mover), toSecond)
        XCTAssertEqual(tables.learn(vni: 42, mac: MACAddress(Self.remoteVMMAC)!, target: .tunnel(toSecond)), .staticEntry,
                       "static entries never move")

        // VNI cache: a cached VNI removed from the table stops being accepted once the generation moves.
        let reply = Frames.vxlanPacket(inner: Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC))
        XCTAssertEqual(run(underlay: [reply]).access.count, 1)
        let key = UnsafeMutableRawPointer.allocate(byteCount: ForwardingTables.keyLength, alignment: 16)
        defer { key.deallocate() }
        ForwardingTables.writeVNIKey(key, vni: 42)
        XCTAssertGreaterThanOrEqual(rte_hash_del_key(tables.vniHash, key), 0)
        tables.bumpGeneration()
        XCTAssertEqual(run(underlay: [reply]).access.count, 0)
        XCTAssertEqual(drops(.unknownVNI), 1)
    }

    /// Thousands of mutated and random frames on both sides: nothing crashes, every frame is accounted for
    /// (forwarded or dropped under a reason), and every buffer comes back.
    func testMutatedAndRandomFramesAreAllAccountedFor() throws {
        try setUpPipeline()
        var generator = SeededGenerator.forTest("testMutatedAndRandomFramesAreAllAccountedFor")
        let good = Frames.vxlanPacket(inner: Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC))
        var underlayFrames: [[UInt8]] = []
        for trial in 0..<3000 {
            var f = good
            if trial % 3 == 0 {
                f = (0..<Int.random(in: 1...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            } else {
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    f[Int.random(in: 0..<f.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
                if trial % 5 == 0 { f = Array(f.prefix(Int.random(in: 1...f.count, using: &generator))) }
            }
            underlayFrames.append(f)
        }
        let accessFrames = (0..<1000).map { _ in
            (0..<Int.random(in: 1...1600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        }
        var forwarded = 0
        // One poll round takes one burst (32) per port.
        for chunk in stride(from: 0, to: underlayFrames.count, by: 32) {
            forwarded += run(underlay: Array(underlayFrames[chunk..<min(chunk + 32, underlayFrames.count)])).access.count
        }
        // Every underlay frame: decapsulated or dropped under some reason (no slow path here, so none is punted).
        let underlayDrops = totalDrops
        XCTAssertEqual(port(0, .rxPackets), 3000)
        XCTAssertEqual(UInt64(forwarded), pipeline(.decapsulated), "one access port: each decapsulated frame sent once")
        XCTAssertEqual(pipeline(.decapsulated) + underlayDrops, 3000,
                       "\(DropReason.allCases.filter { drops($0) > 0 }.map { "\($0.name)=\(drops($0))" })")
        for chunk in stride(from: 0, to: accessFrames.count, by: 32) {
            _ = run(access: Array(accessFrames[chunk..<min(chunk + 32, accessFrames.count)]))
        }
        // Every access frame: encapsulated once (a flood counts once) or dropped under some reason.
        XCTAssertEqual(port(1, .rxPackets), 1000)
        let encapsulatedFrames = pipeline(.encapsulated) - pipeline(.floodCopies) + pipeline(.flooded)
        XCTAssertEqual(encapsulatedFrames + (totalDrops - underlayDrops), 1000)
    }

    func testBurstsLargerThanThePollBurstAreHandled() throws {
        try setUpPipeline()
        let inner = Frames.innerUDP(dst: Self.remoteVMMAC, src: Self.vmMAC)
        access.inject((0..<100).map { _ in Mbuf.make(inner, pool: pool) })
        var sent: [[UInt8]] = []
        for _ in 0..<5 { h.core.pollOnce(); sent += underlay.drain() }
        XCTAssertEqual(sent.count, 100)
        XCTAssertEqual(pipeline(.encapsulated), 100)
    }
}
