/// An IPv4 address; `value` is in host byte order.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32
    public init(_ value: UInt32) { self.value = value }
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Dotted quad only: four decimal octets, no leading '+', no shorthand forms.
    public init?(_ text: some StringProtocol) {
        // One pass over the bytes (a configuration may name hundreds of thousands of addresses).
        var v: UInt32 = 0, octet: UInt32 = 0, digits = 0, dots = 0
        for c in text.utf8 {
            if c == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                v = v << 8 | octet; octet = 0; digits = 0; dots += 1
            } else if c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") {
                digits += 1
                octet = octet * 10 + UInt32(c - UInt8(ascii: "0"))
                guard digits <= 3, octet <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        value = v << 8 | octet
    }

    public var bytes: [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }
    public var description: String { bytes.map(String.init).joined(separator: ".") }
    public var isMulticast: Bool { value >> 28 == 0xE }
    public var isUnspecified: Bool { value == 0 }
    public var isLimitedBroadcast: Bool { value == 0xFFFF_FFFF }
    /// 127.0.0.0/8.
    public var isLoopback: Bool { value >> 24 == 127 }
    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
}

/// An interface address with its prefix length, as in `10.99.0.1/24`.
public struct IPv4Interface: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv4Address
    public var prefixLength: Int

    public init(address: IPv4Address, prefixLength: Int) {
        self.address = address; self.prefixLength = prefixLength
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]),
              parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(parts[1]), (0...32).contains(length) else { return nil }
        self.address = address; self.prefixLength = length
    }

    public var mask: UInt32 { prefixLength == 0 ? 0 : UInt32.max << (32 - prefixLength) }
    public func contains(_ other: IPv4Address) -> Bool { other.value & mask == address.value & mask }
    public var broadcast: IPv4Address { IPv4Address(address.value | ~mask) }
    /// The subnet's network address (host bits zero).
    public var network: IPv4Address { IPv4Address(address.value & mask) }
    /// The subnet itself, as in `10.99.0.0/24`.
    public var subnet: String { "\(network)/\(prefixLength)" }
    /// Whether the subnet reserves its network and broadcast addresses: every prefix shorter than /31 does
    /// (a /31 is a point-to-point link whose two addresses are both hosts, RFC 3021; a /32 is one host).
    public var reservesNetworkAndBroadcast: Bool { prefixLength < 31 }
    public var description: String { "\(address)/\(prefixLength)" }
}

/// A 48-bit Ethernet address in wire order.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// `02:00:00:00:00:01` or `02-00-00-00-00-01`, hex digits in either case.
    public init?(_ text: String) {
        // Exactly 17 bytes: six pairs of hex digits and five separators, read in one pass.
        var value: UInt64 = 0
        var count = 0
        var separator: UInt8 = 0
        for c in text.utf8 {
            let position = count % 3
            count += 1
            guard count <= 17 else { return nil }
            if position == 2 {
                // One separator throughout: 02:00-00:... is a typo, not an address.
                guard c == UInt8(ascii: ":") || c == UInt8(ascii: "-"), separator == 0 || c == separator else { return nil }
                separator = c
                continue
            }
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        guard count == 17 else { return nil }
        bytes = (0..<6).map { UInt8(truncatingIfNeeded: value >> (40 - 8 * $0)) }
    }

    public static let broadcast = MACAddress(bytes: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])!
    public static let zero = MACAddress(bytes: [0, 0, 0, 0, 0, 0])!
    public var isMulticast: Bool { bytes[0] & 1 == 1 }
    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }
    public var description: String {
        bytes.map { b in let s = String(b, radix: 16); return s.count == 1 ? "0" + s : s }.joined(separator: ":")
    }
    /// The address as the low 48 bits of an integer, first byte most significant.
    public var integer: UInt64 { bytes.reduce(0) { $0 << 8 | UInt64($1) } }
}

#if canImport(Glibc)
import Glibc
#endif

