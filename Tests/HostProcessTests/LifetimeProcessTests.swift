import CurlHTTP
import Foundation
import GRDB
import SessionModel
import TestSupport
import Testing

/// A write of `update` to `id`.
private func write(_ client: JSONClient, _ id: String, _ update: SessionUpdate) async throws -> HTTPResponse {
    try await client.send(.post, "/sessions/\(id)/update", json: update)
}

/// Bytes of the host's SQLite database as of its last commit: its pages, free ones included,
/// which is the file's size once the write-ahead log (bounded by checkpoints) is folded in.
private func databaseBytes(_ host: HostHarness) throws -> Int {
    let database = try DatabaseQueue(path: "\(host.dataPath)/sessions.sqlite")
    defer { try? database.close() }
    return try database.read { db in
        (try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0) * (try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0)
    }
}

@Suite("durable-host: sessions that expire, a principal's data deleted, listings, as real processes")
struct LifetimeProcessTests {
    @Test(
        "an expired session answers exactly like one that never existed, and the sweep deletes it; counted in /health and /metrics",
        arguments: StorageBackend.allCases)
    func expiry(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend, arguments: ["--retention", "2", "--expiry-interval", "0.2"])
        try await host.startServing()
        let client = host.client()
        for index in 0..<5 {
            #expect(
                try await write(
                    client, "mcp-\(index)", SessionUpdate(.updateMetadata(["kind": "t"]), principal: "alice", expiresAfter: 0.5)
                ).status == 200)
        }
        _ = try await write(client, "conv:alice:1", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "q")), principal: "alice"))
        _ = try await write(client, "kept", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "q")), expiresAfter: 0))
        try await eventually("the sweep deleted the six that expired", timeout: .seconds(20)) {
            (try? await client.send(.get, "/health").object["expired_since_start"] as? Int) == 6
        }
        let never = try await client.send(.get, "/sessions/never-written/history")
        for id in ["mcp-0", "conv:alice:1"] {
            let history = try await client.send(.get, "/sessions/\(id)/history")
            #expect(history.status == never.status && history.body == never.body, "\(id) reads as a session that never existed")
            #expect(try await client.send(.get, "/sessions/\(id)").errorCode == "session_not_found")
        }
        #expect(try await client.send(.get, "/sessions/kept/history").decode(HostAPI.History.self).data.count == 1)
        let health = try await client.send(.get, "/health").object
        #expect(health["sessions_stored"] as? Int == 1)
        #expect(health["retention_seconds"] as? Double == 2)
        let metrics = try await client.send(.get, "/metrics").text
        #expect(metric(metrics, "host_sessions_expired_total") == 6)
        if let cluster {
            #expect(try cluster.query("SELECT count(*) FROM sessions") == "1")
            #expect(try cluster.query("SELECT count(*) FROM messages") == "1")
        }
        await host.stop()
        await cluster?.stop()
    }

    @Test("a day of short-lived sessions (a third of a second each, here): the sessions stored and the file stay bounded")
    func churnStaysBounded() async throws {
        // What is measured is what the sweep leaves, not durability: `normal` spares the test
        // the machine's fsync latency, which a whole suite beside it makes erratic.
        let host = HostHarness(arguments: ["--expiry-interval", "0.1", "--synchronous", "normal"])
        try await host.startServing()
        let client = host.client()
        var stored: [Int] = []
        var sizes: [Int] = []
        var created = 0
        // The same churn three times over: a bounded store is no larger after the third.
        for _ in 0..<3 {
            for _ in 0..<20 {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<20 {
                        let id = "mcp-\(UUID().uuidString.lowercased())"
                        group.addTask {
                            let session = SessionUpdate(.updateMetadata(["kind": "mcp-transport"]), principal: "a", expiresAfter: 0.3)
                            let event = SessionUpdate(
                                .appendMessage(MessageInput(role: .system, content: String(repeating: "e", count: 400))), principal: "a", expiresAfter: 0.3)
                            _ = try? await write(client, id, session)
                            _ = try? await write(client, "\(id)~events", event)
                        }
                    }
                }
                created += 40
                stored.append((try? await client.send(.get, "/health").object["sessions_stored"] as? Int) ?? -1)
            }
            sizes.append(try databaseBytes(host))
        }
        print("churn: \(created) sessions created, at most \(stored.max() ?? 0) stored at once, database \(sizes) bytes after each third")
        // Each session lives a third of a second and the sweep comes every tenth: a second's worth at most.
        #expect(stored.max() ?? .max < created * 6 / 10, "stored sessions stayed bounded: \(stored.max() ?? -1) of \(created) created")
        #expect(sizes[2] <= sizes[0] * 3 / 2 + 256 * 1024, "the database did not keep growing: \(sizes)")
        await host.stop()
    }

    @Test(
        "DELETE /principals/{name} deletes every session of that principal, says how many, and spares the others",
        arguments: StorageBackend.allCases)
    func erasePrincipal(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend)
        try await host.startServing()
        let client = host.client()
        for index in 0..<4 {
            _ = try await write(client, "conv:alice:\(index)", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "q")), principal: "alice"))
        }
        _ = try await write(client, "mcp-a", SessionUpdate(.updateMetadata(["kind": "t"]), principal: "alice", expiresAfter: 3_600))
        _ = try await write(client, "conv:bob:0", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "bob's")), principal: "bob"))
        let answer = try await client.send(.delete, "/principals/alice")
        #expect(answer.status == 200)
        #expect(try answer.decode(HostAPI.Erasure.self).removed == 5)
        for id in ["conv:alice:0", "conv:alice:3", "mcp-a"] {
            #expect(try await client.send(.get, "/sessions/\(id)").errorCode == "session_not_found")
        }
        #expect(try await client.send(.get, "/sessions/conv:bob:0/history").decode(HostAPI.History.self).data.map(\.content) == ["bob's"])
        #expect(try await client.send(.delete, "/principals/alice").decode(HostAPI.Erasure.self).removed == 0)
        if let cluster { #expect(try cluster.query("SELECT count(*) FROM sessions WHERE principal = 'alice'") == "0") }
        await host.stop()
        await cluster?.stop()
    }

    @Test(
        "GET /sessions lists a principal's sessions newest first, page by page, and says what it covers",
        arguments: StorageBackend.allCases)
    func listing(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend)
        try await host.startServing()
        let client = host.client()
        for index in 0..<5 {
            _ = try await write(
                client, "conv:alice:\(index)",
                SessionUpdate(.appendMessages([MessageInput(role: .user, content: "q\(index)")], metadata: ["title": .string("q\(index)")]), principal: "alice")
            )
        }
        _ = try await write(client, "conv:bob:0", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "q")), principal: "bob"))
        let first = try await client.send(.get, "/sessions?principal=alice&prefix=conv:&limit=3").decode(HostAPI.Listing.self)
        #expect(first.data.map(\.id) == ["conv:alice:4", "conv:alice:3", "conv:alice:2"])
        #expect(first.data.first?.metadata == ["title": "q4"])
        #expect(first.scope == (backend == .postgres ? .everyHost : .thisHost))
        let next = try #require(first.next)
        let rest = try await client.send(.get, "/sessions?principal=alice&prefix=conv:&limit=3&before=\(next)").decode(HostAPI.Listing.self)
        #expect(rest.data.map(\.id) == ["conv:alice:1", "conv:alice:0"])
        #expect(rest.next == nil)
        await host.stop()
        await cluster?.stop()
    }
}
