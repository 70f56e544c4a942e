import CDPDK
import PollMode

/// Receive offload towards VMs that take large frames (vhost-user guests that negotiated TSO and partial
/// checksums): decapsulated TCP/IPv4 segments of one flow within a burst are merged by DPDK's rte_gro into one
/// frame, and handed to the port with segmentation metadata (`TX_TCP_SEG`, `tso_segsz` = the segments' size),
/// which vhost-user turns into a virtio GSO header; the guest's stack then sees one 64 KB segment instead of 45.
/// Only runs of mergeable segments (pure ACK with payload, as rte_gro requires) go through rte_gro, and a run
/// ends before a segment that rte_gro would file under another key for the same connection (a new ACK number):
/// whatever else is in the burst keeps its place, so no connection's segments are reordered. TCP/IPv6 passes
/// DPDK 22.11's rte_gro has no TCP/IPv6: that case is written here (`Merge6`), with the rules of Linux's
/// ipv6_gro_receive and tcp_gro_receive: same addresses, flow label, hop limit and ports, no extension headers,
/// ACK only, the same ACK number and TCP options, contiguous sequence numbers, every segment the size of the
/// first but a shorter last one, which ends the merge.
extension VXLANProcessor {
    /// The port a decapsulated frame would go to alone, untagged, when that port takes large frames; else -1.
    @inlinable @inline(__always)
    func largeFramePort(vniSlot s: Int32, target: Int32) -> Int {
        var endpoint = -1
        if target >= FDBTarget.localBase && view.endpointVNISlot[Int(target &- FDBTarget.localBase)] == s {
            endpoint = Int(target &- FDBTarget.localBase)
        } else {
            let entry = view.vniBlock(Int(s))
            if entry.accessCount == 1 { endpoint = Int(entry.access(0)) }
        }
        guard endpoint >= 0, view.endpointVLAN[endpoint] == 0 else { return -1 }
        let port = Int(view.endpointPort[endpoint])
        return view.portTakesLargeFrames[port] != 0 ? port : -1
    }

    /// Keeps a decapsulated frame for `port`'s merge at the end of the burst.
    @inlinable @inline(__always)
    func stageForCoalescing(_ m: OpaquePointer, port: Int) {
        coalesceFrames[coalesceCount] = m
        coalescePorts[coalesceCount] = Int32(port)
        coalesceCount &+= 1
    }

    /// Merges and sends what `stageForCoalescing` kept, port by port, in arrival order.
    @inline(never) @usableFromInline
    func flushCoalesced(tx: TxStage) {
        var done = 0
        while done < coalesceCount {
            // One port at a time (a burst mostly carries one VM's traffic): take its frames in order.
            let port = coalescePorts[done]
            var run = 0
            var merge6 = Merge6()
            for i in done..<coalesceCount where coalescePorts[i] == port && coalesceFrames[i] != nil {
                let m = coalesceFrames[i].unsafelyUnwrapped
                coalesceFrames[i] = nil
                if isMergeable(m) {
                    finish6(&merge6, port: Int(port), tx: tx)
                    // rte_gro keys flows by addresses, ports and the ACK number: a segment of a connection already
                    // in the run with another ACK would come out before that connection's earlier ones. Send the
                    // run first.
                    if conflictsWithRun(m, run) { mergeAndSend(run, port: Int(port), tx: tx); run = 0 }
                    coalesceRun[run] = m; run &+= 1
                } else if isMergeable6(m) {
                    mergeAndSend(run, port: Int(port), tx: tx); run = 0
                    if !append6(m, to: &merge6) {
                        finish6(&merge6, port: Int(port), tx: tx)
                        merge6 = Merge6(head: m)
                    }
                } else {
                    mergeAndSend(run, port: Int(port), tx: tx); run = 0
                    finish6(&merge6, port: Int(port), tx: tx)
                    tx.push(m, to: Int(port))
                    count(.decapsulated)
                }
            }
            mergeAndSend(run, port: Int(port), tx: tx)
            finish6(&merge6, port: Int(port), tx: tx)
            while done < coalesceCount && coalesceFrames[done] == nil { done &+= 1 }
        }
        coalesceCount = 0
    }

