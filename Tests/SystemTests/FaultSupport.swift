// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonTestSupport
import Foundation
import Glibc
import Testing

// Shared by the fault and flood system tests: a local balloond's frames are
// this machine's physical frames, so a sparse "guest RAM" file as large as
// physical memory, mapped linearly, gives every reported frame a place in
// the file. Only what a test writes is allocated (a few MiB), and a frame's
// 4 KiB in the file shows whether the host punched it.

/// The end of the highest "System RAM" range in /proc/iomem (root).
func physicalMemoryEnd() -> UInt64 {
    let text = (try? String(contentsOfFile: "/proc/iomem", encoding: .utf8)) ?? ""
    var end: UInt64 = 0
    for line in text.split(separator: "\n") where line.hasSuffix(": System RAM") && !line.hasPrefix(" ") {
        let span = line.split(separator: " ")[0].split(separator: "-")
        if span.count == 2, let last = UInt64(span[1], radix: 16) { end = max(end, last + 1) }
    }
    return end
}

/// A sparse RAM backend file on /dev/shm covering physical memory; unlinked at deinit.
final class SparseRamFile {
    let path = "/dev/shm/balloond-fault-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd: Int32
    static let page = 4096

    init() throws {
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        let size = physicalMemoryEnd()
        guard fd >= 0, size > 0, ftruncate(fd, off_t(size)) == 0 else { throw HarnessError("cannot make \(path): errno \(errno)") }
    }

    /// Writes `byte` over each frame's page (the guest using that memory).
    func fill(_ frames: some Sequence<UInt64>, with byte: UInt8) {
        let page = [UInt8](repeating: byte, count: Self.page)
        for f in frames { _ = pwrite(fd, page, Self.page, off_t(f) * off_t(Self.page)) }
    }

    /// Frames whose page is not entirely `byte`.
    func frames(_ frames: some Sequence<UInt64>, notAll byte: UInt8) -> [UInt64] {
        var page = [UInt8](repeating: 0, count: Self.page)
        let expected = [UInt8](repeating: byte, count: Self.page)
        return frames.filter { f in
            pread(fd, &page, Self.page, off_t(f) * off_t(Self.page)) != Self.page || memcmp(page, expected, Self.page) != 0
        }
    }

    deinit { close(fd); unlink(path) }
}

/// The frames a process and its children have locked (the balloon's, for
/// balloond and its holders), read from smaps and pagemap (root).
func lockedFrames(_ pid: Int32) -> Set<UInt64> {
    var frames = Set<UInt64>()
    for p in [pid] + children(of: pid) {
        let smaps = readProcFile("/proc/\(p)/smaps")
        let fd = open("/proc/\(p)/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { continue }
        defer { close(fd) }
        var span: (UInt64, UInt64)?
        for line in smaps.split(separator: "\n") {
            let first = line.split(separator: " ").first ?? ""
            if !first.hasSuffix(":"), first.contains("-") {
                let ends = first.split(separator: "-").compactMap { UInt64($0, radix: 16) }
                span = ends.count == 2 ? (ends[0], ends[1]) : nil
            } else if first == "Locked:", let (start, end) = span,
                      let kib = UInt64(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? ""), kib > 0 {
                var entries = [UInt64](repeating: 0, count: Int((end - start) / 4096))
                let n = pread(fd, &entries, entries.count * 8, off_t(start / 4096 * 8))
                for e in entries.prefix(max(0, n / 8)) where e & (1 << 63) != 0 { frames.insert(e & ((1 << 55) - 1)) }
            }
        }
    }
    return frames
}

/// A /proc file read to its end (its size says 0).
func readProcFile(_ path: String) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        data += buffer[..<n]
    }
    return String(decoding: data, as: UTF8.self)
}

/// A process's resident memory (VmRSS), bytes.
func residentBytes(_ pid: Int32) -> UInt64 { statusValue(pid, "VmRSS") ?? 0 }

/// How far a bounded process's RSS may grow: 32 MiB, plus, under
/// `make test-asan`, ASan's quarantine of freed memory (256 MiB by default),
/// which is the allocator's and not the agent's.
let residentGrowthBound: UInt64 = 32 * MiB + (ProcessInfo.processInfo.environment["BALLOOND_TEST_SANITIZER"] == nil ? 0 : 256 * MiB)

extension RawClient {
    /// A guest's row and session counters through balloon-hostd's control socket.
    func guestStatus(_ name: String) throws -> GuestStatusReply {
        try GuestStatusReply(json: try value("guest-status", ["name": .string(name)]))
    }
}

/// balloon-hostd or balloonctl from the build, stderr collected; SIGKILLed at deinit if running.
final class ToolProcess: @unchecked Sendable {
    let process = Process()
    let stderrPipe = Pipe()
    private var data = Data()
    private let lock = NSLock()

    init(_ tool: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/" + tool)
        process.arguments = arguments
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock(); self.data.append(d); self.lock.unlock()
        }
        try process.run()
    }

    /// balloon-hostd with these arguments.
    convenience init(_ arguments: [String]) throws { try self.init("balloon-hostd", arguments) }

    var log: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
    var pid: Int32 { process.processIdentifier }

    func waitForExit() -> Int32? {
        guard waitUntil(timeout: .seconds(15), { !process.isRunning }) else { return nil }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
        stderrPipe.fileHandleForReading.readabilityHandler = nil
    }
}
