import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MCP
import Metrics
import ServerRuntime
import SessionClient
import SessionModel

/// MCP tasks, both families (`TaskFamily`): a long `tools/call` answered at once with a task
/// that lives in the durable hosts, served by any worker, polled for its status and outcome.
extension MCPResponder {
    static let tasksExtension = TaskFamily.tasksExtension.rawValue
    static let relatedTaskKey = "io.modelcontextprotocol/related-task"

    /// Whether a 2026-07-28 request opted into the tasks extension (`params._meta`'s client capabilities).
    static func optsIntoTasks(_ params: JSONValue?) -> Bool {
        let capabilities = params?.objectValue?["_meta"]?.objectValue?[ModernTransport.clientCapabilitiesKey]?.objectValue
        return capabilities?["extensions"]?.objectValue?[tasksExtension] != nil
    }

    /// The error of a tasks request from a client that did not opt in (-32021).
    static let tasksCapabilityMissing = RPCError(
        -32021, "Missing required client capability: the tasks extension",
        data: ["requiredCapabilities": ["extensions": .object([tasksExtension: [:]])]])

    static func taskNotFound(_ id: String) -> RPCError {
        .invalidParams("Failed to retrieve task: no task '\(id.prefix(64))' (unknown, expired, or not yours)")
    }

    // MARK: Creating

    /// Starts `tools/call` as a task of `family`: stored before this answers (so any worker
    /// finds it), run on this worker. The same question already being answered for the same
    /// principal answers with that task instead.
    func createTask(id: ID, params: JSONValue?, principal: String, family: TaskFamily) async -> Result<JSONObject, RPCError> {
        let call: ToolCall
        do {
            call = try ToolCall(id: id, params: params)
        } catch {
            return .failure(error)
        }
        guard TaskRecord.tools.contains(call.name), let declaration = ToolCatalog.declaration(named: call.name) else {
            return .failure(
                RPCError(-32601, "\(call.name.prefix(100)) does not run as a task; the tools that do are \(TaskRecord.tools.sorted().joined(separator: ", "))"))
        }
        let input: ToolInput
        do {
            input = try declaration.check(call.arguments)
        } catch {
            return .failure(.invalidParams("Invalid params: \(error.message)"))
        }
        let tasks = worker.tasks
        let policy = tasks.policy
        let requested = params?.objectValue?["task"]?.objectValue?["ttl"]?.numberValue
        let now = worker.clock.wallNow
        let task = TaskRecord(
            id: TaskStore.newID(), principal: principal, family: family, tool: call.name, arguments: input.values,
            ttl: policy.ttl(requestedMilliseconds: requested), createdAt: now,
            sessionID: call.name == ToolCatalog.queryRepository.name ? input.optionalString("session_id") ?? Conversations.newSessionID() : nil,
            state: .created(now: now, lease: policy.lease, message: "Greptile is working on it"))
        do {
            guard try await tasks.working(principal: principal, limit: policy.maxWorkingPerPrincipal) < policy.maxWorkingPerPrincipal else {
                return .failure(RPCError(-32003, "Too many tasks: \(policy.maxWorkingPerPrincipal) of yours are working; wait for one to end or cancel one"))
            }
            try await tasks.create(task)
            let digest = TaskStore.questionDigest(principal: principal, tool: call.name, arguments: input.values)
            if let running = try await tasks.claimQuestion(digest, for: task), let other = try await tasks.load(running, principal: principal) {
                // The same question is being answered: this task is not needed.
                try? await worker.store.clear(task.storageID)
                worker.logger.info("task joined the same question's", metadata: ["task": "\(other.id)", "tool": "\(call.name)"])
                return .success(other.view(pollInterval: policy.pollInterval).fields(family))
            }
        } catch {
            return .failure(.internalError("could not store the task: \(error.message)"))
        }
        Self.tasksCreated(call.name).increment()
        worker.logger.info("task created", metadata: ["task": "\(task.id)", "tool": "\(call.name)", "principal": "\(principal)"])
        await worker.taskRunner.start(task)
        return .success(task.view(pollInterval: policy.pollInterval).fields(family))
    }

    // MARK: Reading

    /// The caller's task named by `params.taskId`, as it stands after this look (a lost
    /// runner's task is taken over here).
    func lookUpTask(_ params: JSONValue?, principal: String) async -> Result<TaskRecord, RPCError> {
        guard case .string(let taskID)? = params?.objectValue?["taskId"] else { return .failure(.invalidParams("Invalid params: taskId must be a string")) }
        do {
            guard let task = try await worker.tasks.load(taskID, principal: principal) else { return .failure(Self.taskNotFound(taskID)) }
            return .success(await worker.taskRunner.look(at: task))
        } catch {
            return .failure(.internalError("could not read the task: \(error.message)"))
        }
    }

