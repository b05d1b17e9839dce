import CurlHTTP
import Foundation

/// A small JSON-over-HTTP client for tests, on the project's own libcurl client.
public struct JSONClient: Sendable {
    public let base: String
    public let curl: CurlClient
    public var headers: HTTPHeaders

    public init(base: String, curl: CurlClient = CurlClient(), headers: HTTPHeaders = [:]) {
        self.base = base
        self.curl = curl
        self.headers = headers
    }

    /// Sends a request; `json` is encoded as the body with `Content-Type: application/json`.
    public func send(
        _ method: HTTPRequest.Method, _ path: String, json: (any Encodable)? = nil, body: Data? = nil,
        headers extra: HTTPHeaders = [:], timeout: Duration = .seconds(30)
    ) async throws -> HTTPResponse {
        var all = headers
        for field in extra { all.set(field.name, field.value) }
        var payload = body
        if let json {
            payload = try JSONEncoder().encode(json)
            if all["Content-Type"] == nil { all.set("Content-Type", "application/json") }
        }
        return try await curl.execute(HTTPRequest(method: method, url: base + path, headers: all, body: payload, timeout: timeout))
    }

    /// Sends a raw JSON text body.
    public func send(
        _ method: HTTPRequest.Method, _ path: String, text: String, contentType: String = "application/json", headers extra: HTTPHeaders = [:]
    ) async throws -> HTTPResponse {
        var all = extra
        all.set("Content-Type", contentType)
        return try await send(method, path, body: Data(text.utf8), headers: all)
    }
}

extension HTTPResponse {
    /// Decodes the body as `T`.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: body)
    }

    /// The body as a JSON object.
    public var object: [String: Any] {
        ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:]
    }

    /// `error.code` of a host error body.
    public var errorCode: String? {
        (object["error"] as? [String: Any])?["code"] as? String
    }
}

/// The sum of the Prometheus samples `name{labels} value` whose labels contain `labels`; nil when none.
public func metric(_ exposition: String, _ name: String, labels: String = "") -> Double? {
    var total: Double?
    for line in exposition.split(separator: "\n") where line.hasPrefix(name) && !line.hasPrefix("#") {
        let rest = line.dropFirst(name.count)
        guard rest.first == " " || rest.first == "{" else { continue }
        if !labels.isEmpty && !rest.contains(labels) { continue }
        if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { total = (total ?? 0) + value }
    }
    return total
}
