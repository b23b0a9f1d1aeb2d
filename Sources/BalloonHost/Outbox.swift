// SPDX-License-Identifier: Apache-2.0
import BalloonSystem

/// Bytes waiting to go out on a non-blocking socket.
struct Outbox {
    private var bytes: [UInt8] = []
    private var start = 0

    var count: Int { bytes.count - start }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ more: [UInt8]) {
        if start > 0 && start >= bytes.count / 2 {
            bytes.removeFirst(start)
            start = 0
        }
        bytes.append(contentsOf: more)
    }

    mutating func removeAll() {
        bytes.removeAll()
        start = 0
    }

    /// Sends what the socket takes. True when everything went.
    mutating func flush(_ fd: Descriptor) throws(SystemError) -> Bool {
        while start < bytes.count {
            let from = start
            let result: Result<Int?, SystemError> = bytes.withUnsafeBytes { raw in
                do throws(SystemError) { return .success(try StreamIO.sendSome(fd, UnsafeRawBufferPointer(rebasing: raw[from...]))) } catch {
                    return .failure(error)
                }
            }
            switch result {
            case let .failure(error): throw error
            case .success(nil): return false
            case let .success(n?): start += n
            }
        }
        bytes.removeAll(keepingCapacity: true)
        start = 0
        return true
    }
}
