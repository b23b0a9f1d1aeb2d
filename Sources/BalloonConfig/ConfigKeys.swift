// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol

enum ConfigSection: String, CaseIterable {
    case channel = "Channel"
    case balloon = "Balloon"
    case stats = "Stats"
    case pressure = "Pressure"
    case freeMemory = "FreeMemory"
    case log = "Log"
}

/// One key of the file: where it lives, how its value is parsed and written
/// back, its default and the line that documents it. The parser, the
/// `--dump-config` renderer, `Key=` (back to the default) and the docs check
/// all read `ConfigKey.allCases`, so a key is added in one place.
struct ConfigKey: Sendable {
    let section: ConfigSection
    let name: String
    /// One line saying what the key does (docs/config.md says more).
    let doc: String
    /// Parses a non-empty, trimmed value into the configuration.
    let apply: @Sendable (String, inout BalloondConfig) throws(ValueError) -> Void
    /// The value as the file would spell it.
    let render: @Sendable (BalloondConfig) -> String
    /// Puts the default back.
    let reset: @Sendable (inout BalloondConfig) -> Void
    /// The default as the file would spell it.
    var renderedDefault: String { render(BalloondConfig.defaults) }

    init<Value>(
        _ section: ConfigSection, _ name: String, _ path: WritableKeyPath<BalloondConfig, Value> & Sendable,
        doc: String,
        parse: @escaping @Sendable (String) throws(ValueError) -> Value,
        render: @escaping @Sendable (Value) -> String
    ) {
        self.section = section
        self.name = name
        self.doc = doc
        apply = { (value: String, config: inout BalloondConfig) throws(ValueError) in config[keyPath: path] = try parse(value) }
        self.render = { render($0[keyPath: path]) }
        reset = { $0[keyPath: path] = BalloondConfig.defaults[keyPath: path] }
    }

    static func lookup(section: ConfigSection, name: String) -> ConfigKey? {
        allCases.first { $0.section == section && $0.name == name }
    }

