import Foundation
import SessionModel
import Testing

@testable import SessionClient

@Suite("LastKnownSessions: the fallback's starting point, bounded")
struct LastKnownSessionsTests {
    let limits = SessionLimits.default

    @Test("reads are remembered, accepted writes applied, unknown sessions not guessed from writes")
    func remembersWhatItSaw() {
        let cache = LastKnownSessions(limits: limits)
        cache.apply(SessionUpdate(.appendMessage(MessageInput(role: .user, content: "unseen"))), to: "a", now: 1)
        #expect(cache.state(of: "a") == nil)

        cache.store("a", nil, now: 1)
        cache.apply(SessionUpdate(.appendMessage(MessageInput(role: .user, content: "hello"))), to: "a", now: 2)
        cache.apply(SessionUpdate(.updateMetadata(["k": "v"])), to: "a", now: 3)
        let state = cache.state(of: "a")
        #expect(state?.exists == true)
        #expect(state?.record.messages.map(\.content) == ["hello"])
        #expect(state?.record.metadata == ["k": "v"])

        cache.apply(SessionUpdate(.clear), to: "a", now: 4)
        #expect(cache.state(of: "a")?.exists == false)
    }

    @Test("the count and byte budgets evict the least recently used sessions")
    func bounded() {
        let cache = LastKnownSessions(maxSessions: 100, maxBytes: 10_000, limits: limits)
        for index in 0..<500 {
            cache.store(
                "s\(index)", SessionRecord(id: "s\(index)", messages: [Message(role: .user, content: "x", timestamp: 1)], createdAt: 1, lastUpdated: 1), now: 1)
        }
        #expect(cache.count <= 100)
        #expect(cache.state(of: "s499") != nil)
        #expect(cache.state(of: "s0") == nil)

        let big = String(repeating: "y", count: 4_000)
        for index in 0..<5 {
            cache.store(
                "big\(index)", SessionRecord(id: "big\(index)", messages: [Message(role: .user, content: big, timestamp: 1)], createdAt: 1, lastUpdated: 1),
                now: 1)
        }
        #expect(cache.state(of: "big4") != nil)
        #expect(cache.state(of: "big0") == nil)
        cache.store(
            "huge",
            SessionRecord(
                id: "huge", messages: [Message(role: .user, content: String(repeating: "z", count: 20_000), timestamp: 1)], createdAt: 1, lastUpdated: 1),
            now: 1)
        #expect(cache.state(of: "huge") == nil, "a session larger than the whole budget is not kept")
    }

    static func history(_ contents: [String], metadata: JSONObject = ["kind": "conversation"]) -> SessionRecord {
        SessionRecord(
            id: "conv:alice:t", messages: contents.map { Message(role: .user, content: $0, timestamp: 1) }, metadata: metadata, createdAt: 1,
            lastUpdated: 10)
    }

    static func turn(_ contents: String...) -> SessionUpdate {
        SessionUpdate(.appendMessages(contents.map { MessageInput(role: .assistant, content: $0) }), expectMessages: 99)
    }

    @Test("a turn's view comes from memory only once a read found the session as this worker's own write left it")
    func trustedOnlyOnceSeenAlone() throws {
        let cache = LastKnownSessions(limits: limits)
        let id = "conv:alice:t"
        // Read: the newest two of five messages.
        cache.store(id, Self.history(["m4", "m5"]), now: 10, messageCount: 5, lifetime: 3_600)
        #expect(cache.turnView(of: id, last: 20, now: 11) == nil, "a read alone says nothing of who else writes")
        cache.apply(Self.turn("m6", "m7"), to: id, now: 12)
        #expect(cache.turnView(of: id, last: 20, now: 13) == nil, "nor does a write")
        // Another worker wrote meanwhile: the read shows more than this worker's write left.
        cache.store(id, Self.history(["m7", "m8"]), now: 14, messageCount: 8, lifetime: 3_600)
        #expect(cache.turnView(of: id, last: 20, now: 15) == nil)
        cache.apply(Self.turn("m9"), to: id, now: 16)
        // The next read finds exactly what this worker's write left: 9 messages, the same metadata.
        cache.store(id, Self.history(["m8", "m9"]), now: 17, messageCount: 9, lifetime: 3_600)
        let view = try #require(cache.turnView(of: id, last: 20, now: 18))
        #expect(view.messageCount == 9)
        #expect(view.remembered)
        #expect(view.messages.map(\.content) == ["m8", "m9"])
        // Its own writes keep it current, the count included; the window is the newest `last`.
        cache.apply(Self.turn("m10", "m11"), to: id, now: 19)
        let next = try #require(cache.turnView(of: id, last: 3, now: 20))
        #expect(next.messageCount == 11)
        #expect(next.messages.map(\.content) == ["m9", "m10", "m11"])
        #expect(next.metadata == ["kind": "conversation"])
        // A session that may have expired by now is read.
        #expect(cache.turnView(of: id, last: 3, now: 19 + 3_600) == nil)
        // A refused turn: read again before the next.
        cache.distrust(id)
        #expect(cache.turnView(of: id, last: 3, now: 21) == nil)
    }

    @Test("a read whose metadata differs from what this worker's write left is not trusted")
    func metadataChangedElsewhere() {
        let cache = LastKnownSessions(limits: limits)
        let id = "conv:alice:t"
        cache.store(id, Self.history(["m1"]), now: 10, messageCount: 1)
        cache.apply(Self.turn("m2"), to: id, now: 11)
        cache.store(id, Self.history(["m1", "m2"], metadata: ["kind": "conversation", "share:bob": "read"]), now: 12)
        #expect(cache.turnView(of: id, last: 20, now: 13) == nil)
    }
}
