import Foundation
import Greptile
import SessionModel
import Testing

@Suite("Greptile request bodies, written directly")
struct UpstreamBodyTests {
    /// What the generic encoder writes, parsed: the direct text must mean exactly this.
    private func generic(_ body: some Encodable) throws -> JSONValue? {
        JSONValue.parse(try JSONCoding.encoder.encode(body))
    }

    @Test("query, search and index bodies say what the generic encoder says, byte for byte")
    func sameJSON() throws {
        let repositories = [
            RepositoryRef(remote: "github", repository: "acme/widgets", branch: "main"), RepositoryRef(remote: "gitlab", repository: "g/s/p", branch: "dev"),
        ]
        let bodies: [any UpstreamBody] = [
            QueryRequest(
                messages: [QueryMessage(content: "q \"quoted\"\n/path", role: "user"), QueryMessage(id: "7", content: "a", role: "assistant")],
                repositories: repositories, sessionId: "s-1", stream: true, genius: false),
            QueryRequest(messages: [QueryMessage(content: "é ✓", role: "user")], repositories: repositories, sessionId: nil, stream: false, genius: true),
            SearchRequest(query: "router", repositories: repositories, sessionId: nil),
            SearchRequest(query: "router", repositories: repositories, sessionId: "s", stream: true),
            IndexRequest(repository: repositories[0], reload: true, notify: false),
        ]
        for body in bodies {
            let direct = body.jsonValue.jsonText()
            #expect(String(decoding: try JSONCoding.encoder.encode(body), as: UTF8.self) == direct, "\(direct)")
            #expect(JSONValue.parse(Data(direct.utf8)) == (try generic(body)))
        }
    }
}
