import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

/// Keys of two principals and an operator, for workers that check them.
enum TeamKeys {
    static let alice = "alice-key-0123456789abcdef"
    static let bob = "bob-key-0123456789abcdefgh"
    static let admin = "operator-key-0123456789abcdef"
    static let environment = ["MCP_WORKER_API_KEYS": "alice:\(alice),bob:\(bob)", "MCP_WORKER_ADMIN_KEY": admin]

    static func client(_ base: String, key: String) -> JSONClient {
        JSONClient(base: base, headers: ["Authorization": "Bearer \(key)"])
    }
}

extension MCPTestClient {
    /// Asks `query` in conversation `session`; the answer's text.
    func ask(_ query: String, in session: String) async throws -> String {
        let result = try await callTool(
            "query_repository", ["query": query, "repositories": [WorkerStack.repository], "session_id": session, "genius": false])
        guard !result.isError else { throw ServiceProcess.Failure(description: "query_repository failed: \(result.text)") }
        return result.structured["message"] as? String ?? ""
    }
}

/// Every session a host lists for `principal` (SQLite: what that host stores).
private func listed(_ host: HostHarness, principal: String) async throws -> [String] {
    try await host.client().send(.get, "/sessions?principal=\(principal)&limit=500").decode(HostAPI.Listing.self).data.map(\.id)
}

/// The JSON Lines an export answered.
private func lines(_ response: HTTPResponse) -> [String] {
    response.text.split(separator: "\n").map(String.init)
}

@Suite("mcp-worker: transport sessions that expire, a principal's data deleted, conversations exported and imported")
struct LifetimeWorkerTests {
    @Test("an abandoned MCP session is deleted by its host after session_lifetime; one in use lives on")
    func transportSessionsExpire() async throws {
        // Twenty seconds: long enough that a machine loaded by a whole suite, which has stalled
        // these processes for ten, still renews the session in use (a write per tenth of it) in time.
        let stack = try await WorkerStack.start(workerArguments: ["--session-lifetime", "20"], hostArguments: ["--expiry-interval", "0.2"])
        let host = try #require(stack.host).client()
        let abandoned = try await stack.session()
        let record = try await host.send(.get, "/sessions/mcp-\(try #require(abandoned.sessionID))").decode(HostAPI.Record.self).data
        #expect(record.principal == "local" && record.expiresAfter == 20, "the host knows whose it is and how long it lives")
        var used = try await stack.session()
        let until = ContinuousClock.now + .seconds(23)
        while ContinuousClock.now < until {
            _ = try await used.request("ping")
            try await Task.sleep(for: .milliseconds(100))
        }
        try await eventually("the host deleted the abandoned session") {
            try await host.send(.get, "/sessions/mcp-\(abandoned.sessionID!)").errorCode == "session_not_found"
        }
        #expect(try await abandoned.post(#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#).status == 404, "the worker answers 404 for it")
        #expect(try await used.request("ping")["result"] != nil, "a session in use renews itself")
        #expect((try await host.send(.get, "/health").object["expired_since_start"] as? Int ?? 0) >= 1)
        used.sessionID = nil
        await stack.stop()
    }

