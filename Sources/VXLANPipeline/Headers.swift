import CDPDK
import VTEPConfig

/// RFC 7348 over IPv4: where each field of the 50 bytes in front of the inner frame sits.
/// Where each field the pipeline and the slow path read or write sits, from the start of a frame (Ethernet, then
/// ARP, IPv4 or IPv6 without options or extension headers, then ICMP, ICMPv6 or Neighbor Discovery). One place
/// for every offset, so no stage repeats a bare number.
public enum FrameLayout {
    public static let ethDestination = 0, ethSource = 6, ethType = 12
    // ARP for Ethernet and IPv4 (RFC 826)
    public static let arpHardwareType = 14, arpProtocolType = 16, arpHardwareLength = 18, arpProtocolLength = 19
    public static let arpOperation = 20, arpSenderMAC = 22, arpSenderIP = 28, arpTargetMAC = 32, arpTargetIP = 38
    public static let arpLength = 42
    // IPv4
    public static let ipVersionIHL = 14, ipTotalLength = 16, ipFlagsFragment = 20, ipTTL = 22, ipProtocol = 23
    public static let ipChecksum = 24, ipSource = 26, ipDestination = 30
    // IPv6
    public static let ip6VersionClass = 14, ip6PayloadLength = 18, ip6NextHeader = 20, ip6HopLimit = 21
    public static let ip6Source = 22, ip6Destination = 38, ip6Payload = 54
    // ICMPv6 and Neighbor Discovery (RFC 4861) after the 40-byte IPv6 header
    public static let icmp6Type = 54, icmp6Checksum = 56, ndFlags = 58, ndTarget = 62, ndOption = 78, ndOptionMAC = 80
    public static let ndLength = 86
}

public enum VXLANLayout {
    public static let ethernetLength = 14
    public static let ipv4Length = 20
    public static let udpLength = 8
    public static let vxlanLength = 8
    /// Outer Ethernet + IPv4 (no options) + UDP + VXLAN.
    public static let outerLength = 50
    public static let minimumInnerFrame = 14

    public static let etherTypeIPv4: UInt16 = 0x0800
    public static let etherTypeIPv6: UInt16 = 0x86DD
    public static let etherTypeVLAN: UInt16 = 0x8100
    public static let protocolUDP: UInt8 = 17
    public static let protocolTCP: UInt8 = 6
    public static let protocolICMP: UInt8 = 1
    public static let etherTypeARP: UInt16 = 0x0806
    public static let protocolICMPv6: UInt8 = 58

    /// Outer Ethernet + IPv6 + UDP + VXLAN.
    public static let outerLength6 = 70
    // Offsets in an IPv6-encapsulated frame.
    public static let ip6PayloadLengthOffset = 18
    public static let ip6SourceOffset = 22
    public static let ip6DestinationOffset = 38
    public static let udp6Offset = 54
    public static let udp6LengthOffset = 58
    public static let udp6ChecksumOffset = 60

    // Offsets from the start of the outer frame.
    public static let ipOffset = 14
    public static let ipTotalLengthOffset = 16
    public static let ipChecksumOffset = 24
    public static let ipSourceOffset = 26
    public static let ipDestinationOffset = 30
    public static let udpOffset = 34
    public static let udpSourcePortOffset = 34
    public static let udpLengthOffset = 38
    public static let vxlanOffset = 42

    /// The I flag: the VNI is valid. RFC 7348 says every other flag bit is reserved and sent as zero.
    public static let flagI: UInt8 = 0x08
    /// Don't Fragment: a VTEP must not fragment, so the underlay reports (or drops) what does not fit.
    public static let ipFlagDF: UInt16 = 0x4000
    public static let sourcePortBase: UInt16 = 49152
}

/// Outer headers over IPv6 for one tunnel: 70 bytes, built once. Per packet: flow label, payload length, UDP
/// source port, UDP length and the UDP checksum, which IPv6 requires (RFC 8200): a precomputed sum of the
/// constant fields (pseudo-header addresses and next header, destination port, VXLAN header) plus the
/// per-packet fields and the inner frame.
public struct OuterHeaderTemplate6: Equatable, Sendable {
    public var bytes: [UInt8]
    /// Folded sum (native word order, as rte_raw_cksum gives it) of the constant checksummed fields.
    public var udpPartialSum: UInt32

