import PollMode

/// How encapsulated packets leave through a port: what the NIC does and what the pipeline must do itself.
/// Decided once at start from the offloads the port enabled (`EthPort.enabledTxOffloads`).
public struct TunnelTxPlan: Sendable, Equatable {
    /// The NIC segments VXLAN-encapsulated TCP (and fills inner and outer checksums while doing it).
    public var tunnelTSO: Bool
    /// The NIC fills inner IPv4 and TCP/UDP checksums of a VXLAN packet.
    public var innerChecksums: Bool
    /// The NIC fills the outer IPv4 header checksum.
    public var outerIPv4Checksum: Bool
    /// The NIC fills the outer UDP checksum (over IPv6; over IPv4 the checksum is sent as 0, RFC 7348).
    public var outerUDPChecksum: Bool

    public static let software = TunnelTxPlan(tunnelTSO: false, innerChecksums: false, outerIPv4Checksum: false, outerUDPChecksum: false)

    /// The plan for a port that enabled `offloads`. Inner checksums need a NIC that knows tunnels: one that
    /// offers an outer checksum or tunnel TSO (a NIC with plain TCP/UDP checksum offload, such as ixgbe, refuses
    /// TUNNEL_VXLAN in tx_prepare). Tunnel TSO needs the inner checksums, MULTI_SEGS and the outer IPv4 checksum
    /// (every segment's outer header differs) as well.
    public init(enabled offloads: TxOffloads) {
        outerIPv4Checksum = offloads.contains(.outerIPv4Checksum)
        outerUDPChecksum = offloads.contains(.outerUDPChecksum)
        innerChecksums = offloads.isSuperset(of: [.ipv4Checksum, .tcpChecksum, .udpChecksum])
            && (outerIPv4Checksum || offloads.contains(.vxlanTunnelTSO))
        tunnelTSO = innerChecksums && outerIPv4Checksum && offloads.isSuperset(of: [.vxlanTunnelTSO, .multiSegments])
    }

    public init(tunnelTSO: Bool, innerChecksums: Bool, outerIPv4Checksum: Bool, outerUDPChecksum: Bool) {
        self.tunnelTSO = tunnelTSO; self.innerChecksums = innerChecksums
        self.outerIPv4Checksum = outerIPv4Checksum; self.outerUDPChecksum = outerUDPChecksum
    }

    /// Whether any metadata is handed to the NIC (then `rte_eth_tx_prepare` runs before every burst).
    public var usesHardware: Bool { tunnelTSO || innerChecksums || outerUDPChecksum }

    /// "hardware tso", "hardware checksum", "software": for `show ports`.
    public var summary: String { tunnelTSO ? "hardware_tso" : innerChecksums ? "hardware_checksum" : "software" }
}
