import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// A dual-stack VTEP (10.99.0.1 and fd00::1) with an IPv4 and an IPv6 remote in one VNI, on net_ring.
final class IPv6UnderlayTests: XCTestCase {
    static let ourMAC = "02:00:00:00:00:01", v6RemoteMAC = "02:00:00:00:00:06", vm = "02:00:00:00:42:01", far = "02:00:00:00:77:01"

    var h: PipelineHarness!
    var tables: ForwardingTables { h.tables }
    var control: UnderlayControl { h.control! }

    func build(neighbors: String) throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 1023) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "\(Self.ourMAC)", mtu: 1500 }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2, "fd00::2"] } ]
            neighbors: \(neighbors)
            """ }
    }

    func buildResolved() throws {
        try build(neighbors: "[ { ip: 10.99.0.2, mac: \"02:00:00:00:00:02\" }, { ip: \"fd00::2\", mac: \"\(Self.v6RemoteMAC)\" } ]")
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    func run(underlay u: [[UInt8]] = [], access a: [[UInt8]] = [], now: Double = 1) -> (u: [[UInt8]], a: [[UInt8]]) {
        let out = h.run([0: u, 1: a], now: now)
        return (out[0], out[1])
    }

    func drops(_ r: DropReason) -> UInt64 { h.drops(r) }

    /// Dual stack in one VNI: a broadcast goes out once over IPv4 and once over IPv6; the IPv6 copy has the
    /// RFC 7348 layout over IPv6 and a UDP checksum that an independent computation confirms.
    func testFloodingReachesAnIPv4AndAnIPv6Remote() throws {
        try buildResolved()
        let inner = Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, size: 77)       // odd length on purpose
        let out = run(access: [inner]).u
        XCTAssertEqual(out.count, 2)
        let v6 = try XCTUnwrap(out.first { $0[12] == 0x86 })
        XCTAssertEqual(out.first { $0[12] == 0x08 }?.count, inner.count + 50)
        XCTAssertEqual(v6.count, inner.count + 70)
        // Source port and flow label from the inner flow, computed independently of the pipeline (RFC 6438).
        let sport = ReferenceFlowHash.sourcePort(inner)
        let flow = ReferenceFlowHash.flowLabel(inner)
        let expected = Frames.ethernet(dst: Self.v6RemoteMAC, src: Self.ourMAC, type: 0x86DD,
                                       payload: Frames.ipv6(src: "fd00::1", dst: "fd00::2", next: 17,
                                                            payload: Frames.udp6(src: "fd00::1", dst: "fd00::2", sport: sport, dport: 4789,
                                                                                 payload: Frames.vxlan(vni: 42, inner: inner)),
                                                            flow: flow))
        XCTAssertEqual(v6, expected, "outer IPv6/UDP/VXLAN, with the checksum, source port and flow label computed independently")
    }

    /// The outer UDP source port (both families) and the IPv6 flow label follow the inner flow, as computed
    /// independently from the inner frame: UDP flows over IPv4, TCP, UDP and ICMPv6 over IPv6, and non-IP frames.
    func testSourcePortAndFlowLabelFollowTheInnerFlow() throws {
        try buildResolved()
        func inner6(next: UInt8, sport: Int) -> [UInt8] {
            Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, type: 0x86DD,
                            payload: Frames.ipv6(src: "fd42::1", dst: "fd42::2", next: next,
                                                 payload: Frames.be16(sport) + Frames.be16(443) + [UInt8](repeating: 7, count: 16)))
        }
        let inners = [Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, sport: 1000),
                      Frames.innerUDP(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, sport: 1001),
                      inner6(next: 6, sport: 40000), inner6(next: 17, sport: 40001), inner6(next: 58, sport: 0),
                      Frames.ethernet(dst: "ff:ff:ff:ff:ff:ff", src: Self.vm, type: 0x88B5, payload: [UInt8](repeating: 3, count: 50))]
        var ports = Set<Int>()
        for inner in inners {
            let out = run(access: [inner]).u
            let sport = ReferenceFlowHash.sourcePort(inner)
            ports.insert(sport)
            let v4 = Frames.ethernet(dst: "02:00:00:00:00:02", src: Self.ourMAC, type: 0x0800,
                                     payload: Frames.ipv4(src: "10.99.0.1", dst: "10.99.0.2", proto: 17,
                                                          payload: Frames.udp(sport: sport, dport: 4789, payload: Frames.vxlan(vni: 42, inner: inner))))
            let v6 = Frames.ethernet(dst: Self.v6RemoteMAC, src: Self.ourMAC, type: 0x86DD,
                                     payload: Frames.ipv6(src: "fd00::1", dst: "fd00::2", next: 17,
                                                          payload: Frames.udp6(src: "fd00::1", dst: "fd00::2", sport: sport, dport: 4789,
                                                                               payload: Frames.vxlan(vni: 42, inner: inner)),
                                                          flow: ReferenceFlowHash.flowLabel(inner)))
            XCTAssertEqual(out.filter { $0[12] == 0x08 }, [v4], "inner \(inner.prefix(24))")
            XCTAssertEqual(out.filter { $0[12] == 0x86 }, [v6], "inner \(inner.prefix(24))")
        }
        XCTAssertEqual(ports.count, inners.count, "six flows, six source ports")
    }

    func testIPv6VXLANIsValidatedAndDecapsulated() throws {
        try buildResolved()
        let inner = Frames.innerUDP(dst: Self.vm, src: Self.far, size: 90)
        let good = Frames.vxlanPacket6(inner: inner)
        var badChecksum = good
        badChecksum[61] ^= 0x55
        let out = run(underlay: [good, Frames.vxlanPacket6(inner: inner, checksum: 0), badChecksum,
                                 Frames.vxlanPacket6(dstIP: "fd00::9", inner: inner), Frames.vxlanPacket6(vni: 99, inner: inner)])
        XCTAssertEqual(out.a, [inner])
        XCTAssertEqual(drops(.badUDPChecksum), 2, "zero and wrong checksums over IPv6 are dropped (RFC 8200)")
        XCTAssertEqual(drops(.wrongDestination), 1)
        XCTAssertEqual(drops(.unknownVNI), 1)
        // Learned behind the IPv6 remote, and unicast to it goes out over IPv6.
        let learned = tables.fdbEntries(vni: 42).first { $0.entry.mac == MACAddress(Self.far)! }?.entry.target
        guard case .tunnel(let t)? = learned else { return XCTFail("not learned: \(String(describing: learned))") }
        XCTAssertEqual(tables.tunnels[t].remote, IPAddress("fd00::2"))
        let reply = run(access: [Frames.innerUDP(dst: Self.far, src: Self.vm)]).u
        XCTAssertEqual(reply.count, 1)
        XCTAssertEqual(Array(reply[0][12...13]), [0x86, 0xDD])
    }

    /// From a kernel-attached underlay (net_af_packet on a veth) the outer UDP checksum over IPv6 is what the
    /// sending kernel left to its NIC: the pseudo-header sum alone, or a sum that is right only once the inner
    /// checksum is filled in (local checksum offload). There a present checksum is taken; a zero one is dropped
    /// everywhere, and a wrong one from any other underlay.
    func testTheOuterChecksumFromAKernelAttachedUnderlayNeedOnlyBePresent() throws {
        let inner = Frames.innerUDP(dst: Self.vm, src: Self.far, size: 90)
        let udpLength = 8 + 8 + inner.count
        var sum = UInt32(udpLength) + 17
        for address in ["fd00::2", "fd00::1"] {
            let b = IPv6Address(address)!.bytes
            for k in stride(from: 0, to: 16, by: 2) { sum += UInt32(b[k]) << 8 | UInt32(b[k + 1]) }
        }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        let partial = UInt16(sum)     // what Linux leaves with CHECKSUM_PARTIAL: the folded pseudo-header sum
        for kernelAttached in [false, true] {
            h = try PipelineHarness(accessPorts: 1, poolSize: 1023, completeChecksumPorts: kernelAttached ? [0] : []) { names in """
                underlay: { port: \(names[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "\(Self.ourMAC)", mtu: 1500 }
                access: [ { port: \(names[1]), vni: 42 } ]
                vnis: [ { vni: 42, flood: [10.99.0.2, "fd00::2"] } ]
                neighbors: [ { ip: "fd00::2", mac: "\(Self.v6RemoteMAC)" } ]
                """ }
            let out = run(underlay: [Frames.vxlanPacket6(inner: inner), Frames.vxlanPacket6(inner: inner, checksum: partial),
                                     Frames.vxlanPacket6(inner: inner, checksum: 0)]).a
            XCTAssertEqual(out.count, kernelAttached ? 2 : 1, "kernel-attached: \(kernelAttached)")
            XCTAssertEqual(drops(.badUDPChecksum), kernelAttached ? 1 : 2, "kernel-attached: \(kernelAttached)")
            tearDown()
        }
    }

    func testNeighborDiscoveryResolvesAndAnswers() throws {
        try build(neighbors: "[ { ip: 10.99.0.2, mac: \"02:00:00:00:00:02\" } ]")
        // fd00::2 is unresolved: the slow path solicits it at its solicited-node group, hop limit 255.
        let out = run(now: 0).u
        let solicitation = try XCTUnwrap(out.first { $0.count > 54 && $0[12] == 0x86 })
        XCTAssertEqual(Array(solicitation[0..<6]), [0x33, 0x33, 0xff, 0, 0, 2])
        XCTAssertEqual(solicitation, Frames.ethernet(dst: "33:33:ff:00:00:02", src: Self.ourMAC, type: 0x86DD,
            payload: Frames.ipv6(src: "fd00::1", dst: "ff02::1:ff00:2", next: 58,
                                 payload: Frames.icmp6(src: "fd00::1", dst: "ff02::1:ff00:2", type: 135,
                                                       body: [0, 0, 0, 0] + Frames.ip6("fd00::2") + [1, 1] + Frames.mac(Self.ourMAC)),
                                 hopLimit: 255)))
        // The remote advertises itself: resolved.
        let advert = Frames.ethernet(dst: Self.ourMAC, src: Self.v6RemoteMAC, type: 0x86DD,
            payload: Frames.ipv6(src: "fd00::2", dst: "fd00::1", next: 58,
                                 payload: Frames.icmp6(src: "fd00::2", dst: "fd00::1", type: 136,
                                                       body: [0x60, 0, 0, 0] + Frames.ip6("fd00::2") + [2, 1] + Frames.mac(Self.v6RemoteMAC)),
                                 hopLimit: 255))
        _ = run(underlay: [advert], now: 0.1)
        XCTAssertEqual(control.neighbors(now: 0.2).first { $0.ip == IPAddress("fd00::2") }?.mac, MACAddress(Self.v6RemoteMAC))
        // Someone solicits our address: we advertise it, solicited and override, to the solicitor.
        let solicit = Frames.ethernet(dst: "33:33:ff:00:00:01", src: "02:00:00:00:00:07", type: 0x86DD,
            payload: Frames.ipv6(src: "fd00::7", dst: "ff02::1:ff00:1", next: 58,
                                 payload: Frames.icmp6(src: "fd00::7", dst: "ff02::1:ff00:1", type: 135,
                                                       body: [0, 0, 0, 0] + Frames.ip6("fd00::1") + [1, 1] + Frames.mac("02:00:00:00:00:07")),
                                 hopLimit: 255))
        let answer = run(underlay: [solicit], now: 0.3).u
        XCTAssertEqual(answer, [Frames.ethernet(dst: "02:00:00:00:00:07", src: Self.ourMAC, type: 0x86DD,
            payload: Frames.ipv6(src: "fd00::1", dst: "fd00::7", next: 58,
                                 payload: Frames.icmp6(src: "fd00::1", dst: "fd00::7", type: 136,
                                                       body: [0x60, 0, 0, 0] + Frames.ip6("fd00::1") + [2, 1] + Frames.mac(Self.ourMAC)),
                                 hopLimit: 255))])
        // And ping6 to the VTEP address is answered.
        let echo = Frames.ethernet(dst: Self.ourMAC, src: Self.v6RemoteMAC, type: 0x86DD,
            payload: Frames.ipv6(src: "fd00::2", dst: "fd00::1", next: 58,
                                 payload: Frames.icmp6(src: "fd00::2", dst: "fd00::1", type: 128, body: [0, 9, 0, 1] + Array("ping".utf8))))
        XCTAssertEqual(run(underlay: [echo], now: 0.4).u, [Frames.ethernet(dst: Self.v6RemoteMAC, src: Self.ourMAC, type: 0x86DD,
            payload: Frames.ipv6(src: "fd00::1", dst: "fd00::2", next: 58,
                                 payload: Frames.icmp6(src: "fd00::1", dst: "fd00::2", type: 129, body: [0, 9, 0, 1] + Array("ping".utf8))))])
    }
}
