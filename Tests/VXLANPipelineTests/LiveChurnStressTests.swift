import CDPDK
import DPDKTestSupport
import Foundation
import PollMode
import Synchronization
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// Run-time changes while two polling cores forward on threads of their own and the slow path runs on a third:
/// a churn thread adds and removes VNIs, maps a port's VLANs into them (and one into VNI 100) and out again, adds and
/// removes flood remotes, static FDB entries and static neighbors, thousands of times a second. Meanwhile VNI 100
/// carries traffic both ways between its access port and a static remote; its settings never change, only its
/// block is replaced as the other port's VLAN comes and goes. Every frame of its flows must arrive, once, intact,
/// and at the end the mempool is full and the running configuration is what it was.
///
/// Runs `VXLAN_STRESS_SECONDS` seconds (default 8 in release builds, 2 in debug).
final class LiveChurnStressTests: XCTestCase {
    static let remoteMAC = "02:00:00:00:99:02", vmMAC = "02:00:00:00:0a:01"
    static let config = { (names: [String]) in """
        underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
        access: [ { port: \(names[1]), vni: 100 } ]
        vnis: [ { vni: 100, flood: [10.99.0.2], learning: false } ]
        fdb: [ { vni: 100, mac: "\(remoteMAC)", remote: 10.99.0.2 } ]
        neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
        resources: { fdb_entries: 1024, tunnels: 64, vnis: 64 }
        """ }
    /// Below a TX ring's 1023 slots, so no queue refuses a frame and every one can be counted.
    static let maxInFlight = 600

    var h: MultiCoreHarness!

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    static var duration: Double {
        if let s = ProcessInfo.processInfo.environment["VXLAN_STRESS_SECONDS"].flatMap(Double.init) { return s }
        #if DEBUG
        return 2
        #else
        return 8
        #endif
    }

