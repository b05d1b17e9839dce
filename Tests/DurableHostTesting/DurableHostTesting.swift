import ArgumentParser
import DurableHost
import DurableHostCommands
import Foundation
import Logging
import SessionModel

/// `durable-host-testing`: `durable-host serve` exactly, plus two ways for a test to hold a
/// host's commits back, which no product carries. The kill -9 and fencing tests use them to
/// catch a write queued but not yet committed, whatever the machine's speed.
///
/// - `--commit-delay SECONDS`: every batch waits this long before it commits.
/// - `--commit-gate FILE`: while FILE exists, every batch waits before it commits.
@main
struct DurableHostTesting: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "durable-host-testing", abstract: "durable-host serve, with commits held back for tests.")

    @OptionGroup var options: ServeOptions
    @Option(name: .customLong("commit-delay"), help: "Seconds every batch waits before it commits.")
    var commitDelay: Double?
    @Option(name: .customLong("commit-gate"), help: "While this file exists, every batch waits before it commits.")
    var commitGate: String?

    func run() async throws {
        let hold = CommitHold(delay: commitDelay, gate: commitGate)
        try await options.run { store, logger in
            if let blocking = store as? any BlockingCommitStore { return HeldBlockingCommits(inner: blocking, hold: hold, logger: logger) }
            return HeldCommits(inner: store, hold: hold, logger: logger)
        }
    }
}

/// What holds a batch back, and the line the log says of it (tests wait for that line).
struct CommitHold: Sendable {
    let delay: Double?
    let gate: String?

    func wait(batch: Int, logger: Logger) {
        if let delay {
            logger.notice("holding a batch for the commit delay (a test setting)", metadata: ["writes": "\(batch)"])
            Thread.sleep(forTimeInterval: delay)
        }
        if let gate, FileManager.default.fileExists(atPath: gate) {
            logger.notice("holding a batch at the commit gate (a test setting)", metadata: ["writes": "\(batch)"])
            while FileManager.default.fileExists(atPath: gate) { Thread.sleep(forTimeInterval: 0.01) }
        }
    }

    func wait(batch: Int, logger: Logger) async {
        if let delay {
            logger.notice("holding a batch for the commit delay (a test setting)", metadata: ["writes": "\(batch)"])
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
        }
        if let gate, FileManager.default.fileExists(atPath: gate) {
            logger.notice("holding a batch at the commit gate (a test setting)", metadata: ["writes": "\(batch)"])
            while FileManager.default.fileExists(atPath: gate) { try? await Task.sleep(for: .milliseconds(10)) }
        }
    }
}

/// A store whose every call but `commit` goes straight to the one it wraps.
protocol ForwardingStore: SessionStore {
    var forwarded: any SessionStore { get }
}

extension ForwardingStore {
    func load(_ id: String, idempotencySince: Double) async throws -> StoredSession? { try await forwarded.load(id, idempotencySince: idempotencySince) }
    func sessionCount() async throws -> Int { try await forwarded.sessionCount() }
    func pruneIdempotency(before cutoff: Double) async throws -> Int { try await forwarded.pruneIdempotency(before: cutoff) }
    func sessionIDs(after cursor: String?, limit: Int) async throws -> [String] { try await forwarded.sessionIDs(after: cursor, limit: limit) }
    func sessionIDs(principal: String, after cursor: String?, limit: Int) async throws -> [String] {
        try await forwarded.sessionIDs(principal: principal, after: cursor, limit: limit)
    }
    func expiredSessions(_ kind: ExpiryKind, now: Double, retention: Double, after cursor: ExpiryCursor?, limit: Int) async throws -> [ExpiryCursor] {
        try await forwarded.expiredSessions(kind, now: now, retention: retention, after: cursor, limit: limit)
    }
    func summaries(_ listing: SessionListing, now: Double, retention: Double) async throws -> [HostAPI.SessionSummary] {
        try await forwarded.summaries(listing, now: now, retention: retention)
    }
    func close() async throws { try await forwarded.close() }
    var description: String { forwarded.description }
}

/// Commits through an asynchronous store (PostgreSQL), each batch held first.
struct HeldCommits: ForwardingStore {
    let inner: any SessionStore
    let hold: CommitHold
    let logger: Logger
    var forwarded: any SessionStore { inner }

    func commit(_ batch: [SessionMutation]) async throws {
        await hold.wait(batch: batch.count, logger: logger)
        try await inner.commit(batch)
    }
}

/// Commits through a blocking store (SQLite), each batch held first on the commit thread.
struct HeldBlockingCommits: ForwardingStore, BlockingCommitStore {
    let inner: any BlockingCommitStore
    let hold: CommitHold
    let logger: Logger
    var forwarded: any SessionStore { inner }

    func commit(_ batch: [SessionMutation]) async throws {
        try await HeldCommits(inner: inner, hold: hold, logger: logger).commit(batch)
    }

    func commitBlocking(_ batch: [SessionMutation]) throws {
        hold.wait(batch: batch.count, logger: logger)
        try inner.commitBlocking(batch)
    }
}