    /// TCP/IPv4 with payload and only ACK set: what rte_gro merges (anything else would come out after it).
    /// Ethernet padding is trimmed first (rte_gro would count it as payload). Leaves the payload length in
    /// `tso_segsz`, which rte_gro does not touch: after merging, a frame longer than that was merged, and that is
    /// its segment size.
    @usableFromInline
    func isMergeable(_ m: OpaquePointer) -> Bool {
        let ptype = vx_mbuf_classify(m)
        guard vx_ptype_is_ipv4_tcp(ptype) != 0 else { return false }
        let l3 = Int(vx_mbuf_l2_len(m)), l4 = l3 &+ Int(vx_mbuf_l3_len(m))
        guard Int(vx_mbuf_data_len(m)) >= l4 &+ 20 else { return false }
        let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
        let ipEnd = l3 &+ Int(load16(f, l3 &+ 2))
        let length = Int(vx_mbuf_pkt_len(m))
        guard ipEnd <= length else { return false }
        if ipEnd < length && vx_mbuf_trim(m, UInt16(truncatingIfNeeded: length &- ipEnd)) != 0 { return false }
        let payload = ipEnd &- l4 &- Int(vx_mbuf_l4_len(m))
        guard f.load(fromByteOffset: l4 &+ 13, as: UInt8.self) == 0x10, payload > 0 else { return false }
        // The merged frame leaves with a partial checksum the guest completes: only segments whose own checksum is
        // right may go into it (as Linux's GRO), or a segment damaged on the way would become valid data.
        let l4Total = ipEnd &- l4
        let sum = UInt32(rawChecksum(f + (l3 &+ 12), length: 8)) &+ UInt32(UInt16(6) << 8)
            &+ UInt32(UInt16(truncatingIfNeeded: l4Total).byteSwapped) &+ UInt32(L4Checksum.chainSum(m, from: l4, length: l4Total))
        guard foldChecksum(sum) == 0xFFFF else { return false }
        vx_mbuf_set_tso_segsz(m, UInt16(truncatingIfNeeded: payload))
        return true
    }

    /// Whether `m` belongs to a connection already in the run under another ACK number (or other MACs).
    @usableFromInline
    func conflictsWithRun(_ m: OpaquePointer, _ run: Int) -> Bool {
        let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
        let l3 = Int(vx_mbuf_l2_len(m)), l4 = l3 &+ Int(vx_mbuf_l3_len(m))
        let addresses = f.loadUnaligned(fromByteOffset: l3 &+ 12, as: UInt64.self)
        let ports = f.loadUnaligned(fromByteOffset: l4, as: UInt32.self)
        let ack = f.loadUnaligned(fromByteOffset: l4 &+ 8, as: UInt32.self)
        let macs0 = f.loadUnaligned(fromByteOffset: 0, as: UInt64.self), macs1 = f.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        var k = run
        while k > 0 {
            k &-= 1
            let o = UnsafeMutableRawPointer(vx_mbuf_data(coalesceRun[k].unsafelyUnwrapped))
            let ol3 = Int(vx_mbuf_l2_len(coalesceRun[k].unsafelyUnwrapped))
            let ol4 = ol3 &+ Int(vx_mbuf_l3_len(coalesceRun[k].unsafelyUnwrapped))
            if o.loadUnaligned(fromByteOffset: ol3 &+ 12, as: UInt64.self) == addresses
                && o.loadUnaligned(fromByteOffset: ol4, as: UInt32.self) == ports {
                // The same connection: its latest segment in the run decides.
                return o.loadUnaligned(fromByteOffset: ol4 &+ 8, as: UInt32.self) != ack
                    || o.loadUnaligned(fromByteOffset: 0, as: UInt64.self) != macs0 || o.loadUnaligned(fromByteOffset: 8, as: UInt32.self) != macs1
            }
        }
        return false
    }

