// SPDX-License-Identifier: Apache-2.0
import BalloonPolicy
import BalloonProtocol

/// One key of balloon-hostd's files: like `ConfigKey`, for any config type.
/// The parser (through `schema`), `--dump-config` and the docs check read
/// the tables below, so a key is added in one place.
struct HostdKey<Config>: Sendable {
    let section: String
    let name: String
    let doc: String
    let apply: @Sendable (String, inout Config) throws(ValueError) -> Void
    let render: @Sendable (Config) -> String
    let reset: @Sendable (inout Config) -> Void

    init<Value>(
        _ section: String, _ name: String, _ path: WritableKeyPath<Config, Value> & Sendable, defaults: Config, doc: String,
        parse: @escaping @Sendable (String) throws(ValueError) -> Value, render: @escaping @Sendable (Value) -> String
    ) where Config: Sendable {
        self.section = section
        self.name = name
        self.doc = doc
        apply = { (value: String, config: inout Config) throws(ValueError) in config[keyPath: path] = try parse(value) }
        self.render = { render($0[keyPath: path]) }
        reset = { $0[keyPath: path] = defaults[keyPath: path] }
    }

    static func schema(_ keys: [HostdKey], example: String) -> ConfigSchema<Config> {
        var sections: [String] = []
        for key in keys where !sections.contains(key.section) { sections.append(key.section) }
        return ConfigSchema(
            sections: sections, keys: keys.map { .init(section: $0.section, name: $0.name, apply: $0.apply, reset: $0.reset) },
            example: example)
    }

    /// The keys as a file: `[Section]` headers, `Key=value` lines.
    static func render(_ keys: [HostdKey], _ config: Config) -> String {
        var text = ""
        var section = ""
        for key in keys {
            if key.section != section {
                text += (text.isEmpty ? "" : "\n") + "[\(key.section)]\n"
                section = key.section
            }
            text += "\(key.name)=\(key.render(config))\n"
        }
        return text
    }
}

