import CDPDK
import PollMode
import XCTest
@testable import VXLANPipeline

/// The fast path's flag constants are literals (they fold into the code); each must be DPDK's own value, as this
/// DPDK's headers define it (`vx_dpdk_flag` in the CDPDK shim).
final class MbufFlagTests: XCTestCase {
    func testEverySwiftFlagIsDPDKs() {
        let flags: [(Int, String, UInt64)] = [
            (0, "rxL4ChecksumMask", MbufFlag.rxL4ChecksumMask),
            (1, "rxL4ChecksumNone", MbufFlag.rxL4ChecksumNone),
            (2, "rxL4ChecksumBad", MbufFlag.rxL4ChecksumBad),
            (3, "rxL4ChecksumGood", MbufFlag.rxL4ChecksumGood),
            (4, "rxIPChecksumMask", MbufFlag.rxIPChecksumMask),
            (5, "rxIPChecksumBad", MbufFlag.rxIPChecksumBad),
            (6, "rxIPChecksumGood", MbufFlag.rxIPChecksumGood),
            (7, "rxIPChecksumNone", MbufFlag.rxIPChecksumNone),
            (8, "rxOuterIPChecksumBad", MbufFlag.rxOuterIPChecksumBad),
            (9, "rxOuterL4ChecksumMask", MbufFlag.rxOuterL4ChecksumMask),
            (10, "rxOuterL4ChecksumBad", MbufFlag.rxOuterL4ChecksumBad),
            (11, "rxOuterL4ChecksumGood", MbufFlag.rxOuterL4ChecksumGood),
            (12, "rxOuterL4ChecksumInvalid", MbufFlag.rxOuterL4ChecksumInvalid),
            (13, "rxLRO", MbufFlag.rxLRO),
            (14, "indirectOrExternal", MbufFlag.indirectOrExternal),
            (15, "txOuterUDPChecksum", MbufFlag.txOuterUDPChecksum),
            (19, "txTunnelVXLAN", MbufFlag.txTunnelVXLAN),
            (20, "txTunnelMask", MbufFlag.txTunnelMask),
            (22, "txTCPSegmentation", MbufFlag.txTCPSegmentation),
            (23, "txIEEE1588", MbufFlag.txIEEE1588),
            (24, "txTCPChecksum", MbufFlag.txTCPChecksum),
            (25, "txUDPChecksum", MbufFlag.txUDPChecksum),
            (26, "txL4Mask", MbufFlag.txL4Mask),
            (27, "txIPChecksum", MbufFlag.txIPChecksum),
            (28, "txIPv4", MbufFlag.txIPv4),
            (29, "txIPv6", MbufFlag.txIPv6),
            (30, "txVLAN", MbufFlag.txVLAN),
            (31, "txOuterIPChecksum", MbufFlag.txOuterIPChecksum),
            (32, "txOuterIPv4", MbufFlag.txOuterIPv4),
            (33, "txOuterIPv6", MbufFlag.txOuterIPv6),
            (34, "RxChecksums.tunnelPacketTypeMask", UInt64(RxChecksums.tunnelPacketTypeMask)),
        ]
        for (i, name, value) in flags {
            XCTAssertEqual(value, vx_dpdk_flag(UInt32(i)), "\(name) differs from DPDK's value")
        }
        XCTAssertEqual(vx_dpdk_flag(35), UInt64.max, "the shim's table has more entries than this test checks")
    }
}
