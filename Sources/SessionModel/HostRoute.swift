import Foundation

extension HostAPI {
    /// Every route of the host API, as a value: what a caller builds a request's path from,
    /// and what a host matches a request's path against. Nothing else spells a host path.
    ///
    /// ```swift
    /// HostAPI.Route.history("conv:alice:t", last: 20).target   // "/sessions/conv:alice:t/history?last=20"
    /// HostAPI.Route.match("/sessions/conv:alice:t/history")     // (.history, "conv:alice:t")
    /// ```
    public enum Route: Sendable, Hashable {
        case health
        case metrics
        case ring
        /// `GET /sessions/{id}`: the whole record.
        case record(String)
        /// `GET /sessions/{id}/history`, the newest `last` messages only when given.
        case history(String, last: Int? = nil)
        /// `POST /sessions/{id}/update`.
        case update(String)
        /// `DELETE /sessions/{id}/clear`.
        case clear(String)
        /// `GET /sessions?...`: a page of a listing.
        case list(SessionListing)
        /// `DELETE /principals/{principal}`.
        case principal(String)
        /// `POST /handoff/{id}`: the previous owner hands a session over after a ring change.
        case handoff(String)
        /// `POST /handoff/{id}/adopt`: the owner takes a session another host still holds.
        case adopt(String)
        /// `GET /hints?owner=NODE`: the sessions held here for an unreachable owner.
        case heldFor(owner: String)
        /// `POST /hints/notify`: a holder tells an owner which of its sessions it holds.
        case heldNotice
        /// `DELETE /hints/{id}?through=SEQ`: the owner has taken the held writes up to `through`.
        case heldDone(String, through: Int64)
        /// `POST /hints/{id}/seed`: the state a held copy starts from.
        case heldSeed(String)
        /// `POST /hints/{id}/handback`: every write held for the asking owner.
        case heldHandback(String)

        /// What a route is without its id and query: the label metrics carry, what a host
        /// dispatches on, and the methods it takes.
        public enum Template: String, Sendable, CaseIterable {
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

            /// The methods a host takes on the route (HEAD too where it takes GET).
            public var methods: [String] {
                switch self {
                case .update, .handoff, .adopt, .heldSeed, .heldHandback: ["POST"]
                case .clear, .principal: ["DELETE"]
                case .ring: ["GET", "PUT"]
                // `POST /hints/notify`, `DELETE /hints/{id}`.
                case .heldItem: ["DELETE", "POST"]
                default: ["GET"]
                }
            }
        }

        /// The method a caller sends.
        public var method: String {
            switch self {
            case .health, .metrics, .ring, .record, .history, .list, .heldFor: "GET"
            case .update, .handoff, .adopt, .heldNotice, .heldSeed, .heldHandback: "POST"
            case .clear, .principal, .heldDone: "DELETE"
            }
        }

        /// The path and query a caller sends, each caller-given part percent-encoded.
        public var target: String {
            switch self {
            case .health: "/health"
            case .metrics: "/metrics"
            case .ring: "/ring"
            case .record(let id): "/sessions/\(Self.segment(id))"
            case .history(let id, let last): "/sessions/\(Self.segment(id))/history" + (last.map { "?last=\($0)" } ?? "")
            case .update(let id): "/sessions/\(Self.segment(id))/update"
            case .clear(let id): "/sessions/\(Self.segment(id))/clear"
            case .list(let listing): "/sessions?\(listing.query)"
            case .principal(let principal): "/principals/\(Self.segment(principal))"
            case .handoff(let id): "/handoff/\(Self.segment(id))"
            case .adopt(let id): "/handoff/\(Self.segment(id))/adopt"
            case .heldFor(let owner): "/hints?owner=\(Self.queryValue(owner))"
            case .heldNotice: "/hints/notify"
            case .heldDone(let id, let through): "/hints/\(Self.segment(id))?through=\(through)"
            case .heldSeed(let id): "/hints/\(Self.segment(id))/seed"
            case .heldHandback(let id): "/hints/\(Self.segment(id))/handback"
            }
        }

        /// The template of a request's path and, for the routes that name one, its raw
        /// (still percent-encoded) id or principal segment.
        public static func match(_ path: String) -> (Template, Substring?) {
            guard path.hasPrefix("/") else { return (.unknown, nil) }
            let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            let first = segments.first
            let middle = segments.count == 3 ? segments[segments.startIndex + 1] : nil
            switch (segments.count, first) {
            case (1, "health"): return (.health, nil)
            case (1, "metrics"): return (.metrics, nil)
            case (1, "ring"): return (.ring, nil)
            case (1, "hints"): return (.heldList, nil)
            case (1, "sessions"): return (.list, nil)
            case (2, "principals"): return (.principal, segments.last)
            case (2, "sessions"): return (.record, segments.last)
            case (2, "handoff"): return (.handoff, segments.last)
            case (2, "hints"): return (.heldItem, segments.last)
            case (3, "handoff") where segments.last == "adopt": return (.adopt, middle)
            case (3, "hints") where segments.last == "seed": return (.heldSeed, middle)
            case (3, "hints") where segments.last == "handback": return (.heldHandback, middle)
            case (3, "sessions"):
                switch segments.last {
                case "history": return (.history, middle)
                case "update": return (.update, middle)
                case "clear": return (.clear, middle)
                default: return (.unknown, nil)
                }
            default:
                return (.unknown, nil)
            }
        }

        /// An id in a path: ids need no escaping (SessionID's alphabet), but a caller's
        /// principal or a foreign id might; anything outside the unreserved set is encoded.
        private static func segment(_ text: String) -> String {
            guard !text.utf8.allSatisfy(SessionID.isAllowed) else { return text }
            return text.addingPercentEncoding(withAllowedCharacters: unreserved.union(CharacterSet(charactersIn: ":"))) ?? ""
        }

        /// A query value: everything but unreserved characters percent-encoded.
        public static func queryValue(_ text: String) -> String {
            text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
        }

        private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    }

    /// The headers of the ring: on a 421 `misdirected`, which member owns the id and under
    /// which ring version the host answered.
    public enum RingHeaders {
        public static let owner = "Ring-Owner"
        public static let version = "Ring-Version"
    }
}
