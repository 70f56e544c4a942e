import Foundation

/// `trace.start`, `trace.show`, `trace.stop`: the pipeline's decision for each of the next N packets received
/// (on one port, or any), as VPP's packet trace shows it. `trace.start` arms the trace and answers at once
/// (`state` "running"); `trace.show` answers with the packets recorded so far and, once all N were recorded or
/// the timeout passed, ends the trace ("complete", "timed_out"); `trace.stop` ends it now ("stopped").
/// The control socket is served by one thread, so no method waits for packets.
public struct TraceReport: Codable, Equatable, Sendable {
    public var id: Int
    /// running, complete, timed_out or stopped.
    public var state: String
    public var requested: Int
    /// Packets recorded so far (all of `packets` once the trace ended).
    public var captured: Int
    public var port: String?
    public var timeoutSeconds: Double
    public var elapsedSeconds: Double
    public var packets: [TracePacket]

    public init(id: Int, state: String, requested: Int, captured: Int, port: String?, timeoutSeconds: Double, elapsedSeconds: Double,
                packets: [TracePacket]) {
        self.id = id; self.state = state; self.requested = requested; self.captured = captured; self.port = port
        self.timeoutSeconds = timeoutSeconds; self.elapsedSeconds = elapsedSeconds; self.packets = packets
    }

    public var isRunning: Bool { state == "running" }
}

public struct TracePacket: Codable, Equatable, Sendable {
    /// Order among the trace's packets, from 0.
    public var index: Int
    /// The lcore of the polling core that received it (absent when it was not an EAL lcore).
    public var lcore: Int?
    public var port: String
    /// Bytes as received.
    public var length: Int
    /// For VXLAN from the underlay: the outer headers.
    public var outer: Outer?
    /// The inner frame of VXLAN, or the frame itself (from an access port, or underlay traffic that is not VXLAN).
    public var frame: Frame?
    /// The VNI it was classified into, and for an access frame the port (and VLAN) that decided it.
    public var vni: UInt32?
    public var endpoint: String?
    public var fdb: FDBResult?
    public var action: Action

    public init(index: Int, lcore: Int?, port: String, length: Int, outer: Outer?, frame: Frame?, vni: UInt32?, endpoint: String?,
                fdb: FDBResult?, action: Action) {
        self.index = index; self.lcore = lcore; self.port = port; self.length = length; self.outer = outer; self.frame = frame
        self.vni = vni; self.endpoint = endpoint; self.fdb = fdb; self.action = action
    }

    public struct Outer: Codable, Equatable, Sendable {
        public var srcMac: String
        public var dstMac: String
        public var src: String
        public var dst: String
        public var srcPort: Int
        public var dstPort: Int
        public var vni: UInt32?
        public init(srcMac: String, dstMac: String, src: String, dst: String, srcPort: Int, dstPort: Int, vni: UInt32?) {
            self.srcMac = srcMac; self.dstMac = dstMac; self.src = src; self.dst = dst
            self.srcPort = srcPort; self.dstPort = dstPort; self.vni = vni
        }
    }

    public struct Frame: Codable, Equatable, Sendable {
        public var srcMac: String
        public var dstMac: String
        public var vlan: Int?
        /// "0x0800".
        public var ethertype: String
        /// ipv4, ipv6, arp, ... when known.
        public var ethertypeName: String?
        public var src: String?
        public var dst: String?
        /// tcp, udp, icmp, icmpv6, or the protocol number.
        public var proto: String?
        public var srcPort: Int?
        public var dstPort: Int?
        public init(srcMac: String, dstMac: String, vlan: Int?, ethertype: String, ethertypeName: String?, src: String? = nil,
                    dst: String? = nil, proto: String? = nil, srcPort: Int? = nil, dstPort: Int? = nil) {
            self.srcMac = srcMac; self.dstMac = dstMac; self.vlan = vlan; self.ethertype = ethertype; self.ethertypeName = ethertypeName
            self.src = src; self.dst = dst; self.proto = proto; self.srcPort = srcPort; self.dstPort = dstPort
        }
    }

    /// The FDB lookup: hit (to a remote, or a local port), miss (flooded), broadcast (a group destination:
    /// flooded without a lookup), single_port (a VNI with one local port: no lookup needed).
    public struct FDBResult: Codable, Equatable, Sendable {
        public var result: String
        public var remote: String?
        public var port: String?
        public var vlan: Int?
        public init(result: String, remote: String? = nil, port: String? = nil, vlan: Int? = nil) {
            self.result = result; self.remote = remote; self.port = port; self.vlan = vlan
        }
    }