/// An IPv6 address, 16 bytes in network order. Parsed and printed by the C library (RFC 4291/5952 forms).
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public init?(_ text: some StringProtocol) {
        var raw = in6_addr()
        guard String(text).withCString({ inet_pton(AF_INET6, $0, &raw) }) == 1 else { return nil }
        bytes = withUnsafeBytes(of: raw) { Array($0) }
    }

    public var description: String {
        var raw = in6_addr()
        withUnsafeMutableBytes(of: &raw) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = inet_ntop(AF_INET6, &raw, &buffer, socklen_t(buffer.count))
        return String(cString: buffer)
    }

    public var isMulticast: Bool { bytes[0] == 0xFF }
    public var isUnspecified: Bool { bytes.allSatisfy { $0 == 0 } }
    public var isLinkLocal: Bool { bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 }
    /// ::1.
    public var isLoopback: Bool { bytes[15] == 1 && bytes[0..<15].allSatisfy { $0 == 0 } }
    /// ::ffff:a.b.c.d, an IPv4 address written as IPv6 (never on the wire as an IPv6 destination).
    public var isIPv4Mapped: Bool { bytes[10] == 0xFF && bytes[11] == 0xFF && bytes[0..<10].allSatisfy { $0 == 0 } }
    /// The solicited-node multicast address Neighbor Discovery sends solicitations to (ff02::1:ffXX:XXXX).
    public var solicitedNode: IPv6Address {
        IPv6Address(bytes: [0xFF, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF, bytes[13], bytes[14], bytes[15]])!
    }
    /// The two 8-byte halves as native-order loads of the bytes (how the fast path compares addresses).
    public var words: (UInt64, UInt64) {
        bytes.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    }
    public static func < (a: IPv6Address, b: IPv6Address) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

/// An IPv6 interface address with its prefix length, as in `fd00::1/64`.
public struct IPv6Interface: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv6Address
    public var prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv6Address(parts[0]),
              parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(parts[1]), (1...128).contains(length) else { return nil }
        self.address = address; self.prefixLength = length
    }

    public func contains(_ other: IPv6Address) -> Bool {
        for i in 0..<16 {
            let bits = min(8, max(0, prefixLength - i * 8))
            if bits == 0 { return true }
            let mask: UInt8 = bits == 8 ? 0xFF : ~(0xFF >> bits)
            if address.bytes[i] & mask != other.bytes[i] & mask { return false }
        }
        return true
    }

    /// The prefix with every host bit zero: the Subnet-Router anycast address (RFC 4291 2.6.1).
    public var network: IPv6Address {
        IPv6Address(bytes: (0..<16).map { i in
            let bits = min(8, max(0, prefixLength - i * 8))
            return address.bytes[i] & (bits == 8 ? 0xFF : ~(0xFF >> bits))
        })!
    }
    /// The prefix itself, as in `fd00::/64`.
    public var subnet: String { "\(network)/\(prefixLength)" }
    /// Whether the prefix reserves its Subnet-Router anycast address: every prefix shorter than /127 does
    /// (a /127 is a point-to-point link whose two addresses are both hosts, RFC 6164; a /128 is one host).
    public var reservesSubnetRouterAnycast: Bool { prefixLength < 127 }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// A remote VTEP or neighbor address of either family (a VNI may mix them).
public enum IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    public init?(_ text: some StringProtocol) {
        if let a = IPv4Address(text) { self = .v4(a) } else if let a = IPv6Address(text) { self = .v6(a) } else { return nil }
    }

    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }

    public var isMulticast: Bool {
        switch self {
        case .v4(let a): a.isMulticast
        case .v6(let a): a.isMulticast
        }
    }

    public var isUnspecified: Bool {
        switch self {
        case .v4(let a): a.isUnspecified || a.isLimitedBroadcast
        case .v6(let a): a.isUnspecified
        }
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): x < y
        case (.v6(let x), .v6(let y)): x < y
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }
}
