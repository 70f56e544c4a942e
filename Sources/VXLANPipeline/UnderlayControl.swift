import CDPDK
import Foundation
import PollMode
import Synchronization
import VTEPConfig

/// The underlay's slow path, run on a control thread (never a polling core): answers ARP and ICMP echo for the
/// VTEP address, and resolves the MAC of every next hop (remote VTEPs on the subnet, or the gateway) by ARP,
/// retrying with back-off and confirming again after `neighbor_timeout`. Static neighbors are never replaced.
/// Polling cores hand it frames over per-core punt rings and it answers over per-core inject rings, so the cores
/// keep sole ownership of their queues and never wait for it.
public final class UnderlayControl: @unchecked Sendable {
    public enum Counter: Int, CaseIterable, Sendable {
        case arpRequestsSent, arpRepliesSent, arpRepliesReceived, icmpEchoReplies, ignored, injectFull, allocFailed
        case ndSolicitationsSent, ndAdvertisementsSent, ndAdvertisementsReceived, icmpv6EchoReplies
        case learned, moved, aged, learnLimitReached, fdbFull, noTunnel
        case tunnelsFull, tunnelsReclaimed, solicitationsRateLimited, unsolicitedReplies, neighborMACConflicts
        case staleLearnEvents

        public var name: String {
            switch self {
            case .arpRequestsSent: "arp_requests_sent"
            case .arpRepliesSent: "arp_replies_sent"
            case .arpRepliesReceived: "arp_replies_received"
            case .icmpEchoReplies: "icmp_echo_replies"
            case .ignored: "ignored"
            case .injectFull: "inject_full"
            case .allocFailed: "alloc_failed"
            case .ndSolicitationsSent: "nd_solicitations_sent"
            case .ndAdvertisementsSent: "nd_advertisements_sent"
            case .ndAdvertisementsReceived: "nd_advertisements_received"
            case .icmpv6EchoReplies: "icmpv6_echo_replies"
            case .learned: "fdb_learned"
            case .moved: "fdb_moved"
            case .aged: "fdb_aged"
            case .learnLimitReached: "fdb_learn_limit_reached"
            case .fdbFull: "fdb_full"
            case .noTunnel: "fdb_no_tunnel"
            case .staleLearnEvents: "stale_learn_events"
            case .tunnelsFull: "tunnels_full"
            case .tunnelsReclaimed: "tunnels_reclaimed"
            case .solicitationsRateLimited: "solicitations_rate_limited"
            case .unsolicitedReplies: "unsolicited_replies"
            case .neighborMACConflicts: "neighbor_mac_conflicts"
            }
        }
    }

    /// A next hop's state as `vxlanctl show neighbors` reports it.
    public struct Neighbor: Sendable, Equatable {
        public enum State: String, Sendable { case permanent, reachable, probing, resolving }
        public var ip: IPAddress
        public var mac: MACAddress?
        public var state: State
        /// Seconds since the MAC was last confirmed (nil for static or never resolved).
        public var age: Double?
        public var probes: Int
        public var tunnels: Int
    }

    /// Back-off between ARP requests for an unresolved next hop: 1, 2, 4, ... seconds, at most this.
    public static let maxRetryInterval = 30.0
    /// A reachable MAC still in use is given this many probes after its timeout before it is dropped.
    public static let probesBeforeExpiry = 3
    /// ARP requests and Neighbor Solicitations together: a token bucket of `solicitationBurst` tokens refilled at
    /// `solicitationRate` a second. 100/s covers far more than a VTEP needs (each next hop takes one request per
    /// back-off step while resolving and one per `neighbor_timeout` once resolved: 4096 next hops confirmed every
    /// 300 s are 14/s) while bounding what a burst of spoofed sources can make us broadcast; a burst of 16 fits many
    /// times into the 1024-slot inject ring and into the 32 a core drains per round, so our own requests never
    /// overflow it. Requests held back stay due and go first, oldest first, when tokens come back.
    public static let solicitationRate = 100.0
    public static let solicitationBurst = 16.0
    /// How long after our request a reply counts as its answer (and may change a resolved MAC).
    public static let replyWindow = 3.0
    /// A conflicting claim triggers a new request at most this often per next hop.
    public static let reprobeInterval = 1.0

