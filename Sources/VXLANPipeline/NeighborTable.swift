import Foundation
import VTEPConfig

/// The next hops' MACs as the slow path resolves them (ARP over IPv4, Neighbor Discovery over IPv6), as a state
/// machine on plain values: no rings, no mbufs, no clock of its own (`now` is passed in, monotonic seconds), so
/// every decision can be tested directly. UnderlayControl sends what it decides and publishes what it learns.
///
/// - resolve: an unresolved next hop is asked at once, then after 1, 2, 4, ... seconds (at most
///   `UnderlayControl.maxRetryInterval`).
/// - confirm: a resolved MAC is asked again `timeout` seconds after it was last confirmed, stays in use while it
///   is probed, and is dropped (expired) after `UnderlayControl.probesBeforeExpiry` unanswered probes.
/// - claims: a resolved MAC changes only on a reply to our own request (within `UnderlayControl.replyWindow`);
///   any other claim that disagrees is a conflict and makes us ask again (at most every `reprobeInterval`).
/// - rate limit: requests share a token bucket (`solicitationRate` a second, bursts of `solicitationBurst`);
///   those held back stay due and go first, oldest first, when tokens come back.
/// Static neighbors are never replaced, never asked for.
struct NeighborTable {
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
    /// `prompted`: a claim for an address not resolved yet that was not an answer to our request; it only makes
    /// us ask now.
    enum Claim { case untracked, accepted, conflict, prompted }

    /// The outcome of one claim: what it was, whether it was a reply nobody asked for, whether the MAC changed
    /// (tunnels through the next hop must then be republished).
    struct ClaimOutcome: Equatable {
        var claim: Claim
        var unsolicited = false
        var changed = false
    }

    /// What is due at a given time: addresses to ask (in this order), addresses whose MAC just expired (their
    /// tunnels must be republished unresolved), and how many requests the rate limit newly held back.
    struct Round: Equatable {
        var solicit: [IPAddress] = []
        var expired: [IPAddress] = []
        var rateLimited = 0
    }

    /// Seconds a confirmed MAC is used before it is asked again.
    let timeout: Double
    private(set) var entries: [IPAddress: Entry] = [:]
    private var tokens = UnderlayControl.solicitationBurst
    private var tokensAt: Double?

    init(timeout: Double) { self.timeout = timeout }

    func mac(_ ip: IPAddress) -> MACAddress? { entries[ip]?.mac }
    func isTracked(_ ip: IPAddress) -> Bool { entries[ip] != nil }
    func isStatic(_ ip: IPAddress) -> Bool? { entries[ip]?.isStatic }

    /// A static neighbor: resolved for good.
    mutating func addStatic(_ ip: IPAddress, mac: MACAddress) { entries[ip] = Entry(mac: mac, isStatic: true) }

    /// Starts resolving `ip` unless it is tracked already.
    mutating func track(_ ip: IPAddress) {
        if entries[ip] == nil { entries[ip] = Entry(mac: nil, isStatic: false) }
    }

    mutating func forget(_ ip: IPAddress) { entries[ip] = nil }

