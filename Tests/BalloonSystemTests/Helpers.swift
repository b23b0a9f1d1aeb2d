// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import BalloonTestSupport
import Glibc
import SystemPackage
import Testing

/// A pipe as two owned descriptors (read end, write end).
func makePipe() throws -> (read: Descriptor, write: Descriptor) {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw SystemError("pipe", errno: .init(rawValue: errno)) }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    return (Descriptor(adopting: fds[0]), Descriptor(adopting: fds[1]))
}

/// Writes through `Descriptor.write` without a throwing closure around
/// `withUnsafeBytes` (typed throws through rethrows crashes this compiler).
func send(_ fd: Descriptor, _ bytes: [UInt8]) throws -> Int? {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
    defer { buffer.deallocate() }
    buffer.copyBytes(from: bytes)
    return try fd.write(UnsafeRawBufferPointer(rebasing: buffer[..<bytes.count]))
}

/// One `Descriptor.read`: nil if it would block, [] at end of file.
func receive(_ fd: Descriptor, max: Int = 4096) throws -> [UInt8]? {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max, alignment: 1)
    defer { buffer.deallocate() }
    guard let n = try fd.read(into: buffer) else { return nil }
    return Array(buffer[..<n])
}

/// Reads until `count` bytes arrived (blocking descriptors, or waiting on a
/// non-blocking one until they are there).
func receive(_ fd: Descriptor, exactly count: Int) throws -> [UInt8] {
    var out: [UInt8] = []
    var ended = false
    let complete = try waitUntil {
        guard let chunk = try receive(fd, max: count - out.count) else { return false }
        if chunk.isEmpty { ended = true; return true }
        out += chunk
        return out.count == count
    }
    try #require(!ended, "unexpected end of file after \(out.count) bytes")
    try #require(complete, "timed out waiting for \(count - out.count) more bytes")
    return out
}

func fileStatusFlags(_ fd: Descriptor) -> Int32 { fcntl(fd.raw, F_GETFL) }

/// A private directory under /tmp, removed with what it holds (one level) on deinit.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/balloond-tests-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) != nil }
        try #require(made, "mkdtemp: errno \(errno)")
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { unlink(file(name)) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

/// The `Key:  N kB` value of /proc/meminfo in bytes.
func meminfo(_ key: String) throws -> UInt64 {
    let text = String(decoding: try readWholeFile("/proc/meminfo"), as: UTF8.self)
    for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
        let digits = line.dropFirst(key.count + 1).filter(\.isNumber)
        return try #require(UInt64(digits)) * 1024
    }
    Issue.record("no \(key) in /proc/meminfo")
    return 0
}

let MiB = 1 << 20
