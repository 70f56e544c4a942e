import CDPDK
import ControlProtocol
import DPDKTestSupport
import Foundation
import PollMode
import Synchronization
import VTEPConfig
import XCTest
@testable import VXLANDaemon

/// A VNI added while the cores forward counts, in `show vnis`, every packet decapsulated for it from the moment it
/// is reachable: none is left out between the VNI's publication and its counters' baseline, in any of 20 rounds
/// of adding and removing it under traffic (its slot reused, with the counts of the VNI that had it before).
final class VNICounterTests: XCTestCase {
    func testAVNIAddedUnderTrafficCountsEveryPacketFromItsFirst() throws {
        try TestEAL.start()
        let u = try RingPort(txSize: 4096), a = try RingPort(txSize: 4096)
        defer { u.destroy(); a.destroy() }
        let configuration = try ConfigParser.parse("""
            underlay: { port: \(u.name), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access: [ { port: \(a.name), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            """)
        let dataplane = try Dataplane(configuration: configuration, lcores: [EAL.mainLcore])
        try dataplane.startPorts()
        defer { dataplane.stop() }
        let stop = Atomic<Bool>(false)
        let box = UncheckedBox(dataplane)
        let core = TestThread(name: "core") { while !stop.load(ordering: .relaxed) { _ = box.value.pollOnce() } }
        defer { stop.store(true, ordering: .relaxed); XCTAssertTrue(core.join()) }

        let frame = Frames.vxlanPacket(srcIP: "10.99.0.2", vni: 50, inner: Frames.innerUDP(dst: "02:00:00:00:50:01", src: "02:00:00:00:50:02"))
        let received = { dataplane.statsReport().totals.ports[0].counters["rx_packets"] ?? 0 }
        let unknown = { dataplane.statsReport().totals.drops["unknown_vni"] ?? 0 }
        var short: [String] = []
        for round in 0..<20 {
            let rx0 = received(), unknown0 = unknown()
            // Frames for VNI 50 arrive before, while and after it is added (fed by a thread of their own).
            let feeding = Atomic<Bool>(true), fed = Atomic<Int>(0)
            let feeder = TestThread(name: "feeder") {
                while feeding.load(ordering: .relaxed) || fed.load(ordering: .relaxed) < 64 {
                    let batch = (0..<32).map { _ in Mbuf.make(frame, pool: box.value.pool) }
                    let taken = u.tryInject(batch)
                    for m in batch[taken...] { vx_mbuf_free(m) }
                    fed.add(taken, ordering: .relaxed)
                }
            }
            XCTAssertTrue(waitUntil(seconds: 10) { fed.load(ordering: .relaxed) >= 64 })
            try dataplane.apply([.addVNI(.init(vni: 50, flood: []))], origin: "test")
            let atAdd = fed.load(ordering: .relaxed)
            XCTAssertTrue(waitUntil(seconds: 10) { fed.load(ordering: .relaxed) >= atAdd + 64 })
            feeding.store(false, ordering: .relaxed)
            XCTAssertTrue(feeder.join())
            let n = fed.load(ordering: .relaxed)
            XCTAssertTrue(waitUntil(seconds: 30) { received() - rx0 == UInt64(n) }, "round \(round): the core did not take every frame")
            // Received is counted at the RX burst, the VNI's packets as the burst is processed: wait for the last
            // burst to be done (a packet left out never comes, and the wait ends at its deadline).
            let counted = { dataplane.vnisReport(vni: 50).vnis.first?.counters["decap_packets"] ?? 0 }
            let expected = { UInt64(n) - (unknown() - unknown0) }
            if !waitUntil(seconds: 5, { counted() == expected() }) {
                short.append("round \(round): \(counted()) counted, \(expected()) decapsulated")
            }
            _ = a.drain(); _ = u.drain()
            try dataplane.apply([.removeVNI(.init(vni: 50, flood: []))], origin: "test")
        }
        XCTAssertEqual(short, [], "packets of a new VNI left out of its counters")
        stop.store(true, ordering: .relaxed)
        XCTAssertTrue(core.join())
        _ = a.drain(); _ = u.drain(); u.discardReceived()
        dataplane.stop()
        XCTAssertEqual(dataplane.pool.available, dataplane.pool.capacity, "mbufs leaked")
    }
}

private struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
