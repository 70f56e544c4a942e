import ArgumentParser
import CDPDK
import Foundation
import PollMode
import VTEPConfig

/// vxlan-guest [EAL arguments] -- send|receive [options]
///
/// Plays a VM on the other end of a vhost-user socket: a virtio_user port (EAL `--vdev virtio_user0,path=SOCK`)
/// sends TCP the way a Linux guest with TSO does, or records what vxland delivers to the VM.
///
/// The TCP byte stream is deterministic so that a test can check what comes out of the tunnel: byte k of the
/// stream (k = 0 at the first payload byte of the first frame, counting across frames) is `(k * 7 + 3) & 0xFF`,
/// and the first byte has sequence number `--seq`.
struct VxlanGuest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vxlan-guest",
        abstract: "A VM's side of a vhost-user port (virtio_user): sends TCP with TSO metadata, or records frames.",
        usage: "vxlan-guest [EAL arguments] -- send|receive [options]",
        discussion: """
            Arguments before `--` go to DPDK's EAL, for instance `--no-pci --single-file-segments --file-prefix guest1 \
            --vdev virtio_user0,path=/run/vxland/vm1.sock` (hugepages are needed: the VM's memory is shared with the \
            vhost-user backend). Payload byte k of the TCP stream is (k * 7 + 3) & 0xFF.
            """,
        subcommands: [Send.self, Receive.self])
}

struct GuestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct PortOptions: ParsableArguments {
    @Option(name: .long, help: "DPDK port name (default: the only port EAL created).")
    var port: String?

    @Option(name: .long, help: "Seconds to wait for the vhost-user connection (link up).")
    var linkTimeout: Double = 10

    /// Starts EAL with the arguments before `--` and finds the port.
    func open() throws -> EthPort {
        try EAL.initialize(arguments: GuestMain.ealArguments)
        if let port { return try EthPort(reference: port) }
        let all = EthPort.all()
        guard all.count == 1 else {
            throw GuestError(all.isEmpty ? "no DPDK port: add --vdev virtio_user0,path=SOCKET to the EAL arguments (did the vhost-user socket exist?)"
                                         : "\(all.count) DPDK ports: choose one with --port")
        }
        return try EthPort(id: all[0])
    }

    func waitForLink(_ port: EthPort) throws {
        let deadline = Date().addingTimeInterval(linkTimeout)
        while !port.link.up {
            guard Date() < deadline else { throw GuestError("port \(port.name): link still down after \(linkTimeout) s (is the vhost-user side running?)") }
            usleep(10_000)
        }
    }
}

func printJSON(_ fields: [(String, Any)]) {
    let body = fields.map { key, value -> String in
        switch value {
        case let s as String: "\"\(key)\": \"\(s)\""
        case let b as Bool: "\"\(key)\": \(b)"
        default: "\"\(key)\": \(value)"
        }
    }
    print("{" + body.joined(separator: ", ") + "}")
    fflush(stdout)
}

