import ControlProtocol
import Foundation
import Logging

/// Control methods for watching a running vxland (tried by `ControlMethods.handle` for methods it does not know):
/// `show.cores` (each polling core's busy share, cycles per packet, rounds) and `log.level` (read or set the log
/// level live; param `level`, and `client`, the name the change is logged with).
public enum ObserveMethods {
    public static let all = ["show.cores", "log.level"]

    /// The method's answer, or nil when `request` is none of `all`.
    public static func handle(_ request: ControlRequest, dataplane: Dataplane) throws -> Data? {
        switch request.method {
        case "show.cores":
            return try JSONEncoder.control.encode(dataplane.coresReport())
        case "log.level":
            return try JSONEncoder.control.encode(try logLevel(request.params))
        default:
            return nil
        }
    }

    /// Reads the level, or sets it and says so at notice level, logged while the more verbose of the two levels is
    /// in force, so that the line appears whenever either level shows notices.
    static func logLevel(_ params: [String: String], live: LiveLogLevel = .shared,
                         logger: Logger = Logger(label: "vxland")) throws -> LogLevelReport {
        guard let text = params["level"] else { return LogLevelReport(level: live.level.rawValue) }
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            throw ControlFailure(code: "bad_params", message: "level: " + LogLevelReport.unknown(text))
        }
        let client = params["client"].flatMap(clientName) ?? "a control client"
        let previous = live.level
        let line: Logger.Message = previous == level
            ? "log level stays \(level) (set again by \(client))"
            : "log level changed from \(previous) to \(level) by \(client)"
        if level > previous { logger.notice(line) }
        live.level = level
        if level <= previous { logger.notice(line) }
        return LogLevelReport(level: level.rawValue, previous: previous.rawValue)
    }

    /// A client's name as it may appear in the log: short, letters, digits and `._-` only.
    static func clientName(_ text: String) -> String? {
        guard !text.isEmpty, text.count <= 32,
              text.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) })
        else { return nil }
        return text
    }
}
