import CDPDK

/// A pool of packet buffers (rte_pktmbuf pool). Owned for the life of the dataplane.
public final class PacketPool: @unchecked Sendable {
    public let pointer: OpaquePointer
    public let capacity: Int
    public let name: String

    /// - Parameters:
    ///   - count: buffers in the pool; DPDK recommends 2^n - 1.
    ///   - cacheSize: per-lcore cache (0 for none).
    ///   - dataRoom: bytes per buffer including RTE_PKTMBUF_HEADROOM.
    public init(name: String, count: Int, cacheSize: Int = 256, dataRoom: Int = Int(RTE_MBUF_DEFAULT_BUF_SIZE),
                socket: Int32 = Int32(SOCKET_ID_ANY)) throws {
        guard let pool = vx_pktmbuf_pool_create(name, UInt32(count), UInt32(min(cacheSize, Int(RTE_MEMPOOL_CACHE_MAX_SIZE))),
                                                 UInt16(dataRoom), socket) else {
            throw DPDKError.fromErrno("creating mbuf pool \(name) of \(count) buffers")
        }
        self.pointer = pool
        self.capacity = count
        self.name = name
    }

    /// Buffers in the pool, including those sitting in per-lcore caches.
    public var available: Int { Int(rte_mempool_avail_count(pointer)) }
    /// Buffers handed out and not yet returned.
    public var inUse: Int { Int(rte_mempool_in_use_count(pointer)) }
    public var isFull: Bool { available == capacity }

    public func allocate() -> OpaquePointer? { vx_mbuf_alloc(pointer) }

    deinit { rte_mempool_free(pointer) }
}
