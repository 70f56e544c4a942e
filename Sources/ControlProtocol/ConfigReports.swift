/// `show vnis`: every VNI with its flood list, local ports, learning state and counters.
public struct VNIsReport: Codable, Equatable, Sendable {
    public struct VNI: Codable, Equatable, Sendable {
        public var vni: UInt32
        public var flood: [String]
        /// Local ports in the VNI ("net_ring1", or "net_ring2 vlan 10" for a tagged port).
        public var ports: [String]
        public var learning: Bool
        public var learned: Int
        public var maxLearned: Int
        public var ageingSeconds: Int
        public var allowedRemotes: [String]?
        /// `encap_packets`, `encap_bytes`, `decap_packets`, `decap_bytes`, `drops` since the VNI was added (or the
        /// counters were cleared).
        public var counters: [String: UInt64]
        public init(vni: UInt32, flood: [String], ports: [String], learning: Bool, learned: Int, maxLearned: Int,
                    ageingSeconds: Int, allowedRemotes: [String]?, counters: [String: UInt64]) {
            self.vni = vni; self.flood = flood; self.ports = ports; self.learning = learning; self.learned = learned
            self.maxLearned = maxLearned; self.ageingSeconds = ageingSeconds; self.allowedRemotes = allowedRemotes
            self.counters = counters
        }
    }
    public var vnis: [VNI]
    /// How many VNIs the dataplane can hold (`resources.vnis`).
    public var capacity: Int
    public init(vnis: [VNI], capacity: Int) { self.vnis = vnis; self.capacity = capacity }
}

/// The answer to a change (`vni.add`, `fdb.del`, `config.apply`, ...): what was done, in order. For `config.apply`
/// with `dry_run`, what would be done.
public struct ChangeReport: Codable, Equatable, Sendable {
    public var applied: Bool
    public var changes: [String]
    public init(applied: Bool, changes: [String]) { self.applied = applied; self.changes = changes }
}

/// `show config`: the running configuration in the configuration file's format.
public struct ConfigReport: Codable, Equatable, Sendable {
    public var yaml: String
    public init(yaml: String) { self.yaml = yaml }
}
