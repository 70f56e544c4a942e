import Foundation
import XCTest
import Yams
@testable import VTEPConfig

/// ConfigWriter's text reads back as the configuration it was written from: every configuration the repository's
/// tests, scripts and README use, a thousand random ones, and the exact text of a small one.
final class ConfigWriterTests: XCTestCase {
    /// parse(write(c)) == c, and writing what was read gives the same bytes (Swift's == on strings is canonical
    /// equivalence: two equal port names may still differ in their scalars; bytes may not).
    @discardableResult
    func assertRoundTrips(_ c: VTEPConfiguration, _ what: String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let text = ConfigWriter.yaml(c)
        do {
            let back = try ConfigParser.parse(text)
            guard back == c else {
                XCTFail("\(what): read back differently\n\(text)\nwritten: \(c)\nread:    \(back)", file: file, line: line)
                return false
            }
            let again = ConfigWriter.yaml(back)
            guard Array(again.utf8) == Array(text.utf8) else {
                XCTFail("\(what): writing it again gives another text\n\(text)\nthen\n\(again)", file: file, line: line)
                return false
            }
            return true
        } catch {
            XCTFail("\(what): the written text is refused: \(error)\n\(text)", file: file, line: line)
            return false
        }
    }

    // MARK: (a) the repository's configurations

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testEveryConfigurationOfTheTestsAndScriptsRoundTrips() throws {
        var checked = 0
        for (source, yaml) in Self.fixtures {
            let c: VTEPConfiguration
            do { c = try ConfigParser.parse(yaml) } catch {
                XCTFail("\(source): the fixture itself is refused: \(error)")
                continue
            }
            assertRoundTrips(c, source)
            checked += 1
        }
        print("round-tripped \(checked) configurations of the tests, scripts and benchmarks")
        XCTAssertGreaterThan(checked, 60)
    }

