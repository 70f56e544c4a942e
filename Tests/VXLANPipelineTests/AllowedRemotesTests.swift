import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// `allowed_remotes`: VXLAN from a source outside the VNI's list (or the global one) is dropped under its own
/// reason before any lookup or learning; a VNI's static remotes are always allowed.
final class AllowedRemotesTests: XCTestCase {
    var h: PipelineHarness!

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    func build(_ vnis: String, global: String = "") throws {
        h = try PipelineHarness(accessPorts: 2) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01"\(global) }
            access: [ { port: \(names[1]), vni: 42 }, { port: \(names[2]), vni: 43 } ]
            vnis: \(vnis)
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:06" } ]
            """ }
    }

    /// A VXLAN frame from `source` for `vni`, whose inner source is `mac`.
    func frame(from source: String, vni: Int, mac: String) -> [UInt8] {
        let inner = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: mac)
        return source.contains(":") ? Frames.vxlanPacket6(srcIP: source, vni: vni, inner: inner)
                                    : Frames.vxlanPacket(srcIP: source, vni: vni, inner: inner)
    }

    func delivered(_ frames: [[UInt8]]) -> [[[UInt8]]] { h.run([0: frames], now: 1) }

    func testAVNIsOwnListDecidesAndItsStaticRemotesAreAlwaysAllowed() throws {
        try build("""
            [ { vni: 42, flood: [10.99.0.2, "fd00::2"], allowed_remotes: [10.99.0.0/28, "fd00::/120"] },
              { vni: 43, flood: [10.99.0.2], allowed_remotes: [] } ]
            """)
        let out = delivered([
            frame(from: "10.99.0.5", vni: 42, mac: "02:00:00:00:05:01"),     // inside 10.99.0.0/28
            frame(from: "10.99.0.100", vni: 42, mac: "02:00:00:00:05:02"),   // outside: dropped
            frame(from: "fd00::7", vni: 42, mac: "02:00:00:00:05:03"),       // inside fd00::/120
            frame(from: "fd00::1:7", vni: 42, mac: "02:00:00:00:05:04"),     // outside: dropped
            frame(from: "10.99.0.2", vni: 43, mac: "02:00:00:00:05:05"),     // VNI 43 allows its static remote only
            frame(from: "10.99.0.5", vni: 43, mac: "02:00:00:00:05:06"),     // ...and nobody else
        ])
        XCTAssertEqual(out[1].count, 2, "VNI 42's port gets the two allowed frames")
        XCTAssertEqual(out[2].count, 1, "VNI 43's port gets its static remote's frame")
        XCTAssertEqual(h.drops(.remoteNotAllowed), 3)
        XCTAssertEqual(h.pipeline(.decapsulated), 3)
        // Nothing was learned from the refused frames.
        let learned = Set(h.tables.fdbEntries().map(\.entry.mac.description))
        XCTAssertTrue(learned.isSuperset(of: ["02:00:00:00:05:01", "02:00:00:00:05:03", "02:00:00:00:05:05"]), "\(learned)")
        XCTAssertTrue(learned.isDisjoint(with: ["02:00:00:00:05:02", "02:00:00:00:05:04", "02:00:00:00:05:06"]), "\(learned)")
    }

    func testTheGlobalListAppliesToVNIsWithoutTheirOwn() throws {
        try build("""
            [ { vni: 42, flood: [10.99.0.2] }, { vni: 43, flood: [10.99.0.2], allowed_remotes: [10.99.0.0/24] } ]
            """, global: ", allowed_remotes: [10.99.0.16/28]")
        let out = delivered([
            frame(from: "10.99.0.20", vni: 42, mac: "02:00:00:00:06:01"),    // global list: allowed
            frame(from: "10.99.0.5", vni: 42, mac: "02:00:00:00:06:02"),     // global list: refused
            frame(from: "10.99.0.2", vni: 42, mac: "02:00:00:00:06:03"),     // static remote of 42: allowed
            frame(from: "10.99.0.5", vni: 43, mac: "02:00:00:00:06:04"),     // 43's own list: allowed
            frame(from: "fd00::2", vni: 42, mac: "02:00:00:00:06:05"),       // not in the global list, not static in 42
        ])
        XCTAssertEqual(out[1].count, 2)
        XCTAssertEqual(out[2].count, 1)
        XCTAssertEqual(h.drops(.remoteNotAllowed), 2)
        // Repeats hit the per-core VNI cache and the last-VNI path: the decision is the same.
        let again = delivered((0..<40).map { i in frame(from: i % 2 == 0 ? "10.99.0.20" : "10.99.0.5", vni: 42, mac: "02:00:00:00:06:01") })
        XCTAssertEqual(again[1].count, 20)
        XCTAssertEqual(h.drops(.remoteNotAllowed), 22)
    }

    func testWithoutAListEverySourceIsAllowed() throws {
        try build("[ { vni: 42, flood: [10.99.0.2] }, { vni: 43 } ]")
        let out = delivered([frame(from: "10.99.0.77", vni: 42, mac: "02:00:00:00:07:01"), frame(from: "fd00::99", vni: 43, mac: "02:00:00:00:07:02")])
        XCTAssertEqual(out[1].count + out[2].count, 2)
        XCTAssertEqual(h.drops(.remoteNotAllowed), 0)
    }
}
