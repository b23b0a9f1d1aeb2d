// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import Glibc
import SystemPackage
import Testing

/// Signal masks are per thread and Swift Testing runs tests on several
/// threads; a process-directed signal (kill(getpid(), …)) would go to any
/// thread that does not block it and SIGUSR1's default action ends the
/// process. So each test blocks on its own thread, sends with
/// pthread_kill(pthread_self(), …) to that thread, reads the signalfd from the
/// same thread (synchronous test bodies do not hop threads), and restores the
/// mask afterwards.
@Suite("SignalDescriptor", .serialized)
struct SignalDescriptorTests {
    /// Runs `body` and then restores this thread's signal mask.
    func withSavedMask(_ body: () throws -> Void) rethrows {
        var saved = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        try body()
    }

    func isBlocked(_ signal: Int32) -> Bool {
        var current = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &current)
        return sigismember(&current, signal) == 1
    }

    @Test func sigusr1BecomesReadableAndNextReturnsIt() throws {
        try withSavedMask {
            let signals = try SignalDescriptor(signals: [SIGUSR1])
            #expect(isBlocked(SIGUSR1), "the constructor blocks the signal for this thread")
            #expect(signals.next() == nil, "nothing pending yet")
            let epoll = try Epoll()
            try epoll.add(signals.descriptor, events: .readable, token: 15)
            #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)

            #expect(pthread_kill(pthread_self(), SIGUSR1) == 0)

            let ready = try epoll.wait(timeout: .milliseconds(1000))
            #expect(ready.map(\.token) == [15])
            #expect(ready.first?.events.contains(.readable) == true)
            #expect(signals.next() == SIGUSR1)
            #expect(signals.next() == nil, "consumed")
            #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
        }
    }

    @Test func severalSignalsAreEachDelivered() throws {
        try withSavedMask {
            let signals = try SignalDescriptor(signals: [SIGUSR1, SIGUSR2, SIGHUP])
            #expect(isBlocked(SIGUSR2) && isBlocked(SIGHUP))
            #expect(pthread_kill(pthread_self(), SIGUSR2) == 0)
            #expect(pthread_kill(pthread_self(), SIGHUP) == 0)
            var got: Set<Int32> = []
            while let s = signals.next() { got.insert(s) }
            #expect(got == [SIGUSR2, SIGHUP])
            // Standard signals do not queue: two SIGUSR1 before a read are one.
            #expect(pthread_kill(pthread_self(), SIGUSR1) == 0)
            #expect(pthread_kill(pthread_self(), SIGUSR1) == 0)
            #expect(signals.next() == SIGUSR1)
            #expect(signals.next() == nil)
        }
    }

    @Test func aSignalOutsideTheSetIsNotRead() throws {
        try withSavedMask {
            let signals = try SignalDescriptor(signals: [SIGUSR1])
            // SIGUSR2 is blocked here by hand so it stays pending, not delivered.
            var usr2 = sigset_t()
            sigemptyset(&usr2)
            sigaddset(&usr2, SIGUSR2)
            pthread_sigmask(SIG_BLOCK, &usr2, nil)
            #expect(pthread_kill(pthread_self(), SIGUSR2) == 0)
            #expect(signals.next() == nil)
            // Take it out of the pending set before the mask is restored.
            var timeout = timespec(tv_sec: 0, tv_nsec: 0)
            #expect(sigtimedwait(&usr2, nil, &timeout) == SIGUSR2)
        }
    }
}

@Suite("StreamSocket and VirtioSerialPort")
struct StreamSocketTests {
    @Test func listenConnectAcceptAndExchange() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("balloond.sock")
        let listener = try StreamSocket.listenUnix(path: path)
        #expect(try StreamSocket.accept(listener) == nil, "no connection yet: nil, not an error")
        let client = try StreamSocket.connectUnix(path: path)
        #expect(fileStatusFlags(client) & O_NONBLOCK == 0, "blocking unless asked")
        let server = try #require(try StreamSocket.accept(listener))
        #expect(fileStatusFlags(server) & O_NONBLOCK != 0, "accepted connections are non-blocking")
        #expect(fcntl(server.raw, F_GETFD) & FD_CLOEXEC != 0)

        let request = Array(#"{"execute":"sync","arguments":{"id":1},"id":1}"#.utf8) + [0x0A]
        try client.writeAll([0xFF] + request)
        #expect(try receive(server, exactly: request.count + 1) == [0xFF] + request)
        _ = try send(server, Array("{\"return\":1,\"id\":1}\n".utf8))
        #expect(try receive(client, exactly: 20) == Array("{\"return\":1,\"id\":1}\n".utf8))
        #expect(try receive(server) == nil, "nothing more: would block")
        client.close()
        #expect(try receive(server) == [], "client gone: end of file")
    }

