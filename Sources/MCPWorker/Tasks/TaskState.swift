import Foundation
import SessionModel

/// The two families of MCP tasks, which differ in how a task is asked for and how it is written:
/// - `experimental`: the tasks of revision 2025-11-25 (`params.task` on `tools/call`;
///   `tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel`; `ttl`, `pollInterval`; a tool
///   result with `isError` ends the task `failed`);
/// - `tasksExtension`: the tasks extension of 2026-07-28 (`io.modelcontextprotocol/tasks`,
///   opted into per request; `tasks/get` with the outcome inlined, `tasks/update`,
///   `tasks/cancel`; `ttlMs`, `pollIntervalMs`; a tool result of any kind ends it `completed`).
enum TaskFamily: String, Sendable, Hashable {
    case experimental = "2025-11-25"
    case tasksExtension = "io.modelcontextprotocol/tasks"
}

/// Where a task stands, as its record holds it: the pure transitions of the task's life, the
/// clock an input. The record is written only by compare and set (`SessionUpdate.expect` on
/// `status` and `attempt`), so of two workers deciding at once, one wins.
///
/// A task is run by one worker at a time, its runner, under a lease (`leaseUntil`) it renews
/// while it runs; each runner is an `attempt`, and a write by a runner expects its attempt,
/// so a runner that lost its lease (paused, partitioned) can change nothing. When the lease
/// lapses, whoever looks at the task next takes it over as the next attempt. A runner's
/// outcome is stored first (`answeredBy`), before anything it causes elsewhere (a
/// conversation's turn), so a later attempt finishes that outcome instead of asking again.
struct TaskState: Sendable, Hashable {
    enum Status: String, Sendable, Hashable {
        case working, completed, failed, cancelled

        /// Completed, failed and cancelled are final: a task never leaves them.
        var isTerminal: Bool { self != .working }
    }

    var status: Status
    /// What a person reads of the task now ("Greptile is writing the answer", "412 of 980 files").
    var statusMessage: String?
    /// When the status (or its message) last changed: the task's `lastUpdatedAt`.
    var changedAt: Double
    /// The runner: 1 for the worker that created the task, one more for each takeover.
    var attempt: Int
    /// Until when the runner holds the task (seconds since the epoch); 0: released.
    var leaseUntil: Double
    /// The attempt whose outcome is stored, once one is.
    var answeredBy: Int?

    /// A task just created, run by its creator.
    static func created(now: Double, lease: Double, message: String) -> TaskState {
        TaskState(status: .working, statusMessage: message, changedAt: now, attempt: 1, leaseUntil: now + lease, answeredBy: nil)
    }

    // MARK: Decisions

    /// What whoever looks at a task should do about its runner.
    enum Step: Sendable, Equatable {
        /// Nothing: it is final, or its runner holds it.
        case none
        /// Take it over as `attempt`: the lease lapsed. With an outcome stored, finish it;
        /// without, run the call again.
        case takeOver(attempt: Int)
        /// Its runners were lost too often: end it (failed; completed with its stored answer
        /// when there is one, whose turn could not be written).
        case giveUp
    }

    /// `runningHere`: the looking worker runs this very attempt itself. Its lease lapsed only
    /// because renewals came late (a loaded machine): the runner goes on, renewing or seeing
    /// that it cannot, and nothing is asked twice.
    func step(now: Double, maxAttempts: Int, runningHere: Bool = false) -> Step {
        guard status == .working, leaseUntil <= now, !runningHere else { return .none }
        // A stored answer gets as many runners again to write its turn: nothing is asked again.
        if attempt >= (answeredBy == nil ? maxAttempts : 2 * maxAttempts) { return .giveUp }
        return .takeOver(attempt: attempt + 1)
    }

    /// The task as the attempt that takes it over holds it.
    func claimed(by next: Int, now: Double, lease: Double) -> TaskState {
        var state = self
        state.attempt = next
        state.leaseUntil = now + lease
        return state
    }

    /// The lease extended by its runner.
    func renewed(now: Double, lease: Double) -> TaskState {
        var state = self
        state.leaseUntil = now + lease
        return state
    }

    /// The lease given back by a runner that stops without an outcome (its worker shuts
    /// down): the next look takes the task over at once.
    func released() -> TaskState {
        var state = self
        state.leaseUntil = 0
        return state
    }

    /// The runner's outcome stored, the task still working until what it causes is done.
    func answered() -> TaskState {
        var state = self
        state.answeredBy = attempt
        return state
    }

    /// A new message for a person, the task still working.
    func saying(_ message: String, now: Double) -> TaskState {
        var state = self
        state.statusMessage = message
        state.changedAt = now
        return state
    }

    /// The task ended: completed, failed or cancelled, with what a person reads of it.
    func ended(_ status: Status, message: String?, now: Double) -> TaskState {
        var state = self
        state.status = status
        state.statusMessage = message
        state.changedAt = now
        state.leaseUntil = 0
        return state
    }

    // MARK: The record's metadata

    /// What a write by the runner of this attempt expects to find: the task still working and
    /// still this attempt's.
    var runnerExpects: JSONObject {
        ["status": .string(Status.working.rawValue), "attempt": .int(Int64(attempt))]
    }

    /// What a write that ends a task expects: still working, whoever runs it.
    static let workingExpected: JSONObject = ["status": .string(Status.working.rawValue)]

