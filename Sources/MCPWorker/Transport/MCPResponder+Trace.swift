import Crypto
import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import ServerRuntime
import ServiceMetrics
import SessionModel
import Tracing

extension MCPResponder {
    /// Runs the work of one `/mcp` message in its server span (`tools/call query_repository`,
    /// `initialize`, ...), when tracing is on. The span continues the client's trace: the
    /// `traceparent` of the request's `_meta` first (MCP's own place for it), else the HTTP
    /// header (a client's, passed on by nginx).
    func traced(_ message: IncomingMessage, request: Request, principal: String, _ work: () async -> Response) async -> Response {
        guard Traces.enabled else { return await work() }
        let method = message.method ?? "response"
        let tool = method == "tools/call" ? message.params?.objectValue?["name"]?.stringValue.map { String($0.prefix(64)) } : nil
        let parent = Traces.incoming(Self.metaTraceFields(message.params)) ?? Traces.incoming(TraceHeaders.fields(request.headers))
        return await Traces.span(tool.map { "\(method) \($0)" } ?? method, kind: .server, parent: parent) { span in
            if let span {
                span.attributes["mcp.method.name"] = method
                if let tool { span.attributes["gen_ai.tool.name"] = tool }
                if let version = request.headers[Self.versionHeader] { span.attributes["mcp.protocol.version"] = String(version.prefix(40)) }
                if let id = RequestCorrelation.requestID { span.attributes["http.request.header.x-request-id"] = id }
                span.attributes["enduser.hash"] = Self.principalHash(principal)
            }
            let response = await work()
            span?.attributes["http.response.status_code"] = Int(response.status.code)
            if response.status.code >= 500 { Traces.fail(span, "HTTP \(response.status.code)") }
            return response
        }
    }

    /// The principal as traces carry it: a hash that tells callers apart without naming them.
    static func principalHash(_ principal: String) -> String {
        SHA256.hash(data: Data("greptile-mcp/principal\u{0}\(principal)".utf8)).prefix(8).map { byte in
            (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }

    static func metaTraceFields(_ params: JSONValue?) -> [String: String] {
        guard let meta = params?.objectValue?["_meta"]?.objectValue else { return [:] }
        var fields: [String: String] = [:]
        fields["traceparent"] = meta["traceparent"]?.stringValue
        fields["tracestate"] = meta["tracestate"]?.stringValue
        return fields
    }
}