    @usableFromInline
    func mergeAndSend(_ n: Int, port: Int, tx: TxStage) {
        if n == 0 { return }
        let out = n > 1 ? Int(vx_gro_tcp4_burst(coalesceRun, UInt16(n))) : n
        for i in 0..<out {
            let m = coalesceRun[i].unsafelyUnwrapped
            let l3 = Int(vx_mbuf_l2_len(m)), l4 = l3 &+ Int(vx_mbuf_l3_len(m)), headers = l4 &+ Int(vx_mbuf_l4_len(m))
            let segmentSize = Int(vx_mbuf_tso_segsz(m))              // the head's own payload, before merging
            if Int(vx_mbuf_pkt_len(m)) &- headers > segmentSize {
                // Merged: rte_gro fixed the IP length; the IPv4 header checksum is stale (vhost-user recomputes it
                // for IP_CKSUM) and the TCP one is left partial for the guest: the pseudo-header sum, as virtio's
                // NEEDS_CSUM expects.
                let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
                let length = Int(load16(f, l3 &+ 2)) &- (l4 &- l3)
                let pseudo = UInt32(rawChecksum(f + (l3 &+ 12), length: 8)) &+ UInt32(UInt16(6) << 8)
                    &+ UInt32(UInt16(truncatingIfNeeded: length).byteSwapped)
                f.storeBytes(of: foldChecksum(pseudo), toByteOffset: l4 &+ 16, as: UInt16.self)
                vx_mbuf_set_tx_offload(m, MbufFlag.txTCPSegmentation | MbufFlag.txIPv4 | MbufFlag.txIPChecksum | MbufFlag.txTCPChecksum,
                                       0, 0, UInt16(l3), UInt16(l4 &- l3), UInt16(headers &- l4), UInt16(segmentSize))
                count(.coalescedFrames)
            } else {
                vx_mbuf_set_tso_segsz(m, 0)
            }
            tx.push(m, to: port)
        }
        count(.decapsulated, UInt64(out))
        if out < n { tx.add(.coalescedSegments, port: port, UInt64(n &- out)); count(.coalescedSegments, UInt64(n &- out)) }
    }
}

/// TCP/IPv6 receive coalescing, hand-written because DPDK 22.11's rte_gro has none: consecutive segments of one
/// connection in arrival order are chained behind the first (their headers cut off), as Linux's GRO would merge
/// them (rules in the file's header comment).
@usableFromInline
struct Merge6 {
    @usableFromInline var head: OpaquePointer?
    @usableFromInline var nextSequence: UInt32 = 0
    @usableFromInline var segmentSize = 0
    @usableFromInline var payload = 0
    @usableFromInline var pieces = 0
    @usableFromInline var closed = false

    @usableFromInline init() {}
    @usableFromInline init(head m: OpaquePointer) {
        head = m
        let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
        let l4 = 54, size = Int(vx_mbuf_tso_segsz(m))
        nextSequence = load32(f, l4 &+ 4) &+ UInt32(size)
        segmentSize = size; payload = size; pieces = 1
    }
}

extension VXLANProcessor {
    /// Untagged TCP/IPv6 without extension headers, ACK only, with payload (padding trimmed); leaves the payload
    /// length in `tso_segsz`.
    @usableFromInline
    func isMergeable6(_ m: OpaquePointer) -> Bool {
        let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
        guard Int(vx_mbuf_data_len(m)) >= 74, load16(f, 12) == VXLANLayout.etherTypeIPv6,
              f.load(fromByteOffset: 20, as: UInt8.self) == VXLANLayout.protocolTCP else { return false }
        let l4Length = Int(f.load(fromByteOffset: 66, as: UInt8.self) >> 4) &* 4
        let end = 54 &+ Int(load16(f, 18))
        let length = Int(vx_mbuf_pkt_len(m))
        guard l4Length >= 20, Int(vx_mbuf_data_len(m)) >= 54 &+ l4Length, end <= length, end > 54 &+ l4Length,
              f.load(fromByteOffset: 67, as: UInt8.self) == 0x10 else { return false }
        if end < length && vx_mbuf_trim(m, UInt16(truncatingIfNeeded: length &- end)) != 0 { return false }
        // As for IPv4: a segment whose checksum is wrong is never merged (it goes on as it came).
        let l4Total = end &- 54
        let sum = UInt32(rawChecksum(f + 22, length: 32)) &+ UInt32(UInt16(6) << 8)
            &+ UInt32(UInt16(truncatingIfNeeded: l4Total).byteSwapped) &+ UInt32(L4Checksum.chainSum(m, from: 54, length: l4Total))
        guard foldChecksum(sum) == 0xFFFF else { return false }
        vx_mbuf_set_tso_segsz(m, UInt16(truncatingIfNeeded: end &- 54 &- l4Length))
        return true
    }

