// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import Glibc

// A tiny guest that speaks docs/protocol.md over a real socket, on a real
// thread, for the session and balloonctl tests.

/// The guest end of a connection. Used only by its own thread.
final class FakeGuest: @unchecked Sendable {
    let fd: Descriptor
    private var framer = LineFramer()
    private var pending: [[UInt8]] = []
    /// How many 0xFF bytes the host sent.
    private(set) var resyncsSeen = 0
    /// The daemon lifetime `set-frame-reporting` names (nil: a daemon older
    /// than protocol rule 5) and its grace time; `frames-ack` naming another
    /// lifetime is refused with `StaleInstance`, as balloond does.
    var instance: String?
    var grace: Duration?

    init(_ fd: Descriptor) { self.fd = fd }

    /// The next request from the host, or nil on EOF / after `timeoutMs`.
    func readRequest(timeoutMs: Int32 = 10_000) -> Request? {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            while !pending.isEmpty {
                let line = pending.removeFirst()
                if case let .request(r)? = try? Message.decode(line) { return r }
            }
            guard (try? HostIO.waitReadable(fd, timeout: .milliseconds(timeoutMs))) == true else { return nil }
            guard let n = try? HostIO.read(fd, into: buffer), n > 0 else { return nil }
            for item in framer.feed(UnsafeRawBufferPointer(rebasing: buffer[..<n])) {
                switch item {
                case let .line(l): pending.append(l)
                case .resync: resyncsSeen += 1
                case .tooLong: break
                }
            }
        }
    }

    func write(_ bytes: [UInt8]) { try? HostIO.sendAll(fd, bytes) }
    func write(_ text: String) { write(Array(text.utf8)) }
    func writeLine(_ json: JSON) { write(json.serialized() + "\n") }

    func reply(_ request: Request, _ value: JSON) {
        writeLine(Response(id: request.id, result: .success(value)).json)
    }

    func fail(_ request: Request, _ cls: ErrorClass, _ desc: String) {
        writeLine(Response(id: request.id, result: .failure(ProtocolError(cls, desc))).json)
    }

    func event(_ event: GuestEvent) {
        writeLine(event.event(at: Canned.timestamp).json)
    }

    /// An event as an untrusted guest may send it (the data unchecked).
    func rawEvent(_ name: GuestEvent.Name, _ data: JSON) {
        writeLine(Event(name.rawValue, data: data, timestamp: Canned.timestamp).json)
    }

    /// The guest's answer to `sync`: 0xFF, then the id.
    func answerSync(_ request: Request) {
        write([0xFF])
        reply(request, request.arguments["id"] ?? .null)
    }

    /// Reads requests until `sync` and answers it; false if none came.
    @discardableResult
    func awaitSync() -> Bool {
        while let r = readRequest() {
            if r.execute == Command.Name.sync.rawValue { answerSync(r); return true }
        }
        return false
    }
}

// MARK: - canned replies

enum Canned {
    /// A valid `info` reply plus a field from the future.
    static let info: JSON = {
        let info = InfoReply(
            version: "0.1.0", features: ["stats", "stats-events", "balloon-events"], pageSize: 4096, memoryTotal: 8_331_440_128,
            maxBalloon: 6_665_152_102, memAvailableFloor: 268_435_456, chunkSize: 67_108_864, transparentHugePages: true,
            hugePageAdvice: .advise, channel: "virtio-serial:/dev/virtio-ports/org.balloond.0", pressureTriggers: [],
            holderProcesses: true, protectedFromOOMKiller: true)
        return .object(info.json.object! + [("some-future-field", ["x": 1])])
    }()

    static func query(
        target: UInt64, effective: UInt64? = nil, actual: UInt64, state: QueryReply.State, reason: StopReason? = nil
    ) -> JSON {
        QueryReply(
            target: target, effectiveTarget: effective ?? target, actual: actual, state: state,
            limits: .init(memoryTotal: 8_331_440_128, maxBalloon: 6_665_152_102, memAvailableFloor: 268_435_456, chunkSize: 67_108_864),
            reason: reason, pressure: .init(state: .calm, ceiling: nil, quietFor: nil, deflatedTotal: 0, lastDeflate: nil)
        ).json
    }

