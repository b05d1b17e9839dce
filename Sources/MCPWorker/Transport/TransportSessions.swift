import Foundation
import ServerRuntime
import SessionClient
import SessionModel

/// An MCP transport session (`MCP-Session-Id`), as kept in the durable hosts.
struct TransportSession: Sendable, Hashable {
    let id: String
    let principal: String
    let protocolVersion: String
    var initialized: Bool
    let lastUpdated: Double
}

/// MCP transport sessions live in the durable hosts, not in a worker's memory: any worker
/// serves any request of any session, and a session outlives the worker that started it.
///
/// A session is the host record `mcp-<id>`, whose metadata holds the principal that created
/// it, the negotiated protocol revision and whether the client sent `initialized`. The id is
/// 128 random bits (32 hex digits) from the system's secure generator.
struct TransportSessions: Sendable {
    let store: any SessionManager
    /// A session unused this long is expired (404).
    let lifetime: Double
    let clock: ServerClock

    static let kind = "mcp-transport"

    static func storageID(_ id: String) -> String { StorageKeys.transportSession(id) }

    /// A fresh id: 128 bits from the system's cryptographically secure generator.
    static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<2).map { _ in String(generator.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
    }

    /// Whether a header value can be one of our ids at all.
    static func isWellFormed(_ id: String) -> Bool {
        id.utf8.count == 32 && id.isLowercaseHex
    }

    func create(principal: String, protocolVersion: String, clientName: String, clientVersion: String) async throws(SessionError) -> TransportSession {
        let id = Self.newID()
        let metadata: JSONObject = [
            "kind": .string(Self.kind), "principal": .string(principal), "protocol_version": .string(protocolVersion),
            "client_name": .string(String(clientName.prefix(100))), "client_version": .string(String(clientVersion.prefix(50))),
            "initialized": false,
        ]
        // The host deletes the record `lifetime` after its last write: an abandoned session
        // does not outlive its lifetime in storage either.
        try await store.write(Self.storageID(id), SessionUpdate(.updateMetadata(metadata), principal: principal, expiresAfter: lifetime))
        return TransportSession(id: id, principal: principal, protocolVersion: protocolVersion, initialized: false, lastUpdated: clock.wallNow)
    }

    /// The session `id` of `principal`; nil when unknown, ended, expired, or another principal's.
    func load(_ id: String, principal: String) async throws(SessionError) -> TransportSession? {
        guard Self.isWellFormed(id), let record = try await store.record(Self.storageID(id)) else { return nil }
        let metadata = record.metadata
        guard metadata["kind"]?.stringValue == Self.kind, metadata["principal"]?.stringValue == principal else { return nil }
        // A record with a lifetime of its own is expired by whoever holds it (the host, or this
        // worker's fallback copy by the same rule), so an expired one never arrives here. The
        // worker judges only a record stored before lifetimes existed: judging the others by its
        // own clock, which may run ahead of the holder's, would end a session the host still
        // keeps alive, for every worker, with a real delete.
        if record.expiresAfter == nil, clock.wallNow - record.lastUpdated > lifetime {
            try? await store.clear(Self.storageID(id))
            return nil
        }
        let session = TransportSession(
            id: id, principal: principal, protocolVersion: metadata["protocol_version"]?.stringValue ?? "2025-03-26",
            initialized: metadata["initialized"]?.boolValue ?? false, lastUpdated: record.lastUpdated)
        // Keep a session in use from expiring, at the cost of one write per tenth of its lifetime.
        if clock.wallNow - record.lastUpdated > lifetime / 10 {
            try? await store.write(Self.storageID(id), SessionUpdate(.updateMetadata(["last_seen": .double(clock.wallNow)]), principal: principal))
        }
        return session
    }

    func markInitialized(_ session: TransportSession) async throws(SessionError) {
        guard !session.initialized else { return }
        try await store.write(Self.storageID(session.id), SessionUpdate(.updateMetadata(["initialized": true]), principal: session.principal))
    }

    /// Marks a request of the session as cancelled, for the worker that runs it.
    func requestCancel(_ session: TransportSession, request: String) async throws(SessionError) {
        try await store.write(
            Self.storageID(session.id), SessionUpdate(.updateMetadata(["cancel:\(request)": .double(clock.wallNow)]), principal: session.principal))
    }

    /// Polled while a request of the session runs: whether another worker marked it cancelled;
    /// and it keeps the session in use (a call may last longer than the session's lifetime,
    /// and a session is not unused while a call of it runs).
    func pollRunningCall(sessionID: String, request: String) async -> Bool {
        guard let record = try? await store.record(Self.storageID(sessionID)) else { return false }
        if record.metadata["cancel:\(request)"] != nil { return true }
        if clock.wallNow - record.lastUpdated > lifetime / 3, let principal = record.metadata["principal"]?.stringValue {
            // Only a session that still exists: one ended meanwhile (DELETE) stays ended.
            try? await store.write(
                Self.storageID(sessionID), SessionUpdate(.updateMetadata(["last_seen": .double(clock.wallNow)]), principal: principal, mustExist: true))
        }
        return false
    }

    func end(_ session: TransportSession) async throws(SessionError) {
        try await store.clear(Self.storageID(session.id))
    }
}

extension String {
    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}

extension String {
    /// Whether every character is one of `0-9 a-f` (the ids this worker makes).
    var isLowercaseHex: Bool {
        utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }
}
