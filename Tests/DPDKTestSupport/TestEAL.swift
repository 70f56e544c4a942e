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

/// A net_ring port whose RX ring the test fills and whose TX ring the test drains.
public final class RingPort {
    public let name: String
    public let id: UInt16
    let rxRing: OpaquePointer
    let txRing: OpaquePointer

    /// - Parameter txSize: TX ring size (a power of two); a small one makes `rte_eth_tx_burst` refuse packets.
    public init(txSize: UInt32 = 1024) throws {
        let tag = TestEAL.uniqueName("r")
        name = "net_ring_\(tag)"
        guard let rx = rte_ring_create("rx_\(tag)", 1024, Int32(SOCKET_ID_ANY), UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)),
              let tx = rte_ring_create("tx_\(tag)", txSize, Int32(SOCKET_ID_ANY), UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)) else {
            throw DPDKError.fromErrno("creating rings for \(name)")
        }
        rxRing = rx; txRing = tx
        var rxs: OpaquePointer? = rx
        var txs: OpaquePointer? = tx
        let port = rte_eth_from_rings(tag, &rxs, 1, &txs, 1, 0)   // the PMD names it net_ring_<tag>
        guard port >= 0 else { throw DPDKError.fromErrno("creating ring port \(name)") }
        id = UInt16(port)
    }

    /// Queues mbufs as if the wire had delivered them.
    public func inject(_ packets: [OpaquePointer]) {
        var objects: [UnsafeMutableRawPointer?] = packets.map { UnsafeMutableRawPointer($0) }
        let n = rte_ring_enqueue_burst(rxRing, &objects, UInt32(objects.count), nil)
        precondition(n == packets.count, "RX ring full")
    }

    /// Everything the port transmitted since the last call, as bytes; the mbufs are freed.
    public func drain() -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var objects = [UnsafeMutableRawPointer?](repeating: nil, count: 64)
        while true {
            let n = Int(rte_ring_dequeue_burst(txRing, &objects, 64, nil))
            if n == 0 { return frames }
            for i in 0..<n {
                let m = OpaquePointer(objects[i]!)
                frames.append(Mbuf.bytes(m))
                vx_mbuf_free(m)
            }
        }
    }

    /// Removes the port (closing it) and its rings.
    public func destroy() {
        if rte_eth_dev_is_valid_port(id) != 0 {
            _ = rte_eth_dev_stop(id)
            _ = rte_eth_dev_close(id)
        }
        rte_ring_free(rxRing)
        rte_ring_free(txRing)
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
