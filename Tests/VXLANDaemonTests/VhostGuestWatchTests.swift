import DPDKTestSupport
import Foundation
import Synchronization
import XCTest
@testable import VXLANDaemon

/// The large-frame flag of a vhost-user port follows the guest whatever the order of the two threads that set it.
final class VhostGuestWatchTests: XCTestCase {
    /// The control thread reads "no guest" and, before it stores that, the guest attaches and the vhost thread's
    /// event stores "takes large frames". The control thread's late store must not win: the flag ends at 1.
    /// (With one compute and one store per refresh, as before, it ended at 0 until the guest's next link event.)
    func testAStateReadBeforeAnEventNeverOverwritesTheEvent() throws {
        let flag = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        flag.initialize(to: 0)
        defer { flag.deallocate() }
        let attached = Atomic<Bool>(false)
        let computes = Atomic<Int>(0)
        let computing = DispatchSemaphore(value: 0), proceed = DispatchSemaphore(value: 0)
        let watch = VhostGuestWatch(port: 0, flag: flag) {
            let n = computes.add(1, ordering: .relaxed).newValue
            let state = attached.load(ordering: .acquiring)
            if n == 1 {                       // the control thread's first look: hold it between compute and store
                computing.signal()
                proceed.wait()
            }
            return state
        }
        let control = TestThread(name: "control") { watch.refresh() }
        computing.wait()
        // The guest attaches; the vhost thread's event runs to the end while the control thread still holds "no".
        attached.store(true, ordering: .releasing)
        let vhost = TestThread(name: "vhost") { watch.event() }
        XCTAssertTrue(vhost.join(timeout: 10))
        XCTAssertEqual(flag.pointee, 1, "the event stored the guest's state")
        proceed.signal()
        XCTAssertTrue(control.join(timeout: 10))
        XCTAssertEqual(flag.pointee, 1, "the control thread's stale state overwrote the event's")
        XCTAssertEqual(computes.load(ordering: .relaxed), 3, "the control thread looked again after the event")
    }

    /// Without an event in between, one look and one store.
    func testAQuietRefreshStoresOnce() {
        let flag = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        flag.initialize(to: 1)
        defer { flag.deallocate() }
        let computes = Atomic<Int>(0)
        let watch = VhostGuestWatch(port: 0, flag: flag) { computes.add(1, ordering: .relaxed); return false }
        watch.refresh()
        XCTAssertEqual(flag.pointee, 0)
        XCTAssertEqual(computes.load(ordering: .relaxed), 1)
    }
}
