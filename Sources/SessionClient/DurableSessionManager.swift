import CurlHTTP
import Foundation
import HashRing
import HostLink
import Logging
import Metrics
import ServerRuntime
import ServiceLifecycle
import ServiceMetrics
import SessionModel
import Settings
import Synchronization
import Tracing

/// Sessions in the durable hosts, over HTTP: the seed's Durable Object client. Each call is
/// driven by `HostCall` (owner, retries with backoff, 421s, the runner-up); every mutation
/// carries an `Idempotency-Key`; when no host takes a call it runs against memory seeded from
/// `LastKnownSessions`, and its writes wait in the `FallbackJournal` for their host (`run()`).
/// docs/ARCHITECTURE.md, "Host calls" and "Hinted handoff".
public final class DurableSessionManager: SessionManager, Service {
    public struct Configuration: Sendable {
        public var hosts: [NamedAddress]
        /// The version of the membership `hosts` describes.
        public var ringVersion: Int
        public var token: String?
        public var retry: RetryPolicy
        /// Limit on one attempt.
        public var attemptTimeout: Duration
        public var limits: SessionLimits
        /// How often journaled fallback writes are offered to their host again.
        public var replayInterval: Duration
        /// How often the hosts are asked whether the ring changed.
        public var ringCheckInterval: Duration = .seconds(5)

        public init(
            hosts: [NamedAddress], ringVersion: Int = 1, token: String? = nil, retry: RetryPolicy = RetryPolicy(),
            attemptTimeout: Duration = .seconds(2), limits: SessionLimits = .default, replayInterval: Duration = .seconds(1)
        ) {
            self.hosts = hosts
            self.ringVersion = ringVersion
            self.token = token
            self.retry = retry
            self.attemptTimeout = attemptTimeout
            self.limits = limits
            self.replayInterval = replayInterval
        }
    }

    public let configuration: Configuration
    private let client: CurlClient
    /// Every exchange with a host goes through it.
    private let hosts: HostClient
    private let logger: Logger
    private let clock: ServerClock
    /// The ring calls are routed by, and how it is kept current.
    private let following: RingFollower
    private let fallback: InMemorySessionManager
    private let lastKnown: LastKnownSessions
    private let journal = Mutex(FallbackJournal())
    private let fallbackCount = Atomic<Int>(0)
    private let lastFallback = Mutex<ServerClock.Instant?>(nil)
    private let fallbacks = Metrics.Counter(label: "worker_session_fallbacks_total")
    private let failedAttempts = Metrics.Counter(label: "worker_host_failed_attempts_total")
    private let replayed = Metrics.Counter(label: "worker_session_replayed_writes_total")
    private let heldCalls = Metrics.Counter(label: "worker_session_held_calls_total")
    private let turnViews = Metrics.Counter(label: "worker_session_remembered_turn_views_total")
    private let staleViews = Metrics.Counter(label: "worker_session_history_changed_total")

    public init(configuration: Configuration, client: CurlClient, logger: Logger, clock: ServerClock = .system) {
        precondition(!configuration.hosts.isEmpty, "a durable session manager needs at least one host")
        self.configuration = configuration
        self.client = client
        hosts = HostClient(curl: client, token: configuration.token)
        self.logger = logger
        self.clock = clock
        following = RingFollower(
            configured: Membership(version: configuration.ringVersion, hosts: configuration.hosts), hosts: hosts,
            timeout: configuration.attemptTimeout, logger: logger)
        fallback = InMemorySessionManager(limits: configuration.limits, now: clock.wall)
        lastKnown = LastKnownSessions(limits: configuration.limits)
    }

    /// The ring this worker routes by: its configuration's, or a newer one a host told it of.
    public var membership: Membership { following.membership }

    // The roles of a `SessionManager` beyond sessions.
    public var ring: Membership? { membership }
    public var service: (any Service)? { self }

    /// The host that owns `sessionID`: the one place that decides.
    func owner(of sessionID: String) -> Membership.Member? {
        membership.owner(of: sessionID)
    }

    // MARK: SessionManager

    public func write(_ sessionID: String, _ update: SessionUpdate) async throws(SessionError) {
        try await mutate(sessionID, update)
    }

    public func clear(_ sessionID: String) async throws(SessionError) {
        try await mutate(sessionID, SessionUpdate(.clear))
    }

