// SPDX-License-Identifier: Apache-2.0
/// Why `balloonctl serve` refused reported frame ranges, counted by kind
/// (docs/balloonctl.md "Freeing frames").
public struct RefusalCounters: Sendable, Equatable {
    /// Not entirely inside guest RAM (the PCI hole, beyond the end, overflow).
    public var outsideRam: UInt64 = 0
    /// Overlapping a range already held, or another range of the same event.
    public var overlap: UInt64 = 0
    /// Over the punch rate limit.
    public var rateLimit: UInt64 = 0
    /// COUNT 0, a bad `page-size`, a `FRAMES_DEFLATED` range that was not
    /// held, or an event that is not a well-formed report.
    public var malformed: UInt64 = 0

    public init() {}

    public var total: UInt64 { outsideRam + overlap + rateLimit + malformed }

    public var json: JSON {
        ["outside-ram": .uint(outsideRam), "overlap": .uint(overlap), "rate-limit": .uint(rateLimit), "malformed": .uint(malformed)]
    }
}

/// The guest's RAM backend file as the host sees it now (`memory-backend-state`
/// in `serve-status` and `guest-status`; docs/balloonctl.md `serve-status`).
public struct BackendState: Sendable, Equatable {
    public enum Condition: String, Sendable, CaseIterable {
        /// The file is where it was opened and the last punch (if any) worked.
        case ok
        /// Its path no longer names the file the host holds open (removed,
        /// renamed or replaced): punches still free memory through the open
        /// descriptor, but nothing can open the guest's RAM by that path.
        case missing
        /// The last punch failed because the file cannot be written (EPERM,
        /// EROFS, EACCES: immutable, read-only mount, permissions).
        case readOnly = "read-only"
        /// The last punch failed otherwise (EIO, ENOSPC, …).
        case failing
    }

    public var condition: Condition
    /// The last failed punch (kept after later punches work) and its errno
    /// (nil for a failure that is not a syscall's).
    public var lastPunchError: String?
    public var lastPunchErrno: Int32?

    public init(_ condition: Condition, lastPunchError: String? = nil, lastPunchErrno: Int32? = nil) {
        self.condition = condition
        self.lastPunchError = lastPunchError
        self.lastPunchErrno = lastPunchErrno
    }

    public var json: JSON {
        [
            "state": .string(condition.rawValue), "last-punch-error": lastPunchError.map(JSON.string) ?? .null,
            "errno": lastPunchErrno.map { .int(Int64($0)) } ?? .null,
        ]
    }

    init(_ f: Fields) throws(ProtocolError) {
        condition = try f.enumeration("state", Condition.self)
        lastPunchError = try f.optionalString("last-punch-error")
        lastPunchErrno = try f.optionalUInt64("errno").map { Int32(clamping: $0) }
    }
}

/// The `serve-status` reply of `balloonctl serve`'s control socket.
public struct ServeStatus: ReplyValue {
    public var guestConnected = false
    /// Sessions re-established after the first one.
    public var reconnects: UInt64 = 0
    public var frameReporting = false
    public var framesHeld: UInt64 = 0
    public var bytesHeld: UInt64 = 0
    public var bytesFreed: UInt64 = 0
    public var punches: UInt64 = 0
    public var punchFailures: UInt64 = 0
    /// Bytes allocated again in the backend for frames the guest took back
    /// (0 without `--populate-on-deflate`), and the failed tries.
    public var bytesPopulated: UInt64 = 0
    public var populateFailures: UInt64 = 0
    /// Of those, bytes mapped into the guest's process (QEMU) ahead of the
    /// guest's touch (`--no-prefault` turns it off), and the failed tries.
    public var bytesPrefaulted: UInt64 = 0
    public var prefaultFailures: UInt64 = 0
    public var refused = RefusalCounters()
    public var lastError: String?
    public var desiredTarget: UInt64?
    public var controlClients = 0
    public var clientsDropped: UInt64 = 0
    /// Control clients refused at accept (beyond the agent's or serve's client limit).
    public var clientsRefused: UInt64 = 0
    /// QMP clients refused at accept (16 per guest socket already connected).
    public var qmpClientsRefused: UInt64 = 0
    /// Lines from the guest that were not valid messages (ignored).
    public var malformedLines: UInt64 = 0
    public var guest = ""
    public var memoryBackend: String?
    /// The RAM backend file's state; nil without a memory backend.
    public var memoryBackendState: BackendState?
    /// The guest took `set-free-memory-reporting` from serve (`--free-memory-reporting`).
    public var freeMemoryReporting = false
    /// Bytes freed from the backend for frames the free-memory mode holds
    /// (those above the desired target), summed over the sessions.
    public var freeMemoryBytesFreed: UInt64 = 0
    /// Times a new lifetime of the guest's daemon answered on a connection
    /// that stayed open (virtio-serial): the session started over.
    public var daemonRestarts: UInt64 = 0
    /// Bytes a daemon reported that serve never freed because that daemon
    /// was gone (or the connection ended) before serve could act on them.
    public var bytesAbandoned: UInt64 = 0

