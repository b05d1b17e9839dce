import Foundation
import NIOCore
import SessionModel
import Testing

@testable import MCPWorker

@Suite("Reading an import: JSON Lines as they arrive, and what became of each")
struct ImportLinesTests {
    /// What a reader makes of `pieces`: each line as its number and text (or `!` for one too long).
    static func read(_ pieces: [String], limit: Int) -> [String] {
        var reader = JSONLines(limit: limit)
        var lines = pieces.flatMap { reader.feed(ByteBuffer(string: $0)) }
        if let last = reader.finish() { lines.append(last) }
        return lines.map { line in
            switch line {
            case .text(let number, let text): "\(number): \(String(decoding: text, as: UTF8.self))"
            case .tooLong(let number, _): "\(number): !"
            }
        }
    }

    @Test("lines split across buffers come out whole, numbered as an editor shows them; blank lines are skipped but counted; the last needs no newline")
    func splitting() {
        let lines = Self.read([#"{"a":1}"#, "\n\n", #"{"b""#, #":2}"# + "\r\n   \n", #"{"c":3}"#], limit: 100)
        #expect(lines == [#"1: {"a":1}"#, "3: " + #"{"b":2}"# + "\r", #"5: {"c":3}"#])
    }

    @Test("a line past the limit is reported by its own number, however it arrives, and the lines after it are still read")
    func bounded() {
        #expect(Self.read(["ok\n12345", "6789", "0\nnext\n"], limit: 8) == ["1: ok", "2: !", "3: next"])
        #expect(Self.read(["ok\n\n123456789"], limit: 8) == ["1: ok", "3: !"], "the last line, too long, without a newline")
        #expect(Self.read(["12345678\n"], limit: 8) == ["1: 12345678"], "exactly the limit is allowed")
    }

    @Test("the report counts each outcome and names each refused line by its number in the body and its id")
    func report() async {
        var report = ImportReport()
        let outcomes: [ImportReport.Outcome] = [.imported, .unchanged, .refused("conv:a:x", "differs"), .imported, .refused(nil, "not JSON")]
        // Line 3 of the body was blank.
        for (outcome, number) in zip(outcomes, [1, 2, 4, 5, 6]) {
            await report.add(.text(number: number, Data("{}".utf8))) { _ in outcome }
        }
        await report.add(.tooLong(number: 7, limit: 10)) { _ in .imported }
        #expect(report.imported == 2 && report.unchanged == 1)
        #expect(report.refused.map(\.line) == [4, 6, 7])
        #expect(
            report.json.jsonText()
                == #"{"imported":2,"refused":[{"id":"conv:a:x","line":4,"reason":"differs"},{"line":6,"reason":"not JSON"},{"line":7,"reason":"the line is longer than 10 bytes, the largest record a host takes; it was not read"}],"unchanged":1}"#
        )
    }

    @Test("conversation ids name their principal; anything else is no conversation")
    func conversationIDs() {
        #expect(Conversations.principal(ofStorageID: "conv:alice:thread:1") == "alice")
        #expect(Conversations.principal(ofStorageID: "mcp-0123") == nil)
        #expect(Conversations.principal(ofStorageID: "conv:alice") == nil)
        #expect(Conversations.principal(ofStorageID: "conv::x") == nil)
        #expect(Conversations.principal(ofStorageID: "conv:a b:x") == nil)
        #expect(Conversations.isConversation([:]) && Conversations.isConversation(["kind": "conversation"]))
        #expect(!Conversations.isConversation(["kind": "share"]))
        #expect(Conversations.title(of: "  How does routing work?\nIn detail please") == "How does routing work?")
        #expect(Conversations.title(of: String(repeating: "x", count: 300)).count == 120)
    }
}
