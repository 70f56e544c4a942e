import Foundation
import XCTest
@testable import ControlProtocol

final class ControlProtocolTests: XCTestCase {
    func testRequestWireFormat() throws {
        let line = try JSONEncoder.control.encode(ControlRequest(id: 3, method: "show.stats", params: ["vni": "42"]))
        XCTAssertEqual(String(decoding: line, as: UTF8.self), #"{"id":3,"method":"show.stats","params":{"vni":"42"},"version":1}"#)
        let minimal = try JSONDecoder.control.decode(ControlRequest.self, from: Data(#"{"method":"ping"}"#.utf8))
        XCTAssertEqual(minimal, ControlRequest(id: 0, method: "ping"))
    }

    func testResponseCarriesResultAsANestedObject() throws {
        let result = try JSONEncoder.control.encode(["pong": "vxland"])
        let line = try ControlResponse.success(id: 5, result: result).encodeLine()
        XCTAssertEqual(String(decoding: line, as: UTF8.self), "{\"id\":5,\"ok\":true,\"result\":{\"pong\":\"vxland\"}}\n")
        let back = try ControlResponse.decodeLine(line.dropLast())
        XCTAssertEqual(back.id, 5)
        XCTAssertEqual(try JSONDecoder().decode([String: String].self, from: back.result!), ["pong": "vxland"])
        let failure = try ControlResponse.failure(id: 6, ControlFailure(code: "bad_params", message: "vni: not a number")).encodeLine()
        XCTAssertEqual(String(decoding: failure, as: UTF8.self),
                       "{\"error\":{\"code\":\"bad_params\",\"message\":\"vni: not a number\"},\"id\":6,\"ok\":false}\n")
    }

    func testStatsTotalsSumTheCores() throws {
        let core = { (lcore: UInt32, rx: UInt64, drops: UInt64) in
            StatsReport.Core(lcore: lcore, ports: [.init(port: "p0", counters: ["rx_packets": rx])],
                             pipeline: ["encapsulated": rx], drops: ["bad_flags": drops, "truncated": 1])
        }
        let report = StatsReport(uptimeSeconds: 1, cores: [core(1, 10, 2), core(2, 5, 0)])
        XCTAssertEqual(report.totals.ports[0].counters["rx_packets"], 15)
        XCTAssertEqual(report.totals.pipeline["encapsulated"], 15)
        XCTAssertEqual(report.totals.drops["bad_flags"], 2)
        XCTAssertEqual(report.totals.dropsTotal, 4)
        let text = Render.stats(report, perCore: true)
        XCTAssertTrue(text.contains("drops (4 total):\n  bad_flags  2\n  truncated  2\n"), text)
        XCTAssertTrue(text.contains("lcore 2:"), text)
        let json = String(decoding: try JSONEncoder.control.encode(report), as: UTF8.self)
        XCTAssertTrue(json.contains(#""drops_total":4"#), json)
        XCTAssertTrue(json.contains(#""uptime_seconds":1"#), json)
    }

    func testTableAlignsColumns() {
        XCTAssertEqual(Render.table([["A", "BB"], ["ccc", "d"]]), "A    BB\nccc  d\n")
    }
}
