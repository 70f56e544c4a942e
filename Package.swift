// swift-tools-version:5.10
import Foundation
import PackageDescription

// SwiftPM cannot parse Debian's libdpdk.pc (it carries `-include rte_config.h` and `-march`), so the
// manifest asks pkg-config itself and hands the include paths and link flags to the compiler and linker.
// The shim header includes rte_config.h itself; -march=corei7 matches how Debian builds DPDK.
func pkgConfig(_ arguments: [String]) -> [String] {
    for tool in ["/usr/bin/pkg-config", "/usr/local/bin/pkg-config"] where FileManager.default.isExecutableFile(atPath: tool) {
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { continue }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { continue }
        return String(decoding: data, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
    }
    return []
}

let dpdkIncludes = pkgConfig(["--cflags-only-I", "libdpdk"]).filter { $0.hasPrefix("-I") }
let dpdkCFlags = (dpdkIncludes.isEmpty ? ["-I/usr/include/dpdk", "-I/usr/include/x86_64-linux-gnu/dpdk"] : dpdkIncludes)
    + ["-march=corei7"]
let dpdkSwiftFlags = dpdkCFlags.flatMap { ["-Xcc", $0] }
// --no-as-needed: PMDs are plugins, but the libraries we call directly must stay linked.
let dpdkLinkFlags = pkgConfig(["--libs", "libdpdk"]).filter { $0.hasPrefix("-l") || $0.hasPrefix("-L") }
    .flatMap { ["-Xlinker", $0] }
// The vdev bus (rte_vdev_init: hot-plugging virtual devices) and the vhost PMD (whether a guest negotiated TSO)
// are driver libraries pkg-config does not list.
let dpdkLinker: [LinkerSetting] = [.unsafeFlags(["-Xlinker", "--no-as-needed"] + dpdkLinkFlags
    + ["-Xlinker", "-lrte_bus_vdev", "-Xlinker", "-lrte_net_vhost", "-Xlinker", "-lnuma"])]
let dpdkSwift: [SwiftSetting] = [.unsafeFlags(dpdkSwiftFlags)]
let fastSwift: [SwiftSetting] = dpdkSwift + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "swift-vxlan-dataplane",
    products: [
        .executable(name: "vxland", targets: ["vxland"]),
        .executable(name: "vxlanctl", targets: ["ControlCLI"]),
        .executable(name: "vxlan-bench", targets: ["VXLANBench"]),
        .executable(name: "vxlan-guest", targets: ["GuestTraffic"]),
        // libFuzzer targets (scripts/fuzz.sh); built plainly they replay a corpus.
        .executable(name: "config-fuzzer", targets: ["ConfigFuzzer"]),
        .executable(name: "control-fuzzer", targets: ["ControlFuzzer"]),
        .executable(name: "packet-fuzzer", targets: ["PacketFuzzer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.11.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.0"),
        .package(url: "https://github.com/ordo-one/malloc-interposer.git", from: "1.6.0"),
    ],
    targets: [
        // DPDK's C API, with static inline accessors for what Swift cannot import (struct rte_mbuf).
        .systemLibrary(name: "CDPDK", path: "Sources/CDPDK"),
        // vxland's signal handlers, in C so that they can be installed at load time (see vx_signals.h).
        .target(name: "CSignals"),
        // EAL, ports (offload negotiation, UDP tunnel announcement), mempools, lcores, TX staging, per-core port
        // counters and DPDK's mbuf flag values. Knows no VXLAN packet format and no tunnel policy.
        .target(name: "PollMode", dependencies: ["CDPDK", "CTapPort"], swiftSettings: fastSwift, linkerSettings: dpdkLinker),
        // vxland's own kernel port: a tap with the virtio-net header (GSO, partial checksums, UDP-tunnel GSO),
        // translated to and from DPDK's mbuf offload flags. In C beside DPDK's headers; polled by PollMode.
        .target(name: "CTapPort", cSettings: [.unsafeFlags(dpdkCFlags + ["-O3"])]),
        // The configuration model and its YAML/JSON parser. No DPDK.
        .target(name: "VTEPConfig", dependencies: [.product(name: "Yams", package: "Yams")]),
        // Packet code: header templates, parse, classify, encap, decap, forwarding tables.
        .target(name: "VXLANPipeline", dependencies: ["CDPDK", "PollMode", "VTEPConfig"],
                swiftSettings: fastSwift, linkerSettings: dpdkLinker),
        // The control socket's wire format, shared by the daemon and vxlanctl.
        .target(name: "ControlProtocol"),
        // The daemon as a library: start-up from argv, polling cores, control server, clean stop.
        .target(name: "VXLANDaemon",
                dependencies: ["PollMode", "VXLANPipeline", "VTEPConfig", "ControlProtocol", "CSignals",
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: fastSwift, linkerSettings: dpdkLinker),
        .executableTarget(name: "vxland", dependencies: ["VXLANDaemon", "PollMode", "ControlProtocol",
                                                     .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                                     .product(name: "Logging", package: "swift-log")], swiftSettings: dpdkSwift, linkerSettings: dpdkLinker),
        .executableTarget(name: "ControlCLI",
                          dependencies: ["ControlProtocol", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "VXLANBench",
                          dependencies: ["VXLANDaemon", "PollMode", "VXLANPipeline", "VTEPConfig", "ControlProtocol", "DPDKTestSupport",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "MallocInterposerSwift", package: "malloc-interposer")],
                          swiftSettings: fastSwift, linkerSettings: dpdkLinker),
        // A VM's side of a vhost-user port (virtio_user) for tests: TCP with TSO metadata out, a pcap of what comes in.
        .executableTarget(name: "GuestTraffic",
                          dependencies: ["PollMode", "CDPDK", "VTEPConfig", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: dpdkSwift, linkerSettings: dpdkLinker),
        // Shared by the DPDK tests: one process-wide EAL, net_ring ports, an independent frame builder, and a
        // harness that runs the pipeline on ring ports.
        .target(name: "DPDKTestSupport", dependencies: ["CDPDK", "CTapPort", "PollMode", "VXLANPipeline", "VTEPConfig"], path: "Sources/DPDKTestSupport",
                swiftSettings: dpdkSwift,
                // rte_eth_from_rings lives in the net_ring PMD, which is otherwise loaded as a plugin.
                linkerSettings: dpdkLinker + [.unsafeFlags(["-Xlinker", "-lrte_net_ring"])]),
        .testTarget(name: "VTEPConfigTests", dependencies: ["VTEPConfig"]),
        .testTarget(name: "VXLANPipelineTests", dependencies: ["VXLANPipeline", "PollMode", "VTEPConfig", "CDPDK", "CTapPort", "DPDKTestSupport"],
                    swiftSettings: dpdkSwift, linkerSettings: dpdkLinker),
        .testTarget(name: "VXLANDaemonTests", dependencies: ["VXLANDaemon", "ControlProtocol", "PollMode", "VXLANPipeline", "VTEPConfig", "CDPDK", "DPDKTestSupport",
                                                          .product(name: "Logging", package: "swift-log")],
                    swiftSettings: dpdkSwift, linkerSettings: dpdkLinker),
        .testTarget(name: "ControlProtocolTests", dependencies: ["ControlProtocol"]),
        // What each fuzzer checks per input, shared by the libFuzzer executables and the corpus replay test.
        .target(name: "FuzzTargets", dependencies: ["ControlProtocol", "VTEPConfig"]),
        .executableTarget(name: "ConfigFuzzer", dependencies: ["FuzzTargets"]),
        .executableTarget(name: "ControlFuzzer", dependencies: ["FuzzTargets"]),
        .executableTarget(name: "PacketFuzzer", dependencies: ["DPDKTestSupport", "FuzzTargets"], swiftSettings: dpdkSwift, linkerSettings: dpdkLinker),
        .testTarget(name: "FuzzCorpusTests", dependencies: ["FuzzTargets"]),
    ]
)
