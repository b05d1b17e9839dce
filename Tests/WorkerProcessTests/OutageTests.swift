import CurlHTTP
import Foundation
import HashRing
import SessionModel
import TestSupport
import Testing

/// A session's owner goes away while conversations go on: its runner-up holds their writes
/// (hinted handoff) and gives them back when the owner returns.
@Suite("Owner outages: one copy while the owner is away, every exchange back whole and in order")
struct OutageTests {
    static let repository = ["remote": "github", "repository": "acme/widgets", "branch": "main"]

    /// A conversation id whose stored record the ring gives to `owner`.
    static func conversation(ownedBy owner: String, in ring: HashRing, prefix: String) -> String {
        (0..<1_000).map { "\(prefix)-\($0)" }.first { ring.owner(of: "conv:local:\($0)") == owner }!
    }

    /// Asks `question` in `conversation` through `worker`, returning the answer's text.
    static func ask(_ question: String, _ conversation: String, through worker: WorkerHarness) async throws -> String {
        var client = MCPTestClient(base: worker.base)
        try await client.initialize()
        let result = try await client.callTool(
            "query_repository", ["query": question, "repositories": [repository], "session_id": conversation])
        #expect(!result.isError, "\(question): \(result.text)")
        return try #require(result.structured["message"] as? String, "\(question): \(result.text)")
    }

    /// Waits until the owner's history of `conversation` has `count` messages, and returns them.
    static func history(of conversation: String, at host: HostHarness, count: Int) async throws -> [Message] {
        try await eventually("the owner holds \(count) messages of \(conversation)", timeout: .seconds(30)) {
            let messages = try? await host.client().send(.get, "/sessions/conv:local:\(conversation)/history").decode(HostAPI.History.self).data
            return messages?.count == count ? messages : nil
        }
    }

    /// The history must be exactly the exchanges, in order: question, its answer, next question...
    static func expectExchanges(_ stored: [Message], _ exchanges: [(question: String, answer: String)]) {
        #expect(stored.map(\.role) == Array(repeating: [Role.user, .assistant], count: exchanges.count).flatMap { $0 })
        #expect(stored.map(\.content) == exchanges.flatMap { [$0.question, $0.answer] }, "every exchange whole, adjacent, in the order answered")
    }

