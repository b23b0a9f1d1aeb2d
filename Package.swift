// swift-tools-version:6.1
// SPDX-License-Identifier: Apache-2.0
import PackageDescription

// Targets as docs/architecture.md lays them out: a C shim, a thin syscall
// layer, pure libraries (protocol, stats, config, controller), the guest agent
// and host libraries, and two thin executables. Linux only: it uses epoll,
// signalfd, timerfd, memfd and vsock, and SwiftPM has no Linux platform to
// name, so `platforms` lists none (and no macOS).
let package = Package(
    name: "balloond",
    products: [
        .executable(name: "balloond", targets: ["balloond"]),
        .executable(name: "balloonctl", targets: ["balloonctl"]),
        .executable(name: "balloon-hostd", targets: ["balloon-hostd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        // Headers Glibc hides or Swift cannot import (epoll, eventfd, timerfd,
        // signalfd, vm_sockets, macros).
        .target(name: "CBalloonShim"),
        // The only place that makes syscalls: descriptors, sockets, the virtio
        // port, PSI triggers, locked memory regions, /proc reads.
        .target(
            name: "BalloonSystem",
            dependencies: [
                "CBalloonShim",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Writes the version (VERSION + git describe) before each build.
        .plugin(name: "BalloonVersion", capability: .buildTool()),
        // Pure: JSON, line framing, the v1 messages (stats replies carry
        // BalloonStats' virtio stats and PSI lines); the version.
        .target(name: "BalloonProtocol", dependencies: ["BalloonStats"], plugins: ["BalloonVersion"]),
        // Pure: /proc/meminfo, /proc/vmstat, /proc/pressure parsers and the
        // virtio stats computed from them.
        .target(name: "BalloonStats"),
        // Pure parser of /etc/balloond.conf and its drop-ins; the loader reads
        // the files through BalloonSystem, and the stats-interval bounds are
        // the protocol's.
        // balloon-hostd's files too (HostdConfig), in the same syntax.
        .target(name: "BalloonConfig", dependencies: ["BalloonSystem", "BalloonProtocol", "BalloonPolicy"]),
        // One peer speaking lines over a descriptor: framer, bounded outbox,
        // write interest; the guest's host connection, for the host side too.
        .target(name: "BalloonChannel", dependencies: ["BalloonSystem", "BalloonProtocol"]),
        // Pure: targets, clamps, chunks, frame reporting's bookkeeping;
        // driven by a clock and a reserver.
        .target(name: "BalloonController", dependencies: ["BalloonProtocol"]),
        // Telling systemd what a daemon does (sd_notify's protocol spoken in
        // Swift, no libsystemd): balloond and the static balloon-hostd.
        .target(
            name: "BalloonService",
            dependencies: ["BalloonSystem", .product(name: "Logging", package: "swift-log")]
        ),
        // The guest agent: the epoll loop wiring channel, controller, stats.
        .target(
            name: "BalloonDaemon",
            dependencies: [
                "BalloonSystem", "BalloonProtocol", "BalloonStats", "BalloonConfig",
                "BalloonController", "BalloonChannel", "BalloonService",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // libsystemd (sd-daemon, sd-journal) from pkg-config; Debian ships only
        // libsystemd.so, so balloond links it dynamically (static Swift runtime).
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // systemd's journal: a journald LogHandler (sd_journal_sendv). The
        // sd_notify side is BalloonService's, which needs no libsystemd.
        .target(
            name: "BalloonSystemd",
            dependencies: [
                "CSystemd", "BalloonSystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Pure: balloon-hostd's policies (auto, proxmox, mom, manual) on
        // sampled host and guest state; no clock, no I/O.
        .target(name: "BalloonPolicy"),
        // Pure: the metrics endpoint's HTTP request parser and the Prometheus
        // text format renderer (docs/metrics.md); no I/O, so it can be fuzzed.
        .target(name: "BalloonMetrics", dependencies: ["BalloonProtocol", "BalloonStats"]),
        // The host side: connecting to a guest channel and a session over it.
        .target(
            name: "BalloonHost",
            dependencies: ["BalloonSystem", "BalloonProtocol", "BalloonStats", "BalloonChannel", "BalloonPolicy", "BalloonConfig", "BalloonMetrics", "BalloonService"]
        ),
        .executableTarget(
            name: "balloond",
            dependencies: [
                "BalloonSystem",
                "BalloonDaemon", "BalloonSystemd", "BalloonService",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "balloonctl",
            dependencies: [
                "BalloonHost",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The host agent: every guest of a host in one loop (BalloonHost.HostAgent).
        .executableTarget(
            name: "balloon-hostd",
            dependencies: [
                "BalloonHost", "BalloonConfig", "BalloonProtocol", "BalloonSystem", "BalloonService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `make bench` driver; not a product.
        .executableTarget(
            name: "balloon-bench",
            dependencies: ["BalloonHost", "BalloonProtocol", "BalloonSystem"]
        ),
        // `make bench-host`'s fake guests (protocol v1 on unix sockets, one
        // epoll loop) and the policy round's cost at scale; not a product.
        .executableTarget(
            name: "balloon-hostsim",
            dependencies: [
                "BalloonChannel", "BalloonPolicy", "BalloonProtocol", "BalloonStats", "BalloonSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Pure: the fuzz targets' bodies (docs/fuzzing.md), one per untrusted
        // input, invariants as preconditions; replayed by BalloonFuzzTests.
        .target(
            name: "BalloonFuzz",
            dependencies: ["BalloonProtocol", "BalloonHost", "BalloonMetrics", "BalloonConfig", "BalloonStats"]
        ),
        // Shared by the test targets: a seeded RNG, waits on a condition, the
        // repository's files (docs, /proc fixtures, shipped configs).
        .target(name: "BalloonTestSupport", path: "Tests/BalloonTestSupport"),
        .testTarget(name: "BalloonProtocolTests", dependencies: ["BalloonProtocol", "BalloonTestSupport"]),
        .testTarget(
            name: "BalloonStatsTests",
            dependencies: ["BalloonStats", "BalloonTestSupport"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(name: "BalloonConfigTests", dependencies: ["BalloonConfig", "BalloonProtocol", "BalloonTestSupport"]),
        .testTarget(name: "BalloonControllerTests", dependencies: ["BalloonController", "BalloonProtocol", "BalloonTestSupport"]),
        .testTarget(
            name: "BalloonDaemonTests",
            dependencies: [
                "BalloonDaemon", "BalloonChannel", "BalloonConfig", "BalloonController", "BalloonProtocol", "BalloonSystem",
                "BalloonTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .testTarget(name: "BalloonSystemTests", dependencies: ["BalloonSystem", "BalloonTestSupport"]),
        .testTarget(
            name: "BalloonSystemdTests",
            dependencies: ["BalloonSystemd", "BalloonService", "BalloonTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "BalloonPolicyTests", dependencies: ["BalloonPolicy", "BalloonTestSupport"]),
        .testTarget(name: "BalloonMetricsTests", dependencies: ["BalloonMetrics", "BalloonProtocol", "BalloonStats", "BalloonTestSupport"]),
        .testTarget(name: "BalloonHostTests", dependencies: ["BalloonHost", "BalloonProtocol", "BalloonSystem", "BalloonConfig", "BalloonPolicy", "BalloonTestSupport"]),
        .testTarget(name: "BalloonFuzzTests", dependencies: ["BalloonFuzz", "BalloonTestSupport"]),
        // Real-guest scenarios (QEMU TCG); `make test` enables them.
        .testTarget(name: "VMTests", dependencies: ["BalloonHost", "BalloonProtocol", "BalloonSystem", "BalloonTestSupport", "balloonctl", "balloon-hostd"]),
        .testTarget(
            name: "SystemTests",
            dependencies: ["BalloonHost", "BalloonProtocol", "BalloonSystem", "BalloonTestSupport", "balloond", "balloonctl", "balloon-hostd"]
        ),
    ]
)

// `make fuzz` (scripts/fuzz.sh) sets BALLOOND_FUZZ=1 and builds these with
// `-sanitize=fuzzer,address -parse-as-library`: libFuzzer executables whose
// only file holds LLVMFuzzerTestOneInput (and the renamed main SwiftPM links,
// handing over to libFuzzer). Absent otherwise, so the normal build is unchanged.
if Context.environment["BALLOOND_FUZZ"] == "1" {
    package.targets.append(.target(name: "CFuzzDriver", path: "Fuzz/CFuzzDriver"))
    for name in ["guest-protocol", "host-frames", "qmp", "metrics-http", "config", "proc"] {
        package.targets.append(.executableTarget(name: "fuzz-\(name)", dependencies: ["BalloonFuzz", "CFuzzDriver"], path: "Fuzz/\(name)"))
        package.products.append(.executable(name: "fuzz-\(name)", targets: ["fuzz-\(name)"]))
    }
}
