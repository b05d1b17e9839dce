import CurlHTTP
import Foundation
import TestSupport
import Testing

/// A real OTLP/HTTP receiver (Tests/Fixtures/otlp_receiver.py): it decodes the exports with
/// the official opentelemetry-proto messages and lists the spans it got.
struct OTLPReceiver {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/otlp_receiver.py").path
    let process: ServiceProcess
    let base: String
    let directory: TemporaryDirectory

    static func start() async throws -> OTLPReceiver {
        let directory = TemporaryDirectory("otlp")
        let process = try ServiceProcess(executable: "/usr/bin/env", arguments: ["python3", "-u", script], logPath: directory.file("receiver.log"))
        return OTLPReceiver(process: process, base: try await process.waitForListening(), directory: directory)
    }

    /// The spans of `traceID` received so far.
    func spans(of traceID: String) async throws -> [ReceivedSpan] {
        let response = try await JSONClient(base: base).send(.get, "/spans")
        let all = (try JSONSerialization.jsonObject(with: response.body)) as? [[String: Any]] ?? []
        return all.map(ReceivedSpan.init).filter { $0.traceID == traceID }
    }

    func stop() async { await process.stop() }
}

struct ReceivedSpan: CustomStringConvertible {
    let service: String
    let traceID: String
    let id: String
    let parent: String
    let name: String
    let attributes: [String: Any]
    let failed: Bool
    let events: [String]

    init(_ json: [String: Any]) {
        service = json["service"] as? String ?? ""
        traceID = json["trace_id"] as? String ?? ""
        id = json["span_id"] as? String ?? ""
        parent = json["parent_span_id"] as? String ?? ""
        name = json["name"] as? String ?? ""
        attributes = json["attributes"] as? [String: Any] ?? [:]
        failed = ((json["status"] as? [String: Any])?["code"] as? Int) == 2
        events = json["events"] as? [String] ?? []
    }

    var description: String { "\(service): \(name) [\(id) <- \(parent)]\(failed ? " FAILED" : "")\(events.isEmpty ? "" : " \(events)")" }
}

extension [ReceivedSpan] {
    /// Whether `span` descends from the span `ancestor` (through any number of parents).
    func descends(_ span: ReceivedSpan, from ancestor: ReceivedSpan) -> Bool {
        var parent = span.parent
        var seen = 0
        while !parent.isEmpty, seen < count {
            if parent == ancestor.id { return true }
            parent = first { $0.id == parent }?.parent ?? ""
            seen += 1
        }
        return false
    }
}

@Suite("Traces: one call followed through nginx, a worker, the hosts, the commit and Greptile, to a real OTLP receiver", .serialized)
struct TraceTests {
    static var repository: [String: Any] { ["remote": "github", "repository": "acme/widgets", "branch": "main"] }

