// SPDX-License-Identifier: Apache-2.0

// Pure: the request head of balloon-hostd's metrics endpoint, parsed
// strictly (docs/metrics.md "The server"). No I/O: the server hands it the
// bytes read so far; a fuzzer can hand it anything.

/// A request head that passed every check.
public struct HTTPRequestHead: Sendable, Equatable {
    /// As sent (methods are case-sensitive: `get` is not `GET`).
    public var method: String
    /// The origin-form target: a path, maybe with a query.
    public var target: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int
    /// Header fields in order, names as sent.
    public var headers: [(name: String, value: String)]

    public init(method: String, target: String, minorVersion: Int, headers: [(name: String, value: String)] = []) {
        self.method = method
        self.target = target
        self.minorVersion = minorVersion
        self.headers = headers
    }

    /// The target without its query.
    public var path: Substring { target.prefix { $0 != "?" } }

    public static func == (a: Self, b: Self) -> Bool {
        a.method == b.method && a.target == b.target && a.minorVersion == b.minorVersion
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }
}

/// Why a request head is refused. Each maps to one status (`status`).
public enum HTTPHeadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No end of head within the limit (431).
    case tooLarge(limit: Int)
    /// A line not ended by CRLF: a bare CR or LF (400).
    case badLineEnding
    /// Not `METHOD SP TARGET SP HTTP/1.x` (400).
    case malformedRequestLine
    /// A method that is not a token (400).
    case badMethod
    /// Not an origin-form target of printable ASCII (400).
    case badTarget
    /// `HTTP/` with another version than 1.0 or 1.1 (505).
    case unsupportedVersion
    /// A header line that is not `name: value` (400), or a folded one.
    case malformedHeader
    /// HTTP/1.1 without exactly one Host header (400, RFC 9112 §3.2).
    case missingHost

    public var status: Int {
        switch self {
        case .tooLarge: 431
        case .unsupportedVersion: 505
        default: 400
        }
    }

    public var description: String {
        switch self {
        case let .tooLarge(limit): "request head over \(limit) bytes"
        case .badLineEnding: "a line not ended by CRLF"
        case .malformedRequestLine: "malformed request line"
        case .badMethod: "malformed method"
        case .badTarget: "malformed request target"
        case .unsupportedVersion: "HTTP version not supported"
        case .malformedHeader: "malformed header line"
        case .missingHost: "HTTP/1.1 request without one Host header"
        }
    }
}

/// The outcome of parsing what has arrived so far.
public enum HTTPHeadParse: Sendable, Equatable {
    /// No blank line yet, and still under the limit: read more.
    case incomplete
    /// `length`: bytes of the head including its blank line.
    case complete(HTTPRequestHead, length: Int)
    case failed(HTTPHeadError)
}

public enum HTTPRequestParser {
    /// The default bound on a request head.
    public static let defaultLimit = 8192
    static let maxTarget = 2048

    /// Parses the head at the start of `bytes` (anything after it is ignored:
    /// the server reads no body and closes after one response).
    public static func parse(_ bytes: some Collection<UInt8>, limit: Int = defaultLimit) -> HTTPHeadParse {
        let data = Array(bytes.prefix(limit + 4))
        guard let end = headEnd(data) else {
            if let error = earlyError(data) { return .failed(error) }
            return data.count >= limit ? .failed(.tooLarge(limit: limit)) : .incomplete
        }
        guard end <= limit else { return .failed(.tooLarge(limit: limit)) }
        switch parseHead(data[..<(end - 2)]) {
        case let .success(head): return .complete(head, length: end)
        case let .failure(error): return .failed(error)
        }
    }

    /// The offset just past the first CRLF CRLF.
    static func headEnd(_ data: [UInt8]) -> Int? {
        guard data.count >= 4 else { return nil }
        for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 {
            return i + 4
        }
        return nil
    }