    public init() {}

    public var json: JSON {
        [
            "guest-connected": .bool(guestConnected), "reconnects": .uint(reconnects),
            "frame-reporting": .bool(frameReporting), "frames-held": .uint(framesHeld),
            "bytes-freed": .uint(bytesFreed), "punches": .uint(punches), "refused": refused.json,
            "last-error": lastError.map(JSON.string) ?? .null,
            "bytes-held": .uint(bytesHeld), "punch-failures": .uint(punchFailures),
            "desired-target": desiredTarget.map(JSON.uint) ?? .null,
            "control-clients": .int(Int64(controlClients)), "clients-dropped": .uint(clientsDropped),
            "clients-refused": .uint(clientsRefused), "qmp-clients-refused": .uint(qmpClientsRefused),
            "malformed-lines": .uint(malformedLines),
            "guest": .string(guest), "memory-backend": memoryBackend.map(JSON.string) ?? .null,
            "memory-backend-state": memoryBackendState?.json ?? .null,
            "free-memory-reporting": .bool(freeMemoryReporting), "free-memory-bytes-freed": .uint(freeMemoryBytesFreed),
            "daemon-restarts": .uint(daemonRestarts), "bytes-abandoned": .uint(bytesAbandoned),
            "bytes-populated": .uint(bytesPopulated), "populate-failures": .uint(populateFailures),
            "bytes-prefaulted": .uint(bytesPrefaulted), "prefault-failures": .uint(prefaultFailures),
        ]
    }

    public init(json: JSON) throws(ProtocolError) {
        let f = try Fields(json, "serve-status reply")
        guestConnected = try f.bool("guest-connected")
        reconnects = try f.uint64("reconnects")
        frameReporting = try f.bool("frame-reporting")
        framesHeld = try f.uint64("frames-held")
        bytesHeld = try f.uint64("bytes-held")
        bytesFreed = try f.uint64("bytes-freed")
        punches = try f.uint64("punches")
        punchFailures = try f.uint64("punch-failures")
        let r = try f.object("refused")
        refused.outsideRam = try r.uint64("outside-ram")
        refused.overlap = try r.uint64("overlap")
        refused.rateLimit = try r.uint64("rate-limit")
        refused.malformed = try r.uint64("malformed")
        lastError = try f.optionalString("last-error")
        desiredTarget = try f.optionalUInt64("desired-target")
        controlClients = Int(clamping: try f.uint64("control-clients"))
        clientsDropped = try f.uint64("clients-dropped")
        // Absent from a serve before the counter.
        clientsRefused = try f.optionalUInt64("clients-refused") ?? 0
        qmpClientsRefused = try f.optionalUInt64("qmp-clients-refused") ?? 0
        malformedLines = try f.uint64("malformed-lines")
        guest = try f.string("guest")
        memoryBackend = try f.optionalString("memory-backend")
        // Absent from a serve before the backend's state (and null without a backend).
        if let state = try f.optionalObject("memory-backend-state") { memoryBackendState = try BackendState(state) }
        // Absent from a serve before the free-memory mode.
        freeMemoryReporting = f.optional("free-memory-reporting") != nil ? try f.bool("free-memory-reporting") : false
        freeMemoryBytesFreed = try f.optionalUInt64("free-memory-bytes-freed") ?? 0
        bytesPopulated = try f.optionalUInt64("bytes-populated") ?? 0
        populateFailures = try f.optionalUInt64("populate-failures") ?? 0
        bytesPrefaulted = try f.optionalUInt64("bytes-prefaulted") ?? 0
        prefaultFailures = try f.optionalUInt64("prefault-failures") ?? 0
        // Absent from a serve before protocol rule 5.
        daemonRestarts = try f.optionalUInt64("daemon-restarts") ?? 0
        bytesAbandoned = try f.optionalUInt64("bytes-abandoned") ?? 0
    }
}
