import Foundation
import Logging
import PollMode
import CSignals

/// vxland's signals, installed first thing in `main`, before the configuration is read:
/// - SIGINT, SIGTERM, SIGQUIT request a clean stop at any point. Start-up checks for it between its phases (so
///   EAL's hugepages and runtime files are released on the way out); the running daemon within 50 ms.
/// - SIGHUP, SIGUSR1, SIGUSR2 never stop vxland. SIGHUP applies the configuration file again (`reload`): what
///   changed in it is changed, as `vxlanctl apply` does; during start-up there is nothing to reload yet.
/// - SIGPIPE is ignored: a control client that hangs up is an EPIPE on its socket, not the end of the dataplane.
///
/// The handler (C, `Sources/CSignals`) is async-signal-safe: it only sets bits in lock-free atomics.
/// Logging and stopping happen in normal context, in `check(logger:)`.
public enum DaemonSignals {
    public static let stopSignals: [Int32] = [SIGINT, SIGTERM, SIGQUIT]
    public static let toleratedSignals: [Int32] = [SIGHUP, SIGUSR1, SIGUSR2]

    /// Installs the handlers and unblocks their signals (a supervisor may have started vxland with them blocked:
    /// the mask survives exec, and a signal already pending is then delivered here). Idempotent; vxland has them
    /// from load time already (`vx_install_signals_at_load` in its main).
    public static func install() { vx_signals_install() }

    /// True once SIGINT, SIGTERM or SIGQUIT arrived.
    public static var isStopRequested: Bool { vx_signals_stop_requested() != 0 }

    /// Reports the signals that arrived since the last call; returns whether a stop was requested.
    public static func check(logger: Logger, reload: (() -> Void)? = nil) -> Bool {
        let bits = vx_signals_take()
        for sig in 1..<Int32(64) where bits & (UInt64(1) << UInt64(sig)) != 0 {
            switch sig {
            case SIGHUP:
                if let reload { reload() } else { logger.notice("SIGHUP during start-up: the file being started is the one that would be reloaded; nothing to do") }
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
    public static func watch(stopping target: StopSignal, logger: Logger, reload: (() -> Void)? = nil) {
        while !target.isRequested {
            if check(logger: logger, reload: reload) { target.request(); return }
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
