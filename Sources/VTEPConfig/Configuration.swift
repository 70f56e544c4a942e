/// The dataplane's configuration, as read from the file given to `vxland --config`.
public struct VTEPConfiguration: Sendable, Equatable {
    public struct Underlay: Sendable, Equatable {
        /// DPDK port name (`net_af_packet0`, `0000:01:00.0`) or numeric port id.
        public var port: String
        /// The VTEP's IPv4 address, if it has one (it needs an IPv4 or an IPv6 address, and may have both).
        public var interface: IPv4Interface?
        /// The VTEP's IPv6 address, if it has one.
        public var interface6: IPv6Interface?
        /// Source MAC of outer frames; nil means the port's own address.
        public var mac: MACAddress?
        /// IP MTU of the underlay: outer IPv4 header + UDP + VXLAN + inner frame must fit.
        public var mtu: Int = 1500
        public var udpPort: UInt16 = 4789
        public var ttl: UInt8 = 64
        /// Next hop for remote VTEPs outside the underlay subnet; must be on the subnet itself.
        public var gateway: IPv4Address?
        /// The same for IPv6 remotes outside the IPv6 prefix.
        public var gateway6: IPv6Address?
        /// Seconds a MAC learned by ARP is used before it is confirmed again.
        public var neighborTimeout: Int = 300
        /// Drop VXLAN whose reserved bits are not zero (RFC 7348 says ignore them; Linux and OVS drop).
        public var strict: Bool = false
        /// Verify non-zero UDP checksums of VXLAN over IPv4 (RFC 7348 lets a receiver skip it; a zero checksum
        /// is always accepted over IPv4). Wrong ones are dropped as bad_udp_checksum.
        public var verifyUDPChecksum: Bool = false
        /// RFC 6935/6936 zero UDP checksums for VXLAN over IPv6, as Linux's `udp6zerocsumtx` / `udp6zerocsumrx`.
        public var udp6ZeroChecksum = UDP6ZeroChecksum()
        /// `auto`: hand the NIC what it advertises (tunnel TSO, inner and outer checksums); `software`: do all of
        /// it in software (a NIC whose tunnel offloads are broken, or for comparison).
        public var offloads: OffloadMode = .auto
        /// A kernel tap interface that vxland creates as the underlay port (`port` is then vxland's name for it).
        public var tap: Tap?
        /// Who may send VXLAN to this VTEP (sources elsewhere are dropped as remote_not_allowed), for every VNI
        /// without a list of its own; nil allows any source. Each VNI's static remotes are allowed regardless.
        public var allowedRemotes: [IPPrefix]?
        /// The VTEP's addresses as operators write them: "10.99.0.1/24", "fd00::1/64" or both.
        public var addressesDescription: String {
            [interface?.description, interface6?.description].compactMap { $0 }.joined(separator: ", ")
        }

        /// The IPv4 VTEP address (0.0.0.0 when the VTEP has none: no IPv4 packet is then ours).
        public var address: IPv4Address { interface?.address ?? IPv4Address(0) }
        public var address6: IPv6Address? { interface6?.address }

        /// Whose MAC to resolve (ARP or Neighbor Discovery) to reach `remote`: itself when on-link, else the
        /// gateway of its family; nil when the VTEP has no address of that family or no route.
        public func nextHop(for remote: IPAddress) -> IPAddress? {
            switch remote {
            case .v4(let a):
                guard let interface else { return nil }
                return interface.contains(a) ? remote : gateway.map(IPAddress.v4)
            case .v6(let a):
                guard let interface6 else { return nil }
                return interface6.contains(a) ? remote : gateway6.map(IPAddress.v6)
            }
        }
    }

    /// Zero UDP checksums over IPv6 (RFC 6935, 6936), per VTEP as Linux sets them per vxlan device.
    public struct UDP6ZeroChecksum: Sendable, Equatable {
        /// Send VXLAN over IPv6 with UDP checksum 0 (no sum computed at all): `udp6zerocsumtx`.
        public var tx: Bool = false
        /// Accept VXLAN over IPv6 whose UDP checksum is 0 (non-zero ones are still verified): `udp6zerocsumrx`.
        public var rx: Bool = false
        public init(tx: Bool = false, rx: Bool = false) { self.tx = tx; self.rx = rx }
    }

    public enum OffloadMode: String, Sendable, Equatable {
        case auto, software
    }

    /// An access port: untagged (the whole port in one VNI), or 802.1Q-tagged with each VLAN in its own VNI.
    public struct AccessPort: Sendable, Equatable {
        public var port: String
        /// The VNI of untagged frames; nil for a tagged port.
        public var vni: UInt32?
        /// VLAN id -> VNI for a tagged port (the tag is removed on encapsulation and restored on decapsulation).
        public var vlans: [VLANMapping]
        /// `software`: enable no checksum offload on this port (the driver or vxland completes checksums).
        public var offloads: OffloadMode = .auto
        /// A vhost-user port to a VM: vxland creates the `net_vhost` device `port` itself (nil: an EAL port).
        public var vhost: Vhost?
        /// A kernel tap interface vxland creates as this port (a VM's or a namespace's NIC); nil: not a tap.
        public var tap: Tap?

