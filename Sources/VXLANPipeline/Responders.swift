import CDPDK
import PollMode
import VTEPConfig

private typealias L = FrameLayout

/// The slow path's answers and requests on the underlay, frame by frame: ARP (answering for the VTEP address,
/// asking for next hops), ICMP echo, and over IPv6 Neighbor Solicitation and Advertisement (hop limit 255, RFC
/// 4861) and ICMPv6 echo. What a claim means for a next hop is NeighborTable's decision (`confirm`).
extension UnderlayControl {
    func handleARP(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, core: Int, now: Double) {
        // Ethernet, IPv4, 6-byte and 4-byte addresses only.
        guard load16(f, L.arpHardwareType) == 1, load16(f, L.arpProtocolType) == VXLANLayout.etherTypeIPv4,
              f.load(fromByteOffset: L.arpHardwareLength, as: UInt8.self) == 6,
              f.load(fromByteOffset: L.arpProtocolLength, as: UInt8.self) == 4 else { count(.ignored); vx_mbuf_free(m); return }
        let op = load16(f, L.arpOperation)
        let senderMAC = MACAddress(bytes: (22..<28).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
        let senderIP = IPAddress.v4(IPv4Address(load32(f, L.arpSenderIP)))
        let targetIP = IPv4Address(load32(f, L.arpTargetIP))
        // RFC 826: update the sender's entry if we have one (requests for us confirm it too).
        if confirm(senderIP, mac: senderMAC, isReply: op == 2, now: now) == .accepted && op == 2 { count(.arpRepliesReceived) }
        guard op == 1, targetIP == ourIP, !ourIP.isUnspecified else { vx_mbuf_free(m); return }
        // Answer in place: who-has ourIP tell sender -> ourIP is-at ourMAC.
        for (i, b) in senderMAC.bytes.enumerated() {
            f.storeBytes(of: b, toByteOffset: i, as: UInt8.self)          // Ethernet destination
            f.storeBytes(of: b, toByteOffset: L.arpTargetMAC + i, as: UInt8.self)
        }
        for (i, b) in ourMAC.bytes.enumerated() {
            f.storeBytes(of: b, toByteOffset: L.ethSource + i, as: UInt8.self)
            f.storeBytes(of: b, toByteOffset: L.arpSenderMAC + i, as: UInt8.self)
        }
        store16(f, L.arpOperation, 2)
        store32(f, L.arpTargetIP, load32(f, L.arpSenderIP))
        store32(f, L.arpSenderIP, ourIP.value)
        // The reply is the ARP packet alone: whatever followed the request (padding, or a sender's junk up to
        // 64 KB) is not sent back.
        _ = vx_mbuf_truncate(m, UInt16(L.arpLength))
        if inject(m, core: core) { count(.arpRepliesSent) }
    }

    func handleICMP(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, length: Int, core: Int) {
        let ihl = Int(f.load(fromByteOffset: L.ipVersionIHL, as: UInt8.self) & 0x0F) * 4
        let ipLength = Int(load16(f, L.ipTotalLength))
        let icmp = L.ipVersionIHL + ihl
        // The fast path checked version, lengths, checksum, fragmentation and the destination.
        guard ipLength >= ihl + 8, L.ipVersionIHL + ipLength <= Int(vx_mbuf_data_len(m)),
              f.load(fromByteOffset: icmp, as: UInt8.self) == 8, f.load(fromByteOffset: icmp + 1, as: UInt8.self) == 0,
              vx_raw_cksum(f + icmp, ipLength - ihl) == 0xFFFF else { count(.ignored); vx_mbuf_free(m); return }
        // Echo reply: swap addresses, type 0, fresh checksums.
        for i in 0..<6 {
            f.storeBytes(of: f.load(fromByteOffset: L.ethSource + i, as: UInt8.self), toByteOffset: L.ethDestination + i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: L.ethSource + i, as: UInt8.self)
        }
        let source = load32(f, L.ipSource)
        store32(f, L.ipDestination, source)
        store32(f, L.ipSource, ourIP.value)
        f.storeBytes(of: 64, toByteOffset: L.ipTTL, as: UInt8.self)
        f.storeBytes(of: 0, toByteOffset: icmp, as: UInt8.self)
        store16(f, icmp + 2, 0)
        f.storeBytes(of: ~vx_raw_cksum(f + icmp, ipLength - ihl), toByteOffset: icmp + 2, as: UInt16.self)
        store16(f, L.ipChecksum, 0)
        f.storeBytes(of: ~vx_raw_cksum(f + L.ipVersionIHL, ihl), toByteOffset: L.ipChecksum, as: UInt16.self)
        if length > L.ipVersionIHL + ipLength { _ = vx_mbuf_truncate(m, UInt16(L.ipVersionIHL + ipLength)) }
        if inject(m, core: core) { count(.icmpEchoReplies) }
    }

    /// Broadcasts "who has `target`? tell us".
    func sendRequest(for target: IPv4Address) {
        guard let m = pool.allocate(), let p = vx_mbuf_append(m, UInt16(L.arpLength)) else { count(.allocFailed); return }
        let f = UnsafeMutableRawPointer(p)
        f.initializeMemory(as: UInt8.self, repeating: 0, count: L.arpLength)
        for i in 0..<6 {
            f.storeBytes(of: 0xFF, toByteOffset: i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: L.ethSource + i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: L.arpSenderMAC + i, as: UInt8.self)
        }
        store16(f, L.ethType, VXLANLayout.etherTypeARP)
        store16(f, L.arpHardwareType, 1); store16(f, L.arpProtocolType, VXLANLayout.etherTypeIPv4)
        f.storeBytes(of: 6, toByteOffset: L.arpHardwareLength, as: UInt8.self); f.storeBytes(of: 4, toByteOffset: L.arpProtocolLength, as: UInt8.self)
        store16(f, L.arpOperation, 1)
        store32(f, L.arpSenderIP, ourIP.value)
        store32(f, L.arpTargetIP, target.value)
        if inject(m, core: 0) { count(.arpRequestsSent) }
    }

    /// ICMPv6 to the VTEP (or to its solicited-node group): Neighbor Solicitation and Advertisement, echo.
    func handleICMPv6(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, core: Int, now: Double) {
        let dataLength = Int(vx_mbuf_data_len(m))
        let payload = Int(load16(f, L.ip6PayloadLength))
        guard let ours = ourIP6, f.load(fromByteOffset: L.ip6VersionClass, as: UInt8.self) >> 4 == 6,
              f.load(fromByteOffset: L.ip6NextHeader, as: UInt8.self) == VXLANLayout.protocolICMPv6, payload >= 8,
              L.ip6Payload + payload <= dataLength,
              vx_ipv6_l4_cksum_verify(m, 14, 54) == 0 else { count(.ignored); vx_mbuf_free(m); return }
        let type = f.load(fromByteOffset: L.icmp6Type, as: UInt8.self)
        let source = IPv6Address(bytes: (22..<38).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
        let hopLimit = f.load(fromByteOffset: L.ip6HopLimit, as: UInt8.self)
        switch type {
        case 135 where hopLimit == 255 && payload >= 24:                 // Neighbor Solicitation
            let target = IPv6Address(bytes: (62..<78).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
            if let mac = linkLayerOption(f, from: L.ndOption, end: L.ip6Payload + payload, type: 1), !source.isUnspecified {
                _ = confirm(.v6(source), mac: mac, isReply: false, now: now)
            }
            guard target == ours else { break }
            // Advertise: to the solicitor (all nodes when it has no address yet), solicited and override.
            let destination = source.isUnspecified ? IPv6Address("ff02::1")! : source
            let destinationMAC = source.isUnspecified ? MACAddress(bytes: [0x33, 0x33, 0, 0, 0, 1])!
                : MACAddress(bytes: (6..<12).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
            vx_mbuf_free(m)
            sendAdvertisement(to: destination, mac: destinationMAC, solicited: !source.isUnspecified)
            return
        case 136 where hopLimit == 255 && payload >= 24:                 // Neighbor Advertisement
            let target = IPv6Address(bytes: (62..<78).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
            let mac = linkLayerOption(f, from: L.ndOption, end: L.ip6Payload + payload, type: 2)
                ?? MACAddress(bytes: (6..<12).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
            if confirm(.v6(target), mac: mac, isReply: true, now: now) == .accepted { count(.ndAdvertisementsReceived) }
        case 128 where Array(UnsafeRawBufferPointer(start: f + L.ip6Destination, count: 16)) == ours.bytes:   // echo request to us
            for i in 0..<6 {
                f.storeBytes(of: f.load(fromByteOffset: L.ethSource + i, as: UInt8.self), toByteOffset: L.ethDestination + i, as: UInt8.self)
                f.storeBytes(of: ourMAC.bytes[i], toByteOffset: L.ethSource + i, as: UInt8.self)
            }
            for i in 0..<16 {
                f.storeBytes(of: source.bytes[i], toByteOffset: L.ip6Destination + i, as: UInt8.self)
                f.storeBytes(of: ours.bytes[i], toByteOffset: L.ip6Source + i, as: UInt8.self)
            }
            f.storeBytes(of: 64, toByteOffset: L.ip6HopLimit, as: UInt8.self)
            f.storeBytes(of: 129, toByteOffset: L.icmp6Type, as: UInt8.self)
            store16(f, L.icmp6Checksum, 0)
            f.storeBytes(of: vx_ipv6_l4_cksum(f + L.ip6VersionClass, f + L.icmp6Type), toByteOffset: L.icmp6Checksum, as: UInt16.self)
            if Int(vx_mbuf_pkt_len(m)) > L.ip6Payload + payload { _ = vx_mbuf_truncate(m, UInt16(L.ip6Payload + payload)) }
            if inject(m, core: core) { count(.icmpv6EchoReplies) }
            return
        default:
            count(.ignored)
        }
        vx_mbuf_free(m)
    }

    /// The MAC in a Source (1) or Target (2) Link-Layer Address option, if present.
    func linkLayerOption(_ f: UnsafeMutableRawPointer, from start: Int, end: Int, type: UInt8) -> MACAddress? {
        var offset = start
        while offset + 8 <= end {
            let length = Int(f.load(fromByteOffset: offset + 1, as: UInt8.self)) * 8
            if length == 0 { return nil }
            if f.load(fromByteOffset: offset, as: UInt8.self) == type && length >= 8 {
                return MACAddress(bytes: (offset + 2..<offset + 8).map { f.load(fromByteOffset: $0, as: UInt8.self) })
            }
            offset += length
        }
        return nil
    }

    /// Builds an ICMPv6 ND message (hop limit 255): 14 + 40 + 24 + 8 bytes with one link-layer option.
    func sendND(type: UInt8, flags: UInt8, to destination: IPv6Address, mac destinationMAC: MACAddress,
                        target: IPv6Address, option: UInt8) -> Bool {
        guard let ours = ourIP6, let m = pool.allocate(), let p = vx_mbuf_append(m, UInt16(L.ndLength)) else { count(.allocFailed); return false }
        let f = UnsafeMutableRawPointer(p)
        f.initializeMemory(as: UInt8.self, repeating: 0, count: L.ndLength)
        for i in 0..<6 {
            f.storeBytes(of: destinationMAC.bytes[i], toByteOffset: i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: L.ethSource + i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: L.ndOptionMAC + i, as: UInt8.self)
        }
        store16(f, L.ethType, VXLANLayout.etherTypeIPv6)
        store32(f, L.ip6VersionClass, 0x6000_0000)
        store16(f, L.ip6PayloadLength, UInt16(L.ndLength - L.ip6Payload))
        f.storeBytes(of: VXLANLayout.protocolICMPv6, toByteOffset: L.ip6NextHeader, as: UInt8.self)
        f.storeBytes(of: 255, toByteOffset: L.ip6HopLimit, as: UInt8.self)
        for i in 0..<16 {
            f.storeBytes(of: ours.bytes[i], toByteOffset: L.ip6Source + i, as: UInt8.self)
            f.storeBytes(of: destination.bytes[i], toByteOffset: L.ip6Destination + i, as: UInt8.self)
            f.storeBytes(of: target.bytes[i], toByteOffset: L.ndTarget + i, as: UInt8.self)
        }
        f.storeBytes(of: type, toByteOffset: L.icmp6Type, as: UInt8.self)
        f.storeBytes(of: flags, toByteOffset: L.ndFlags, as: UInt8.self)
        f.storeBytes(of: option, toByteOffset: L.ndOption, as: UInt8.self)
        f.storeBytes(of: 1, toByteOffset: L.ndOption + 1, as: UInt8.self)
        f.storeBytes(of: vx_ipv6_l4_cksum(f + L.ip6VersionClass, f + L.icmp6Type), toByteOffset: L.icmp6Checksum, as: UInt16.self)
        return inject(m, core: 0)
    }

    /// Multicasts "who has `target`?" to its solicited-node group.
    func sendSolicitation(for target: IPv6Address) {
        let group = target.solicitedNode
        let mac = MACAddress(bytes: [0x33, 0x33] + Array(group.bytes[12..<16]))!
        if sendND(type: 135, flags: 0, to: group, mac: mac, target: target, option: 1) { count(.ndSolicitationsSent) }
    }

    func sendAdvertisement(to destination: IPv6Address, mac: MACAddress, solicited: Bool) {
        guard let ours = ourIP6 else { return }
        // Flags: Solicited (0x40) when answering an address, Override (0x20).
        if sendND(type: 136, flags: solicited ? 0x60 : 0x20, to: destination, mac: mac, target: ours, option: 2) {
            count(.ndAdvertisementsSent)
        }
    }
}