// MARK: - send

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send TCP frames: with TSO metadata (the default), as MTU-sized frames, or with the checksum left to offload.")

    @OptionGroup var portOptions: PortOptions

    @Option(name: .long, help: "Frames (TSO) or bursts of segments (--no-tso, --partial-checksum) to send.")
    var count: Int = 1

    @Option(name: .long, help: "TCP payload bytes per frame.")
    var payload: Int = 64000

    @Option(name: .long, help: "TCP MSS: tso_segsz of a TSO frame, the segment size otherwise.")
    var mss: Int = 1448

    @Flag(name: .long, help: "IPv6 instead of IPv4.")
    var ipv6 = false

    @Flag(name: .long, help: "Send the payload as ordinary MSS-sized frames with a complete TCP checksum.")
    var noTSO = false

    @Flag(name: .long, help: "Send MSS-sized frames whose TCP checksum is left to the host (TX_TCP_CKSUM only).")
    var partialChecksum = false

    @Option(name: .long) var srcMAC = "02:00:00:00:42:01"
    @Option(name: .long) var dstMAC = "02:00:00:00:42:02"
    @Option(name: .long, help: "Source IP (default 192.168.42.1, or fd42::1 with --ipv6).") var srcIP: String?
    @Option(name: .long, help: "Destination IP (default 192.168.42.2, or fd42::2 with --ipv6).") var dstIP: String?
    @Option(name: .long) var sport: UInt16 = 40000
    @Option(name: .long) var dport: UInt16 = 5201
    @Option(name: .long, help: "Sequence number of the first payload byte.") var seq: UInt32 = 1000

    @Option(name: .long, help: "Seconds to keep the port open after sending, for the host to take the frames.")
    var linger: Double = 1

    @Option(name: .long, help: ArgumentHelp("""
        Throughput mode (TSO only): build --count frames (512 to 4096) once and send them round and round for this \
        many seconds, as fast as the ring takes them; prints the payload bytes the ring took and their rate in Gbit/s.
        """, valueName: "seconds"))
    var seconds: Double?

    func validate() throws {
        guard count >= 0 else { throw ValidationError("--count must not be negative") }
        guard payload >= 1, payload <= 65535 - 128 - 14 - 60 - 20 else { throw ValidationError("--payload must be 1 to 65313 bytes") }
        guard mss >= 64, mss <= 9000 else { throw ValidationError("--mss must be 64 to 9000") }
        guard !(noTSO && partialChecksum) else { throw ValidationError("give --no-tso or --partial-checksum, not both") }
        if let seconds {
            guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
            guard !noTSO && !partialChecksum else { throw ValidationError("--seconds sends TSO frames: not with --no-tso or --partial-checksum") }
            // The ring (256 descriptors) holds at most 256 frames: with twice that many one is always free to send.
            guard count >= 512, count <= 4096 else { throw ValidationError("--seconds needs --count 512 to 4096 (the frames sent round and round)") }
        }
        guard MACAddress(srcMAC) != nil, MACAddress(dstMAC) != nil else { throw ValidationError("--src-mac/--dst-mac: not a MAC address") }
        if ipv6 {
            guard IPv6Address(srcIP ?? "fd42::1") != nil, IPv6Address(dstIP ?? "fd42::2") != nil else { throw ValidationError("--src-ip/--dst-ip: not IPv6 addresses") }
        } else {
            guard IPv4Address(srcIP ?? "192.168.42.1") != nil, IPv4Address(dstIP ?? "192.168.42.2") != nil else { throw ValidationError("--src-ip/--dst-ip: not IPv4 addresses") }
        }
    }

    func run() throws {
        let port = try portOptions.open()
        let tso = !noTSO && !partialChecksum
        let wanted: UInt64 = vx_tx_offload_tcp_tso() | vx_tx_offload_tcp_cksum() | vx_tx_offload_multi_segs()
        if tso, port.capabilities.txOffloads & vx_tx_offload_tcp_tso() == 0 {
            throw GuestError("port \(port.name) does not offer TCP TSO (the vhost-user side did not offer HOST_TSO4/6: vhost tso: false?)")
        }
        if partialChecksum, port.capabilities.txOffloads & vx_tx_offload_tcp_cksum() == 0 {
            throw GuestError("port \(port.name) does not offer TCP checksum offload (VIRTIO_NET_F_CSUM)")
        }
        // 65535 bytes of data room: a whole 64 KB TSO frame fits in one mbuf.
        let txPool = try PacketPool(name: "guest_tx", count: max(255, count + 1), cacheSize: 0, dataRoom: 65535)
        let rxPool = try PacketPool(name: "guest_rx", count: 1023)
        var setup = PortSetup(queues: 1)
        setup.rxDescriptors = 256
        setup.txDescriptors = 256
        setup.wantedTxOffloads = wanted
        setup.promiscuous = false
        try port.configure(setup, pool: rxPool)
        try port.start()
        defer { port.close() }
        try portOptions.waitForLink(port)

        let builder = FrameBuilder(src: MACAddress(srcMAC)!.bytes, dst: MACAddress(dstMAC)!.bytes, ipv6: ipv6,
                                   srcIP: ipv6 ? IPv6Address(srcIP ?? "fd42::1")!.bytes : IPv4Address(srcIP ?? "192.168.42.1")!.bytes,
                                   dstIP: ipv6 ? IPv6Address(dstIP ?? "fd42::2")!.bytes : IPv4Address(dstIP ?? "192.168.42.2")!.bytes,
                                   sport: sport, dport: dport)
        var frames: [OpaquePointer] = []
        var offset = 0  // stream offset of the next payload byte
        for _ in 0..<count {
            if tso {
                frames.append(try builder.frame(pool: txPool, streamOffset: offset, seq: seq &+ UInt32(truncatingIfNeeded: offset),
                                                length: payload, mode: .tso(mss: mss)))
            } else {
                var done = 0
                while done < payload {
                    let length = min(mss, payload - done)
                    let at = offset + done
                    frames.append(try builder.frame(pool: txPool, streamOffset: at, seq: seq &+ UInt32(truncatingIfNeeded: at), length: length,
                                                    mode: partialChecksum ? .partialChecksum : .complete))
                    done += length
                }
            }
            offset += payload
        }

        // rte_eth_tx_prepare fills in what the offloads need (the pseudo-header sums); a frame it refuses is counted
        // as failed and the others go on.
        var all = frames.map { Optional($0) }
        var ready: [OpaquePointer] = []
        var prepareFailed = 0
        var next = 0
        while next < all.count {
            let n = min(256, all.count - next)
            let prepared = Int(all.withUnsafeMutableBufferPointer { rte_eth_tx_prepare(port.id, 0, $0.baseAddress! + next, UInt16(n)) })
            ready += all[next..<next + prepared].map { $0! }
            next += prepared
            if prepared < n {
                FileHandle.standardError.write(Data("vxlan-guest: rte_eth_tx_prepare refused frame \(next): \(String(cString: rte_strerror(vx_errno())))\n".utf8))
                vx_mbuf_free(all[next]!)
                prepareFailed += 1
                next += 1
            }
        }

        if let seconds {
            try sendForSeconds(seconds, port: port, frames: ready, failed: prepareFailed)
            return
        }

        var sent = 0
        var pending = ready[...]
        let deadline = Date().addingTimeInterval(max(5, portOptions.linkTimeout))
        while !pending.isEmpty, Date() < deadline {
            var burst = Array(pending.prefix(32)).map { Optional($0) }
            let n = UInt16(burst.count)
            let accepted = burst.withUnsafeMutableBufferPointer { rte_eth_tx_burst(port.id, 0, $0.baseAddress, n) }
            sent += Int(accepted)
            pending = pending.dropFirst(Int(accepted))
            if accepted < n { usleep(1000) }
        }
        let unsent = pending.count
        for m in pending { vx_mbuf_free(m) }
        if linger > 0 { usleep(UInt32(linger * 1_000_000)) }
        printJSON([("sent", sent), ("failed", prepareFailed + unsent), ("frames", frames.count), ("payload_bytes", count * payload),
                   ("mode", tso ? "tso" : partialChecksum ? "partial-checksum" : "complete"), ("mss", mss), ("ipv6", ipv6),
                   ("tx_offloads", TxOffloads(rawValue: port.enabledTxOffloads).description)])
        if prepareFailed + unsent > 0 { throw ExitCode(1) }
    }

    /// Throughput mode: the prepared frames go round and round, each one sent again once the driver has let go of
    /// it (the frame stays ours through an extra reference: the driver's free only drops that). virtio's transmit
    /// path folds the payload length out of a TSO frame's pseudo-header sum in place, so that field is put back
    /// before each send. A burst stops at a frame still in flight.
    func sendForSeconds(_ seconds: Double, port: EthPort, frames: [OpaquePointer], failed: Int) throws {
        guard !frames.isEmpty, failed == 0 else {
            for m in frames { vx_mbuf_free(m) }
            throw GuestError("rte_eth_tx_prepare refused \(failed) frame(s)")
        }
        let l4 = 14 + (ipv6 ? 40 : 20)
        let checksumAt = frames.map { UnsafeMutableRawPointer(vx_mbuf_data($0)) + l4 + 16 }
        let prepared = checksumAt.map { $0.load(as: UInt16.self) }
        var burst = [OpaquePointer?](repeating: nil, count: 32)
        var next = 0, sent = 0, bursts = 0, busy = 0
        let start = Date()
        let end = start.addingTimeInterval(seconds)
        var now = start
        while now < end {
            var n = 0
            while n < 32 {
                let m = frames[next]
                if vx_mbuf_refcnt(m) != 1 { busy += 1; break }
                checksumAt[next].storeBytes(of: prepared[next], as: UInt16.self)
                rte_mbuf_refcnt_update(m, 1)
                burst[n] = m
                n += 1
                next = next + 1 == frames.count ? 0 : next + 1
            }
            let accepted = n == 0 ? 0 : Int(burst.withUnsafeMutableBufferPointer { rte_eth_tx_burst(port.id, 0, $0.baseAddress, UInt16(n)) })
            for i in accepted..<n { rte_mbuf_refcnt_update(burst[i]!, -1) }
            next = (next - (n - accepted) + frames.count) % frames.count
            sent += accepted
            bursts += 1
            if bursts & 15 == 0 || accepted < n || n == 0 { now = Date() }
        }
        let elapsed = Date().timeIntervalSince(start)
        if linger > 0 { usleep(UInt32(linger * 1_000_000)) }
        for m in frames { vx_mbuf_free(m) }
        let bytes = sent * payload
        printJSON([("sent", sent), ("failed", 0), ("frames", frames.count), ("payload_bytes", bytes),
                   ("seconds", (elapsed * 1000).rounded() / 1000), ("gbps", (Double(bytes) * 8 / elapsed / 1e7).rounded() / 100),
                   ("in_flight_waits", busy), ("mode", "tso"), ("mss", mss), ("ipv6", ipv6),
                   ("tx_offloads", TxOffloads(rawValue: port.enabledTxOffloads).description)])
    }
}

