import Foundation
import SessionModel

/// Usage over a window of days, per principal: what `/admin/usage` answers as JSON, and as a
/// page a person reads (a table and a chart of calls per day, no external assets). Pure: made
/// from the usage records the hosts list, rendered without I/O.
struct UsageReport: Sendable, Hashable {
    /// First and last day of the window, `YYYY-MM-DD`, inclusive.
    let from: String
    let to: String
    /// Per principal, per day: only days with some use.
    var usage: [String: [String: UsageCounters]] = [:]

    /// The last `days` days up to the day of `now`.
    init(days: Int, now: Double) {
        let today = Int((now / 86_400).rounded(.down))
        from = ISO8601Days.format(today - days + 1)
        to = ISO8601Days.format(today)
    }

    var days: [String] {
        guard let first = ISO8601Days.days(from), let last = ISO8601Days.days(to), first <= last else { return [] }
        return (first...last).map(ISO8601Days.format)
    }

    /// Adds a usage record (`usage:<principal>:<day>`) if its day is in the window.
    mutating func add(recordID id: String, metadata: JSONObject) {
        let parts = id.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "usage" else { return }
        let (principal, day) = (String(parts[1]), String(parts[2]))
        guard day >= from, day <= to else { return }
        usage[principal, default: [:]][day] = (usage[principal]?[day] ?? UsageCounters()) + UsageCounters(metadata: metadata)
    }

    func totals(of principal: String) -> UsageCounters {
        (usage[principal] ?? [:]).values.reduce(UsageCounters(), +)
    }

    var principals: [String] { usage.keys.sorted() }

    // MARK: JSON

    var json: JSONValue {
        .object([
            "from": .string(from), "to": .string(to),
            "principals": .array(
                principals.map { principal in
                    .object([
                        "principal": .string(principal), "totals": Self.json(totals(of: principal)),
                        "days": .array(
                            (usage[principal] ?? [:]).sorted { $0.key < $1.key }.map { day, counters in
                                guard case .object(var object) = Self.json(counters) else { return .null }
                                object["day"] = .string(day)
                                return .object(object)
                            }),
                    ])
                }),
        ])
    }

    static func json(_ counters: UsageCounters) -> JSONValue {
        .object([
            "calls": .int(Int64(counters.calls)), "failures": .int(Int64(counters.failures)), "turns": .int(Int64(counters.turns)),
            "conversations": .int(Int64(counters.conversations)), "upstream_seconds": .double((counters.upstreamMilliseconds / 10).rounded() / 100),
        ])
    }

    // MARK: HTML

    /// The page: one table of totals, then per principal a chart of calls per day.
    var html: String {
        var page = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>greptile-mcp usage</title>
            <style>
            body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1a202c;background:#fff}
            h1{font-size:1.4rem;margin:0 0 .2rem}p.window{color:#4a5568;margin:0 0 1.4rem}
            table{border-collapse:collapse;margin-bottom:2rem}th,td{padding:.35rem .8rem;border-bottom:1px solid #e2e8f0;text-align:right}
            th:first-child,td:first-child{text-align:left}th{background:#f7fafc;font-weight:600}
            h2{font-size:1.05rem;margin:1.2rem 0 .3rem}svg text{font-size:10px;fill:#4a5568}
            </style></head><body>
            <h1>Usage</h1><p class="window">\(from) to \(to), UTC</p>
            <table id="totals"><thead><tr><th>Principal</th><th>Calls</th><th>Failures</th><th>Turns</th><th>Conversations</th><th>Upstream time (s)</th></tr></thead><tbody>

            """
        for principal in principals {
            let totals = totals(of: principal)
            page += "<tr data-principal=\"\(Self.escape(principal))\"><td>\(Self.escape(principal))</td>"
            page += "<td class=\"calls\">\(Int(totals.calls))</td><td class=\"failures\">\(Int(totals.failures))</td>"
            page += "<td class=\"turns\">\(Int(totals.turns))</td><td class=\"conversations\">\(Int(totals.conversations))</td>"
            page += "<td class=\"upstream\">\(String(format: "%.2f", totals.upstreamMilliseconds / 1000))</td></tr>\n"
        }
        if principals.isEmpty { page += "<tr><td colspan=\"6\">No use in this window.</td></tr>\n" }
        page += "</tbody></table>\n"
        for principal in principals { page += chart(of: principal) }
        page += "</body></html>\n"
        return page
    }

    /// Calls per day as bars, the day's count above each, every seventh day named below.
    private func chart(of principal: String) -> String {
        let days = days
        let counts = days.map { usage[principal]?[$0]?.calls ?? 0 }
        let highest = max(counts.max() ?? 0, 1)
        let (barWidth, gap, height) = (14.0, 4.0, 120.0)
        let width = Double(days.count) * (barWidth + gap) + 40
        var svg = "<h2>Calls per day: \(Self.escape(principal))</h2>\n"
        svg += "<svg class=\"chart\" data-principal=\"\(Self.escape(principal))\" width=\"\(Int(width))\" height=\"\(Int(height + 40))\" "
        svg += "viewBox=\"0 0 \(Int(width)) \(Int(height + 40))\" role=\"img\" aria-label=\"calls per day of \(Self.escape(principal))\">\n"
        for (index, day) in days.enumerated() {
            let count = counts[index]
            let barHeight = count == 0 ? 0 : max(2, count / highest * height)
            let x = 20 + Double(index) * (barWidth + gap)
            svg += "<rect data-day=\"\(day)\" data-calls=\"\(Int(count))\" x=\"\(x)\" y=\"\(15 + height - barHeight)\" "
            svg += "width=\"\(barWidth)\" height=\"\(barHeight)\" fill=\"#2b6cb0\"><title>\(day): \(Int(count)) calls</title></rect>\n"
            if count > 0 { svg += "<text x=\"\(x + barWidth / 2)\" y=\"\(12 + height - barHeight)\" text-anchor=\"middle\">\(Int(count))</text>\n" }
            // Every seventh day named, counting back from the last (today's), so labels never collide.
            if (days.count - 1 - index) % 7 == 0 {
                svg += "<text x=\"\(x + barWidth / 2)\" y=\"\(height + 32)\" text-anchor=\"middle\">\(day.dropFirst(5))</text>\n"
            }
        }
        return svg + "</svg>\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