    /// The fuzzer's seed corpus: the inputs the parser accepts round-trip (the others are refusals by design).
    func testTheAcceptedFuzzSeedsRoundTrip() throws {
        let directory = Self.root.appendingPathComponent("Fuzz/corpus/config")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        var accepted: [String] = []
        for name in names {
            guard let text = try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8),
                  let c = try? ConfigParser.parse(text) else { continue }
            assertRoundTrips(c, "Fuzz/corpus/config/\(name)")
            accepted.append(name)
        }
        XCTAssertTrue(Set(["full.yaml", "json.json", "mac60.yaml", "minimal.yaml"]).isSubset(of: accepted), "\(accepted)")
    }

    /// The README's examples that are whole configurations (the others are fragments of one).
    func testTheREADMEExampleRoundTrips() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let blocks = readme.components(separatedBy: "```yaml\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
        let whole = blocks.filter { $0.hasPrefix("underlay:\n  port:") }
        XCTAssertFalse(whole.isEmpty, "the README's configuration example is missing")
        for (i, yaml) in whole.enumerated() { assertRoundTrips(try ConfigParser.parse(yaml), "README example \(i)") }
    }

    /// Large tables, written and read back whole (the time it takes to write them is printed).
    func testALargeConfigurationRoundTrips() throws {
        let vnis = 20_000, entries = 5_000
        var segments = (1...vnis).map { VTEPConfiguration.VNISettings(vni: UInt32($0), flood: [.v4(IPv4Address(10, 99, 0, UInt8($0 % 200 + 2)))]) }
        segments[7].allowedRemotes = [.v4(IPv4Address(10, 99, 0, 0), length: 24)]
        let fdb = (0..<entries).map { i in
            VTEPConfiguration.FDBEntry(vni: UInt32(vnis - i), mac: MACAddress(bytes: [2, 0, 0, 0, UInt8(i >> 8), UInt8(i & 255)])!,
                                       remote: .v4(IPv4Address(10, 99, 1, UInt8(i % 200 + 2))))
        }
        var resources = VTEPConfiguration.Resources()
        resources.vnis = 32768; resources.tunnels = 65536
        let c = VTEPConfiguration(underlay: .init(port: "p0", interface: IPv4Interface("10.99.0.1/16")), access: [],
                                  vnis: segments, fdb: fdb, neighbors: [], resources: resources)
        let start = Date()
        let text = ConfigWriter.yaml(c)
        print("wrote \(vnis) VNIs and \(entries) FDB entries (\(text.utf8.count) bytes) in \(Date().timeIntervalSince(start)) s")
        XCTAssertEqual(try ConfigParser.parse(text), c)
    }

    // MARK: (b) random configurations

    /// 1000 configurations, configuration i from seed base + i. The base is fixed, so every run checks the same
    /// ones; VXLAN_TEST_SEED=<seed> starts from another (a failure's seed, to rerun it first).
    func testRandomConfigurationsRoundTrip() throws {
        let base = ProcessInfo.processInfo.environment["VXLAN_TEST_SEED"].flatMap { UInt64($0) } ?? 0x5EED_C0FF_EE00_0000
        let count = 1000
        var failures = 0
        var seen = RandomConfiguration.Coverage()
        for i in 0..<count {
            let seed = base &+ UInt64(i)
            let c = RandomConfiguration.make(seed: seed)
            seen.add(c)
            guard assertRoundTrips(c, "seed \(seed) (rerun with VXLAN_TEST_SEED=\(seed))") else {
                failures += 1
                if failures == 5 { return XCTFail("stopping after 5 failures") }
                continue
            }
            // Another YAML reader (Yams, YAML 1.1 types) must see the same names: nothing quoted too little.
            guard let tree = try Yams.load(yaml: ConfigWriter.yaml(c)) as? [String: Any],
                  let underlay = tree["underlay"] as? [String: Any] else { XCTFail("seed \(seed): Yams reads no underlay"); continue }
            XCTAssertEqual((underlay["port"] as? String).map(Self.yamsView), Self.yamsView(c.underlay.port), "seed \(seed)")
            let access = tree["access"] as? [[String: Any]] ?? []
            XCTAssertEqual(access.map { ($0["port"] as? String).map(Self.yamsView) }, c.access.map { Self.yamsView($0.port) }, "seed \(seed)")
            XCTAssertEqual(access.map { ($0["vhost"] as? [String: Any])?["socket"] as? String }, c.access.map(\.vhost?.socket), "seed \(seed)")
        }
        print("round-tripped \(count) random configurations from seed \(base): \(seen)")
        // The generator still reaches every feature (a change to it must not quietly stop testing one).
        XCTAssertTrue(seen.everything, "\(seen)")
    }

    /// A string as Yams hands it over: Yams drops a scalar's leading byte-order mark, which libyaml, and so the
    /// parser, keep ("\uFEFFx" round-trips; Yams reads "x").
    static func yamsView(_ s: String) -> String { s.hasPrefix("\u{FEFF}") ? String(s.dropFirst()) : s }

    // MARK: (c) the text itself

    func testTheTextOfASmallConfiguration() throws {
        var underlay = VTEPConfiguration.Underlay(port: "net_af_packet0", interface: IPv4Interface("10.99.0.1/24"),
                                                  interface6: IPv6Interface("fd00::1/64"))
        underlay.mac = MACAddress("02:00:00:00:00:01")
        underlay.gateway6 = IPv6Address("fe80::1")
        underlay.udp6ZeroChecksum.rx = true
        underlay.allowedRemotes = [.v4(IPv4Address(10, 99, 0, 0), length: 24), .v6(IPv6Address("fd00::")!, length: 64)]
        var tagged = VTEPConfiguration.AccessPort(port: "0000:3b:00.0", vlans: [.init(vlan: 10, vni: 42), .init(vlan: 20, vni: 43)])
        tagged.offloads = .software
        var vni43 = VTEPConfiguration.VNISettings(vni: 43, flood: [], learning: false, ageing: 60, maxLearned: 100)
        vni43.allowedRemotes = []
        var resources = VTEPConfiguration.Resources()
        resources.ports = 4
        let c = VTEPConfiguration(
            underlay: underlay,
            access: [.init(port: "yes", vni: 42), tagged,
                     .init(port: "net_vhost0", vni: 43, vhost: .init(socket: "/run/vxland/vm#1.sock", client: true))],
            vnis: [.init(vni: 42, flood: [.v4(IPv4Address(10, 99, 0, 2)), .v6(IPv6Address("fd00::2")!)]), vni43],
            fdb: [.init(vni: 42, mac: MACAddress("02:00:00:00:42:02")!, remote: .v6(IPv6Address("fd00::2")!))],
            neighbors: [.init(ip: .v4(IPv4Address(10, 99, 0, 2)), mac: MACAddress("02:00:00:00:00:02")!)],
            resources: resources)
        let expected = """
            # vxland running configuration
            underlay:
              port: net_af_packet0
              ip: 10.99.0.1/24
              ip6: "fd00::1/64"
              mac: "02:00:00:00:00:01"
              mtu: 1500
              udp_port: 4789
              ttl: 64
              gateway6: "fe80::1"
              neighbor_timeout: 300
              strict: false
              verify_udp_checksum: false
              udp6_zero_checksum: { tx: false, rx: true }
              offloads: auto
              allowed_remotes: [10.99.0.0/24, "fd00::/64"]
            access:
              - { port: "yes", vni: 42, offloads: auto }
              - { port: "0000:3b:00.0", vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ], offloads: software }
              - { port: net_vhost0, vni: 43, offloads: auto, vhost: { socket: "/run/vxland/vm#1.sock", client: true, tso: true } }
            vnis:
              - { vni: 42, flood: [10.99.0.2, "fd00::2"], learning: true, ageing: 300, max_learned: 0 }
              - { vni: 43, flood: [], learning: false, ageing: 60, max_learned: 100, allowed_remotes: [] }
            fdb:
              - { vni: 42, mac: "02:00:00:00:42:02", remote: "fd00::2" }
            neighbors:
              - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
            resources:
              mbufs: 16383
              rx_descriptors: 1024
              tx_descriptors: 1024
              fdb_entries: 65536
              tunnels: 4096
              vnis: 4096
              ports: 4

            """
        XCTAssertEqual(ConfigWriter.yaml(c), expected)
        assertRoundTrips(c, "the small configuration")
    }

    /// What a configuration without optional parts looks like: empty lists written as such, no zero-checksum key
    /// for an IPv4-only VTEP, no gateway or MAC.
    func testTheTextOfAnEmptyIPv4Configuration() throws {
        let c = try ConfigParser.parse("underlay: { port: \"0\", ip: 192.168.1.10/31 }")
        XCTAssertEqual(ConfigWriter.yaml(c), """
            # vxland running configuration
            underlay:
              port: "0"
              ip: 192.168.1.10/31
              mtu: 1500
              udp_port: 4789
              ttl: 64
              neighbor_timeout: 300
              strict: false
              verify_udp_checksum: false
              offloads: auto
            access: []
            vnis: []
            fdb: []
            neighbors: []
            resources:
              mbufs: 16383
              rx_descriptors: 1024
              tx_descriptors: 1024
              fdb_entries: 65536
              tunnels: 4096
              vnis: 4096
              ports: 16

            """)
        assertRoundTrips(c, "the empty configuration")
    }

    /// Names and paths: bare when every YAML reader takes them for that string, quoted (and escaped) otherwise;
    /// each read back, by the parser and by Yams, as the same string.
    func testNamesThatYAMLWouldMisreadAreQuoted() throws {
        let bare = ["net_af_packet0", "p", "net_vhost0", "_x", "a-b.c_d", "/run/vxland/vm1.sock", "/", "eth0.100", "Yesterday", "nulls"]
        for name in bare { XCTAssertEqual(ConfigWriter.string(name), name) }
        let quoted: [(String, String)] = [
            ("yes", #""yes""#), ("No", #""No""#), ("ON", #""ON""#), ("off", #""off""#), ("y", #""y""#), ("n", #""n""#),
            ("true", #""true""#), ("False", #""False""#), ("null", #""null""#), ("NULL", #""NULL""#), ("~", #""~""#),
            ("123", #""123""#), ("0", #""0""#), ("-1", #""-1""#), ("+1", #""+1""#), ("0x1F", #""0x1F""#), ("1e3", #""1e3""#),
            (".inf", #"".inf""#), (".NaN", #"".NaN""#), ("1:20", #""1:20""#), ("2001-12-14", #""2001-12-14""#),
            ("0000:3b:00.0", #""0000:3b:00.0""#), ("a:b", #""a:b""#), ("a: b", #""a: b""#), ("x:", #""x:""#),
            ("a#b", #""a#b""#), ("#x", ##""#x""##), ("[x]", #""[x]""#), ("{x}", #""{x}""#), ("x,y", #""x,y""#),
            ("&a", #""&a""#), ("*a", #""*a""#), ("!t", #""!t""#), ("|", #""|""#), (">", #"">""#), ("%x", #""%x""#),
            ("@x", #""@x""#), ("`x`", #""`x`""#), ("'x'", #""'x'""#), ("-", #""-""#), ("?", #""?""#), ("<<", #""<<""#),
            ("=", #""=""#), ("", #""""#), ("a b", #""a b""#),
            ("say \"hi\"", #""say \"hi\"""#), ("back\\slash", #""back\\slash""#),
            ("é", #""\xE9""#), ("日本", #""\u65E5\u672C""#), ("e\u{301}", #""e\u0301""#), ("\u{FEFF}x", #""\uFEFFx""#),
            ("\u{0}\u{7}\u{1B}\u{7F}", #""\x00\x07\x1B\x7F""#), ("\u{85}\u{2028}", #""\x85\u2028""#), ("🙂", #""\U0001F642""#),
        ]
        for (name, text) in quoted {
            XCTAssertEqual(ConfigWriter.string(name), text, name)
        }
        for name in bare + quoted.map(\.0) {
            let yaml = "key: \(ConfigWriter.string(name))\nlist: [\(ConfigWriter.string(name)), { k: \(ConfigWriter.string(name)) }]"
            let tree = try Yams.load(yaml: yaml) as? [String: Any]
            XCTAssertEqual(tree?["key"] as? String, Self.yamsView(name), "Yams, block: \(yaml)")
            let list = tree?["list"] as? [Any]
            XCTAssertEqual(list?.first as? String, Self.yamsView(name), "Yams, flow: \(yaml)")
            XCTAssertEqual((list?.last as? [String: Any])?["k"] as? String, Self.yamsView(name), "Yams, flow mapping: \(yaml)")
            guard let node = try YAMLNode.load(yaml)?.mapping?.first?.value.scalar else { XCTFail(yaml); continue }
            XCTAssertEqual(Array(node.string.unicodeScalars), Array(name.unicodeScalars), "parser: \(yaml)")
        }
        // Port names the parser accepts (no blanks), as ports of a whole configuration.
        for name in bare + quoted.map(\.0) where ConfigRules.problem(portName: name) == nil && ConfigRules.problem(portName: name + "2") == nil
            && !name.hasPrefix("/") {
            let c = VTEPConfiguration(underlay: .init(port: name, interface: IPv4Interface("10.99.0.1/24")),
                                      access: [.init(port: name + "2", vni: 7)], vnis: [.init(vni: 7, flood: [])],
                                      fdb: [], neighbors: [], resources: .init())
            assertRoundTrips(c, "port \(name.debugDescription)")
        }
    }

    /// Addresses: IPv6 (with `::`, IPv4-embedded, link-local) quoted, IPv4 bare; both read back by the parser and
    /// by Yams as the text written.
    func testAddressesAreWrittenSoThatTheyReadBack() throws {
        let addresses = ["10.99.0.2", "fd00::2", "2001:db8::1:0:0:1", "fe80::1", "::ffff:10.1.2.3", "2001:db8:0:0:1::1",
                         "1:2:3:4:5:6:7:8", "::2", "fd00::a:b"].map { IPAddress($0)! }
        for ip in addresses {
            let yaml = "a: \(ConfigWriter.address(ip))\nb: [\(ConfigWriter.address(ip))]"
            XCTAssertEqual(ConfigWriter.address(ip).hasPrefix("\""), !ip.isV4, yaml)
            let tree = try Yams.load(yaml: yaml) as? [String: Any]
            XCTAssertEqual(tree?["a"] as? String, ip.description, yaml)
            XCTAssertEqual((tree?["b"] as? [Any])?.first as? String, ip.description, yaml)
        }
        XCTAssertEqual(ConfigWriter.prefixes([.v4(IPv4Address(0), length: 0), .v6(IPv6Address("::")!, length: 0),
                                              .v6(IPv6Address("2001:db8::")!, length: 32)]), #"[0.0.0.0/0, "::/0", "2001:db8::/32"]"#)
    }
}

// MARK: - The random configurations

/// SplitMix64: a generator whose every configuration is reproduced from its seed alone.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Valid configurations drawn at random: each part within the parser's ranges, every address a valid peer of the
/// underlay it is drawn for, and resources large enough for what is drawn.
enum RandomConfiguration {
    /// What the configurations drawn so far had, so that the test can insist on having seen everything.
    struct Coverage: CustomStringConvertible {
        var counts: [String: Int] = [:]
        static let features = ["ipv4-only", "ipv6-only", "dual-stack", "gateway", "gateway6", "link-local prefix", "mac",
                               "udp6_zero_checksum", "global allowed_remotes", "global allowed_remotes []", "vni allowed_remotes",
                               "vni allowed_remotes []", "flood v4", "flood v6", "flood both", "untagged", "tagged", "vhost",
                               "quoted port", "quoted socket", "non-ASCII name", "fdb v4", "fdb v6", "neighbors v4",
                               "neighbors v6", "resources", "software offloads"]

        mutating func add(_ c: VTEPConfiguration) {
            func count(_ feature: String, _ present: Bool) {
                precondition(Self.features.contains(feature))
                if present { counts[feature, default: 0] += 1 }
            }
            let u = c.underlay
            count("ipv4-only", u.interface != nil && u.interface6 == nil)
            count("ipv6-only", u.interface == nil && u.interface6 != nil)
            count("dual-stack", u.interface != nil && u.interface6 != nil)
            count("gateway", u.gateway != nil)
            count("gateway6", u.gateway6 != nil)
            count("link-local prefix", u.interface6?.address.isLinkLocal == true)
            count("mac", u.mac != nil)
            count("udp6_zero_checksum", u.udp6ZeroChecksum.tx || u.udp6ZeroChecksum.rx)
            count("global allowed_remotes", u.allowedRemotes?.isEmpty == false)
            count("global allowed_remotes []", u.allowedRemotes?.isEmpty == true)
            count("vni allowed_remotes", c.vnis.contains { $0.allowedRemotes?.isEmpty == false })
            count("vni allowed_remotes []", c.vnis.contains { $0.allowedRemotes?.isEmpty == true })
            count("flood v4", c.vnis.contains { $0.flood.contains(where: \.isV4) })
            count("flood v6", c.vnis.contains { $0.flood.contains { !$0.isV4 } })
            count("flood both", c.vnis.contains { s in s.flood.contains(where: \.isV4) && s.flood.contains { !$0.isV4 } })
            count("untagged", c.access.contains { $0.vni != nil })
            count("tagged", c.access.contains { $0.vni == nil })
            count("vhost", c.access.contains { $0.vhost != nil })
            let names = [u.port] + c.access.map(\.port)
            count("quoted port", names.contains { !ConfigWriter.isBare($0) })
            count("quoted socket", c.access.contains { $0.vhost.map { !ConfigWriter.isBare($0.socket) } ?? false })
            count("non-ASCII name", (names + c.access.compactMap(\.vhost?.socket)).contains { $0.unicodeScalars.contains { !$0.isASCII } })
            count("fdb v4", c.fdb.contains { $0.remote.isV4 })
            count("fdb v6", c.fdb.contains { !$0.remote.isV4 })
            count("neighbors v4", c.neighbors.contains { $0.ip.isV4 })
            count("neighbors v6", c.neighbors.contains { !$0.ip.isV4 })
            count("resources", c.resources != .init())
            count("software offloads", u.offloads == .software || c.access.contains { $0.offloads == .software })
        }

        var everything: Bool { Self.features.allSatisfy { counts[$0, default: 0] > 0 } }
        var description: String { Self.features.map { "\($0) \(counts[$0, default: 0])" }.joined(separator: ", ") }
    }

    /// Names that YAML would misread bare, or that need escapes; none holds a blank, ',' or '=' (not port names).
    static let oddNames = ["yes", "No", "ON", "off", "y", "true", "False", "null", "NULL", "~", "123", "0", "-1", "+1", "0x1F",
                           "1e3", ".inf", ".nan", "1:20", "2001-12-14", "0000:3b:00.0", "a:b", "x:", ":x", "a#b", "#x", "[x]",
                           "{x}", "&a", "*a", "!t", "|", ">", "%x", "@x", "`x`", "'x", "\"x\"", "back\\slash", "-",
                           "-x", "?", "?x", "<<", "é", "日本", "e\u{301}", "\u{FEFF}x", "x\u{200B}", "\u{0}x", "\u{7}",
                           "🙂", "_", "Yesterday", "net_af_packet0"]
    static let oddSockets = ["/run/vxland/vm.sock", "/tmp/a:b.sock", "/tmp/#x", "/tmp/x#", "/tmp/\"q\".sock", "/tmp/back\\slash",
                             "/tmp/ü.sock", "/tmp/yes", "/123", "/tmp/[x]", "/tmp/{x}", "/tmp/&a", "/tmp/*a", "/tmp/~",
                             "/tmp/" + String(repeating: "s", count: 102)]

    static func make(seed: UInt64) -> VTEPConfiguration {
        var g = SplitMix64(state: seed)
        func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &g) < p }
        func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &g) }
        func pick<T>(_ list: [T]) -> T { list[int(0...list.count - 1)] }
        func mac() -> MACAddress {
            var bytes = (0..<6).map { _ in UInt8.random(in: 0...255, using: &g) }
            bytes[0] &= 0xFE                                   // unicast
            if bytes.allSatisfy({ $0 == 0 }) { bytes[5] = 1 }
            return MACAddress(bytes: bytes)!
        }

        // The underlay: IPv4, IPv6 or both.
        let family = int(0...2)
        var interface: IPv4Interface?
        if family != 1 {
            let length = pick([8, 16, 20, 24, 24, 24, 28, 30, 31, 32])
            let mask: UInt32 = length == 0 ? 0 : .max << (32 - length)
            let network = (UInt32(10) << 24 | UInt32.random(in: 0...0xFF_FFFF, using: &g)) & mask
            let hosts = ~mask
            // A host address: not the network's or the broadcast address below /31.
            let host = length >= 31 ? UInt32.random(in: 0...hosts, using: &g) : UInt32.random(in: 1...hosts - 1, using: &g)
            interface = IPv4Interface(address: IPv4Address(network | host), prefixLength: length)
        }
        var interface6: IPv6Interface?
        if family != 0 {
            let linkLocal = chance(0.15)
            let length = linkLocal ? 64 : pick([48, 56, 64, 64, 64, 96, 112, 120, 126, 127, 128])
            var bytes: [UInt8] = linkLocal ? [0xFE, 0x80, 0, 0, 0, 0, 0, 0] : [0xFD] + (1..<8).map { _ in UInt8.random(in: 0...255, using: &g) }
            bytes += (0..<8).map { _ in UInt8.random(in: 0...255, using: &g) }
            bytes = masked(bytes, length)
            var address = bytes
            if length < 128 {
                // A host: some host bits set (the all-zero host is the Subnet-Router anycast address below /127).
                repeat { address = randomHost(in: bytes, length: length, &g) } while length < 127 && address == bytes
            }
            interface6 = IPv6Interface("\(IPv6Address(bytes: address)!)/\(length)")!
        }
        var u = VTEPConfiguration.Underlay(port: "", interface: interface, interface6: interface6)
        u.mac = chance(0.6) ? mac() : nil
        u.mtu = chance(0.5) ? 1500 : int(576...9216)
        u.udpPort = chance(0.7) ? 4789 : UInt16(int(1...65535))
        u.ttl = chance(0.7) ? 64 : UInt8(int(1...255))
        u.neighborTimeout = chance(0.7) ? 300 : int(5...86400)
        u.strict = chance(0.3)
        u.verifyUDPChecksum = chance(0.3)
        if interface6 != nil, chance(0.5) { u.udp6ZeroChecksum = .init(tx: chance(0.5), rx: chance(0.5)) }
        u.offloads = chance(0.8) ? .auto : .software

        // Other hosts of the underlay, and remotes beyond it through the gateways.
        func peer(_ ip: IPAddress, _ role: ConfigRules.PeerRole) -> Bool {
            ConfigRules.notAPeer(ip, underlay: u, role: role) == nil && (role == .nextHop || u.nextHop(for: ip) != nil)
        }
        func onLink4() -> IPAddress? {
            guard let i = interface, i.prefixLength < 32 else { return nil }
            for _ in 0..<8 {
                let ip = IPAddress.v4(IPv4Address(i.network.value | UInt32.random(in: 0...(~i.mask), using: &g)))
                if peer(ip, .nextHop) { return ip }
            }
            return nil
        }
        func onLink6() -> IPAddress? {
            guard let i = interface6, i.prefixLength < 128 else { return nil }
            for _ in 0..<8 {
                let ip = IPAddress.v6(IPv6Address(bytes: randomHost(in: i.network.bytes, length: i.prefixLength, &g))!)
                if peer(ip, .nextHop) { return ip }
            }
            return nil
        }
        if chance(0.4), case .v4(let a)? = onLink4() { u.gateway = a }
        if interface6 != nil, chance(0.4) {
            let gw = chance(0.3) ? IPAddress("fe80::\(String(int(1...0xFFFF), radix: 16))")! : onLink6()
            if let gw, peer(gw, .nextHop), case .v6(let a) = gw { u.gateway6 = a }
        }
        func remote() -> IPAddress? {
            var choices: [() -> IPAddress?] = []
            if interface != nil { choices.append(onLink4) }
            if interface6 != nil { choices.append(onLink6) }
            if u.gateway != nil { choices.append { .v4(IPv4Address(172, 16 + UInt8(int(0...15)), UInt8(int(0...255)), UInt8(int(1...254)))) } }
            if u.gateway6 != nil { choices.append { IPAddress("2001:db8:\(String(int(1...0xFFFF), radix: 16))::\(String(int(1...0xFFFF), radix: 16))") } }
            guard !choices.isEmpty, let ip = pick(choices)(), peer(ip, .remote) else { return nil }
            return ip
        }
        func remotes(_ count: Int) -> [IPAddress] {
            var list: [IPAddress] = []
            for _ in 0..<count { if let ip = remote(), !list.contains(ip) { list.append(ip) } }
            return list
        }
        func prefixes() -> [IPPrefix] {
            var list: [IPPrefix] = []
            for _ in 0..<int(0...4) {
                let v4 = chance(0.5)
                let bytes = (0..<(v4 ? 4 : 16)).map { _ in UInt8.random(in: 0...255, using: &g) }
                let address: IPAddress = v4 ? .v4(IPv4Address(bytes[0], bytes[1], bytes[2], bytes[3])) : .v6(IPv6Address(bytes: bytes)!)
                let prefix = IPPrefix(masking: address, length: int(0...(v4 ? 32 : 128)))
                if !prefix.isMulticast, !prefix.isIPv4Mapped, !list.contains(prefix) { list.append(prefix) }
            }
            return list
        }
        if chance(0.3) { u.allowedRemotes = chance(0.15) ? [] : prefixes() }

        // VNIs.
        var settings: [VTEPConfiguration.VNISettings] = []
        for _ in 0..<int(0...6) {
            let vni = UInt32(chance(0.1) ? pick([1, 0xFF_FFFF]) : int(1...0xFF_FFFF))
            guard !settings.contains(where: { $0.vni == vni }) else { continue }
            var s = VTEPConfiguration.VNISettings(vni: vni, flood: remotes(int(0...4)))
            s.learning = chance(0.8)
            s.ageing = chance(0.6) ? 300 : int(10...1_000_000)
            s.maxLearned = chance(0.6) ? 0 : int(0...16_777_215)
            if chance(0.3) { s.allowedRemotes = chance(0.3) ? [] : prefixes() }
            settings.append(s)
        }

        // Ports: plain names, odd names that need quoting, vhost-user ports with sockets of either kind.
        var names = Set<String>()
        func name(vhost: Bool) -> String {
            while true {
                let n = vhost ? "net_vhost" + (chance(0.5) ? String(int(0...99)) : pick(oddNames))
                    : chance(0.5) ? pick(["p", "net_af_packet", "net_ring_", "net_pcap", "0000:3b:00."]) + String(int(0...15)) : pick(oddNames)
                if names.insert(n).inserted { return n }
            }
        }
        u.port = name(vhost: false)
        // Tap interfaces: names of 1 to 15 characters, some that YAML would misread, each used once.
        var interfaces = Set<String>()
        func tap() -> VTEPConfiguration.Tap {
            while true {
                let n = chance(0.5) ? "tap\(int(0...9999))" : pick(["yes", "on", "null", "1e3", "-x", "a.b", "vm#1", "[v]", "é"])
                if interfaces.insert(n).inserted { return .init(name: n, udpTunnelGSO: chance(0.7)) }
            }
        }
        if chance(0.2) && ConfigRules.problem(tapPortName: u.port) == nil { u.tap = tap() }
        var access: [VTEPConfiguration.AccessPort] = []
        var sockets = Set<String>()
        if !settings.isEmpty {
            for _ in 0..<int(0...5) {
                var vhost: VTEPConfiguration.Vhost?
                if chance(0.3) {
                    var socket = chance(0.5) ? "/run/vxland/vm\(int(0...999)).sock" : pick(oddSockets)
                    if sockets.contains(socket) { socket = "/run/vxland/again\(sockets.count).sock" }
                    sockets.insert(socket)
                    vhost = .init(socket: socket, client: chance(0.5), tso: chance(0.7))
                }
                let port = name(vhost: vhost != nil)
                var a: VTEPConfiguration.AccessPort
                if chance(0.6) {
                    a = .init(port: port, vni: pick(settings).vni, vhost: vhost)
                } else {
                    var vlans: [VTEPConfiguration.VLANMapping] = []
                    for _ in 0..<int(1...4) {
                        let vlan = UInt16(chance(0.1) ? pick([1, 4094]) : int(1...4094))
                        if !vlans.contains(where: { $0.vlan == vlan }) { vlans.append(.init(vlan: vlan, vni: pick(settings).vni)) }
                    }
                    a = .init(port: port, vlans: vlans, vhost: vhost)
                }
                a.offloads = chance(0.8) ? .auto : .software
                if vhost == nil && chance(0.25) && ConfigRules.problem(tapPortName: port) == nil {
                    a.tap = tap(); a.tap!.udpTunnelGSO = true      // the underlay's key only
                }
                access.append(a)
            }
        }

        // Static FDB entries and next hops.
        var fdb: [VTEPConfiguration.FDBEntry] = []
        if !settings.isEmpty {
            for _ in 0..<int(0...6) {
                guard let remote = remote() else { continue }
                let entry = VTEPConfiguration.FDBEntry(vni: pick(settings).vni, mac: mac(), remote: remote)
                if !fdb.contains(where: { $0.vni == entry.vni && $0.mac == entry.mac }) { fdb.append(entry) }
            }
        }
        var neighbors: [VTEPConfiguration.Neighbor] = []
        for _ in 0..<int(0...4) {
            let linkLocal = interface6 != nil && chance(0.2) ? IPAddress("fe80::\(String(int(1...0xFFFF), radix: 16))") : nil
            guard let ip = linkLocal ?? (chance(0.5) ? onLink4() : onLink6()), peer(ip, .nextHop),
                  !neighbors.contains(where: { $0.ip == ip }) else { continue }
            neighbors.append(.init(ip: ip, mac: mac()))
        }

        // Resources: the defaults, or values within range that hold what was drawn.
        var r = VTEPConfiguration.Resources()
        if chance(0.5) {
            var tunnels = Set<String>()
            for s in settings { for f in s.flood { tunnels.insert("\(s.vni) \(f)") } }
            for e in fdb { tunnels.insert("\(e.vni) \(e.remote)") }
            r.mbufs = int(1023...16_777_215)
            r.rxDescriptors = int(32...32768)
            r.txDescriptors = int(32...32768)
            r.fdbEntries = int(max(1024, 2 * fdb.count)...16_777_216)
            r.tunnels = int(max(16, tunnels.count)...1_048_576)
            r.vnis = int(max(16, settings.count)...1_048_576)
            r.ports = int(max(2, 1 + access.count)...256)
        }
        return VTEPConfiguration(underlay: u, access: access, vnis: settings, fdb: fdb, neighbors: neighbors, resources: r)
    }

    static func masked(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        (0..<16).map { i in
            let bits = min(8, max(0, length - i * 8))
            return bits == 0 ? 0 : bytes[i] & UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
    }

    /// `network` with random host bits beyond `length`.
    static func randomHost(in network: [UInt8], length: Int, _ g: inout SplitMix64) -> [UInt8] {
        (0..<16).map { i in
            let bits = min(8, max(0, length - i * 8))
            let hostMask = bits == 8 ? 0 : UInt8(0xFF) >> bits
            return network[i] & ~hostMask | UInt8.random(in: 0...255, using: &g) & hostMask
        }
    }
}

extension ConfigWriterTests {
    /// The configurations of the other tests, the system tests, the scripts and the benchmarks, with their
    /// interpolations filled in (ring and pcap port names, socket paths, MACs), each named by where it comes from.
    static var fixtures: [(String, String)] {
        var list: [(String, String)] = [
            ("ConfigParserTests.valid", ConfigParserTests.valid),
            ("ConfigParserTests: JSON", """
                {"underlay": {"port": "0", "ip": "10.99.0.1/24", "udp_port": 8472, "ttl": 16},
                 "access": [{"port": "1", "vni": 42}],
                 "vnis": [{"vni": 42, "flood": ["10.99.0.2"]}],
                 "neighbors": [{"ip": "10.99.0.2", "mac": "02:00:00:00:00:02"}]}
                """),
            ("ConfigParserTests: gateway", """
                underlay: { port: p0, ip: 10.99.0.1/24, gateway: 10.99.0.254, neighbor_timeout: 60 }
                vnis: [ { vni: 7, flood: [10.99.0.2, 172.16.5.5] } ]
                """),
            ("ConfigParserTests: tagged", """
                underlay: { port: p0, ip: 10.99.0.1/24 }
                access: [ { port: p1, vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ] }, { port: p2, vni: 42 } ]
                vnis: [ { vni: 42 }, { vni: 43 } ]
                """),
            ("ConfigParserTests: taps", """
                underlay: { port: und0, tap: { name: und0, udp_tunnel_gso: false }, ip: 10.99.0.1/24 }
                access:
                  - { port: vm1, vni: 42, tap: { name: vm1 } }
                  - { port: vm2, vlans: [ { vlan: 10, vni: 42 } ], offloads: software, tap: { name: "yes" } }
                vnis: [ { vni: 42 } ]
                """),
            ("ConfigParserTests: vhost", """
                underlay: { port: p0, ip: 10.99.0.1/24 }
                access:
                  - { port: net_vhost0, vni: 42, vhost: { socket: /run/vxland/vm1.sock } }
                  - { port: net_vhost1, vlans: [ { vlan: 10, vni: 42 } ], vhost: { socket: /run/qemu/vm2.sock, client: true, tso: false } }
                  - { port: net_vhost2, vni: 42 }
                vnis: [ { vni: 42 } ]
                """),
            ("ConfigParserTests: IPv6", """
                underlay: { port: p0, ip6: "fd00::1/64", gateway6: "fd00::fe" }
                vnis: [ { vni: 7, flood: ["fd00::2", "2001:db8::9"] } ]
                neighbors: [ { ip: "fd00::2", mac: "02:00:00:00:00:02" } ]
                """),
            ("ConfigParserTests: dual stack", """
                underlay: { port: p0, ip: 10.99.0.1/24, ip6: "fd00::1/64" }
                vnis: [ { vni: 7, flood: [10.99.0.2, "fd00::2"] } ]
                """),
            ("ConfigParserTests: MAC like base 60",
             ConfigParserTests.valid.replacingOccurrences(of: "mac: 02:00:00:00:00:01", with: "mac: 12:00:00:00:00:01")),
            ("ConfigParserTests: off-subnet .0 and .255", """
                underlay: { port: p0, ip: 10.99.0.1/24, gateway: 10.99.0.254 }
                vnis: [ { vni: 7, flood: [10.98.1.0, 10.98.0.255] } ]
                """),
            ("ConfigParserTests: /31", """
                underlay: { port: p0, ip: 10.99.0.0/31, gateway: 10.99.0.1 }
                vnis: [ { vni: 7, flood: [10.99.0.1, 172.16.0.0] } ]
                neighbors: [ { ip: 10.99.0.1, mac: "02:00:00:00:00:02" } ]
                """),
            ("ConfigParserTests: /31 remote", "underlay: { port: p0, ip: 10.99.0.1/31 }\nvnis: [ { vni: 7, flood: [10.99.0.0] } ]"),
            ("ConfigParserTests: /32", "underlay: { port: p0, ip: 10.99.0.1/32 }"),
            ("ConfigParserTests: /127", "underlay: { port: p0, ip6: \"fd00::/127\" }\nvnis: [ { vni: 7, flood: [\"fd00::1\"] } ]"),
            ("ConfigParserTests: /128", "underlay: { port: p0, ip6: \"fd00::/128\" }"),
            ("ConfigParserTests: VNI limits", """
                underlay: { port: p0, ip: 10.99.0.1/24 }
                access: [ { port: p1, vni: 1 }, { port: p2, vlans: [ { vlan: 5, vni: 16777215 } ] } ]
                vnis: [ { vni: 1 }, { vni: 16777215 } ]
                fdb: [ { vni: 16777215, mac: "02:00:00:00:00:09", remote: 10.99.0.9 } ]
                """),
            ("ConfigParserTests: link-local gateway6", """
                underlay: { port: p0, ip6: "fd00::1/64", gateway6: "fe80::1" }
                vnis: [ { vni: 7, flood: ["2001:db8::9", "fd00::2"] } ]
                neighbors: [ { ip: "fe80::1", mac: "02:00:00:00:00:02" } ]
                """),
            ("ConfigParserTests: link-local prefix", "underlay: { port: p0, ip6: \"fe80::1/64\" }\nvnis: [ { vni: 7, flood: [\"fe80::2\"] } ]"),
            ("ConfigParserTests: capacities", ConfigParserTests.valid + "\nresources:\n  vnis: 1048576\n  ports: 256"),
            ("RemoteFilterTests: lists", """
                underlay:
                  port: p0
                  ip: 10.99.0.1/24
                  ip6: "fd00::1/64"
                  allowed_remotes: [10.99.0.0/24, "fd00::/64", 192.0.2.7, "2001:db8::9", 0.0.0.0/0]
                vnis:
                  - { vni: 42, flood: [10.99.0.2], allowed_remotes: [10.99.0.0/28] }
                  - { vni: 43, allowed_remotes: [] }
                  - { vni: 44 }
                """),
            ("RemoteFilterTests: JSON", """
                {"underlay": {"port": "p0", "ip": "10.99.0.1/24", "allowed_remotes": ["10.99.0.0/25", "fd00::/48"]},
                 "vnis": [{"vni": 42, "allowed_remotes": ["10.99.0.128/25"]}]}
                """),
            ("RemoteFilterTests: per VNI", """
                underlay: { port: p0, ip: 10.99.0.1/16 }
                vnis: [ { vni: 1, flood: [10.99.0.2], allowed_remotes: [] }, { vni: 2 } ]
                """),
            ("RemoteFilterTests: effective filters", """
                underlay:
                  port: p0
                  ip: 10.99.0.1/16
                  ip6: "fd00::1/64"
                  gateway: 10.99.0.254
                  allowed_remotes: [10.99.1.0/24, "fd00::100/120"]
                vnis:
                  - { vni: 42, flood: [10.99.0.2, "fd00::2"], allowed_remotes: [10.99.2.0/28] }
                  - { vni: 43, flood: [172.16.0.9] }
                  - { vni: 44, allowed_remotes: [] }
                  - { vni: 45, flood: [10.99.1.5], allowed_remotes: ["fd00::/64"] }
                fdb:
                  - { vni: 44, mac: "02:00:00:00:44:01", remote: 10.99.3.3 }
                  - { vni: 43, mac: "02:00:00:00:43:01", remote: "fd00::3" }
                  - { vni: 44, mac: "02:00:00:00:44:02", remote: 10.99.4.4 }
                """),
        ]
        for extra in ["", "  verify_udp_checksum: true", "  verify_udp_checksum: off", "  udp6_zero_checksum: { tx: true, rx: true }",
                      "  udp6_zero_checksum: { tx: true }", "  udp6_zero_checksum:\n    rx: yes", "  udp6_zero_checksum: true",
                      "  udp6_zero_checksum: false"] {
            list.append(("ReceiveChecksumConfigTests: \(extra)", ReceiveChecksumConfigTests.config(extra)))
        }
        list.append(("ReceiveChecksumConfigTests: IPv4 only", ReceiveChecksumConfigTests.config("  udp6_zero_checksum: { tx: false, rx: false }", ip6: false)))

        // The DPDK tests' configurations (Tests/VXLANPipelineTests, VXLANDaemonTests, DPDKTestSupport).
        let r = (0..<4).map { "net_ring_\($0)" }
        list += [
            ("PacketFuzzTarget", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", mtu: 1500 }
                access:
                  - { port: \(r[1]), vni: 42 }
                  - { port: \(r[2]), vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ] }
                vnis:
                  - { vni: 42, flood: [10.99.0.2, "fd00::2"], ageing: 10 }
                  - { vni: 43, flood: [10.99.0.3], max_learned: 16, ageing: 10 }
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: 10.99.0.3, mac: "02:00:00:00:00:03" },
                             { ip: "fd00::2", mac: "02:00:00:00:00:04" } ]
                resources: { fdb_entries: 1024, tunnels: 32 }
                """),
            ("DataplaneTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
                access: [{ port: \(r[1]), vni: 42 }, { port: \(r[2]), vni: 43 }]
                vnis: [{ vni: 42, flood: [10.99.0.2] }, { vni: 43, flood: [10.99.0.2] }]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                """),
            ("DataplaneTests: control", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24 }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42 } ]
                """),
            ("ConcurrentStressTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 1500 }
                access:
                  - { port: \(r[1]), vni: 100 }
                  - { port: \(r[2]), vni: 200 }
                  - { port: \(r[3]), vlans: [ { vlan: 10, vni: 100 }, { vlan: 20, vni: 200 } ] }
                vnis:
                  - { vni: 100, flood: [10.99.0.2, 10.99.0.3], ageing: 10 }
                  - { vni: 200, flood: [10.99.0.2, 10.99.0.3], ageing: 10 }
                neighbors:
                  - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
                  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
                  - { ip: 10.99.0.4, mac: "02:00:00:00:00:04" }
                resources: { fdb_entries: 1024, tunnels: 64 }
                """),
            ("ProcessorTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 1500, ttl: 64, strict: true }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] }, { vni: 7, flood: [] } ]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
                neighbors:
                  - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
                  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
                """),
            ("VLANTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
                access:
                  - { port: \(r[1]), vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ] }
                  - { port: \(r[2]), vni: 42 }
                vnis: [ { vni: 42, flood: [10.99.0.2] }, { vni: 43, flood: [10.99.0.2] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                """),
            ("AllowedRemotesTests: per VNI", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 }, { port: \(r[2]), vni: 43 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2, "fd00::2"], allowed_remotes: [10.99.0.0/28, "fd00::/120"] },
                  { vni: 43, flood: [10.99.0.2], allowed_remotes: [] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:06" } ]
                """),
            ("AllowedRemotesTests: global", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", allowed_remotes: [10.99.0.16/28] }
                access: [ { port: \(r[1]), vni: 42 }, { port: \(r[2]), vni: 43 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] }, { vni: 43, flood: [10.99.0.2], allowed_remotes: [10.99.0.0/24] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:06" } ]
                """),
            ("FDBPublicationTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 }, { port: \(r[2]), vni: 42 }, { port: \(r[3]), vni: 43 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] }, { vni: 43, flood: [10.99.0.3] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: 10.99.0.3, mac: "02:00:00:00:00:03" } ]
                """),
            ("FDBPublicationTests: full table", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] } ]
                resources: { fdb_entries: 1024 }
                """),
            ("ReceiveChecksumTests: zero rx", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", mtu: 1500, udp6_zero_checksum: { rx: true } }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2, "fd00::2"] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:06" } ]
                """),
            ("ReceiveChecksumTests: verify", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", mtu: 1500, verify_udp_checksum: true }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2, "fd00::2"] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:06" } ]
                """),
            ("ReceiveChecksumTests: IPv6 tunnel, zero tx", """
                underlay: { port: \(r[0]), ip6: "fd00::1/64", mac: "02:00:00:00:00:01", udp6_zero_checksum: { tx: true } }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: ["fd00::2"] } ]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: "fd00::2" } ]
                neighbors: [ { ip: "fd00::2", mac: "02:00:00:00:00:02" } ]
                """),
            ("UnderlayControlTests: gateway", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", neighbor_timeout: 5, gateway: 10.99.0.254 }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [172.16.0.5] } ]
                neighbors: []
                """),
            ("UnderlayControlTests: neighbors", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", neighbor_timeout: 5 }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                """),
            ("UnderlayControlTests: Neighbor Discovery", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", neighbor_timeout: 5 }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: ["fd00::2"] } ]
                """),
            ("LearningTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 }, { port: \(r[2]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2], learning: false } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: 10.99.0.5, mac: "02:00:00:00:00:05" } ]
                """),
            ("LearningTests: max_learned", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 }, { port: \(r[2]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2], max_learned: 2 } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: 10.99.0.5, mac: "02:00:00:00:00:05" } ]
                """),
            ("UnderlayResourceTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/16, mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2], ageing: 10 } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                resources: { tunnels: 64 }
                """),
            ("UnderlayResourceTests: 1500 remotes", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/16, mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [\((0..<1500).map { "10.99.\(1 + $0 / 250).\(1 + $0 % 250)" }.joined(separator: ", "))] } ]
                neighbors: []
                resources: { tunnels: 2048 }
                """),
            ("IPv6UnderlayTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", mtu: 1500 }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2, "fd00::2"] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:06" } ]
                """),
            ("CoalesceTests", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                """),
            ("SegmentationTests: dual stack", """
                underlay: { port: \(r[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01" }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] } ]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                """),
        ]
        for ipv6 in [false, true] {
            let remote = ipv6 ? "\"fd00::2\"" : "10.99.0.2"
            list.append(("SegmentationTests/HardwarePathTests: IPv6 \(ipv6)", """
                underlay: { port: \(r[0]), \(ipv6 ? "ip6: \"fd00::1/64\"" : "ip: 10.99.0.1/24"), mac: "02:00:00:00:00:01", mtu: 9000 }
                access: [ { port: \(r[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [\(remote)] } ]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: \(remote) } ]
                neighbors: [ { ip: \(remote), mac: "02:00:00:00:00:02" } ]
                """))
        }
        // 3 of the 100 MACs a VNI has there: the shape, not the size, which a debug build reads slowly.
        let largeTablesFDB = (0..<1000).flatMap { s in (0..<3).map { m in
            let i = s * 100 + m
            return String(format: "  - { vni: %d, mac: \"02:01:%02x:%02x:%02x:%02x\", remote: 10.99.0.2 }",
                          1000 + s, i >> 24 & 0xff, i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff)
        } }.joined(separator: "\n")
        list += [
            ("VXLANBench: encap6Zero", """
                underlay: { port: net_null_b, ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", mtu: 9000, udp6_zero_checksum: true }
                access: [ { port: net_pcap_b, vni: 42 } ]
                vnis: [ { vni: 42, flood: ["fd00::2"] } ]
                fdb: [\((0..<64).map { "{ vni: 42, mac: \"\(String(format: "02:00:00:01:%02x:%02x", $0 >> 8, $0 & 0xff))\", remote: \"fd00::2\" }" }.joined(separator: ", "))]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:02" } ]
                """),
            ("VXLANBench: large tables", """
                underlay: { port: underlay, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 9000 }
                access: [ { port: access, vlans: [\((0..<1000).map { "{ vlan: \(1 + $0), vni: \(1000 + $0) }" }.joined(separator: ", "))] } ]
                vnis: [\((0..<1000).map { "{ vni: \(1000 + $0), flood: [10.99.0.2] }" }.joined(separator: ", "))]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                resources: { mbufs: 147455, fdb_entries: 200000 }
                fdb:
                \(largeTablesFDB)
                """),
        ]

        // The system tests (Tests/system) and the scripts that write vxland's configuration.
        let null = """
            underlay: { port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access: [ { port: net_null1, vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]

            """
        list += [
            ("conftest.py NULL_CONFIG", null),
            ("test_daemon.py: a port that is missing", null.replacingOccurrences(of: "net_null1", with: "net_null7")),
            ("test_startup_shutdown.py: pcap", null.replacingOccurrences(of: "net_null1", with: "net_pcap0")),
            ("test_pcap.py", """
                underlay: { port: net_pcap0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 1500, udp_port: 4789, ttl: 64 }
                access: [ { port: net_pcap1, vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2, 10.99.0.3] } ]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
                neighbors:
                  - { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }
                  - { ip: 10.99.0.3, mac: "02:00:00:00:00:03" }
                """),
        ]
        let bigFDB: [String] = (0..<60000).map { (i: Int) -> String in
            String(format: "  - { vni: 42, mac: \"02:10:%02x:%02x:%02x:%02x\", remote: 10.99.0.2 }", i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255)
        }
        list.append(("test_attack_findings.py: big FDB", ([null, "resources: { fdb_entries: 262144 }", "fdb:"] + bigFDB).joined(separator: "\n") + "\n"))
        let pages: [String] = (0..<20000).map { (i: Int) -> String in
            String(format: "  - { vni: 42, mac: \"02:00:00:%02x:%02x:%02x\", remote: 10.99.0.2 }\n", i >> 16 & 255, i >> 8 & 255, i & 255)
        }
        list.append(("test_control_plane.py: 20000 entries", null + "resources: { fdb_entries: 65536 }\nfdb:\n" + pages.joined()))
        for mtu in [576, 1281, 1500, 9216] {
            list.append(("test_offload_robustness.py: mtu \(mtu)", """
                underlay: { port: net_pcap0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: \(mtu) }
                access: [ { port: net_vhost0, vni: 42, vhost: { socket: /tmp/pytest/test_odd_underlay_mtus0/vm.sock, client: false, tso: true } } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] } ]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                """))
        }
        for (client, tso, port) in [(false, true, "net_vhost0"), (true, true, "net_vhost0"), (false, false, "net_vhost1")] {
            list.append(("test_vhost.py: client \(client), tso \(tso)", """
                underlay: { port: net_pcap0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 1500 }
                access: [ { port: \(port), vni: 42, vhost: { socket: /tmp/pytest/test_vhost0/vm.sock, client: \(client), tso: \(tso) } } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] } ]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
                neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
                """))
        }
        for underlay in [#"{ port: net_null0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }"#,
                         #"{ port: net_af_packet0, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 1500 }"#] {
            list.append(("seed-experiment.sh: vhost_config \(underlay)", """
                underlay: \(underlay)
                access: [ { port: net_vhost0, vni: 42, vhost: { socket: /tmp/seed.XXXX/vm1.sock, tso: true } } ]
                vnis: [ { vni: 42, flood: [10.99.0.2] } ]
                fdb: [ { vni: 42, mac: "02:00:00:00:42:99", remote: 10.99.0.2 } ]
                """))
        }
        for (remotes, ageing, mode) in [(1, 300, "untagged"), (2, 10, "untagged"), (8, 300, "untagged"), (1, 300, "ipv6"), (2, 10, "ipv6"),
                                         (2, 300, "dual"), (3, 300, "dual"), (1, 300, "vlans"), (2, 300, "vlans")] {
            let text = netnsTopology(remotes: remotes, ageing: ageing, mode: mode)
            list.append(("netns-topology.sh \(remotes) \(ageing) \(mode)", text))
            if mode == "ipv6" {   // test_rx_offloads.py: zero checksums both ways
                list.append(("test_rx_offloads.py: \(remotes) \(ageing)",
                             text.replacingOccurrences(of: "  mtu: 1500\n", with: "  mtu: 1500\n  udp6_zero_checksum: { tx: true, rx: true }\n")))
            }
            if mode == "untagged" && ageing == 10 {   // test_hostile_underlay.py: small limits
                list.append(("test_hostile_underlay.py", text.replacingOccurrences(of: "ageing: 10 }", with: "ageing: 10, max_learned: 2000 }")
                             + "resources: { tunnels: 64, fdb_entries: 4096 }\n"))
            }
        }
        return list
    }

    /// The configuration scripts/netns-topology.sh writes for `up PREFIX CONFIG REMOTES AGEING MODE`.
    static func netnsTopology(remotes: Int, ageing: Int, mode: String) -> String {
        var flood: [String] = []
        for i in 1...remotes {
            let n = i + 1
            let ipv6 = mode == "ipv6" || (mode == "dual" && i % 2 == 0)
            flood.append(ipv6 ? "\"fd00::\(n)\"" : "10.99.0.\(n)")
        }
        let addresses = mode == "ipv6" ? #"ip6: "fd00::1/64""# : mode == "dual" ? "ip: 10.99.0.1/24\n  ip6: \"fd00::1/64\"" : "ip: 10.99.0.1/24"
        var access = "- { port: net_af_packet1, vni: 42 }   # dpacc, towards the VM"
        var vnis = "- { vni: 42, flood: [\(flood.joined(separator: ", "))], ageing: \(ageing) }"
        if mode == "vlans" {
            access = "- { port: net_af_packet1, vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ] }   # dpacc, tagged"
            vnis += "\n  - { vni: 43, flood: [\(flood.joined(separator: ", "))], ageing: \(ageing) }"
        }
        return """
            # vxland's configuration for the namespace test bed (scripts/netns-topology.sh)
            underlay:
              port: net_af_packet0          # dpund
              \(addresses)
              mac: 02:00:00:00:00:01
              mtu: 1500
              udp_port: 4789
            access:
              \(access)
            vnis:
              # MACs are learned; the remotes' MACs are resolved by ARP. Nothing here is static.
              \(vnis)

            """
    }
}
