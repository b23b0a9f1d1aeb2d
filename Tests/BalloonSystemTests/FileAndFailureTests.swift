// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import Glibc
import SystemPackage
import Testing

@Suite("Files through the funnel")
struct FileTests {
    @Test func statusSaysWhatKindOfFile() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("plain")
        let fd = try Descriptor.open(path, flags: O_WRONLY | O_CREAT, mode: 0o640)
        try fd.writeAll(Array("12345".utf8))
        let status = try fd.status()
        #expect(status.kind == .regular)
        #expect(status.size == 5)
        #expect(status.permissions == 0o640)
        #expect(try FileStatus.of(dir.path).kind == .directory)
        #expect(try FileStatus.of("/dev/null").kind == .characterDevice)
        #expect(symlink(path, dir.file("link")) == 0)
        #expect(try FileStatus.ofLink(dir.file("link")).kind == .symbolicLink)
        #expect(try FileStatus.of(dir.file("link")).kind == .regular)
        #expect(throws: SystemError("stat", subject: dir.file("missing"), errno: .noSuchFileOrDirectory)) {
            try FileStatus.of(dir.file("missing"))
        }
    }

    @Test func readToEndStopsOnceOverTheLimit() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("big")
        try Descriptor.open(path, flags: O_WRONLY | O_CREAT, mode: 0o600).writeAll([UInt8](repeating: 7, count: 100_000))
        let whole = try Descriptor.openForReading(path).readToEnd(limit: 200_000)
        #expect(whole.count == 100_000)
        let capped = try Descriptor.openForReading(path).readToEnd(limit: 10)
        #expect(capped.count > 10 && capped.count < 100_000, "reading stops soon after the limit")
    }

    @Test func directoryEntriesListsNamesWithoutDots() throws {
        let dir = try TemporaryDirectory()
        for name in ["b.conf", "a.conf", ".hidden"] {
            try Descriptor.open(dir.file(name), flags: O_WRONLY | O_CREAT, mode: 0o600).close()
        }
        #expect(try directoryEntries(dir.path).sorted() == [".hidden", "a.conf", "b.conf"])
        do {
            _ = try directoryEntries(dir.file("missing"))
            Issue.record("listed a missing directory")
        } catch {
            #expect(error.operation == "opendir")
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }
}

@Suite("Failures keep the call and its errno")
struct TypedFailureTests {
    /// The shared map-and-lock routine names the call that failed: an
    /// impossible length fails in mmap with ENOMEM, in the daemon and in a
    /// holder process alike (the holder sends the call and errno back).
    @Test func impossibleRegionFailsInMmapWithENOMEM() {
        let huge = 1 << 50
        #expect(throws: SystemError("mmap", subject: "\(huge) bytes", errno: .noMemory)) {
            try LockedRegion(length: huge, advice: .forbid)
        }
    }

    @Test func holderReportsTheFailedCallAndErrno() {
        let huge = 1 << 50
        do {
            _ = try HolderProcess(length: huge, advice: .forbid)
            Issue.record("a holder mapped 1 PiB")
        } catch {
            #expect(error.operation == "mmap")
            #expect(error.errno == .noMemory)
            #expect(error.subject?.hasPrefix("\(huge) bytes (holder ") == true, "\(error)")
        }
    }

    @Test func punchBeyondOffTIsOutOfRangeNotAnErrno() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("backend")
        try Descriptor.open(path, flags: O_WRONLY | O_CREAT, mode: 0o600).close()
        let file = try BackingFile(path: path)
        do {
            try file.punchHole(offset: UInt64(Int64.max), length: 2)
            Issue.record("punched beyond off_t")
        } catch {
            #expect(error.cause == .outOfRange)
            #expect(error.errno == nil)
        }
    }
}
