import ControlProtocol
import Foundation
import VTEPConfig
import VXLANPipeline

/// `vxlanctl trace`: `trace.start` arms a packet trace (the polling cores record the next `count` packets, from
/// `port` or any) and answers at once; `trace.show` answers with what was recorded and ends the trace once every
/// packet was recorded or its `timeout` passed; `trace.stop` ends it now. The control socket has one thread, so
/// no method waits for traffic: the client asks again (PacketTrace.swift has the cores' side).
enum TraceMethods {
    static let parameters: [String: [String]] = [
        "trace.start": ["count", "port", "timeout"],
        "trace.show": ["id"],
        "trace.stop": ["id"],
    ]
    static let defaultTimeout = 10.0
    static let maxTimeout = 3600.0

    /// Answers `request` if it is one of these methods; nil otherwise.
    static func handle(_ request: ControlRequest, dataplane: Dataplane) throws -> Data? {
        guard let allowed = parameters[request.method] else { return nil }
        let p = Params(request.params, method: request.method, allowed: allowed)
        try p.checkKnown()
        let control = dataplane.trace
        let now = monotonicNow()
        switch request.method {
        case "trace.start":
            let countText = try p.required("count")
            guard let count = Int(countText), (1...PacketTraceControl.maxPackets).contains(count) else {
                throw p.failure("count: '\(countText)' is not a packet count (1-\(PacketTraceControl.maxPackets))")
            }
            var port: Int? = nil
            if let name = p.values["port"] {
                let names = dataplane.ports.map(\.name)
                guard let index = names.firstIndex(of: name) else {
                    throw p.failure("port: no port named '\(name)'; ports: \(names.joined(separator: ", "))")
                }
                port = index
            }
            var timeout = defaultTimeout
            if let text = p.values["timeout"] {
                guard let t = Double(text), t > 0, t <= maxTimeout else {
                    throw p.failure("timeout: '\(text)' is not a number of seconds (more than 0, at most \(Int(maxTimeout)))")
                }
                timeout = t
            }
            // A trace whose time is up and that nobody collected (its client went away) makes room.
            if let active = control.active, now >= active.deadline { _ = control.finish() }
            guard let trace = control.start(count: count, port: port, now: now, timeout: timeout) else {
                let active = control.active
                let what = active.map { a in
                    "trace \(a.session) of \(a.requested) packet\(a.requested == 1 ? "" : "s")"
                        + (a.port.map { " on port \(portName($0, dataplane))" } ?? "")
                        + ", ending within \(Int((a.deadline - now).rounded(.up))) s"
                } ?? "a trace"
                throw ControlFailure(code: "trace_running", message: "a trace is already running (\(what)); wait for it or stop it (vxlanctl trace stop)")
            }
            return try JSONEncoder.control.encode(report(trace, state: "running", packets: [], now: now, dataplane: dataplane))
        case "trace.show", "trace.stop":
            guard let active = control.active else { throw ControlFailure(code: "not_running", message: "no trace is running") }
            if let text = p.values["id"], UInt64(text) != active.session {
                throw ControlFailure(code: "not_running", message: "trace \(text) is not running (trace \(active.session) is)")
            }
            let done = control.published(session: active.session) >= active.requested
            if request.method == "trace.show" && !done && now < active.deadline {
                return try JSONEncoder.control.encode(report(active, state: "running", packets: [], now: now, dataplane: dataplane))
            }
            guard let (trace, packets) = control.finish() else { throw ControlFailure(code: "not_running", message: "no trace is running") }
            let state = request.method == "trace.stop" ? "stopped" : packets.count >= trace.requested ? "complete" : "timed_out"
            return try JSONEncoder.control.encode(report(trace, state: state, packets: packets, now: now, dataplane: dataplane))
        default:
            return nil
        }
    }

    static func portName(_ index: Int, _ dataplane: Dataplane) -> String {
        index >= 0 && index < dataplane.ports.count ? dataplane.ports[index].name : "#\(index)"
    }

