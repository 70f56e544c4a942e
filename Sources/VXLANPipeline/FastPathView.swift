import CDPDK
import VTEPConfig

/// Everything a polling core reads from `ForwardingTables`, gathered once: raw pointers into the tables and the
/// underlay's constants, no reference counting and no class indirection per packet. `ForwardingTables` builds
/// it when it is created (`fastPath`) and each `VXLANProcessor` keeps a copy. A new table the fast path needs
/// is allocated by `ForwardingTables` and added here, and nowhere else.
///
/// The pointers stay valid as long as the `ForwardingTables` that built the view (a processor holds it).
/// What they point to is written by the slow path under the rules in `ForwardingTables`' documentation:
/// entries appear complete or not at all, and nothing a core may still hold is reused before an RCU grace period.
public struct FastPathView: @unchecked Sendable {
    // Tunnels (Tunnels.swift): two header copies each, the copy in use, and the remote, to detect moves.
    /// `templateStride` bytes per copy, two copies per tunnel.
    public let templates: UnsafeMutableRawPointer
    public let partialSums: UnsafeMutablePointer<UInt32>
    /// Per tunnel: 0 or 1, the copy in use; -1 while its next hop's MAC is unknown (packets are dropped).
    public let activeCopy: UnsafeMutablePointer<Int32>
    public let tunnelRemote: UnsafeMutablePointer<UInt32>
    public let tunnelIsIPv6: UnsafeMutablePointer<UInt8>
    public let tunnelRemote6: UnsafeMutablePointer<UInt64>

    // VNIs (their blocks), their flood lists, access endpoints and remote filters.
    /// By VNI slot: the VNI's current block (replaced whole when it changes; see `VNIBlock`).
    public let vniBlocks: UnsafeMutablePointer<UnsafeMutablePointer<ForwardingTables.VNIBlock>>
    public let endpointPort: UnsafeMutablePointer<Int32>
    public let endpointVLAN: UnsafeMutablePointer<UInt16>
    public let endpointVNISlot: UnsafeMutablePointer<Int32>
    public let endpointEpoch: UnsafeMutablePointer<UInt32>
    public let portEndpoint: UnsafeMutablePointer<Int32>
    public let portTakesLargeFrames: UnsafeMutablePointer<UInt8>
    public let vlanEndpoint: UnsafeMutablePointer<Int32>

    /// VNI slot `s`'s current block (one acquire load: a block is complete before its pointer is stored).
    @inlinable @inline(__always)
    public func vniBlock(_ s: Int) -> ForwardingTables.VNIBlock {
        UnsafeMutablePointer<ForwardingTables.VNIBlock>(OpaquePointer(vx_load_acquire_ptr(UnsafeMutableRawPointer(vniBlocks + s)))).pointee
    }

    // Hash tables (FDB.swift) and what keeps them consistent.
    public let fdbHash: OpaquePointer
    public let fdbLastSeen: UnsafeMutablePointer<UInt32>
    public let vniHash: OpaquePointer
    public let clock: UnsafeMutablePointer<UInt32>
    public let generation: UnsafeMutablePointer<UInt64>
    public let qsbr: OpaquePointer
    /// Bounds of a usable FDB target or stamp slot: anything else found in the table is treated as a miss.
    public let tunnelLimit: UInt32
    public let endpointLimit: UInt32
    public let stampLimit: UInt32

    // The underlay.
    public let underlayPort: Int
    public let underlayAddress: UInt32
    public let hasAddress6: Bool
    public let underlayAddress6: (UInt64, UInt64)
    public let udpPort: UInt16
    public let strict: Bool
    /// Verify non-zero outer UDP checksums over IPv4 (`underlay.verify_udp_checksum`).
    public let verifyUDPChecksum: Bool
    /// Send IPv6 VXLAN with UDP checksum 0; accept a zero one (`underlay.udp6_zero_checksum`).
    public let udp6ZeroChecksumTx: Bool
    public let udp6ZeroChecksumRx: Bool
    public let maxInnerFrame: Int
    public let maxInnerFrame6: Int
    /// The underlay MAC as the low 48 bits of a little-endian 8-byte load of the frame start.
    public let underlayMACBits: UInt64

    init(templates: UnsafeMutableRawPointer, partialSums: UnsafeMutablePointer<UInt32>, activeCopy: UnsafeMutablePointer<Int32>,
         tunnelRemote: UnsafeMutablePointer<UInt32>, tunnelIsIPv6: UnsafeMutablePointer<UInt8>, tunnelRemote6: UnsafeMutablePointer<UInt64>,
         tunnelCapacity: Int,
         vniBlocks: UnsafeMutablePointer<UnsafeMutablePointer<ForwardingTables.VNIBlock>>,
         endpointPort: UnsafeMutablePointer<Int32>, endpointVLAN: UnsafeMutablePointer<UInt16>,
         endpointVNISlot: UnsafeMutablePointer<Int32>, endpointEpoch: UnsafeMutablePointer<UInt32>, endpointCount: Int, portEndpoint: UnsafeMutablePointer<Int32>,
         portTakesLargeFrames: UnsafeMutablePointer<UInt8>,
         vlanEndpoint: UnsafeMutablePointer<Int32>,
         fdbHash: OpaquePointer, fdbLastSeen: UnsafeMutablePointer<UInt32>, fdbCapacity: Int, vniHash: OpaquePointer,
         clock: UnsafeMutablePointer<UInt32>, generation: UnsafeMutablePointer<UInt64>, qsbr: OpaquePointer,
         underlayPort: Int, underlayMAC: MACAddress, underlayAddress: UInt32, underlayAddress6: (UInt64, UInt64)?, udpPort: UInt16,
         strict: Bool, verifyUDPChecksum: Bool = false, udp6ZeroChecksum: VTEPConfiguration.UDP6ZeroChecksum = .init(),
         maxInnerFrame: Int, maxInnerFrame6: Int) {
        self.templates = templates; self.partialSums = partialSums; self.activeCopy = activeCopy
        self.tunnelRemote = tunnelRemote; self.tunnelIsIPv6 = tunnelIsIPv6; self.tunnelRemote6 = tunnelRemote6
        tunnelLimit = UInt32(tunnelCapacity)
        self.vniBlocks = vniBlocks
        self.endpointPort = endpointPort; self.endpointVLAN = endpointVLAN; self.endpointVNISlot = endpointVNISlot; self.endpointEpoch = endpointEpoch
        endpointLimit = UInt32(endpointCount)
        self.portEndpoint = portEndpoint; self.vlanEndpoint = vlanEndpoint; self.portTakesLargeFrames = portTakesLargeFrames
        self.fdbHash = fdbHash; self.fdbLastSeen = fdbLastSeen; stampLimit = UInt32(fdbCapacity); self.vniHash = vniHash
        self.clock = clock; self.generation = generation; self.qsbr = qsbr
        self.underlayPort = underlayPort
        self.underlayAddress = underlayAddress
        hasAddress6 = underlayAddress6 != nil
        self.underlayAddress6 = underlayAddress6 ?? (0, 0)
        self.udpPort = udpPort; self.strict = strict
        self.verifyUDPChecksum = verifyUDPChecksum
        udp6ZeroChecksumTx = udp6ZeroChecksum.tx; udp6ZeroChecksumRx = udp6ZeroChecksum.rx
        self.maxInnerFrame = maxInnerFrame; self.maxInnerFrame6 = maxInnerFrame6
        underlayMACBits = underlayMAC.bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}
