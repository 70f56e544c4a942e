import Foundation

/// The control socket speaks newline-delimited JSON: one request object per line, one response per line, in
/// order, on a Unix stream socket. Methods are dotted names (`show.ports`, `show.stats`); later commands
/// (`fdb.add`, `vni.set`, ...) add methods and params, never change existing ones. `version` is the
/// protocol's, bumped only on incompatible change.
///
/// Limits: a request line is at most `maxRequestBytes`; a longer one is answered with `request_too_large` and the
/// connection closed. A response is one line of any length; tables that grow with the network (`show.fdb`) are
/// paged: `limit` entries (default `defaultPageSize`, at most `maxPageSize`) after the cursor `after`, and the
/// answer's `next` is the cursor for the following page (absent on the last). A client reads a response whole.
public enum ControlProtocol {
    public static let version = 1
    public static let defaultSocketPath = "/run/vxland/vxland.sock"
    public static let maxRequestBytes = 64 << 10
    /// What a client accepts as one response line before giving up with a clear message.
    public static let maxResponseBytes = 256 << 20
    public static let defaultPageSize = 4096
    public static let maxPageSize = 65536
}

public struct ControlRequest: Codable, Equatable, Sendable {
    public var id: Int
    public var method: String
    public var params: [String: String]
    public var version: Int

    public init(id: Int, method: String, params: [String: String] = [:]) {
        self.id = id; self.method = method; self.params = params; self.version = ControlProtocol.version
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(Int.self, forKey: .id) ?? 0
        method = try c.decode(String.self, forKey: .method)
        params = try c.decodeIfPresent([String: String].self, forKey: .params) ?? [:]
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? ControlProtocol.version
    }
}

public struct ControlFailure: Codable, Equatable, Error, CustomStringConvertible, Sendable {
    /// Machine-readable: `unknown_method`, `bad_request`, `bad_params`, `unsupported_version`, `request_too_large`,
    /// `timeout`, `busy` (the connection limit was reached), `internal`.
    public var code: String
    public var message: String
    public init(code: String, message: String) { self.code = code; self.message = message }
    public var description: String { message }
}

/// A response: `result` holds the method's JSON object on success, `error` says why not otherwise.
public struct ControlResponse: Codable, Sendable {
    public var id: Int
    public var ok: Bool
    public var result: Data?
    public var error: ControlFailure?

    public static func success(id: Int, result: Data) -> ControlResponse { ControlResponse(id: id, ok: true, result: result, error: nil) }
    public static func failure(id: Int, _ error: ControlFailure) -> ControlResponse { ControlResponse(id: id, ok: false, result: nil, error: error) }

    enum CodingKeys: String, CodingKey { case id, ok, result, error }

    public init(id: Int, ok: Bool, result: Data?, error: ControlFailure?) {
        self.id = id; self.ok = ok; self.result = result; self.error = error
    }

    // `result` travels as a nested JSON object, not as base64: encode it by splicing (see `encodeLine`).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int.self, forKey: .id)
        ok = try c.decode(Bool.self, forKey: .ok)
        error = try c.decodeIfPresent(ControlFailure.self, forKey: .error)
        result = nil
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(ok, forKey: .ok)
        try c.encodeIfPresent(error, forKey: .error)
    }

    /// One line of JSON: `{"id":..,"ok":..,"result":{...}}`.
    public func encodeLine() throws -> Data {
        var head = try JSONEncoder.control.encode(self)
        if let result {
            head.removeLast()   // the closing brace
            head.append(contentsOf: Array(#","result":"#.utf8))
            head.append(result)
            head.append(UInt8(ascii: "}"))
        }
        head.append(UInt8(ascii: "\n"))
        return head
    }

    /// Parses a response line; `result` comes back as the raw JSON of the nested object.
    public static func decodeLine(_ line: Data) throws -> ControlResponse {
        var response = try JSONDecoder.control.decode(ControlResponse.self, from: line)
        if let object = try JSONSerialization.jsonObject(with: line) as? [String: Any], let result = object["result"] {
            response.result = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        }
        return response
    }
}

extension JSONEncoder {
    public static var control: JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

extension JSONDecoder {
    public static var control: JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }
}
