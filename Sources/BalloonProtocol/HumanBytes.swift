// SPDX-License-Identifier: Apache-2.0
/// Byte counts for people: "512 MiB", "1.5 GiB", "4 KiB", "0 B".
public enum HumanBytes {
    public static func format(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        if unit == 0 { return "\(bytes) B" }
        // 1023.96 KiB rounds to 1024.0: say "1 MiB" instead.
        if (value * 10).rounded() >= 10240, unit < units.count - 1 { value /= 1024; unit += 1 }
        let tenths = (value * 10).rounded()
        if tenths.truncatingRemainder(dividingBy: 10) == 0 { return "\(Int(tenths / 10)) \(units[unit])" }
        return "\(Int(tenths) / 10).\(Int(tenths) % 10) \(units[unit])"
    }

    public static func format(signed delta: Int64) -> String {
        delta < 0 ? "-" + format(delta.magnitude) : "+" + format(delta.magnitude)
    }
}
