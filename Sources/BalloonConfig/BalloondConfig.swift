/// The daemon's configuration: `/etc/balloond.conf` and its drop-ins, parsed.
/// `init()` gives the built-in defaults, which the shipped file documents.
public struct BalloondConfig: Sendable, Equatable {
    /// The page size chunk sizes must be a multiple of.
    public static let pageSize: UInt64 = 4096
    /// Smallest and largest `ChunkSize=`.
    public static let chunkSizeRange: ClosedRange<UInt64> = (2 << 20)...(1 << 30)
    /// Smallest non-zero `[Stats] Interval=`, in milliseconds.
    public static let minimumStatsIntervalMilliseconds: UInt64 = 100
    /// Smallest non-zero `FrameRescanInterval=`, in milliseconds.
    public static let minimumFrameRescanIntervalMilliseconds: UInt64 = 1000

    // [Channel]
    /// `Listen=`: where the host connects.
    public var listen: ChannelSpec = .virtioSerial("org.balloond.0")
    /// `VsockAllowedCIDs=`: who may connect over vsock.
    public var vsockAllowedCIDs: VsockPeers = .cids([2])

    // [Balloon]
    /// `ChunkSize=`: bytes reserved or released per step, a page multiple in 2M...1G.
    public var chunkSize: UInt64 = 64 << 20
    /// `MaxBalloon=`: the most the balloon may hold.
    public var maxBalloon: SizeSpec = .percent(80)
    /// `MemAvailableFloor=`: MemAvailable is kept above the largest of these.
    public var memAvailableFloor: [SizeSpec] = [.bytes(256 << 20), .percent(3)]
    /// `TransparentHugePages=`: how balloon chunks are advised for THP.
    public var transparentHugePages: HugePageMode = .auto
    /// `InitialTarget=`: the target to move to at start, before any host speaks.
    public var initialTarget: SizeSpec = .bytes(0)
    /// `FrameRescanInterval=`: how often reported frames are re-read while the
    /// host has frame reporting on, in milliseconds; 0 = only on request.
    public var frameRescanIntervalMilliseconds: UInt64 = 60_000

    // [Stats]
    /// `Interval=`: period of STATS events in milliseconds; 0 = off.
    public var statsIntervalMilliseconds: UInt64 = 0

    // [Pressure]
    /// PSI triggers on /proc/pressure/memory by tier; nil = off.
    public var lightTrigger: PSITriggerSpec? = PSITriggerSpec(kind: .some, stallMilliseconds: 20, windowMilliseconds: 500)
    public var heavyTrigger: PSITriggerSpec? = PSITriggerSpec(kind: .full, stallMilliseconds: 100, windowMilliseconds: 1000)
    public var severeTrigger: PSITriggerSpec? = PSITriggerSpec(kind: .full, stallMilliseconds: 500, windowMilliseconds: 1000)
    /// `LightStep=`: percent of the balloon a light signal gives back (1–100).
    public var lightStepPercent: UInt64 = 10
    /// `FloorMargin=`: below the floor, deflate until MemAvailable is floor + this.
    public var floorMargin: UInt64 = 64 << 20
    /// `ReclaimSignals=`: watch allocstall_*, pgscan_direct and oom_kill.
    public var reclaimSignals: Bool = true
    /// `QuietPeriod=`: no re-inflation until this long without pressure (ms).
    public var quietPeriodMilliseconds: UInt64 = 60_000
    /// `HolderProcesses=`: hold chunks in child processes the OOM killer takes first.
    public var holderProcesses: Bool = true

    // [Log]
    /// `Level=`.
    public var logLevel: LogLevel = .info

    /// All defaults.
    public init() {}

    /// The MemAvailable floor in bytes: the largest of `memAvailableFloor`
    /// resolved against `memTotal` (0 if the list is empty).
    public func floorBytes(memTotal: UInt64) -> UInt64 {
        memAvailableFloor.map { $0.resolve(memTotal: memTotal) }.max() ?? 0
    }

