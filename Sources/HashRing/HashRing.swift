/// Which node owns an id, computed the same way by every process on every machine.
///
/// **Scheme: rendezvous hashing** (highest random weight; Thaler and Ravishankar, 1998).
/// Every node gets a score for an id, and the node with the highest score owns it. Chosen
/// over a ring of virtual nodes and over jump hashing because:
/// - balance comes from the hash alone: with `n` nodes each owns 1/n of the ids up to
///   sampling noise (about 1 % of the mean at 100,000 ids), with no virtual-node count to tune;
/// - movement is minimal by construction: adding a node moves exactly the ids it now wins,
///   all of them to it; removing a node moves only its ids, each to its runner-up;
/// - nodes are named, not numbered (jump hash needs numbered buckets, so removing a node
///   in the middle would move everything after it);
/// - a lookup is one hash of the id and one 64-bit mix per node, which is cheaper than a
///   binary search over hundreds of virtual points for the handful of hosts we run.
///
/// **The hash is fixed** (never Swift's per-process-seeded `Hasher`): FNV-1a 64 over the
/// UTF-8 bytes, then the SplitMix64 finalizer for avalanche. A node's score for an id is
/// `mix(hash(id) ^ hash(name))`; ties (probability 2⁻⁶⁴) go to the smaller name. Names are
/// hashed, not addresses, so a host can move to another address without moving its ids.
/// `HashRingTests` pins known owners, so a change of these functions cannot go unnoticed.
public struct HashRing: Sendable, Hashable {
    /// The members' names, sorted.
    public let nodes: [String]
    private let seeds: [UInt64]

    /// A ring of the distinct `nodes`; an empty ring owns nothing.
    public init(nodes: some Sequence<String>) {
        let sorted = Set(nodes).sorted()
        self.nodes = sorted
        seeds = sorted.map { Self.hash($0) }
    }

    public var isEmpty: Bool { nodes.isEmpty }

    /// The owner of `id`; nil only for an empty ring. Ids that share their part before the
    /// first `~` (`placementKey`) have the same owner: a record and its companions
    /// (`mcp-<session>` and `mcp-<session>~events`) live on one host.
    public func owner(of id: String) -> String? {
        ownerIndex(of: Self.hash(Self.placementKey(of: id))).map { nodes[$0] }
    }

    /// The member that would own `id` if its owner were gone: where writes for the id are
    /// held while the owner cannot be reached (hinted handoff). Nil with fewer than two members.
    public func runnerUp(of id: String) -> String? {
        guard seeds.count > 1, let owner = ownerIndex(of: Self.hash(Self.placementKey(of: id))) else { return nil }
        let idHash = Self.hash(Self.placementKey(of: id))
        var best: Int?
        var bestScore: UInt64 = 0
        for index in seeds.indices where index != owner {
            let score = Self.mix(idHash ^ seeds[index])
            if best == nil || score > bestScore {
                best = index
                bestScore = score
            }
        }
        return best.map { nodes[$0] }
    }

    /// The part of an id that places it: everything before the first `~`.
    public static func placementKey(of id: String) -> String {
        guard let tilde = id.firstIndex(of: "~") else { return id }
        return String(id[..<tilde])
    }

    /// The owner's index in `nodes` for an id already hashed with `HashRing.hash`.
    public func ownerIndex(of idHash: UInt64) -> Int? {
        guard !seeds.isEmpty else { return nil }
        var best = 0
        var bestScore = Self.mix(idHash ^ seeds[0])
        for index in 1..<seeds.count {
            let score = Self.mix(idHash ^ seeds[index])
            if score > bestScore {
                best = index
                bestScore = score
            }
        }
        return best
    }

    /// FNV-1a, 64 bits, over the UTF-8 bytes of `text`, finalized with SplitMix64.
    public static func hash(_ text: String) -> UInt64 {
        var text = text
        return text.withUTF8 { mix(fnv1a($0)) }
    }

    /// FNV-1a, 64 bits, over `bytes` (unmixed: its low bits are weak; `hash` mixes them).
    @inlinable
    public static func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// The SplitMix64 finalizer: every input bit affects every output bit.
    @inlinable
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
