/// The dataplane's configuration, as read from the file given to `vxland --config`.
public struct VTEPConfiguration: Sendable, Equatable {
    public struct Underlay: Sendable, Equatable {
        /// DPDK port name (`net_af_packet0`, `0000:01:00.0`) or numeric port id.
        public var port: String
        public var interface: IPv4Interface
        /// Source MAC of outer frames; nil means the port's own address.
        public var mac: MACAddress?
        /// IP MTU of the underlay: outer IPv4 header + UDP + VXLAN + inner frame must fit.
        public var mtu: Int = 1500
        public var udpPort: UInt16 = 4789
        public var ttl: UInt8 = 64
        /// Next hop for remote VTEPs outside the underlay subnet; must be on the subnet itself.
        public var gateway: IPv4Address?
        /// Seconds a MAC learned by ARP is used before it is confirmed again.
        public var neighborTimeout: Int = 300
        /// Drop VXLAN whose reserved bits are not zero (RFC 7348 says ignore them; Linux and OVS drop).
        public var strict: Bool = false
        public var address: IPv4Address { interface.address }

        /// Whom to ARP for to reach `remote`: itself when on-link, else the gateway.
        public func nextHop(for remote: IPv4Address) -> IPv4Address? {
            interface.contains(remote) ? remote : gateway
        }
    }

    /// An access port: untagged (the whole port in one VNI), or 802.1Q-tagged with each VLAN in its own VNI.
    public struct AccessPort: Sendable, Equatable {
        public var port: String
        /// The VNI of untagged frames; nil for a tagged port.
        public var vni: UInt32?
        /// VLAN id -> VNI for a tagged port (the tag is removed on encapsulation and restored on decapsulation).
        public var vlans: [VLANMapping]

        public init(port: String, vni: UInt32) { self.port = port; self.vni = vni; self.vlans = [] }
        public init(port: String, vlans: [VLANMapping]) { self.port = port; self.vni = nil; self.vlans = vlans }
    }

    public struct VLANMapping: Sendable, Equatable {
        public var vlan: UInt16
        public var vni: UInt32
        public init(vlan: UInt16, vni: UInt32) { self.vlan = vlan; self.vni = vni }
    }

    public struct Segment: Sendable, Equatable {
        public var vni: UInt32
        /// Remote VTEPs that get a copy of broadcast, multicast and unknown-unicast frames.
        public var flood: [IPv4Address]
        /// Learn source MACs: inner source -> outer source IP on decap, source -> access port locally.
        public var learning: Bool = true
        /// Seconds a learned MAC stays without being seen (static entries never age).
        public var ageing: Int = 300
        /// Learned entries allowed in this VNI (Linux vxlan's maxaddress); 0 means no limit.
        public var maxLearned: Int = 0

        public init(vni: UInt32, flood: [IPv4Address], learning: Bool = true, ageing: Int = 300, maxLearned: Int = 0) {
            self.vni = vni; self.flood = flood; self.learning = learning; self.ageing = ageing; self.maxLearned = maxLearned
        }
    }

    public struct FDBEntry: Sendable, Equatable {
        public var vni: UInt32
        public var mac: MACAddress
        public var remote: IPv4Address
    }

    public struct Neighbor: Sendable, Equatable {
        public var ip: IPv4Address
        public var mac: MACAddress
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
    }

    public var underlay: Underlay
    public var access: [AccessPort]
    public var segments: [Segment]
    public var fdb: [FDBEntry]
    public var neighbors: [Neighbor]
    public var resources: Resources

    public static let maxVNI: UInt32 = 0xFF_FFFF
    /// Outer IPv4 (20) + UDP (8) + VXLAN (8): what encapsulation adds to the inner frame at the IP layer.
    public static let ipv4Overhead = 36

    public func segment(_ vni: UInt32) -> Segment? { segments.first { $0.vni == vni } }
    /// Every remote VTEP named by a flood list or an FDB entry.
    public var remotes: [IPv4Address] {
        var seen: [IPv4Address] = []
        for r in segments.flatMap(\.flood) + fdb.map(\.remote) where !seen.contains(r) { seen.append(r) }
        return seen
    }
    public func neighbor(_ ip: IPv4Address) -> Neighbor? { neighbors.first { $0.ip == ip } }
}
