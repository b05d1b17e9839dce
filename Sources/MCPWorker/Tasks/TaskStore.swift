import Crypto
import Foundation
import ServerRuntime
import SessionClient
import SessionModel

/// Why a task's runner stops without an outcome: the task was cancelled, or another runner
/// holds it now (this one lost its lease). Nothing is stored by a stopped runner.
enum TaskStop: Error, Sendable {
    case cancelled
    case superseded
}

/// A task as the hosts keep it: the record `task:<id>`, owned by the ring like any record,
/// belonging to its principal (erased with the rest of its data).
///
/// Its first message is the call (`{"name", "arguments"}`), its second, once there, the
/// outcome (`TaskOutcome`); its metadata says what the task is (`kind: task`, family, tool,
/// `ttl`, for a query the conversation's `session_id`) and where it stands (`TaskState`).
struct TaskRecord: Sendable {
    let id: String
    let principal: String
    let family: TaskFamily
    let tool: String
    let arguments: JSONObject
    /// Seconds the task is kept after its last change.
    let ttl: Double
    let createdAt: Double
    /// For `query_repository`: the conversation its turn goes to (chosen at creation when the
    /// call names none, so that every runner uses the same one).
    let sessionID: String?
    var state: TaskState
    var outcome: TaskOutcome?

    static let kind = "task"

    /// The tools that may run as tasks: the long ones.
    static let tools: Set<String> = [ToolCatalog.queryRepository.name, ToolCatalog.searchRepository.name, ToolCatalog.indexRepository.name]

    var storageID: String { StorageKeys.task(id) }

    /// The metadata that says what the task is (the state's fields beside it).
    var descriptionFields: JSONObject {
        var fields: JSONObject = [
            "kind": .string(Self.kind), "family": .string(family.rawValue), "tool": .string(tool), "ttl": .double(ttl),
        ]
        if let sessionID { fields["session_id"] = .string(sessionID) }
        return fields
    }

    /// The call, as the record's first message holds it.
    var callText: String { JSONValue.object(["name": .string(tool), "arguments": .object(arguments)]).jsonText() }

    func view(pollInterval: Double) -> TaskView {
        TaskView(id: id, state: state, createdAt: createdAt, ttl: ttl, pollInterval: pollInterval)
    }

    init(
        id: String, principal: String, family: TaskFamily, tool: String, arguments: JSONObject, ttl: Double, createdAt: Double, sessionID: String?,
        state: TaskState
    ) {
        self.id = id
        self.principal = principal
        self.family = family
        self.tool = tool
        self.arguments = arguments
        self.ttl = ttl
        self.createdAt = createdAt
        self.sessionID = sessionID
        self.state = state
        outcome = nil
    }

    /// From the stored record; nil when it is not a task.
    init?(id: String, _ record: SessionRecord) {
        let metadata = record.metadata
        guard metadata["kind"]?.stringValue == Self.kind, let principal = record.principal, let state = TaskState(metadata),
            let family = metadata["family"]?.stringValue.flatMap(TaskFamily.init(rawValue:)), let tool = metadata["tool"]?.stringValue,
            let call = record.messages.first.flatMap({ JSONValue.parse(Data($0.content.utf8)) })?.objectValue
        else { return nil }
        self.id = id
        self.principal = principal
        self.family = family
        self.tool = tool
        arguments = call["arguments"]?.objectValue ?? [:]
        ttl = metadata["ttl"]?.numberValue ?? 3_600
        createdAt = record.createdAt
        sessionID = metadata["session_id"]?.stringValue
        self.state = state
        outcome = record.messages.dropFirst().first.flatMap { JSONValue.parse(Data($0.content.utf8)) }.flatMap(TaskOutcome.init)
    }
}

/// Tasks in the durable hosts: created, read, and changed only by compare and set, so that of
/// workers deciding at once one wins (`TaskState`).
struct TaskStore: Sendable {
    let store: any SessionManager
    let policy: TaskPolicy
    let clock: ServerClock

    /// A fresh task id: 128 bits from the system's secure generator, 32 hex digits.
    static func newID() -> String { TransportSessions.newID() }

    static func isWellFormed(_ id: String) -> Bool { TransportSessions.isWellFormed(id) }

    /// Stores a new task; once this returns, any worker finds it.
    func create(_ task: TaskRecord) async throws(SessionError) {
        let metadata = task.descriptionFields.merging(task.state.fields) { _, new in new }
        try await store.write(
            task.storageID,
            SessionUpdate(
                .setHistory([MessageInput(role: .user, content: task.callText, timestamp: task.createdAt)], metadata: metadata),
                principal: task.principal, expiresAfter: task.ttl, expect: ["kind": .null]))
    }

