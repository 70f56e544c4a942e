import CDPDK

/// Launches work on EAL worker lcores (one dedicated thread per core) and waits for it.
public enum Lcores {
    private final class Job {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Runs `body` on worker lcore `lcore`. The closure runs once for the life of the core, not per packet.
    public static func launch(on lcore: UInt32, _ body: @escaping () -> Void) throws {
        let job = Unmanaged.passRetained(Job(body)).toOpaque()
        let rc = rte_eal_remote_launch({ arg in
            let job = Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue()
            job.body()
            return 0
        }, job, lcore)
        if rc != 0 {
            Unmanaged<Job>.fromOpaque(job).release()
            throw DPDKError("launching work on lcore \(lcore)", code: rc)
        }
    }

    /// Waits for every worker lcore to finish what it was launched with.
    public static func waitAll() { rte_eal_mp_wait_lcore() }
}
