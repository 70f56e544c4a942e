/// Renderings of `show vnis` and of change answers.
extension Render {
    public static func vnis(_ report: VNIsReport) -> String {
        var rows = [["VNI", "PORTS", "FLOOD", "LEARNING", "LEARNED", "ENCAP PKTS", "ENCAP BYTES", "DECAP PKTS", "DECAP BYTES", "DROPS"]]
        for v in report.vnis {
            let learned = v.maxLearned > 0 ? "\(v.learned)/\(v.maxLearned)" : String(v.learned)
            rows.append([String(v.vni), v.ports.isEmpty ? "-" : v.ports.joined(separator: ","),
                         v.flood.isEmpty ? "-" : v.flood.joined(separator: ","),
                         v.learning ? "on, \(v.ageingSeconds)s" : "off", learned,
                         String(v.counters["encap_packets"] ?? 0), String(v.counters["encap_bytes"] ?? 0),
                         String(v.counters["decap_packets"] ?? 0), String(v.counters["decap_bytes"] ?? 0),
                         String(v.counters["drops"] ?? 0)])
        }
        return table(rows) + "\(report.vnis.count) VNI(s) of at most \(report.capacity)\n"
    }

    public static func changes(_ report: ChangeReport) -> String {
        if report.changes.isEmpty { return "nothing to change\n" }
        let verb = report.applied ? "done" : "would do (dry run)"
        return "\(verb):\n" + report.changes.map { "  \($0)\n" }.joined()
    }
}
