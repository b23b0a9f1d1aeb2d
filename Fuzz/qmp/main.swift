// SPDX-License-Identifier: Apache-2.0
// libFuzzer entry point for BalloonFuzz's `qmp` body (make fuzz; docs/fuzzing.md).
import BalloonFuzz

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzTarget.qmp.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
