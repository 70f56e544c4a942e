import ControlProtocol
import DPDKTestSupport
import Foundation
import PollMode
import Synchronization
import VTEPConfig
import XCTest
@testable import VXLANDaemon
@testable import VXLANPipeline

/// The plan from one configuration to another, made by the daemon's executor while a core polls: after each
/// step, what the cores really read (each VNI's published block: its access endpoints and flood tunnels, its
/// learning flag), the static FDB entries in the hash, the static neighbors and the ports' roles must be the
/// target configuration, read back without going through the configuration the tables keep for themselves.
/// A chain of random targets (seeded, `VXLAN_TEST_SEED`), each reached from the one before.
final class ConfigPlanExecutionTests: XCTestCase {
    static let vnis: [UInt32] = Array(100..<108)
    static let remotes = (2..<10).map { "10.99.0.\($0)" }

    /// A random configuration over the underlay and three access ports (each absent, untagged or tagged).
    static func random(_ g: inout SeededGenerator, underlay: String, access: [String]) -> String {
        func pick<T>(_ xs: [T]) -> T { xs[Int(g.next() % UInt64(xs.count))] }
        func subset<T>(_ xs: [T], max: Int) -> [T] {
            var out: [T] = []
            for x in xs where out.count < max && g.next() % 3 == 0 { out.append(x) }
            return out
        }
        var vnis = subset(vnis, max: 6)
        if vnis.isEmpty { vnis = [pick(Self.vnis)] }
        var lines = ["underlay: { port: \(underlay), ip: 10.99.0.1/24, mac: \"02:00:00:00:00:01\" }"]
        var accessLines: [String] = []
        for (i, port) in access.enumerated() {
            switch g.next() % 3 {
            case 0 where i > 0: continue
            case 1:
                let vlans = subset(Array(vnis.enumerated()), max: 3).map { "{ vlan: \(10 + $0.offset), vni: \($0.element) }" }
                if !vlans.isEmpty { accessLines.append("{ port: \(port), vlans: [\(vlans.joined(separator: ", "))] }"); continue }
                fallthrough
            default: accessLines.append("{ port: \(port), vni: \(pick(vnis)) }")
            }
        }
        lines.append("access: [\(accessLines.joined(separator: ", "))]")
        let segments = vnis.map { vni in
            "{ vni: \(vni), flood: [\(subset(remotes, max: 3).joined(separator: ", "))], learning: \(g.next() % 2 == 0), "
                + "ageing: \(pick([60, 300])), max_learned: \(pick([0, 100]))\(g.next() % 4 == 0 ? ", allowed_remotes: [10.99.0.0/28]" : "") }"
        }
        lines.append("vnis: [\(segments.joined(separator: ", "))]")
        let fdb = (0..<Int(g.next() % 5)).map { _ in
            "{ vni: \(pick(vnis)), mac: \"02:00:00:00:\(String(format: "%02x:%02x", g.next() % 4, g.next() % 4))\", remote: \(pick(remotes)) }"
        }
        var seenFDB = Set<String>()
        lines.append("fdb: [\(fdb.filter { seenFDB.insert(String($0.prefix(42))).inserted }.joined(separator: ", "))]")
        let neighbors = Set(subset(remotes, max: 3)).sorted().map { "{ ip: \($0), mac: \"02:00:00:00:01:0\(g.next() % 8)\" }" }
        lines.append("neighbors: [\(neighbors.joined(separator: ", "))]")
        lines.append("resources: { vnis: 16, tunnels: 256, ports: 4 }")
        return lines.joined(separator: "\n")
    }

