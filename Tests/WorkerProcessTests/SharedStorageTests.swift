import CurlHTTP
import Foundation
import HashRing
import SessionModel
import TestSupport
import Testing

/// Hosts on one PostgreSQL database: a real server started by the test, hosts and workers
/// as processes.
struct SharedStack {
    let cluster: PostgresCluster
    let standIn: UpstreamStandIn
    let hosts: [HostHarness]
    let workers: [WorkerHarness]
    let seeds: [String]

    /// `hosts` hosts named host-1... on their own ports, all on one new database, and
    /// `workers` workers given every host as a seed.
    static func start(
        hosts count: Int, workers workerCount: Int, hostArguments: [String] = [], workerArguments: [String] = []
    ) async throws
        -> SharedStack
    {
        let cluster = try await PostgresCluster.start()
        let standIn = try await UpstreamStandIn.startIndexed()
        let ports = (1...count).map { _ in freeLoopbackPort() }
        let hosts = ports.indices.map { HostHarness.onDatabase(cluster, node: "host-\($0 + 1)", arguments: hostArguments) }
        // Started together: the migrations must be applied once, whoever comes first.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (host, port) in zip(hosts, ports) { group.addTask { try await host.startServing(port: port) } }
            try await group.waitForAll()
        }
        let seeds = zip(hosts, ports).map { "\($0.node)=127.0.0.1:\($1)" }
        var workers: [WorkerHarness] = []
        for _ in 0..<workerCount {
            let worker = WorkerHarness(arguments: workerArguments, environment: standIn.workerEnvironment)
            try await worker.start(hosts: seeds)
            workers.append(worker)
        }
        let stack = SharedStack(cluster: cluster, standIn: standIn, hosts: hosts, workers: workers, seeds: seeds)
        try await stack.waitForRing(members: hosts.map(\.node))
        return stack
    }

    func host(named name: String) -> HostHarness { hosts.first { $0.node == name }! }

    /// The ring as a live host serves it.
    func ring(from host: HostHarness) async throws -> RingInfo {
        try await host.client().send(.get, "/ring").decode(RingInfo.self)
    }

    /// Waits until every host in `members` serves a ring of exactly those members.
    func waitForRing(members: [String], timeout: Duration = .seconds(30)) async throws {
        try await eventually("every host serves a ring of \(members)", timeout: timeout) {
            for name in members {
                guard let ring = try? await ring(from: host(named: name)), ring.members.map(\.name) == members.sorted() else { return false }
            }
            return true
        }
    }

    /// A session's messages, read straight from the database.
    func storedMessages(_ id: String) throws -> [String] {
        let text = try cluster.query("SELECT role || ':' || encode(content, 'hex') FROM messages WHERE session_id = '\(id)' ORDER BY seq")
        return text.split(separator: "\n").map { line in
            let parts = line.split(separator: ":", maxSplits: 1)
            let hex = Array((parts.count > 1 ? parts[1] : "").utf8)
            let bytes = stride(from: 0, to: hex.count - 1, by: 2).compactMap { UInt8(String(decoding: hex[$0...$0 + 1], as: UTF8.self), radix: 16) }
            return "\(parts.first ?? ""): \(String(decoding: bytes, as: UTF8.self))"
        }
    }

    func stop() async {
        for worker in workers { await worker.stop() }
        for host in hosts { await host.stop() }
        await standIn.stop()
        await cluster.stop()
    }
}

/// One conversation's acknowledged exchanges, and when each was answered.
final class ConversationLog: Sendable {
    let id: String
    private let exchanges = Mutexed<[(question: String, answer: String, at: ContinuousClock.Instant)]>([])
    private let failures = Mutexed(0)

    init(id: String) { self.id = id }

    var acknowledged: [(question: String, answer: String, at: ContinuousClock.Instant)] { exchanges.get() }
    var failed: Int { failures.get() }

