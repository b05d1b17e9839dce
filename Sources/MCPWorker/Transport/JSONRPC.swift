import Foundation
import MCP
import SessionModel

/// A JSON-RPC error, as MCP uses them (-32700 parse, -32600 invalid request, -32601 method
/// not found, -32602 invalid params, -32603 internal).
struct RPCError: Error, Sendable, Encodable {
    let code: Int
    let message: String
    let data: JSONValue?

    init(_ code: Int, _ message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    static func parse(_ message: String) -> RPCError { RPCError(-32700, message) }
    static func invalidRequest(_ message: String) -> RPCError { RPCError(-32600, message) }
    static func methodNotFound(_ method: String) -> RPCError { RPCError(-32601, "Method not found: \(method.prefix(100))") }
    static func invalidParams(_ message: String) -> RPCError { RPCError(-32602, message) }
    static func internalError(_ message: String) -> RPCError { RPCError(-32603, message) }
    /// The request was cancelled before it finished (its answer goes nowhere).
    static let requestCancelled = RPCError(-32800, "Request cancelled")
    /// The session is unknown, expired, ended, or belongs to someone else.
    static let sessionNotFound = RPCError(-32001, "Session not found: start a new one with initialize")
}

/// One message a client POSTed.
enum IncomingMessage: Sendable {
    case request(id: ID, method: String, params: JSONValue?)
    case notification(method: String, params: JSONValue?)
    /// A response to a request of ours (we send none; accepted and ignored).
    case response(id: ID)

    var method: String? {
        switch self {
        case .request(_, let method, _), .notification(let method, _): method
        case .response: nil
        }
    }
}

enum JSONRPC {
    /// Classifies a POST body: exactly one JSON-RPC message (no batches since 2025-06-18).
    /// On failure, the error and the request id when one could be read.
    static func parse(_ body: Data) -> Result<IncomingMessage, ParseFailure> {
        // Our parser, and its value all the way to the tools (decoding the SDK's `Value` with
        // JSONDecoder cost most of a request's CPU time: bench/ANALYSIS.md).
        let value: JSONValue
        do {
            value = try JSONValue.parseStrictly(body)
        } catch {
            return .failure(ParseFailure(error: .parse("Parse error: the body is not valid JSON: \(error)"), id: nil))
        }
        guard case .object(let object) = value else {
            if case .array = value {
                return .failure(ParseFailure(error: .invalidRequest("Invalid Request: batches are not supported; send one message per POST"), id: nil))
            }
            return .failure(ParseFailure(error: .invalidRequest("Invalid Request: the body must be a JSON-RPC object"), id: nil))
        }
        var id: ID?
        var idError: String?
        switch object["id"] {
        case .none: break
        case .string(let text)?: id = .string(text)
        case .int(let number)?: id = .number(Int(clamping: number))
        case .double(let number)? where number == number.rounded() && abs(number) < 1e15: id = .number(Int(number))
        case .null?: idError = "Invalid Request: id must not be null"
        default: idError = "Invalid Request: id must be a string or an integer"
        }
        if let idError { return .failure(ParseFailure(error: .invalidRequest(idError), id: nil)) }
        guard object["jsonrpc"] == .string("2.0") else {
            return .failure(ParseFailure(error: .invalidRequest("Invalid Request: jsonrpc must be \"2.0\""), id: id))
        }
        if let method = object["method"] {
            guard case .string(let name) = method, !name.isEmpty else {
                return .failure(ParseFailure(error: .invalidRequest("Invalid Request: method must be a non-empty string"), id: id))
            }
            let params = object["params"]
            if let params, params.objectValue == nil, params.arrayValue == nil, params != .null {
                return .failure(ParseFailure(error: .invalidRequest("Invalid Request: params must be an object"), id: id))
            }
            if let id { return .success(.request(id: id, method: name, params: params)) }
            return .success(.notification(method: name, params: params))
        }
        if let id, object["result"] != nil || object["error"] != nil {
            return .success(.response(id: id))
        }
        return .failure(ParseFailure(error: .invalidRequest("Invalid Request: neither a request, a notification nor a response"), id: id))
    }