    /// The effective configuration in the file format, every key present,
    /// re-parseable to an equal value; used by `balloond --dump-config`.
    /// The header comment lists `sources`, the files it came from, in order.
    public func render(sources: [String]) -> String {
        var out = "# balloond: effective configuration (balloond --dump-config)\n"
        if sources.isEmpty {
            out += "# Built-in defaults only: no configuration file was read.\n"
        } else {
            out += "# Built-in defaults, then these files in order:\n"
            for source in sources {
                // Keep a strange file name from ending the comment early.
                let safe = String(source.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
                out += "#   \(safe)\n"
            }
        }
        for key in ConfigKey.allCases {
            if key == ConfigKey.allCases.first(where: { $0.section == key.section }) {
                out += "\n[\(key.section.rawValue)]\n"
            }
            out += "\(key.name)=\(key.render(self))\n"
        }
        return out
    }
}

// MARK: - The keys, their parsers and renderers

enum ConfigSection: String, CaseIterable {
    case channel = "Channel"
    case balloon = "Balloon"
    case stats = "Stats"
    case pressure = "Pressure"
    case log = "Log"
}

/// `TransparentHugePages=`: `yes` advises MADV_HUGEPAGE (huge pages even at
/// the cost of compaction), `no` MADV_NOHUGEPAGE, `auto` follows the system:
/// with THP `always` chunks are left to the kernel (huge pages where free, no
/// forced compaction stalls), with `madvise` they are advised, with `never`
/// nothing is done.
public enum HugePageMode: String, Sendable, Equatable {
    case auto, yes, no
}

/// A PSI trigger as the config writes it: `some 50ms 500ms` (kind, stall,
/// window); the kernel takes windows of 500 ms to 10 s.
public struct PSITriggerSpec: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable { case some, full }
    public var kind: Kind
    public var stallMilliseconds: UInt64
    public var windowMilliseconds: UInt64

    public init(kind: Kind, stallMilliseconds: UInt64, windowMilliseconds: UInt64) {
        self.kind = kind
        self.stallMilliseconds = stallMilliseconds
        self.windowMilliseconds = windowMilliseconds
    }

    public var description: String {
        "\(kind.rawValue) \(renderDuration(milliseconds: stallMilliseconds)) \(renderDuration(milliseconds: windowMilliseconds))"
    }
}

/// Every key, in file order. The parser, the renderer and the error messages
/// all come from this one table.
enum ConfigKey: CaseIterable {
    case listen, vsockAllowedCIDs
    case chunkSize, maxBalloon, memAvailableFloor, transparentHugePages, initialTarget, frameRescanInterval
    case statsInterval
    case lightTrigger, heavyTrigger, severeTrigger, lightStep, floorMargin, reclaimSignals, quietPeriod, holderProcesses
    case logLevel

    var section: ConfigSection {
        switch self {
        case .listen, .vsockAllowedCIDs: return .channel
        case .chunkSize, .maxBalloon, .memAvailableFloor, .transparentHugePages, .initialTarget, .frameRescanInterval:
            return .balloon
        case .statsInterval: return .stats
        case .lightTrigger, .heavyTrigger, .severeTrigger, .lightStep, .floorMargin, .reclaimSignals, .quietPeriod,
             .holderProcesses:
            return .pressure
        case .logLevel: return .log
        }
    }