    func testChangesAtThousandsPerSecondNeverDisturbAnUntouchedVNI() throws {
        h = try MultiCoreHarness(cores: 2, accessPorts: 2, poolSize: 4095, config: Self.config)
        let h = self.h!
        let start = monotonicSeconds()
        h.startSlowPath { monotonicSeconds() - start }
        h.startCores()

        let stopChurn = StopSignal()
        let changes = Atomic<Int>(0)
        let churnFailure = Mutex<String?>(nil)
        let control = UncheckedBox(h.control)
        let heldRounds = Atomic<Int>(0)
        let learned = UncheckedBox({ h.pipeline(.learnEvents) })
        let churn = TestThread(name: "churn") {
            var round = 0
            while !stopChurn.isRequested {
                let vni = UInt32(1000 + round % 40)
                let remote = IPAddress.v4(IPv4Address(10, 99, 0, UInt8(3 + round % 20)))
                let neighbor = IPAddress.v4(IPv4Address(10, 99, 0, UInt8(100 + round % 50)))
                do {
                    try control.value.change { t in
                        try t.addVNI(.init(vni: vni, flood: [remote]))
                        try t.attach(port: 2, role: .tagged([.init(vlan: 10, vni: vni), .init(vlan: 20, vni: 100)]), settings: nil)
                        try t.addStaticEntry(vni: vni, mac: MACAddress("02:00:00:00:55:01")!, remote: .v4(IPv4Address(10, 99, 0, 60)))
                        try t.addFlood(vni: vni, remotes: [.v4(IPv4Address(10, 99, 0, 61))])
                    }
                    try control.value.addNeighbor(ip: neighbor, mac: MACAddress("02:00:00:00:66:01")!)
                    // How long the port stays attached between two changes depends on the host's speed, and on a
                    // fast one the learners' frames may never meet it attached. So every 64th round the port stays
                    // attached until the cores have reported a new source (or a deadline passes), whatever the speed.
                    if round % 64 == 0 {
                        let before = learned.value()
                        let deadline = monotonicSeconds() + 2
                        while learned.value() == before && monotonicSeconds() < deadline && !stopChurn.isRequested {
                            usleep(100)
                        }
                        if learned.value() > before { heldRounds.add(1, ordering: .relaxed) }
                    }
                    try control.value.change { t in
                        try t.removeFlood(vni: vni, remotes: [remote])
                        try t.detach(port: 2)
                        try t.removeStaticEntry(vni: vni, mac: MACAddress("02:00:00:00:55:01")!)
                        try t.removeVNI(vni: vni)
                    }
                    try control.value.removeNeighbor(ip: neighbor)
                } catch {
                    churnFailure.withLock { $0 = "round \(round): \(error)" }
                    return
                }
                changes.add(10, ordering: .relaxed)
                round += 1
            }
        }

        // Traffic in VNI 100: unicast from the VM to the static remote, and VXLAN from the remote to the VM.
        // And frames on port 2's VLAN 10, whose VNI comes and goes: learned while it is attached (behind an endpoint
        // that is then detached and reused), dropped as port_detached or vlan_not_mapped while it is not.
        let learners = (0..<64).map { i -> [UInt8] in
            let f = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: String(format: "02:00:00:00:77:%02x", i))
            return Array(f[0..<12]) + [0x81, 0x00, 0, 10] + Array(f[12...])
        }
        var learnerIndex = 0
        let toRemote = Frames.innerUDP(dst: Self.remoteMAC, src: Self.vmMAC)
        let toVM = Frames.innerUDP(dst: Self.vmMAC, src: Self.remoteMAC)
        let fromRemote = Frames.vxlanPacket(srcIP: "10.99.0.2", vni: 100, inner: toVM)
        let tagged = Array(toVM[0..<12]) + [0x81, 0x00, 0, 20] + Array(toVM[12...])
        var sent = 0, tunnelled = 0, delivered = 0, wrong = 0, arp = 0
        var firstWrong: [String] = []
        func drain() {
            for q in 0..<2 {
                for f in h.rings[0].drain(queue: q) {
                    // ARP for the next hops of the churned VNIs' remotes (no static neighbor): expected.
                    if f.count >= 14 && f[12] == 0x08 && f[13] == 0x06 { arp += 1; continue }
                    let ok = f.count == toRemote.count + 50 && Array(f[30..<34]) == [10, 99, 0, 2]
                        && Array(f[46..<49]) == [0, 0, 100] && Array(f[50...]) == toRemote
                    if ok { tunnelled += 1 } else { wrong += 1; if firstWrong.count < 5 { firstWrong.append("underlay: \(f.prefix(64))") } }
                }
                for f in h.rings[1].drain(queue: q) {
                    if f == toVM { delivered += 1 } else { wrong += 1; if firstWrong.count < 5 { firstWrong.append("port 1: \(f.prefix(64))") } }
                }
                // While port 2's VLAN 20 is in VNI 100 it gets its copy of VNI 100's flooded frames, tagged.
                for f in h.rings[2].drain(queue: q) where f != tagged {
                    wrong += 1; if firstWrong.count < 5 { firstWrong.append("port 2: \(f.prefix(64))") }
                }
            }
        }
        let end = start + Self.duration
        var q = 0
        while monotonicSeconds() < end {
            if sent - tunnelled - delivered < Self.maxInFlight - 32 {
                h.rings[1].inject((0..<8).map { _ in Mbuf.make(toRemote, pool: h.pool) }, queue: q)
                h.rings[0].inject((0..<8).map { _ in Mbuf.make(fromRemote, pool: h.pool) }, queue: q)
                h.rings[2].inject((0..<2).map { _ in learnerIndex += 1; return Mbuf.make(learners[learnerIndex % 64], pool: h.pool) }, queue: q)
                sent += 16
                q ^= 1
            }
            drain()
        }
        stopChurn.request()
        XCTAssertTrue(churn.join(), "the churn thread did not stop")
        // Every frame sent comes out (or the count below says which did not).
        waitUntil(seconds: 30) { drain(); return tunnelled + delivered >= sent }
        drain()
        // Everything the churn used comes back once the cores have let go (the slow path reclaims every round,
        // the cores are still polling): wait for it, then check every table.
        waitUntil(seconds: 30) {
            h.control.change { t in t.waitingForGracePeriod == 0 && t.liveTunnelCount == 1 }
        }
        h.control.change { t in
            XCTAssertEqual(t.waitingForGracePeriod, 0, "blocks or slots never reclaimed")
            XCTAssertEqual(t.freeVNISlots.count, t.vniCapacity - 1)
            XCTAssertEqual(t.freeEndpoints.count, t.endpointCapacity - 1)
            XCTAssertEqual(t.liveTunnelCount, 1, "only VNI 100's tunnel to 10.99.0.2 is left")
            XCTAssertEqual(t.fdbEntries().map(\.entry.mac), [MACAddress(Self.remoteMAC)!], "learned entries went with their port")
        }
        h.stopSlowPath()
        h.stopCores()
        drain()
        let elapsed = monotonicSeconds() - start
        let made = changes.load(ordering: .relaxed)
        print("LiveChurnStressTests: \(String(format: "%.1f", elapsed)) s, \(made) changes (\(Int(Double(made) / elapsed))/s), "
              + "\(sent) frames in VNI 100: \(tunnelled) tunnelled, \(delivered) delivered, \(arp) ARP requests; drops: "
              + "\(DropReason.allCases.filter { h.drops($0) > 0 }.map { "\($0.name)=\(h.drops($0))" })")
        XCTAssertNil(churnFailure.withLock { $0 }, "a change was refused")
        XCTAssertGreaterThan(made, 2000, "too few changes to mean anything")
        XCTAssertGreaterThan(sent, 1000, "too little traffic to mean anything")
        XCTAssertEqual(wrong, 0, firstWrong.joined(separator: "\n"))
        XCTAssertEqual(tunnelled, sent / 2, "VM -> remote frames lost")
        XCTAssertEqual(delivered, sent / 2, "remote -> VM frames lost")
        // VNI 100's own frames were never dropped; what was dropped is port 2's VLAN 10 traffic while its VNI or the
        // mapping was gone, and its floods to remotes no ARP ever answers.
        let vni100 = h.tables.vniSlot(vni: 100)!
        XCTAssertEqual(h.vniCounters.reduce(0) { $0 + $1[VNICounter.slot(vniSlot: vni100, .drops)] }, 0)
        let allowed: Set<DropReason> = [.portDetached, .vlanNotMapped, .neighborUnresolved, .noDestination]
        XCTAssertEqual(DropReason.allCases.filter { h.drops($0) > 0 && !allowed.contains($0) }.map(\.name), [])
        XCTAssertGreaterThan(heldRounds.load(ordering: .relaxed), 0,
                             "a port held attached for 2 s never had a source learned on it")

        h.control.change { t in
            XCTAssertEqual(t.configuration.vnis.map(\.vni), [100])
            XCTAssertEqual(t.configuration.access.count, 1)
            XCTAssertEqual(t.configuration.fdb.count, 1)
            XCTAssertEqual(t.configuration.neighbors.count, 1)
        }
    }
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