    func testRandomPlansMadeByTheExecutorLeaveTheCoresReadingTheTarget() throws {
        try TestEAL.start()
        let u = try RingPort(), a = try RingPort(), b = try RingPort(), c = try RingPort()
        defer { [u, a, b, c].forEach { $0.destroy() } }
        var g = SeededGenerator.forTest("ConfigPlanExecutionTests")
        let seed = g.seed
        func draw() -> VTEPConfiguration {
            while true {
                if let parsed = try? ConfigParser.parse(Self.random(&g, underlay: u.name, access: [a.name, b.name, c.name])) {
                    return parsed
                }
            }
        }
        let first = draw()
        let dataplane = try Dataplane(configuration: first, lcores: [EAL.mainLcore])
        try dataplane.startPorts()
        defer { dataplane.stop() }
        // A core polls throughout, on a thread of its own: grace periods pass as they do in vxland.
        let stop = Atomic<Bool>(false)
        let box = UncheckedBox(dataplane)
        let core = TestThread(name: "core") { while !stop.load(ordering: .relaxed) { _ = box.value.pollOnce(); usleep(20) } }
        defer { stop.store(true, ordering: .relaxed); XCTAssertTrue(core.join()) }

        XCTAssertEqual(Self.observed(dataplane), Self.expected(first), "seed \(seed): the start")
        var steps = 0, changes = 0
        for step in 0..<60 {
            let target = draw()
            let plan = ConfigPlan(from: dataplane.configuration, to: target)
            XCTAssertEqual(plan.needsRestart, [], "seed \(seed) step \(step)")
            do {
                try dataplane.apply(plan.changes, origin: "test")
            } catch {
                XCTFail("seed \(seed) step \(step): \(error)\nplan: \(plan.changes)")
                return
            }
            let seen = Self.observed(dataplane), wanted = Self.expected(target)
            XCTAssertEqual(seen, wanted, "seed \(seed) step \(step): after \(plan.changes)")
            guard seen == wanted else { return }
            steps += 1
            changes += plan.changes.count
        }
        XCTAssertEqual(steps, 60)
        stop.store(true, ordering: .relaxed)
        XCTAssertTrue(core.join())
        for port in [u, a, b, c] { _ = port.drain(); port.discardReceived() }
        dataplane.stop()
        XCTAssertEqual(dataplane.pool.available, dataplane.pool.capacity, "mbufs leaked")
        XCTAssertGreaterThan(changes, 300, "too few changes to mean anything")
    }

    /// What a configuration says, in the terms observed() reads.
    struct State: Equatable, CustomStringConvertible {
        var vnis: [UInt32: String] = [:]
        var roles: [String: String] = [:]
        var fdb: Set<String> = []
        var neighbors: Set<String> = []
        var description: String { "vnis \(vnis.sorted { $0.key < $1.key })\nroles \(roles.sorted { $0.key < $1.key })\nfdb \(fdb.sorted())\nneighbors \(neighbors.sorted())" }
    }

    static func describe(vni: UInt32, learning: Bool, access: [String], flood: [String]) -> String {
        "learning \(learning) access \(access.sorted()) flood \(flood)"
    }

    static func expected(_ c: VTEPConfiguration) -> State {
        var s = State()
        for seg in c.vnis {
            var access: [String] = []
            for p in c.access {
                if p.vni == seg.vni { access.append(p.port) }
                for m in p.vlans where m.vni == seg.vni { access.append("\(p.port).\(m.vlan)") }
            }
            s.vnis[seg.vni] = describe(vni: seg.vni, learning: seg.learning, access: access, flood: seg.flood.map(\.description))
        }
        for p in c.access {
            s.roles[p.port] = p.vni.map { "vni \($0)" } ?? p.vlans.map { "\($0.vlan):\($0.vni)" }.sorted().joined(separator: ",")
        }
        s.fdb = Set(c.fdb.map { "\($0.vni) \($0.mac) remote \($0.remote)" })
        s.neighbors = Set(c.neighbors.map { "\($0.ip) \($0.mac)" })
        return s
    }

    /// Read from what the executor built: the published blocks, the hash, the neighbor table, the ports' roles.
    static func observed(_ d: Dataplane) -> State {
        var s = State()
        let names = d.ports.map(\.name)
        d.underlay.change { t in
            for vni in ConfigPlanExecutionTests.vnis {
                guard let slot = t.vniSlot(vni: vni) else { continue }
                let block = t.vniBlocks[slot].pointee
                let access = (0..<Int(block.accessCount)).map { i -> String in
                    let (port, vlan) = t.endpoint(Int(block.access(i)))
                    return port >= 0 && port < names.count ? names[port] + (vlan == 0 ? "" : ".\(vlan)") : "port \(port)"
                }
                let flood = (0..<Int(block.floodCount)).map { t.tunnels[Int(block.floodTunnel($0))].remote.description }
                s.vnis[block.vni] = describe(vni: block.vni, learning: block.learning, access: access, flood: flood)
            }
            for (index, role) in t.roles.enumerated() where index < names.count {
                switch role {
                case .access(let v): s.roles[names[index]] = "vni \(v)"
                case .tagged(let list): s.roles[names[index]] = list.map { "\($0.vlan):\($0.vni)" }.sorted().joined(separator: ",")
                case .underlay, .detached: break
                }
            }
            for item in t.fdbEntries() where item.entry.isStatic {
                guard case .tunnel(let tunnel) = item.entry.target else { s.fdb.insert("\(item.entry.vni) \(item.entry.mac) local?"); continue }
                s.fdb.insert("\(item.entry.vni) \(item.entry.mac) remote \(t.tunnels[tunnel].remote)")
            }
        }
        for n in d.neighborsReport().neighbors where n.state == "permanent" { s.neighbors.insert("\(n.ip) \(n.mac ?? "?")") }
        return s
    }
}

private struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