/// Builds one Ethernet/IPv4-or-IPv6/TCP frame carrying stream bytes [streamOffset, streamOffset + length).
struct FrameBuilder {
    enum Mode { case tso(mss: Int), complete, partialChecksum }

    let src: [UInt8], dst: [UInt8]
    let ipv6: Bool
    let srcIP: [UInt8], dstIP: [UInt8]
    let sport: UInt16, dport: UInt16

    static func patternByte(_ k: Int) -> UInt8 { UInt8(truncatingIfNeeded: k &* 7 &+ 3) }

    func frame(pool: PacketPool, streamOffset: Int, seq: UInt32, length: Int, mode: Mode) throws -> OpaquePointer {
        let l2 = 14, l3 = ipv6 ? 40 : 20, l4 = 20
        let total = l2 + l3 + l4 + length
        guard let m = pool.allocate() else { throw GuestError("mbuf pool exhausted") }
        guard let data = vx_mbuf_append(m, UInt16(total)) else {
            vx_mbuf_free(m)
            throw GuestError("a \(total)-byte frame does not fit one mbuf")
        }
        let b = UnsafeMutableBufferPointer(start: data, count: total)
        func put16(_ v: UInt16, at i: Int) { b[i] = UInt8(v >> 8); b[i + 1] = UInt8(v & 0xff) }
        func put32(_ v: UInt32, at i: Int) { put16(UInt16(v >> 16), at: i); put16(UInt16(v & 0xffff), at: i + 2) }
        for i in 0..<6 { b[i] = dst[i]; b[6 + i] = src[i] }
        put16(ipv6 ? 0x86DD : 0x0800, at: 12)
        let ip = l2
        if ipv6 {
            put32(0x6000_0000, at: ip)
            put16(UInt16(l4 + length), at: ip + 4)
            b[ip + 6] = 6
            b[ip + 7] = 64
            for i in 0..<16 { b[ip + 8 + i] = srcIP[i]; b[ip + 24 + i] = dstIP[i] }
        } else {
            b[ip] = 0x45; b[ip + 1] = 0
            put16(UInt16(l3 + l4 + length), at: ip + 2)
            put16(UInt16(truncatingIfNeeded: streamOffset / 1000), at: ip + 4)
            put16(0x4000, at: ip + 6)  // DF
            b[ip + 8] = 64; b[ip + 9] = 6
            put16(0, at: ip + 10)
            for i in 0..<4 { b[ip + 12 + i] = srcIP[i]; b[ip + 16 + i] = dstIP[i] }
            put16(~Checksum.fold(Checksum.sum(UnsafeBufferPointer(rebasing: b[ip..<ip + 20]))), at: ip + 10)
        }
        let tcp = l2 + l3
        put16(sport, at: tcp); put16(dport, at: tcp + 2)
        put32(seq, at: tcp + 4)
        put32(1, at: tcp + 8)
        b[tcp + 12] = 0x50  // 20-byte header
        b[tcp + 13] = 0x18  // ACK, PSH
        put16(65535, at: tcp + 14)
        put16(0, at: tcp + 16)
        put16(0, at: tcp + 18)
        for k in 0..<length { b[tcp + l4 + k] = FrameBuilder.patternByte(streamOffset + k) }

        let ipFlag = ipv6 ? MbufFlag.txIPv6 : MbufFlag.txIPv4
        switch mode {
        case .tso(let mss):
            // rte_eth_tx_prepare puts the pseudo-header sum into the TCP checksum field.
            vx_mbuf_set_tx_offload(m, MbufFlag.txTCPSegmentation | ipFlag | MbufFlag.txTCPChecksum, 0, 0,
                                   UInt16(l2), UInt16(l3), UInt16(l4), UInt16(mss))
        case .partialChecksum:
            vx_mbuf_set_tx_offload(m, ipFlag | MbufFlag.txTCPChecksum, 0, 0, UInt16(l2), UInt16(l3), UInt16(l4), 0)
        case .complete:
            var sum = Checksum.sum(UnsafeBufferPointer(rebasing: b[tcp..<total]))
            sum += Checksum.sum(UnsafeBufferPointer(rebasing: b[(ipv6 ? ip + 8 : ip + 12)..<(ipv6 ? ip + 40 : ip + 20)]))
            sum += 6 + UInt32(l4 + length)
            var c = ~Checksum.fold(sum)
            if c == 0 { c = 0xFFFF }
            put16(c, at: tcp + 16)
        }
        return m
    }
}

