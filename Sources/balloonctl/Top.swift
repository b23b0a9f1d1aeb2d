// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import BalloonHost
import BalloonProtocol
import BalloonSystem

/// `balloonctl top`: every guest of balloon-hostd, refreshed, like virt-top.
/// The frame is `HostFormat.topFrame` (pure); this only fetches, draws and
/// reads keys.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live table of balloon-hostd's guests (target, actual, available, PSI, host memory freed, state).",
        discussion: """
            On a terminal it redraws every interval until q or Ctrl-C; keys: s sorts by the next column, \
            r reverses the order, q quits. Not on a terminal (a pipe, a file) it prints --iterations frames \
            (default 1) without escape sequences. --json prints one snapshot as JSON and exits. Text that \
            came from guests or the agent is shown with escape sequences and control characters removed.
            """)
    @OptionGroup var options: AgentOptions

    @Option(help: ArgumentHelp("Seconds between refreshes.", valueName: "seconds"))
    var interval: Double = 2

    @Option(help: ArgumentHelp("Sort by: \(TopColumn.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "column"))
    var sort: String = TopColumn.name.rawValue

    @Flag(help: "Reverse the order (sizes and pressure sort largest first, text from A).")
    var reverse = false

    @Option(help: ArgumentHelp("Stop after this many frames (default: until q on a terminal, else 1).", valueName: "n"))
    var iterations: Int?

    func validate() throws {
        guard interval > 0, interval.isFinite else { throw ValidationError("--interval must be a positive number of seconds") }
        guard TopColumn(rawValue: sort.lowercased()) != nil else {
            throw ValidationError("--sort: \"\(sort)\" is not a column (\(TopColumn.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
    }

    /// The guests and the policy, from one connection.
    func snapshot(_ session: GuestSession) throws -> ([GuestSummary], PolicyStatusReply) {
        let list = try GuestSession.decode(try session.call(AgentCommand.listGuests), as: GuestListReply.self, for: .listGuests)
        let policy = try GuestSession.decode(try session.call(AgentCommand.policyStatus), as: PolicyStatusReply.self, for: .policyStatus)
        return (list.guests, policy)
    }

    func run() throws {
        let column = TopColumn(rawValue: sort.lowercased()) ?? .name
        if options.json {
            let (guests, policy) = try snapshot(try options.open())
            Console.line(HostFormat.topJSON(guests: guests, policy: policy, sort: column, reverse: reverse).serialized())
            return
        }
        let interrupt = try InterruptWatcher()
        let live = Console.isTerminal
        let keys = live ? KeyReader() : nil
        defer { keys?.restore() }
        let period = Duration.secondsValue(interval)
        var view = TopView(sort: column, reverse: reverse, keys: keys != nil, interval: period)
        var session: GuestSession?
        var frames = 0
        while true {
            // A session lost (the agent restarted) is opened again at the next frame.
            var frame: String
            do {
                let open = try session ?? options.open()
                session = open
                let (guests, policy) = try snapshot(open)
                view.width = live ? Terminal.width(.output) : nil
                frame = HostFormat.topFrame(guests: guests, policy: policy, view: view)
            } catch {
                session?.close()
                session = nil
                frame = HostFormat.topFrame(guests: [], policy: nil, view: view, error: "\(error)")
            }
            Console.out(live ? "\u{1B}[H\u{1B}[2J" + frame : (frames == 0 ? "" : "\n") + frame)
            frames += 1
            if frames >= (iterations ?? (live ? Int.max : 1)) { return }
            // Wait out the interval, a slice at a time so keys and Ctrl-C are seen at once.
            let deadline = Deadline(after: period)
            var redraw = false
            while !deadline.expired, !redraw {
                let slice = min(deadline.remaining, .milliseconds(100))
                if let keys {
                    if try interrupt.wait(timeout: .zero) { return }
                    switch try keys.key(within: slice) {
                    case UInt8(ascii: "q")?: return
                    case UInt8(ascii: "s")?: view.sort = view.sort.next; redraw = true
                    case UInt8(ascii: "r")?: view.reverse.toggle(); redraw = true
                    default: break
                    }
                } else if try interrupt.wait(timeout: slice) {
                    return
                }
            }
        }
    }
}