    /// Every key, in file order (the order of `--dump-config` and the shipped file).
    static let allCases: [ConfigKey] = [
        // [Channel]
        ConfigKey(.channel, "Listen", \.listen, doc: "where the host connects",
                  parse: parseChannel, render: \.description),
        ConfigKey(.channel, "VsockAllowedCIDs", \.vsockAllowedCIDs, doc: "who may connect over vsock",
                  parse: parseCIDs, render: renderCIDs),
        // [Balloon]
        ConfigKey(.balloon, "ChunkSize", \.chunkSize, doc: "bytes reserved or released per step",
                  parse: parseChunkSize, render: { SizeSpec.bytes($0).description }),
        ConfigKey(.balloon, "MaxBalloon", \.maxBalloon, doc: "the most the balloon may hold",
                  parse: { (value) throws(ValueError) in try parseSize(value, allowPercent: true) },
                  render: \.description),
        ConfigKey(.balloon, "MemAvailableFloor", \.memAvailableFloor,
                  doc: "MemAvailable is kept above the largest of these",
                  parse: parseFloors, render: { $0.map(\.description).joined(separator: " ") }),
        ConfigKey(.balloon, "TransparentHugePages", \.transparentHugePages,
                  doc: "how balloon chunks are advised for THP",
                  parse: parseHugePageMode, render: \.rawValue),
        ConfigKey(.balloon, "InitialTarget", \.initialTarget, doc: "the target to move to at start",
                  parse: { (value) throws(ValueError) in try parseSize(value, allowPercent: true) },
                  render: \.description),
        ConfigKey(.balloon, "FrameRescanInterval", \.frameRescanInterval,
                  doc: "how often reported frames are re-read; 0 = only on request",
                  parse: { (value) throws(ValueError) in
                      try parseInterval(
                          value, examples: "use e.g. 60s, 5min, or 0 to rescan only on request",
                          minimum: (BalloondConfig.minimumFrameRescanInterval, zeroMeans: "to rescan only on request"))
                  },
                  render: renderDuration),
        // [Stats]
        ConfigKey(.stats, "Interval", \.statsInterval, doc: "period of STATS events; 0 = off",
                  parse: { (value) throws(ValueError) in
                      try parseInterval(
                          value, examples: "use e.g. 10s, 500ms, 1min, or 0 for off",
                          minimum: (StatsIntervalLimits.minimum, zeroMeans: "to turn STATS events off"))
                  },
                  render: renderDuration),
        // [Pressure]
        ConfigKey(.pressure, "LightTrigger", \.lightTrigger, doc: "PSI trigger of a light pressure signal, or off",
                  parse: parseTrigger, render: renderTrigger),
        ConfigKey(.pressure, "HeavyTrigger", \.heavyTrigger, doc: "PSI trigger of a heavy pressure signal, or off",
                  parse: parseTrigger, render: renderTrigger),
        ConfigKey(.pressure, "SevereTrigger", \.severeTrigger, doc: "PSI trigger of a severe pressure signal, or off",
                  parse: parseTrigger, render: renderTrigger),
        ConfigKey(.pressure, "LightStep", \.lightStepPercent, doc: "percent of the balloon a light signal gives back",
                  parse: parseStepPercent, render: { "\($0)%" }),
        ConfigKey(.pressure, "FloorMargin", \.floorMargin,
                  doc: "below the floor, deflate until MemAvailable is floor + this",
                  parse: parsePlainSize, render: { SizeSpec.bytes($0).description }),
        ConfigKey(.pressure, "ReclaimSignals", \.reclaimSignals, doc: "watch allocstall_*, pgscan_direct and oom_kill",
                  parse: parseBool, render: renderBool),
        ConfigKey(.pressure, "FirstQuietPeriod", \.firstQuietPeriod,
                  doc: "the quiet period after pressure that follows a calm spell; doubles up to QuietPeriod= when pressure comes back soon",
                  parse: { (value) throws(ValueError) in try parseInterval(value, examples: "use e.g. 15s or 1min") },
                  render: renderDuration),
        ConfigKey(.pressure, "QuietPeriod", \.quietPeriod, doc: "the longest quiet period: no re-inflation until this long without pressure",
                  parse: { (value) throws(ValueError) in try parseInterval(value, examples: "use e.g. 60s or 5min") },
                  render: renderDuration),
        ConfigKey(.pressure, "RegrowFreeMemory", \.regrowFreeMemory,
                  doc: "in the quiet period, grow back into memory that stayed free above the cushion",
                  parse: parseBool, render: renderBool),
        ConfigKey(.pressure, "RegrowColdCache", \.regrowColdCache,
                  doc: "in the quiet period, also reclaim cold page cache (cgroup v2) for that regrowth, stopping at a stall or refaults",
                  parse: parseBool, render: renderBool),
        ConfigKey(.pressure, "RegrowAgainAfter", \.regrowAgainAfter,
                  doc: "after a stall undid regrowth, regrow again once the guest went this long without a stall (doubling per undo)",
                  // Shorter than 1 s, and a workload that keeps stalling would have its memory taken and given back at once.
                  parse: { (value) throws(ValueError) in
                      try parseInterval(value, examples: "use e.g. 5s, or QuietPeriod='s value for not again in that quiet period",
                                        atLeast: .seconds(1))
                  },
                  render: renderDuration),
        ConfigKey(.pressure, "HolderProcesses", \.holderProcesses,
                  doc: "hold chunks in child processes the OOM killer takes first",
                  parse: parseBool, render: renderBool),
        ConfigKey(.pressure, "LockYieldsToHost", \.lockYieldsToHost,
                  doc: "a set-target below what the chunk being locked would hold ends the lock (with HolderProcesses=)",
                  parse: parseBool, render: renderBool),
        // [FreeMemory]
        ConfigKey(.freeMemory, "Allow", \.freeMemoryAllow, doc: "a host may switch the free-memory mode on",
                  parse: parseBool, render: renderBool),
        ConfigKey(.freeMemory, "Cushion", \.freeMemoryCushion, doc: "MemFree the free-memory mode leaves to the guest; auto",
                  parse: parseCushion, render: { $0.map { SizeSpec.bytes($0).description } ?? "auto" }),
        ConfigKey(.freeMemory, "SettleDelay", \.freeMemorySettleDelay, doc: "how long memory stays free before the mode takes it",
                  parse: { (value) throws(ValueError) in try parseInterval(value, examples: "use e.g. 2s or 500ms") },
                  render: renderDuration),
        ConfigKey(.freeMemory, "ReclaimColdCache", \.reclaimColdCache, doc: "also reclaim cold page cache (cgroup v2)",
                  parse: parseBool, render: renderBool),
        ConfigKey(.freeMemory, "ColdCacheStep", \.coldCacheStep, doc: "bytes of cold page cache reclaimed per step",
                  parse: parseColdCacheStep, render: { SizeSpec.bytes($0).description }),
        // [Log]
        ConfigKey(.log, "Level", \.logLevel, doc: "the least severe message logged",
                  parse: parseLogLevel, render: \.rawValue),
    ]
}

