import CDPDK
import CTapPort
import Glibc
import Synchronization

/// Kernel tap ports with the virtio-net header (CTapPort): vxland creates the interface, negotiates what the
/// kernel hands over whole (TSO/GSO frames, partial checksums, UDP-tunnel GSO on Linux 6.17+), and its polling
/// cores read and write the queues' descriptors themselves, so the pipeline sees mbufs with DPDK's offload flags
/// as from any other port. The interface goes with vxland's descriptors: on every exit, SIGKILL included.
public enum TapPort {
    /// Ids of tap ports lie above every DPDK port id; they only tell ports apart. One is reused once its port closed.
    static let firstID = UInt16(RTE_MAX_ETHPORTS) + 0x1000
    static let ids = Mutex<(next: UInt16, live: Set<UInt16>)>((next: firstID, live: []))

    static func allocateID() throws -> UInt16 {
        try ids.withLock { state in
            guard state.live.count < Int(UInt16.max - firstID) else { throw SetupError("too many tap ports") }
            func advance(_ id: UInt16) -> UInt16 { id == UInt16.max - 1 ? firstID : id + 1 }
            while state.live.contains(state.next) { state.next = advance(state.next) }
            let id = state.next
            state.live.insert(id)
            state.next = advance(id)
            return id
        }
    }

    static func release(_ id: UInt16) { ids.withLock { _ = $0.live.remove(id) } }

    /// What to ask the kernel for.
    public struct Request: Sendable {
        public var interface: String
        /// TSO/GSO frames and partial checksums (false: the kernel segments and checksums everything first).
        public var offloads: Bool
        /// UDP-tunnel GSO (an underlay's VXLAN frames whole, both ways), where the kernel has it.
        public var udpTunnelGSO: Bool
        public var underlay: Bool
        public init(interface: String, offloads: Bool, udpTunnelGSO: Bool, underlay: Bool) {
            self.interface = interface; self.offloads = offloads; self.udpTunnelGSO = udpTunnelGSO; self.underlay = underlay
        }
    }

    /// Creates the tap interface and the port `name` over it.
    public static func create(name: String, _ request: Request) throws -> EthPort {
        var wanted: UInt32 = 0
        if request.offloads {
            wanted = UInt32(VX_TUN_F_CSUM | VX_TUN_F_TSO4 | VX_TUN_F_TSO6)
            if request.udpTunnelGSO { wanted |= UInt32(VX_TUN_F_UDP_TUNNEL_GSO | VX_TUN_F_UDP_TUNNEL_GSO_CSUM) }
        }
        if EthPort.id(of: name) != nil {
            throw SetupError("port \(name): a DPDK port of that name exists already; name the tap port otherwise")
        }
        let id = try allocateID()
        var tap: OpaquePointer?
        var error = [CChar](repeating: 0, count: 256)
        let rc = vx_tap_open(request.interface, wanted, &tap, &error, error.count)
        if rc != 0 { release(id) }
        guard rc == 0, let tap else { throw SetupError("port \(name): " + String(cString: error)) }
        if request.underlay { vx_tap_set_underlay(tap) }
        let negotiated = vx_tap_offloads(tap)
        // The kernel takes checksum and GSO requests in what is written to it whatever was negotiated; UDP-tunnel
        // GSO only once negotiated (both flags: with GSO alone it would not hand its own tunnel frames over whole).
        var tx: TxOffloads = [.multiSegments, .ipv4Checksum, .tcpChecksum, .udpChecksum, .tcpTSO, .outerIPv4Checksum, .outerUDPChecksum]
        let tunnel = UInt32(VX_TUN_F_UDP_TUNNEL_GSO | VX_TUN_F_UDP_TUNNEL_GSO_CSUM)
        if negotiated & tunnel == tunnel { tx.insert(.vxlanTunnelTSO) }
        let rx = vx_rx_offload_ipv4_cksum() | vx_rx_offload_udp_cksum() | vx_rx_offload_tcp_cksum()
            | vx_rx_offload_outer_udp_cksum() | vx_rx_offload_tcp_lro()
        let capabilities = PortCapabilities(driver: driverName, maxRxQueues: 64, maxTxQueues: 64, rxDescriptors: 1...65535,
                                            txDescriptors: 1...65535, rxOffloads: rx, txOffloads: tx.rawValue,
                                            minMTU: 68, maxMTU: 65535)
        // A locally administered unicast address of its own: the interface's kernel side has another.
        var mac = (0..<6).map { _ in UInt8.random(in: 0...255) }
        mac[0] = (mac[0] & 0xFC) | 0x02
        return EthPort(tap: tap, id: id, name: name, capabilities: capabilities, mac: mac)
    }

