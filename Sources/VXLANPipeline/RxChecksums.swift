import CDPDK
import PollMode

/// What a NIC says, in an mbuf's `ol_flags`, about the checksums of the outermost headers of a received packet.
///
/// The contract: a port whose RX checksum offloads were enabled (`RxChecksums.offloads`) vouches for what it
/// reports. GOOD is taken as is and the software check skipped (a packet whose bytes are wrong but which the
/// NIC calls GOOD is accepted: the NIC checked the frame on the wire); BAD is dropped; UNKNOWN, NONE and
/// INVALID leave the check to software. Which flags speak of the outermost headers: the OUTER_ ones always;
/// IP_CKSUM and L4_CKSUM only when the NIC did not parse into a tunnel (no tunnel `packet_type`), since a NIC
/// that recognises VXLAN reports the inner headers with them. The outer IPv4 header has only a BAD flag
/// (`RX_OUTER_IP_CKSUM_BAD`) once the tunnel is parsed, so its GOOD comes from `RX_IP_CKSUM_GOOD` of a
/// non-tunnel parse alone.
public enum RxChecksums {
    public enum Verdict: UInt8 { case unknown, good, bad }

    /// RTE_PTYPE_TUNNEL_MASK (compared with DPDK's value by MbufFlagTests): non-zero when the NIC parsed a tunnel.
    public static let tunnelPacketTypeMask: UInt32 = 0x0000_F000

    /// The RX offloads an underlay port is asked for where it advertises them.
    public static var offloads: UInt64 {
        vx_rx_offload_ipv4_cksum() | vx_rx_offload_udp_cksum() | vx_rx_offload_outer_ipv4_cksum() | vx_rx_offload_outer_udp_cksum()
    }

    /// Whether a port with these RX offloads enabled reports checksum status worth trusting.
    public static func reported(byPortWith enabled: UInt64) -> Bool { enabled & offloads != 0 }

    /// The outermost IPv4 header checksum.
    @inlinable @inline(__always)
    public static func outerIP(flags: UInt64, packetType: UInt32) -> Verdict {
        if flags & MbufFlag.rxOuterIPChecksumBad != 0 { return .bad }
        if packetType & tunnelPacketTypeMask != 0 { return .unknown }
        switch flags & MbufFlag.rxIPChecksumMask {
        case MbufFlag.rxIPChecksumGood: return .good
        case MbufFlag.rxIPChecksumBad: return .bad
        default: return .unknown
        }
    }

    /// The outermost UDP (or TCP) checksum.
    @inlinable @inline(__always)
    public static func outerL4(flags: UInt64, packetType: UInt32) -> Verdict {
        switch flags & MbufFlag.rxOuterL4ChecksumMask {
        case MbufFlag.rxOuterL4ChecksumGood: return .good
        case MbufFlag.rxOuterL4ChecksumBad: return .bad
        default: break
        }
        if packetType & tunnelPacketTypeMask != 0 { return .unknown }
        switch flags & MbufFlag.rxL4ChecksumMask {
        case MbufFlag.rxL4ChecksumGood: return .good
        case MbufFlag.rxL4ChecksumBad: return .bad
        default: return .unknown
        }
    }
}
