import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// The hardware path (offload metadata handed to a NIC) against the software path: the same frames through a
/// pipeline whose underlay is a NIC model of each profile, and through one that does everything itself, must give
/// the same bytes on the wire. Documented difference: a NIC counts the outer IPv4 id up per TSO segment where the
/// software path sends id 0 with DF (RFC 6864), so the outer id and outer header checksum are compared apart.
final class HardwarePathTests: XCTestCase {
    typealias S = SegmentationTests

    /// Frames a VM sends: a 64 KB TCP/IPv4 and a 30 KB TCP/IPv6 frame (unfinished checksums, as the kernel
    /// hands them over), small TCP and UDP with unfinished checksums, one complete small frame.
    static func traffic() -> [[UInt8]] {
        var g = SeededGenerator(seed: 42)
        let big = (0..<64000).map { _ in UInt8.random(in: 0...255, using: &g) }
        let udp = Frames.udp(sport: 5000, dport: 6000, payload: Array(big[0..<900]))
        var udpFrame = Frames.ethernet(dst: S.remoteVMMAC, src: S.vmMAC, type: 0x0800,
                                       payload: Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 17, payload: udp))
        udpFrame[14 + 20 + 6] = 0x12; udpFrame[14 + 20 + 7] = 0x34          // a partial sum, not the checksum
        return [S.tcpFrame(payload: big, flags: 0x19), S.tcpFrame(ipv6: true, payload: Array(big[0..<30000])),
                S.tcpFrame(payload: Array(big[0..<1000])), udpFrame, S.tcpFrame(payload: Array(big[0..<500]), partial: false)]
    }

    /// Runs `frames` through a pipeline (underlay IPv4 or IPv6) whose underlay is `model`, or a TX ring when nil.
    func run(_ frames: [[UInt8]], ipv6Underlay: Bool, model: NICModel?) throws -> (wire: [[UInt8]], counters: [PipelineCounter: UInt64]) {
        let plan = model.map { TunnelTxPlan(enabled: $0.capabilities) } ?? .software
        let h = try PipelineHarness(accessPorts: 1, poolSize: 4095, slowPath: false, plan: plan, completeChecksumPorts: [1],
                                    underlayModel: model) { names in
            let remote = ipv6Underlay ? "\"fd00::2\"" : "10.99.0.2"
            return """
            underlay: { port: \(names[0]), \(ipv6Underlay ? "ip6: \"fd00::1/64\"" : "ip: 10.99.0.1/24"), mac: "02:00:00:00:00:01" }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [\(remote)] } ]
            fdb: [ { vni: 42, mac: "\(S.remoteVMMAC)", remote: \(remote) } ]
            neighbors: [ { ip: \(remote), mac: "02:00:00:00:00:02" } ]
            """
        }
        h.rings[1].inject(frames.map { Mbuf.makeChained($0, pool: h.pool) })
        h.core.pollOnce()
        let wire = model?.takeWire() ?? h.rings[0].drain()
        var counters: [PipelineCounter: UInt64] = [:]
        for c in PipelineCounter.allCases { counters[c] = h.pipeline(c) }
        XCTAssertEqual(h.totalDrops, 0)
        XCTAssertEqual(h.port(0, .txPrepareRejected), 0)
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        return (wire, counters)
    }

    /// Outer IPv4 id and header checksum zeroed (the documented difference).
    static func normalized(_ p: [UInt8]) -> [UInt8] {
        var p = p
        if p[12] == 0x08 && p[13] == 0x00 { p[18] = 0; p[19] = 0; p[24] = 0; p[25] = 0 }
        return p
    }

    func check(_ profile: NICModel.Profile, ipv6Underlay: Bool, expect: PipelineCounter) throws {
        let frames = Self.traffic()
        let software = try run(frames, ipv6Underlay: ipv6Underlay, model: nil)
        let model = NICModel(profile: profile)
        let hardware = try run(frames, ipv6Underlay: ipv6Underlay, model: model)
        XCTAssertEqual(model.violations, [], "metadata a driver would refuse")
        XCTAssertGreaterThan(hardware.counters[expect] ?? 0, 0, "\(expect) used")
        XCTAssertEqual(hardware.wire.count, software.wire.count)
        for (i, (a, b)) in zip(hardware.wire, software.wire).enumerated() {
            XCTAssertEqual(Self.normalized(a), Self.normalized(b), "packet \(i) differs (\(profile), IPv6 underlay: \(ipv6Underlay))")
            _ = S.decode(a)       // and both decode with valid lengths and checksums
        }
    }

    func testFullTunnelOffloadMatchesSoftware() throws { try check(.e810, ipv6Underlay: false, expect: .hardwareTSO) }
    func testFullTunnelOffloadOverIPv6MatchesSoftware() throws { try check(.e810, ipv6Underlay: true, expect: .hardwareTSO) }
    func testChecksumOffloadMatchesSoftware() throws { try check(.checksumOnly, ipv6Underlay: false, expect: .hardwareChecksum) }
    func testChecksumOffloadOverIPv6MatchesSoftware() throws { try check(.checksumOnly, ipv6Underlay: true, expect: .hardwareChecksum) }
    func testNoOffloadProfileUsesTheSoftwarePath() throws { try check(.none, ipv6Underlay: false, expect: .framesSegmented) }
    /// A NIC with checksum offload but no notion of tunnels is given no tunnel metadata (it would refuse it).
    func testANICThatKnowsNoTunnelsGetsTheSoftwarePath() throws {
        XCTAssertEqual(TunnelTxPlan(enabled: NICModel.Profile.plainChecksum.capabilities), .software)
        try check(.plainChecksum, ipv6Underlay: false, expect: .checksumsCompleted)
    }

    func testPlanFollowsWhatThePortEnabled() {
        XCTAssertTrue(TunnelTxPlan(enabled: NICModel.Profile.e810.capabilities).tunnelTSO)
        XCTAssertFalse(TunnelTxPlan(enabled: NICModel.Profile.checksumOnly.capabilities).tunnelTSO)
        XCTAssertTrue(TunnelTxPlan(enabled: NICModel.Profile.checksumOnly.capabilities).innerChecksums)
        XCTAssertEqual(TunnelTxPlan(enabled: NICModel.Profile.none.capabilities), .software)
        // Tunnel TSO without the outer IPv4 checksum cannot be used: every segment's outer header differs.
        XCTAssertFalse(TunnelTxPlan(enabled: TxOffloads.all.subtracting(.outerIPv4Checksum)).tunnelTSO)
    }
}