    var name: String {
        switch self {
        case .listen: return "Listen"
        case .vsockAllowedCIDs: return "VsockAllowedCIDs"
        case .chunkSize: return "ChunkSize"
        case .maxBalloon: return "MaxBalloon"
        case .memAvailableFloor: return "MemAvailableFloor"
        case .transparentHugePages: return "TransparentHugePages"
        case .initialTarget: return "InitialTarget"
        case .frameRescanInterval: return "FrameRescanInterval"
        case .statsInterval: return "Interval"
        case .lightTrigger: return "LightTrigger"
        case .heavyTrigger: return "HeavyTrigger"
        case .severeTrigger: return "SevereTrigger"
        case .lightStep: return "LightStep"
        case .floorMargin: return "FloorMargin"
        case .reclaimSignals: return "ReclaimSignals"
        case .quietPeriod: return "QuietPeriod"
        case .holderProcesses: return "HolderProcesses"
        case .logLevel: return "Level"
        }
    }

    static func lookup(section: ConfigSection, name: String) -> ConfigKey? {
        allCases.first { $0.section == section && $0.name == name }
    }

    func render(_ config: BalloondConfig) -> String {
        switch self {
        case .listen: return config.listen.description
        case .vsockAllowedCIDs:
            switch config.vsockAllowedCIDs {
            case .any: return "any"
            case .cids(let cids): return cids.map(String.init).joined(separator: " ")
            }
        case .chunkSize: return SizeSpec.bytes(config.chunkSize).description
        case .maxBalloon: return config.maxBalloon.description
        case .memAvailableFloor: return config.memAvailableFloor.map(\.description).joined(separator: " ")
        case .transparentHugePages: return config.transparentHugePages.rawValue
        case .initialTarget: return config.initialTarget.description
        case .frameRescanInterval: return renderDuration(milliseconds: config.frameRescanIntervalMilliseconds)
        case .statsInterval: return renderDuration(milliseconds: config.statsIntervalMilliseconds)
        case .lightTrigger: return config.lightTrigger?.description ?? "off"
        case .heavyTrigger: return config.heavyTrigger?.description ?? "off"
        case .severeTrigger: return config.severeTrigger?.description ?? "off"
        case .lightStep: return "\(config.lightStepPercent)%"
        case .floorMargin: return SizeSpec.bytes(config.floorMargin).description
        case .reclaimSignals: return config.reclaimSignals ? "yes" : "no"
        case .quietPeriod: return renderDuration(milliseconds: config.quietPeriodMilliseconds)
        case .holderProcesses: return config.holderProcesses ? "yes" : "no"
        case .logLevel: return config.logLevel.rawValue
        }
    }

    /// Puts the default back (`Key=` with an empty value).
    func reset(_ config: inout BalloondConfig) {
        let defaults = BalloondConfig()
        switch self {
        case .listen: config.listen = defaults.listen
        case .vsockAllowedCIDs: config.vsockAllowedCIDs = defaults.vsockAllowedCIDs
        case .chunkSize: config.chunkSize = defaults.chunkSize
        case .maxBalloon: config.maxBalloon = defaults.maxBalloon
        case .memAvailableFloor: config.memAvailableFloor = defaults.memAvailableFloor
        case .transparentHugePages: config.transparentHugePages = defaults.transparentHugePages
        case .initialTarget: config.initialTarget = defaults.initialTarget
        case .frameRescanInterval: config.frameRescanIntervalMilliseconds = defaults.frameRescanIntervalMilliseconds
        case .statsInterval: config.statsIntervalMilliseconds = defaults.statsIntervalMilliseconds
        case .lightTrigger: config.lightTrigger = defaults.lightTrigger
        case .heavyTrigger: config.heavyTrigger = defaults.heavyTrigger
        case .severeTrigger: config.severeTrigger = defaults.severeTrigger
        case .lightStep: config.lightStepPercent = defaults.lightStepPercent
        case .floorMargin: config.floorMargin = defaults.floorMargin
        case .reclaimSignals: config.reclaimSignals = defaults.reclaimSignals
        case .quietPeriod: config.quietPeriodMilliseconds = defaults.quietPeriodMilliseconds
        case .holderProcesses: config.holderProcesses = defaults.holderProcesses
        case .logLevel: config.logLevel = defaults.logLevel
        }
    }

