import CDPDK
import CTapPort

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
    /// Per port: call `rte_eth_tx_prepare` before sending (ports given offload metadata).
    @usableFromInline let prepare: UnsafeMutablePointer<Bool>
    /// Per port: the tap queue written instead of a DPDK TX queue (tap ports, TapPort.swift).
    @usableFromInline let taps: UnsafeMutablePointer<OpaquePointer?>
    /// Per port: a device model that takes the bursts instead of the driver (tests only; nil in production).
    @usableFromInline let models: UnsafeMutablePointer<TransmitModel?>
    /// Owns the arrays above.
    let arena = Arena()

    /// - Parameters:
    ///   - ports: DPDK port id and TX queue of each local port index.
    ///   - counters: the core's port counter block (`PortCounter` layout).
    ///   - capacity: local ports the stage can ever serve (ports set up later with `setPort`); at least `ports.count`.
    public init(ports: [(port: UInt16, queue: UInt16)], capacity: Int = 0, counters: CounterBlock) {
        let n = max(1, capacity, ports.count)
        portCount = n
        portIDs = arena.array(n, of: 0)
        queueIDs = arena.array(n, of: 0)
        counts = arena.array(n, of: 0)
        buffers = arena.array(n * TxStage.capacity, of: nil)
        prepare = arena.array(n, of: false)
        models = arena.array(n, of: nil)
        taps = arena.array(n, of: nil)
        for (i, p) in ports.enumerated() {
            portIDs[i] = p.port
            queueIDs[i] = p.queue
        }
        self.counters = counters.base
    }

    /// Points local port `index` at a DPDK port and TX queue (a port attached at run time). Only while no packet
    /// can be staged for it: before anything can reach the port, or after the core let go of it.
    public func setPort(_ index: Int, port: UInt16, queue: UInt16) {
        portIDs[index] = port
        queueIDs[index] = queue
        prepare[index] = false
        taps[index] = nil
    }

    /// Points local port `index` at `port`'s queue `queue`, a tap's or a DPDK port's, under the same rule as
    /// `setPort(_:port:queue:)`.
    public func setPort(_ index: Int, _ port: EthPort, queue: Int) {
        setPort(index, port: port.id, queue: UInt16(queue))
        taps[index] = port.tapQueue(queue)
    }

    /// Runs `rte_eth_tx_prepare` on every burst for `port` (set before the core starts).
    public func setPrepare(_ on: Bool, port: Int) { prepare[port] = on }

    /// Hands `port`'s bursts to `model` instead of the driver (tests; set before the core starts).
    public func setModel(_ model: TransmitModel?, port: Int) { models[port] = model }

    /// Stages one packet for local port `port`; sends a burst when the buffer fills.
    @inlinable @inline(__always)
    public func push(_ m: OpaquePointer, to port: Int) {
        let n = counts[port]
        buffers[port &* TxStage.capacity &+ n] = m
        counts[port] = n &+ 1
        if n &+ 1 == TxStage.capacity { flush(port: port) }
    }

    @inlinable public func pending(port: Int) -> Int { counts[port] }

    /// Adds to one of `port`'s counters on this core (what the pipeline does for a port, e.g. segments merged).
    @inlinable public func add(_ counter: PortCounter, port: Int, _ n: UInt64) {
        counters[PortCounter.slot(port: port, counter)] &+= n
    }

    /// Sends what is staged for `port`; frees and counts whatever the queue refuses.
    @inlinable
    public func flush(port: Int) {
        var n = counts[port]
        if n == 0 { return }
        let start = buffers + port &* TxStage.capacity
        if prepare[port] && taps[port] == nil { n = prepareBurst(start, count: n, port: port) }
        var bytes: UInt64 = 0
        for i in 0..<n { bytes &+= UInt64(vx_mbuf_pkt_len(start[i])) }
        let sent: Int
        if let tap = taps[port] {
            sent = Int(vx_tap_tx_burst(tap, start, UInt16(n)))
        } else if let model = models[port] {
            sent = model.transmit(start, count: n)
        } else {
            sent = Int(rte_eth_tx_burst(portIDs[port], queueIDs[port], start, UInt16(n)))
        }
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

    /// `rte_eth_tx_prepare` over the burst: a packet the driver refuses (bad metadata) is freed and counted as
    /// `txPrepareRejected`, the rest close up and are prepared in turn. Returns how many remain.
    @inline(never) @usableFromInline
    func prepareBurst(_ start: UnsafeMutablePointer<OpaquePointer?>, count: Int, port: Int) -> Int {
        var n = count
        var done = 0
        while done < n {
            done &+= Int(rte_eth_tx_prepare(portIDs[port], queueIDs[port], start + done, UInt16(n &- done)))
            if done < n {
                vx_mbuf_free(start[done].unsafelyUnwrapped)
                counters[PortCounter.slot(port: port, .txPrepareRejected)] &+= 1
                (start + done).update(from: start + (done &+ 1), count: n &- done &- 1)
                n &-= 1
            }
        }
        return n
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
