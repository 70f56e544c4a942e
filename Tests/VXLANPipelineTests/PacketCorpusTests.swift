import DPDKTestSupport
import Foundation
import XCTest

/// The packet fuzzer's committed inputs (seeds and every input that once broke an invariant) replayed through
/// the same checks: no leak, nothing unaccounted for, every frame sent well formed.
final class PacketCorpusTests: XCTestCase {
    func testPacketCorpus() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus/packet").path
        let target = try PacketFuzzTarget()
        defer { target.harness.release() }
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus).sorted()
        XCTAssertGreaterThan(files.count, 10, "the seed corpus is missing")
        for file in files {
            let data = try XCTUnwrap(FileManager.default.contents(atPath: corpus + "/" + file))
            data.withUnsafeBytes { target.run($0) }
        }
        let (available, capacity) = target.harness.release()
        XCTAssertEqual(available, capacity)
    }
}
