/// What a host does with a session request sent to it as the runner-up of an unreachable owner
/// (`Hinted-For`), step by step: a pure value, performed by `HostResponder`.
///
/// A copy already held (or one that needs no seed) is served. One that would have to start from
/// the caller's seed is started only if the owner still does not answer: an owner that came back
/// takes the request itself (it would not know to merge a copy started now).
struct HintedRequest: Sendable, Equatable {
    enum Action: Sendable, Equatable {
        /// Serve it from the copy held for the owner.
        case serve
        /// Ask whether the owner answers again, then tell `ownerAnswered`.
        case probeOwner
        /// Refuse it back to the owner (`hint_refused`).
        case sendToOwner
        /// Ask the caller for the last state it knows (`hint_seed_required`).
        case askForSeed
    }

    private enum State: Sendable, Equatable {
        case start
        case probing
        case done
    }

    private var state = State.start

    /// Whether the held copy must start from a seed the caller has not sent.
    mutating func checked(needsSeed: Bool) -> Action {
        guard state == .start else { return .sendToOwner }
        guard needsSeed else {
            state = .done
            return .serve
        }
        state = .probing
        return .probeOwner
    }

    /// What the probe of the owner found.
    mutating func ownerAnswered(_ answers: Bool) -> Action {
        guard state == .probing else { return .sendToOwner }
        state = .done
        return answers ? .sendToOwner : .askForSeed
    }
}
