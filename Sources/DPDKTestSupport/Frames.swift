#if canImport(Glibc)
import Glibc
#endif

/// Builds test frames field by field, written independently of the pipeline's header templates so that
/// a mistake in one is not repeated in the other.
public enum Frames {
    public static func mac(_ s: String) -> [UInt8] { s.split(separator: ":").map { UInt8($0, radix: 16)! } }
    public static func ip(_ s: String) -> [UInt8] { s.split(separator: ".").map { UInt8($0)! } }
    public static func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

    /// RFC 1071 checksum over big-endian 16-bit words.
    public static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count { sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }

    public static func ethernet(dst: String, src: String, type: Int, payload: [UInt8]) -> [UInt8] {
        mac(dst) + mac(src) + be16(type) + payload
    }

    public static func ipv4(src: String, dst: String, proto: UInt8, payload: [UInt8], ttl: UInt8 = 64, flagsFragment: Int = 0x4000,
                            id: Int = 0, corruptChecksum: Bool = false) -> [UInt8] {
        var h: [UInt8] = [0x45, 0] + be16(20 + payload.count) + be16(id) + be16(flagsFragment) + [ttl, proto, 0, 0] + ip(src) + ip(dst)
        var c = checksum(h)
        if corruptChecksum { c ^= 0x5a5a }
        h[10] = UInt8(c >> 8); h[11] = UInt8(c & 0xff)
        return h + payload
    }

    public static func udp(sport: Int, dport: Int, payload: [UInt8]) -> [UInt8] {
        be16(sport) + be16(dport) + be16(8 + payload.count) + [0, 0] + payload
    }

    public static func vxlan(vni: Int, flags: UInt8 = 0x08, inner: [UInt8]) -> [UInt8] {
        [flags, 0, 0, 0, UInt8(vni >> 16 & 0xff), UInt8(vni >> 8 & 0xff), UInt8(vni & 0xff), 0] + inner
    }

    /// An inner Ethernet/IPv4/UDP frame of exactly `size` bytes (at least 42).
    public static func innerUDP(dst: String, src: String, srcIP: String = "192.168.42.1", dstIP: String = "192.168.42.2",
                                sport: Int = 1000, dport: Int = 2000, size: Int = 64) -> [UInt8] {
        let payload = [UInt8](repeating: 0xab, count: max(0, size - 42))
        return ethernet(dst: dst, src: src, type: 0x0800,
                        payload: ipv4(src: srcIP, dst: dstIP, proto: 17, payload: udp(sport: sport, dport: dport, payload: payload)))
    }

    /// A complete VXLAN packet as a remote VTEP would send it.
    public static func vxlanPacket(outerDst: String = "02:00:00:00:00:01", outerSrc: String = "02:00:00:00:00:02",
                                   srcIP: String = "10.99.0.2", dstIP: String = "10.99.0.1", sport: Int = 50000, dport: Int = 4789,
                                   vni: Int = 42, flags: UInt8 = 0x08, inner: [UInt8], flagsFragment: Int = 0x4000,
                                   corruptChecksum: Bool = false, proto: UInt8 = 17) -> [UInt8] {
        ethernet(dst: outerDst, src: outerSrc, type: 0x0800,
                 payload: ipv4(src: srcIP, dst: dstIP, proto: proto,
                               payload: udp(sport: sport, dport: dport, payload: vxlan(vni: vni, flags: flags, inner: inner)),
                               flagsFragment: flagsFragment, corruptChecksum: corruptChecksum))
    }

    // MARK: IPv6

    public static func ip6(_ s: String) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        var addr = in6_addr()
        precondition(inet_pton(AF_INET6, s, &addr) == 1, "bad IPv6 address \(s)")
        withUnsafeBytes(of: addr) { for i in 0..<16 { out[i] = $0[i] } }
        return out
    }

    /// An upper-layer checksum over the IPv6 pseudo-header (RFC 8200 section 8.1).
    public static func checksum6(src: String, dst: String, next: UInt8, upper: [UInt8]) -> UInt16 {
        let length = upper.count
        let pseudo = ip6(src) + ip6(dst) + [UInt8(length >> 24 & 0xff), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff),
                                            UInt8(length & 0xff), 0, 0, 0, next]
        let c = checksum(pseudo + upper)
        return c == 0 ? 0xFFFF : c
    }

    public static func ipv6(src: String, dst: String, next: UInt8, payload: [UInt8], hopLimit: UInt8 = 64, flow: Int = 0) -> [UInt8] {
        return [0x60, UInt8(flow >> 16 & 0x0f), UInt8(flow >> 8 & 0xff), UInt8(flow & 0xff)] + be16(payload.count) + [next, hopLimit]
            + ip6(src) + ip6(dst) + payload
    }

    /// UDP over IPv6 with its checksum filled in (or `checksum` as given).
    public static func udp6(src: String, dst: String, sport: Int, dport: Int, payload: [UInt8], checksum fixed: UInt16? = nil) -> [UInt8] {
        var u = be16(sport) + be16(dport) + be16(8 + payload.count) + [0, 0] + payload
        let c = fixed ?? checksum6(src: src, dst: dst, next: 17, upper: u)
        u[6] = UInt8(c >> 8); u[7] = UInt8(c & 0xff)
        return u
    }

    public static func vxlanPacket6(outerDst: String = "02:00:00:00:00:01", outerSrc: String = "02:00:00:00:00:06",
                                    srcIP: String = "fd00::2", dstIP: String = "fd00::1", vni: Int = 42, inner: [UInt8],
                                    checksum: UInt16? = nil) -> [UInt8] {
        ethernet(dst: outerDst, src: outerSrc, type: 0x86DD,
                 payload: ipv6(src: srcIP, dst: dstIP, next: 17,
                               payload: udp6(src: srcIP, dst: dstIP, sport: 50000, dport: 4789, payload: vxlan(vni: vni, inner: inner),
                                             checksum: checksum)))
    }

    /// An ICMPv6 message with its checksum.
    public static func icmp6(src: String, dst: String, type: UInt8, code: UInt8 = 0, body: [UInt8]) -> [UInt8] {
        var m = [type, code, 0, 0] + body
        let c = checksum6(src: src, dst: dst, next: 58, upper: m)
        m[2] = UInt8(c >> 8); m[3] = UInt8(c & 0xff)
        return m
    }
}
