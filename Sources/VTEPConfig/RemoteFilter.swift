/// An address prefix of either family, as in `10.99.0.0/24` or `fd00::/64`, with every host bit zero.
public enum IPPrefix: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Address, length: Int)
    case v6(IPv6Address, length: Int)

    /// Why a text is not a prefix.
    public enum Problem: Error, Equatable, Sendable {
        /// Neither `address/length` nor a bare address.
        case malformed
        /// The length is not 0-32 (IPv4) or 0-128 (IPv6).
        case lengthOutOfRange(length: Int, family: String, maximum: Int)
        /// Bits beyond the length are set, as in 10.99.0.7/24: the subnet and the host are both plausible readings.
        case hostBitsSet(address: IPAddress, length: Int, network: IPPrefix, host: IPPrefix)
    }

    /// `address/length`, or a bare address meaning that one host (/32 or /128). A prefix with host bits set is
    /// refused, not normalised: in an access list `10.99.0.7/24` may mean the host or the subnet, and widening it
    /// silently to the subnet would let in 254 sources the operator may never have meant to allow.
    public static func parse(_ text: some StringProtocol) -> Result<IPPrefix, Problem> {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let address: IPAddress
        if let a = IPv4Address(parts[0]) { address = .v4(a) } else if let a = IPv6Address(parts[0]) { address = .v6(a) } else {
            return .failure(.malformed)
        }
        let maximum = address.isV4 ? 32 : 128
        var length = maximum
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.utf8.count <= 3, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let value = Int(digits) else { return .failure(.malformed) }
            guard value <= maximum else {
                return .failure(.lengthOutOfRange(length: value, family: address.isV4 ? "IPv4" : "IPv6", maximum: maximum))
            }
            length = value
        }
        let prefix = IPPrefix(masking: address, length: length)
        guard prefix.address == address else {
            return .failure(.hostBitsSet(address: address, length: length, network: prefix, host: IPPrefix(masking: address, length: maximum)))
        }
        return .success(prefix)
    }

    /// `address` with the bits beyond `length` cleared (length must be in range for the family).
    public init(masking address: IPAddress, length: Int) {
        switch address {
        case .v4(let a): self = .v4(IPv4Address(a.value & IPPrefix.mask4(length)), length: length)
        case .v6(let a):
            let mask = IPPrefix.mask6Bytes(length)
            self = .v6(IPv6Address(bytes: (0..<16).map { a.bytes[$0] & mask[$0] })!, length: length)
        }
    }

    public var address: IPAddress {
        switch self {
        case .v4(let a, _): .v4(a)
        case .v6(let a, _): .v6(a)
        }
    }

    public var length: Int {
        switch self {
        case .v4(_, let l), .v6(_, let l): l
        }
    }

    public var description: String { "\(address)/\(length)" }

    /// Whether every address of the prefix is multicast (224.0.0.0/4, ff00::/8): never the source of a packet.
    public var isMulticast: Bool {
        switch self {
        case .v4(let a, let l): l >= 4 && a.isMulticast
        case .v6(let a, let l): l >= 8 && a.isMulticast
        }
    }

    /// Whether the prefix lies in ::ffff:0:0/96, IPv4 written as IPv6, which never appears as an IPv6 source.
    public var isIPv4Mapped: Bool {
        switch self {
        case .v4: false
        case .v6(let a, let l): l >= 96 && a.isIPv4Mapped
        }
    }

    public func contains(_ other: IPAddress) -> Bool {
        switch (self, other) {
        case (.v4(let n, let l), .v4(let a)): a.value & IPPrefix.mask4(l) == n.value
        case (.v6(let n, let l), .v6(let a)):
            zip(a.bytes, IPPrefix.mask6Bytes(l)).map { $0 & $1 } == n.bytes
        default: false
        }
    }

    static func mask4(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << (32 - length) }

    static func mask6Bytes(_ length: Int) -> [UInt8] {
        (0..<16).map { i in
            let bits = min(8, max(0, length - i * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
    }
}

extension IPAddress {
    var isV4: Bool { if case .v4 = self { true } else { false } }
}

extension IPPrefix.Problem: CustomStringConvertible {
    public var description: String {
        switch self {
        case .malformed: "not an address or address/length"
        case let .lengthOutOfRange(length, family, maximum): "prefix length \(length) out of range (0-\(maximum) for \(family))"
        case let .hostBitsSet(address, length, network, host):
            "\(address)/\(length) has host bits set; write \(network) for the subnet or \(host) for the one host"
        }
    }
}

/// Which outer source addresses may send VXLAN for a VNI. VXLAN authenticates nobody (RFC 7348 section 7
/// leaves it to access lists), so a VTEP that knows its peers drops everyone else before any lookup or learning.
///
/// `allows` is what the dataplane calls per packet: it neither allocates nor locks. Prefixes are a short array
/// of (network, mask) pairs scanned linearly: a configuration names a few, or tens of prefixes, for which a scan
/// of contiguous pairs costs less than a trie's dependent loads. The static remotes (flood list and FDB), always
/// allowed, can be many, so they are kept sorted and found by binary search.
///
/// IPv6 addresses are the two 8-byte words of `IPv6Address.words` (native-order loads of the network-order
/// bytes); networks and masks are loaded the same way, so `word & mask == network` holds on either byte order.
public struct RemoteFilter: Sendable, Equatable {
    @usableFromInline struct Prefix4: Sendable, Equatable {
        @usableFromInline let network: UInt32
        @usableFromInline let mask: UInt32
    }

    @usableFromInline struct Prefix6: Sendable, Equatable {
        @usableFromInline let network0: UInt64, network1: UInt64
        @usableFromInline let mask0: UInt64, mask1: UInt64
    }

    @usableFromInline struct Host6: Sendable, Equatable, Comparable {
        @usableFromInline let word0: UInt64, word1: UInt64
        @usableFromInline static func < (a: Host6, b: Host6) -> Bool { (a.word0, a.word1) < (b.word0, b.word1) }
    }

    /// No list applies: every source is allowed.
    public let allowsAny: Bool
    @usableFromInline let prefixes4: [Prefix4]
    @usableFromInline let prefixes6: [Prefix6]
    /// Static remotes, sorted.
    @usableFromInline let hosts4: [UInt32]
    @usableFromInline let hosts6: [Host6]

    /// Every source allowed.
    public static let any = RemoteFilter(allowsAny: true, prefixes4: [], prefixes6: [], hosts4: [], hosts6: [])

    private init(allowsAny: Bool, prefixes4: [Prefix4], prefixes6: [Prefix6], hosts4: [UInt32], hosts6: [Host6]) {
        self.allowsAny = allowsAny; self.prefixes4 = prefixes4; self.prefixes6 = prefixes6; self.hosts4 = hosts4; self.hosts6 = hosts6
    }

    /// Sources within `prefixes`, and the `staticRemotes` whether or not a prefix covers them. An empty prefix
    /// list allows the static remotes only.
    public init(prefixes: [IPPrefix], staticRemotes: [IPAddress] = []) {
        self.init(compiled: Compiled(prefixes), staticRemotes: staticRemotes)
    }

    /// The prefixes in the form the filter scans; filters built from one share its arrays (copy on write), so
    /// 200,000 vnis under one global list hold one copy of it.
    struct Compiled {
        let prefixes4: [Prefix4]
        let prefixes6: [Prefix6]

        init(_ prefixes: [IPPrefix]) {
            var p4: [Prefix4] = [], p6: [Prefix6] = []
            for p in prefixes {
                switch p {
                case .v4(let n, let l):
                    let mask = IPPrefix.mask4(l)
                    p4.append(Prefix4(network: n.value & mask, mask: mask))
                case .v6(let n, let l):
                    let mask = IPv6Address(bytes: IPPrefix.mask6Bytes(l))!.words
                    let network = n.words
                    p6.append(Prefix6(network0: network.0 & mask.0, network1: network.1 & mask.1, mask0: mask.0, mask1: mask.1))
                }
            }
            prefixes4 = p4; prefixes6 = p6
        }
    }

    init(compiled: Compiled, staticRemotes: [IPAddress]) {
        var h4: [UInt32] = [], h6: [Host6] = []
        for r in staticRemotes {
            switch r {
            case .v4(let a): h4.append(a.value)
            case .v6(let a): let w = a.words; h6.append(Host6(word0: w.0, word1: w.1))
            }
        }
        h4.sort(); h6.sort()
        h4 = h4.enumerated().filter { $0.offset == 0 || h4[$0.offset - 1] != $0.element }.map(\.element)
        h6 = h6.enumerated().filter { $0.offset == 0 || h6[$0.offset - 1] != $0.element }.map(\.element)
        self.init(allowsAny: false, prefixes4: compiled.prefixes4, prefixes6: compiled.prefixes6, hosts4: h4, hosts6: h6)
    }

    @inlinable
    public func allows(_ address: IPv4Address) -> Bool {
        if allowsAny { return true }
        let v = address.value
        for p in prefixes4 where v & p.mask == p.network { return true }
        var low = 0, high = hosts4.count
        while low < high {
            let mid = (low + high) >> 1
            let h = hosts4[mid]
            if h == v { return true }
            if h < v { low = mid + 1 } else { high = mid }
        }
        return false
    }

    /// An IPv6 source given as `IPv6Address.words` (how the fast path holds addresses).
    @inlinable
    public func allows(words: (UInt64, UInt64)) -> Bool {
        if allowsAny { return true }
        for p in prefixes6 where words.0 & p.mask0 == p.network0 && words.1 & p.mask1 == p.network1 { return true }
        let key = (word0: words.0, word1: words.1)
        var low = 0, high = hosts6.count
        while low < high {
            let mid = (low + high) >> 1
            let h = hosts6[mid]
            if h.word0 == key.word0 && h.word1 == key.word1 { return true }
            if h.word0 < key.word0 || (h.word0 == key.word0 && h.word1 < key.word1) { low = mid + 1 } else { high = mid }
        }
        return false
    }

    public func allows(_ address: IPv6Address) -> Bool { allows(words: address.words) }

    public func allows(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let a): allows(a)
        case .v6(let a): allows(a)
        }
    }
}
