// SPDX-License-Identifier: Apache-2.0

/// File ranges of the RAM backend the guest took back (a `FRAMES_DEFLATED`
/// for frames the host had punched), waiting to be allocated again.
///
/// Why: a guest deflates because it needs the memory, and touches it at
/// once. Each first touch of a punched page is a page fault in QEMU's vCPU
/// thread that allocates and zeroes a host page; a `fallocate` of the range
/// from the host's loop does the allocation in bulk, off the vCPU thread,
/// leaving QEMU only a minor fault per page (docs/free-memory.md).
///
/// The loop allocates a slice at a time between events, so a deflate of
/// many GiB never stalls frame acks or control clients. A range the guest
/// holds again (a new `FRAMES_INFLATED`) is cancelled before it is punched,
/// so a late slice never undoes a punch. Pure value type, no syscalls.
public struct PopulateQueue: Sendable, Equatable {
    /// The most bytes allocated per slice: about 10 ms of tmpfs allocation.
    public static let sliceBytes: UInt64 = 32 << 20

    private var pending = IntervalSet()

    public init() {}

    public var isEmpty: Bool { pending.isEmpty }
    public var pendingBytes: UInt64 { pending.totalLength }

    /// Queues ranges the guest took back (a repeat adds nothing).
    public mutating func add(_ ranges: [RamMap.FileRange]) {
        for r in ranges where r.length > 0 {
            // The union: what is queued in the range goes, the whole range comes.
            pending.remove(r.offset, r.end)
            pending.insert(r.offset, r.end)
        }
    }

    /// Forgets queued ranges the guest holds again (call before punching them).
    public mutating func cancel(_ ranges: [RamMap.FileRange]) {
        for r in ranges where r.length > 0 { pending.remove(r.offset, r.end) }
    }

    /// Takes the next slice to allocate: the lowest queued range, at most
    /// `maxBytes` long; nil when nothing waits.
    public mutating func next(maxBytes: UInt64 = sliceBytes) -> RamMap.FileRange? {
        guard maxBytes > 0, let first = pending.first else { return nil }
        let end = first.start + min(first.length, maxBytes)
        pending.remove(first.start, end)
        return RamMap.FileRange(offset: first.start, length: end - first.start)
    }

    /// Forgets everything (the backend cannot allocate).
    public mutating func removeAll() { pending.removeAll() }
}
