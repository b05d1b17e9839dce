import CurlHTTP
import Foundation
import SessionModel
import TestSupport
import Testing

extension StorageBackend: CustomTestStringConvertible {
    public var testDescription: String { rawValue }
}

@Suite("durable-host over HTTP, as a real process, on each storage backend")
struct HostAPITests {
    @Test("the seed's three operations, clear and the record answer in the seed's JSON shapes", arguments: StorageBackend.allCases)
    func lifecycle(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend)
        try await host.startServing()
        let client = host.client()

        let empty = try await client.send(.get, "/sessions/conv-1/history")
        #expect(empty.status == 200)
        #expect(try empty.decode(HostAPI.History.self) == HostAPI.History(data: [], metadata: [:]))
        #expect(try await client.send(.get, "/sessions/conv-1").errorCode == "session_not_found")

        let appended = try await client.send(
            .post, "/sessions/conv-1/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "What does main do?")))
        #expect(appended.status == 200)
        let result = try appended.decode(HostAPI.Write.self).data
        #expect(result.messageCount == 1)
        #expect(abs(result.createdAt - Date().timeIntervalSince1970) < 60)

        _ = try await client.send(
            .post, "/sessions/conv-1/update",
            json: SessionOperation.appendMessage(MessageInput(role: .assistant, content: "It starts the server.", timestamp: 1_700_000_000.25)))
        _ = try await client.send(.post, "/sessions/conv-1/update", json: SessionOperation.updateMetadata(["repository": "owner/repo", "turns": 1]))

        let history = try await client.send(.get, "/sessions/conv-1/history")
        let historyJSON = history.object
        #expect(Set(historyJSON.keys) == ["success", "data", "metadata"])
        let decoded = try history.decode(HostAPI.History.self)
        #expect(decoded.data.map(\.content) == ["What does main do?", "It starts the server."])
        #expect(decoded.data.map(\.role) == [.user, .assistant])
        #expect(try decoded.data.at(1).timestamp == 1_700_000_000.25)
        #expect(decoded.metadata == ["repository": "owner/repo", "turns": 1])

        // The newest messages only, and how many there are in all.
        let tail = try await client.send(.get, "/sessions/conv-1/history?last=1").decode(HostAPI.History.self)
        #expect(tail.data.map(\.content) == ["It starts the server."] && tail.messageCount == 2 && tail.metadata == decoded.metadata)
        #expect(try await client.send(.get, "/sessions/conv-1/history?last=9").decode(HostAPI.History.self).data.count == 2)
        #expect(try await client.send(.get, "/sessions/conv-1/history?last=-1").errorCode == "invalid_field")
        #expect(try await client.send(.get, "/sessions/conv-1/history").object["message_count"] == nil, "the seed's shape when all is asked")

        let record = try await client.send(.get, "/sessions/conv-1").decode(HostAPI.Record.self).data
        #expect(record.id == "conv-1")
        #expect(record.messages == decoded.data)
        #expect(record.lastUpdated >= record.createdAt)

        _ = try await client.send(.post, "/sessions/conv-1/update", json: SessionOperation.setHistory([MessageInput(role: .system, content: "reset")]))
        #expect(try await client.send(.get, "/sessions/conv-1/history").decode(HostAPI.History.self).data.map(\.content) == ["reset"])

        let cleared = try await client.send(.delete, "/sessions/conv-1/clear")
        #expect(cleared.status == 200)
        #expect(try cleared.decode(HostAPI.Write.self).data.cleared == true)
        #expect(try await client.send(.get, "/sessions/conv-1/history").decode(HostAPI.History.self) == HostAPI.History(data: [], metadata: [:]))
        #expect(try await client.send(.delete, "/sessions/conv-1/clear").decode(HostAPI.Write.self).data.cleared == false)
        await host.stop()
        await cluster?.stop()
    }

