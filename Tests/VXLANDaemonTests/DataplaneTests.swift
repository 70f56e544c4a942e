import ControlProtocol
import DPDKTestSupport
import Foundation
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANDaemon

/// The assembled dataplane, configured from YAML like vxland is, on net_ring ports.
final class DataplaneTests: XCTestCase {
    func config(underlay: String, access: [String]) throws -> VTEPConfiguration {
        try ConfigParser.parse("""
            underlay: { port: \(underlay), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access: [\(access.enumerated().map { "{ port: \($0.element), vni: \(42 + $0.offset) }" }.joined(separator: ", "))]
            vnis: [\(access.indices.map { "{ vni: \(42 + $0), flood: [10.99.0.2] }" }.joined(separator: ", "))]
            fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            """)
    }

    func testForwardsBothWaysAndReportsEveryCounter() throws {
        try TestEAL.start()
        let u = try RingPort(), a = try RingPort(), b = try RingPort()
        defer { u.destroy(); a.destroy(); b.destroy() }
        let dataplane = try Dataplane(configuration: try config(underlay: u.name, access: [a.name, b.name]), lcores: [EAL.mainLcore])
        try dataplane.startPorts()

        let toRemote = Frames.innerUDP(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01", size: 64)
        let fromRemote43 = Frames.innerUDP(dst: "02:00:00:00:43:01", src: "02:00:00:00:43:02", size: 80)
        a.inject([Mbuf.make(toRemote, pool: dataplane.pool)])
        u.inject([Mbuf.make(Frames.vxlanPacket(vni: 43, inner: fromRemote43), pool: dataplane.pool),
                  Mbuf.make(Frames.vxlanPacket(vni: 99, inner: fromRemote43), pool: dataplane.pool)])
        dataplane.pollOnce()
        XCTAssertEqual(u.drain().count, 1)
        XCTAssertEqual(a.drain(), [], "VNI 43 belongs to the second access port")
        XCTAssertEqual(b.drain(), [fromRemote43])

        let stats = dataplane.statsReport()
        XCTAssertEqual(stats.cores.count, 1)
        XCTAssertEqual(stats.totals.pipeline["encapsulated"], 1)
        XCTAssertEqual(stats.totals.pipeline["decapsulated"], 1)
        XCTAssertEqual(stats.totals.drops["unknown_vni"], 1)
        XCTAssertEqual(stats.totals.dropsTotal, 1)
        XCTAssertEqual(stats.totals.ports.map(\.port), [u.name, a.name, b.name])
        XCTAssertEqual(stats.totals.ports[0].counters["rx_packets"], 2)
        XCTAssertEqual(stats.totals.ports[0].counters["tx_packets"], 1)
        XCTAssertEqual(stats.totals.ports[0].counters["tx_bytes"], 114)
        XCTAssertEqual(stats.totals.ports[1].counters["rx_packets"], 1)
        XCTAssertEqual(stats.totals.ports[2].counters["tx_packets"], 1)
        XCTAssertEqual(stats.totals.ports[2].counters["tx_bytes"], 80)

        let ports = dataplane.portsReport().ports
        XCTAssertEqual(ports.map(\.role), ["underlay", "access", "access"])
        XCTAssertEqual(ports.map(\.vni), [nil, 42, 43])
        XCTAssertEqual(ports[0].mac, "02:00:00:00:00:01")
        XCTAssertEqual(ports[0].ip, "10.99.0.1/24")
        XCTAssertEqual(ports[0].hardware["rx_packets"], 2, "the driver's own count agrees")

        dataplane.stop()
        XCTAssertEqual(dataplane.pool.available, dataplane.pool.capacity, "mbufs leaked")
    }

    /// Two polling cores: each reads and sends on its own queue of every port, counts on its own, and the
    /// slow path's RCU publication waits for both.
    func testTwoPollingCoresEachOwnTheirQueues() throws {
        try TestEAL.start()
        let u = try RingPort(queues: 2), a = try RingPort(queues: 2)
        defer { u.destroy(); a.destroy() }
        let dataplane = try Dataplane(configuration: try config(underlay: u.name, access: [a.name]), lcores: [0, 1])
        try dataplane.startPorts()
        let inner = Frames.innerUDP(dst: "02:00:00:00:42:02", src: "02:00:00:00:42:01")
        a.inject((0..<3).map { _ in Mbuf.make(inner, pool: dataplane.pool) }, queue: 0)
        a.inject((0..<5).map { _ in Mbuf.make(inner, pool: dataplane.pool) }, queue: 1)
        dataplane.pollOnce()
        XCTAssertEqual(u.drain(queue: 0).count, 3, "core 0 sends on queue 0")
        XCTAssertEqual(u.drain(queue: 1).count, 5, "core 1 sends on queue 1")
        let stats = dataplane.statsReport()
        XCTAssertEqual(stats.cores.map { $0.ports[1].counters["rx_packets"] }, [3, 5])
        XCTAssertEqual(stats.totals.ports[1].counters["rx_packets"], 8)
        XCTAssertEqual(stats.totals.pipeline["encapsulated"], 8)

        // A header copy is reused only once both cores passed a quiescent state.
        let tables = dataplane.tables
        XCTAssertTrue(tables.publish(mac: MACAddress("02:00:00:00:00:0a"), tunnel: 0))
        XCTAssertFalse(tables.publish(mac: MACAddress("02:00:00:00:00:0b"), tunnel: 0))
        dataplane.pollOnce()                                        // both cores: one round each
        XCTAssertTrue(tables.publish(mac: MACAddress("02:00:00:00:00:0b"), tunnel: 0))

        dataplane.stop()
        XCTAssertEqual(dataplane.pool.available, dataplane.pool.capacity, "mbufs leaked")
    }

    func testAPortThatDoesNotExistIsNamed() throws {
        try TestEAL.start()
        let u = try RingPort()
        defer { u.destroy() }
        XCTAssertThrowsError(try Dataplane(configuration: try config(underlay: u.name, access: ["net_ring_nosuch"]), lcores: [EAL.mainLcore])) {
            XCTAssertTrue("\($0)".hasPrefix("access[0].port: no DPDK port named 'net_ring_nosuch'; ports present: "), "\($0)")
            XCTAssertTrue("\($0)".contains(u.name), "\($0)")
        }
    }

    func testMorePollingCoresThanQueuesIsRefused() throws {
        try TestEAL.start()
        let u = try RingPort(), a = try RingPort()
        defer { u.destroy(); a.destroy() }
        XCTAssertThrowsError(try Dataplane(configuration: try config(underlay: u.name, access: [a.name]), lcores: [0, 1])) {
            XCTAssertTrue("\($0)".contains("supports 1 RX and 1 TX queue(s); 2 polling core(s) need one each"), "\($0)")
        }
    }
}

final class ControlServerTests: XCTestCase {
    func testRequestsAnswersAndErrorsOverTheSocket() throws {
        try TestEAL.start()
        let u = try RingPort(), a = try RingPort()
        defer { u.destroy(); a.destroy() }
        let dataplane = try Dataplane(configuration: try ConfigParser.parse("""
            underlay: { port: \(u.name), ip: 10.99.0.1/24 }
            access: [ { port: \(a.name), vni: 42 } ]
            vnis: [ { vni: 42 } ]
            """), lcores: [EAL.mainLcore])
        defer { dataplane.stop() }
        let path = NSTemporaryDirectory() + "vxctl-\(getpid()).sock"
        let server = try ControlServer(path: path, logger: .init(label: "test")) { try ControlMethods.handle($0, dataplane: dataplane) }
        server.start()

        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600, "the control socket is root-only")
        XCTAssertThrowsError(try ControlServer(path: path, logger: .init(label: "test")) { _ in Data() }) {
            XCTAssertEqual("\($0)", "another vxland is already listening on \(path)")
        }

