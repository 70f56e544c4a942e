import FuzzTargets

// Under libFuzzer (scripts/fuzz.sh), or plainly as a replayer of inputs (see FuzzMain).
#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    if let data { FuzzTargets.controlSession(UnsafeRawBufferPointer(start: data, count: size)) }
    return 0
}

@_cdecl("ControlFuzzer_main")
public func entryPoint(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzMain.libFuzzer(argc, argv, fuzzOneInput)
}
#else
@main
struct Replay {
    static func main() { FuzzMain.replay(CommandLine.arguments.dropFirst(), through: FuzzTargets.controlSession) }
}
#endif
