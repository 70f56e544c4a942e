import ArgumentParser
import CDPDK
import DPDKTestSupport
import Foundation
import MallocInterposerSwift
import PollMode
import VTEPConfig
import VXLANDaemon
import VXLANPipeline

/// Encap and decap rate of one polling core, side by side with testpmd's io forwarding over the same vdevs:
/// net_pcap replaying crafted frames (infinite_rx=1) into the dataplane, net_null taking what it sends.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vxlan-bench",
        abstract: "Mpps per polling core for VXLAN encap/decap, against testpmd io forwarding on the same vdevs.")

    @Option(help: "Seconds measured per scenario (after one second of warm-up).") var seconds: Double = 5
    @Option(help: "Inner frame sizes in bytes, comma-separated.") var sizes: String = "64,1500"
    @Option(help: "testpmd binary.") var testpmd: String = "/usr/bin/dpdk-testpmd"
    @Flag(help: "Skip the testpmd floor.") var skipTestpmd = false
    @Flag(help: "Use 2 MiB hugepages (hugepages-setup.sh) instead of --no-huge, for both testpmd and vxland.") var hugepages = false
    @Option(help: "Distinct inner flows in the replayed traffic.") var flows: Int = 256
    @Flag(inversion: .prefixedNo, help: "Also measure over an IPv6 underlay (UDP checksum per packet).") var ipv6 = true
    @Option(help: "Measurements per scenario (testpmd too); the best is reported, as the least disturbed by other load.")
    var repeats: Int = 3
    @Option(help: """
        Which scenarios: standard (64 remote MACs, one VNI: every lookup hits the per-core caches), large (\(LargeTables.macs) \
        MACs over \(LargeTables.vnis) VNIs on a tagged access port, \(LargeTables.flows) inner flows: the caches miss), \
        segmentation (64 KB TCP frames from a VM: software segmentation and the hardware-TSO metadata path), or all.
        """)
    var scenario: ScenarioSet = .all

    enum ScenarioSet: String, ExpressibleByArgument { case standard, large, segmentation, all }

    func run() throws {
        let frameSizes = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !frameSizes.isEmpty, frameSizes.allSatisfy({ (60...9000).contains($0) }) else {
            throw ValidationError("--sizes takes frame sizes from 60 to 9000, got '\(sizes)'")
        }
        let work = NSTemporaryDirectory() + "vxlan-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let memory = hugepages ? ["-m", "1024"] : ["--no-huge", "-m", "2048"]

        var scenarios: [Scenario] = []
        for size in frameSizes where scenario != .segmentation {
            let standard: [Scenario.Kind] = scenario == .large ? [] : [.encap, .decap] + (ipv6 ? [.encap6, .decap6, .encap6Zero, .decap6Zero] : [])
            let large: [Scenario.Kind] = scenario == .standard ? [] : [.encapLarge, .decapLarge]
            for kind in standard + large {
                let path = "\(work)/\(kind)-\(size).pcap"
                let frames = (0..<(kind.isLarge ? LargeTables.flows : flows)).map { kind.frame(innerSize: size, flow: $0) }
                try Pcap.write(frames, to: path)
                scenarios.append(Scenario(kind: kind, innerSize: size, pcap: path, wireSize: frames[0].count))
            }
        }

        if !skipTestpmd {
            for i in scenarios.indices {
                for r in 0..<max(1, repeats) {
                    let rate = try TestpmdFloor.measure(binary: testpmd, pcap: scenarios[i].pcap, seconds: seconds,
                                                        memory: memory, tag: "\(getpid())\(i)_\(r)",
                                                        mbufs: scenarios[i].kind.isLarge ? LargeTables.mbufs : nil)
                    scenarios[i].testpmdMpps = max(scenarios[i].testpmdMpps ?? 0, rate)
                }
            }
        }

        try EAL.initialize(arguments: ["vxlan-bench", "-l", "0,1", "--no-pci", "--file-prefix", "vxbench\(getpid())",
                                       "--log-level", "*:error", "--no-telemetry"] + memory)
        defer { EAL.cleanup() }
        guard let worker = EAL.workerLcores.first else { throw ValidationError("needs two lcores (a control and a polling core)") }
        let interposed = MallocCounter.isActive
        for i in scenarios.indices {
            for r in 0..<max(1, repeats) { try scenarios[i].measureDataplane(on: worker, seconds: seconds, index: i * 100 + r) }
        }
        if !scenarios.isEmpty { report(scenarios, mallocCounted: interposed) }
        if scenario == .segmentation || scenario == .all {
            var runs = SegmentationScenario.Kind.allCases.map { SegmentationScenario(kind: $0) }
            for i in runs.indices {
                for r in 0..<max(1, repeats) { try runs[i].measure(on: worker, seconds: seconds, index: 9000 + i * 100 + r) }
            }
            print("\n64 KB TCP frames (\(SegmentationScenario.payload) B payload) from a VM, one polling core, underlay MTU 1500, "
                  + "best of \(max(1, repeats)) x \(String(format: "%.0f", seconds)) s")
            var rows = [["scenario", "frames/s", "ns/frame", "segments/frame", "payload Gbit/s"]]
            for r in runs {
                rows.append([r.kind.rawValue, String(format: "%.0f", r.framesPerSecond), String(format: "%.0f", r.nanosecondsPerFrame),
                             r.kind == .hardware ? "(NIC)" : String(format: "%.1f", r.segmentsPerFrame), String(format: "%.1f", r.payloadGbps)])
            }
            let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
            for r in rows { print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")) }
        }
    }

    func report(_ scenarios: [Scenario], mallocCounted: Bool) {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last?
            .trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        print("\nvxlan-bench: one polling core, \(EAL.version), \(cpu), \(hugepages ? "2 MiB hugepages" : "--no-huge"), "
              + "\(flows) flows, best of \(max(1, repeats)) x \(String(format: "%.0f", seconds)) s per scenario (testpmd likewise)")
        print("input: net_pcap infinite_rx=1 replay; output: net_null (no-rx=1); encap traffic to \(Scenario.Kind.remoteMACs) remote MACs")
        print("large: \(LargeTables.macs) static remote MACs over \(LargeTables.vnis) VNIs (VLANs of one tagged access port), "
              + "\(LargeTables.flows) frames, each its own inner flow, (VNI, MAC) pair and source port\n")
        var rows = [["scenario", "inner B", "wire B in", "vxland Mpps", "testpmd io Mpps", "ratio", "Gbit/s out", "allocs/pkt"]]
        for s in scenarios {
            let ratio = s.testpmdMpps.map { $0 > 0 ? String(format: "%.2f", s.mpps / $0) : "-" } ?? "-"
            rows.append([s.kind.rawValue, String(s.innerSize), String(s.wireSize), String(format: "%.2f", s.mpps),
                         s.testpmdMpps.map { String(format: "%.2f", $0) } ?? "-", ratio,
                         String(format: "%.2f", s.mpps * Double(s.outSize) * 8 / 1000),
                         mallocCounted ? String(format: "%.6f", s.allocationsPerPacket) : "n/a (no LD_PRELOAD)"])
        }
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max()! }
        for r in rows { print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")) }
    }
}

