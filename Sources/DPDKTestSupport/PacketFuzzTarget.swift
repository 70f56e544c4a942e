import CDPDK
import CTapPort
import PollMode
import VTEPConfig
import VXLANPipeline

/// The packet path under arbitrary bytes: an input is a sequence of records `[port][length: 2 bytes][frame]`
/// (port 0 the underlay, 1-2 access ports), run through validation, lookup, learning, the slow path's responders
/// and encapsulation on real mbufs. The port byte's upper bits say how the frame arrives (`Arrival`): in one
/// buffer or a chain of tiny ones, with RX flags that may lie (RX_LRO and a `tso_segsz`, L4_CKSUM_NONE). Every
/// input goes through two pipelines: the software one (port 1 kernel-attached: every checksum completed) and one
/// whose underlay is a NIC model with every tunnel offload (ports 0 and 2 kernel-attached: the receive side too),
/// whose `violations` must stay empty. A port byte whose low bits are 3 is a frame read from a tap port (CTapPort):
/// the record starts with the 24-byte virtio-net header, which the tap port's own check turns into RX flags or a
/// drop (the underlay's tap when the next two bits are 0, else an access port's). After each input: every mbuf is back in the pool, no frame vanished without
/// being forwarded or counted under a drop reason, and every frame sent is well formed (an outer IPv4 header with
/// a correct checksum and lengths, UDP to 4789 with a valid VXLAN header for a configured VNI, or ARP/ND/ICMP from
/// the slow path). A broken invariant stops the process (`fatalError`), so libFuzzer keeps the input.
public final class PacketFuzzTarget {
    public static let config = { (names: [String]) in """
        underlay: { port: \(names[0]), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", mtu: 1500 }
        access:
          - { port: \(names[1]), vni: 42 }
          - { port: \(names[2]), vlans: [ { vlan: 10, vni: 42 }, { vlan: 20, vni: 43 } ] }
        vnis:
          - { vni: 42, flood: [10.99.0.2, "fd00::2"], ageing: 10 }
          - { vni: 43, flood: [10.99.0.3], max_learned: 16, ageing: 10 }
        fdb: [ { vni: 42, mac: "02:00:00:00:42:02", remote: 10.99.0.2 } ]
        neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: 10.99.0.3, mac: "02:00:00:00:00:03" },
                     { ip: "fd00::2", mac: "02:00:00:00:00:04" } ]
        resources: { fdb_entries: 1024, tunnels: 32 }
        """ }

    public let harness: PipelineHarness
    /// The same configuration on the hardware path: a NIC model (e810) behind the underlay.
    public let hardware: PipelineHarness
    public let model = NICModel(profile: .e810)
    private var clock = 0.0
    public private(set) var inputs = 0

    public init() throws {
        harness = try PipelineHarness(accessPorts: 2, poolSize: 4095, completeChecksumPorts: [1], config: Self.config)
        hardware = try PipelineHarness(accessPorts: 2, poolSize: 4095, plan: TunnelTxPlan(enabled: model.capabilities),
                                       completeChecksumPorts: [0, 2], underlayModel: model, config: Self.config)
    }

    /// How a record's frame arrives, from the upper six bits of its port byte (0: one buffer, no flags, as before).
    struct Arrival {
        var segment: Int            // bytes per buffer of the chain; 0 = one buffer when it fits
        var flags: UInt64
        var segsz: UInt16
        /// The frame's first 24 bytes are a virtio-net header, read as a tap port reads it.
        var tap = false
        init(_ bits: UInt8) {
            segment = [0, 54, 7, 1900][Int(bits & 3)]
            flags = (bits & 4 != 0 ? MbufFlag.rxLRO : 0) | (bits & 8 != 0 ? MbufFlag.rxL4ChecksumNone : 0)
            segsz = [0, 1, 200, 65535][Int(bits >> 4 & 3)]
        }
    }