    public func history(_ sessionID: String, last: Int?) async throws(SessionError) -> SessionHistory {
        try validate(sessionID)
        guard await drainJournal(of: sessionID) else { return await fallbackHistory(sessionID, last: last) }
        // A conversation needs only its newest messages: asking for them spares the host
        // encoding, and this worker parsing, a history that only grows. What is remembered of
        // it then is that tail, which is what a fallback answers from.
        switch await send(.history(sessionID, last: last), sessionID, body: nil, key: nil, operation: "history") {
        case .answered(let response, _):
            guard let history = HostAPI.History.parse(response.body) else {
                throw .unavailable("host answered history of '\(sessionID)' with an unreadable body")
            }
            let now = clock.wallNow
            let count = history.messageCount ?? history.data.count
            let lifetime = history.lastUpdated.flatMap { written in history.expiresAt.map { max(0, $0 - written) } }
            lastKnown.store(
                sessionID,
                history.data.isEmpty && history.metadata.isEmpty && history.lastUpdated == nil
                    ? nil
                    : SessionRecord(
                        id: sessionID, messages: history.data, metadata: history.metadata, createdAt: now,
                        lastUpdated: history.lastUpdated ?? now),
                now: now, messageCount: count, lifetime: lifetime)
            return SessionHistory(
                messages: history.data, metadata: history.metadata, lastUpdated: history.lastUpdated, expiresAt: history.expiresAt,
                messageCount: count)
        case .refused(let error):
            throw .rejected(error)
        case .cancelled:
            throw .cancelled
        case .unreachable(let reason):
            noteFallback(sessionID, operation: "history", reason: reason)
            await fallback.seed(sessionID, lastKnown.state(of: sessionID))
            return await fallbackHistory(sessionID, last: last)
        }
    }

    /// A history from this worker's memory, which may hold only the newest messages: how many
    /// the whole history holds is not known there.
    private func fallbackHistory(_ sessionID: String, last: Int?) async -> SessionHistory {
        var history = await fallback.history(sessionID, last: last)
        history.messageCount = nil
        return history
    }

    /// A turn's view from this worker's memory when it has seen that it alone writes the
    /// session (`LastKnownSessions.turnView`): no host exchange. Otherwise read.
    public func turnView(_ sessionID: String, last: Int) async throws(SessionError) -> SessionHistory {
        try validate(sessionID)
        if !journal.withLock({ $0.isWaiting(sessionID) }), let view = lastKnown.turnView(of: sessionID, last: last, now: clock.wallNow) {
            turnViews.increment()
            return view
        }
        return try await history(sessionID, last: last)
    }

    public func record(_ sessionID: String) async throws(SessionError) -> SessionRecord? {
        try validate(sessionID)
        guard await drainJournal(of: sessionID) else { return await fallback.record(sessionID) }
        switch await send(.record(sessionID), sessionID, body: nil, key: nil, operation: "record") {
        case .answered(let response, _):
            guard let record = HostAPI.Record.parse(response.body) else {
                throw .unavailable("host answered the record of '\(sessionID)' with an unreadable body")
            }
            lastKnown.store(sessionID, record.data, now: clock.wallNow, lifetime: record.data.expiresAfter.flatMap { $0 > 0 ? $0 : nil })
            return record.data
        case .refused(let error) where error.code == .sessionNotFound:
            lastKnown.store(sessionID, nil, now: clock.wallNow)
            return nil
        case .refused(let error):
            throw .rejected(error)
        case .cancelled:
            throw .cancelled
        case .unreachable(let reason):
            noteFallback(sessionID, operation: "record", reason: reason)
            await fallback.seed(sessionID, lastKnown.state(of: sessionID))
            return await fallback.record(sessionID)
        }
    }

