/// The raw memory of one owner (a polling core's scratch, its TX staging, a lookup cache), allocated up front and
/// freed together when the last holder of the arena lets go of it: no array is freed by hand, none twice, none
/// while a copy of its owner (a struct) still points into it. Per packet the owner uses plain pointers; the arena
/// is touched only when it is made and when it goes.
public final class Arena: @unchecked Sendable {
    private var blocks: [(pointer: UnsafeMutableRawPointer, deinitialize: (() -> Void)?)] = []

    public init() {}

    /// `count` elements of `T`, each `value`, on a cache line of their own.
    public func array<T>(_ count: Int, of value: T) -> UnsafeMutablePointer<T> {
        let n = max(1, count)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<T>.stride, alignment: max(64, MemoryLayout<T>.alignment))
        let typed = raw.bindMemory(to: T.self, capacity: n)
        typed.initialize(repeating: value, count: n)
        blocks.append((raw, _isPOD(T.self) ? nil : { typed.deinitialize(count: n) }))
        return typed
    }

    /// `byteCount` uninitialized bytes aligned to `alignment` (at least a cache line).
    public func bytes(_ byteCount: Int, alignment: Int = 64) -> UnsafeMutableRawPointer {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, byteCount), alignment: max(64, alignment))
        blocks.append((raw, nil))
        return raw
    }

    deinit {
        for block in blocks {
            block.deinitialize?()
            block.pointer.deallocate()
        }
    }
}
