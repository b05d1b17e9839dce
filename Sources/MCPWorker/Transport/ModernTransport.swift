import Foundation
import MCP
import SessionModel

/// Revision 2026-07-28 of the transport: stateless. No handshake and no session: every
/// request carries its protocol version and client capabilities in `params._meta`, and
/// `MCP-Protocol-Version`, `Mcp-Method` (and `Mcp-Name` for named calls) headers that must
/// agree with the body. `server/discover` tells a client what the server offers.
enum ModernTransport {
    /// Revisions served this way, newest first.
    static let versions = ["2026-07-28"]

    static let protocolVersionKey = "io.modelcontextprotocol/protocolVersion"
    static let clientCapabilitiesKey = "io.modelcontextprotocol/clientCapabilities"
    static let clientInfoKey = "io.modelcontextprotocol/clientInfo"

    /// Methods whose named parameter is mirrored in `Mcp-Name`.
    static let nameBearing = [
        "tools/call": "name", "prompts/get": "name", "resources/read": "uri", "tasks/get": "taskId", "tasks/update": "taskId", "tasks/cancel": "taskId",
    ]

    /// Error codes of this revision.
    static let headerMismatch = -32020
    static let unsupportedVersion = -32022

    /// Whether a POST speaks this revision: its version header, or (without a session) its
    /// `_meta` envelope, names one.
    static func applies(versionHeader: String?, sessionHeader: String?, params: JSONValue?) -> Bool {
        if let versionHeader { return versions.contains(versionHeader) || (sessionHeader == nil && !isHandshakeVersion(versionHeader) && hasEnvelope(params)) }
        return sessionHeader == nil && hasEnvelope(params)
    }

    static func isHandshakeVersion(_ version: String) -> Bool {
        WorkerDependencies.protocolVersions.contains(version) || version == "2024-11-05"
    }

    private static func hasEnvelope(_ params: JSONValue?) -> Bool {
        params?.objectValue?["_meta"]?.objectValue?[protocolVersionKey] != nil
    }

    /// The validation ladder of the revision, in its order: the envelope, then the headers
    /// against the body, then the version. Returns the error to answer, or nil.
    static func validate(method: String, params: JSONValue?, headers: (version: String?, method: String?, name: String?)) -> RPCError? {
        guard let meta = params?.objectValue?["_meta"]?.objectValue else {
            return .invalidParams("params._meta must be an object carrying '\(protocolVersionKey)' and '\(clientCapabilitiesKey)'")
        }
        let missing = [protocolVersionKey, clientCapabilitiesKey].filter { meta[$0] == nil }
        if !missing.isEmpty {
            return .invalidParams("params._meta is missing \(missing.joined(separator: ", "))")
        }
        let version = meta[protocolVersionKey]
        guard let header = headers.version, version == .string(header) else {
            return RPCError(headerMismatch, "MCP-Protocol-Version header does not match params._meta's protocol version")
        }
        guard headers.method == method else {
            return RPCError(headerMismatch, "Mcp-Method header does not match the request's method")
        }
        if let key = nameBearing[method], case .string(let named)? = params?.objectValue?[key], decodeHeader(headers.name) != named {
            return RPCError(headerMismatch, "Mcp-Name header does not match the request's '\(key)'")
        }
        guard case .string(let requested)? = version else {
            return .invalidParams("the protocol version in params._meta must be a string")
        }
        guard versions.contains(requested) else {
            return RPCError(
                unsupportedVersion, "Unsupported protocol version \(requested.prefix(40))",
                data: ["supported": .array((versions + WorkerDependencies.protocolVersions).map(JSONValue.string)), "requested": .string(requested)])
        }
        return nil
    }

    /// A header value as sent: plain, or `=?base64?...?=` for values that are not visible ASCII.
    static func decodeHeader(_ value: String?) -> String? {
        guard let value, value.hasPrefix("=?base64?"), value.hasSuffix("?=") else { return value }
        let payload = value.dropFirst("=?base64?".count).dropLast(2)
        return Data(base64Encoded: String(payload)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// HTTP status of an error code under this revision.
    static func status(of code: Int) -> Int {
        code == -32601 ? 404 : 400
    }

    /// `server/discover`.
    static func discoverResult(instructions: String) -> JSONValue {
        [
            "supportedVersions": .array((versions + WorkerDependencies.protocolVersions).map(JSONValue.string)),
            "capabilities": [
                "tools": ["listChanged": false], "resources": ["subscribe": false, "listChanged": false],
                "extensions": .object([TaskFamily.tasksExtension.rawValue: [:]]),
            ],
            "serverInfo": ["name": "greptile-mcp", "title": "Greptile code search", "version": .string(WorkerServer.version)],
            "instructions": .string(instructions),
            "ttlMs": 0,
            "cacheScope": "public",
            "resultType": "complete",
        ]
    }

    /// A result of this revision: the older shape plus `resultType`, and for list results
    /// the caching hints (`ttlMs`, `cacheScope`) the revision requires of them.
    static func complete(_ result: JSONValue, cacheFor ttl: Duration? = nil, scope: String = "public") -> JSONValue {
        var object = result.objectValue ?? [:]
        object["resultType"] = "complete"
        if let ttl {
            object["ttlMs"] = .int(ttl.components.seconds * 1000)
            // The tools are the same for every client of a deployment; a principal's conversations are its own.
            object["cacheScope"] = .string(scope)
        }
        return .object(object)
    }

    /// `tools/list` under this revision, made once.
    static let toolsList = complete(["tools": ToolCatalog.listing], cacheFor: .seconds(300))
}