    public func run(_ data: UnsafeRawBufferPointer) {
        var records: [(port: Int, arrival: Arrival, frame: [UInt8])] = []
        var i = 0
        while i + 3 <= data.count && records.count < 64 {
            var arrival = Arrival(data[i] >> 2)
            var port = Int(data[i] & 3)
            if port == 3 {
                // Through a tap: the header decides the flags; the frame comes in 2 KB buffers, as the port reads.
                port = Int(data[i] >> 2 & 3) % 3
                arrival = Arrival(0)
                arrival.tap = true
                arrival.segment = 2048
            }
            let length = min(Int(data[i + 1]) | Int(data[i + 2]) << 8, 20000)
            let end = min(data.count, i + 3 + length)
            records.append((port, arrival, Array(data[(i + 3)..<end])))
            i = end
        }
        inputs += 1
        // Time moves on with every input, so learned entries age out and tunnels are reclaimed as in production.
        clock += 1
        for h in [harness, hardware] { run(records.filter { !$0.frame.isEmpty }, through: h) }
        check(model.violations.isEmpty, "the NIC model found violations: \(model.violations.prefix(3))")
        model.reset()
    }

    func run(_ records: [(port: Int, arrival: Arrival, frame: [UInt8])], through h: PipelineHarness) {
        var byPort: [Int: [OpaquePointer]] = [:]
        var refusedByTap = 0
        let tapOffloads = UInt32(VX_TUN_F_CSUM | VX_TUN_F_TSO4 | VX_TUN_F_TSO6 | VX_TUN_F_UDP_TUNNEL_GSO | VX_TUN_F_UDP_TUNNEL_GSO_CSUM)
        for r in records {
            if r.arrival.tap {
                guard r.frame.count > 24 else { refusedByTap += 1; continue }
                var header = vx_vnet_hdr()
                withUnsafeMutableBytes(of: &header) { $0.copyBytes(from: r.frame[0..<24]) }
                let m = Mbuf.makeChained(Array(r.frame[24...]), pool: h.pool, segment: 2048)
                // The tap port's verdict: -1/-2 forwarded with the flags it set, else dropped under that reason.
                if vx_vnet_rx_apply(&header, m, tapOffloads | (r.port == 0 ? 0x10000 : 0)) >= 0 {
                    vx_mbuf_free(m)
                    refusedByTap += 1
                    continue
                }
                byPort[r.port, default: []].append(m)
                continue
            }
            let fits = r.frame.count <= 2000
            let m = r.arrival.segment == 0 && fits ? Mbuf.make(r.frame, pool: h.pool)
                : Mbuf.makeChained(r.frame, pool: h.pool, segment: r.arrival.segment == 0 ? 1900 : r.arrival.segment)
            if r.arrival.flags != 0 { vx_mbuf_set_ol_flags(m, r.arrival.flags); vx_mbuf_set_tso_segsz(m, r.arrival.segsz) }
            byPort[r.port, default: []].append(m)
        }
        for (port, list) in byPort { h.rings[port].inject(list) }
        let rxBefore = (0..<3).map { h.port($0, .rxPackets) }
        let accountedBefore = accounted(h)
        let oversizeBefore = h.pipeline(.oversizeDelivered) + h.pipeline(.largeFramesDelivered)
        let out = h.run([:], now: clock)
        let received = (0..<3).reduce(0) { $0 + h.port($1, .rxPackets) - rxBefore[$1] }
        let sent = UInt64(records.count - refusedByTap)
        let which = h === hardware ? "hardware path" : "software path"
        check(received == sent, "\(which): \(sent) frames injected, \(received) received")
        check(accounted(h) - accountedBefore == received, "\(which): \(received) received, \(accounted(h) - accountedBefore) accounted for")
        for frame in out[0] + (h === hardware ? model.takeWire() : []) { checkUnderlayFrame(frame) }
        let oversize = h.pipeline(.oversizeDelivered) + h.pipeline(.largeFramesDelivered) - oversizeBefore
        var large: UInt64 = 0
        for port in 1..<3 {
            for frame in out[port] {
                check(frame.count >= 14, "\(which): access frame of \(frame.count) bytes")
                if frame.count > 1518 + 4 { large += 1 }
            }
        }
        // Counted once per frame: a flooded one reaches both access ports.
        check(large <= 2 * oversize, "\(which): \(large) access frames over 1522 bytes, \(oversize) counted as oversize")
        check(h.pool.available == h.pool.capacity, "\(which): mbufs leaked: \(h.pool.capacity - h.pool.available) in use after the round")
        check(h.indirectPool.available == h.indirectPool.capacity,
              "\(which): indirect mbufs leaked: \(h.indirectPool.capacity - h.indirectPool.available) in use after the round")
    }

