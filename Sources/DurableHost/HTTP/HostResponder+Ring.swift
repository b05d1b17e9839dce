import Foundation
import HashRing
import Hummingbird
import SessionModel

/// `/ring` and `/handoff/{id}[/adopt]`: the membership, and sessions moving between hosts'
/// own storage after a ring change (`Handoff`).
extension HostResponder {
    func ringRoute(_ route: Route, rawID: Substring?, request: Request) async throws(APIError) -> Response {
        switch route {
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
        default:
            let id = try Self.sessionID(rawID, limits: host.limits)
            guard host.ring.ownsNow(id) else {
                throw APIError(.misdirected, "session '\(id)' is not this host's in ring version \(host.ring.version)")
            }
            _ = try await host.directory.withObject(id) { object throws(APIError) in try await object.read() }
            return Self.json(["adopted": id])
        }
    }
}