    @Test(
        "owner paused (SIGSTOP): two workers continue one copy at the runner-up; a worker killed meanwhile loses nothing; the owner takes every exchange back")
    func pausedOwner() async throws {
        let stack = try await RingStack.start(hosts: 3, workers: 2, workerArguments: ["--host-timeout", "0.5"])
        let ownerName = "host-1"
        let conversation = Self.conversation(ownedBy: ownerName, in: stack.ring, prefix: "paused")
        let owner = stack.host(named: ownerName)
        let holder = stack.host(named: try #require(stack.ring.runnerUp(of: "conv:local:\(conversation)")))
        let (a, b) = (stack.workers[0], stack.workers[1])
        var exchanges: [(question: String, answer: String)] = []

        exchanges.append(("q1", try await Self.ask("q1", conversation, through: a)))
        owner.process.signal(SIGSTOP)
        // Alternating workers: each answer is given on the whole conversation so far.
        for (index, worker) in [a, b, a, b].enumerated() {
            let question = "q\(index + 2)"
            let answer = try await Self.ask(question, conversation, through: worker)
            #expect(answer.contains("after \(index + 1) earlier questions"), "\(question) through \(worker === a ? "a" : "b"): \(answer)")
            exchanges.append((question, answer))
        }
        #expect(a.logs.contains("held by its runner-up") && b.logs.contains("held by its runner-up"))
        #expect(!a.logs.contains("served from memory") && !b.logs.contains("served from memory"), "the runner-up held every call")
        let metrics = try await holder.client().send(.get, "/metrics").text
        #expect((metric(metrics, "host_held_writes_total") ?? 0) >= 4)

        // Worker a, which answered during the outage, dies; nothing it answered depended on it.
        a.process.signal(SIGKILL)
        _ = try await a.process.waitForExit()
        exchanges.append(("q6", try await Self.ask("q6", conversation, through: b)))

        owner.process.signal(SIGCONT)
        let stored = try await Self.history(of: conversation, at: owner, count: 2 * exchanges.count)
        Self.expectExchanges(stored, exchanges)
        // The owner serves the conversation again, on the whole history.
        let after = try await Self.ask("q7", conversation, through: b)
        #expect(after.contains("after 6 earlier questions"), "\(after)")
        #expect(owner.logs.contains("writes held elsewhere were merged"))
        #expect(owner.logs.contains("was not running for a while"), "the owner noticed its pause and asked what was held meanwhile")
        // The holder forgot what it handed back.
        try await eventually("the holder forgot the held writes") {
            try await holder.client().send(.get, "/hints?owner=\(ownerName)").object["ids"] as? [String] == []
        }
        await stack.stop()
    }

    @Test("owner killed (kill -9) and restarted: what its runner-up held is merged before it serves, and a worker stopped meanwhile loses nothing")
    func killedOwner() async throws {
        let stack = try await RingStack.start(hosts: 3, workers: 2, workerArguments: ["--host-timeout", "0.5"])
        let ownerName = "host-2"
        let conversation = Self.conversation(ownedBy: ownerName, in: stack.ring, prefix: "killed")
        let owner = stack.host(named: ownerName)
        let port = owner.port
        let (a, b) = (stack.workers[0], stack.workers[1])
        var exchanges: [(question: String, answer: String)] = []
        exchanges.append(("q1", try await Self.ask("q1", conversation, through: b)))
        exchanges.append(("q2", try await Self.ask("q2", conversation, through: a)))

        owner.process.signal(SIGKILL)
        _ = try await owner.process.waitForExit()
        for (index, worker) in [a, b, a].enumerated() {
            let question = "q\(index + 3)"
            let answer = try await Self.ask(question, conversation, through: worker)
            #expect(answer.contains("after \(index + 2) earlier questions"), "\(question): \(answer)")
            exchanges.append((question, answer))
        }
        // Worker a stops (SIGTERM) with nothing left behind: its writes are at the runner-up.
        await a.stop()
        #expect(!a.logs.contains("never reached their host"))

        try await owner.start(port: port)
        #expect(owner.logs.contains("writes held elsewhere wait to be merged"), "the owner asked what was held for it before serving")
        exchanges.append(("q6", try await Self.ask("q6", conversation, through: b)))
        #expect(exchanges.last!.answer.contains("after 5 earlier questions"), "\(exchanges.last!.answer)")
        let stored = try await Self.history(of: conversation, at: owner, count: 2 * exchanges.count)
        Self.expectExchanges(stored, exchanges)
        await stack.stop()
    }

    @Test("a holder does not start holding a session for an owner that came back and answers: the call goes back to the owner")
    func noCopyForAnOwnerThatAnswers() async throws {
        let stack = try await RingStack.start(hosts: 3, workers: 0)
        let ownerName = "host-3"
        let id = "conv:local:" + Self.conversation(ownedBy: ownerName, in: stack.ring, prefix: "returned")
        let owner = stack.host(named: ownerName)
        let holder = stack.host(named: try #require(stack.ring.runnerUp(of: id)))
        let hinted: HTTPHeaders = ["Hinted-For": ownerName]
        let write = SessionOperation.updateMetadata(["topic": "held"])

        // The owner asks what is held for it, as it does when it starts or finds it was paused;
        // the holder's probe of it succeeds (under a heavy load a probe may time out, and the
        // holder then asks for a seed: the owner asks again and so does the test).
        let refused = try await eventually("the holder refuses to hold for an owner that answers") {
            _ = try await holder.client().send(.get, "/hints?owner=\(ownerName)")
            let response = try await holder.client().send(.post, "/sessions/\(id)/update", json: write, headers: hinted)
            return response.status == 409 ? nil : response
        }
        #expect(refused.status == 503 && refused.errorCode == "hint_refused", "\(refused.status) \(refused.text)")
        #expect(try await holder.client().send(.get, "/hints?owner=\(ownerName)").object["ids"] as? [String] == [], "nothing held")

        // Paused, the owner does not answer: the holder asks for a seed and holds the session.
        owner.process.signal(SIGSTOP)
        let seedAsked = try await holder.client().send(.post, "/sessions/\(id)/update", json: write, headers: hinted)
        #expect(seedAsked.status == 409 && seedAsked.errorCode == "hint_seed_required", "\(seedAsked.status) \(seedAsked.text)")
        owner.process.signal(SIGCONT)
        await stack.stop()
    }
}