    /// Parses a non-empty, trimmed value into `config`; throws the message.
    func apply(_ value: String, to config: inout BalloondConfig) throws(ValueError) {
        switch self {
        case .listen:
            do {
                config.listen = try ChannelSpec.parse(value)
            } catch {
                throw ValueError(error.message)
            }
        case .vsockAllowedCIDs:
            config.vsockAllowedCIDs = try parseCIDs(value)
        case .chunkSize:
            let size = try parseSize(value, allowPercent: false)
            guard case .bytes(let bytes) = size else { throw ValueError("\"\(value)\" is not a size") }
            let page = BalloondConfig.pageSize
            let range = BalloondConfig.chunkSizeRange
            guard bytes % page == 0 else {
                let shown = value.utf8.allSatisfy(isDigit) ? value : "\(value) (\(bytes) bytes)"
                throw ValueError("\(shown) is not a multiple of the page size (\(page))")
            }
            guard bytes >= range.lowerBound else {
                throw ValueError("\(value) is less than the minimum \(SizeSpec.bytes(range.lowerBound))")
            }
            guard bytes <= range.upperBound else {
                throw ValueError("\(value) is more than the maximum \(SizeSpec.bytes(range.upperBound))")
            }
            config.chunkSize = bytes
        case .maxBalloon:
            config.maxBalloon = try parseSize(value, allowPercent: true)
        case .memAvailableFloor:
            let items = splitList(value)
            guard !items.isEmpty else {
                throw ValueError("\"\(value)\" lists no size (use e.g. 256M 3%; the floor is the largest)")
            }
            var floors: [SizeSpec] = []
            for item in items { floors.append(try parseSize(String(item), allowPercent: true)) }
            config.memAvailableFloor = floors
        case .transparentHugePages:
            if value.lowercased() == "auto" {
                config.transparentHugePages = .auto
            } else {
                do {
                    config.transparentHugePages = try parseBool(value) ? .yes : .no
                } catch {
                    throw ValueError("\"\(value)\" is not a boolean or auto (use auto, yes or no)")
                }
            }
        case .initialTarget:
            config.initialTarget = try parseSize(value, allowPercent: true)
        case .frameRescanInterval:
            guard let milliseconds = parseDuration(value) else {
                throw ValueError("\"\(value)\" is not a duration (use e.g. 60s, 5min, or 0 to rescan only on request)")
            }
            let minimum = BalloondConfig.minimumFrameRescanIntervalMilliseconds
            guard milliseconds == 0 || milliseconds >= minimum else {
                throw ValueError("\"\(value)\" is shorter than the minimum \(minimum)ms (use 0 to rescan only on request)")
            }
            config.frameRescanIntervalMilliseconds = milliseconds
        case .statsInterval:
            guard let milliseconds = parseDuration(value) else {
                throw ValueError("\"\(value)\" is not a duration (use e.g. 10s, 500ms, 1min, or 0 for off)")
            }
            let minimum = BalloondConfig.minimumStatsIntervalMilliseconds
            guard milliseconds == 0 || milliseconds >= minimum else {
                throw ValueError("\"\(value)\" is shorter than the minimum \(minimum)ms (use 0 to turn STATS events off)")
            }
            config.statsIntervalMilliseconds = milliseconds
        case .lightTrigger: config.lightTrigger = try parseTrigger(value)
        case .heavyTrigger: config.heavyTrigger = try parseTrigger(value)
        case .severeTrigger: config.severeTrigger = try parseTrigger(value)
        case .lightStep:
            guard case let .percent(p) = try parseSize(value, allowPercent: true), p >= 1, p == p.rounded() else {
                throw ValueError("\"\(value)\" is not a whole percentage from 1% to 100%")
            }
            config.lightStepPercent = UInt64(p)
        case .floorMargin:
            guard case let .bytes(bytes) = try parseSize(value, allowPercent: false) else {
                throw ValueError("\"\(value)\" is not a size")
            }
            config.floorMargin = bytes
        case .reclaimSignals: config.reclaimSignals = try parseBool(value)
        case .quietPeriod:
            guard let milliseconds = parseDuration(value) else {
                throw ValueError("\"\(value)\" is not a duration (use e.g. 60s or 5min)")
            }
            config.quietPeriodMilliseconds = milliseconds
        case .holderProcesses: config.holderProcesses = try parseBool(value)
        case .logLevel:
            guard let level = LogLevel(rawValue: value.lowercased()) else {
                let names = LogLevel.allCases.map(\.rawValue).joined(separator: ", ")
                throw ValueError("\"\(value)\" is not a log level (use one of \(names))")
            }
            config.logLevel = level
        }
    }
}

