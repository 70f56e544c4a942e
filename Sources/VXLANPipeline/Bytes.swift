// Unaligned network-order loads and stores on packet memory. Everything here inlines to a mov and a bswap.

@inlinable @inline(__always)
func load16(_ p: UnsafeMutableRawPointer, _ offset: Int) -> UInt16 {
    UInt16(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

@inlinable @inline(__always)
func load32(_ p: UnsafeMutableRawPointer, _ offset: Int) -> UInt32 {
    UInt32(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
}

@inlinable @inline(__always)
func store16(_ p: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt16) {
    p.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
}

@inlinable @inline(__always)
func store32(_ p: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt32) {
    p.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
}

/// Folds a 32-bit ones'-complement sum to 16 bits.
@inlinable @inline(__always)
func foldChecksum(_ sum: UInt32) -> UInt16 {
    var s = (sum & 0xFFFF) &+ (sum >> 16)
    s = (s & 0xFFFF) &+ (s >> 16)
    return UInt16(truncatingIfNeeded: s)
}
