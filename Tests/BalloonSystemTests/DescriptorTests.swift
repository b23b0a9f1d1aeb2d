// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import BalloonTestSupport
import Glibc
import SystemPackage
import Testing

@Suite("syscall funnel and SystemError")
struct SyscallFunnelTests {
    @Test func failingOpenNamesOperationSubjectAndErrno() {
        let path = "/nonexistent-balloond-test/missing.conf"
        do {
            _ = try Descriptor.open(path, flags: O_RDONLY)
            Issue.record("open of a missing path succeeded")
        } catch {
            #expect(error.operation == "open")
            #expect(error.subject == path)
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.errno?.rawValue == ENOENT)
            #expect(error.description == "open \(path): No such file or directory")
        }
    }

    @Test func funnelReportsTheCallAndErrno() {
        do {
            _ = try syscall("unlink", subject: "/nonexistent-balloond-test/x") { unlink("/nonexistent-balloond-test/x") }
            Issue.record("unlink of a missing path succeeded")
        } catch {
            #expect(error == SystemError("unlink", subject: "/nonexistent-balloond-test/x", errno: .noSuchFileOrDirectory))
            #expect(error.cause == .errno(.noSuchFileOrDirectory))
            #expect(error.description.hasPrefix("unlink /nonexistent-balloond-test/x: "))
        }
    }

    /// EBADF and EFAULT stop the process (naming the call); the crash
    /// itself is not tested, the classification that leads to it is.
    @Test(arguments: [
        (Errno.badFileDescriptor, ErrnoClass.programmingError),
        (.badAddress, .programmingError),
        (.interrupted, .interrupted),
        (.resourceTemporarilyUnavailable, .wouldBlock),
        (.wouldBlock, .wouldBlock),
        (.noSuchFileOrDirectory, .failure),
        (.noMemory, .failure),
        (.invalidArgument, .failure),
        (.brokenPipe, .failure),
        (.noSuchProcess, .failure),
    ])
    func errnoClassification(code: Errno, expected: ErrnoClass) {
        #expect(ErrnoClass(code) == expected)
    }

    @Test func failuresThatAreNotASyscallsHaveNoErrno() {
        let causes: [SystemError.Cause] = [.notASocket, .socketInUse, .outOfRange, .holderExited(answer: nil)]
        for cause in causes {
            let error = SystemError("bind", subject: "/x", cause: cause)
            #expect(error.errno == nil)
            #expect(error.description == "bind /x: \(cause)")
        }
        #expect(SystemError("mlock", errno: .noMemory).errno == .noMemory)
    }

    @Test func descriptionWithoutSubject() {
        let e = SystemError("epoll_wait", errno: .invalidArgument)
        #expect(e.description == "epoll_wait: Invalid argument")
    }

    @Test func successPassesTheResultThroughOnce() throws {
        var calls = 0
        let v = try syscall("getpid") { () -> Int32 in
            calls += 1
            return getpid()
        }
        #expect(v == getpid())
        #expect(calls == 1)
    }

    @Test func funnelRetriesEINTR() throws {
        var calls = 0
        let v = try syscall("fake") { () -> Int32 in
            calls += 1
            if calls < 3 {
                errno = EINTR
                return -1
            }
            return 7
        }
        #expect(v == 7)
        #expect(calls == 3)
    }

    @Test func nonBlockingFunnelTurnsEAGAINIntoNil() throws {
        let r = try nonBlockingSyscall("fake") { () -> Int32 in
            errno = EAGAIN
            return -1
        }
        #expect(r == nil)
        do {
            _ = try nonBlockingSyscall("fake-read") { () -> Int32 in
                errno = EIO
                return -1
            }
            Issue.record("EIO was not thrown")
        } catch {
            #expect(error.operation == "fake-read")
            #expect(error.errno == .ioError)
        }
    }
}

@Suite("Descriptor")
struct DescriptorTests {
    @Test func readAndWriteOverAPipe() throws {
        let (r, w) = try makePipe()
        #expect(try send(w, Array("hello".utf8)) == 5)
        #expect(try receive(r) == Array("hello".utf8))
        try w.writeAll(Array(repeating: 7, count: 1000))
        #expect(try receive(r, exactly: 1000) == Array(repeating: 7, count: 1000))
    }

    @Test func readAndWriteOverASocketpair() throws {
        let (a, b) = try StreamSocket.pair()
        #expect(try send(a, [1, 2, 3]) == 3)
        #expect(try receive(b) == [1, 2, 3])
        #expect(try send(b, [4, 5]) == 2)
        #expect(try receive(a) == [4, 5])
    }

    @Test func nonBlockingReadWithNothingAvailableIsNil() throws {
        let (r, w) = try makePipe()
        #expect(fileStatusFlags(r) & O_NONBLOCK == 0)
        try r.setNonBlocking()
        #expect(fileStatusFlags(r) & O_NONBLOCK != 0)
        #expect(try receive(r) == nil)
        _ = try send(w, [9])
        #expect(try receive(r) == [9])
        #expect(try receive(r) == nil)
        try r.setNonBlocking(false)
        #expect(fileStatusFlags(r) & O_NONBLOCK == 0)

        let (a, b) = try StreamSocket.pair()
        try a.setNonBlocking()
        #expect(try receive(a) == nil)
        withExtendedLifetime((w, b)) {}
    }

