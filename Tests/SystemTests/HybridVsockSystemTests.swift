// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonSystem
import BalloonTestSupport
import Foundation
import Glibc
import Testing

/// balloon-hostd with `Channel=hybrid-vsock:PATH:PORT` through a fake VMM
/// that behaves as Firecracker and Cloud Hypervisor document it: a unix
/// socket, `CONNECT PORT\n` answered with `OK HOSTPORT\n` and then the
/// guest's stream (here a real balloond's unix socket), or the connection
/// closed when nothing listens on that port in the guest.
@Suite(.serialized) struct HybridVsockSystem {
    /// A descriptor handed to the thread that serves it (and only to it).
    final class Connection: @unchecked Sendable {
        let fd: Descriptor
        init(_ fd: Descriptor) { self.fd = fd }
    }

    final class FakeVMM: @unchecked Sendable {
        let listener: Descriptor
        let ports: [UInt32: String]
        private let lock = NSLock()
        private var stopped = false
        private var seen: [String] = []
        var requests: [String] { lock.lock(); defer { lock.unlock() }; return seen }
        var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

        /// `ports`: guest vsock port → the unix socket that stands for the guest's listener.
        init(path: String, ports: [UInt32: String]) throws {
            listener = try StreamSocket.listenUnix(path: path)
            self.ports = ports
            Thread.detachNewThread { self.acceptLoop() }
        }

        func stop() { lock.lock(); stopped = true; lock.unlock() }

        private func acceptLoop() {
            while !isStopped {
                guard (try? HostIO.waitReadable(listener, timeout: .milliseconds(100))) == true,
                    let client = try? StreamSocket.accept(listener)
                else { continue }
                let connection = Connection(client)
                Thread.detachNewThread { self.serve(connection.fd) }
            }
        }

        private func serve(_ client: Descriptor) {
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while !isStopped, line.count < 64 {
                guard (try? HostIO.waitReadable(client, timeout: .milliseconds(100))) == true else { continue }
                let n = read(client.raw, &byte, 1)
                if n == 0 { return }
                if n < 0 { continue }
                if byte == 0x0A { break }
                line.append(byte)
            }
            let request = String(decoding: line, as: UTF8.self)
            lock.lock(); seen.append(request); lock.unlock()
            // Nothing listening on that port in the guest: the VMM closes the connection.
            guard request.hasPrefix("CONNECT "), let port = UInt32(request.dropFirst(8)), let target = ports[port],
                let guest = try? StreamSocket.connectUnix(path: target)
            else { return }
            try? HostIO.sendAll(client, Array("OK 1073741824\n".utf8))
            relay(client, guest)
        }

        private func relay(_ a: Descriptor, _ b: Descriptor) {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !isStopped {
                var fds = [pollfd(fd: a.raw, events: Int16(POLLIN), revents: 0), pollfd(fd: b.raw, events: Int16(POLLIN), revents: 0)]
                guard poll(&fds, 2, 100) > 0 else { continue }
                for (i, (from, to)) in [(a, b), (b, a)].enumerated() where fds[i].revents != 0 {
                    let n = read(from.raw, &buffer, buffer.count)
                    if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return }
                    if n > 0, (try? HostIO.sendAll(to, Array(buffer[0..<n]))) == nil { return }
                }
            }
        }
    }

    @Test func agentThroughAFakeVMM() throws {
        let box = try HostAgentSystem.AgentBox()
        let sandbox = try Sandbox(config: "[Balloon]\nChunkSize=8M\n")
        let daemon = try DaemonProcess(arguments: ["--config", sandbox.configPath], waitForSocket: sandbox.socket)
        let vsock = box.dir + "/v.sock"
        let vmm = try FakeVMM(path: vsock, ports: [7468: sandbox.socket])
        defer { vmm.stop() }
        try box.guest("fc1", "[Guest]\nChannel=hybrid-vsock:\(vsock):7468\nPolicy=manual\nTarget=16M\n")
        // Port 9: nobody listens there in the guest.
        try box.guest("nobody", "[Guest]\nChannel=hybrid-vsock:\(vsock):9\nPolicy=manual\n")
        let agent = try HostAgentSystem.AgentProcess(["--config", box.config])
        #expect(waitUntil { FileManager.default.fileExists(atPath: box.control) }, "\(agent.log)")
        let client = try RawClient(socket: box.control)
        try client.sync()
        func rows() -> [String: GuestSummary] {
            let list = (try? GuestListReply(json: try client.value("list-guests")).guests) ?? []
            return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
        }
        #expect(waitUntil(timeout: .seconds(30)) { rows()["fc1"]?.actual == 16 * MiB }, "\(agent.log)")
        #expect(balloonLocked(daemon.pid) == 16 * MiB)
        #expect(rows()["fc1"]?.channel == "hybrid-vsock:\(vsock):7468")
        #expect(vmm.requests.contains("CONNECT 7468"))
        // The guest behind port 9 stays down, and the log says why.
        #expect(waitUntil { vmm.requests.contains("CONNECT 9") && agent.log.contains("the VMM closed the connection") }, "\(agent.log)")
        #expect(rows()["nobody"]?.connected == false)

        kill(agent.pid, SIGTERM)
        #expect(agent.waitForExit() == 0)
        _ = daemon
    }
}
