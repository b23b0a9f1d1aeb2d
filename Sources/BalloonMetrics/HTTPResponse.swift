// SPDX-License-Identifier: Apache-2.0

/// One response; the server closes the connection after it (`Connection: close`).
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [String] = []
    public var body: [UInt8] = []
    /// HEAD: the headers of the GET answer, no body.
    public var omitBody = false

    public init(status: Int, headers: [String] = [], body: [UInt8] = [], omitBody: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.omitBody = omitBody
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Error"
        }
    }

    /// A short plain-text error.
    public static func error(_ status: Int, _ text: String, headers: [String] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type: text/plain; charset=utf-8"] + headers, body: Array((text + "\n").utf8))
    }

    /// The bytes on the wire (always HTTP/1.1; a 1.0 client reads it too).
    public var bytes: [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        for h in headers { head += h + "\r\n" }
        head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + (omitBody ? [] : body)
    }
}

/// What the endpoint answers, decided from the parse alone: GET and HEAD of
/// `/metrics` (any query ignored); 404 for another path, 405 for another
/// method, the parse error's status for a bad head.
public enum MetricsEndpoint {
    public static let path = "/metrics"
    /// The text format's content type (Prometheus 0.0.4).
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// `render` is called only for a request that gets the metrics.
    public static func respond(to head: HTTPRequestHead, render: () -> [UInt8]) -> HTTPResponse {
        guard head.method == "GET" || head.method == "HEAD" else {
            return .error(405, "only GET and HEAD", headers: ["Allow: GET, HEAD"])
        }
        guard head.path == path else { return .error(404, "not found: only \(path)") }
        return HTTPResponse(
            status: 200, headers: ["Content-Type: \(contentType)", "Cache-Control: no-store"], body: render(),
            omitBody: head.method == "HEAD")
    }

    public static func respond(to error: HTTPHeadError) -> HTTPResponse {
        .error(error.status, error.description)
    }
}
