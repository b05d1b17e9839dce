import SessionClient
import SessionModel
import Testing

@Suite("Merging the hosts' pages of one listing")
struct SessionPageTests {
    private func summary(_ id: String, _ time: Double) -> HostAPI.SessionSummary {
        HostAPI.SessionSummary(id: id, principal: "a", metadata: [:], createdAt: 0, lastUpdated: time, messageCount: 1)
    }

    @Test("the newest of all the hosts' pages, newest first, and a next page when any host has more")
    func newestOfAll() {
        let one = HostAPI.Listing(data: [summary("a", 9), summary("b", 5), summary("c", 1)], next: nil)
        let two = HostAPI.Listing(data: [summary("d", 8), summary("e", 7)], next: "7~e")
        let page = SessionPage.merge([one, two], limit: 3)
        #expect(page.summaries.map(\.id) == ["a", "d", "e"])
        #expect(page.next == HostAPI.ListCursor(lastUpdated: 7, id: "e"))
        let last = SessionPage.merge([HostAPI.Listing(data: [summary("c", 1)], next: nil)], limit: 3)
        #expect(last.next == nil, "the last page says so")
        let exact = SessionPage.merge([one], limit: 3)
        #expect(exact.next == nil && exact.summaries.count == 3)
    }

    @Test("a session listed by two hosts (on its way between them) is kept once, as its newest state")
    func duplicates() {
        let page = SessionPage.merge(
            [HostAPI.Listing(data: [summary("x", 3)], next: nil), HostAPI.Listing(data: [summary("x", 4), summary("y", 2)], next: nil)], limit: 10)
        #expect(page.summaries.map(\.id) == ["x", "y"])
        #expect(page.summaries.first?.lastUpdated == 4)
    }
}
