import CurlHTTP
import Foundation
import HTTPServing
import HashRing
import HostLink
import Logging
import Metrics
import ServerRuntime
import ServiceMetrics
import SessionModel
import Settings

/// What every request of a host shares.
final class HostDependencies: Sendable {
    let node: String
    let directory: SessionDirectory
    let limits: SessionLimits
    let metrics: RouteMetrics
    let storage: StorageStatus
    let storePath: String
    /// The ring this host serves by (and the one before it while a change migrates).
    let ring: RingHolder
    let store: any SessionStore
    /// Calls to the other members (ring checks).
    let peers: CurlClient
    /// Writes held for unreachable owners, and ours held elsewhere (a host's own storage only).
    let held: HeldWrites?
    /// Membership kept in a shared database (PostgreSQL storage only).
    let membership: DatabaseMembership?
    /// Expiry and deletion by principal.
    let lifetimes: Lifetimes
    /// The store, when it is this host's own (SQLite): ring changes move sessions through it.
    var local: (any LocalSessionStore)? { store as? any LocalSessionStore }
    private let token: String?
    let logger: Logger
    let clock: ServerClock
    private let started: ServerClock.Instant

    init(
        node: String, directory: SessionDirectory, limits: SessionLimits, metrics: RouteMetrics,
        storage: StorageStatus, storePath: String, token: String?, ring: RingHolder, store: any SessionStore, peers: CurlClient,
        held: HeldWrites?, membership: DatabaseMembership?, lifetimes: Lifetimes, clock: ServerClock, logger: Logger
    ) {
        self.clock = clock
        started = clock.now
        self.lifetimes = lifetimes
        self.held = held
        self.membership = membership
        self.ring = ring
        self.store = store
        self.peers = peers
        self.node = node
        self.directory = directory
        self.limits = limits
        self.metrics = metrics
        self.storage = storage
        self.storePath = storePath
        self.token = token
        self.logger = logger
    }

    /// Checks `Authorization: Bearer <token>` when a token is configured.
    func authorize(_ header: String?) throws(APIError) {
        guard let token else { return }
        guard let presented = bearerToken(in: header), constantTimeEqual(Array(presented.utf8), Array(token.utf8)) else {
            throw APIError(.unauthorized, "missing or wrong bearer token (Authorization: Bearer <token>)")
        }
    }

    /// Sets the gauges of the host's state, read when `/metrics` is: the ring version it serves
    /// by, whether its last ring change has settled, and whether it serves (with membership in
    /// a database, while it holds its lease; a host on its own storage always does).
    func recordGauges() {
        Gauges.ringVersion.record(ring.version)
        Gauges.ringSettled.record(ring.isSettled ? 1 : 0)
        Gauges.serving.record((membership?.isServing ?? true) ? 1 : 0)
    }

    private enum Gauges {
        static let ringVersion = Gauge(label: "host_ring_version")
        static let ringSettled = Gauge(label: "host_ring_settled")
        static let serving = Gauge(label: "host_serving")
    }

    /// With membership in a database: refuses every session request while this host holds
    /// no lease (joining, or cut off from the database), so nothing it answers can fork.
    func checkServing() throws(APIError) {
        guard let membership, !membership.isServing else { return }
        if membership.health.database != "ok" {
            throw APIError(.storageUnavailable, "this host cannot reach the database and holds no lease; retry")
        }
        throw APIError(.ringChanging, "this host is joining the ring (it holds no lease yet); retry")
    }

    /// Refuses an id another member owns: 421, naming the owner, so the caller can go there.
    func checkOwnership(of id: String) throws(Misdirected) {
        guard !ring.ownsNow(id), let owner = ring.owner(of: id) else { return }
        let version = ring.version
        throw Misdirected(
            owner: owner, version: version,
            error: APIError(
                .misdirected,
                "session '\(id)' belongs to \(owner.name) at \(owner.address) in ring version \(version), not to \(node)"))
    }

    /// One page of a listing (`GET /sessions`): what this host stores, or on a shared
    /// database what every host does (`scope`).
    func listing(_ listing: SessionListing) async throws(APIError) -> HostAPI.Listing {
        let summaries: [HostAPI.SessionSummary]
        do {
            summaries = try await store.summaries(listing, now: clock.wallNow, retention: lifetimes.retention)
        } catch {
            throw APIError(.storageUnavailable, "could not list sessions; retry")
        }
        let next = summaries.count == listing.limit ? summaries.last?.cursor.text : nil
        var page = HostAPI.Listing(data: summaries, next: next)
        page.scope = local == nil ? .everyHost : .thisHost
        return page
    }

