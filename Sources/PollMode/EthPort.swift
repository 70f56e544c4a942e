import CDPDK
import CTapPort
import Glibc

/// What a port's driver advertises (rte_eth_dev_info), read before configuring it.
public struct PortCapabilities: Sendable {
    public var driver: String
    public var maxRxQueues: Int
    public var maxTxQueues: Int
    public var rxDescriptors: ClosedRange<Int>
    public var txDescriptors: ClosedRange<Int>
    public var rxOffloads: UInt64
    public var txOffloads: UInt64
    public var minMTU: Int
    public var maxMTU: Int
}

/// How a port is to be set up: one RX and one TX queue per polling core.
public struct PortSetup: Sendable {
    public var queues: Int
    public var rxDescriptors: Int = 1024
    public var txDescriptors: Int = 1024
    /// TX offloads wanted; only those the port advertises are enabled (see `EthPort.enabledTxOffloads`).
    public var wantedTxOffloads: UInt64 = 0
    public var wantedRxOffloads: UInt64 = 0
    /// A UDP port whose traffic is a tunnel of DPDK type `type` (`rte_eth_tunnel_type`), announced to the port
    /// (`rte_eth_dev_udp_tunnel_port_add`) where it can use it (parsing, RSS and checksums of tunnelled packets);
    /// nil announces nothing.
    public var udpTunnel: (udpPort: UInt16, type: UInt8)?
    public var promiscuous: Bool = true
    public init(queues: Int) { self.queues = queues }
}

/// One DPDK ethernet port, looked up by DPDK name (`net_ring0`, `0000:01:00.0`) or numeric id; or a kernel tap
/// port of vxland's own (`EthPort(tap:)`, TapPort.swift), which the polling cores read and write themselves.
public final class EthPort: @unchecked Sendable {
    /// The DPDK port id; for a tap port a number of its own above every DPDK id (never handed to DPDK).
    public let id: UInt16
    public let name: String
    /// The tap behind a tap port (CTapPort), nil for DPDK ports; freed when the port closes.
    public let tap: OpaquePointer?
    /// A tap port's Ethernet address (DPDK ports keep theirs in the driver).
    let tapMAC: [UInt8]
    /// A tap port's interface name and the kernel offloads it negotiated, kept here: readable after close.
    public let tapInterface: String?
    public let tapOffloads: [String]?
    let tapIfIndex: Int32
    public private(set) var capabilities: PortCapabilities
    public private(set) var enabledTxOffloads: UInt64 = 0
    public private(set) var enabledRxOffloads: UInt64 = 0
    public private(set) var queueCount = 0
    /// The RSS hash functions configured (`rss_hf`, within the port's `flow_type_rss_offloads`); 0 without RSS.
    public private(set) var rssHashFunctions: UInt64 = 0
    /// What `rte_eth_dev_udp_tunnel_port_add` answered (0, or a negative errno such as -ENOTSUP); nil if not asked.
    public private(set) var udpTunnelResult: Int32?
    private var started = false
    private var closed = false
    var isClosed: Bool { closed }

    /// Every port EAL created (from `-a`/`--vdev` arguments or probing), by id.
    public static func all() -> [UInt16] {
        var ids: [UInt16] = []
        var id = rte_eth_find_next_owned_by(0, UInt64(RTE_ETH_DEV_NO_OWNER))
        while id < UInt64(RTE_MAX_ETHPORTS) {
            ids.append(UInt16(id))
            id = rte_eth_find_next_owned_by(UInt16(id + 1), UInt64(RTE_ETH_DEV_NO_OWNER))
        }
        return ids
    }