    static let timestamp = Timestamp(seconds: 1_795_000_000, microseconds: 42)

    /// No htlb-* counters (the guest has no hugetlbfs), an unknown stat and field.
    static let stats: JSON = [
        "stats": [
            "swap-in": 0, "swap-out": 4096, "major-faults": 1234, "minor-faults": 5_678_901,
            "free-memory": 7_000_000_000, "total-memory": 8_331_440_128, "available-memory": 7_500_000_000,
            "disk-caches": 400_000_000, "oom-kills": 0, "alloc-stalls": 3, "async-scans": 10,
            "direct-scans": 0, "async-reclaims": 7, "direct-reclaims": 0, "future-stat": 9,
        ],
        "pressure": [
            "some": ["avg10": 1.25, "avg60": 0.5, "avg300": 0.0, "total": 12345],
            "full": ["avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0],
        ],
        "balloon": ["target": 268_435_456, "actual": 134_217_728],
        "file-refaults": 4321,
        "timestamp": ["seconds": 1_795_000_000, "microseconds": 123_456],
    ]

    static let statsReply = try! StatsReply(json: stats)
}

// MARK: - threads, sockets, processes

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// A real thread (blocking I/O must not sit on the cooperative pool).
struct TestThread {
    let id: pthread_t

    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed")
        id = tid
    }

    func join() { pthread_join(id, nil) }
}

/// A fresh private directory under /tmp, removed with its contents by `remove()`.
struct TempDir {
    let path: String

    init() {
        var template = Array("/tmp/balloonhost-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

/// Serves one connection on a unix socket at `path` with `handler` on a thread.
/// `listenUnix` has bound and listened before this returns, so a client may
/// connect at once.
func serveOnce(path: String, _ handler: @escaping @Sendable (FakeGuest) -> Void) throws -> TestThread {
    let listener = try StreamSocket.listenUnix(path: path)
    let box = UncheckedBox(listener)
    return TestThread {
        let listener = box.value
        defer { listener.close() }
        guard (try? HostIO.waitReadable(listener, timeout: .milliseconds(20_000))) == true,
            let fd = try? StreamSocket.accept(listener)
        else { return }
        try? fd.setNonBlocking(false)
        handler(FakeGuest(fd))
        fd.close()
    }
}

/// A connected pair: the host's end and a fake guest on a thread.
func pairWithGuest(_ handler: @escaping @Sendable (FakeGuest) -> Void) throws -> (Descriptor, TestThread) {
    let (host, guest) = try StreamSocket.pair()
    let box = UncheckedBox(guest)
    let thread = TestThread {
        handler(FakeGuest(box.value))
        box.value.close()
    }
    return (host, thread)
}

final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// The outcome of running a program.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// balloon-hostd, next to balloonctl.
func hostdPath() -> String {
    let ctl = balloonctlPath()
    return String(ctl[..<(ctl.lastIndex(of: "/") ?? ctl.startIndex)]) + "/balloon-hostd"
}

/// `.build-host/debug/balloonctl`: next to this test binary.
func balloonctlPath() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    precondition(n > 0)
    let exe = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var dir = exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)]
    // The Swift Testing runner may sit inside a bundle directory.
    while !dir.isEmpty, access(String(dir) + "/balloonctl", X_OK) != 0, let slash = dir.lastIndex(of: "/") {
        dir = dir[..<slash]
    }
    return String(dir) + "/balloonctl"
}

/// Runs a program with stdout/stderr captured in files; waits for it
/// (without a deadline, unlike a `Background` the test stops itself).
func run(_ path: String, _ arguments: [String], in dir: TempDir) -> ProcessResult {
    Background(path, arguments, in: dir, name: "run").wait(seconds: 100 * 365 * 86400)
}
