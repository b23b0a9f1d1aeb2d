// SPDX-License-Identifier: Apache-2.0
/// The commands of balloon-hostd's control socket beyond protocol v1
/// (docs/hostd.md "Control socket"). A control connection speaks v1 to one
/// guest after `select-guest` (balloonctl --guest NAME); these commands need
/// no guest selected. `balloonctl serve` answers `select-guest`,
/// `list-guests` and `guest-status` for its one guest too.
public enum AgentCommand: Sendable, Equatable {
    /// Later v1 commands on this connection go to guest `name`, and only its
    /// events are sent to it.
    case selectGuest(name: String)
    case listGuests
    case guestStatus(name: String)
    case policyStatus
    /// Overrides a guest's `[Guest] Policy=` until the next reload.
    case setGuestPolicy(name: String, policy: GuestPolicyName)

    /// `[Guest] Policy=` on the wire (BalloonPolicy.GuestPolicy's raw values).
    public enum GuestPolicyName: String, Sendable, CaseIterable { case auto, manual, off }

    public enum Name: String, Sendable, CaseIterable {
        case selectGuest = "select-guest"
        case listGuests = "list-guests"
        case guestStatus = "guest-status"
        case policyStatus = "policy-status"
        case setGuestPolicy = "set-guest-policy"
    }

    public var name: Name {
        switch self {
        case .selectGuest: .selectGuest
        case .listGuests: .listGuests
        case .guestStatus: .guestStatus
        case .policyStatus: .policyStatus
        case .setGuestPolicy: .setGuestPolicy
        }
    }

    public var arguments: JSON {
        switch self {
        case let .selectGuest(name), let .guestStatus(name): ["name": .string(name)]
        case let .setGuestPolicy(name, policy): ["name": .string(name), "policy": .string(policy.rawValue)]
        case .listGuests, .policyStatus: .object([])
        }
    }

    public func request(id: JSON?) -> Request { Request(name.rawValue, arguments: arguments, id: id) }

    /// Whether `request` names one of these commands (then `init` decides).
    public static func names(_ request: Request) -> Bool { Name(rawValue: request.execute) != nil }

    /// Checks a request the way `Command` does: unknown arguments refused,
    /// each present and typed (`InvalidParameter` naming it).
    public init(_ request: Request) throws(ProtocolError) {
        guard let name = Name(rawValue: request.execute) else {
            throw ProtocolError(.commandNotFound, "no command \"\(request.execute)\"")
        }
        let args = try Fields(request.arguments, name.rawValue, noun: "argument", errorClass: .invalidParameter)
        switch name {
        case .selectGuest:
            try args.allowOnly(["name"])
            self = .selectGuest(name: try args.string("name"))
        case .listGuests:
            try args.allowOnly([])
            self = .listGuests
        case .guestStatus:
            try args.allowOnly(["name"])
            self = .guestStatus(name: try args.string("name"))
        case .policyStatus:
            try args.allowOnly([])
            self = .policyStatus
        case .setGuestPolicy:
            try args.allowOnly(["name", "policy"])
            self = .setGuestPolicy(name: try args.string("name"), policy: try args.enumeration("policy", GuestPolicyName.self))
        }
    }

    /// The error for a guest the agent does not know.
    public static func noSuchGuest(_ name: String) -> ProtocolError {
        ProtocolError(.invalidParameter, "no guest \"\(name)\" (balloonctl list shows them)")
    }
}