    public static let driverName = "vxland_tap"

    /// The `TUNSETOFFLOAD` flags the kernel accepted, by name, for `show ports`.
    public static func offloadNames(_ flags: UInt32) -> [String] {
        let known: [(UInt32, String)] = [(UInt32(VX_TUN_F_CSUM), "csum"), (UInt32(VX_TUN_F_TSO4), "tso4"), (UInt32(VX_TUN_F_TSO6), "tso6"),
                                         (UInt32(VX_TUN_F_UDP_TUNNEL_GSO), "udp_tunnel_gso"),
                                         (UInt32(VX_TUN_F_UDP_TUNNEL_GSO_CSUM), "udp_tunnel_gso_csum")]
        return known.filter { flags & $0.0 != 0 }.map(\.1)
    }

    /// The counters under which received frames with a lying virtio-net header are dropped.
    static let rxDropReasons: [vx_tap_stat] = [VX_TAP_RX_RUNT, VX_TAP_RX_BAD_GSO_SIZE, VX_TAP_RX_BAD_HDR_LEN, VX_TAP_RX_BAD_CSUM_OFFSETS,
                                               VX_TAP_RX_GSO_WITHOUT_CSUM, VX_TAP_RX_GSO_TYPE_MISMATCH, VX_TAP_RX_UNSUPPORTED_GSO,
                                               VX_TAP_RX_BAD_TUNNEL_OFFSETS, VX_TAP_RX_BAD_FLAGS]

    public static var counterNames: [String] {
        (0..<Int(VX_TAP_STAT_COUNT.rawValue)).map { String(cString: vx_tap_stat_name(UInt32($0))) }
    }
}

extension EthPort {
    func configureTap(_ tap: OpaquePointer, queues: Int, pool: PacketPool) throws {
        var error = [CChar](repeating: 0, count: 256)
        let rc = vx_tap_configure(tap, UInt32(queues), pool.pointer, &error, error.count)
        guard rc == 0 else { throw SetupError(String(cString: error)) }
    }

    /// The tap's interface name now (renamed by an operator, in whatever namespace), else the one it was made with.
    public var tapCurrentInterface: String? { tapNameNow ?? tapInterface }

    /// The tap's interface name now, nil if it cannot be read (closed, deleted).
    public var tapNameNow: String? {
        guard let tap, !isClosed else { return nil }
        var name = [CChar](repeating: 0, count: 16)
        return vx_tap_current_name(tap, &name) == 0 ? String(cString: name) : nil
    }

    /// The interface index the tap was made with (in vxland's namespace).
    public var tapIndex: Int32? { tap.map { _ in tapIfIndex } }

    /// A tap port's counters (by `TapPort.counterNames`); zeros once closed.
    public var tapStats: [UInt64] {
        var out = [UInt64](repeating: 0, count: Int(VX_TAP_STAT_COUNT.rawValue))
        if let tap, !isClosed { vx_tap_stats(tap, &out) }
        return out
    }

    /// Receive buffers a tap port holds for its next reads (they count as in use in the pool).
    public var tapBuffersHeld: Int { guard let tap, !isClosed else { return 0 }; return Int(vx_tap_buffers_held(tap)) }

    /// The queue handle a polling core reads and writes for `queue`, nil for DPDK ports. A tap port always has
    /// one for each queue it was configured with: its id must never reach DPDK.
    public func tapQueue(_ queue: Int) -> OpaquePointer? {
        guard let tap else { return nil }
        let handle = isClosed ? nil : vx_tap_queue(tap, UInt32(queue))
        precondition(handle != nil, "tap port \(name) has no queue \(queue)")
        return handle
    }
}