enum Checksum {
    /// Ones'-complement sum of big-endian 16-bit words (an odd last byte padded with zero), unfolded.
    static func sum(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
        var s: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count { s &+= UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { s &+= UInt32(bytes[i]) << 8 }
        return s
    }

    static func fold(_ sum: UInt32) -> UInt16 {
        var s = sum
        while s > 0xFFFF { s = (s & 0xFFFF) + (s >> 16) }
        return UInt16(s)
    }
}

// MARK: - receive

struct Receive: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Receive for a while; write what arrives to a pcap file, or just count it.")

    @OptionGroup var portOptions: PortOptions

    @Option(name: .long, help: "Seconds to receive (after the link is up).")
    var seconds: Double = 5

    @Option(name: .long, help: "pcap file to write (Ethernet, microsecond timestamps).")
    var pcap: String?

    @Option(name: .long, help: "Stop once this many frames arrived.")
    var count: Int?

    @Option(name: .long, help: "Seconds to receive and discard first (until the host has seen the negotiated features).")
    var settle: Double = 0

    @Flag(name: .long, help: """
        Take large frames as a Linux guest with offloads does: negotiate GUEST_TSO4/6 and GUEST_CSUM (LRO and checksum \
        RX offloads); frames that arrive with the checksum left partial get it completed before they are written.
        """)
    var lro = false

