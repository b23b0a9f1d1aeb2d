// SPDX-License-Identifier: Apache-2.0
// The QMP dialect's messages (docs/qmp.md): the part of QEMU's QMP that
// balloon tooling speaks, with QEMU's checks in QEMU's order and its error
// classes and descriptions (qapi/qmp-dispatch.c, the QAPI input visitor,
// system/balloon.c, qom/qom-qmp-cmds.c, monitor/qmp-cmds-control.c).

/// A QMP error: `{"class": …, "desc": …}`.
public struct QMPError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Class: String, Sendable, CaseIterable {
        case genericError = "GenericError"
        case commandNotFound = "CommandNotFound"
        case deviceNotActive = "DeviceNotActive"
        case deviceNotFound = "DeviceNotFound"
    }

    public var errorClass: Class
    public var desc: String
    public init(_ errorClass: Class, _ desc: String) {
        self.errorClass = errorClass
        self.desc = desc
    }
    public static func generic(_ desc: String) -> QMPError { QMPError(.genericError, desc) }
    public var json: JSON { ["class": .string(errorClass.rawValue), "desc": .string(desc)] }
    public var description: String { "\(errorClass.rawValue): \(desc)" }

    /// What QEMU answers any command but qmp_capabilities before negotiation.
    public static let negotiationFirst = QMPError(.commandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'")
    public static let negotiationDone = QMPError(.commandNotFound, "Capabilities negotiation is already complete, command ignored")
    /// QEMU's answer while no balloon device exists; here, while the guest's
    /// balloond is not connected or its RAM size is not known yet.
    public static let noBalloon = QMPError(.deviceNotActive, "No balloon device has been activated")
}

/// One command object: `{"execute": NAME, "arguments": {…}, "id": ANY}`.
public struct QMPRequest: Sendable, Equatable {
    public var execute: String
    public var arguments: [(String, JSON)]
    public var id: JSON?

    public init(execute: String, arguments: [(String, JSON)] = [], id: JSON? = nil) {
        self.execute = execute
        self.arguments = arguments
        self.id = id
    }

    public static func == (a: QMPRequest, b: QMPRequest) -> Bool {
        a.execute == b.execute && a.id == b.id && JSON.object(a.arguments) == JSON.object(b.arguments)
    }

    /// QEMU's qmp_dispatch checks: the id (any JSON value) is taken from any
    /// object, even one that fails them, and echoed in the answer. `exec-oob`
    /// is refused as any unknown member: this server offers no `oob`.
    public static func check(_ value: JSON) -> (id: JSON?, request: Result<QMPRequest, QMPError>) {
        guard case let .object(members) = value else { return (nil, .failure(.generic("QMP input must be a JSON object"))) }
        let id = value["id"]
        var execute: String?
        for (name, member) in members {
            switch name {
            case "execute":
                guard case let .string(s) = member else { return (id, .failure(.generic("QMP input member 'execute' must be a string"))) }
                execute = s
            case "arguments":
                guard case .object = member else { return (id, .failure(.generic("QMP input member 'arguments' must be an object"))) }
            case "id":
                continue
            default:
                return (id, .failure(.generic("QMP input member '\(name)' is unexpected")))
            }
        }
        guard let execute else { return (id, .failure(.generic("QMP input lacks member 'execute'"))) }
        return (id, .success(QMPRequest(execute: execute, arguments: value["arguments"]?.object ?? [], id: id)))
    }
}

/// The commands this server knows, their arguments checked as the QAPI
/// input visitor checks them (members in schema order, then unexpected ones).
public enum QMPCommand: Sendable, Equatable {
    case capabilities(enable: [String])
    /// `value`: the guest's logical size in bytes (guest RAM − balloon).
    case balloon(value: Int64)
    case queryBalloon
    case qomGet(path: String, property: String)
    case qomSet(path: String, property: String, value: JSON)
    case queryCommands
    case queryVersion

    /// Every command after negotiation, as query-commands lists them.
    public static let names = ["balloon", "qmp_capabilities", "qom-get", "qom-set", "query-balloon", "query-commands", "query-version"]

    public init(_ request: QMPRequest) throws(QMPError) {
        var args = QMPArguments(request.arguments)
        switch request.execute {
        case "qmp_capabilities": self = .capabilities(enable: try args.capabilityList("enable") ?? [])
        case "balloon": self = .balloon(value: try args.int("value"))
        case "query-balloon": self = .queryBalloon
        case "qom-get": self = .qomGet(path: try args.string("path"), property: try args.string("property"))
        case "qom-set": self = .qomSet(path: try args.string("path"), property: try args.string("property"), value: try args.any("value"))
        case "query-commands": self = .queryCommands
        case "query-version": self = .queryVersion
        default: throw QMPError(.commandNotFound, "The command \(request.execute) has not been found")
        }
        try args.finish()
    }
}

/// A command's arguments, read member by member as QEMU's input visitor does.
struct QMPArguments {
    var members: [(String, JSON)]
    var visited: Set<String> = []
    init(_ members: [(String, JSON)]) { self.members = members }

    /// The last member of that name (QEMU's dictionary keeps the last one).
    mutating func member(_ name: String) -> JSON? {
        visited.insert(name)
        return members.last(where: { $0.0 == name })?.1
    }