struct Scenario {
    enum Kind: String {
        case encap, decap, encap6, decap6
        /// Over IPv6 with zero UDP checksums (`udp6_zero_checksum: true`): no checksum sent, none verified.
        case encap6Zero = "encap6-zero", decap6Zero = "decap6-zero"
        /// Large tables: the per-core exact-match caches miss (see LargeTables).
        case encapLarge = "encap-large", decapLarge = "decap-large"
        var isLarge: Bool { self == .encapLarge || self == .decapLarge }
        static let vmMAC = "02:00:00:00:42:01", remoteVMMAC = "02:00:00:00:42:02"
        /// Remote VMs the encap traffic is spread over, each with a static FDB entry.
        static let remoteMACs = 64
        static func remoteMAC(_ i: Int) -> String { String(format: "02:00:00:01:%02x:%02x", i >> 8, i & 0xff) }

        func frame(innerSize: Int, flow: Int) -> [UInt8] {
            switch self {
            case .encap:
                // Consecutive frames go to different remote VMs: the lookup path is measured, not one hot entry.
                return Frames.innerUDP(dst: Kind.remoteMAC(flow % Kind.remoteMACs), src: Kind.vmMAC, sport: 1024 + flow,
                                       dport: 5201, size: innerSize)
            case .encap6, .encap6Zero:
                return Kind.encap.frame(innerSize: innerSize, flow: flow)
            case .decap:
                let inner = Frames.innerUDP(dst: Kind.vmMAC, src: Kind.remoteVMMAC, srcIP: "192.168.42.2", dstIP: "192.168.42.1",
                                            sport: 1024 + flow, dport: 5201, size: innerSize)
                return Frames.vxlanPacket(sport: 49152 + flow, inner: inner)
            case .decap6:
                let inner = Frames.innerUDP(dst: Kind.vmMAC, src: Kind.remoteVMMAC, srcIP: "192.168.42.2", dstIP: "192.168.42.1",
                                            sport: 1024 + flow, dport: 5201, size: innerSize)
                return Frames.vxlanPacket6(outerSrc: "02:00:00:00:00:02", inner: inner)
            case .decap6Zero:
                let inner = Frames.innerUDP(dst: Kind.vmMAC, src: Kind.remoteVMMAC, srcIP: "192.168.42.2", dstIP: "192.168.42.1",
                                            sport: 1024 + flow, dport: 5201, size: innerSize)
                return Frames.vxlanPacket6(outerSrc: "02:00:00:00:00:02", inner: inner, checksum: 0)
            case .encapLarge:
                // A tagged frame of the flow's VLAN (VNI) to one of that VNI's remote MACs, from the VNI's VM.
                let (segment, mac) = LargeTables.slot(flow)
                let inner = Frames.innerUDP(dst: LargeTables.remoteMAC(segment, mac), src: Kind.vmMAC, sport: 1024 + flow % 60000,
                                            dport: 5201 + flow / 60000, size: innerSize)
                return Array(inner[0..<12]) + [0x81, 0x00] + Frames.be16(LargeTables.vlan(segment)) + Array(inner[12...])
            case .decapLarge:
                // From one of the VNI's remote MACs (a static entry: the source check finds it, nothing moves) to the VM.
                let (segment, mac) = LargeTables.slot(flow)
                let inner = Frames.innerUDP(dst: Kind.vmMAC, src: LargeTables.remoteMAC(segment, mac), srcIP: "192.168.42.2",
                                            dstIP: "192.168.42.1", sport: 1024 + flow % 60000, dport: 5201 + flow / 60000, size: innerSize)
                return Frames.vxlanPacket(sport: 49152 + flow % 16384, vni: LargeTables.vni(segment), inner: inner)
            }
        }
    }

