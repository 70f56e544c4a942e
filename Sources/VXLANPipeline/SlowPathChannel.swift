import CDPDK
import PollMode
import VTEPConfig

/// One polling core's channel to and from the slow path (UnderlayControl): three rings, single producer and
/// single consumer each, so neither side ever waits on the other.
/// - `punt`, core -> slow path: ARP, ICMP and ICMPv6 for the VTEP address (mbufs; Decapsulate.swift punts them).
/// - `inject`, slow path -> core: frames to send on the underlay (mbufs; the core drains it once per poll round).
/// - `learn`, core -> slow path: `LearnEvent`s, sources a core saw new or moved (LearnSources.swift reports them).
public struct SlowPathChannel: @unchecked Sendable {
    public let punt: OpaquePointer
    public let inject: OpaquePointer
    public let learn: OpaquePointer

    /// Slots of the punt and inject rings (mbufs), and of the learn ring (events).
    public static let frameSlots: UInt32 = 1024
    public static let learnSlots: UInt32 = 4096

    public init(punt: OpaquePointer, inject: OpaquePointer, learn: OpaquePointer) {
        self.punt = punt; self.inject = inject; self.learn = learn
    }

    /// Creates the three rings; `tag` makes their DPDK names unique.
    public static func create(tag: String) throws -> SlowPathChannel {
        let flags = UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)
        guard let punt = rte_ring_create("punt\(tag)", frameSlots, Int32(SOCKET_ID_ANY), flags),
              let inject = rte_ring_create("inj\(tag)", frameSlots, Int32(SOCKET_ID_ANY), flags),
              let learn = vx_ring32_create("learn\(tag)", learnSlots) else {
            throw DPDKError.fromErrno("creating slow-path rings \(tag)")
        }
        return SlowPathChannel(punt: punt, inject: inject, learn: learn)
    }

    /// Frees the rings and every mbuf still in them; call once neither side uses them.
    public func free() {
        rte_ring_free(learn)
        let buffer = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 32)
        defer { buffer.deallocate() }
        for ring in [punt, inject] {
            while true {
                let n = Int(vx_ring_dequeue_burst(ring, buffer, 32))
                if n == 0 { break }
                for i in 0..<n { vx_mbuf_free(OpaquePointer(buffer[i]!)) }
            }
            rte_ring_free(ring)
        }
    }

    /// Core side: queues a learn event; false when the ring is full.
    @inlinable @inline(__always)
    public func report(_ event: LearnEvent.Words) -> Bool {
        vx_ring32_enqueue(learn, event.0, event.1, event.2, event.3) == 0
    }

    /// Slow-path side: up to `max` events into `events` (`LearnEvent.words` words each); returns how many.
    public func takeLearnEvents(into events: UnsafeMutablePointer<UInt64>, max: Int) -> Int {
        Int(vx_ring32_dequeue_burst(learn, events, UInt32(max)))
    }
}

/// The name this type had before it carried the ring creation and the learn-event codec.
public typealias SlowPathRings = SlowPathChannel

/// A source MAC seen behind a remote VTEP or a local endpoint, as it travels from a core to the slow path in
/// `byteCount` (32) bytes: word 0 is the FDB key's first word (VNI, MAC bytes 0-3), word 1 holds MAC bytes 4-5,
/// the kind and a 32-bit value (IPv4 address or endpoint), words 2-3 an IPv6 address (or, word 2, the endpoint's epoch).
/// The learn ring's element size (`vx_ring32_*` in the CDPDK shim) is this size.
public enum LearnEvent {
    public typealias Words = (UInt64, UInt64, UInt64, UInt64)
    /// The one definition of an event's size: in 64-bit words, and in bytes.
    public static let words = MemoryLayout<Words>.size / MemoryLayout<UInt64>.size
    public static let byteCount = MemoryLayout<Words>.size

    public static let remote: UInt64 = 1, local: UInt64 = 2, remote6: UInt64 = 3

    @inlinable @inline(__always)
    public static func encode(key0: UInt64, key1: UInt64, kind: UInt64, value: UInt32, v6: (UInt64, UInt64) = (0, 0)) -> Words {
        (key0, key1 | kind << 16 | UInt64(value) << 32, v6.0, v6.1)
    }

    public static func decode(_ e: UnsafeMutablePointer<UInt64>) -> (vni: UInt32, mac: MACAddress, target: FDBTargetRequest) {
        let w0 = e[0], w1 = e[1]
        let vni = UInt32(truncatingIfNeeded: w0)
        let low = UInt32(truncatingIfNeeded: w0 >> 32), high = UInt16(truncatingIfNeeded: w1)
        let mac = MACAddress(bytes: [UInt8(low & 0xff), UInt8(low >> 8 & 0xff), UInt8(low >> 16 & 0xff), UInt8(low >> 24),
                                     UInt8(high & 0xff), UInt8(high >> 8)])!
        let value = UInt32(truncatingIfNeeded: w1 >> 32)
        switch w1 >> 16 & 0xff {
        case remote: return (vni, mac, .remote(.v4(IPv4Address(value))))
        case remote6:
            var bytes = [UInt8](repeating: 0, count: 16)
            withUnsafeBytes(of: (e[2], e[3])) { for i in 0..<16 { bytes[i] = $0[i] } }
            return (vni, mac, .remote(.v6(IPv6Address(bytes: bytes)!)))
        default: return (vni, mac, .port(Int(value), epoch: UInt32(truncatingIfNeeded: e[2])))
        }
    }
}

/// Where a core saw a source MAC: the slow path turns a remote address into a tunnel.
public enum FDBTargetRequest: Equatable, Sendable {
    case remote(IPAddress)
    /// A local endpoint, and its epoch when the core saw the frame (`ForwardingTables.endpointEpoch`).
    case port(Int, epoch: UInt32)
}