    func run() throws {
        let port = try portOptions.open()
        let pool = try PacketPool(name: "guest_rx", count: 4095)
        var setup = PortSetup(queues: 1)
        setup.rxDescriptors = 256
        setup.txDescriptors = 256
        setup.wantedTxOffloads = vx_tx_offload_multi_segs()
        if lro { setup.wantedRxOffloads = vx_rx_offload_tcp_lro() | vx_rx_offload_tcp_cksum() | vx_rx_offload_udp_cksum() }
        setup.promiscuous = false
        try port.configure(setup, pool: pool)
        try port.start()
        defer { port.close() }
        try portOptions.waitForLink(port)

        var writer: PcapWriter?
        if let pcap { writer = try PcapWriter(path: pcap) }
        var received = 0, bytes = 0, segmented = 0, large = 0, completed = 0, largest = 0
        var burst = [OpaquePointer?](repeating: nil, count: 32)
        let settled = Date().addingTimeInterval(settle)
        while Date() < settled {
            let n = Int(burst.withUnsafeMutableBufferPointer { rte_eth_rx_burst(port.id, 0, $0.baseAddress, 32) })
            for i in 0..<n { vx_mbuf_free(burst[i]!) }
            if n == 0 { usleep(100) }
        }
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, count.map({ received < $0 }) ?? true {
            let n = Int(burst.withUnsafeMutableBufferPointer { rte_eth_rx_burst(port.id, 0, $0.baseAddress, 32) })
            if n == 0 { usleep(100); continue }
            for i in 0..<n {
                let m = burst[i]!
                var frame: [UInt8] = []
                frame.reserveCapacity(Int(vx_mbuf_pkt_len(m)))
                var segment: OpaquePointer? = m
                while let s = segment {
                    frame.append(contentsOf: UnsafeBufferPointer(start: vx_mbuf_data(s).assumingMemoryBound(to: UInt8.self), count: Int(vx_mbuf_data_len(s))))
                    segment = vx_mbuf_next(s)
                }
                if vx_mbuf_nb_segs(m) > 1 { segmented += 1 }
                let flags = vx_mbuf_ol_flags(m)
                if flags & MbufFlag.rxLRO != 0 { large += 1 }
                if flags & MbufFlag.rxL4ChecksumMask == MbufFlag.rxL4ChecksumNone, Self.completeTCPChecksum(&frame) { completed += 1 }
                largest = max(largest, frame.count)
                received += 1
                bytes += frame.count
                try writer?.write(frame)
                vx_mbuf_free(m)
            }
        }
        try writer?.close()
        printJSON([("received", received), ("bytes", bytes), ("multi_segment", segmented), ("lro", large),
                   ("checksums_completed", completed), ("largest", largest), ("pcap", pcap ?? "")])
    }

