import CDPDK
import Foundation
import PollMode
import VTEPConfig

/// Tunnels: one per (VNI, remote VTEP), each with its outer headers built once (Headers.swift) and kept twice,
/// so the slow path rewrites the copy no core is using and publishes it with one release store; the other copy
/// is reused only after an RCU grace period. Flood-list and static-entry tunnels are permanent; a tunnel created
/// for a learned remote counts the FDB entries that point at it and is reclaimed, after a grace period, when
/// none is left.
extension ForwardingTables {
    /// The live tunnel for (vni, remote), if there is one. O(1).
    public func existingTunnel(vni: UInt32, remote: IPAddress) -> Int? { tunnelIndex[TunnelKey(vni: vni, remote: remote)] }

    public func isLive(tunnel t: Int) -> Bool { t >= 0 && t < tunnelLive.count && tunnelLive[t] }

    /// Creates the (unresolved) tunnel for (vni, remote) at a free index; nil when all `resources.tunnels` are
    /// in use (or waiting for a grace period) or when the VTEP has no address of the remote's family.
    func createTunnel(vni: UInt32, remote: IPAddress, nextHop: IPAddress) -> Int? {
        let t: Int
        if let reused = freeTunnels.popLast() { t = reused } else if tunnels.count < tunnelCapacity { t = tunnels.count } else { return nil }
        let u = configuration.underlay
        let tunnel: Tunnel
        switch remote {
        case .v4(let address):
            let template = OuterHeaderTemplate(sourceMAC: underlayMAC, destinationMAC: .zero, source: u.address,
                                               destination: address, vni: vni, udpDestinationPort: u.udpPort, ttl: u.ttl)
            tunnel = Tunnel(vni: vni, remote: remote, nextHop: nextHop, header: template.bytes, isIPv6: false)
            fastPath.partialSums[t] = template.ipv4PartialSum
            fastPath.tunnelRemote[t] = address.value
            fastPath.tunnelIsIPv6[t] = 0
        case .v6(let address):
            guard let source = u.address6 else {
                if t < tunnels.count { freeTunnels.append(t) }
                return nil
            }
            let template = OuterHeaderTemplate6(sourceMAC: underlayMAC, destinationMAC: .zero, source: source,
                                                destination: address, vni: vni, udpDestinationPort: u.udpPort, hopLimit: u.ttl)
            tunnel = Tunnel(vni: vni, remote: remote, nextHop: nextHop, header: template.bytes, isIPv6: true)
            fastPath.partialSums[t] = template.udpPartialSum
            fastPath.tunnelIsIPv6[t] = 1
            (fastPath.tunnelRemote6[2 * t], fastPath.tunnelRemote6[2 * t + 1]) = address.words
        }
        // No core holds index t (new, or reclaimed after a grace period): its fields are written in place and
        // reach the cores with the release store that publishes the first FDB entry pointing at it.
        vx_store_release_i32(fastPath.activeCopy + t, -1)
        if t == tunnels.count {
            tunnels.append(tunnel); publishTokens.append(nil); parkedCopy.append(1); tunnelReferences.append(0); tunnelPins.append(0)
            tunnelLive.append(true)
        } else {
            tunnels[t] = tunnel; publishTokens[t] = nil; parkedCopy[t] = 1; tunnelReferences[t] = 0; tunnelPins[t] = 0; tunnelLive[t] = true
        }
        tunnelIndex[TunnelKey(vni: vni, remote: remote)] = t
        nextHopUsers[nextHop, default: 0] += 1
        liveTunnelCount += 1
        return t
    }

    /// Pins the tunnel for (vni, remote), creating it if need be: a flood list or a static FDB entry names it.
    /// A pinned tunnel is never reclaimed; `unpin` takes the pin back.
    func pinTunnel(vni: UInt32, remote: IPAddress) throws -> Int {
        if let t = existingTunnel(vni: vni, remote: remote) {
            tunnelPins[t] += 1
            dyingTunnels[t] = nil
            return t
        }
        guard let nextHop = configuration.underlay.nextHop(for: remote) else {
            throw ChangeError(ConfigRules.problem(remote: remote, underlay: configuration.underlay) ?? "no route to \(remote)")
        }
        if freeTunnels.isEmpty && tunnels.count >= tunnelCapacity && !dyingTunnels.isEmpty {
            // Under churn the tunnels just given up may still be held by a core: wait (briefly) for it to let go.
            waitForGracePeriod { !self.freeTunnels.isEmpty }
        }
        guard let t = createTunnel(vni: vni, remote: remote, nextHop: nextHop) else {
            throw ChangeError("cannot create the tunnel to \(remote) in VNI \(vni): all \(tunnelCapacity) tunnels (resources.tunnels) are in use")
        }
        tunnelPins[t] = 1
        createdTunnels.append(t)
        return t
    }

    /// Takes back one pin; a tunnel neither pinned nor named by a learned entry is reclaimed after a grace period.
    func unpin(tunnel t: Int) {
        tunnelPins[t] -= 1
        guard tunnelPins[t] == 0, tunnelReferences[t] == 0 else { return }
        bumpGeneration()
        dyingTunnels[t] = vx_qsbr_start(fastPath.qsbr)
    }

    func retain(_ target: FDBTarget) {
        guard case .tunnel(let t) = target else { return }
        tunnelReferences[t] += 1
        dyingTunnels[t] = nil                     // referred to again before it was reclaimed: it stays
    }

