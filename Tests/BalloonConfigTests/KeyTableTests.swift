// SPDX-License-Identifier: Apache-2.0
import BalloonProtocol
import BalloonTestSupport
import Testing
@testable import BalloonConfig

private func parse(_ text: String) throws(ConfigError) -> BalloondConfig {
    var config = BalloondConfig()
    try ConfigParser.apply(text, file: "test", to: &config)
    return config
}

@Suite("The key table")
struct KeyTableTests {
    @Test func namesAreUniqueWithinASectionAndInFileOrder() {
        let keys = ConfigKey.allCases
        let pairs = keys.map { "\($0.section.rawValue).\($0.name)" }
        #expect(Set(pairs).count == pairs.count)
        // Sections come in one run each, in the order of ConfigSection.
        var seen: [ConfigSection] = []
        for key in keys where seen.last != key.section { seen.append(key.section) }
        #expect(seen == ConfigSection.allCases)
        #expect(keys.allSatisfy { !$0.doc.isEmpty })
    }

    /// `Key=` puts back exactly the default the table renders.
    @Test(arguments: ConfigKey.allCases.map(\.name))
    func emptyValueRestoresTheDefault(name: String) throws {
        let key = try #require(ConfigKey.allCases.first { $0.name == name })
        var changed = ShippedFileTests.nonDefault()
        changed.lightTrigger = nil
        changed.quietPeriod = .seconds(5)
        changed.holderProcesses = false
        try ConfigParser.apply("[\(key.section.rawValue)]\n\(key.name)=\n", file: "test", to: &changed)
        #expect(key.render(changed) == key.renderedDefault)
    }

    /// docs/config.md documents every key under its own heading and states
    /// the default the table has.
    @Test(arguments: ConfigKey.allCases.map(\.name))
    func docsStateEveryKeyAndItsDefault(name: String) throws {
        let key = try #require(ConfigKey.allCases.first { $0.name == name })
        let docs = try RepoFiles.text("docs/config.md")
        let heading = try #require(
            docs.split(separator: "\n### ", omittingEmptySubsequences: false)
                .first { $0.prefix { $0 != "\n" }.contains("`\(key.name)=`") },
            "docs/config.md has no heading for \(key.name)=")
        let body = heading.split(separator: "\n## ", maxSplits: 1).first ?? heading
        #expect(body.contains("`\(key.renderedDefault)`"), "docs/config.md does not state \(key.name)=\(key.renderedDefault)")
    }

    /// The config's bound is the protocol's: what `Interval=` accepts (up to
    /// the protocol's maximum) is what `set-stats-interval` accepts.
    @Test(arguments: [0, 1, 50, 99, 100, 101, 500, 60_000, 86_400_000] as [Int64])
    func statsIntervalBoundsAreTheProtocols(milliseconds: Int64) {
        let interval = Duration.milliseconds(milliseconds)
        let accepted = (try? parse("[Stats]\nInterval=\(milliseconds)ms")) != nil
        #expect(accepted == StatsIntervalLimits.allows(interval))
    }

    @Test func intervalsParseOnceForEveryDurationKey() throws {
        let config = try parse("""
            [Balloon]
            FrameRescanInterval=1min 30s
            [Stats]
            Interval=1.5s
            [Pressure]
            QuietPeriod=2h
            """)
        #expect(config.frameRescanInterval == .seconds(90))
        #expect(config.statsInterval == .milliseconds(1500))
        #expect(config.quietPeriod == .seconds(7200))
    }

    @Test func durationsBeyondInt64MillisecondsStillRoundTrip() throws {
        // 2^64 - 1 ms is the largest duration the syntax takes.
        let config = try parse("[Pressure]\nQuietPeriod=18446744073709551615ms")
        #expect(config.quietPeriod.configMilliseconds == UInt64.max)
        #expect(renderDuration(config.quietPeriod) == "18446744073709551615ms")
    }
}
