import Foundation
import Testing

@testable import MCPWorker

/// Who a request comes from is decided in one place, from what it presents and what is configured.
@Suite("Authentication: the caller of a request")
struct AuthenticationTests {
    static let keys = try! APIKeys(parsing: ["alice:alice-key-0123456789", "bob:bob-key-0123456789ab"], origin: "test")
    static let admin = "admin-key-0123456789"

    @Test("a client key is its principal's, for the tools only; a wrong or missing key is nobody")
    func clientKeys() {
        #expect(Authentication.decide(presented: "alice-key-0123456789", keys: Self.keys, adminKey: Self.admin) == .client("alice"))
        #expect(Authentication.decide(presented: "bob-key-0123456789ab", keys: Self.keys, adminKey: nil)?.toolsPrincipal == "bob")
        #expect(Authentication.decide(presented: "alice-key-012345678", keys: Self.keys, adminKey: Self.admin) == nil)
        #expect(Authentication.decide(presented: nil, keys: Self.keys, adminKey: Self.admin) == nil)
        #expect(Caller.client("alice").mayActFor("alice") && !Caller.client("alice").mayActFor("bob"))
    }

    @Test("the admin key operates on anyone's data and has no MCP endpoint of its own")
    func adminKey() throws {
        let caller = try #require(Authentication.decide(presented: Self.admin, keys: Self.keys, adminKey: Self.admin))
        #expect(caller.mayOperate && caller.mayActFor("bob"))
        #expect(caller.toolsPrincipal == nil)
    }

    @Test("an open worker: everyone is local, and an operator unless an admin key says who is")
    func openWorker() throws {
        let open = try #require(Authentication.decide(presented: nil, keys: .none, adminKey: nil))
        #expect(open.toolsPrincipal == "local" && open.mayOperate)
        let guarded = try #require(Authentication.decide(presented: nil, keys: .none, adminKey: Self.admin))
        #expect(guarded.toolsPrincipal == "local" && !guarded.mayOperate)
        let operatorThere = try #require(Authentication.decide(presented: Self.admin, keys: .none, adminKey: Self.admin))
        #expect(operatorThere.toolsPrincipal == "local" && operatorThere.mayOperate)
    }

    @Test("a key arrives as a bearer token, or as a Basic password (a person at a browser's prompt)")
    func presented() {
        #expect(Authentication.presentedKey("Bearer k-0123456789abcdef") == "k-0123456789abcdef")
        #expect(Authentication.presentedKey("Basic " + "anyone:k-0123456789abcdef".data(using: .utf8)!.base64EncodedString()) == "k-0123456789abcdef")
        #expect(Authentication.presentedKey("Token k") == nil)
        #expect(Authentication.presentedKey(nil) == nil)
    }
}
