import Foundation
import SessionModel
import Testing

@Suite("Applying operations to a session")
struct SessionStateTests {
    let limits = SessionLimits(maxContentBytes: 10, maxMessagesPerSession: 3, maxSessionBytes: 25, maxMetadataBytes: 40)

    @Test("the first write creates the session and sets created_at; later writes move last_updated only")
    func timestamps() throws {
        var state = SessionState(absent: "s")
        #expect(!state.exists)
        _ = try state.apply(.appendMessage(MessageInput(role: .user, content: "a")), now: 100, limits: limits)
        #expect(state.exists)
        #expect(state.record.createdAt == 100)
        #expect(state.record.messages.first?.timestamp == 100)
        _ = try state.apply(.appendMessage(MessageInput(role: .assistant, content: "b", timestamp: 7)), now: 105, limits: limits)
        #expect(state.record.createdAt == 100)
        #expect(state.record.lastUpdated == 105)
        #expect(state.record.messages.map(\.timestamp) == [100, 7])
        _ = try state.apply(.updateMetadata(["k": "v"]), now: 90, limits: limits)
        #expect(state.record.lastUpdated == 105, "a clock that steps back does not move last_updated back")
    }

    @Test("append keeps order and reports the index; set_history replaces everything")
    func appendAndReplace() throws {
        var state = SessionState(absent: "s")
        let first = try state.apply(.appendMessage(MessageInput(role: .user, content: "1")), now: 1, limits: limits)
        let second = try state.apply(.appendMessage(MessageInput(role: .assistant, content: "2")), now: 2, limits: limits)
        #expect(first == .appended([Message(role: .user, content: "1", timestamp: 1)], firstIndex: 0))
        #expect(second == .appended([Message(role: .assistant, content: "2", timestamp: 2)], firstIndex: 1))
        #expect(try state.apply(.setHistory([MessageInput(role: .system, content: "s")]), now: 3, limits: limits) == .replacedMessages)
        #expect(state.record.messages == [Message(role: .system, content: "s", timestamp: 3)])
        #expect(state.contentBytes == 1)
    }

    @Test("metadata merges key by key and null removes a key")
    func metadataMerge() throws {
        var state = SessionState(absent: "s")
        _ = try state.apply(.updateMetadata(["a": 1, "b": "x"]), now: 1, limits: limits)
        _ = try state.apply(.updateMetadata(["b": nil, "c": true]), now: 2, limits: limits)
        #expect(state.record.metadata == ["a": 1, "c": true])
    }

    @Test("clear returns the session to not existing")
    func clear() throws {
        var state = SessionState(absent: "s")
        _ = try state.apply(.appendMessage(MessageInput(role: .user, content: "a")), now: 1, limits: limits)
        #expect(try state.apply(.clear, now: 2, limits: limits) == .cleared)
        #expect(!state.exists)
        #expect(state.record.messages.isEmpty)
        #expect(state.record.metadata.isEmpty)
    }

    @Test("each limit refuses the operation and leaves the state exactly as it was")
    func limitsChangeNothing() throws {
        var state = SessionState(absent: "s")
        _ = try state.apply(.appendMessage(MessageInput(role: .user, content: "12345678")), now: 1, limits: limits)
        _ = try state.apply(.appendMessage(MessageInput(role: .user, content: "12345678")), now: 2, limits: limits)
        let before = state
        let refused: [(SessionOperation, String)] = [
            (.appendMessage(MessageInput(role: .user, content: "01234567890")), "message.content is 11 bytes; the limit is 10"),
            (.appendMessage(MessageInput(role: .user, content: "1234567890")), "would hold 26"),
            (.setHistory(Array(repeating: MessageInput(role: .user, content: "a"), count: 4)), "set_history has 4 messages"),
            (.setHistory([MessageInput(role: .user, content: "a"), MessageInput(role: .user, content: "0123456789x")]), "messages[1].content is 11 bytes"),
            (.updateMetadata(["key": .string(String(repeating: "x", count: 40))]), "metadata would be"),
        ]
        for (operation, phrase) in refused {
            do {
                _ = try state.apply(operation, now: 9, limits: limits)
                Issue.record("\(operation) was accepted")
            } catch {
                #expect(error.code == .limitExceeded)
                #expect(error.message.contains(phrase), "\(error.message)")
            }
            #expect(state == before)
        }
        _ = try state.apply(.appendMessage(MessageInput(role: .user, content: "1")), now: 3, limits: limits)
        do {
            _ = try state.apply(.appendMessage(MessageInput(role: .user, content: "1")), now: 4, limits: limits)
            Issue.record("a fourth message was accepted")
        } catch {
            #expect(error.message.contains("holds 3 messages; the limit is 3"))
        }
    }
}

