import Foundation
import HTTPTypes
import HashRing
import Hummingbird
import Logging
import NIOCore
import ServiceMetrics
import SessionModel

/// The host's HTTP API (README, "Host API"): a small dispatcher, so that every path answers
/// exactly 404 or 405 as it should, and each request costs one switch, not a router walk.
public struct HostResponder: HTTPResponder {
    public typealias Context = BasicRequestContext

    let host: HostDependencies

    /// The routes, with the label they carry in metrics.
    enum Route: String, CaseIterable {
        case health = "/health"
        case metrics = "/metrics"
        case ring = "/ring"
        case handoff = "/handoff/{id}"
        case adopt = "/handoff/{id}/adopt"
        case record = "/sessions/{id}"
        case history = "/sessions/{id}/history"
        case update = "/sessions/{id}/update"
        case clear = "/sessions/{id}/clear"
        case heldList = "/hints"
        case heldItem = "/hints/{id}"
        case heldSeed = "/hints/{id}/seed"
        case heldHandback = "/hints/{id}/handback"
        case list = "/sessions"
        case principal = "/principals/{principal}"
        case unknown = "unknown"

        /// Routes that move sessions between hosts' own storage (ring changes, held writes).
        var movesSessions: Bool {
            [.handoff, .adopt, .heldList, .heldItem, .heldSeed, .heldHandback].contains(self)
        }

        var methods: [HTTPRequest.Method] {
            switch self {
            case .update, .handoff, .adopt, .heldSeed, .heldHandback: [.post]
            case .clear, .principal: [.delete]
            case .ring: [.get, .put]
            // `POST /hints/notify`, `DELETE /hints/{id}`.
            case .heldItem: [.delete, .post]
            default: [.get]
            }
        }
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        let start = ContinuousClock.now
        let (route, rawID) = Self.route(request.uri.path)
        let response: Response
        do throws(APIError) {
            response = try await dispatch(route, rawID: rawID, request: request, context: context)
        } catch {
            response = Self.failure(error)
        }
        host.metrics.record(route: route.rawValue, method: request.method.rawValue, status: response.status.code, since: start)
        return response
    }

