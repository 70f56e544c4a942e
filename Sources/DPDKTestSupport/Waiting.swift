import Foundation

/// Waits for an observable condition instead of sleeping and hoping: polls `condition` until it holds or `seconds`
/// pass, and says which. Tests assert on the answer, so a slow host only waits longer, never fails differently.
@discardableResult
public func waitUntil(seconds: Double = 10, pollMicroseconds: UInt32 = 1000, _ condition: () -> Bool) -> Bool {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let deadline = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
    while true {
        if condition() { return true }
        clock_gettime(CLOCK_MONOTONIC, &now)
        if Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 >= deadline { return condition() }
        usleep(pollMicroseconds)
    }
}