    /// Each received frame counted once, by what became of it: decapsulated, punted, tunnelled (a flood once, not
    /// per copy), switched locally, or dropped under a reason. A frame cut into segments or fragments is each of
    /// them once, so those beyond the first are taken off; segments merged by GRO are put back.
    func accounted(_ h: PipelineHarness) -> UInt64 {
        h.pipeline(.decapsulated) + h.pipeline(.punted) + h.pipeline(.encapsulated) - h.pipeline(.floodCopies)
            + h.pipeline(.flooded) + h.pipeline(.switchedLocally) + h.totalDrops
            - (h.pipeline(.segmentsOut) - h.pipeline(.framesSegmented)) - (h.pipeline(.fragmentsOut) - h.pipeline(.framesFragmented))
            + h.pipeline(.coalescedSegments)
    }

    func checkUnderlayFrame(_ f: [UInt8]) {
        check(f.count >= 14, "underlay frame of \(f.count) bytes")
        let type = Int(f[12]) << 8 | Int(f[13])
        switch type {
        case 0x0806:
            check(f.count >= 42, "short ARP")
        case 0x0800:
            check(f.count >= 34 && f[14] == 0x45, "IPv4 header")
            check(Self.checksum(f[14..<34]) == 0xFFFF, "IPv4 header checksum")
            let total = Int(f[16]) << 8 | Int(f[17])
            check(total == f.count - 14, "IPv4 total length \(total) for a \(f.count)-byte frame")
            if f[23] == 17 {
                check(f.count >= 50, "short VXLAN")
                check(Int(f[36]) << 8 | Int(f[37]) == 4789, "UDP destination port")
                check(Int(f[38]) << 8 | Int(f[39]) == total - 20, "UDP length")
                checkVXLAN(Array(f[42...]), maxInner: 1500 - 36)
            } else {
                check(f[23] == 1, "IPv4 protocol \(f[23]) from the VTEP")
            }
        case 0x86DD:
            check(f.count >= 54, "IPv6 header")
            let payload = Int(f[18]) << 8 | Int(f[19])
            check(payload == f.count - 54, "IPv6 payload length \(payload) for a \(f.count)-byte frame")
            if f[20] == 17 {
                check(f.count >= 70 && Int(f[56]) << 8 | Int(f[57]) == 4789, "UDP over IPv6 to 4789")
                var pseudo = Array(f[22..<54])
                pseudo += [0, 0, UInt8(payload >> 8), UInt8(payload & 255), 0, 0, 0, 17]
                check(f[60] != 0 || f[61] != 0, "zero UDP checksum over IPv6")
                check(Self.checksum(pseudo[...] + f[54...]) == 0xFFFF, "UDP checksum over IPv6")
                checkVXLAN(Array(f[62...]), maxInner: 1500 - 56)
            } else {
                check(f[20] == 58, "IPv6 next header \(f[20]) from the VTEP")
            }
        default:
            fatalError("invariant broken: ethertype \(String(type, radix: 16)) sent to the underlay")
        }
    }

    func checkVXLAN(_ v: [UInt8], maxInner: Int) {
        check(v.count >= 8 + 14, "VXLAN without an inner frame")
        check(v[0] == 0x08, "VXLAN flags \(v[0])")
        let vni = UInt32(v[4]) << 16 | UInt32(v[5]) << 8 | UInt32(v[6])
        check(vni == 42 || vni == 43, "VXLAN for VNI \(vni)")
        check(v.count - 8 <= maxInner, "inner frame of \(v.count - 8) bytes over the underlay MTU's \(maxInner)")
    }

    static func checksum<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
        var sum: UInt32 = 0
        var high = true
        for b in bytes { sum += high ? UInt32(b) << 8 : UInt32(b); high.toggle() }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return UInt16(sum)
    }

    func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("invariant broken after input \(inputs): \(message())") }
    }
}
