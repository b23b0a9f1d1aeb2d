// SPDX-License-Identifier: Apache-2.0
/// The bounds of the STATS event period, shared by `[Stats] Interval=` in the
/// configuration, `set-stats-interval` on the wire and balloonctl's checks, so
/// the three cannot disagree. Zero always means "off".
public enum StatsIntervalLimits {
    /// The shortest non-zero period.
    public static let minimum: Duration = .milliseconds(100)
    /// The longest period `set-stats-interval` accepts (one day).
    public static let maximum: Duration = .seconds(86_400)

    /// Whether `interval` is off (zero) or within `minimum...maximum`.
    public static func allows(_ interval: Duration) -> Bool {
        interval == .zero || (minimum...maximum).contains(interval)
    }
}
