import Clocks
import Foundation
import Metrics
import ServerRuntime
import SessionModel
import Synchronization

/// The live session objects of a host, by id.
///
/// An object is created on first use and loads itself from storage; it is evicted once it
/// has been idle for `idleTimeout`, or sooner, oldest first, when more than `maxLive` are in
/// memory. An object in use is never evicted, so eviction never drops a write in flight:
/// memory stays bounded however many sessions are stored.
public final class SessionDirectory: Sendable {
    private struct Entry {
        let object: SessionObject
        var users: Int
        var lastUsed: ServerClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let nextIncarnation = Atomic<UInt64>(1)
    private let context: ObjectContext
    let maxLive: Int
    let idleTimeout: Duration
    let clock: ServerClock
    /// When each principal's data was last deleted here: what the live objects check writes against.
    var erasures: PrincipalErasures { context.erasures }
    private let liveGauge = Gauge(label: "host_live_objects")
    private let evictions = Metrics.Counter(label: "host_evictions_total")

    init(context: ObjectContext, maxLive: Int, idleTimeout: Duration, clock: ServerClock = .system) {
        self.clock = clock
        self.context = context
        self.maxLive = maxLive
        self.idleTimeout = idleTimeout
    }

    /// Runs `body` with the live object of `id`, keeping it in memory meanwhile.
    func withObject<T: Sendable>(_ id: String, _ body: (SessionObject) async throws(APIError) -> T) async throws(APIError) -> T {
        let object = acquire(id)
        defer { release(id, object) }
        return try await body(object)
    }

    private func acquire(_ id: String) -> SessionObject {
        let now = clock.now
        return entries.withLock { entries in
            if var entry = entries[id] {
                entry.users += 1
                entry.lastUsed = now
                entries[id] = entry
                return entry.object
            }
            let incarnation = nextIncarnation.wrappingAdd(1, ordering: .relaxed).oldValue
            let object = SessionObject(id: id, incarnation: incarnation, context: context) { [weak self] poisoned in
                self?.discard(poisoned)
            }
            entries[id] = Entry(object: object, users: 1, lastUsed: now)
            return object
        }
    }

    private func release(_ id: String, _ object: SessionObject) {
        let now = clock.now
        entries.withLock { entries in
            guard var entry = entries[id], entry.object === object else { return }
            entry.users -= 1
            entry.lastUsed = now
            entries[id] = entry
        }
    }

    /// Forgets an object whose state can no longer be trusted; the next use reloads from storage.
    private func discard(_ object: SessionObject) {
        entries.withLock { entries in
            if entries[object.id]?.object === object { entries[object.id] = nil }
        }
    }

    /// Drops the live object of `id`, if any: its next use loads it afresh (a held copy whose
    /// writes its owner took back).
    func forget(_ id: String) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }

    /// Drops every live object (a new ring version on shared storage): each id's next use
    /// loads it afresh. Objects in use finish what they do; their writes are fenced off.
    func forgetAll() {
        entries.withLock { $0 = [:] }
    }

    /// Evicts idle objects: all idle past the timeout, then the least recently used idle ones
    /// while over `maxLive`. Returns how many were evicted.
    @discardableResult
    func sweep() -> Int {
        let now = clock.now
        let (evicted, live) = entries.withLock { entries -> (Int, Int) in
            var evicted = 0
            for (id, entry) in entries where entry.users == 0 && entry.lastUsed.duration(to: now) >= idleTimeout {
                entries[id] = nil
                evicted += 1
            }
            if entries.count > maxLive {
                let idle = entries.filter { $0.value.users == 0 }.sorted { $0.value.lastUsed < $1.value.lastUsed }
                for (id, _) in idle.prefix(entries.count - maxLive) {
                    entries[id] = nil
                    evicted += 1
                }
            }
            return (evicted, entries.count)
        }
        if evicted > 0 { evictions.increment(by: evicted) }
        liveGauge.record(live)
        return evicted
    }

    /// How many objects are in memory.
    var liveCount: Int { entries.withLock { $0.count } }

    /// Whether more objects are live than allowed, so a sweep should run now.
    var isOverCapacity: Bool { entries.withLock { $0.count > maxLive } }
}
