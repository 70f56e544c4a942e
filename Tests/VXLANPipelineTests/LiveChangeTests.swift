import CDPDK
import DPDKTestSupport
import PollMode
import Synchronization
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// Run-time changes (LiveChanges.swift) as a core sees them: VNIs, access mappings, flood lists and static FDB
/// entries added and removed between bursts take effect at the next burst, refused changes change nothing, and
/// what was removed is reclaimed once the core has passed a quiescent state.
final class LiveChangeTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01", vmA = "02:00:00:00:0a:01", vmB = "02:00:00:00:0b:01"

    var h: PipelineHarness!
    var tables: ForwardingTables { h.tables }

    /// Port 1 in VNI 42 (flood .2); ports 2 and 3 exist but are not attached.
    func build(resources: String = "") throws {
        h = try PipelineHarness(accessPorts: 3) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "\(Self.ourMAC)" }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: 10.99.0.3, mac: "02:00:00:00:00:03" },
                         { ip: 10.99.0.4, mac: "02:00:00:00:00:04" } ]
            \(resources)
            """ }
        h.control!.poll(now: 0)
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    func change(_ body: (ForwardingTables) throws -> Void) rethrows { try h.control!.change(body) }

    /// Outer destination IPv4 and VNI of an encapsulated frame.
    func tunnel(_ frame: [UInt8]) -> (remote: [UInt8], vni: Int) {
        (Array(frame[30..<34]), Int(frame[46]) << 16 | Int(frame[47]) << 8 | Int(frame[48]))
    }

    func vniCount(_ vni: UInt32, _ c: VNICounter) -> UInt64 {
        guard let slot = tables.vniSlot(vni: vni) else { return 0 }
        return h.core.processor.vniCounterBlock[VNICounter.slot(vniSlot: slot, c)]
    }

    func testAVNIAndAPortAddedAtRunTimeForwardBothWaysAndGoAgain() throws {
        try build()
        let broadcast = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vmB)
        var out = h.run([2: [broadcast]], now: 0.1)
        XCTAssertEqual(out[0], [], "an unattached port's frames go nowhere")
        XCTAssertEqual(h.drops(.portDetached), 1)

        try change { try $0.addVNI(.init(vni: 77, flood: [.v4(IPv4Address(10, 99, 0, 3))])) }
        try change { try $0.attach(port: 2, role: .access(vni: 77), settings: .init(port: h.rings[2].name, vni: 77)) }
        out = h.run([2: [broadcast]], now: 0.2)
        XCTAssertEqual(out[0].count, 1)
        XCTAssertEqual(out[0].first.map(tunnel)?.remote, [10, 99, 0, 3])
        XCTAssertEqual(out[0].first.map(tunnel)?.vni, 77)
        XCTAssertEqual(out[1], [], "VNI 42's port never sees VNI 77")
        XCTAssertEqual(vniCount(77, .encapPackets), 1)
        XCTAssertEqual(vniCount(77, .encapBytes), UInt64(broadcast.count))

        let inner = Frames.innerUDP(dst: Self.vmB, src: "02:00:00:00:77:01")
        out = h.run([0: [Frames.vxlanPacket(srcIP: "10.99.0.3", vni: 77, inner: inner)]], now: 0.3)
        XCTAssertEqual(out[2], [inner])
        XCTAssertEqual(out[1], [])
        XCTAssertEqual(vniCount(77, .decapPackets), 1)
        XCTAssertEqual(vniCount(77, .decapBytes), UInt64(inner.count))
        XCTAssertEqual(tables.configuration.vnis.map(\.vni), [42, 77])
        XCTAssertEqual(tables.configuration.access.map(\.port), [h.rings[1].name, h.rings[2].name])

        try change { try $0.detach(port: 2) }
        out = h.run([2: [broadcast], 0: [Frames.vxlanPacket(srcIP: "10.99.0.3", vni: 77, inner: inner)]], now: 0.4)
        XCTAssertEqual(out[0], [])
        XCTAssertEqual(out[2], [])
        XCTAssertEqual(h.drops(.portDetached), 2)
        XCTAssertEqual(h.drops(.noDestination), 1, "VNI 77 has no port left")
        XCTAssertEqual(vniCount(77, .drops), 1)
        XCTAssertNotNil(tables.lookupFDB(vni: 77, mac: MACAddress("02:00:00:00:77:01")!),
                        "learned behind the remote: stays (only the port's MACs go)")

        try change { try $0.removeVNI(vni: 77) }
        out = h.run([0: [Frames.vxlanPacket(srcIP: "10.99.0.3", vni: 77, inner: inner)]], now: 0.5)
        XCTAssertEqual(out[2], [])
        XCTAssertEqual(h.drops(.unknownVNI), 1)
        XCTAssertEqual(tables.configuration.vnis.map(\.vni), [42])
        // VNI 42 was never disturbed.
        out = h.run([1: [broadcast]], now: 0.6)
        XCTAssertEqual(out[0].first.map(tunnel)?.remote, [10, 99, 0, 2])
    }

    func testTheMACsLearnedBehindADetachedPortAreForgotten() throws {
        try build()
        try change { try $0.attach(port: 2, role: .access(vni: 42), settings: .init(port: h.rings[2].name, vni: 42)) }
        _ = h.run([2: [Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vmB)]], now: 0.1)
        XCTAssertEqual(tables.fdbEntries(vni: 42).map(\.entry.mac), [MACAddress(Self.vmB)!])
        let endpoint = tables.portEndpoints[2][0]
        try change { try $0.detach(port: 2) }
        XCTAssertEqual(tables.fdbEntries(vni: 42).count, 0)
        // A learn event a core queued before the detach and the slow path reads after it brings nothing back.
        XCTAssertEqual(tables.learn(vni: 42, mac: MACAddress(Self.vmB)!, target: .local(Int(endpoint))), .invalidTarget)
        XCTAssertEqual(tables.fdbEntries(vni: 42).count, 0)
        // A frame for it is flooded in VNI 42 (port 1 and the flood list), never to the detached port.
        let out = h.run([1: [Frames.innerUDP(dst: Self.vmB, src: Self.vmA)]], now: 0.2)
        XCTAssertEqual(out[2], [])
        XCTAssertEqual(out[0].count, 1)
    }

    func testFloodListChangesTakeEffectAndUnusedTunnelsAreReclaimed() throws {
        try build()
        let broadcast = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vmA)
        let before = tables.liveTunnelCount
        try change { try $0.addFlood(vni: 42, remotes: [.v4(IPv4Address(10, 99, 0, 4))]) }
        var out = h.run([1: [broadcast]], now: 0.1)
        XCTAssertEqual(Set(out[0].map { tunnel($0).remote }), [[10, 99, 0, 2], [10, 99, 0, 4]])
        try change { try $0.removeFlood(vni: 42, remotes: [.v4(IPv4Address(10, 99, 0, 2))]) }
        out = h.run([1: [broadcast]], now: 0.2)
        XCTAssertEqual(out[0].map { tunnel($0).remote }, [[10, 99, 0, 4]])
        XCTAssertEqual(tables.configuration.vnis[0].flood, [.v4(IPv4Address(10, 99, 0, 4))])
        // The core passed quiescent states in the rounds above: the tunnel to .2 is gone.
        _ = h.run(now: 0.3)
        XCTAssertEqual(tables.liveTunnelCount, before)
        XCTAssertNil(tables.existingTunnel(vni: 42, remote: .v4(IPv4Address(10, 99, 0, 2))))
    }

    func testStaticEntriesReplaceLearnedOnesAndGoCleanly() throws {
        try build()
        let remoteMAC = "02:00:00:00:99:01"
        _ = h.run([0: [Frames.vxlanPacket(srcIP: "10.99.0.2", vni: 42, inner: Frames.innerUDP(dst: Self.vmA, src: remoteMAC))]], now: 0.1)
        XCTAssertEqual(tables.fdbEntries(vni: 42).first { $0.entry.mac == MACAddress(remoteMAC)! }?.entry.isStatic, false)
        try change { try $0.addStaticEntry(vni: 42, mac: MACAddress(remoteMAC)!, remote: .v4(IPv4Address(10, 99, 0, 3))) }
        var out = h.run([1: [Frames.innerUDP(dst: remoteMAC, src: Self.vmA)]], now: 0.2)
        XCTAssertEqual(out[0].map { tunnel($0).remote }, [[10, 99, 0, 3]], "the static entry wins")
        XCTAssertThrowsError(try change { try $0.addStaticEntry(vni: 42, mac: MACAddress(remoteMAC)!, remote: .v4(IPv4Address(10, 99, 0, 4))) }) {
            XCTAssertEqual("\($0)", "02:00:00:00:99:01 already has a static entry in VNI 42 (to 10.99.0.3); delete it first")
        }
        try change { try $0.removeStaticEntry(vni: 42, mac: MACAddress(remoteMAC)!) }
        XCTAssertTrue(tables.fdbEntries(vni: 42).allSatisfy { $0.entry.mac != MACAddress(remoteMAC)! })
        out = h.run([1: [Frames.innerUDP(dst: remoteMAC, src: Self.vmA)]], now: 0.3)
        XCTAssertEqual(out[0].map { tunnel($0).remote }, [[10, 99, 0, 2]], "unknown again: flooded to the flood list")
        XCTAssertEqual(tables.configuration.fdb, [])
        XCTAssertThrowsError(try change { try $0.removeStaticEntry(vni: 42, mac: MACAddress(Self.vmA)!) }) {
            XCTAssertEqual("\($0)", "02:00:00:00:0a:01 has no static entry in VNI 42")
        }
    }

    /// Every refusal names the problem and leaves the running configuration exactly as it was.
    func testRefusedChangesSayWhyAndChangeNothing() throws {
        try build(resources: "resources: { vnis: 16, tunnels: 16 }")
        let before = tables.configuration
        let tunnels = tables.liveTunnelCount
        func refused(_ expected: String, _ body: (ForwardingTables) throws -> Void, line: UInt = #line) {
            XCTAssertThrowsError(try change(body), line: line) { XCTAssertEqual("\($0)", expected, line: line) }
            XCTAssertEqual(tables.configuration, before, "changed despite the refusal", line: line)
            XCTAssertEqual(tables.liveTunnelCount, tunnels, line: line)
        }
        refused("VNI 16777216 out of range (1-16777215)") { try $0.addVNI(.init(vni: 16_777_216, flood: [])) }
        refused("VNI 42 already exists") { try $0.addVNI(.init(vni: 42, flood: [])) }
        refused("VNI 9 does not exist") { try $0.removeVNI(vni: 9) }
        refused("VNI 42 is mapped to access port(s) \(h.rings[1].name); detach or remap them first") { try $0.removeVNI(vni: 42) }
        refused("remote 10.98.0.2 is not on the underlay subnet 10.99.0.1/24 and no underlay.gateway is configured") {
            try $0.addVNI(.init(vni: 50, flood: [.v4(IPv4Address(10, 99, 0, 5)), .v4(IPv4Address(10, 98, 0, 2))]))
        }
        refused("10.99.0.1 is this VTEP's own address") { try $0.addFlood(vni: 42, remotes: [.v4(IPv4Address(10, 99, 0, 1))]) }
        refused("10.99.0.2 is already in the flood list of VNI 42") { try $0.addFlood(vni: 42, remotes: [.v4(IPv4Address(10, 99, 0, 2))]) }
        refused("10.99.0.9 is not in the flood list of VNI 42 (10.99.0.2)") { try $0.removeFlood(vni: 42, remotes: [.v4(IPv4Address(10, 99, 0, 9))]) }
        refused("VNI 43 does not exist") { try $0.attach(port: 2, role: .access(vni: 43), settings: nil) }
        refused("\(h.rings[1].name) is already attached") { try $0.attach(port: 1, role: .access(vni: 42), settings: nil) }
        refused("port 3 is not attached") { try $0.detach(port: 3) }
        refused("VLAN 20: VNI 44 does not exist") {
            try $0.attach(port: 3, role: .tagged([.init(vlan: 10, vni: 42), .init(vlan: 20, vni: 44)]), settings: nil)
        }
        refused("ff:ff:ff:ff:ff:ff is not a unicast address (broadcast and multicast follow the flood list)") {
            try $0.addStaticEntry(vni: 42, mac: MACAddress("ff:ff:ff:ff:ff:ff")!, remote: .v4(IPv4Address(10, 99, 0, 3)))
        }
        // Capacity: 16 VNIs in all; the 16th addition fails whole (its flood tunnels are given back).
        for vni in 1...15 { try change { try $0.addVNI(.init(vni: UInt32(1000 + vni), flood: [])) } }
        XCTAssertThrowsError(try change { try $0.addVNI(.init(vni: 2000, flood: [.v4(IPv4Address(10, 99, 0, 7))])) }) {
            XCTAssertEqual("\($0)", "cannot add VNI 2000: all 16 VNIs (resources.vnis) are in use")
        }
        XCTAssertEqual(tables.liveTunnelCount, tunnels)
        // 16 tunnels in all: one per flood remote; the one that does not fit undoes the others.
        for vni in 1...15 { try change { try $0.removeVNI(vni: UInt32(1000 + vni)) } }
        _ = h.run(now: 0.1)
        let remotes: [IPAddress] = (2...30).map { .v4(IPv4Address(10, 99, 0, UInt8($0))) }
        XCTAssertThrowsError(try change { try $0.addVNI(.init(vni: 60, flood: remotes)) }) {
            XCTAssertEqual("\($0)", "cannot create the tunnel to 10.99.0.17 in VNI 60: all 16 tunnels (resources.tunnels) are in use")
        }
        XCTAssertNil(tables.vniSlot(vni: 60))
        _ = h.run(now: 0.2)
        XCTAssertEqual(tables.liveTunnelCount, tunnels)
        XCTAssertEqual(tables.configuration, before)
    }

    /// Thousands of changes against small capacities: slots, blocks, tunnels and stamp slots all come back, and
    /// traffic in the untouched VNI is forwarded every round.
    func testChurnReusesEverySlotAndNeverDisturbsAnotherVNI() throws {
        try build(resources: "resources: { vnis: 16, tunnels: 16, fdb_entries: 1024 }")
        let broadcast = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vmA)
        let tunnels = tables.liveTunnelCount
        for round in 0..<2000 {
            let vni = UInt32(100 + round % 7)
            try change { t in
                try t.addVNI(.init(vni: vni, flood: [.v4(IPv4Address(10, 99, 0, UInt8(3 + round % 5)))]))
                try t.attach(port: 2, role: .tagged([.init(vlan: 10, vni: vni), .init(vlan: 20, vni: 42)]), settings: nil)
                try t.addStaticEntry(vni: vni, mac: MACAddress("02:00:00:00:55:01")!, remote: .v4(IPv4Address(10, 99, 0, 9)))
                try t.addFlood(vni: vni, remotes: [.v4(IPv4Address(10, 99, 0, 10))])
                try t.detach(port: 2)
                try t.removeVNI(vni: vni)
            }
            let out = h.run([1: [broadcast]], now: 0.001 * Double(round))
            XCTAssertEqual(out[0].map { tunnel($0).vni }, [42], "round \(round)")
            if out[0].count != 1 { break }
        }
        _ = h.run(now: 3)
        XCTAssertEqual(tables.liveTunnelCount, tunnels)
        XCTAssertEqual(tables.waitingForGracePeriod, 0)
        XCTAssertEqual(tables.freeVNISlots.count, 15)
        XCTAssertEqual(tables.configuration.vnis.map(\.vni), [42])
        XCTAssertEqual(h.totalDrops, 0)
    }

    /// A VNI whose flood tunnels have to wait for a grace period (every tunnel in use, one dying) gets the slot it
    /// was counted against, not one the wait gave back: two VNIs never share a slot.
    func testAVNIAddedWhileTunnelsAreReclaimedGetsASlotOfItsOwn() throws {
        try build(resources: "resources: { vnis: 16, tunnels: 16 }")
        let remotes: [IPAddress] = (3...17).map { .v4(IPv4Address(10, 99, 0, UInt8($0))) }
        try change { try $0.addVNI(.init(vni: 100, flood: remotes)) }            // 16 tunnels: all in use
        try change { try $0.addVNI(.init(vni: 200, flood: [])) }
        try change { try $0.removeFlood(vni: 100, remotes: [remotes.last!]) }       // a tunnel dying
        try change { try $0.removeVNI(vni: 200) }                              // a slot retired
        h.core.pollOnce()                                                          // both reclaimable now
        try change { try $0.addVNI(.init(vni: 300, flood: [.v4(IPv4Address(10, 99, 0, 18))])) }
        try change { try $0.addVNI(.init(vni: 400, flood: [])) }
        let slots = [42, 100, 300, 400].map { tables.vniSlot(vni: UInt32($0))! }
        XCTAssertEqual(Set(slots).count, 4, "slots \(slots)")
        XCTAssertTrue(Set(tables.freeVNISlots).isDisjoint(with: slots), "a slot in use is also free")
        for (vni, slot) in zip([42, 100, 300, 400], slots) {
            XCTAssertEqual(tables.vniBlocks[slot].pointee.vni, UInt32(vni))
        }
    }

    /// All tunnels in use: a flood remote is still swapped for another in one change (the one that goes gives its
    /// tunnel back first), while a core forwards on another thread.
    func testAFloodRemoteIsSwappedOnAVTEPWhoseTunnelsAreAllInUse() throws {
        try build(resources: "resources: { vnis: 16, tunnels: 16 }")
        let remotes: [IPAddress] = (3...17).map { .v4(IPv4Address(10, 99, 0, UInt8($0))) }
        try change { try $0.addVNI(.init(vni: 100, flood: remotes)) }
        XCTAssertEqual(tables.liveTunnelCount, 16)
        let polling = StopSignal()
        // Only that thread touches the core meanwhile; this one changes the tables, as the control thread does.
        let harness = UncheckedBox(h!)
        let thread = TestThread(name: "core") { while !polling.isRequested { harness.value.core.pollOnce(); usleep(50) } }
        var swapped = tables.configuration.vniSettings(100)!
        swapped.flood = Array(remotes.dropLast()) + [.v4(IPv4Address(10, 99, 0, 18))]
        let result = Result { try change { try $0.updateVNI(swapped) } }
        polling.request()
        XCTAssertTrue(thread.join())
        XCTAssertNoThrow(try result.get())
        XCTAssertEqual(tables.configuration.vniSettings(100)?.flood, swapped.flood)
        XCTAssertNotNil(tables.existingTunnel(vni: 100, remote: .v4(IPv4Address(10, 99, 0, 18))))
        XCTAssertNil(tables.existingTunnel(vni: 100, remote: remotes.last!))
        XCTAssertEqual(tables.liveTunnelCount, 16)
    }

    /// A change that needs a slot only a grace period gives back gets it once the core has let go: the VNI slot of a
    /// removed VNI is free for the next VNI as soon as the core has polled once more.
    func testAChangeThatNeedsAGracePeriodGetsTheSlotOnceTheCorePolled() throws {
        try build(resources: "resources: { vnis: 16 }")
        let control = h.control!
        for vni in UInt32(43)..<58 { try change { try $0.addVNI(.init(vni: vni, flood: [.v4(IPv4Address(10, 99, 0, 3))])) } }
        XCTAssertEqual(tables.freeVNISlots.count, 0)
        try change { try $0.removeVNI(vni: 43) }
        // The core has not polled: the slot is still the core's, and the change is refused once the wait times out.
        control.gracePeriodTimeout = 0.05
        XCTAssertThrowsError(try change { try $0.addVNI(.init(vni: 60, flood: [])) })
        XCTAssertEqual(control.gracePeriodWaits.load(ordering: .relaxed), 1)
        _ = h.core.pollOnce()
        try change { try $0.addVNI(.init(vni: 60, flood: [])) }
        XCTAssertNotNil(tables.vniSlot(vni: 60))
    }

    /// A source seen on a port, reported to the slow path, and the port detached and its endpoint slot given to
    /// another port before the slow path reads the report: the MAC is not learned behind the new port (the event
    /// carries the slot's epoch), and the stale event is counted. (Without the epoch it was learned there.)
    func testALearnEventForADetachedPortIsNotAppliedToThePortThatGotItsSlot() throws {
        try build()
        let control = h.control!
        try change { try $0.attach(port: 2, role: .access(vni: 42), settings: .init(port: h.rings[2].name, vni: 42)) }
        let slot = tables.portEndpoint[2]
        XCTAssertGreaterThanOrEqual(slot, 0)
        // The core sees a new source on port 2 and reports it; the slow path does not run yet.
        let stranger = "02:00:00:00:0c:07"
        h.rings[2].inject([Mbuf.make(Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: stranger), pool: h.pool)])
        _ = h.core.pollOnce()
        _ = h.rings.map { $0.drain() }
        XCTAssertEqual(h.pipeline(.learnEvents), 1)
        // Port 2 goes; once the core has let go, its slot is free again and port 3 takes it.
        try change { try $0.detach(port: 2) }
        _ = h.core.pollOnce()
        change { $0.reclaim() }
        try change { try $0.attach(port: 3, role: .access(vni: 42), settings: .init(port: h.rings[3].name, vni: 42)) }
        XCTAssertEqual(tables.portEndpoint[3], slot, "port 3 got port 2's endpoint slot (else this test checks nothing)")
        // Now the slow path reads the report.
        control.poll(now: 1)
        XCTAssertNil(tables.fdbEntries(vni: 42).first { $0.entry.mac == MACAddress(stranger)! },
                     "a MAC seen on port 2 was learned behind port 3")
        XCTAssertEqual(control.counters[UnderlayControl.Counter.staleLearnEvents.rawValue], 1)
        // A report for port 3 itself is applied.
        h.rings[3].inject([Mbuf.make(Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: stranger), pool: h.pool)])
        _ = h.core.pollOnce()
        control.poll(now: 2)
        _ = h.rings.map { $0.drain() }
        XCTAssertEqual(tables.fdbEntries(vni: 42).first { $0.entry.mac == MACAddress(stranger)! }.map { $0.entry.target }, .local(Int(slot)))
    }

    /// The daemon's per-VNI counters start from the moment a VNI is reachable: the tables hand out its slot
    /// (`vniSlotTaken`, where the daemon takes the baseline) before any core can count into it: the slot's block is
    /// still the empty one and the VNI is not in the VNI table yet.
    func testAVNISlotIsHandedOutBeforeTheVNIIsReachable() throws {
        try build()
        var seen: [(slot: Int, emptyBlock: Bool, inTable: Bool)] = []
        tables.vniSlotTaken = { [unowned self] slot in
            seen.append((slot, self.tables.vniBlocks[slot] == self.tables.emptyVNIBlock, self.tables.lookupVNI(77) != nil))
        }
        try change { try $0.addVNI(.init(vni: 77, flood: [.v4(IPv4Address(10, 99, 0, 3))])) }
        tables.vniSlotTaken = nil
        XCTAssertEqual(seen.count, 1)
        XCTAssertEqual(seen.first?.slot, tables.vniSlot(vni: 77))
        XCTAssertEqual(seen.first?.emptyBlock, true, "the block was published before the baseline")
        XCTAssertEqual(seen.first?.inTable, false, "the VNI was in the VNI table before the baseline")
        XCTAssertNotNil(tables.lookupVNI(77))
    }
}
