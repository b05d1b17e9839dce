import HashRing
import SessionModel
import Testing

@testable import SessionClient

/// The writes a worker made in memory during an outage, and the order they go back in: no I/O.
@Suite("The fallback journal: what waits, and in which order it is replayed")
struct FallbackJournalTests {
    static func write(_ key: String, principal: String = "alice") -> FallbackJournal.Write {
        FallbackJournal.Write(update: SessionUpdate(.updateMetadata(["k": .string(key)]), principal: principal), key: key)
    }

    static func offered(_ step: FallbackJournal.Step) -> String? {
        if case .offer(let write) = step { return write.key }
        return nil
    }

    @Test("a session's writes are offered oldest first; each answered or refused one leaves, and the last leaving empties the session")
    func replayOrder() {
        var journal = FallbackJournal()
        journal.append(Self.write("a1"), for: "a")
        journal.append(Self.write("b1"), for: "b")
        journal.append(Self.write("a2"), for: "a")
        #expect(journal.sessions == ["a", "b"])
        #expect(journal.count == 3)
        #expect(Self.offered(journal.start("a")) == "a1")
        #expect(Self.offered(journal.offered("a1", of: "a", .answered)) == "a2")
        // A refusal now would have been one then: it leaves too.
        guard case .emptied = journal.offered("a2", of: "a", .refused) else {
            Issue.record("the session's last write should empty it")
            return
        }
        #expect(!journal.isWaiting("a"))
        #expect(journal.sessions == ["b"])
    }

    @Test("a write that does not get through stops the replay and stays first, with every later one behind it")
    func stopsAtFirstFailure() {
        var journal = FallbackJournal()
        journal.append(Self.write("a1"), for: "a")
        journal.append(Self.write("a2"), for: "a")
        guard case .stop = journal.offered("a1", of: "a", .notDelivered) else {
            Issue.record("an undelivered write should stop the replay")
            return
        }
        #expect(Self.offered(journal.start("a")) == "a1")
        #expect(journal.count == 2)
        // A new write of a session with writes waiting queues behind them.
        #expect(journal.isWaiting("a"))
    }

    @Test("a write another replay already took is not taken twice")
    func concurrentReplay() {
        var journal = FallbackJournal()
        journal.append(Self.write("a1"), for: "a")
        journal.append(Self.write("a2"), for: "a")
        _ = journal.offered("a1", of: "a", .answered)
        guard case .stop = journal.offered("a1", of: "a", .answered) else {
            Issue.record("a second report of the same write should stop")
            return
        }
        #expect(journal.count == 1)
    }

    @Test("erasing a principal forgets its waiting writes and nobody else's")
    func forgetPrincipal() {
        var journal = FallbackJournal()
        journal.append(Self.write("a1", principal: "alice"), for: "a")
        journal.append(Self.write("b1", principal: "bob"), for: "b")
        journal.append(Self.write("m1", principal: "alice"), for: "m")
        journal.append(Self.write("m2", principal: "bob"), for: "m")
        journal.forget(principal: "alice")
        #expect(journal.sessions == ["b", "m"])
        #expect(Self.offered(journal.start("m")) == "m2")
    }

    @Test("a ring a host tells of is adopted when newer, or when it comes from the hosts' database over a configured one")
    func ringAdoption() {
        let configured = Membership(version: 3, members: [.init(name: "h1", address: "127.0.0.1:1")])
        let members = [Membership.Member(name: "h2", address: "127.0.0.1:2")]
        let newer = RingInfo(node: "h2", membership: Membership(version: 4, members: members))
        let older = RingInfo(node: "h2", membership: Membership(version: 2, members: members))
        let shared = RingInfo(node: "h2", membership: Membership(version: 1, members: members, lease: 3))
        let empty = RingInfo(node: "h2", membership: Membership(version: 9, members: []))
        #expect(RingFollower.adopts(newer, over: configured))
        #expect(!RingFollower.adopts(older, over: configured))
        #expect(RingFollower.adopts(shared, over: configured), "a ring kept in the database replaces the configured seed list")
        #expect(!RingFollower.adopts(shared, over: Membership(version: 2, members: members, lease: 3)))
        #expect(!RingFollower.adopts(empty, over: configured))
    }
}
