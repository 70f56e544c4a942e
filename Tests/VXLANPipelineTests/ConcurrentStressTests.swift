import CDPDK
import DPDKTestSupport
import Foundation
import PollMode
import Synchronization
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// Two polling cores on threads of their own, the slow path learning, moving and ageing entries on a third, a
/// feeder and a drainer: the dataplane as it runs in production, under a mix of traffic in which the same MACs live
/// in two VNIs at once and keep moving between two flood-list remotes, a learned remote and local endpoints
/// (untagged ports and VLANs of a tagged port), or fall silent and age out.
///
/// Checked while it runs, on every frame that comes out: every inner frame carries its VNI, a sequence number and
/// its ingress in its payload, and must only ever leave on a port or VLAN of that VNI, or in a tunnel of that VNI;
/// never back where it came from, never twice on one port, VLAN or tunnel, never from the underlay back into it;
/// every outer header is well formed, with the UDP source port computed independently from the inner frame. At the
/// end, summed over both cores: every frame received is accounted for exactly (forwarded or dropped under a
/// reason), what left matches what the counters say was sent, and the mempool is full again.
///
/// Runs `VXLAN_STRESS_SECONDS` seconds (default 12 in release builds, 3 in debug); random choices come from
/// `VXLAN_TEST_SEED` when set (the seed is printed either way).
final class ConcurrentStressTests: XCTestCase {
    static let ourMAC: [UInt8] = [2, 0, 0, 0, 0, 1]
    static let ourIP: [UInt8] = [10, 99, 0, 1]
    /// Remote VTEPs: .2 and .3 are in both VNIs' flood lists, .4 is only ever learned from traffic.
    static let remoteIPs: [[UInt8]] = [[10, 99, 0, 2], [10, 99, 0, 3], [10, 99, 0, 4]]
    static let remoteMACs: [[UInt8]] = [[2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4]]
    static let vnis = [100, 200]
    static let unknownVNI = 300
    /// The same MACs in both VNIs: the FDB tells them apart by VNI only.
    static let macsPerVNI = 12
    static func vmMAC(_ i: Int) -> [UInt8] { [2, 0x5e, 0, 0, 0, UInt8(i)] }
    static let magic: [UInt8] = Array("VXST".utf8)
    /// This MAC (in both VNIs) sends only in the first fifth of the run: it must have aged out by the end.
    static let agingMAC = 0

    /// Where a frame enters or leaves: channels 0-2 are the remotes, 3-6 the local endpoints.
    struct Channel {
        var vni: Int          // 0 for a remote (it serves both VNIs)
        var port: Int
        var vlan: Int
    }
    static let channels: [Channel] = [
        Channel(vni: 0, port: 0, vlan: 0), Channel(vni: 0, port: 0, vlan: 0), Channel(vni: 0, port: 0, vlan: 0),
        Channel(vni: 100, port: 1, vlan: 0), Channel(vni: 200, port: 2, vlan: 0),
        Channel(vni: 100, port: 3, vlan: 10), Channel(vni: 200, port: 3, vlan: 20),
    ]
    static let learnedRemote = 2
    static func isRemote(_ channel: Int) -> Bool { channel < 3 }

    static let config = { (names: [String]) in """
        underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 1500 }
        access:
          - { port: \(names[1]), vni: 100 }
          - { port: \(names[2]), vni: 200 }
          - { port: \(names[3]), vlans: [ { vlan: 10, vni: 100 }, { vlan: 20, vni: 200 } ] }
        vnis:
          - { vni: 100, flood: [10.99.0.2, 10.99.0.3], ageing: 10 }
          - { vni: 200, flood: [10.99.0.2, 10.99.0.3], ageing: 10 }
        neighbors:
          - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
          - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
          - { ip: 10.99.0.4, mac: "02:00:00:00:00:04" }
        resources: { fdb_entries: 1024, tunnels: 64 }
        """ }