@Suite("Session ids")
struct SessionIDTests {
    @Test("ids of the allowed characters pass", arguments: ["a", "abc-DEF_012.~:x", String(repeating: "z", count: 128)])
    func valid(id: String) throws {
        #expect(try SessionID.validate(id) == id)
    }

    @Test(
        "bad ids are refused with a reason",
        arguments: [
            ("", "must not be empty"), ("a b", "may hold only"), ("a/b", "may hold only"), ("é", "may hold only"),
            ("..", "must not be"), (String(repeating: "z", count: 129), "the limit is 128"),
        ])
    func invalid(id: String, phrase: String) {
        do {
            try SessionID.validate(id)
            Issue.record("'\(id)' was accepted")
        } catch {
            #expect(error.code == .invalidSessionID)
            #expect(error.message.contains(phrase))
        }
    }
}

@Suite("Wire shapes of the host API")
struct WireShapeTests {
    private func object(_ value: some Encodable) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: JSONEncoder().encode(value)) as! [String: Any]
    }

    @Test("history is {success, data: [{role, content, timestamp}], metadata}")
    func history() throws {
        let json = try object(HostAPI.History(data: [Message(role: .user, content: "hi", timestamp: 1.5)], metadata: ["k": "v"]))
        #expect(Set(json.keys) == ["success", "data", "metadata"])
        #expect(json["success"] as? Bool == true)
        let message = (json["data"] as! [[String: Any]])[0]
        #expect(Set(message.keys) == ["role", "content", "timestamp"])
        #expect(message["role"] as? String == "user")
        #expect(message["timestamp"] as? Double == 1.5)
    }

    @Test("a record uses created_at and last_updated; an error is {success: false, error: {code, message}}")
    func recordAndError() throws {
        let record = try object(HostAPI.Record(data: SessionRecord(id: "s", createdAt: 1, lastUpdated: 2)))
        let data = record["data"] as! [String: Any]
        #expect(Set(data.keys) == ["id", "messages", "metadata", "created_at", "last_updated"])
        let failure = try object(HostAPI.Failure(APIError(.missingField, "x is required")))
        #expect(failure["success"] as? Bool == false)
        #expect((failure["error"] as! [String: Any])["code"] as? String == "missing_field")
    }

    @Test("metadata keeps integers exact and round-trips nested values")
    func metadataValues() throws {
        let metadata: JSONObject = ["big": .int(12_345_678_901_234_567), "f": 0.25, "list": [nil, "s", false]]
        let data = try JSONEncoder().encode(metadata)
        #expect(try JSONDecoder().decode(JSONObject.self, from: data) == metadata)
    }
}

@Suite("Turns, counters, records brought in, principals and lifetimes")
struct SessionStateExtensionsTests {
    let limits = SessionLimits(maxContentBytes: 100, maxMessagesPerSession: 4, maxSessionBytes: 400, maxMetadataBytes: 60)

