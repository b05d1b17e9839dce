import Foundation
import SessionModel
import Testing

@Suite("Decoding the update body")
struct OperationDecodingTests {
    private func decode(_ text: String) throws(APIError) -> SessionOperation {
        try SessionOperation.decodeUpdate(from: Data(text.utf8)).operation
    }

    private func failure(_ text: String) -> APIError? {
        do {
            _ = try decode(text)
            return nil
        } catch {
            return error
        }
    }

    @Test("append_message decodes role, content and an optional timestamp")
    func appendMessage() throws {
        #expect(
            try decode(#"{"operation":"append_message","message":{"role":"user","content":"hi"}}"#)
                == .appendMessage(MessageInput(role: .user, content: "hi")))
        #expect(
            try decode(#"{"operation":"append_message","message":{"role":"assistant","content":"a","timestamp":12.5}}"#)
                == .appendMessage(MessageInput(role: .assistant, content: "a", timestamp: 12.5)))
    }

    @Test("set_history and update_metadata decode their payloads")
    func otherOperations() throws {
        #expect(
            try decode(#"{"operation":"set_history","messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]}"#)
                == .setHistory([MessageInput(role: .system, content: "s"), MessageInput(role: .user, content: "u")]))
        #expect(
            try decode(#"{"operation":"update_metadata","metadata":{"repo":"a/b","n":1,"x":null,"deep":{"k":[true,1.5]}}}"#)
                == .updateMetadata(["repo": "a/b", "n": 1, "x": nil, "deep": ["k": [true, 1.5]]]))
    }

