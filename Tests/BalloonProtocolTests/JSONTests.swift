// SPDX-License-Identifier: Apache-2.0
import BalloonTestSupport
import Testing
@testable import BalloonProtocol

/// The parse error for `text`, or nil if it parsed.
func parseError(_ text: String) -> JSONParseError? {
    parseError(bytes: Array(text.utf8))
}

func parseError(bytes: [UInt8]) -> JSONParseError? {
    do {
        _ = try JSON.parse(bytes)
        return nil
    } catch {
        return error
    }
}

func parsed(_ text: String) -> JSON? {
    try? JSON.parse(text)
}

@Suite("JSON values")
struct JSONValueTests {
    // MARK: Round trips of every kind

    static let everyKind: [JSON] = {
        var values: [JSON] = [.null, .bool(true), .bool(false)]
        values += [.int(0), .int(-1), .int(42), .int(Int64.max), .int(Int64.min)]
        values += [.uint(UInt64.max), .uint(UInt64(Int64.max) + 1)]
        values += [.double(1.5), .double(-2.25e-7), .double(6.02214076e23), .double(Double.leastNonzeroMagnitude)]
        values.append(.double(Double.greatestFiniteMagnitude))
        values += [.string(""), .string("plain"), .string("quote \" backslash \\ slash /")]
        values.append(.string("tab\tnewline\ncr\rnul\u{0}bell\u{7}del\u{7F}"))
        values.append(.string("é 日本 🎈 \u{10FFFF}"))
        values.append(.array([]))
        let inner: [JSON] = [.double(3.5)]
        values.append(.array([.int(1), .string("two"), .null, .bool(true), .array(inner)]))
        values.append(.object([]))
        let c: JSON = .object([("c", .array([.null, .bool(false)]))])
        values.append(.object([("a", .int(1)), ("b", c), ("", .string("empty key")), ("line\nkey", .int(2))]))
        return values
    }()

    @Test("every value kind round-trips through serialized() and parse()", arguments: everyKind)
    func roundTrip(value: JSON) throws {
        let text = value.serialized()
        #expect(!text.contains("\n"))
        let back = try JSON.parse(text)
        #expect(back == value, "\(text)")
        // And the text is stable: serialising again gives the same bytes.
        #expect(back.serialized() == text)
    }

    @Test func serializedFormsAreCompactAndExact() {
        #expect(JSON.uint(UInt64.max).serialized() == "18446744073709551615")
        #expect(JSON.int(Int64.min).serialized() == "-9223372036854775808")
        #expect(JSON.int(Int64.max).serialized() == "9223372036854775807")
        #expect(JSON.double(1000).serialized() == "1000")
        #expect(JSON.double(1.5).serialized() == "1.5")
        #expect(JSON.double(.nan).serialized() == "null")
        #expect(JSON.double(.infinity).serialized() == "null")
        #expect(JSON.object([("a", [1, 2]), ("b", nil)]).serialized() == #"{"a":[1,2],"b":null}"#)
        #expect(JSON.object([("z", 1), ("a", 2)]).serialized() == #"{"z":1,"a":2}"#, "keys keep their order")
    }

    // MARK: Exact 64-bit integers

    @Test func exactSixtyFourBitIntegers() throws {
        #expect(try JSON.parse("18446744073709551615") == .uint(UInt64.max))
        #expect(try JSON.parse("18446744073709551615").uint64 == UInt64.max)
        #expect(try JSON.parse("18446744073709551614").uint64 == UInt64.max - 1)
        #expect(try JSON.parse("-9223372036854775808") == .int(Int64.min))
        #expect(try JSON.parse("-9223372036854775808").int64 == Int64.min)
        #expect(try JSON.parse("9223372036854775807").int64 == Int64.max)
        #expect(try JSON.parse("9223372036854775808").uint64 == UInt64(Int64.max) + 1)
        #expect(try JSON.parse("9223372036854775808").int64 == nil)
        #expect(try JSON.parse("-1").uint64 == nil)
        #expect(try JSON.parse("-0") == .int(0))
        // Beyond 64 bits: a double, not an exact integer and not a crash.
        let huge = try JSON.parse("18446744073709551616")
        #expect(huge.uint64 == nil)
        #expect(huge.double == 18446744073709551616.0)
        let tiny = try JSON.parse("-9223372036854775809")
        if case .double = tiny {} else { Issue.record("below Int64.min must not be an exact integer: \(tiny)") }
    }