    /// The slow path's clock runs this many times faster than the wall clock: with the configuration's minimum
    /// ageing of 10 s, an entry not seen for one second of test time ages out.
    static let clockSpeed = 10.0
    /// Frames allowed in flight (in rings, cores, copies): below a TX ring's 1023 slots, so no TX queue ever refuses
    /// one and every counter can be checked exactly; far below the pool, so no copy ever fails.
    static let maxInFlight = 900

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
        return 3
        #else
        return 12
        #endif
    }

    func testTwoCoresAndTheSlowPathKeepTenantsApartWhileMACsMoveAndAge() throws {
        let rng = SeededGenerator.forTest("ConcurrentStressTests")
        let duration = Self.duration
        h = try MultiCoreHarness(cores: 2, accessPorts: 3, poolSize: 4095, config: Self.config)
        let h = self.h!
        // Endpoint indices as the tables number them, checked against the channels above.
        for e in 0..<4 {
            let (port, vlan) = h.tables.endpoint(e)
            XCTAssertTrue(Self.channels[3...].contains { $0.port == port && $0.vlan == Int(vlan) }, "endpoint \(e): port \(port) vlan \(vlan)")
        }

        let start = monotonicSeconds()
        h.startSlowPath { (monotonicSeconds() - start) * Self.clockSpeed }
        h.startCores()
        let drainer = Drainer(rings: h.rings, queues: 2)
        let drainThread = TestThread(name: "drainer") { drainer.run() }
        let feeder = Feeder(harness: h, rng: rng, duration: duration)
        let feedThread = TestThread(name: "feeder") { feeder.run() }

        // Sample both cores every 50 ms while the feeder runs; look at the FDB as `show fdb` would.
        var bothProgressed = 0, samples = 0
        var last = (0..<2).map { c in (0..<4).reduce(0) { $0 + h.port(core: c, $1, .rxPackets) } }
        var fdbChecks = 0
        while !feeder.finished.isRequested {
            usleep(50_000)
            let now = (0..<2).map { c in (0..<4).reduce(0) { $0 + h.port(core: c, $1, .rxPackets) } }
            samples += 1
            if now[0] > last[0] && now[1] > last[1] { bothProgressed += 1 }
            last = now
            for item in h.control.fdb(vni: nil) {
                if case .local(let e) = item.entry.target {
                    let (port, vlan) = h.tables.endpoint(e)
                    let channel = Self.channels.firstIndex { $0.port == port && $0.vlan == Int(vlan) && $0.vni != 0 }
                    XCTAssertEqual(channel.map { Self.channels[$0].vni }, Int(item.entry.vni),
                                   "VNI \(item.entry.vni) \(item.entry.mac) learned on port \(port) vlan \(vlan) of another VNI")
                }
            }
            fdbChecks += 1
        }
        XCTAssertTrue(feedThread.join(), "the feeder did not stop")

        // Let the cores take in everything fed, the slow path answer what was punted, the cores send the answers.
        let fed = feeder.fedPerPort.reduce(0, +)
        let received = { (0..<4).reduce(UInt64(0)) { $0 + h.port($1, .rxPackets) } }
        waitUntil(seconds: 30) { received() >= fed }
        XCTAssertEqual(received(), fed, "frames fed but never received")
        // Every ARP request punted is answered by the slow path and the answer sent by a core before anything stops
        // (waited for, not slept for: a slow host only takes longer).
        let p = { (c: PipelineCounter) in h.pipeline(c) }
        XCTAssertTrue(waitUntil(seconds: 30) {
            h.slowPath(.arpRepliesSent) == p(.punted) && p(.injected) == h.slowPath(.arpRepliesSent)
        }, "punted \(p(.punted)), answered \(h.slowPath(.arpRepliesSent)), injected \(p(.injected))")
        h.stopSlowPath()
        h.stopCores()
        drainer.stop.request()
        XCTAssertTrue(drainThread.join(), "the drainer did not stop")
        let elapsed = monotonicSeconds() - start

        // Concurrency: both cores worked, at the same time.
        let perCore = (0..<2).map { c in (0..<4).reduce(UInt64(0)) { $0 + h.port(core: c, $1, .rxPackets) } }
        let overlapping = h.activity.map { $0.overlappingRounds.load(ordering: .relaxed) }
        let busy = h.activity.map { $0.busyRounds.load(ordering: .relaxed) }
        print("""
            ConcurrentStressTests: \(String(format: "%.1f", elapsed)) s, \(fed) frames fed (\(feeder.frames(.arpToVTEP)) ARP, \
            \(feeder.frames(.unknownVNI)) unknown VNI, \(feeder.frames(.badVLAN)) unmapped VLAN), per core \(perCore), \
            busy rounds \(busy), overlapping \(overlapping), both cores progressed in \(bothProgressed) of \(samples) \
            50-ms samples; out: \(drainer.underlayVXLAN) tunnelled, \(drainer.underlayARP) ARP replies, \
            \(drainer.accessFromAccess) switched, \(drainer.accessFromUnderlay) decapsulated; slow path: \
            \(UnderlayControl.Counter.allCases.filter { h.slowPath($0) > 0 }.map { "\($0.name)=\(h.slowPath($0))" }); \
            drops: \(DropReason.allCases.filter { h.drops($0) > 0 }.map { "\($0.name)=\(h.drops($0))" }); \
            \(fdbChecks) FDB snapshots checked
            """)
        for c in 0..<2 {
            XCTAssertGreaterThan(perCore[c], fed / 10, "core \(c) processed \(perCore[c]) of \(fed) frames")
        }
        XCTAssertGreaterThan(bothProgressed, 0, "the two cores never made progress within one 50-ms window")
        // Round-level overlap is asserted on the full-length optimized run (scripts/test.sh runs it in release); the
        // short debug run on a loaded 2-vCPU machine may be scheduled one core at a time for its three seconds.
        #if !DEBUG
        if ProcessInfo.processInfo.activeProcessorCount >= 2 {
            XCTAssertGreaterThan(overlapping.reduce(0, +), 0, "no core ever saw the other complete a round during one of its own")
        }
        #endif
        XCTAssertGreaterThan(fed, 1000, "too little traffic to mean anything")

        // Every frame that came out was checked as it came out.
        XCTAssertEqual(drainer.violations, 0, "first violations:\n" + drainer.firstViolations.joined(separator: "\n"))
        XCTAssertEqual(feeder.ringFull, 0, "an RX ring refused frames")

        // Exact accounting over both cores. Per port: received as fed.
        for p in 0..<4 { XCTAssertEqual(h.port(p, .rxPackets), feeder.fedPerPort[p], "port \(p) rx_packets") }
        // Nothing refused by a TX queue, no copy failed, no headroom missing: so each counter counts frames.
        for p in 0..<4 { XCTAssertEqual(h.port(p, .txDropped), 0, "port \(p) tx_dropped") }
        let d = { (r: DropReason) in h.drops(r) }
        XCTAssertEqual(d(.copyFailed), 0)
        XCTAssertEqual(d(.noHeadroom), 0)
        XCTAssertEqual(d(.noDestination), 0, "both VNIs always have somewhere to flood to")
        // Only the drops this traffic can cause (every frame is well formed).
        let expectedReasons: Set<DropReason> = [.unknownVNI, .vlanNotMapped, .samePort, .neighborUnresolved, .slowPathBusy]
        XCTAssertEqual(DropReason.allCases.filter { d($0) > 0 && !expectedReasons.contains($0) }.map(\.name), [])
        XCTAssertEqual(d(.unknownVNI), feeder.frames(.unknownVNI))
        XCTAssertEqual(d(.vlanNotMapped), feeder.frames(.badVLAN))
        // Access side: each frame tunnelled once as unicast, flooded once, switched once, or dropped once. Flood
        // copies go to the flood-list remotes, whose MACs are static: each is encapsulated, never dropped.
        let accessDrops = [DropReason.runtFrame, .overMTU, .vlanNotMapped, .samePort, .neighborUnresolved].reduce(0) { $0 + d($1) }
        XCTAssertEqual(feeder.fedPerPort[1...].reduce(0, +),
                       (p(.encapsulated) - p(.floodCopies)) + p(.flooded) + p(.switchedLocally) + accessDrops, "access frames")
        // Underlay side: decapsulated once, punted once, or dropped once.
        XCTAssertEqual(feeder.fedPerPort[0], p(.decapsulated) + p(.punted) + d(.unknownVNI) + d(.slowPathBusy), "underlay frames")
        XCTAssertEqual(p(.punted) + d(.slowPathBusy), feeder.frames(.arpToVTEP))
        // What left: every encapsulation and injection on the underlay, every switched or local flood copy on
        // access ports, all of it seen by the drainer.
        XCTAssertEqual(h.port(0, .txPackets), p(.encapsulated) + p(.injected))
        XCTAssertEqual(drainer.underlayVXLAN, p(.encapsulated))
        XCTAssertEqual(drainer.underlayARP, p(.injected))
        XCTAssertEqual(h.slowPath(.arpRepliesSent), p(.punted), "every ARP request for the VTEP answered")
        XCTAssertEqual(p(.injected), h.slowPath(.arpRepliesSent))
        XCTAssertEqual(drainer.accessFromAccess, p(.switchedLocally) + p(.localFloodCopies))
        XCTAssertGreaterThanOrEqual(drainer.accessFromUnderlay, p(.decapsulated), "each decapsulated frame delivered at least once")
        for port in 1..<4 { XCTAssertEqual(UInt64(drainer.perPort[port]), h.port(port, .txPackets), "port \(port) tx_packets") }

        // The slow path learned, moved and aged entries (and reclaimed the learned remote's tunnels) meanwhile.
        XCTAssertGreaterThan(h.slowPath(.learned), 0)
        XCTAssertGreaterThan(h.slowPath(.moved), 0)
        XCTAssertGreaterThan(h.slowPath(.aged), 0)
        XCTAssertGreaterThan(h.slowPath(.tunnelsReclaimed), 0, "the learned remote's tunnels were never reclaimed")
        XCTAssertGreaterThan(p(.learnEvents), 0)

        // The MAC that fell silent early aged out in both VNIs.
        for vni in Self.vnis {
            XCTAssertNil(h.tables.fdbEntries(vni: UInt32(vni)).first { $0.entry.mac == MACAddress(bytes: Self.vmMAC(Self.agingMAC)) },
                         "VNI \(vni): a MAC silent for most of the run is still in the table")
        }
        // The table at rest: every learned entry points into its own VNI.
        for item in h.tables.fdbEntries() {
            switch item.entry.target {
            case .tunnel(let t):
                XCTAssertEqual(h.tables.tunnels[t].vni, item.entry.vni, "\(item.entry.mac) in VNI \(item.entry.vni) behind a tunnel of another VNI")
                XCTAssertTrue(h.tables.isLive(tunnel: t))
            case .local(let e):
                let (port, vlan) = h.tables.endpoint(e)
                XCTAssertEqual(Self.channels.first { $0.vni != 0 && $0.port == port && $0.vlan == Int(vlan) }?.vni, Int(item.entry.vni))
            }
        }
    }
}

