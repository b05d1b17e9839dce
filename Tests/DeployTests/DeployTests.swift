import CurlHTTP
import Foundation
import TestSupport
import Testing

@Suite("deploy/: stacks behind real nginx, brought up by the script, smoke-tested", .serialized)
struct DeployTests {
    @Test("staging (PostgreSQL): deploy/stack up starts its own database, the smoke test passes through nginx and reports it, status, down stops everything")
    func stagingSmoke() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        let stack = try await DeployStack.up("staging", standIn: standIn)
        #expect(stack.endpoint.hasPrefix("http://127.0.0.1:"))

        let smoke = try await runScript("deploy/smoke", [stack.front, "--repository", "acme/widgets"])
        #expect(smoke.status == 0, "\(smoke.output)")
        #expect(smoke.output.contains("smoke: PASS"))
        #expect(smoke.output.contains("3 hosts, ring v"), "\(smoke.output)")
        #expect(smoke.output.contains("database ok, 3 live hosts"), "\(smoke.output)")
        #expect(stack.pids["postgres"] != nil, "the stack runs its own PostgreSQL")
        #expect(stack.accessLog.contains { $0.contains("POST /mcp") && $0.contains("upstream=127.0.0.1:") })
        // nginx's request id is on the worker's log line of the smoke test's session.
        let logs = stack.directory.file("run/logs")
        let workerLogs = ((try? FileManager.default.contentsOfDirectory(atPath: logs)) ?? []).filter { $0.hasPrefix("worker-") }
            .map { (try? String(contentsOfFile: logs + "/" + $0, encoding: .utf8)) ?? "" }.joined()
        let ids = stack.accessLog.filter { $0.contains("POST /mcp") }.compactMap { $0.split(separator: " ").first { $0.hasPrefix("request_id=") } }
        #expect(ids.count >= 3 && ids.allSatisfy { $0.count == "request_id=".count + 32 }, "\(stack.accessLog)")
        #expect(
            ids.contains { id in workerLogs.split(separator: "\n").contains { $0.contains("session started") && $0.contains(id) } },
            "the worker's 'session started' line carries nginx's request id: \(workerLogs)")
        #expect(try await stack.stack(["status"]).status == 0)

        // A host down: the smoke test says which, and fails.
        let pids = stack.pids
        kill(pids["host-2"]!, SIGKILL)
        let failed = try await runScript("deploy/smoke", [stack.front, "--repository", "acme/widgets"])
        #expect(failed.status == 1)
        #expect(failed.output.contains("smoke: FAIL"))
        #expect(failed.output.contains("host-2"), "\(failed.output)")

        let down = try await stack.stack(["down"])
        #expect(down.status == 0)
        for (name, pid) in pids {
            var status: Int32 = 0
            #expect(kill(pid, 0) != 0 || waitpid(pid, &status, WNOHANG) == pid || isZombie(pid), "\(name) still runs")
        }
        await standIn.stop()
    }

    @Test("production: TLS at nginx, client keys beside sign-in (a real OpenID Connect provider), a host token, smoke test over HTTPS")
    func productionOverTLS() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        let secrets = TemporaryDirectory("secrets")
        let key = "ops-key-0123456789abcdef"
        try "ops:\(key)\n".write(toFile: secrets.file("api-keys"), atomically: true, encoding: .utf8)
        try "host-token-0123456789\n".write(toFile: secrets.file("host-token"), atomically: true, encoding: .utf8)
        let provider = Mutexed<OIDCProvider?>(nil)
        let stack = try await DeployStack.up(
            "production", standIn: standIn,
            overrides: ["workers.count=2", "workers.api_keys_file=\(secrets.file("api-keys"))", "host_token_file=\(secrets.file("host-token"))"],
            tls: true, signIn: true
        ) { front in
            let started = try await OIDCProvider.start(callbacks: [front + "/oauth/callback"], people: ["alice@example.com": "alice-pw"])
            provider.set(started)
            return [
                "workers.sign_in.public_url=\(front)", "workers.sign_in.issuer=\(started.issuer)", "workers.sign_in.client_id=\(OIDCProvider.clientID)",
                "workers.sign_in.client_secret_file=\(try started.secretFile())",
            ]
        }
        #expect(stack.endpoint.hasPrefix("https://"))
        let smoke = try await runScript("deploy/smoke", [stack.front, "--insecure", "--api-key", key, "--repository", "acme/widgets"])
        #expect(smoke.status == 0, "\(smoke.output)")
        #expect(smoke.output.contains("smoke: PASS") && smoke.output.contains("sign-in discovery ok"), "\(smoke.output)")
        // Without a key, sign-in is the way in: discovery is checked, the MCP round trip is not.
        let anonymous = try await runScript("deploy/smoke", [stack.front, "--insecure", "--repository", "acme/widgets"])
        #expect(anonymous.status == 0 && anonymous.output.contains("skipped"), "\(anonymous.output)")

        // The hosts refuse calls without the token.
        let base = stack.settings.first { $0.hasPrefix("hosts.first_port=") }!.split(separator: "=")[1]
        let host = try await JSONClient(base: "http://127.0.0.1:\(base)").send(.get, "/ring")
        #expect(host.status == 401)
        await stack.down()
        await provider.get()?.stop()
        await standIn.stop()
    }

    @Test("the front limits each client's rate with a JSON-RPC 429, and refuses oversize bodies with 413")
    func rateLimitAndBodySize() async throws {
        let standIn = try await UpstreamStandIn.start()
        let stack = try await DeployStack.up(
            "staging", standIn: standIn, overrides: ["front.rate_per_second=5", "front.burst=5", "workers.max_body_bytes=4096"])
        let client = JSONClient(base: stack.front)
        var statuses: [Int] = []
        for _ in 0..<30 {
            let response = try await client.send(.post, "/mcp", text: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            statuses.append(response.status)
            if response.status == 429 {
                #expect((response.object["error"] as? [String: Any])?["code"] as? Int == -32000)
            }
        }
        #expect(statuses.contains(429), "\(statuses)")
        #expect(statuses.prefix(5).allSatisfy { $0 != 429 }, "the burst is allowed: \(statuses)")
        // The bucket refills with time: wait until a request is let through again.
        try await eventually("the rate limit lets requests through again") {
            try await client.send(.post, "/mcp", text: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).status != 429
        }
        let large = try await client.send(.post, "/mcp", text: "{\"pad\":\"" + String(repeating: "x", count: 10_000) + "\"}")
        #expect(large.status == 413)
        #expect(try await client.send(.get, "/elsewhere").status == 404)
        await stack.down()
        await standIn.stop()
    }

    @Test("a broken configuration is refused with a message naming the key")
    func brokenConfigurations() async throws {
        let cases: [([String], String)] = [
            (["--set", "workers.cuont=3"], "workers.cuont"),
            (["--set", "hosts.count=\"three\""], "hosts.count"),
            (["--set", "front.listen=nowhere"], "front.listen"),
            (["--set", "front.tls={\"certificate\": \"/x\"}"], "front.tls.key"),
            (["--set", "hosts.synchronous=sometimes"], "hosts.synchronous"),
            (["--set", "workers.api_keys_file=/nonexistent/keys"], "workers.api_keys_file"),
        ]
        for (arguments, key) in cases {
            let result = try await runScript("deploy/stack", ["check", "deploy/staging.json"] + arguments)
            #expect(result.status == 2, "\(arguments): \(result.output)")
            #expect(result.output.contains(key), "\(arguments): \(result.output)")
        }
        let directory = TemporaryDirectory("check")
        let good = try await runScript("deploy/stack", ["check", "deploy/local.json", "--set", "run_dir=\(directory.file("run"))"])
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output.contains("nginx -t passed"))
    }
}