    /// `tasks/get`: the task; under the extension with its outcome inlined.
    func getTask(_ params: JSONValue?, principal: String, family: TaskFamily) async -> Result<JSONObject, RPCError> {
        await lookUpTask(params, principal: principal).map { task in
            var fields = task.view(pollInterval: worker.tasks.policy.pollInterval).fields(family)
            guard family == .tasksExtension else { return fields }
            switch task.outcome {
            case .result(let result)? where task.state.status.isTerminal: fields["result"] = result.jsonValue
            case .error(let code, let message)? where task.state.status.isTerminal:
                fields["error"] = ["code": .int(Int64(code)), "message": .string(message)]
            default: break
            }
            return fields
        }
    }

    /// `tasks/cancel`. Under 2025-11-25 the cancelled task (or -32602 for one already ended);
    /// under the extension an acknowledgement either way.
    func cancelTask(_ params: JSONValue?, principal: String, family: TaskFamily) async -> Result<JSONObject, RPCError> {
        let task: TaskRecord
        switch await lookUpTask(params, principal: principal) {
        case .success(let found): task = found
        case .failure(let error): return .failure(error)
        }
        let outcome: TaskRunner.Cancelled
        do {
            outcome = try await worker.taskRunner.cancel(task)
        } catch {
            return .failure(.internalError("could not cancel the task: \(error.message)"))
        }
        guard family == .experimental else { return .success([:]) }
        switch outcome {
        case .cancelled(let cancelled):
            worker.logger.info("task cancelled", metadata: ["task": "\(task.id)"])
            return .success(cancelled.view(pollInterval: worker.tasks.policy.pollInterval).fields(family))
        case .tooLate(let ended):
            let status = ended.state.status.isTerminal ? "already in terminal status '\(ended.state.status.rawValue)'" : "its answer was already stored"
            return .failure(.invalidParams("Cannot cancel task: \(status)"))
        }
    }

    /// `tasks/result` (2025-11-25): waits until the task ends, then answers exactly what the
    /// call would have: its result, or its JSON-RPC error.
    func taskResult(id: ID, _ params: JSONValue?, principal: String) async -> Data {
        var task: TaskRecord
        switch await lookUpTask(params, principal: principal) {
        case .success(let found): task = found
        case .failure(let error): return JSONRPC.error(id: id, error)
        }
        let start = worker.clock.now
        while !task.state.status.isTerminal {
            guard worker.clock.elapsed(since: start) < Self.resultWait else {
                return JSONRPC.error(
                    id: id, .internalError("the task is still working after \(Self.resultWait); call tasks/result again, or poll tasks/get"))
            }
            do { try await worker.clock.sleep(for: .milliseconds(250)) } catch { return JSONRPC.error(id: id, .requestCancelled) }
            guard let now = try? await worker.tasks.load(task.id, principal: principal) else { continue }
            task = await worker.taskRunner.look(at: now)
        }
        let related: JSONValue = [Self.relatedTaskKey: ["taskId": .string(task.id)]]
        switch task.outcome {
        case .result(let result)?:
            var value = result.jsonValue.objectValue ?? [:]
            value["_meta"] = related
            return JSONRPC.result(id: id, json: .object(value))
        case .error(let code, let message)?:
            return JSONRPC.error(id: id, RPCError(code, message, data: ["_meta": related]))
        case nil:
            return JSONRPC.error(id: id, RPCError(-32800, "the task was cancelled", data: ["_meta": related]))
        }
    }

    /// Longest a `tasks/result` waits in one request: less than a proxy's read timeout.
    static let resultWait: Duration = .seconds(280)

    /// `tasks/list` (2025-11-25): the caller's tasks, most recently changed first, in pages.
    func listTasks(_ params: JSONValue?, principal: String) async -> Result<JSONObject, RPCError> {
        var before: HostAPI.ListCursor?
        if case .string(let cursor)? = params?.objectValue?["cursor"] {
            guard let decoded = Data(base64Encoded: cursor).map({ String(decoding: $0, as: UTF8.self) }).flatMap(HostAPI.ListCursor.init),
                decoded.id.hasPrefix(StorageKeys.taskPrefix)
            else { return .failure(.invalidParams("Invalid params: cursor is not one this server gave")) }
            before = decoded
        }
        do {
            let (views, next) = try await worker.tasks.page(principal: principal, before: before, limit: Self.taskPageSize)
            var result: JSONObject = ["tasks": .array(views.map { .object($0.fields(.experimental)) })]
            if let next { result["nextCursor"] = .string(Data(next.text.utf8).base64EncodedString()) }
            return .success(result)
        } catch {
            return .failure(.internalError("could not list the tasks: \(error.message)"))
        }
    }

    static let taskPageSize = 50

    static func tasksCreated(_ tool: String) -> Metrics.Counter {
        Metrics.Counter(label: "worker_tasks_created_total", dimensions: [("tool", tool)])
    }
}