// MARK: - Traffic

extension ConcurrentStressTests {
    enum Kind: Int, CaseIterable { case data, arpToVTEP, unknownVNI, badVLAN }

    /// Builds and injects frames from one thread until its time is up. Each (VNI, MAC) lives somewhere (a remote
    /// or a local endpoint of its VNI) and sends from there; every 200 ms half of them move, and some fall silent
    /// (long enough, now and then, to age out; `agingMAC` for good after the first fifth of the run). The learned
    /// remote (.4) is used in the first 30% of the run only, so that its entries move away or age out and its
    /// tunnels are reclaimed. The seed fixes every random choice in order; how many frames fall into each 200-ms
    /// phase depends on the threads' timing, which no seed can replay.
    final class Feeder: @unchecked Sendable {
        let h: MultiCoreHarness
        var rng: SeededGenerator
        let duration: Double
        let finished = StopSignal()
        var fedPerPort = [UInt64](repeating: 0, count: 4)
        var fedKinds = [UInt64](repeating: 0, count: Kind.allCases.count)
        var ringFull = 0
        var seq: UInt64 = 0
        /// [vni index][mac] -> the channel it sends from, nil while silent.
        var location: [[Int?]]

        init(harness: MultiCoreHarness, rng: SeededGenerator, duration: Double) {
            h = harness
            self.rng = rng
            self.duration = duration
            location = ConcurrentStressTests.vnis.map { _ in (0..<ConcurrentStressTests.macsPerVNI).map { _ in nil } }
        }

