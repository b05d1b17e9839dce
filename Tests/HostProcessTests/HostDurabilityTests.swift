import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

@Suite("durable-host durability, with real processes and signals")
struct HostDurabilityTests {
    private func append(_ client: JSONClient, _ id: String, _ content: String, key: String? = nil) async throws -> HTTPResponse {
        try await client.send(
            .post, "/sessions/\(id)/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: content)),
            headers: key.map { ["Idempotency-Key": $0] } ?? [:], timeout: .seconds(60))
    }

    private func history(_ client: JSONClient, _ id: String) async throws -> [String] {
        try await client.send(.get, "/sessions/\(id)/history").decode(HostAPI.History.self).data.map(\.content)
    }

    @Test("sessions survive a graceful restart of the process", arguments: StorageBackend.allCases)
    func restart(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend)
        try await host.startServing()
        for index in 0..<5 { _ = try await append(host.client(), "persist", "m\(index)") }
        _ = try await host.client().send(.post, "/sessions/persist/update", json: SessionOperation.updateMetadata(["k": "v"]))
        host.process.signal(SIGTERM)
        #expect(try await host.process.waitForExit() == 0)
        #expect(host.process.log.contains("storage closed"))

        try await host.startServing()
        #expect(try await history(host.client(), "persist") == (0..<5).map { "m\($0)" })
        #expect(try await host.client().send(.get, "/sessions/persist/history").decode(HostAPI.History.self).metadata == ["k": "v"])
        #expect(try await host.client().send(.get, "/health").object["sessions_stored"] as? Int == 1)
        await host.stop()
        await cluster?.stop()
    }

    @Test("after kill -9 during a write load, every acknowledged append is present exactly once", arguments: StorageBackend.allCases)
    func killNine(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend)
        try await host.startServing()
        let client = host.client()
        let acknowledged = Mutexed<Set<String>>([])
        // What else the writers got, for the failure message: a load that stalls says why.
        let refusals = Mutexed<[String: Int]>([:])
        let ids = (0..<4).map { "load-\($0)" }

        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for writer in 0..<12 {
                    group.addTask {
                        for index in 0..<10_000 {
                            let content = "w\(writer)-\(index)"
                            do {
                                let response = try await append(client, ids[writer % ids.count], content)
                                if response.status == 200 {
                                    acknowledged.update { $0.insert(content) }
                                } else {
                                    refusals.update { $0["HTTP \(response.status) \(response.errorCode ?? "")", default: 0] += 1 }
                                }
                            } catch {
                                // The host is gone (the kill): this writer is done.
                                refusals.update { $0["no answer", default: 0] += 1 }
                                return
                            }
                        }
                    }
                }
            }
        }
        // A whole test suite runs beside this one on two cores: the load may be slow to build
        // (a loaded machine has managed a few appends a second), so the kill comes after 200.
        try await eventually(
            "200 appends acknowledged (\(acknowledged.get().count) were; refused or unanswered: \(refusals.get()))", timeout: .seconds(120)
        ) {
            if acknowledged.get().count >= 200 { return true }
            if host.process.exitStatus != nil { throw ServiceProcess.Failure(description: "the host exited:\n\(host.logs)") }
            return false
        }
        host.process.signal(SIGKILL)
        #expect(try await host.process.waitForExit() == SIGKILL)
        await load.value

        try await host.startServing()
        var stored: [String] = []
        for id in ids { stored += try await history(host.client(), id) }
        let acked = acknowledged.get()
        #expect(acked.count >= 200, "refused or unanswered: \(refusals.get())")
        #expect(Set(stored).count == stored.count, "a message is stored twice")
        let missing = acked.subtracting(stored)
        #expect(missing.isEmpty, "\(missing.count) acknowledged appends were lost, e.g. \(missing.prefix(5))")
        // Each writer's appends are stored in the order it made them.
        for writer in 0..<12 {
            let mine = stored.filter { $0.hasPrefix("w\(writer)-") }.map { Int($0.split(separator: "-")[1])! }
            #expect(mine == mine.sorted())
        }
        await host.stop()
        await cluster?.stop()
    }

    @Test(
        "a write is answered only once it is committed: with the commit held back, no answer comes, and kill -9 then loses only what was never answered",
        arguments: StorageBackend.allCases)
    func answeredOnlyAfterCommit(backend: StorageBackend) async throws {
        // A test-only setting holds every batch back before its commit, so a reply that does
        // not wait for the commit is always visible, not one run in five.
        let (host, cluster) = try await HostHarness.make(backend, arguments: ["--commit-delay", "30"], product: HostHarness.holdingCommits)
        try await host.startServing()
        let client = host.client()
        let write = Task { try? await append(client, "held", "never committed") }
        try await eventually("the write's batch is held before its commit") {
            host.logs.contains("holding a batch for the commit delay")
        }
        host.process.signal(SIGKILL)
        #expect(try await host.process.waitForExit() == SIGKILL)
        let answer = await write.value
        #expect(answer == nil, "answered HTTP \(answer?.status ?? 0) before the write was committed")

        try await host.startServing()
        #expect(try await history(host.client(), "held") == [], "the write was never committed")
        await host.stop()
        await cluster?.stop()
    }

    @Test("an idempotent retry returns the first answer and applies nothing twice, even after a restart", arguments: StorageBackend.allCases)
    func idempotentRetry(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend)
        try await host.startServing()
        let first = try await append(host.client(), "idem", "only once", key: "retry-1")
        let retry = try await append(host.client(), "idem", "only once", key: "retry-1")
        #expect(first.status == 200 && retry.status == 200)
        #expect(retry.body == first.body)
        #expect(retry.headers["Idempotent-Replayed"] == "true")
        #expect(first.headers["Idempotent-Replayed"] == nil)
        let misuse = try await append(host.client(), "idem", "something else", key: "retry-1")
        #expect(misuse.status == 422)
        #expect(misuse.errorCode == "idempotency_key_reused")

        host.process.signal(SIGKILL)
        _ = try await host.process.waitForExit()
        try await host.startServing()
        let afterRestart = try await append(host.client(), "idem", "only once", key: "retry-1")
        #expect(afterRestart.body == first.body)
        #expect(afterRestart.headers["Idempotent-Replayed"] == "true")
        #expect(try await history(host.client(), "idem") == ["only once"])
        await host.stop()
        await cluster?.stop()
    }

    @Test(
        "many concurrent writers on one id: nothing lost, each writer's order kept, the last metadata the one stored; many ids in parallel too",
        arguments: StorageBackend.allCases)
    func concurrentWriters(backend: StorageBackend) async throws {
        // On PostgreSQL several transactions are in flight at once; none may hold a session
        // another holds, or a session's writes could land out of order.
        let (host, cluster) = try await HostHarness.make(backend, arguments: ["--commits-in-flight", "4"])
        try await host.startServing()
        let client = host.client()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for index in 0..<30 {
                        let response = try await append(client, "hot", "w\(writer)-\(index)")
                        #expect(response.status == 200)
                        let merged = try await client.send(
                            .post, "/sessions/hot/update", json: SessionOperation.updateMetadata(["w\(writer)": .int(Int64(index))]))
                        #expect(merged.status == 200)
                        _ = try await append(client, "cold-\(writer)", "c\(index)")
                    }
                }
            }
            try await group.waitForAll()
        }
        // What the database holds, read by a fresh process: every write, in each writer's order,
        // and each writer's last metadata (a later write committed before an earlier one
        // would leave an older value).
        host.process.signal(SIGTERM)
        #expect(try await host.process.waitForExit() == 0)
        try await host.startServing()
        let restarted = host.client()
        let stored = try await history(restarted, "hot")
        #expect(stored.count == 240)
        let metadata = try await restarted.send(.get, "/sessions/hot/history").decode(HostAPI.History.self).metadata
        for writer in 0..<8 {
            #expect(stored.filter { $0.hasPrefix("w\(writer)-") } == (0..<30).map { "w\(writer)-\($0)" })
            #expect(metadata["w\(writer)"] == 29, "writer \(writer)'s last metadata")
            #expect(try await history(restarted, "cold-\(writer)") == (0..<30).map { "c\($0)" })
        }
        await host.stop()
        await cluster?.stop()
    }

    /// What the committer holds: batches in flight and writes waiting for a batch.
    private func committer(_ client: JSONClient) async throws -> (inFlight: Double, queued: Double) {
        let exposition = try await client.send(.get, "/metrics").text
        return (metric(exposition, "host_storage_commits_in_flight") ?? 0, metric(exposition, "host_storage_writes_queued") ?? 0)
    }

    /// What the committer holds once a second write has reached it, with one batch held at the
    /// gate: the write either started a batch of its own or waits in the queue.
    private func committerOnceSecondWriteArrives(_ client: JSONClient) async throws -> (inFlight: Double, queued: Double) {
        try await eventually("the second write is taken or waits") { () -> (inFlight: Double, queued: Double)? in
            let now = try await committer(client)
            return now.queued == 1 || now.inFlight > 1 ? now : nil
        }
    }

    @Test("several commits in flight: a write queued behind a failing one of its session waits for it, and fails with it")
    func noWriteOvertakesAFailingOne() async throws {
        // While the gate file exists every batch waits before it commits: the second write is
        // queued while the first is in flight, however slow the machine. Four batches may be
        // in flight, but never two holding one session.
        let gates = TemporaryDirectory("gate")
        let gate = gates.file("closed")
        let (host, cluster) = try await HostHarness.make(
            .postgres, arguments: ["--commits-in-flight", "4", "--commit-gate", gate], product: HostHarness.holdingCommits)
        let database = try #require(cluster)
        try await host.startServing()
        let client = host.client()
        #expect(try await append(client, "s", "first").status == 200)
        // Another writer takes the row the next append will use: its commit hits a real constraint.
        _ = try database.query(
            "INSERT INTO messages (session_id, seq, role, content, timestamp) VALUES ('s', 1, 'user', convert_to('intruder', 'UTF8'), 1)")
        #expect(FileManager.default.createFile(atPath: gate, contents: nil))
        async let doomed = append(client, "s", "second")
        try await eventually("the doomed batch is in flight") { try await committer(client).inFlight == 1 }
        async let behind = append(client, "s", "third")
        let held = try await committerOnceSecondWriteArrives(client)
        #expect(held.inFlight == 1 && held.queued == 1, "it waits for its session's batch instead of joining another: \(held)")
        try FileManager.default.removeItem(atPath: gate)
        #expect(try await doomed.status == 503)
        let third = try await behind
        #expect(third.status == 503, "computed on top of a write that failed, it must not be committed: \(third.text)")
        #expect(try await history(client, "s") == ["first", "intruder"])
        #expect(try await append(client, "s", "fourth").status == 200)
        #expect(try await history(client, "s") == ["first", "intruder", "fourth"])
        await host.stop()
        await database.stop()
    }

    @Test("commits_in_flight: on PostgreSQL a write to another session commits beside one in flight, not after it", arguments: [1, 4])
    func commitsInFlight(limit: Int) async throws {
        let gates = TemporaryDirectory("gate")
        let gate = gates.file("closed")
        let (host, cluster) = try await HostHarness.make(
            .postgres, arguments: ["--commits-in-flight", "\(limit)", "--commit-gate", gate], product: HostHarness.holdingCommits)
        try await host.startServing()
        let client = host.client()
        #expect(FileManager.default.createFile(atPath: gate, contents: nil))
        async let first = append(client, "one", "a")
        try await eventually("the first batch is in flight") { try await committer(client).inFlight == 1 }
        async let second = append(client, "two", "b")
        let held = try await committerOnceSecondWriteArrives(client)
        #expect(held.inFlight == Double(min(limit, 2)), "at most \(limit) in flight: \(held)")
        try FileManager.default.removeItem(atPath: gate)
        #expect(try await [first.status, second.status] == [200, 200])
        await host.stop()
        await cluster?.stop()
    }

    @Test("SIGTERM under load finishes in-flight requests and loses no acknowledged write")
    func gracefulShutdown() async throws {
        let host = HostHarness()
        try await host.start()
        let client = host.client()
        let acknowledged = Mutexed<[String]>([])
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for writer in 0..<16 {
                    group.addTask {
                        for index in 0..<1_000 {
                            guard let response = try? await append(client, "drain", "w\(writer)-\(index)") else { return }
                            guard response.status == 200 else { return }
                            acknowledged.update { $0.append("w\(writer)-\(index)") }
                        }
                    }
                }
            }
        }
        try await eventually("100 appends acknowledged", timeout: .seconds(60)) { acknowledged.get().count >= 100 }
        host.process.signal(SIGTERM)
        #expect(try await host.process.waitForExit() == 0)
        await load.value
        #expect(host.process.log.contains("storage closed"))

        try await host.start()
        let stored = Set(try await history(host.client(), "drain"))
        let lost = Set(acknowledged.get()).subtracting(stored)
        #expect(lost.isEmpty, "\(lost.count) acknowledged writes lost in a graceful shutdown")
        await host.stop()
    }
    @Test("a host whose disk is full starts, serves reads, refuses writes with 503 and takes them again once space returns")
    func fullDisk() async throws {
        let disk = try SmallDisk(megabytes: 4)
        defer { disk.remove() }
        let host = HostHarness(dataPath: disk.directory.file("data"))
        try await host.start()
        for index in 0..<3 { #expect(try await append(host.client(), "kept", "m\(index)").status == 200) }
        await host.stop()

        try disk.fill()
        try await host.start()
        #expect(try await history(host.client(), "kept") == ["m0", "m1", "m2"], "reads are served on a full disk")
        // 800 KB of hex (about 400 KB once compressed): more than the WAL file the last run may
        // leave (185 KB seen), whose room SQLite reuses once the WAL is checkpointed: a write
        // that fits there succeeds on a full disk, durably. This one needs new room.
        let large = (0..<4).map { _ in MessageInput(role: .user, content: (0..<6_250).map { _ in UUID().uuidString.prefix(32) }.joined()) }
        let refused = try await host.client().send(
            .post, "/sessions/kept/update", json: SessionOperation.appendMessages(large), timeout: .seconds(60))
        #expect(refused.status == 503)
        #expect(refused.errorCode == "storage_unavailable")
        let health = try await host.client().send(.get, "/health").object
        #expect(health["status"] as? String == "degraded")
        #expect((health["storage"] as? [String: Any])?["status"] as? String == "failing")

        disk.free()
        // No restart: the next write finds the room.
        #expect(try await append(host.client(), "kept", "room again").status == 200)
        #expect(try await history(host.client(), "kept") == ["m0", "m1", "m2", "room again"])
        #expect(try await host.client().send(.get, "/health").object["status"] as? String == "ok")
        await host.stop()
    }
}
