import Foundation
import HTTPTypes
import HashRing
import Hummingbird
import SessionModel

/// `/sessions/{id}`, `/history`, `/update`, `/clear`: a session's own routes, served by its
/// live object here, or, for an unreachable owner (`Hinted-For`), by the copy held for it.
extension HostResponder {
    func sessionRequest(_ route: Route, rawID: Substring?, request: Request) async throws(APIError) -> Response {
        let id = try Self.sessionID(rawID, limits: host.limits)
        if let owner = request.headers[Self.hintedFor], let held = host.held {
            try held.checkHolding(id, for: owner)
            var hinted = HintedRequest()
            var action = hinted.checked(needsSeed: try await held.needsSeed(id, callerVersion: Self.seedVersion(request.headers)))
            if action == .probeOwner { action = hinted.ownerAnswered(await held.ownerAnswers(owner)) }
            switch action {
            case .serve, .probeOwner:
                return try await sessionRoute(route, id: id, object: HeldWrites.copyID(id), holdingFor: owner, request: request)
            case .sendToOwner:
                throw APIError(.hintRefused, "\(owner) answers again and takes '\(id)' itself: send to it")
            case .askForSeed:
                throw APIError(.hintSeedRequired, "no copy of '\(id)' is held for \(owner) yet: POST /hints/{id}/seed with the last state you know")
            }
        }
        await host.held?.ensureCurrent()
        try host.checkServing()
        do {
            try host.checkOwnership(of: id)
        } catch {
            var response = Self.failure(error.error)
            response.headers[HTTPField.Name(HostAPI.RingHeaders.owner)!] = error.owner.name
            response.headers[HTTPField.Name(HostAPI.RingHeaders.version)!] = "\(error.version)"
            return response
        }
        return try await sessionRoute(route, id: id, object: id, holdingFor: nil, request: request)
    }

    /// A session route, served by the live object `object`: the session's own, or the copy
    /// held for `holdingFor`, its unreachable owner.
    private func sessionRoute(
        _ route: Route, id: String, object objectID: String, holdingFor owner: String?, request: Request
    ) async throws(APIError) -> Response {
        switch route {
        case .history:
            let last = try Self.window(request.uri.queryParameters["last"].map(String.init))
            let body = try await host.directory.withObject(objectID) { object throws(APIError) in try await object.historyJSON(last: last) }
            return Self.json(buffer: body)
        case .record:
            let state = try await host.directory.withObject(objectID) { object throws(APIError) in try await object.read() }
            guard state.exists else { throw APIError(.sessionNotFound, "no session '\(id)'") }
            var record = state.record
            record.id = id
            return Self.json(HostAPI.Record(data: record))
        case .update:
            let body = try await readJSONBody(request)
            let update = try SessionOperation.decodeUpdate(from: body)
            return try await write(update, key: try Self.idempotencyKey(request.headers, body: update.canonicalJSON), to: objectID, holdingFor: owner)
        case .clear:
            let key = try Self.idempotencyKey(request.headers, body: SessionOperation.clear.canonicalJSON)
            return try await write(SessionUpdate(.clear), key: key, to: objectID, holdingFor: owner)
        default:
            throw APIError(.notFound, "no such route")
        }
    }

    private func write(_ update: SessionUpdate, key: IdempotencyKey?, to objectID: String, holdingFor owner: String?) async throws(APIError) -> Response {
        let reply = try await host.directory.withObject(objectID) { object throws(APIError) in
            try await object.write(update, idempotency: key, holdingFor: owner)
        }
        if owner != nil { host.held?.countHeld() }
        return Self.reply(reply)
    }

    /// `?last=N` of a history read: more than the session holds is all of it (a caller asks
    /// for its window, whatever the host's limits).
    static func window(_ text: String?) throws(APIError) -> Int? {
        guard let text else { return nil }
        guard let number = Int(text), number >= 0 else { throw APIError(.invalidField, "last must be a whole number of messages, 0 or more") }
        return number
    }
}
