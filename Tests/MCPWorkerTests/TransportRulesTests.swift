import CurlHTTP
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import ServiceMetrics
import SessionClient
import Testing

@testable import MCPWorker

/// The Streamable HTTP rules of `/mcp`, driven in process through Hummingbird's router test
/// framework: the responder of a real worker, sessions in memory, no upstream call made. The
/// process tests (WorkerProcessTests) keep a few of these per revision end to end.
@Suite("/mcp transport rules, in process")
struct TransportRulesTests {
    static func worker(maxBodyBytes: Int = 4096, apiKeys: APIKeys = .none) -> Application<MCPResponder> {
        let configuration = WorkerConfiguration(apiKeys: apiKeys, maxBodyBytes: maxBodyBytes)
        let logger = Logger(label: "transport-rules")
        let state = WorkerDependencies(
            configuration: configuration, store: InMemorySessionManager(), client: CurlClient(),
            metrics: RouteMetrics(registry: nil, prefix: "worker"), logger: logger)
        return Application(responder: MCPResponder(worker: state), logger: logger)
    }

    static let json: HTTPFields = [.contentType: "application/json", .accept: "application/json, text/event-stream"]

    /// Starts a session of the 2025-11-25 revision; returns its id.
    static func session(_ client: some TestClientProtocol) async throws -> String {
        let initialize =
            #"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#
        let id = try await client.execute(uri: "/mcp", method: .post, headers: json, body: ByteBuffer(string: initialize)) { response in
            #expect(response.status == .ok)
            return try #require(response.headers[HTTPField.Name("MCP-Session-Id")!])
        }
        var headers = json
        headers[HTTPField.Name("MCP-Session-Id")!] = id
        headers[HTTPField.Name("MCP-Protocol-Version")!] = "2025-11-25"
        try await client.execute(
            uri: "/mcp", method: .post, headers: headers, body: ByteBuffer(string: #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        ) { response in
            #expect(response.status == .accepted)
        }
        return id
    }

    struct Row: Sendable, CustomTestStringConvertible {
        let name: String
        let body: String
        var headers: [String: String] = [:]
        let status: Int
        /// The JSON-RPC error code expected, nil for a success.
        let code: Int?
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "invalid JSON", body: "{not json", status: 400, code: -32700),
        Row(name: "a batch", body: "[]", status: 400, code: -32600),
        Row(name: "not an object", body: #""text""#, status: 400, code: -32600),
        Row(name: "no jsonrpc member", body: #"{"id":1,"method":"ping"}"#, status: 400, code: -32600),
        Row(name: "an object id", body: #"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#, status: 400, code: -32600),
        Row(name: "a number as method", body: #"{"jsonrpc":"2.0","id":1,"method":7}"#, status: 400, code: -32600),
        Row(name: "string params", body: #"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#, status: 400, code: -32600),
        Row(name: "a duplicated key", body: #"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#, status: 400, code: -32700),
        Row(name: "an unknown method", body: #"{"jsonrpc":"2.0","id":1,"method":"resources/templates/nope"}"#, status: 200, code: -32601),
        Row(name: "a call without a name", body: #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#, status: 200, code: -32602),
        Row(
            name: "an unknown tool", body: #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm_rf","arguments":{}}}"#, status: 200,
            code: -32602),
        Row(name: "initialize without its parameters", body: #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, status: 200, code: -32602),
        Row(name: "a text body", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["Content-Type": "text/plain"], status: 415, code: -32600),
        Row(name: "accepting only HTML", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["Accept": "text/html"], status: 406, code: -32600),
        Row(
            name: "an unknown revision", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["MCP-Protocol-Version": "1999-01-01"], status: 400,
            code: -32600),
        Row(
            name: "a foreign Origin", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["Origin": "https://evil.example"], status: 403, code: -32600
        ),
        Row(
            name: "a localhost Origin", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["Origin": "http://localhost:3000"], status: 200, code: nil
        ),
        Row(
            name: "a body over the limit", body: #"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"\#(String(repeating: "x", count: 5000))"}}"#,
            status: 413, code: -32600),
        Row(name: "no session header", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["MCP-Session-Id": ""], status: 400, code: -32600),
        Row(
            name: "an unknown session", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["MCP-Session-Id": String(repeating: "ab", count: 16)],
            status: 404, code: -32001),
        Row(
            name: "a malformed session id", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, headers: ["MCP-Session-Id": "not-even-hex"], status: 404,
            code: -32001),
        Row(
            name: "a tool call in an unknown session",
            body: #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_repository_info","arguments":{"repository":"a/b"}}}"#,
            headers: ["MCP-Session-Id": String(repeating: "ab", count: 16)], status: 404, code: -32001),
        Row(
            name: "a call without a name in an unknown session", body: #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            headers: ["MCP-Session-Id": String(repeating: "ab", count: 16)], status: 404, code: -32001),
        Row(name: "a ping in the session", body: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, status: 200, code: nil),
    ]

    @Test("a request in a session of the 2025-11-25 revision gets the transport's status and JSON-RPC code", arguments: rows)
    func rule(_ row: Row) async throws {
        try await Self.worker().test(.router) { client in
            let session = try await Self.session(client)
            var headers = Self.json
            headers[HTTPField.Name("MCP-Session-Id")!] = session
            headers[HTTPField.Name("MCP-Protocol-Version")!] = "2025-11-25"
            for (name, value) in row.headers {
                let field = HTTPField.Name(name)!
                if value.isEmpty { headers[field] = nil } else { headers[field] = value }
            }
            try await client.execute(uri: "/mcp", method: .post, headers: headers, body: ByteBuffer(string: row.body)) { response in
                #expect(Int(response.status.code) == row.status, "\(String(buffer: response.body))")
                let object = (try? JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8))) as? [String: Any]
                let code = (object?["error"] as? [String: Any])?["code"] as? Int
                #expect(code == row.code, "\(String(buffer: response.body))")
                #expect(object?["jsonrpc"] as? String == "2.0")
            }
        }
    }

    @Test("GET without Last-Event-ID and PUT are 405 with Allow; DELETE ends the session, which is then 404")
    func methods() async throws {
        try await Self.worker().test(.router) { client in
            let session = try await Self.session(client)
            var headers = Self.json
            headers[HTTPField.Name("MCP-Session-Id")!] = session
            try await client.execute(uri: "/mcp", method: .get, headers: headers) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] != nil)
            }
            try await client.execute(uri: "/mcp", method: .put, headers: headers) { response in
                #expect(response.status == .methodNotAllowed)
            }
            try await client.execute(uri: "/mcp", method: .delete, headers: headers) { response in
                #expect(response.status == .ok || response.status == .noContent)
            }
            try await client.execute(uri: "/mcp", method: .post, headers: headers, body: ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)) {
                response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test("with client keys: none or a wrong key is 401 with a challenge; another key's session is invisible")
    func keys() async throws {
        let keys = try APIKeys(parsing: ["alice:alice-key-0123456789abcdef", "bob:bob-key-0123456789abcdef0"], origin: "test")
        try await Self.worker(apiKeys: keys).test(.router) { client in
            let ping = ByteBuffer(string: #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            try await client.execute(uri: "/mcp", method: .post, headers: Self.json, body: ping) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            }
            var alice = Self.json
            alice[.authorization] = "Bearer alice-key-0123456789abcdef"
            let initialize =
                #"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#
            let session = try await client.execute(uri: "/mcp", method: .post, headers: alice, body: ByteBuffer(string: initialize)) { response in
                try #require(response.headers[HTTPField.Name("MCP-Session-Id")!])
            }
            var bob = Self.json
            bob[.authorization] = "Bearer bob-key-0123456789abcdef0"
            bob[HTTPField.Name("MCP-Session-Id")!] = session
            try await client.execute(uri: "/mcp", method: .post, headers: bob, body: ping) { response in
                #expect(response.status == .notFound, "bob cannot use alice's session")
            }
        }
    }
}