/// A bad value's message; the parser adds file, line, section and key.
struct ValueError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

// MARK: - Value parsers

func parseSize(_ value: String, allowPercent: Bool) throws(ValueError) -> SizeSpec {
    let examples = allowPercent ? "use e.g. 512M, 2G or 25%" : "use e.g. 64M or 2G; no percentages"
    do {
        return try SizeSpec.parse(value, allowPercent: allowPercent)
    } catch {
        switch error {
        case .empty, .notASize:
            throw ValueError("\"\(value)\" is not a size (\(examples))")
        case .negative:
            throw ValueError("\"\(value)\" is negative (\(examples))")
        case .overflow:
            throw ValueError("\"\(value)\" is too large (more than 16 EiB)")
        case .percentNotAllowed:
            throw ValueError("\"\(value)\" is a percentage, but this key takes a size (\(examples))")
        case .percentOutOfRange:
            throw ValueError("\"\(value)\" is more than 100%")
        }
    }
}

func parseBool(_ value: String) throws(ValueError) -> Bool {
    switch value.lowercased() {
    case "yes", "true", "on", "1": return true
    case "no", "false", "off", "0": return false
    default: throw ValueError("\"\(value)\" is not a boolean (use yes/no, true/false, on/off or 1/0)")
    }
}

/// Items separated by spaces, tabs and/or commas.
func splitList(_ value: String) -> [Substring] {
    value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," })
}

func parseCIDs(_ value: String) throws(ValueError) -> VsockPeers {
    let items = splitList(value)
    let usage = "use CIDs separated by spaces or commas, e.g. 2, or \"any\""
    if items.count == 1, items[0].lowercased() == "any" { return .any }
    if items.contains(where: { $0.lowercased() == "any" }) {
        throw ValueError("\"any\" cannot be combined with CIDs (\(usage))")
    }
    guard !items.isEmpty else { throw ValueError("\"\(value)\" lists no CID (\(usage))") }
    var cids: [UInt32] = []
    for item in items {
        guard item.utf8.allSatisfy(isDigit), let cid = UInt32(item) else {
            throw ValueError("\"\(item)\" is not a CID (\(usage))")
        }
        guard cid != 0xFFFF_FFFF else {
            throw ValueError("\(item) is VMADDR_CID_ANY; write \"any\" to allow every peer")
        }
        cids.append(cid)
    }
    return .cids(cids)
}

/// `off`, or `some|full STALL WINDOW` with the kernel's limits: a window of
/// 500 ms to 10 s and a stall above 0 and at most the window.
func parseTrigger(_ value: String) throws(ValueError) -> PSITriggerSpec? {
    if value.lowercased() == "off" { return nil }
    let words = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
    let usage = "(use e.g. \"some 50ms 500ms\", \"full 100ms 1s\" or off)"
    guard words.count == 3, let kind = PSITriggerSpec.Kind(rawValue: String(words[0])) else {
        throw ValueError("\"\(value)\" is not a PSI trigger \(usage)")
    }
    guard let stall = parseDuration(String(words[1])), let window = parseDuration(String(words[2])) else {
        throw ValueError("\"\(value)\" is not a PSI trigger: stall and window must be durations \(usage)")
    }
    guard (500...10_000).contains(window) else {
        throw ValueError("\"\(value)\": the window must be from 500ms to 10s (the kernel's limits)")
    }
    guard stall > 0, stall <= window else {
        throw ValueError("\"\(value)\": the stall must be above 0 and at most the window")
    }
    return PSITriggerSpec(kind: kind, stallMilliseconds: stall, windowMilliseconds: window)
}

