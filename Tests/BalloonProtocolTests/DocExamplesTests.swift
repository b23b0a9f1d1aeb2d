// SPDX-License-Identifier: Apache-2.0
import BalloonTestSupport
import Testing

@testable import BalloonProtocol

/// Every JSON example in docs/protocol.md decodes into its typed message, so
/// the document cannot drift from the code: ```json blocks (one value, or one
/// message a line) and inline `{...}` spans that are JSON, under the
/// `### \`command\`` heading whose reply they show.
@Suite struct DocExamplesTests {
    struct Example {
        var section: String?
        var text: String
        var line: Int
    }

    static func examples() throws -> [Example] {
        var out: [Example] = []
        var section: String?
        var block: [String]?
        var blockStart = 0
        for (index, line) in try RepoFiles.text("docs/protocol.md").split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if var lines = block {
                if line.hasPrefix("```") {
                    out.append(Example(section: section, text: lines.joined(separator: "\n"), line: blockStart))
                    block = nil
                } else {
                    lines.append(String(line))
                    block = lines
                }
                continue
            }
            if line.hasPrefix("```json") {
                block = []
                blockStart = index + 1
            } else if line.hasPrefix("#") {
                // `### \`set-target\`` names a command; any other heading ends its section.
                let parts = line.split(separator: "`")
                section = line.hasPrefix("### ") && parts.count == 2 ? String(parts[1]) : nil
            } else if section != nil {
                for (i, span) in line.split(separator: "`", omittingEmptySubsequences: false).enumerated()
                where i % 2 == 1 && span.hasPrefix("{") && (try? JSON.parse(String(span))) != nil {
                    out.append(Example(section: section, text: String(span), line: index + 1))
                }
            }
        }
        return out
    }

    /// Decodes `value` as the reply of the command named `section`.
    static func decodeReply(_ value: JSON, of section: String) throws -> Command.Name {
        guard let name = Command.Name(rawValue: section) else { throw ProtocolError(.commandNotFound, "no command \(section)") }
        switch name {
        case .sync: #expect(value.uint64 != nil)
        case .info: _ = try InfoReply(json: value)
        case .setTarget: _ = try SetTargetReply(json: value)
        case .query: _ = try QueryReply(json: value)
        case .stats: _ = try StatsReply(json: value)
        case .setStatsInterval: _ = try StatsIntervalReply(json: value)
        case .setFrameReporting: _ = try FrameReportingReply(json: value)
        case .framesAck: _ = try FramesAckReply(json: value)
        case .rescanFrames: _ = try RescanFramesReply(json: value)
        case .setFreeMemoryReporting: _ = try FreeMemoryReportingReply(json: value)
        case .serveStatus: _ = try ServeStatus(json: value)
        }
        #expect(value.serialized() == (try JSON.parse(value.serialized())).serialized())
        return name
    }

    @Test func everyExampleDecodes() throws {
        var commands = Set<Command.Name>()
        var replies = Set<Command.Name>()
        var events = Set<GuestEvent.Name>()
        let examples = try Self.examples()
        for example in examples {
            let where_ = "docs/protocol.md:\(example.line)"
            let values: [JSON]
            if let whole = try? JSON.parse(example.text) {
                values = [whole]
            } else {
                values = try example.text.split(separator: "\n").map { line in
                    do { return try JSON.parse(String(line)) } catch { throw ProtocolError(.malformedMessage, "\(where_): \(error): \(line)") }
                }
            }
            for value in values {
                let isMessage = ["execute", "return", "event", "error"].contains { value[$0] != nil }
                guard isMessage else {
                    guard let section = example.section else { Issue.record("\(where_): a reply outside a command section"); continue }
                    replies.insert(try Self.decodeReply(value, of: section))
                    continue
                }
                switch try Message.decode(Array(value.serialized().utf8)) {
                case let .request(request):
                    let command = try Command(request)
                    commands.insert(command.name)
                    // The example is exactly what the typed command writes.
                    #expect(command.request(id: request.id).json == value, "\(where_)")
                case let .event(event):
                    let typed = try GuestEvent(event)
                    events.insert(typed.name)
                    #expect(typed.event(at: event.timestamp).json == value, "\(where_)")
                case let .response(response):
                    guard let section = example.section, case let .success(result) = response.result else {
                        Issue.record("\(where_): a response outside a command section")
                        continue
                    }
                    replies.insert(try Self.decodeReply(result, of: section))
                    if section == Command.Name.sync.rawValue { #expect(response.id == result) }
                }
            }
        }
        #expect(commands == Set(Command.Name.guest), "a request example for every command")
        #expect(replies == Set(Command.Name.guest), "a reply example for every command")
        #expect(events == Set(GuestEvent.Name.allCases), "an example of every event")
    }

    /// docs/balloonctl.md shows `serve-status --json`.
    @Test func serveStatusExampleDecodes() throws {
        let doc = try RepoFiles.text("docs/balloonctl.md")
        let lines = doc.split(separator: "\n").map(String.init)
        let start = try #require(lines.firstIndex { $0.hasSuffix("serve-status --json") })
        let json = lines[(start + 1)...].prefix { !$0.hasPrefix("```") }.joined(separator: "\n")
        let status = try ServeStatus(json: try JSON.parse(json))
        #expect(status.framesHeld == 262_144)
        #expect(status.refused == RefusalCounters())
    }
}
