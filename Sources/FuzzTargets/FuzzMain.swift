import Foundation

/// The two ways a fuzzer executable runs: under libFuzzer (built by `scripts/fuzz.sh` with -DFUZZING), or plainly
/// as a replayer of files and directories given as arguments.
public enum FuzzMain {
    #if FUZZING
    @_silgen_name("LLVMFuzzerRunDriver")
    static func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>,
                                _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                                _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

    /// Hands the process to libFuzzer, which calls `callback` per input. SwiftPM links an executable's entry
    /// point under `<Module>_main`, and -parse-as-library leaves none: each fuzzer defines that symbol to call this.
    public static func libFuzzer(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                                 _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32 {
        var count = argc
        var arguments = argv
        return runFuzzerDriver(&count, &arguments, callback)
    }
    #endif

    /// Replays every file named in `arguments` (directories: every file in them, in name order) and says how many.
    public static func replay(_ arguments: some Sequence<String>, through target: (UnsafeRawBufferPointer) -> Void) {
        let count = FuzzTargets.replay(Array(arguments), through: target)
        print("\(count) input(s) replayed without a failure")
    }
}