    @Test("equality of integers is exact, also near the ends of the 64-bit range")
    func integerEqualityIsExact() {
        #expect(JSON.uint(UInt64.max) != JSON.uint(UInt64.max - 1))
        #expect(JSON.uint(UInt64.max) != JSON.double(18446744073709551616.0))
        #expect(JSON.uint(1 << 63) != JSON.uint((1 << 63) + 1))
        #expect(JSON.int(Int64.min) != JSON.int(Int64.min + 1))
        #expect(JSON.int(Int64.max) != JSON.uint(UInt64(Int64.max) + 1))
        // Equal numbers of different kinds are equal.
        #expect(JSON.int(5) == JSON.uint(5))
        #expect(JSON.int(1000) == JSON.double(1000))
        #expect(JSON.int(-3) == JSON.double(-3))
        #expect(JSON.double(0.5) == JSON.double(0.5))
        #expect(JSON.double(0.5) != JSON.int(0))
        #expect(JSON.int(1) != JSON.string("1"))
        #expect(JSON.int(0) != JSON.bool(false))
        #expect(JSON.null != JSON.int(0))
    }

    @Test func numericAccessors() {
        #expect(JSON.double(1e9).uint64 == 1_000_000_000)
        #expect(JSON.double(1.5).uint64 == nil)
        #expect(JSON.double(-1).uint64 == nil)
        #expect(JSON.double(-1).int64 == -1)
        #expect(JSON.double(18446744073709551616.0).uint64 == nil)
        #expect(JSON.double(9223372036854775808.0).int64 == nil)
        #expect(JSON.double(.nan).uint64 == nil)
        #expect(JSON.double(.infinity).int64 == nil)
        #expect(JSON.string("1").uint64 == nil)
        #expect(JSON.int(7).double == 7)
    }

    // MARK: Doubles

    @Test(arguments: [
        ("1.5", 1.5), ("-0.25", -0.25), ("1e3", 1000), ("1E+3", 1000), ("2.5e-3", 0.0025),
        ("0.1", 0.1), ("1.7976931348623157e308", 1.7976931348623157e308), ("1e-400", 0),
        ("123456789012345678901234567890", 1.2345678901234568e29),
    ])
    func doubles(text: String, expected: Double) throws {
        let value = try JSON.parse(text)
        #expect(value.double == expected)
    }

    @Test func doubleOutOfRangeIsAnError() {
        let e = parseError("1e400")
        #expect(e != nil)
        #expect(e?.offset == 5)
        #expect(parseError("-1e400") != nil)
    }

    // MARK: Strings and escapes

    @Test func stringEscapes() throws {
        #expect(try JSON.parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{8}\u{C}\n\r\t"))
        #expect(try JSON.parse(#""\u0041\u00e9\u65E5""#) == .string("Aé日"))
        #expect(try JSON.parse(#""\u0000x""#) == .string("\u{0}x"))
        #expect(try JSON.parse(#""\ud83c\udf88""#) == .string("🎈"), "a surrogate pair is one scalar")
        #expect(try JSON.parse(#""\uDBFF\uDFFF""#) == .string("\u{10FFFF}"))
        #expect(try JSON.parse("\"é🎈\"") == .string("é🎈"), "raw UTF-8 passes through")
    }

    @Test func controlCharactersAreEscapedWhenSerialized() {
        for byte in UInt8(0)..<0x20 {
            let s = String(UnicodeScalar(byte))
            let text = JSON.string("a\(s)b").serialized()
            #expect(text.utf8.allSatisfy { $0 >= 0x20 }, "byte \(byte) must be escaped: \(text)")
            #expect(parsed(text) == .string("a\(s)b"))
        }
        #expect(JSON.string("\n").serialized() == #""\n""#)
        #expect(JSON.string("\u{1}").serialized() == #""\u0001""#)
        #expect(JSON.string("\"\\").serialized() == #""\"\\""#)
    }