    @Test("DELETE /admin/principals/{name} removes a principal's conversations and sessions from every host, says how many, and spares the others")
    func deleteAPrincipalAcrossHosts() async throws {
        let stack = try await RingStack.start(hosts: 3, workers: 1, workerEnvironment: TeamKeys.environment)
        let worker = stack.workers[0].base
        var alice = MCPTestClient(base: worker, apiKey: TeamKeys.alice)
        try await alice.initialize()
        var bob = MCPTestClient(base: worker, apiKey: TeamKeys.bob)
        try await bob.initialize()
        for index in 0..<6 { _ = try await alice.ask("question \(index)", in: "thread-\(index)") }
        for index in 0..<2 { _ = try await bob.ask("bob's question \(index)", in: "thread-\(index)") }
        // Usage is written every second: wait for the day's record of each principal.
        var aliceRecords: [String] = []
        try await eventually("alice's and bob's usage are written") {
            var alice: [String] = []
            var bob: [String] = []
            for host in stack.hosts {
                alice += try await listed(host, principal: "alice")
                bob += try await listed(host, principal: "bob")
            }
            aliceRecords = alice
            return alice.count == 8 && bob.count == 4
        }
        #expect(aliceRecords.count == 8, "six conversations, a transport session and a day of usage, spread over the hosts: \(aliceRecords)")
        #expect(Set(stack.hosts.map(\.node)).count == 3)

        let refused = try await TeamKeys.client(worker, key: TeamKeys.bob).send(.delete, "/admin/principals/alice")
        #expect(refused.status == 403, "a client deletes only its own data: \(refused.text)")
        let answer = try await TeamKeys.client(worker, key: TeamKeys.admin).send(
            .delete, "/admin/principals/alice", headers: ["X-Request-ID": "erase-alice_1"])
        #expect(answer.status == 200, "\(answer.text)")
        // The request's id went on to every host, whose log line of the deletion carries it.
        for host in stack.hosts {
            #expect(
                host.logs.split(separator: "\n").contains { $0.contains("a principal's data deleted") && $0.contains("request_id=erase-alice_1") },
                "\(host.logs)")
        }
        #expect(answer.object["removed"] as? Int == 8)
        #expect(answer.object["complete"] as? Bool == true)
        for host in stack.hosts {
            #expect(try await listed(host, principal: "alice").isEmpty, "\(host.node) still holds some of alice's sessions")
        }
        let exported = try await TeamKeys.client(worker, key: TeamKeys.admin).send(.get, "/admin/export?principal=alice")
        #expect(exported.status == 200 && exported.body.isEmpty, "nothing of alice's is left to export: \(exported.text)")
        var bobRecords: [String] = []
        for host in stack.hosts { bobRecords += try await listed(host, principal: "bob") }
        #expect(bobRecords.count == 4, "bob's two conversations, session and usage are untouched")
        #expect(try await alice.post(#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#).status == 404, "alice's MCP session is gone too")
        #expect(try await bob.ask("still here?", in: "thread-0").contains("after 1 earlier questions"))
        let own = try await TeamKeys.client(worker, key: TeamKeys.bob).send(.delete, "/admin/principals/bob")
        #expect(own.status == 200 && own.object["removed"] as? Int == 4, "a client may delete its own: \(own.text)")
        await stack.stop()
    }

    @Test("export → an empty cluster → import gives identical records; importing again changes nothing; bad lines are named")
    func exportAndImport() async throws {
        let source = try await RingStack.start(hosts: 2, workers: 1, workerEnvironment: TeamKeys.environment)
        var alice = MCPTestClient(base: source.workers[0].base, apiKey: TeamKeys.alice)
        try await alice.initialize()
        var bob = MCPTestClient(base: source.workers[0].base, apiKey: TeamKeys.bob)
        try await bob.initialize()
        for index in 0..<4 {
            _ = try await alice.ask("how does part \(index) work?", in: "a-\(index)")
            _ = try await alice.ask("and its tests?", in: "a-\(index)")
        }
        _ = try await bob.ask("where is main?", in: "b-0")
        let operatorClient = TeamKeys.client(source.workers[0].base, key: TeamKeys.admin)
        let everything = try await operatorClient.send(.get, "/admin/export")
        #expect(everything.headers["Content-Type"] == "application/x-ndjson")
        let exported = lines(everything)
        #expect(exported.count == 5, "\(everything.text.prefix(500))")
        let aliceOnly = lines(try await TeamKeys.client(source.workers[0].base, key: TeamKeys.alice).send(.get, "/admin/export"))
        #expect(aliceOnly.count == 4 && aliceOnly.allSatisfy { $0.contains(#""principal":"alice""#) })
        #expect(try await TeamKeys.client(source.workers[0].base, key: TeamKeys.alice).send(.get, "/admin/export?principal=bob").status == 403)
        let one = lines(try await operatorClient.send(.get, "/admin/export?principal=alice&session=a-2"))
        #expect(one.count == 1 && one.first?.contains(#""id":"conv:alice:a-2""#) == true)
        let record = try JSONDecoder().decode(SessionRecord.self, from: Data(try #require(one.first).utf8))
        #expect(record.messages.map(\.role) == [.user, .assistant, .user, .assistant] && record.metadata["title"] == "how does part 2 work?")

        let target = try await RingStack.start(hosts: 3, workers: 1, workerEnvironment: TeamKeys.environment)
        let importer = TeamKeys.client(target.workers[0].base, key: TeamKeys.admin)
        let body = exported.joined(separator: "\n") + "\n"
        let first = try await importer.send(.post, "/admin/import", body: Data(body.utf8), headers: ["Content-Type": "application/x-ndjson"])
        #expect(first.status == 200 && first.object["imported"] as? Int == 5 && first.object["unchanged"] as? Int == 0, "\(first.text)")
        let reexported = lines(try await importer.send(.get, "/admin/export"))
        #expect(Set(reexported) == Set(exported), "the records came back byte for byte")
        let again = try await importer.send(.post, "/admin/import", body: Data(body.utf8), headers: ["Content-Type": "application/x-ndjson"])
        #expect(again.object["imported"] as? Int == 0 && again.object["unchanged"] as? Int == 5, "\(again.text)")
        #expect(Set(lines(try await importer.send(.get, "/admin/export"))) == Set(exported), "a repeated import changed nothing")

        // What cannot be imported is named by its line; the rest goes in.
        var changed = record
        changed.messages.removeLast()
        let mixed = [
            "{not json", #"{"id":"mcp-0123","messages":[],"created_at":1,"last_updated":1}"#,
            String(decoding: try JSONEncoder().encode(changed), as: UTF8.self),
            #"{"id":"conv:carol:c-1","messages":[{"role":"user","content":"hi","timestamp":5}],"metadata":{"kind":"conversation"},"created_at":5,"last_updated":5}"#,
        ].joined(separator: "\n")
        let report = try await importer.send(.post, "/admin/import", body: Data(mixed.utf8), headers: ["Content-Type": "application/x-ndjson"])
        #expect(report.object["imported"] as? Int == 1, "\(report.text)")
        let refusals = (report.object["refused"] as? [[String: Any]]) ?? []
        #expect(refusals.compactMap { $0["line"] as? Int } == [1, 2, 3], "\(report.text)")
        #expect((refusals.last?["reason"] as? String)?.contains("a different conversation is stored") == true)
        #expect(try await TeamKeys.client(target.workers[0].base, key: TeamKeys.alice).send(.post, "/admin/import", body: Data(body.utf8)).status == 403)

        // The imported conversation goes on where it was.
        var continued = MCPTestClient(base: target.workers[0].base, apiKey: TeamKeys.alice)
        try await continued.initialize()
        #expect(try await continued.ask("one more", in: "a-1").contains("after 2 earlier questions"))
        await source.stop()
        await target.stop()
    }
}
