import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// A tagged access port (VLAN 10 -> VNI 42, VLAN 20 -> VNI 43) and an untagged one in VNI 42.
final class VLANTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01", vm = "02:00:00:00:0a:01", vmB = "02:00:00:00:0b:01", far = "02:00:00:00:77:01"

    var h: PipelineHarness!
    var tables: ForwardingTables { h.tables }

    override func setUpWithError() throws {
        h = try PipelineHarness(accessPorts: 2, poolSize: 1023) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "\(Self.ourMAC)" }
            access:
              - { port: \(names[1]), vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ] }
              - { port: \(names[2]), vni: 42 }
            vnis: [ { vni: 42, flood: [10.99.0.2] }, { vni: 43, flood: [10.99.0.2] } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            """ }
        h.control!.poll(now: 0)
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    func run(underlay u: [[UInt8]] = [], trunk t: [[UInt8]] = [], plain p: [[UInt8]] = []) -> (u: [[UInt8]], t: [[UInt8]], p: [[UInt8]]) {
        let out = h.run([0: u, 1: t, 2: p], now: 0.1)
        return (out[0], out[1], out[2])
    }

    /// `frame` with an 802.1Q tag for `vlan` after the MACs.
    func tagged(_ frame: [UInt8], vlan: Int) -> [UInt8] { Array(frame[0..<12]) + [0x81, 0x00] + Frames.be16(vlan) + Array(frame[12...]) }
    func vni(_ packet: [UInt8]) -> Int { Int(packet[46]) << 16 | Int(packet[47]) << 8 | Int(packet[48]) }
    func drops(_ r: DropReason) -> UInt64 { h.drops(r) }

    func testEachVLANGoesToItsVNIWithTheTagRemoved() {
        let ten = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, sport: 10)
        let twenty = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, sport: 20)
        let out = run(trunk: [tagged(ten, vlan: 10), tagged(twenty, vlan: 20)])
        XCTAssertEqual(out.u.map(vni), [42, 43])
        XCTAssertEqual(out.u.map { Array($0[50...]) }, [ten, twenty], "inner frames travel untagged")
        XCTAssertEqual(out.p, [ten], "VLAN 10's broadcast also reaches the untagged port of VNI 42")
    }

    func testUnmappedAndMistaggedFramesAreDroppedAndCounted() {
        let f = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm)
        let out = run(trunk: [tagged(f, vlan: 30), f], plain: [tagged(f, vlan: 10)])
        XCTAssertEqual(out.u, []); XCTAssertEqual(out.t, []); XCTAssertEqual(out.p, [])
        XCTAssertEqual(drops(.vlanNotMapped), 3)
    }

    func testDecapsulatedFramesGetTheirVLANBack() {
        let reply = Frames.innerUDP(dst: Self.vm, src: Self.far)
        let out = run(underlay: [Frames.vxlanPacket(vni: 43, inner: reply)])
        XCTAssertEqual(out.t, [tagged(reply, vlan: 20)])
        XCTAssertEqual(out.p, [], "VNI 43 has no untagged port")
        let taggedInner = run(underlay: [Frames.vxlanPacket(vni: 42, inner: tagged(reply, vlan: 10))])
        XCTAssertEqual(taggedInner.t + taggedInner.p, [])
        XCTAssertEqual(drops(.innerVLAN), 1)
    }

    func testSwitchingBetweenAVLANAndAnUntaggedPortOfOneVNI() {
        _ = run(trunk: [tagged(Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm), vlan: 10)])   // learn vm on VLAN 10
        let unicast = Frames.innerUDP(dst: Self.vm, src: Self.vmB)
        let out = run(plain: [unicast])
        XCTAssertEqual(out.t, [tagged(unicast, vlan: 10)])
        XCTAssertEqual(out.u, [])
        XCTAssertEqual(tables.fdbEntries(vni: 42).first { $0.entry.mac == MACAddress(Self.vm)! }?.entry.target, .local(0))
    }
}
