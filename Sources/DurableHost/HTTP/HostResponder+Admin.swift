import Foundation
import Hummingbird
import Logging
import SessionModel

/// `/sessions` (a listing) and `/principals/{principal}` (deleting a principal's sessions):
/// what a worker asks of every host.
extension HostResponder {
    func adminRoute(_ route: Route, rawID: Substring?, request: Request) async throws(APIError) -> Response {
        guard route == .principal else {
            try host.checkServing()
            let parameters = request.uri.queryParameters
            let listing = try SessionListing.parse { parameters[Substring($0)].map(String.init) }
            return Self.json(try await host.listing(listing))
        }
        let principal = String(rawID ?? "").removingPercentEncoding ?? ""
        guard SessionUpdate.isValidPrincipal(principal) else {
            throw APIError(.invalidField, "a principal is 1 to 64 of \(SessionUpdate.principalAlphabet)")
        }
        try host.checkServing()
        do {
            let removed = try await host.lifetimes.erase(principal: principal)
            host.logger.notice("a principal's data deleted", metadata: ["sessions": "\(removed)"])
            return Self.json(HostAPI.Erasure(removed: removed))
        } catch {
            throw APIError(.storageUnavailable, "could not delete the sessions of '\(principal)'; retry (what was deleted stays deleted)")
        }
    }
}