        func frames(_ kind: Kind) -> UInt64 { fedKinds[kind.rawValue] }

        func places(vni: Int, early: Bool) -> [Int] {
            ConcurrentStressTests.channels.indices.filter {
                let c = ConcurrentStressTests.channels[$0]
                return c.vni == vni || (c.vni == 0 && (early || $0 != ConcurrentStressTests.learnedRemote))
            }
        }

        func relocate(t: Double) {
            let early = t < duration * 0.3
            for (v, vni) in ConcurrentStressTests.vnis.enumerated() {
                let where_ = places(vni: vni, early: early)
                for m in 0..<ConcurrentStressTests.macsPerVNI {
                    if t == 0 || (m == ConcurrentStressTests.agingMAC && t < duration * 0.2) {
                        location[v][m] = location[v][m] ?? where_.randomElement(using: &rng)
                        continue
                    }
                    if m == ConcurrentStressTests.agingMAC { location[v][m] = nil; continue }
                    if let here = location[v][m], !early && here == ConcurrentStressTests.learnedRemote {
                        location[v][m] = where_.randomElement(using: &rng)
                        continue
                    }
                    if location[v][m] == nil {
                        // Silent MACs mostly stay silent: long enough, now and then, to age out.
                        if Int.random(in: 0..<10, using: &rng) < 3 { location[v][m] = where_.randomElement(using: &rng) }
                    } else if Int.random(in: 0..<10, using: &rng) < 1 {
                        location[v][m] = nil
                    } else if Bool.random(using: &rng) {
                        location[v][m] = where_.randomElement(using: &rng)
                    }
                }
            }
        }

