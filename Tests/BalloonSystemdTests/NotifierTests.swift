// SPDX-License-Identifier: Apache-2.0
import Glibc
import Logging
import Testing

@testable import BalloonService

/// A real AF_UNIX datagram socket standing in for systemd's notify socket.
final class NotifySocket {
    let path: String
    let fd: Int32

    init() throws {
        path = "/tmp/balloond-notify-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(r == 0)
    }

    /// The next datagram, or nil after `timeoutMilliseconds`.
    func receive(timeoutMilliseconds: Int32 = 1000) -> String? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

/// Collects log messages, to see that failures are reported.
final class CapturedLogs: @unchecked Sendable {
    private var lock = pthread_mutex_t()
    private var _messages: [(Logger.Level, String)] = []
    init() { pthread_mutex_init(&lock, nil) }
    func append(_ level: Logger.Level, _ text: String) {
        pthread_mutex_lock(&lock); _messages.append((level, text)); pthread_mutex_unlock(&lock)
    }
    var messages: [(Logger.Level, String)] {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return _messages
    }
}

struct CapturingHandler: LogHandler {
    let logs: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { logs.append(event.level, "\(event.message)") }
}

/// These tests set NOTIFY_SOCKET and WATCHDOG_* in this process: one at a time.
@Suite(.serialized) struct SystemdNotifierTests {
    let logs = CapturedLogs()
    var logger: Logger { Logger(label: "test") { _ in CapturingHandler(logs: logs) } }

    init() {
        unsetenv("NOTIFY_SOCKET")
        unsetenv("WATCHDOG_USEC")
        unsetenv("WATCHDOG_PID")
    }

    @Test func outsideSystemdEverythingIsANoOp() {
        let notifier = SystemdNotifier(logger: logger)
        #expect(!notifier.supervised)
        #expect(notifier.watchdogInterval == nil)
        notifier.ready()
        notifier.status("x")
        notifier.watchdog()
        #expect(notifier.failureCounts.isEmpty)
        #expect(logs.messages.isEmpty)
    }

    @Test func sendsEachStateToTheNotifySocket() throws {
        let socket = try NotifySocket()
        setenv("NOTIFY_SOCKET", socket.path, 1)
        defer { unsetenv("NOTIFY_SOCKET") }
        let notifier = SystemdNotifier(logger: logger)
        #expect(notifier.supervised)
        notifier.ready()
        #expect(socket.receive() == "READY=1")
        notifier.status("target 1 GiB, actual 512 MiB, moving, host attached")
        #expect(socket.receive() == "STATUS=target 1 GiB, actual 512 MiB, moving, host attached")
        notifier.status("two\nlines")
        #expect(socket.receive() == "STATUS=two lines")
        notifier.reloading()
        let reloading = try #require(socket.receive())
        #expect(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC="))
        #expect(UInt64(reloading.split(separator: "=").last ?? "") != nil)
        notifier.ready()
        #expect(socket.receive() == "READY=1")
        notifier.watchdog()
        #expect(socket.receive() == "WATCHDOG=1")
        notifier.stopping()
        #expect(socket.receive() == "STOPPING=1")
        #expect(notifier.failureCounts.isEmpty)
        #expect(logs.messages.isEmpty)
    }

    /// `@NAME`: the abstract namespace, as systemd may give it (no file; the
    /// address is exactly the name, no terminating NUL).
    @Test func anAbstractNotifySocket() throws {
        let name = "balloond-notify-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in name.utf8.enumerated() { raw[i + 1] = byte }
        }
        let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + 1 + name.utf8.count
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        try #require(r == 0)
        setenv("NOTIFY_SOCKET", "@" + name, 1)
        defer { unsetenv("NOTIFY_SOCKET") }
        let notifier = SystemdNotifier(logger: logger)
        notifier.ready()
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 1000) == 1)
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(n > 0 && String(decoding: buffer[0..<max(n, 0)], as: UTF8.self) == "READY=1")
        #expect(notifier.failureCounts.isEmpty, "\(logs.messages)")
    }

    @Test func watchdogIntervalFromTheEnvironment() {
        setenv("WATCHDOG_USEC", "3000000", 1)
        setenv("WATCHDOG_PID", "\(getpid())", 1)
        defer { unsetenv("WATCHDOG_USEC"); unsetenv("WATCHDOG_PID") }
        #expect(SystemdNotifier(logger: logger).watchdogInterval == .seconds(3))
    }

    @Test func aWatchdogForAnotherProcessIsNotOurs() {
        setenv("WATCHDOG_USEC", "3000000", 1)
        setenv("WATCHDOG_PID", "\(getpid() + 1)", 1)
        defer { unsetenv("WATCHDOG_USEC"); unsetenv("WATCHDOG_PID") }
        #expect(SystemdNotifier(logger: logger).watchdogInterval == nil)
    }

    @Test func failuresAreReportedOnceAndRecoveryToo() throws {
        let path = "/tmp/balloond-notify-test-missing-\(getpid()).sock"
        setenv("NOTIFY_SOCKET", path, 1)
        defer { unsetenv("NOTIFY_SOCKET") }
        let notifier = SystemdNotifier(logger: logger)
        notifier.watchdog()
        notifier.watchdog()
        notifier.watchdog()
        #expect(notifier.failureCounts["WATCHDOG=1"] == 3)
        let errors = logs.messages.filter { $0.0 == .error }
        #expect(errors.count == 1)
        #expect(errors.first?.1.contains("sd_notify(WATCHDOG=1) failed") == true)
        #expect(errors.first?.1.contains("No such file or directory") == true)

        // The socket appears: the next ping works and the recovery is logged.
        let socket = try NotifySocket()
        setenv("NOTIFY_SOCKET", socket.path, 1)
        notifier.watchdog()
        #expect(socket.receive() == "WATCHDOG=1")
        #expect(notifier.failureCounts.isEmpty)
        #expect(logs.messages.contains { $0.0 == .notice && $0.1.contains("works again after 3 failure(s)") })
    }
}