    /// Asks turn after turn until `stop` is set, alternating workers.
    func run(_ workers: [WorkerHarness], stop: Mutexed<Bool>) async {
        var turn = 0
        while !stop.get() {
            turn += 1
            let worker = workers[turn % workers.count]
            let question = "\(id) q\(turn)"
            do {
                var client = MCPTestClient(base: worker.base)
                try await client.initialize()
                let result = try await client.callTool(
                    "query_repository",
                    ["query": question, "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]], "session_id": id])
                if !result.isError, let answer = result.structured["message"] as? String {
                    exchanges.update { $0.append((question, answer, .now)) }
                } else {
                    failures.update { $0 += 1 }
                }
            } catch {
                failures.update { $0 += 1 }
            }
        }
    }

    /// The stored history must be exactly the acknowledged exchanges, in order.
    func expectStored(in stack: SharedStack) throws {
        let stored = try stack.storedMessages("conv:local:\(id)")
        let expected = acknowledged.flatMap { ["user: \($0.question)", "assistant: \($0.answer)"] }
        #expect(stored == expected, "\(id): \(stored.count) messages stored for \(expected.count) acknowledged")
    }
}

@Suite("Hosts on one PostgreSQL database: failover, fencing, a database restart, hosts joining and leaving")
struct SharedStorageTests {
    /// Waits until the workers have nothing left to replay, so that every answer they gave is stored.
    static func drainWorkers(_ workers: [WorkerHarness]) async throws {
        for worker in workers where worker.process.exitStatus == nil {
            try await eventually("\(worker.base) replayed its writes", timeout: .seconds(30)) {
                let health = try await JSONClient(base: worker.base).send(.get, "/health").object
                return (health["sessions"] as? [String: Any])?["pending_replays"] as? Int == 0
            }
        }
    }

    @Test("three hosts, a load of conversations, kill -9 of one: nothing acknowledged lost or doubled, every session served again, and how long that took")
    func killOneHost() async throws {
        let stack = try await SharedStack.start(hosts: 3, workers: 2)
        let ring = try await stack.ring(from: stack.hosts[0]).membership
        let conversations = (0..<12).map { ConversationLog(id: "failover-\($0)") }
        let stop = Mutexed(false)
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for conversation in conversations { group.addTask { await conversation.run(stack.workers, stop: stop) } }
            }
        }
        try await eventually("every conversation answered twice", timeout: .seconds(60)) { conversations.allSatisfy { $0.acknowledged.count >= 2 } }

        let victim = stack.host(named: "host-2")
        let moved = conversations.filter { ring.owner(of: "conv:local:\($0.id)")?.name == victim.node }
        victim.process.signal(SIGKILL)
        let killed = ContinuousClock.now
        _ = try await victim.process.waitForExit()
        try await stack.waitForRing(members: ["host-1", "host-3"])
        try await eventually("every conversation answered twice more after the kill", timeout: .seconds(60)) {
            conversations.allSatisfy { $0.acknowledged.filter { $0.at > killed }.count >= 2 }
        }
        stop.set(true)
        await load.value
        try await Self.drainWorkers(stack.workers)

        for conversation in conversations { try conversation.expectStored(in: stack) }
        #expect(!moved.isEmpty, "some conversations were the killed host's")
        let failover = moved.compactMap { conversation in conversation.acknowledged.first { $0.at > killed }.map { ($0.at - killed).inSeconds } }
        let sorted = failover.sorted()
        try #require(sorted.count == moved.count, "every moved conversation was written again after the kill")
        print("kill -9 failover: \(moved.count) sessions moved; first write after the kill: median \(sorted[sorted.count / 2]) s, worst \(sorted.last!) s")
        print("acknowledged turns: \(conversations.map(\.acknowledged.count).reduce(0, +)); failed calls: \(conversations.map(\.failed).reduce(0, +))")
        await stack.stop()
    }

