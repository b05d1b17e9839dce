import Clocks
import ServerRuntime

/// What a host knows of its own lease and of the database, and what follows from it, with the
/// time as an input (as postgres-nio's pool state machine takes its clock): whether it may
/// serve, whether it may evict others, how old its lease is. `DatabaseMembership` performs the
/// rounds and keeps this under a lock.
///
/// The rules:
/// - a host serves only while it renewed its lease within the lease's duration (by its own
///   clock, from when it asked: a conservative estimate of the database's lease, which started
///   earlier), is not leaving, and is a member of the ring it serves by;
/// - it evicts expired members only after the database has answered it without a break for a
///   whole lease (after an outage of its own, others' leases look expired when they are not);
/// - a newer ring version is adopted, never an older one.
struct LeaseState: Sendable {
    let leaseDuration: Duration
    private(set) var renewedAt: ServerClock.Instant?
    /// Since when the database answered without a break.
    private(set) var connectedSince: ServerClock.Instant?
    private(set) var leaving = false
    private(set) var lastError: String?
    private(set) var ringVersion: Int64 = 0
    var liveMembers = 0

    init(leaseDuration: Duration) {
        self.leaseDuration = leaseDuration
    }

    /// Whether this host may serve at `now`.
    func isServing(now: ServerClock.Instant, isMember: Bool) -> Bool {
        guard !leaving, let renewedAt, renewedAt.duration(to: now) < leaseDuration else { return false }
        return isMember
    }

    /// Whether expired members may be evicted at `now`.
    func mayEvict(now: ServerClock.Instant) -> Bool {
        connectedSince.map { $0.duration(to: now) >= leaseDuration } ?? false
    }

    /// How long ago the lease was renewed; nil without one.
    func leaseAge(now: ServerClock.Instant) -> Duration? {
        renewedAt.map { $0.duration(to: now) }
    }

    /// The lease was renewed by a request sent at `asked`.
    mutating func renewed(asked: ServerClock.Instant) {
        renewedAt = asked
    }

    /// The lease is gone (taken away, or given up).
    mutating func lost() {
        renewedAt = nil
    }

    /// A round reached the database at `now`.
    mutating func reached(at now: ServerClock.Instant) {
        lastError = nil
        if connectedSince == nil { connectedSince = now }
    }

    /// A round could not reach the database; returns whether this is the first such round
    /// (the one worth an error in the log).
    mutating func unreachable(_ message: String) -> Bool {
        defer {
            lastError = message
            connectedSince = nil
        }
        return lastError == nil
    }

    /// Graceful shutdown: stop serving now.
    mutating func leave() {
        leaving = true
    }

    /// Adopts a ring version if it is newer; returns whether it did.
    mutating func adopt(version: Int64) -> Bool {
        guard version > ringVersion else { return false }
        ringVersion = version
        return true
    }
}
