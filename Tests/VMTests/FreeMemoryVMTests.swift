// SPDX-License-Identifier: Apache-2.0
import BalloonHost
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// The free-memory mode in one real guest (QEMU TCG, 1 GiB, RAM in a shared
/// file, a scratch disk) under `balloonctl serve --free-memory-reporting`
/// (docs/free-memory.md). One boot for all of it: CI time is short.
@Suite(.serialized, .enabled(if: vmTestsEnabled, "set BALLOOND_VM_TESTS=1 (make test does)"))
struct FreeMemoryVM {
    let config = "[Channel]\\nListen=virtio-serial:org.balloond.0\\n[Balloon]\\nChunkSize=32M\\n"

    /// Reads `balloonctl --control … --json COMMAND` as JSON.
    func hostJSON(_ control: String, _ command: String) throws -> JSON {
        let r = try runHost(["--control", control, "--timeout", "60", "--json", command])
        guard r.status == 0 else { throw GuestError("balloonctl \(command) exited \(r.status): \(r.output)") }
        return try JSON.parse(r.output.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func vmstat(_ guest: Guest, _ prefix: String) throws -> UInt64 {
        let v = try guest.sh("awk '$1 ~ /^\(prefix)/ {s+=$2} END {print s+0}' /proc/vmstat").trimmingCharacters(in: .whitespacesAndNewlines)
        return UInt64(v) ?? 0
    }

    @Test func freeMemoryGoesBackToTheHostAndComesBackOnUse() throws {
        let backend = "/dev/shm/balloond-vmfree-\(getpid())"
        defer { unlink(backend) }
        let disk = try ScratchDisk(name: "free", size: "1G")
        defer { disk.remove() }
        let guest = try Guest(name: "free", extra: ["--memory-backend", backend] + disk.qemuArguments)
        let control = guest.workdir + "/serve.sock"
        let serveLog = guest.workdir + "/serve.log"
        let serve = Process()
        defer { if serve.isRunning { serve.terminate(); serve.waitUntilExit() } }
        try withGuestDiagnostics(guest) {
            try guest.sh("vmload virtio_blk && mkdir -p /mnt/disk && mount -t ext4 /dev/vda /mnt/disk")
            try guest.sh("dd if=/dev/zero of=/mnt/disk/cache bs=1M count=160 conv=fsync 2>/dev/null && sync && echo 3 > /proc/sys/vm/drop_caches", timeout: 300)
            let pid = try guest.startDaemon(config: config)

            try startServe(serve, ["--unix", guest.port0, "--control", control, "--memory-backend", backend,
                                   "--free-memory-reporting", "--timeout", "60"], log: serveLog)
            let on = waitUntil(timeout: .seconds(90), interval: .milliseconds(200)) {
                guard FileManager.default.fileExists(atPath: control) else { return false }
                return (try? hostJSON(control, "serve-status"))?["free-memory-reporting"]?.bool == true
            }
            #expect(on, "serve did not switch the mode on: \((try? String(contentsOfFile: serveLog, encoding: .utf8)) ?? "")")
            guard on else { return }

            // Workload 1: 400 MiB of anonymous memory touched, then gone.
            let oomBefore = try vmstat(guest, "oom_kill")
            try guest.sh("workload instant 400", timeout: 300)
            let afterWorkload = allocatedBytes(backend)
            var now = afterWorkload
            let shrank = waitUntil(timeout: .seconds(120), interval: .milliseconds(250)) {
                now = allocatedBytes(backend)
                return afterWorkload > now && afterWorkload - now >= 300 * MiB
            }
            #expect(shrank, "the RAM file went from \(afterWorkload / MiB) to \(now / MiB) MiB")
            let status = try hostJSON(control, "serve-status")
            #expect(status["free-memory-bytes-freed"]?.uint64 ?? 0 >= 300 * MiB, "\(status.serialized())")
            let stats = try hostJSON(control, "stats")
            let held = stats["balloon"]?["free-memory-held"]?.uint64 ?? 0
            #expect(held >= 300 * MiB, "stats: \(stats.serialized())")
            // MemAvailable counts none of the held memory.
            let available = stats["stats"]?["available-memory"]?.uint64 ?? .max
            #expect(available + held <= 1 << 30, "available \(available) + held \(held) exceed RAM")

            // A burst right after the mode grew: no OOM kill, and the memory is
            // usable again with correct contents (256 MiB from a 32 MiB seed).
            try guest.sh("workload instant 450", timeout: 300)
            try guest.sh("mkdir -p /mnt/big && mount -t tmpfs -o size=600M none /mnt/big")
            try guest.sh("dd if=/dev/urandom of=/mnt/big/seed bs=1M count=32 2>/dev/null", timeout: 300)
            try guest.sh("for i in $(seq 8); do cat /mnt/big/seed; done > /mnt/big/data", timeout: 300)
            let compare = try guest.run("for i in $(seq 8); do cat /mnt/big/seed; done | cmp - /mnt/big/data && echo same", timeout: 300)
            #expect(compare.status == 0 && compare.output.contains("same"), "contents differ: \(compare.output)")
            try guest.sh("rm -f /mnt/big/seed /mnt/big/data && umount /mnt/big")
            #expect(try vmstat(guest, "oom_kill") == oomBefore, "an OOM kill happened")

            // An idle guest keeps its page cache: the mode alone reclaims nothing.
            try guest.sh("cat /mnt/disk/cache > /dev/null", timeout: 300)
            try guest.sh("sleep 5")
            let stealBefore = try vmstat(guest, "pgsteal_")
            let cachedBefore = try guest.meminfo("Cached")
            try guest.sh("sleep 10")
            #expect(try vmstat(guest, "pgsteal_") == stealBefore, "pages were reclaimed while the guest was idle")
            #expect(try guest.meminfo("Cached") + 8 * MiB >= cachedBefore)
            #expect(cachedBefore >= 150 * MiB, "the cache was not kept: Cached \(cachedBefore / MiB) MiB")

            // Cold page cache: on after a reload; it reclaims, then stops when
            // a refault storm starts (the file it reclaimed read back in a loop).
            try guest.sh("printf '\(config)[FreeMemory]\\nReclaimColdCache=yes\\nColdCacheStep=16M\\n' > /tmp/balloond.conf && kill -HUP \(pid)")
            var reclaimed: UInt64 = 0
            let reclaiming = try waitUntil(timeout: .seconds(90), interval: .milliseconds(500)) {
                reclaimed = try hostJSON(control, "query")["free-memory"]?["cold-cache"]?["reclaimed-total"]?.uint64 ?? 0
                return reclaimed >= 48 * MiB
            }
            let daemonLog = reclaiming ? "" : try guest.daemonLog()
            #expect(reclaiming, "cold cache reclaimed \(reclaimed / MiB) MiB; log:\n\(daemonLog)")
            try guest.sh("(while true; do cat /mnt/disk/cache > /dev/null; done) > /dev/null 2>&1 & echo $! > /tmp/storm.pid")
            defer { _ = try? guest.run("kill $(cat /tmp/storm.pid)") }
            var query = JSON.null
            let backedOff = try waitUntil(timeout: .seconds(60), interval: .milliseconds(250)) {
                query = try hostJSON(control, "query")
                return query["free-memory"]?["cold-cache"]?["state"]?.string == "backoff"
            }
            #expect(backedOff, "no backoff under a refault storm: \(query.serialized())")
            let atBackoff = query["free-memory"]?["cold-cache"]?["reclaimed-total"]?.uint64 ?? 0
            try guest.sh("sleep 10")
            let later = try hostJSON(control, "query")["free-memory"]?["cold-cache"]?["reclaimed-total"]?.uint64 ?? 0
            #expect(later == atBackoff, "reclaim went on during the storm: \(atBackoff / MiB) → \(later / MiB) MiB")
            #expect(try vmstat(guest, "oom_kill") == oomBefore, "an OOM kill happened")
        }
    }
}
