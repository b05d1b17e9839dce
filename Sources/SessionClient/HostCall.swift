import CurlHTTP
import HashRing
import SessionModel

/// The decisions of one call to the durable hosts, without I/O, clocks or randomness: where
/// to send it, when to read a ring, when to wait and for how long, when to hold it at the
/// owner's runner-up, and when to give up.
///
/// The shell (`DurableSessionManager`) performs each `Action` and reports what came of it
/// through one method per event. The rules:
/// - the call goes to the owner of the id under the ring in use;
/// - a 2xx answer ends it; a 4xx refusal ends it (retrying cannot help);
/// - a 421 from a host that serves a newer ring: read that ring and go to the owner once,
///   not counted as a failed attempt; from a host behind our ring: wait and retry; at the
///   same version: the members disagree, which ends the call;
/// - no answer (or 503 `shutting_down`) marks the owner unreachable: after each such
///   attempt the other members are asked for their ring (the owner may have left it);
/// - a failed attempt waits `policy.delay` and tries again, up to `policy.attempts`;
/// - when the owner stays unreachable, the call goes to its runner-up, which holds writes
///   for it (hinted handoff); asked for a seed (409), the shell sends the last state it knows
///   and the call once more; told the owner is back (503 `hint_refused`), the call goes to
///   the owner once more;
/// - what none of that could place ends as `unreachable`: the shell's last resort.
///
/// When the ring's membership lives in a database shared by the hosts (`Membership.lease`),
/// nothing is held elsewhere: a dead owner leaves the ring within its lease and the new owner
/// serves the session from the shared data. The call then keeps retrying (waits capped at
/// `leaseRetryCap`, the ring refreshed after each failure) until the lease and a renewal
/// round have passed.
public struct HostCall: Sendable {
    /// The longest wait between attempts while waiting out a lease.
    public static let leaseRetryCap: Duration = .milliseconds(500)
    /// What a lease's expiry takes to show in the ring beyond the lease itself: a renewal
    /// round of the surviving hosts, and slack.
    public static let leaseSlack: Duration = .seconds(2)

    public enum Action: Sendable, Equatable {
        /// Send the request to `member`; `holdingFor` names the owner when the member is to
        /// hold it (header `Hinted-For`).
        case send(to: Membership.Member, holdingFor: String?)
        /// Read `member`'s ring and adopt it if newer, then report `ringRead`.
        case readRing(from: Membership.Member)
        /// Ask the members other than `except` for their ring (adopting a newer one), then
        /// report `ringsRefreshed`.
        case refreshRing(except: String)
        /// Send the last known state of the session to `member` as the seed of the copy it
        /// holds for `owner`, then report `seeded`.
        case seed(at: Membership.Member, owner: String)
        /// Wait, then report `waited`.
        case wait(Duration)
        case finish(Outcome)
    }

    public enum Outcome: Sendable, Equatable {
        /// The last response answers the call (from the owner, or held by its runner-up).
        case answered(heldBy: String?)
        /// The last response is a refusal to pass on.
        case refused
        /// Nobody could take the call.
        case unreachable(reason: String)
    }

    /// What the call knows of the member it sent to, for the shell's bookkeeping.
    public enum Reachability: Sendable, Equatable {
        case reachable(String)
        case unreachable(String)
    }

    private enum Phase: Sendable, Equatable {
        /// Sending to the owner.
        case owner
        /// Sending to the owner's runner-up, to hold for `owner`.
        case holder(owner: Membership.Member, seeded: Bool)
        case finished
    }

