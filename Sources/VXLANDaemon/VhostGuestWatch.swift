import CDPDK
import Glibc
import Synchronization

/// Whether the guest behind a vhost-user port takes large TCP frames (it negotiated TSO and partial checksums, and
/// its link is up), kept in the byte the polling cores read (`portTakesLargeFrames`). Two threads set it: the vhost
/// thread, from net_vhost's link-state event as a guest attaches or goes, and the control thread, once when it
/// starts watching (for a guest that attached before). Each computes the state and then stores it, so a store of a
/// state computed before an event could land after the event's own store and undo it. `refresh` therefore stores
/// again until no event came in while it computed: whatever the order, the last store holds the state computed
/// last, after every event.
final class VhostGuestWatch: @unchecked Sendable {
    let port: UInt16
    let flag: UnsafeMutablePointer<UInt8>
    /// Events seen; an event counts before it computes.
    let events = Atomic<UInt32>(0)
    /// What the guest's state is now (tests give their own).
    let takesLargeFrames: () -> Bool
    /// Whether the callback holds a retain of this watch (registered, not yet unregistered).
    private var registered = false

    init(port: UInt16, flag: UnsafeMutablePointer<UInt8>, takesLargeFrames: (() -> Bool)? = nil) {
        self.port = port
        self.flag = flag
        self.takesLargeFrames = takesLargeFrames ?? {
            var link = rte_eth_link()
            return rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == UInt16(RTE_ETH_LINK_UP)
                && vx_vhost_guest_takes_tso(port) != 0
        }
    }

    /// Stores the guest's state as it is now; again if an event came in meanwhile.
    func refresh() {
        while true {
            let seen = events.load(ordering: .acquiring)
            vx_store_release_u8(flag, takesLargeFrames() ? 1 : 0)
            // The store must be visible before the count is read again (release/acquire alone allow the load to
            // pass the store).
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            if events.load(ordering: .acquiring) == seen { return }
        }
    }

    /// A link-state event (on the vhost thread).
    func event() {
        events.add(1, ordering: .acquiringAndReleasing)
        refresh()
    }

    /// net_vhost's callback: `arg` is the watch, retained while registered.
    static let callback: @convention(c) (UInt16, rte_eth_event_type, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = { _, _, arg, _ in
        guard let arg else { return 0 }
        Unmanaged<VhostGuestWatch>.fromOpaque(arg).takeUnretainedValue().event()
        return 0
    }

    /// Starts watching: registers for link events, then reads the state once.
    func start() -> Int32 {
        let arg = Unmanaged.passRetained(self).toOpaque()
        let rc = rte_eth_dev_callback_register(port, RTE_ETH_EVENT_INTR_LSC, Self.callback, arg)
        if rc != 0 { Unmanaged<VhostGuestWatch>.fromOpaque(arg).release() } else { registered = true }
        refresh()
        return rc
    }

    /// Stops watching. DPDK refuses to unregister a callback while it runs (-EAGAIN): retried until it is not
    /// running, so that no event arrives after this returns.
    func stop() {
        guard registered else { return }
        registered = false
        let arg = Unmanaged.passUnretained(self).toOpaque()
        while true {
            let rc = rte_eth_dev_callback_unregister(port, RTE_ETH_EVENT_INTR_LSC, Self.callback, arg)
            if rc == -EAGAIN { usleep(100); continue }
            if rc >= 0 { Unmanaged<VhostGuestWatch>.fromOpaque(arg).release() }
            return
        }
    }
}