    static func report(_ trace: PacketTraceControl.ActiveTrace, state: String, packets: [TracedPacket], now: Double,
                       dataplane: Dataplane) -> TraceReport {
        let udpPort = Int(dataplane.configuration.underlay.udpPort)
        return TraceReport(id: Int(trace.session), state: state, requested: trace.requested,
                           captured: state == "running" ? dataplane.trace.published(session: trace.session) : packets.count,
                           port: trace.port.map { portName($0, dataplane) },
                           timeoutSeconds: trace.deadline - trace.started, elapsedSeconds: ((now - trace.started) * 1000).rounded() / 1000,
                           packets: packets.map { packet($0, udpPort: udpPort) { portName($0, dataplane) } })
    }

    /// One record as the report shows it: headers decoded from the captured bytes, ports by name.
    static func packet(_ p: TracedPacket, udpPort: Int, portName: (Int) -> String) -> TracePacket {
        let r = p.record
        func at(_ port: Int32, _ vlan: UInt16) -> String { portName(Int(port)) + (vlan == 0 ? "" : " vlan \(vlan)") }
        var outer: TracePacket.Outer? = nil
        var frame: TracePacket.Frame? = nil
        if r.direction == .underlay, let (o, inner) = TraceDecoder.vxlan(p.bytes, udpPort: udpPort) {
            outer = o
            frame = inner
        } else {
            frame = TraceDecoder.frame(p.bytes, at: 0)
        }
        var fdb: TracePacket.FDBResult? = nil
        switch r.lookup {
        case .none: break
        case .hit:
            fdb = r.target < FDBTarget.localBase
                ? .init(result: "hit", remote: r.targetRemote.address.description)
                : .init(result: "hit", port: portName(Int(r.targetPort)), vlan: r.targetVLAN == 0 ? nil : Int(r.targetVLAN))
        case .miss: fdb = .init(result: "miss")
        case .broadcast: fdb = .init(result: "broadcast")
        case .singlePort: fdb = .init(result: "single_port")
        }
        var action = TracePacket.Action(kind: "none")
        switch r.action {
        case .none: break
        case .encapsulated: action = .init(kind: "encapsulated", remote: r.remote.address.description)
        case .switched: action = .init(kind: "switched", port: portName(Int(r.actionPort)), vlan: r.actionVLAN == 0 ? nil : Int(r.actionVLAN))
        case .flooded: action = .init(kind: "flooded", destinations: Int(r.copies))
        case .decapsulated:
            action = .init(kind: "decapsulated", port: portName(Int(r.actionPort)), vlan: r.actionVLAN == 0 ? nil : Int(r.actionVLAN))
        case .decapsulatedToAll: action = .init(kind: "decapsulated", destinations: Int(r.copies))
        case .punted: action = .init(kind: "punted")
        case .dropped: action = .init(kind: "dropped")
        }
        if let reason = r.drop {
            action.drop = reason.name
            action.drops = Int(r.drops)
        }
        if r.segmentation != .none {
            action.segmentation = r.segmentation == .segmented ? "segmented" : "fragmented"
            action.segments = Int(r.segments)
        }
        return TracePacket(index: p.index, lcore: r.lcore == UInt32.max ? nil : Int(r.lcore), port: portName(Int(r.port)),
                           length: Int(r.length), outer: outer, frame: frame, vni: r.vniSlot >= 0 ? r.vni : nil,
                           endpoint: r.direction == .access && r.endpoint >= 0 ? at(r.endpointPort, r.endpointVLAN) : nil,
                           fdb: fdb, action: action)
    }
}

