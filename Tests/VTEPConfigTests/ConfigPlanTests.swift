import XCTest
@testable import VTEPConfig

/// `ConfigPlan`: the changes from one configuration to another, in an order that never refers to something
/// missing, each with an inverse; what needs a restart is named.
final class ConfigPlanTests: XCTestCase {
    static let base = """
        underlay: { port: net_ring0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
        access:
          - { port: net_ring1, vni: 100 }
          - { port: net_ring2, vlans: [ { vlan: 10, vni: 100 }, { vlan: 20, vni: 200 } ] }
          - { port: net_vhost0, vni: 200, vhost: { socket: /run/vm0.sock } }
        vnis:
          - { vni: 100, flood: [10.99.0.2, 10.99.0.3] }
          - { vni: 200, flood: [10.99.0.2] }
          - { vni: 300, flood: [] }
        fdb:
          - { vni: 100, mac: "02:00:00:00:0a:01", remote: 10.99.0.2 }
          - { vni: 300, mac: "02:00:00:00:0a:02", remote: 10.99.0.3 }
        neighbors:
          - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
        """

    func parse(_ text: String) throws -> VTEPConfiguration { try ConfigParser.parse(text) }

    func testTheOrderNeverRefersToSomethingMissing() throws {
        let a = try parse(Self.base)
        // VNI 300 goes (with its entry), 400 comes; net_ring1 moves to 400, net_ring2 goes, net_ring3 comes; VNI 100
        // changes its flood list; the neighbor's MAC changes; an entry changes its remote; the vhost port's socket.
        let b = try parse("""
            underlay: { port: net_ring0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access:
              - { port: net_ring1, vni: 400 }
              - { port: net_vhost0, vni: 200, vhost: { socket: /run/vm0b.sock } }
              - { port: net_ring3, vni: 400 }
            vnis:
              - { vni: 100, flood: [10.99.0.3, 10.99.0.4] }
              - { vni: 200, flood: [10.99.0.2] }
              - { vni: 400, flood: [10.99.0.5], learning: false }
            fdb:
              - { vni: 100, mac: "02:00:00:00:0a:01", remote: 10.99.0.4 }
              - { vni: 400, mac: "02:00:00:00:0a:03", remote: 10.99.0.5 }
            neighbors:
              - { ip: 10.99.0.2, mac: "02:00:00:00:00:22" }
            """)
        let plan = ConfigPlan(from: a, to: b)
        XCTAssertEqual(plan.needsRestart, [])
        XCTAssertEqual(plan.changes.map(\.description), [
            "detach port net_ring2",
            "detach port net_vhost0",
            "unmap port net_ring1",
            "fdb del vni 100 02:00:00:00:0a:01",
            "fdb del vni 300 02:00:00:00:0a:02",
            "vni del 300",
            "neighbor del 10.99.0.2",
            "neighbor add 10.99.0.2 02:00:00:00:00:22",
            "vni add 400 flood 10.99.0.5 learning false",
            "vni 100: flood add 10.99.0.4; flood del 10.99.0.2",
            "fdb add vni 100 02:00:00:00:0a:01 remote 10.99.0.4",
            "fdb add vni 400 02:00:00:00:0a:03 remote 10.99.0.5",
            "map port net_ring1 vni 400",
            "attach port net_vhost0 vni 200",
            "attach port net_ring3 vni 400",
        ])
        XCTAssertTrue(Self.same(ConfigPlan.applying(plan.changes, to: a), b))
        XCTAssertTrue(Self.same(ConfigPlan.applying(plan.changes.reversed().map(\.inverse), to: b), a))
        XCTAssertEqual(ConfigPlan(from: b, to: b), ConfigPlan())
    }

    func testWhatNeedsARestartIsNamed() throws {
        let a = try parse(Self.base)
        let b = try parse(Self.base.replacingOccurrences(of: "ip: 10.99.0.1/24", with: "ip: 10.99.0.1/24, mtu: 9000")
            .replacingOccurrences(of: "{ port: net_ring1, vni: 100 }", with: "{ port: net_ring1, vni: 100, offloads: software }")
            + "\nresources: { tunnels: 128 }\n")
        XCTAssertEqual(ConfigPlan(from: a, to: b).needsRestart,
                       ["underlay.mtu", "resources", "access port net_ring1: offloads auto -> software"])
        let c = try parse(Self.base.replacingOccurrences(of: "net_ring0, ip: 10.99.0.1/24", with: "net_ring9, ip: 10.99.0.7/24"))
        XCTAssertEqual(ConfigPlan(from: a, to: c).needsRestart, ["underlay.port (net_ring0 -> net_ring9)", "underlay.ip"])
    }

