import Foundation
import XCTest
@testable import ControlProtocol

final class LineBufferTests: XCTestCase {
    func testLinesAcrossChunksAndTheLimit() {
        var buffer = LineBuffer(maxLine: 8)
        buffer.append(Array("ab".utf8))
        XCTAssertEqual(buffer.next(), .incomplete)
        buffer.append(Array("c\nde\n\nfgh".utf8))
        XCTAssertEqual(buffer.next(), .line(Array("abc".utf8)))
        XCTAssertEqual(buffer.next(), .line(Array("de".utf8)))
        XCTAssertEqual(buffer.next(), .line([]))
        XCTAssertEqual(buffer.next(), .incomplete)
        XCTAssertEqual(buffer.pending, 3)
        buffer.append(Array("12345".utf8))           // 8 bytes, no newline: still allowed
        XCTAssertEqual(buffer.next(), .incomplete)
        buffer.append(Array("\n".utf8))
        XCTAssertEqual(buffer.next(), .line(Array("fgh12345".utf8)))
        buffer.append(Array("123456789".utf8))       // 9 bytes without a newline: over the limit
        XCTAssertEqual(buffer.next(), .tooLong)
    }

    /// Random chunkings of random lines give back exactly the lines (seeded; VXLAN_TEST_SEED reruns one).
    func testRandomChunkingIsLossless() {
        let seed = UInt64(ProcessInfo.processInfo.environment["VXLAN_TEST_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("LineBufferTests seed \(seed) (rerun with VXLAN_TEST_SEED=\(seed))")
        var rng = SplitMix64(seed: seed)
        for _ in 0..<50 {
            let lines: [[UInt8]] = (0..<Int(rng.next() % 40)).map { _ in
                (0..<Int(rng.next() % 300)).map { _ in UInt8(32 + rng.next() % 200) }
            }
            let stream: [UInt8] = lines.flatMap { $0 + [UInt8(10)] }
            var buffer = LineBuffer(maxLine: 300)
            var out: [[UInt8]] = []
            var i = 0
            while i < stream.count {
                let n = min(stream.count - i, 1 + Int(rng.next() % 700))
                buffer.append(Array(stream[i..<i + n]))
                i += n
                while case .line(let l) = buffer.next() { out.append(l) }
            }
            XCTAssertTrue(out == lines, "lines lost or changed; seed \(seed)")
        }
    }
}

final class SessionTests: XCTestCase {
    func session(_ maxRequest: Int = 1024) -> ControlSession {
        ControlSession(maxRequest: maxRequest) { request in
            if request.method == "fail" { throw ControlFailure(code: "bad_params", message: "nope") }
            return try JSONEncoder.control.encode(["echo": request.method])
        }
    }

    func responses(_ bytes: [UInt8]) throws -> [ControlResponse] {
        try bytes.split(separator: 10).map { try ControlResponse.decodeLine(Data($0)) }
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        var s = session()
        let out = s.consume(Array(#"{"id":1,"method":"a"}"#.utf8) + [10] + Array("\r\n  \n".utf8) + Array(#"{"id":2,"method":"fail"}"#.utf8) + [10]
                            + Array(#"{"id":3,"me"#.utf8))
        let answers = try responses(out)
        XCTAssertEqual(answers.map(\.id), [1, 2])
        XCTAssertEqual(answers[0].result.map { String(decoding: $0, as: UTF8.self) }, #"{"echo":"a"}"#)
        XCTAssertEqual(answers[1].error, ControlFailure(code: "bad_params", message: "nope"))
        let rest = try responses(s.consume(Array(#"thod":"b"}"#.utf8) + [10]))
        XCTAssertEqual(rest.map(\.id), [3])
    }

    func testGarbageGetsAnErrorAndTheSessionGoesOn() throws {
        var s = session()
        let answers = try responses(s.consume(Array("not json\n{\"method\":5}\n[1,2]\n{\"id\":4,\"method\":\"x\",\"version\":7}\n".utf8)))
        XCTAssertEqual(answers.map { $0.error?.code }, ["bad_request", "bad_request", "bad_request", "unsupported_version"])
        XCTAssertTrue(answers[0].error!.message.contains("not valid JSON"), answers[0].error!.message)
        XCTAssertTrue(answers[1].error!.message.contains("method: wrong type"), answers[1].error!.message)
        XCTAssertFalse(s.finished)
    }

    func testOversizedRequestIsAnsweredThenTheSessionEnds() throws {
        var s = session(100)
        let big = [UInt8](repeating: UInt8(ascii: "x"), count: 150)
        let answers = try responses(s.consume(big))
        XCTAssertEqual(answers.map { $0.error?.code }, ["request_too_large"])
        XCTAssertEqual(answers[0].error?.message, "request exceeds 100 bytes without a newline; closing the connection")
        XCTAssertTrue(s.finished)
        XCTAssertEqual(s.consume(Array(#"{"method":"a"}"#.utf8) + [10]), [], "nothing more is answered")
    }
}

/// A small seeded generator, so random tests can be rerun exactly.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
