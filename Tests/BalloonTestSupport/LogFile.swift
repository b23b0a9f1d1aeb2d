// SPDX-License-Identifier: Apache-2.0
import Foundation

/// Empties (or makes) the file at `path` and opens it for writing, for a child
/// process's output and errors. Not `FileManager.createFile`: on Linux it
/// writes atomically, through a /tmp/TemporaryDirectory.* it never removes.
public func emptyLogFile(_ path: String) throws -> FileHandle {
    let url = URL(fileURLWithPath: path)
    try Data().write(to: url)
    return try FileHandle(forWritingTo: url)
}
