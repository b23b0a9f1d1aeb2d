// SPDX-License-Identifier: Apache-2.0
import BalloonMetrics

/// What the metrics endpoint does with a scraper's bytes: the request head
/// parser and the answer decided from it. Invariants: a complete head lies
/// inside the limit and the input, and parsing just its bytes gives the same
/// head; an incomplete one is under the limit; every answer is a well-formed
/// HTTP/1.1 head (status 200–599, header lines free of control bytes) with a
/// Content-Length equal to its body.
public enum MetricsHTTPFuzz {
    public static func run(_ data: UnsafeRawBufferPointer) {
        for limit in [HTTPRequestParser.defaultLimit, 256] { check(data, limit: limit) }
    }

    static func check(_ data: UnsafeRawBufferPointer, limit: Int) {
        let response: HTTPResponse
        switch HTTPRequestParser.parse(data, limit: limit) {
        case .incomplete:
            precondition(data.count < limit, "incomplete at \(data.count) bytes, limit \(limit)")
            return
        case let .complete(head, length):
            precondition(length > 0 && length <= data.count && length <= limit)
            let again = HTTPRequestParser.parse(UnsafeRawBufferPointer(rebasing: data[..<length]), limit: limit)
            precondition(again == .complete(head, length: length), "the head alone parses differently")
            response = MetricsEndpoint.respond(to: head) { Array("balloond_up 1\n".utf8) }
            if head.method == "HEAD" { precondition(response.status != 200 || response.omitBody) }
        case let .failed(error):
            response = MetricsEndpoint.respond(to: error)
            precondition(response.status >= 400 && response.status < 600)
        }
        precondition(response.status >= 200 && response.status < 600)
        let wire = response.bytes
        let headEnd = wire.indices.first { wire[$0...].starts(with: [13, 10, 13, 10]) }
        guard let headEnd else { preconditionFailure("response without a blank line") }
        let lines = wire[..<headEnd].split(separator: 10, omittingEmptySubsequences: false)
        for line in lines {
            precondition(line.last == 13 || line.endIndex == headEnd, "a header line not ended by CRLF")
            let text = line.last == 13 ? line.dropLast() : line
            precondition(text.allSatisfy { $0 >= 0x20 && $0 != 0x7F }, "a control byte in a response header")
        }
        precondition(response.headers.contains { $0.contains("\r") || $0.contains("\n") } == false)
        let bodyCount = wire.count - headEnd - 4
        precondition(response.omitBody ? bodyCount == 0 : bodyCount == response.body.count)
    }
}