    public let rings: [SlowPathChannel]
    public let counters = CounterBlock(count: Counter.allCases.count)
    let tables: ForwardingTables
    let pool: PacketPool
    let ourIP: IPv4Address
    let ourIP6: IPv6Address?
    let ourMAC: MACAddress
    let timeout: Double
    /// Next hops and their MACs: the state machine (NeighborTable.swift).
    var neighborTable: NeighborTable
    private var pendingPublish: Set<Int> = []
    private let lock = NSLock()
    /// Changes that waited for a grace period before taking the lock (`awaitGracePeriod`).
    public let gracePeriodWaits = Atomic<Int>(0)
    /// True while `change` runs its body (under the lock, on the thread that holds it).
    private var changing = false
    /// How long a change waits for the cores to let go of slots it needs before it is refused for want of them.
    public var gracePeriodTimeout = 0.25
    private let buffer = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 32)
    private let events = UnsafeMutablePointer<UInt64>.allocate(capacity: LearnEvent.words * 64)
    private var started: Double?
    private var lastAgeing = 0.0
    /// Per VNI: how often learning was refused because the VNI was at its `max_learned`.
    private var limitHits: [UInt32: UInt64] = [:]

    public init(tables: ForwardingTables, pool: PacketPool, cores: Int) throws {
        self.tables = tables
        self.pool = pool
        let config = tables.configuration
        ourIP = config.underlay.address
        ourIP6 = config.underlay.address6
        ourMAC = tables.underlayMAC
        timeout = Double(config.underlay.neighborTimeout)
        neighborTable = NeighborTable(timeout: timeout)
        let serial = dpdkObjectSerial.next()
        let rings = try (0..<cores).map { try SlowPathChannel.create(tag: "\(serial)_\($0)") }
        self.rings = rings
        started = nil
        for n in config.neighbors { neighborTable.addStatic(n.ip, mac: n.mac) }
        for t in tables.tunnels { neighborTable.track(t.nextHop) }
        tables.awaitGracePeriod = { [unowned self] over in self.waitForCores(over) }
    }

    /// Frees everything left in the rings; call after the cores stopped.
    public func release() {
        for r in rings { r.free() }
        buffer.deallocate()
        events.deallocate()
    }

    func count(_ c: Counter, _ n: UInt64 = 1) { counters.base[c.rawValue] &+= n }

    /// One round: handle what the cores punted, then send due ARP requests. `now` is monotonic seconds.
    /// Learn events handled per core per round (a round is about a millisecond).
    public static let learnEventsPerRound = 512

    public func poll(now: Double) {
        lock.lock(); defer { lock.unlock() }
        // The cores' clock for FDB ageing: whole seconds since the first round.
        if started == nil { started = now }
        vx_store_release_u32(tables.clock, UInt32(max(0, now - started!)))
        for (core, r) in rings.enumerated() {
            let n = Int(vx_ring_dequeue_burst(r.punt, buffer, 32))
            for i in 0..<n { handle(OpaquePointer(buffer[i]!), core: core, now: now) }
            // A bounded share per round: under a flood of new sources the lock is released every round, so
            // `show` requests and ARP are never starved; what is left waits in the ring (or is counted as
            // learn_queue_full by the core when the ring is full).
            var budget = Self.learnEventsPerRound
            while budget > 0 {
                let k = r.takeLearnEvents(into: events, max: min(64, budget))
                if k == 0 { break }
                for e in 0..<k { learn(events + LearnEvent.words * e) }
                budget -= k
            }
        }
        if now - lastAgeing >= 1 {
            lastAgeing = now
            count(.aged, UInt64(tables.age()))
        }
        // Tunnels nothing referred to for a grace period are gone; so is the neighbor entry of a next hop no tunnel
        // uses any more (unless static or the gateway), which stops its probing.
        tables.reclaim()
        for (t, nextHop) in tables.takeGoneTunnels() {
            count(.tunnelsReclaimed)
            pendingPublish.remove(t)
            if tables.tunnelCount(through: nextHop) == 0, neighborTable.isStatic(nextHop) == false, !isGateway(nextHop) {
                neighborTable.forget(nextHop)
            }
        }
        for t in pendingPublish where tables.publish(mac: neighborTable.mac(tables.tunnels[t].nextHop), tunnel: t) {
            pendingPublish.remove(t)
        }
        solicit(now: now)
    }

    /// Sends the ARP requests and Neighbor Solicitations that are due, as far as the token bucket allows.
    private func solicit(now: Double) {
        let round = neighborTable.round(now: now)
        for ip in round.expired { republish(ip) }
        if round.rateLimited > 0 { count(.solicitationsRateLimited, UInt64(round.rateLimited)) }
        for ip in round.solicit {
            switch ip {
            case .v4(let a): sendRequest(for: a)
            case .v6(let a): sendSolicitation(for: a)
            }
        }
    }

    private func isGateway(_ ip: IPAddress) -> Bool {
        let u = tables.configuration.underlay
        return ip == u.gateway.map(IPAddress.v4) || ip == u.gateway6.map(IPAddress.v6)
    }

    /// Applies one learning event. The tables check every limit before they create a remote's tunnel; only an
    /// admitted entry's tunnel gets a neighbor entry (and so ARP/ND for its next hop).
    private func learn(_ event: UnsafeMutablePointer<UInt64>) {
        let (vni, mac, request) = LearnEvent.decode(event)
        let result: ForwardingTables.LearnResult
        switch request {
        case .port(let e, let epoch):
            // The endpoint slot went to another port since the core saw the frame: the source is not behind it.
            guard e >= 0, e < tables.endpointCapacity, tables.endpointEpoch[e] == epoch else { count(.staleLearnEvents); return }
            result = tables.learn(vni: vni, mac: mac, target: .local(e))
        case .remote(let ip):
            result = tables.learn(vni: vni, mac: mac, remote: ip) { neighborTable.mac($0) }
            if (result == .added || result == .moved), let t = tables.existingTunnel(vni: vni, remote: ip) {
                // A remote learned from traffic needs its next hop resolved like a configured one.
                let nextHop = tables.tunnels[t].nextHop
                neighborTable.track(nextHop)
                if tables.publishedMAC(tunnel: t) == nil, let mac = neighborTable.mac(nextHop), !tables.publish(mac: mac, tunnel: t) {
                    pendingPublish.insert(t)
                }
            }
        }
        switch result {
        case .added: count(.learned)
        case .moved: count(.moved)
        case .limitReached: count(.learnLimitReached); limitHits[vni, default: 0] += 1
        case .tableFull: count(.fdbFull)
        case .tunnelsFull: count(.tunnelsFull)
        case .noRoute: count(.noTunnel)
        case .refreshed, .staticEntry, .learningOff, .unknownVNI, .invalidTarget: break
        }
    }

    // MARK: - Run-time changes

    /// Runs a run-time change (LiveChanges.swift) as the tables' only writer, under the slow path's lock, then
    /// starts resolving the next hops of the tunnels it created. A change that throws has changed nothing.
    public func change<T>(_ body: (ForwardingTables) throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        defer { adoptCreatedTunnels() }
        changing = true
        defer { changing = false }
        return try body(tables)
    }

    /// A change (run by `change`, with the lock held) that needs slots the cores are about to let go of waits here
    /// for a grace period, at most `gracePeriodTimeout` (polling cores pass a quiescent state every round,
    /// microseconds apart). The lock stays held: letting it go mid-change would let the slow path learn, age or
    /// create tunnels between checks the change already made (a stamp counted free, a tunnel looked up).
    private func waitForCores(_ over: () -> Bool) {
        // Only a change run by `change` holds the lock on this thread; anything else calling the tables directly
        // (start-up, tests) gets no wait.
        guard changing else { return }
        gracePeriodWaits.add(1, ordering: .relaxed)
        let deadline = monotonicSeconds() + gracePeriodTimeout
        while !over() && monotonicSeconds() < deadline { usleep(20) }
    }

    /// The running configuration, read under the lock.
    public var configuration: VTEPConfiguration {
        lock.lock(); defer { lock.unlock() }
        return tables.configuration
    }

    private func adoptCreatedTunnels() {
        for t in tables.takeCreatedTunnels() where tables.isLive(tunnel: t) {
            let nextHop = tables.tunnels[t].nextHop
            neighborTable.track(nextHop)
            if tables.publishedMAC(tunnel: t) == nil, let mac = neighborTable.mac(nextHop), !tables.publish(mac: mac, tunnel: t) {
                pendingPublish.insert(t)
            }
        }
    }

    /// Adds a static neighbor: its MAC is used for good (no ARP/ND), replacing a resolved one.
    public func addNeighbor(ip: IPAddress, mac: MACAddress) throws {
        lock.lock(); defer { lock.unlock() }
        if let problem = ConfigRules.problem(neighbor: ip, underlay: tables.configuration.underlay) { throw ChangeError(problem) }
        if let problem = ConfigRules.problem(unicast: mac) { throw ChangeError(problem) }
        if let existing = tables.configuration.neighbor(ip) {
            throw ChangeError("\(ip) already has a static neighbor entry (\(existing.mac)); delete it first")
        }
        neighborTable.addStatic(ip, mac: mac)
        tables.configuration.neighbors.append(.init(ip: ip, mac: mac))
        republish(ip)
    }

    /// Removes a static neighbor: a next hop that tunnels still use is resolved by ARP/ND again from now on.
    public func removeNeighbor(ip: IPAddress) throws {
        lock.lock(); defer { lock.unlock() }
        guard tables.configuration.neighbor(ip) != nil else { throw ChangeError("\(ip) has no static neighbor entry") }
        tables.configuration.neighbors.removeAll { $0.ip == ip }
        neighborTable.forget(ip)
        if tables.tunnelCount(through: ip) > 0 || isGateway(ip) { neighborTable.track(ip) }
        republish(ip)
    }

    /// Remote address of every tunnel, by index (read under the lock: learning adds tunnels). An index whose
    /// tunnel was reclaimed shows its last remote; no FDB entry refers to it.
    public func tunnelRemotes() -> [IPAddress] {
        lock.lock(); defer { lock.unlock() }
        return tables.tunnels.map(\.remote)
    }

    public func learnedCount(vni: UInt32) -> Int {
        lock.lock(); defer { lock.unlock() }
        return tables.learnedCount(vni: vni)
    }

    /// Learned-entry limit hits per VNI, for `show fdb`.
    public func learnLimitHits() -> [UInt32: UInt64] {
        lock.lock(); defer { lock.unlock() }
        return limitHits
    }

    /// FDB entries for `show fdb`, read under the slow path's lock (it is the tables' only writer).
    /// Copied under the lock, sorted outside it: a large table never holds up learning and ARP for a sort.
    public func fdb(vni: UInt32?) -> [(entry: ForwardingTables.FDBEntry, age: UInt32)] {
        lock.lock()
        let copy = tables.unsortedFDBEntries(vni: vni)
        lock.unlock()
        return ForwardingTables.sorted(copy)
    }

    private func republish(_ nextHop: IPAddress) {
        let mac = neighborTable.mac(nextHop)
        for t in tables.tunnels(through: nextHop) where !tables.publish(mac: mac, tunnel: t) { pendingPublish.insert(t) }
    }

    func inject(_ m: OpaquePointer, core: Int) -> Bool {
        if vx_ring_enqueue(rings[core].inject, UnsafeMutableRawPointer(m)) == 0 { return true }
        vx_mbuf_free(m)
        count(.injectFull)
        return false
    }

    private func handle(_ m: OpaquePointer, core: Int, now: Double) {
        let length = Int(vx_mbuf_data_len(m))
        let f = vx_mbuf_data(m)
        let type = length >= VXLANLayout.ethernetLength ? load16(f, FrameLayout.ethType) : 0
        if type == VXLANLayout.etherTypeARP && length >= FrameLayout.arpLength { return handleARP(m, f, core: core, now: now) }
        if type == VXLANLayout.etherTypeIPv4 && length >= FrameLayout.ipVersionIHL + 28 { return handleICMP(m, f, length: Int(vx_mbuf_pkt_len(m)), core: core) }
        if type == VXLANLayout.etherTypeIPv6 && length >= FrameLayout.ip6Payload + 8 { return handleICMPv6(m, f, core: core, now: now) }
        count(.ignored)
        vx_mbuf_free(m)
    }

    /// A claim about a next hop's MAC (NeighborTable.confirm), counted, and published when it changed the MAC.
    func confirm(_ ip: IPAddress, mac: MACAddress, isReply: Bool, now: Double) -> NeighborTable.Claim {
        let outcome = neighborTable.confirm(ip, mac: mac, isReply: isReply, now: now)
        if outcome.unsolicited { count(.unsolicitedReplies) }
        if outcome.claim == .conflict { count(.neighborMACConflicts) }
        if outcome.changed { republish(ip) }
        return outcome.claim
    }

    /// Every next hop and static neighbor, for `vxlanctl show neighbors`.
    public func neighbors(now: Double) -> [Neighbor] {
        lock.lock(); defer { lock.unlock() }
        return neighborTable.report(now: now) { tables.tunnelCount(through: $0) }
    }
}

/// Monotonic seconds, for the slow path's timers.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
