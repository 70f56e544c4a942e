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

    /// The seed of frames read through tap ports reaches the pipeline as the header says: the VM's GSO frame goes
    /// to the NIC model whole (tunnel TSO), the remote's tunnel GSO frame is decapsulated and cut for the VM.
    func testTapSeedCrossesWithItsOffloads() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus/packet/tap-gso-both-ways").path
        let target = try PacketFuzzTarget()
        defer { target.harness.release() }
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path))
        data.withUnsafeBytes { target.run($0) }
        XCTAssertEqual(target.hardware.pipeline(.hardwareTSO), 1)
        XCTAssertEqual(target.harness.pipeline(.framesSegmented), 2, "software path: one frame each way cut")
        XCTAssertEqual(target.harness.totalDrops, 0)
    }
}