        func run() {
            let start = monotonicSeconds()
            var nextMove = 0.0
            while true {
                let t = monotonicSeconds() - start
                if t >= duration { break }
                if t >= nextMove {
                    relocate(t: nextMove)
                    nextMove += 0.2
                }
                while h.pool.inUse > ConcurrentStressTests.maxInFlight - 64 && monotonicSeconds() - start < duration { usleep(50) }
                var batches: [[(frame: [UInt8], kind: Kind)]] = Array(repeating: [], count: 8)    // port * 2 + queue
                for _ in 0..<32 {
                    let (port, frame, kind) = makeFrame()
                    batches[port * 2 + Int.random(in: 0..<2, using: &rng)].append((frame, kind))
                }
                for (b, batch) in batches.enumerated() where !batch.isEmpty {
                    let mbufs = batch.map { Mbuf.make($0.frame, pool: h.pool) }
                    let n = h.rings[b / 2].tryInject(mbufs, queue: b % 2)
                    for m in mbufs[n...] { vx_mbuf_free(m) }
                    ringFull += mbufs.count - n
                    fedPerPort[b / 2] += UInt64(n)
                    for item in batch[..<n] { fedKinds[item.kind.rawValue] += 1 }
                }
            }
            finished.request()
        }

        /// One frame: (port, bytes, kind).
        func makeFrame() -> (Int, [UInt8], Kind) {
            let roll = Int.random(in: 0..<200, using: &rng)
            if roll == 0 { return (0, arpRequest(), .arpToVTEP) }
            if roll == 1 {
                let inner = innerFrame(vni: ConcurrentStressTests.unknownVNI, src: ConcurrentStressTests.vmMAC(1),
                                       dst: ConcurrentStressTests.vmMAC(2), origin: 0)
                return (0, vxlan(from: 0, vni: ConcurrentStressTests.unknownVNI, inner: inner), .unknownVNI)
            }
            if roll == 2 {
                // VLAN 30 on the tagged port, or a tag on an untagged one: mapped nowhere.
                let inner = innerFrame(vni: 100, src: ConcurrentStressTests.vmMAC(1), dst: ConcurrentStressTests.vmMAC(2), origin: 3)
                return Bool.random(using: &rng) ? (3, tagged(inner, vlan: 30), .badVLAN) : (1, tagged(inner, vlan: 10), .badVLAN)
            }
            // Data: a VNI, a sender that is not silent, a destination in the VNI (known, silent or broadcast).
            let v = Int.random(in: 0..<2, using: &rng)
            let vni = ConcurrentStressTests.vnis[v]
            let senders = (0..<ConcurrentStressTests.macsPerVNI).filter { location[v][$0] != nil }
            let s = senders.randomElement(using: &rng) ?? 1
            let channel = location[v][s] ?? places(vni: vni, early: false).randomElement(using: &rng)!
            let dst = Int.random(in: 0..<10, using: &rng) == 0
                ? [UInt8](repeating: 0xff, count: 6)
                : ConcurrentStressTests.vmMAC(Int.random(in: 0..<ConcurrentStressTests.macsPerVNI, using: &rng))
            let inner = innerFrame(vni: vni, src: ConcurrentStressTests.vmMAC(s), dst: dst, origin: channel)
            let c = ConcurrentStressTests.channels[channel]
            if ConcurrentStressTests.isRemote(channel) { return (0, vxlan(from: channel, vni: vni, inner: inner), .data) }
            return (c.port, c.vlan == 0 ? inner : tagged(inner, vlan: c.vlan), .data)
        }