    @Test(
        "each malformed body names its problem",
        arguments: [
            ("{", ErrorCode.invalidJSON, "not valid JSON"),
            ("[1,2]", .invalidRequest, "must be a JSON object"),
            ("{}", .missingField, "operation is required"),
            (#"{"operation":7}"#, .invalidField, "operation must be a string"),
            (#"{"operation":"drop_table"}"#, .unknownOperation, "unknown operation 'drop_table'"),
            (#"{"operation":"append_message"}"#, .missingField, "message is required"),
            (#"{"operation":"append_message","message":"hi"}"#, .invalidField, "message must be a JSON object"),
            (#"{"operation":"append_message","message":{"role":"user"}}"#, .missingField, "message.content is required"),
            (#"{"operation":"append_message","message":{"role":"user","content":5}}"#, .invalidField, "message.content must be a string"),
            (#"{"operation":"append_message","message":{"role":"bot","content":"x"}}"#, .invalidField, "message.role must be one of user, assistant, system"),
            (
                #"{"operation":"append_message","message":{"role":"user","content":"x","timestamp":-1}}"#, .invalidField,
                "message.timestamp must be a non-negative"
            ),
            (#"{"operation":"append_message","message":{"role":null,"content":"x"}}"#, .invalidField, "message.role must not be null"),
            (#"{"operation":"set_history","messages":{}}"#, .invalidField, "messages must be an array"),
            (#"{"operation":"set_history","messages":[{"role":"user","content":"a"},{"role":"user"}]}"#, .missingField, "messages[1].content is required"),
            (#"{"operation":"update_metadata","metadata":[1]}"#, .invalidField, "metadata must be a JSON object"),
        ])
    func malformed(body: String, code: ErrorCode, phrase: String) {
        let error = failure(body)
        #expect(error?.code == code, "\(body)")
        #expect(error?.message.contains(phrase) == true, "\(body): \(error?.message ?? "no error")")
        #expect(code.httpStatus == 400)
    }

    @Test("an operation encodes to the wire form it decodes from")
    func roundTrip() throws {
        let operations: [SessionOperation] = [
            .appendMessage(MessageInput(role: .user, content: "hi", timestamp: 3)),
            .setHistory([MessageInput(role: .assistant, content: "a")]),
            .updateMetadata(["a": 1, "b": ["c": "d"]]),
        ]
        for operation in operations {
            let data = try JSONEncoder().encode(operation)
            #expect(try SessionOperation.decodeUpdate(from: data).operation == operation)
        }
    }
}

@Suite("The host's write answer, written directly")
struct WriteAnswerTests {
    @Test("encodedJSON says what the generic encoder says, for every kind of answer")
    func sameAsTheEncoder() throws {
        let answers = [
            HostAPI.Write(data: .init(messageCount: 3, createdAt: 1_795_572_992.8560202, lastUpdated: 1_795_572_993.25)),
            HostAPI.Write(data: .init(messageCount: 0, createdAt: 0, lastUpdated: 1_700_000_000, cleared: true)),
            HostAPI.Write(data: .init(messageCount: 0, createdAt: 12.5, lastUpdated: 13, cleared: false)),
        ]
        for answer in answers {
            let direct = answer.encodedJSON()
            #expect(try JSONCoding.decoder.decode(HostAPI.Write.self, from: direct) == answer)
            let generic = try JSONCoding.encoder.encode(answer)
            #expect(try JSONSerialization.jsonObject(with: direct) as? NSDictionary == JSONSerialization.jsonObject(with: generic) as? NSDictionary)
        }
    }
}

@Suite("JSONValue's fast paths")
struct JSONValueFastPathTests {
    @Test("jsonText and parse agree with the generic encoder and decoder")
    func roundTrips() throws {
        let value: JSONValue = [
            "text": "quote \" backslash \\ newline \n tab \t bell \u{07} é 漢字 😀",
            "int": 42, "negative": -7, "big": .int(12_345_678_901_234), "double": 1.5,
            "bool": true, "false": false, "null": .null,
            "array": [1, "two", [3], ["four": 4]],
            "empty": [:], "list": [],
        ]
        let text = value.jsonText()
        #expect(try JSONCoding.decoder.decode(JSONValue.self, from: Data(text.utf8)) == value)
        #expect(JSONValue.parse(Data(text.utf8)) == value)
        #expect(JSONValue.parse(try JSONCoding.encoder.encode(value)) == value)
        #expect(JSONValue.parse(Data("not json".utf8)) == nil)
        // A whole double is written without a fraction, as the generic encoder does.
        #expect(JSONValue.double(2).jsonText() == "2")
    }

    @Test("a string written as bytes is the string written as text, escapes and all")
    func stringsAsBytes() {
        let samples = [
            "", "plain", "quote \" backslash \\ slash /", "newline \n return \r tab \t", "bell \u{07} nul \u{00} unit \u{1F}",
            "é 漢字 😀", String(repeating: "long run without escapes ", count: 200) + "\"",
        ]
        for sample in samples {
            var text = ""
            JSONValue.writeString(sample, to: &text)
            var bytes: [UInt8] = []
            JSONValue.writeString(sample, toBytes: &bytes)
            #expect(bytes == Array(text.utf8), "\(sample.prefix(40))")
            #expect(JSONValue.parse(Data(bytes)) == .string(sample))
        }
        let metadata: JSONObject = ["b": "two", "a": ["x": 1, "c": [true, nil]], "é": 1.5]
        #expect(JSONValue.parse(metadata.encodedJSON()) == .object(metadata))
        #expect(String(decoding: metadata.encodedJSON(), as: UTF8.self).hasPrefix(#"{"a":{"c":[true,null],"x":1},"b":"two""#))
    }
}

@Suite("History answers, written and read directly")
struct HistoryFastPathTests {
    @Test("encodedJSON and parse agree with the generic encoder and decoder")
    func sameAsTheCodableForms() throws {
        let history = HostAPI.History(
            data: [
                Message(role: .user, content: "What does \"main\" do?\nAnd \\ this?", timestamp: 1_795_572_992.8560202),
                Message(role: .assistant, content: "It starts the server. 漢字 😀", timestamp: 1_700_000_000),
                Message(role: .system, content: "", timestamp: 0.25),
            ],
            metadata: ["repository": "owner/repo", "turns": 2, "nested": ["a": [1, 2.5, nil]]])
        let direct = history.encodedJSON()
        #expect(try JSONCoding.decoder.decode(HostAPI.History.self, from: direct) == history)
        #expect(HostAPI.History.parse(try JSONCoding.encoder.encode(history)) == history)
        #expect(HostAPI.History.parse(direct) == history)
        let record = HostAPI.Record(data: SessionRecord(id: "s-1", messages: history.data, metadata: history.metadata, createdAt: 1.5, lastUpdated: 2))
        #expect(HostAPI.Record.parse(try JSONCoding.encoder.encode(record)) == record)
        #expect(HostAPI.History.parse(Data("{}".utf8)) == HostAPI.History(data: [], metadata: [:]))
        // The newest messages only (`last=N`), with how many there are in all.
        let tail = HostAPI.History(data: Array(history.data.suffix(1)), metadata: history.metadata, messageCount: 3)
        #expect(String(decoding: tail.encodedJSON(), as: UTF8.self).contains(#""message_count":3,"#))
        #expect(try JSONCoding.decoder.decode(HostAPI.History.self, from: tail.encodedJSON()) == tail)
        #expect(HostAPI.History.parse(tail.encodedJSON()) == tail)
        #expect(HostAPI.History.parse(direct)?.messageCount == nil)
        #expect(HostAPI.History.parse(Data(#"{"data":[{"role":"robot","content":"x","timestamp":1}]}"#.utf8)) == nil)
    }
}

@Suite("JSONParser")
struct JSONParserTests {
    @Test("reads what JSON allows, exactly, and refuses what it does not")
    func acceptsAndRefuses() {
        #expect(
            JSONValue.parse(Data(#" {"a" : [1, -2, 3.25e2, true, false, null, "x\u00e9\ud83d\ude00\n\"\/"]} "#.utf8))
                == ["a": [1, -2, 325.0, true, false, nil, "xé😀\n\"/"]])
        #expect(JSONValue.parse(Data("1795572992.8560202".utf8)) == .double(1_795_572_992.8560202))
        #expect(JSONValue.parse(Data("9223372036854775807".utf8)) == .int(Int64.max))
        #expect(JSONValue.parse(Data("1e400".utf8)) == nil)
        for bad in [
            "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"abc", "\"\\x\"", "\"\u{01}\"", "tru", "{} x", "[1 2]", "\"\\ud83d\"",
            String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
        ] {
            #expect(JSONValue.parse(Data(bad.utf8)) == nil, "\(bad.prefix(20))")
        }
    }
}

@Suite("Updates that say who a session belongs to and how long it lives")
struct SessionUpdateTests {
    private func update(_ text: String) throws(APIError) -> SessionUpdate {
        try SessionOperation.decodeUpdate(from: Data(text.utf8))
    }

    private func refusal(_ text: String) -> APIError? {
        do {
            _ = try update(text)
            return nil
        } catch {
            return error
        }
    }

    @Test("principal and expires_after ride beside the operation, and round-trip through the canonical JSON")
    func wireForm() throws {
        let decoded = try update(
            #"{"operation":"append_messages","messages":[{"role":"user","content":"q"}],"metadata":{"title":"q"},"principal":"alice","expires_after":60}"#)
        #expect(decoded.principal == "alice")
        #expect(decoded.expiresAfter == 60)
        #expect(decoded.operation == .appendMessages([MessageInput(role: .user, content: "q")], metadata: ["title": "q"]))
        #expect(try SessionOperation.decodeUpdate(from: decoded.canonicalJSON) == decoded)
        #expect(try update(#"{"operation":"update_metadata","metadata":{}}"#).principal == nil)
        let counters = try update(#"{"operation":"add_counters","counters":{"calls":2,"upstream_ms":1.5}}"#)
        #expect(counters.operation == .addCounters(["calls": 2, "upstream_ms": 1.5]))
        #expect(try SessionOperation.decodeUpdate(from: counters.canonicalJSON) == counters)
    }

    @Test("a bad principal, lifetime, counter or record is refused naming the field")
    func refusals() {
        #expect(refusal(#"{"operation":"update_metadata","metadata":{},"principal":""}"#)?.message.contains("principal must be") == true)
        #expect(refusal(#"{"operation":"update_metadata","metadata":{},"principal":"a b"}"#)?.code == .invalidField)
        #expect(refusal(#"{"operation":"update_metadata","metadata":{},"principal":7}"#)?.message == "principal must be a string")
        #expect(refusal(#"{"operation":"update_metadata","metadata":{},"expires_after":-1}"#)?.message.contains("expires_after must be") == true)
        #expect(refusal(#"{"operation":"update_metadata","metadata":{},"expires_after":1e12}"#)?.code == .invalidField)
        #expect(refusal(#"{"operation":"add_counters","counters":{"calls":"one"}}"#)?.message == "counters.calls must be a number")
        #expect(
            refusal(#"{"operation":"append_messages","messages":[{"role":"user","content":"q"}],"metadata":[]}"#)?.message == "metadata must be a JSON object")
        #expect(
            refusal(#"{"operation":"put_record","record":{"messages":[{"role":"user","content":"q"}],"created_at":1,"last_updated":2}}"#)?.message
                == "record.messages[0].timestamp is required")
        #expect(
            refusal(#"{"operation":"put_record","record":{"messages":[],"created_at":3,"last_updated":2}}"#)?.message
                == "record.created_at must not be after record.last_updated")
        #expect(refusal(#"{"operation":"put_record","record":{"messages":[]}}"#)?.message == "record.created_at is required")
    }
}

@Suite("Listings: the query, its cursor and its refusals")
struct SessionListingTests {
    @Test("a listing's query string reads back as the same listing, every part encoded")
    func roundTrip() throws {
        let listing = SessionListing(
            principal: "alice@example.com", prefix: "conv:alice:", before: HostAPI.ListCursor(lastUpdated: 1_700_000_000.25, id: "conv:alice:x~1"),
            limit: 20)
        let pairs = listing.query.split(separator: "&").map { $0.split(separator: "=", maxSplits: 1) }
        #expect(!listing.query.contains(":") && !listing.query.contains("~") && !listing.query.contains("@"))
        let values = Dictionary(uniqueKeysWithValues: pairs.map { (String($0[0]), String($0[1]).removingPercentEncoding!) })
        #expect(try SessionListing.parse { values[$0] } == listing)
    }

    @Test("cursors order a listing newest first, ties by id, and refuse what is not one")
    func cursors() {
        let newer = HostAPI.ListCursor(lastUpdated: 20, id: "a")
        let older = HostAPI.ListCursor(lastUpdated: 10, id: "z")
        #expect(newer < older)
        #expect(HostAPI.ListCursor(lastUpdated: 10, id: "b") < HostAPI.ListCursor(lastUpdated: 10, id: "a"))
        #expect(HostAPI.ListCursor(older.text) == older)
        #expect(HostAPI.ListCursor("yesterday") == nil)
        #expect(HostAPI.ListCursor("12~bad id") == nil)
    }

    @Test("each bad parameter is refused naming it")
    func refusals() {
        func refusal(_ values: [String: String]) -> String? {
            do {
                _ = try SessionListing.parse { values[$0] }
                return nil
            } catch {
                return error.message
            }
        }
        #expect(refusal(["limit": "0"]) == "limit must be 1 to 500")
        #expect(refusal(["limit": "501"]) == "limit must be 1 to 500")
        #expect(refusal(["principal": "a b"])?.hasPrefix("principal must be") == true)
        #expect(refusal(["prefix": "conv/x"])?.hasPrefix("prefix must be") == true)
        #expect(refusal(["before": "now"]) == "before must be the 'next' of an earlier page")
        #expect(refusal([:]) == nil)
    }
}
