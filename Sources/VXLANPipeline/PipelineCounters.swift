/// What the pipeline counts per polling core, besides the per-port counters PollMode keeps.
public enum PipelineCounter: Int, CaseIterable, Sendable {
    /// Packets sent into a tunnel (each flooded copy counts once).
    case encapsulated
    /// VXLAN packets whose inner frame was delivered to an access port.
    case decapsulated
    /// Copies made by head-end replication of broadcast, multicast and unknown-unicast frames (all copies).
    case floodCopies
    /// Frames flooded because their destination MAC was unknown in the VNI (counted once per frame).
    case unknownUnicast
    /// Frames from access ports flooded (broadcast, multicast, unknown unicast), once per frame.
    case flooded
    /// Underlay frames for the control plane (ARP, ICMP to the VTEP address) handed to the slow path.
    case punted
    /// Frames the slow path asked this core to send (ARP requests and replies, ICMP echo replies).
    case injected
    /// Frames switched between two access ports of one VNI (never tunnelled).
    case switchedLocally
    /// Copies of BUM frames sent to the VNI's other local access ports.
    case localFloodCopies
    /// New or moved source MACs reported to the slow path for learning.
    case learnEvents
    /// Learning events lost because the core's queue to the slow path was full (the frame itself was forwarded).
    case learnQueueFull
    /// Access frames larger than the tunnel allows, cut into TCP segments in software (Segment.swift).
    case framesSegmented
    /// The segments those frames became.
    case segmentsOut
    /// TCP/UDP checksums computed in software (frames the sender left unfinished, and every segment).
    case checksumsCompleted
    /// Frames handed to the underlay NIC with VXLAN TSO metadata (it segments them).
    case hardwareTSO
    /// Frames handed to the underlay NIC with inner checksum metadata.
    case hardwareChecksum
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" sent back to a VM.
    case tooBigSent
    /// Those not sent because of the rate limit (or no buffer).
    case tooBigRateLimited
    /// IPv4 packets without DF over the tunnel's MTU, split into fragments (the inner packet; the outer never is).
    case framesFragmented
    case fragmentsOut
    /// Decapsulated non-TCP frames larger than the overlay MTU, delivered as they came (nothing can cut them).
    case oversizeDelivered
    /// Frames rte_gro built from several decapsulated segments, for VMs that take large frames.
    case coalescedFrames
    /// The segments merged away into them.
    case coalescedSegments
    /// 64 KB frames from the underlay handed whole to a VM that takes them (with segmentation metadata).
    case largeFramesDelivered

    public var name: String {
        switch self {
        case .encapsulated: "encapsulated"
        case .decapsulated: "decapsulated"
        case .floodCopies: "flood_copies"
        case .unknownUnicast: "unknown_unicast"
        case .flooded: "flooded"
        case .punted: "punted"
        case .injected: "injected"
        case .switchedLocally: "switched_locally"
        case .localFloodCopies: "local_flood_copies"
        case .learnEvents: "learn_events"
        case .learnQueueFull: "learn_queue_full"
        case .framesSegmented: "frames_segmented"
        case .segmentsOut: "segments_out"
        case .checksumsCompleted: "checksums_completed"
        case .hardwareTSO: "hardware_tso"
        case .hardwareChecksum: "hardware_checksum"
        case .tooBigSent: "icmp_too_big_sent"
        case .tooBigRateLimited: "icmp_too_big_rate_limited"
        case .oversizeDelivered: "oversize_delivered"
        case .framesFragmented: "frames_fragmented"
        case .fragmentsOut: "fragments_out"
        case .coalescedFrames: "gro_frames"
        case .coalescedSegments: "gro_merged_segments"
        case .largeFramesDelivered: "large_frames_delivered"
        }
    }
}