    @Test("append_messages with metadata stores both or, refused, neither")
    func turnWithMetadata() throws {
        var state = SessionState(absent: "c")
        let change = try state.apply(
            .appendMessages([MessageInput(role: .user, content: "q"), MessageInput(role: .assistant, content: "a")], metadata: ["title": "q"]),
            now: 5, limits: limits)
        #expect(change == .appended(state.record.messages, firstIndex: 0, metadataChanged: true))
        #expect(state.record.metadata == ["title": "q"])
        let before = state
        #expect(throws: APIError.self) {
            try state.apply(
                .appendMessages([MessageInput(role: .user, content: "q2")], metadata: ["big": .string(String(repeating: "x", count: 80))]), now: 6,
                limits: limits)
        }
        #expect(state == before, "metadata over its limit leaves the messages out too")
        #expect(throws: APIError.self) {
            try state.apply(
                .appendMessages([MessageInput(role: .user, content: String(repeating: "y", count: 101))], metadata: ["t": 1]), now: 6, limits: limits)
        }
        #expect(state == before, "a message over its limit leaves the metadata out too")
    }

    @Test("add_counters adds to what is there, absent counting as zero, and refuses a key that holds something else")
    func counters() throws {
        var state = SessionState(absent: "usage:alice:2026-12-01")
        _ = try state.apply(.addCounters(["calls": 1, "upstream_ms": 250]), now: 1, limits: limits)
        _ = try state.apply(.addCounters(["calls": 2, "failures": 1]), now: 2, limits: limits)
        #expect(state.record.metadata["calls"]?.numberValue == 3)
        #expect(state.record.metadata["failures"]?.numberValue == 1)
        #expect(state.record.metadata["upstream_ms"]?.numberValue == 250)
        _ = try state.apply(.updateMetadata(["label": "x"]), now: 3, limits: limits)
        let before = state
        #expect(throws: APIError.self) { try state.apply(.addCounters(["calls": 1, "label": 1]), now: 4, limits: limits) }
        #expect(state == before)
    }

    @Test("put_record creates the session as given, is nothing when repeated, and refuses a session that differs")
    func putRecord() throws {
        let record = SessionRecord(
            id: "ignored", messages: [Message(role: .user, content: "q", timestamp: 10), Message(role: .assistant, content: "a", timestamp: 11)],
            metadata: ["title": "q"], createdAt: 10, lastUpdated: 11, principal: "alice")
        var state = SessionState(absent: "conv:alice:x")
        #expect(try state.apply(SessionUpdate(.putRecord(record)), now: 500, limits: limits) == .replacedMessages)
        #expect(state.record.id == "conv:alice:x")
        #expect(state.record.createdAt == 10 && state.record.lastUpdated == 11, "times are the record's, not the import's")
        #expect(state.record.messages == record.messages && state.record.principal == "alice")
        let imported = state
        #expect(try state.apply(SessionUpdate(.putRecord(record)), now: 600, limits: limits) == .unchanged)
        #expect(state == imported)
        var other = record
        other.messages.append(Message(role: .user, content: "later", timestamp: 12))
        #expect(throws: APIError(.sessionExists, "session 'conv:alice:x' exists and differs from the record given; nothing was changed")) {
            try state.apply(SessionUpdate(.putRecord(other)), now: 700, limits: limits)
        }
        var tooMany = record
        tooMany.messages = Array(repeating: Message(role: .user, content: "m", timestamp: 1), count: 5)
        var fresh = SessionState(absent: "conv:alice:y")
        #expect(throws: APIError.self) { try fresh.apply(SessionUpdate(.putRecord(tooMany)), now: 1, limits: limits) }
        #expect(!fresh.exists)
    }

    @Test("a principal is set by the first write that names one and never changes; a lifetime is kept until changed")
    func principalAndLifetime() throws {
        var state = SessionState(absent: "mcp-1")
        _ = try state.apply(SessionUpdate(.updateMetadata(["k": 1]), principal: "alice", expiresAfter: 60), now: 1, limits: limits)
        _ = try state.apply(SessionUpdate(.updateMetadata(["k": 2])), now: 2, limits: limits)
        #expect(state.record.principal == "alice" && state.record.expiresAfter == 60)
        let before = state
        #expect(throws: APIError.self) { try state.apply(SessionUpdate(.updateMetadata(["k": 3]), principal: "bob"), now: 3, limits: limits) }
        #expect(state == before, "another principal's write changes nothing")
        _ = try state.apply(SessionUpdate(.updateMetadata(["k": 4]), principal: "alice", expiresAfter: 0), now: 4, limits: limits)
        #expect(state.record.expiresAfter == 0)
        _ = try state.apply(.clear, now: 5, limits: limits)
        _ = try state.apply(SessionUpdate(.updateMetadata(["k": 5]), principal: "bob"), now: 6, limits: limits)
        #expect(state.record.principal == "bob", "a cleared session starts anew")
    }

    @Test("expiry: the host's retention for a session without a lifetime, its own otherwise, zero for never")
    func expiry() throws {
        var kept = SessionState(absent: "conv:a:1")
        _ = try kept.apply(.appendMessage(MessageInput(role: .user, content: "q")), now: 1_000, limits: limits)
        #expect(!kept.isExpired(now: 1_099, retention: 100))
        #expect(kept.isExpired(now: 1_100, retention: 100))
        #expect(!kept.isExpired(now: 1e9, retention: 0), "retention 0 keeps it for ever")
        var own = SessionState(absent: "mcp-1")
        _ = try own.apply(SessionUpdate(.updateMetadata(["k": 1]), expiresAfter: 5), now: 1_000, limits: limits)
        #expect(own.isExpired(now: 1_005, retention: 0), "its own lifetime, whatever the host's retention")
        #expect(!own.isExpired(now: 1_004.9, retention: 1))
        _ = try own.apply(.updateMetadata(["k": 2]), now: 1_004, limits: limits)
        #expect(!own.isExpired(now: 1_005, retention: 0), "a write renews it")
        var never = SessionState(absent: "x")
        _ = try never.apply(SessionUpdate(.updateMetadata(["k": 1]), expiresAfter: 0), now: 1, limits: limits)
        #expect(!never.isExpired(now: 1e12, retention: 10))
        #expect(!SessionState(absent: "y").isExpired(now: 1e12, retention: 1), "what does not exist does not expire")
    }

    @Test("a write through a share commits only while the owner's record grants continue, and only appends")
    func continuedByAShare() throws {
        let big = SessionLimits()
        var state = SessionState(absent: "conv:alice:t")
        let turn = SessionOperation.appendMessages([MessageInput(role: .user, content: "q"), MessageInput(role: .assistant, content: "a")])
        #expect(throws: APIError.self, "no session: nothing to continue") {
            _ = try state.apply(SessionUpdate(turn, principal: "alice", continuedBy: "bob"), now: 1, limits: big)
        }
        #expect(!state.exists)
        _ = try state.apply(SessionUpdate(turn, principal: "alice"), now: 1, limits: big)
        for grant: JSONValue in [.null, "read"] {
            _ = try state.apply(SessionUpdate(.updateMetadata(["share:bob": grant]), principal: "alice"), now: 2, limits: big)
            do {
                _ = try state.apply(SessionUpdate(turn, principal: "alice", continuedBy: "bob"), now: 3, limits: big)
                Issue.record("a write through a share of \(grant) was applied")
            } catch {
                #expect(error.code == .notShared && error.code.httpStatus == 403)
            }
            #expect(state.record.messages.count == 2, "a refused write changes nothing")
        }
        _ = try state.apply(SessionUpdate(.updateMetadata(["share:bob": "continue", "share:carol": "continue"]), principal: "alice"), now: 4, limits: big)
        #expect(try state.apply(SessionUpdate(turn, principal: "alice", continuedBy: "bob"), now: 5, limits: big) != .unchanged)
        #expect(state.record.messages.count == 4)
        for operation: SessionOperation in [.setHistory([MessageInput(role: .user, content: "mine now")]), .updateMetadata(["title": "bob's"])] {
            #expect(throws: APIError(.notShared, "a principal continuing a shared session may only append to it, not \(operation.name)")) {
                _ = try state.apply(SessionUpdate(operation, principal: "alice", continuedBy: "carol"), now: 6, limits: big)
            }
        }
        #expect(state.record.messages.count == 4 && state.record.metadata["title"] == nil)
    }

    @Test("must_exist refuses a write to a session that is not there, and changes nothing")
    func mustExist() throws {
        var state = SessionState(absent: "s")
        let touch = SessionUpdate(.updateMetadata([:]), mustExist: true)
        #expect(throws: APIError.self) { _ = try state.apply(touch, now: 1, limits: limits) }
        #expect(!state.exists)
        _ = try state.apply(.appendMessage(MessageInput(role: .user, content: "a")), now: 1, limits: limits)
        #expect(try state.apply(touch, now: 9, limits: limits) == .replacedMetadata)
        #expect(state.record.lastUpdated == 9, "a write that changes nothing else still marks the session as used")
    }

    @Test("the write conditions travel on the wire and read back as sent; wrong ones name the field")
    func conditionsOnTheWire() throws {
        let update = SessionUpdate(
            .appendMessage(MessageInput(role: .user, content: "q")), principal: "alice", mustExist: true, continuedBy: "bob", asOf: 12.5)
        #expect(try SessionUpdate.decode(update.jsonValue) == update)
        #expect(update.predates(erasureAt: 12.5) && update.predates(erasureAt: 20) && !update.predates(erasureAt: 12) && !update.predates(erasureAt: nil))
        #expect(!SessionUpdate(.clear, principal: "alice").predates(erasureAt: 100), "a write that says nothing of its data's age is not judged by it")
        #expect(throws: APIError(.invalidField, "must_exist must be true or false")) {
            _ = try SessionOperation.decodeUpdate(from: Data(#"{"operation":"update_metadata","metadata":{},"must_exist":1}"#.utf8))
        }
        #expect(throws: APIError(.invalidField, "continued_by needs principal: the owner whose share it continues")) {
            _ = try SessionOperation.decodeUpdate(from: Data(#"{"operation":"update_metadata","metadata":{},"continued_by":"bob"}"#.utf8))
        }
        #expect(throws: APIError(.invalidField, "as_of must be a non-negative number of seconds since the epoch")) {
            _ = try SessionOperation.decodeUpdate(from: Data(#"{"operation":"update_metadata","metadata":{},"as_of":-1}"#.utf8))
        }
    }
}

@Suite("Compare and set: a write that expects what the session holds")
struct ExpectTests {
    static func metadata(_ object: JSONObject, expect: JSONObject?) -> SessionUpdate {
        SessionUpdate(.updateMetadata(object), expect: expect)
    }

    @Test("a write commits only while every expected key holds its value; null expects the key absent; of two writers expecting the same, one wins")
    func compareAndSet() throws {
        var state = SessionState(absent: "oauth-grant:g")
        _ = try state.apply(Self.metadata(["refresh": "r1"], expect: ["refresh": .null]), now: 1, limits: .default)
        #expect(state.record.metadata["refresh"] == "r1")
        var second = state
        _ = try state.apply(Self.metadata(["refresh": "r2"], expect: ["refresh": "r1"]), now: 2, limits: .default)
        do {
            _ = try state.apply(Self.metadata(["refresh": "r3"], expect: ["refresh": "r1"]), now: 3, limits: .default)
            Issue.record("a second writer expecting r1 won too")
        } catch {
            #expect(error.code == .preconditionFailed)
            #expect(error.message.contains("'refresh'"))
        }
        #expect(state.record.metadata["refresh"] == "r2", "a refused write changes nothing")
        // The same write against the state as the other writer saw it: it would have won there.
        _ = try second.apply(Self.metadata(["refresh": "r3"], expect: ["refresh": "r1"]), now: 3, limits: .default)
        #expect(second.record.metadata["refresh"] == "r3")
    }

    @Test("expect rides beside the operation on the wire and round-trips; a bad one is refused naming the field")
    func wire() throws {
        let update = SessionUpdate(.updateMetadata(["used": true]), principal: "alice+work@example.com", mustExist: true, expect: ["used": .null])
        let decoded = try SessionUpdate.decode(try #require(JSONValue.parse(update.canonicalJSON)))
        #expect(decoded == update)
        do {
            _ = try SessionUpdate.decode(["operation": "update_metadata", "metadata": [:], "expect": "x"])
            Issue.record("a string was taken for expect")
        } catch {
            #expect(error.message.contains("expect"))
        }
    }

    @Test("expect_messages: a turn commits only onto the history it was asked with; a session that does not exist holds 0")
    func expectMessages() throws {
        let turn: (Int) -> SessionUpdate = { count in
            SessionUpdate(.appendMessages([MessageInput(role: .user, content: "q"), MessageInput(role: .assistant, content: "a")]), expectMessages: count)
        }
        var state = SessionState(absent: "conv:alice:t")
        _ = try state.apply(turn(0), now: 1, limits: .default)
        var other = state
        _ = try state.apply(turn(2), now: 2, limits: .default)
        #expect(state.record.messages.count == 4)
        // A second turn asked with the same two messages, stored second: refused, nothing written.
        do {
            _ = try state.apply(turn(2), now: 3, limits: .default)
            Issue.record("a turn asked with a history that changed was stored")
        } catch {
            #expect(error.code == .historyChanged)
            #expect(error.code.httpStatus == 409)
            #expect(error.message.contains("holds 4 messages, not the 2 expected"))
        }
        #expect(state.record.messages.count == 4)
        _ = try other.apply(turn(2), now: 3, limits: .default)
        #expect(other.record.messages.count == 4, "against the history it was asked with, the same turn is stored")
        var gone = SessionState(absent: "conv:alice:gone")
        #expect(throws: APIError.self) { _ = try gone.apply(turn(2), now: 1, limits: .default) }
    }

    @Test("expect_messages rides on the wire and round-trips; anything but a whole number from 0 is refused naming it")
    func expectMessagesWire() throws {
        let update = SessionUpdate(.appendMessage(MessageInput(role: .user, content: "q")), principal: "alice", mustExist: true, expectMessages: 12)
        let decoded = try SessionUpdate.decode(try #require(JSONValue.parse(update.canonicalJSON)))
        #expect(decoded == update)
        #expect(String(decoding: update.canonicalJSON, as: UTF8.self).contains(#""expect_messages":12"#))
        for bad: JSONValue in [-1, 1.5, "3", true, .double(1e12)] {
            do {
                _ = try SessionUpdate.decode(["operation": "append_message", "message": ["role": "user", "content": "q"], "expect_messages": bad])
                Issue.record("expect_messages \(bad) was taken")
            } catch {
                #expect(error.code == .invalidField)
                #expect(error.message.hasPrefix("expect_messages must be a"), "\(error.message)")
            }
        }
    }

    @Test("ids and principals take '@' and '+': an email address is a principal, and its conversations' ids are ids")
    func emailPrincipals() throws {
        #expect(SessionUpdate.isValidPrincipal("alice+work@example.com"))
        #expect(try SessionID.validate(StorageKeys.conversation(principal: "alice+work@example.com", sessionID: "t")) == "conv:alice+work@example.com:t")
        #expect(!SessionUpdate.isValidPrincipal("alice work@example.com"))
    }
}