enum HostdKeys {
    static let host: [HostdKey<HostdConfig>] = [
        HostdKey("Host", "Control", \.control, defaults: .defaults, doc: "the control socket balloonctl talks to",
                 parse: parseAbsolutePath, render: { $0 }),
        HostdKey("Host", "HostMemory", \.hostMemory, defaults: .defaults,
                 doc: "budget this much memory for the guests instead of all of MemTotal; none = MemTotal",
                 parse: { (v) throws(ValueError) in v.lowercased() == "none" ? nil : try parsePlainBytes(v) },
                 render: { $0.map { SizeSpec.bytes($0).description } ?? "none" }),
        HostdKey("Host", "GuestDirectory", \.guestDirectory, defaults: .defaults, doc: "one NAME.conf per guest",
                 parse: parseAbsolutePath, render: { $0 }),
        HostdKey("Host", "ControlGroup", \.controlGroup, defaults: .defaults,
                 doc: "a group whose members may use the control socket too (mode 0660); none = only root and the agent's user",
                 parse: parseGroupName, render: { $0 ?? "none" }),
        HostdKey("Policy", "Mode", \.mode, defaults: .defaults, doc: "auto, proxmox, mom or manual",
                 parse: { (v) throws(ValueError) in try parseName(v, PolicyMode.self) }, render: \.rawValue),
        HostdKey("Policy", "HostReserve", \.hostReserve, defaults: .defaults,
                 doc: "host memory (or budget) kept available; a percentage is of the total",
                 parse: { (v) throws(ValueError) in try parseSize(v, allowPercent: true) }, render: \.description),
        HostdKey("Policy", "Interval", \.interval, defaults: .defaults, doc: "time between policy rounds; auto = the mode's own",
                 parse: { (v) throws(ValueError) in
                     if v.lowercased() == "auto" { return nil }
                     return try parseInterval(v, examples: "use e.g. 1s, 10s or auto", atLeast: .milliseconds(100))
                 },
                 render: { $0.map(renderDuration) ?? "auto" }),
        HostdKey("Policy", "MaxStep", \.maxStep, defaults: .defaults, doc: "the most a target moves per round; auto = the mode's own",
                 parse: { (v) throws(ValueError) in v.lowercased() == "auto" ? nil : try parsePlainBytes(v) },
                 render: { $0.map { SizeSpec.bytes($0).description } ?? "auto" }),
        HostdKey("Policy", "HeadroomBoost", \.headroomBoost, defaults: .defaults,
                 doc: "auto: the most a guest's headroom grows after repeated pressure, as a factor (1 = never); auto = 2",
                 parse: parseBoost, render: { $0.map(plainDecimal) ?? "auto" }),
        HostdKey("Policy", "BurstYield", \.burstYield, defaults: .defaults,
                 doc: "auto: while a guest takes memory back at once, inflate no other guest",
                 parse: parseBool, render: { $0 ? "yes" : "no" }),
        HostdKey("Policy", "BurstLinger", \.burstLinger, defaults: .defaults,
                 doc: "auto: how long a guest still counts as taking memory back at once after its balloon last fell; 0 = only while it falls",
                 parse: { (v) throws(ValueError) in
                     let d = try parseInterval(v, examples: "use e.g. 0, 3s or 1500ms")
                     guard d <= .seconds(60) else { throw ValueError("\"\(v)\" is longer than the maximum 60s") }
                     return d
                 },
                 render: renderDuration),
        HostdKey("Policy", "BurstHoldGrowth", \.burstHoldGrowth, defaults: .defaults,
                 doc: "auto: a guest whose balloon grows while another takes memory back at once stops at once, not at the next round",
                 parse: parseBool, render: { $0 ? "yes" : "no" }),
        HostdKey("Policy", "SpareStalledCache", \.spareStalledCache, defaults: .defaults,
                 doc: "auto: a guest that stalls right after its page cache was taken keeps its cache for its hold-off",
                 parse: parseBool, render: { $0 ? "yes" : "no" }),
        HostdKey("Policy", "RefaultRate", \.refaultRate, defaults: .defaults,
                 doc: "auto: a guest's page-cache refaults a second that count as pressure (its cache is its working set); 0 = not a signal",
                 parse: parseRefaultRate, render: { String($0) }),
        HostdKey("Policy", "StatsInterval", \.statsInterval, defaults: .defaults, doc: "how often each guest sends STATS",
                 parse: { (v) throws(ValueError) in
                     let d = try parseInterval(v, examples: "use e.g. 1s or 500ms")
                     guard d >= StatsIntervalLimits.minimum, d <= StatsIntervalLimits.maximum else {
                         throw ValueError("\"\(v)\" is outside \(renderDuration(StatsIntervalLimits.minimum))…\(renderDuration(StatsIntervalLimits.maximum))")
                     }
                     return d
                 },
                 render: renderDuration),
        HostdKey("Discovery", "Libvirt", \.libvirt, defaults: .defaults,
                 doc: "watch libvirt's channel directory for org.balloond.0 sockets",
                 parse: parseBool, render: { $0 ? "yes" : "no" }),
        HostdKey("Discovery", "Directories", \.directories, defaults: .defaults,
                 doc: "directories whose sockets are guests, named after the socket",
                 parse: { (v) throws(ValueError) in
                     var out: [String] = []
                     for item in splitList(v) { out.append(try parseAbsolutePath(String(item))) }
                     return out
                 },
                 render: { $0.joined(separator: " ") }),
        HostdKey("Discovery", "LibvirtMemory", \.libvirtMemory, defaults: .defaults,
                 doc: "no, yes (libvirt's default memory_backing_dir) or qemu.conf's memory_backing_dir: discovered libvirt guests' RAM files are punched",
                 parse: { (v) throws(ValueError) in
                     switch v.lowercased() {
                     case "no", "false", "off", "0": return nil
                     case "yes", "true", "on", "1": return .standard
                     default: return .backingDirectory(try parseAbsolutePath(v))
                     }
                 },
                 render: { $0?.description ?? "no" }),
        HostdKey("Discovery", "LibvirtRamMap", \.libvirtRamMap, defaults: .defaults,
                 doc: "auto (RAM files below 2.75 GiB only), pc or q35: the machine type of the libvirt guests",
                 parse: { (v) throws(ValueError) in try parseName(v, LibvirtRamMap.self) }, render: \.rawValue),
        HostdKey("Metrics", "Listen", \.metricsListen, defaults: .defaults,
                 doc: "serve /metrics (Prometheus) on ADDRESS:PORT, [IPV6]:PORT or a unix socket path; no = off",
                 parse: parseMetricsListen, render: \.description),
    ]