    public func list(_ listing: SessionListing) async throws(SessionError) -> SessionPage {
        let ring = membership
        if ring.lease != nil {
            // One database behind every host: any of them answers for all.
            var reasons: [String] = []
            for member in ring.members {
                switch await page(of: listing, at: member) {
                case .success(let page) where page.scope == .everyHost:
                    return SessionPage.merge([page], limit: listing.limit)
                case .success:
                    reasons.append("\(member.name) lists only its own sessions")
                case .failure(let error):
                    reasons.append(error.message)
                }
            }
            throw .unavailable("no host could list the sessions: \(reasons.joined(separator: "; "))")
        }
        // A file per host: each lists what it holds, and the newest of all are kept.
        let answers = await withTaskGroup(of: Result<HostAPI.Listing, SessionError>.self) { group in
            for member in ring.members { group.addTask { await self.page(of: listing, at: member) } }
            var answers: [Result<HostAPI.Listing, SessionError>] = []
            for await answer in group { answers.append(answer) }
            return answers
        }
        var pages: [HostAPI.Listing] = []
        for answer in answers {
            switch answer {
            case .success(let page): pages.append(page)
            // A list without one host's sessions would look whole and not be.
            case .failure(let error): throw error
            }
        }
        return SessionPage.merge(pages, limit: listing.limit)
    }

    /// One host's page of a listing.
    private func page(of listing: SessionListing, at member: Membership.Member) async -> Result<HostAPI.Listing, SessionError> {
        switch await admin(.list(listing), at: member) {
        case .success(let response):
            guard let page = try? JSONCoding.decoder.decode(HostAPI.Listing.self, from: response.body) else {
                return .failure(.unavailable("\(member.name) answered the listing with an unreadable body"))
            }
            return .success(page)
        case .failure(let error):
            return .failure(error)
        }
    }

    public func erase(principal: String) async throws(SessionError) -> PrincipalErasure {
        guard SessionUpdate.isValidPrincipal(principal) else {
            throw .rejected(APIError(.invalidField, "a principal is 1 to 64 of \(SessionUpdate.principalAlphabet)"))
        }
        // What this worker remembers of the principal goes first: no fallback may bring it back.
        lastKnown.forget(principal: principal)
        _ = await fallback.erase(principal: principal)
        journal.withLock { $0.forget(principal: principal) }
        let ring = membership
        let results = await withTaskGroup(of: (String, Result<HTTPResponse, SessionError>).self) { group in
            for member in ring.members { group.addTask { (member.name, await self.admin(.principal(principal), at: member)) } }
            var results: [(String, Result<HTTPResponse, SessionError>)] = []
            for await result in group { results.append(result) }
            return results
        }
        var erasure = PrincipalErasure(removed: 0)
        for (name, result) in results.sorted(by: { $0.0 < $1.0 }) {
            if case .success(let response) = result, let answer = try? JSONCoding.decoder.decode(HostAPI.Erasure.self, from: response.body) {
                erasure.removed += answer.removed
            } else {
                erasure.unreached.append(name)
            }
        }
        logger.notice(
            "deleted a principal's sessions", metadata: ["principal": "\(principal)", "removed": "\(erasure.removed)", "unreached": "\(erasure.unreached)"])
        return erasure
    }

    /// A request to one host beyond a session's own routes (a listing, a deletion): one
    /// attempt, its answer when it is 200.
    private func admin(_ route: HostAPI.Route, at member: Membership.Member) async -> Result<HTTPResponse, SessionError> {
        do {
            let response = try await hosts.send(route, to: member.address, timeout: configuration.attemptTimeout * 5)
            guard response.status == 200 else {
                return .failure(.unavailable("\(member.name) answered HTTP \(response.status): \(HostClient.apiError(from: response).message)"))
            }
            return .success(response)
        } catch {
            return .failure(.unavailable("\(member.name) did not answer: \(error)"))
        }
    }

    public func health() async -> SessionStoreHealth {
        let pending = journal.withLock { $0.count }
        let recent = lastFallback.withLock { $0 }.map { clock.elapsed(since: $0) < .seconds(60) } ?? false
        let count = fallbackCount.load(ordering: .relaxed)
        var detail: String?
        if pending > 0 {
            detail = "\(pending) writes made in memory wait for their host"
        } else if recent {
            detail = "a host was unreachable in the last minute; sessions fell back to memory"
        }
        return SessionStoreHealth(mode: "durable", degraded: pending > 0 || recent, fallbacks: count, pendingReplays: pending, detail: detail)
    }

    // MARK: Service: replaying fallback writes

