import CurlHTTP
import Foundation
import HashRing
import SessionModel
import Testing
import TestSupport

/// Several hosts sharing the id space, and workers routing by the same ring.
struct RingStack {
    let standIn: UpstreamStandIn
    let hosts: [HostHarness]
    let workers: [WorkerHarness]
    let members: [String]

    /// `hosts` hosts named host-1... on free ports, all with the same `--peers`; `workers` workers.
    static func start(hosts count: Int, workers workerCount: Int, ringVersion: Int = 1) async throws -> RingStack {
        let standIn = try await UpstreamStandIn.start()
        try await standIn.control(["indexed": [WorkerStack.indexedKey]])
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
            let worker = WorkerHarness(arguments: ["--ring-version", "\(ringVersion)"], environment: standIn.workerEnvironment)
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

        // Each host's own store holds exactly the ids the ring gives it.
        var expected: [String: Int] = [:]
        for id in ids { expected[stack.ring.owner(of: "mcp-\(id)")!, default: 0] += 1 }
        for host in stack.hosts {
            let health = try await host.client().send(.get, "/health").object
            #expect(health["sessions_stored"] as? Int == expected[host.node], "\(host.node)")
            #expect(health["status"] as? String == "ok", "\(health)")
            #expect((health["ring"] as? [String: Any])?["members"] as? Int == 3)
        }
        #expect(expected.values.allSatisfy { $0 > 250 }, "\(expected)")

        // A sample read from every host: the owner answers, the others refuse with 421 naming it.
        for id in ids.prefix(30) {
            let owner = stack.ring.owner(of: "mcp-\(id)")!
            for host in stack.hosts {
                let response = try await host.client().send(.get, "/sessions/mcp-\(id)")
                if host.node == owner {
                    #expect(response.status == 200)
                } else {
                    #expect(response.status == 421)
                    #expect(response.errorCode == "misdirected")
                    #expect(response.headers[RingHeaders.owner] == owner)
                    #expect(response.headers[RingHeaders.version] == "1")
                }
            }
        }

        // Everyone reports the same ring.
        let rings = try await stack.hosts.asyncMap { try await $0.client().send(.get, "/ring").decode(RingInfo.self) }
        #expect(Set(rings.map(\.fingerprint)).count == 1)
        let workerRing = try await JSONClient(base: stack.workers[0].base).send(.get, "/ring").decode(RingInfo.self)
        #expect(workerRing.agrees(with: rings[0]))
        let workerHealth = try await JSONClient(base: stack.workers[1].base).send(.get, "/health").object
        #expect(workerHealth["status"] as? String == "ok", "\(workerHealth)")
        await stack.stop()
    }

    @Test("a worker with an old ring is told 421, adopts the hosts' newer ring and succeeds without a fallback")
    func staleWorkerRecovers() async throws {
        let stack = try await RingStack.start(hosts: 3, workers: 0, ringVersion: 2)
        // The worker only knows the first two hosts, at ring version 1.
        let stale = WorkerHarness(arguments: ["--ring-version", "1"], environment: stack.standIn.workerEnvironment)
        try await stale.start(hosts: Array(stack.members.prefix(2)))
        let staleRing = HashRing(nodes: ["host-1", "host-2"])
        let http = JSONClient(base: stale.base)
        let before = try await http.send(.get, "/health").object
        #expect(before["status"] as? String == "degraded")
        #expect((before["problems"] as? [String])?.contains { $0.contains("ring version 2") } == true, "\(before)")

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
        #expect((metric(metrics, "worker_host_misdirected_total") ?? 0) >= 1)
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

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