    @Test("invalid escapes and surrogates are refused", arguments: [
        #""\ud800""#,             // lone high surrogate at the end
        #""\ud800x""#,            // high surrogate followed by text
        #""\ud800\u0041""#,       // high surrogate followed by a non-surrogate
        #""\ud800\ud800""#,       // two high surrogates
        #""\udc00""#,             // lone low surrogate
        #""\udfff\ud800""#,       // reversed pair
        #""\u12""#,               // short
        #""\u12g4""#,             // bad hex digit
        #""\x41""#,               // unknown escape
        #""\'""#,                 // not a JSON escape
        #""\"#,                   // escape at the end of input
    ])
    func invalidEscapes(text: String) {
        let e = parseError(text)
        #expect(e != nil, "\(text) must be refused")
        if let e { #expect(e.offset >= 1 && e.offset <= text.utf8.count) }
    }

    @Test("raw control characters inside strings are refused")
    func rawControlCharacters() {
        for byte in UInt8(0)..<0x20 {
            let e = parseError(bytes: [0x22, 0x61, byte, 0x22])
            #expect(e?.offset == 2, "byte \(byte)")
        }
    }

    @Test("invalid UTF-8 is refused", arguments: [
        [0x22, 0xFF, 0x22],                   // 0xFF never appears in UTF-8
        [0x22, 0xC3, 0x22],                   // truncated two-byte sequence
        [0x22, 0xC0, 0xAF, 0x22],             // overlong '/'
        [0x22, 0xED, 0xA0, 0x80, 0x22],       // a surrogate encoded as UTF-8 (CESU)
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], // above U+10FFFF
        [0x22, 0x80, 0x22],                   // lone continuation byte
        [0xFF],                               // outside a string
        [0xEF, 0xBB, 0xBF, 0x31],             // a BOM is not JSON whitespace
    ] as [[UInt8]])
    func invalidUTF8(bytes: [UInt8]) {
        let e = parseError(bytes: bytes)
        #expect(e != nil)
        if let e { #expect(e.offset >= 0 && e.offset <= bytes.count) }
    }

    // MARK: Nesting limit

    static func nestedArrays(_ depth: Int) -> String {
        String(repeating: "[", count: depth) + "1" + String(repeating: "]", count: depth)
    }

    static func nestedObjects(_ depth: Int) -> String {
        String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
    }

    @Test func thirtyTwoLevelsAreAccepted() throws {
        #expect(JSON.maxDepth == 32)
        _ = try JSON.parse(Self.nestedArrays(32))
        _ = try JSON.parse(Self.nestedObjects(32))
        _ = try JSON.parse(String(repeating: "[", count: 32) + String(repeating: "]", count: 32))
        // Mixed: 16 objects each holding an array.
        _ = try JSON.parse(String(repeating: #"{"a":["#, count: 16) + String(repeating: "]}", count: 16))
    }

    @Test func thirtyThreeLevelsAreRefused() {
        for text in [
            Self.nestedArrays(33),
            Self.nestedObjects(33),
            String(repeating: "[", count: 33) + String(repeating: "]", count: 33),
            String(repeating: "{\"a\":", count: 32) + "{}" + String(repeating: "}", count: 32),
        ] {
            let e = parseError(text)
            #expect(e != nil, "33 levels must be refused: \(text.prefix(40))…")
            #expect(e?.reason.contains("32") == true)
        }
    }

    @Test func deepInputNeverExhaustsTheStack() {
        let e = parseError(String(repeating: "[", count: 1_000_000))
        #expect(e != nil)
        #expect(e!.offset <= 33)
    }

    // MARK: Malformed input: an error with an offset, never a crash

    @Test("malformed input gives an error at a sensible offset", arguments: [
        ("", 0),
        ("   ", 3),
        ("01", 0),
        ("-01", 1),
        ("[01]", 1),
        ("00", 0),
        ("1 2", 2),
        ("{} x", 3),
        ("[1,2]]", 5),
        ("nullx", 4),
        ("[1,2", 4),
        ("{\"a\":1", 6),
        ("{\"a\"", 4),
        ("{\"a\":", 5),
        ("\"abc", 4),
        ("tru", 3),
        ("nul", 3),
        ("-", 1),
        ("1.", 2),
        (".5", 0),
        ("1e", 2),
        ("+1", 0),
        ("[1,]", 3),
        ("{\"a\":1,}", 7),
        ("{a:1}", 1),
        ("[1 2]", 3),
        ("NaN", 0),
        ("Infinity", 0),
        ("{'a':1}", 1),
    ])
    func malformed(text: String, offset: Int) {
        let e = parseError(text)
        #expect(e != nil, "\(text.debugDescription) must be refused")
        #expect(e?.offset == offset, "\(text.debugDescription): \(e?.description ?? "")")
        if let e { #expect(e.description.contains("byte \(e.offset)")) }
    }

    @Test func truncatedInputAtEveryLength() {
        let text = #"{"execute":"set-target","arguments":{"target":1073741824,"x":[true,false,null,-1.5e3,"\u00e9\ud83c\udf88"]},"id":"a"}"#
        let bytes = Array(text.utf8)
        #expect(parseError(bytes: bytes) == nil)
        for n in 0..<bytes.count {
            let e = parseError(bytes: Array(bytes[..<n]))
            #expect(e != nil, "prefix of \(n) bytes must be refused")
            if let e { #expect(e.offset <= n) }
        }
    }

    @Test func whitespaceAroundTheValueIsAllowed() throws {
        #expect(try JSON.parse(" \t\r\n 1 \r\n\t ") == .int(1))
        #expect(try JSON.parse(" { \"a\" : [ 1 , 2 ] } ") == ["a": [1, 2]])
    }

    @Test func subscriptAndAccessors() throws {
        let v = try JSON.parse(#"{"a":1,"b":"x","a":2,"c":[true],"d":null}"#)
        #expect(v["a"] == 2, "the last duplicate wins")
        #expect(v["b"]?.string == "x")
        #expect(v["c"]?.array == [true])
        #expect(v["c"]?.array?.first?.bool == true)
        #expect(v["d"]?.isNull == true)
        #expect(v["missing"] == nil)
        #expect(JSON.int(1)["a"] == nil)
        #expect(v.object?.count == 5)
    }
}

// MARK: - Property-style tests

@Suite("JSON properties")
struct JSONPropertyTests {
    static let alphabet: [UInt8] = Array(#"{}[]":,.-+eE0123456789 tfnrulasx\/"#.utf8) + [0x00, 0x0A, 0x1F, 0x7F, 0x80, 0xC3, 0xA9, 0xED, 0xF0, 0xFF]

    @Test("random bytes never trap the parser")
    func randomBytes() {
        var rng = SeededRandom(seed: 0xBA11_00D)
        var accepted = 0
        for i in 0..<4000 {
            let length = Int.random(in: 0...48, using: &rng)
            let bytes: [UInt8] = (0..<length).map { _ in
                // Half the inputs are fully random bytes, half use JSON-ish bytes so
                // the parser gets past the first character more often.
                i % 2 == 0 ? UInt8.random(in: 0...255, using: &rng) : Self.alphabet.randomElement(using: &rng)!
            }
            do {
                let value = try JSON.parse(bytes)
                accepted += 1
                // Whatever parses re-serialises to something that parses to the same value.
                let again = try? JSON.parse(value.serialized())
                #expect(again == value, "\(bytes)")
            } catch {
                #expect(error.offset >= 0 && error.offset <= bytes.count, "\(bytes): \(error)")
            }
        }
        #expect(accepted > 0)
    }

    @Test("mutated valid documents never trap the parser")
    func mutatedDocuments() {
        var rng = SeededRandom(seed: 42)
        for _ in 0..<2000 {
            var bytes = Array(Self.randomValue(depth: 0, rng: &rng).serialized().utf8)
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                guard !bytes.isEmpty else { break }
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes.remove(at: at)
                default: bytes.insert(Self.alphabet.randomElement(using: &rng)!, at: at)
                }
            }
            do {
                let value = try JSON.parse(bytes)
                let again = try? JSON.parse(value.serialized())
                #expect(again == value)
            } catch {
                #expect(error.offset >= 0 && error.offset <= bytes.count)
            }
        }
    }

    @Test("random values round-trip: parse(serialized(v)) == v")
    func randomValuesRoundTrip() throws {
        var rng = SeededRandom(seed: 7)
        for _ in 0..<3000 {
            let value = Self.randomValue(depth: 0, rng: &rng)
            let text = value.serialized()
            #expect(!text.contains("\n"))
            let back = try JSON.parse(text)
            #expect(back == value, "\(text)")
        }
    }

    static func randomValue(depth: Int, rng: inout SeededRandom) -> JSON {
        let kinds = depth >= 5 ? 7 : 9
        switch Int.random(in: 0..<kinds, using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .int(Int64(bitPattern: rng.next()) >> Int64.random(in: 0...63, using: &rng))
        case 3: return .uint(rng.next())
        case 4:
            let d = Double(bitPattern: rng.next())
            return .double(d.isFinite ? d : Double(Int32.random(in: .min ... .max, using: &rng)) / 7)
        case 5: return .double(Double(Int64.random(in: -1_000_000...1_000_000, using: &rng)))
        case 6: return .string(randomString(rng: &rng))
        case 7:
            return .array((0..<Int.random(in: 0...4, using: &rng)).map { _ in randomValue(depth: depth + 1, rng: &rng) })
        default:
            return .object((0..<Int.random(in: 0...4, using: &rng)).map { _ in
                (randomString(rng: &rng), randomValue(depth: depth + 1, rng: &rng))
            })
        }
    }

    static func randomString(rng: inout SeededRandom) -> String {
        var s = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...12, using: &rng) {
            let scalar: Unicode.Scalar
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: scalar = Unicode.Scalar(UInt8.random(in: 0..<0x20, using: &rng))
            case 1: scalar = Unicode.Scalar(UInt8.random(in: 0x20...0x7F, using: &rng))
            case 2: scalar = Unicode.Scalar(UInt32.random(in: 0x80...0xD7FF, using: &rng))!
            default: scalar = Unicode.Scalar(UInt32.random(in: 0xE000...0x10FFFF, using: &rng)) ?? "?"
            }
            s.append(scalar)
        }
        return String(s)
    }
}
