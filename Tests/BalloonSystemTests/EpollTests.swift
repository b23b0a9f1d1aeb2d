// SPDX-License-Identifier: Apache-2.0
import BalloonSystem
import BalloonTestSupport
import CBalloonShim
import Glibc
import Testing

extension Epoll {
    /// The events reported for `token` within `milliseconds`, or nil.
    func events(for token: UInt64, within milliseconds: Int32) throws -> EpollEvents? {
        try wait(timeout: .milliseconds(milliseconds)).first { $0.token == token }?.events
    }
}

@Suite("Epoll, timerfd, eventfd")
struct EpollTests {
    @Test func waitWithTimeoutZeroOnNothingReadyIsEmpty() throws {
        let epoll = try Epoll()
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
        let (r, w) = try makePipe()
        try epoll.add(r, events: .readable, token: 1)
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
        #expect(try epoll.wait(timeout: .milliseconds(10)).isEmpty)
        withExtendedLifetime(w) {}  // a closed writer would make the pipe readable (EOF)
    }

    @Test func pipeBecomesReadable() throws {
        let epoll = try Epoll()
        let (r, w) = try makePipe()
        try epoll.add(r, events: .readable, token: 41)
        _ = try send(w, [1, 2])
        let ready = try epoll.wait(timeout: .milliseconds(1000))
        #expect(ready.count == 1)
        #expect(ready.first?.token == 41)
        #expect(ready.first?.events.contains(.readable) == true)
        // Level-triggered: still readable until drained.
        #expect(try epoll.events(for: 41, within: 0)?.contains(.readable) == true)
        #expect(try receive(r) == [1, 2])
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
        // Writer closes: the read end reports hangup.
        w.close()
        #expect(try epoll.events(for: 41, within: 1000)?.contains(.hangup) == true)
    }

    @Test func socketpairEndReadableWritableAndPeerClosed() throws {
        let epoll = try Epoll()
        let (a, b) = try StreamSocket.pair()
        try epoll.add(a, events: [.readable, .peerClosed], token: UInt64.max)
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
        _ = try send(b, [7])
        let events = try #require(try epoll.events(for: UInt64.max, within: 1000), "tokens are 64-bit")
        #expect(events.contains(.readable))
        #expect(!events.contains(.peerClosed))
        #expect(try receive(a) == [7])
        b.close()
        let closed = try #require(try epoll.events(for: UInt64.max, within: 1000))
        #expect(closed.contains(.peerClosed))
    }

    @Test func modifyAndRemove() throws {
        let epoll = try Epoll()
        let (a, b) = try StreamSocket.pair()
        try epoll.add(a, events: .writable, token: 5)
        #expect(try epoll.events(for: 5, within: 1000) == .writable)
        // Now only readability, and nothing to read: quiet.
        try epoll.modify(a, events: .readable, token: 6)
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
        _ = try send(b, [1])
        let ready = try epoll.wait(timeout: .milliseconds(1000))
        #expect(ready.map(\.token) == [6], "the new token is reported")
        epoll.remove(a)
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
        // Removing again, or removing something never added, is not an error.
        epoll.remove(a)
        epoll.remove(b)
    }

    @Test func errorsNameTheCall() throws {
        let epoll = try Epoll()
        let (r, _) = try makePipe()
        try epoll.add(r, events: .readable, token: 1)
        do {
            try epoll.add(r, events: .readable, token: 1)
            Issue.record("adding twice succeeded")
        } catch {
            #expect(error.operation == "epoll_ctl(ADD)")
            #expect(error.errno == .fileExists)
        }
        let (other, _) = try makePipe()
        do {
            try epoll.modify(other, events: .readable, token: 2)
            Issue.record("modifying an unregistered fd succeeded")
        } catch {
            #expect(error.operation == "epoll_ctl(MOD)")
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }

    @Test func manyReadyDescriptorsAreReportedUpToMax() throws {
        let epoll = try Epoll()
        var pipes: [(read: Descriptor, write: Descriptor)] = []
        for i in 0..<10 {
            let p = try makePipe()
            try epoll.add(p.read, events: .readable, token: UInt64(100 + i))
            _ = try send(p.write, [1])
            pipes.append(p)
        }
        #expect(try Set(epoll.wait(timeout: .milliseconds(1000)).map(\.token)) == Set((100..<110).map { UInt64($0) }))
        #expect(try epoll.wait(timeout: .milliseconds(1000), max: 3).count == 3)
    }

    @Test func eventfdSignalAndAcknowledge() throws {
        let epoll = try Epoll()
        let event = try EventDescriptor()
        try epoll.add(event.descriptor, events: .readable, token: 9)
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
        #expect(event.acknowledge() == 0, "nothing signalled yet: would block, 0")
        event.signal()
        event.signal()
        #expect(try epoll.events(for: 9, within: 1000)?.contains(.readable) == true)
        #expect(event.acknowledge() == 2)
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
    }

    @Test func eventfdWakesAWaitFromAnotherThread() throws {
        let epoll = try Epoll()
        let event = try EventDescriptor()
        try epoll.add(event.descriptor, events: .readable, token: 3)
        let raw = event.descriptor.raw
        var thread = pthread_t()
        let box = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        box.pointee = raw
        defer { box.deallocate() }
        let rc = pthread_create(&thread, nil, { arg in
            // Not a wait for a state: a head start for the main thread to be
            // inside epoll_wait (the test passes either way; this makes the
            // wakeup path the one usually taken).
            usleep(20_000)
            var one: UInt64 = 1
            _ = write(arg!.assumingMemoryBound(to: Int32.self).pointee, &one, 8)
            return nil
        }, box)
        try #require(rc == 0)
        let ready = try epoll.wait(timeout: .milliseconds(5000))
        pthread_join(thread, nil)
        #expect(ready.map(\.token) == [3])
        #expect(event.acknowledge() == 1)
    }

    @Test func timerfdFiresAfterItsDelay() throws {
        let epoll = try Epoll()
        let timer = try TimerDescriptor()
        try epoll.add(timer.descriptor, events: .readable, token: 77)
        #expect(timer.acknowledge() == 0, "not armed: nothing to read")
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        try timer.arm(after: .milliseconds(20))
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty, "not yet")
        let ready = try epoll.wait(timeout: .milliseconds(2000))
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        #expect(ready.map(\.token) == [77])
        let elapsedMs = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1_000_000
        #expect(elapsedMs >= 19)
        #expect(timer.acknowledge() >= 1)
        #expect(timer.acknowledge() == 0, "acknowledged: nothing more")
        #expect(try epoll.wait(timeout: .milliseconds(0)).isEmpty)
    }

