import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServerRuntime
import SessionClient
import SessionModel
import SignIn

/// The worker's `/admin` routes: what operators (and each principal, for its own data) do
/// beyond MCP, across every host.
///
/// - `DELETE /admin/principals/{name}`: deletes every conversation and transport session of a
///   principal on every host; says how many, and which hosts could not be reached (ask again:
///   what was deleted stays deleted).
/// - `GET /admin/export[?principal=P[&session=S]]`: conversations as JSON Lines, one record per
///   line in the host API's shape; an operator may export everyone's.
/// - `POST /admin/import`: JSON Lines of such records, each written to its owner by the ring
///   as it was (`put_record`): a record already there is left alone, so importing twice
///   changes nothing; one that differs from the stored session is refused, never merged.
struct Administration: Sendable {
    let worker: WorkerDependencies

    /// Records per page when walking a listing.
    static let page = 200

    func respond(to request: Request, path: Substring) async -> Response {
        guard let caller = await worker.authentication.caller(authorization: request.headers[.authorization]) else {
            var response = Self.failure(.unauthorized, "send Authorization: Bearer <key>: the admin key, or a client key for its own data")
            // A browser asks its user for the key (as a password) when offered Basic.
            response.headers[.wwwAuthenticate] = path == "usage.html" ? #"Basic realm="greptile-mcp", charset="UTF-8""# : #"Bearer realm="greptile-mcp""#
            return response
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        switch (request.method, parts.count, parts.first) {
        case (.delete, 2, "principals"):
            return await erase(principal: String(parts[1]).removingPercentEncoding ?? "", caller: caller)
        case (_, 2, "principals"):
            return Self.failure(.methodNotAllowed, "/admin/principals/{name} takes DELETE", allow: "DELETE")
        case (.get, 1, "export"):
            return await export(request, caller: caller)
        case (_, 1, "export"):
            return Self.failure(.methodNotAllowed, "/admin/export takes GET", allow: "GET")
        case (.post, 1, "import"):
            return await importRecords(request, caller: caller)
        case (_, 1, "import"):
            return Self.failure(.methodNotAllowed, "/admin/import takes POST", allow: "POST")
        case (.get, 1, "usage"), (.get, 1, "usage.html"):
            return await usage(request, caller: caller, html: parts[0] == "usage.html")
        case (_, 1, "usage"), (_, 1, "usage.html"):
            return Self.failure(.methodNotAllowed, "/admin/\(parts[0]) takes GET", allow: "GET")
        default:
            return Self.failure(
                .notFound,
                "no route /admin/\(path.prefix(100)); there are /admin/principals/{name}, /admin/export, /admin/import, /admin/usage, /admin/usage.html")
        }
    }

    // MARK: Deleting a principal's data

    private func erase(principal: String, caller: Caller) async -> Response {
        guard SessionUpdate.isValidPrincipal(principal) else {
            return Self.failure(.badRequest, "a principal is 1 to 64 of \(SessionUpdate.principalAlphabet)")
        }
        guard caller.mayActFor(principal) else {
            return Self.failure(.forbidden, "a client key deletes only its own principal's data; use the admin key for another's")
        }
        do {
            // What this worker still holds for the principal goes first, so that no flush after
            // the erasure brings a count back.
            await worker.usageRecorder.forget(principal: principal)
            let erasure = try await worker.store.erase(principal: principal)
            // Its grants went with its data; tokens already issued are refused from now on.
            try await worker.signIn?.revoke(principal: principal)
            var answer: JSONObject = [
                "principal": .string(principal), "removed": .int(Int64(erasure.removed)), "complete": .bool(erasure.unreached.isEmpty),
            ]
            if !erasure.unreached.isEmpty {
                answer["unreached"] = .array(erasure.unreached.map(JSONValue.string))
                answer["error"] = .string("hosts \(erasure.unreached.joined(separator: ", ")) could not be reached; run this again once they answer")
            }
            worker.logger.notice("a principal's data was deleted", metadata: ["principal": "\(principal)", "removed": "\(erasure.removed)"])
            return Self.json(.object(answer), status: erasure.unreached.isEmpty ? .ok : .serviceUnavailable)
        } catch {
            return Self.failure(error.isRejected ? .badRequest : .serviceUnavailable, error.message)
        }
    }

    // MARK: Export

    private func export(_ request: Request, caller: Caller) async -> Response {
        let query = request.uri.queryParameters
        let principal = query["principal"].map(String.init)
        let session = query["session"].map(String.init)
        if let principal, !SessionUpdate.isValidPrincipal(principal) {
            return Self.failure(.badRequest, "principal must be 1 to 64 of \(SessionUpdate.principalAlphabet)")
        }
        // A client exports its own conversations; an operator anyone's, or everyone's.
        let scope: String?
        if caller.mayOperate {
            scope = principal
        } else {
            guard principal == nil || principal == caller.principal else {
                return Self.failure(.forbidden, "a client key exports only its own conversations; use the admin key for another's")
            }
            scope = caller.principal
        }
        if let session {
            guard let scope else { return Self.failure(.badRequest, "session= needs principal=: conversations are named within a principal") }
            guard Conversations.isValidSessionID(session) else {
                return Self.failure(.badRequest, "session must be 1 to \(Conversations.maxSessionIDLength) of \(SessionID.alphabet)")
            }
            let id = Conversations.storageID(principal: scope, sessionID: session)
            return exportStream { write in
                if let record = try await worker.store.record(id), Conversations.isConversation(record.metadata) { try await write(record) }
            }
        }
        let store = worker.store
        return exportStream { write in
            var before: HostAPI.ListCursor?
            repeat {
                // By id, not by principal: conversations stored before principals were kept have none.
                // Everyone's is every stored conversation, also those written through the host API
                // itself under ids of their own, with or without a principal.
                let prefix = scope.map { Conversations.storagePrefix(principal: $0) }
                let page = try await store.list(SessionListing(prefix: prefix, before: before, limit: Self.page))
                for summary in page.summaries where Conversations.isExported(id: summary.id, metadata: summary.metadata) {
                    // Each record is read from its owner: the whole of it, as of now.
                    if let record = try await store.record(summary.id) { try await write(record) }
                }
                before = page.next
            } while before != nil
        }
    }

    /// A JSON Lines response that `produce` writes record by record (memory stays bounded);
    /// a failure midway ends it with a line saying so, which no importer mistakes for a record.
    private func exportStream(_ produce: @escaping @Sendable (_ write: (SessionRecord) async throws -> Void) async throws -> Void) -> Response {
        var response = Response(
            status: .ok,
            body: ResponseBody { writer in
                do {
                    try await produce { record in
                        try await writer.write(ByteBuffer(string: record.jsonValue.jsonText() + "\n"))
                    }
                } catch let error as SessionError {
                    let line: JSONValue = ["error": .string("the export is incomplete: \(error.message)")]
                    try await writer.write(ByteBuffer(string: line.jsonText() + "\n"))
                }
                try await writer.finish(nil)
            })
        response.headers[.contentType] = "application/x-ndjson"
        return response
    }

    // MARK: Import

    private func importRecords(_ request: Request, caller: Caller) async -> Response {
        guard caller.mayOperate else { return Self.failure(.forbidden, "importing takes the admin key: it writes any principal's conversations") }
        var report = ImportReport()
        var lines = JSONLines(limit: worker.configuration.limits.maxBodyBytes)
        do {
            for try await buffer in request.body {
                for line in lines.feed(buffer) { await report.add(line, importing: self.importLine) }
            }
            if let last = lines.finish() { await report.add(last, importing: self.importLine) }
        } catch {
            // The body itself broke off: what came before it is reported as it went.
            report.refuse(line: lines.number + 1, id: nil, "the request body could not be read to its end: \(error)")
        }
        worker.logger.notice(
            "conversations imported", metadata: ["imported": "\(report.imported)", "unchanged": "\(report.unchanged)", "refused": "\(report.refused.count)"])
        return Self.json(report.json, status: .ok)
    }

    /// Writes one line's record; what happened to it.
    private func importLine(_ text: Data) async -> ImportReport.Outcome {
        let record: SessionRecord
        let principal: String?
        do {
            guard case .object(var object) = try JSONValue.parseStrictly(text) else { return .refused(nil, "a line must be a JSON object") }
            guard let id = object["id"]?.stringValue else { return .refused(nil, "id is required") }
            do {
                try SessionID.validate(id)
            } catch {
                return .refused(nil, "id: \(error.message)")
            }
            guard Conversations.isExported(id: id, metadata: [:]) else {
                return .refused(id, "only conversations are imported (not MCP transport sessions, usage records or shares)")
            }
            if id.hasPrefix(StorageKeys.conversationPrefix) {
                guard let owner = Conversations.principal(ofStorageID: id) else {
                    return .refused(id, "a conversation's id is conv:<principal>:<session_id>")
                }
                if let given = object["principal"]?.stringValue, given != owner {
                    return .refused(id, "principal '\(given.prefix(64))' does not match the id's")
                }
                object["principal"] = .string(owner)
            }
            let decoded = try SessionOperation.decode(["operation": "put_record", "record": .object(object)])
            guard case .putRecord(var given) = decoded else { return .refused(id, "not a record") }
            given.id = id
            record = given
            principal = given.principal
        } catch let error as APIError {
            return .refused(nil, error.message)
        } catch {
            return .refused(nil, "not JSON: \(error)")
        }
        do {
            if let stored = try await worker.store.record(record.id) {
                return stored.sameContent(as: record)
                    ? .unchanged : .refused(record.id, "a different conversation is stored under this id; it was left as it is")
            }
            try await worker.store.write(record.id, SessionUpdate(.putRecord(record), principal: principal))
            return .imported
        } catch {
            return .refused(record.id, error.message)
        }
    }

    // MARK: Usage

    /// Usage per principal and day over the last `days` (30): an operator sees everyone's,
    /// a client its own. This worker's counts not yet written are written first.
    private func usage(_ request: Request, caller: Caller, html: Bool) async -> Response {
        let query = request.uri.queryParameters
        var days = 30
        if let text = query["days"] {
            guard let number = Int(text), (1...400).contains(number) else { return Self.failure(.badRequest, "days must be 1 to 400") }
            days = number
        }
        let asked = query["principal"].map(String.init)
        let scope: String?
        if caller.mayOperate {
            scope = asked
        } else {
            guard asked == nil || asked == caller.principal else {
                return Self.failure(.forbidden, "a client key sees only its own usage; use the admin key for another's")
            }
            scope = caller.principal
        }
        if let scope, !SessionUpdate.isValidPrincipal(scope) {
            return Self.failure(.badRequest, "principal must be 1 to 64 of \(SessionUpdate.principalAlphabet)")
        }
        await worker.usageRecorder.flush()
        var report = UsageReport(days: days, now: worker.clock.wallNow)
        do {
            var before: HostAPI.ListCursor?
            repeat {
                let page = try await worker.store.list(
                    SessionListing(prefix: UsageLedger.prefix(principal: scope), before: before, limit: SessionListing.maxLimit))
                for summary in page.summaries { report.add(recordID: summary.id, metadata: summary.metadata) }
                before = page.next
            } while before != nil
        } catch {
            return Self.failure(.serviceUnavailable, "usage could not be read: \(error.message)")
        }
        guard html else { return Self.json(report.json, status: .ok) }
        var response = Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: report.html)))
        response.headers[.contentType] = "text/html; charset=utf-8"
        // The page loads nothing from anywhere: no script, no style sheet, no font.
        response.headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'none'; style-src 'unsafe-inline'"
        return response
    }

    // MARK: Answers

    static func json(_ value: JSONValue, status: HTTPResponse.Status) -> Response {
        var response = Response(status: status, body: .init(byteBuffer: ByteBuffer(string: value.jsonText())))
        response.headers[.contentType] = "application/json"
        return response
    }

    static func failure(_ status: HTTPResponse.Status, _ message: String, allow: String? = nil) -> Response {
        var response = json(["error": ["code": .int(Int64(status.code)), "message": .string(message)]], status: status)
        if let allow { response.headers[.allow] = allow }
        return response
    }
}
