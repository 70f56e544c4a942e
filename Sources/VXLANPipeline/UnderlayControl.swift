import CDPDK
import Foundation
import PollMode
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

    struct Entry {
        var mac: MACAddress?
        var isStatic: Bool
        var confirmedAt: Double?
        var nextProbe: Double = 0
        var probes = 0
        /// When our latest request went out; cleared by the reply that answers it.
        var requestedAt: Double?
        /// A request is owed outside the back-off schedule (someone claimed the address with another MAC).
        var reprobe = false
        /// Due, but held back by the rate limit (counted once per request).
        var postponed = false
    }

    /// What an ARP packet or ND message said about a tracked address.
    enum Claim { case untracked, accepted, conflict }

    public let rings: [SlowPathRings]
    public let counters = CounterBlock(count: Counter.allCases.count)
    let tables: ForwardingTables
    let pool: PacketPool
    let ourIP: IPv4Address
    let ourIP6: IPv6Address?
    let ourMAC: MACAddress
    let timeout: Double
    private var entries: [IPAddress: Entry] = [:]
    private var pendingPublish: Set<Int> = []
    private let lock = NSLock()
    private let buffer = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 32)
    private let events = UnsafeMutablePointer<UInt64>.allocate(capacity: 4 * 64)
    private var started: Double?
    private var tokens = UnderlayControl.solicitationBurst
    private var tokensAt: Double?
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
        var rings: [SlowPathRings] = []
        let serial = dpdkObjectSerial.next()
        for c in 0..<cores {
            let tag = "\(serial)_\(c)"
            let flags = UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)
            guard let punt = rte_ring_create("punt\(tag)", 1024, Int32(SOCKET_ID_ANY), flags),
                  let inject = rte_ring_create("inj\(tag)", 1024, Int32(SOCKET_ID_ANY), flags),
                  let learn = vx_ring32_create("learn\(tag)", 4096) else {
                throw DPDKError.fromErrno("creating slow-path rings for core \(c)")
            }
            rings.append(SlowPathRings(punt: punt, inject: inject, learn: learn))
        }
        self.rings = rings
        started = nil
        for n in config.neighbors { entries[n.ip] = Entry(mac: n.mac, isStatic: true) }
        for t in tables.tunnels where entries[t.nextHop] == nil { entries[t.nextHop] = Entry(mac: nil, isStatic: false) }
    }

    /// Frees everything left in the rings; call after the cores stopped.
    public func release() {
        for r in rings {
            rte_ring_free(r.learn)
            for ring in [r.punt, r.inject] {
                while true {
                    let n = Int(vx_ring_dequeue_burst(ring, buffer, 32))
                    if n == 0 { break }
                    for i in 0..<n { vx_mbuf_free(OpaquePointer(buffer[i]!)) }
                }
                rte_ring_free(ring)
            }
        }
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
                let k = Int(vx_ring32_dequeue_burst(r.learn, events, UInt32(min(64, budget))))
                if k == 0 { break }
                for e in 0..<k { learn(events + 4 * e) }
                budget -= k
            }
        }
        if now - lastAgeing >= 1 {
            lastAgeing = now
            count(.aged, UInt64(tables.age()))
        }
        // Tunnels nothing referred to for a grace period are gone; so is the neighbor entry of a next hop no tunnel
        // uses any more (unless static or the gateway), which stops its probing.
        for (t, nextHop) in tables.reclaim() {
            count(.tunnelsReclaimed)
            pendingPublish.remove(t)
            if tables.tunnelCount(through: nextHop) == 0, entries[nextHop]?.isStatic == false, !isGateway(nextHop) {
                entries[nextHop] = nil
            }
        }
        for t in pendingPublish where tables.publish(mac: entries[tables.tunnels[t].nextHop]?.mac, tunnel: t) {
            pendingPublish.remove(t)
        }
        solicit(now: now)
    }

    /// Sends the ARP requests and Neighbor Solicitations that are due, as far as the token bucket allows.
    private func solicit(now: Double) {
        if let at = tokensAt { tokens = min(Self.solicitationBurst, tokens + max(0, now - at) * Self.solicitationRate) }
        tokensAt = now
        var due: [(ip: IPAddress, since: Double)] = []
        for (ip, e) in entries where !e.isStatic {
            var entry = e
            if !entry.reprobe {
                if let confirmed = entry.confirmedAt, entry.mac != nil, now - confirmed < timeout { continue }
                guard now >= entry.nextProbe else { continue }
                if entry.mac != nil && entry.probes >= Self.probesBeforeExpiry {
                    entry.mac = nil                               // gone: stop sending to a stale MAC
                    entry.confirmedAt = nil
                    entry.probes = 0
                    entries[ip] = entry
                    republish(ip)
                }
            }
            due.append((ip, entry.reprobe ? -1 : entry.nextProbe))
        }
        if due.isEmpty { return }
        // Not enough tokens for all: the longest-waiting first, so that nobody is starved.
        if tokens >= 1 && Double(due.count) > tokens { due.sort { $0.since < $1.since } }
        for (ip, _) in due {
            guard var entry = entries[ip] else { continue }
            guard tokens >= 1 else {
                if !entry.postponed {
                    entry.postponed = true
                    entries[ip] = entry
                    count(.solicitationsRateLimited)
                }
                continue
            }
            tokens -= 1
            switch ip {
            case .v4(let a): sendRequest(for: a)
            case .v6(let a): sendSolicitation(for: a)
            }
            entry.postponed = false
            entry.requestedAt = now
            if entry.reprobe {
                entry.reprobe = false                             // outside the schedule: no back-off step
            } else {
                entry.probes += 1
                entry.nextProbe = now + min(pow(2, Double(entry.probes - 1)), Self.maxRetryInterval)
            }
            entries[ip] = entry
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
        case .port(let e):
            result = tables.learn(vni: vni, mac: mac, target: .local(e))
        case .remote(let ip):
            result = tables.learn(vni: vni, mac: mac, remote: ip) { entries[$0]?.mac }
            if (result == .added || result == .moved), let t = tables.existingTunnel(vni: vni, remote: ip) {
                // A remote learned from traffic needs its next hop resolved like a configured one.
                let nextHop = tables.tunnels[t].nextHop
                if entries[nextHop] == nil { entries[nextHop] = Entry(mac: nil, isStatic: false) }
                if tables.publishedMAC(tunnel: t) == nil, let mac = entries[nextHop]?.mac, !tables.publish(mac: mac, tunnel: t) {
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
    public func fdb(vni: UInt32?) -> [(entry: ForwardingTables.FDBEntry, age: UInt32)] {
        lock.lock(); defer { lock.unlock() }
        return tables.fdbEntries(vni: vni)
    }

    private func republish(_ nextHop: IPAddress) {
        let mac = entries[nextHop]?.mac
        for t in tables.tunnels(through: nextHop) where !tables.publish(mac: mac, tunnel: t) { pendingPublish.insert(t) }
    }

    private func inject(_ m: OpaquePointer, core: Int) -> Bool {
        if vx_ring_enqueue(rings[core].inject, UnsafeMutableRawPointer(m)) == 0 { return true }
        vx_mbuf_free(m)
        count(.injectFull)
        return false
    }

    private func handle(_ m: OpaquePointer, core: Int, now: Double) {
        let length = Int(vx_mbuf_data_len(m))
        let f = vx_mbuf_data(m)
        let type = length >= 14 ? load16(f, 12) : 0
        if type == VXLANLayout.etherTypeARP && length >= 42 { return handleARP(m, f, core: core, now: now) }
        if type == VXLANLayout.etherTypeIPv4 && length >= 42 { return handleICMP(m, f, length: Int(vx_mbuf_pkt_len(m)), core: core) }
        if type == VXLANLayout.etherTypeIPv6 && length >= 62 { return handleICMPv6(m, f, core: core, now: now) }
        count(.ignored)
        vx_mbuf_free(m)
    }

    private func handleARP(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, core: Int, now: Double) {
        // Ethernet, IPv4, 6-byte and 4-byte addresses only.
        guard load16(f, 14) == 1, load16(f, 16) == VXLANLayout.etherTypeIPv4, f.load(fromByteOffset: 18, as: UInt8.self) == 6,
              f.load(fromByteOffset: 19, as: UInt8.self) == 4 else { count(.ignored); vx_mbuf_free(m); return }
        let op = load16(f, 20)
        let senderMAC = MACAddress(bytes: (22..<28).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
        let senderIP = IPAddress.v4(IPv4Address(load32(f, 28)))
        let targetIP = IPv4Address(load32(f, 38))
        // RFC 826: update the sender's entry if we have one (requests for us confirm it too).
        if confirm(senderIP, mac: senderMAC, isReply: op == 2, now: now) == .accepted && op == 2 { count(.arpRepliesReceived) }
        guard op == 1, targetIP == ourIP, !ourIP.isUnspecified else { vx_mbuf_free(m); return }
        // Answer in place: who-has ourIP tell sender -> ourIP is-at ourMAC.
        for (i, b) in senderMAC.bytes.enumerated() {
            f.storeBytes(of: b, toByteOffset: i, as: UInt8.self)          // Ethernet destination
            f.storeBytes(of: b, toByteOffset: 32 + i, as: UInt8.self)     // target hardware address
        }
        for (i, b) in ourMAC.bytes.enumerated() {
            f.storeBytes(of: b, toByteOffset: 6 + i, as: UInt8.self)      // Ethernet source
            f.storeBytes(of: b, toByteOffset: 22 + i, as: UInt8.self)     // sender hardware address
        }
        store16(f, 20, 2)
        store32(f, 38, load32(f, 28))
        store32(f, 28, ourIP.value)
        if inject(m, core: core) { count(.arpRepliesSent) }
    }

    private func handleICMP(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, length: Int, core: Int) {
        let ihl = Int(f.load(fromByteOffset: 14, as: UInt8.self) & 0x0F) * 4
        let ipLength = Int(load16(f, 16))
        let icmp = 14 + ihl
        // The fast path checked version, lengths, checksum, fragmentation and the destination.
        guard ipLength >= ihl + 8, 14 + ipLength <= Int(vx_mbuf_data_len(m)),
              f.load(fromByteOffset: icmp, as: UInt8.self) == 8, f.load(fromByteOffset: icmp + 1, as: UInt8.self) == 0,
              vx_raw_cksum(f + icmp, ipLength - ihl) == 0xFFFF else { count(.ignored); vx_mbuf_free(m); return }
        // Echo reply: swap addresses, type 0, fresh checksums.
        for i in 0..<6 {
            f.storeBytes(of: f.load(fromByteOffset: 6 + i, as: UInt8.self), toByteOffset: i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: 6 + i, as: UInt8.self)
        }
        let source = load32(f, 26)
        store32(f, 30, source)
        store32(f, 26, ourIP.value)
        f.storeBytes(of: 64, toByteOffset: 22, as: UInt8.self)           // TTL
        f.storeBytes(of: 0, toByteOffset: icmp, as: UInt8.self)
        store16(f, icmp + 2, 0)
        f.storeBytes(of: ~vx_raw_cksum(f + icmp, ipLength - ihl), toByteOffset: icmp + 2, as: UInt16.self)
        store16(f, 24, 0)
        f.storeBytes(of: ~vx_raw_cksum(f + 14, ihl), toByteOffset: 24, as: UInt16.self)
        if length > 14 + ipLength { _ = vx_mbuf_trim(m, UInt16(length - 14 - ipLength)) }
        if inject(m, core: core) { count(.icmpEchoReplies) }
    }

    /// Broadcasts "who has `target`? tell us".
    private func sendRequest(for target: IPv4Address) {
        guard let m = pool.allocate(), let p = vx_mbuf_append(m, 42) else { count(.allocFailed); return }
        let f = UnsafeMutableRawPointer(p)
        f.initializeMemory(as: UInt8.self, repeating: 0, count: 42)
        for i in 0..<6 {
            f.storeBytes(of: 0xFF, toByteOffset: i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: 6 + i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: 22 + i, as: UInt8.self)
        }
        store16(f, 12, VXLANLayout.etherTypeARP)
        store16(f, 14, 1); store16(f, 16, VXLANLayout.etherTypeIPv4)
        f.storeBytes(of: 6, toByteOffset: 18, as: UInt8.self); f.storeBytes(of: 4, toByteOffset: 19, as: UInt8.self)
        store16(f, 20, 1)
        store32(f, 28, ourIP.value)
        store32(f, 38, target.value)
        if inject(m, core: 0) { count(.arpRequestsSent) }
    }

    /// Learns a next hop's MAC (RFC 826 / RFC 4861: only for addresses we already track). `isReply`: an ARP reply
    /// or a Neighbor Advertisement, as opposed to a request or solicitation naming its sender's MAC.
    /// A resolved MAC changes only on a reply to our own outstanding request: anything else that disagrees (an
    /// unsolicited reply, a request, a gratuitous ARP) is counted and answered by asking the address again, so a
    /// single forged packet cannot redirect a tunnel. Claims that agree refresh the confirmation.
    private func confirm(_ ip: IPAddress, mac: MACAddress, isReply: Bool, now: Double) -> Claim {
        guard var e = entries[ip], !e.isStatic, !mac.isMulticast, !mac.isZero else { return .untracked }
        let answersUs = isReply && e.requestedAt.map { now - $0 <= Self.replyWindow } == true
        if isReply && !answersUs { count(.unsolicitedReplies) }
        if let current = e.mac, current != mac, !answersUs {
            count(.neighborMACConflicts)
            if e.requestedAt.map({ now - $0 >= Self.reprobeInterval }) ?? true { e.reprobe = true }
            entries[ip] = e
            return .conflict
        }
        let changed = e.mac != mac
        e.mac = mac
        e.confirmedAt = now
        e.probes = 0
        e.nextProbe = 0
        e.reprobe = false
        if isReply { e.requestedAt = nil }
        entries[ip] = e
        if changed { republish(ip) }
        return .accepted
    }

    /// ICMPv6 to the VTEP (or to its solicited-node group): Neighbor Solicitation and Advertisement, echo.
    private func handleICMPv6(_ m: OpaquePointer, _ f: UnsafeMutableRawPointer, core: Int, now: Double) {
        let dataLength = Int(vx_mbuf_data_len(m))
        let payload = Int(load16(f, 18))
        guard let ours = ourIP6, f.load(fromByteOffset: 14, as: UInt8.self) >> 4 == 6,
              f.load(fromByteOffset: 20, as: UInt8.self) == VXLANLayout.protocolICMPv6, payload >= 8, 54 + payload <= dataLength,
              vx_ipv6_l4_cksum_verify(m, 14, 54) == 0 else { count(.ignored); vx_mbuf_free(m); return }
        let type = f.load(fromByteOffset: 54, as: UInt8.self)
        let source = IPv6Address(bytes: (22..<38).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
        let hopLimit = f.load(fromByteOffset: 21, as: UInt8.self)
        switch type {
        case 135 where hopLimit == 255 && payload >= 24:                 // Neighbor Solicitation
            let target = IPv6Address(bytes: (62..<78).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
            if let mac = linkLayerOption(f, from: 78, end: 54 + payload, type: 1), !source.isUnspecified {
                _ = confirm(.v6(source), mac: mac, isReply: false, now: now)
            }
            guard target == ours else { break }
            // Advertise: to the solicitor (all nodes when it has no address yet), solicited and override.
            let destination = source.isUnspecified ? IPv6Address("ff02::1")! : source
            let destinationMAC = source.isUnspecified ? MACAddress(bytes: [0x33, 0x33, 0, 0, 0, 1])!
                : MACAddress(bytes: (6..<12).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
            vx_mbuf_free(m)
            sendAdvertisement(to: destination, mac: destinationMAC, solicited: !source.isUnspecified)
            return
        case 136 where hopLimit == 255 && payload >= 24:                 // Neighbor Advertisement
            let target = IPv6Address(bytes: (62..<78).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
            let mac = linkLayerOption(f, from: 78, end: 54 + payload, type: 2)
                ?? MACAddress(bytes: (6..<12).map { f.load(fromByteOffset: $0, as: UInt8.self) })!
            if confirm(.v6(target), mac: mac, isReply: true, now: now) == .accepted { count(.ndAdvertisementsReceived) }
        case 128 where Array(UnsafeRawBufferPointer(start: f + 38, count: 16)) == ours.bytes:   // echo request to us
            for i in 0..<6 {
                f.storeBytes(of: f.load(fromByteOffset: 6 + i, as: UInt8.self), toByteOffset: i, as: UInt8.self)
                f.storeBytes(of: ourMAC.bytes[i], toByteOffset: 6 + i, as: UInt8.self)
            }
            for i in 0..<16 {
                f.storeBytes(of: source.bytes[i], toByteOffset: 38 + i, as: UInt8.self)
                f.storeBytes(of: ours.bytes[i], toByteOffset: 22 + i, as: UInt8.self)
            }
            f.storeBytes(of: 64, toByteOffset: 21, as: UInt8.self)
            f.storeBytes(of: 129, toByteOffset: 54, as: UInt8.self)
            store16(f, 56, 0)
            f.storeBytes(of: vx_ipv6_l4_cksum(f + 14, f + 54), toByteOffset: 56, as: UInt16.self)
            let excess = Int(vx_mbuf_pkt_len(m)) - (54 + payload)
            if excess > 0 { _ = vx_mbuf_trim(m, UInt16(excess)) }
            if inject(m, core: core) { count(.icmpv6EchoReplies) }
            return
        default:
            count(.ignored)
        }
        vx_mbuf_free(m)
    }

    /// The MAC in a Source (1) or Target (2) Link-Layer Address option, if present.
    private func linkLayerOption(_ f: UnsafeMutableRawPointer, from start: Int, end: Int, type: UInt8) -> MACAddress? {
        var offset = start
        while offset + 8 <= end {
            let length = Int(f.load(fromByteOffset: offset + 1, as: UInt8.self)) * 8
            if length == 0 { return nil }
            if f.load(fromByteOffset: offset, as: UInt8.self) == type && length >= 8 {
                return MACAddress(bytes: (offset + 2..<offset + 8).map { f.load(fromByteOffset: $0, as: UInt8.self) })
            }
            offset += length
        }
        return nil
    }

    /// Builds an ICMPv6 ND message (hop limit 255): 14 + 40 + 24 + 8 bytes with one link-layer option.
    private func sendND(type: UInt8, flags: UInt8, to destination: IPv6Address, mac destinationMAC: MACAddress,
                        target: IPv6Address, option: UInt8) -> Bool {
        guard let ours = ourIP6, let m = pool.allocate(), let p = vx_mbuf_append(m, 86) else { count(.allocFailed); return false }
        let f = UnsafeMutableRawPointer(p)
        f.initializeMemory(as: UInt8.self, repeating: 0, count: 86)
        for i in 0..<6 {
            f.storeBytes(of: destinationMAC.bytes[i], toByteOffset: i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: 6 + i, as: UInt8.self)
            f.storeBytes(of: ourMAC.bytes[i], toByteOffset: 80 + i, as: UInt8.self)
        }
        store16(f, 12, VXLANLayout.etherTypeIPv6)
        store32(f, 14, 0x6000_0000)
        store16(f, 18, 32)
        f.storeBytes(of: VXLANLayout.protocolICMPv6, toByteOffset: 20, as: UInt8.self)
        f.storeBytes(of: 255, toByteOffset: 21, as: UInt8.self)
        for i in 0..<16 {
            f.storeBytes(of: ours.bytes[i], toByteOffset: 22 + i, as: UInt8.self)
            f.storeBytes(of: destination.bytes[i], toByteOffset: 38 + i, as: UInt8.self)
            f.storeBytes(of: target.bytes[i], toByteOffset: 62 + i, as: UInt8.self)
        }
        f.storeBytes(of: type, toByteOffset: 54, as: UInt8.self)
        f.storeBytes(of: flags, toByteOffset: 58, as: UInt8.self)
        f.storeBytes(of: option, toByteOffset: 78, as: UInt8.self)
        f.storeBytes(of: 1, toByteOffset: 79, as: UInt8.self)
        f.storeBytes(of: vx_ipv6_l4_cksum(f + 14, f + 54), toByteOffset: 56, as: UInt16.self)
        return inject(m, core: 0)
    }

    /// Multicasts "who has `target`?" to its solicited-node group.
    private func sendSolicitation(for target: IPv6Address) {
        let group = target.solicitedNode
        let mac = MACAddress(bytes: [0x33, 0x33] + Array(group.bytes[12..<16]))!
        if sendND(type: 135, flags: 0, to: group, mac: mac, target: target, option: 1) { count(.ndSolicitationsSent) }
    }

    private func sendAdvertisement(to destination: IPv6Address, mac: MACAddress, solicited: Bool) {
        guard let ours = ourIP6 else { return }
        // Flags: Solicited (0x40) when answering an address, Override (0x20).
        if sendND(type: 136, flags: solicited ? 0x60 : 0x20, to: destination, mac: mac, target: ours, option: 2) {
            count(.ndAdvertisementsSent)
        }
    }

    /// Every next hop and static neighbor, for `vxlanctl show neighbors`.
    public func neighbors(now: Double) -> [Neighbor] {
        lock.lock(); defer { lock.unlock() }
        return entries.keys.sorted().map { ip in
            let e = entries[ip]!
            let state: Neighbor.State = e.isStatic ? .permanent
                : e.mac == nil ? .resolving
                : (e.confirmedAt.map { now - $0 < timeout } ?? false) ? .reachable : .probing
            return Neighbor(ip: ip, mac: e.mac, state: state, age: e.isStatic ? nil : e.confirmedAt.map { now - $0 },
                            probes: e.probes, tunnels: tables.tunnelCount(through: ip))
        }
    }
}

/// Monotonic seconds, for the slow path's timers.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
