import CDPDK
import PollMode

/// Receive offload towards VMs that take large frames (vhost-user guests that negotiated TSO and partial
/// checksums): decapsulated TCP/IPv4 segments of one flow within a burst are merged by DPDK's rte_gro into one
/// frame, and handed to the port with segmentation metadata (`TX_TCP_SEG`, `tso_segsz` = the segments' size),
/// which vhost-user turns into a virtio GSO header; the guest's stack then sees one 64 KB segment instead of 45.
/// Only runs of mergeable segments (pure ACK with payload, as rte_gro requires) go through rte_gro: whatever
/// else is in the burst keeps its place, so nothing is reordered. TCP/IPv6 passes unmerged (22.11's rte_gro
/// has no IPv6).
extension VXLANProcessor {
    /// The port a decapsulated frame would go to alone, untagged, when that port takes large frames; else -1.
    @inlinable @inline(__always)
    func largeFramePort(segment s: Int32, target: Int32) -> Int {
        var endpoint = -1
        if target >= FDBTarget.localBase && view.endpointSegment[Int(target &- FDBTarget.localBase)] == s {
            endpoint = Int(target &- FDBTarget.localBase)
        } else {
            let entry = view.segments[Int(s)]
            if entry.accessCount == 1 { endpoint = Int(view.accessPorts[Int(entry.accessStart)]) }
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
            for i in done..<coalesceCount where coalescePorts[i] == port && coalesceFrames[i] != nil {
                let m = coalesceFrames[i].unsafelyUnwrapped
                coalesceFrames[i] = nil
                if isMergeable(m) {
                    coalesceRun[run] = m; run &+= 1
                } else {
                    mergeAndSend(run, port: Int(port), tx: tx); run = 0
                    tx.push(m, to: Int(port))
                    count(.decapsulated)
                }
            }
            mergeAndSend(run, port: Int(port), tx: tx)
            while done < coalesceCount && coalesceFrames[done] == nil { done &+= 1 }
        }
        coalesceCount = 0
    }

    /// TCP/IPv4 with payload and only ACK set: what rte_gro merges (anything else would come out after it).
    @usableFromInline
    func isMergeable(_ m: OpaquePointer) -> Bool {
        let ptype = vx_mbuf_classify(m)
        guard vx_ptype_is_ipv4_tcp(ptype) != 0 else { return false }
        let l4 = Int(vx_mbuf_l2_len(m)) &+ Int(vx_mbuf_l3_len(m))
        guard Int(vx_mbuf_data_len(m)) >= l4 &+ 20 else { return false }
        let f = UnsafeMutableRawPointer(vx_mbuf_data(m))
        guard f.load(fromByteOffset: l4 &+ 13, as: UInt8.self) == 0x10 && Int(vx_mbuf_pkt_len(m)) > l4 &+ Int(vx_mbuf_l4_len(m)) else {
            return false
        }
        // The merged frame leaves with a partial checksum the guest completes: only segments whose own checksum is
        // right may go into it (as Linux's GRO), or a segment damaged on the way would become valid data.
        let l3 = Int(vx_mbuf_l2_len(m))
        let length = Int(load16(f, l3 &+ 2)) &- (l4 &- l3)
        guard length >= 20, l4 &+ length <= Int(vx_mbuf_pkt_len(m)) else { return false }
        let sum = UInt32(rawChecksum(f + (l3 &+ 12), length: 8)) &+ UInt32(UInt16(6) << 8)
            &+ UInt32(UInt16(truncatingIfNeeded: length).byteSwapped) &+ UInt32(L4Checksum.chainSum(m, from: l4, length: length))
        return foldChecksum(sum) == 0xFFFF
    }

    @usableFromInline
    func mergeAndSend(_ n: Int, port: Int, tx: TxStage) {
        if n == 0 { return }
        // The segment size the sender used: the first segment's payload (rte_gro merges equal ones, bar the last).
        var segmentSize = 0
        for i in 0..<n {
            let m = coalesceRun[i].unsafelyUnwrapped
            segmentSize = max(segmentSize, Int(vx_mbuf_pkt_len(m)) &- Int(vx_mbuf_l2_len(m)) &- Int(vx_mbuf_l3_len(m)) &- Int(vx_mbuf_l4_len(m)))
        }
        let out = n > 1 ? Int(vx_gro_tcp4_burst(coalesceRun, UInt16(n))) : n
        for i in 0..<out {
            let m = coalesceRun[i].unsafelyUnwrapped
            let l3 = Int(vx_mbuf_l2_len(m)), l4 = l3 &+ Int(vx_mbuf_l3_len(m)), headers = l4 &+ Int(vx_mbuf_l4_len(m))
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
            }
            tx.push(m, to: port)
        }
        count(.decapsulated, UInt64(out))
        if out < n { tx.add(.coalescedSegments, port: port, UInt64(n &- out)); count(.coalescedSegments, UInt64(n &- out)) }
    }
}
