import Foundation

/// Accumulates bytes from a stream and cuts them into newline-terminated lines. Each byte is scanned for the
/// newline once, however the stream is chunked, so a large request costs time proportional to its size.
public struct LineBuffer: Sendable {
    private var bytes: [UInt8] = []
    /// Where the current line starts.
    private var start = 0
    /// Where the newline search resumes (everything before it in the current line was scanned already).
    private var scanned = 0
    /// A line longer than this (newline excluded) is refused.
    public let maxLine: Int

    public init(maxLine: Int) { self.maxLine = maxLine }

    public enum Next: Equatable, Sendable {
        case line([UInt8])
        /// No complete line yet.
        case incomplete
        /// The current line already exceeds `maxLine`.
        case tooLong
    }

    /// Bytes of the line being assembled (0 between lines).
    public var pending: Int { bytes.count - start }

    public mutating func append(_ chunk: UnsafeRawBufferPointer) {
        // Drop what earlier lines used before growing, so the buffer holds at most one line and a chunk.
        if start > 0 && (start == bytes.count || start >= 65536) {
            bytes.removeFirst(start)
            scanned -= start
            start = 0
        }
        bytes.append(contentsOf: chunk)
    }

    public mutating func append(_ chunk: [UInt8]) { chunk.withUnsafeBytes { append($0) } }

    public mutating func next() -> Next {
        let limit = min(bytes.count, start + maxLine + 1)
        let found: Int? = bytes.withUnsafeBufferPointer { b in
            var i = scanned
            while i < limit {
                if b[i] == 10 { return i }
                i += 1
            }
            return nil
        }
        guard let newline = found else {
            scanned = limit
            return bytes.count - start > maxLine ? .tooLong : .incomplete
        }
        let line = Array(bytes[start..<newline])
        start = newline + 1
        scanned = start
        return .line(line)
    }
}

/// One control connection's protocol, without the socket: bytes in, response lines out. The server feeds it what
/// it reads and writes what it returns; the fuzzer feeds it arbitrary bytes. Requests are answered in order; a
/// request longer than `maxRequest` is answered with `request_too_large` and the connection is then closed (the
/// rest of that line cannot be told apart from a next request).
public struct ControlSession {
    public typealias Handler = (ControlRequest) throws -> Data

    private var input: LineBuffer
    private let handler: Handler
    /// Set once the session will answer nothing more (after `request_too_large`); close after flushing.
    public private(set) var finished = false
    public var pendingInput: Int { input.pending }

    public init(maxRequest: Int = ControlProtocol.maxRequestBytes, handler: @escaping Handler) {
        input = LineBuffer(maxLine: maxRequest)
        self.handler = handler
    }

    /// Adds `chunk` to the input; `answer(upTo:)` then answers the requests it completed.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer) {
        guard !finished else { return }
        input.append(chunk)
        mayHaveRequests = true
    }

    /// Whether complete requests may be waiting for `answer(upTo:)` (false once it found none).
    public private(set) var mayHaveRequests = false

    /// Answers buffered requests, in order, until the answers reach `budget` bytes (at least one request is
    /// answered if one is complete) or none is left. A client that pipelines requests without reading its
    /// answers therefore costs at most `budget` plus one answer, whatever it sent.
    public mutating func answer(upTo budget: Int) -> [UInt8] {
        var out: [UInt8] = []
        while !finished && out.count < max(1, budget) {
            switch input.next() {
            case .incomplete:
                mayHaveRequests = false
                return out
            case .tooLong:
                finished = true
                out += Self.encode(.failure(id: 0, ControlFailure(code: "request_too_large",
                    message: "request exceeds \(input.maxLine) bytes without a newline; closing the connection")))
            case .line(let line):
                if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
                out += Self.encode(respond(to: line))
            }
        }
        return out
    }

    /// The client closed its side: a last request without its newline is answered as if it had one.
    public mutating func endOfInput() -> [UInt8] {
        guard !finished, input.pending > 0 else { return [] }
        input.append([10])
        mayHaveRequests = true
        return answer(upTo: Int.max)
    }

    /// Feeds `chunk` and answers everything it completed (the fuzzer and tests; the server budgets its answers).
    public mutating func consume(_ chunk: UnsafeRawBufferPointer) -> [UInt8] {
        feed(chunk)
        return answer(upTo: Int.max)
    }

    public mutating func consume(_ chunk: [UInt8]) -> [UInt8] { chunk.withUnsafeBytes { consume($0) } }

    /// The answer to a request line that never completed in time.
    public static func timeoutLine(seconds: Double) -> [UInt8] {
        encode(.failure(id: 0, ControlFailure(code: "timeout",
            message: "request not completed within \(Int(seconds)) s; closing the connection")))
    }

    /// The single line a connection refused for lack of room gets before it is closed.
    public static func busyLine(limit: Int) -> [UInt8] {
        encode(.failure(id: 0, ControlFailure(code: "busy",
            message: "vxland is serving its maximum of \(limit) control connections; try again")))
    }

    public static func encode(_ response: ControlResponse) -> [UInt8] {
        if let line = try? response.encodeLine() { return Array(line) }
        return Array(#"{"error":{"code":"internal","message":"response could not be encoded"},"id":0,"ok":false}"#.utf8) + [10]
    }

    func respond(to line: [UInt8]) -> ControlResponse {
        let request: ControlRequest
        do {
            request = try JSONDecoder.control.decode(ControlRequest.self, from: Data(line))
        } catch {
            // Answer under the request's own id when it has a readable one, so a pipelining client can match it.
            let id = ((try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any])?["id"] as? Int ?? 0
            return .failure(id: id, ControlFailure(code: "bad_request",
                message: "request is not a JSON object with a string 'method' and string params: \(Self.describe(error))"))
        }
        guard request.version == ControlProtocol.version else {
            return .failure(id: request.id, ControlFailure(code: "unsupported_version",
                message: "protocol version \(request.version) is not supported; this vxland speaks version \(ControlProtocol.version)"))
        }
        do {
            return .success(id: request.id, result: try handler(request))
        } catch let failure as ControlFailure {
            return .failure(id: request.id, failure)
        } catch {
            return .failure(id: request.id, ControlFailure(code: "internal", message: "\(error)"))
        }
    }

    /// A decoding error in one line, without Foundation's nested debug dump.
    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.codingPath.isEmpty ? "not valid JSON" : "\(path(c.codingPath)): \(c.debugDescription)"
        case DecodingError.keyNotFound(let key, _): return "missing '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let c): return "\(path(c.codingPath)): wrong type"
        case DecodingError.valueNotFound(_, let c): return "\(path(c.codingPath)): null"
        default: return "\(error)"
        }
    }

    static func path(_ keys: [CodingKey]) -> String { keys.map(\.stringValue).joined(separator: ".") }
}
