import Foundation
import SessionModel
import Synchronization

/// The last state this worker saw of recently used sessions, bounded in count and bytes.
///
/// Read when a host cannot be reached: the fallback then starts from what the worker last
/// knew (a transport session stays valid, a conversation keeps its history) instead of from
/// nothing. Kept current by the answers of reads and by applying this worker's own successful
/// writes; the host stays the authority whenever it answers.
///
/// And read for a conversation turn (`turnView`) when the worker has seen that it alone writes
/// the session: a read found the session as this worker's own last write had left it. Such a
/// turn asks no host for its history; its write expects the message count remembered, so a
/// view gone stale (another worker wrote since) is refused, not stored (`distrust`).
final class LastKnownSessions: Sendable {
    private struct Entry {
        var state: SessionState
        var lastUse: UInt64
        /// When this worker learned the state (read it, or had its own write accepted).
        var observedAt: Double
        /// Messages of the whole history that `state` does not hold (a read of its newest only);
        /// nil: not known.
        var unseenMessages: Int?
        /// Seconds the session lives after a write, as its host last said (nil: for ever or not known).
        var lifetime: Double?
        /// Whether `state` is what this worker's own accepted write left.
        var ownWrite = false
        /// Whether a turn may be asked with `state` without reading it (`turnView`).
        var trusted = false

        var messageCount: Int? { unseenMessages.map { $0 + state.record.messages.count } }
    }

    private struct Contents {
        var entries: [String: Entry] = [:]
        var bytes = 0
        var clock: UInt64 = 0
    }

    private let contents = Mutex(Contents())
    let maxSessions: Int
    let maxBytes: Int
    private let limits: SessionLimits

    init(maxSessions: Int = 10_000, maxBytes: Int = 64 << 20, limits: SessionLimits) {
        self.maxSessions = maxSessions
        self.maxBytes = maxBytes
        self.limits = limits
    }

    func state(of sessionID: String) -> SessionState? {
        contents.withLock { $0.entries[sessionID]?.state }
    }

    /// The remembered state and when it was learned: the seed a holder of writes for an
    /// unreachable owner starts from, newer seeds replacing older ones.
    func snapshot(of sessionID: String) -> (state: SessionState, observedAt: Double)? {
        contents.withLock { contents in contents.entries[sessionID].map { ($0.state, $0.observedAt) } }
    }

    /// Remembers what a host answered at time `now`; nil: the session does not exist.
    /// `messageCount`: how many messages the whole history holds, when `record` holds only its
    /// newest (nil: `record` holds them all). A read that finds the session as this worker's
    /// own last write left it (the same count and metadata) makes its view trusted for turns.
    func store(_ sessionID: String, _ record: SessionRecord?, now: Double, messageCount: Int? = nil, lifetime: Double? = nil) {
        contents.withLock { contents in
            let previous = Self.remove(sessionID, from: &contents)
            let state = record.map { SessionState(stored: $0) } ?? SessionState(absent: sessionID)
            var entry = Entry(state: state, lastUse: 0, observedAt: now)
            entry.unseenMessages = max(0, (messageCount ?? state.record.messages.count) - state.record.messages.count)
            entry.lifetime = lifetime
            if let previous, previous.ownWrite, previous.state.exists == state.exists, previous.messageCount == entry.messageCount,
                previous.state.record.metadata == state.record.metadata
            {
                entry.trusted = true
            }
            Self.insert(sessionID, entry, into: &contents, maxSessions: maxSessions, maxBytes: maxBytes)
        }
    }

    /// Applies a write the host accepted to the remembered state. A session this worker has not
    /// read is not remembered from its writes alone: they would give a partial picture.
    func apply(_ update: SessionUpdate, to sessionID: String, now: Double) {
        // The host judged the write's conditions; the remembered state may hold only the
        // history's newest messages, which a count is not to be checked against.
        var update = update
        update.expectMessages = nil
        contents.withLock { contents in
            guard var entry = Self.remove(sessionID, from: &contents) else {
                if case .clear = update.operation {
                    var entry = Entry(state: SessionState(absent: sessionID), lastUse: 0, observedAt: now, unseenMessages: 0)
                    entry.ownWrite = true
                    Self.insert(sessionID, entry, into: &contents, maxSessions: maxSessions, maxBytes: maxBytes)
                }
                return
            }
            guard (try? entry.state.apply(update, now: now, limits: limits)) != nil else { return }
            switch update.operation {
            case .setHistory, .putRecord, .clear: entry.unseenMessages = 0
            default: break
            }
            entry.observedAt = now
            entry.ownWrite = true
            Self.insert(sessionID, entry, into: &contents, maxSessions: maxSessions, maxBytes: maxBytes)
        }
    }

    /// A conversation turn's view of the session from memory: its newest `last` messages, its
    /// metadata and message count; nil unless trusted (`store`), or when it may have expired.
    func turnView(of sessionID: String, last: Int, now: Double) -> SessionHistory? {
        contents.withLock { contents in
            guard let entry = contents.entries[sessionID], entry.trusted, let count = entry.messageCount else { return nil }
            let record = entry.state.record
            let expiresAt = entry.state.exists ? entry.lifetime.map { record.lastUpdated + $0 } : nil
            // Past (or near) its end the session may be gone: the host says.
            if let expiresAt, expiresAt - now < 1 { return nil }
            guard entry.state.exists else { return SessionHistory(messageCount: 0, remembered: true) }
            return SessionHistory(
                messages: Array(record.messages.suffix(last)), metadata: record.metadata, lastUpdated: record.lastUpdated, expiresAt: expiresAt,
                messageCount: count, remembered: true)
        }
    }

    /// A turn's write found the session other than remembered: its next turn reads it.
    func distrust(_ sessionID: String) {
        contents.withLock { contents in
            contents.entries[sessionID]?.trusted = false
            contents.entries[sessionID]?.ownWrite = false
        }
    }

    var count: Int { contents.withLock { $0.entries.count } }

    /// Forgets every session of `principal` (its data is being deleted).
    func forget(principal: String) {
        contents.withLock { contents in
            for (id, entry) in contents.entries where entry.state.record.principal == principal {
                Self.remove(id, from: &contents)
            }
        }
    }

    @discardableResult
    private static func remove(_ sessionID: String, from contents: inout Contents) -> Entry? {
        guard let old = contents.entries.removeValue(forKey: sessionID) else { return nil }
        contents.bytes -= old.state.contentBytes
        return old
    }

    private static func insert(_ sessionID: String, _ entry: Entry, into contents: inout Contents, maxSessions: Int, maxBytes: Int) {
        guard entry.state.contentBytes <= maxBytes else { return }
        contents.clock += 1
        var entry = entry
        entry.lastUse = contents.clock
        contents.entries[sessionID] = entry
        contents.bytes += entry.state.contentBytes
        // Over budget: drop the least recently used half of the excess at once, so eviction is rare.
        if contents.entries.count > maxSessions || contents.bytes > maxBytes {
            let victims = contents.entries.sorted { $0.value.lastUse < $1.value.lastUse }
            var index = 0
            while (contents.entries.count > maxSessions * 9 / 10 || contents.bytes > maxBytes * 9 / 10) && index < victims.count {
                let (id, entry) = victims[index]
                if id != sessionID {
                    contents.entries[id] = nil
                    contents.bytes -= entry.state.contentBytes
                }
                index += 1
            }
        }
    }
}
