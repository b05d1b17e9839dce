import Foundation
import SessionModel
import Testing

@testable import MCPWorker

@Suite("Usage: days, the report, the page, the ledger")
struct UsageReportTests {
    @Test("days since the epoch print as UTC dates and read back, leap days included")
    func days() {
        #expect(ISO8601Days.format(0) == "1970-01-01")
        #expect(ISO8601Days.format(19_782) == "2024-02-29")
        #expect(UsageLedger.day(of: 1_796_083_199) == "2026-11-30" && UsageLedger.day(of: 1_796_083_200) == "2026-12-01")
        for day in stride(from: -800, to: 40_000, by: 37) { #expect(ISO8601Days.days(ISO8601Days.format(day)) == day) }
        #expect(ISO8601Days.days("2026-13-01") == nil && ISO8601Days.days("soon") == nil)
    }

    @Test("the report keeps its window's days of usage records only, and sums them per principal")
    func report() {
        var report = UsageReport(days: 7, now: 1_796_083_200 + 3_600)
        #expect(report.from == "2026-11-25" && report.to == "2026-12-01" && report.days.count == 7)
        report.add(recordID: "usage:alice:2026-12-01", metadata: ["calls": 3, "failures": 1, "upstream_ms": 1_500, "turns": 2, "conversations": 1])
        report.add(recordID: "usage:alice:2026-11-30", metadata: ["calls": 2])
        report.add(recordID: "usage:alice:2026-11-01", metadata: ["calls": 100])
        report.add(recordID: "usage:<bob>:2026-12-01", metadata: ["calls": 1])
        report.add(recordID: "conv:alice:x", metadata: ["calls": 9])
        #expect(report.totals(of: "alice").calls == 5 && report.totals(of: "alice").upstreamMilliseconds == 1_500)
        #expect(report.principals == ["<bob>", "alice"])
        let alice = (report.json.objectValue?["principals"]?.arrayValue ?? []).first { $0.objectValue?["principal"] == "alice" }
        #expect(alice?.objectValue?["totals"] == ["calls": 5, "failures": 1, "turns": 2, "conversations": 1, "upstream_seconds": 1.5])
        #expect(alice?.objectValue?["days"]?.arrayValue?.count == 2)
        let html = report.html
        #expect(html.contains(#"<tr data-principal="alice"><td>alice</td><td class="calls">5</td>"#))
        #expect(html.contains("&lt;bob&gt;") && !html.contains("<bob>"), "names are escaped")
        #expect(html.contains(#"data-day="2026-12-01" data-calls="3""#))
        #expect(!html.contains("http"), "the page loads nothing from anywhere")
    }

    @Test("the ledger counts per principal and day, and gives back what could not be written")
    func ledger() {
        let clock = Mutexed(1_796_083_200.0)
        let ledger = UsageLedger(now: { clock.get() })
        ledger.recordCall(principal: "alice", failed: false, milliseconds: 10)
        ledger.recordCall(principal: "alice", failed: true, milliseconds: 5)
        ledger.recordTurn(principal: "alice", started: true)
        clock.set(1_796_083_200 + 86_400)
        ledger.recordCall(principal: "alice", failed: false, milliseconds: 1)
        let taken = ledger.take()
        #expect(taken.count == 2)
        let first = taken[UsageLedger.Key(principal: "alice", day: "2026-12-01")]?.counters
        #expect(first?.calls == 2 && first?.failures == 1 && first?.upstreamMilliseconds == 15 && first?.turns == 1 && first?.conversations == 1)
        #expect(taken[UsageLedger.Key(principal: "alice", day: "2026-12-01")]?.since == 1_796_083_200, "when its oldest count was taken")
        #expect(ledger.take().isEmpty)
        ledger.putBack(taken)
        clock.set(1_796_083_200 + 86_500)
        ledger.recordCall(principal: "alice", failed: false, milliseconds: 1)
        let again = ledger.take()[UsageLedger.Key(principal: "alice", day: "2026-12-02")]
        #expect(again?.counters.calls == 2)
        #expect(again?.since == Double(1_796_083_200 + 86_400), "counts given back keep the time of their oldest")
    }

    @Test("a principal's counts are dropped when its data is deleted, and no one else's")
    func ledgerForgets() {
        let ledger = UsageLedger(now: { 1_796_083_200 })
        ledger.recordCall(principal: "alice", failed: false, milliseconds: 10)
        ledger.recordCall(principal: "bob", failed: false, milliseconds: 10)
        ledger.forget(principal: "alice")
        #expect(ledger.take().keys.map(\.principal) == ["bob"])
    }
}

/// A value behind a lock, for the tests' clocks.
final class Mutexed<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.withLock { value } }
    func set(_ newValue: Value) { lock.withLock { value = newValue } }
}