    /// A stateless `tools/call` of query_repository through `front`, its `_meta` carrying the
    /// client's trace context.
    static func query(
        _ front: String, _ text: String, session: String, traceparent: String, header: String? = nil, asTask: Bool = false
    ) async throws -> [String: Any] {
        let capabilities: [String: Any] = asTask ? ["extensions": ["io.modelcontextprotocol/tasks": [String: Any]()]] : [:]
        let params: [String: Any] = [
            "name": "query_repository", "arguments": ["query": text, "session_id": session, "repositories": [repository]],
            "_meta": [
                "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": capabilities,
                "traceparent": traceparent,
            ],
        ]
        var headers: HTTPHeaders = [
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call", "Mcp-Name": "query_repository",
        ]
        if let header { headers.set("traceparent", header) }
        let body = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params])
        let response = try await JSONClient(base: front).send(.post, "/mcp", body: body, headers: headers, timeout: .seconds(60))
        return response.object["result"] as? [String: Any] ?? response.object
    }

    static func randomHex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    @Test(
        "a client's _meta.traceparent is the root; the worker, its host call, the host, its commit and Greptile are children in order; a task's run too; an outage shows retries and the fallback"
    )
    func oneCallOneTrace() async throws {
        let receiver = try await OTLPReceiver.start()
        let standIn = try await UpstreamStandIn.startIndexed()
        let stack = try await DeployStack.up(
            "local", standIn: standIn, overrides: ["hosts.count=2"],
            environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base, "OTEL_BSP_SCHEDULE_DELAY": "100"])
        // The stack's processes are not this test's children: they are stopped whatever happens.
        do {
            try await Self.follow(stack: stack, standIn: standIn, receiver: receiver)
        } catch {
            await stack.down()
            throw error
        }
        await stack.down()
        await standIn.stop()
        await receiver.stop()
    }

    private static func follow(stack: DeployStack, standIn: UpstreamStandIn, receiver: OTLPReceiver) async throws {
        let traceID = Self.randomHex(16)
        let clientSpan = Self.randomHex(8)
        // A traceparent header too (logged by nginx, passed on): the one in _meta wins.
        let headerTrace = Self.randomHex(16)
        let answered = try await Self.query(
            stack.front, "what does the router do?", session: "traced", traceparent: "00-\(traceID)-\(clientSpan)-01",
            header: "00-\(headerTrace)-\(Self.randomHex(8))-01")
        #expect(answered["isError"] as? Bool != true, "\(answered)")

        let spans = try await eventually("the trace's spans arrive", timeout: .seconds(30)) { () async throws -> [ReceivedSpan]? in
            let spans = try await receiver.spans(of: traceID)
            return spans.contains { $0.name == "storage commit" } && spans.contains { $0.name.hasPrefix("Greptile") } ? spans : nil
        }
        let worker = try #require(spans.first { $0.name == "tools/call query_repository" }, "\(spans)")
        #expect(worker.service == "mcp-worker")
        #expect(worker.parent == clientSpan, "the client's span is the worker's parent: \(worker)")
        #expect(worker.attributes["mcp.method.name"] as? String == "tools/call")
        #expect(worker.attributes["mcp.protocol.version"] as? String == "2026-07-28")
        // nginx's request id is on the worker's span.
        let requestID = try #require(worker.attributes["http.request.header.x-request-id"] as? String, "\(worker.attributes)")
        #expect(stack.accessLog.contains { $0.contains("request_id=\(requestID)") }, "\(stack.accessLog)")

        let greptile = try #require(spans.first { $0.name == "Greptile POST /v2/query" }, "\(spans)")
        #expect(spans.descends(greptile, from: worker) && greptile.attributes["http.response.status_code"] as? Int == 200, "\(greptile)")
        let sent = try await standIn.requests(to: "/v2/query").last?["headers"] as? [String: String] ?? [:]
        #expect(sent.first { $0.key.lowercased() == "traceparent" }?.value.contains(traceID) == true, "Greptile is sent the trace: \(sent)")

        let write = try #require(spans.first { $0.name.hasPrefix("host call append") }, "\(spans)")
        #expect(spans.descends(write, from: worker) && write.attributes["host.outcome"] as? String == "answered", "\(write)")
        let attempt = try #require(spans.first { $0.parent == write.id && $0.name == "host POST /sessions/{id}/update" }, "\(spans)")
        let served = try #require(spans.first { $0.parent == attempt.id }, "the host continues the worker's attempt: \(spans)")
        #expect(served.service == "durable-host" && served.name == "host POST /sessions/{id}/update")
        let commit = try #require(spans.first { $0.name == "storage commit" && $0.parent == served.id }, "\(spans)")
        #expect(commit.attributes["db.system"] as? String == "sqlite")
        #expect((commit.attributes["storage.batch_size"] as? Int ?? 0) >= 1)
        #expect(Set(spans.map(\.traceID)) == [traceID])
        #expect(try await receiver.spans(of: headerTrace).isEmpty)
        #expect(stack.accessLog.contains { $0.contains("request_id=\(requestID)") && $0.contains("traceparent=00-\(headerTrace)-") }, "\(stack.accessLog)")

        // A task: its run, which outlives the request, is still that request's child.
        let taskTrace = Self.randomHex(16)
        let created = try await Self.query(
            stack.front, "as a task", session: "traced-task", traceparent: "00-\(taskTrace)-\(Self.randomHex(8))-01", asTask: true)
        #expect(created["taskId"] is String, "\(created)")
        let taskSpans = try await eventually("the task's spans arrive", timeout: .seconds(30)) { () async throws -> [ReceivedSpan]? in
            let spans = try await receiver.spans(of: taskTrace)
            return spans.contains { $0.name == "task run query_repository" } && spans.contains { $0.name.hasPrefix("Greptile") } ? spans : nil
        }
        let request = try #require(taskSpans.first { $0.name == "tools/call query_repository" }, "\(taskSpans)")
        let run = try #require(taskSpans.first { $0.name == "task run query_repository" })
        let asked = try #require(taskSpans.first { $0.name == "Greptile POST /v2/query" }, "\(taskSpans)")
        #expect(taskSpans.descends(run, from: request) && taskSpans.descends(asked, from: run), "\(taskSpans)")

        // Both hosts gone: the next call's trace shows the attempts that failed, the retries and
        // the fallback to the worker's memory.
        for host in ["host-1", "host-2"] { kill(try #require(stack.pids[host]), SIGKILL) }
        let outageTrace = Self.randomHex(16)
        _ = try await Self.query(stack.front, "and now?", session: "traced-outage", traceparent: "00-\(outageTrace)-\(Self.randomHex(8))-01")
        let outage = try await eventually("the outage's spans arrive", timeout: .seconds(30)) { () async throws -> [ReceivedSpan]? in
            let spans = try await receiver.spans(of: outageTrace)
            return spans.contains { $0.name.hasPrefix("fallback") } && spans.contains { $0.name.hasPrefix("Greptile") } ? spans : nil
        }
        #expect(outage.contains { $0.name.hasPrefix("host call") && $0.attributes["host.outcome"] as? String == "unreachable" && $0.failed }, "\(outage)")
        #expect(outage.filter { $0.name.hasPrefix("host ") && $0.failed && $0.service == "mcp-worker" }.count >= 2, "\(outage)")
        #expect(outage.contains { $0.events.contains("retry") }, "\(outage)")
        // The worker's log lines of that call carry its trace id beside nginx's request id.
        let logs = stack.directory.file("run/logs")
        let workerLines = ((try? FileManager.default.contentsOfDirectory(atPath: logs)) ?? []).filter { $0.hasPrefix("worker-") }
            .map { (try? String(contentsOfFile: logs + "/" + $0, encoding: .utf8)) ?? "" }.joined().split(separator: "\n")
        let traced = workerLines.filter { $0.contains("trace_id=\(outageTrace)") }
        #expect(!traced.isEmpty && traced.allSatisfy { $0.contains("request_id=") && $0.contains("span_id=") }, "\(workerLines.suffix(20))")
    }
}