        /// An inner frame whose payload says where it belongs: magic, VNI, sequence number, ingress channel. IPv4 with
        /// UDP or TCP, or non-IP, so every kind of flow hash is exercised.
        func innerFrame(vni: Int, src: [UInt8], dst: [UInt8], origin: Int) -> [UInt8] {
            seq += 1
            var payload = ConcurrentStressTests.magic + be32(vni) + be32(Int(seq >> 32)) + be32(Int(seq & 0xFFFF_FFFF)) + [UInt8(origin)]
            payload += [UInt8](repeating: UInt8(truncatingIfNeeded: seq), count: Int.random(in: 0..<160, using: &rng))
            let kind = Int.random(in: 0..<10, using: &rng)
            if kind == 0 { return dst + src + [0x88, 0xB5] + payload }
            let addresses: [UInt8] = [192, 168, UInt8(vni & 0xff), UInt8.random(in: 1...254, using: &rng),
                                      192, 168, UInt8(vni & 0xff), UInt8.random(in: 1...254, using: &rng)]
            let ports = Frames.be16(Int.random(in: 1...65535, using: &rng)) + Frames.be16(Int.random(in: 1...65535, using: &rng))
            let proto: UInt8 = kind == 1 ? 6 : 17
            let l4 = proto == 6 ? ports + [UInt8](repeating: 0, count: 8) + [0x50, 0x10, 0x10, 0, 0, 0, 0, 0] + payload
                                : ports + Frames.be16(8 + payload.count) + [0, 0] + payload
            var ip: [UInt8] = [0x45, 0] + Frames.be16(20 + l4.count) + [0, 0, 0x40, 0, 64, proto, 0, 0] + addresses
            let checksum = Frames.checksum(ip)
            ip[10] = UInt8(checksum >> 8); ip[11] = UInt8(checksum & 0xff)
            return dst + src + [0x08, 0x00] + ip + l4
        }

        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

        func tagged(_ frame: [UInt8], vlan: Int) -> [UInt8] { Array(frame[0..<12]) + [0x81, 0x00] + Frames.be16(vlan) + Array(frame[12...]) }

        func vxlan(from remote: Int, vni: Int, inner: [UInt8]) -> [UInt8] {
            let udp = Frames.udp(sport: Int.random(in: 49152...65535, using: &rng), dport: 4789, payload: Frames.vxlan(vni: vni, inner: inner))
            var ip: [UInt8] = [0x45, 0] + Frames.be16(20 + udp.count) + [0, 0, 0x40, 0, 64, 17, 0, 0]
                + ConcurrentStressTests.remoteIPs[remote] + ConcurrentStressTests.ourIP
            let checksum = Frames.checksum(ip)
            ip[10] = UInt8(checksum >> 8); ip[11] = UInt8(checksum & 0xff)
            return ConcurrentStressTests.ourMAC + ConcurrentStressTests.remoteMACs[remote] + [0x08, 0x00] + ip + udp
        }