    let kind: Kind
    let innerSize: Int
    let pcap: String
    let wireSize: Int
    var testpmdMpps: Double?
    var mpps = 0.0
    var allocationsPerPacket = 0.0
    var isEncap: Bool { kind == .encap || kind == .encap6 || kind == .encap6Zero || kind == .encapLarge }
    var outSize: Int {
        switch kind {
        case .encap, .encapLarge: return innerSize + 50
        case .encap6, .encap6Zero: return innerSize + 70
        case .decap, .decap6, .decap6Zero: return innerSize
        case .decapLarge: return innerSize + 4      // the VLAN tag restored
        }
    }

    mutating func measureDataplane(on lcore: UInt32, seconds: Double, index: Int) throws {
        let pcapName = "net_pcap_b\(index)", nullName = "net_null_b\(index)"
        try VirtualDevice.create(pcapName, arguments: "rx_pcap=\(pcap),infinite_rx=1")
        try VirtualDevice.create(nullName, arguments: "no-rx=1")
        defer { VirtualDevice.remove(pcapName); VirtualDevice.remove(nullName) }
        let (underlay, access) = isEncap ? (nullName, pcapName) : (pcapName, nullName)
        let zero = kind == .encap6Zero || kind == .decap6Zero
        let remote = kind == .encap6 || kind == .decap6 || zero ? "\"fd00::2\"" : "10.99.0.2"
        var config = kind.isLarge ? try LargeTables.configuration() : try ConfigParser.parse("""
            underlay: { port: \(underlay), ip: 10.99.0.1/24, ip6: "fd00::1/64", mac: "02:00:00:00:00:01", mtu: 9000\(zero ? ", udp6_zero_checksum: true" : "") }
            access: [ { port: \(access), vni: 42 } ]
            vnis: [ { vni: 42, flood: [\(remote)] } ]
            fdb: [\((0..<Kind.remoteMACs).map { "{ vni: 42, mac: \"\(Kind.remoteMAC($0))\", remote: \(remote) }" }.joined(separator: ", "))]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" }, { ip: "fd00::2", mac: "02:00:00:00:00:02" } ]
            """)
        if kind.isLarge { config.underlay.port = underlay; config.access[0].port = access }
        let dataplane = try Dataplane(configuration: config, lcores: [lcore])
        try dataplane.startPorts()
        dataplane.startSlowPath()        // learning and ageing run as in production
        try dataplane.launch()
        let counter = isEncap ? "encapsulated" : "decapsulated"
        func processed() -> UInt64 { dataplane.statsReport().totals.pipeline[counter] ?? 0 }
        usleep(1_000_000)
        // Only the polling core runs inside the window: this thread samples (and allocates) outside it.
        let start = processed(), t0 = Date()
        MallocCounter.start()
        usleep(UInt32(seconds * 1_000_000))
        let mallocs = MallocCounter.stop()
        let end = processed(), elapsed = Date().timeIntervalSince(t0)
        let drops = dataplane.statsReport().totals.dropsTotal
        dataplane.stop()
        precondition(drops == 0, "benchmark traffic was dropped (\(drops)): the scenario is wrong")
        let rate = Double(end - start) / elapsed / 1e6
        if rate > mpps { mpps = rate }
        allocationsPerPacket = max(allocationsPerPacket, Double(mallocs) / Double(max(1, end - start)))
        FileHandle.standardError.write("\(kind.rawValue) \(innerSize) B: \(String(format: "%.2f", mpps)) Mpps, \(mallocs) allocations in the window\n".data(using: .utf8)!)
    }
}

