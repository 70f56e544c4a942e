import Foundation

/// Writes classic pcap files (microsecond timestamps, Ethernet link type) for net_pcap to replay.
enum Pcap {
    static func write(_ frames: [[UInt8]], to path: String) throws {
        var data = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        u32(0xa1b2_c3d4); u16(2); u16(4); u32(0); u32(0); u32(65535); u32(1)
        for (i, f) in frames.enumerated() {
            u32(UInt32(i / 1_000_000)); u32(UInt32(i % 1_000_000)); u32(UInt32(f.count)); u32(UInt32(f.count))
            data.append(contentsOf: f)
        }
        try data.write(to: URL(fileURLWithPath: path))
    }
}
