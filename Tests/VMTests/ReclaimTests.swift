// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// The host's balloonctl, built next to the test runner.
let hostBalloonctl: String = {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    var dir = (String(decoding: buf[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self) as NSString).deletingLastPathComponent
    while !FileManager.default.fileExists(atPath: dir + "/balloonctl"), dir != "/" { dir = (dir as NSString).deletingLastPathComponent }
    return dir + "/balloonctl"
}()

/// Bytes the file really has on the host (st_blocks × 512).
func allocatedBytes(_ path: String) -> UInt64 {
    var st = stat()
    return stat(path, &st) == 0 ? UInt64(st.st_blocks) * 512 : 0
}

/// Starts `balloonctl serve ARGUMENTS` in `process`, its output and errors in
/// `log` (emptied first), for the tests that run serve against a guest.
func startServe(_ process: Process, _ arguments: [String], log: String) throws {
    let handle = try emptyLogFile(log)
    process.executableURL = URL(fileURLWithPath: hostBalloonctl)
    process.arguments = ["serve"] + arguments
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
}

func runHost(_ arguments: [String]) throws -> (output: String, status: Int32) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: hostBalloonctl)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (String(decoding: data, as: UTF8.self), p.terminationStatus)
}

@Suite(.serialized, .enabled(if: vmTestsEnabled, "set BALLOOND_VM_TESTS=1 (make test does)"))
struct HostReclaim {
    /// Guest RAM in a shared file: inflating 512 MiB frees ≥ 95% of 512 MiB
    /// of the file's blocks; the guest keeps running; after deflate it uses
    /// that memory again with correct contents.
    @Test func inflatingFreesTheGuestRAMBackendOnTheHost() throws {
        let backend = "/dev/shm/balloond-vmtest-\(getpid())"
        defer { unlink(backend) }
        let guest = try Guest(name: "reclaim", extra: ["--memory-backend", backend])
        let control = guest.workdir + "/serve.sock"
        let serve = Process()
        defer { if serve.isRunning { serve.terminate(); serve.waitUntilExit() } }
        try withGuestDiagnostics(guest) {
            // Touch most of the guest's RAM (tmpfs lives in RAM), then free it:
            // the guest's free pages stay allocated in the host file. The
            // guest's own tmpfs mounts stop at half of RAM: use a larger one.
            try guest.sh("mkdir -p /mnt/big && mount -t tmpfs -o size=900M none /mnt/big")
            try guest.sh("dd if=/dev/zero of=/mnt/big/fill bs=1M count=720 2>/dev/null; rm /mnt/big/fill", timeout: 300)
            _ = try guest.startDaemon(config: "[Channel]\\nListen=virtio-serial:org.balloond.0\\n[Balloon]\\nChunkSize=32M\\n")

            let serveLog = guest.workdir + "/serve.log"
            try startServe(serve, ["--unix", guest.port0, "--control", control, "--memory-backend", backend, "--timeout", "60"], log: serveLog)
            // Wait until serve has synced and switched frame reporting on.
            let status = try waitFor(timeout: .seconds(90), interval: .milliseconds(100)) { () throws -> JSON? in
                guard FileManager.default.fileExists(atPath: control) else { return nil }
                let r = try runHost(["--control", control, "--json", "serve-status"])
                guard r.status == 0, let j = try? JSON.parse(r.output.trimmingCharacters(in: .whitespacesAndNewlines)),  // not JSON yet: keep waiting
                      j["frame-reporting"]?.bool == true else { return nil }
                return j
            } ?? .null
            #expect(status["frame-reporting"]?.bool == true, "serve did not enable frame reporting: \((try? String(contentsOfFile: serveLog, encoding: .utf8)) ?? "")")

            let before = allocatedBytes(backend)
            let set = try runHost(["--control", control, "--timeout", "60", "set", "512M", "--wait", "--wait-timeout", "300"])
            #expect(set.status == 0, "set 512M: \(set.output)")
            // serve frees as reports arrive; give it a moment to finish.
            var after = allocatedBytes(backend)
            waitUntil(timeout: .seconds(10), interval: .milliseconds(100)) {
                after = allocatedBytes(backend)
                return before > after && before - after >= 512 * MiB * 95 / 100
            }
            let freed = Int64(before) - Int64(after)
            #expect(freed >= Int64(512 * MiB * 95 / 100), "the backend's blocks dropped by \(freed / Int64(MiB)) MiB (\(before / MiB) → \(after / MiB) MiB)")
            let counters = try JSON.parse(try runHost(["--control", control, "--json", "serve-status"]).output.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(counters["bytes-freed"]?.uint64 ?? 0 >= 512 * MiB)
            for kind in ["outside-ram", "overlap", "rate-limit", "malformed"] {
                #expect(counters["refused"]?[kind]?.uint64 == 0, "refused \(kind): \(counters.serialized())")
            }
            // The guest keeps running.
            #expect(try guest.sh("echo alive").contains("alive"))

            let back = try runHost(["--control", control, "--timeout", "60", "set", "0", "--wait", "--wait-timeout", "300"])
            #expect(back.status == 0, "set 0: \(back.output)")
            // The guest uses that memory again: 512 MiB written from a 32 MiB
            // random seed, then compared byte for byte with the same stream
            // (urandom and md5 of the whole are too slow under TCG).
            try guest.sh("dd if=/dev/urandom of=/mnt/big/seed bs=1M count=32 2>/dev/null", timeout: 300)
            try guest.sh("for i in $(seq 16); do cat /mnt/big/seed; done > /mnt/big/data", timeout: 300)
            let compare = try guest.run("for i in $(seq 16); do cat /mnt/big/seed; done | cmp - /mnt/big/data && echo same", timeout: 300)
            #expect(compare.status == 0 && compare.output.contains("same"), "contents differ after deflate: \(compare.output)")
            #expect(try guest.sh("ls -l /mnt/big/data").contains("536870912"))
            #expect(allocatedBytes(backend) > after, "the host did not give memory back on use")
        }
    }
}
