import DPDKTestSupport

// Built with `scripts/fuzz.sh packet` (-sanitize=fuzzer,address -DFUZZING), libFuzzer drives `fuzzOneInput`.
// Built normally it replays files or directories given as arguments (a corpus, a crash) and exits.
nonisolated(unsafe) var target: PacketFuzzTarget?

func runOne(_ data: UnsafeRawBufferPointer) {
    if target == nil {
        do { target = try PacketFuzzTarget() } catch { fatalError("cannot set up the pipeline: \(error)") }
    }
    target!.run(data)
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    runOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

// SwiftPM links an executable's entry point under this name (-parse-as-library leaves none): hand over to libFuzzer.
@_cdecl("PacketFuzzer_main")
public func entryPoint(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOneInput)
}
#else
import Foundation

@main
struct Replay {
    static func main() {
        var count = 0
        for path in CommandLine.arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            let files = isDirectory.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                data.withUnsafeBytes { runOne($0) }
                count += 1
            }
        }
        print("\(count) input(s) replayed without a failure")
    }
}
#endif
