import Foundation
import HTTPServing
import Logging
import Metrics
import ServerRuntime
import ServiceLifecycle
import SessionClient
import SessionModel
import Synchronization
import Tracing

/// Runs tasks. The worker that creates a task runs it first; whichever worker looks at a task
/// whose runner was lost (its lease lapsed: the worker was killed, paused or cut off) takes it
/// over as the next attempt (`TaskState`), so a task completes as long as some worker lives.
///
/// A runner watches its task while the call runs: a cancellation (from any worker) or a
/// takeover stops the call within `TaskPolicy.watchInterval`, its upstream transfer aborted;
/// it renews its lease every third of it. Its outcome is stored once, by compare and set on
/// its attempt; a query's answer is stored as the outcome before its conversation's turn is
/// written (marked with the task, so once), so a runner lost in between leaves an answer the
/// next one finishes instead of asking Greptile again.
struct TaskRunner: Sendable {
    let tasks: TaskStore
    let tools: GreptileTools
    let supervisor: CallSupervisor
    /// Where this worker's task runs are children.
    let runners: BackgroundCalls
    /// The attempts running on this worker.
    let local = LocalRuns()
    let logger: Logger
    let clock: ServerClock
    /// How often an indexing task asks Greptile how far it got.
    let indexPollInterval: Duration

    var policy: TaskPolicy { tasks.policy }

    /// Runs `task`, whose lease this worker holds, on this worker; a worker that cannot (it is
    /// shutting down) gives the lease back, for the next look to take the task over.
    func start(_ task: TaskRecord) async {
        // The run outlives the request that started it (or took it over): its span is that
        // request's child all the same.
        let parent = Traces.enabled ? InstrumentationContext.current : nil
        guard !runners.start({ await self.traced(task, parent: parent) }) else { return }
        _ = try? await tasks.change(task, from: task.state, to: task.state.released(), expecting: task.state.runnerExpects)
    }

    /// The task as it stands after this look: a task whose runner was lost is taken over here
    /// (run again, or its stored answer finished), or ended as failed after too many losses.
    func look(at task: TaskRecord) async -> TaskRecord {
        let now = clock.wallNow
        switch task.state.step(now: now, maxAttempts: policy.maxAttempts, runningHere: local.attempt(of: task.id) == task.state.attempt) {
        case .none:
            return task
        case .giveUp where task.state.answeredBy != nil:
            let message = "answered, but its conversation turn could not be stored by \(task.state.attempt) runners"
            let ended = task.state.ended(.completed, message: message, now: now)
            if (try? await tasks.change(task, from: task.state, to: ended, expecting: task.state.runnerExpects)) == true {
                Self.ended.completed.increment()
            }
        case .giveUp:
            let message = "the task's runner was lost \(task.state.attempt) times (its workers stopped or were cut off); ask again"
            let ended = task.state.ended(.failed, message: message, now: now)
            if (try? await tasks.record(.error(code: -32603, message: message), of: task, from: task.state, to: ended, expecting: task.state.runnerExpects))
                == true
            {
                Self.ended.failed.increment()
            }
        case .takeOver(let attempt):
            let claimed = task.state.claimed(by: attempt, now: now, lease: policy.lease)
            var expected = task.state.runnerExpects
            expected["lease_until"] = .double(task.state.leaseUntil)
            if (try? await tasks.change(task, from: task.state, to: claimed, expecting: expected)) == true {
                var taken = task
                taken.state = claimed
                Self.takeovers.increment()
                logger.notice("task taken over: its runner was lost", metadata: ["task": "\(task.id)", "attempt": "\(attempt)", "tool": "\(task.tool)"])
                await start(taken)
                return taken
            }
        }
        return (try? await tasks.load(task.id, principal: task.principal)) ?? task
    }

    // MARK: Running

    private func traced(_ task: TaskRecord, parent: InstrumentationContext?) async {
        guard let parent else { return await run(task) }
        await Traces.span("task run \(task.tool)", parent: parent) { span in
            span?.attributes["gen_ai.tool.name"] = task.tool
            span?.attributes["mcp.task.attempt"] = task.state.attempt
            await run(task)
        }
    }

