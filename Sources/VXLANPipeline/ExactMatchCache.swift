import CDPDK

/// A small per-core, direct-mapped cache of 16-byte keys in front of an rte_hash table, in the spirit of
/// OVS-DPDK's exact-match cache and VPP's last-key caches: most packets in a burst share a few destinations,
/// and one CRC plus two compares on an L1-resident line is far cheaper than a hash-table walk.
/// Only hits are cached. The owner flushes it when the table's generation changes (entries removed or moved).
public struct ExactMatchCache {
    @usableFromInline static let entryStride = 32       // key (16) + value (4) + padding
    @usableFromInline let entries: UnsafeMutableRawPointer
    @usableFromInline let mask: Int
    public let capacity: Int

    /// - Parameter capacity: a power of two.
    public init(capacity: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "capacity must be a power of two")
        self.capacity = capacity
        mask = capacity - 1
        entries = .allocate(byteCount: capacity * Self.entryStride, alignment: 64)
        entries.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.entryStride)
        clear()
    }

    public func deallocate() { entries.deallocate() }

    /// Forgets everything (marks every slot empty: value -1).
    public func clear() {
        for i in 0..<capacity {
            let e = entries + i * Self.entryStride
            e.storeBytes(of: 0 as UInt64, as: UInt64.self)
            e.storeBytes(of: 0 as UInt64, toByteOffset: 8, as: UInt64.self)
            e.storeBytes(of: -1 as Int32, toByteOffset: 16, as: Int32.self)
        }
    }

    @inlinable @inline(__always)
    public func slot(_ w0: UInt64, _ w1: UInt64) -> Int {
        Int(truncatingIfNeeded: vx_hash_crc_8byte(w0, UInt32(truncatingIfNeeded: w1))) & mask
    }

    /// The cached value for the key (two 8-byte words), or -1.
    @inlinable @inline(__always)
    public func lookup(_ w0: UInt64, _ w1: UInt64, slot: Int) -> Int32 {
        let e = entries + slot &* Self.entryStride
        let value = e.load(fromByteOffset: 16, as: Int32.self)
        if value >= 0 && e.load(as: UInt64.self) == w0 && e.load(fromByteOffset: 8, as: UInt64.self) == w1 { return value }
        return -1
    }

    @inlinable @inline(__always)
    public func insert(_ w0: UInt64, _ w1: UInt64, slot: Int, value: Int32) {
        let e = entries + slot &* Self.entryStride
        e.storeBytes(of: w0, as: UInt64.self)
        e.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
        e.storeBytes(of: value, toByteOffset: 16, as: Int32.self)
    }
}
