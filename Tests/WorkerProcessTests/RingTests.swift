import CurlHTTP
import Foundation
import HashRing
import SessionModel
import TestSupport
import Testing

/// Several hosts sharing the id space, and workers routing by the same ring.
struct RingStack {
    let standIn: UpstreamStandIn
    let hosts: [HostHarness]
    let workers: [WorkerHarness]
    let members: [String]

    /// `hosts` hosts named host-1... on free ports, all with the same `--peers`; `workers` workers.
    static func start(
        hosts count: Int, workers workerCount: Int, ringVersion: Int = 1, workerArguments: [String] = [], workerEnvironment: [String: String] = [:]
    ) async throws -> RingStack {
        let standIn = try await UpstreamStandIn.startIndexed()
        let ports = (1...count).map { _ in freeLoopbackPort() }
        let members = ports.enumerated().map { "host-\($0.offset + 1)=127.0.0.1:\($0.element)" }
        var hosts: [HostHarness] = []
        for (index, port) in ports.enumerated() {
            let host = HostHarness(
                node: "host-\(index + 1)", arguments: ["--peers", members.joined(separator: ","), "--ring-version", "\(ringVersion)"])
            try await host.start(port: port)
            hosts.append(host)
        }
        var workers: [WorkerHarness] = []
        for _ in 0..<workerCount {
            let worker = WorkerHarness(
                arguments: ["--ring-version", "\(ringVersion)"] + workerArguments, environment: standIn.workerEnvironment.merging(workerEnvironment) { $1 })
            try await worker.start(hosts: members)
            workers.append(worker)
        }
        return RingStack(standIn: standIn, hosts: hosts, workers: workers, members: members)
    }

    var ring: HashRing { HashRing(nodes: hosts.map(\.node)) }

    func host(named name: String) -> HostHarness { hosts.first { $0.node == name }! }

    func stop() async {
        for worker in workers { await worker.stop() }
        for host in hosts { await host.stop() }
        await standIn.stop()
    }
}

@Suite("Many durable hosts: every id on its owner, 421 for the others, workers that recover")
struct RingTests {
    @Test("1,000 sessions created through two workers land on their owners, and only there")
    func sessionsLandOnTheirOwners() async throws {
        let stack = try await RingStack.start(hosts: 3, workers: 2)
        // 1,000 transport sessions, alternately through each worker, 50 at a time.
        var ids: [String] = []
        for batch in 0..<20 {
            let created = try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<50 {
                    let worker = stack.workers[(batch * 50 + index) % 2]
                    group.addTask {
                        var client = MCPTestClient(base: worker.base)
                        try await client.initialize()
                        return client.sessionID!
                    }
                }
                var created: [String] = []
                for try await id in group { created.append(id) }
                return created
            }
            ids += created
        }
        #expect(Set(ids).count == 1000)

        // Owners as an independent implementation of the placement computes them, not ours.
        let placements = try await IndependentRing.placements(of: ids.map { "mcp-\($0)" }, nodes: stack.hosts.map(\.node))
        let owners = placements.mapValues(\.owner)
        let disagreeing = ids.filter { stack.ring.owner(of: "mcp-\($0)") != owners["mcp-\($0)"] }
        #expect(disagreeing.isEmpty, "HashRing places \(disagreeing.count) of 1,000 ids elsewhere than ring_owners.py")

        // Each host's own store holds exactly the ids the ring gives it.
        var expected: [String: Int] = [:]
        for id in ids { expected[owners["mcp-\(id)"]!, default: 0] += 1 }
        for host in stack.hosts {
            let health = try await host.client().send(.get, "/health").object
            #expect(health["sessions_stored"] as? Int == expected[host.node], "\(host.node)")
            #expect(health["status"] as? String == "ok", "\(health)")
            #expect((health["ring"] as? [String: Any])?["members"] as? Int == 3)
        }
        #expect(expected.values.allSatisfy { $0 > 250 }, "\(expected)")

        // 300 ids read from every host: the owner answers, the others refuse with 421 naming it.
        var wrong: [String] = []
        for id in ids.prefix(300) {
            let owner = owners["mcp-\(id)"]!
            for host in stack.hosts {
                let response = try await host.client().send(.get, "/sessions/mcp-\(id)")
                let right =
                    host.node == owner
                    ? response.status == 200
                    : response.status == 421 && response.errorCode == "misdirected" && response.headers[HostAPI.RingHeaders.owner] == owner
                        && response.headers[HostAPI.RingHeaders.version] == "1"
                if !right { wrong.append("\(host.node) answered \(response.status) for mcp-\(id) (owner \(owner))") }
            }
        }
        #expect(wrong.isEmpty, "\(wrong.count) wrong answers, e.g. \(wrong.prefix(3))")

