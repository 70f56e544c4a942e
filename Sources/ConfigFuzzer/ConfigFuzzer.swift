import FuzzTargets

// Built with `scripts/fuzz.sh` (-sanitize=fuzzer,address -DFUZZING), libFuzzer drives `fuzzOneInput`.
// Built normally it replays files or directories given as arguments (a corpus, a crash) and exits.
#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    FuzzTargets.configuration(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

// SwiftPM links an executable's entry point under this name (-parse-as-library leaves none): hand over to libFuzzer.
@_cdecl("ConfigFuzzer_main")
public func entryPoint(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOneInput)
}
#else
@main
struct Replay {
    static func main() {
        let count = FuzzTargets.replay(Array(CommandLine.arguments.dropFirst()), through: FuzzTargets.configuration)
        print("\(count) input(s) replayed without a failure")
    }
}
#endif
