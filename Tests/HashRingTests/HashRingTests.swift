import HashRing
import TestSupport
import Testing

@Suite("HashRing: rendezvous hashing of ids onto named nodes")
struct HashRingTests {
    /// 100,000 ids shaped like the worker's (transport sessions and conversations), from a
    /// seeded generator so every run checks the same ids.
    static let ids: [String] = {
        var generator = SplitMix(seed: 20_261_125)
        return (0..<100_000).map { index in
            let random = String(generator.next(), radix: 16) + String(generator.next(), radix: 16)
            return index.isMultiple(of: 2) ? "mcp-\(random)" : "conv:principal-\(index % 7):\(random.prefix(20))"
        }
    }()

    static func counts(_ ring: HashRing) -> [String: Int] {
        var counts: [String: Int] = [:]
        for id in ids { counts[ring.owner(of: id)!, default: 0] += 1 }
        return counts
    }

    @Test("balance: the most loaded of 3 nodes holds at most 1.10x the mean, of 10 nodes at most 1.15x")
    func balance() {
        for (size, bound) in [(3, 1.10), (10, 1.15)] {
            let ring = HashRing(nodes: (1...size).map { "host-\($0)" })
            let counts = Self.counts(ring)
            #expect(counts.count == size)
            let mean = Double(Self.ids.count) / Double(size)
            let most = Double(counts.values.max()!)
            #expect(most / mean <= bound, "\(size) nodes: \(counts)")
        }
    }

    @Test("adding a 4th node moves at most 30% of ids, all of them to the new node")
    func addingMovesOnlyToTheNewNode() {
        let three = HashRing(nodes: ["host-1", "host-2", "host-3"])
        let four = HashRing(nodes: ["host-1", "host-2", "host-3", "host-4"])
        var moved = 0
        for id in Self.ids {
            let before = three.owner(of: id)!
            let after = four.owner(of: id)!
            if before != after {
                moved += 1
                #expect(after == "host-4")
            }
        }
        #expect(Double(moved) / Double(Self.ids.count) <= 0.30)
        #expect(moved > 20_000, "the new node must take its share (\(moved))")
    }

    @Test("removing a node moves only that node's ids")
    func removingMovesOnlyItsIds() {
        let four = HashRing(nodes: ["host-1", "host-2", "host-3", "host-4"])
        let three = HashRing(nodes: ["host-1", "host-3", "host-4"])
        for id in Self.ids {
            let before = four.owner(of: id)!
            if before != "host-2" {
                #expect(three.owner(of: id) == before)
            }
        }
    }

    @Test("500 ids on five nodes: the owner and runner-up an independent implementation (Python) computes")
    func independentPlacement() async throws {
        let nodes = ["host-1", "host-2", "host-3", "host-4", "host-5"]
        let ring = HashRing(nodes: nodes)
        let ids = Array(Self.ids.prefix(400)) + (0..<100).map { "conv:p\($0):caf\u{E9}-\($0)~events" }
        let placements = try await IndependentRing.placements(of: ids, nodes: nodes)
        let wrong = ids.filter {
            placements[$0] != IndependentRing.Placement(owner: ring.owner(of: $0) ?? "-", runnerUp: ring.runnerUp(of: $0))
        }
        #expect(wrong.isEmpty, "\(wrong.count) of \(ids.count) placed differently, e.g. \(wrong.prefix(3))")
    }

    @Test("the same owners in every process: pinned known answers, order and duplicates do not matter")
    func deterministic() {
        #expect(HashRing.hash("") == HashRing.mix(0xcbf2_9ce4_8422_2325))
        // Values computed by an independent implementation (Python) of the same functions.
        #expect(HashRing.hash("conv:alice:1") == 0xeb38_d137_fbf5_ea47)
        let ring = HashRing(nodes: ["host-3", "host-1", "host-2", "host-1"])
        #expect(ring.nodes == ["host-1", "host-2", "host-3"])
        #expect(ring == HashRing(nodes: ["host-1", "host-2", "host-3"]))
        let pinned = ["mcp-0": "host-3", "conv:alice:1": "host-1", "demo": "host-2", "session-42": "host-1", "a": "host-3", "b": "host-1"]
        for (id, owner) in pinned {
            #expect(ring.owner(of: id) == owner, "\(id)")
        }
        #expect(HashRing(nodes: []).owner(of: "x") == nil)
        // Companion records live with their record.
        for id in Self.ids.prefix(1000) {
            #expect(ring.owner(of: id + "~events") == ring.owner(of: id))
        }
        #expect(HashRing(nodes: ["solo"]).owner(of: "x") == "solo")
    }

    @Test("membership: owner lookup by name, address changes keep owners and fingerprints, fingerprints differ with members")
    func membership() {
        let first = Membership(version: 1, members: [.init(name: "b", address: "127.0.0.1:2"), .init(name: "a", address: "127.0.0.1:1")])
        #expect(first.members.map(\.name) == ["a", "b"])
        let moved = Membership(version: 2, members: [.init(name: "a", address: "10.0.0.1:1"), .init(name: "b", address: "127.0.0.1:2")])
        for id in Self.ids.prefix(1000) {
            #expect(first.owner(of: id)?.name == moved.owner(of: id)?.name)
        }
        #expect(first.fingerprint == moved.fingerprint, "an address changes nothing the ring decides")
        #expect(first.fingerprint == Membership(version: 9, members: first.members.reversed()).fingerprint)
        #expect(first.fingerprint != Membership(version: 1, members: first.members + [.init(name: "c", address: "127.0.0.1:3")]).fingerprint)
    }
}

/// SplitMix64, for reproducible test ids.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        return HashRing.mix(state &- 0x9e37_79b9_7f4a_7c15)
    }
}
