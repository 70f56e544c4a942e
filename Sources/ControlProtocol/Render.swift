/// Human-readable renderings of the reports, as `vxlanctl` prints them without `--json`.
public enum Render {
    public static func ports(_ report: PortsReport) -> String {
        var rows = [["#", "PORT", "ID", "DRIVER", "ROLE", "VNI", "MAC", "IP", "LINK", "QUEUES", "TX PATH", "TX OFFLOADS", "GRO", "RX PKTS", "TX PKTS", "RX MISSED"]]
        for p in report.ports {
            let vni = p.vni.map(String.init)
                ?? p.vlans.map { $0.sorted { Int($0.key)! < Int($1.key)! }.map { "vlan \($0.key):\($0.value)" }.joined(separator: ",") } ?? "-"
            rows.append([String(p.index), p.name, String(p.portId), p.driver, p.role, vni, p.mac, p.ip ?? "-",
                         p.linkUp ? (p.speedMbps > 0 ? "up \(p.speedMbps)M" : "up") : "down", String(p.queues),
                         p.txPath ?? "-", p.txOffloads.isEmpty ? "none" : p.txOffloads.joined(separator: ","),
                         p.gro.map { $0 ? "on" : "off" } ?? "-",
                         String(p.hardware["rx_packets"] ?? 0), String(p.hardware["tx_packets"] ?? 0),
                         String(p.hardware["rx_missed"] ?? 0)])
        }
        var out = table(rows)
        // Tap ports: what the kernel agreed to hand over whole, and the frames that crossed that way.
        for p in report.ports {
            guard let tap = p.tap else { continue }
            let c = tap.counters
            func n(_ key: String) -> UInt64 { c[key] ?? 0 }
            let drops = c.filter { $0.key.hasPrefix("rx_bad_") || $0.key.hasPrefix("rx_gso_") && $0.key != "rx_gso_frames" && $0.key != "rx_gso_segments" || $0.key == "rx_unsupported_gso" }
                .filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            out += "\ntap \(tap.interface) (port \(p.name)): kernel offloads \(tap.offloads.isEmpty ? "none" : tap.offloads.joined(separator: ","))\n"
            out += "  rx \(n("rx_frames")) frames, \(n("rx_gso_frames")) GSO (\(n("rx_tunnel_gso_frames")) tunnel, \(n("rx_gso_segments")) segments); "
            out += "tx \(n("tx_frames")) frames, \(n("tx_gso_frames")) GSO (\(n("tx_tunnel_gso_frames")) tunnel, \(n("tx_gso_segments")) segments)\n"
            out += "  dropped: \(drops.isEmpty ? "none" : drops.joined(separator: ", "))"
            out += n("interface_gone") > 0 ? "; the interface is gone\n" : "\n"
        }
        return out
    }

    public static func stats(_ report: StatsReport, perCore: Bool = false) -> String {
        var out = "uptime \(String(format1: report.uptimeSeconds))s, \(report.cores.count) polling core(s)"
        if let pools = report.pools, !pools.isEmpty {
            out += ", mbufs in use: " + pools.map { "\($0.name) \($0.inUse)/\($0.capacity)" }.joined(separator: ", ")
        } else if let pool = report.mempool {
            out += ", mbufs \(pool.inUse) in use of \(pool.capacity)"
        }
        out += "\n\n"
        let portKeys = ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_dropped", "tx_prepare_rejected", "gro_merged_segments"]
        func portTable(_ ports: [StatsReport.PortCounters]) -> String {
            var rows = [["PORT"] + portKeys.map { $0.uppercased().replacingUnderscores() }]
            for p in ports { rows.append([p.port] + portKeys.map { String(p.counters[$0] ?? 0) }) }
            return table(rows)
        }
        func counterLines(_ title: String, _ values: [String: UInt64], skipZero: Bool) -> String {
            let lines = values.sorted { $0.key < $1.key }.filter { !skipZero || $0.value != 0 }
            if lines.isEmpty { return "\(title): none\n" }
            let width = lines.map(\.key.count).max() ?? 0
            return "\(title):\n" + lines.map { "  \($0.key.padding(width))  \($0.value)\n" }.joined()
        }
        out += portTable(report.totals.ports) + "\n"
        out += counterLines("pipeline", report.totals.pipeline, skipZero: false)
        out += counterLines("drops (\(report.totals.dropsTotal) total)", report.totals.drops, skipZero: true)
        if perCore {
            for core in report.cores {
                out += "\nlcore \(core.lcore):\n" + portTable(core.ports)
                out += counterLines("pipeline", core.pipeline, skipZero: false)
                out += counterLines("drops", core.drops, skipZero: true)
            }
        }
        return out
    }

    public static func neighbors(_ report: NeighborsReport) -> String {
        var rows = [["IP", "MAC", "STATE", "AGE", "PROBES", "TUNNELS"]]
        for n in report.neighbors {
            rows.append([n.ip, n.mac ?? "-", n.state, n.ageSeconds.map { String(format1: $0) + "s" } ?? "-", String(n.probes), String(n.tunnels)])
        }
        let counters = report.counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return table(rows) + "\n" + counters + "\n"
    }

    public static func fdb(_ report: FDBReport) -> String {
        var rows = [["VNI", "MAC", "DESTINATION", "TYPE", "AGE"]]
        for e in report.entries {
            rows.append([String(e.vni), e.mac, e.destination, e.type, e.ageSeconds.map { "\($0)s" } ?? "-"])
        }
        var out = table(rows) + "\n"
        for s in report.segments {
            out += "vni \(s.vni): learning \(s.learning ? "on" : "off"), ageing \(s.ageingSeconds)s, \(s.learned) learned"
                + (s.maxLearned > 0 ? " of at most \(s.maxLearned) (limit reached \(s.limitReached) times)" : "") + "\n"
        }
        if let next = report.next {
            out += "\(report.entries.count) of \(report.total.map(String.init) ?? "?") entries shown; continue with --after \(next)\n"
        }
        return out
    }

    /// Left-aligned columns separated by two spaces.
    public static func table(_ rows: [[String]]) -> String {
        guard let header = rows.first else { return "" }
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(widths[i]) }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    func replacingUnderscores() -> String { split(separator: "_").joined(separator: " ") }
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