    static let guest: [HostdKey<GuestConfig>] = [
        HostdKey("Guest", "Channel", \.channel, defaults: .defaults,
                 doc: "unix:PATH, vsock:CID:PORT or hybrid-vsock:PATH:PORT (required)",
                 parse: { (v) throws(ValueError) in try parseGuestChannel(v) }, render: { $0?.description ?? "" }),
        HostdKey("Guest", "MemoryBackend", \.memoryBackend, defaults: .defaults,
                 doc: "the guest's RAM file; reported frames are punched out of it",
                 parse: { (v) throws(ValueError) in try parseAbsolutePath(v) }, render: { $0 ?? "" }),
        HostdKey("Guest", "RamMap", \.ramMap, defaults: .defaults, doc: "linear, pc, q35 or GPA:SIZE@OFFSET[,…]",
                 parse: { (v) throws(ValueError) in v }, render: { $0 }),
        HostdKey("Guest", "RamSize", \.ramSize, defaults: .defaults,
                 doc: "the guest's RAM; default the backend file's size, else the guest's MemTotal",
                 parse: { (v) throws(ValueError) in try parsePlainBytes(v) }, render: { $0.map { SizeSpec.bytes($0).description } ?? "" }),
        HostdKey("Guest", "Min", \.min, defaults: .defaults, doc: "the guest keeps at least this; a percentage is of RamSize",
                 parse: { (v) throws(ValueError) in try parseSize(v, allowPercent: true) }, render: \.description),
        HostdKey("Guest", "Max", \.max, defaults: .defaults, doc: "the guest never has more than this",
                 parse: { (v) throws(ValueError) in try parseSize(v, allowPercent: true) }, render: \.description),
        HostdKey("Guest", "Shares", \.shares, defaults: .defaults, doc: "relative weight: more shares, less taken",
                 parse: { (v) throws(ValueError) in
                     guard let n = UInt32(v), (1...50_000).contains(n) else { throw ValueError("\"\(v)\" is not a whole number from 1 to 50000") }
                     return n
                 },
                 render: { String($0) }),
        HostdKey("Guest", "Policy", \.policy, defaults: .defaults, doc: "auto (the host policy decides), manual or off",
                 parse: { (v) throws(ValueError) in try parseName(v, GuestPolicy.self) }, render: \.rawValue),
        HostdKey("Guest", "Target", \.target, defaults: .defaults,
                 doc: "a balloon target kept applied (Policy=manual or off: the agent's policy never moves it)",
                 parse: { (v) throws(ValueError) in try parsePlainBytes(v) }, render: { $0.map { SizeSpec.bytes($0).description } ?? "" }),
        HostdKey("Guest", "FreeMemoryReporting", \.freeMemoryReporting, defaults: .defaults,
                 doc: "ask the guest to report its free memory too", parse: parseBool, render: { $0 ? "yes" : "no" }),
        HostdKey("Guest", "PopulateOnDeflate", \.populateOnDeflate, defaults: .defaults,
                 doc: "allocate the RAM file again for memory the guest takes back, before it touches it: yes, no, "
                     + "or below-target (only what the guest takes back on its own, below the agent's target)",
                 parse: { (v) throws(ValueError) in
                     if v.lowercased() == GuestPopulate.belowTarget.rawValue { return .belowTarget }
                     do { return try parseBool(v) ? .yes : .no } catch {
                         throw ValueError("\"\(v)\" is not yes, no or below-target")
                     }
                 },
                 render: \.rawValue),
        HostdKey("Guest", "QMP", \.qmp, defaults: .defaults,
                 doc: "a unix socket speaking QEMU's QMP balloon dialect (docs/qmp.md)",
                 parse: { (v) throws(ValueError) in try parseAbsolutePath(v) }, render: { $0 ?? "" }),
    ]