    /// Chains `m` behind the merge when Linux's GRO would; false (nothing changed) when it would not.
    @usableFromInline
    func append6(_ m: OpaquePointer, to merge: inout Merge6) -> Bool {
        guard let head = merge.head, !merge.closed, merge.pieces < 45 else { return false }
        let a = UnsafeMutableRawPointer(vx_mbuf_data(head)), b = UnsafeMutableRawPointer(vx_mbuf_data(m))
        let size = Int(vx_mbuf_tso_segsz(m))
        let l4Length = Int(b.load(fromByteOffset: 66, as: UInt8.self) >> 4) &* 4
        guard size <= merge.segmentSize, merge.payload &+ size &+ l4Length <= 65535,
              Int(a.load(fromByteOffset: 66, as: UInt8.self) >> 4) &* 4 == l4Length,
              load32(b, 58) == merge.nextSequence else { return false }
        // Ethernet addresses and type, IPv6 version/class/flow label, next header, hop limit, addresses, ports, ACK.
        guard memcmp(a, b, 14) == 0, a.loadUnaligned(fromByteOffset: 14, as: UInt32.self) == b.loadUnaligned(fromByteOffset: 14, as: UInt32.self),
              memcmp(a + 20, b + 20, 2 &+ 32 &+ 4) == 0, memcmp(a + 62, b + 62, 4) == 0,
              memcmp(a + 74, b + 74, l4Length &- 20) == 0 else { return false }     // the TCP options, timestamps too
        _ = vx_mbuf_adj(m, UInt16(54 &+ l4Length))
        guard vx_mbuf_chain(head, m) == 0 else {             // too many buffers: it starts the next merge
            _ = vx_mbuf_prepend(m, UInt16(54 &+ l4Length))
            return false
        }
        merge.nextSequence &+= UInt32(size)
        merge.payload &+= size
        merge.pieces &+= 1
        if size < merge.segmentSize { merge.closed = true }
        return true
    }

    /// Sends the merge: a lone segment as it came, a merged one with segmentation metadata for the guest.
    @usableFromInline
    func finish6(_ merge: inout Merge6, port: Int, tx: TxStage) {
        guard let head = merge.head else { return }
        let merged = UInt64(merge.pieces &- 1)
        merge = Merge6()
        let f = UnsafeMutableRawPointer(vx_mbuf_data(head))
        let segmentSize = Int(vx_mbuf_tso_segsz(head))
        let l4Length = Int(f.load(fromByteOffset: 66, as: UInt8.self) >> 4) &* 4
        let payload = Int(vx_mbuf_pkt_len(head)) &- 54 &- l4Length
        if payload > segmentSize {
            store16(f, 18, UInt16(l4Length &+ payload))
            // The TCP checksum left partial (virtio NEEDS_CSUM): the IPv6 pseudo-header sum over the merged length.
            let length = l4Length &+ payload
            let pseudo = UInt32(rawChecksum(f + 22, length: 32)) &+ UInt32(UInt16(6) << 8)
                &+ UInt32(UInt16(truncatingIfNeeded: length).byteSwapped)
            f.storeBytes(of: foldChecksum(pseudo), toByteOffset: 54 &+ 16, as: UInt16.self)
            vx_mbuf_set_tx_offload(head, MbufFlag.txTCPSegmentation | MbufFlag.txIPv6 | MbufFlag.txTCPChecksum,
                                   0, 0, 14, 40, UInt16(l4Length), UInt16(segmentSize))
            count(.coalescedFrames)
            tx.add(.coalescedSegments, port: port, merged); count(.coalescedSegments, merged)
        } else {
            vx_mbuf_set_tso_segsz(head, 0)
        }
        tx.push(head, to: port)
        count(.decapsulated)
    }
}
