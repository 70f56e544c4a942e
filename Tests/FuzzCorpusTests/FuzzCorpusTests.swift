import Foundation
import XCTest
import FuzzTargets

/// Every committed fuzz input — the seeds and each input that once broke an invariant — replayed through the
/// same checks the fuzzers run. A regression stops the test process with the invariant that broke.
final class FuzzCorpusTests: XCTestCase {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz/corpus").path

    func testConfigurationCorpus() {
        let n = FuzzTargets.replay([Self.corpus + "/config"], through: FuzzTargets.configuration)
        XCTAssertGreaterThan(n, 10, "the seed corpus is missing")
    }

    func testControlSessionCorpus() {
        let n = FuzzTargets.replay([Self.corpus + "/control"], through: FuzzTargets.controlSession)
        XCTAssertGreaterThan(n, 10, "the seed corpus is missing")
    }
}