    @Test func nonBlockingConnect() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("s")
        let listener = try StreamSocket.listenUnix(path: path)
        let client = try StreamSocket.connectUnix(path: path, nonBlocking: true)
        #expect(fileStatusFlags(client) & O_NONBLOCK != 0)
        #expect(try receive(client) == nil)
        _ = listener
    }

    @Test func staleSocketFileFromADeadListenerIsReplaced() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("stale.sock")
        let old = try StreamSocket.listenUnix(path: path)
        old.close()
        var st = stat()
        #expect(lstat(path, &st) == 0, "the socket file outlives its listener")
        #expect(throws: SystemError.self) { _ = try StreamSocket.connectUnix(path: path) }

        let listener = try StreamSocket.listenUnix(path: path)
        let client = try StreamSocket.connectUnix(path: path)
        let server = try #require(try StreamSocket.accept(listener))
        _ = try send(client, [42])
        #expect(try receive(server, exactly: 1) == [42])
    }

    @Test func liveListenerOnTheSamePathIsRefused() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("live.sock")
        let live = try StreamSocket.listenUnix(path: path)
        do {
            _ = try StreamSocket.listenUnix(path: path)
            Issue.record("a second listener replaced a live one")
        } catch {
            #expect(error.cause == .socketInUse)
            #expect(error.errno == nil, "no syscall failed: no errno")
            #expect(error.subject?.contains(path) == true)
            #expect(error.description.contains("another process is listening"), "\(error)")
        }
        // The live listener is untouched and still works.
        let client = try StreamSocket.connectUnix(path: path)
        var server: Descriptor?
        // The refused attempt's probe connection is queued first.
        for _ in 0..<2 { if let s = try StreamSocket.accept(live) { server = s } }
        _ = try send(client, [1])
        #expect(try receive(try #require(server), exactly: 1) == [1])
    }

    @Test func regularFileAtThePathIsRefused() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("not-a-socket")
        let fd = try Descriptor.open(path, flags: O_WRONLY | O_CREAT, mode: 0o600)
        try fd.writeAll(Array("precious".utf8))
        fd.close()
        do {
            _ = try StreamSocket.listenUnix(path: path)
            Issue.record("listened over a regular file")
        } catch {
            #expect(error.cause == .notASocket)
            #expect(error.errno == nil, "no syscall failed: no errno")
            #expect(error.subject?.contains(path) == true)
            #expect(error.description.contains("not a socket"), "\(error)")
        }
        #expect(try readWholeFile(path) == Array("precious".utf8), "the file is left alone")
    }

    @Test func pathLongerThanSunPathIsENAMETOOLONG() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file(String(repeating: "x", count: 120))
        #expect(path.utf8.count > 108)
        do {
            _ = try StreamSocket.listenUnix(path: path)
            Issue.record("bound a path longer than sun_path")
        } catch {
            #expect(error.operation == "bind")
            #expect(error.subject == path)
            #expect(error.errno == .fileNameTooLong)
        }
        do {
            _ = try StreamSocket.connectUnix(path: path)
            Issue.record("connected to a path longer than sun_path")
        } catch {
            #expect(error.operation == "connect")
            #expect(error.errno == .fileNameTooLong)
            #expect(error.description.hasPrefix("connect \(path): "))
        }
    }

    @Test func connectToNothingNamesTheCall() {
        do {
            _ = try StreamSocket.connectUnix(path: "/tmp/balloond-tests-no-such-dir/sock")
            Issue.record("connected to nothing")
        } catch {
            #expect(error.operation == "connect")
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }

    @Test func receiveTimeout() throws {
        let (a, b) = try StreamSocket.pair()
        try StreamSocket.setReceiveTimeout(a, milliseconds: 30)
        // A blocking read that times out reports EAGAIN: nil.
        #expect(try receive(a) == nil)
        withExtendedLifetime(b) {}
    }

    @Test func virtioSerialPortPaths() {
        #expect(VirtioSerialPort.path(for: "org.balloond.0") == "/dev/virtio-ports/org.balloond.0")
        #expect(VirtioSerialPort.path(for: "/dev/vport0p1") == "/dev/vport0p1")
        #expect(VirtioSerialPort.path(for: "/tmp/x/y") == "/tmp/x/y")
    }

    @Test func openingAMissingVirtioPortNamesThePath() {
        do {
            _ = try VirtioSerialPort.open("org.balloond.no-such-port")
            Issue.record("opened a missing port")
        } catch {
            #expect(error.operation == "open")
            #expect(error.subject == "/dev/virtio-ports/org.balloond.no-such-port")
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }
}
