import CurlHTTP
import Foundation
import TestSupport
import Testing

/// The stand-in for Greptile and GitHub, one durable host and the workers, as real processes.
struct WorkerStack {
    let standIn: UpstreamStandIn
    let host: HostHarness?
    let workers: [WorkerHarness]

    var worker: WorkerHarness { workers[0] }

    /// The repository the stand-in has indexed already, under its default branch.
    static var repository: [String: Any] { ["remote": "github", "repository": "acme/widgets"] }
    static let indexedKey = UpstreamStandIn.indexedRepository

    /// Starts everything; `durable: false` runs the workers without hosts (in-memory sessions).
    static func start(
        workers count: Int = 1, durable: Bool = true, workerArguments: [String] = [], workerEnvironment: [String: String] = [:],
        hostArguments: [String] = []
    ) async throws -> WorkerStack {
        let standIn = try await UpstreamStandIn.startIndexed()
        var host: HostHarness?
        if durable {
            let started = HostHarness(arguments: hostArguments)
            try await started.start()
            host = started
        }
        var workers: [WorkerHarness] = []
        for _ in 0..<count {
            let worker = WorkerHarness(
                arguments: workerArguments, environment: standIn.workerEnvironment.merging(workerEnvironment) { $1 })
            try await worker.start(hosts: host.map { [$0.member] } ?? [])
            workers.append(worker)
        }
        return WorkerStack(standIn: standIn, host: host, workers: workers)
    }

    func stop() async {
        for worker in workers { await worker.stop() }
        await host?.stop()
        await standIn.stop()
    }

    /// A client of the first worker with a session already initialized.
    func session(apiKey: String? = nil) async throws -> MCPTestClient {
        var client = MCPTestClient(base: worker.base, apiKey: apiKey)
        try await client.initialize()
        return client
    }

    /// The JSON body of a recorded upstream request.
    static func body(_ request: [String: Any]) -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(((request["body"] as? String) ?? "").utf8))) as? [String: Any]) ?? [:]
    }

    static func header(_ request: [String: Any], _ name: String) -> String? {
        (request["headers"] as? [String: String])?.first { $0.key.lowercased() == name.lowercased() }?.value
    }

    /// The roles and contents Greptile was sent with a recorded `/query`.
    static func turns(_ request: [String: Any]) -> [String] {
        ((body(request)["messages"] as? [[String: Any]]) ?? []).map { "\($0["role"] ?? "?"): \($0["content"] ?? "?")" }
    }
}

extension HTTPResponse {
    /// The body as text, for failure messages.
    var text: String { String(decoding: body, as: UTF8.self) }

    /// `error.code` and `error.message` of a JSON-RPC error reply.
    var rpcError: (code: Int, message: String)? {
        guard let error = object["error"] as? [String: Any], let code = error["code"] as? Int else { return nil }
        return (code, error["message"] as? String ?? "")
    }
}
