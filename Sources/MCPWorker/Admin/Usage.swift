import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SessionClient
import SessionModel
import Synchronization

/// What a principal used on one day (UTC): the counters of its usage record.
struct UsageCounters: Sendable, Hashable {
    /// Calls of Greptile's tools (index, query, search, repository info).
    var calls = 0.0
    /// Of those, the ones that failed.
    var failures = 0.0
    /// Milliseconds those calls took.
    var upstreamMilliseconds = 0.0
    /// Conversation turns stored.
    var turns = 0.0
    /// Conversations started.
    var conversations = 0.0

    static let keys = ["calls", "failures", "upstream_ms", "turns", "conversations"]

    var isEmpty: Bool { self == UsageCounters() }

    var values: [String: Double] {
        ["calls": calls, "failures": failures, "upstream_ms": upstreamMilliseconds, "turns": turns, "conversations": conversations]
            .filter { $0.value != 0 }
    }

    init() {}

    /// The counters a usage record's metadata holds.
    init(metadata: JSONObject) {
        calls = metadata["calls"]?.numberValue ?? 0
        failures = metadata["failures"]?.numberValue ?? 0
        upstreamMilliseconds = metadata["upstream_ms"]?.numberValue ?? 0
        turns = metadata["turns"]?.numberValue ?? 0
        conversations = metadata["conversations"]?.numberValue ?? 0
    }

    static func + (lhs: UsageCounters, rhs: UsageCounters) -> UsageCounters {
        var sum = lhs
        sum.calls += rhs.calls
        sum.failures += rhs.failures
        sum.upstreamMilliseconds += rhs.upstreamMilliseconds
        sum.turns += rhs.turns
        sum.conversations += rhs.conversations
        return sum
    }
}

/// Usage counted per principal and day as tool calls end, and written to the durable hosts
/// a second later by `UsageRecorder`: each principal's day is the host record
/// `usage:<principal>:<YYYY-MM-DD>`, its counters added with `add_counters` (one write per
/// principal and day and second, however many calls; idempotent when retried). The hosts
/// keep the counts of every worker, so a report is the same whichever worker makes it.
final class UsageLedger: Sendable {
    struct Key: Hashable, Sendable {
        let principal: String
        let day: String
    }

    /// What was counted, and when the oldest of it was (what a host checks against erasures).
    struct Pending: Sendable {
        var counters = UsageCounters()
        var since: Double
    }

    private let pending = Mutex<[Key: Pending]>([:])
    private let now: @Sendable () -> Double

    /// `now`: seconds since the epoch (the worker's wall clock).
    init(now: @escaping @Sendable () -> Double) {
        self.now = now
    }

    static func recordID(principal: String, day: String) -> String { StorageKeys.usage(principal: principal, day: day) }
    static func prefix(principal: String?) -> String { StorageKeys.usage(of: principal) }

    /// The day (UTC) of a time, as `YYYY-MM-DD`.
    static func day(of time: Double) -> String {
        let days = Int((time / 86_400).rounded(.down))
        return ISO8601Days.format(days)
    }

    /// A Greptile tool call ended.
    func recordCall(principal: String, failed: Bool, milliseconds: Double) {
        add(principal) { counters in
            counters.calls += 1
            counters.failures += failed ? 1 : 0
            counters.upstreamMilliseconds += milliseconds
        }
        Metrics.Counter(label: "worker_principal_calls_total", dimensions: [("principal", principal), ("outcome", failed ? "failed" : "ok")])
            .increment()
        Metrics.Counter(label: "worker_principal_upstream_milliseconds_total", dimensions: [("principal", principal)])
            .increment(by: Int64(milliseconds.rounded()))
    }

    /// A conversation turn was stored; `started` when it was the conversation's first.
    func recordTurn(principal: String, started: Bool) {
        add(principal) { counters in
            counters.turns += 1
            counters.conversations += started ? 1 : 0
        }
    }