        public init(port: String, vni: UInt32, vhost: Vhost? = nil) { self.port = port; self.vni = vni; self.vlans = []; self.vhost = vhost }
        public init(port: String, vlans: [VLANMapping], vhost: Vhost? = nil) {
            self.port = port; self.vni = nil; self.vlans = vlans; self.vhost = vhost
        }
    }

    /// A tap interface with the virtio-net header that vxland creates and polls itself (TapPort): the kernel hands
    /// over and takes 64 KB TSO/GSO frames and unfinished checksums, and on an underlay VXLAN frames whole
    /// (UDP-tunnel GSO, Linux 6.17+).
    public struct Tap: Sendable, Equatable {
        /// The interface's name (1-15 characters); it must not exist when vxland starts.
        public var name: String
        /// Ask the kernel for UDP-tunnel GSO (an underlay's key; an access port's tap never asks); false: segments,
        /// as on kernels before 6.17.
        public var udpTunnelGSO: Bool = true
        public init(name: String, udpTunnelGSO: Bool = true) { self.name = name; self.udpTunnelGSO = udpTunnelGSO }
    }

    /// The vhost-user side of a VM-facing access port (DPDK's net_vhost).
    public struct Vhost: Sendable, Equatable {
        /// The vhost-user UNIX socket (an absolute path).
        public var socket: String
        /// false: vxland is the vhost-user server and creates the socket; true: it connects to a socket that the VM
        /// manager (QEMU's `server=on` chardev) created, and reconnects when it goes away.
        public var client: Bool = false
        /// Offer the guest VIRTIO_NET_F_HOST_TSO4/6: it may then send TCP frames up to 64 KiB for vxland to segment.
        public var tso: Bool = true

        public init(socket: String, client: Bool = false, tso: Bool = true) {
            self.socket = socket; self.client = client; self.tso = tso
        }
    }

    public struct VLANMapping: Sendable, Equatable {
        public var vlan: UInt16
        public var vni: UInt32
        public init(vlan: UInt16, vni: UInt32) { self.vlan = vlan; self.vni = vni }
    }

    public struct VNISettings: Sendable, Equatable {
        public var vni: UInt32
        /// Remote VTEPs that get a copy of broadcast, multicast and unknown-unicast frames (either family).
        public var flood: [IPAddress]
        /// Learn source MACs: inner source -> outer source IP on decap, source -> access port locally.
        public var learning: Bool = true
        /// Seconds a learned MAC stays without being seen (static entries never age).
        public var ageing: Int = 300
        /// Learned entries allowed in this VNI (Linux vxlan's maxaddress); 0 means no limit.
        public var maxLearned: Int = 0
        /// Who may send VXLAN in this VNI, replacing underlay.allowedRemotes; nil defers to it. An empty list allows
        /// the VNI's static remotes (flood list and FDB) only; they are allowed whatever the list says.
        public var allowedRemotes: [IPPrefix]?

        public init(vni: UInt32, flood: [IPAddress], learning: Bool = true, ageing: Int = 300, maxLearned: Int = 0) {
            self.vni = vni; self.flood = flood; self.learning = learning; self.ageing = ageing; self.maxLearned = maxLearned
        }
    }

    public struct FDBEntry: Sendable, Equatable {
        public var vni: UInt32
        public var mac: MACAddress
        public var remote: IPAddress
        public init(vni: UInt32, mac: MACAddress, remote: IPAddress) { self.vni = vni; self.mac = mac; self.remote = remote }
    }

    public struct Neighbor: Sendable, Equatable {
        public var ip: IPAddress
        public var mac: MACAddress
        public init(ip: IPAddress, mac: MACAddress) { self.ip = ip; self.mac = mac }
    }

    /// Sizing of the dataplane's own resources.
    public struct Resources: Sendable, Equatable {
        public var mbufs: Int = 16383
        public var rxDescriptors: Int = 1024
        public var txDescriptors: Int = 1024
        /// FDB capacity (static and learned entries, all VNIs).
        public var fdbEntries: Int = 65536
        /// Tunnels ((VNI, remote VTEP) pairs), configured and learned.
        public var tunnels: Int = 4096
        /// VNIs the dataplane can hold, configured and added at run time (`vxlanctl vni add`).
        public var vnis: Int = 4096
        /// Local ports (the underlay and every access port), configured and attached at run time.
        public var ports: Int = 16
    }

