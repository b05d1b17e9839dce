import SessionClient
import SessionModel
import Testing

@testable import MCPWorker

@Suite("A conversation turn: what it keeps in use while it runs")
struct ConversationTurnTests {
    static func turn(existed: Bool, lifetime: Double?, lastUpdated: Double? = 1_000) -> Conversations.Turn {
        Conversations.Turn(
            messages: [], title: nil,
            target: ConversationCatalog.Target(storageID: "conv:alice:t", owner: "alice", ownerSessionID: "t", access: .owner, pointer: nil),
            existed: existed, lifetime: lifetime, lastUpdated: lastUpdated)
    }

    @Test("the first mark is due a third of the lifetime after the conversation's last write, not after the turn began")
    func firstMark() {
        let turn = Self.turn(existed: true, lifetime: 6)
        #expect(turn.firstKeepAlive(now: 1_000.5) == .milliseconds(1_500))
        #expect(turn.firstKeepAlive(now: 1_002) == .zero, "a turn that begins late in the conversation's life marks it at once")
        #expect(turn.firstKeepAlive(now: 1_005.9) == .zero)
    }

    @Test("a stored conversation living less long than a call may take is marked used every third of its lifetime; others are left alone")
    func keepAlive() {
        #expect(Self.turn(existed: true, lifetime: 3).keepAliveInterval == .seconds(1))
        #expect(Self.turn(existed: true, lifetime: 0.01).keepAliveInterval == .milliseconds(50), "never more often than every 50 ms")
        #expect(Self.turn(existed: true, lifetime: 3 * 86_400).keepAliveInterval == .seconds(86_400))
        #expect(Self.turn(existed: true, lifetime: 90 * 86_400).keepAliveInterval == nil, "the default retention outlives any call")
        #expect(Self.turn(existed: true, lifetime: nil).keepAliveInterval == nil, "kept for ever")
        #expect(Self.turn(existed: false, lifetime: 3).keepAliveInterval == nil, "a new conversation has nothing to keep yet")
    }

    @Test("a history says how long its session lives after a write, when its host says when it expires")
    func lifetimeFromHistory() {
        #expect(SessionHistory(lastUpdated: 100, expiresAt: 160).lifetime == 60)
        #expect(SessionHistory(lastUpdated: 100).lifetime == nil)
        #expect(SessionHistory().exists == false)
        #expect(SessionHistory(lastUpdated: 100).exists)
    }
}
