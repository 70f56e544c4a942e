import CDPDK

/// Packets staged for transmission by one polling core, one fixed buffer per local port, sent in bursts.
/// What a TX queue does not accept is freed and counted as `txDropped`: the stage never leaks an mbuf.
public struct TxStage {
    public static let capacity = 64

    public let portCount: Int
    @usableFromInline let portIDs: UnsafeMutablePointer<UInt16>
    @usableFromInline let queueIDs: UnsafeMutablePointer<UInt16>
    @usableFromInline let counts: UnsafeMutablePointer<Int>
    @usableFromInline let buffers: UnsafeMutablePointer<OpaquePointer?>
    @usableFromInline let counters: UnsafeMutablePointer<UInt64>

    /// - Parameters:
    ///   - ports: DPDK port id and TX queue of each local port index.
    ///   - counters: the core's port counter block (`PortCounter` layout).
    public init(ports: [(port: UInt16, queue: UInt16)], counters: CounterBlock) {
        portCount = ports.count
        portIDs = .allocate(capacity: max(1, ports.count))
        queueIDs = .allocate(capacity: max(1, ports.count))
        counts = .allocate(capacity: max(1, ports.count))
        buffers = .allocate(capacity: max(1, ports.count) * TxStage.capacity)
        buffers.initialize(repeating: nil, count: max(1, ports.count) * TxStage.capacity)
        for (i, p) in ports.enumerated() {
            portIDs[i] = p.port
            queueIDs[i] = p.queue
            counts[i] = 0
        }
        self.counters = counters.base
    }

    /// Frees the stage's own memory; call once the core has stopped (after `flushAll`).
    public func deallocate() {
        portIDs.deallocate(); queueIDs.deallocate(); counts.deallocate(); buffers.deallocate()
    }

    /// Stages one packet for local port `port`; sends a burst when the buffer fills.
    @inlinable @inline(__always)
    public func push(_ m: OpaquePointer, to port: Int) {
        let n = counts[port]
        buffers[port &* TxStage.capacity &+ n] = m
        counts[port] = n &+ 1
        if n &+ 1 == TxStage.capacity { flush(port: port) }
    }

    @inlinable public func pending(port: Int) -> Int { counts[port] }

    /// Sends what is staged for `port`; frees and counts whatever the queue refuses.
    @inlinable
    public func flush(port: Int) {
        let n = counts[port]
        if n == 0 { return }
        let start = buffers + port &* TxStage.capacity
        var bytes: UInt64 = 0
        for i in 0..<n { bytes &+= UInt64(vx_mbuf_pkt_len(start[i])) }
        let sent = Int(rte_eth_tx_burst(portIDs[port], queueIDs[port], start, UInt16(n)))
        if sent < n {
            for i in sent..<n {
                bytes &-= UInt64(vx_mbuf_pkt_len(start[i]))
                vx_mbuf_free(start[i])
            }
            counters[PortCounter.slot(port: port, .txDropped)] &+= UInt64(n &- sent)
        }
        counters[PortCounter.slot(port: port, .txPackets)] &+= UInt64(sent)
        counters[PortCounter.slot(port: port, .txBytes)] &+= bytes
        counts[port] = 0
    }

    @inlinable
    public func flushAll() {
        for p in 0..<portCount { flush(port: p) }
    }

    /// Frees whatever is staged without sending it (shutdown after the ports are stopped).
    public func discardAll() {
        for p in 0..<portCount {
            let start = buffers + p * TxStage.capacity
            for i in 0..<counts[p] { vx_mbuf_free(start[i]) }
            counts[p] = 0
        }
    }
}
