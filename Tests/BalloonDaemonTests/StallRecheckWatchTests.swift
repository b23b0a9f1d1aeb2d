// SPDX-License-Identifier: Apache-2.0
import BalloonController
import BalloonSystem
import Glibc
import Logging
import Testing
@testable import BalloonDaemon

private let MiB: UInt64 = 1 << 20

/// A balloon's memory as plain bookkeeping: this test is about the timer and
/// the PSI totals, not about locking memory.
private final class CountingReserver: MemoryReserver {
    var heldBytes: UInt64 = 0
    func grow(by bytes: UInt64) throws(ReserveError) { heldBytes += bytes }
    func shrink(by bytes: UInt64) { heldBytes -= min(bytes, heldBytes) }
}

/// A /proc fixture whose pressure/memory the test rewrites in place (the
/// sampler keeps the file open).
private struct ProcFixture {
    let dir = "/tmp/balloond-recheck-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    init() {
        mkdir(dir, 0o700)
        mkdir("\(dir)/pressure", 0o700)
        write("meminfo", "MemTotal:       4194304 kB\nMemFree:        3145728 kB\nMemAvailable:   3145728 kB\n")
        write("vmstat", "nr_free_pages 786432\n")
        pressure(someUs: 1_000_000, fullUs: 400_000)
    }

    func write(_ name: String, _ text: String) {
        let f = fopen("\(dir)/\(name)", "w")
        fputs(text, f)
        fclose(f)
    }

    func pressure(someUs: UInt64, fullUs: UInt64) {
        write("pressure/memory", """
            some avg10=0.00 avg60=0.00 avg300=0.00 total=\(someUs)
            full avg10=0.00 avg60=0.00 avg300=0.00 total=\(fullUs)

            """)
    }

    func remove() {
        for f in ["meminfo", "vmstat", "pressure/memory"] { unlink("\(dir)/\(f)") }
        rmdir("\(dir)/pressure")
        rmdir(dir)
    }
}

/// A controller on the fixture and the watch that measures its blamed
/// signals again, with every measure it hands on.
private final class WatchRig {
    let proc = ProcFixture()
    let controller: BalloonController
    let epoll: Epoll
    let watch: PressureWatch
    var measures: [StallMeasure] = []

    init() throws {
        let sampler = try MemorySampler(procRoot: proc.dir)
        let limits = BalloonLimits(memoryTotal: 4096 * MiB, maxBalloon: 2048 * MiB, availableFloor: 256 * MiB, chunkSize: 64 * MiB, pageSize: 4096)
        controller = BalloonController(limits: limits, clock: SystemMonotonicClock(), probe: sampler, reserver: CountingReserver())
        epoll = try Epoll()
        watch = try PressureWatch(registry: epoll, logger: Logger(label: "test"), sampler: sampler, controller: controller, reclaimSignals: false)
        watch.onRecheck = { [unowned self] in self.measures.append($0) }
    }

    deinit { proc.remove() }

    /// Grows the balloon a chunk and sends a light signal right after, which
    /// the controller blames on the growth; the watch schedules its recheck.
    func blameGrowth() throws {
        try controller.setTarget(128 * MiB)
        #expect(controller.step() == .more)
        #expect(controller.pressure(.psi(.light)) == 0)
        watch.scheduleRecheck()
    }
}

/// The daemon's side of docs/pressure.md's recheck: a signal the controller
/// blamed on growth arms a one-shot timer, and when it fires the stall since
/// the signal is read from /proc/pressure/memory's totals.
@Suite struct StallRecheckWatchTests {
    @Test func aBlamedSignalIsMeasuredFromThePSITotalsWhenTheTimerFires() throws {
        let rig = try WatchRig()
        let blamedAt = SystemClock.monotonic()
        try rig.blameGrowth()
        rig.proc.pressure(someUs: 1_100_000, fullUs: 430_000)  // 100 ms some, 30 ms full since

        while rig.measures.isEmpty {
            let ready = try rig.epoll.wait(timeout: .seconds(10))
            try #require(!ready.isEmpty, "the recheck timer never fired")
            for (token, _) in ready { #expect(rig.watch.handle(token: token)) }
        }
        let measure = try #require(rig.measures.first)
        #expect(measure.some == .milliseconds(100))
        #expect(measure.full == .milliseconds(30))
        #expect(measure.over >= rig.controller.policy.stallRecheckDelay)
        #expect(measure.over <= SystemClock.monotonic() - blamedAt)
        // 100 ms stalled within the time the test took: answered (which tier
        // depends on that time: 30 ms `full` is heavy's 10% of up to 300 ms).
        #expect(rig.controller.recheckBlamedStall(measure) != nil)
        #expect(rig.controller.actual < 128 * MiB)
    }

    @Test func anAnsweredSignalCancelsTheRecheck() throws {
        let rig = try WatchRig()
        try rig.blameGrowth()
        #expect(rig.controller.pressure(.oomKill) == 64 * MiB)  // answered whatever caused it
        rig.watch.scheduleRecheck()
        // The timer still fires (it was armed), and finds nothing to measure.
        var fired = false
        while !fired {
            let ready = try rig.epoll.wait(timeout: .seconds(10))
            try #require(!ready.isEmpty, "the recheck timer never fired")
            for (token, _) in ready where token == PressureWatch.Token.recheckTimer.rawValue {
                #expect(rig.watch.handle(token: token))
                fired = true
            }
        }
        #expect(rig.measures.isEmpty)
    }
}
