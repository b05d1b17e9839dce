import Clocks
import Foundation
import ServerRuntime
import SessionClient
import SessionModel
import Synchronization
import Testing

@testable import MCPWorker

@Suite("Transport sessions: the holder of a record decides when it expired")
struct TransportSessionsTests {
    /// A wall clock the test moves (seconds since 1970).
    final class Clock: Sendable {
        private let value: Mutex<Double>
        init(_ value: Double) { self.value = Mutex(value) }
        var now: Double { value.withLock { $0 } }
        func advance(_ seconds: Double) { value.withLock { $0 += seconds } }
        /// As the worker reads it.
        var server: ServerClock { ServerClock(monotonic: AnyClock(TestClock()), wall: { self.now }) }
    }

    @Test("a worker whose clock runs ahead of the holder's does not end a session the holder keeps: the record stays and the session is served")
    func clockAheadDoesNotEnd() async throws {
        let storeClock = Clock(1_000_000)
        let store = InMemorySessionManager(now: { storeClock.now })
        let workerClock = Clock(1_000_000)
        let sessions = TransportSessions(store: store, lifetime: 60, clock: workerClock.server)
        let created = try await sessions.create(principal: "alice", protocolVersion: "2025-11-25", clientName: "t", clientVersion: "1")

        // The worker's clock is two lifetimes ahead of the store's, which still keeps the session.
        workerClock.advance(120)
        let loaded = try await sessions.load(created.id, principal: "alice")
        #expect(loaded?.id == created.id)
        #expect(await store.record(TransportSessions.storageID(created.id)) != nil, "the record was not deleted")
    }

    @Test("a session its holder expired is unknown; one stored without a lifetime is ended by the worker's rule")
    func expiry() async throws {
        let clock = Clock(1_000_000)
        let store = InMemorySessionManager(now: { clock.now })
        let sessions = TransportSessions(store: store, lifetime: 60, clock: clock.server)
        let created = try await sessions.create(principal: "alice", protocolVersion: "2025-11-25", clientName: "t", clientVersion: "1")
        #expect(try await sessions.load(created.id, principal: "bob") == nil, "another principal's session is unknown")
        clock.advance(61)
        #expect(try await sessions.load(created.id, principal: "alice") == nil)

        // A record from before lifetimes: no expires_after of its own.
        let legacy = TransportSessions.newID()
        let metadata: JSONObject = ["kind": .string(TransportSessions.kind), "principal": "alice", "protocol_version": "2025-03-26"]
        try await store.write(TransportSessions.storageID(legacy), SessionUpdate(.updateMetadata(metadata), principal: "alice"))
        #expect(try await sessions.load(legacy, principal: "alice")?.protocolVersion == "2025-03-26")
        clock.advance(61)
        #expect(try await sessions.load(legacy, principal: "alice") == nil)
        #expect(await store.record(TransportSessions.storageID(legacy)) == nil, "the worker ended it")
    }
}