    @Test func timerfdRepeatsAndDisarms() throws {
        let epoll = try Epoll()
        let timer = try TimerDescriptor()
        try epoll.add(timer.descriptor, events: .readable, token: 1)
        try timer.arm(after: .milliseconds(5), repeating: true)
        #expect(try epoll.events(for: 1, within: 1000) != nil)
        // It keeps firing: expirations add up until at least two were counted.
        var expirations: UInt64 = 0
        #expect(waitUntil { expirations += timer.acknowledge(); return expirations >= 2 })
        try timer.disarm()
        _ = timer.acknowledge()
        #expect(try epoll.wait(timeout: .milliseconds(30)).isEmpty)
    }

    @Test func timerfdTakesADuration() throws {
        let timer = try TimerDescriptor()
        try timer.arm(after: .milliseconds(2500) + .nanoseconds(7))
        var spec = itimerspec()
        #expect(timerfd_gettime(timer.descriptor.raw, &spec) == 0)
        #expect(spec.it_value.tv_sec == 2)
        #expect(spec.it_value.tv_nsec > 400_000_000)
        try timer.arm(after: .zero)
        #expect(timerfd_gettime(timer.descriptor.raw, &spec) == 0)
        #expect(spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0)
    }

    /// arm(every:) expires at multiples of its interval on CLOCK_MONOTONIC:
    /// the armed expiry, bounded by clock reads before and after, holds one.
    @Test(arguments: [250, 1000, 1500]) func timerfdOnTheGrid(milliseconds: Int) throws {
        let timer = try TimerDescriptor()
        let step = UInt64(milliseconds) * 1_000_000
        let before = SystemClock.monotonic().inNanoseconds
        try timer.arm(every: .milliseconds(milliseconds))
        var spec = itimerspec()
        #expect(timerfd_gettime(timer.descriptor.raw, &spec) == 0)
        let after = SystemClock.monotonic().inNanoseconds
        let remaining = UInt64(spec.it_value.tv_sec) * 1_000_000_000 + UInt64(spec.it_value.tv_nsec)
        #expect(remaining > 0 && remaining <= step)
        #expect(UInt64(spec.it_interval.tv_sec) * 1_000_000_000 + UInt64(spec.it_interval.tv_nsec) == step)
        // The expiry lies in [before + remaining, after + remaining]; a multiple of step must too.
        let lo = before + remaining, hi = after + remaining
        #expect((hi / step) * step >= lo, "no multiple of \(step) ns in [\(lo), \(hi)]")
        try timer.arm(every: .zero)
        #expect(timerfd_gettime(timer.descriptor.raw, &spec) == 0)
        #expect(spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0)
    }

    @Test func timerfdLongDelaySplitsSecondsAndNanoseconds() throws {
        let timer = try TimerDescriptor()
        // 1500 ms: tv_sec 1, tv_nsec 500_000_000 (an invalid tv_nsec would be EINVAL).
        try timer.arm(after: .milliseconds(1500))
        var spec = itimerspec()
        #expect(timerfd_gettime(timer.descriptor.raw, &spec) == 0)
        #expect(spec.it_value.tv_sec == 1)
        #expect(spec.it_value.tv_nsec > 0)
        try timer.disarm()
        #expect(timerfd_gettime(timer.descriptor.raw, &spec) == 0)
        #expect(spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0)
    }
}
