import CDPDK
import DPDKTestSupport
import PollMode
import VTEPConfig
import XCTest
@testable import VXLANPipeline

/// Receive offload to VMs that take large frames: TCP segments of one flow in a burst become one frame with
/// segmentation metadata; other flows, PSH or SYN segments, gaps and IPv6 keep their place and their bytes.
final class CoalesceTests: XCTestCase {
    typealias S = SegmentationTests
    var h: PipelineHarness!

    override func setUpWithError() throws {
        h = try PipelineHarness(accessPorts: 1, poolSize: 4095, slowPath: false) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            """
        }
        h.tables.setPortTakesLargeFrames(1, true)
    }

    override func tearDown() {
        guard let h else { return }
        let pool = h.release()
        XCTAssertEqual(pool.available, pool.capacity, "mbufs leaked")
        self.h = nil
    }

    /// A segment from the remote VM to ours with a complete checksum, as the remote's NIC or kernel sent it.
    static func segment(seq: UInt32, payload: [UInt8], flags: UInt8 = 0x10) -> [UInt8] {
        S.fromRemote(S.tcpFrame(payload: payload, seq: seq, flags: flags, partial: false))
    }

    func run(_ inner: [[UInt8]]) -> [OpaquePointer] {
        h.rings[0].inject(inner.map { Mbuf.make(Frames.vxlanPacket(inner: $0), pool: h.pool) })
        h.core.pollOnce()
        return h.rings[1].drainMbufs()
    }

    func payloadOf(_ bytes: [UInt8]) -> [UInt8] { Array(bytes[(14 + 20 + Int(bytes[14 + 20 + 12] >> 4) * 4)...]) }

    func testSegmentsOfOneFlowBecomeOneFrameAndAPSHSegmentKeepsItsPlace() throws {
        var g = SeededGenerator.forTest(#function)
        let chunks = (0..<9).map { _ in (0..<1400).map { _ in UInt8.random(in: 0...255, using: &g) } }
        var frames: [[UInt8]] = []
        var seq: UInt32 = 5000
        for (i, c) in chunks.enumerated() {
            frames.append(Self.segment(seq: seq, payload: c, flags: i == 3 ? 0x18 : 0x10))   // PSH on the 4th
            seq &+= 1400
        }
        let out = run(frames)
        defer { out.forEach { vx_mbuf_free($0) } }
        let bytes = out.map { Mbuf.bytes($0) }
        XCTAssertEqual(out.count, 3, "segments 1-3 merged, the PSH segment alone, 5-9 merged")
        XCTAssertEqual(payloadOf(bytes[0]), Array(chunks[0..<3].joined()))
        XCTAssertEqual(payloadOf(bytes[1]), chunks[3])
        XCTAssertEqual(payloadOf(bytes[2]), Array(chunks[4...].joined()))
        for (i, n) in [(0, 3), (2, 5)] {
            let b = bytes[i]
            XCTAssertEqual(Int(b[16]) << 8 | Int(b[17]), 20 + 20 + n * 1400, "IP total length")
            XCTAssertEqual(vx_mbuf_ol_flags(out[i]) & MbufFlag.txTCPSegmentation, MbufFlag.txTCPSegmentation)
            XCTAssertEqual(vx_mbuf_tso_segsz(out[i]), 1400)
            XCTAssertEqual([vx_mbuf_l2_len(out[i]), vx_mbuf_l3_len(out[i]), vx_mbuf_l4_len(out[i])], [14, 20, 20])
            // The TCP checksum is left partial (virtio NEEDS_CSUM): the pseudo-header sum over the merged length.
            let pseudo = S.pseudo(src: Array(b[26..<30]), dst: Array(b[30..<34]), proto: 6, length: b.count - 34)
            XCTAssertEqual(UInt32(b[50]) << 8 | UInt32(b[51]), pseudo)
        }
        XCTAssertEqual(vx_mbuf_ol_flags(out[1]) & MbufFlag.txTCPSegmentation, 0, "a single segment goes as it came")
        XCTAssertEqual(h.pipeline(.coalescedFrames), 2)
        XCTAssertEqual(h.pipeline(.coalescedSegments), 6)
        XCTAssertEqual(h.port(1, .coalescedSegments), 6)
        XCTAssertEqual(h.pipeline(.decapsulated), 3)
    }

    func testInterleavedFlowsAreEachMerged() throws {
        let a = [UInt8](repeating: 0xa, count: 1000), b = [UInt8](repeating: 0xb, count: 1000)
        // Flow B: the same hosts, another source port (its checksum is computed afresh by the frame builder).
        func flowB(_ seq: UInt32) -> [UInt8] {
            var f = Self.segment(seq: seq, payload: b)
            f[34] = 0x9c; f[35] = 0x41                          // source port 40001 instead of 40000
            f[50] = 0; f[51] = 0
            let c = ~UInt16(S.sum(ArraySlice(f[34...]), initial: S.pseudo(src: Array(f[26..<30]), dst: Array(f[30..<34]), proto: 6,
                                                                             length: f.count - 34)))
            f[50] = UInt8(c >> 8); f[51] = UInt8(c & 0xff)
            return f
        }
        let out = run([Self.segment(seq: 0, payload: a), flowB(0), Self.segment(seq: 1000, payload: a), flowB(1000),
                       Self.segment(seq: 2000, payload: a), flowB(2000)])
        defer { out.forEach { vx_mbuf_free($0) } }
        let payloads = Set(out.map { payloadOf(Mbuf.bytes($0)) })
        XCTAssertEqual(out.count, 2)
        XCTAssertEqual(payloads, [a + a + a, b + b + b], "each flow merged, in its own order")
        XCTAssertEqual(h.pipeline(.coalescedSegments), 4)
    }

    func testOtherFlowsGapsAndNonTCPPassUntouchedInOrder() throws {
        let p = [UInt8](repeating: 0x5a, count: 1000)
        let udp = S.fromRemote(Frames.ethernet(dst: S.vmMAC, src: S.remoteVMMAC, type: 0x0800,
                                               payload: Frames.ipv4(src: "192.168.42.2", dst: "192.168.42.1", proto: 17,
                                                                    payload: Frames.udp(sport: 1, dport: 2, payload: p))))
        let frames = [Self.segment(seq: 0, payload: p), udp, Self.segment(seq: 5000, payload: p),        // gap: 1000 -> 5000
                      Self.segment(seq: 0, payload: p, flags: 0x02), S.fromRemote(S.tcpFrame(ipv6: true, payload: p, partial: false))]
        let out = run(frames)
        defer { out.forEach { vx_mbuf_free($0) } }
        XCTAssertEqual(out.map { Mbuf.bytes($0) }, frames, "nothing to merge: every frame as it came, in order")
        XCTAssertEqual(h.pipeline(.coalescedFrames), 0)
    }

    func testAPortThatDoesNotTakeLargeFramesGetsSegmentsAsTheyCame() throws {
        h.tables.setPortTakesLargeFrames(1, false)
        let frames = (0..<4).map { Self.segment(seq: UInt32($0 * 1000), payload: [UInt8](repeating: 1, count: 1000)) }
        let out = run(frames)
        defer { out.forEach { vx_mbuf_free($0) } }
        XCTAssertEqual(out.map { Mbuf.bytes($0) }, frames)
    }
}

extension CoalesceTests {
    /// From a kernel-attached underlay (checksums left unfinished by the remote kernel) the segments are completed,
    /// then merged like any others.
    func testSegmentsFromAKernelUnderlayAreCompletedThenMerged() throws {
        h.release(); h = nil
        h = try PipelineHarness(accessPorts: 1, poolSize: 4095, slowPath: false, completeChecksumPorts: [0]) { names in """
            underlay: { port: \(names[0]), ip: 10.99.0.1/24, mac: "02:00:00:00:00:01" }
            access: [ { port: \(names[1]), vni: 42 } ]
            vnis: [ { vni: 42, flood: [10.99.0.2] } ]
            """
        }
        h.tables.setPortTakesLargeFrames(1, true)
        let chunk = [UInt8](repeating: 0x77, count: 1200)
        let frames = (0..<4).map { S.fromRemote(S.tcpFrame(payload: chunk, seq: UInt32($0 * 1200), flags: 0x10, partial: true)) }
        let out = run(frames)
        defer { out.forEach { vx_mbuf_free($0) } }
        XCTAssertEqual(out.count, 1)
        XCTAssertEqual(payloadOf(Mbuf.bytes(out[0])), Array(repeating: chunk, count: 4).flatMap { $0 })
        XCTAssertEqual(h.pipeline(.checksumsCompleted), 4)
        XCTAssertEqual(h.pipeline(.coalescedSegments), 3)
    }
}

extension CoalesceTests {
    /// Each merged frame carries its own segments' size, whatever the other flows in the burst use.
    func testFlowsWithDifferentSegmentSizesEachKeepTheirOwn() throws {
        let a = [UInt8](repeating: 0xa, count: 1400), b = [UInt8](repeating: 0xb, count: 500)
        var second = S.fromRemote(S.tcpFrame(payload: b, seq: 0, flags: 0x10, partial: false))
        var third = S.fromRemote(S.tcpFrame(payload: b, seq: 500, flags: 0x10, partial: false))
        for f in [0, 1] {      // flow B from another source address (192.168.42.3), checksums rebuilt
            var frame = f == 0 ? second : third
            frame[29] = 3
            frame[24] = 0; frame[25] = 0
            let ic = ~UInt16(S.sum(ArraySlice(frame[14..<34]))); frame[24] = UInt8(ic >> 8); frame[25] = UInt8(ic & 0xff)
            frame[50] = 0; frame[51] = 0
            let c = ~UInt16(S.sum(ArraySlice(frame[34...]), initial: S.pseudo(src: Array(frame[26..<30]), dst: Array(frame[30..<34]),
                                                                                 proto: 6, length: frame.count - 34)))
            frame[50] = UInt8(c >> 8); frame[51] = UInt8(c & 0xff)
            if f == 0 { second = frame } else { third = frame }
        }
        let out = run([Self.segment(seq: 0, payload: a), second, Self.segment(seq: 1400, payload: a), third])
        defer { out.forEach { vx_mbuf_free($0) } }
        XCTAssertEqual(out.count, 2)
        for m in out {
            XCTAssertEqual(vx_mbuf_ol_flags(m) & MbufFlag.txTCPSegmentation, MbufFlag.txTCPSegmentation)
            let payload = payloadOf(Mbuf.bytes(m))
            XCTAssertEqual(Int(vx_mbuf_tso_segsz(m)), payload.count / 2, "the flow's own segment size")
        }
    }

    /// Ethernet padding is no payload, and a new ACK number in a connection ends the run: order is kept.
    func testPaddingAndNewAcknowledgementsKeepTheOrder() throws {
        let p = [UInt8](repeating: 1, count: 800)
        var pureAck = S.fromRemote(S.tcpFrame(payload: [], seq: 5000, flags: 0x10, partial: false))
        pureAck += [UInt8](repeating: 0, count: 60 - pureAck.count)        // padded to the Ethernet minimum
        var laterAck = Self.segment(seq: 800, payload: p)
        laterAck[34 + 8 + 3] = 2                                           // acknowledges 2 instead of 1
        laterAck[50] = 0; laterAck[51] = 0
        let c = ~UInt16(S.sum(ArraySlice(laterAck[34...]), initial: S.pseudo(src: Array(laterAck[26..<30]), dst: Array(laterAck[30..<34]),
                                                                             proto: 6, length: laterAck.count - 34)))
        laterAck[50] = UInt8(c >> 8); laterAck[51] = UInt8(c & 0xff)
        let frames = [Self.segment(seq: 0, payload: p), pureAck, laterAck, Self.segment(seq: 1600, payload: p)]
        let out = run(frames)
        defer { out.forEach { vx_mbuf_free($0) } }
        let seqs = out.map { b -> Int in let x = Mbuf.bytes(b); return Int(x[38]) << 24 | Int(x[39]) << 16 | Int(x[40]) << 8 | Int(x[41]) }
        XCTAssertEqual(seqs, [0, 5000, 800, 1600], "every frame in its place (the padded ACK is not merged, a new ACK starts anew)")
        XCTAssertEqual(out.reduce(0) { $0 + payloadOf(Array(Mbuf.bytes($1).prefix(14 + Int(Mbuf.bytes($1)[16]) << 8 + Int(Mbuf.bytes($1)[17])))).count }, 2400)
    }
}

/// TCP/IPv6, merged by vxland's own code (22.11's rte_gro has none) by the rules of Linux's GRO.
extension CoalesceTests {
    static func segment6(seq: UInt32, payload: [UInt8], flags: UInt8 = 0x10, options: [UInt8] = [], flowLabel: UInt8 = 0) -> [UInt8] {
        var tcp = Frames.be16(5201) + Frames.be16(40000) + [UInt8(seq >> 24), UInt8(seq >> 16 & 0xff), UInt8(seq >> 8 & 0xff), UInt8(seq & 0xff)]
            + [0, 0, 0, 1] + [UInt8((20 + options.count) / 4) << 4, flags] + Frames.be16(502) + [0, 0, 0, 0] + options + payload
        let src = Frames.ip6("fd42::2"), dst = Frames.ip6("fd42::1")
        let c = ~UInt16(S.sum(ArraySlice(tcp), initial: S.pseudo(src: src, dst: dst, proto: 6, length: tcp.count)))
        tcp[16] = UInt8(c >> 8); tcp[17] = UInt8(c & 0xff)
        let ip: [UInt8] = [0x60, 0, 0, flowLabel] + Frames.be16(tcp.count) + [6, 64] + src + dst
        return Frames.mac(S.vmMAC) + Frames.mac(S.remoteVMMAC) + Frames.be16(0x86DD) + ip + tcp
    }

    func testTCPv6SegmentsOfOneConnectionAreMergedAsLinuxWould() throws {
        let timestamps: [UInt8] = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]
        let chunks = (0..<5).map { k in [UInt8](repeating: UInt8(k + 1), count: 1000) }
        var frames = (0..<4).map { Self.segment6(seq: UInt32($0 * 1000), payload: chunks[$0], options: timestamps) }
        frames.append(Self.segment6(seq: 4000, payload: Array(chunks[4][0..<300]), options: timestamps))    // short: ends it
        frames.append(Self.segment6(seq: 4300, payload: chunks[0], options: timestamps))                   // after the short one
        frames.append(Self.segment6(seq: 5300, payload: chunks[1], options: [1, 1, 8, 10, 0, 0, 0, 8, 0, 0, 0, 9]))  // new timestamp
        frames.append(Self.segment6(seq: 6300, payload: chunks[2], options: [1, 1, 8, 10, 0, 0, 0, 8, 0, 0, 0, 9], flowLabel: 5))
        let out = run(frames)
        defer { out.forEach { vx_mbuf_free($0) } }
        XCTAssertEqual(out.count, 4, "1-5 merged; the frame after the short one, the new timestamp, the new flow label alone")
        let first = Mbuf.bytes(out[0])
        XCTAssertEqual(Array(first[(54 + 32)...]), Array(chunks[0..<4].joined()) + Array(chunks[4][0..<300]))
        XCTAssertEqual(Int(first[18]) << 8 | Int(first[19]), first.count - 54, "IPv6 payload length")
        XCTAssertEqual(vx_mbuf_ol_flags(out[0]) & (MbufFlag.txTCPSegmentation | MbufFlag.txIPv6), MbufFlag.txTCPSegmentation | MbufFlag.txIPv6)
        XCTAssertEqual(vx_mbuf_tso_segsz(out[0]), 1000)
        XCTAssertEqual([vx_mbuf_l2_len(out[0]), vx_mbuf_l3_len(out[0]), vx_mbuf_l4_len(out[0])], [14, 40, 32])
        let pseudo = S.pseudo(src: Array(first[22..<38]), dst: Array(first[38..<54]), proto: 6, length: first.count - 54)
        XCTAssertEqual(UInt32(first[70]) << 8 | UInt32(first[71]), pseudo, "TCP checksum left partial for the guest")
        XCTAssertEqual(out[1...].map { Mbuf.bytes($0) }, Array(frames[5...]), "the rest as they came, in order")
        XCTAssertEqual(h.port(1, .coalescedSegments), 4)
    }
}

extension CoalesceTests {
    /// A guest attaching and leaving flips `portTakesLargeFrames` on the vhost thread while a core decapsulates:
    /// with both threads really running, every segment comes out (merged or not) exactly once, its payload intact,
    /// and the pool goes back to full (checked in tearDown).
    func testTheGuestFlagFlippingWhileTheCoreForwardsLosesNothing() throws {
        let chunk = [UInt8](repeating: 0x3c, count: 1000)
        let flips = ManagedFlag()
        let tables = h.tables
        let flipper = Thread {
            var on = false
            while !flips.stop { on.toggle(); tables.setPortTakesLargeFrames(1, on) }
        }
        flipper.start()
        defer { flips.stop = true; while !flipper.isFinished { usleep(100) } }
        var sent = 0, payload = 0
        for round in 0..<300 {
            let frames = (0..<16).map { Self.segment(seq: UInt32((round * 16 + $0) * 1000), payload: chunk) }
            for m in run(frames) {
                payload += payloadOf(Mbuf.bytes(m)).count
                vx_mbuf_free(m)
            }
            sent += frames.count
        }
        XCTAssertEqual(payload, sent * chunk.count, "every segment's payload delivered once")
        XCTAssertEqual(h.pipeline(.decapsulated) + h.pipeline(.coalescedSegments), UInt64(sent))
        XCTAssertEqual(h.totalDrops, 0)
    }
}

final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var stop: Bool {
        get { lock.lock(); defer { lock.unlock() }; return value }
        set { lock.lock(); value = newValue; lock.unlock() }
    }
}
