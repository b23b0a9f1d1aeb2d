// SPDX-License-Identifier: Apache-2.0
/// Reads the members of one JSON object (a request's arguments, a reply, an
/// event's data) and throws a `ProtocolError` that names the object and the
/// member when one is missing or of the wrong type. The texts for command
/// arguments are the ones the daemon has always given (docs/protocol.md).
struct Fields {
    /// What the object is, as errors name it: `set-target`, `query reply`, `STATS`.
    let context: String
    let value: JSON
    let members: [(String, JSON)]
    /// `argument` for requests, `field` for replies and events.
    let noun: String
    let errorClass: ErrorClass

    init(_ value: JSON, _ context: String, noun: String = "field", errorClass: ErrorClass = .malformedMessage) throws(ProtocolError) {
        guard case let .object(members) = value else {
            throw ProtocolError(errorClass, "\(context): expected an object, got \(value.serialized())")
        }
        self.context = context
        self.value = value
        self.members = members
        self.noun = noun
        self.errorClass = errorClass
    }

    func fail(_ text: String) -> ProtocolError { ProtocolError(errorClass, "\(context): \(text)") }

    func required(_ key: String) throws(ProtocolError) -> JSON {
        guard let v = value[key] else { throw fail("missing \(noun) \"\(key)\"") }
        return v
    }

    /// nil when absent or null.
    func optional(_ key: String) -> JSON? {
        guard let v = value[key], !v.isNull else { return nil }
        return v
    }

    func uint64(_ key: String) throws(ProtocolError) -> UInt64 { try uint64(key, try required(key)) }

    func optionalUInt64(_ key: String) throws(ProtocolError) -> UInt64? {
        guard let v = optional(key) else { return nil }
        return try uint64(key, v)
    }

    private func uint64(_ key: String, _ v: JSON) throws(ProtocolError) -> UInt64 {
        guard let n = v.uint64 else { throw fail("\"\(key)\" must be a non-negative integer, got \(v.serialized())") }
        return n
    }

    func int64(_ key: String) throws(ProtocolError) -> Int64 {
        let v = try required(key)
        guard let n = v.int64 else { throw fail("\"\(key)\" must be an integer, got \(v.serialized())") }
        return n
    }

    func double(_ key: String) throws(ProtocolError) -> Double {
        let v = try required(key)
        guard let d = v.double else { throw fail("\"\(key)\" must be a number, got \(v.serialized())") }
        return d
    }

    func bool(_ key: String) throws(ProtocolError) -> Bool {
        let v = try required(key)
        guard let b = v.bool else { throw fail("\"\(key)\" must be true or false") }
        return b
    }

    func string(_ key: String) throws(ProtocolError) -> String {
        let v = try required(key)
        guard let s = v.string else { throw fail("\"\(key)\" must be a string, got \(v.serialized())") }
        return s
    }

    func optionalString(_ key: String) throws(ProtocolError) -> String? {
        guard let v = optional(key) else { return nil }
        guard let s = v.string else { throw fail("\"\(key)\" must be a string or null, got \(v.serialized())") }
        return s
    }

    func array(_ key: String) throws(ProtocolError) -> [JSON] {
        let v = try required(key)
        guard let a = v.array else { throw fail("\"\(key)\" must be an array, got \(v.serialized())") }
        return a
    }

    /// A string member naming one case of `E`.
    func enumeration<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws(ProtocolError) -> E where E.RawValue == String {
        let s = try string(key)
        guard let e = E(rawValue: s) else {
            throw fail("\"\(key)\" must be one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(s)\"")
        }
        return e
    }

    /// A nested object, read with the member's name in the context.
    func object(_ key: String) throws(ProtocolError) -> Fields {
        try Fields(try required(key), "\(context) \"\(key)\"", noun: noun, errorClass: errorClass)
    }

    func optionalObject(_ key: String) throws(ProtocolError) -> Fields? {
        guard let v = optional(key) else { return nil }
        return try Fields(v, "\(context) \"\(key)\"", noun: noun, errorClass: errorClass)
    }

    /// Refuses members not in `keys` (a typo in a script is an error).
    func allowOnly(_ keys: [String]) throws(ProtocolError) {
        for (key, _) in members where !keys.contains(key) {
            let known = keys.isEmpty ? "none" : keys.sorted().joined(separator: ", ")
            throw fail("unknown \(noun) \"\(key)\" (accepted: \(known))")
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded down; negative durations are 0.
    var wholeMilliseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let (ms, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1000)
        return overflow ? .max : ms &+ UInt64(attoseconds / 1_000_000_000_000_000)
    }

    static func milliseconds(exactly ms: UInt64) -> Duration { .milliseconds(Int64(clamping: ms)) }
}
