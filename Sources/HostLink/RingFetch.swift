import CurlHTTP
import Foundation
import HashRing
import SessionModel

/// Why a member's `GET /ring` gave no ring.
public enum RingFetchError: Error, Sendable, CustomStringConvertible {
    /// No answer at all (connection refused, timeout).
    case unreachable(String)
    /// The member refused our token (401).
    case unauthorized
    /// An answer that is not a ring (another status, or not a durable host's JSON).
    case unexpected(status: Int)

    public var description: String {
        switch self {
        case .unreachable(let reason): reason
        case .unauthorized: "HTTP 401: the token is refused"
        case .unexpected(let status): "HTTP \(status): not a ring answer"
        }
    }
}

extension HostClient {
    /// `GET /ring` of the member at `address` (`HOST:PORT`): how hosts and workers compare
    /// rings and learn of changes.
    public func ring(at address: String, timeout: Duration = .seconds(2)) async -> Result<RingInfo, RingFetchError> {
        let response: HTTPResponse
        do {
            response = try await send(.ring, to: address, timeout: timeout, connectTimeout: min(timeout, .seconds(1)))
        } catch {
            return .failure(.unreachable("\(error)"))
        }
        if response.status == 401 { return .failure(.unauthorized) }
        guard response.status == 200, let info = try? JSONCoding.decoder.decode(RingInfo.self, from: response.body) else {
            return .failure(.unexpected(status: response.status))
        }
        return .success(info)
    }
}