    public private(set) var ring: Membership
    private let id: String
    private let policy: RetryPolicy
    /// Whether a runner-up may hold this call (writes and reads of sessions, not ring reads).
    private let mayHold: Bool
    private var phase = Phase.owner
    private var attempt = 1
    private var redirected = false
    private var backToOwner = false
    private var lastReason = ""
    private var lastUnreachable = false
    /// The member the last `send` went to, and the ring version it was routed by.
    private var sentTo: Membership.Member?
    private var routedBy = 0
    /// Whether the last send was routed by a configured ring (no lease): a ring from the
    /// hosts' database replaces it whatever its version.
    private var routedByConfiguredRing = true
    /// The waits asked for so far.
    private var waitedSoFar: Duration = .zero
    /// Members this call found unreachable or reachable, in order, for the shell to record.
    public private(set) var observed: [Reachability] = []

    public init(id: String, ring: Membership, policy: RetryPolicy, mayHold: Bool = true) {
        self.id = id
        self.ring = ring
        self.policy = policy
        self.mayHold = mayHold
    }

    // MARK: Events

    /// The first action. `ownerKnownDown`: the owner was found unreachable moments ago, so
    /// the call goes straight to its runner-up (the shell probes the owner meanwhile).
    public mutating func start(ownerKnownDown: Bool = false, random: Double) -> Action {
        guard let owner = ring.owner(of: id) else { return finish(.unreachable(reason: "the ring has no members")) }
        if ownerKnownDown, let action = hold(for: owner) { return action }
        return send(to: owner)
    }

    /// A response arrived from the member of the last `send`.
    public mutating func answered(status: Int, ringVersion: Int?, errorCode: String?, random: Double) -> Action {
        guard let member = sentTo else { return finish(.unreachable(reason: "no request was sent")) }
        switch phase {
        case .owner:
            if (200..<300).contains(status) {
                observed.append(.reachable(member.name))
                return finish(.answered(heldBy: nil))
            }
            if status == 421 {
                observed.append(.reachable(member.name))
                if let refusedBy = ringVersion, refusedBy < routedBy {
                    return failed("host \(member.name) has not yet received the ring this worker uses", unreachable: false, random: random)
                }
                return .readRing(from: member)
            }
            if status == 503, errorCode == ErrorCode.shuttingDown.rawValue {
                observed.append(.unreachable(member.name))
                return failed("host \(member.name) is shutting down", unreachable: true, random: random)
            }
            observed.append(.reachable(member.name))
            if RetryPolicy.isRetryable(status: status) {
                return failed("HTTP \(status)", unreachable: false, random: random)
            }
            return finish(.refused)
        case .holder(let owner, let seeded):
            if (200..<300).contains(status) {
                observed.append(.reachable(member.name))
                return finish(.answered(heldBy: member.name))
            }
            if status == 409, errorCode == ErrorCode.hintSeedRequired.rawValue, !seeded {
                return .seed(at: member, owner: owner.name)
            }
            if status == 503, errorCode == ErrorCode.hintRefused.rawValue, !backToOwner {
                // The owner is back: it takes the call.
                backToOwner = true
                observed.append(.reachable(owner.name))
                phase = .owner
                return send(to: owner)
            }
            if (400..<500).contains(status), status != 421, errorCode != ErrorCode.hintSeedRequired.rawValue {
                return finish(.refused)
            }
            return finish(.unreachable(reason: "\(owner.name) is unreachable and \(member.name), which holds its writes, answered HTTP \(status)"))
        case .finished:
            return .finish(.unreachable(reason: lastReason))
        }
    }

    /// No response arrived from the member of the last `send` (no connection, a timeout).
    public mutating func noAnswer(_ reason: String, random: Double) -> Action {
        guard let member = sentTo else { return finish(.unreachable(reason: reason)) }
        observed.append(.unreachable(member.name))
        switch phase {
        case .owner:
            lastReason = reason
            lastUnreachable = true
            // A host that does not answer may have left the ring: ask the others.
            if ring.members.count > 1 { return .refreshRing(except: member.name) }
            return failed(reason, unreachable: true, random: random)
        case .holder(let owner, _):
            return finish(
                .unreachable(reason: "\(owner.name) is unreachable (\(lastReason)), and so is \(member.name), which would hold its writes (\(reason))"))
        case .finished:
            return .finish(.unreachable(reason: reason))
        }
    }