    public func run() async throws {
        // The first round reads the hosts' ring at once: how membership is kept decides how
        // calls to a host that does not answer go on.
        var lastRingCheck: ServerClock.Instant?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await following.probeDownHosts()
            let ids = journal.withLock { $0.sessions }
            for id in ids { _ = await drainJournal(of: id) }
            if lastRingCheck.map({ clock.elapsed(since: $0) >= configuration.ringCheckInterval }) ?? true {
                lastRingCheck = clock.now
                await following.refresh()
            }
            try? await cancelWhenGracefulShutdown { try await self.clock.sleep(for: self.configuration.replayInterval) }
        }
        let left = journal.withLock { $0.count }
        if left > 0 {
            logger.error("stopping with writes that never reached their host", metadata: ["writes": "\(left)"])
        }
    }

    // MARK: Internals

    private func validate(_ sessionID: String) throws(SessionError) {
        do {
            try SessionID.validate(sessionID, limits: configuration.limits)
        } catch {
            throw .rejected(error)
        }
    }

    private func mutate(_ sessionID: String, _ update: SessionUpdate) async throws(SessionError) {
        try validate(sessionID)
        // A message count is judged by the host alone: this worker's memory may hold only the
        // newest messages, and a write kept for later replay must not be refused for a count.
        var unconditional = update
        unconditional.expectMessages = nil
        let key = UUID().uuidString
        // A write with a condition is judged by the session's holder only: never by this
        // worker's memory, which another worker's memory would judge differently.
        let conditional = update.expect != nil
        // A session with writes still in the journal keeps its order: this one queues behind them.
        if journal.withLock({ $0.isWaiting(sessionID) }) {
            if conditional { throw .unavailable("the host of '\(sessionID)' has writes to take back first; try again") }
            try await fallback.apply(unconditional, to: sessionID)
            journal.withLock { $0.append(.init(update: unconditional, key: key), for: sessionID) }
            _ = await drainJournal(of: sessionID)
            return
        }
        switch await send(update, to: sessionID, key: key, attempts: configuration.retry.attempts) {
        case .answered:
            lastKnown.apply(update, to: sessionID, now: clock.wallNow)
            return
        case .refused(let error):
            // A turn's write found the session other than it was remembered (changed, or gone).
            if error.code == .historyChanged || (update.expectMessages != nil && error.code == .sessionNotFound) {
                if error.code == .historyChanged { staleViews.increment() }
                lastKnown.distrust(sessionID)
            }
            throw .rejected(error)
        case .cancelled:
            // The caller gave up: whether the write arrived is not known, and it does not ask.
            throw .cancelled
        case .unreachable(let reason) where conditional:
            throw .unavailable("no host could take a conditional write to '\(sessionID)': \(reason)")
        case .unreachable(let reason):
            await fallback.seed(sessionID, lastKnown.state(of: sessionID))
            try await fallback.apply(unconditional, to: sessionID)
            journal.withLock { $0.append(.init(update: unconditional, key: key), for: sessionID) }
            noteFallback(sessionID, operation: update.operation.name, reason: reason)
        }
    }

    private func send(_ update: SessionUpdate, to sessionID: String, key: String, attempts: Int) async -> Outcome {
        if case .clear = update.operation {
            return await send(.clear(sessionID), sessionID, body: nil, key: key, operation: "clear", attempts: attempts)
        }
        let body = update.canonicalJSON
        return await send(.update(sessionID), sessionID, body: body, key: key, operation: update.operation.name, attempts: attempts)
    }

    /// Offers a session's journaled writes to its host, oldest first, stopping at the first
    /// that does not get through (`FallbackJournal` decides). Returns true when none is left.
    private func drainJournal(of sessionID: String) async -> Bool {
        var step = journal.withLock { $0.start(sessionID) }
        while case .offer(let next) = step {
            let delivery: FallbackJournal.Delivery
            switch await send(next.update, to: sessionID, key: next.key, attempts: 1) {
            case .answered:
                lastKnown.apply(next.update, to: sessionID, now: clock.wallNow)
                delivery = .answered
            case .refused:
                // A refusal now would have been one then too: dropping it is what the host would have done.
                delivery = .refused
            case .unreachable, .cancelled:
                delivery = .notDelivered
            }
            if delivery != .notDelivered { replayed.increment() }
            step = journal.withLock { $0.offered(next.key, of: sessionID, delivery) }
        }
        if case .emptied = step {
            await fallback.forget(sessionID)
            logger.notice("writes made in memory reached their host", metadata: ["session": "\(sessionID)"])
        }
        return !journal.withLock { $0.isWaiting(sessionID) }
    }

    private func noteFallback(_ sessionID: String, operation: String, reason: String) {
        fallbackCount.add(1, ordering: .relaxed)
        lastFallback.withLock { $0 = clock.now }
        fallbacks.increment()
        Traces.mark("fallback: the session served from this worker's memory", ["operation": operation, "reason": reason])
        logger.error(
            "host unreachable after \(configuration.retry.attempts) attempts; session served from memory",
            metadata: ["session": "\(sessionID)", "operation": "\(operation)", "host": "\(owner(of: sessionID)?.name ?? "?")", "reason": "\(reason)"])
    }

    enum Outcome {
        /// Answered by the owner, or held by its runner-up (`heldBy`).
        case answered(HTTPResponse, heldBy: String?)
        case refused(APIError)
        case unreachable(String)
        /// The calling task was cancelled: no fallback, nothing journaled.
        case cancelled
    }

    /// One call for `sessionID`, driven by `HostCall`: to the owner, with retries and ring
    /// changes; held by the owner's runner-up when the owner stays unreachable.
    private func send(
        _ route: HostAPI.Route, _ sessionID: String, body: Data?, key: String?, operation: String, attempts: Int? = nil
    ) async -> Outcome {
        // Within a trace: one span for the call, its attempts (client spans) below it.
        await Traces.childSpan("host call \(operation)") { span in
            let outcome = await drive(route, sessionID, body: body, key: key, operation: operation, attempts: attempts, span: span)
            guard let span else { return outcome }
            switch outcome {
            case .answered(_, let holder?):
                span.attributes["host.outcome"] = "held"
                span.attributes["host.held_by"] = holder
            case .answered: span.attributes["host.outcome"] = "answered"
            case .refused(let error): span.attributes["host.outcome"] = "refused: \(error.code.rawValue)"
            case .unreachable(let reason):
                span.attributes["host.outcome"] = "unreachable"
                Traces.fail(span, reason)
            case .cancelled: span.attributes["host.outcome"] = "cancelled"
            }
            span.attributes["host.ring_version"] = membership.version
            return outcome
        }
    }

    private func drive(
        _ route: HostAPI.Route, _ sessionID: String, body: Data?, key: String?, operation: String, attempts: Int?, span: (any Span)?
    ) async -> Outcome {
        var headers: HTTPHeaders = [:]
        if let key { headers.add(HostAPI.idempotencyKeyHeader, key) }
        var policy = configuration.retry
        if let attempts { policy.attempts = attempts }
        var call = HostCall(id: sessionID, ring: membership, policy: policy)
        let ownerDown = membership.owner(of: sessionID).map { following.availability.isDown($0.name) } ?? false
        var action = call.start(ownerKnownDown: ownerDown, random: .random(in: 0...1))
        var last: HTTPResponse?
        while true {
            switch action {
            case .send(let member, let owner):
                var sent = headers
                if let owner {
                    sent.add(HostAPI.hintedForHeader, owner)
                    sent.add(HostAPI.hintSeedVersionHeader, JSONValue.number(lastKnown.snapshot(of: sessionID)?.observedAt ?? 0))
                }
                do {
                    let response = try await hosts.send(route, to: member.address, body: body, headers: sent, timeout: configuration.attemptTimeout)
                    last = response
                    let code = response.status >= 400 ? HostClient.apiError(from: response).code.rawValue : nil
                    action = call.answered(
                        status: response.status, ringVersion: response.headers[HostAPI.RingHeaders.version].flatMap { Int($0) }, errorCode: code,
                        random: .random(in: 0...1))
                } catch is CancellationError {
                    return .cancelled
                } catch {
                    action = call.noAnswer("\(error)", random: .random(in: 0...1))
                }
            case .readRing(let member):
                Traces.event(span, "misdirected (421): reading the host's ring", ["host": member.name])
                action = call.ringRead(await following.learn(from: member, refusing: sessionID), ring: membership, random: .random(in: 0...1))
            case .refreshRing(let failing):
                Traces.event(span, "no answer: asking the other hosts for their ring", ["host": failing])
                await following.refresh(except: failing)
                action = call.ringsRefreshed(membership, random: .random(in: 0...1))
            case .seed(let member, let owner):
                Traces.event(span, "hinted: seeding the owner's runner-up", ["holder": member.name, "owner": owner])
                let (accepted, reason) = await seed(sessionID, at: member, owner: owner)
                action = call.seeded(accepted: accepted, reason: reason)
            case .wait(let delay):
                failedAttempts.increment()
                let host = call.ring.owner(of: sessionID)
                logger.warning(
                    // Past the configured attempts, the call waits for a shared ring to drop the owner.
                    "host attempt \(call.attempts - 1)\(call.attempts - 1 < policy.attempts ? "/\(policy.attempts)" : " (waiting out a lease)") failed; retrying",
                    metadata: [
                        "host": "\(host?.name ?? "?")=\(host?.address ?? "?")", "operation": "\(operation)", "reason": "\(call.lastFailure)",
                        "retry_in": "\(delay)",
                    ])
                Traces.event(span, "retry", ["attempt": "\(call.attempts - 1)", "reason": call.lastFailure, "retry_in": "\(delay)"])
                do {
                    try await clock.sleep(for: delay)
                } catch {
                    return .cancelled
                }
                action = call.waited()
            case .finish(let outcome):
                span?.attributes["host.attempts"] = call.attempts
                following.availability.record(call.observed)
                return finished(outcome, last: last, sessionID: sessionID, operation: operation)
            }
        }
    }

    /// What a finished call gives its caller.
    private func finished(_ outcome: HostCall.Outcome, last: HTTPResponse?, sessionID: String, operation: String) -> Outcome {
        switch outcome {
        case .answered(let holder):
            guard let last else { return .unreachable("no answer") }
            if let holder {
                heldCalls.increment()
                logger.notice(
                    "owner unreachable; the call was held by its runner-up",
                    metadata: ["session": "\(sessionID)", "operation": "\(operation)", "holder": "\(holder)"])
            }
            return .answered(last, heldBy: holder)
        case .refused:
            guard let last else { return .unreachable("no answer") }
            return .refused(HostClient.apiError(from: last))
        case .unreachable(let reason):
            failedAttempts.increment()
            return .unreachable(reason)
        }
    }

    /// Sends the last state this worker knows of `sessionID` to `member`, as the seed of the
    /// copy it holds for `owner`.
    private func seed(_ sessionID: String, at member: Membership.Member, owner: String) async -> (Bool, String) {
        let snapshot = lastKnown.snapshot(of: sessionID)
        let record = snapshot.flatMap { $0.state.exists ? $0.state.record : nil }
        var headers: HTTPHeaders = [:]
        headers.add(HostAPI.hintedForHeader, owner)
        headers.add(HostAPI.hintSeedVersionHeader, JSONValue.number(snapshot?.observedAt ?? 0))
        let body = (try? JSONCoding.encoder.encode(HostAPI.HintSeed(record: record))) ?? Data()
        do {
            let response = try await hosts.send(
                .heldSeed(sessionID), to: member.address, body: body, headers: headers, timeout: configuration.attemptTimeout)
            return (response.status == 200, "HTTP \(response.status)")
        } catch {
            return (false, "\(error)")
        }
    }

    /// Adopts a ring a host answered elsewhere (the worker's health probe), if it is newer.
    public func consider(_ info: RingInfo, from name: String) {
        following.consider(info, from: name)
    }
}

/// Chooses the session manager the seed's way: hosts given → durable, none → in memory.
public enum SessionManagers {
    public static func make(
        hosts: [NamedAddress], ringVersion: Int = 1, token: String?, client: CurlClient, limits: SessionLimits, logger: Logger,
        retry: RetryPolicy = RetryPolicy(), attemptTimeout: Duration = .seconds(2), clock: ServerClock = .system
    ) -> any SessionManager {
        if hosts.isEmpty {
            return InMemorySessionManager(limits: limits, now: clock.wall)
        }
        return DurableSessionManager(
            configuration: .init(hosts: hosts, ringVersion: ringVersion, token: token, retry: retry, attemptTimeout: attemptTimeout, limits: limits),
            client: client, logger: logger, clock: clock)
    }
}
