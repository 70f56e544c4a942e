import Logging
import Synchronization

/// vxland's log level, one for the whole process: every `Logger` made through `LiveLevelLogHandler` consults it at
/// each message, so `vxlanctl log level debug` changes what loggers created long before (the daemon's, the control
/// server's) let through. Lock-free: any thread may read or set it.
public final class LiveLogLevel: Sendable {
    /// The level vxland bootstraps swift-log with and `log.level` changes.
    public static let shared = LiveLogLevel(.info)

    private let raw: Atomic<Int>

    public init(_ level: Logger.Level) { raw = Atomic(LiveLogLevel.index(level)) }

    public var level: Logger.Level {
        get { Logger.Level.allCases[raw.load(ordering: .relaxed)] }
        set { raw.store(LiveLogLevel.index(newValue), ordering: .relaxed) }
    }

    /// Sets `level`, returning the one it replaces.
    @discardableResult
    public func exchange(_ level: Logger.Level) -> Logger.Level {
        Logger.Level.allCases[raw.exchange(LiveLogLevel.index(level), ordering: .relaxed)]
    }

    private static func index(_ level: Logger.Level) -> Int { Logger.Level.allCases.firstIndex(of: level)! }
}

/// A log handler whose level is the shared `LiveLogLevel`, writing through another handler (vxland: swift-log's
/// `StreamLogHandler` on standard error). A logger given a level of its own (`logger.logLevel = ...`) keeps that one,
/// as swift-log's value semantics ask; nothing in vxland does.
public struct LiveLevelLogHandler<Inner: LogHandler>: LogHandler {
    public var inner: Inner
    public let shared: LiveLogLevel
    private var own: Logger.Level?

    public init(_ inner: Inner, level shared: LiveLogLevel = .shared) {
        self.inner = inner
        self.shared = shared
    }

    public var logLevel: Logger.Level {
        get { own ?? shared.level }
        set { own = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) { inner.log(event: event) }
}
