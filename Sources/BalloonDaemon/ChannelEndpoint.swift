// SPDX-License-Identifier: Apache-2.0
import BalloonConfig
import BalloonSystem

/// Where hosts come from: a listening socket (unix, vsock) that yields
/// connections, or a virtio-serial port that is itself the connection.
enum ChannelEndpoint {
    case listener(Descriptor, ChannelSpec)
    case virtioSerial(Descriptor, path: String)

    static func open(_ spec: ChannelSpec) throws(SystemError) -> ChannelEndpoint {
        switch spec {
        case let .unix(path):
            return .listener(try StreamSocket.listenUnix(path: path), spec)
        case let .vsock(port):
            return .listener(try StreamSocket.listenVsock(port: port), spec)
        case let .virtioSerial(nameOrPath):
            let path = VirtioSerialPort.path(for: nameOrPath)
            return .virtioSerial(try VirtioSerialPort.open(path), path: path)
        }
    }

    var descriptor: Descriptor {
        switch self {
        case let .listener(fd, _): fd
        case let .virtioSerial(fd, _): fd
        }
    }

    /// How `info` names the channel.
    var label: String {
        switch self {
        case let .listener(_, spec): spec.description
        case let .virtioSerial(_, path): "virtio-serial:\(path)"
        }
    }

    func close() {
        if case let .listener(fd, .unix(path)) = self {
            fd.close()
            // Gone already (removed by hand, or a newer listener's): nothing to clean.
            try? ProcessControl.removeFile(path)
        } else {
            descriptor.close()
        }
    }
}