    /// At graceful shutdown the call stops (its transfer aborted) and the run, not cancelled
    /// itself, gives the lease back, for the next look on another worker to take the task at once.
    private func run(_ task: TaskRecord) async {
        let held = HeldState(task.state)
        let stopping = Latch()
        local.started(task.id, attempt: task.state.attempt)
        defer { local.ended(task.id, attempt: task.state.attempt) }
        do {
            try await withGracefulShutdownHandler {
                if task.state.answeredBy != nil {
                    try await finishAnswer(of: task, held: held)
                } else {
                    try await execute(task, held: held, stopping: stopping)
                }
            } onGracefulShutdown: {
                stopping.open()
            }
        } catch {
            if stopping.isOpen || Task.isCancelled {
                let state = held.state
                _ = try? await tasks.change(task, from: state, to: state.released(), expecting: state.runnerExpects)
                logger.info("task released: this worker is stopping", metadata: ["task": "\(task.id)"])
            } else {
                logger.info("task runner stopped", metadata: ["task": "\(task.id)", "reason": "\(error)"])
            }
        }
    }

    /// Runs the call, watched, and stores its outcome.
    private func execute(_ task: TaskRecord, held: HeldState, stopping: Latch) async throws {
        let stop = Latch()
        var stoppers = CallSupervisor.Stoppers()
        stoppers.latches = [stop, stopping]
        let result: ToolResult
        do {
            result = try await supervisor.run(stoppers, companions: [{ await self.watch(task, held: held, stop: stop) }]) {
                try await self.call(task, held: held)
            }
        } catch let error as RPCError {
            try await end(task, held: held, with: .error(code: error.code, message: error.message))
            return
        }
        if held.state.answeredBy != nil {
            // Its answer is stored, and its turn written (or refused for good: the answer stands).
            try await complete(task, held: held, note: result.isError ? "answered; not kept in the conversation: \(result.text.prefix(300))" : nil)
        } else {
            try await end(task, held: held, with: .result(result))
        }
    }

    private func call(_ task: TaskRecord, held: HeldState) async throws -> ToolResult {
        switch task.tool {
        case ToolCatalog.queryRepository.name:
            let turn = TaskTurn(marker: Conversations.taskMarker(task.id), sessionID: task.sessionID ?? Conversations.newSessionID()) { answer in
                try await self.storeAnswer(answer, of: task, held: held)
            }
            return try await tools.call(task.tool, arguments: task.arguments, principal: task.principal, task: turn)
        case ToolCatalog.indexRepository.name:
            return try await index(task, held: held)
        default:
            return try await tools.call(task.tool, arguments: task.arguments, principal: task.principal)
        }
    }

    /// A query's answer, stored as the task's outcome by its runner alone, before its turn.
    private func storeAnswer(_ answer: JSONValue, of task: TaskRecord, held: HeldState) async throws {
        let state = held.state
        var expected = state.runnerExpects
        expected["answered_by"] = .null
        let links = SourceLinks.links(from: GreptileTools.sources(of: task.tool, in: answer))
        guard try await tasks.record(.result(.success(answer, links: links)), of: task, from: state, to: state.answered(), expecting: expected) else {
            throw TaskStop.superseded
        }
        held.update { $0 = $0.answered() }
    }

    /// The stored answer's turn written (once: the conversation's mark decides), then the task completed.
    private func finishAnswer(of task: TaskRecord, held: HeldState) async throws {
        guard case .result(let result)? = task.outcome, let answer = result.structured else {
            return try await end(task, held: held, with: .error(code: -32603, message: "the task's stored answer cannot be read"))
        }
        let turn = TaskTurn(marker: Conversations.taskMarker(task.id), sessionID: task.sessionID ?? "") { _ in }
        do {
            try await tools.finishTaskTurn(task.arguments, principal: task.principal, answer: answer, task: turn)
        } catch let error as SessionError where error.isRejected {
            // Refused for good (a limit, the conversation gone): the answer stands without its turn.
            return try await complete(task, held: held, note: "answered; not kept in the conversation: \(error.message.prefix(300))")
        } catch let error as ToolError {
            return try await complete(task, held: held, note: "answered; not kept in the conversation: \(error.message.prefix(300))")
        }
        try await complete(task, held: held)
    }

