import Foundation
import HTTPServing
import HashRing
import Logging
import Metrics
import PostgresNIO
import ServerRuntime
import ServiceLifecycle
import SessionModel
import Synchronization

/// What a host's commits are fenced by (`PostgresSessionStore.checkFence`): its name and the
/// incarnation it registered as; each mutation brings the ring version it was computed under.
final class Fence: Sendable {
    struct State: Sendable {
        let node: String
        /// Nil while this host holds no lease.
        var incarnation: Int64?
    }

    private let state: Mutex<State>

    init(node: String) {
        state = Mutex(State(node: node, incarnation: nil))
    }

    var current: State { state.withLock { $0 } }

    func hold(_ incarnation: Int64?) {
        state.withLock { $0.incarnation = incarnation }
    }
}

/// Membership kept in the database (`storage = postgres`): the ring is the set of hosts
/// holding a live lease, with a version that only grows. Each round registers (a new
/// incarnation) or renews, evicts expired members and raises the version when the live set
/// changed, and adopts the ring; SIGTERM gives the lease up. What the lease allows is
/// `LeaseState`'s to decide; the protocol and fencing: docs/ARCHITECTURE.md, "Shared storage".
final class DatabaseMembership: Service, Sendable {
    struct Timing: Sendable {
        var leaseDuration: Duration = .seconds(3)
        var renewInterval: Duration = .seconds(1)
    }

    let client: PostgresClient
    let node: String
    /// The address others reach this host at; nil until the server has bound its port.
    let address: @Sendable () -> String?
    let timing: Timing
    let fence: Fence
    let ring: RingHolder
    let logger: Logger
    /// Called with each ring version adopted (drops the live objects).
    let onRingChange: @Sendable (Int64) -> Void
    let clock: ServerClock

    /// The lease and what follows from it (`LeaseState` decides).
    private let lease: Mutex<LeaseState>
    private let migrated = Atomic<Bool>(false)
    /// A round that outlived its bound may still be under way: never two at once.
    private let roundRunning = Atomic<Bool>(false)
    /// One registration at a time: a second caller joins the one under way.
    private let registering = SingleFlight<Void>()
    private let ringChanges = Metrics.Counter(label: "host_ring_changes_total")

    init(
        client: PostgresClient, node: String, address: @escaping @Sendable () -> String?, timing: Timing, fence: Fence, ring: RingHolder,
        clock: ServerClock = .system, logger: Logger, onRingChange: @escaping @Sendable (Int64) -> Void
    ) {
        self.client = client
        self.node = node
        self.address = address
        self.timing = timing
        self.fence = fence
        self.ring = ring
        self.clock = clock
        self.logger = logger
        self.onRingChange = onRingChange
        lease = Mutex(LeaseState(leaseDuration: timing.leaseDuration))
    }

    /// The version of the ring this host serves by.
    var ringVersion: Int64 { lease.withLock { $0.ringVersion } }

    /// Whether this host may serve: it holds a lease it renewed within the lease's duration,
    /// and it is a member of the ring it serves by.
    var isServing: Bool {
        let isMember = ring.current.members.contains { $0.name == node }
        let now = clock.now
        return lease.withLock { $0.isServing(now: now, isMember: isMember) }
    }

    struct Health: Encodable, Sendable {
        var database: String
        var serving: Bool
        var ringVersion: Int64
        var liveHosts: Int
        var leaseAgeSeconds: Double?
        var leaseSeconds: Double
        var lastError: String?

        enum CodingKeys: String, CodingKey {
            case database, serving
            case ringVersion = "ring_version"
            case liveHosts = "live_hosts"
            case leaseAgeSeconds = "lease_age_seconds"
            case leaseSeconds = "lease_seconds"
            case lastError = "last_error"
        }
    }

    var health: Health {
        let snapshot = lease.withLock { $0 }
        let now = clock.now
        return Health(
            database: snapshot.lastError == nil && snapshot.connectedSince != nil ? "ok" : "unreachable",
            serving: isServing, ringVersion: snapshot.ringVersion, liveHosts: snapshot.liveMembers,
            leaseAgeSeconds: snapshot.leaseAge(now: now)?.secondsValue, leaseSeconds: timing.leaseDuration.secondsValue,
            lastError: snapshot.lastError)
    }

    // MARK: The loop