        /// Remote .2 asks who has the VTEP address.
        func arpRequest() -> [UInt8] {
            [UInt8](repeating: 0xff, count: 6) + ConcurrentStressTests.remoteMACs[0] + [0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]
                + ConcurrentStressTests.remoteMACs[0] + ConcurrentStressTests.remoteIPs[0] + [0, 0, 0, 0, 0, 0] + ConcurrentStressTests.ourIP
        }
    }

    /// Drains every TX queue from one thread and checks each frame as it comes out.
    final class Drainer: @unchecked Sendable {
        let rings: [RingPort]
        let queues: Int
        let stop = StopSignal()
        var violations = 0
        var firstViolations: [String] = []
        var underlayVXLAN: UInt64 = 0, underlayARP: UInt64 = 0, accessFromAccess: UInt64 = 0, accessFromUnderlay: UInt64 = 0
        var perPort = [Int](repeating: 0, count: 4)
        /// Per sequence number: a bit per channel it left on.
        var seen: [UInt8] = []

        init(rings: [RingPort], queues: Int) { self.rings = rings; self.queues = queues }

        func violation(_ s: @autoclosure () -> String) {
            violations += 1
            if firstViolations.count < 20 { firstViolations.append(s()) }
        }

        func run() {
            while true {
                let stopping = stop.isRequested
                var got = 0
                for port in 0..<rings.count {
                    for q in 0..<queues {
                        let frames = rings[port].drain(queue: q)
                        got += frames.count
                        perPort[port] += frames.count
                        for f in frames { port == 0 ? checkUnderlay(f) : checkAccess(f, port: port) }
                    }
                }
                if stopping { break }       // one full pass after the cores stopped
                if got == 0 { usleep(100) }
            }
        }

        /// (VNI, sequence, origin channel) from an untagged inner frame's payload.
        func payload(_ inner: [UInt8]) -> (vni: Int, seq: Int, origin: Int)? {
            guard inner.count >= 14 else { return nil }
            var offset = 14
            if inner[12] == 0x08 && inner[13] == 0x00 {
                guard inner.count >= 34, inner[14] == 0x45, Frames.checksum(Array(inner[14..<34])) == 0,
                      Int(inner[16]) << 8 | Int(inner[17]) == inner.count - 14 else { return nil }
                offset = 34 + (inner[23] == 6 ? 20 : 8)
            } else if !(inner[12] == 0x88 && inner[13] == 0xB5) {
                return nil
            }
            guard inner.count >= offset + 17, Array(inner[offset..<(offset + 4)]) == ConcurrentStressTests.magic else { return nil }
            let word = { (i: Int) in Int(inner[i]) << 24 | Int(inner[i + 1]) << 16 | Int(inner[i + 2]) << 8 | Int(inner[i + 3]) }
            return (word(offset + 4), word(offset + 8) << 32 | word(offset + 12), Int(inner[offset + 16]))
        }

        /// Marks `seq` as having left on `channel`; a second time is a duplicate.
        func mark(_ seq: Int, _ channel: Int, _ what: String) {
            if seq >= seen.count { seen += [UInt8](repeating: 0, count: seq - seen.count + 65536) }
            if seen[seq] & (1 << channel) != 0 { violation("frame \(seq) left twice on channel \(channel) (\(what))") }
            seen[seq] |= 1 << channel
        }

