import Foundation
import HashRing
import HostLink
import SessionModel
import Testing

/// What `/health` says of another member, the same shape on hosts and workers.
@Suite("member health")
struct MemberHealthTests {
    static let ours = RingInfo(
        node: nil, membership: Membership(version: 2, members: [.init(name: "a", address: "127.0.0.1:1"), .init(name: "b", address: "127.0.0.1:2")]))

    static func problem(_ member: MemberHealth) -> String? {
        member.problem(role: "host", reporter: "worker", ownVersion: 2, remedy: "align them")
    }

    @Test("the first thing wrong is the problem reported: unreachable, no database, no lease, another ring")
    func problems() {
        var member = MemberHealth(name: "a", address: "127.0.0.1:1", reachable: false, error: "connection refused")
        #expect(Self.problem(member) == "host a at 127.0.0.1:1 is unreachable: connection refused")
        member.reachable = true
        member.error = nil
        #expect(Self.problem(member) == nil)
        member.database = "unreachable"
        #expect(Self.problem(member) == "host a cannot reach its database")
        member.database = "ok"
        member.serving = false
        #expect(Self.problem(member) == "host a holds no lease (joining, or cut off from its database)")
        member.serving = true
        member.record(.success(RingInfo(node: "a", membership: Membership(version: 3, members: [.init(name: "a", address: "127.0.0.1:1")]))), ours: Self.ours)
        #expect(member.ringAgrees == false)
        #expect(Self.problem(member) == "host a uses ring version 3, this worker 2: align them")
        member.record(.success(Self.ours), ours: Self.ours)
        #expect(member.ringAgrees == true)
        #expect(Self.problem(member) == nil)
    }

    @Test("a ring that could not be read leaves agreement unknown and says why")
    func unreadRing() {
        var member = MemberHealth(name: "b", address: "127.0.0.1:2", reachable: true)
        member.record(.failure(.unauthorized), ours: Self.ours)
        #expect(member.ringAgrees == nil)
        #expect(member.error == "HTTP 401: the token is refused")
    }

    @Test("encoded with snake_case keys, and without what is unknown")
    func encoding() throws {
        var member = MemberHealth(name: "a", address: "127.0.0.1:1", reachable: true)
        member.ringAgrees = true
        member.ringVersion = 2
        member.liveHosts = 3
        let object = try #require(JSONValue.parse(try JSONEncoder().encode(member))?.objectValue)
        #expect(Set(object.keys) == ["name", "address", "reachable", "ring_agrees", "ring_version", "live_hosts"])
    }
}
