import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// The underlay slow path on net_ring ports: ARP and ICMP for the VTEP address, next-hop resolution by ARP.
final class UnderlayControlTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01", remoteMAC = "02:00:00:00:00:02", gatewayMAC = "02:00:00:00:00:fe"

    var h: PipelineHarness!
    var tables: ForwardingTables { h.tables }
    var control: UnderlayControl { h.control! }

    func build(extraUnderlay: String = "", flood: String = "10.99.0.2", neighbors: String = "[]") throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 1023) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "\(Self.ourMAC)", neighbor_timeout: 5\(extraUnderlay) }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [\(flood)] } ]
            neighbors: \(neighbors)
            """ }
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    /// Frames in on the underlay (and access), a poll round, the slow path at `now`, another round: what the
    /// underlay sent.
    func exchange(underlay frames: [[UInt8]] = [], access aframes: [[UInt8]] = [], now: Double) -> [[UInt8]] {
        h.run([0: frames, 1: aframes], now: now)[0]
    }

    func arp(op: Int, srcMAC: String, srcIP: String, dstMAC: String = "ff:ff:ff:ff:ff:ff", targetMAC: String = "00:00:00:00:00:00",
             targetIP: String) -> [UInt8] {
        Frames.ethernet(dst: dstMAC, src: srcMAC, type: 0x0806, payload: Frames.be16(1) + Frames.be16(0x0800) + [6, 4] + Frames.be16(op)
                        + Frames.mac(srcMAC) + Frames.ip(srcIP) + Frames.mac(targetMAC) + Frames.ip(targetIP))
    }

    func counter(_ c: UnderlayControl.Counter) -> UInt64 { control.counters[c.rawValue] }
    func drops(_ r: DropReason) -> UInt64 { h.drops(r) }
    var innerToRemote: [UInt8] { Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: "02:00:00:00:42:01") }

    func testAnswersARPForTheVTEPAddressOnly() throws {
        try build(neighbors: "[ { ip: 10.99.0.2, mac: \"\(Self.remoteMAC)\" } ]")
        let out = exchange(underlay: [arp(op: 1, srcMAC: "02:00:00:00:00:33", srcIP: "10.99.0.33", targetIP: "10.99.0.1"),
                                      arp(op: 1, srcMAC: "02:00:00:00:00:33", srcIP: "10.99.0.33", targetIP: "10.99.0.77")], now: 1)
        XCTAssertEqual(out, [arp(op: 2, srcMAC: Self.ourMAC, srcIP: "10.99.0.1", dstMAC: "02:00:00:00:00:33",
                                 targetMAC: "02:00:00:00:00:33", targetIP: "10.99.0.33")])
        XCTAssertEqual(counter(.arpRepliesSent), 1)
        XCTAssertEqual(h.pipeline(.punted), 2)
        XCTAssertEqual(h.pipeline(.injected), 1)
    }

    func testAnARPReplyCarriesNothingOfWhatFollowedTheRequest() throws {
        // Padding is normal; a sender may also append a kilobyte or more (the fuzz seed arp-request-with-2-kb-of-trailer: a chain): the reply is 42 bytes either way.
        try build(neighbors: "[ { ip: 10.99.0.2, mac: \"\(Self.remoteMAC)\" } ]")
        let request = arp(op: 1, srcMAC: "02:00:00:00:00:33", srcIP: "10.99.0.33", targetIP: "10.99.0.1")
        let out = exchange(underlay: [request + [UInt8](repeating: 0, count: 18), request + [UInt8](repeating: 0xee, count: 1900)], now: 1)
        let reply = arp(op: 2, srcMAC: Self.ourMAC, srcIP: "10.99.0.1", dstMAC: "02:00:00:00:00:33", targetMAC: "02:00:00:00:00:33", targetIP: "10.99.0.33")
        XCTAssertEqual(out, [reply, reply])
    }

    func testAnswersICMPEchoToTheVTEPAddress() throws {
        try build(neighbors: "[ { ip: 10.99.0.2, mac: \"\(Self.remoteMAC)\" } ]")
        func icmp(type: UInt8, id: Int) -> [UInt8] {
            var body: [UInt8] = [type, 0, 0, 0] + Frames.be16(id) + Frames.be16(1) + [UInt8](repeating: 0x61, count: 24)
            let c = Frames.checksum(body)
            body[2] = UInt8(c >> 8); body[3] = UInt8(c & 0xff)
            return body
        }
        let request = Frames.ethernet(dst: Self.ourMAC, src: Self.remoteMAC, type: 0x0800,
                                      payload: Frames.ipv4(src: "10.99.0.2", dst: "10.99.0.1", proto: 1, payload: icmp(type: 8, id: 77), flagsFragment: 0))
        let out = exchange(underlay: [request], now: 1)
        let expected = Frames.ethernet(dst: Self.remoteMAC, src: Self.ourMAC, type: 0x0800,
                                       payload: Frames.ipv4(src: "10.99.0.1", dst: "10.99.0.2", proto: 1, payload: icmp(type: 0, id: 77), flagsFragment: 0))
        XCTAssertEqual(out, [expected])
        XCTAssertEqual(counter(.icmpEchoReplies), 1)
    }

    func testResolvesARemoteByARPWithBackOffThenForwards() throws {
        try build()
        // Unresolved: the frame is dropped and counted; the slow path asks who has 10.99.0.2.
        var out = exchange(access: [innerToRemote], now: 0)
        XCTAssertEqual(drops(.neighborUnresolved), 1)
        let request = arp(op: 1, srcMAC: Self.ourMAC, srcIP: "10.99.0.1", targetIP: "10.99.0.2")
        XCTAssertEqual(out, [request])
        // Back-off: 1 s, then 2 s, then 4 s between requests.
        XCTAssertEqual(exchange(now: 0.5), [])
        XCTAssertEqual(exchange(now: 1.0), [request])
        XCTAssertEqual(exchange(now: 2.5), [])
        XCTAssertEqual(exchange(now: 3.0), [request])
        XCTAssertEqual(exchange(now: 6.9), [])
        XCTAssertEqual(exchange(now: 7.0), [request])
        XCTAssertEqual(control.neighbors(now: 7).first?.state, .resolving)

        // The reply resolves it; the next frame goes out with the learned MAC.
        out = exchange(underlay: [arp(op: 2, srcMAC: Self.remoteMAC, srcIP: "10.99.0.2", dstMAC: Self.ourMAC,
                                      targetMAC: Self.ourMAC, targetIP: "10.99.0.1")], now: 8)
        XCTAssertEqual(out, [])
        XCTAssertEqual(counter(.arpRepliesReceived), 1)
        let n = try XCTUnwrap(control.neighbors(now: 8).first)
        XCTAssertEqual(n.mac, MACAddress(Self.remoteMAC))
        XCTAssertEqual(n.state, .reachable)
        out = exchange(access: [innerToRemote], now: 8)
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(Array(out[0][0..<6]), Frames.mac(Self.remoteMAC))
        XCTAssertEqual(counter(.arpRequestsSent), 4)
    }

    func testAStaleMACIsProbedThenDropped() throws {
        try build()
        // Requests at 0, 1, 3 and 7 s (back-off); the reply at 10 s answers the last one (within the reply window).
        for t in [0.0, 1, 3, 7] { _ = exchange(now: t) }
        _ = exchange(underlay: [arp(op: 2, srcMAC: Self.remoteMAC, srcIP: "10.99.0.2", dstMAC: Self.ourMAC, targetMAC: Self.ourMAC,
                                    targetIP: "10.99.0.1")], now: 10)
        XCTAssertEqual(exchange(now: 14.9), [], "reachable for neighbor_timeout (5 s)")
        // Timed out: probed, but still used while being confirmed.
        XCTAssertEqual(exchange(now: 15).count, 1)
        XCTAssertEqual(control.neighbors(now: 15).first?.state, .probing)
        XCTAssertEqual(exchange(access: [innerToRemote], now: 15.5).count, 1, "the known MAC stays in use while probing")
        XCTAssertEqual(exchange(now: 16).count, 1)
        XCTAssertEqual(exchange(now: 18).count, 1)
        // Three probes unanswered: the MAC is dropped, frames are held back until ARP answers again.
        XCTAssertEqual(exchange(now: 22).count, 1)
        XCTAssertEqual(control.neighbors(now: 22).first?.state, .resolving)
        XCTAssertEqual(exchange(access: [innerToRemote], now: 22.1), [])
        XCTAssertEqual(drops(.neighborUnresolved), 1)
    }

    func testStaticNeighborsAreNeverReplacedByARP() throws {
        try build(neighbors: "[ { ip: 10.99.0.2, mac: \"\(Self.remoteMAC)\" } ]")
        _ = exchange(underlay: [arp(op: 2, srcMAC: "02:66:66:66:66:66", srcIP: "10.99.0.2", dstMAC: Self.ourMAC,
                                    targetMAC: Self.ourMAC, targetIP: "10.99.0.1")], now: 1)
        let out = exchange(access: [innerToRemote], now: 2)
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(Array(out[0][0..<6]), Frames.mac(Self.remoteMAC))
        XCTAssertEqual(control.neighbors(now: 2).first?.state, .permanent)
        XCTAssertEqual(counter(.arpRequestsSent), 0)
    }

    func testOffLinkRemotesUseTheGatewaysMAC() throws {
        try build(extraUnderlay: ", gateway: 10.99.0.254", flood: "172.16.0.5")
        let out = exchange(now: 0)
        XCTAssertEqual(out, [arp(op: 1, srcMAC: Self.ourMAC, srcIP: "10.99.0.1", targetIP: "10.99.0.254")])
        _ = exchange(underlay: [arp(op: 2, srcMAC: Self.gatewayMAC, srcIP: "10.99.0.254", dstMAC: Self.ourMAC,
                                    targetMAC: Self.ourMAC, targetIP: "10.99.0.1")], now: 0.1)
        let sent = exchange(access: [innerToRemote], now: 0.2)
        XCTAssertEqual(sent.count, 1)
        XCTAssertEqual(Array(sent[0][0..<6]), Frames.mac(Self.gatewayMAC), "outer destination: the gateway")
        XCTAssertEqual(Array(sent[0][30..<34]), [172, 16, 0, 5], "outer IP destination: the remote VTEP")
    }

    /// A header copy is rewritten only after every polling core has passed a quiescent state.
    func testHeaderCopiesAreReusedOnlyAfterAGracePeriod() throws {
        try build()
        XCTAssertTrue(tables.publish(mac: MACAddress("02:00:00:00:00:0a"), tunnel: 0))
        XCTAssertFalse(tables.publish(mac: MACAddress("02:00:00:00:00:0b"), tunnel: 0), "core 0 may still read the old copy")
        XCTAssertEqual(tables.publishedMAC(tunnel: 0), MACAddress("02:00:00:00:00:0a"))
        h.core.pollOnce()                                         // one round: a quiescent state
        XCTAssertTrue(tables.publish(mac: MACAddress("02:00:00:00:00:0b"), tunnel: 0))
        XCTAssertEqual(tables.publishedMAC(tunnel: 0), MACAddress("02:00:00:00:00:0b"))
    }
}

/// Neighbor entries and ARP/ND spoofing: a resolved next hop's MAC changes only on a reply to our own request.
final class NeighborSpoofingTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01", remoteMAC = "02:00:00:00:00:02", rogueMAC = "02:66:66:66:66:66"

    var h: PipelineHarness!
    var tables: ForwardingTables { h.tables }
    var control: UnderlayControl { h.control! }

    override func setUpWithError() throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 1023) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "\(Self.ourMAC)", neighbor_timeout: 5 }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            """ }
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    func arp(op: Int, srcMAC: String, srcIP: String, dstMAC: String = "ff:ff:ff:ff:ff:ff", targetMAC: String = "00:00:00:00:00:00",
             targetIP: String) -> [UInt8] {
        Frames.ethernet(dst: dstMAC, src: srcMAC, type: 0x0806, payload: Frames.be16(1) + Frames.be16(0x0800) + [6, 4] + Frames.be16(op)
                        + Frames.mac(srcMAC) + Frames.ip(srcIP) + Frames.mac(targetMAC) + Frames.ip(targetIP))
    }
    func reply(from mac: String) -> [UInt8] {
        arp(op: 2, srcMAC: mac, srcIP: "10.99.0.2", dstMAC: Self.ourMAC, targetMAC: Self.ourMAC, targetIP: "10.99.0.1")
    }
    var request: [UInt8] { arp(op: 1, srcMAC: Self.ourMAC, srcIP: "10.99.0.1", targetIP: "10.99.0.2") }
    func counter(_ c: UnderlayControl.Counter) -> UInt64 { control.counters[c.rawValue] }
    func exchange(underlay frames: [[UInt8]] = [], access: [[UInt8]] = [], now: Double) -> [[UInt8]] {
        h.run([0: frames, 1: access], now: now)[0]
    }
    /// Where a frame for the remote goes (its outer Ethernet destination), nil when it is not sent.
    func outerDestination(now: Double) -> [UInt8]? {
        exchange(access: [Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: "02:00:00:00:42:01")], now: now).first.map { Array($0[0..<6]) }
    }

    func testAnUnsolicitedReplyDoesNotRedirectAResolvedTunnel() throws {
        XCTAssertEqual(exchange(now: 0), [request])
        _ = exchange(underlay: [reply(from: Self.remoteMAC)], now: 0.1)
        XCTAssertEqual(outerDestination(now: 0.2), Frames.mac(Self.remoteMAC))

        // An unsolicited reply with another MAC: ignored, counted, and the address is asked again.
        XCTAssertEqual(exchange(underlay: [reply(from: Self.rogueMAC)], now: 2), [request], "re-probed")
        XCTAssertEqual(counter(.unsolicitedReplies), 1)
        XCTAssertEqual(counter(.neighborMACConflicts), 1)
        XCTAssertEqual(outerDestination(now: 2.1), Frames.mac(Self.remoteMAC))
        XCTAssertEqual(control.neighbors(now: 2.1).first?.mac, MACAddress(Self.remoteMAC))
        // The real host answers: still its MAC, confirmed.
        _ = exchange(underlay: [reply(from: Self.remoteMAC)], now: 2.2)
        XCTAssertEqual(control.neighbors(now: 2.2).first?.state, .reachable)
        XCTAssertEqual(control.neighbors(now: 2.2).first?.age ?? -1, 0, accuracy: 1e-9)

        // A request claiming the address with the rogue MAC changes nothing either (it is answered: it asks for us).
        let out = exchange(underlay: [arp(op: 1, srcMAC: Self.rogueMAC, srcIP: "10.99.0.2", targetIP: "10.99.0.1")], now: 4)
        XCTAssertTrue(out.contains(request), "re-probed")
        XCTAssertEqual(counter(.neighborMACConflicts), 2)
        XCTAssertEqual(outerDestination(now: 4.1), Frames.mac(Self.remoteMAC))
        // Replies that agree refresh the confirmation and count as nothing wrong.
        _ = exchange(underlay: [reply(from: Self.remoteMAC)], now: 6)
        XCTAssertEqual(counter(.neighborMACConflicts), 2)
        XCTAssertEqual(control.neighbors(now: 6).first?.age ?? -1, 0, accuracy: 1e-9)
    }

    func testAReplyToOurRequestChangesTheMAC() throws {
        XCTAssertEqual(exchange(now: 0), [request])
        _ = exchange(underlay: [reply(from: Self.remoteMAC)], now: 0.1)
        // neighbor_timeout (5 s) later the MAC is confirmed again; the answer to that request carries a new MAC.
        XCTAssertEqual(exchange(now: 5.2), [request])
        _ = exchange(underlay: [reply(from: "02:00:00:00:00:22")], now: 5.3)
        XCTAssertEqual(outerDestination(now: 5.4), Frames.mac("02:00:00:00:00:22"))
        XCTAssertEqual(counter(.neighborMACConflicts), 0)
    }

    /// The same for Neighbor Discovery: an unsolicited advertisement does not move a resolved IPv6 next hop.
    func testAnUnsolicitedAdvertisementDoesNotRedirectAResolvedTunnel() throws {
        h.release(); h = nil
        h = try PipelineHarness(accessPorts: 1, poolSize: 1023) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "\(Self.ourMAC)", neighbor_timeout: 5 }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: ["fd00::2"] } ]
            """ }
        func advertisement(from mac: String, solicited: Bool) -> [UInt8] {
            let body: [UInt8] = [solicited ? 0x60 : 0x20, 0, 0, 0] + Frames.ip6("fd00::2") + [2, 1] + Frames.mac(mac)
            return Frames.ethernet(dst: Self.ourMAC, src: mac, type: 0x86DD,
                                   payload: Frames.ipv6(src: "fd00::2", dst: "fd00::1", next: 58,
                                                        payload: Frames.icmp6(src: "fd00::2", dst: "fd00::1", type: 136, body: body), hopLimit: 255))
        }
        XCTAssertEqual(exchange(now: 0).count, 1, "solicited")
        _ = exchange(underlay: [advertisement(from: Self.remoteMAC, solicited: true)], now: 0.1)
        XCTAssertEqual(outerDestination(now: 0.2), Frames.mac(Self.remoteMAC))
        let out = exchange(underlay: [advertisement(from: Self.rogueMAC, solicited: false)], now: 2)
        XCTAssertEqual(out.count, 1, "re-probed")
        XCTAssertEqual(out.first.map { Array($0[54..<55]) }, [135])
        XCTAssertEqual(counter(.unsolicitedReplies), 1)
        XCTAssertEqual(counter(.neighborMACConflicts), 1)
        XCTAssertEqual(outerDestination(now: 2.1), Frames.mac(Self.remoteMAC))
    }
}
