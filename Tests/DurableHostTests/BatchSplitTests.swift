import Foundation
import SessionModel
import Testing

@testable import DurableHost

/// `GroupCommitter.split`: which queued mutations the next batch takes when others may be in
/// flight; each test is one of its rules.
@Suite("The next batch: one ring version, no session in flight, no mutation ahead of its session's earlier ones")
struct BatchSplitTests {
    static func entry(_ id: String, _ label: String, version: Int64 = 1) -> GroupCommitter.Entry {
        var mutation = SessionMutation(
            id: id, incarnation: 1, change: .append([Message(role: .user, content: label, timestamp: 1)], firstSeq: 0), createdAt: 1,
            lastUpdated: 1, messageCount: 1, metadata: nil, idempotency: nil)
        mutation.ringVersion = version
        return GroupCommitter.Entry(mutation: mutation, ticket: CommitTicket())
    }

    static func labels(_ entries: [GroupCommitter.Entry]) -> [String] {
        entries.map { entry in
            guard case .append(let messages, _) = entry.mutation.change else { return "?" }
            return messages[0].content
        }
    }

    @Test("nothing in flight: the queue's head, up to maxBatch and the first mutation of another version")
    func head() {
        let queue = [Self.entry("a", "a1"), Self.entry("b", "b1"), Self.entry("a", "a2"), Self.entry("c", "c1", version: 2), Self.entry("d", "d1")]
        let (batch, rest) = GroupCommitter.split(queue, busy: [], maxBatch: 10)
        #expect(Self.labels(batch) == ["a1", "b1", "a2"])
        #expect(Self.labels(rest) == ["c1", "d1"])
        let (small, left) = GroupCommitter.split(queue, busy: [], maxBatch: 2)
        #expect(Self.labels(small) == ["a1", "b1"])
        #expect(Self.labels(left) == ["a2", "c1", "d1"])
    }

    @Test("a session in flight stays queued whole, in order; the others are taken")
    func busySessionsWait() {
        let queue = [Self.entry("a", "a1"), Self.entry("b", "b1"), Self.entry("a", "a2"), Self.entry("c", "c1"), Self.entry("b", "b2")]
        let (batch, rest) = GroupCommitter.split(queue, busy: ["a"], maxBatch: 10)
        #expect(Self.labels(batch) == ["b1", "c1", "b2"])
        #expect(Self.labels(rest) == ["a1", "a2"])
        let (none, all) = GroupCommitter.split(queue, busy: ["a", "b", "c"], maxBatch: 10)
        #expect(none.isEmpty)
        #expect(Self.labels(all) == Self.labels(queue))
    }

    @Test("a session with a mutation left behind (another version, a full batch) leaves its later ones behind too")
    func noOvertaking() {
        let queue = [
            Self.entry("x", "x1"), Self.entry("b", "b1"), Self.entry("a", "a1", version: 2), Self.entry("a", "a2"), Self.entry("c", "c1"),
            Self.entry("b", "b2"), Self.entry("d", "d1"),
        ]
        // The batch is at b1's version; a1 is not, so a2 (at the batch's version) waits behind it.
        let (wide, left) = GroupCommitter.split(queue, busy: ["x"], maxBatch: 10)
        #expect(Self.labels(wide) == ["b1", "c1", "b2", "d1"])
        #expect(Self.labels(left) == ["x1", "a1", "a2"])
        // Full after two: b2 and d1 wait, and nothing of theirs goes ahead.
        let (batch, rest) = GroupCommitter.split(queue, busy: ["x"], maxBatch: 2)
        #expect(Self.labels(batch) == ["b1", "c1"])
        #expect(Self.labels(rest) == ["x1", "a1", "a2", "b2", "d1"])
        // The first one free decides the version.
        let (other, _) = GroupCommitter.split(queue, busy: ["x", "b"], maxBatch: 10)
        #expect(Self.labels(other) == ["a1"])
    }
}