        // Everyone reports the same ring.
        let rings = try await stack.hosts.asyncMap { try await $0.client().send(.get, "/ring").decode(RingInfo.self) }
        #expect(Set(rings.map(\.fingerprint)).count == 1)
        let workerRing = try await JSONClient(base: stack.workers[0].base).send(.get, "/ring").decode(RingInfo.self)
        #expect(workerRing.agrees(with: rings[0]))
        let workerHealth = try await JSONClient(base: stack.workers[1].base).send(.get, "/health").object
        #expect(workerHealth["status"] as? String == "ok", "\(workerHealth)")
        await stack.stop()
    }

    @Test("a worker configured with an old ring adopts the hosts' newer ring as it starts, and serves every session on its owner without a fallback")
    func staleWorkerRecovers() async throws {
        let stack = try await RingStack.start(hosts: 3, workers: 0, ringVersion: 2)
        // The worker only knows the first two hosts, at ring version 1.
        let stale = WorkerHarness(arguments: ["--ring-version", "1"], environment: stack.standIn.workerEnvironment)
        try await stale.start(hosts: Array(stack.members.prefix(2)))
        let staleRing = HashRing(nodes: ["host-1", "host-2"])
        let http = JSONClient(base: stale.base)
        // It reads the hosts' ring at once (the 421 path, for a ring that changes later, is
        // HostCallTests' and the ring-change tests').
        try await eventually("the worker adopts ring version 2") {
            (try? await http.send(.get, "/ring").decode(RingInfo.self))?.version == 2
        }
        #expect(try await http.send(.get, "/health").object["status"] as? String == "ok")

        var client = MCPTestClient(base: stale.base)
        try await client.initialize()
        // Conversations whose owner differs between the two rings.
        let moved = (0..<200).map { "c\($0)" }.filter { staleRing.owner(of: "conv:local:\($0)") != stack.ring.owner(of: "conv:local:\($0)") }
        #expect(moved.count > 10)
        for conversation in moved.prefix(10) {
            let answer = try await client.callTool(
                "query_repository", ["query": "where?", "repositories": [WorkerStack.repository], "session_id": conversation])
            #expect(!answer.isError, "\(answer.text)")
            let owner = stack.host(named: stack.ring.owner(of: "conv:local:\(conversation)")!)
            let stored = try await owner.client().send(.get, "/sessions/conv:local:\(conversation)/history").decode(HostAPI.History.self)
            #expect(stored.data.count == 2)
        }
        #expect(stale.logs.contains("adopted a newer ring"))
        let metrics = String(decoding: try await http.send(.get, "/metrics").body, as: UTF8.self)
        #expect((metric(metrics, "worker_session_fallbacks_total") ?? 0) == 0)
        let ring = try await http.send(.get, "/ring").decode(RingInfo.self)
        #expect(ring.version == 2)
        #expect(ring.members.count == 3)
        #expect(try await http.send(.get, "/health").object["status"] as? String == "ok")
        await stale.stop()
        await stack.stop()
    }

    @Test("hosts that disagree about the ring say so on /health; a bad --peers is refused at start")
    func disagreementAndValidation() async throws {
        let ports = [freeLoopbackPort(), freeLoopbackPort()]
        let members = "host-1=127.0.0.1:\(ports[0]),host-2=127.0.0.1:\(ports[1])"
        let first = HostHarness(node: "host-1", arguments: ["--peers", members, "--ring-version", "3"])
        let second = HostHarness(node: "host-2", arguments: ["--peers", members, "--ring-version", "4"])
        try await first.start(port: ports[0])
        try await second.start(port: ports[1])
        let health = try await first.client().send(.get, "/health").object
        #expect(health["status"] as? String == "degraded")
        #expect((health["problems"] as? [String])?.first?.contains("ring version 4") == true, "\(health)")
        await first.stop()
        await second.stop()

        let directory = TemporaryDirectory("ring-config")
        let refused = try ServiceProcess(
            executable: BuiltProducts.path("durable-host"),
            arguments: ["--node", "host-9", "--peers", members, "--data", directory.file("data")],
            logPath: directory.file("refused.log"))
        #expect(try await refused.waitForExit() == 2)
        #expect(refused.log.contains("does not list this host's own node name 'host-9'"))
    }
}