    /// The task `id` of `principal`; nil when unknown, expired, or another principal's.
    func load(_ id: String, principal: String) async throws(SessionError) -> TaskRecord? {
        guard Self.isWellFormed(id), let record = try await store.record(StorageKeys.task(id)),
            let task = TaskRecord(id: id, record), task.principal == principal
        else { return nil }
        return task
    }

    /// Where the task stands now (its metadata alone): nil once it is gone.
    func state(of task: TaskRecord) async throws(SessionError) -> TaskState? {
        let history = try await store.history(task.storageID, last: 0)
        guard history.exists else { return nil }
        return TaskState(history.metadata)
    }

    /// Changes the task from `old` to `new` (the fields that differ) if it still holds
    /// `expected`; false when it does not (another worker changed it first) or the task is gone.
    func change(_ task: TaskRecord, from old: TaskState, to new: TaskState, expecting expected: JSONObject) async throws(SessionError) -> Bool {
        try await conditionally { () async throws(SessionError) in
            try await store.write(
                task.storageID, SessionUpdate(.updateMetadata(new.patch(from: old)), expiresAfter: task.ttl, mustExist: true, expect: expected))
        }
    }

    /// Stores the task's outcome with its change of state, if it still holds `expected`: the
    /// one write that makes an outcome the task's.
    func record(
        _ outcome: TaskOutcome, of task: TaskRecord, from old: TaskState, to new: TaskState, expecting expected: JSONObject
    ) async throws(SessionError) -> Bool {
        try await conditionally { () async throws(SessionError) in
            try await store.write(
                task.storageID,
                SessionUpdate(
                    .appendMessages(
                        [MessageInput(role: .assistant, content: outcome.jsonValue.jsonText(), timestamp: clock.wallNow)],
                        metadata: new.patch(from: old)),
                    expiresAfter: task.ttl, mustExist: true, expect: expected))
        }
    }

    private func conditionally(_ write: () async throws(SessionError) -> Void) async throws(SessionError) -> Bool {
        do {
            try await write()
            return true
        } catch let error where error.apiError?.code == .preconditionFailed || error.apiError?.code == .sessionNotFound {
            return false
        }
    }

    // MARK: Listing

    /// One page of `principal`'s tasks, newest change first.
    func page(principal: String, before: HostAPI.ListCursor?, limit: Int) async throws(SessionError) -> (tasks: [TaskView], next: HostAPI.ListCursor?) {
        let page = try await store.list(SessionListing(principal: principal, prefix: StorageKeys.taskPrefix, before: before, limit: limit))
        let views = page.summaries.compactMap { summary -> TaskView? in
            guard summary.metadata["kind"]?.stringValue == TaskRecord.kind, summary.principal == principal, let state = TaskState(summary.metadata)
            else { return nil }
            return TaskView(
                id: String(summary.id.dropFirst(StorageKeys.taskPrefix.count)), state: state, createdAt: summary.createdAt,
                ttl: summary.metadata["ttl"]?.numberValue ?? policy.defaultTTL, pollInterval: policy.pollInterval)
        }
        return (views, page.next)
    }

    /// How many of `principal`'s tasks are working now (a runner holds them, or one may take
    /// them over), counting at most `limit + 1`.
    func working(principal: String, limit: Int) async throws(SessionError) -> Int {
        // Working tasks are the most recently changed: their runners renew them.
        let (views, _) = try await page(principal: principal, before: nil, limit: limit + 1)
        return views.filter { $0.state.status == .working }.count
    }

    // MARK: Identical questions

    /// What identifies a call as the same question: the principal, the tool and its checked
    /// arguments, less those that change only how the answer is delivered.
    static func questionDigest(principal: String, tool: String, arguments: JSONObject) -> String {
        var asked = arguments
        for key in ["stream", "timeout"] { asked[key] = nil }
        let text = JSONValue.array([.string(principal), .string(tool), .object(asked)]).jsonText()
        return SHA256.hash(data: Data(text.utf8)).map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }

    /// Makes `task` the one that answers its question, unless another working task of the
    /// principal already does: that one's id is returned instead (and `task` is not run).
    func claimQuestion(_ digest: String, for task: TaskRecord) async throws(SessionError) -> String? {
        let id = StorageKeys.taskQuestion(digest)
        var expected: JSONValue = .null
        for _ in 0..<3 {
            let claimed = try await conditionally { () async throws(SessionError) in
                try await store.write(
                    id,
                    SessionUpdate(.updateMetadata(["task": .string(task.id)]), principal: task.principal, expiresAfter: task.ttl, expect: ["task": expected]))
            }
            if claimed { return nil }
            let current = try await store.history(id, last: 0).metadata["task"] ?? .null
            if case .string(let other) = current, other != task.id, let running = try await load(other, principal: task.principal),
                running.state.status == .working
            {
                return other
            }
            expected = current
        }
        return nil
    }
}