    public var underlay: Underlay
    public var access: [AccessPort]
    /// The VNIs, in file order. Assigning (or changing) it re-indexes them, O(n): build the array, then assign it once.
    public var vnis: [VNISettings] { didSet { vniIndexes = Self.firstIndexes(vnis) { $0.vni } } }
    public var fdb: [FDBEntry]
    /// Static next-hop MACs. Re-indexed on every change, as vnis are.
    public var neighbors: [Neighbor] { didSet { neighborIndexes = Self.firstIndexes(neighbors) { $0.ip } } }
    public var resources: Resources
    /// VNI -> index in vnis, and IP -> index in neighbors (the first, should a hand-built list repeat one).
    private var vniIndexes: [UInt32: Int]
    private var neighborIndexes: [IPAddress: Int]

    public init(underlay: Underlay, access: [AccessPort], vnis: [VNISettings], fdb: [FDBEntry],
                neighbors: [Neighbor], resources: Resources) {
        self.underlay = underlay; self.access = access; self.vnis = vnis; self.fdb = fdb
        self.neighbors = neighbors; self.resources = resources
        vniIndexes = Self.firstIndexes(vnis) { $0.vni }
        neighborIndexes = Self.firstIndexes(neighbors) { $0.ip }
    }

    private static func firstIndexes<T, Key: Hashable>(_ list: [T], by key: (T) -> Key) -> [Key: Int] {
        var indexes: [Key: Int] = [:]
        indexes.reserveCapacity(list.count)
        for (i, element) in list.enumerated() {
            let k = key(element)
            if indexes[k] == nil { indexes[k] = i }
        }
        return indexes
    }

    /// VNIs are 24 bits; 0 is refused (it is reserved, and tables use it to mean "none").
    public static let minVNI: UInt32 = 1
    public static let maxVNI: UInt32 = 0xFF_FFFF
    public static let vniRange: ClosedRange<UInt32> = minVNI...maxVNI
    /// Outer IPv4 (20) + UDP (8) + VXLAN (8): what encapsulation adds to the inner frame at the IP layer.
    public static let ipv4Overhead = 36
    /// Outer IPv6 (40) + UDP (8) + VXLAN (8).
    public static let ipv6Overhead = 56

    /// The VNI's segment, O(1).
    public func vniSettings(_ vni: UInt32) -> VNISettings? { vniIndex(vni).map { vnis[$0] } }
    /// Where the VNI's segment is in vnis, O(1).
    public func vniIndex(_ vni: UInt32) -> Int? { vniIndexes[vni] }
    /// Every remote VTEP named by a flood list or an FDB entry, each once, in the order first named.
    public var remotes: [IPAddress] {
        var seen = Set<IPAddress>()
        var ordered: [IPAddress] = []
        for s in vnis { for r in s.flood where seen.insert(r).inserted { ordered.append(r) } }
        for e in fdb where seen.insert(e.remote).inserted { ordered.append(e.remote) }
        return ordered
    }
    /// The static neighbor for this IP, O(1).
    public func neighbor(_ ip: IPAddress) -> Neighbor? { neighborIndexes[ip].map { neighbors[$0] } }

    /// Whether any allow-list applies: if not, every filter is RemoteFilter.any and the check can be skipped.
    public var filtersRemotes: Bool { underlay.allowedRemotes != nil || vnis.contains { $0.allowedRemotes != nil } }

    /// Who may send VXLAN in the VNI at `index`: its own list, else the global one, else anyone; with the
    /// VNI's flood-list and static FDB remotes always allowed. O(flood + fdb): to build the filters of every
    /// segment, remoteFilters() does it in one pass.
    public func remoteFilter(vniSlots index: Int) -> RemoteFilter {
        let segment = vnis[index]
        guard let prefixes = segment.allowedRemotes ?? underlay.allowedRemotes else { return .any }
        return RemoteFilter(prefixes: prefixes, staticRemotes: segment.flood + fdb.lazy.filter { $0.vni == segment.vni }.map(\.remote))
    }

    /// remoteFilter(vniSlots:) of every segment, indexed like vnis, in time proportional to the
    /// configuration. Segments under the global list share one copy of its prefixes.
    public func remoteFilters() -> [RemoteFilter] {
        guard filtersRemotes else { return Array(repeating: .any, count: vnis.count) }
        var staticRemotes = vnis.map(\.flood)
        for e in fdb { if let i = vniIndex(e.vni) { staticRemotes[i].append(e.remote) } }
        let global = underlay.allowedRemotes.map(RemoteFilter.Compiled.init)
        return vnis.indices.map { i in
            if let own = vnis[i].allowedRemotes { return RemoteFilter(compiled: .init(own), staticRemotes: staticRemotes[i]) }
            if let global { return RemoteFilter(compiled: global, staticRemotes: staticRemotes[i]) }
            return .any
        }
    }
}
