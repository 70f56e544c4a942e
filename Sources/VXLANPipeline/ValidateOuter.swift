import CDPDK
import PollMode
import VTEPConfig

/// Validation of an underlay frame's outer headers (Ethernet, IPv4 or IPv6, UDP, VXLAN): a drop reason, or the
/// VNI, outer header length, inner length and outer source recorded for pass 2.
extension VXLANProcessor {
    /// its VNI (`decapVNI`), outer header length (`outerLength`), inner length and outer source are recorded.
    @inlinable @inline(__always)
    func validate(_ m: OpaquePointer, index i: Int) -> Int {
        let dataLength = Int(vx_mbuf_data_len(m))
        let packetLength = Int(vx_mbuf_pkt_len(m))
        if dataLength < VXLANLayout.ethernetLength { return DropReason.truncated.rawValue }
        let f = vx_mbuf_data(m)
        // Destination MAC: ours, or group-addressed (those are not VXLAN for us and fail below).
        let first = f.load(as: UInt8.self)
        if first & 1 == 0 && (f.loadUnaligned(as: UInt64.self) & 0xFFFF_FFFF_FFFF) != view.underlayMACBits {
            return DropReason.notOurMAC.rawValue
        }
        let type = load16(f, FrameLayout.ethType)
        if type == VXLANLayout.etherTypeIPv6 { return validate6(m, f, index: i, dataLength: dataLength, packetLength: packetLength) }
        if type != VXLANLayout.etherTypeIPv4 { return DropReason.notIP.rawValue }
        if dataLength < VXLANLayout.ethernetLength &+ VXLANLayout.ipv4Length { return DropReason.truncated.rawValue }
        let versionIHL = f.load(fromByteOffset: FrameLayout.ipVersionIHL, as: UInt8.self)
        let ihl = Int(versionIHL & 0x0F) &* 4
        let ipLength = Int(load16(f, FrameLayout.ipTotalLength))
        if versionIHL >> 4 != 4 || ihl < VXLANLayout.ipv4Length || ipLength < ihl { return DropReason.badIPHeader.rawValue }
        if VXLANLayout.ethernetLength &+ ipLength > packetLength || VXLANLayout.ethernetLength &+ ihl > dataLength {
            return DropReason.truncated.rawValue
        }
        // What the NIC says about the checksums (nothing, unless the underlay's RX checksum offloads are on).
        let rxFlags = underlayRxChecksums ? vx_mbuf_ol_flags(m) & MbufFlag.rxChecksumStatus : 0
        let ipVerdict = rxFlags == 0 ? .unknown : RxChecksums.outerIP(flags: rxFlags, packetType: vx_mbuf_packet_type(m))
        if ipVerdict == .bad || (ipVerdict == .unknown && !ipv4HeaderChecksumIsValid(f + VXLANLayout.ipOffset, length: ihl)) {
            return DropReason.badIPChecksum.rawValue
        }
        if load16(f, FrameLayout.ipFlagsFragment) & 0x3FFF != 0 { return DropReason.ipFragment.rawValue }
        if load32(f, VXLANLayout.ipDestinationOffset) != view.underlayAddress { return DropReason.wrongDestination.rawValue }
        if f.load(fromByteOffset: FrameLayout.ipProtocol, as: UInt8.self) != VXLANLayout.protocolUDP { return DropReason.notUDP.rawValue }
        let udp = VXLANLayout.ethernetLength &+ ihl
        if ipLength < ihl &+ VXLANLayout.udpLength || dataLength < udp &+ VXLANLayout.udpLength { return DropReason.truncated.rawValue }
        let reason = validateVXLAN(f, index: i, udp: udp, ipPayload: ipLength &- ihl, dataLength: dataLength)
        if reason < 0 {
            // A zero UDP checksum over IPv4 means "none" (RFC 768, 7348). A non-zero one is checked when the NIC
            // has (its BAD is free to act on) or, with verify_udp_checksum, in software.
            if load16(f, udp &+ 6) != 0 && (rxFlags != 0 || view.verifyUDPChecksum) {
                let verdict = rxFlags == 0 ? .unknown : RxChecksums.outerL4(flags: rxFlags, packetType: vx_mbuf_packet_type(m))
                if verdict == .bad || (verdict == .unknown && view.verifyUDPChecksum && !udp4ChecksumIsValid(m, f, udp: udp, dataLength: dataLength)) {
                    return DropReason.badUDPChecksum.rawValue
                }
            }
            outerSource[i] = load32(f, VXLANLayout.ipSourceOffset)
            outerIsIPv6[i] = 0
        }
        return reason
    }