@Suite("Behind nginx: three workers, three hosts, the official client, a worker killed, workers scaled", .serialized)
struct FrontTests {
    @Test("the official MCP Python client through nginx: a conversation keeps its whole history, its session's requests on one worker")
    func pythonClientThroughNginx() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        let stack = try await DeployStack.up("staging", standIn: standIn, overrides: ["workers.count=3"])
        let interop = try await runScript("Tests/Interop/mcp_interop.py", ["--worker", stack.front])
        #expect(interop.status == 0, "\(interop.output)")
        let report = (try? JSONSerialization.jsonObject(with: Data((interop.output.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
        #expect(report["ok"] as? Bool == true, "\(interop.output)")
        let session = try #require(report["transport_session"] as? String)
        let upstreams = Set(
            stack.accessLog.filter { $0.contains("session=\(session)") }.compactMap { line in
                line.split(separator: " ").first { $0.hasPrefix("upstream=") }
            })
        // nginx sends a session's requests to one worker (a hash of its id), so a conversation is continued from its memory.
        #expect(upstreams.count == 1, "the session's requests went to \(upstreams)")
        await stack.down()
        await standIn.stop()
    }

    /// The load comes from one address: lift the per-client rate limit for it.
    static let unlimited = ["front.rate_per_second=100000", "front.burst=100000"]

    /// Conversations asking question after question through the front until `stop`; returns
    /// the acknowledged turns per conversation and the failures with their times.
    /// Conversations through the front until `stop`; `answered` counts the acknowledged turns as they come.
    static func load(
        front: String, conversations: Int, stop: Mutexed<Bool>, answered: Mutexed<Int> = Mutexed(0)
    ) async
        -> (acknowledged: [Int: Int], failures: [(ContinuousClock.Instant, String)])
    {
        let acknowledged = Mutexed([Int: Int]())
        let failures = Mutexed([(ContinuousClock.Instant, String)]())
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<conversations {
                group.addTask {
                    var client = MCPTestClient(base: front)
                    do { try await client.initialize() } catch {
                        failures.update { $0.append((.now, "initialize: \(error)")) }
                        return
                    }
                    var turn = 0
                    while !stop.get() {
                        do {
                            let answer = try await client.callTool(
                                "query_repository",
                                [
                                    "query": "c\(index) t\(turn)", "repositories": [["remote": "github", "repository": "acme/widgets"]],
                                    "session_id": "front-\(index)",
                                ])
                            if answer.isError {
                                failures.update { $0.append((.now, "c\(index) t\(turn): \(answer.text)")) }
                            } else {
                                acknowledged.update { $0[index, default: 0] += 1 }
                                answered.update { $0 += 1 }
                            }
                        } catch {
                            failures.update { $0.append((.now, "c\(index) t\(turn): \(error)")) }
                        }
                        turn += 1
                    }
                }
            }
        }
        return (acknowledged.get(), failures.get())
    }

    @Test("a worker killed with kill -9 under load: nginx routes around it, and conversations continue")
    func workerKilledUnderLoad() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        let stack = try await DeployStack.up("staging", standIn: standIn, overrides: ["workers.count=3"] + Self.unlimited)
        let stop = Mutexed(false)
        let answered = Mutexed(0)
        async let outcome = Self.load(front: stack.front, conversations: 8, stop: stop, answered: answered)
        try await eventually("the load runs") { answered.get() >= 16 }
        let killedAt = ContinuousClock.now
        kill(try #require(stack.pids["worker-2"]), SIGKILL)
        let beforeKill = answered.get()
        // Past the window in which calls in flight on the killed worker may fail, and well on.
        try await eventually("the load goes on after the kill") {
            ContinuousClock.now - killedAt > .seconds(3) && answered.get() >= beforeKill + 40
        }
        stop.set(true)
        let (acknowledged, failures) = await outcome

        // Calls in flight on the killed worker may fail; after a short window, none does.
        let late = failures.filter { $0.0 - killedAt > .seconds(2) }
        #expect(late.isEmpty, "\(late.map(\.1).prefix(5))")
        #expect(failures.count <= 8, "\(failures.map(\.1).prefix(5))")
        #expect(acknowledged.values.reduce(0, +) > 40)
        // Every conversation goes on, and its owner holds each acknowledged turn (a call cut off
        // by the kill may or may not have been stored before its answer was lost).
        let client = try await {
            var client = MCPTestClient(base: stack.front)
            try await client.initialize()
            return client
        }()
        let hostBase = Int(stack.settings.first { $0.hasPrefix("hosts.first_port=") }!.split(separator: "=")[1])!
        for index in 0..<8 {
            let answer = try await client.callTool(
                "query_repository", ["query": "after", "repositories": [["remote": "github", "repository": "acme/widgets"]], "session_id": "front-\(index)"])
            #expect(!answer.isError, "\(answer.text)")
            var users = -1
            for port in hostBase..<(hostBase + 3) {
                let response = try await JSONClient(base: "http://127.0.0.1:\(port)").send(.get, "/sessions/conv:local:front-\(index)/history")
                if response.status == 200 {
                    users = ((response.object["data"] as? [[String: Any]]) ?? []).filter { $0["role"] as? String == "user" }.count
                }
            }
            let ok = (acknowledged[index] ?? 0) + 1
            let lost = failures.filter { $0.1.hasPrefix("c\(index) ") }.count
            #expect(users >= ok && users <= ok + lost, "conversation \(index): \(users) stored turns, \(ok) acknowledged, \(lost) cut off")
        }
        await stack.down()
        await standIn.stop()
    }

    @Test("scaling workers up and down on a running stack fails no request")
    func scaleUnderLoad() async throws {
        let standIn = try await UpstreamStandIn.startIndexed()
        let stack = try await DeployStack.up("staging", standIn: standIn, overrides: Self.unlimited)
        let stop = Mutexed(false)
        let answered = Mutexed(0)
        async let outcome = Self.load(front: stack.front, conversations: 6, stop: stop, answered: answered)
        try await eventually("the load runs") { answered.get() >= 12 }
        let up = try await stack.stack(["scale", "workers", "4"])
        #expect(up.status == 0, "\(up.output)")
        #expect(stack.pids.keys.filter { $0.hasPrefix("worker-") }.count == 4)
        let scaledUp = answered.get()
        try await eventually("the load runs on four workers") { answered.get() >= scaledUp + 30 }
        // Requests without a session (initialize) go round robin: new sessions start on the added workers too.
        for _ in 0..<4 {
            var client = MCPTestClient(base: stack.front)
            try await client.initialize()
        }
        let down = try await stack.stack(["scale", "workers", "1"])
        #expect(down.status == 0, "\(down.output)")
        #expect(stack.pids.keys.filter { $0.hasPrefix("worker-") }.count == 1)
        let scaledDown = answered.get()
        try await eventually("the load runs on one worker") { answered.get() >= scaledDown + 12 }
        stop.set(true)
        let (acknowledged, failures) = await outcome
        #expect(failures.isEmpty, "\(failures.map(\.1).prefix(5))")
        #expect(acknowledged.values.reduce(0, +) > 30)
        let upstreams = Set(stack.accessLog.compactMap { $0.split(separator: " ").first { $0.hasPrefix("upstream=") } })
        #expect(upstreams.count >= 4, "requests reached the added workers: \(upstreams)")
        await stack.down()
        await standIn.stop()
    }
}

/// Whether `pid` has exited and only waits to be reaped by a parent that is not ours.
func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
}