/// The large-table scenario: 100,000 static remote MACs, 100 in each of 1,000 VNIs, the VNIs mapped from
/// VLANs 1...1000 of one tagged access port, all behind one remote VTEP; 65,536 frames in the replay, each
/// its own inner flow and (VNI, MAC) pair, interleaved over the VNIs. Far more keys than a per-core exact-match
/// cache holds, so most lookups go to rte_hash (and its buckets to memory).
enum LargeTables {
    static let vnis = 1000, macsPerVNI = 100, flows = 65536
    static var macs: Int { vnis * macsPerVNI }
    /// net_pcap with infinite_rx keeps every replayed frame in an mbuf of the port's pool.
    static let mbufs = 2 * flows + 16383
    static func vni(_ segment: Int) -> Int { 1000 + segment }
    static func vlan(_ segment: Int) -> Int { 1 + segment }
    static func remoteMAC(_ segment: Int, _ mac: Int) -> String {
        let i = segment * macsPerVNI + mac
        return String(format: "02:01:%02x:%02x:%02x:%02x", i >> 24 & 0xff, i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff)
    }
    /// Consecutive flows go to consecutive VNIs, and each VNI's flows spread over its MACs.
    static func slot(_ flow: Int) -> (segment: Int, mac: Int) { (flow % vnis, (flow / vnis) % macsPerVNI) }

    nonisolated(unsafe) private static var parsed: VTEPConfiguration?
    /// Parsed once (ports are placeholders the caller replaces).
    static func configuration() throws -> VTEPConfiguration {
        if let parsed { return parsed }
        var y = """
            underlay: { port: underlay, ip: 10.99.0.1/24, mac: "02:00:00:00:00:01", mtu: 9000 }
            access: [ { port: access, vlans: [\((0..<vnis).map { "{ vlan: \(vlan($0)), vni: \(vni($0)) }" }.joined(separator: ", "))] } ]
            vnis: [\((0..<vnis).map { "{ vni: \(vni($0)), flood: [10.99.0.2] }" }.joined(separator: ", "))]
            neighbors: [ { ip: 10.99.0.2, mac: "02:00:00:00:00:02" } ]
            resources: { mbufs: \(mbufs), fdb_entries: \(2 * macs) }
            fdb:

            """
        for s in 0..<vnis { for m in 0..<macsPerVNI { y += "  - { vni: \(vni(s)), mac: \"\(remoteMAC(s, m))\", remote: 10.99.0.2 }\n" } }
        let c = try ConfigParser.parse(y)
        parsed = c
        return c
    }
}

