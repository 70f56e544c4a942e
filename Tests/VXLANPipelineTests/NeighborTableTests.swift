import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// The neighbor state machine on plain values: no EAL, rings or mbufs.
final class NeighborTableTests: XCTestCase {
    let hop = IPAddress.v4(IPv4Address("10.99.0.2")!)
    let mac = MACAddress("02:00:00:00:00:02")!
    let other = MACAddress("02:00:00:00:00:66")!

    func testResolvesWithBackOffThenConfirmsAndExpires() {
        var table = NeighborTable(timeout: 300)
        table.track(hop)
        // Asked at once, then after 1, 2, 4 s.
        XCTAssertEqual(table.round(now: 0).solicit, [hop])
        XCTAssertEqual(table.round(now: 0.5).solicit, [])
        XCTAssertEqual(table.round(now: 1).solicit, [hop])
        XCTAssertEqual(table.round(now: 2.5).solicit, [])
        XCTAssertEqual(table.round(now: 3).solicit, [hop])
        // The answer to our request resolves it; nothing is due until the timeout.
        XCTAssertEqual(table.confirm(hop, mac: mac, isReply: true, now: 4), .init(claim: .accepted, changed: true))
        XCTAssertEqual(table.mac(hop), mac)
        XCTAssertEqual(table.round(now: 200).solicit, [])
        // Probed after the timeout, still in use; expired after three unanswered probes.
        XCTAssertEqual(table.round(now: 304).solicit, [hop])
        XCTAssertEqual(table.round(now: 305).solicit, [hop])
        XCTAssertEqual(table.round(now: 307).solicit, [hop])
        XCTAssertEqual(table.mac(hop), mac)
        let expiry = table.round(now: 311)
        XCTAssertEqual(expiry.expired, [hop])
        XCTAssertEqual(expiry.solicit, [hop])
        XCTAssertNil(table.mac(hop))
    }

    /// Before it is resolved, a next hop's MAC is taken only from an answer to our own request: a forged reply or
    /// the address's own request cannot choose where its tunnels will point; they make us ask at once instead.
    func testAnUnresolvedAddressTakesItsMACOnlyFromAnAnswerToUs() {
        var table = NeighborTable(timeout: 300)
        table.track(hop)
        XCTAssertEqual(table.round(now: 0).solicit, [hop])
        // 10 s after our only request, beyond the reply window, a reply arrives that nobody asked for.
        XCTAssertEqual(table.confirm(hop, mac: other, isReply: true, now: 10), .init(claim: .prompted, unsolicited: true))
        XCTAssertNil(table.mac(hop))
        // A request from the address naming its MAC: not taken either.
        XCTAssertEqual(table.confirm(hop, mac: other, isReply: false, now: 10), .init(claim: .prompted))
        XCTAssertNil(table.mac(hop))
        // Both made us ask now, not at the next back-off step; the answer to that request resolves it.
        XCTAssertEqual(table.round(now: 10).solicit, [hop])
        XCTAssertEqual(table.confirm(hop, mac: mac, isReply: true, now: 10.2), .init(claim: .accepted, changed: true))
        XCTAssertEqual(table.mac(hop), mac)
    }

    func testAConflictingClaimDoesNotMoveAResolvedMAC() {
        var table = NeighborTable(timeout: 300)
        table.track(hop)
        _ = table.round(now: 0)
        _ = table.confirm(hop, mac: mac, isReply: true, now: 0.1)
        // An unsolicited reply naming another MAC: ignored, counted as unsolicited, and the address asked again.
        XCTAssertEqual(table.confirm(hop, mac: other, isReply: true, now: 10), .init(claim: .conflict, unsolicited: true))
        XCTAssertEqual(table.mac(hop), mac)
        XCTAssertEqual(table.round(now: 10).solicit, [hop])
        // The answer to that request may change it.
        XCTAssertEqual(table.confirm(hop, mac: other, isReply: true, now: 10.5), .init(claim: .accepted, changed: true))
        XCTAssertEqual(table.mac(hop), other)
    }

    func testStaticAndUntrackedAddressesAreNeverAskedOrChanged() {
        var table = NeighborTable(timeout: 300)
        table.addStatic(hop, mac: mac)
        XCTAssertEqual(table.round(now: 0).solicit, [])
        XCTAssertEqual(table.confirm(hop, mac: other, isReply: true, now: 1).claim, .untracked)
        XCTAssertEqual(table.mac(hop), mac)
        XCTAssertEqual(table.confirm(.v4(IPv4Address("10.99.0.9")!), mac: other, isReply: true, now: 1).claim, .untracked)
    }

    func testTheRateLimitHoldsRequestsBackOldestFirst() {
        var table = NeighborTable(timeout: 300)
        let hops = (1...40).map { IPAddress.v4(IPv4Address(UInt32(0x0A63_0000 + $0))) }
        for h in hops { table.track(h) }
        let first = table.round(now: 0)
        XCTAssertEqual(first.solicit.count, Int(UnderlayControl.solicitationBurst))
        XCTAssertEqual(first.rateLimited, hops.count - Int(UnderlayControl.solicitationBurst))
        // A quarter of a second later the bucket is full again: held-back ones go first, none is counted twice.
        let next = table.round(now: 0.25)
        XCTAssertEqual(next.solicit.count, Int(UnderlayControl.solicitationBurst))
        XCTAssertEqual(next.rateLimited, 0)
        XCTAssertTrue(Set(next.solicit).isDisjoint(with: Set(first.solicit)))
    }
}
