/// The members of the ring, as one configuration names them: who owns which ids, and where
/// each member listens.
public struct Membership: Sendable, Hashable, Codable {
    public struct Member: Sendable, Hashable, Codable {
        public var name: String
        /// `HOST:PORT`.
        public var address: String

        public init(name: String, address: String) {
            self.name = name
            self.address = address
        }
    }

    /// Raised by every change of the membership; members compare it to see who is behind.
    public let version: Int
    /// Sorted by name.
    public let members: [Member]
    public let ring: HashRing
    /// When membership is kept in a database shared by the hosts: how long a member's lease
    /// lasts, in seconds. A member that dies leaves the ring within it, and its sessions are
    /// served by others from the shared data, so a caller waits for that instead of holding
    /// writes elsewhere. Nil for a ring of configured members.
    public let lease: Double?

    public init(version: Int = 1, members: [Member], lease: Double? = nil) {
        self.version = version
        self.members = members.sorted { $0.name < $1.name }
        ring = HashRing(nodes: members.map(\.name))
        self.lease = lease
    }

    /// The member that owns `id`; nil when there are none.
    public func owner(of id: String) -> Member? {
        ring.owner(of: id).flatMap { name in members.first { $0.name == name } }
    }

    /// The member that holds writes for `id` while its owner cannot be reached.
    public func runnerUp(of id: String) -> Member? {
        ring.runnerUp(of: id).flatMap { name in members.first { $0.name == name } }
    }

    /// The member named `name`, if it is one.
    public func member(named name: String) -> Member? {
        members.first { $0.name == name }
    }

    /// A short fingerprint of the members' names: memberships that place every id alike have
    /// equal fingerprints, so `/ring` answers can be compared at a glance. Addresses are left
    /// out: they place nothing, and members may reach each other by different addresses.
    public var fingerprint: String {
        String(HashRing.hash(members.map(\.name).joined(separator: ",")), radix: 16)
    }

    enum CodingKeys: String, CodingKey { case version, members, lease }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            version: try container.decode(Int.self, forKey: .version), members: try container.decode([Member].self, forKey: .members),
            lease: try container.decodeIfPresent(Double.self, forKey: .lease))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(version, forKey: .version)
        try container.encode(members, forKey: .members)
        try container.encodeIfPresent(lease, forKey: .lease)
    }
}

/// The answer of `GET /ring` on hosts and workers.
public struct RingInfo: Sendable, Hashable, Codable {
    /// The answering host's node name; nil for a worker.
    public var node: String?
    public var version: Int
    public var fingerprint: String
    public var members: [Membership.Member]
    /// Hosts only: whether the last change has migrated everywhere.
    public var settled: Bool?
    /// Hosts only: sessions stored here that another member now owns (nil: not counted yet).
    public var pending: Int?
    /// Hosts only: the ring before this one, while the change migrates.
    public var previousVersion: Int?
    public var previousMembers: [Membership.Member]?
    /// With membership in a database: the members' lease, in seconds (`Membership.lease`).
    public var lease: Double?

    public init(node: String?, membership: Membership) {
        self.node = node
        version = membership.version
        fingerprint = membership.fingerprint
        members = membership.members
        lease = membership.lease
    }

    enum CodingKeys: String, CodingKey {
        case node, version, fingerprint, members, settled, pending, lease
        case previousVersion = "previous_version"
        case previousMembers = "previous_members"
    }

    public var membership: Membership { Membership(version: version, members: members, lease: lease) }

    /// The ring before this one, while a change migrates.
    public var previous: Membership? {
        guard let previousVersion, let previousMembers else { return nil }
        return Membership(version: previousVersion, members: previousMembers)
    }

    /// Whether two answers describe the same ring.
    public func agrees(with other: RingInfo) -> Bool {
        version == other.version && fingerprint == other.fingerprint
    }
}
