import Foundation
import Logging
import PollMode
import Synchronization

/// vxland's signals, installed first thing in `main`, before the configuration is read:
/// - SIGINT, SIGTERM, SIGQUIT request a clean stop at any point. Start-up checks for it between its phases (so
///   EAL's hugepages and runtime files are released on the way out); the running daemon within 50 ms.
/// - SIGHUP, SIGUSR1, SIGUSR2 never stop vxland. SIGHUP is reserved for reloading the configuration.
/// - SIGPIPE is ignored: a control client that hangs up is an EPIPE on its socket, not the end of the dataplane.
///
/// The handler is async-signal-safe: it only sets bits in lock-free atomics (initialised before it is installed).
/// Logging and stopping happen in normal context, in `check(logger:)`.
public enum DaemonSignals {
    public static let stopSignals: [Int32] = [SIGINT, SIGTERM, SIGQUIT]
    public static let toleratedSignals: [Int32] = [SIGHUP, SIGUSR1, SIGUSR2]

    /// One bit per signal number received and not yet reported by `check(logger:)`.
    private static let received = Atomic<UInt64>(0)
    /// Set by the first stop signal and never cleared: a stop requested before the dataplane exists still stops it.
    private static let stop = Atomic<Bool>(false)

    private static func handle(_ signal: Int32) {
        if signal == SIGINT || signal == SIGTERM || signal == SIGQUIT { stop.store(true, ordering: .sequentiallyConsistent) }
        if signal > 0, signal < 64 { received.bitwiseOr(UInt64(1) << UInt64(signal), ordering: .sequentiallyConsistent) }
    }

    /// Installs the handlers and unblocks their signals (a supervisor may have started vxland with them blocked:
    /// the mask survives exec, and a signal already pending is then delivered here). Idempotent.
    public static func install() {
        // Touch the atomics so that they are initialised before a handler can run.
        _ = received.load(ordering: .relaxed)
        _ = stop.load(ordering: .relaxed)
        signal(SIGPIPE, SIG_IGN)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { DaemonSignals.handle($0) }
        sigemptyset(&action.sa_mask)
        // SA_RESTART: a signal never makes a blocking call on another thread (control socket, DPDK's own threads) fail.
        action.sa_flags = SA_RESTART
        var mask = sigset_t()
        sigemptyset(&mask)
        for sig in stopSignals + toleratedSignals {
            sigaction(sig, &action, nil)
            sigaddset(&mask, sig)
        }
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
    }

    /// True once SIGINT, SIGTERM or SIGQUIT arrived.
    public static var isStopRequested: Bool { stop.load(ordering: .sequentiallyConsistent) }

    /// Reports the signals that arrived since the last call; returns whether a stop was requested.
    public static func check(logger: Logger) -> Bool {
        let bits = received.exchange(0, ordering: .sequentiallyConsistent)
        for sig in 1..<Int32(64) where bits & (UInt64(1) << UInt64(sig)) != 0 {
            switch sig {
            case SIGHUP:
                logger.notice("SIGHUP: reloading the configuration is not supported yet; vxland keeps running with the configuration it started with")
            case SIGINT, SIGTERM, SIGQUIT:
                logger.notice("\(name(sig)): stopping")
            default:
                logger.notice("\(name(sig)): ignored")
            }
        }
        return isStopRequested
    }

    /// Until `target` is requested (by a signal or otherwise): reports signals and turns a stop signal into
    /// `target.request()`. Polls every 50 ms.
    public static func watch(stopping target: StopSignal, logger: Logger) {
        while !target.isRequested {
            if check(logger: logger) { target.request(); return }
            usleep(50_000)
        }
    }

    static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGHUP: "SIGHUP"
        case SIGINT: "SIGINT"
        case SIGQUIT: "SIGQUIT"
        case SIGTERM: "SIGTERM"
        case SIGUSR1: "SIGUSR1"
        case SIGUSR2: "SIGUSR2"
        default: "signal \(sig)"
        }
    }
}
