// SPDX-License-Identifier: Apache-2.0
import BalloonStats

// The QMP dialect's state machine (docs/qmp.md), pure: one `QMPSession` per
// connection (capabilities negotiation), one `QMPDevice` per guest (what
// QEMU's virtio-balloon device keeps: the stats polling interval and the
// newest polled stats), and what the host knows of the guest right now
// (`QMPGuestView`). A command's answer and the action the host must take.

/// What the host knows of the guest when a command arrives.
public struct QMPGuestView: Sendable, Equatable {
    /// The guest's balloond is connected and synced.
    public var connected: Bool
    /// The guest's RAM (`RamSize=`, the backend file's size, else the guest's MemTotal); 0: not known yet.
    public var ramSize: UInt64
    /// The balloon's size now, in bytes.
    public var balloon: UInt64

    public init(connected: Bool, ramSize: UInt64, balloon: UInt64) {
        self.connected = connected
        self.ramSize = ramSize
        self.balloon = balloon
    }

    /// QEMU's `actual`: the logical size, guest RAM − balloon.
    public var logicalSize: UInt64 { ramSize > balloon ? ramSize - balloon : 0 }
    /// Whether QEMU would have a balloon device to talk to.
    public var active: Bool { connected && ramSize > 0 }
}

/// The virtio-balloon device's own state: `guest-stats-polling-interval` and
/// the stats polled while it is above 0.
public struct QMPDevice: Sendable, Equatable {
    /// Seconds; 0: polling off (QEMU's default).
    public private(set) var pollingInterval: Int64 = 0
    /// Wall-clock seconds of the newest stats taken (host time, as QEMU's);
    /// 0: none yet.
    public private(set) var lastUpdate: Int64 = 0
    public private(set) var stats = VirtioStats()

    public init() {}

    /// A STATS sample from the guest, taken (as QEMU takes the stats queue)
    /// only while polling is on. It arrives at the agent's stats interval,
    /// never less often than the polling interval asks.
    public mutating func observe(_ stats: VirtioStats, wallSeconds: Int64) {
        guard pollingInterval > 0 else { return }
        self.stats = stats
        lastUpdate = wallSeconds
    }

    mutating func setPollingInterval(_ value: JSON) throws(QMPError) {
        guard let v = QMPArguments.integer(value) else { throw QMPArguments.wrongType(QMPBalloonPath.pollingProperty, "integer") }
        guard v >= 0 else { throw .generic("timer value must be greater than zero") }
        guard v <= Int64(UInt32.max) else { throw .generic("timer value is too big") }
        pollingInterval = v
    }

    /// `guest-stats`: every stat QEMU names, an absent one as QEMU's
    /// uint64 -1 (18446744073709551615), and `last-update`.
    public var guestStats: JSON {
        let all = VirtioStat.allCases.map { ("stat-" + $0.name, JSON.uint(stats[$0] ?? UInt64.max)) }
        return .object([("last-update", .int(lastUpdate)), ("stats", .object(all))])
    }

    /// `query-balloon`: `actual`, and Proxmox's fields (pve-qemu's
    /// "virtio-balloon: improve query-balloon"): `max_mem` always, the
    /// stats' only while polling is on and a sample was taken, each only
    /// when the guest reported it.
    public func balloonInfo(_ guest: QMPGuestView) -> JSON {
        var members: [(String, JSON)] = [("actual", .uint(guest.logicalSize))]
        if pollingInterval > 0, lastUpdate != 0 {
            members.append(("last_update", .int(lastUpdate)))
            let fields: [(String, VirtioStat)] = [
                ("mem_swapped_in", .swapIn), ("mem_swapped_out", .swapOut), ("major_page_faults", .majorFaults),
                ("minor_page_faults", .minorFaults), ("free_mem", .freeMemory), ("total_mem", .totalMemory),
            ]
            for (name, stat) in fields {
                if let v = stats[stat], v <= UInt64(Int64.max) { members.append((name, .uint(v))) }
            }
        }
        members.append(("max_mem", .uint(guest.ramSize)))
        return .object(members)
    }
}

/// The balloon's QOM paths: QEMU resolves an absolute path, or a partial
/// one that names a unique object by its last components (Proxmox sends
/// `machine/peripheral/balloon0`). `balloon0` is the virtio-balloon-pci
/// proxy (device id `balloon0`); its child `virtio-backend` is the
/// virtio-balloon-device that owns the two properties (aliased on the proxy).
public enum QMPBalloonPath {
    public static let pollingProperty = "guest-stats-polling-interval"
    public static let statsProperty = "guest-stats"

