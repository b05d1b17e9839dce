import Foundation
import HTTPServing
import HTTPTypes
import HashRing
import Hummingbird
import Logging
import NIOCore
import ServerRuntime
import ServiceMetrics
import SessionModel
import Tracing

/// The host's HTTP API (README, "Host API"): a small dispatcher, so that every path answers
/// exactly 404 or 405 as it should, and each request costs one switch, not a router walk.
public struct HostResponder: HTTPResponder {
    public typealias Context = BasicRequestContext

    let host: HostDependencies

    /// What a request's path is (`HostAPI.Route`, where every host path is spelled), with the
    /// label it carries in metrics.
    typealias Route = HostAPI.Route.Template

    static let requestIDHeader = HTTPField.Name(RequestCorrelation.header)!

    public func respond(to request: Request, context: Context) async throws -> Response {
        let start = host.clock.now
        let (route, rawID) = HostAPI.Route.match(request.uri.path)
        let response = await RequestCorrelation.with(request.headers[Self.requestIDHeader]) { () async -> Response in
            await traced(route, request: request) { () async -> Response in
                do throws(APIError) {
                    return try await dispatch(route, rawID: rawID, request: request, context: context)
                } catch {
                    return Self.failure(error)
                }
            }
        }
        host.metrics.record(route: route.rawValue, method: request.method.rawValue, status: response.status.code, duration: host.clock.elapsed(since: start))
        return response
    }

    /// Runs `work` in a server span when the caller's trace came with the request
    /// (`traceparent`): the host's part of a worker's call. Requests outside a trace (probes,
    /// ring polls) start none.
    private func traced(_ route: Route, request: Request, _ work: () async -> Response) async -> Response {
        guard Traces.enabled, let parent = Traces.incoming(TraceHeaders.fields(request.headers)) else { return await work() }
        return await Traces.span("host \(request.method.rawValue) \(route.rawValue)", kind: .server, parent: parent) { span in
            span?.attributes["host.node"] = host.node
            let response = await work()
            span?.attributes["http.response.status_code"] = Int(response.status.code)
            if response.status.code >= 500 { Traces.fail(span, "HTTP \(response.status.code)") }
            return response
        }
    }