    /// Completes the TCP checksum of an untagged IPv4/IPv6 frame whose checksum field holds only the pseudo-header
    /// sum (virtio NEEDS_CSUM), as a guest forwarding it would. False for anything else.
    static func completeTCPChecksum(_ f: inout [UInt8]) -> Bool {
        guard f.count >= 54 else { return false }
        let type = Int(f[12]) << 8 | Int(f[13])
        let l4: Int, pseudo: [UInt8]
        if type == 0x0800 && f[23] == 6 {
            l4 = 14 + Int(f[14] & 0x0F) * 4
            let length = (Int(f[16]) << 8 | Int(f[17])) - (l4 - 14)
            pseudo = Array(f[26..<34]) + [0, 6, UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        } else if type == 0x86DD && f[20] == 6 {
            l4 = 54
            let length = Int(f[18]) << 8 | Int(f[19])
            pseudo = Array(f[22..<54]) + [0, 0, UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), 0, 0, 0, 6]
        } else {
            return false
        }
        guard f.count >= l4 + 20 else { return false }
        f[l4 + 16] = 0; f[l4 + 17] = 0
        let body = Array(f[l4...])
        let c = ~Checksum.fold(pseudo.withUnsafeBufferPointer { Checksum.sum($0) } &+ body.withUnsafeBufferPointer { Checksum.sum($0) })
        f[l4 + 16] = UInt8(c >> 8); f[l4 + 17] = UInt8(c & 0xFF)
        return true
    }
}

/// A classic pcap file written as frames arrive.
final class PcapWriter {
    private let handle: FileHandle

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw GuestError("cannot create \(path)")
        }
        self.handle = handle
        var header = Data()
        append(&header, UInt32(0xa1b2_c3d4)); append(&header, UInt16(2)); append(&header, UInt16(4))
        append(&header, UInt32(0)); append(&header, UInt32(0)); append(&header, UInt32(262_144)); append(&header, UInt32(1))
        handle.write(header)
    }

    private func append<T: FixedWidthInteger>(_ data: inout Data, _ v: T) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }

    func write(_ frame: [UInt8]) throws {
        var now = timeval()
        gettimeofday(&now, nil)
        var record = Data()
        append(&record, UInt32(truncatingIfNeeded: now.tv_sec)); append(&record, UInt32(truncatingIfNeeded: now.tv_usec))
        append(&record, UInt32(frame.count)); append(&record, UInt32(frame.count))
        record.append(contentsOf: frame)
        handle.write(record)
    }

    func close() throws { try handle.close() }
}

// MARK: - main

enum GuestMain {
    nonisolated(unsafe) static var ealArguments: [String] = ["vxlan-guest"]
}

let (eal, app) = EAL.splitArguments(CommandLine.arguments)
GuestMain.ealArguments = eal
var command: ParsableCommand
do {
    command = try VxlanGuest.parseAsRoot(app)
} catch {
    VxlanGuest.exit(withError: error)
}
do {
    try command.run()
    EAL.cleanup()
} catch {
    EAL.cleanup()
    VxlanGuest.exit(withError: error)
}