    /// The other members were asked for their ring after the owner did not answer; `ring` is
    /// the ring in use now.
    public mutating func ringsRefreshed(_ ring: Membership, random: Double) -> Action {
        adopt(ring)
        return failed(lastReason, unreachable: true, random: random)
    }

    /// The ring of the host that answered 421 was read (nil: it could not be), and the ring
    /// in use is now `ring`.
    public mutating func ringRead(_ info: RingInfo?, ring: Membership, random: Double) -> Action {
        guard let member = sentTo else { return finish(.unreachable(reason: "no request was sent")) }
        guard let info else {
            return failed("host \(member.name) refused the id as not its own, and its ring could not be read", unreachable: false, random: random)
        }
        adopt(ring)
        if info.version > routedBy || (info.lease != nil && routedByConfiguredRing), !redirected {
            // The owner changed: going there is not a failed attempt.
            redirected = true
            guard let owner = self.ring.owner(of: id) else { return finish(.unreachable(reason: "the ring has no members")) }
            return send(to: owner)
        }
        return finish(.refused)
    }

    /// The seed was sent (`accepted`: the holder took it, or had a newer one).
    public mutating func seeded(accepted: Bool, reason: String) -> Action {
        guard case .holder(let owner, _) = phase, let member = sentTo, accepted else {
            return finish(.unreachable(reason: "the holder for an unreachable owner refused its seed: \(reason)"))
        }
        phase = .holder(owner: owner, seeded: true)
        return send(to: member, holdingFor: owner.name)
    }

    /// The wait of the last `.wait` is over.
    public mutating func waited() -> Action {
        guard let owner = ring.owner(of: id) else { return finish(.unreachable(reason: "the ring has no members")) }
        return send(to: owner)
    }

    // MARK: Internals

    private mutating func adopt(_ ring: Membership) {
        if ring.version > self.ring.version || (ring.lease != nil && self.ring.lease == nil) { self.ring = ring }
    }

    private mutating func send(to member: Membership.Member, holdingFor owner: String? = nil) -> Action {
        sentTo = member
        routedBy = ring.version
        routedByConfiguredRing = ring.lease == nil
        return .send(to: member, holdingFor: owner)
    }

    /// Sends to the owner's runner-up, when there is one and the call may be held.
    private mutating func hold(for owner: Membership.Member) -> Action? {
        guard mayHold, ring.lease == nil, let holder = ring.runnerUp(of: id), holder.name != owner.name else { return nil }
        phase = .holder(owner: owner, seeded: false)
        return send(to: holder, holdingFor: owner.name)
    }

    private mutating func failed(_ reason: String, unreachable: Bool, random: Double) -> Action {
        lastReason = reason
        lastUnreachable = unreachable
        if let delay = policy.delay(afterAttempt: attempt, random: random) {
            attempt += 1
            waitedSoFar += delay
            return .wait(delay)
        }
        if let lease = ring.lease, waitedSoFar < .milliseconds(Int64(lease * 1000)) + Self.leaseSlack {
            // Shared storage: wait for the ring to drop an owner that does not answer.
            let base = policy.delay(afterAttempt: 1, random: random) ?? Self.leaseRetryCap
            let delay = min(base * (1 << min(attempt, 8)), Self.leaseRetryCap)
            attempt += 1
            waitedSoFar += delay
            return .wait(delay)
        }
        if lastUnreachable, let owner = ring.owner(of: id), !backToOwner, let action = hold(for: owner) {
            return action
        }
        return finish(.unreachable(reason: reason))
    }

    private mutating func finish(_ outcome: Outcome) -> Action {
        phase = .finished
        return .finish(outcome)
    }

    /// How many attempts the call has made at the owner.
    public var attempts: Int { attempt }

    /// Why the last attempt failed.
    public var lastFailure: String { lastReason }
}