    @Test("fencing: an owner paused past its lease, with a write queued, never commits it; the host that took its sessions over writes, and nothing forks")
    func pausedOwnerIsFencedOff() async throws {
        let cluster = try await PostgresCluster.start()
        // While the gate file exists, host-a holds each batch before its commit: w2 is caught
        // queued on it, however slow the machine, until the gate opens after host-a is fenced.
        let gates = TemporaryDirectory("gate")
        let gate = gates.file("closed")
        let a = HostHarness.onDatabase(cluster, node: "host-a", arguments: ["--commit-gate", gate], product: HostHarness.holdingCommits)
        let b = HostHarness.onDatabase(cluster, node: "host-b")
        try await a.startServing()
        try await b.startServing()
        try await eventually("both hosts serve a ring of both") {
            for host in [a, b] {
                guard (try? await host.client().send(.get, "/ring").decode(RingInfo.self))?.members.count == 2 else { return false }
            }
            return true
        }
        let ring = try await b.client().send(.get, "/ring").decode(RingInfo.self).membership
        let id = (0..<1_000).map { "fenced-\($0)" }.first { ring.owner(of: $0)?.name == "host-a" }!
        func append(_ host: HostHarness, _ content: String) async throws -> HTTPResponse {
            try await host.client().send(
                .post, "/sessions/\(id)/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: content)),
                timeout: .seconds(60))
        }
        #expect(try await append(a, "w1").status == 200)
        #expect(FileManager.default.createFile(atPath: gate, contents: nil))

        // w2 reaches host-a's committer, which holds it at the gate; then host-a stops.
        let queued = Task { try await append(a, "w2 (queued on the paused owner)") }
        try await eventually("w2 is held in host-a's committer") { a.logs.contains("holding a batch at the commit gate") }
        a.process.signal(SIGSTOP)
        try await eventually("host-b drops host-a from the ring") {
            (try? await b.client().send(.get, "/ring").decode(RingInfo.self))?.members.map(\.name) == ["host-b"]
        }
        #expect(try await append(b, "w3").status == 200)
        #expect(try await append(b, "w4").status == 200)

        try FileManager.default.removeItem(atPath: gate)
        a.process.signal(SIGCONT)
        let late = try await queued.value
        #expect(late.status == 503, "the paused owner's queued write was answered \(late.status): \(late.text)")
        // Refused in the database's transaction, or before it if the lease was already taken away.
        #expect(
            a.logs.contains("lease expired or its ring changed") || a.logs.contains("error=this host holds no lease"), "the fence refused the commit")
        let stored = try cluster.query("SELECT convert_from(content, 'UTF8') FROM messages WHERE session_id = '\(id)' ORDER BY seq")
        #expect(stored.split(separator: "\n") == ["w1", "w3", "w4"], "one history, without the fenced write")