    /// The fields of this state that differ from `old`: what a write changes, so that two
    /// writes of one runner (a renewal beside an outcome) never undo each other.
    func patch(from old: TaskState) -> JSONObject {
        let before = old.fields
        return fields.filter { before[$0.key] != $0.value }
    }

    var fields: JSONObject {
        [
            "status": .string(status.rawValue), "status_message": statusMessage.map(JSONValue.string) ?? .null,
            "changed_at": .double(changedAt), "attempt": .int(Int64(attempt)), "lease_until": .double(leaseUntil),
            "answered_by": answeredBy.map { .int(Int64($0)) } ?? .null,
        ]
    }

    init(status: Status, statusMessage: String?, changedAt: Double, attempt: Int, leaseUntil: Double, answeredBy: Int?) {
        self.status = status
        self.statusMessage = statusMessage
        self.changedAt = changedAt
        self.attempt = attempt
        self.leaseUntil = leaseUntil
        self.answeredBy = answeredBy
    }

    /// From a task record's metadata; nil when it holds no task.
    init?(_ metadata: JSONObject) {
        guard let raw = metadata["status"]?.stringValue, let status = Status(rawValue: raw),
            let attempt = metadata["attempt"]?.numberValue, let changedAt = metadata["changed_at"]?.numberValue
        else { return nil }
        self.status = status
        statusMessage = metadata["status_message"]?.stringValue
        self.changedAt = changedAt
        self.attempt = Int(attempt)
        leaseUntil = metadata["lease_until"]?.numberValue ?? 0
        answeredBy = metadata["answered_by"]?.numberValue.map { Int($0) }
    }
}

/// What ends a task: the call's result (a tool's `isError` result included) or a JSON-RPC
/// error. Stored as the task record's second message, written once.
enum TaskOutcome: Sendable, Hashable {
    case result(ToolResult)
    case error(code: Int, message: String)

    /// The status it ends a task of `family` with.
    func status(in family: TaskFamily) -> TaskState.Status {
        switch self {
        case .result(let result): result.isError && family == .experimental ? .failed : .completed
        case .error: .failed
        }
    }

    /// What a person reads of the ended task.
    var summary: String {
        switch self {
        case .result(let result) where result.isError: String(result.text.prefix(500))
        case .result: "done"
        case .error(_, let message): String(message.prefix(500))
        }
    }

    var jsonValue: JSONValue {
        switch self {
        case .result(let result): ["result": result.jsonValue]
        case .error(let code, let message): ["error": ["code": .int(Int64(code)), "message": .string(message)]]
        }
    }

    init?(_ value: JSONValue) {
        if let result = value.objectValue?["result"], let parsed = ToolResult(result) {
            self = .result(parsed)
        } else if let error = value.objectValue?["error"]?.objectValue, let code = error["code"]?.numberValue,
            let message = error["message"]?.stringValue
        {
            self = .error(code: Int(code), message: message)
        } else {
            return nil
        }
    }
}

/// How long tasks live and how they are run; every figure a setting or a constant here.
struct TaskPolicy: Sendable, Hashable {
    /// A task's `ttl` when the client asks for none, and the longest it may ask for (seconds):
    /// how long a task is kept after its last change (its end, for a finished one).
    var defaultTTL: Double = 3_600
    var maxTTL: Double = 86_400
    /// The shortest `ttl` granted (seconds).
    var minTTL: Double = 1
    /// Suggested time between polls (seconds).
    var pollInterval: Double = 1
    /// How long a runner holds a task without renewing; it renews every third of it.
    var lease: Double = 15
    /// How often a runner looks at its task for a cancellation.
    var watchInterval: Duration = .milliseconds(250)
    /// Runners lost before a task fails.
    var maxAttempts = 3
    /// Tasks one principal may have working at once.
    var maxWorkingPerPrincipal = 20

    /// The lifetime granted for a requested `ttl` in milliseconds (nil: none asked for).
    func ttl(requestedMilliseconds: Double?) -> Double {
        guard let requested = requestedMilliseconds, requested.isFinite else { return defaultTTL }
        return min(max(requested / 1000, minTTL), maxTTL)
    }
}

/// A task as a client sees it: its id, where it stands, and its times, in each family's words.
struct TaskView: Sendable, Hashable {
    let id: String
    let state: TaskState
    let createdAt: Double
    let ttl: Double
    let pollInterval: Double

    func fields(_ family: TaskFamily) -> JSONObject {
        var fields: JSONObject = [
            "taskId": .string(id), "status": .string(state.status.rawValue),
            "createdAt": .string(Self.iso8601(createdAt)), "lastUpdatedAt": .string(Self.iso8601(state.changedAt)),
        ]
        if let message = state.statusMessage { fields["statusMessage"] = .string(message) }
        let ttlMilliseconds = JSONValue.int(Int64((ttl * 1000).rounded()))
        let pollMilliseconds = JSONValue.int(Int64((pollInterval * 1000).rounded()))
        switch family {
        case .experimental:
            fields["ttl"] = ttlMilliseconds
            if !state.status.isTerminal { fields["pollInterval"] = pollMilliseconds }
        case .tasksExtension:
            fields["ttlMs"] = ttlMilliseconds
            if !state.status.isTerminal { fields["pollIntervalMs"] = pollMilliseconds }
        }
        return fields
    }

    /// RFC 3339 in UTC with milliseconds: `2026-12-04T10:30:00.123Z`.
    static func iso8601(_ seconds: Double) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: seconds))
    }
}
