import Foundation
import Logging
import ServerRuntime
import SessionClient
import SessionModel

/// The SSE events of a session's streams, kept in the durable host that owns the session,
/// so that a client can resume a stream through any worker (`GET` with `Last-Event-ID`).
///
/// The events are the messages of the record `mcp-<session>~events` (placed with the
/// session's own record by the ring), each `"<event id>\n<data>"`, with `"<stream>-end\n"`
/// when a stream is over. Bounded: past `trimAbove` events, the oldest are dropped down to
/// `keep` when a new stream starts.
struct EventJournal: Sendable {
    let store: any SessionManager
    /// The transport sessions' lifetime: a journal lives as long as its session.
    let lifetime: Double
    let logger: Logger
    static let keep = 500
    static let trimAbove = 1_000

    static func recordID(session: String) -> String {
        StorageKeys.events(ofTransportSession: session)
    }

    /// A stream starts: makes room if the journal is long.
    func startStream(session: TransportSession) async {
        let id = Self.recordID(session: session.id)
        guard let history = try? await store.history(id), history.messages.count > Self.trimAbove else { return }
        let kept = history.messages.suffix(Self.keep).map { MessageInput(role: $0.role, content: $0.content, timestamp: $0.timestamp) }
        try? await store.write(id, SessionUpdate(.setHistory(Array(kept)), principal: session.principal, expiresAfter: lifetime))
    }

    /// Records an event before it is sent.
    func append(session: TransportSession, eventID: String, data: String) async {
        let event = MessageInput(role: .system, content: "\(eventID)\n\(data)")
        do {
            try await store.write(
                Self.recordID(session: session.id), SessionUpdate(.appendMessage(event), principal: session.principal, expiresAfter: lifetime))
        } catch {
            logger.warning("an event could not be kept for resumption", metadata: ["error": "\(error.message)"])
        }
    }

    func end(session: TransportSession, stream: String) async {
        await append(session: session, eventID: "\(stream)-end", data: "")
    }

    /// Some of a stream's events, and whether it has ended.
    typealias Batch = (events: [(id: String, data: String)], ended: Bool)

    /// Events of `stream` after number `after`, in order, and whether the stream has ended.
    /// Nil when the journal knows nothing of the stream.
    func events(session: String, stream: String, after: Int) async throws(SessionError) -> Batch? {
        let history = try await store.history(Self.recordID(session: session))
        var events: [(id: String, data: String)] = []
        var known = false
        var ended = false
        for message in history.messages {
            guard let newline = message.content.firstIndex(of: "\n") else { continue }
            let id = message.content[..<newline]
            guard let dash = id.lastIndex(of: "-"), id[..<dash] == stream else { continue }
            known = true
            let suffix = id[id.index(after: dash)...]
            if suffix == "end" {
                ended = true
            } else if let number = Int(suffix), number > after {
                events.append((String(id), String(message.content[message.content.index(after: newline)...])))
            }
        }
        return known ? (events, ended) : nil
    }

    func clear(session: String) async {
        try? await store.clear(Self.recordID(session: session))
    }

    /// `<stream>-<n>` as its parts.
    static func parse(_ eventID: String) -> (stream: String, number: Int)? {
        guard let dash = eventID.lastIndex(of: "-"), let number = Int(eventID[eventID.index(after: dash)...]) else { return nil }
        let stream = String(eventID[..<dash])
        guard !stream.isEmpty, stream.isLowercaseHex else { return nil }
        return (stream, number)
    }
}

/// A resumed stream's reader: sends what the journal holds after an event, then follows it
/// (a poll every `pollInterval`, a keep-alive comment after a quiet second) until the stream's
/// end marker, or for at most `limit`.
struct JournalFollower: Sendable {
    let journal: EventJournal
    let session: String
    let stream: String
    let clock: ServerClock
    var pollInterval: Duration = .milliseconds(100)
    var limit: Duration = .seconds(600)

    func follow(from first: EventJournal.Batch, after: Int, write: (String) async throws -> Void) async throws {
        let start = clock.now
        var batch = first
        var last = after
        var idle = clock.now
        while true {
            for event in batch.events {
                try await write("id: \(event.id)\ndata: \(event.data)\n\n")
                last = EventJournal.parse(event.id)?.number ?? last
                idle = clock.now
            }
            if batch.ended || clock.elapsed(since: start) > limit { return }
            if clock.elapsed(since: idle) > .seconds(1) {
                try await write(": keepalive\n\n")
                idle = clock.now
            }
            try await clock.sleep(for: pollInterval)
            guard let next = try? await journal.events(session: session, stream: stream, after: last) else { return }
            batch = next
        }
    }
}
