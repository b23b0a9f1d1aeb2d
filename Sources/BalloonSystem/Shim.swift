// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc

package enum PageSize {
    /// sysconf(_SC_PAGESIZE) cannot fail on Linux.
    package static let bytes: Int = Int(sysconf(Int32(_SC_PAGESIZE)))
}


// Linux only (epoll, signalfd, timerfd, memfd, vsock, /proc): SwiftPM cannot
// name Linux in `platforms`, so say it where a build elsewhere would stop.
#if !os(Linux)
#error("balloond builds for Linux only")
#endif