/// A systemd-style time span in milliseconds, rounded down: `0`, `10s`,
/// `500ms`, `1min`, `1.5s`, `1min 30s`, `2h`; a plain number is seconds.
/// Nil for anything else or on overflow.
func parseDuration(_ value: String) -> UInt64? {
    let bytes = Array(value.utf8)
    var index = 0
    var total: UInt64 = 0
    var components = 0
    func skipSpaces() { while index < bytes.count, isASCIIWhitespace(bytes[index]) { index += 1 } }
    skipSpaces()
    while index < bytes.count {
        let numberStart = index
        while index < bytes.count, isDigit(bytes[index]) || bytes[index] == UInt8(ascii: ".") { index += 1 }
        let number = bytes[numberStart..<index]
        guard isPlainDecimal(number) else { return nil }
        skipSpaces()
        let unitStart = index
        while index < bytes.count, (bytes[index] | 0x20) >= UInt8(ascii: "a"), (bytes[index] | 0x20) <= UInt8(ascii: "z") {
            index += 1
        }
        let unit = String(decoding: bytes[unitStart..<index], as: UTF8.self).lowercased()
        let scale: UInt64
        switch unit {
        case "": scale = 1000
        case "ms", "msec": scale = 1
        case "s", "sec", "second", "seconds": scale = 1000
        case "m", "min", "minute", "minutes": scale = 60_000
        case "h", "hr", "hour", "hours": scale = 3_600_000
        default: return nil
        }
        components += 1
        // A unitless number is only allowed on its own.
        if unit.isEmpty {
            skipSpaces()
            guard components == 1, index == bytes.count else { return nil }
        }
        guard let milliseconds = scaleDecimal(number, by: scale) else { return nil }
        let (sum, overflow) = total.addingReportingOverflow(milliseconds)
        guard !overflow else { return nil }
        total = sum
        skipSpaces()
    }
    return components > 0 ? total : nil
}

/// floor(decimal × scale) for `digits[.digits]`, or nil on overflow.
func scaleDecimal(_ number: ArraySlice<UInt8>, by scale: UInt64) -> UInt64? {
    let point = number.firstIndex(of: UInt8(ascii: "."))
    var integer: UInt64 = 0
    for digit in number[..<(point ?? number.endIndex)] {
        let (times10, o1) = integer.multipliedReportingOverflow(by: 10)
        let (sum, o2) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
        guard !o1, !o2 else { return nil }
        integer = sum
    }
    let (whole, o3) = integer.multipliedReportingOverflow(by: scale)
    guard !o3 else { return nil }
    guard let point else { return whole }
    var numerator: UInt64 = 0
    var denominator: UInt64 = 1
    for digit in number[number.index(after: point)...].prefix(19) {
        numerator = numerator * 10 + UInt64(digit - UInt8(ascii: "0"))
        denominator *= 10
    }
    let product = numerator.multipliedFullWidth(by: scale)
    let fraction = denominator.dividingFullWidth((high: product.high, low: product.low)).quotient
    let (total, o4) = whole.addingReportingOverflow(fraction)
    return o4 ? nil : total
}

func renderDuration(milliseconds: UInt64) -> String {
    if milliseconds == 0 { return "0" }
    if milliseconds % 3_600_000 == 0 { return "\(milliseconds / 3_600_000)h" }
    if milliseconds % 60_000 == 0 { return "\(milliseconds / 60_000)min" }
    if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
    return "\(milliseconds)ms"
}
