import CDPDK
import ControlProtocol
import Foundation

/// vxland's counters in DPDK's telemetry, next to ethdev's: `dpdk-telemetry.py -f PREFIX`, then `/vxland/stats`
/// (pipeline counters and drops by reason, summed over cores), `/vxland/ports` (per port), `/vxland/cores`
/// (per polling core), `/vxland/vnis` (per VNI). The callbacks run on DPDK's telemetry thread and read the same per-core counters the
/// control socket reads; DPDK 22.11 cannot unregister a command, so after the dataplane stops they answer empty.
enum Telemetry {
    static let lock = NSLock()
    static let vniLimit = 64
    nonisolated(unsafe) static var dataplane: Dataplane?
    nonisolated(unsafe) private static var registered = false

    static func attach(_ d: Dataplane) {
        lock.lock(); defer { lock.unlock() }
        dataplane = d
        guard !registered else { return }
        registered = true
        _ = rte_telemetry_register_cmd("/vxland/stats", { _, _, d in Telemetry.answer(d) { report, out in
            Telemetry.add(report.totals.pipeline, to: out)
            Telemetry.add(report.totals.drops.mapKeys { "drop_\($0)" }, to: out)
        } }, "vxland pipeline counters and drops by reason, all polling cores. No parameters")
        _ = rte_telemetry_register_cmd("/vxland/ports", { _, _, d in Telemetry.answer(d) { report, out in
            for p in report.totals.ports { Telemetry.nested(p.port, p.counters, in: out) }
        } }, "vxland per-port counters, all polling cores. No parameters")
        _ = rte_telemetry_register_cmd("/vxland/cores", { _, _, d in Telemetry.answer(d) { report, out in
            let cycles = Telemetry.dataplane?.coresReport()
            for (i, c) in report.cores.enumerated() {
                var values = c.pipeline.merging(c.drops.mapKeys { "drop_\($0)" }) { a, _ in a }
                var text: [String: String] = [:]
                if let cycles, i < cycles.cores.count { Telemetry.cycles(cycles.cores[i], tscHz: cycles.tscHz, into: &values, &text) }
                Telemetry.nested("lcore\(c.lcore)", values, text: text, in: out)
            }
        } }, "vxland counters per polling core, with its busy and idle TSC cycles (as vxlanctl show cores). No parameters")
        registerVNIs()
    }

    /// `/vxland/vnis`: per VNI its counters (packets and bytes each way, drops) and learned MACs.
    static func registerVNIs() {
        _ = rte_telemetry_register_cmd("/vxland/vnis", { _, params, d in
            guard let d else { return -1 }
            rte_tel_data_start_dict(d)
            Telemetry.lock.lock(); defer { Telemetry.lock.unlock() }
            // DPDK's answers hold a limited number of entries (and 16 KB): one VNI with a parameter, else the first
            // `vniLimit` VNIs (`vxlanctl show vnis` lists every one).
            var one: UInt32? = nil
            if let params, let text = Optional(String(cString: params)), !text.isEmpty {
                guard let v = UInt32(text) else { return -1 }
                one = v
            }
            for v in (Telemetry.dataplane?.vnisReport(vni: one).vnis ?? []).prefix(Telemetry.vniLimit) {
                var values = v.counters
                values["learned"] = UInt64(v.learned)
                Telemetry.nested("vni\(v.vni)", values, in: d)
            }
            return 0
        }, "vxland per-VNI counters (encap/decap packets and bytes, drops, learned MACs). Parameters: a VNI, or none for the first 64")
    }

    static func detach() {
        lock.lock(); defer { lock.unlock() }
        dataplane = nil
    }

    private static func answer(_ d: OpaquePointer?, _ fill: (StatsReport, OpaquePointer) -> Void) -> Int32 {
        guard let d else { return -1 }
        rte_tel_data_start_dict(d)
        lock.lock(); defer { lock.unlock() }
        if let report = dataplane?.statsReport() { fill(report, d) }
        return 0
    }

    private static func add(_ values: [String: UInt64], to d: OpaquePointer) {
        for (name, value) in values.sorted(by: { $0.key < $1.key }) { _ = rte_tel_data_add_dict_u64(d, name, value) }
    }

    /// A core's cycle accounting (`show.cores`). DPDK 22.11's telemetry has no floating-point values: the busy share
    /// goes as text, cycles per packet rounded to an integer.
    private static func cycles(_ c: CoresReport.Core, tscHz: UInt64, into values: inout [String: UInt64], _ text: inout [String: String]) {
        values["busy_cycles"] = c.busyCycles
        values["idle_cycles"] = c.idleCycles
        values["rounds"] = c.rounds
        values["idle_rounds"] = c.idleRounds
        values["packets"] = c.packets
        values["sleeps"] = c.sleeps
        values["slept_cycles"] = c.sleptCycles
        values["tsc_hz"] = tscHz
        if let perPacket = c.cyclesPerPacket { values["cycles_per_packet"] = UInt64(perPacket.rounded()) }
        text["busy_share"] = String(format: "%.4f", c.busyShare)
    }

    static func nested(_ name: String, _ values: [String: UInt64], text: [String: String] = [:], in d: OpaquePointer) {
        guard let inner = rte_tel_data_alloc() else { return }
        rte_tel_data_start_dict(inner)
        add(values, to: inner)
        for (key, value) in text.sorted(by: { $0.key < $1.key }) { _ = rte_tel_data_add_dict_string(inner, key, value) }
        if rte_tel_data_add_dict_container(d, name, inner, 0) != 0 { rte_tel_data_free(inner) }
    }
}

extension Dictionary where Key == String {
    func mapKeys(_ f: (String) -> String) -> [String: Value] { Dictionary(uniqueKeysWithValues: map { (f($0.key), $0.value) }) }
}
