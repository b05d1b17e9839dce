import SessionModel
import Testing

@testable import MCPWorker

/// Each tool is declared once: what `tools/list` advertises is what its calls are checked against.
@Suite("Tool declarations: one schema, advertised and enforced")
struct ToolDeclarationTests {
    static func refusal(_ tool: ToolDeclaration, _ arguments: JSONObject?) -> String? {
        do {
            _ = try tool.check(arguments)
            return nil
        } catch {
            return error.message
        }
    }

    static let repository: JSONValue = ["remote": "github", "repository": "octo/hello"]

    @Test("every required argument the listing names is refused when left out, and nothing else is required")
    func requiredMatchesListing() throws {
        for tool in ToolCatalog.all {
            let schema = try #require(tool.listing.objectValue?["inputSchema"]?.objectValue)
            let required = schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let properties = try #require(schema["properties"]?.objectValue)
            #expect(Set(required).isSubset(of: Set(properties.keys)), "\(tool.name)")
            for name in properties.keys {
                // Each required one is left out alone, the others given.
                var others: JSONObject = [:]
                for other in required where other != name { others[other] = Self.sample(other, properties[other]) }
                let refused = Self.refusal(tool, others)
                if required.contains(name) {
                    #expect(refused?.hasPrefix("\(name) is required") == true, "\(tool.name).\(name): \(refused ?? "accepted")")
                } else {
                    #expect(refused == nil, "\(tool.name).\(name) is optional but: \(refused ?? "")")
                }
            }
        }
    }

    /// A value the advertised schema accepts.
    static func sample(_ name: String, _ schema: JSONValue?) -> JSONValue {
        if name == "repository" { return "octo/hello" }
        switch schema?.objectValue?["type"]?.stringValue {
        case "array": return [repository]
        case "boolean": return true
        case "integer": return 5
        case "number": return 10
        default:
            if let first = schema?.objectValue?["enum"]?.arrayValue?.first { return first }
            return "octo-sample"
        }
    }

    @Test("a wrong type is refused naming the argument and what it must be")
    func wrongTypes() {
        let query = ToolCatalog.queryRepository
        #expect(Self.refusal(query, ["query": 3, "repositories": [Self.repository]]) == "query must be a string")
        #expect(Self.refusal(query, ["query": "q", "repositories": [Self.repository], "stream": "yes"]) == "stream must be true or false")
        #expect(Self.refusal(query, ["query": "q", "repositories": [Self.repository], "timeout": 0]) == "timeout must be between 0 and 600 seconds")
        #expect(Self.refusal(query, ["query": "q", "repositories": "octo/hello"]) == "repositories must be a non-empty list of {remote, repository, branch}")
        #expect(Self.refusal(ToolCatalog.listConversations, ["limit": 0]) == "limit must be from 1 to 100")
        #expect(Self.refusal(ToolCatalog.listConversations, ["limit": 2.5]) == "limit must be a whole number")
        #expect(
            Self.refusal(ToolCatalog.shareConversation, ["session_id": "s", "principal": "bob", "access": "write"])?.hasPrefix(
                "access must be read or continue") == true)
    }

    @Test("nested arguments are refused by their path: repositories[1].remote, previous_messages[0].role")
    func nestedPaths() {
        let query = ToolCatalog.queryRepository
        let bad: JSONValue = ["remote": "svn", "repository": "octo/hello"]
        #expect(
            Self.refusal(query, ["query": "q", "repositories": [Self.repository, bad]])?.hasPrefix("repositories[1].remote must be github or gitlab") == true)
        let traversal: JSONValue = ["repository": "../user"]
        #expect(Self.refusal(query, ["query": "q", "repositories": [traversal]])?.hasPrefix("repositories[0].repository owner must be") == true)
        let deep: JSONValue = ["repository": "a/b/c"]
        #expect(Self.refusal(query, ["query": "q", "repositories": [deep]]) == "repositories[0].repository must be 'owner/name' (got 'a/b/c')")
        let messages: JSONValue = [["role": "robot", "content": "x"]]
        #expect(
            Self.refusal(query, ["query": "q", "repositories": [Self.repository], "previous_messages": messages])?.hasPrefix(
                "previous_messages[0].role must be one of user, assistant, system") == true)
        let eleven = JSONValue.array(Array(repeating: Self.repository, count: 11))
        #expect(Self.refusal(query, ["query": "q", "repositories": eleven]) == "repositories names 11 repositories; one call may name at most 10")
        #expect(
            Self.refusal(query, ["query": "q", "repositories": [Self.repository], "session_id": "a b"]) == "session_id must be 1 to 64 of \(SessionID.alphabet)"
        )
        #expect(Self.refusal(ToolCatalog.repositoryInfo, ["repository": "octo/hello", "branch": "a..b"]) == "branch 'a..b' is not a valid git branch name")
    }

    @Test("what clients are known to send is read leniently and normalised: null and blank are absent, 'true' is true, 3.0 is 3, defaults are filled")
    func normalised() throws {
        let input = try ToolCatalog.queryRepository.check([
            "query": "q", "repositories": [["repository": "octo/hello", "remote": "GitHub"]], "stream": "true", "genius": .null, "session_id": "  ",
        ])
        #expect(input.flag("stream"))
        #expect(input.flag("genius"), "genius defaults to true")
        #expect(input.optionalString("session_id") == nil)
        #expect(input.repositories("repositories") == [RepositoryInput(["remote": "github", "repository": "octo/hello"])])
        let list = try ToolCatalog.listConversations.check(["limit": 3.0])
        #expect(list.whole("limit") == 3)
        #expect(try ToolCatalog.listConversations.check(nil).whole("limit") == 20)
        #expect(try ToolCatalog.shareConversation.check(["session_id": "s", "principal": "bob"]).string("access") == "read")
    }

    @Test("the listing is the declaration: names, required arguments and enums as checked")
    func listing() throws {
        #expect(
            ToolCatalog.names == [
                "index_repository", "query_repository", "search_repository", "get_repository_info", "list_conversations", "share_conversation",
                "unshare_conversation",
            ])
        let share = try #require(ToolCatalog.shareConversation.listing.objectValue)
        #expect(share["inputSchema"]?.objectValue?["properties"]?.objectValue?["access"]?.objectValue?["enum"] == ["read", "continue"])
        #expect(share["annotations"]?.objectValue?["destructiveHint"] == false)
        let repositories = ToolCatalog.queryRepository.listing.objectValue?["inputSchema"]?.objectValue?["properties"]?.objectValue?["repositories"]
        #expect(repositories?.objectValue?["maxItems"] == .int(Int64(ToolCatalog.maxRepositories)))
    }
}
