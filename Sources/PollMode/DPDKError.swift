import CDPDK

/// A DPDK call that failed, with the operation that was attempted and DPDK's own explanation.
public struct DPDKError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let code: Int32

    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code < 0 ? -code : code
    }

    /// For calls that report failure through rte_errno.
    public static func fromErrno(_ operation: String) -> DPDKError { DPDKError(operation, code: vx_errno()) }

    public var description: String { "\(operation): \(String(cString: rte_strerror(code))) (errno \(code))" }
}

/// A request that the dataplane refuses before touching any device, with a message naming the problem.
public struct SetupError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