    struct ParseFailure: Error {
        let error: RPCError
        let id: ID?
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return encoder
    }()

    /// `{"id":...,"jsonrpc":"2.0","result":...}` of a result already in JSON, written directly
    /// (keys sorted, as the encoder would).
    static func result(id: ID, json result: JSONValue) -> Data {
        var output = "{\"id\":"
        write(id, to: &output)
        output += ",\"jsonrpc\":\"2.0\",\"result\":" + result.jsonText() + "}"
        return Data(output.utf8)
    }

    /// The response to a `tools/call`, written directly: the generic encoder was a tenth of a
    /// call's CPU time. `extra` members (`resultType` of 2026-07-28) go into the result.
    static func toolResult(id: ID, _ result: ToolResult, extra: [String: String] = [:], links: Bool = true) -> Data {
        var output = "{\"id\":"
        write(id, to: &output)
        output += ",\"jsonrpc\":\"2.0\",\"result\":{\"content\":[{\"text\":"
        JSONValue.writeString(result.text, to: &output)
        output += ",\"type\":\"text\"}"
        if links {
            for link in result.links { output += "," + link.jsonText() }
        }
        output += "],\"isError\":\(result.isError)"
        for (key, value) in extra.sorted(by: { $0.key < $1.key }) {
            output += ","
            JSONValue.writeString(key, to: &output)
            output += ":"
            JSONValue.writeString(value, to: &output)
        }
        if let structured = result.structured {
            output += ",\"structuredContent\":" + structured.jsonText()
        }
        output += "}}"
        return Data(output.utf8)
    }

    private static func write(_ id: ID, to output: inout String) {
        switch id {
        case .number(let number): output += String(number)
        case .string(let text): JSONValue.writeString(text, to: &output)
        }
    }

    /// `{"jsonrpc":"2.0","id":...|null,"error":{...}}`
    static func error(id: ID?, _ error: RPCError) -> Data {
        (try? encoder.encode(ErrorEnvelope(id: id, error: error)))
            ?? Data(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#.utf8)
    }

    /// A notification from the server, for SSE streams.
    static func notification(method: String, params: JSONValue) -> Data {
        Data((["jsonrpc": "2.0", "method": .string(method), "params": params] as JSONValue).jsonText().utf8)
    }

    private struct ErrorEnvelope: Encodable {
        let jsonrpc = "2.0"
        let id: ID?
        let error: RPCError

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(jsonrpc, forKey: .jsonrpc)
            if let id { try container.encode(id, forKey: .id) } else { try container.encodeNil(forKey: .id) }
            try container.encode(error, forKey: .error)
        }

        enum CodingKeys: String, CodingKey { case jsonrpc, id, error }
    }

}

/// A `tools/call` request: what the one path that answers it (`MCPResponder+ToolCall`) needs.
struct ToolCall: Sendable {
    let id: ID
    let name: String
    /// The arguments as sent; the tool's declaration checks them.
    let arguments: JSONObject?
    /// `params._meta.progressToken`: the client asked for progress.
    let progressToken: JSONValue?

    /// Reads the request's params; a refusal is a protocol error (-32602).
    init(id: ID, params: JSONValue?) throws(RPCError) {
        guard let object = params?.objectValue else { throw .invalidParams("Invalid params: tools/call takes an object") }
        guard case .string(let name)? = object["name"] else { throw .invalidParams("Invalid params: name is required") }
        switch object["arguments"] {
        case .none, .null?: arguments = nil
        case .object(let given)?: arguments = given
        default: throw .invalidParams("Invalid params: arguments must be an object")
        }
        self.id = id
        self.name = name
        progressToken = object["_meta"]?.objectValue?["progressToken"]
    }

    /// Whether the call is answered as Server-Sent Events: the client asked for progress, or
    /// for a streamed answer (`stream: true`).
    var wantsStream: Bool { progressToken != nil || arguments?["stream"] == .bool(true) }
}
