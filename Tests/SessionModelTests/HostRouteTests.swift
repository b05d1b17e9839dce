import Foundation
import SessionModel
import Testing

@Suite("Host API routes: one value builds a request's path and matches it")
struct HostRouteTests {
    static let routes: [(HostAPI.Route, HostAPI.Route.Template, String?)] = [
        (.health, .health, nil), (.metrics, .metrics, nil), (.ring, .ring, nil),
        (.record("conv:alice:t-1"), .record, "conv:alice:t-1"), (.history("mcp-ab~events", last: 20), .history, "mcp-ab~events"),
        (.history("s", last: nil), .history, "s"), (.update("s"), .update, "s"), (.clear("s"), .clear, "s"),
        (.list(SessionListing(prefix: "conv:alice:", limit: 50)), .list, nil), (.principal("alice@example.com"), .principal, "alice@example.com"),
        (.handoff("s"), .handoff, "s"), (.adopt("s"), .adopt, "s"), (.heldFor(owner: "host-1"), .heldList, nil),
        (.heldNotice, .heldItem, "notify"), (.heldDone("s", through: 7), .heldItem, "s"), (.heldSeed("s"), .heldSeed, "s"),
        (.heldHandback("s"), .heldHandback, "s"),
    ]

    @Test("every route's target matches back to its template and id, and its method is one the host takes there")
    func roundTrip() {
        for (route, template, id) in Self.routes {
            let path = String(route.target.split(separator: "?", maxSplits: 1).first ?? "")
            let (matched, raw) = HostAPI.Route.match(path)
            #expect(matched == template, "\(route.target)")
            #expect(raw.map(String.init)?.removingPercentEncoding == id, "\(route.target)")
            #expect(template.methods.contains(route.method), "\(route.method) \(template.rawValue)")
        }
        #expect(Set(Self.routes.map(\.1)) == Set(HostAPI.Route.Template.allCases).subtracting([.unknown]), "every template is reached by a route")
    }

    @Test("queries and caller-given parts are encoded: a window, a cursor, a principal or owner outside the id alphabet")
    func encoding() {
        #expect(HostAPI.Route.history("conv:alice:t", last: 20).target == "/sessions/conv:alice:t/history?last=20")
        #expect(HostAPI.Route.heldDone("s", through: 12).target == "/hints/s?through=12")
        #expect(HostAPI.Route.principal("alice@example.com").target == "/principals/alice@example.com", "@ is a path's own")
        #expect(HostAPI.Route.principal("alice smith/x").target == "/principals/alice%20smith%2Fx")
        #expect(
            HostAPI.Route.list(SessionListing(prefix: "conv:a+b@c:", limit: 1)).target.contains("prefix=conv%3Aa%2Bb%40c%3A"),
            "+ is a space in a query: encoded")
        #expect(HostAPI.Route.heldFor(owner: "host 1&x").target == "/hints?owner=host%201%26x")
        #expect(HostAPI.Route.list(SessionListing(principal: "alice", limit: 2)).target == "/sessions?limit=2&principal=alice")
    }

    @Test("paths that are no route are unknown")
    func unknown() {
        for path in ["", "health", "/", "/sessions/a/b/c", "/sessions/a/peek", "/handoff/a/b", "/hints/a/b", "/nothing"] {
            #expect(HostAPI.Route.match(path).0 == .unknown, "\(path)")
        }
    }
}
