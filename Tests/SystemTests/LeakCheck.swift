// SPDX-License-Identifier: Apache-2.0
import Glibc

/// LeakSanitizer asks this at exit (make test-asan). The system tests' own
/// process is a harness built on Foundation's Process, Pipe and FileHandle,
/// which leave objects behind (a readabilityHandler's monitor and what it
/// reaches); the Makefile sets the variable for that run only. The balloond,
/// balloon-hostd and balloonctl processes the tests start do not have this
/// function, so they are checked; so are the unit tests in this binary.
@_cdecl("__lsan_is_turned_off")
public func lsanIsTurnedOff() -> Int32 {
    getenv("BALLOOND_TEST_HARNESS_NO_LEAK_CHECK") == nil ? 0 : 1
}
