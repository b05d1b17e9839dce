import Foundation
import NIOCore
import SessionModel
import Testing

@testable import MCPWorker

@Suite("Reading an import: JSON Lines as they arrive, and what became of each")
struct ImportLinesTests {
    @Test("lines split across buffers come out whole; blank lines are skipped but counted; the last needs no newline")
    func splitting() throws {
        var reader = JSONLines(limit: 100)
        var lines: [String] = []
        for piece in [#"{"a":1}"#, "\n\n", #"{"b""#, #":2}"# + "\r\n   \n", #"{"c":3}"#] {
            lines += try reader.feed(ByteBuffer(string: piece)).map { String(decoding: $0, as: UTF8.self) }
        }
        if let last = try reader.finish() { lines.append(String(decoding: last, as: UTF8.self)) }
        #expect(lines == [#"{"a":1}"#, #"{"b":2}"# + "\r", #"{"c":3}"#])
        #expect(reader.number == 5, "line numbers count blank lines, as an editor shows them")
    }

    @Test("a line past the limit is refused, however it arrives")
    func bounded() {
        var reader = JSONLines(limit: 8)
        #expect(throws: JSONLines.TooLong.self) {
            _ = try reader.feed(ByteBuffer(string: "12345"))
            _ = try reader.feed(ByteBuffer(string: "6789"))
        }
    }

    @Test("the report counts each outcome and names each refused line by number and id")
    func report() async {
        var report = ImportReport()
        let outcomes: [ImportReport.Outcome] = [.imported, .unchanged, .refused("conv:a:x", "differs"), .imported, .refused(nil, "not JSON")]
        for outcome in outcomes { await report.add(Data("{}".utf8)) { _ in outcome } }
        #expect(report.imported == 2 && report.unchanged == 1)
        #expect(report.refused.map(\.line) == [3, 5])
        #expect(
            report.json.jsonText()
                == #"{"imported":2,"refused":[{"id":"conv:a:x","line":3,"reason":"differs"},{"line":5,"reason":"not JSON"}],"unchanged":1}"#)
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