    public init(sourceMAC: MACAddress, destinationMAC: MACAddress, source: IPv6Address, destination: IPv6Address,
                vni: UInt32, udpDestinationPort: UInt16, hopLimit: UInt8) {
        var b = [UInt8](repeating: 0, count: VXLANLayout.outerLength6)
        b.replaceSubrange(0..<6, with: destinationMAC.bytes)
        b.replaceSubrange(6..<12, with: sourceMAC.bytes)
        b[12] = 0x86; b[13] = 0xDD
        b[14] = 0x60                                        // version 6; traffic class 0; flow label per packet
        b[20] = VXLANLayout.protocolUDP
        b[21] = hopLimit
        b.replaceSubrange(22..<38, with: source.bytes)
        b.replaceSubrange(38..<54, with: destination.bytes)
        b[56] = UInt8(udpDestinationPort >> 8); b[57] = UInt8(udpDestinationPort & 0xff)
        b[62] = VXLANLayout.flagI
        b[66] = UInt8(vni >> 16 & 0xff); b[67] = UInt8(vni >> 8 & 0xff); b[68] = UInt8(vni & 0xff)
        bytes = b
        // Addresses, next header (as a 16-bit word), destination port, VXLAN header.
        let constant = Array(b[22..<54]) + [0, VXLANLayout.protocolUDP] + Array(b[56..<58]) + Array(b[62..<70])
        udpPartialSum = constant.withUnsafeBytes { UInt32(vx_raw_cksum($0.baseAddress!, $0.count)) }
    }

    /// Writes the per-packet fields; `innerSum` is the inner frame's folded sum in native word order.
    @inlinable @inline(__always)
    public static func patch(_ header: UnsafeMutableRawPointer, innerLength: Int, sourcePort: UInt16, flowHash: UInt32,
                             partialSum: UInt32, innerSum: UInt16) {
        let udpLength = UInt16(truncatingIfNeeded: innerLength &+ 16)
        store32(header, 14, 0x6000_0000 | (flowHash & 0xF_FFFF))
        store16(header, VXLANLayout.ip6PayloadLengthOffset, udpLength)
        store16(header, VXLANLayout.udp6Offset, sourcePort)
        store16(header, VXLANLayout.udp6LengthOffset, udpLength)
        // Pseudo-header length and the UDP length field are the same value: it counts twice.
        var sum = partialSum &+ UInt32(udpLength.byteSwapped) &* 2 &+ UInt32(sourcePort.byteSwapped) &+ UInt32(innerSum)
        sum = (sum & 0xFFFF) &+ (sum >> 16)
        var checksum = ~foldChecksum(sum)
        if checksum == 0 { checksum = 0xFFFF }              // RFC 8200: a computed 0 is sent as all ones
        header.storeBytes(of: checksum, toByteOffset: VXLANLayout.udp6ChecksumOffset, as: UInt16.self)
    }
}

/// The outer headers for one tunnel (one VNI towards one remote VTEP), built once at configuration time.
/// Per packet only the IP total length and checksum, the UDP source port and the UDP length change.
public struct OuterHeaderTemplate: Equatable, Sendable {
    /// 50 bytes: Ethernet, IPv4 (total length 0, checksum 0), UDP (source port 0, length 0, checksum 0), VXLAN.
    public var bytes: [UInt8]
    /// Ones'-complement sum of the IPv4 header as built (length and checksum zero), unfolded, in the
    /// byte order rte_raw_cksum uses, so per packet the checksum is one add and a fold.
    public var ipv4PartialSum: UInt32