    func run() async throws {
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                await round()
                try? await cancelWhenGracefulShutdown { try await self.clock.sleep(for: self.timing.renewInterval) }
            }
        } onGracefulShutdown: {
            self.lease.withLock { $0.leave() }
        }
        await leave()
    }

    /// One round: migrate and register if not yet, renew the lease, drop expired members,
    /// adopt the ring. Bounded by the lease: a database that stops answering cannot hold it.
    func round() async {
        guard !roundRunning.load(ordering: .relaxed) else { return }
        do {
            try await Deadline.run(within: timing.leaseDuration, clock: clock, "renewing the lease") {
                self.roundRunning.store(true, ordering: .relaxed)
                defer { self.roundRunning.store(false, ordering: .relaxed) }
                try await self.steps()
            }
            let now = clock.now
            lease.withLock { $0.reached(at: now) }
        } catch {
            let message = "\(String(reflecting: error).prefix(300))"
            let first = lease.withLock { $0.unreachable(message) }
            if first { logger.error("the database cannot be reached; this host stops serving once its lease runs out", metadata: ["error": "\(message)"]) }
        }
    }

    private func steps() async throws {
        if !migrated.load(ordering: .relaxed) {
            try await PostgresSessionStore.migrate(client, logger: logger)
            migrated.store(true, ordering: .relaxed)
        }
        if fence.current.incarnation == nil {
            try await register()
        } else if try await !renew() {
            logger.warning("this host's lease was taken away (it was too slow to renew it); registering again")
            fence.hold(nil)
            lease.withLock { $0.lost() }
            try await register()
        }
        try await reconcile()
    }

    /// Registers with a new incarnation. The member row is locked first (`FOR UPDATE`), which
    /// waits for every commit of an earlier incarnation still in flight (each holds a key-share
    /// lock on it): once this returns, no commit of an earlier incarnation can land.
    private func register() async throws {
        try await registering.run { try await self.registerOnce() }
    }

    private func registerOnce() async throws {
        guard let address = address() else { return }
        let asked = clock.now
        let lease = timing.leaseDuration.secondsValue
        let (incarnation, tookOver) = try await client.withTransaction(logger: logger) { [node, logger] connection -> (Int64?, Bool) in
            var live = false
            for try await alive in try await connection.query(
                "SELECT lease_until > clock_timestamp() FROM members WHERE name = \(node) FOR UPDATE", logger: logger
            ).decode(Bool.self) {
                live = alive
            }
            var incarnation: Int64?
            for try await value in try await connection.query(
                """
                INSERT INTO members (name, address, incarnation, lease_until)
                VALUES (\(node), \(address), nextval('incarnations'), clock_timestamp() + make_interval(secs => \(lease)))
                ON CONFLICT (name) DO UPDATE SET address = excluded.address, incarnation = excluded.incarnation,
                    lease_until = excluded.lease_until, joined_at = clock_timestamp()
                RETURNING incarnation
                """, logger: logger
            ).decode(Int64.self) {
                incarnation = value
            }
            return (incarnation, live)
        }
        guard let incarnation else { throw StoreError("registering as a member returned nothing") }
        fence.hold(incarnation)
        self.lease.withLock { $0.renewed(asked: asked) }
        if tookOver {
            logger.warning("took over the live lease of an earlier process with this node name; it can no longer write", metadata: ["node": "\(node)"])
        }
        logger.notice("joined the ring's members", metadata: ["incarnation": "\(incarnation)", "address": "\(address)"])
    }

    /// Makes sure no commit of this host's current incarnation can land any more (a commit
    /// timed out and might): registers anew, retrying until the database answers.
    func fenceOffCommitsInFlight() async {
        while !Task.isCancelled {
            do {
                try await Deadline.run(within: timing.leaseDuration, clock: clock, "registering anew") { try await self.register() }
                if fence.current.incarnation != nil {
                    logger.notice("registered anew: no earlier commit of this host can land now")
                    return
                }
            } catch {}
            try? await clock.sleep(for: timing.renewInterval)
        }
    }

    /// Extends the lease; false when this incarnation's row is gone (evicted, or taken over).
    private func renew() async throws -> Bool {
        guard let incarnation = fence.current.incarnation else { return false }
        let asked = clock.now
        var renewed = false
        let rows = try await client.query(
            """
            UPDATE members SET lease_until = clock_timestamp() + make_interval(secs => \(timing.leaseDuration.secondsValue))
            WHERE name = \(node) AND incarnation = \(incarnation) RETURNING 1
            """, logger: logger)
        for try await _ in rows { renewed = true }
        if renewed { lease.withLock { $0.renewed(asked: asked) } }
        return renewed
    }

    /// Drops expired members and raises the ring version when the live set changed; adopts
    /// the ring.
    private func reconcile() async throws {
        let (current, live) = try await readRingAndLiveMembers()
        var ringRow = current
        let now = clock.now
        let settled = lease.withLock { $0.mayEvict(now: now) }
        if live.members != current.members || (settled && live.expired > 0) {
            ringRow = try await changeRing(evictExpired: settled)
        }
        lease.withLock { $0.liveMembers = live.members.count }
        adopt(ringRow)
    }

    private func readRingAndLiveMembers() async throws -> (Membership, (members: [Membership.Member], expired: Int)) {
        var ringRow = Membership(version: 0, members: [])
        for try await (version, members) in try await client.query("SELECT version, members FROM ring WHERE id = 1", logger: logger)
            .decode((Int64, String).self)
        {
            ringRow = Membership(version: Int(version), members: Self.decodeMembers(members))
        }
        var live: [Membership.Member] = []
        var expired = 0
        for try await (name, address, alive) in try await client.query(
            "SELECT name, address, lease_until > clock_timestamp() FROM members ORDER BY name", logger: logger
        ).decode((String, String, Bool).self) {
            if alive { live.append(.init(name: name, address: address)) } else { expired += 1 }
        }
        return (ringRow, (Membership(version: 0, members: live).members, expired))
    }

    /// The change itself, in one transaction holding the ring row: expired members deleted
    /// (waiting for their commits in flight), the live set compared with the ring, the version
    /// raised if they differ.
    private func changeRing(evictExpired: Bool, leaving incarnation: Int64? = nil) async throws -> Membership {
        try await client.withTransaction(logger: logger) { [node, logger] connection in
            var version: Int64 = 0
            var stored = "[]"
            for try await (value, members) in try await connection.query(
                "SELECT version, members FROM ring WHERE id = 1 FOR UPDATE", logger: logger
            ).decode((Int64, String).self) {
                version = value
                stored = members
            }
            if let incarnation {
                try await connection.query("DELETE FROM members WHERE name = \(node) AND incarnation = \(incarnation)", logger: logger)
            }
            if evictExpired {
                try await connection.query("DELETE FROM members WHERE lease_until < clock_timestamp()", logger: logger)
            }
            var live: [Membership.Member] = []
            for try await (name, address) in try await connection.query(
                "SELECT name, address FROM members WHERE lease_until > clock_timestamp() ORDER BY name", logger: logger
            ).decode((String, String).self) {
                live.append(.init(name: name, address: address))
            }
            let members = Membership(version: 0, members: live).members
            guard members != Self.decodeMembers(stored) else {
                return Membership(version: Int(version), members: Self.decodeMembers(stored))
            }
            let encoded = Self.encodeMembers(members)
            var next: Int64 = version + 1
            for try await value in try await connection.query(
                "UPDATE ring SET version = version + 1, members = \(encoded) WHERE id = 1 RETURNING version", logger: logger
            ).decode(Int64.self) {
                next = value
            }
            return Membership(version: Int(next), members: members)
        }
    }

    /// Serves by `membership` if it is newer than the ring in use.
    private func adopt(_ membership: Membership) {
        guard lease.withLock({ $0.adopt(version: Int64(membership.version)) }) else { return }
        ring.adopt(Membership(version: membership.version, members: membership.members, lease: timing.leaseDuration.secondsValue))
        ringChanges.increment()
        onRingChange(Int64(membership.version))
        logger.notice(
            "serving by ring version \(membership.version)", metadata: ["members": "\(membership.members.map(\.name))"])
    }

    /// Gives the lease up and raises the ring version, so the other hosts take this host's
    /// sessions at once.
    private func leave() async {
        guard let incarnation = fence.current.incarnation else { return }
        do {
            let ring = try await changeRing(evictExpired: false, leaving: incarnation)
            fence.hold(nil)
            adopt(ring)
            logger.notice("left the ring's members; the other hosts serve its sessions now")
        } catch {
            logger.warning("could not give the lease up; the other hosts take over once it expires", metadata: ["error": "\(error)"])
        }
    }

    static func decodeMembers(_ text: String) -> [Membership.Member] {
        (try? JSONCoding.decoder.decode([Membership.Member].self, from: Data(text.utf8))) ?? []
    }

    static func encodeMembers(_ members: [Membership.Member]) -> String {
        String(decoding: (try? JSONCoding.encoder.encode(members)) ?? Data("[]".utf8), as: UTF8.self)
    }
}