    mutating func required(_ name: String) throws(QMPError) -> JSON {
        guard let value = member(name) else { throw .generic("Parameter '\(name)' is missing") }
        return value
    }

    static func wrongType(_ name: String, _ expected: String) -> QMPError {
        .generic("Invalid parameter type for '\(name)', expected: \(expected)")
    }

    mutating func string(_ name: String) throws(QMPError) -> String {
        guard case let .string(s) = try required(name) else { throw Self.wrongType(name, "string") }
        return s
    }

    mutating func int(_ name: String) throws(QMPError) -> Int64 {
        guard let v = QMPArguments.integer(try required(name)) else { throw Self.wrongType(name, "integer") }
        return v
    }

    mutating func any(_ name: String) throws(QMPError) -> JSON { try required(name) }

    /// `enable`: an optional list of QMPCapability names (only `oob` exists).
    mutating func capabilityList(_ name: String) throws(QMPError) -> [String]? {
        guard let value = member(name) else { return nil }
        guard case let .array(items) = value else { throw Self.wrongType(name, "array") }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case let .string(s) = item else { throw Self.wrongType("\(name)[\(i)]", "string") }
            // QEMU's enum visitor gets no name for a list element, and says so.
            guard s == "oob" else { throw .generic("Parameter 'null' does not accept value '\(s)'") }
            out.append(s)
        }
        return out
    }

    func finish() throws(QMPError) {
        if let extra = members.first(where: { !visited.contains($0.0) }) {
            throw .generic("Parameter '\(extra.0)' is unexpected")
        }
    }

    /// A QAPI `int`: a JSON integer that fits int64 (QEMU refuses 1.0 and 1e9).
    static func integer(_ value: JSON) -> Int64? {
        switch value {
        case let .int(v): v
        case let .uint(v): v <= UInt64(Int64.max) ? Int64(v) : nil
        default: nil
        }
    }
}

/// The version both the greeting and query-version report.
public struct QMPVersion: Sendable, Equatable {
    /// The QEMU release whose QMP balloon dialect this server follows
    /// (tooling compares it before using a command).
    public var major = 10, minor = 0, micro = 0
    /// QEMU's downstream package string: names balloon-hostd.
    public var package: String

    public init(package: String = "balloon-hostd \(BalloondVersion.current)") { self.package = package }

    public var json: JSON {
        ["qemu": ["micro": .int(Int64(micro)), "minor": .int(Int64(minor)), "major": .int(Int64(major))], "package": .string(package)]
    }

    /// `{"QMP": {"version": …, "capabilities": []}}`: no `oob` (out-of-band
    /// execution needs a queue of in-band commands, and nothing here waits).
    public var greeting: JSON { ["QMP": ["version": json, "capabilities": []]] }
}

/// The bytes QEMU writes: `{"key": value, …}` with a space after each colon
/// and comma, ASCII only (other characters as \u escapes), ended by CRLF.
public enum QMPWire {
    public static func encode(_ value: JSON) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(value, into: &out)
        out.append(contentsOf: [0x0D, 0x0A])
        return out
    }

    static func write(_ value: JSON, into out: inout [UInt8]) {
        switch value {
        case let .string(s): writeString(s, into: &out)
        case let .array(items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(contentsOf: [UInt8(ascii: ","), 0x20]) }
                write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let .object(members):
            out.append(UInt8(ascii: "{"))
            for (i, (key, member)) in members.enumerated() {
                if i > 0 { out.append(contentsOf: [UInt8(ascii: ","), 0x20]) }
                writeString(key, into: &out)
                out.append(contentsOf: [UInt8(ascii: ":"), 0x20])
                write(member, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        default: value.write(into: &out)
        }
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        func hex4(_ v: UInt32) {
            out.append(contentsOf: "\\u".utf8)
            let digits = String(v, radix: 16)
            out.append(contentsOf: String(repeating: "0", count: 4 - digits.count).utf8)
            out.append(contentsOf: digits.utf8)
        }
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar.value {
            case 0x22: out.append(contentsOf: "\\\"".utf8)
            case 0x5C: out.append(contentsOf: "\\\\".utf8)
            case 0x08: out.append(contentsOf: "\\b".utf8)
            case 0x0C: out.append(contentsOf: "\\f".utf8)
            case 0x0A: out.append(contentsOf: "\\n".utf8)
            case 0x0D: out.append(contentsOf: "\\r".utf8)
            case 0x09: out.append(contentsOf: "\\t".utf8)
            case 0..<0x20, 0x7F: hex4(scalar.value)
            case 0x80..<0x10000: hex4(scalar.value)
            case 0x10000...:
                let v = scalar.value - 0x10000
                hex4(0xD800 + (v >> 10))
                hex4(0xDC00 + (v & 0x3FF))
            default: out.append(UInt8(scalar.value))
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A success: `{"return": VALUE, "id": ID}` (no id member without one).
    public static func success(_ value: JSON, id: JSON?) -> JSON {
        .object([("return", value)] + (id.map { [("id", $0)] } ?? []))
    }

    public static func failure(_ error: QMPError, id: JSON?) -> JSON {
        .object([("error", error.json)] + (id.map { [("id", $0)] } ?? []))
    }
}
