import Foundation
import MCP
import SessionModel

/// A JSON-RPC error, as MCP uses them (-32700 parse, -32600 invalid request, -32601 method
/// not found, -32602 invalid params, -32603 internal).
struct RPCError: Error, Sendable, Encodable {
    let code: Int
    let message: String
    let data: Value?

    init(_ code: Int, _ message: String, data: Value? = nil) {
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
    case request(id: ID, method: String, params: Value?)
    case notification(method: String, params: Value?)
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
        // Our parser, then a direct conversion: decoding the SDK's `Value` with JSONDecoder
        // cost most of a request's CPU time (bench/ANALYSIS.md).
        let parsed: JSONValue
        do {
            parsed = try JSONValue.parseStrictly(body)
        } catch {
            return .failure(ParseFailure(error: .parse("Parse error: the body is not valid JSON: \(error)"), id: nil))
        }
        let value = Value(parsed)
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
        case .int(let number)?: id = .number(number)
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

    /// `{"jsonrpc":"2.0","id":...,"result":...}`
    static func result(id: ID, _ result: some Encodable) -> Data {
        (try? encoder.encode(ResultEnvelope(id: id, result: result))) ?? error(id: id, .internalError("could not encode the result"))
    }

    /// The response to a `tools/call`, written directly when its content is text (always, for
    /// our tools): the generic encoder was a tenth of a call's CPU time. `extra` members
    /// (`resultType` of 2026-07-28) go into the result.
    static func toolResult(id: ID, _ result: CallTool.Result, extra: [String: String] = [:]) -> Data {
        var texts: [String] = []
        for item in result.content {
            guard case .text(let text, nil, nil) = item else {
                return extra.isEmpty ? self.result(id: id, result) : self.result(id: id, ModernTransport.complete(result))
            }
            texts.append(text)
        }
        var output = "{\"id\":"
        switch id {
        case .number(let number): output += String(number)
        case .string(let text): JSONValue.writeString(text, to: &output)
        }
        output += ",\"jsonrpc\":\"2.0\",\"result\":{\"content\":["
        for (index, text) in texts.enumerated() {
            if index > 0 { output += "," }
            output += "{\"text\":"
            JSONValue.writeString(text, to: &output)
            output += ",\"type\":\"text\"}"
        }
        output += "],\"isError\":\(result.isError ?? false)"
        for (key, value) in extra.sorted(by: { $0.key < $1.key }) {
            output += ","
            JSONValue.writeString(key, to: &output)
            output += ":"
            JSONValue.writeString(value, to: &output)
        }
        if let structured = result.structuredContent {
            output += ",\"structuredContent\":" + JSONValue(structured).jsonText()
        }
        output += "}}"
        return Data(output.utf8)
    }

    /// `{"jsonrpc":"2.0","id":...|null,"error":{...}}`
    static func error(id: ID?, _ error: RPCError) -> Data {
        (try? encoder.encode(ErrorEnvelope(id: id, error: error)))
            ?? Data(#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#.utf8)
    }

    /// A notification from the server, for SSE streams.
    static func notification(method: String, params: some Encodable) -> Data {
        (try? encoder.encode(NotificationEnvelope(method: method, params: params))) ?? Data()
    }

    private struct ResultEnvelope<R: Encodable>: Encodable {
        let jsonrpc = "2.0"
        let id: ID
        let result: R
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

    private struct NotificationEnvelope<P: Encodable>: Encodable {
        let jsonrpc = "2.0"
        let method: String
        let params: P
    }

    /// `tools/call` parameters, read straight from the params.
    static func callParameters(_ params: Value?) throws(RPCError) -> CallTool.Parameters {
        guard let object = params?.objectValue else { throw .invalidParams("Invalid params: tools/call takes an object") }
        guard case .string(let name)? = object["name"] else { throw .invalidParams("Invalid params: name is required") }
        var arguments: [String: Value]?
        switch object["arguments"] {
        case .none, .null?: arguments = nil
        case .object(let given)?: arguments = given
        default: throw .invalidParams("Invalid params: arguments must be an object")
        }
        return CallTool.Parameters(name: name, arguments: arguments)
    }

    /// Decodes params (a `Value`) as a typed parameter struct of the SDK.
    static func decode<T: Decodable>(_ type: T.Type, from params: Value?) throws(RPCError) -> T {
        do {
            let data = try encoder.encode(params ?? .object([:]))
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw .invalidParams("Invalid params: \(describe(error))")
        } catch {
            throw .invalidParams("Invalid params")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context.codingPath + [key])) is required"
        case .typeMismatch(_, let context): return "\(path(context.codingPath)) has the wrong type"
        case .valueNotFound(_, let context): return "\(path(context.codingPath)) must not be null"
        case .dataCorrupted(let context): return "\(path(context.codingPath)) is not valid"
        @unknown default: return "unreadable"
        }
    }
}

extension Value {
    /// Our `JSONValue` as the SDK's `Value`.
    init(_ json: JSONValue) {
        switch json {
        case .null: self = .null
        case .bool(let value): self = .bool(value)
        case .int(let value): self = .int(Int(value))
        case .double(let value): self = .double(value)
        case .string(let value): self = .string(value)
        case .array(let values): self = .array(values.map(Value.init))
        case .object(let object): self = .object(object.mapValues(Value.init))
        }
    }

    /// Text of a string argument. Bodies are parsed by `JSONParser`, which yields strings;
    /// a `.data` value (the SDK's own decoder makes one of a `data:` URL) is turned back into
    /// its text all the same, since a tool argument is always text.
    var text: String? {
        switch self {
        case .string(let value): return value
        case .data(let mimeType, let data):
            return "data:\(mimeType ?? "");base64,\(data.base64EncodedString())"
        default: return nil
        }
    }
}

extension JSONValue {
    /// The SDK's `Value` as our `JSONValue`.
    init(_ value: MCP.Value) {
        switch value {
        case .null: self = .null
        case .bool(let flag): self = .bool(flag)
        case .int(let number): self = .int(Int64(number))
        case .double(let number): self = .double(number)
        case .string(let text): self = .string(text)
        case .data: self = .string(value.text ?? "")
        case .array(let values): self = .array(values.map { JSONValue($0) })
        case .object(let object): self = .object(object.mapValues { JSONValue($0) })
        }
    }
}