    /// What became of it. `kind`: encapsulated (to `remote`), switched (to `port`), flooded (`destinations`),
    /// decapsulated (to `port`, or to `destinations` ports), punted (to the slow path), dropped (`drop`), none.
    /// `segments`: it was cut in that many first (`segmentation`: segmented or fragmented). `drop` also names the
    /// first reason when only some copies or segments were dropped (`drops` of them).
    public struct Action: Codable, Equatable, Sendable {
        public var kind: String
        public var remote: String?
        public var port: String?
        public var vlan: Int?
        public var destinations: Int?
        public var segmentation: String?
        public var segments: Int?
        public var drop: String?
        public var drops: Int?
        public init(kind: String, remote: String? = nil, port: String? = nil, vlan: Int? = nil, destinations: Int? = nil,
                    segmentation: String? = nil, segments: Int? = nil, drop: String? = nil, drops: Int? = nil) {
            self.kind = kind; self.remote = remote; self.port = port; self.vlan = vlan; self.destinations = destinations
            self.segmentation = segmentation; self.segments = segments; self.drop = drop; self.drops = drops
        }
    }
}

extension TracePacket.FDBResult {
    /// "hit: tunnel to 10.99.0.2", "hit: local port net_ring2 vlan 10", "miss -> flood", ...
    public var text: String {
        switch result {
        case "hit":
            if let remote { return "hit: tunnel to \(remote)" }
            return "hit: local port \(port ?? "?")" + (vlan.map { " vlan \($0)" } ?? "")
        case "miss": return "miss -> flood"
        case "broadcast": return "group destination -> flood (no lookup)"
        case "single_port": return "no lookup (the VNI has one local port)"
        default: return result
        }
    }
}

extension TracePacket.Action {
    /// "encapsulated to remote 10.99.0.2", "flooded to 3 destinations", "dropped: unknown_vni", ...
    public var text: String {
        let at = (port ?? "?") + (vlan.map { " vlan \($0)" } ?? "")
        var out: String
        switch kind {
        case "encapsulated": out = "encapsulated to remote \(remote ?? "?")"
        case "switched": out = "switched to port \(at)"
        case "flooded": out = "flooded to \(destinations ?? 0) destination" + (destinations == 1 ? "" : "s")
        case "decapsulated":
            out = port != nil ? "decapsulated to port \(at)" : "decapsulated to \(destinations ?? 0) ports (flooded)"
        case "punted": out = "punted to the slow path"
        case "dropped": return "dropped: \(drop ?? "?")" + ((drops ?? 1) > 1 ? " (\(drops!) buffers)" : "")
        default: out = "no outcome recorded"
        }
        if let segments, let segmentation {
            out = (segmentation == "fragmented" ? "fragmented into \(segments), " : "segmented into \(segments), ") + out
        }
        if let drop { out += " (\(drops ?? 1) dropped: \(drop))" }
        return out
    }
}

extension Render {
    /// One block per packet, as VPP's `show trace`.
    public static func trace(_ report: TraceReport) -> String {
        var out = ""
        for p in report.packets {
            out += "Packet \(p.index + 1): " + (p.lcore.map { "lcore \($0), " } ?? "") + "port \(p.port), \(p.length) bytes\n"
            if let o = p.outer {
                out += "  outer: \(o.srcMac) -> \(o.dstMac), \(o.src) -> \(o.dst) udp \(o.srcPort) -> \(o.dstPort)"
                    + (o.vni.map { ", vxlan vni \($0)" } ?? "") + "\n"
            }
            if let f = p.frame { out += "  \(p.outer != nil ? "inner" : "frame"): " + frameText(f) + "\n" }
            if let vni = p.vni { out += "  classify: vni \(vni)" + (p.endpoint.map { " (from \($0))" } ?? "") + "\n" }
            if let fdb = p.fdb { out += "  fdb: \(fdb.text)\n" }
            out += "  action: \(p.action.text)\n\n"
        }
        let port = report.port.map { " on port \($0)" } ?? ""
        switch report.state {
        case "complete": out += "\(report.packets.count) packet\(report.packets.count == 1 ? "" : "s") traced\(port)\n"
        case "timed_out":
            out += "timed out after \(String(format1: report.timeoutSeconds)) s: \(report.packets.count) of \(report.requested) packets traced\(port)\n"
        case "stopped": out += "stopped: \(report.packets.count) of \(report.requested) packets traced\(port)\n"
        default: out += "running: \(report.packets.count) of \(report.requested) packets traced\(port) so far\n"
        }
        return out
    }

    static func frameText(_ f: TracePacket.Frame) -> String {
        var s = "\(f.srcMac) -> \(f.dstMac)"
        if let vlan = f.vlan { s += ", vlan \(vlan)" }
        s += ", " + (f.ethertypeName ?? "ethertype \(f.ethertype)")
        if let src = f.src, let dst = f.dst { s += " \(src) -> \(dst)" }
        if let proto = f.proto {
            s += " \(proto)"
            if let sp = f.srcPort, let dp = f.dstPort { s += " \(sp) -> \(dp)" }
        }
        return s
    }
}