    /// The type name of the object at `path`, or nil when it is not the balloon.
    public static func typeName(of path: String) -> String? {
        var parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let absolute = parts.first == ""
        if absolute { parts.removeFirst() }
        guard !parts.isEmpty, !parts.contains("") else { return nil }
        // A bare `virtio-backend` would be ambiguous in QEMU (every virtio device has one).
        let backend = parts.count > 1 && parts.last == "virtio-backend"
        if backend { parts.removeLast() }
        let proxy = ["machine", "peripheral", "balloon0"]
        let matches = absolute ? parts == proxy : parts.count <= proxy.count && Array(proxy.suffix(parts.count)) == parts
        guard matches else { return nil }
        return backend ? "virtio-balloon-device" : "virtio-balloon-pci"
    }
}

/// What the host does after a command.
public enum QMPAction: Sendable, Equatable {
    /// Set the balloon to this many bytes (QEMU's num_pages, in bytes).
    case setBalloon(UInt64)
}

/// One QMP connection: capabilities negotiation, then command mode.
public struct QMPSession: Sendable {
    public let version: QMPVersion
    /// After a successful qmp_capabilities: commands run and events are sent.
    public private(set) var commandMode = false

    public init(version: QMPVersion = QMPVersion()) { self.version = version }

    /// The answer to one input value (or a parse error), and what to do.
    public mutating func handle(_ item: QMPStreamParser.Item, device: inout QMPDevice, guest: QMPGuestView) -> (reply: JSON, action: QMPAction?) {
        switch item {
        case let .error(desc): return (QMPWire.failure(.generic(desc), id: nil), nil)
        case let .value(value):
            let (id, checked) = QMPRequest.check(value)
            switch checked.flatMap({ (r) -> Result<QMPCommand, QMPError> in Result { () throws(QMPError) in try self.command(r) } }) {
            case let .failure(error): return (QMPWire.failure(error, id: id), nil)
            case let .success(command):
                switch run(command, device: &device, guest: guest) {
                case let .success((value, action)): return (QMPWire.success(value, id: id), action)
                case let .failure(error): return (QMPWire.failure(error, id: id), nil)
                }
            }
        }
    }

    /// Before negotiation only qmp_capabilities exists, and QEMU replaces
    /// any CommandNotFound description with its "Expecting …" one.
    func command(_ request: QMPRequest) throws(QMPError) -> QMPCommand {
        guard commandMode || request.execute == "qmp_capabilities" else { throw QMPError.negotiationFirst }
        do { return try QMPCommand(request) } catch where error.errorClass == .commandNotFound && !commandMode {
            throw QMPError.negotiationFirst
        }
    }

    mutating func run(_ command: QMPCommand, device: inout QMPDevice, guest: QMPGuestView) -> Result<(JSON, QMPAction?), QMPError> {
        switch command {
        case .capabilities:
            // Only `oob` parses, and it is not offered.
            guard !commandMode else { return .failure(.negotiationDone) }
            if case let .capabilities(enable) = command, !enable.isEmpty {
                return .failure(.generic("Capability \(enable.joined(separator: ", ")) not available"))
            }
            commandMode = true
            return .success(([:], nil))
        case let .balloon(value):
            guard guest.active else { return .failure(.noBalloon) }
            guard value > 0 else { return .failure(.generic("Parameter 'value' expects a size")) }
            // virtio_balloon_to_target: clamp to RAM, whole 4 KiB pages.
            let target = min(UInt64(value), guest.ramSize)
            return .success(([:], .setBalloon((guest.ramSize - target) & ~4095)))
        case .queryBalloon:
            guard guest.active else { return .failure(.noBalloon) }
            return .success((device.balloonInfo(guest), nil))
        case let .qomGet(path, property):
            guard let type = QMPBalloonPath.typeName(of: path) else { return .failure(QMPError(.deviceNotFound, "Device '\(path)' not found")) }
            switch property {
            case QMPBalloonPath.pollingProperty: return .success((.int(device.pollingInterval), nil))
            case QMPBalloonPath.statsProperty: return .success((device.guestStats, nil))
            default: return .failure(.generic("Property '\(type).\(property)' not found"))
            }
        case let .qomSet(path, property, value):
            guard let type = QMPBalloonPath.typeName(of: path) else { return .failure(QMPError(.deviceNotFound, "Device '\(path)' not found")) }
            switch property {
            case QMPBalloonPath.pollingProperty:
                do { try device.setPollingInterval(value) } catch { return .failure(error) }
                return .success(([:], nil))
            // The proxy's alias forwards to the device, whose type names the error.
            case QMPBalloonPath.statsProperty: return .failure(.generic("Property 'virtio-balloon-device.\(property)' is not writable"))
            default: return .failure(.generic("Property '\(type).\(property)' not found"))
            }
        case .queryCommands:
            return .success((.array(QMPCommand.names.map { ["name": .string($0)] }), nil))
        case .queryVersion:
            return .success((version.json, nil))
        }
    }
}