// MARK: - Per-key parsers and renderers the table names

private func renderCIDs(_ peers: VsockPeers) -> String {
    switch peers {
    case .any: "any"
    case .cids(let cids): cids.map(String.init).joined(separator: " ")
    }
}

private func parseChannel(_ value: String) throws(ValueError) -> ChannelSpec {
    do throws(ConfigError) { return try ChannelSpec.parse(value) } catch { throw ValueError(error.message) }
}

private func renderBool(_ value: Bool) -> String { value ? "yes" : "no" }

private func renderTrigger(_ trigger: PSITriggerSpec?) -> String { trigger?.description ?? "off" }

private func parseChunkSize(_ value: String) throws(ValueError) -> UInt64 {
    let bytes = try parsePlainSize(value)
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
    return bytes
}

/// A size in bytes where percentages are not allowed.
private func parsePlainSize(_ value: String) throws(ValueError) -> UInt64 {
    guard case .bytes(let bytes) = try parseSize(value, allowPercent: false) else {
        throw ValueError("\"\(value)\" is not a size")
    }
    return bytes
}

private func parseFloors(_ value: String) throws(ValueError) -> [SizeSpec] {
    let items = splitList(value)
    guard !items.isEmpty else {
        throw ValueError("\"\(value)\" lists no size (use e.g. 256M 3%; the floor is the largest)")
    }
    var floors: [SizeSpec] = []
    for item in items { floors.append(try parseSize(String(item), allowPercent: true)) }
    return floors
}

private func parseHugePageMode(_ value: String) throws(ValueError) -> HugePageMode {
    if value.lowercased() == "auto" { return .auto }
    do {
        return try parseBool(value) ? .yes : .no
    } catch {
        throw ValueError("\"\(value)\" is not a boolean or auto (use auto, yes or no)")
    }
}

private func parseStepPercent(_ value: String) throws(ValueError) -> UInt64 {
    guard case let .percent(p) = try parseSize(value, allowPercent: true), p >= 1, p == p.rounded() else {
        throw ValueError("\"\(value)\" is not a whole percentage from 1% to 100%")
    }
    return UInt64(p)
}

private func parseCushion(_ value: String) throws(ValueError) -> UInt64? {
    value.lowercased() == "auto" ? nil : try parsePlainSize(value)
}

private func parseColdCacheStep(_ value: String) throws(ValueError) -> UInt64 {
    let bytes = try parsePlainSize(value)
    guard bytes >= BalloondConfig.pageSize else { throw ValueError("\(value) is less than a page (4096 bytes)") }
    return bytes
}

private func parseLogLevel(_ value: String) throws(ValueError) -> LogLevel {
    guard let level = LogLevel(rawValue: value.lowercased()) else {
        let names = LogLevel.allCases.map(\.rawValue).joined(separator: ", ")
        throw ValueError("\"\(value)\" is not a log level (use one of \(names))")
    }
    return level
}