    /// `PUT /ring`: starts a change; saved before it takes effect, so a restart keeps it.
    func changeRing(to next: Membership) async throws(APIError) {
        guard let local else {
            throw APIError(.invalidRequest, "with storage postgres the ring is the hosts holding a lease in the database: hosts join and leave by themselves")
        }
        let before = ring.persisted
        guard try ring.replace(with: next) else { return }
        do {
            try await local.saveRingState(try JSONCoding.encoder.encode(ring.persisted))
        } catch {
            ring.restore(before)
            throw APIError(.storageUnavailable, "could not save the new ring; retry")
        }
        logger.notice(
            "ring changed", metadata: ["from": "\(before.current.version)", "to": "\(next.version)", "members": "\(next.members.map(\.name))"])
    }

    struct Misdirected: Error {
        let owner: Membership.Member
        let version: Int
        let error: APIError
    }

    /// What each other member says its ring is.
    func peerRings() async -> [MemberHealth] {
        await withTaskGroup(of: MemberHealth.self) { group in
            for member in ring.current.members where member.name != node {
                group.addTask {
                    let answer = await HostClient(curl: self.peers, token: self.token).ring(at: member.address, timeout: .seconds(1))
                    var peer = MemberHealth(name: member.name, address: member.address, reachable: (try? answer.get()) != nil)
                    peer.record(answer, ours: self.ring.info)
                    return peer
                }
            }
            var rings: [MemberHealth] = []
            for await ring in group { rings.append(ring) }
            return rings.sorted { $0.name < $1.name }
        }
    }

    /// The `/health` answer.
    struct Health: Encodable {
        struct Storage: Encodable {
            var status: String
            var path: String
            var lastError: String?

            enum CodingKeys: String, CodingKey {
                case status, path
                case lastError = "last_error"
            }
        }

        var status: String
        var node: String
        var sessionsStored: Int
        /// Sessions the expiry sweep deleted since this host started.
        var expiredSinceStart: Int
        /// Seconds a session without a lifetime of its own is kept (0: for ever).
        var retentionSeconds: Double
        var liveObjects: Int
        var storage: Storage
        var uptimeSeconds: Double
        var version: String
        var ring: Ring
        /// With storage postgres: the database, the lease and the live hosts.
        var membership: DatabaseMembership.Health?
        var problems: [String]

        struct Ring: Encodable {
            var version: Int
            var fingerprint: String
            var members: Int
            var settled: Bool
            var pending: Int?
            var peers: [MemberHealth]
        }

        enum CodingKeys: String, CodingKey {
            case status, node, storage, version, ring, problems, membership
            case sessionsStored = "sessions_stored"
            case expiredSinceStart = "expired_since_start"
            case retentionSeconds = "retention_seconds"
            case liveObjects = "live_objects"
            case uptimeSeconds = "uptime_seconds"
        }
    }

    func health() async -> Health {
        let lastError = storage.lastError
        let uptime = clock.elapsed(since: started)
        let peers = await peerRings()
        var problems: [String] = []
        if let lastError { problems.append("storage is failing: \(lastError)") }
        let membershipHealth = membership?.health
        if let membershipHealth {
            if let error = membershipHealth.lastError { problems.append("the database cannot be reached: \(error)") }
            if !membershipHealth.serving { problems.append("this host holds no lease: it serves no session until it has one") }
        }
        for peer in peers {
            if let problem = peer.problem(
                role: "ring member", reporter: "host", ownVersion: ring.version, remedy: "give every member the same peers and ring_version")
            {
                problems.append(problem)
            }
        }
        return Health(
            status: problems.isEmpty ? "ok" : "degraded",
            node: node,
            sessionsStored: storage.sessions,
            expiredSinceStart: storage.expired,
            retentionSeconds: lifetimes.retention,
            liveObjects: directory.liveCount,
            storage: .init(status: lastError == nil ? "ok" : "failing", path: storePath, lastError: lastError),
            uptimeSeconds: uptime.secondsValue,
            version: DurableHostServer.version,
            ring: .init(
                version: ring.version, fingerprint: ring.current.fingerprint, members: ring.current.members.count, settled: ring.isSettled,
                pending: ring.pending, peers: peers),
            membership: membershipHealth,
            problems: problems)
    }
}
