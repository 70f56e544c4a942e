import CDPDK
import Foundation
import PollMode

/// One EAL for the whole test process (EAL initialises once per process): no hugepages, no PCI, its own
/// file prefix so it never touches another DPDK process's files.
public enum TestEAL {
    public static func start() throws {
        try EAL.initialize(arguments: ["vxlan-tests", "--no-huge", "-m", "512", "--no-pci", "-l", "0",
                                       "--no-shconf", "--file-prefix", "vxtest\(getpid())", "--log-level", "*:error", "--no-telemetry"])
        // EAL leaves its (empty, with --no-shconf) runtime directory behind: remove it when the tests end.
        atexit { _ = rmdir("/var/run/dpdk/vxtest\(getpid())") }
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var serial = 0

    /// A process-unique suffix for DPDK object names.
    public static func uniqueName(_ base: String) -> String {
        lock.lock(); defer { lock.unlock() }
        serial += 1
        return "\(base)\(serial)"
    }
}

/// A net_ring port whose RX rings the test fills and whose TX rings the test drains (one ring per queue).
public final class RingPort {
    public let name: String
    public let id: UInt16
    let rxRings: [OpaquePointer]
    let txRings: [OpaquePointer]

    /// - Parameters:
    ///   - txSize: TX ring size (a power of two); a small one makes `rte_eth_tx_burst` refuse packets.
    ///   - queues: RX and TX queues (one ring each).
    public init(txSize: UInt32 = 1024, queues: Int = 1) throws {
        let tag = TestEAL.uniqueName("r")
        name = "net_ring_\(tag)"
        var rx: [OpaquePointer?] = [], tx: [OpaquePointer?] = []
        for q in 0..<queues {
            guard let r = rte_ring_create("rx\(q)_\(tag)", 1024, Int32(SOCKET_ID_ANY), UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)),
                  let t = rte_ring_create("tx\(q)_\(tag)", txSize, Int32(SOCKET_ID_ANY), UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)) else {
                throw DPDKError.fromErrno("creating rings for \(name)")
            }
            rx.append(r); tx.append(t)
        }
        rxRings = rx.map { $0! }; txRings = tx.map { $0! }
        let port = rte_eth_from_rings(tag, &rx, UInt32(queues), &tx, UInt32(queues), 0)   // the PMD names it net_ring_<tag>
        guard port >= 0 else { throw DPDKError.fromErrno("creating ring port \(name)") }
        id = UInt16(port)
    }

    /// Queues mbufs on RX queue `queue` as if the wire had delivered them.
    public func inject(_ packets: [OpaquePointer], queue: Int = 0) {
        var objects: [UnsafeMutableRawPointer?] = packets.map { UnsafeMutableRawPointer($0) }
        let n = rte_ring_enqueue_burst(rxRings[queue], &objects, UInt32(objects.count), nil)
        precondition(n == packets.count, "RX ring full")
    }

    /// Queues as many of `packets` on RX queue `queue` as the ring takes; returns how many (the caller owns the rest).
    public func tryInject(_ packets: [OpaquePointer], queue: Int = 0) -> Int {
        var objects: [UnsafeMutableRawPointer?] = packets.map { UnsafeMutableRawPointer($0) }
        return Int(rte_ring_enqueue_burst(rxRings[queue], &objects, UInt32(objects.count), nil))
    }

    /// Frees whatever still waits on the RX rings (frames no core received); returns how many.
    @discardableResult
    public func discardReceived() -> Int {
        var objects = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
        var freed = 0
        for ring in rxRings {
            while true {
                let n = Int(rte_ring_dequeue_burst(ring, &objects, 64, nil))
                if n == 0 { break }
                for i in 0..<n { vx_mbuf_free(OpaquePointer(objects[i]!)) }
                freed += n
            }
        }
        return freed
    }

    /// Everything transmitted on TX queue `queue` (all queues when nil) since the last call; the mbufs are freed.
    /// What the ports sent, as mbufs (the caller frees them): for tests of offload metadata.
    public func drainMbufs() -> [OpaquePointer] {
        var out: [OpaquePointer] = []
        var objects = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
        for ring in txRings {
            while true {
                let n = Int(rte_ring_dequeue_burst(ring, &objects, 64, nil))
                if n == 0 { break }
                out += objects[0..<n].map { OpaquePointer($0!) }
            }
        }
        return out
    }

    public func drain(queue: Int? = nil) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var objects = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
        for ring in queue.map({ [txRings[$0]] }) ?? txRings {
            while true {
                let n = Int(rte_ring_dequeue_burst(ring, &objects, 64, nil))
                if n == 0 { break }
                for i in 0..<n {
                    let m = OpaquePointer(objects[i]!)
                    frames.append(Mbuf.bytes(m))
                    vx_mbuf_free(m)
                }
            }
        }
        return frames
    }

    /// Removes the port (closing it) and its rings.
    public func destroy() {
        if rte_eth_dev_is_valid_port(id) != 0 {
            _ = rte_eth_dev_stop(id)
            _ = rte_eth_dev_close(id)
        }
        for r in rxRings + txRings { rte_ring_free(r) }
    }
}

public enum Mbuf {
    /// An mbuf holding `bytes` (single segment), from `pool`.
    public static func make(_ bytes: [UInt8], pool: PacketPool) -> OpaquePointer {
        let m = pool.allocate()!
        let p = vx_mbuf_append(m, UInt16(bytes.count))!
        bytes.withUnsafeBytes { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        return m
    }

    /// An mbuf chain holding `bytes`, `segment` bytes per mbuf (as vhost-user or scattered RX deliver large frames).
    public static func makeChained(_ bytes: [UInt8], pool: PacketPool, segment: Int = 1900) -> OpaquePointer {
        var head: OpaquePointer?
        var offset = 0
        while offset < bytes.count || head == nil {
            let part = Array(bytes[offset..<min(bytes.count, offset + segment)])
            let m = make(part, pool: pool)
            if let head { precondition(vx_mbuf_chain(head, m) == 0, "chain too long") } else { head = m }
            offset += part.count
        }
        return head!
    }

    /// The packet's bytes across all segments.
    public static func bytes(_ m: OpaquePointer) -> [UInt8] {
        var out: [UInt8] = []
        var seg: OpaquePointer? = m
        while let s = seg {
            let p = vx_mbuf_data(s)
            out.append(contentsOf: UnsafeRawBufferPointer(start: p, count: Int(vx_mbuf_data_len(s))))
            seg = vx_mbuf_next(s)
        }
        return out
    }
}
