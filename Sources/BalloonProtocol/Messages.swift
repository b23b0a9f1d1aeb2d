// SPDX-License-Identifier: Apache-2.0
/// Protocol v1 (docs/protocol.md): QMP/qemu-ga style requests, replies and events.
public enum ProtocolVersion {
    public static let current = 1
}

/// Error classes, as QMP names its classes.
public enum ErrorClass: String, Sendable, CaseIterable {
    /// The line is not JSON, not an object, or not a request.
    case malformedMessage = "MalformedMessage"
    /// The line exceeded the length bound and was discarded.
    case lineTooLong = "LineTooLong"
    case commandNotFound = "CommandNotFound"
    /// An argument is missing, of the wrong type or out of range.
    case invalidParameter = "InvalidParameter"
    /// The command was understood but the daemon cannot do it now.
    case genericError = "GenericError"
    /// The request names an earlier lifetime of the daemon (`instance`), which
    /// has since ended: nothing was done (docs/protocol.md, rule 5).
    case staleInstance = "StaleInstance"
}

public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public var errorClass: ErrorClass
    public var desc: String
    public init(_ errorClass: ErrorClass, _ desc: String) {
        self.errorClass = errorClass
        self.desc = desc
    }
    /// `desc` may come from a peer: printed with its control characters escaped.
    public var description: String { "\(errorClass.rawValue): \(PrintableText.escape(desc))" }
}

public struct Timestamp: Sendable, Equatable {
    public var seconds: Int64
    public var microseconds: Int64
    public init(seconds: Int64, microseconds: Int64) {
        self.seconds = seconds
        self.microseconds = microseconds
    }
    public var json: JSON { ["seconds": .int(seconds), "microseconds": .int(microseconds)] }
    public init?(json: JSON) {
        guard let s = json["seconds"]?.int64, let us = json["microseconds"]?.int64 else { return nil }
        self.init(seconds: s, microseconds: us)
    }
}

public struct Request: Sendable, Equatable {
    public var execute: String
    public var arguments: JSON
    public var id: JSON?

    public init(_ execute: String, arguments: JSON = .object([]), id: JSON? = nil) {
        self.execute = execute
        self.arguments = arguments
        self.id = id
    }

    public var json: JSON {
        var members: [(String, JSON)] = [("execute", .string(execute))]
        if case let .object(args) = arguments, !args.isEmpty { members.append(("arguments", arguments)) }
        if let id { members.append(("id", id)) }
        return .object(members)
    }
}

public struct Response: Sendable, Equatable {
    public var id: JSON?
    public var result: Result<JSON, ProtocolError>

    public init(id: JSON?, result: Result<JSON, ProtocolError>) {
        self.id = id
        self.result = result
    }

    /// A successful reply carrying a typed value.
    public init(id: JSON?, reply: some ReplyValue) {
        self.init(id: id, result: .success(reply.json))
    }

    public var json: JSON {
        var members: [(String, JSON)]
        switch result {
        case let .success(value): members = [("return", value)]
        case let .failure(error):
            members = [("error", ["class": .string(error.errorClass.rawValue), "desc": .string(error.desc)])]
        }
        if let id { members.append(("id", id)) }
        return .object(members)
    }
}

public struct Event: Sendable, Equatable {
    public var name: String
    public var data: JSON
    public var timestamp: Timestamp

    public init(_ name: String, data: JSON, timestamp: Timestamp) {
        self.name = name
        self.data = data
        self.timestamp = timestamp
    }

    public var json: JSON { ["event": .string(name), "data": data, "timestamp": timestamp.json] }
}

/// Anything that can arrive on the channel.
public enum Message: Sendable, Equatable {
    case request(Request)
    case response(Response)
    case event(Event)

    /// Decodes one line. A bad line becomes a `ProtocolError` that says what
    /// is wrong; the caller replies with it (id unknown: null).
    public static func decode(_ line: some Collection<UInt8>) throws(ProtocolError) -> Message {
        let value: JSON
        do { value = try JSON.parse(line) } catch { throw ProtocolError(.malformedMessage, error.description) }
        guard case .object = value else { throw ProtocolError(.malformedMessage, "a message must be a JSON object") }
        if let execute = value["execute"] {
            guard let name = execute.string else { throw ProtocolError(.malformedMessage, "\"execute\" must be a string") }
            let args = value["arguments"] ?? .object([])
            guard case .object = args else { throw ProtocolError(.invalidParameter, "\"arguments\" must be an object") }
            return .request(Request(name, arguments: args, id: value["id"]))
        }
        if let ret = value["return"] { return .response(Response(id: value["id"], result: .success(ret))) }
        if let err = value["error"] {
            let cls = err["class"]?.string.flatMap(ErrorClass.init(rawValue:)) ?? .genericError
            let desc = err["desc"]?.string ?? "(no description)"
            return .response(Response(id: value["id"], result: .failure(ProtocolError(cls, desc))))
        }
        if let name = value["event"]?.string {
            let ts = value["timestamp"].flatMap(Timestamp.init(json:)) ?? Timestamp(seconds: 0, microseconds: 0)
            return .event(Event(name, data: value["data"] ?? .null, timestamp: ts))
        }
        throw ProtocolError(.malformedMessage, "expected \"execute\", \"return\", \"error\" or \"event\"")
    }

    public var json: JSON {
        switch self {
        case let .request(r): return r.json
        case let .response(r): return r.json
        case let .event(e): return e.json
        }
    }

    /// The wire form: compact JSON and a newline.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        json.write(into: &out)
        out.append(0x0A)
        return out
    }
}
