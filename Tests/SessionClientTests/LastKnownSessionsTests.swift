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
}