    @Test func nonBlockingWriteToAFullPipeIsNil() throws {
        let (r, w) = try makePipe()
        try w.setNonBlocking()
        var written = 0
        var wouldBlock = false
        for _ in 0..<1024 {
            guard let n = try send(w, [UInt8](repeating: 1, count: 4096)) else { wouldBlock = true; break }
            written += n
        }
        #expect(wouldBlock)
        #expect(written >= 4096)
        _ = r
    }

    @Test func endOfFileReadsZero() throws {
        let (r, w) = try makePipe()
        _ = try send(w, [1])
        w.close()
        #expect(try receive(r) == [1])
        #expect(try receive(r) == [])
        #expect(try receive(r) == [], "EOF stays EOF")

        let (a, b) = try StreamSocket.pair()
        b.close()
        #expect(try receive(a) == [])
    }

    @Test func writeToAClosedPeerFailsWithEPIPE() throws {
        ignoreSIGPIPE()
        let (a, b) = try StreamSocket.pair()
        b.close()
        do {
            _ = try send(a, [1])
            Issue.record("write to a closed peer succeeded")
        } catch let error as SystemError {
            #expect(error.operation == "write")
            #expect(error.errno == .brokenPipe)
        }
    }

    @Test func closeIsIdempotent() throws {
        let (r, w) = try makePipe()
        #expect(!r.isClosed)
        r.close()
        #expect(r.isClosed)
        r.close()
        #expect(r.isClosed)
        // The write end notices the read end is gone: the fd was really closed.
        ignoreSIGPIPE()
        #expect(throws: SystemError.self) { _ = try send(w, [1]) }
        w.close()
        w.close()
    }

    @Test func openAddsCloexec() throws {
        let fd = try Descriptor.open("/proc/self/status", flags: O_RDONLY)
        #expect(fcntl(fd.raw, F_GETFD) & FD_CLOEXEC != 0)
    }
}

@Suite("ProcFileReader and readWholeFile")
struct ProcFileTests {
    static func keys(_ bytes: [UInt8]) -> [Substring] {
        String(decoding: bytes, as: UTF8.self).split(separator: "\n").map { $0.prefix { $0 != ":" } }
    }

    @Test func twoReadsBothStartWithMemTotal() throws {
        let reader = try ProcFileReader("/proc/meminfo")
        let first = try reader.bytes()
        let second = try reader.bytes()
        #expect(first.starts(with: Array("MemTotal:".utf8)))
        #expect(second.starts(with: Array("MemTotal:".utf8)))
        #expect(Self.keys(first) == Self.keys(second))
        #expect(first.last == 0x0A)
    }

    @Test("a small buffer grows and still returns the whole file", arguments: [64, 1, 4096])
    func smallBufferGrows(capacity: Int) throws {
        let reader = try ProcFileReader("/proc/meminfo", capacity: capacity)
        let whole = try readWholeFile("/proc/meminfo")
        #expect(whole.count > 64)
        let viaReader = try reader.bytes()
        #expect(viaReader.starts(with: Array("MemTotal:".utf8)))
        #expect(Self.keys(viaReader) == Self.keys(whole))
        #expect(viaReader.last == 0x0A)
        // Again, from offset 0, with the grown buffer.
        let again = try reader.bytes()
        #expect(Self.keys(again) == Self.keys(whole))
    }

    @Test func zeroCapacityDoesNotSpinForever() throws {
        let reader = try ProcFileReader("/proc/self/status", capacity: 0)
        let bytes = try reader.bytes()
        #expect(bytes.starts(with: Array("Name:".utf8)))
    }

    @Test func readerOfAMissingFileThrowsNamingThePath() {
        do {
            _ = try ProcFileReader("/proc/no-such-file")
            Issue.record("opened a missing file")
        } catch {
            #expect(error.subject == "/proc/no-such-file")
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }

    @Test func readWholeFileOfAMissingFileThrowsNamingThePath() {
        let path = "/tmp/balloond-tests-definitely-missing/file"
        do {
            _ = try readWholeFile(path)
            Issue.record("read a missing file")
        } catch {
            #expect(error.operation == "open")
            #expect(error.subject == path)
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.description.contains(path))
        }
    }

    @Test func readWholeFileOfALargerFile() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("big")
        let content = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let fd = try Descriptor.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try fd.writeAll(content)
        fd.close()
        #expect(try readWholeFile(path) == content)
    }

    @Test func processStatusValues() throws {
        let rss = try #require(ProcessStatus.value("VmRSS"))
        #expect(rss > 0)
        #expect(rss % 1024 == 0)
        #expect(ProcessStatus.value("VmLck") != nil)
        #expect(ProcessStatus.value("NoSuchKey") == nil)
        #expect(ProcessStatus.value("VmRSS", pid: String(getpid())) != nil)
        #expect(ProcessStatus.value("VmRSS", pid: "999999999") == nil)
    }

    @Test func pageSize() {
        #expect(PageSize.bytes == Int(sysconf(Int32(_SC_PAGESIZE))))
        #expect(PageSize.bytes > 0 && PageSize.bytes & (PageSize.bytes - 1) == 0)
    }
}
