import CurlHTTP
import Foundation
import ServerRuntime
import ServiceMetrics
import SessionModel
import Tracing

/// One exchange with a durable host over libcurl: a route of the host API (`HostAPI.Route`),
/// sent to a member's address with the hosts' bearer token, and the host's error body read
/// back as an `APIError`. Every worker and host that talks to a host does it through this;
/// retries, ring changes and hinted handoff are decided above it (`HostCall`).
///
/// ```swift
/// let hosts = HostClient(curl: curl, token: token)
/// let response = try await hosts.send(.history(id, last: 20), to: "127.0.0.1:7401")
/// ```
public struct HostClient: Sendable {
    public let curl: CurlClient
    /// The hosts' bearer token (`DURABLE_HOST_TOKEN`); nil when they run without one.
    public let token: String?

    public init(curl: CurlClient, token: String?) {
        self.curl = curl
        self.token = token
    }

    /// Sends `route` to the member at `address` (`HOST:PORT`); a JSON `body` when given.
    /// Throws only when no answer came (no connection, a timeout, cancellation).
    public func send(
        _ route: HostAPI.Route, to address: String, body: Data? = nil, headers extra: HTTPHeaders = [:],
        timeout: Duration = .seconds(2), connectTimeout: Duration? = nil
    ) async throws -> HTTPResponse {
        var headers: HTTPHeaders = [:]
        if let token { headers.add("Authorization", "Bearer \(token)") }
        if body != nil { headers.add("Content-Type", "application/json") }
        if let id = RequestCorrelation.requestID { headers.add(RequestCorrelation.header, id) }
        for field in extra { headers.add(field.name, field.value) }
        // Within a trace, each exchange is a client span, and the host's work continues it.
        return try await Traces.childSpan(Self.spanName(route), kind: .client) { span in
            for field in Traces.outgoingHeaders() { headers.add(field.name, field.value) }
            span?.attributes["server.address"] = address
            do {
                let response = try await curl.execute(
                    HTTPRequest(
                        method: HTTPRequest.Method(rawValue: route.method) ?? .get, url: "http://\(address)\(route.target)", headers: headers,
                        body: body, timeout: timeout, connectTimeout: connectTimeout ?? min(timeout, .seconds(5))))
                span?.attributes["http.response.status_code"] = response.status
                if let ring = response.headers[HostAPI.RingHeaders.version] { span?.attributes["host.ring_version"] = ring }
                if response.status >= 400 { Traces.fail(span, "HTTP \(response.status) \(Self.apiError(from: response).code.rawValue)") }
                return response
            } catch {
                Traces.fail(span, "no answer: \(error)")
                throw error
            }
        }
    }

    /// `host POST /sessions/{id}/update`: the route without its id, one name per kind of call.
    static func spanName(_ route: HostAPI.Route) -> String {
        "host \(route.method) \(HostAPI.Route.match(String(route.target.prefix { $0 != "?" })).0.rawValue)"
    }

    /// What a host's error answer says: its code and sentence, or, for a body that is not a
    /// host's error, the status.
    public static func apiError(from response: HTTPResponse) -> APIError {
        if let failure = try? JSONCoding.decoder.decode(HostAPI.Failure.self, from: response.body),
            let code = ErrorCode(rawValue: failure.error.code)
        {
            return APIError(code, failure.error.message)
        }
        return APIError(.internalError, "host answered HTTP \(response.status)")
    }
}
