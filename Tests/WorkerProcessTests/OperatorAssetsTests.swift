import CurlHTTP
import Foundation
import HashRing
import TestSupport
import Testing

/// The operator's assets in deploy/observability: what they name is what the servers export.
@Suite("Operator assets: the Grafana dashboard and the alert rules name only metrics the servers export")
struct OperatorAssetsTests {
    static let observability = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("deploy/observability")

    /// Every metric name (`worker_...`, `host_...`) in `text`, without a histogram's suffixes.
    static func metricNames(in text: String) -> Set<String> {
        let pattern = try! NSRegularExpression(pattern: #"\b(?:worker|host)_[a-z_]+\b"#)
        let range = NSRange(text.startIndex..., in: text)
        return Set(
            pattern.matches(in: text, range: range).compactMap { match in
                Range(match.range, in: text).map { String(text[$0]) }
            })
    }

    /// The metric families a `/metrics` answer holds (its `# TYPE` lines), with each
    /// histogram's series names.
    static func exported(_ exposition: String) -> Set<String> {
        var names: Set<String> = []
        for line in exposition.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            guard parts.count >= 4 else { continue }
            let name = String(parts[2])
            names.insert(name)
            if parts[3] == "histogram" { names.formUnion(["\(name)_bucket", "\(name)_sum", "\(name)_count"]) }
        }
        return names
    }

    /// The value of an unlabelled series in a `/metrics` answer.
    static func value(of name: String, in exposition: String) -> Double? {
        exposition.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
    }

    @Test("each metric of the dashboard and of the alert rules is on a running stack's /metrics (hosts on PostgreSQL and on SQLite, a worker)")
    func namedMetricsAreExported() async throws {
        let dashboard = try String(contentsOf: Self.observability.appendingPathComponent("grafana-dashboard.json"), encoding: .utf8)
        let rules = try String(contentsOf: Self.observability.appendingPathComponent("alerts.yml"), encoding: .utf8)
        #expect((try? JSONSerialization.jsonObject(with: Data(dashboard.utf8))) != nil, "the dashboard is JSON")
        let named = Self.metricNames(in: dashboard).union(Self.metricNames(in: rules))
        #expect(named.count >= 30, "\(named.sorted())")

        // Some metrics are a storage's own: ring changes by lease on PostgreSQL, writes held
        // for an unreachable owner on a host's own SQLite file.
        let stack = try await SharedStack.start(hosts: 2, workers: 1)
        let sqlite = HostHarness()
        try await sqlite.startServing()
        var client = MCPTestClient(base: stack.workers[0].base)
        try await client.initialize()
        // Traffic that creates the metrics with labels: a tool call, a question in a conversation.
        _ = try await client.callTool(
            "search_repository", ["query": "router", "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]]])
        _ = try await client.callTool(
            "query_repository", ["query": "what is it?", "repositories": [["remote": "github", "repository": "acme/widgets", "branch": "main"]]])

        var exported: Set<String> = []
        // Usage is flushed every few seconds; the missing ones are named below if any never come.
        do {
            try await eventually("every named metric is exported", timeout: .seconds(30), every: .milliseconds(500)) {
                exported = []
                for base in [stack.workers[0].base, sqlite.base] + stack.hosts.map(\.base) {
                    let response = try await JSONClient(base: base).send(.get, "/metrics")
                    exported.formUnion(Self.exported(response.text))
                }
                return named.isSubset(of: exported)
            }
        } catch {
            // Named below.
        }
        #expect(named.subtracting(exported).isEmpty, "named but not exported: \(named.subtracting(exported).sorted())")
        // The gauges set at each scrape tell the state: hosts serving, one ring version, no writes waiting.
        for host in stack.hosts + [sqlite] {
            let text = try await JSONClient(base: host.base).send(.get, "/metrics").text
            #expect(Self.value(of: "host_serving", in: text) == 1 && Self.value(of: "host_ring_settled", in: text) == 1, "\(host.node)")
        }
        let version = try await stack.ring(from: stack.hosts[0]).version
        let worker = try await JSONClient(base: stack.workers[0].base).send(.get, "/metrics").text
        #expect(Self.value(of: "worker_ring_version", in: worker) == Double(version))
        #expect(Self.value(of: "worker_fallback_writes_pending", in: worker) == 0)
        await sqlite.stop()
        await stack.stop()
    }

    @Test("the names found are the ones written: a misspelt metric would be caught")
    func namesAreFound() {
        let names = Self.metricNames(in: #"expr: sum(rate(worker_tool_calls_total{outcome="x"}[5m])) / host_serving == 0"#)
        #expect(names == ["worker_tool_calls_total", "host_serving"])
        let exported = Self.exported(
            "# TYPE host_storage_commit_seconds histogram\nhost_storage_commit_seconds_bucket{le=\"0.1\"} 1\n# TYPE host_serving gauge\n")
        #expect(
            exported == [
                "host_storage_commit_seconds", "host_storage_commit_seconds_bucket", "host_storage_commit_seconds_sum", "host_storage_commit_seconds_count",
                "host_serving",
            ])
    }
}
