// SPDX-License-Identifier: Apache-2.0

/// One metric family of the Prometheus text format: HELP, TYPE, samples.
public struct MetricFamily: Sendable, Equatable {
    public enum Kind: String, Sendable { case gauge, counter }
    public struct Sample: Sendable, Equatable {
        public var labels: [Label]
        public var value: Value
        public init(_ labels: [Label] = [], _ value: Value) {
            self.labels = labels
            self.value = value
        }
    }
    public struct Label: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }
    /// Integers are printed exactly (byte counts pass 2^53).
    public enum Value: Sendable, Equatable {
        case int(UInt64)
        case double(Double)
    }

    public var name: String
    public var help: String
    public var kind: Kind
    public var samples: [Sample]

    public init(_ name: String, _ kind: Kind, _ help: String, _ samples: [Sample] = []) {
        self.name = name
        self.kind = kind
        self.help = help
        self.samples = samples
    }
}

/// Pure: families → the text exposition format (version 0.0.4).
public enum TextFormat {
    /// A family without samples is left out whole: an absent value is an
    /// absent series, never 0.
    public static func render(_ families: [MetricFamily]) -> [UInt8] {
        var out = ""
        out.reserveCapacity(families.reduce(0) { $0 + 96 + $1.samples.count * 80 })
        for family in families where !family.samples.isEmpty {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                out += family.name
                if !sample.labels.isEmpty {
                    out += "{" + sample.labels.map { "\($0.name)=\"\(escapeLabel($0.value))\"" }.joined(separator: ",") + "}"
                }
                out += " " + format(sample.value) + "\n"
            }
        }
        return Array(out.utf8)
    }

    /// Label values: backslash, double quote and line feed escaped.
    public static func escapeLabel(_ value: String) -> String {
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// HELP text: backslash and line feed escaped.
    public static func escapeHelp(_ value: String) -> String {
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    public static func format(_ value: MetricFamily.Value) -> String {
        switch value {
        case let .int(n): return String(n)
        case let .double(d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d > 0 ? "+Inf" : "-Inf" }
            if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
            return "\(d)"
        }
    }
}
