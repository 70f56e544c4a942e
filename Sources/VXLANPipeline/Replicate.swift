import CDPDK
import PollMode
import VTEPConfig

/// Frames for more than one destination, and delivery to local endpoints: flooding from an access port (local
/// copies and head-end replication to the VNI's flood list), delivery of a decapsulated frame to every access
/// port of its VNI, and staging on one local endpoint (with its VLAN tag).
extension VXLANProcessor {
    @inlinable @inline(__always)
    func send(_ m: OpaquePointer, toEndpoint e: Int32, tx: TxStage) {
        let vlan = view.endpointVLAN[Int(e)]
        if vlan != 0 && vx_vlan_insert(m, vlan) != 0 { drop(m, .noHeadroom); return }
        tx.push(m, to: Int(view.endpointPort[Int(e)]))
    }


    /// to every remote in its flood list. The original goes out last.
    @inline(never) @usableFromInline
    func flood(_ m: OpaquePointer, vniSlot: Int, ingress: Int32, innerLength: Int, flowHash: UInt32, tx: TxStage) {
        let entry = view.vniBlock(vniSlot)
        let localCount = Int(entry.accessCount), remoteCount = Int(entry.floodCount)
        let destinations = remoteCount &+ localCount &- 1        // the ingress port is one of the local ones
        if destinations <= 0 { drop(m, .noDestination, vniSlot: Int32(vniSlot)); return }
        count(.flooded)
        var sent = 0
        for d in 0..<(localCount &+ remoteCount) {
            let isLocal = d < localCount
            let endpoint = isLocal ? entry.access(d) : -1
            if isLocal && endpoint == ingress { continue }
            sent &+= 1
            let packet: OpaquePointer
            if sent == destinations {
                packet = m
            } else if let c = rte_pktmbuf_copy(m, offload.pools?.direct ?? vx_mbuf_pool(m), 0, UInt32.max) {
                packet = c
            } else {
                counters[PipelineCounterLayout.slot(.copyFailed)] &+= 1
                continue
            }
            if isLocal {
                send(packet, toEndpoint: endpoint, tx: tx)
                count(.localFloodCopies)
            } else {
                count(.floodCopies)
                push(packet, tunnel: Int(entry.floodTunnel(d &- localCount)), innerLength: innerLength,
                     flowHash: flowHash, tx: tx)
            }
        }
    }

    /// Sends a decapsulated frame to every access port of its VNI (a copy for all but the last).
    @inlinable @inline(__always)
    func deliver(_ m: OpaquePointer, vniSlot: Int, tx: TxStage) {
        let entry = view.vniBlock(vniSlot)
        if entry.accessCount == 1 {
            send(m, toEndpoint: entry.access(0), tx: tx)
            count(.decapsulated)
            return
        }
        deliverToMany(m, entry: entry, vniSlot: vniSlot, tx: tx)
    }

    @inline(never) @usableFromInline
    func deliverToMany(_ m: OpaquePointer, entry: ForwardingTables.VNIBlock, vniSlot: Int, tx: TxStage) {
        let ports = Int(entry.accessCount)
        if ports == 0 { drop(m, .noDestination, vniSlot: Int32(vniSlot)); return }
        for p in 0..<ports {
            let last = p == ports &- 1
            guard let copy = last ? m : rte_pktmbuf_copy(m, offload.pools?.direct ?? vx_mbuf_pool(m), 0, UInt32.max) else {
                counters[PipelineCounterLayout.slot(.copyFailed)] &+= 1
                continue
            }
            send(copy, toEndpoint: entry.access(p), tx: tx)
        }
        count(.decapsulated)
    }
}
