import Foundation
import Hummingbird
import SessionModel

/// `/hints...`: hinted handoff, the writes a runner-up holds for an unreachable owner
/// (`HeldWrites`). Served only with a host's own storage.
extension HostResponder {
    func heldRoute(_ route: Route, rawID: Substring?, request: Request) async throws(APIError) -> Response {
        guard let held = host.held, let local = host.local else { throw Self.sharedStorage(route) }
        switch route {
        case .heldList:
            guard let owner = request.uri.queryParameters["owner"].map(String.init), !owner.isEmpty else {
                throw APIError(.missingField, "GET /hints takes ?owner=NODE")
            }
            return Self.json(try await held.list(for: owner))
        case .heldItem where request.method == .post:
            guard rawID == "notify" else { throw APIError(.methodNotAllowed, "/hints/{id} takes DELETE") }
            let body = try await readJSONBody(request)
            guard let notice = try? JSONCoding.decoder.decode(HostAPI.HeldSessions.self, from: body) else {
                throw APIError(.invalidField, "POST /hints/notify takes {\"holder\": NODE, \"ids\": [...]}")
            }
            held.noteHeld(notice.ids.filter { host.ring.ownsNow($0) }, by: notice.holder)
            return Self.json(["noted": notice.ids.count])
        case .heldItem:
            return try await forgetHeld(rawID: rawID, request: request, local: local)
        case .heldSeed:
            return try await seedHeld(rawID: rawID, request: request, held: held)
        default:
            return try await handBack(rawID: rawID, request: request, local: local)
        }
    }

    /// `DELETE /hints/{id}?through=SEQ`: the owner has merged the held writes up to `through`.
    private func forgetHeld(rawID: Substring?, request: Request, local: any LocalSessionStore) async throws(APIError) -> Response {
        let id = try Self.sessionID(rawID, limits: host.limits)
        guard let through = request.uri.queryParameters["through"].flatMap({ Int64(String($0)) }) else {
            throw APIError(.missingField, "DELETE /hints/{id} takes ?through=SEQ")
        }
        let gone: Bool
        do {
            gone = try await local.dropHeld(id, through: through)
        } catch {
            throw APIError(.storageUnavailable, "could not forget the held writes of '\(id)'; retry")
        }
        if gone { host.directory.forget(HeldWrites.copyID(id)) }
        return Self.json(["forgotten": gone])
    }

    /// `POST /hints/{id}/seed`: the state a copy held for the owner starts from.
    private func seedHeld(rawID: Substring?, request: Request, held: HeldWrites) async throws(APIError) -> Response {
        let id = try Self.sessionID(rawID, limits: host.limits)
        guard let owner = request.headers[Self.hintedFor] else {
            throw APIError(.missingField, "POST /hints/{id}/seed needs the Hinted-For header")
        }
        try held.checkHolding(id, for: owner)
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
    }

    /// `POST /hints/{id}/handback`: every write held for the asking owner; the copy takes no more.
    private func handBack(rawID: Substring?, request: Request, local: any LocalSessionStore) async throws(APIError) -> Response {
        let id = try Self.sessionID(rawID, limits: host.limits)
        let body = try await readJSONBody(request)
        guard let asked = try? JSONCoding.decoder.decode([String: String].self, from: body), let owner = asked["to"] else {
            throw APIError(.invalidField, "POST /hints/{id}/handback takes {\"to\": NODE}")
        }
        let info: HeldInfo?
        do {
            info = try await local.heldInfo(id)
        } catch {
            throw APIError(.storageUnavailable, "could not read the held copy of '\(id)'; retry")
        }
        guard let info else { throw APIError(.notFound, "no writes of '\(id)' are held here") }
        guard info.owner == owner else { throw APIError(.hintRefused, "the writes of '\(id)' are held for \(info.owner), not \(owner)") }
        try await host.directory.withObject(HeldWrites.copyID(id)) { object throws(APIError) in try await object.beginHandingBack() }
        do {
            return Self.json(HostAPI.Handback(writes: try await local.heldWrites(id)))
        } catch {
            throw APIError(.storageUnavailable, "could not read the held writes of '\(id)'; retry")
        }
    }
}
