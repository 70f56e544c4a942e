import ControlProtocol
import Foundation
import PollMode
import VTEPConfig
import VXLANPipeline

/// The control methods the daemon answers. `show.*` reads counters; later issues add methods that change state.
public enum ControlMethods {
    public static let all = ["show.ports", "show.stats", "show.fdb", "show.neighbors", "stats.clear", "ping"]
        + ChangeMethods.parameters.keys.sorted() + TraceMethods.parameters.keys.sorted()

    public static func handle(_ request: ControlRequest, dataplane: Dataplane) throws -> Data {
        do { return try answer(request, dataplane: dataplane) } catch let error as ChangeError {
            // A change refused by the tables (resources exhausted, an object in use): nothing was changed.
            throw ControlFailure(code: "refused", message: error.description)
        } catch let failure as ControlFailure {
            // A change request refused for its parameters is logged too (the tables' refusals are, by Dataplane).
            if ChangeMethods.parameters[request.method] != nil, !request.method.hasPrefix("show.") {
                dataplane.logger.info("\(ChangeMethods.origin): \(request.method) refused: \(failure.message)")
            }
            throw failure
        }
    }

    static func answer(_ request: ControlRequest, dataplane: Dataplane) throws -> Data {
        let encoder = JSONEncoder.control
        switch request.method {
        case "show.ports":
            return try encoder.encode(dataplane.portsReport())
        case "show.stats":
            return try encoder.encode(dataplane.statsReport())
        case "show.fdb":
            let query = try FDBQuery(request.params, isConfigured: { dataplane.configuration.vniSettings($0) != nil })
            return try encoder.encode(dataplane.fdbReport(query))
        case "show.neighbors":
            return try encoder.encode(dataplane.neighborsReport())
        case "stats.clear":
            dataplane.clearStats()
            return try encoder.encode(["cleared": "stats"])
        case "ping":
            return try encoder.encode(["pong": "vxland", "protocol": String(ControlProtocol.version), "dpdk": EAL.version])
        default:
            if let answer = try ChangeMethods.handle(request, dataplane: dataplane) { return answer }
            if let answer = try ObserveMethods.handle(request, dataplane: dataplane) { return answer }
            if let answer = try TraceMethods.handle(request, dataplane: dataplane) { return answer }
            throw ControlFailure(code: "unknown_method",
                                 message: "unknown method '\(request.method)'; this vxland knows: \((all + ObserveMethods.all).joined(separator: ", "))")
        }
    }
}

/// `show.fdb`'s parameters: `vni`, and the page: `limit` entries after the cursor `after` ("VNI/MAC").
public struct FDBQuery: Equatable, Sendable {
    public var vni: UInt32?
    public var after: (vni: UInt32, mac: UInt64)?
    public var limit: Int

    public init(vni: UInt32? = nil, after: (vni: UInt32, mac: UInt64)? = nil, limit: Int = ControlProtocol.defaultPageSize) {
        self.vni = vni; self.after = after; self.limit = limit
    }

    public static func == (a: FDBQuery, b: FDBQuery) -> Bool {
        a.vni == b.vni && a.limit == b.limit && a.after?.vni == b.after?.vni && a.after?.mac == b.after?.mac
    }

    init(_ params: [String: String], isConfigured: (UInt32) -> Bool) throws {
        self.init()
        if let text = params["vni"] {
            guard let v = UInt32(text), VTEPConfiguration.vniRange.contains(v) else {
                throw ControlFailure(code: "bad_params",
                                     message: "vni: '\(text)' is not a VNI (\(VTEPConfiguration.minVNI)-\(VTEPConfiguration.maxVNI))")
            }
            guard isConfigured(v) else { throw ControlFailure(code: "bad_params", message: "vni: VNI \(v) is not configured") }
            vni = v
        }
        if let text = params["limit"] {
            guard let n = Int(text), n >= 1, n <= ControlProtocol.maxPageSize else {
                throw ControlFailure(code: "bad_params", message: "limit: '\(text)' is not a page size (1-\(ControlProtocol.maxPageSize))")
            }
            limit = n
        }
        if let text = params["after"] {
            guard let cursor = Self.parseCursor(text) else {
                throw ControlFailure(code: "bad_params", message: "after: '\(text)' is not a cursor (VNI/MAC, as in a page's 'next')")
            }
            after = cursor
        }
    }

    public static func cursor(vni: UInt32, mac: MACAddress) -> String { "\(vni)/\(mac)" }

    static func parseCursor(_ text: String) -> (vni: UInt32, mac: UInt64)? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let vni = UInt32(parts[0]), let mac = MACAddress(String(parts[1])) else { return nil }
        return (vni, mac.integer)
    }
}