/// Why a packet was dropped. Every drop is counted under exactly one reason.
public enum DropReason: Int, CaseIterable, Sendable {
    // Underlay receive (decapsulation)
    /// Shorter than the outer headers plus a 14-byte inner Ethernet header, or IP/UDP lengths that overrun the frame.
    case truncated
    /// Underlay frame that is neither IP nor ARP (LLDP, ...).
    case notIP
    /// Unicast to another Ethernet address (the underlay port is promiscuous).
    case notOurMAC
    /// IPv4 header with a bad version, header length or total length.
    case badIPHeader
    case badIPChecksum
    /// IP fragment: a VTEP neither fragments nor reassembles (RFC 7348).
    case ipFragment
    /// IPv6 VXLAN with a zero or wrong UDP checksum (RFC 8200 requires one).
    case badUDPChecksum
    /// IPv4 destination that is not this VTEP's address.
    case wrongDestination
    /// IPv4 to us that is not UDP.
    case notUDP
    /// UDP to us on another port than the VXLAN port.
    case wrongUDPPort
    /// VXLAN header without the I flag.
    case badFlags
    /// VXLAN header with reserved bits set, in strict mode.
    case reservedBits
    /// VNI not configured here.
    case unknownVNI
    /// Inner frame shorter than an Ethernet header.
    case innerTooShort
    // Access receive (encapsulation)
    /// Access frame shorter than an Ethernet header.
    case runtFrame
    /// Frame that would exceed the underlay MTU once encapsulated and can be neither segmented (not TCP) nor
    /// fragmented (IPv6, or DF set): an ICMP "too big" goes back to the sender (rate-limited).
    case overMTU
    /// Access frame whose IP lengths overrun its bytes (a truncated capture) or whose headers are split across
    /// buffers, found while completing a checksum or segmenting.
    case innerMalformed
    /// A buffer ran out while segmenting (the whole frame is dropped, no partial output).
    case segmentationFailed
    /// Not enough headroom in the buffer to prepend the outer headers.
    case noHeadroom
    /// Nowhere to send it: unknown unicast or BUM with an empty flood list, or a VNI without access ports.
    case noDestination
    /// A flood copy could not be made (mempool empty).
    case copyFailed
    /// The remote's next hop (itself or the gateway) has no MAC yet; ARP is resolving it.
    case neighborUnresolved
    /// The slow path's queue from this core was full.
    case slowPathBusy
    /// Unicast whose destination MAC was learned behind the port it came in on.
    case samePort
    /// Access frame on a VLAN the port does not map (or tagged on an untagged port, or untagged on a tagged one).
    case vlanNotMapped
    /// Decapsulated frame carrying an 802.1Q tag (RFC 7348: discard unless configured).
    case innerVLAN
    /// VXLAN from a source outside the VNI's (or the global) `allowed_remotes`; dropped before lookup or learning.
    case remoteNotAllowed
    /// From a port slot with no access mapping (being detached, or attached without a VNI yet).
    case portDetached

    public var name: String {
        switch self {
        case .truncated: "truncated"
        case .notIP: "not_ip"
        case .notOurMAC: "not_our_mac"
        case .badIPHeader: "bad_ip_header"
        case .badIPChecksum: "bad_ip_checksum"
        case .ipFragment: "ip_fragment"
        case .badUDPChecksum: "bad_udp_checksum"
        case .wrongDestination: "wrong_destination"
        case .notUDP: "not_udp"
        case .wrongUDPPort: "wrong_udp_port"
        case .badFlags: "bad_flags"
        case .reservedBits: "reserved_bits"
        case .unknownVNI: "unknown_vni"
        case .innerTooShort: "inner_too_short"
        case .runtFrame: "runt_frame"
        case .overMTU: "over_mtu"
        case .innerMalformed: "inner_malformed"
        case .segmentationFailed: "segmentation_failed"
        case .noHeadroom: "no_headroom"
        case .noDestination: "no_destination"
        case .copyFailed: "copy_failed"
        case .neighborUnresolved: "neighbor_unresolved"
        case .slowPathBusy: "slow_path_busy"
        case .samePort: "same_port"
        case .vlanNotMapped: "vlan_not_mapped"
        case .innerVLAN: "inner_vlan"
        case .remoteNotAllowed: "remote_not_allowed"
        case .portDetached: "port_detached"
        }
    }
}

/// Layout of the pipeline's per-core counter block: the `PipelineCounter`s, then one slot per `DropReason`.
public enum PipelineCounterLayout {
    public static let count = PipelineCounter.allCases.count + DropReason.allCases.count
    @inlinable public static func slot(_ c: PipelineCounter) -> Int { c.rawValue }
    @inlinable public static func slot(_ r: DropReason) -> Int { PipelineCounter.allCases.count + r.rawValue }
}

/// Per-VNI counters a polling core keeps, one group per VNI slot (`ForwardingTables.vniCapacity`). A
/// slot's counts belong to the VNI that holds it; reports subtract the values a slot had when its VNI was added.
public enum VNICounter: Int, CaseIterable, Sendable {
    /// Frames from the VNI's local ports (before encapsulation or local switching), and their bytes.
    case encapPackets, encapBytes
    /// VXLAN received for the VNI (after the outer checks and the remote filter), and the inner frames' bytes.
    case decapPackets, decapBytes
    /// Frames of the VNI dropped: remote not allowed, no destination, same port.
    case drops

    public var name: String {
        switch self {
        case .encapPackets: "encap_packets"
        case .encapBytes: "encap_bytes"
        case .decapPackets: "decap_packets"
        case .decapBytes: "decap_bytes"
        case .drops: "drops"
        }
    }

    public static let stride = allCases.count
    @inlinable public static func slot(vniSlot: Int, _ c: VNICounter) -> Int { vniSlot &* stride &+ c.rawValue }
}
