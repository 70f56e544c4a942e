import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// Packet tracing (`vxlanctl trace`) on the pipeline: a trace is armed, known frames go through ring ports, and
/// each record's VNI, FDB result and outcome are checked against what the test says they must be.
final class PacketTraceTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01"
    static let vmMAC = "02:00:00:00:42:01"
    static let remoteVMMAC = "02:00:00:00:42:02"

    var h: PipelineHarness!
    var trace: PacketTraceControl!

    override func setUpWithError() throws {
        trace = PacketTraceControl()
        h = try PipelineHarness(accessPorts: 2, slowPath: false, trace: trace) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "\(Self.ourMAC)", mtu: 1500 }
            access: [ { port: \(names[1]), vni: 42 }, { port: \(names[2]), vni: 43 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2, 10.99.0.3] }, { vni: 43, flood: [] } ]
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
        trace = nil
    }

    static let remote2 = TraceAddress(isIPv6: false, v4: IPv4Address("10.99.0.2")!.value)

    func testEachRecordHasItsVNIFDBResultAndOutcome() throws {
        XCTAssertNotNil(trace.start(count: 8, port: nil, now: 0, timeout: 10))
        let known = Frames.innerUDP(dst: Self.remoteVMMAC, src: Self.vmMAC, size: 64)
        let broadcast = Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: Self.vmMAC, type: 0x0806, payload: [UInt8](repeating: 7, count: 46))
        let unknown = Frames.innerUDP(dst: "02:00:00:00:99:99", src: Self.vmMAC)
        let runt: [UInt8] = [UInt8](repeating: 0xff, count: 10)
        let bumNowhere = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: "02:00:00:00:43:01")    // VNI 43: empty flood list
        let toVM = Frames.vxlanPacket(vni: 42, inner: Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC))
        let unknownVNI = Frames.vxlanPacket(vni: 4242, inner: Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC))
        let out = h.run([0: [toVM, unknownVNI], 1: [known, broadcast, unknown, runt], 2: [bumNowhere]])
        XCTAssertEqual(out[0].count, 1 + 2 + 2, "one encapsulated, two floods of two copies")
        XCTAssertEqual(out[1].count, 1, "the decapsulated frame")

        XCTAssertEqual(trace.published(session: trace.active!.session), 7)
        let (finished, packets) = try XCTUnwrap(trace.finish())
        XCTAssertEqual(finished.requested, 8)
        // The core polls the underlay first, then the access ports in order: that is the order packets were taken.
        XCTAssertEqual(packets.map(\.index), Array(0..<7))
        XCTAssertEqual(packets.map { Int($0.record.port) }, [0, 0, 1, 1, 1, 1, 2])
        let r = packets.map(\.record)

        // VXLAN for VNI 42, whose one access port needs no lookup: decapsulated to it.
        XCTAssertEqual(r[0].direction, .underlay)
        XCTAssertEqual(r[0].vni, 42)
        XCTAssertEqual(r[0].lookup, .singlePort)
        XCTAssertEqual(r[0].action, .decapsulated)
        XCTAssertEqual(r[0].actionPort, 1)
        XCTAssertNil(r[0].drop)
        XCTAssertEqual(packets[0].bytes, Array(toVM.prefix(PacketTraceRecord.capturedBytes)), "the first bytes as received")
        XCTAssertEqual(Int(r[0].length), toVM.count)

        // A VNI nobody configured.
        XCTAssertEqual(r[1].vniSlot, -1, "not classified")
        XCTAssertEqual(r[1].lookup, .none)
        XCTAssertEqual(r[1].action, .dropped)
        XCTAssertEqual(r[1].drop, .unknownVNI)

        // Known unicast: the static entry's remote.
        XCTAssertEqual(r[2].direction, .access)
        XCTAssertEqual(r[2].vni, 42)
        XCTAssertEqual(r[2].endpointPort, 1)
        XCTAssertEqual(r[2].lookup, .hit)
        XCTAssertEqual(r[2].targetRemote, Self.remote2)
        XCTAssertEqual(r[2].action, .encapsulated)
        XCTAssertEqual(r[2].remote.address.description, "10.99.0.2")
        XCTAssertEqual(r[2].copies, 1)
        XCTAssertNil(r[2].drop)

        // Broadcast: flooded without a lookup to both remotes of the flood list (the VNI has no other local port).
        XCTAssertEqual(r[3].vni, 42)
        XCTAssertEqual(r[3].lookup, .broadcast)
        XCTAssertEqual(r[3].action, .flooded)
        XCTAssertEqual(r[3].copies, 2)

        // Unknown unicast: a miss, flooded.
        XCTAssertEqual(r[4].lookup, .miss)
        XCTAssertEqual(r[4].action, .flooded)
        XCTAssertEqual(r[4].copies, 2)

        // A runt never gets as far as a VNI.
        XCTAssertEqual(r[5].vniSlot, -1)
        XCTAssertEqual(r[5].lookup, .none)
        XCTAssertEqual(r[5].action, .dropped)
        XCTAssertEqual(r[5].drop, .runtFrame)
        XCTAssertEqual(Int(r[5].captured), 10)

        // BUM in a VNI with nowhere to go: classified, then dropped.
        XCTAssertEqual(r[6].vni, 43)
        XCTAssertEqual(r[6].endpointPort, 2)
        XCTAssertEqual(r[6].lookup, .broadcast)
        XCTAssertEqual(r[6].action, .dropped)
        XCTAssertEqual(r[6].drop, .noDestination)

        XCTAssertNil(trace.active, "finish ends the trace")
    }

    func testOnlyTheRequestedNumberAndPortAreTracedAndNothingOnceItIsOver() throws {
        let known = Frames.innerUDP(dst: Self.remoteVMMAC, src: Self.vmMAC, size: 64)
        let toVM = Frames.vxlanPacket(vni: 42, inner: Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteVMMAC))
        // Not armed: nothing recorded.
        _ = h.run([0: [toVM], 1: [known]])
        XCTAssertEqual(trace.published(session: 1), 0)

        // Three packets from port 1 only: the underlay's are not taken, the fourth access frame is not either.
        let session = try XCTUnwrap(trace.start(count: 3, port: 1, now: 0, timeout: 10)).session
        XCTAssertNil(trace.start(count: 1, port: nil, now: 0, timeout: 10), "one trace at a time")
        _ = h.run([0: [toVM, toVM], 1: [known, known, known, known]])
        XCTAssertEqual(trace.published(session: session), 3)
        _ = h.run([1: [known]])
        let (_, packets) = try XCTUnwrap(trace.finish())
        XCTAssertEqual(packets.count, 3)
        XCTAssertTrue(packets.allSatisfy { $0.record.port == 1 && $0.record.action == .encapsulated })
        XCTAssertEqual(h.pipeline(.encapsulated), 6, "tracing changes nothing about forwarding")
        XCTAssertEqual(h.pipeline(.decapsulated), 3)

        // A new session starts from an empty buffer; stopping early returns what was taken.
        let next = try XCTUnwrap(trace.start(count: 5, port: nil, now: 0, timeout: 10)).session
        XCTAssertNotEqual(next, session)
        _ = h.run([1: [known]])
        let (_, partial) = try XCTUnwrap(trace.finish())
        XCTAssertEqual(partial.map(\.index), [0])
        _ = h.run([1: [known]])
        XCTAssertEqual(trace.published(session: next), 1, "disarmed: nothing more is taken")
    }
}
