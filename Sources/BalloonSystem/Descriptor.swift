// SPDX-License-Identifier: Apache-2.0
import CBalloonShim
import Glibc
import SystemPackage

/// An owned file descriptor, closed exactly once when the last reference goes.
public final class Descriptor {
    package let raw: Int32
    private var closed = false

    package init(adopting raw: Int32) { self.raw = raw }

    deinit { close() }

    package func close() {
        guard !closed else { return }
        closed = true
        // close(2) must not be retried on EINTR on Linux; the descriptor is
        // gone either way, so a failure leaves nothing to do. EBADF (closed
        // twice) still stops the process.
        bestEffortSyscall("close", retryingEINTR: false) { Glibc.close(raw) }
    }

    package var isClosed: Bool { closed }

    /// Opens a file; `flags` are `O_*` values, `O_CLOEXEC` is always added.
    package static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws(SystemError) -> Descriptor {
        let fd = try syscall("open", subject: path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return Descriptor(adopting: fd)
    }

    /// Reads what is available; 0 means end of file (or, on a virtio port, no host).
    /// nil means the read would block.
    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        try nonBlockingSyscall("read") { Glibc.read(raw, buffer.baseAddress, buffer.count) }
    }

    /// Writes as much as the descriptor takes now; nil means it would block.
    package func write(_ buffer: UnsafeRawBufferPointer) throws(SystemError) -> Int? {
        try nonBlockingSyscall("write") { Glibc.write(raw, buffer.baseAddress, buffer.count) }
    }

    /// Writes everything, blocking as needed (for blocking descriptors).
    package func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let remaining = bytes.count - offset
            let n = try syscall("write") {
                bytes.withUnsafeBytes { Glibc.write(raw, $0.baseAddress! + offset, remaining) }
            }
            offset += n
        }
    }

    package func pread(into buffer: UnsafeMutableRawBufferPointer, offset: Int) throws(SystemError) -> Int {
        try syscall("pread") { Glibc.pread(raw, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Reads a fixed-size value (an eventfd/timerfd counter, a signalfd
    /// record): nil if nothing is there yet. These descriptors hand out whole
    /// records, so a short read cannot happen.
    func readRecord<T>(_ type: T.Type, _ operation: @autoclosure () -> String) throws(SystemError) -> T? {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        defer { buffer.deallocate() }
        guard let n = try nonBlockingSyscall(operation(), { Glibc.read(raw, buffer.baseAddress, buffer.count) }) else {
            return nil
        }
        precondition(n == buffer.count, "\(operation()): a short read of \(n) bytes from a record descriptor")
        return buffer.load(as: T.self)
    }

    package func setNonBlocking(_ on: Bool = true) throws(SystemError) {
        let flags = try syscall("fcntl(F_GETFL)") { cballoon_fcntl_getfl(raw) }
        let wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if wanted != flags { _ = try syscall("fcntl(F_SETFL)") { cballoon_fcntl_setfl(raw, wanted) } }
    }

    /// fstat(2): what kind of file this is, its size and allocation.
    package func status(subject: String? = nil) throws(SystemError) -> FileStatus {
        var st = stat()
        _ = try syscall("fstat", subject: subject) { fstat(raw, &st) }
        return FileStatus(st)
    }

    /// Reads from the current position to end of file, or until more than
    /// `limit` bytes arrived (then the result has `limit + 1` or more bytes,
    /// and the caller decides what a file that large means).
    package func readToEnd(limit: Int, subject: String? = nil) throws(SystemError) -> [UInt8] {
        var out: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 16)
        defer { chunk.deallocate() }
        while out.count <= limit {
            let n = try syscall("read", subject: subject) { Glibc.read(raw, chunk.baseAddress, chunk.count) }
            if n == 0 { break }
            out.append(contentsOf: chunk[..<n])
        }
        return out
    }
}

/// Reads a whole small file (e.g. /proc/meminfo) from offset 0 each time,
/// keeping the descriptor and the buffer: /proc seq files regenerate on pread(0).
package final class ProcFileReader {
    package let path: String
    private let descriptor: Descriptor
    private var buffer: UnsafeMutableRawBufferPointer

    package init(_ path: String, capacity: Int = 16384) throws(SystemError) {
        self.path = path
        self.descriptor = try Descriptor.open(path, flags: O_RDONLY)
        // At least one byte: the buffer doubles when full, and 0 * 2 stays 0.
        self.buffer = .allocate(byteCount: max(capacity, 1), alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// The file's current contents, valid until the next call; the buffer
    /// grows if the file does not fit.
    package func read() throws(SystemError) -> UnsafeRawBufferPointer {
        while true {
            var total = 0
            while total < buffer.count {
                let n = try descriptor.pread(into: UnsafeMutableRawBufferPointer(rebasing: buffer[total...]), offset: total)
                if n == 0 { break }
                total += n
            }
            if total < buffer.count { return UnsafeRawBufferPointer(rebasing: buffer[..<total]) }
            let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count * 2, alignment: 16)
            buffer.deallocate()
            buffer = bigger
        }
    }

    package func bytes() throws(SystemError) -> [UInt8] { Array(try read()) }
}

/// Reads a whole file once (small /proc and /sys files).
package func readWholeFile(_ path: String) throws(SystemError) -> [UInt8] {
    try Descriptor.open(path, flags: O_RDONLY).readToEnd(limit: .max, subject: path)
}
