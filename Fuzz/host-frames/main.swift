// SPDX-License-Identifier: Apache-2.0
// libFuzzer entry points for BalloonFuzz's `host-frames` body (make fuzz; docs/fuzzing.md).
import BalloonFuzz
import CFuzzDriver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTarget.hostFrames.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// SwiftPM links an executable with `main` renamed to this symbol (so tests
/// can link the module); built with -parse-as-library there is no Swift
/// entry point, so this one hands over to libFuzzer's driver.
@_cdecl("fuzz_host_frames_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzTestOneInput(data, size) }
}