    private func dispatch(_ route: Route, rawID: Substring?, request: Request, context: Context) async throws(APIError) -> Response {
        guard route != .unknown else {
            throw APIError(.notFound, "no route \(request.method.rawValue) \(request.uri.path.prefix(200))")
        }
        guard route.methods.contains(request.method) || (request.method == .head && route.methods.contains(.get)) else {
            let allowed = route.methods.map(\.rawValue).joined(separator: ", ")
            var response = Self.failure(
                APIError(.methodNotAllowed, "\(route.rawValue) takes \(allowed), not \(request.method.rawValue)"))
            response.headers[.allow] = allowed
            return response
        }
        if route != .health { try host.authorize(request.headers[.authorization]) }
        if route.movesSessions, host.local == nil {
            throw APIError(.notFound, "\(route.rawValue) is not served with storage postgres: the hosts share the sessions, none moves or is held")
        }

        switch route {
        case .health:
            return Self.json(await host.health())
        case .metrics:
            var response = Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: host.metrics.exposition())))
            response.headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return response
        case .ring where request.method == .put:
            let body = try await readJSONBody(request)
            guard let next = try? JSONCoding.decoder.decode(Membership.self, from: body) else {
                throw APIError(.invalidField, "PUT /ring takes {\"version\": N, \"members\": [{\"name\": ..., \"address\": \"HOST:PORT\"}]}")
            }
            try await host.changeRing(to: next)
            return Self.json(host.ring.info)
        case .ring:
            return Self.json(host.ring.info)
        case .handoff:
            let id = try Self.sessionID(rawID, limits: host.limits)
            let body = try await readJSONBody(request)
            guard let asked = try? JSONCoding.decoder.decode(HandoffRequest.self, from: body) else {
                throw APIError(.invalidField, "POST /handoff/{id} takes {\"version\": N, \"to\": NODE}")
            }
            guard asked.version == host.ring.version, host.ring.owner(of: id)?.name == asked.to, asked.to != host.node else {
                throw APIError(
                    .ringChanging,
                    "handoff of '\(id)' to \(asked.to) at ring version \(asked.version) does not match this host's ring (version \(host.ring.version), owner \(host.ring.owner(of: id)?.name ?? "none")); retry"
                )
            }
            let payload = try await host.directory.withObject(id) { object throws(APIError) in
                try await object.handOff(to: asked.to, version: asked.version)
            }
            return Self.json(payload)
        case .adopt:
            let id = try Self.sessionID(rawID, limits: host.limits)
            guard host.ring.ownsNow(id) else {
                throw APIError(.misdirected, "session '\(id)' is not this host's in ring version \(host.ring.version)")
            }
            _ = try await host.directory.withObject(id) { object throws(APIError) in try await object.read() }
            return Self.json(["adopted": id])
        case .record, .history, .update, .clear:
            let id = try Self.sessionID(rawID, limits: host.limits)
            if let owner = request.headers[Self.hintedFor], let held = host.held {
                // The owner cannot be reached: served from the copy held for it.
                try held.checkHolding(id, for: owner)
                let version = Self.seedVersion(request.headers)
                if try await held.needsSeed(id, callerVersion: version) {
                    if await held.ownerAnswers(owner) {
                        throw APIError(.hintRefused, "\(owner) answers again and takes '\(id)' itself: send to it")
                    }
                    throw APIError(.hintSeedRequired, "no copy of '\(id)' is held for \(owner) yet: POST /hints/{id}/seed with the last state you know")
                }
                return try await sessionRoute(route, id: id, object: HeldWrites.copyID(id), holdingFor: owner, request: request)
            }
            await host.held?.ensureCurrent()
            try host.checkServing()
            do {
                try host.checkOwnership(of: id)
            } catch {
                var response = Self.failure(error.error)
                response.headers[HTTPField.Name(RingHeaders.owner)!] = error.owner.name
                response.headers[HTTPField.Name(RingHeaders.version)!] = "\(error.version)"
                return response
            }
            return try await sessionRoute(route, id: id, object: id, holdingFor: nil, request: request)
        case .list:
            try host.checkServing()
            let parameters = request.uri.queryParameters
            let listing = try SessionListing.parse { parameters[Substring($0)].map(String.init) }
            return Self.json(try await host.listing(listing))
        case .principal:
            let principal = String(rawID ?? "").removingPercentEncoding ?? ""
            guard SessionUpdate.isValidPrincipal(principal) else {
                throw APIError(.invalidField, "a principal is 1 to 64 of A-Z a-z 0-9 . _ - @ :")
            }
            try host.checkServing()
            do {
                return Self.json(HostAPI.Erasure(removed: try await host.lifetimes.erase(principal: principal)))
            } catch {
                throw APIError(.storageUnavailable, "could not delete the sessions of '\(principal)'; retry (what was deleted stays deleted)")
            }
        case .heldList:
            guard let owner = request.uri.queryParameters["owner"].map(String.init), !owner.isEmpty else {
                throw APIError(.missingField, "GET /hints takes ?owner=NODE")
            }
            return Self.json(try await host.held!.list(for: owner))
        case .heldItem where request.method == .post:
            guard rawID == "notify" else { throw APIError(.methodNotAllowed, "/hints/{id} takes DELETE") }
            let body = try await readJSONBody(request)
            guard let notice = try? JSONCoding.decoder.decode(HostAPI.HeldSessions.self, from: body) else {
                throw APIError(.invalidField, "POST /hints/notify takes {\"holder\": NODE, \"ids\": [...]}")
            }
            host.held!.noteHeld(notice.ids.filter { host.ring.ownsNow($0) }, by: notice.holder)
            return Self.json(["noted": notice.ids.count])
        case .heldItem:
            let id = try Self.sessionID(rawID, limits: host.limits)
            guard let through = request.uri.queryParameters["through"].flatMap({ Int64(String($0)) }) else {
                throw APIError(.missingField, "DELETE /hints/{id} takes ?through=SEQ")
            }
            let gone: Bool
            do {
                gone = try await host.local!.dropHeld(id, through: through)
            } catch {
                throw APIError(.storageUnavailable, "could not forget the held writes of '\(id)'; retry")
            }
            if gone { host.directory.forget(HeldWrites.copyID(id)) }
            return Self.json(["forgotten": gone])
        case .heldSeed:
            let id = try Self.sessionID(rawID, limits: host.limits)
            guard let owner = request.headers[Self.hintedFor] else {
                throw APIError(.missingField, "POST /hints/{id}/seed needs the Hinted-For header")
            }
            try host.held!.checkHolding(id, for: owner)
            let body = try await readJSONBody(request)
            guard let seed = try? JSONCoding.decoder.decode(HostAPI.HintSeed.self, from: body) else {
                throw APIError(.invalidField, "POST /hints/{id}/seed takes {\"record\": {...} or null}")
            }
            if var record = seed.record {
                record.id = HeldWrites.copyID(id)
                _ = try SessionState.validated(record, limits: host.limits)
            }
            let version = Self.seedVersion(request.headers)
            let seeded = try await host.directory.withObject(HeldWrites.copyID(id)) { object throws(APIError) in
                try await object.seed(seed.record, version: version, owner: owner)
            }
            return Self.json(["seeded": seeded])
        case .heldHandback:
            let id = try Self.sessionID(rawID, limits: host.limits)
            let body = try await readJSONBody(request)
            guard let asked = try? JSONCoding.decoder.decode([String: String].self, from: body), let owner = asked["to"] else {
                throw APIError(.invalidField, "POST /hints/{id}/handback takes {\"to\": NODE}")
            }
            let info: HeldInfo?
            let writes: [HostAPI.HeldWrite]
            do {
                info = try await host.local!.heldInfo(id)
            } catch {
                throw APIError(.storageUnavailable, "could not read the held copy of '\(id)'; retry")
            }
            guard let info else { throw APIError(.notFound, "no writes of '\(id)' are held here") }
            guard info.owner == owner else { throw APIError(.hintRefused, "the writes of '\(id)' are held for \(info.owner), not \(owner)") }
            try await host.directory.withObject(HeldWrites.copyID(id)) { object throws(APIError) in try await object.beginHandingBack() }
            do {
                writes = try await host.local!.heldWrites(id)
            } catch {
                throw APIError(.storageUnavailable, "could not read the held writes of '\(id)'; retry")
            }
            return Self.json(HostAPI.Handback(writes: writes))
        case .unknown:
            throw APIError(.notFound, "no such route")
        }
    }

    /// A session route, served by the live object `object`: the session's own, or the copy
    /// held for `holdingFor`, its unreachable owner.
    private func sessionRoute(
        _ route: Route, id: String, object objectID: String, holdingFor owner: String?, request: Request
    ) async throws(APIError) -> Response {
        switch route {
        case .history:
            var last: Int?
            if let text = request.uri.queryParameters["last"] {
                // More than the session holds is all of it: a caller asks for its window, whatever the host's limits.
                guard let number = Int(text), number >= 0 else {
                    throw APIError(.invalidField, "last must be a whole number of messages, 0 or more")
                }
                last = number
            }
            let body = try await host.directory.withObject(objectID) { object throws(APIError) in try await object.historyJSON(last: last) }
            return Self.json(bytes: body)
        case .record:
            let state = try await host.directory.withObject(objectID) { object throws(APIError) in try await object.read() }
            guard state.exists else { throw APIError(.sessionNotFound, "no session '\(id)'") }
            var record = state.record
            record.id = id
            return Self.json(HostAPI.Record(data: record))
        case .update:
            let body = try await readJSONBody(request)
            let update = try SessionOperation.decodeUpdate(from: body)
            let key = try Self.idempotencyKey(request.headers, body: update.canonicalJSON)
            let reply = try await host.directory.withObject(objectID) { object throws(APIError) in
                try await object.write(update, idempotency: key, holdingFor: owner)
            }
            if owner != nil { host.held?.countHeld() }
            return Self.reply(reply)
        case .clear:
            let key = try Self.idempotencyKey(request.headers, body: SessionOperation.clear.canonicalJSON)
            let reply = try await host.directory.withObject(objectID) { object throws(APIError) in
                try await object.write(SessionUpdate(.clear), idempotency: key, holdingFor: owner)
            }
            if owner != nil { host.held?.countHeld() }
            return Self.reply(reply)
        default:
            throw APIError(.notFound, "no such route")
        }
    }

    /// Reads a JSON body within the size limit, refusing other media types.
    private func readJSONBody(_ request: Request) async throws(APIError) -> Data {
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

    /// Splits a path into its route and, for session routes, the raw id segment.
    static func route(_ path: String) -> (Route, Substring?) {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard path.hasPrefix("/") else { return (.unknown, nil) }
        switch segments.count {
        case 1:
            switch segments.first! {
            case "health": return (.health, nil)
            case "metrics": return (.metrics, nil)
            case "ring": return (.ring, nil)
            case "hints": return (.heldList, nil)
            case "sessions": return (.list, nil)
            default: return (.unknown, nil)
            }
        case 2 where segments.first == "principals":
            return (.principal, segments.last!)
        case 2 where segments.first == "sessions":
            return (.record, segments.last!)
        case 2 where segments.first == "handoff":
            return (.handoff, segments.last!)
        case 3 where segments.first == "handoff" && segments.last == "adopt":
            return (.adopt, segments[segments.startIndex + 1])
        case 2 where segments.first == "hints":
            return (.heldItem, segments.last!)
        case 3 where segments.first == "hints" && segments.last == "seed":
            return (.heldSeed, segments[segments.startIndex + 1])
        case 3 where segments.first == "hints" && segments.last == "handback":
            return (.heldHandback, segments[segments.startIndex + 1])
        case 3 where segments.first == "sessions":
            let id = segments[segments.startIndex + 1]
            switch segments.last! {
            case "history": return (.history, id)
            case "update": return (.update, id)
            case "clear": return (.clear, id)
            default: return (.unknown, nil)
            }
        default:
            return (.unknown, nil)
        }
    }

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
        var response = Response(status: status, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
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