    /// Drops one reference. A learned tunnel nothing refers to is reclaimed after a grace period: cores may
    /// hold its index in a cache or an in-flight burst until they pass a quiescent state.
    func release(_ target: FDBTarget) {
        guard case .tunnel(let t) = target else { return }
        tunnelReferences[t] -= 1
        guard tunnelReferences[t] == 0, tunnelPins[t] == 0 else { return }
        bumpGeneration()                          // cores flush cached entries naming it at their next burst
        dyingTunnels[t] = vx_qsbr_start(fastPath.qsbr)
    }

    func destroyTunnel(_ t: Int) {
        let tunnel = tunnels[t]
        tunnelIndex[TunnelKey(vni: tunnel.vni, remote: tunnel.remote)] = nil
        nextHopUsers[tunnel.nextHop, default: 1] -= 1
        if nextHopUsers[tunnel.nextHop] == 0 { nextHopUsers[tunnel.nextHop] = nil }
        vx_store_release_i32(fastPath.activeCopy + t, -1)
        publishTokens[t] = nil
        tunnelReferences[t] = 0
        tunnelLive[t] = false
        liveTunnelCount -= 1
        freeTunnels.append(t)
    }

    /// Live tunnels whose outer Ethernet destination is `nextHop`'s MAC.
    public func tunnels(through nextHop: IPAddress) -> [Int] {
        guard nextHopUsers[nextHop] != nil else { return [] }
        return tunnels.indices.filter { tunnelLive[$0] && tunnels[$0].nextHop == nextHop }
    }

    /// How many live tunnels go through `nextHop`. O(1).
    public func tunnelCount(through nextHop: IPAddress) -> Int { nextHopUsers[nextHop] ?? 0 }

    /// The MAC the tunnel currently sends to, nil while unresolved.
    public func publishedMAC(tunnel t: Int) -> MACAddress? {
        let copy = vx_load_acquire_i32(fastPath.activeCopy + t)
        guard copy >= 0 else { return nil }
        let p = fastPath.templates + (t * 2 + Int(copy)) * Self.templateStride
        return MACAddress(bytes: (0..<6).map { p.load(fromByteOffset: $0, as: UInt8.self) })
    }

    /// Points tunnel `t` at `mac` (nil: unresolved, its packets are dropped). Returns false, changing nothing,
    /// while the cores may still be reading the copy it would overwrite; call again later.
    public func publish(mac: MACAddress?, tunnel t: Int) -> Bool {
        guard let mac else {
            // Cores that loaded the copy in use may still read it: it stays parked (not rewritten) until a grace
            // period has passed, which the token below makes the next publish wait for.
            let current = vx_load_acquire_i32(fastPath.activeCopy + t)
            if current >= 0 {
                parkedCopy[t] = current
                vx_store_release_i32(fastPath.activeCopy + t, -1)
                publishTokens[t] = vx_qsbr_start(fastPath.qsbr)
            }
            return true
        }
        if publishedMAC(tunnel: t) == mac { return true }
        let active = vx_load_acquire_i32(fastPath.activeCopy + t)
        let current = active >= 0 ? active : parkedCopy[t]
        let next = current == 0 ? 1 : 0
        if let token = publishTokens[t], vx_qsbr_check(fastPath.qsbr, token) != 1 { return false }
        let p = fastPath.templates + (t * 2 + Int(next)) * Self.templateStride
        tunnels[t].header.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        for (i, b) in mac.bytes.enumerated() { p.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        vx_store_release_i32(fastPath.activeCopy + t, Int32(next))
        publishTokens[t] = vx_qsbr_start(fastPath.qsbr)
        return true
    }

    /// For a change that needs a slot the cores are about to let go of (polling cores pass a quiescent state every
    /// round, microseconds apart): waits for one grace period through `awaitGracePeriod`, which the tables' writer
    /// provides (UnderlayControl: bounded, inside a change), then reclaims. Without it (tables driven directly) it
    /// only reclaims what is already free.
    func waitForGracePeriod(until done: () -> Bool) {
        if done() { return }
        _ = reclaim()
        if done() { return }
        let token = vx_qsbr_start(fastPath.qsbr)
        awaitGracePeriod? { vx_qsbr_check(fastPath.qsbr, token) == 1 }
        _ = reclaim()
    }

    /// Tunnels reclaimed since the last call, with their next hops (the slow path stops resolving unused ones).
    public func takeGoneTunnels() -> [(tunnel: Int, nextHop: IPAddress)] {
        defer { goneTunnels = [] }
        return goneTunnels
    }

    /// Gives back what waited for a grace period that is now over: stamp slots, and tunnels nothing refers to
    /// (returned, with their next hops, so that the slow path can stop resolving those). Called every round.
    @discardableResult
    public func reclaim() -> [(tunnel: Int, nextHop: IPAddress)] {
        reclaimRetired()
        guard !dyingTunnels.isEmpty else { return [] }
        var gone: [(tunnel: Int, nextHop: IPAddress)] = []
        for (t, token) in dyingTunnels where vx_qsbr_check(fastPath.qsbr, token) == 1 {
            dyingTunnels[t] = nil
            gone.append((t, tunnels[t].nextHop))
            destroyTunnel(t)
        }
        goneTunnels += gone
        return gone
    }
}