    /// Verifies the UDP checksum of an IPv4 packet whose lengths `validateVXLAN` accepted: pseudo-header plus the
    /// datagram, checksum included, must sum to 0xFFFF.
    @inline(never) @usableFromInline
    func udp4ChecksumIsValid(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, udp: Int, dataLength: Int) -> Bool {
        let udpLength = Int(load16(f, udp &+ 4))
        var sum = UInt32(rawChecksum(f + VXLANLayout.ipSourceOffset, length: 8))
        sum &+= UInt32(UInt16(truncatingIfNeeded: udpLength).byteSwapped) &+ UInt32(UInt16(VXLANLayout.protocolUDP).byteSwapped)
        sum &+= udp &+ udpLength <= dataLength
            ? UInt32(rawChecksum(f + udp, length: udpLength))
            : UInt32(L4Checksum.chainSum(m, from: udp, length: udpLength))      // spans segments
        return foldChecksum(sum) == 0xFFFF
    }

    /// The IPv6 half of `validate`: fixed header, no extension headers, our address, a UDP checksum that is
    /// present and right (RFC 8200; from a kernel-attached underlay present), or zero with `udp6_zero_checksum.rx`
    /// (RFC 6935/6936).
    @inline(never) @usableFromInline
    func validate6(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, index i: Int, dataLength: Int, packetLength: Int) -> Int {
        let fixed = VXLANLayout.ethernetLength &+ 40
        if dataLength < fixed { return DropReason.truncated.rawValue }
        if f.load(fromByteOffset: FrameLayout.ip6VersionClass, as: UInt8.self) >> 4 != 6 { return DropReason.badIPHeader.rawValue }
        let payload = Int(load16(f, FrameLayout.ip6PayloadLength))
        if fixed &+ payload > packetLength { return DropReason.truncated.rawValue }
        let next = f.load(fromByteOffset: FrameLayout.ip6NextHeader, as: UInt8.self)
        if next == 44 { return DropReason.ipFragment.rawValue }
        if !view.hasAddress6 || f.loadUnaligned(fromByteOffset: VXLANLayout.ip6DestinationOffset, as: UInt64.self) != view.underlayAddress6.0
            || f.loadUnaligned(fromByteOffset: VXLANLayout.ip6DestinationOffset &+ 8, as: UInt64.self) != view.underlayAddress6.1 {
            return DropReason.wrongDestination.rawValue
        }
        if next != VXLANLayout.protocolUDP { return DropReason.notUDP.rawValue }
        if payload < VXLANLayout.udpLength || dataLength < fixed &+ VXLANLayout.udpLength { return DropReason.truncated.rawValue }
        if load16(f, VXLANLayout.udp6Offset &+ 2) != view.udpPort { return DropReason.wrongUDPPort.rawValue }
        if load16(f, VXLANLayout.udp6ChecksumOffset) == 0 {
            // RFC 6935/6936: only with udp6_zero_checksum.rx (Linux's udp6zerocsumrx).
            if !view.udp6ZeroChecksumRx { return DropReason.badUDPChecksum.rawValue }
        } else if completesChecksums[view.underlayPort] == 0 {
            // A kernel-attached underlay (net_af_packet on a veth) hands over what a kernel on this host left to its
            // NIC, and af_packet has no header to say so: with TX checksum offload the field holds only the
            // pseudo-header sum (CHECKSUM_PARTIAL), or, when the inner checksum is itself left to offload, a sum that
            // is right only once the inner one is filled in (local checksum offload), which vxland does after
            // decapsulation on such a port. There a present checksum is taken as the kernel's own; elsewhere it must
            // be right.
            let rxFlags = underlayRxChecksums ? vx_mbuf_ol_flags(m) & MbufFlag.rxChecksumStatus : 0
            let verdict = rxFlags == 0 ? .unknown : RxChecksums.outerL4(flags: rxFlags, packetType: vx_mbuf_packet_type(m))
            if verdict == .bad || (verdict == .unknown && !udp6ChecksumIsValid(m, f, payload: payload, dataLength: dataLength)) {
                return DropReason.badUDPChecksum.rawValue
            }
        }
        let reason = validateVXLAN(f, index: i, udp: fixed, ipPayload: payload, dataLength: dataLength)
        if reason < 0 {
            outerSource6[2 &* i] = f.loadUnaligned(fromByteOffset: VXLANLayout.ip6SourceOffset, as: UInt64.self)
            outerSource6[2 &* i &+ 1] = f.loadUnaligned(fromByteOffset: VXLANLayout.ip6SourceOffset &+ 8, as: UInt64.self)
            outerIsIPv6[i] = 1
        }
        return reason
    }