    /// Ends a task whose outcome is stored (a query's answer, its turn written or refused for good).
    private func complete(_ task: TaskRecord, held: HeldState, note: String? = nil) async throws {
        let state = held.state
        let ended = state.ended(.completed, message: note ?? "done", now: clock.wallNow)
        var expected = TaskState.workingExpected
        expected["answered_by"] = state.answeredBy.map { .int(Int64($0)) } ?? .null
        if try await tasks.change(task, from: state, to: ended, expecting: expected) { Self.ended.completed.increment() }
    }

    /// Stores the outcome and ends the task, if this runner still holds it.
    private func end(_ task: TaskRecord, held: HeldState, with outcome: TaskOutcome) async throws {
        let state = held.state
        let status = outcome.status(in: task.family)
        let ended = state.ended(status, message: outcome.summary, now: clock.wallNow)
        guard try await tasks.record(outcome, of: task, from: state, to: ended, expecting: state.runnerExpects) else { throw TaskStop.superseded }
        (status == .completed ? Self.ended.completed : Self.ended.failed).increment()
    }

    /// Beside the call: stops it when the task is cancelled or another runner holds it, and
    /// renews the lease. A host that cannot be read is no reason to stop, until the lease has
    /// lapsed: then another worker may hold the task.
    private func watch(_ task: TaskRecord, held: HeldState, stop: Latch) async {
        let renewal = Duration.milliseconds(Int64(policy.lease * 1000 / 3))
        var renewed = clock.now
        while !Task.isCancelled {
            do { try await clock.sleep(for: policy.watchInterval) } catch { return }
            let state = held.state
            if let current = try? await tasks.state(of: task) {
                guard current.status == .working, current.attempt == state.attempt else { return stop.open() }
            } else if clock.wallNow > state.leaseUntil {
                return stop.open()
            }
            guard clock.elapsed(since: renewed) >= renewal else { continue }
            let next = state.renewed(now: clock.wallNow, lease: policy.lease)
            switch try? await tasks.change(task, from: state, to: next, expecting: state.runnerExpects) {
            case true?:
                held.update { $0.leaseUntil = next.leaseUntil }
                renewed = clock.now
            case false?:
                return stop.open()
            case nil:
                continue
            }
        }
    }

    /// What a person reads of the task now; kept only while this runner holds it.
    private func say(_ message: String, task: TaskRecord, held: HeldState) async {
        let state = held.state
        guard state.statusMessage != message else { return }
        let next = state.saying(message, now: clock.wallNow)
        if (try? await tasks.change(task, from: state, to: next, expecting: state.runnerExpects)) == true {
            held.update {
                $0.statusMessage = next.statusMessage
                $0.changedAt = next.changedAt
            }
        }
    }

    // MARK: Indexing

    /// An indexing task: the repository submitted (unless a taken-over task finds Greptile at
    /// it already), then Greptile's status followed until it is completed or failed, each step
    /// told in the status message.
    private func index(_ task: TaskRecord, held: HeldState) async throws -> ToolResult {
        var submitted: JSONValue?
        let resuming: Bool
        if task.state.attempt > 1, let status = try await tools.indexingStatus(task.arguments), status["status"]?.stringValue != "failed" {
            resuming = true
        } else {
            resuming = false
        }
        if !resuming {
            let answer = try await tools.call(task.tool, arguments: task.arguments, principal: task.principal)
            guard !answer.isError else { return answer }
            submitted = answer.structured
        }
        while true {
            try await clock.sleep(for: indexPollInterval)
            guard let status = try await tools.indexingStatus(task.arguments) else { continue }
            let stage = status["status"]?.stringValue ?? "unknown"
            await say(Self.indexingMessage(status), task: task, held: held)
            if stage == "completed" || stage == "failed" {
                var value = submitted?.objectValue ?? [:]
                value["indexing"] = .object(status)
                if stage == "failed" {
                    return .failure("Greptile could not index the repository (status failed); check its URL and access, then index it again")
                }
                return .success(.object(value))
            }
        }
    }

