import CDPDK
import PollMode
import VTEPConfig

/// Source learning on the fast path: a source MAC is checked against the FDB (cache, then rte_hash in bulk);
/// a known one refreshes its last-seen stamp, a new or moved one is reported once to the slow path, which
/// alone writes the table (SlowPathChannel.swift).
extension VXLANProcessor {

    /// Source learning for packet i seen behind `expected` (local port target, or a tunnel whose remote is
    /// `remote`): refreshes a known entry, or queues the MAC for a bulk check.
    @inlinable @inline(__always)
    func checkSource(_ i: Int, _ w0: UInt64, _ w1: UInt64, expected: Int32, now: UInt32) {
        if w0 >> 32 == 0 && w1 == 0 { return }                 // 00:00:00:00:00:00 is never learned
        let slot = fdbCache.slot(w0, w1)
        let cached = fdbCache.lookup(w0, w1, slot: slot)
        if cached.value == Self.learnPending { return }
        if cached.value >= 0 && matches(cached.value, expected: expected, packet: i) {
            refresh(slot: cached.aux, now: now)
            return
        }
        sources.add(w0, w1, owner: i, slot: slot)
    }

    /// Whether a source's FDB target is where packet i says it is: its ingress endpoint (`expected`), or for a
    /// decapsulated packet (expected -1) a tunnel to the packet's outer source address. `target` is usable.
    @inlinable @inline(__always)
    func matches(_ target: Int32, expected: Int32, packet i: Int) -> Bool {
        if expected >= 0 { return target == expected }
        if UInt32(bitPattern: target) >= view.tunnelLimit { return false }
        let t = Int(target)
        if outerIsIPv6[i] != 0 {
            return view.tunnelIsIPv6[t] != 0 && view.tunnelRemote6[2 &* t] == outerSource6[2 &* i] && view.tunnelRemote6[2 &* t &+ 1] == outerSource6[2 &* i &+ 1]
        }
        return view.tunnelIsIPv6[t] == 0 && view.tunnelRemote[t] == outerSource[i]
    }

    @inlinable @inline(__always)
    func refresh(slot: Int32, now: UInt32) {
        // Written at most once a second per entry, so the line is rarely shared between cores.
        if UInt32(bitPattern: slot) < view.stampLimit && view.fdbLastSeen[Int(slot)] != now { view.fdbLastSeen[Int(slot)] = now }
    }

    /// Checks the queued sources in bulk; reports new or moved ones to the slow path.
    /// - Parameter local: true for access frames (expected behind their ingress endpoint), false for decapsulated
    ///   ones (expected behind a tunnel to their outer source).
    @inlinable @inline(__always)
    func resolveSources(expected local: Int32, now: UInt32) {
        let n = sources.count
        if n == 0 { return }
        var hits: UInt64 = 0
        _ = rte_hash_lookup_bulk_data(view.fdbHash, sources.keyPointers, UInt32(n), &hits, sources.data)
        for k in 0..<n {
            let owner = Int(sources.owner[k])
            let expected = local >= 0 ? FDBTarget.localBase &+ ingress[owner] : -1
            let data = sources.data[k]
            let target = FDBData.target(data)
            if hits & (1 &<< UInt64(k)) != 0 && isUsable(target) && matches(target, expected: expected, packet: owner) {
                let slot = FDBData.slot(data)
                fdbCache.insert(sources.word0(k), sources.word1(k), slot: Int(sources.slot[k]), value: target, aux: slot)
                refresh(slot: slot, now: now)
                continue
            }
            // Several packets of a burst may carry the same new source: report it once.
            if fdbCache.lookup(sources.word0(k), sources.word1(k), slot: Int(sources.slot[k])).value == Self.learnPending { continue }
            report(sources.word0(k), sources.word1(k), expected: expected, packet: owner, slot: Int(sources.slot[k]))
        }
        sources.count = 0
    }

    @inline(never) @usableFromInline
    func report(_ w0: UInt64, _ w1: UInt64, expected: Int32, packet i: Int, slot: Int) {
        guard let rings = slowPath else { return }
        let event = expected >= 0
            ? LearnEvent.encode(key0: w0, key1: w1, kind: LearnEvent.local, value: UInt32(expected - FDBTarget.localBase),
                                v6: (UInt64(view.endpointEpoch[Int(expected - FDBTarget.localBase)]), 0))
            : outerIsIPv6[i] != 0
                ? LearnEvent.encode(key0: w0, key1: w1, kind: LearnEvent.remote6, value: 0, v6: (outerSource6[2 * i], outerSource6[2 * i + 1]))
                : LearnEvent.encode(key0: w0, key1: w1, kind: LearnEvent.remote, value: outerSource[i])
        if rings.report(event) {
            count(.learnEvents)
            fdbCache.insert(w0, w1, slot: slot, value: Self.learnPending)
        } else {
            count(.learnQueueFull)
        }
    }
}
