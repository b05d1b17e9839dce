import Foundation
import SessionModel
import Testing

@testable import DurableHost

/// `CommitQueue`: the decisions of group commit, without I/O; each test is one of its rules.
/// The tickets are plain numbers here: the queue only carries them.
@Suite("The commit queue: what is admitted, what the next batch takes, what fails with a failed batch")
struct CommitQueueTests {
    typealias Queue = CommitQueue<Int>

    static func entry(_ id: String, _ label: String, version: Int64 = 1, incarnation: UInt64 = 1) -> Queue.Entry {
        var mutation = SessionMutation(
            id: id, incarnation: incarnation, change: .append([Message(role: .user, content: label, timestamp: 1)], firstSeq: 0), createdAt: 1,
            lastUpdated: 1, messageCount: 1, metadata: nil, idempotency: nil)
        mutation.ringVersion = version
        return Queue.Entry(mutation: mutation, ticket: 0)
    }

    static func labels(_ entries: [Queue.Entry]) -> [String] {
        entries.map { entry in
            guard case .append(let messages, _) = entry.mutation.change else { return "?" }
            return messages[0].content
        }
    }

    @Test("nothing in flight: the queue's head, up to maxBatch and the first mutation of another version")
    func head() {
        let queue = [Self.entry("a", "a1"), Self.entry("b", "b1"), Self.entry("a", "a2"), Self.entry("c", "c1", version: 2), Self.entry("d", "d1")]
        let (batch, rest) = Queue.split(queue, busy: [], maxBatch: 10)
        #expect(Self.labels(batch) == ["a1", "b1", "a2"])
        #expect(Self.labels(rest) == ["c1", "d1"])
        let (small, left) = Queue.split(queue, busy: [], maxBatch: 2)
        #expect(Self.labels(small) == ["a1", "b1"])
        #expect(Self.labels(left) == ["a2", "c1", "d1"])
    }

    @Test("a session in flight stays queued whole, in order; the others are taken")
    func busySessionsWait() {
        let queue = [Self.entry("a", "a1"), Self.entry("b", "b1"), Self.entry("a", "a2"), Self.entry("c", "c1"), Self.entry("b", "b2")]
        let (batch, rest) = Queue.split(queue, busy: ["a"], maxBatch: 10)
        #expect(Self.labels(batch) == ["b1", "c1", "b2"])
        #expect(Self.labels(rest) == ["a1", "a2"])
        let (none, all) = Queue.split(queue, busy: ["a", "b", "c"], maxBatch: 10)
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
        let (wide, left) = Queue.split(queue, busy: ["x"], maxBatch: 10)
        #expect(Self.labels(wide) == ["b1", "c1", "b2", "d1"])
        #expect(Self.labels(left) == ["x1", "a1", "a2"])
        // Full after two: b2 and d1 wait, and nothing of theirs goes ahead.
        let (batch, rest) = Queue.split(queue, busy: ["x"], maxBatch: 2)
        #expect(Self.labels(batch) == ["b1", "c1"])
        #expect(Self.labels(rest) == ["x1", "a1", "a2", "b2", "d1"])
        // The first one free decides the version.
        let (other, _) = Queue.split(queue, busy: ["x", "b"], maxBatch: 10)
        #expect(Self.labels(other) == ["a1"])
    }

    static func taken(_ next: Queue.Next) -> [String]? {
        if case .batch(let batch) = next { return labels(batch) }
        return nil
    }

    @Test("at most `concurrency` batches in flight; a released batch frees its sessions for the next")
    func concurrency() {
        var queue = Queue(maxBatch: 1, concurrency: 2)
        for entry in [Self.entry("a", "a1"), Self.entry("b", "b1"), Self.entry("a", "a2"), Self.entry("c", "c1")] {
            let refusal = queue.enqueue(entry)
            #expect(refusal == nil)
        }
        let first = queue.take()
        #expect(Self.taken(first) == ["a1"])
        #expect(Self.taken(queue.take()) == ["b1"], "a2 waits for a1's batch")
        guard case .wait = queue.take() else {
            Issue.record("a third batch while two are in flight")
            return
        }
        if case .batch(let batch) = first {
            let more = queue.release(batch)
            #expect(more, "more is queued")
        }
        #expect(Self.taken(queue.take()) == ["a2"])
    }

    @Test("a failed batch fails the queued mutations of the same live objects, and their later ones are refused; others go on")
    func failurePoisons() {
        var queue = Queue(maxBatch: 10, concurrency: 1)
        _ = queue.enqueue(Self.entry("a", "a1", incarnation: 7))
        guard case .batch(let batch) = queue.take() else {
            Issue.record("nothing taken")
            return
        }
        _ = queue.enqueue(Self.entry("a", "a2", incarnation: 7))
        _ = queue.enqueue(Self.entry("b", "b1", incarnation: 8))
        #expect(Self.labels(queue.failed(batch, now: 100)) == ["a2"])
        let answer1 = queue.enqueue(Self.entry("a", "a3", incarnation: 7))
        #expect(answer1?.code == .storageUnavailable)
        let answer2 = queue.enqueue(Self.entry("a", "a1", incarnation: 9))
        #expect(answer2 == nil, "a reloaded object is a new incarnation")
        _ = queue.release(batch)
        #expect(Self.taken(queue.take()) == ["b1", "a1"])
    }

    @Test("a commit in doubt fails everything queued and admits nothing until settled; closing admits nothing and finishes once empty")
    func doubtAndClose() {
        var queue = Queue(maxBatch: 10, concurrency: 1)
        _ = queue.enqueue(Self.entry("a", "a1"))
        _ = queue.enqueue(Self.entry("b", "b1"))
        #expect(Self.labels(queue.doubted()) == ["a1", "b1"])
        let answer3 = queue.enqueue(Self.entry("c", "c1"))
        #expect(answer3?.code == .storageUnavailable)
        queue.settled()
        let answer4 = queue.enqueue(Self.entry("c", "c1"))
        #expect(answer4 == nil)
        queue.close()
        let answer5 = queue.enqueue(Self.entry("d", "d1"))
        #expect(answer5?.code == .shuttingDown)
        guard case .batch(let batch) = queue.take() else {
            Issue.record("what was queued before closing is still committed")
            return
        }
        _ = queue.release(batch)
        guard case .finished = queue.take() else {
            Issue.record("closed and empty: finished")
            return
        }
    }
}
