import ControlProtocol
import Foundation
import VTEPConfig

/// What the fuzzers run on each input, as plain functions: the libFuzzer executables call them, and the tests
/// replay the committed corpus (seeds and every input that once failed) through them. Each one checks the
/// invariants itself and stops the process (`fatalError`) when one breaks, so libFuzzer records the input.
public enum FuzzTargets {
    /// Arbitrary bytes as a configuration file: either a configuration that keeps its promises or a ConfigError
    /// whose message names where the problem is. Never a crash, never another error type.
    public static func configuration(_ data: UnsafeRawBufferPointer) {
        guard let text = String(validating: data, as: UTF8.self) else { return }
        do {
            let c = try ConfigParser.parse(text)
            check(Set(c.vnis.map(\.vni)).count == c.vnis.count, "duplicate VNI accepted")
            for s in c.vnis {
                check(s.vni >= 1 && s.vni <= VTEPConfiguration.maxVNI, "VNI \(s.vni) accepted")
                check(c.vniSettings(s.vni) != nil, "configured VNI \(s.vni) not found by segment()")
            }
            check((576...9216).contains(c.underlay.mtu), "MTU \(c.underlay.mtu) accepted")
            for e in c.fdb { check(c.vniSettings(e.vni) != nil, "fdb entry for unconfigured VNI \(e.vni) accepted") }
        } catch let error as ConfigError {
            check(!error.description.isEmpty, "empty error message")
        } catch {
            fatalError("the parser threw something other than a ConfigError: \(error)")
        }
    }

    /// Arbitrary bytes as a control connection's input, delivered in chunks whose sizes the input's first bytes
    /// choose: every answer is one well-formed response line, answers never outnumber the lines sent, a request
    /// line over the limit ends the session, and nothing crashes.
    public static func controlSession(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 2 else { return }
        let chunkSize = 1 + Int(data[0]) * 4
        let maxRequest = 64 + Int(data[1]) * 16
        let stream = UnsafeRawBufferPointer(rebasing: data[2...])
        var handled = 0
        var session = ControlSession(maxRequest: maxRequest) { request in
            handled += 1
            if request.method == "fail" { throw ControlFailure(code: "bad_params", message: "asked to fail") }
            if request.method.hasPrefix("throw") { throw CocoaError(.featureUnsupported) }
            return try JSONEncoder.control.encode(["method": request.method, "params": request.params.description])
        }
        var out: [UInt8] = []
        var offset = 0
        while offset < stream.count {
            let n = min(chunkSize, stream.count - offset)
            out += session.consume(UnsafeRawBufferPointer(rebasing: stream[offset..<offset + n]))
            offset += n
        }
        let newlines = stream.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
        check(out.isEmpty || out.last == 10, "an answer without its newline")
        let lines = out.split(separator: 10, omittingEmptySubsequences: false).dropLast()
        check(lines.count <= newlines + 1, "\(lines.count) answers to \(newlines) lines")
        check(handled <= lines.count, "a request was handled but not answered")
        for line in lines {
            guard let response = try? ControlResponse.decodeLine(Data(line)) else { fatalError("unparseable answer: \(String(decoding: line, as: UTF8.self))") }
            check(response.ok == (response.error == nil), "ok and error disagree")
            check(response.ok == (response.result != nil), "ok and result disagree")
            if response.error?.code == "request_too_large" { check(session.finished, "session goes on after request_too_large") }
        }
    }

    static func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("invariant broken: \(message())") }
    }

    /// Runs `target` on every file in `paths` (files or directories); returns how many inputs ran.
    @discardableResult
    public static func replay(_ paths: [String], through target: (UnsafeRawBufferPointer) -> Void) -> Int {
        var count = 0
        let fm = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            let files = isDirectory.boolValue
                ? ((try? fm.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                guard let data = fm.contents(atPath: file) else { continue }
                data.withUnsafeBytes { target($0) }
                count += 1
            }
        }
        return count
    }
}
