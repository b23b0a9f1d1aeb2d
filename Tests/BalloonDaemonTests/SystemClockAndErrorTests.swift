// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonSystem
import BalloonTestSupport
import Foundation
import SystemPackage
import Testing
@testable import BalloonDaemon

@Suite struct SystemClockTests {
    @Test func monotonicTimeDoesNotGoBack() {
        let a = SystemClock.monotonic()
        let b = SystemClock.monotonic()
        #expect(a > .zero)
        #expect(b >= a)
    }

    @Test func wallClockIsTheUnixEpochsTime() {
        let now = Date().timeIntervalSince1970
        let read = SystemClock.realtime()
        #expect(abs(read.seconds - now) < 60)
        let stamp = wallClockTimestamp()
        #expect(abs(Double(stamp.seconds) - now) < 60)
        #expect((0..<1_000_000).contains(stamp.microseconds))
    }

    @Test func durationsConvertToWholeUnitsRoundedDown() {
        #expect(Duration.milliseconds(1500).inMilliseconds == 1500)
        #expect((Duration.microseconds(2_999)).inMilliseconds == 2)
        #expect(Duration.nanoseconds(1_999).inMicroseconds == 1)
        #expect(Duration.seconds(-1).inMilliseconds == 0)
        #expect(Duration.seconds(Int64.max).inMicroseconds == .max)
    }
}

/// What the reserver's `SystemError` becomes for the controller: mlock(2)
/// fails with ENOMEM past RLIMIT_MEMLOCK and EAGAIN when pages could not be
/// had; mmap(2) the other way round.
@Suite struct ReserveErrorKinds {
    @Test(arguments: [
        ("mlock", Errno.noMemory, ReserveError.Kind.memoryLockLimit),
        ("mlock", .resourceTemporarilyUnavailable, .outOfMemory),
        ("mmap", .resourceTemporarilyUnavailable, .memoryLockLimit),
        ("mmap", .noMemory, .outOfMemory),
        ("holder", .noMemory, .other),
        ("madvise(MADV_DONTFORK)", .invalidArgument, .other),
    ])
    func kindFollowsTheCallAndErrno(call: String, errno: Errno, kind: ReserveError.Kind) {
        let cause = SystemError(call, subject: "67108864 bytes", errno: errno)
        let error = ReserveError(cause)
        #expect(error.kind == kind)
        #expect((error.cause as? SystemError) == cause)
        #expect(error.description.hasPrefix(cause.description))
    }
}
