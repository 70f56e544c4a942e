import CDPDK
import DPDKTestSupport
import Foundation
import PollMode
import VTEPConfig
import VXLANDaemon
import VXLANPipeline

/// 64 KB TCP frames from a VM (as vhost-user or a kernel port hands them over: one frame, checksum unfinished)
/// through one polling core to net_null. `software`: segmented to the 1500-byte underlay and every checksum
/// computed (rte_gso for TCP/IPv4; IPv6 by header + copy). `hardware`: the metadata a NIC with VXLAN TSO needs
/// (the NIC would segment), so the cost per frame is the pipeline's alone.
///
/// The frames are references to one 64 KB buffer (clones for the metadata path, which splits off the headers):
/// the feeder on the control lcore keeps the access port's RX ring full, the polling core works on the worker. The
/// payload is therefore warm in cache, as it is after a NIC's DMA into the last-level cache (DDIO).
struct SegmentationScenario {
    enum Kind: String, CaseIterable {
        case software = "tso-software", software6 = "tso-software-ipv6-underlay", inner6 = "tso-software-inner-ipv6"
        case hardware = "tso-hardware-metadata"
    }

    static let payload = 64000

    let kind: Kind
    var framesPerSecond = 0.0
    var segmentsPerFrame = 0.0

    var payloadGbps: Double { framesPerSecond * Double(Self.payload) * 8 / 1e9 }
    var nanosecondsPerFrame: Double { framesPerSecond > 0 ? 1e9 / framesPerSecond : 0 }

    static func frame(ipv6: Bool) -> [UInt8] {
        var tcp: [UInt8] = Frames.be16(40000) + Frames.be16(5201) + [0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18] + Frames.be16(502) + [0, 0, 0, 0]
        tcp += (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let vm = Frames.mac("02:00:00:00:42:01"), remote = Frames.mac("02:00:00:00:42:02")
        if ipv6 {
            let ip: [UInt8] = [0x60, 0, 0, 0] + Frames.be16(tcp.count) + [6, 64] + Frames.ip6("fd42::1") + Frames.ip6("fd42::2")
            return remote + vm + Frames.be16(0x86DD) + ip + tcp
        }
        return remote + vm + Frames.be16(0x0800) + Frames.ipv4(src: "192.168.42.1", dst: "192.168.42.2", proto: 6, payload: tcp)
    }

    mutating func measure(on lcore: UInt32, seconds: Double, index: Int) throws {
        let tag = "seg\(index)"
        guard let rx = rte_ring_create("rx_\(tag)", 1024, Int32(SOCKET_ID_ANY), UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)),
              let tx = rte_ring_create("tx_\(tag)", 1024, Int32(SOCKET_ID_ANY), UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)) else {
            throw DPDKError.fromErrno("creating the benchmark's rings")
        }
        var rxRings: [OpaquePointer?] = [rx], txRings: [OpaquePointer?] = [tx]
        guard rte_eth_from_rings(tag, &rxRings, 1, &txRings, 1, 0) >= 0 else { throw DPDKError.fromErrno("creating net_ring_\(tag)") }
        let nullName = "net_null_\(tag)"
        try VirtualDevice.create(nullName, arguments: "no-rx=1")
        let ipv6Underlay = kind == .software6
        let remote = ipv6Underlay ? "\"fd00::2\"" : "10.99.0.2"
        let config = try ConfigParser.parse("""
            underlay: { port: \(nullName), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", mtu: 1500 }
            access: [ { port: net_ring_\(tag), vni: 42 } ]
            vnis: [ { vni: 42, flood: [\(remote)] } ]
            fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: \(remote) } ]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:02" } ]
            """)
        let plan: TunnelTxPlan? = kind == .hardware
            ? TunnelTxPlan(tunnelTSO: true, innerChecksums: true, outerIPv4Checksum: true, outerUDPChecksum: true) : nil
        let dataplane = try Dataplane(configuration: config, lcores: [lcore], txPlanOverride: plan)
        let source = try PacketPool(name: "src_\(tag)", count: 63, cacheSize: 0, dataRoom: 65535)
        let bytes = Self.frame(ipv6: kind == .inner6)
        let m = Mbuf.make(bytes, pool: source)
        // As a VM's TSO frame arrives over vhost-user: the MSS the guest chose, the checksum left to the NIC.
        vx_mbuf_set_ol_flags(m, MbufFlag.rxLRO | MbufFlag.rxL4ChecksumNone)
        vx_mbuf_set_tso_segsz(m, 1448)
        try dataplane.startPorts()
        try dataplane.launch()
        let clones = try PacketPool(name: "clones_\(tag)", count: 2047, cacheSize: 0, dataRoom: 0)
        let objects = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 32)
        objects.initialize(repeating: nil, count: 32)
        func frames() -> UInt64 {
            let t = dataplane.statsReport().totals.pipeline
            return kind == .hardware ? t["hardware_tso"] ?? 0 : t["frames_segmented"] ?? 0
        }
        func feed(until deadline: Date) {
            while Date() < deadline {
                if rte_ring_free_count(rx) >= 32 {
                    var n = 0
                    if kind == .hardware {
                        // The metadata path moves the headers into a buffer of their own: each frame needs its own mbuf.
                        while n < 32, let c = rte_pktmbuf_clone(m, clones.pointer) { objects[n] = UnsafeMutableRawPointer(c); n += 1 }
                    } else {
                        // Segmentation only reads the frame: references to the one buffer will do.
                        rte_mbuf_refcnt_update(m, 32)
                        while n < 32 { objects[n] = UnsafeMutableRawPointer(m); n += 1 }
                    }
                    let queued = Int(rte_ring_enqueue_burst(rx, objects, UInt32(n), nil))
                    for i in queued..<n { vx_mbuf_free(OpaquePointer(objects[i]!)) }
                    if n == 0 { sched_yield() }
                } else {
                    sched_yield()
                }
            }
        }
        feed(until: Date().addingTimeInterval(1))
        let start = frames(), segmentsStart = dataplane.statsReport().totals.pipeline["segments_out"] ?? 0, t0 = Date()
        feed(until: t0.addingTimeInterval(seconds))
        let end = frames(), elapsed = Date().timeIntervalSince(t0)
        let segments = (dataplane.statsReport().totals.pipeline["segments_out"] ?? 0) - segmentsStart
        let drops = dataplane.statsReport().totals.dropsTotal
        let reasons = dataplane.statsReport().totals.drops.filter { $0.value > 0 }
        let pools = dataplane.statsReport().pools ?? []
        dataplane.stop()
        // What the core had not taken yet.
        var leftover: UnsafeMutableRawPointer?
        while rte_ring_dequeue(rx, &leftover) == 0 { vx_mbuf_free(OpaquePointer(leftover!)) }
        vx_mbuf_free(m)
        objects.deallocate()
        VirtualDevice.remove(nullName)
        rte_ring_free(rx); rte_ring_free(tx)
        guard drops == 0 else {
            throw SetupError("\(kind.rawValue): benchmark traffic was dropped: \(reasons); \(pools)")
        }
        let rate = Double(end - start) / elapsed
        if rate > framesPerSecond { framesPerSecond = rate; segmentsPerFrame = Double(segments) / Double(max(1, end - start)) }
        FileHandle.standardError.write("\(kind.rawValue): \(String(format: "%.0f", rate)) frames/s\n".data(using: .utf8)!)
    }
}