/// The headers of a traced packet's first bytes, as far as they were captured.
enum TraceDecoder {
    static func be16(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) << 8 | Int(b[o + 1]) }
    static func mac(_ b: [UInt8], _ o: Int) -> String { MACAddress(bytes: Array(b[o..<o + 6]))!.description }

    /// The network layer at `l3` (of ethertype `type`): addresses, protocol and its ports.
    static func network(_ b: [UInt8], type: Int, at l3: Int) -> (src: String, dst: String, proto: Int, l4: Int, fragment: Bool)? {
        if type == 0x0800, b.count >= l3 + 20, b[l3] >> 4 == 4 {
            let src = IPv4Address(UInt32(b[l3 + 12]) << 24 | UInt32(b[l3 + 13]) << 16 | UInt32(b[l3 + 14]) << 8 | UInt32(b[l3 + 15]))
            let dst = IPv4Address(UInt32(b[l3 + 16]) << 24 | UInt32(b[l3 + 17]) << 16 | UInt32(b[l3 + 18]) << 8 | UInt32(b[l3 + 19]))
            return (src.description, dst.description, Int(b[l3 + 9]), l3 + Int(b[l3] & 0x0F) * 4, be16(b, l3 + 6) & 0x1FFF != 0)
        }
        if type == 0x86DD, b.count >= l3 + 40, b[l3] >> 4 == 6 {
            let src = IPv6Address(bytes: Array(b[l3 + 8..<l3 + 24]))!, dst = IPv6Address(bytes: Array(b[l3 + 24..<l3 + 40]))!
            return (src.description, dst.description, Int(b[l3 + 6]), l3 + 40, false)
        }
        return nil
    }

    static let etherTypes = [0x0800: "ipv4", 0x86DD: "ipv6", 0x0806: "arp", 0x88CC: "lldp"]
    static let protocols = [6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"]

    /// An Ethernet frame at `o`: MACs, VLAN, ethertype, and the IP addresses and ports when present.
    static func frame(_ b: [UInt8], at o: Int) -> TracePacket.Frame? {
        guard b.count >= o + 14 else { return nil }
        var type = be16(b, o + 12), l3 = o + 14
        var vlan: Int? = nil
        if type == 0x8100 && b.count >= o + 18 {
            vlan = be16(b, o + 14) & 0x0FFF
            type = be16(b, o + 16)
            l3 = o + 18
        }
        var f = TracePacket.Frame(srcMac: mac(b, o + 6), dstMac: mac(b, o), vlan: vlan, ethertype: "0x" + hex4(type),
                                  ethertypeName: etherTypes[type])
        if let n = network(b, type: type, at: l3) {
            f.src = n.src; f.dst = n.dst
            f.proto = protocols[n.proto] ?? "proto \(n.proto)"
            if (n.proto == 6 || n.proto == 17) && !n.fragment && b.count >= n.l4 + 4 {
                f.srcPort = be16(b, n.l4); f.dstPort = be16(b, n.l4 + 2)
            }
        }
        return f
    }

    /// VXLAN to `udpPort` over IPv4 or IPv6: the outer headers and the inner frame.
    static func vxlan(_ b: [UInt8], udpPort: Int) -> (TracePacket.Outer, TracePacket.Frame?)? {
        guard b.count >= 14 else { return nil }
        let type = be16(b, 12)
        guard let n = network(b, type: type, at: 14), n.proto == 17, !n.fragment, b.count >= n.l4 + 16,
              be16(b, n.l4 + 2) == udpPort else { return nil }
        let vxlan = n.l4 + 8
        let vni = b[vxlan] & 0x08 != 0 ? UInt32(b[vxlan + 4]) << 16 | UInt32(b[vxlan + 5]) << 8 | UInt32(b[vxlan + 6]) : nil
        let outer = TracePacket.Outer(srcMac: mac(b, 6), dstMac: mac(b, 0), src: n.src, dst: n.dst,
                                      srcPort: be16(b, n.l4), dstPort: be16(b, n.l4 + 2), vni: vni)
        return (outer, frame(b, at: vxlan + 8))
    }

    static func hex4(_ v: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}