    /// Verifies the UDP checksum of an IPv6 packet: pseudo-header (addresses, length, next header) plus the whole
    /// UDP datagram, checksum included, must sum to 0xFFFF.
    @inlinable @inline(__always)
    func udp6ChecksumIsValid(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, payload: Int, dataLength: Int) -> Bool {
        let udpLength = Int(load16(f, VXLANLayout.udp6LengthOffset))
        guard udpLength <= payload, VXLANLayout.udp6Offset &+ udpLength <= dataLength else {
            return vx_ipv6_l4_cksum_verify(m, 14, UInt16(VXLANLayout.udp6Offset)) == 0     // spans view.vniBlocks
        }
        var sum = UInt32(rawChecksum(f + VXLANLayout.ip6SourceOffset, length: 32))
        sum &+= UInt32(UInt16(truncatingIfNeeded: udpLength).byteSwapped) &+ UInt32(UInt16(VXLANLayout.protocolUDP).byteSwapped)
        sum &+= UInt32(rawChecksum(f + VXLANLayout.udp6Offset, length: udpLength))
        return foldChecksum(sum) == 0xFFFF
    }

    /// UDP length, VXLAN flags and the inner frame, for either outer family (`udp`: offset of the UDP header).
    @inlinable @inline(__always)
    func validateVXLAN(_ f: UnsafeMutableRawPointer, index i: Int, udp: Int, ipPayload: Int, dataLength: Int) -> Int {
        let headers = udp &+ VXLANLayout.udpLength &+ VXLANLayout.vxlanLength
        if load16(f, udp &+ 2) != view.udpPort { return DropReason.wrongUDPPort.rawValue }
        let udpLength = Int(load16(f, udp &+ 4))
        if udpLength > ipPayload || udpLength < VXLANLayout.udpLength &+ VXLANLayout.vxlanLength || dataLength < headers {
            return DropReason.truncated.rawValue
        }
        let inner = udpLength &- VXLANLayout.udpLength &- VXLANLayout.vxlanLength
        if inner < VXLANLayout.minimumInnerFrame || dataLength < headers &+ VXLANLayout.minimumInnerFrame {
            return DropReason.innerTooShort.rawValue
        }
        let vxlan = udp &+ VXLANLayout.udpLength
        if f.load(fromByteOffset: vxlan, as: UInt8.self) & VXLANLayout.flagI == 0 { return DropReason.badFlags.rawValue }
        if load16(f, headers &+ 12) == VXLANLayout.etherTypeVLAN { return DropReason.innerVLAN.rawValue }
        // Strict: flags exactly I, reserved bytes 1-3 and 7 zero.
        if view.strict && (load32(f, vxlan) != 0x0800_0000 || f.load(fromByteOffset: vxlan &+ 7, as: UInt8.self) != 0) {
            return DropReason.reservedBits.rawValue
        }
        decapVNI[i] = load32(f, vxlan &+ 4) >> 8
        outerLength[i] = Int32(headers)
        innerLength[i] = Int32(inner)
        return -1
    }

}