    /// A bad line ending or request line is refused before the head is
    /// complete, so a client sending garbage is not kept until the limit.
    static func earlyError(_ data: [UInt8]) -> HTTPHeadError? {
        if let bad = badLineEnding(data[...]) { return bad }
        guard let crlf = firstCRLF(data[...]) else { return nil }
        if case let .failure(error) = requestLine(data[..<crlf]) { return error }
        return nil
    }

    static func firstCRLF(_ data: ArraySlice<UInt8>) -> Int? {
        var i = data.startIndex
        while i + 1 < data.endIndex {
            if data[i] == 13 && data[i + 1] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// A CR not followed by LF, or an LF not preceded by CR (a CR at the very
    /// end may still get its LF).
    static func badLineEnding(_ data: ArraySlice<UInt8>) -> HTTPHeadError? {
        for i in data.indices {
            if data[i] == 13, i + 1 < data.endIndex, data[i + 1] != 10 { return .badLineEnding }
            if data[i] == 10, i == data.startIndex || data[i - 1] != 13 { return .badLineEnding }
        }
        return nil
    }

    /// `head`: the request line and header lines, each ended by CRLF.
    static func parseHead(_ head: ArraySlice<UInt8>) -> Result<HTTPRequestHead, HTTPHeadError> {
        if let bad = badLineEnding(head) { return .failure(bad) }
        var lines: [ArraySlice<UInt8>] = []
        var start = head.startIndex
        while let crlf = firstCRLF(head[start...]) {
            lines.append(head[start..<crlf])
            start = crlf + 2
        }
        guard let first = lines.first else { return .failure(.malformedRequestLine) }
        var request: HTTPRequestHead
        switch requestLine(first) {
        case let .success(r): request = r
        case let .failure(e): return .failure(e)
        }
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                line[line.startIndex..<colon].allSatisfy(isTokenByte)
            else { return .failure(.malformedHeader) }  // also a folded line (leading SP/HTAB)
            let value = line[(colon + 1)...]
            guard value.allSatisfy({ $0 == 9 || ($0 >= 0x20 && $0 != 0x7F) }) else { return .failure(.malformedHeader) }
            let trimmed = value.drop { $0 == 32 || $0 == 9 }.reversed().drop { $0 == 32 || $0 == 9 }.reversed()
            request.headers.append((String(decoding: line[line.startIndex..<colon], as: UTF8.self), String(decoding: trimmed, as: UTF8.self)))
        }
        if request.minorVersion == 1, request.headers.filter({ $0.name.lowercased() == "host" }).count != 1 {
            return .failure(.missingHost)
        }
        return .success(request)
    }

    static func requestLine(_ line: ArraySlice<UInt8>) -> Result<HTTPRequestHead, HTTPHeadError> {
        let parts = line.split(separator: 32, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(.malformedRequestLine) }
        let (method, target, version) = (parts[0], parts[1], parts[2])
        guard !method.isEmpty, method.count <= 32, method.allSatisfy(isTokenByte) else { return .failure(.badMethod) }
        guard target.first == UInt8(ascii: "/"), target.count <= maxTarget, target.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(.badTarget)
        }
        let v = Array(version)
        guard v.count == 8, v.starts(with: Array("HTTP/".utf8)), isDigit(v[5]), v[6] == UInt8(ascii: "."), isDigit(v[7]) else {
            return .failure(.malformedRequestLine)
        }
        guard v[5] == UInt8(ascii: "1"), v[7] == UInt8(ascii: "0") || v[7] == UInt8(ascii: "1") else {
            return .failure(.unsupportedVersion)
        }
        return .success(HTTPRequestHead(
            method: String(decoding: method, as: UTF8.self), target: String(decoding: target, as: UTF8.self),
            minorVersion: Int(v[7] - UInt8(ascii: "0"))))
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// RFC 9110 tchar.
    static func isTokenByte(_ b: UInt8) -> Bool {
        isDigit(b) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(b)
    }
}