/// Counts heap allocations process-wide between start and stop, when malloc-interposer is preloaded.
enum MallocCounter {
    static var isActive: Bool {
        MallocInterposerSwift.initialize()
        MallocInterposerSwift.hook()
        // Through the Swift runtime: LLVM may delete a bare malloc/free pair.
        let p = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
        withExtendedLifetime(p) { p.deallocate() }
        MallocInterposerSwift.unhook()
        return MallocInterposerSwift.getStatistics().mallocCount > 0
    }
    static func start() { MallocInterposerSwift.initialize(); MallocInterposerSwift.hook() }
    static func stop() -> Int {
        MallocInterposerSwift.unhook()
        return MallocInterposerSwift.getStatistics().mallocCount
    }
}

/// testpmd io forwarding from the same pcap replay to net_null on one forwarding core: the floor.
enum TestpmdFloor {
    static func measure(binary: String, pcap: String, seconds: Double, memory: [String], tag: String, mbufs: Int? = nil) throws -> Double {
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("no testpmd at \(binary) (apt-get install dpdk)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-l", "0,1", "--no-pci", "--file-prefix", "vxbench-tp\(tag)", "--log-level", "*:error"] + memory + [
            "--vdev", "net_pcap0,rx_pcap=\(pcap),infinite_rx=1", "--vdev", "net_null0,no-rx=1",
            "--", "--forward-mode=io", "--nb-cores=1", "--auto-start", "--stats-period=1", "--rxq=1", "--txq=1"]
            + (mbufs.map { ["--total-num-mbufs=\($0)"] } ?? [])
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        let output = LockedText()
        pipe.fileHandleForReading.readabilityHandler = { output.append($0.availableData) }
        try process.run()
        // testpmd prints one block per second; wait for start-up plus `seconds` steady samples (first is partial).
        let wanted = Int(seconds.rounded(.up)) + 1
        let deadline = Date().addingTimeInterval(seconds + 30)
        var rates: [Double] = []
        while Date() < deadline {
            Thread.sleep(forTimeInterval: 0.25)
            rates = portZeroRates(output.text)
            if rates.count >= wanted { break }
        }
        process.interrupt()
        process.waitUntilExit()
        pipe.fileHandleForReading.readabilityHandler = nil
        try? FileManager.default.removeItem(atPath: "/var/run/dpdk/vxbench-tp\(tag)")
        guard rates.count >= 2 else { throw ValidationError("testpmd reported no rate; output:\n\(output.text.suffix(2000))") }
        let steady = Array(rates.dropFirst()).sorted()
        return steady[steady.count / 2] / 1e6
    }

    /// Each period prints port 0 (the pcap, RX) then port 1 (net_null); port 0's non-zero Rx-pps values.
    static func portZeroRates(_ text: String) -> [Double] {
        text.split(separator: "\n").filter { $0.contains("Rx-pps:") }
            .compactMap { $0.split(whereSeparator: { $0 == " " }).dropFirst().first.flatMap { Double($0) } }
            .filter { $0 > 0 }
    }
}

final class LockedText: @unchecked Sendable {
    private var data = Data()
    private let lock = NSLock()
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}

// Allocation counting needs malloc-interposer preloaded: re-run ourselves with LD_PRELOAD set once.
let interposer = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    .appendingPathComponent("libMallocInterposerSwift.so").path
if ProcessInfo.processInfo.environment["VXLAN_BENCH_CHILD"] == nil, FileManager.default.fileExists(atPath: interposer) {
    setenv("VXLAN_BENCH_CHILD", "1", 1)
    setenv("LD_PRELOAD", interposer, 1)
    let argv = CommandLine.arguments.map { strdup($0) } + [nil]
    execv("/proc/self/exe", argv)
}
unsetenv("LD_PRELOAD")   // not for testpmd
Bench.main()
