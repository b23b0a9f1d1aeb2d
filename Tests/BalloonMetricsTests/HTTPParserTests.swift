// SPDX-License-Identifier: Apache-2.0
import BalloonMetrics
import Testing

/// The metrics endpoint's strict request-head parser and what it answers:
/// every error, GET/HEAD of /metrics only.
@Suite struct HTTPParser {
    func parse(_ text: String, limit: Int = HTTPRequestParser.defaultLimit) -> HTTPHeadParse {
        HTTPRequestParser.parse(Array(text.utf8), limit: limit)
    }

    @Test func wellFormedHeads() {
        let text = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9468\r\nAccept: text/plain;version=0.0.4 \r\n\r\nignored body"
        guard case let .complete(head, length) = parse(text) else { Issue.record("\(parse(text))"); return }
        #expect(head.method == "GET" && head.target == "/metrics" && head.minorVersion == 1)
        #expect(head.headers.map(\.name) == ["Host", "Accept"] && head.headers[1].value == "text/plain;version=0.0.4")
        #expect(length == text.utf8.count - "ignored body".utf8.count)
        // HTTP/1.0 needs no Host; a query is part of the target, not the path.
        guard case let .complete(old, _) = parse("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n") else { Issue.record("1.0"); return }
        #expect(old.minorVersion == 0 && old.path == "/metrics" && old.target == "/metrics?x=1")
    }

    @Test func incompleteUntilTheBlankLine() {
        let full = "GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n"
        for n in 0..<full.utf8.count {
            #expect(parse(String(full.utf8.prefix(n))!) == .incomplete, "\(n) bytes")
        }
        #expect(parse(full) != .incomplete)
    }

    @Test(arguments: [
        ("GET /metrics HTTP/1.1\nHost: h\n\n", HTTPHeadError.badLineEnding),
        ("GET /metrics HTTP/1.1\r\nHost: h\rX\r\n\r\n", .badLineEnding),
        ("GET /metrics\r\n\r\n", .malformedRequestLine),
        ("GET  /metrics HTTP/1.1\r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("GET /metrics HTTP/1.1 \r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("GET /metrics FTP/1.1\r\n\r\n", .malformedRequestLine),
        ("\r\nGET /metrics HTTP/1.1\r\nHost: h\r\n\r\n", .malformedRequestLine),
        ("G(T /metrics HTTP/1.1\r\nHost: h\r\n\r\n", .badMethod),
        ("GET metrics HTTP/1.1\r\nHost: h\r\n\r\n", .badTarget),
        ("GET http://h/metrics HTTP/1.1\r\nHost: h\r\n\r\n", .badTarget),
        ("GET /m\u{7F} HTTP/1.1\r\nHost: h\r\n\r\n", .badTarget),
        ("GET /metrics HTTP/2.0\r\nHost: h\r\n\r\n", .unsupportedVersion),
        ("GET /metrics HTTP/1.2\r\nHost: h\r\n\r\n", .unsupportedVersion),
        ("GET /metrics HTTP/1.1\r\nHost h\r\n\r\n", .malformedHeader),
        ("GET /metrics HTTP/1.1\r\n: h\r\n\r\n", .malformedHeader),
        ("GET /metrics HTTP/1.1\r\nHo st: h\r\n\r\n", .malformedHeader),
        ("GET /metrics HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", .malformedHeader),
        ("GET /metrics HTTP/1.1\r\nHost: a\u{01}b\r\n\r\n", .malformedHeader),
        ("GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n", .missingHost),
        ("GET /metrics HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", .missingHost),
    ])
    func refusedHeads(text: String, error: HTTPHeadError) {
        #expect(parse(text) == .failed(error))
        #expect(MetricsEndpoint.respond(to: error).status == (error == .unsupportedVersion ? 505 : 400))
    }

    /// A bad line ending or request line is refused before the head ends.
    @Test func earlyRefusal() {
        #expect(parse("GET /metrics HTTP/1.1\n") == .failed(.badLineEnding))
        #expect(parse("POST\r\n") == .failed(.malformedRequestLine))
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: h\r") == .incomplete)
    }

    @Test func headSizeIsBounded() {
        let long = "GET /metrics HTTP/1.1\r\nHost: h\r\nX: " + String(repeating: "a", count: 200)
        #expect(parse(long, limit: 128) == .failed(.tooLarge(limit: 128)))
        #expect(parse(long + "\r\n\r\n", limit: 128) == .failed(.tooLarge(limit: 128)))
        #expect(parse(long + "\r\n\r\n", limit: 4096) != .failed(.tooLarge(limit: 4096)))
        #expect(MetricsEndpoint.respond(to: .tooLarge(limit: 128)).status == 431)
        let target = "GET /" + String(repeating: "m", count: 3000) + " HTTP/1.1\r\nHost: h\r\n\r\n"
        #expect(parse(target) == .failed(.badTarget))
    }

    @Test func endpointAnswers() {
        func answer(_ text: String) -> HTTPResponse {
            guard case let .complete(head, _) = parse(text) else { return HTTPResponse(status: 0) }
            return MetricsEndpoint.respond(to: head) { Array("x 1\n".utf8) }
        }
        let get = answer("GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(get.status == 200 && get.body == Array("x 1\n".utf8))
        let wire = String(decoding: get.bytes, as: UTF8.self)
        #expect(wire.hasPrefix("HTTP/1.1 200 OK\r\n") && wire.hasSuffix("\r\n\r\nx 1\n"))
        #expect(wire.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(wire.contains("Content-Length: 4\r\n") && wire.contains("Connection: close\r\n"))
        // HEAD: the same head, no body.
        let head = String(decoding: answer("HEAD /metrics HTTP/1.1\r\nHost: h\r\n\r\n").bytes, as: UTF8.self)
        #expect(head.contains("Content-Length: 4\r\n") && head.hasSuffix("\r\n\r\n"))
        #expect(answer("GET / HTTP/1.1\r\nHost: h\r\n\r\n").status == 404)
        #expect(answer("GET /metrics/ HTTP/1.1\r\nHost: h\r\n\r\n").status == 404)
        let post = answer("POST /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        #expect(post.status == 405 && post.headers.contains("Allow: GET, HEAD"))
        #expect(answer("get /metrics HTTP/1.1\r\nHost: h\r\n\r\n").status == 405)
    }
}
