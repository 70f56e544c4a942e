import CDPDK

/// A block of 64-bit counters owned by one polling core. Only that core writes it, with plain stores;
/// the control thread reads it with plain (possibly slightly stale, never torn: aligned 64-bit) loads.
/// No atomics and no sharing of cache lines between cores.
public final class CounterBlock: @unchecked Sendable {
    public let base: UnsafeMutablePointer<UInt64>
    public let count: Int

    public init(count: Int) {
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<UInt64>.stride
        var raw: UnsafeMutableRawPointer?
        // One cache line (64 B) alignment, rounded up so no other allocation shares our last line.
        _ = posix_memalign(&raw, 64, (bytes + 63) & ~63)
        base = raw!.bindMemory(to: UInt64.self, capacity: count)
        base.initialize(repeating: 0, count: count)
    }

    @inlinable public subscript(_ i: Int) -> UInt64 { base[i] }
    public func snapshot() -> [UInt64] { Array(UnsafeBufferPointer(start: base, count: count)) }
    public func reset() { base.update(repeating: 0, count: count) }

    deinit { free(base) }
}

/// Per-port counters a polling core keeps, one group of `PortCounter.allCases.count` slots per local port.
public enum PortCounter: Int, CaseIterable, Sendable {
    case rxPackets, rxBytes, txPackets, txBytes
    /// Packets the TX queue did not take (ring full); freed and counted, never leaked.
    case txDropped
    case rxBursts
    /// Packets `rte_eth_tx_prepare` refused (offload metadata the driver cannot take); freed.
    case txPrepareRejected
    /// Received TCP segments merged into larger frames for this (access) port (rte_gro), not counting the
    /// frame each run became.
    case coalescedSegments

    public var name: String {
        switch self {
        case .rxPackets: "rx_packets"
        case .rxBytes: "rx_bytes"
        case .txPackets: "tx_packets"
        case .txBytes: "tx_bytes"
        case .txDropped: "tx_dropped"
        case .rxBursts: "rx_bursts"
        case .txPrepareRejected: "tx_prepare_rejected"
        case .coalescedSegments: "gro_merged_segments"
        }
    }

    public static func slot(port: Int, _ counter: PortCounter) -> Int { port * allCases.count + counter.rawValue }
}

/// A polling core's accounting of its own rounds, in one `CounterBlock` per core (written by that core only):
/// the TSC cycles of rounds that received at least one packet (busy) and of those that received none (idle), as
/// OVS's `dpif-netdev/pmd-perf-show` reports a PMD thread, the rounds of each kind and the packets received.
public enum CoreCounter: Int, CaseIterable, Sendable {
    case busyCycles, idleCycles, busyRounds, idleRounds, packets
    /// Idle back-off (`IdleSleep`): sleeps taken, and the cycles they took (part of `idleCycles`).
    case sleeps, sleptCycles
}
