import Foundation
import HashRing
import SessionModel
import Synchronization

/// The ring a host serves by, and the one before it while a change is still migrating.
///
/// A change (`replace`) is accepted only once the previous one has settled: every member
/// has handed over the sessions it no longer owns. So at most two rings are ever in play,
/// and a session's data is always at its current owner or at its owner under the previous
/// ring, never further away.
final class RingHolder: Sendable {
    struct Persisted: Codable, Sendable, Equatable {
        var current: Membership
        /// The ring before `current`, until the change to `current` has settled.
        var previous: Membership?
    }

    let node: String
    private let state: Mutex<Persisted>
    /// Foreign sessions (owned by another member now) still stored here; nil until counted.
    private let pendingCount = Mutex<Int?>(nil)

    init(node: String, persisted: Persisted) {
        self.node = node
        state = Mutex(persisted)
    }

    /// The ring a host starts with: its configuration's, unless storage has a newer one
    /// (set through `PUT /ring` after the configuration was written). A configuration newer
    /// than storage is a change like any other.
    static func startingState(configured: Membership, stored: Persisted?) -> (Persisted, note: String?) {
        guard let stored else { return (Persisted(current: configured, previous: nil), nil) }
        if stored.current.version > configured.version {
            return (
                stored,
                "the stored ring (version \(stored.current.version)) is newer than the configured one (version \(configured.version)); serving by the stored one: update the configuration"
            )
        }
        if stored.current.version == configured.version {
            if stored.current.members != configured.members {
                return (
                    stored,
                    "the configured members differ from the stored ones at the same ring version \(configured.version); serving by the stored ones: raise ring_version with every change"
                )
            }
            return (stored, nil)
        }
        return (
            Persisted(current: configured, previous: stored.current),
            "ring changed from version \(stored.current.version) to \(configured.version) by configuration"
        )
    }

    /// The previous ring of a host that joins a running ring: it has no stored state, so it
    /// asks the other members. An older ring one of them serves, or the previous ring of one
    /// still migrating to ours, is where our ids' data may be; none (a new ring) is nil.
    static func discoverPrevious(of configured: Membership, answers: [RingInfo]) -> Membership? {
        var candidates: [Membership] = []
        for info in answers {
            if info.version < configured.version { candidates.append(info.membership) }
            if info.version == configured.version, let previous = info.previous { candidates.append(previous) }
        }
        return candidates.max { $0.version < $1.version }
    }

    var persisted: Persisted { state.withLock { $0 } }
    var current: Membership { state.withLock { $0.current } }
    var version: Int { current.version }
    var isSettled: Bool { state.withLock { $0.previous == nil } }

    /// The member that owns `id` now.
    func owner(of id: String) -> Membership.Member? {
        state.withLock { $0.current.owner(of: id) }
    }

    /// Whether this host owns `id` now (a ring of one owns everything).
    func ownsNow(_ id: String) -> Bool {
        owner(of: id)?.name == node
    }

    /// Where the data of an id this host now owns may still be: its owner under the previous
    /// ring, when that is another member and the change has not settled. Nil otherwise.
    func previousOwner(of id: String) -> Membership.Member? {
        state.withLock { state in
            guard let previous = state.previous, state.current.owner(of: id)?.name == node,
                let before = previous.owner(of: id), before.name != node
            else { return nil }
            return before
        }
    }

    /// Every member of the current and previous rings but this host.
    var otherMembers: [Membership.Member] {
        state.withLock { state in
            var members: [String: Membership.Member] = [:]
            for member in (state.previous?.members ?? []) + state.current.members where member.name != node {
                members[member.name] = member
            }
            return members.values.sorted { $0.name < $1.name }
        }
    }

    /// Starts a change to `next`. Same ring again: nothing to do (false). Refused while the
    /// last change migrates, or when `next` is not newer.
    func replace(with next: Membership) throws(APIError) -> Bool {
        try state.withLock { state throws(APIError) -> Bool in
            if next.version == state.current.version && next.members == state.current.members { return false }
            guard next.version > state.current.version else {
                throw APIError(.invalidField, "ring version \(next.version) is not newer than this host's \(state.current.version)")
            }
            guard state.previous == nil else {
                throw APIError(
                    .ringChanging, "the change to ring version \(state.current.version) is still migrating; retry once GET /ring shows settled on every member")
            }
            guard !next.members.isEmpty else { throw APIError(.invalidField, "a ring needs at least one member") }
            state = Persisted(current: next, previous: state.current)
            pendingCount.withLock { $0 = nil }
            return true
        }
    }

    /// Puts back a state `replace` changed (its change could not be saved).
    func restore(_ persisted: Persisted) {
        state.withLock { $0 = persisted }
    }

    /// Serves by `membership` from now on: the ring kept in a shared database, where nothing
    /// migrates between hosts, so there is no previous ring to remember.
    func adopt(_ membership: Membership) {
        state.withLock { $0 = Persisted(current: membership, previous: nil) }
        pendingCount.withLock { $0 = 0 }
    }

    /// The change has migrated everywhere: forget the previous ring.
    func settle() {
        state.withLock { $0.previous = nil }
    }

    var pending: Int? { pendingCount.withLock { $0 } }

    func setPending(_ count: Int) {
        pendingCount.withLock { $0 = count }
    }

    /// `GET /ring`.
    var info: RingInfo {
        var info = RingInfo(node: node, membership: current)
        info.settled = isSettled
        info.pending = pending
        let previous = state.withLock { $0.previous }
        info.previousVersion = previous?.version
        info.previousMembers = previous?.members
        return info
    }
}