    private func add(_ principal: String, _ change: (inout UsageCounters) -> Void) {
        let time = now()
        let key = Key(principal: principal, day: Self.day(of: time))
        pending.withLock { pending in change(&pending[key, default: Pending(since: time)].counters) }
    }

    /// What was counted since the last call, emptied.
    func take() -> [Key: Pending] {
        pending.withLock { pending in
            defer { pending = [:] }
            return pending
        }
    }

    /// Counts that could not be written, back for the next round.
    func putBack(_ counts: [Key: Pending]) {
        pending.withLock { pending in
            for (key, entry) in counts {
                let held = pending[key]
                pending[key] = Pending(counters: (held?.counters ?? UsageCounters()) + entry.counters, since: min(held?.since ?? entry.since, entry.since))
            }
        }
    }

    /// Drops what was counted for `principal`: its data is being deleted.
    func forget(principal: String) {
        pending.withLock { pending in pending = pending.filter { $0.key.principal != principal } }
    }
}

/// Writes the ledger to the hosts every `interval`, and once more when the worker stops.
struct UsageRecorder: Service {
    let ledger: UsageLedger
    let store: any SessionManager
    var interval: Duration = .seconds(1)
    /// How long a day's usage is kept: a little over a year.
    static let retention: Double = 400 * 86_400
    let logger: Logger
    /// One flush at a time: a report that flushes first must find the hosts holding every
    /// count taken before it, including those another flush is still writing.
    private let turn = FlushTurn()

    init(ledger: UsageLedger, store: any SessionManager, interval: Duration = .seconds(1), logger: Logger) {
        self.ledger = ledger
        self.store = store
        self.interval = interval
        self.logger = logger
    }

    func run() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            await flush()
        }
    }

    /// Writes what was counted, once every flush begun before has ended; what the hosts
    /// refuse is dropped (and logged), what cannot reach them waits in the session store's
    /// own journal.
    func flush() async {
        await turn.run { await write() }
    }

    /// Drops this worker's counts of `principal`, after any flush under way has written what
    /// it took: from then on nothing counted before the erasure is written by this worker.
    /// (Other workers' counts are refused by the hosts: each write says when it was counted.)
    func forget(principal: String) async {
        await turn.run { ledger.forget(principal: principal) }
    }

    private func write() async {
        let counts = ledger.take()
        for (key, entry) in counts where !entry.counters.isEmpty {
            do {
                try await store.write(
                    UsageLedger.recordID(principal: key.principal, day: key.day),
                    SessionUpdate(.addCounters(entry.counters.values), principal: key.principal, expiresAfter: Self.retention, asOf: entry.since))
            } catch  where error.isCancelled {
                ledger.putBack([key: entry])
            } catch  where error.apiError?.code == .principalErased {
                logger.info("usage counted before the principal's data was deleted was dropped", metadata: ["principal": "\(key.principal)"])
            } catch {
                logger.warning("usage could not be recorded", metadata: ["principal": "\(key.principal)", "error": "\(error.message)"])
            }
        }
    }
}

/// Days since the epoch as `YYYY-MM-DD` (UTC), and back; no calendar or formatter per call.
enum ISO8601Days {
    static func format(_ days: Int) -> String {
        // Howard Hinnant's civil-from-days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return String(format: "%04d-%02d-%02d", year, month, day)
    }

    static func days(_ text: String) -> Int? {
        let parts = text.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 3, (1...12).contains(parts[1]), (1...31).contains(parts[2]) else { return nil }
        let (year, month, day) = (parts[0] - (parts[1] <= 2 ? 1 : 0), parts[1], parts[2])
        let era = (year >= 0 ? year : year - 399) / 400
        let yoe = year - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

/// Runs bodies one after another, in the order they arrive.
actor FlushTurn {
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func run(_ body: @Sendable () async -> Void) async {
        if busy {
            await withCheckedContinuation { waiting.append($0) }
        }
        busy = true
        await body()
        if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
    }
}