@Suite("Ring changes under load: a host added, a host removed, nothing lost or forked")
struct RingChangeTests {
    /// Runs `scripts/ring-change`, returning its output; fails the test unless it exits 0.
    static func ringChange(version: Int, members: [String], directory: TemporaryDirectory) async throws -> String {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/ring-change").path
        let process = try ServiceProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", script, "--version", "\(version)", "--members", members.joined(separator: ","), "--timeout", "60"],
            logPath: directory.file("ring-change-\(version).log"))
        let status = try await process.waitForExit(timeout: .seconds(90))
        #expect(status == 0, "\(process.log)")
        return process.log
    }

    @Test("every acknowledged turn is on the id's current owner exactly once, in order; no other host serves it")
    func addAndRemoveUnderLoad() async throws {
        let stack = try await RingStack.start(hosts: 3, workers: 2)
        let directory = TemporaryDirectory("ring-change")
        let conversations = 24
        let stop = Mutexed(false)
        let acknowledged = Mutexed([String: [String]]())
        let exchanges = Mutexed([String: [String]]())
        let failures = Mutexed([String]())

        // The load: each conversation asks question after question through alternating workers.
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<conversations {
                    group.addTask {
                        var client = MCPTestClient(base: stack.workers[index % 2].base)
                        do { try await client.initialize() } catch {
                            failures.update { $0.append("initialize: \(error)") }
                            return
                        }
                        var turn = 0
                        while !stop.get() {
                            let question = "load-\(index) turn-\(turn)"
                            let worker = stack.workers[(index + turn) % 2].base
                            do {
                                let answer = try await client.callTool(
                                    "query_repository",
                                    ["query": question, "repositories": [WorkerStack.repository], "session_id": "load-\(index)"], via: worker)
                                if answer.isError {
                                    failures.update { $0.append("\(question): \(answer.text)") }
                                } else {
                                    acknowledged.update { $0["load-\(index)", default: []].append(question) }
                                    exchanges.update { $0["load-\(index)", default: []] += [question, answer.structured["message"] as? String ?? "?"] }
                                }
                            } catch {
                                failures.update { $0.append("\(question): \(error)") }
                            }
                            turn += 1
                        }
                    }
                }
            }
        }

        func answered() -> Int { acknowledged.get().values.map(\.count).reduce(0, +) }
        try await eventually("the load runs") { answered() >= 20 }
        // Add host-4: started with the new ring, then the change is announced to everyone.
        let port4 = freeLoopbackPort()
        let four = stack.members + ["host-4=127.0.0.1:\(port4)"]
        let host4 = HostHarness(node: "host-4", arguments: ["--peers", four.joined(separator: ","), "--ring-version", "2"])
        try await host4.start(port: port4)
        let added = try await Self.ringChange(version: 2, members: four, directory: directory)
        #expect(added.contains("settled at version 2"), "\(added)")

        let afterAdding = answered()
        try await eventually("the load runs on the new ring") { answered() >= afterAdding + 20 }
        // Remove host-2: announced, settled (its sessions handed over), then stopped.
        let three = four.filter { !$0.hasPrefix("host-2=") }
        let removed = try await Self.ringChange(version: 3, members: three, directory: directory)
        #expect(removed.contains("host-2 may be stopped now"), "\(removed)")
        let host2 = stack.host(named: "host-2")
        let host2Sessions = try await host2.client().send(.get, "/health").object["sessions_stored"] as? Int
        #expect(host2Sessions == 0, "a removed host keeps nothing once settled")
        let host2Metrics = String(decoding: try await host2.client().send(.get, "/metrics").body, as: UTF8.self)
        #expect((metric(host2Metrics, "host_handoff_purged_total") ?? 0) > 0, "host-2 handed its sessions over")
        await host2.stop()

        let afterRemoving = answered()
        try await eventually("the load runs without host-2") { answered() >= afterRemoving + 20 }
        stop.set(true)
        await load.value

        #expect(failures.get().isEmpty, "\(failures.get().prefix(5))")
        let finalRing = HashRing(nodes: ["host-1", "host-3", "host-4"])
        let live = [stack.host(named: "host-1"), stack.host(named: "host-3"), host4]
        var total = 0
        for (conversation, questions) in acknowledged.get() {
            let id = "conv:local:\(conversation)"
            let owner = finalRing.owner(of: id)!
            for host in live {
                let response = try await host.client().send(.get, "/sessions/\(id)/history")
                if host.node == owner {
                    let messages = try response.decode(HostAPI.History.self).data
                    let users = messages.filter { $0.role == .user }.map(\.content)
                    #expect(users == questions, "\(conversation) on \(owner): stored \(users.count), acknowledged \(questions.count)")
                    // Every exchange whole, in order: the question, then the very answer given.
                    #expect(messages.map(\.content) == exchanges.get()[conversation] ?? [])
                    #expect(messages.map(\.role) == Array(repeating: [Role.user, .assistant], count: questions.count).flatMap { $0 })
                } else {
                    #expect(response.status == 421, "\(host.node) must not serve \(id)")
                }
            }
            total += questions.count
        }
        #expect(acknowledged.get().count == conversations)
        #expect(total > conversations * 5, "the load must have run through the changes (\(total) turns)")

        // Each session is stored once, on its owner: conversations and transport sessions (and
        // the usage records the workers keep, a principal's day each).
        var stored = 0
        for host in live {
            let health = try await host.client().send(.get, "/health").object
            stored += health["sessions_stored"] as? Int ?? 0
            stored -= try await host.client().send(.get, "/sessions?prefix=usage:").decode(HostAPI.Listing.self).data.count
            let ring = health["ring"] as? [String: Any]
            #expect(ring?["version"] as? Int == 3)
            #expect(ring?["settled"] as? Bool == true)
        }
        #expect(stored == 2 * conversations)
        let host4Metrics = String(decoding: try await host4.client().send(.get, "/metrics").body, as: UTF8.self)
        #expect((metric(host4Metrics, "host_handoff_pulled_total") ?? 0) > 0, "host-4 took sessions over")
        for worker in stack.workers {
            let metrics = String(decoding: try await JSONClient(base: worker.base).send(.get, "/metrics").body, as: UTF8.self)
            #expect((metric(metrics, "worker_session_fallbacks_total") ?? 0) == 0, "no call needed the in-memory fallback")
            let ring = try await JSONClient(base: worker.base).send(.get, "/ring").decode(RingInfo.self)
            #expect(ring.version == 3)
        }
        await host4.stop()
        await stack.stop()
    }
}

