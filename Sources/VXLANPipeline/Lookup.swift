import CDPDK
import PollMode
import VTEPConfig

/// Destination lookups: the per-core exact-match cache first, then one rte_hash bulk lookup for the misses.
extension VXLANProcessor {
    // MARK: - Lookups

    /// The FDB key words for (vni, the MAC at `mac`).
    @inlinable @inline(__always)
    static func fdbKey(vni: UInt32, _ mac: UnsafeMutableRawPointer) -> (UInt64, UInt64) {
        (UInt64(vni) | UInt64(mac.loadUnaligned(as: UInt32.self)) << 32, UInt64(mac.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
    }

    /// Destination lookup for packet i: the cached FDB target into `targets[i]`, or queued for the bulk lookup.
    @inlinable @inline(__always)
    func lookUpDestination(_ i: Int, _ w0: UInt64, _ w1: UInt64, into targets: UnsafeMutablePointer<Int32>) {
        let slot = fdbCache.slot(w0, w1)
        let cached = fdbCache.lookup(w0, w1, slot: slot)
        if cached.value >= 0 { targets[i] = cached.value; return }
        targets[i] = Self.lookup
        destinations.add(w0, w1, owner: i, slot: slot)
    }

    /// Whether a target read from the table can be used: a tunnel index or a local endpoint in range (a
    /// negative or out-of-range value counts as a miss, never as an index).
    @inlinable @inline(__always)
    func isUsable(_ target: Int32) -> Bool {
        UInt32(bitPattern: target) < view.tunnelLimit || UInt32(bitPattern: target &- FDBTarget.localBase) < view.endpointLimit
    }

    /// Resolves the queued destinations: hits get their target (and go into the cache), misses `flood`.
    /// The target comes with the key (the entry's data word), so a key that is found is complete.
    @inlinable @inline(__always)
    func resolveDestinations(into targets: UnsafeMutablePointer<Int32>) -> Int {
        let n = destinations.count
        if n == 0 { return 0 }
        var misses = 0
        var hits: UInt64 = 0
        _ = rte_hash_lookup_bulk_data(view.fdbHash, destinations.keyPointers, UInt32(n), &hits, destinations.data)
        for k in 0..<n {
            let owner = Int(destinations.owner[k])
            let data = destinations.data[k]
            let target = FDBData.target(data)
            if hits & (1 &<< UInt64(k)) != 0 && isUsable(target) {
                targets[owner] = target
                fdbCache.insert(destinations.word0(k), destinations.word1(k), slot: Int(destinations.slot[k]), value: target,
                                aux: FDBData.slot(data))
            } else {
                targets[owner] = Self.flood
                misses &+= 1
            }
        }
        destinations.count = 0
        return misses
    }
}