    /// "processing: 412 of 980 files".
    static func indexingMessage(_ status: JSONObject) -> String {
        let stage = status["status"]?.stringValue ?? "unknown"
        guard let total = status["numFiles"]?.numberValue, total > 0 else { return "Greptile is indexing: \(stage)" }
        let done = status["filesProcessed"]?.numberValue ?? 0
        return "Greptile is indexing: \(stage), \(Int(done)) of \(Int(total)) files"
    }

    // MARK: Cancelling

    enum Cancelled: Sendable {
        /// The task is cancelled now (its status `cancelled`).
        case cancelled(TaskRecord)
        /// It had ended already, or its answer was stored first: it is not cancelled.
        case tooLate(TaskRecord)
    }

    /// Cancels a task from any worker: its conversation fenced against its turn first (a query),
    /// then its status. Its runner, wherever it is, sees the status and stops its call.
    func cancel(_ task: TaskRecord) async throws(SessionError) -> Cancelled {
        guard task.state.status == .working else { return .tooLate(task) }
        if task.tool == ToolCatalog.queryRepository.name, let sessionID = task.sessionID {
            let fenced = try await tools.conversations.cancelTurn(principal: task.principal, sessionID: sessionID, marker: Conversations.taskMarker(task.id))
            guard fenced else { return .tooLate(try await tasks.load(task.id, principal: task.principal) ?? task) }
        }
        let ended = task.state.ended(.cancelled, message: "cancelled by request", now: clock.wallNow)
        if try await tasks.change(task, from: task.state, to: ended, expecting: TaskState.workingExpected) {
            Self.ended.cancelled.increment()
            var cancelled = task
            cancelled.state = ended
            return .cancelled(cancelled)
        }
        let now = try await tasks.load(task.id, principal: task.principal) ?? task
        return now.state.status == .cancelled ? .cancelled(now) : .tooLate(now)
    }

    // MARK: Metrics

    /// Created when the worker starts (`declareMetrics`), exported as 0 until something happens.
    static let takeovers = Counter(label: "worker_task_takeovers_total")
    static let ended = (
        completed: Counter(label: "worker_tasks_ended_total", dimensions: [("status", "completed")]),
        failed: Counter(label: "worker_tasks_ended_total", dimensions: [("status", "failed")]),
        cancelled: Counter(label: "worker_tasks_ended_total", dimensions: [("status", "cancelled")])
    )

    static func declareMetrics() {
        _ = (takeovers, ended)
        for tool in TaskRecord.tools { _ = MCPResponder.tasksCreated(tool) }
    }
}

/// The task attempts this worker runs now, by task id.
final class LocalRuns: Sendable {
    private let attempts = Mutex<[String: Int]>([:])

    func started(_ id: String, attempt: Int) { attempts.withLock { $0[id] = attempt } }

    /// Forgets the run of `attempt` (a later attempt of the same task started here stays).
    func ended(_ id: String, attempt: Int) {
        attempts.withLock { if $0[id] == attempt { $0[id] = nil } }
    }

    func attempt(of id: String) -> Int? { attempts.withLock { $0[id] } }
}

/// A runner's view of its task's state, shared by the call and the watcher beside it.
final class HeldState: Sendable {
    private let current: Mutex<TaskState>

    init(_ state: TaskState) { current = Mutex(state) }

    var state: TaskState { current.withLock { $0 } }

    func update(_ change: (inout TaskState) -> Void) { current.withLock { change(&$0) } }
}
