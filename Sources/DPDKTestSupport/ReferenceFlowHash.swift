/// CRC32-C (Castagnoli), computed bit by bit from the polynomial, for checking the pipeline's flow hash against
/// something that shares no code with it (the pipeline uses the SSE4.2 `crc32` instruction through DPDK's
/// rte_hash_crc). Like that instruction, `update` has no built-in inversion: the running value goes in as given
/// and comes out as is, data bytes in memory order.
public enum ReferenceCRC32C {
    /// The reflected Castagnoli polynomial (0x1EDC6F41 bit-reversed).
    public static let polynomial: UInt32 = 0x82F6_3B78

    public static func update<S: Sequence>(_ crc: UInt32, _ bytes: S) -> UInt32 where S.Element == UInt8 {
        var c = crc
        for byte in bytes {
            c ^= UInt32(byte)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ polynomial : c >> 1 }
        }
        return c
    }

    /// The conventional CRC-32C (initial value and final XOR all ones): "123456789" gives 0xE3069283.
    public static func checksum<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 { ~update(~0, bytes) }
}

/// The outer UDP source port and IPv6 flow label the pipeline must put on an encapsulated inner frame, derived
/// from the inner frame alone (README, "Architecture"): a CRC32-C flow hash of
/// - IPv4: the source and destination addresses (bytes 26-33), seeded with the protocol number, then for TCP and
///   UDP that are not fragments the 4 bytes of ports;
/// - IPv6: the source and destination addresses (bytes 22-53), seeded with the next header, then for TCP and UDP
///   the 4 bytes of ports;
/// - anything else (or an IP header too short to hold its addresses): the destination and source MACs (bytes
///   0-11), seeded with the EtherType.
/// The source port is 49152 plus 14 bits of the hash with its upper half folded in (`(h ^ h >> 16) mod 16384`);
/// the flow label is the hash's low 20 bits (RFC 6438).
public enum ReferenceFlowHash {
    /// The flow hash of an untagged inner Ethernet frame (as it is encapsulated, VLAN tag already removed).
    public static func hash(_ frame: [UInt8]) -> UInt32 {
        let f = frame
        precondition(f.count >= 14, "an inner frame has an Ethernet header")
        let type = UInt32(f[12]) << 8 | UInt32(f[13])
        if type == 0x0800 && f.count >= 34 {
            let ihl = Int(f[14] & 0x0F) * 4
            let proto = f[23]
            let fragment = (Int(f[20]) << 8 | Int(f[21])) & 0x3FFF
            var h = ReferenceCRC32C.update(UInt32(proto), f[26..<34])
            if (proto == 6 || proto == 17) && fragment == 0 && f.count >= 14 + ihl + 4 {
                h = ReferenceCRC32C.update(h, f[(14 + ihl)..<(18 + ihl)])
            }
            return h
        }
        if type == 0x86DD && f.count >= 54 {
            let next = f[20]
            var h = ReferenceCRC32C.update(UInt32(next), f[22..<54])
            if (next == 6 || next == 17) && f.count >= 58 { h = ReferenceCRC32C.update(h, f[54..<58]) }
            return h
        }
        return ReferenceCRC32C.update(ReferenceCRC32C.update(type, f[0..<8]), f[8..<12])
    }

    public static func sourcePort(_ frame: [UInt8]) -> Int {
        let h = hash(frame)
        return 49152 + Int((h ^ (h >> 16)) % 16384)
    }

    public static func flowLabel(_ frame: [UInt8]) -> Int { Int(hash(frame) & 0xF_FFFF) }
}