    public static func name(of id: UInt16) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(RTE_ETH_NAME_MAX_LEN))
        guard rte_eth_dev_get_name_by_port(id, &buffer) == 0 else { return nil }
        return String(cString: buffer)
    }

    /// The id of the port `reference` names (DPDK name, or numeric id), without taking the port: an `EthPort`
    /// closes its port when it goes.
    public static func id(of reference: String) -> UInt16? {
        if let number = UInt16(reference), rte_eth_dev_is_valid_port(number) != 0 { return number }
        var id: UInt16 = 0
        return rte_eth_dev_get_port_by_name(reference, &id) == 0 ? id : nil
    }

    /// Finds a port by DPDK name, or by numeric id when `reference` is all digits.
    public convenience init(reference: String) throws {
        if let number = UInt16(reference), rte_eth_dev_is_valid_port(number) != 0 {
            try self.init(id: number)
            return
        }
        var id: UInt16 = 0
        guard rte_eth_dev_get_port_by_name(reference, &id) == 0 else {
            let known = EthPort.all().compactMap { EthPort.name(of: $0) }
            throw SetupError("no DPDK port named '\(reference)'; ports present: "
                + (known.isEmpty ? "none (add --vdev or -a to the EAL arguments)" : known.joined(separator: ", ")))
        }
        try self.init(id: id)
    }

    public init(id: UInt16) throws {
        guard rte_eth_dev_is_valid_port(id) != 0 else { throw SetupError("no DPDK port with id \(id)") }
        self.id = id
        self.name = EthPort.name(of: id) ?? "port\(id)"
        self.capabilities = try EthPort.readCapabilities(id)
        self.tap = nil
        self.tapMAC = []
        self.tapInterface = nil
        self.tapOffloads = nil
        self.tapIfIndex = 0
    }

    init(tap: OpaquePointer, id: UInt16, name: String, capabilities: PortCapabilities, mac: [UInt8]) {
        self.id = id
        self.name = name
        self.tap = tap
        self.capabilities = capabilities
        self.tapMAC = mac
        self.tapInterface = String(cString: vx_tap_ifname(tap))
        self.tapOffloads = TapPort.offloadNames(vx_tap_offloads(tap))
        self.tapIfIndex = vx_tap_ifindex(tap)
    }

    static func readCapabilities(_ id: UInt16) throws -> PortCapabilities {
        var info = rte_eth_dev_info()
        let rc = rte_eth_dev_info_get(id, &info)
        guard rc == 0 else { throw DPDKError("reading device info of port \(id)", code: rc) }
        let rxMax = info.rx_desc_lim.nb_max == 0 ? 4096 : Int(info.rx_desc_lim.nb_max)
        let txMax = info.tx_desc_lim.nb_max == 0 ? 4096 : Int(info.tx_desc_lim.nb_max)
        return PortCapabilities(
            driver: info.driver_name.map { String(cString: $0) } ?? "unknown",
            maxRxQueues: Int(info.max_rx_queues), maxTxQueues: Int(info.max_tx_queues),
            rxDescriptors: Int(info.rx_desc_lim.nb_min)...max(Int(info.rx_desc_lim.nb_min), rxMax),
            txDescriptors: Int(info.tx_desc_lim.nb_min)...max(Int(info.tx_desc_lim.nb_min), txMax),
            rxOffloads: info.rx_offload_capa, txOffloads: info.tx_offload_capa,
            minMTU: Int(info.min_mtu), maxMTU: Int(info.max_mtu))
    }

    /// The port's Ethernet address, 6 bytes in wire order.
    public var macAddress: [UInt8] {
        if tap != nil { return tapMAC }
        var addr = rte_ether_addr()
        _ = rte_eth_macaddr_get(id, &addr)
        return withUnsafeBytes(of: addr.addr_bytes) { Array($0) }
    }

    public var socket: Int32 { tap != nil ? Int32(SOCKET_ID_ANY) : rte_eth_dev_socket_id(id) }

    /// Configures queues and offloads negotiated against what the driver advertises, then sets them up.
    /// Refuses, naming the port, when it cannot give every polling core its own queue.
    public func configure(_ setup: PortSetup, pool: PacketPool) throws {
        let caps = capabilities
        guard setup.queues >= 1 else { throw SetupError("port \(name): at least one queue is needed") }
        guard setup.queues <= caps.maxRxQueues, setup.queues <= caps.maxTxQueues else {
            throw SetupError("port \(name) (\(caps.driver)) supports \(caps.maxRxQueues) RX and \(caps.maxTxQueues) TX queue(s); "
                + "\(setup.queues) polling core(s) need one each: run with fewer cores (EAL -l) or a port with more queues")
        }
        enabledTxOffloads = setup.wantedTxOffloads & caps.txOffloads
        enabledRxOffloads = setup.wantedRxOffloads & caps.rxOffloads
        if let tap {
            try configureTap(tap, queues: setup.queues, pool: pool)
            queueCount = setup.queues
            return
        }
        var conf = rte_eth_conf()
        conf.txmode.offloads = enabledTxOffloads
        conf.rxmode.offloads = enabledRxOffloads
        if setup.queues > 1 && caps.maxRxQueues > 1 {
            // Spread flows over the polling cores by the outer headers' hash where the port can.
            conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS
            conf.rx_adv_conf.rss_conf.rss_hf = vx_rss_ip_udp_tcp()
            var info = rte_eth_dev_info()
            _ = rte_eth_dev_info_get(id, &info)
            conf.rx_adv_conf.rss_conf.rss_hf &= info.flow_type_rss_offloads
            if conf.rx_adv_conf.rss_conf.rss_hf == 0 { conf.rxmode.mq_mode = RTE_ETH_MQ_RX_NONE }
        }
        var rc = rte_eth_dev_configure(id, UInt16(setup.queues), UInt16(setup.queues), &conf)
        guard rc == 0 else { throw DPDKError("configuring port \(name) with \(setup.queues) queue(s)", code: rc) }
        rssHashFunctions = conf.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS ? conf.rx_adv_conf.rss_conf.rss_hf : 0
        if let tunnel = setup.udpTunnel {
            // Most virtual devices cannot use it (-ENOTSUP); anything else is worth a line in the log.
            let result = vx_udp_tunnel_port_add(id, tunnel.udpPort, tunnel.type)
            udpTunnelResult = result
            if result != 0 && result != -ENOTSUP {
                fputs("port \(name): announcing the tunnel on UDP port \(tunnel.udpPort) failed: \(String(cString: strerror(-result)))\n", stderr)
            }
        }

        var rxDesc = UInt16(clamping: setup.rxDescriptors.clamped(to: caps.rxDescriptors))
        var txDesc = UInt16(clamping: setup.txDescriptors.clamped(to: caps.txDescriptors))
        rc = rte_eth_dev_adjust_nb_rx_tx_desc(id, &rxDesc, &txDesc)
        guard rc == 0 else { throw DPDKError("adjusting descriptor counts of port \(name)", code: rc) }

        let socket = rte_eth_dev_socket_id(id)
        let queueSocket = UInt32(bitPattern: socket < 0 ? Int32(SOCKET_ID_ANY) : socket)
        var info = rte_eth_dev_info()
        _ = rte_eth_dev_info_get(id, &info)
        for q in 0..<setup.queues {
            var rxconf = info.default_rxconf
            rxconf.offloads = enabledRxOffloads
            rc = rte_eth_rx_queue_setup(id, UInt16(q), rxDesc, queueSocket, &rxconf, pool.pointer)
            guard rc == 0 else { throw DPDKError("setting up RX queue \(q) of port \(name)", code: rc) }
            var txconf = info.default_txconf
            txconf.offloads = enabledTxOffloads
            rc = rte_eth_tx_queue_setup(id, UInt16(q), txDesc, queueSocket, &txconf)
            guard rc == 0 else { throw DPDKError("setting up TX queue \(q) of port \(name)", code: rc) }
        }
        queueCount = setup.queues
        if setup.promiscuous {
            // Not every driver has a promiscuous mode (net_null, net_ring): that is not an error.
            _ = rte_eth_promiscuous_enable(id)
        }
    }

    /// Sets the port's MTU where the driver supports it; an unsupported request is not fatal for vdevs.
    @discardableResult
    public func setMTU(_ mtu: Int) -> Int32 { tap != nil ? -ENOTSUP : rte_eth_dev_set_mtu(id, UInt16(clamping: mtu)) }

    public func start() throws {
        if let tap {
            // Up, as a NIC's link comes up; an operator may move it to another namespace or bridge afterwards.
            _ = vx_tap_set_up(tap)
            started = true
            return
        }
        let rc = rte_eth_dev_start(id)
        guard rc == 0 else { throw DPDKError("starting port \(name)", code: rc) }
        started = true
    }

    public func stop() {
        guard started else { return }
        if tap == nil { _ = rte_eth_dev_stop(id) }
        started = false
    }

    /// Stops and closes the port; for net_pcap this is what flushes the output file.
    public func close() {
        guard !closed else { return }
        stop()
        if let tap { vx_tap_close(tap); TapPort.release(id) } else { _ = rte_eth_dev_close(id) }
        closed = true
    }

    /// Stops the port and lets it go without closing it: an EAL port stays usable (a later `EthPort(id:)` can
    /// configure it again), and this object will not close it when it goes.
    public func relinquish() {
        if tap != nil { return close() }      // nobody else can take a tap port over
        stop()
        closed = true
    }

    public struct LinkStatus: Sendable { public var up: Bool; public var speedMbps: UInt32; public var fullDuplex: Bool }

    public var link: LinkStatus {
        if let tap { return LinkStatus(up: !closed && vx_tap_alive(tap) != 0, speedMbps: 0, fullDuplex: true) }
        var link = rte_eth_link()
        _ = rte_eth_link_get_nowait(id, &link)
        return LinkStatus(up: link.link_status != 0, speedMbps: link.link_speed, fullDuplex: link.link_duplex != 0)
    }

    /// The driver's own totals (all queues, all cores), as a cross-check of the per-core counters.
    public struct HardwareStats: Sendable {
        public var rxPackets, txPackets, rxBytes, txBytes, rxMissed, rxErrors, txErrors, rxNoBuffer: UInt64
    }

    public var hardwareStats: HardwareStats {
        if tap != nil {
            let t = tapStats
            func v(_ s: vx_tap_stat) -> UInt64 { t[Int(s.rawValue)] }
            return HardwareStats(rxPackets: v(VX_TAP_RX_FRAMES), txPackets: v(VX_TAP_TX_FRAMES), rxBytes: v(VX_TAP_RX_BYTES),
                                 txBytes: v(VX_TAP_TX_BYTES), rxMissed: 0,
                                 rxErrors: v(VX_TAP_RX_READ_ERRORS) + TapPort.rxDropReasons.reduce(0) { $0 + t[Int($1.rawValue)] },
                                 txErrors: v(VX_TAP_TX_WRITE_ERRORS) + v(VX_TAP_TX_BAD_METADATA), rxNoBuffer: v(VX_TAP_RX_NO_MBUFS))
        }
        var s = rte_eth_stats()
        _ = rte_eth_stats_get(id, &s)
        return HardwareStats(rxPackets: s.ipackets, txPackets: s.opackets, rxBytes: s.ibytes, txBytes: s.obytes,
                             rxMissed: s.imissed, rxErrors: s.ierrors, txErrors: s.oerrors, rxNoBuffer: s.rx_nombuf)
    }

    deinit { close() }
}

extension Int {
    func clamped(to range: ClosedRange<Int>) -> Int { Swift.min(Swift.max(self, range.lowerBound), range.upperBound) }
}

/// Virtual devices created at run time (the same as `--vdev name,args` on the EAL command line).
public enum VirtualDevice {
    /// Creates e.g. `net_pcap1` with `rx_pcap=...`; the new port is then found by `EthPort(reference: name)`.
    public static func create(_ name: String, arguments: String) throws {
        let rc = rte_vdev_init(name, arguments)
        guard rc == 0 else { throw DPDKError("creating virtual device \(name),\(arguments)", code: rc) }
    }

    /// Removes a virtual device (close its port first).
    public static func remove(_ name: String) { _ = rte_vdev_uninit(name) }
}
