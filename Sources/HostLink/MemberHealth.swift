import CurlHTTP
import HashRing

/// What a server's `/health` says of another member it depends on: a host of its peers, a
/// worker of its hosts. One shape for both, so operators and scripts read one set of keys.
public struct MemberHealth: Encodable, Sendable, Equatable {
    public var name: String
    public var address: String
    public var reachable: Bool
    public var error: String?
    /// Whether the member's ring is ours (nil when it could not be read).
    public var ringAgrees: Bool?
    public var ringVersion: Int?
    /// What a worker also reads on a host's own `/health`: its status, and with storage
    /// postgres whether it reaches its database, holds its lease (serving), and how many
    /// hosts hold one.
    public var status: String?
    public var database: String?
    public var serving: Bool?
    public var liveHosts: Int?
    public var leaseAgeSeconds: Double?

    public init(name: String, address: String, reachable: Bool = false, error: String? = nil) {
        self.name = name
        self.address = address
        self.reachable = reachable
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case name, address, reachable, status, error, database, serving
        case ringAgrees = "ring_agrees"
        case ringVersion = "ring_version"
        case liveHosts = "live_hosts"
        case leaseAgeSeconds = "lease_age_seconds"
    }

    /// Records what the member's `GET /ring` answered, compared with `ours`.
    public mutating func record(_ ring: Result<RingInfo, RingFetchError>, ours: RingInfo) {
        switch ring {
        case .success(let info):
            ringVersion = info.version
            ringAgrees = info.agrees(with: ours)
        case .failure(let failure):
            ringAgrees = nil
            ringVersion = nil
            if error == nil { error = "\(failure)" }
        }
    }

    /// The problem `/health` reports for this member, if any: `role` names the member
    /// ("host", "ring member"), `reporter` the server reporting ("worker", "host") with its
    /// ring version, `remedy` what an operator does about a disagreement.
    public func problem(role: String, reporter: String, ownVersion: Int, remedy: String) -> String? {
        if !reachable { return "\(role) \(name) at \(address) is unreachable: \(error ?? "no answer")" }
        if let database, database != "ok" { return "\(role) \(name) cannot reach its database" }
        if serving == false { return "\(role) \(name) holds no lease (joining, or cut off from its database)" }
        if ringAgrees == false {
            return "\(role) \(name) uses ring version \(ringVersion ?? 0), this \(reporter) \(ownVersion): \(remedy)"
        }
        return nil
    }
}