    @Test("every bad request gets its status and error code, and changes nothing", arguments: StorageBackend.allCases)
    func badRequests(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend, arguments: ["--max-body-bytes", "2048", "--max-content-bytes", "100"])
        try await host.startServing()
        let client = host.client()
        _ = try await client.send(.post, "/sessions/s/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "keep me")))
        let before = try await client.send(.get, "/sessions/s").body

        let cases: [(HTTPRequest.Method, String, String?, String, Int, String)] = [
            (.post, "/sessions/s/update", "{not json", "application/json", 400, "invalid_json"),
            (.post, "/sessions/s/update", "[]", "application/json", 400, "invalid_request"),
            (.post, "/sessions/s/update", #"{"operation":"truncate"}"#, "application/json", 400, "unknown_operation"),
            (.post, "/sessions/s/update", #"{"operation":"append_message"}"#, "application/json", 400, "missing_field"),
            (.post, "/sessions/s/update", #"{"operation":"append_message","message":{"role":"user","content":[]}}"#, "application/json", 400, "invalid_field"),
            (
                .post, "/sessions/s/update", #"{"operation":"append_message","message":{"role":"robot","content":"x"}}"#, "application/json", 400,
                "invalid_field"
            ),
            (.post, "/sessions/s/update", #"{"operation":"update_metadata","metadata":"x"}"#, "application/json", 400, "invalid_field"),
            (
                .post, "/sessions/s/update", #"{"operation":"append_message","message":{"role":"user","content":"\#(String(repeating: "x", count: 101))"}}"#,
                "application/json", 422, "limit_exceeded"
            ),
            (.post, "/sessions/s/update", String(repeating: " ", count: 3000) + "{}", "application/json", 413, "payload_too_large"),
            (
                .post, "/sessions/s/update", #"{"operation":"append_message","message":{"role":"user","content":"x"}}"#, "text/plain", 415,
                "unsupported_media_type"
            ),
            (.post, "/sessions/s/update", #"{"operation":"append_message","message":{"role":"user","content":"x"}}"#, "", 415, "unsupported_media_type"),
            (
                .post, "/sessions/bad%20id/update", #"{"operation":"append_message","message":{"role":"user","content":"x"}}"#, "application/json", 400,
                "invalid_session_id"
            ),
            (.get, "/sessions/\(String(repeating: "a", count: 129))/history", nil, "", 400, "invalid_session_id"),
            (.get, "/sessions/s/update", nil, "", 405, "method_not_allowed"),
            (.delete, "/sessions/s/history", nil, "", 405, "method_not_allowed"),
            (.post, "/sessions/s/clear", "{}", "application/json", 405, "method_not_allowed"),
            (.post, "/health", "{}", "application/json", 405, "method_not_allowed"),
            (.get, "/sessions/s/rename", nil, "", 404, "not_found"),
            (.get, "/nothing", nil, "", 404, "not_found"),
            (.get, "/sessions/s/history/more", nil, "", 404, "not_found"),
            (.get, "/sessions?limit=0", nil, "", 400, "invalid_field"),
            (.get, "/sessions?before=yesterday", nil, "", 400, "invalid_field"),
            (.get, "/sessions?principal=a%20b", nil, "", 400, "invalid_field"),
            (.post, "/sessions", "{}", "application/json", 405, "method_not_allowed"),
            (.delete, "/principals/a%20b", nil, "", 400, "invalid_field"),
            (.get, "/principals/alice", nil, "", 405, "method_not_allowed"),
            (
                .post, "/sessions/s/update", #"{"operation":"update_metadata","metadata":{},"principal":"someone else","expires_after":-5}"#,
                "application/json", 400, "invalid_field"
            ),
            (
                .post, "/sessions/s/update", #"{"operation":"put_record","record":{"messages":[],"created_at":1,"last_updated":2}}"#,
                "application/json", 409, "session_exists"
            ),
        ]
        for (method, path, body, contentType, status, code) in cases {
            var headers: HTTPHeaders = [:]
            if !contentType.isEmpty { headers.set("Content-Type", contentType) }
            let response = try await client.send(method, path, body: body.map { Data($0.utf8) }, headers: headers)
            #expect(response.status == status, "\(method.rawValue) \(path.prefix(40)) \(body?.prefix(60) ?? ""): \(response.text)")
            #expect(response.errorCode == code, "\(method.rawValue) \(path.prefix(40)): \(response.text)")
            #expect(response.object["success"] as? Bool == false)
            #expect((response.object["error"] as? [String: Any])?["message"] as? String != nil)
            if status == 405 { #expect(response.headers["Allow"] != nil) }
        }
        let bad = try await client.send(
            .post, "/sessions/s/update", text: #"{"operation":"append_message","message":{"role":"user","content":"x"}}"#,
            headers: ["Idempotency-Key": String(repeating: "k", count: 201)])
        #expect(bad.errorCode == "invalid_idempotency_key")
        #expect(try await client.send(.get, "/sessions/s").body == before, "no bad request changed the session")
        await host.stop()
        await cluster?.stop()
    }

    @Test("every limit, set by flag, environment or config file, is the one the host applies: at the limit accepted, one past it refused")
    func limitsThroughTheProcess() async throws {
        let directory = TemporaryDirectory("limits")
        let config = directory.file("host.json")
        try #"{"max_messages_per_session": 3, "max_metadata_bytes": 64}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let host = HostHarness(
            arguments: ["--config", config, "--max-content-bytes", "20", "--max-body-bytes", "1024"],
            environment: ["DURABLE_HOST_MAX_SESSION_BYTES": "50", "DURABLE_HOST_MAX_ID_LENGTH": "10", "DURABLE_HOST_REQUEST_READ_TIMEOUT": "1"])
        try await host.startServing()
        let client = host.client()
        func append(_ id: String, _ content: String) async throws -> HTTPResponse {
            try await client.send(.post, "/sessions/\(id)/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: content)))
        }
        func expectRefused(_ response: HTTPResponse, _ status: Int, _ code: String, _ what: String) {
            #expect(response.status == status && response.errorCode == code, "\(what): \(response.status) \(response.text)")
        }

        // max_id_length (environment): 10 bytes.
        #expect(try await append("tenbytesid", "x").status == 200)
        expectRefused(try await append("eleven-byte", "x"), 400, "invalid_session_id", "an 11-byte id")
        // max_content_bytes (flag): 20 bytes.
        #expect(try await append("content", String(repeating: "c", count: 20)).status == 200)
        expectRefused(try await append("content", String(repeating: "c", count: 21)), 422, "limit_exceeded", "21 bytes of content")
        // max_messages_per_session (config file): 3.
        for _ in 0..<3 { #expect(try await append("messages", "m").status == 200) }
        expectRefused(try await append("messages", "m"), 422, "limit_exceeded", "a fourth message")
        // max_session_bytes (environment): 50 bytes of content in a session.
        for content in [String(repeating: "b", count: 20), String(repeating: "b", count: 20)] {
            #expect(try await append("bytes", content).status == 200)
        }
        expectRefused(try await append("bytes", String(repeating: "b", count: 11)), 422, "limit_exceeded", "51 bytes in the session")
        #expect(try await append("bytes", String(repeating: "b", count: 10)).status == 200)
        // max_metadata_bytes (config file): 64 bytes of metadata JSON; {"k":"..."} is 8 bytes and its value.
        let fits = try await client.send(
            .post, "/sessions/meta/update", json: SessionOperation.updateMetadata(["k": .string(String(repeating: "v", count: 56))]))
        #expect(fits.status == 200, "\(fits.text)")
        let tooBig = try await client.send(
            .post, "/sessions/meta/update", json: SessionOperation.updateMetadata(["k": .string(String(repeating: "v", count: 57))]))
        expectRefused(tooBig, 422, "limit_exceeded", "65 bytes of metadata")
        // max_body_bytes (flag): 1,024 bytes of request body.
        let body = #"{"operation":"append_message","message":{"role":"user","content":"x"}}"#
        let padded = { (size: Int) in String(repeating: " ", count: size - body.utf8.count) + body }
        #expect(try await client.send(.post, "/sessions/body/update", text: padded(1024)).status == 200)
        expectRefused(try await client.send(.post, "/sessions/body/update", text: padded(1025)), 413, "payload_too_large", "a 1,025-byte body")
        // request_read_timeout (environment): 1 s. One byte every 200 ms would take 40 s to
        // arrive; the host closes the connection after about 5 (slack for a loaded machine).
        let closedAfter = try await SlowConnection.headerBytesBeforeCutOff(port: host.port)
        let sentBytes = try #require(closedAfter, "the host never closed the slow connection")
        #expect(sentBytes < 60, "the connection stayed open for \(sentBytes) bytes")

        // Nothing refused was stored.
        let history = { (id: String) in try await client.send(.get, "/sessions/\(id)/history").decode(HostAPI.History.self).data.map(\.content) }
        #expect(try await history("content") == [String(repeating: "c", count: 20)])
        #expect(try await history("messages") == ["m", "m", "m"])
        #expect(try await history("bytes").map(\.utf8.count) == [20, 20, 10])
        #expect(
            try await client.send(.get, "/sessions/meta/history").decode(HostAPI.History.self).metadata == ["k": .string(String(repeating: "v", count: 56))])
        #expect(try await history("body") == ["x"])
        await host.stop()
    }

    @Test("/health reports node, sessions stored, storage and uptime; /metrics is Prometheus text", arguments: StorageBackend.allCases)
    func healthAndMetrics(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend, node: "alpha")
        try await host.startServing()
        let client = host.client()
        for id in 0..<3 {
            _ = try await client.send(.post, "/sessions/h\(id)/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "x")))
        }
        _ = try await client.send(.delete, "/sessions/h0/clear")
        let health = try await client.send(.get, "/health").object
        #expect(health["status"] as? String == "ok")
        #expect(health["node"] as? String == "alpha")
        #expect(health["sessions_stored"] as? Int == 2)
        #expect((health["storage"] as? [String: Any])?["status"] as? String == "ok")
        #expect((health["uptime_seconds"] as? Double ?? -1) >= 0)

        let metrics = try await client.send(.get, "/metrics")
        #expect(metrics.headers["Content-Type"]?.hasPrefix("text/plain") == true)
        for family in [
            #"host_requests_total{route="/sessions/{id}/update",method="POST",status="200"} 3"#,
            "host_request_duration_seconds_bucket", "host_storage_commit_seconds_bucket",
            "host_storage_batch_size_bucket", "# TYPE host_requests_total counter",
        ] {
            #expect(metrics.text.contains(family), "missing \(family)")
        }
        await host.stop()
        await cluster?.stop()
    }

    @Test("with a token, every route but /health needs it", arguments: StorageBackend.allCases)
    func authentication(backend: StorageBackend) async throws {
        let (host, cluster) = try await HostHarness.make(backend, environment: ["DURABLE_HOST_TOKEN": "s3cret-token"])
        try await host.startServing()
        let anonymous = host.client()
        #expect(try await anonymous.send(.get, "/health").status == 200)
        for path in ["/metrics", "/sessions/a/history", "/sessions/a"] {
            let response = try await anonymous.send(.get, path)
            #expect(response.status == 401, "\(path)")
            #expect(response.errorCode == "unauthorized")
            #expect(response.headers["WWW-Authenticate"] == "Bearer")
        }
        #expect(try await host.client(token: "wrong").send(.get, "/sessions/a/history").status == 401)
        let refused = try await anonymous.send(.post, "/sessions/a/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "x")))
        #expect(refused.status == 401)
        let authorized = host.client(token: "s3cret-token")
        #expect(try await authorized.send(.get, "/sessions/a/history").decode(HostAPI.History.self).data.isEmpty, "the refused write changed nothing")
        #expect(
            try await authorized.send(.post, "/sessions/a/update", json: SessionOperation.appendMessage(MessageInput(role: .user, content: "x"))).status == 200)
        #expect(!host.process.log.contains("s3cret-token"), "the token reached the log")
        await host.stop()
        await cluster?.stop()
    }
}

@Suite("durable-host configuration")
struct HostConfigurationTests {
    private func refusal(_ arguments: [String], environment: [String: String] = [:]) async throws -> (Int32, String) {
        let directory = TemporaryDirectory("config")
        let process = try ServiceProcess(
            executable: BuiltProducts.path("durable-host"), arguments: ["--data", directory.file("d")] + arguments,
            environment: environment, logPath: directory.file("log"))
        let status = try await process.waitForExit(timeout: .seconds(30))
        return (status, process.log)
    }

    @Test("it refuses to listen beyond loopback without a token")
    func openListenRefused() async throws {
        let (status, log) = try await refusal(["--listen", "0.0.0.0:0"])
        #expect(status == 2)
        #expect(log.contains("refusing to listen on 0.0.0.0:0 without a token"))
    }

    @Test("a config file with an unknown key, or a bad value, is refused naming the key")
    func badConfig() async throws {
        let directory = TemporaryDirectory("config")
        let unknown = directory.file("unknown.json")
        try #"{"listen": "127.0.0.1:0", "max_bach": 10}"#.write(toFile: unknown, atomically: true, encoding: .utf8)
        var (status, log) = try await refusal(["--config", unknown])
        #expect(status == 2)
        #expect(log.contains("config key 'max_bach'"))

        let wrong = directory.file("wrong.json")
        try #"{"listen": "127.0.0.1:0", "max_batch": "many"}"#.write(toFile: wrong, atomically: true, encoding: .utf8)
        (status, log) = try await refusal(["--config", wrong])
        #expect(status == 2)
        #expect(log.contains("config key 'max_batch'") && log.contains("must be a whole number"))

        (status, log) = try await refusal(["--listen", "127.0.0.1:0"], environment: ["DURABLE_HOST_SYNCHRONOUS": "sometimes"])
        #expect(status == 2)
        #expect(log.contains("DURABLE_HOST_SYNCHRONOUS must be full or normal"))
    }

    @Test("log_format json: every line a JSON object with time, level, label, message and the metadata; a bad format refused naming the key")
    func jsonLogs() async throws {
        let directory = TemporaryDirectory("config")
        let process = try ServiceProcess(
            executable: BuiltProducts.path("durable-host"),
            arguments: [
                "--data", directory.file("d"), "--listen", "127.0.0.1:0", "--node", "json \"quoted\"\nnode", "--log-format", "json", "--log-level", "debug",
            ],
            logPath: directory.file("log"))
        let base = try await process.waitForListening()
        // A refused request is logged at debug with Hummingbird's request metadata.
        _ = try await JSONClient(base: base).send(.post, "/sessions/x/update", body: Data("not json".utf8), headers: ["Content-Type": "application/json"])
        await process.stop()
        let lines = process.log.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count >= 3, "\(process.log)")
        for line in lines {
            let object = try #require(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
            #expect(["time", "level", "label", "message", "source"].allSatisfy { object[$0] is String }, "\(line)")
        }
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.contains { $0["node"] as? String == "json \"quoted\"\nnode" && $0["label"] as? String == "durable-host" }, "metadata escaped and kept")

        let (status, log) = try await refusal(["--listen", "127.0.0.1:0", "--log-format", "xml"])
        #expect(status == 2)
        #expect(log.contains("--log-format must be one of text, json (got 'xml')"), "\(log)")
    }

    @Test("a flag beats the environment, which beats the config file")
    func precedence() async throws {
        let directory = TemporaryDirectory("config")
        let file = directory.file("c.json")
        try #"{"listen": "127.0.0.1:0", "node": "from-file"}"#.write(toFile: file, atomically: true, encoding: .utf8)
        func node(_ arguments: [String], _ environment: [String: String]) async throws -> String? {
            let process = try ServiceProcess(
                executable: BuiltProducts.path("durable-host"),
                arguments: ["--data", directory.file("d-\(UUID().uuidString)"), "--config", file] + arguments,
                environment: environment, logPath: directory.file("log-\(UUID().uuidString)"))
            let base = try await process.waitForListening()
            let health = try await JSONClient(base: base).send(.get, "/health").object
            await process.stop()
            return health["node"] as? String
        }
        #expect(try await node([], [:]) == "from-file")
        #expect(try await node([], ["DURABLE_HOST_NODE": "from-env"]) == "from-env")
        #expect(try await node(["--node", "from-flag"], ["DURABLE_HOST_NODE": "from-env"]) == "from-flag")
    }
}
