// SPDX-License-Identifier: Apache-2.0

/// When a control client loses its slot for holding it without using it
/// (docs/hostd.md "Limits and faults"). The loop serves a fixed number of
/// clients, so one that connects and says nothing, or dribbles a request a
/// byte at a time, must not keep an operator's `balloonctl list` out for
/// ever. A client reading a guest's events (`balloonctl events`: a request,
/// then only reads) is using its slot and is never idle. Pure: the loop's
/// housekeeping tick asks it with the loop's clock.
public struct ControlClientTimeouts: Sendable, Equatable {
    /// A request must be complete this long after its first byte, and a new
    /// client's first request this long after it connected.
    public var request: Duration
    /// A client with no guest's events to read, quiet this long after its
    /// last request, is idle.
    public var idle: Duration

    public init(request: Duration = .seconds(10), idle: Duration = .seconds(300)) {
        self.request = request
        self.idle = idle
    }

    /// What the loop knows of one client's input.
    public struct Activity: Sendable, Equatable {
        public let connected: Duration
        /// The first byte of the line not yet ended; nil when no line is open.
        public private(set) var lineStarted: Duration?
        /// The last complete request; nil before the first.
        public private(set) var lastRequest: Duration?

        public init(connected: Duration) { self.connected = connected }

        /// After a read at `now`: whether it ended at least one line, and
        /// whether part of a line is still open after it.
        public mutating func read(at now: Duration, completedLine: Bool, openLine: Bool) {
            if completedLine { lastRequest = now }
            // A line still open after a completed one began in this read;
            // one open before it and not completed keeps its start.
            lineStarted = openLine ? (completedLine ? now : lineStarted ?? now) : nil
        }
    }

    public enum Verdict: Sendable, Equatable {
        case keep
        /// No complete request in time: a line left open, or nothing since the connect.
        case incompleteRequest
        /// No guest's events to read and no request for `idle`.
        case idle
    }

    /// `subscribed`: the client has selected a guest, so it reads that
    /// guest's events.
    public func verdict(_ a: Activity, now: Duration, subscribed: Bool) -> Verdict {
        if let start = a.lineStarted, now - start >= request { return .incompleteRequest }
        guard let last = a.lastRequest else { return now - a.connected >= request ? .incompleteRequest : .keep }
        if a.lineStarted == nil, !subscribed, now - last >= idle { return .idle }
        return .keep
    }

    /// The log's words for a drop.
    public func reason(_ verdict: Verdict) -> String? {
        switch verdict {
        case .keep: nil
        case .incompleteRequest: "no complete request within \(HostFormat.seconds(request.seconds))"
        case .idle: "idle for \(HostFormat.seconds(idle.seconds)) with no guest selected"
        }
    }
}