    /// Random valid configurations, each changed at random (VNIs dropped, flood lists and settings changed, ports
    /// remapped or dropped, entries and neighbors dropped or moved): the plan makes the one into the other, and its
    /// inverses, in reverse, make it back. Seeded (`VXLAN_TEST_SEED`), the seed printed on failure.
    func testRandomPlansMakeOneConfigurationIntoTheOtherAndBack() throws {
        let base = ProcessInfo.processInfo.environment["VXLAN_TEST_SEED"].flatMap(UInt64.init) ?? 0x5EED_C0DE
        var checked = 0
        for i in 0..<400 {
            let seed = base &+ UInt64(i)
            let a = RandomConfiguration.make(seed: seed)
            var g = SplitMix64(state: seed ^ 0xABCD)
            let b = Self.mutate(a, &g)
            guard (try? ConfigParser.parse(ConfigWriter.yaml(b))) != nil else { continue }
            let plan = ConfigPlan(from: a, to: b)
            XCTAssertEqual(plan.needsRestart, [], "seed \(seed)")
            XCTAssertTrue(Self.same(ConfigPlan.applying(plan.changes, to: a), b), "seed \(seed): the plan does not reach the target")
            XCTAssertTrue(Self.same(ConfigPlan.applying(plan.changes.reversed().map(\.inverse), to: b), a), "seed \(seed): the inverses do not come back")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 200, "too few mutated configurations were valid")
    }

    /// Equal up to the order of lists (the tables keep objects, not file positions).
    static func same(_ x: VTEPConfiguration, _ y: VTEPConfiguration) -> Bool {
        x.underlay == y.underlay && x.resources == y.resources
            && Dictionary(x.vnis.map { ($0.vni, "\($0)") }, uniquingKeysWith: { a, _ in a })
                == Dictionary(y.vnis.map { ($0.vni, "\($0)") }, uniquingKeysWith: { a, _ in a })
            && Set(x.fdb.map { "\($0)" }) == Set(y.fdb.map { "\($0)" }) && x.fdb.count == y.fdb.count
            && Set(x.neighbors.map { "\($0)" }) == Set(y.neighbors.map { "\($0)" })
            && Dictionary(x.access.map { ($0.port, "\($0)") }, uniquingKeysWith: { a, _ in a })
                == Dictionary(y.access.map { ($0.port, "\($0)") }, uniquingKeysWith: { a, _ in a })
    }

    static func mutate(_ a: VTEPConfiguration, _ g: inout SplitMix64) -> VTEPConfiguration {
        func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &g) < p }
        var b = a
        var segments = b.vnis
        let remotes = a.remotes
        // Drop some VNIs (and whatever names them).
        let dropped = Set(segments.filter { _ in chance(0.2) }.map(\.vni))
        segments.removeAll { dropped.contains($0.vni) }
        b.fdb.removeAll { dropped.contains($0.vni) }
        b.access.removeAll { p in dropped.contains(p.vni ?? 0) || p.vlans.contains { dropped.contains($0.vni) } }
        // Change flood lists and settings.
        for i in segments.indices {
            if chance(0.3) { segments[i].flood.shuffle(using: &g) }
            if chance(0.3), !segments[i].flood.isEmpty { segments[i].flood.removeLast() }
            if chance(0.3), let r = remotes.randomElement(using: &g), !segments[i].flood.contains(r) { segments[i].flood.append(r) }
            if chance(0.2) { segments[i].learning.toggle() }
            if chance(0.2) { segments[i].ageing = Int.random(in: 10...1000, using: &g) }
        }
        b.vnis = segments
        // Remap or drop ports.
        let vnis = segments.map(\.vni)
        b.access = b.access.compactMap { p in
            if chance(0.15) { return nil }
            var q = p
            if chance(0.3), q.vni != nil, let v = vnis.randomElement(using: &g) { q.vni = v }
            return q
        }
        // Entries and neighbors.
        b.fdb = b.fdb.compactMap { e in
            if chance(0.2) { return nil }
            var f = e
            if chance(0.2), let r = remotes.randomElement(using: &g) { f.remote = r }
            return f
        }
        b.neighbors = b.neighbors.filter { _ in !chance(0.3) }
        return b
    }
}
