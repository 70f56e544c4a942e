import CDPDK

/// DPDK's mbuf offload flags (rte_mbuf_core.h, 22.11) as Swift constants. TX flags without OUTER_ speak of the
/// inner headers once `txTunnelVXLAN` is set. Literals, so that they fold into the fast path (most of DPDK's macros
/// are expressions Swift does not import); MbufFlagTests compares every one with DPDK's value (`vx_dpdk_flag` in
/// Sources/CDPDK/shim.h).
public enum MbufFlag {
    public static let rxL4ChecksumMask: UInt64 = (1 << 3) | (1 << 8)
    /// The L4 checksum field holds only the pseudo-header sum (virtio NEEDS_CSUM): complete it before sending.
    public static let rxL4ChecksumNone: UInt64 = (1 << 3) | (1 << 8)
    public static let rxL4ChecksumBad: UInt64 = 1 << 3
    public static let rxL4ChecksumGood: UInt64 = 1 << 8
    public static let rxIPChecksumMask: UInt64 = (1 << 4) | (1 << 7)
    public static let rxIPChecksumBad: UInt64 = 1 << 4
    public static let rxIPChecksumGood: UInt64 = 1 << 7
    /// Both bits: the IP checksum field is not right but the header's integrity was verified.
    public static let rxIPChecksumNone: UInt64 = (1 << 4) | (1 << 7)
    /// The outermost IP header's checksum is wrong (there is no GOOD counterpart).
    public static let rxOuterIPChecksumBad: UInt64 = 1 << 5
    public static let rxOuterL4ChecksumMask: UInt64 = (1 << 21) | (1 << 22)
    public static let rxOuterL4ChecksumBad: UInt64 = 1 << 21
    public static let rxOuterL4ChecksumGood: UInt64 = 1 << 22
    /// Both bits: the outer L4 checksum status is invalid (no information).
    public static let rxOuterL4ChecksumInvalid: UInt64 = (1 << 21) | (1 << 22)
    /// Every bit that reports a receive checksum status (all zero: the driver said nothing).
    public static let rxChecksumStatus: UInt64 = rxIPChecksumMask | rxL4ChecksumMask | rxOuterIPChecksumBad | rxOuterL4ChecksumMask
    /// A large TCP frame from a VM (virtio GSO): `tso_segsz` holds the sender's MSS.
    public static let rxLRO: UInt64 = 1 << 16

    /// The mbuf's data lives in another mbuf (a clone) or in an external buffer.
    public static let indirectOrExternal: UInt64 = (1 << 62) | (1 << 61)

    public static let txOuterUDPChecksum: UInt64 = 1 << 41
    public static let txTunnelVXLAN: UInt64 = 1 << 45
    public static let txTunnelMask: UInt64 = 0xF << 45
    public static let txTCPSegmentation: UInt64 = 1 << 50
    public static let txIEEE1588: UInt64 = 1 << 51
    public static let txTCPChecksum: UInt64 = 1 << 52
    public static let txUDPChecksum: UInt64 = 3 << 52
    public static let txL4Mask: UInt64 = 3 << 52
    public static let txIPChecksum: UInt64 = 1 << 54
    public static let txIPv4: UInt64 = 1 << 55
    public static let txIPv6: UInt64 = 1 << 56
    public static let txVLAN: UInt64 = 1 << 57
    public static let txOuterIPChecksum: UInt64 = 1 << 58
    public static let txOuterIPv4: UInt64 = 1 << 59
    public static let txOuterIPv6: UInt64 = 1 << 60
}

/// The TX offloads the pipeline can use (checksums, TSO, tunnel TSO), as a port advertises (`tx_offload_capa`) or enables them.
public struct TxOffloads: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let ipv4Checksum = TxOffloads(rawValue: vx_tx_offload_ipv4_cksum())
    public static let udpChecksum = TxOffloads(rawValue: vx_tx_offload_udp_cksum())
    public static let tcpChecksum = TxOffloads(rawValue: vx_tx_offload_tcp_cksum())
    public static let tcpTSO = TxOffloads(rawValue: vx_tx_offload_tcp_tso())
    public static let outerIPv4Checksum = TxOffloads(rawValue: vx_tx_offload_outer_ipv4_cksum())
    public static let outerUDPChecksum = TxOffloads(rawValue: vx_tx_offload_outer_udp_cksum())
    public static let vxlanTunnelTSO = TxOffloads(rawValue: vx_tx_offload_vxlan_tnl_tso())
    public static let multiSegments = TxOffloads(rawValue: vx_tx_offload_multi_segs())

    /// Everything the pipeline can make use of, in `show ports` order.
    public static let useful: [(TxOffloads, String)] = [
        (.outerIPv4Checksum, "outer_ipv4_cksum"), (.outerUDPChecksum, "outer_udp_cksum"), (.vxlanTunnelTSO, "vxlan_tnl_tso"),
        (.ipv4Checksum, "ipv4_cksum"), (.tcpChecksum, "tcp_cksum"), (.udpChecksum, "udp_cksum"), (.tcpTSO, "tcp_tso"),
        (.multiSegments, "multi_segs"),
    ]
    public static let all: TxOffloads = useful.reduce([]) { $0.union($1.0) }

    public var names: [String] { Self.useful.filter { contains($0.0) }.map(\.1) }
    public var description: String { names.isEmpty ? "none" : names.joined(separator: ",") }
}


/// A stand-in for a NIC in tests: receives each burst staged for its port instead of `rte_eth_tx_burst`.
/// Production ports have none; the check is one load per burst.
public protocol TransmitModel: AnyObject {
    /// Takes ownership of `packets[0..<count]` that it accepts (always from the front); returns how many.
    func transmit(_ packets: UnsafeMutablePointer<OpaquePointer?>, count: Int) -> Int
}
