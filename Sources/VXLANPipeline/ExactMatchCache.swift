import CDPDK
import PollMode

/// A small per-core, direct-mapped cache of 16-byte keys in front of an rte_hash table, in the spirit of
/// OVS-DPDK's exact-match cache and VPP's last-key caches: most packets in a burst share a few destinations,
/// and one CRC plus two compares on an L1-resident line is far cheaper than a hash-table walk.
/// Each slot holds a value and an auxiliary word. The owner flushes it when the table's generation changes.
public struct ExactMatchCache {
    @usableFromInline static let entryStride = 32       // key (16) + value (4) + aux (4) + padding
    /// An empty slot's value.
    public static let empty: Int32 = -1
    @usableFromInline let entries: UnsafeMutableRawPointer
    @usableFromInline let mask: Int
    public let capacity: Int

    /// - Parameters:
    ///   - capacity: a power of two.
    ///   - arena: the owner's memory, which frees the cache with everything else of the owner.
    public init(capacity: Int, arena: Arena) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "capacity must be a power of two")
        self.capacity = capacity
        mask = capacity - 1
        entries = arena.bytes(capacity * Self.entryStride)
        entries.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.entryStride)
        clear()
    }

    /// Forgets everything.
    public func clear() {
        for i in 0..<capacity {
            let e = entries + i * Self.entryStride
            e.storeBytes(of: 0 as UInt64, as: UInt64.self)
            e.storeBytes(of: 0 as UInt64, toByteOffset: 8, as: UInt64.self)
            e.storeBytes(of: Self.empty, toByteOffset: 16, as: Int32.self)
        }
    }

    @inlinable @inline(__always)
    public func slot(_ w0: UInt64, _ w1: UInt64) -> Int {
        Int(truncatingIfNeeded: vx_hash_crc_8byte(w0, UInt32(truncatingIfNeeded: w1))) & mask
    }

    /// The cached (value, aux) for the key (two 8-byte words); value is `empty` on a miss.
    @inlinable @inline(__always)
    public func lookup(_ w0: UInt64, _ w1: UInt64, slot: Int) -> (value: Int32, aux: Int32) {
        let e = entries + slot &* Self.entryStride
        let value = e.load(fromByteOffset: 16, as: Int32.self)
        if value != Self.empty && e.load(as: UInt64.self) == w0 && e.load(fromByteOffset: 8, as: UInt64.self) == w1 {
            return (value, e.load(fromByteOffset: 20, as: Int32.self))
        }
        return (Self.empty, 0)
    }

    @inlinable @inline(__always)
    public func insert(_ w0: UInt64, _ w1: UInt64, slot: Int, value: Int32, aux: Int32 = 0) {
        let e = entries + slot &* Self.entryStride
        e.storeBytes(of: w0, as: UInt64.self)
        e.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
        e.storeBytes(of: value, toByteOffset: 16, as: Int32.self)
        e.storeBytes(of: aux, toByteOffset: 20, as: Int32.self)
    }
}

/// Up to `capacity` 16-byte keys gathered in a burst for one rte_hash bulk lookup, with, per key, the packet
/// it belongs to and the cache slot to fill.
public struct LookupBatch {
    @usableFromInline static let keyStride = 16
    public let capacity: Int
    @usableFromInline let keys: UnsafeMutableRawPointer
    @usableFromInline let keyPointers: UnsafeMutablePointer<UnsafeRawPointer?>
    @usableFromInline let owner: UnsafeMutablePointer<Int32>
    @usableFromInline let slot: UnsafeMutablePointer<Int32>
    @usableFromInline let data: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Kept in raw memory so the owner's hot functions stay non-mutating (a mutating `self` is reloaded
    /// after every raw-pointer store, since such a store might alias it).
    @usableFromInline let counter: UnsafeMutablePointer<Int>
    @inlinable public var count: Int {
        @inline(__always) get { counter.pointee }
        @inline(__always) nonmutating set { counter.pointee = newValue }
    }

    public init(capacity: Int, arena: Arena) {
        self.capacity = capacity
        keys = arena.bytes(capacity * Self.keyStride)
        keys.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.keyStride)
        keyPointers = arena.array(capacity, of: nil)
        for i in 0..<capacity { keyPointers[i] = UnsafeRawPointer(keys + i * Self.keyStride) }
        owner = arena.array(capacity, of: 0)
        slot = arena.array(capacity, of: 0)
        data = arena.array(capacity, of: nil)
        counter = arena.array(1, of: 0)
    }

    @inlinable @inline(__always)
    func add(_ w0: UInt64, _ w1: UInt64, owner packet: Int, slot cacheSlot: Int) {
        let k = keys + count &* Self.keyStride
        k.storeBytes(of: w0, as: UInt64.self)
        k.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
        owner[count] = Int32(truncatingIfNeeded: packet)
        slot[count] = Int32(truncatingIfNeeded: cacheSlot)
        counter.pointee = count &+ 1
    }

    @inlinable @inline(__always)
    func word0(_ k: Int) -> UInt64 { (keys + k &* Self.keyStride).load(as: UInt64.self) }
    @inlinable @inline(__always)
    func word1(_ k: Int) -> UInt64 { (keys + k &* Self.keyStride).load(fromByteOffset: 8, as: UInt64.self) }
}
