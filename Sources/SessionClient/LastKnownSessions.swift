import Foundation
import SessionModel
import Synchronization

/// The last state this worker saw of recently used sessions, bounded in count and bytes.
///
/// Only read when a host cannot be reached: the fallback then starts from what the worker
/// last knew (a transport session stays valid, a conversation keeps its history) instead of
/// from nothing. Kept current by the answers of reads and by applying this worker's own
/// successful writes; the host stays the authority whenever it answers.
final class LastKnownSessions: Sendable {
    private struct Entry {
        var state: SessionState
        var lastUse: UInt64
        /// When this worker learned the state (read it, or had its own write accepted).
        var observedAt: Double
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
    func store(_ sessionID: String, _ record: SessionRecord?, now: Double) {
        contents.withLock { contents in
            Self.remove(sessionID, from: &contents)
            let state = record.map { SessionState(stored: $0) } ?? SessionState(absent: sessionID)
            Self.insert(sessionID, state, observedAt: now, into: &contents, maxSessions: maxSessions, maxBytes: maxBytes)
        }
    }

    /// Applies a write the host accepted to the remembered state. A session this worker has not
    /// read is not remembered from its writes alone: they would give a partial picture.
    func apply(_ update: SessionUpdate, to sessionID: String, now: Double) {
        contents.withLock { contents in
            guard var state = contents.entries[sessionID]?.state else {
                if case .clear = update.operation {
                    Self.insert(sessionID, SessionState(absent: sessionID), observedAt: now, into: &contents, maxSessions: maxSessions, maxBytes: maxBytes)
                }
                return
            }
            Self.remove(sessionID, from: &contents)
            guard (try? state.apply(update, now: now, limits: limits)) != nil else { return }
            Self.insert(sessionID, state, observedAt: now, into: &contents, maxSessions: maxSessions, maxBytes: maxBytes)
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

    private static func remove(_ sessionID: String, from contents: inout Contents) {
        if let old = contents.entries.removeValue(forKey: sessionID) {
            contents.bytes -= old.state.contentBytes
        }
    }

    private static func insert(
        _ sessionID: String, _ state: SessionState, observedAt: Double, into contents: inout Contents, maxSessions: Int, maxBytes: Int
    ) {
        guard state.contentBytes <= maxBytes else { return }
        contents.clock += 1
        contents.entries[sessionID] = Entry(state: state, lastUse: contents.clock, observedAt: observedAt)
        contents.bytes += state.contentBytes
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