    private func dispatch(_ route: Route, rawID: Substring?, request: Request, context: Context) async throws(APIError) -> Response {
        guard route != .unknown else {
            throw APIError(.notFound, "no route \(request.method.rawValue) \(request.uri.path.prefix(200))")
        }
        guard route.methods.contains(request.method.rawValue) || (request.method == .head && route.methods.contains("GET")) else {
            let allowed = route.methods.joined(separator: ", ")
            var response = Self.failure(
                APIError(.methodNotAllowed, "\(route.rawValue) takes \(allowed), not \(request.method.rawValue)"))
            response.headers[.allow] = allowed
            return response
        }
        if route != .health { try host.authorize(request.headers[.authorization]) }
        if route.movesSessions, host.local == nil { throw Self.sharedStorage(route) }

        switch route {
        case .health:
            return Self.json(await host.health())
        case .metrics:
            host.recordGauges()
            var response = Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: host.metrics.exposition())))
            response.headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        case .ring, .handoff, .adopt:
            return try await ringRoute(route, rawID: rawID, request: request)
        case .record, .history, .update, .clear:
            return try await sessionRequest(route, rawID: rawID, request: request)
        case .list, .principal:
            return try await adminRoute(route, rawID: rawID, request: request)
        case .heldList, .heldItem, .heldSeed, .heldHandback:
            return try await heldRoute(route, rawID: rawID, request: request)
        case .unknown:
            throw APIError(.notFound, "no such route")
        }
    }

    /// The refusal of a route that moves sessions between hosts' own storage, on a shared database.
    static func sharedStorage(_ route: Route) -> APIError {
        APIError(.notFound, "\(route.rawValue) is not served with storage postgres: the hosts share the sessions, none moves or is held")
    }

    /// Reads a JSON body within the size limit, refusing other media types.
    func readJSONBody(_ request: Request) async throws(APIError) -> Data {
        let limit = host.limits.maxBodyBytes
        guard let type = request.headers[.contentType], Self.isJSON(type) else {
            throw APIError(.unsupportedMediaType, "Content-Type must be application/json")
        }
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.payloadTooLarge, "request body is \(length) bytes; the limit is \(limit)")
        }
        do {
            let buffer = try await request.body.collect(upTo: limit)
            return Data(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError(.payloadTooLarge, "request body exceeds \(limit) bytes")
        } catch {
            throw APIError(.invalidRequest, "request body could not be read")
        }
    }

    // MARK: Pure helpers

    static func sessionID(_ raw: Substring?, limits: SessionLimits) throws(APIError) -> String {
        let raw = String(raw ?? "")
        // Ids need no escaping: decoding is for clients that escape anyway (and costs a
        // Foundation string round trip per request when done for every id).
        guard raw.utf8.contains(UInt8(ascii: "%")) else { return try SessionID.validate(raw, limits: limits) }
        guard let decoded = raw.removingPercentEncoding else {
            throw APIError(.invalidSessionID, "session id is not valid percent-encoding")
        }
        return try SessionID.validate(decoded, limits: limits)
    }

    /// The request's `Idempotency-Key`, with the hash of its operation (computed only when a
    /// key is present: most writes carry none).
    static func idempotencyKey(_ headers: HTTPFields, body: @autoclosure () -> Data) throws(APIError) -> IdempotencyKey? {
        guard let key = headers[HTTPField.Name(HostAPI.idempotencyKeyHeader)!] else { return nil }
        guard !key.isEmpty, key.utf8.count <= HostAPI.maxIdempotencyKeyLength,
            key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else {
            throw APIError(.invalidIdempotencyKey, "Idempotency-Key must be 1 to \(HostAPI.maxIdempotencyKeyLength) visible ASCII characters")
        }
        return IdempotencyKey(key: key, requestHash: fnv1a(body()))
    }

    static let hintedFor = HTTPField.Name(HostAPI.hintedForHeader)!

    /// `Hint-Seed-Version`: when the caller learned the state it knows of the session.
    static func seedVersion(_ headers: HTTPFields) -> Double {
        headers[HTTPField.Name(HostAPI.hintSeedVersionHeader)!].flatMap { Double($0) }.map { $0.isFinite ? $0 : 0 } ?? 0
    }

    /// Whether a `Content-Type` is `application/json` (any case, parameters and spaces allowed),
    /// read byte by byte: every write asks.
    static func isJSON(_ contentType: String) -> Bool {
        let expected = Array("application/json".utf8)
        var bytes = contentType.utf8[...]
        while bytes.first == UInt8(ascii: " ") || bytes.first == UInt8(ascii: "\t") { bytes = bytes.dropFirst() }
        guard bytes.count >= expected.count, zip(bytes.prefix(expected.count), expected).allSatisfy({ $0 | 0x20 == $1 | 0x20 }) else {
            return false
        }
        let rest = bytes.dropFirst(expected.count).drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        return rest.isEmpty || rest.first == UInt8(ascii: ";")
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let body = (try? JSONCoding.encoder.encode(value)) ?? Data()
        return json(bytes: body, status: status)
    }

    static func json(bytes: Data, status: HTTPResponse.Status = .ok) -> Response {
        json(buffer: ByteBuffer(bytes: bytes), status: status)
    }

    static func json(buffer: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
        var response = Response(status: status, body: .init(byteBuffer: buffer))
        response.headers[.contentType] = "application/json"
        return response
    }

    static func reply(_ reply: WriteReply) -> Response {
        var response = json(bytes: reply.body, status: HTTPResponse.Status(code: reply.status))
        if reply.replayed { response.headers[HTTPField.Name("Idempotent-Replayed")!] = "true" }
        return response
    }

    static func failure(_ error: APIError) -> Response {
        var response = json(HostAPI.Failure(error), status: HTTPResponse.Status(code: error.code.httpStatus))
        if error.code == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
        return response
    }
}

/// 64-bit FNV-1a: tells a retried request from a different one under the same key.
func fnv1a(_ data: Data) -> Int64 {
    Int64(bitPattern: HashRing.fnv1a(data))
}

extension HostAPI.Route.Template {
    /// Routes that move sessions between hosts' own storage (ring changes, held writes).
    var movesSessions: Bool {
        [.handoff, .adopt, .heldList, .heldItem, .heldSeed, .heldHandback].contains(self)
    }
}
