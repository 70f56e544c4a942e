import Foundation

/// A reproducible random source for randomized tests (SplitMix64). The seed comes from `VXLAN_TEST_SEED` when
/// set, otherwise it is drawn at random; either way it is printed so that a failing run can be repeated.
public struct SeededGenerator: RandomNumberGenerator {
    public let seed: UInt64
    private var state: UInt64

    public init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    /// The generator for test `name`, seeded from the environment (or at random), its seed printed.
    public static func forTest(_ name: String) -> SeededGenerator {
        let given = ProcessInfo.processInfo.environment["VXLAN_TEST_SEED"].flatMap { UInt64($0) }
        let seed = given ?? UInt64.random(in: 1...UInt64.max)
        print("\(name): seed \(seed) (rerun with VXLAN_TEST_SEED=\(seed))")
        return SeededGenerator(seed: seed)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