        // host-a rejoins with a new incarnation, takes its sessions back, and serves them as stored.
        try await eventually("host-a is back in the ring", timeout: .seconds(30)) {
            (try? await b.client().send(.get, "/ring").decode(RingInfo.self))?.members.count == 2
        }
        try await eventually("host-a serves the session again", timeout: .seconds(30)) {
            (try? await append(a, "w5").status) == 200
        }
        let history = try await a.client().send(.get, "/sessions/\(id)/history").decode(HostAPI.History.self).data.map(\.content)
        #expect(history == ["w1", "w3", "w4", "w5"])
        print("fencing: the paused owner's queued write was answered \(late.status) and never committed; stored: \(history)")
        await a.stop()
        await b.stop()
        await cluster.stop()
    }

    @Test(
        "the database restarted under load: writes fail fast with 503, a worker answers from memory meanwhile, and everything resumes with every acknowledged write there"
    )
    func databaseRestart() async throws {
        let stack = try await SharedStack.start(hosts: 2, workers: 1, hostArguments: ["--storage-timeout", "1"])
        let ring = try await stack.ring(from: stack.hosts[0]).membership
        let ids = (0..<8).map { "db-restart-\($0)" }
        let acknowledged = Mutexed<[String: [String]]>([:])
        let outageAnswers = Mutexed<[Int]>([])
        let clientTimeouts = Mutexed(0)
        let outage = Mutexed(false)
        let stop = Mutexed(false)
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for id in ids {
                    group.addTask {
                        var index = 0
                        while !stop.get() {
                            index += 1
                            let content = "\(id)-\(index)"
                            let owner = stack.host(named: ring.owner(of: id)!.name)
                            do {
                                let response = try await owner.client().send(
                                    .post, "/sessions/\(id)/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: content)),
                                    timeout: .seconds(10))
                                if response.status == 200 {
                                    acknowledged.update { $0[id, default: []].append(content) }
                                } else if outage.get() {
                                    outageAnswers.update { $0.append(response.status) }
                                }
                            } catch {
                                clientTimeouts.update { $0 += 1 }
                            }
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                    }
                }
            }
        }
        var client = MCPTestClient(base: stack.workers[0].base)
        try await client.initialize()
        try await eventually("writes flow", timeout: .seconds(60)) { acknowledged.get().values.map(\.count).reduce(0, +) > 50 }
        outage.set(true)
        await stack.cluster.stopServer(immediate: true)
        try await eventually("the hosts answer 503 while the database is down", timeout: .seconds(60)) { outageAnswers.get().count > 10 }
        // A conversation turn meanwhile: answered from the worker's memory, stored once the database is back.
        let turn = Task {
            try await client.callTool(
                "query_repository",
                ["query": "during", "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]], "session_id": "db-turn"])
        }
        try await stack.cluster.startServer()
        outage.set(false)
        let resumed = acknowledged.get().values.map(\.count).reduce(0, +)
        try await eventually("writes flow again", timeout: .seconds(60)) { acknowledged.get().values.map(\.count).reduce(0, +) > resumed + 50 }
        stop.set(true)
        await load.value
        let during = try await turn.value
        #expect(!during.isError, "\(during.text)")

        #expect(outageAnswers.get().allSatisfy { $0 == 503 }, "while the database was down: \(Set(outageAnswers.get()))")
        print(
            "database restart: \(acknowledged.get().values.map(\.count).reduce(0, +)) writes acknowledged, \(outageAnswers.get().count) answered 503 while it was down, \(clientTimeouts.get()) hung"
        )
        #expect(clientTimeouts.get() == 0, "no request hung until the client gave up")
        for id in ids {
            let stored = try stack.cluster.query("SELECT convert_from(content, 'UTF8') FROM messages WHERE session_id = '\(id)' ORDER BY seq")
                .split(separator: "\n").map(String.init)
            #expect(stored == acknowledged.get()[id] ?? [], "\(id): every acknowledged write, once, in order")
        }
        try await Self.drainWorkers(stack.workers)
        let stored = try stack.storedMessages("conv:local:db-turn")
        #expect(stored.first == "user: during" && stored.count == 2, "the turn answered during the outage reached the database: \(stored)")
        await stack.stop()
    }

    @Test("a host added and one stopped under a load of conversations, with no script: every acknowledged turn once, in order")
    func hostsJoinAndLeave() async throws {
        let stack = try await SharedStack.start(hosts: 2, workers: 2)
        let conversations = (0..<10).map { ConversationLog(id: "membership-\($0)") }
        let stop = Mutexed(false)
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for conversation in conversations { group.addTask { await conversation.run(stack.workers, stop: stop) } }
            }
        }
        try await eventually("every conversation answered twice", timeout: .seconds(60)) { conversations.allSatisfy { $0.acknowledged.count >= 2 } }
        let joining = HostHarness.onDatabase(stack.cluster, node: "host-3")
        try await joining.startServing()
        try await eventually("host-3 joined every host's ring", timeout: .seconds(60)) {
            for host in stack.hosts + [joining] {
                guard (try? await host.client().send(.get, "/ring").decode(RingInfo.self))?.members.count == 3 else { return false }
            }
            return true
        }
        let joined = ContinuousClock.now
        try await eventually("every conversation answered twice after the join", timeout: .seconds(60)) {
            conversations.allSatisfy { $0.acknowledged.filter { $0.at > joined }.count >= 2 }
        }
        // host-1 leaves (SIGTERM): it gives its lease up, and its sessions move at once.
        await stack.hosts[0].stop()
        #expect(stack.hosts[0].logs.contains("left the ring's members"))
        let left = ContinuousClock.now
        try await eventually("every conversation answered twice after host-1 left", timeout: .seconds(60)) {
            conversations.allSatisfy { $0.acknowledged.filter { $0.at > left }.count >= 2 }
        }
        stop.set(true)
        await load.value
        try await Self.drainWorkers(stack.workers)
        for conversation in conversations { try conversation.expectStored(in: stack) }
        await joining.stop()
        await stack.stop()
    }
}