    /// Learns a next hop's MAC (RFC 826 / RFC 4861: only for addresses we already track). `isReply`: an ARP reply
    /// or a Neighbor Advertisement, as opposed to a request or solicitation naming its sender's MAC.
    /// A MAC is first taken, or changed, only from a reply to our own outstanding request: anything else that
    /// disagrees (an unsolicited reply, a request, a gratuitous ARP) is a conflict and makes us ask the address
    /// again, so a single forged packet can neither choose nor redirect where a tunnel points. Claims that agree
    /// with a resolved MAC refresh its confirmation.
    mutating func confirm(_ ip: IPAddress, mac: MACAddress, isReply: Bool, now: Double) -> ClaimOutcome {
        guard var e = entries[ip], !e.isStatic, !mac.isMulticast, !mac.isZero else { return ClaimOutcome(claim: .untracked) }
        let answersUs = isReply && e.requestedAt.map { now - $0 <= UnderlayControl.replyWindow } == true
        let unsolicited = isReply && !answersUs
        // Unresolved: the MAC a tunnel will use is only ever taken from an answer to our own request. Anything
        // else (the remote's request for our address, a gratuitous or forged reply) makes us ask at once instead.
        if e.mac == nil, !answersUs {
            if e.requestedAt.map({ now - $0 >= UnderlayControl.reprobeInterval }) ?? true { e.reprobe = true }
            entries[ip] = e
            return ClaimOutcome(claim: .prompted, unsolicited: unsolicited)
        }
        if let current = e.mac, current != mac, !answersUs {
            if e.requestedAt.map({ now - $0 >= UnderlayControl.reprobeInterval }) ?? true { e.reprobe = true }
            entries[ip] = e
            return ClaimOutcome(claim: .conflict, unsolicited: unsolicited)
        }
        let changed = e.mac != mac
        e.mac = mac
        e.confirmedAt = now
        e.probes = 0
        e.nextProbe = 0
        e.reprobe = false
        if isReply { e.requestedAt = nil }
        entries[ip] = e
        return ClaimOutcome(claim: .accepted, unsolicited: unsolicited, changed: changed)
    }

    /// Decides what to ask now, as far as the token bucket allows, and expires MACs probed too often in vain.
    /// The caller sends a request for every address in `solicit` (the table counts them as sent).
    mutating func round(now: Double) -> Round {
        if let at = tokensAt {
            tokens = min(UnderlayControl.solicitationBurst, tokens + max(0, now - at) * UnderlayControl.solicitationRate)
        }
        tokensAt = now
        var result = Round()
        var due: [(ip: IPAddress, since: Double)] = []
        for (ip, e) in entries where !e.isStatic {
            var entry = e
            if !entry.reprobe {
                if let confirmed = entry.confirmedAt, entry.mac != nil, now - confirmed < timeout { continue }
                guard now >= entry.nextProbe else { continue }
                if entry.mac != nil && entry.probes >= UnderlayControl.probesBeforeExpiry {
                    entry.mac = nil                               // gone: stop sending to a stale MAC
                    entry.confirmedAt = nil
                    entry.probes = 0
                    entries[ip] = entry
                    result.expired.append(ip)
                }
            }
            due.append((ip, entry.reprobe ? -1 : entry.nextProbe))
        }
        if due.isEmpty { return result }
        // Not enough tokens for all: the longest-waiting first, so that nobody is starved.
        if tokens >= 1 && Double(due.count) > tokens { due.sort { $0.since < $1.since } }
        for (ip, _) in due {
            guard var entry = entries[ip] else { continue }
            guard tokens >= 1 else {
                if !entry.postponed {
                    entry.postponed = true
                    entries[ip] = entry
                    result.rateLimited += 1
                }
                continue
            }
            tokens -= 1
            result.solicit.append(ip)
            entry.postponed = false
            entry.requestedAt = now
            if entry.reprobe {
                entry.reprobe = false                             // outside the schedule: no back-off step
            } else {
                entry.probes += 1
                entry.nextProbe = now + min(pow(2, Double(entry.probes - 1)), UnderlayControl.maxRetryInterval)
            }
            entries[ip] = entry
        }
        return result
    }

    /// Every tracked address as `show neighbors` reports it.
    func report(now: Double, tunnels: (IPAddress) -> Int) -> [UnderlayControl.Neighbor] {
        entries.keys.sorted().map { ip in
            let e = entries[ip]!
            let state: UnderlayControl.Neighbor.State = e.isStatic ? .permanent
                : e.mac == nil ? .resolving
                : (e.confirmedAt.map { now - $0 < timeout } ?? false) ? .reachable : .probing
            return UnderlayControl.Neighbor(ip: ip, mac: e.mac, state: state, age: e.isStatic ? nil : e.confirmedAt.map { now - $0 },
                                            probes: e.probes, tunnels: tunnels(ip))
        }
    }
}
