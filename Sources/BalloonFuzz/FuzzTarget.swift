// SPDX-License-Identifier: Apache-2.0
/// The fuzz targets (docs/fuzzing.md): one body per input an untrusted or
/// careless party controls. Each takes the fuzzer's bytes and checks its
/// invariants with `precondition`, so a violation is a crash libFuzzer keeps;
/// the same bodies replay the corpora in `make test` (BalloonFuzzTests).
/// Pure: no I/O, no clock (a simulated one where a target needs time).
public enum FuzzTarget: String, Sendable, CaseIterable {
    /// Guest side: bytes from the host → framer → message → command.
    case guestProtocol = "guest-protocol"
    /// Host side: bytes from the guest → events → frame ledger over a RAM map.
    case hostFrames = "host-frames"
    /// balloon-hostd's QMP dialect: stream parser → session.
    case qmp
    /// The metrics endpoint's HTTP request head parser and its answer.
    case metricsHTTP = "metrics-http"
    /// balloond.conf, balloon-hostd.conf and guest files.
    case config
    /// /proc/meminfo, /proc/vmstat, /proc/pressure/*.
    case proc

    /// Runs one input through the target's body.
    public func run(_ data: UnsafeRawBufferPointer) {
        switch self {
        case .guestProtocol: GuestProtocolFuzz.run(data)
        case .hostFrames: HostFramesFuzz.run(data)
        case .qmp: QMPFuzz.run(data)
        case .metricsHTTP: MetricsHTTPFuzz.run(data)
        case .config: ConfigFuzz.run(data)
        case .proc: ProcFuzz.run(data)
        }
    }

    public func run(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { run($0) }
    }
}