        let client = try ControlClient(path: path)
        let stats = try client.call("show.stats", as: StatsReport.self)
        XCTAssertEqual(stats.totals.ports.map(\.port), [u.name, a.name])
        let ports = try client.call("show.ports", as: PortsReport.self)
        XCTAssertEqual(ports.ports.map(\.name), [u.name, a.name])
        XCTAssertThrowsError(try client.call("show.nothing")) {
            XCTAssertEqual(($0 as? ControlFailure)?.code, "unknown_method")
            XCTAssertTrue("\($0)".contains("unknown method 'show.nothing'"))
        }

        // A malformed line gets an error answer and the connection stays usable.
        let fd = try UnixSocket.connect(path: path)
        defer { close(fd) }
        var reader = LineReader(fd: fd)
        XCTAssertTrue(UnixSocket.writeAll(fd, Data("this is not json\n".utf8)))
        let bad = try ControlResponse.decodeLine(reader.next()!)
        XCTAssertFalse(bad.ok)
        XCTAssertEqual(bad.error?.code, "bad_request")
        XCTAssertTrue(UnixSocket.writeAll(fd, Data(#"{"id":7,"method":"ping","version":99}"#.utf8 + [10])))
        XCTAssertEqual(try ControlResponse.decodeLine(reader.next()!).error?.code, "unsupported_version")
        XCTAssertTrue(UnixSocket.writeAll(fd, Data(#"{"id":8,"method":"ping"}"#.utf8 + [10])))
        let pong = try ControlResponse.decodeLine(reader.next()!)
        XCTAssertTrue(pong.ok)
        XCTAssertEqual(pong.id, 8)

        server.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "socket file removed on stop")
    }
}