        func checkUnderlay(_ f: [UInt8]) {
            guard f.count >= 14 else { return violation("runt on the underlay") }
            if f[12] == 0x08 && f[13] == 0x06 {
                // The slow path's answer to "who has 10.99.0.1", to remote .2.
                let ok = f.count >= 42 && Array(f[0..<6]) == ConcurrentStressTests.remoteMACs[0]
                    && Array(f[6..<12]) == ConcurrentStressTests.ourMAC && f[20] == 0 && f[21] == 2
                    && Array(f[22..<28]) == ConcurrentStressTests.ourMAC && Array(f[28..<32]) == ConcurrentStressTests.ourIP
                    && Array(f[38..<42]) == ConcurrentStressTests.remoteIPs[0]
                if !ok { violation("ARP on the underlay that is not our reply: \(f.prefix(42))") }
                underlayARP += 1
                return
            }
            guard f.count >= 50 + 14, f[12] == 0x08, f[13] == 0x00 else { return violation("not VXLAN over IPv4: \(f.prefix(64))") }
            underlayVXLAN += 1
            guard let r = ConcurrentStressTests.remoteIPs.firstIndex(of: Array(f[30..<34])) else {
                return violation("tunnelled to \(f[30..<34])")
            }
            let inner = Array(f[50...])
            let expectedOuter = ConcurrentStressTests.remoteMACs[r] + ConcurrentStressTests.ourMAC + [0x08, 0x00,
                0x45, 0] + Frames.be16(f.count - 14) + [0, 0, 0x40, 0, 64, 17] + Array(f[24..<26]) + ConcurrentStressTests.ourIP
                + ConcurrentStressTests.remoteIPs[r] + Frames.be16(ReferenceFlowHash.sourcePort(inner)) + [0x12, 0xB5]
                + Frames.be16(f.count - 34) + [0, 0, 0x08, 0, 0, 0] + Array(f[46..<49]) + [0]
            if Array(f[0..<50]) != expectedOuter { violation("outer headers \(f[0..<50]), expected \(expectedOuter)") }
            if Frames.checksum(Array(f[14..<34])) != 0 { violation("outer IPv4 checksum") }
            let vni = Int(f[46]) << 16 | Int(f[47]) << 8 | Int(f[48])
            guard let p = payload(inner) else { return violation("tunnelled inner frame not ours or damaged: \(inner.prefix(64))") }
            if p.vni != vni { violation("frame \(p.seq) of VNI \(p.vni) tunnelled in VNI \(vni)") }
            if ConcurrentStressTests.isRemote(p.origin) { violation("frame \(p.seq) from remote \(p.origin) sent back into the underlay") }
            else if ConcurrentStressTests.channels[p.origin].vni != p.vni { violation("frame \(p.seq): VNI \(p.vni) from channel \(p.origin)") }
            mark(p.seq, r, "tunnel to remote \(r)")
        }

        func checkAccess(_ f: [UInt8], port: Int) {
            guard f.count >= 14 else { return violation("runt on port \(port)") }
            let isTagged = f[12] == 0x81 && f[13] == 0x00
            let vlan = isTagged && f.count >= 18 ? (Int(f[14]) << 8 | Int(f[15])) & 0x0FFF : 0
            guard let channel = ConcurrentStressTests.channels.indices.first(where: {
                ConcurrentStressTests.channels[$0].vni != 0 && ConcurrentStressTests.channels[$0].port == port
                    && ConcurrentStressTests.channels[$0].vlan == vlan
            }) else { return violation("port \(port) sent a frame on VLAN \(vlan) (tagged: \(isTagged))") }
            let inner = isTagged ? Array(f[0..<12]) + Array(f[16...]) : f
            guard let p = payload(inner) else { return violation("frame on port \(port) not ours or damaged: \(inner.prefix(64))") }
            let vni = ConcurrentStressTests.channels[channel].vni
            if p.vni != vni { violation("frame \(p.seq) of VNI \(p.vni) delivered on port \(port) VLAN \(vlan), which is VNI \(vni)") }
            if p.origin == channel { violation("frame \(p.seq) sent back out of its ingress (port \(port) VLAN \(vlan))") }
            if ConcurrentStressTests.isRemote(p.origin) { accessFromUnderlay += 1 } else { accessFromAccess += 1 }
            mark(p.seq, channel, "port \(port) VLAN \(vlan)")
        }
    }
}