    public init(sourceMAC: MACAddress, destinationMAC: MACAddress, source: IPv4Address, destination: IPv4Address,
                vni: UInt32, udpDestinationPort: UInt16, ttl: UInt8) {
        var b = [UInt8](repeating: 0, count: VXLANLayout.outerLength)
        b.replaceSubrange(0..<6, with: destinationMAC.bytes)
        b.replaceSubrange(6..<12, with: sourceMAC.bytes)
        b[12] = 0x08; b[13] = 0x00
        b[14] = 0x45                      // version 4, 5 words
        b[15] = 0                         // DSCP/ECN
        // 16-17 total length: per packet
        // 18-19 identification 0: DF is set, so it identifies nothing (RFC 6864)
        b[20] = UInt8(VXLANLayout.ipFlagDF >> 8); b[21] = 0
        b[22] = ttl
        b[23] = VXLANLayout.protocolUDP
        // 24-25 checksum: per packet
        b.replaceSubrange(26..<30, with: source.bytes)
        b.replaceSubrange(30..<34, with: destination.bytes)
        // 34-35 UDP source port: per packet
        b[36] = UInt8(udpDestinationPort >> 8); b[37] = UInt8(udpDestinationPort & 0xff)
        // 38-39 UDP length: per packet; 40-41 UDP checksum 0 (RFC 7348: SHOULD be zero over IPv4)
        b[42] = VXLANLayout.flagI
        b[46] = UInt8(vni >> 16 & 0xff); b[47] = UInt8(vni >> 8 & 0xff); b[48] = UInt8(vni & 0xff)
        bytes = b
        ipv4PartialSum = b.withUnsafeBytes { UInt32(vx_raw_cksum($0.baseAddress! + VXLANLayout.ipOffset, VXLANLayout.ipv4Length)) }
    }

    /// Writes the per-packet fields into `header` (which holds a copy of `bytes`) for an inner frame of
    /// `innerLength` bytes.
    @inlinable @inline(__always)
    public static func patch(_ header: UnsafeMutableRawPointer, innerLength: Int, sourcePort: UInt16, partialSum: UInt32) {
        let ipLength = UInt16(truncatingIfNeeded: innerLength &+ 36)
        store16(header, VXLANLayout.ipTotalLengthOffset, ipLength)
        // rte_raw_cksum sums native-order (little-endian) words; the length field as such a word is byte-swapped.
        let sum = partialSum &+ UInt32(ipLength.byteSwapped)
        header.storeBytes(of: ~foldChecksum(sum), toByteOffset: VXLANLayout.ipChecksumOffset, as: UInt16.self)
        store16(header, VXLANLayout.udpSourcePortOffset, sourcePort)
        store16(header, VXLANLayout.udpLengthOffset, UInt16(truncatingIfNeeded: innerLength &+ 16))
    }
}

/// The outer UDP source port for an inner flow: RFC 7348 recommends 49152-65535, chosen by a hash of the inner
/// headers so one flow keeps one path while receivers' RSS spreads different flows over queues.
@inlinable @inline(__always)
public func vxlanSourcePort(flowHash h: UInt32) -> UInt16 {
    VXLANLayout.sourcePortBase | UInt16(truncatingIfNeeded: (h ^ (h >> 16)) & 0x3FFF)
}

/// A hash of the inner frame's flow: IPv4/IPv6 addresses and, for unfragmented TCP/UDP, ports; for other
/// traffic the Ethernet addresses and type. CRC32-C (SSE4.2) via rte_hash_crc.
@inlinable @inline(__always)
public func innerFlowHash(_ frame: UnsafeMutableRawPointer, length: Int) -> UInt32 {
    let type = load16(frame, 12)
    if type == VXLANLayout.etherTypeIPv4 && length >= 34 {
        let ihl = Int(frame.load(fromByteOffset: 14, as: UInt8.self) & 0x0F) &* 4
        let proto = frame.load(fromByteOffset: 23, as: UInt8.self)
        var h = vx_hash_crc_8byte(frame.loadUnaligned(fromByteOffset: 26, as: UInt64.self), UInt32(proto))
        let fragment = load16(frame, 20) & 0x3FFF
        if (proto == VXLANLayout.protocolTCP || proto == VXLANLayout.protocolUDP) && fragment == 0 && length >= 14 &+ ihl &+ 4 {
            h = vx_hash_crc_4byte(frame.loadUnaligned(fromByteOffset: 14 &+ ihl, as: UInt32.self), h)
        }
        return h
    }
    if type == VXLANLayout.etherTypeIPv6 && length >= 54 {
        let next = frame.load(fromByteOffset: 20, as: UInt8.self)
        var h = vx_hash_crc(frame + 22, 32, UInt32(next))
        if (next == VXLANLayout.protocolTCP || next == VXLANLayout.protocolUDP) && length >= 58 {
            h = vx_hash_crc_4byte(frame.loadUnaligned(fromByteOffset: 54, as: UInt32.self), h)
        }
        return h
    }
    let macs = vx_hash_crc_8byte(frame.loadUnaligned(fromByteOffset: 0, as: UInt64.self), UInt32(type))
    return vx_hash_crc_4byte(frame.loadUnaligned(fromByteOffset: 8, as: UInt32.self), macs)
}
