import CurlHTTP
import Foundation
import Logging
import ServerRuntime
import Tracing

/// One upstream service (Greptile, GitHub) behind the project's libcurl client: retries
/// throttling (429), server errors (5xx) and lost connections with backoff, honouring
/// `Retry-After`, and hands back every other answer.
struct UpstreamCaller: Sendable {
    let service: String
    let client: CurlClient
    let retry: RetryPolicy
    /// A `Retry-After` longer than this is not waited for: the call fails and says so.
    let maxRetryAfter: Duration
    let clock: ServerClock
    let logger: Logger

    /// Sends `request` until it gets an answer that is not worth retrying, in one client span
    /// (`Greptile POST /query`: status, retries, bytes) whose context goes out as `traceparent`.
    func call(_ request: HTTPRequest, what: String) async throws -> HTTPResponse {
        try await Traces.span("\(service) \(request.method.rawValue) \(Self.route(of: Self.path(of: request.url)))", kind: .client) { span in
            var request = request
            for field in Traces.outgoingHeaders() { request.headers.add(field.name, field.value) }
            if let span, let url = URLComponents(string: request.url) {
                span.attributes["http.request.method"] = request.method.rawValue
                span.attributes["server.address"] = url.host
                span.attributes["server.port"] = url.port
                span.attributes["url.path"] = url.percentEncodedPath
            }
            do {
                let response = try await attempts(request, what: what, span: span)
                span?.attributes["http.response.status_code"] = response.status
                span?.attributes["http.response.body.size"] = response.body.count
                if response.status >= 400 { Traces.fail(span, "HTTP \(response.status)") }
                return response
            } catch {
                Traces.fail(span, "\(error)")
                throw error
            }
        }
    }

    /// The path of `url`, without its query (which may carry names a trace need not keep).
    static func path(of url: String) -> String {
        URLComponents(string: url)?.percentEncodedPath ?? ""
    }

    /// A path as a span names it: what names one repository (`/repositories/{id}`,
    /// `/repos/{id}`) generalised, so that one kind of call has one name.
    static func route(of path: String) -> String {
        for marker in ["/repositories/", "/repos/"] {
            if let range = path.range(of: marker) { return path[..<range.upperBound] + "{id}" }
        }
        return path
    }

    private func attempts(_ request: HTTPRequest, what: String, span: (any Span)?) async throws -> HTTPResponse {
        var lastStatus: Int?
        var lastReason = ""
        for attempt in 1...retry.attempts {
            var wait: Duration?
            do {
                let response = try await client.execute(request)
                guard RetryPolicy.isRetryable(status: response.status) else { return response }
                lastStatus = response.status
                lastReason = "HTTP \(response.status)"
                wait = response.retryAfter(now: clock.wallNow)
                if let wait, wait > maxRetryAfter {
                    throw GreptileError(
                        .unavailable,
                        "\(service) is throttling requests and asks to wait \(wait.components.seconds) s before \(what); try again later",
                        status: response.status)
                }
            } catch let error as CurlError {
                lastReason = error.message
            }
            guard let backoff = retry.delay(afterAttempt: attempt, random: Double.random(in: 0...1)) else { break }
            let delay = max(wait ?? .zero, backoff)
            span?.attributes["retries"] = attempt
            Traces.event(span, "retry", ["attempt": "\(attempt)", "reason": lastReason, "retry_in": "\(delay)"])
            logger.warning(
                "\(service) call failed; retrying",
                metadata: ["call": "\(what)", "attempt": "\(attempt)/\(retry.attempts)", "reason": "\(lastReason)", "retry_in": "\(delay)"])
            try await clock.sleep(for: delay)
        }
        if let lastStatus {
            let kind = lastStatus == 429 ? "is throttling requests" : "is failing"
            throw GreptileError(
                .unavailable, "\(service) \(kind) (HTTP \(lastStatus) after \(retry.attempts) attempts) while \(what); try again later",
                status: lastStatus)
        }
        throw GreptileError(.unreachable, "cannot reach \(service) while \(what): \(lastReason)")
    }

    /// The human part of an error body: `message`, or `error`.
    static func detail(of response: HTTPResponse) -> String {
        if let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any] {
            if let message = object["message"] as? String, !message.isEmpty { return message }
            if let error = object["error"] as? String, !error.isEmpty { return error }
        }
        return String(response.text.prefix(200))
    }
}
