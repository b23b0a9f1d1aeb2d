// SPDX-License-Identifier: Apache-2.0
import BalloonConfig

/// The configuration files an administrator (or a careless tool) writes:
/// `balloond.conf` and its drop-ins, `balloon-hostd.conf` and its guest files.
/// Invariants: a refused file leaves the configuration as it was; an
/// accepted `balloond.conf` renders (`--dump-config`) to text that parses
/// back to the same configuration.
public enum ConfigFuzz {
    public static func run(_ data: UnsafeRawBufferPointer) {
        let text = String(decoding: data, as: UTF8.self)

        var config = BalloondConfig()
        do {
            try ConfigParser.apply(text, file: "fuzz.conf", to: &config)
            let rendered = config.render(sources: ["fuzz.conf"])
            var again = BalloondConfig()
            do { try ConfigParser.apply(rendered, file: "rendered.conf", to: &again) } catch {
                preconditionFailure("--dump-config output refused: \(error)\n\(rendered)")
            }
            precondition(again == config, "--dump-config output parses to another configuration:\n\(rendered)")
        } catch {
            precondition(config == BalloondConfig(), "a refused file changed the configuration")
        }

        var host = HostdConfig()
        do { try HostdLoader.parseHost(text, file: "fuzz-hostd.conf", into: &host) } catch {
            precondition(host == HostdConfig(), "a refused balloon-hostd.conf changed the configuration")
        }
        _ = try? HostdLoader.parseGuest(text, file: "fuzz-guest.conf")
    }
}