@Suite("Handoff between two hosts: keys travel, the old owner stops, a session can come back")
struct HandoffTests {
    /// Contents a C string would cut short.
    static let one = "one\u{0}more"
    static let two = "\u{0}two 😀"

    @Test("a session moves to a joining host with its idempotency keys, and back again with what was written meanwhile")
    func moveAndComeBack() async throws {
        let directory = TemporaryDirectory("handoff")
        let (port1, port2) = (freeLoopbackPort(), freeLoopbackPort())
        let (member1, member2) = ("host-1=127.0.0.1:\(port1)", "host-2=127.0.0.1:\(port2)")
        let host1 = HostHarness(node: "host-1", arguments: ["--peers", member1])
        try await host1.start(port: port1)
        // An id that host-2 will own once it joins.
        let pair = HashRing(nodes: ["host-1", "host-2"])
        let id = (0..<100).map { "moving-\($0)" }.first { pair.owner(of: $0) == "host-2" }!
        let first = try await host1.client().send(
            .post, "/sessions/\(id)/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: Self.one)),
            headers: [HostAPI.idempotencyKeyHeader: "key-1"])
        #expect(first.status == 200)

        let host2 = HostHarness(node: "host-2", arguments: ["--peers", "\(member1),\(member2)", "--ring-version", "2"])
        try await host2.start(port: port2)
        #expect(host2.logs.contains("joining ring version 2"))
        _ = try await RingChangeTests.ringChange(version: 2, members: [member1, member2], directory: directory)

        // The retry of the first write, now sent to the new owner, is recognised: not applied twice.
        let retried = try await host2.client().send(
            .post, "/sessions/\(id)/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: Self.one)),
            headers: [HostAPI.idempotencyKeyHeader: "key-1"])
        #expect(retried.status == 200)
        #expect(retried.headers["Idempotent-Replayed"] == "true")
        _ = try await host2.client().send(
            .post, "/sessions/\(id)/update", json: SessionOperation.appendMessage(MessageInput(role: .assistant, content: Self.two)))
        let old = try await host1.client().send(.get, "/sessions/\(id)/history")
        #expect(old.status == 421)
        #expect(old.headers[HostAPI.RingHeaders.owner] == "host-2")

        // host-2 leaves; the session comes back to host-1 with both messages.
        let back = try await RingChangeTests.ringChange(version: 3, members: [member1], directory: directory)
        #expect(back.contains("host-2 may be stopped now"))
        let history = try await host1.client().send(.get, "/sessions/\(id)/history").decode(HostAPI.History.self)
        #expect(history.data.map { Array($0.content.utf8) } == [Array(Self.one.utf8), Array(Self.two.utf8)], "byte for byte through both handoffs")
        #expect(try await host2.client().send(.get, "/sessions/\(id)/history").status == 421)
        // Ring changes survive a restart: host-1 still serves by version 3.
        await host1.stop()
        try await host1.start(port: port1)
        #expect(try await host1.client().send(.get, "/ring").decode(RingInfo.self).version == 3)
        let reloaded = try await host1.client().send(.get, "/sessions/\(id)/history").decode(HostAPI.History.self).data
        #expect(reloaded.map { Array($0.content.utf8) } == [Array(Self.one.utf8), Array(Self.two.utf8)])
        #expect(
            try await host1.client().send(.put, "/ring", json: Membership(version: 2, members: [.init(name: "host-1", address: "127.0.0.1:\(port1)")])).status
                == 400)
        await host2.stop()
        await host1.stop()
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
