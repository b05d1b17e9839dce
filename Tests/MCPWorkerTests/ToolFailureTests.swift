import Greptile
import SessionClient
import SessionModel
import Testing

@testable import MCPWorker

@Suite("ToolFailure: every failure of a tool call mapped once, to a sentence a person can act on")
struct ToolFailureTests {
    struct Defect: Error, CustomStringConvertible {
        var description: String { "Fatal: pointer 0x7ffd at Conversations.swift:88" }
    }

    @Test("each kind of error: its outcome label, its message, whether it is logged")
    func mapping() {
        let cases: [(any Error, outcome: String, message: String?, logged: Bool)] = [
            (ToolError("query must be a string"), "invalid_arguments", "query must be a string", false),
            (GreptileError(.notFound, "repository not found or not indexed: acme/x"), "upstream_error", "repository not found or not indexed: acme/x", true),
            (SessionError.rejected(APIError(.limitExceeded, "session holds 5000 messages; the limit is 5000")), "session_error", nil, false),
            (SessionError.unavailable("no durable host answered"), "session_error", nil, true),
            (SessionError.cancelled, "cancelled", nil, false),
            (CancellationError(), "cancelled", nil, false),
            (RPCError.invalidParams("Unknown tool: rm_rf"), "unknown_tool", nil, false),
            (Defect(), "internal_error", nil, true),
        ]
        for (error, outcome, message, logged) in cases {
            let failure = ToolFailure(error)
            #expect(failure.outcome == outcome, "\(error)")
            if let message { #expect(failure.message(tool: "query_repository") == message) }
            #expect((failure.logLevel != nil) == logged, "\(error)")
        }
    }

    @Test("a call refused before Greptile was asked, or cancelled, is no use of it; any other failure is")
    func usage() {
        let unused: [any Error] = [ToolError("query must be a string"), CancellationError(), RPCError.invalidParams("Unknown tool: x")]
        let used: [any Error] = [
            GreptileError(.notFound, "repository not found"), SessionError.unavailable("no host"),
            SessionError.rejected(APIError(.notShared, "not shared")), Defect(),
        ]
        for error in unused { #expect(!ToolFailure(error).countsAsUsage, "\(error)") }
        for error in used { #expect(ToolFailure(error).countsAsUsage, "\(error)") }
    }

    @Test("storage failures say what was kept and what to do; a defect's details stay in the log")
    func messages() throws {
        let refused = ToolFailure(SessionError.rejected(APIError(.limitExceeded, "the limit is 5000")))
        let text = try #require(refused.message(tool: "query_repository"))
        #expect(text.contains("the limit is 5000") && text.contains("neither the question nor the answer was stored"))
        #expect(text.contains("new conversation"))
        let down = try #require(ToolFailure(SessionError.unavailable("no durable host answered")).message(tool: "query_repository"))
        #expect(down.contains("no durable host answered") && down.contains("Try again"))

        let defect = try #require(ToolFailure(Defect()).message(tool: "search_repository"))
        #expect(defect.hasPrefix("search_repository failed"))
        #expect(!defect.contains("0x7ffd") && !defect.contains("Conversations.swift"), "internals never reach the client")
        #expect(ToolFailure(CancellationError()).message(tool: "x") == nil)
        #expect(ToolFailure(RPCError.invalidParams("Unknown tool")).message(tool: "x") == nil)
    }
}
