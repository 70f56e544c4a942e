import DPDKTestSupport
import FuzzTargets

// Under libFuzzer (scripts/fuzz.sh packet), or plainly as a replayer of inputs (see FuzzMain). One pipeline
// serves every input, so learned state carries over from input to input as it would on the wire.
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
    if let data { runOne(UnsafeRawBufferPointer(start: data, count: size)) }
    return 0
}

@_cdecl("PacketFuzzer_main")
public func entryPoint(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzMain.libFuzzer(argc, argv, fuzzOneInput)
}
#else
@main
struct Replay {
    static func main() { FuzzMain.replay(CommandLine.arguments.dropFirst(), through: runOne) }
}
#endif