    static let hostSchema = HostdKey.schema(host, example: "Host")
    static let guestSchema = HostdKey.schema(guest, example: "Guest")
}

// MARK: - Value syntaxes of balloon-hostd's keys

private func parseAbsolutePath(_ value: String) throws(ValueError) -> String {
    guard value.hasPrefix("/") else { throw ValueError("\"\(value)\" is not an absolute path") }
    guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
        throw ValueError("\"\(value)\" contains a control character")
    }
    return value
}

/// A group name as useradd/groupadd accept it (or a number); `none` is no group.
private func parseGroupName(_ value: String) throws(ValueError) -> String? {
    if value.lowercased() == "none" { return nil }
    let allowed = value.utf8.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D || c == 0x2E
    }
    guard allowed, value.count <= 32, value.first != "-" else {
        throw ValueError("\"\(PrintableText.escape(value))\" is not a group name (letters, digits, _ - .) or number; none = no group")
    }
    return value
}

private func parsePlainBytes(_ value: String) throws(ValueError) -> UInt64 {
    guard case let .bytes(b) = try parseSize(value, allowPercent: false) else { throw ValueError("\"\(value)\" is not a size") }
    return b
}

/// `HeadroomBoost=`: a factor from 1 (no boost) to 16, or `auto`.
private func parseBoost(_ value: String) throws(ValueError) -> Double? {
    if value.lowercased() == "auto" { return nil }
    // Plain decimals only, as every other number in the files: Double()
    // would also take "1e1", "0x2" or "inf".
    guard isPlainDecimal(Array(value.utf8)[...]), let x = Double(value) else { throw ValueError("\"\(value)\" is not a number (use e.g. 2, 1.5, 1 for none, or auto)") }
    guard x >= 1, x <= 16 else { throw ValueError("\"\(value)\" is outside 1…16") }
    return x
}

/// `RefaultRate=`: a plain count a second, 0 (off) to 10,000,000.
private func parseRefaultRate(_ value: String) throws(ValueError) -> UInt64 {
    guard !value.isEmpty, value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt64(value) else {
        throw ValueError("\"\(value)\" is not a count a second (use e.g. 2500, or 0 for none)")
    }
    guard n <= 10_000_000 else { throw ValueError("\"\(value)\" is more than 10000000") }
    return n
}

private func parseName<E: RawRepresentable & CaseIterable>(_ value: String, _: E.Type) throws(ValueError) -> E where E.RawValue == String {
    guard let e = E(rawValue: value.lowercased()) else {
        throw ValueError("\"\(value)\" is not one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return e
}

/// `unix:PATH`, `vsock:CID:PORT`, `hybrid-vsock:PATH:PORT`.
func parseGuestChannel(_ value: String) throws(ValueError) -> GuestChannel {
    let usage = "use unix:PATH, vsock:CID:PORT or hybrid-vsock:PATH:PORT"
    func port(_ text: Substring) throws(ValueError) -> UInt32 {
        guard let p = UInt32(text) else { throw ValueError("\"\(value)\": \"\(text)\" is not a port number (\(usage))") }
        return p
    }
    if value.hasPrefix("unix:") {
        return .unix(path: try parseAbsolutePath(String(value.dropFirst(5))))
    }
    if value.hasPrefix("vsock:") {
        let parts = value.dropFirst(6).split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let cid = UInt32(parts[0]), cid >= 3 else {
            throw ValueError("\"\(value)\" is not a guest vsock address (CID 3 or more, then :PORT; \(usage))")
        }
        return .vsock(cid: cid, port: try port(parts[1]))
    }
    if value.hasPrefix("hybrid-vsock:") {
        let rest = value.dropFirst(13)
        guard let colon = rest.lastIndex(of: ":") else { throw ValueError("\"\(value)\" has no :PORT (\(usage))") }
        return .hybridVsock(path: try parseAbsolutePath(String(rest[..<colon])), port: try port(rest[rest.index(after: colon)...]))
    }
    throw ValueError("\"\(value)\" is not a guest channel (\(usage))")
}
