import Foundation
import Greptile
import MCP
import SessionModel

/// One tool, declared once: its name and words for `tools/list`, and the arguments it takes,
/// which are both its advertised input schema and the check every call's arguments pass
/// (`ArgumentSchema`) before the tool sees them.
struct ToolDeclaration: Sendable {
    let name: String
    let title: String
    let description: String
    let input: ArgumentSchema.Record
    let annotations: Tool.Annotations
    /// Whether the tool asks Greptile (its calls count as a principal's usage).
    var callsUpstream = false
    /// The JSON Schema of its result's `structuredContent` (every successful result has one).
    var output: JSONValue? = nil

    /// The tool as `tools/list` lists it.
    var listing: JSONValue {
        var tool: JSONObject = [
            "name": .string(name), "title": .string(title), "description": .string(description), "inputSchema": input.jsonSchema,
        ]
        // The SDK's annotations, as the SDK writes them.
        if let encoded = try? JSONRPC.encoder.encode(annotations), let value = JSONValue.parse(encoded) { tool["annotations"] = value }
        if let output { tool["outputSchema"] = output }
        return .object(tool)
    }

    /// A call's arguments, checked and normalised; a refusal is the sentence the caller reads.
    func check(_ arguments: JSONObject?) throws(ToolError) -> ToolInput {
        ToolInput(values: try input.check(arguments))
    }
}

/// A call's arguments once its declaration has checked them: every declared argument has the
/// type its schema says (or is absent, if optional), defaults filled in.
struct ToolInput: Sendable {
    let values: JSONObject

    /// A text argument; "" for one left out (a required one never is).
    func string(_ name: String) -> String { values[name]?.stringValue ?? "" }
    func optionalString(_ name: String) -> String? { values[name]?.stringValue }
    func flag(_ name: String) -> Bool { values[name]?.boolValue ?? false }
    func whole(_ name: String) -> Int { values[name]?.numberValue.map { Int($0) } ?? 0 }
    func seconds(_ name: String) -> Duration? { values[name]?.numberValue.map { .milliseconds(Int64($0 * 1000)) } }

    /// The repository a call names at its top level (`remote`, `repository`, `branch`).
    var repository: RepositoryInput { RepositoryInput(values) }

    /// A list of `{remote, repository, branch?}`.
    func repositories(_ name: String) -> [RepositoryInput] {
        (values[name]?.arrayValue ?? []).compactMap { $0.objectValue.map(RepositoryInput.init) }
    }

    /// A list of `{role, content}`; nil when left out.
    func messages(_ name: String) -> [MessageInput]? {
        values[name]?.arrayValue?.compactMap { item in
            guard let fields = item.objectValue, let role = fields["role"]?.stringValue.flatMap(Role.init(rawValue:)),
                let content = fields["content"]?.stringValue
            else { return nil }
            return MessageInput(role: role, content: content)
        }
    }
}

/// A tool failure with a sentence a person (or a model) can act on; returned as `isError: true`.
struct ToolError: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// A repository named in a tool call; the branch may be left to GitHub's default.
struct RepositoryInput: Sendable, Hashable {
    let remote: String
    let repository: String
    let branch: String?

    /// From a record its schema checked (`ToolCatalog.repositoryFields`).
    init(_ fields: JSONObject) {
        remote = fields["remote"]?.stringValue ?? "github"
        repository = fields["repository"]?.stringValue ?? ""
        branch = fields["branch"]?.stringValue
    }
}
