// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem

/// Frees guest memory in the RAM backend file by punching holes
/// (`fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE)`), only where a
/// `FrameLedger` accepted the range, and never past the guest RAM the map
/// covers (checked again here, as a last line of defence).
public final class BackendPuncher {
    public let file: BackingFile
    /// Guest RAM in the file: punches must end at or below this offset.
    public let ramSize: UInt64
    public private(set) var bytesFreed: UInt64 = 0
    /// fallocate calls made.
    public private(set) var punches: UInt64 = 0
    public private(set) var failures: UInt64 = 0
    public private(set) var lastError: SystemError?
    /// Whether the newest punch failed (a later success clears it; `lastError` stays).
    public private(set) var lastPunchFailed = false
    /// Bytes allocated again for frames the guest took back (`populate`).
    public private(set) var bytesPopulated: UInt64 = 0
    public private(set) var populateFailures: UInt64 = 0
    public private(set) var lastPopulateError: SystemError?
    /// The file system cannot allocate ranges (EOPNOTSUPP): no more tries.
    public private(set) var populateUnsupported = false

    /// Opens `path` O_RDWR. Guest RAM = `ramSize`, or the file's size.
    public convenience init(path: String, ramSize: UInt64? = nil) throws(HostError) {
        let file: BackingFile
        do { file = try BackingFile(path: path) } catch {
            throw .usage("cannot open the memory backend \(path): \(error.cause)")
        }
        try self.init(file: file, ramSize: ramSize)
    }

    /// A file already open (balloon-hostd opens a libvirt guest's RAM file
    /// itself, with its own checks).
    package init(file: BackingFile, ramSize: UInt64? = nil) throws(HostError) {
        let path = file.path
        let status: BackingFile.Status
        do { status = try file.status() } catch { throw .usage("cannot stat the memory backend \(path): \(error.cause)") }
        guard status.isRegular else {
            throw .usage("the memory backend \(path) is not a regular file (use the mem-path of a memory-backend-file)")
        }
        let size = ramSize ?? status.size
        guard size > 0 else { throw .usage("the memory backend \(path) is empty: give --ram-size or the guest's RAM file") }
        guard size <= status.size else {
            throw .usage("--ram-size \(HumanBytes.format(size)) exceeds the memory backend \(path) (\(HumanBytes.format(status.size)))")
        }
        self.file = file
        self.ramSize = size
    }

    /// Punches each range. A range past `ramSize` is never punched (returns
    /// false for it). Errors are counted and kept in `lastError`.
    @discardableResult
    public func punch(_ ranges: [RamMap.FileRange]) -> [Bool] {
        ranges.map { range in
            guard withinRam(range) else {
                failures += 1
                return false
            }
            do throws(SystemError) {
                try file.punchHole(offset: range.offset, length: range.length)
            } catch {
                failures += 1
                lastError = error
                lastPunchFailed = true
                return false
            }
            lastPunchFailed = false
            punches += 1
            bytesFreed += range.length
            return true
        }
    }
}

extension BackendPuncher {
    /// A non-empty range that ends within guest RAM.
    func withinRam(_ range: RamMap.FileRange) -> Bool {
        range.length > 0 && range.offset < ramSize && range.length <= ramSize - range.offset
    }

    /// Allocates a range the guest took back (`PopulateQueue`), within guest
    /// RAM only. A failure is counted and kept; it never touches the guest's
    /// data (fallocate allocates holes only), so nothing else depends on it.
    @discardableResult
    public func populate(_ range: RamMap.FileRange) -> Bool {
        guard !populateUnsupported, withinRam(range) else {
            return false
        }
        do throws(SystemError) {
            try file.allocate(offset: range.offset, length: range.length)
        } catch {
            populateFailures += 1
            lastPopulateError = error
            if error.isUnsupported { populateUnsupported = true }
            return false
        }
        bytesPopulated += range.length
        return true
    }

    /// The file's state for `serve-status`/`guest-status` (a stat and an
    /// fstat: asked per status request, never per punch).
    public var state: BackendState {
        let error = lastError.map { "\($0)" }
        let condition: BackendState.Condition =
            if lastPunchFailed { lastError?.deniesWriting == true ? .readOnly : .failing }
            else if !file.pathNamesFile() { .missing }
            else { .ok }
        return BackendState(condition, lastPunchError: error, lastPunchErrno: lastError?.errnoCode)
    }
}
