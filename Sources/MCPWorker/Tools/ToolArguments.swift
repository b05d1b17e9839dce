import Foundation
import Greptile
import MCP
import SessionModel

/// A tool failure with a sentence a person (or a model) can act on; returned as `isError: true`.
struct ToolError: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// A tool call's arguments, read field by field with errors that name the field.
struct ToolArguments {
    let values: [String: Value]
    /// Most repositories one call may name: each may cost a GitHub lookup with the server's token.
    static let maxRepositories = 10

    init(_ values: [String: Value]?) {
        self.values = values ?? [:]
    }

    func string(_ name: String) throws(ToolError) -> String {
        guard let value = try optionalString(name) else { throw ToolError("\(name) is required") }
        return value
    }

    func optionalString(_ name: String) throws(ToolError) -> String? {
        guard let value = values[name], value != .null else { return nil }
        guard let text = value.text else { throw ToolError("\(name) must be a string") }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.isEmpty ? nil : text
    }

    func bool(_ name: String, default fallback: Bool) throws(ToolError) -> Bool {
        guard let value = values[name], value != .null else { return fallback }
        switch value {
        case .bool(let flag): return flag
        case .string("true"): return true
        case .string("false"): return false
        default: throw ToolError("\(name) must be true or false")
        }
    }

    /// A whole number within `range`.
    func integer(_ name: String, default fallback: Int, in range: ClosedRange<Int>) throws(ToolError) -> Int {
        guard let value = values[name], value != .null else { return fallback }
        let number: Int
        switch value {
        case .int(let whole): number = whole
        case .double(let fraction) where fraction == fraction.rounded() && abs(fraction) < 1e9: number = Int(fraction)
        default: throw ToolError("\(name) must be a whole number")
        }
        guard range.contains(number) else { throw ToolError("\(name) must be from \(range.lowerBound) to \(range.upperBound)") }
        return number
    }

    func seconds(_ name: String) throws(ToolError) -> Duration? {
        guard let value = values[name], value != .null else { return nil }
        let number: Double
        switch value {
        case .int(let whole): number = Double(whole)
        case .double(let fraction): number = fraction
        default: throw ToolError("\(name) must be a number of seconds")
        }
        guard number > 0, number <= 600 else { throw ToolError("\(name) must be between 0 and 600 seconds") }
        return .milliseconds(Int64(number * 1000))
    }

    /// `repositories`: a list of `{remote, repository, branch?}`.
    func repositories(_ name: String) throws(ToolError) -> [RepositoryInput] {
        guard let value = values[name], value != .null else { throw ToolError("\(name) is required: a list of {remote, repository, branch}") }
        guard case .array(let items) = value, !items.isEmpty else {
            throw ToolError("\(name) must be a non-empty list of {remote, repository, branch}")
        }
        guard items.count <= Self.maxRepositories else {
            throw ToolError("\(name) names \(items.count) repositories; one call may name at most \(Self.maxRepositories)")
        }
        var result: [RepositoryInput] = []
        for (index, item) in items.enumerated() {
            guard case .object(let fields) = item else { throw ToolError("\(name)[\(index)] must be an object {remote, repository, branch}") }
            let arguments = ToolArguments(fields)
            do {
                result.append(try RepositoryInput(arguments))
            } catch {
                throw ToolError("\(name)[\(index)].\(error.message)")
            }
        }
        return result
    }

    /// `previous_messages`: a list of `{role, content}`.
    func messages(_ name: String) throws(ToolError) -> [MessageInput]? {
        guard let value = values[name], value != .null else { return nil }
        guard case .array(let items) = value else { throw ToolError("\(name) must be a list of {role, content}") }
        var result: [MessageInput] = []
        for (index, item) in items.enumerated() {
            guard case .object(let fields) = item,
                let roleName = fields["role"]?.text, let role = Role(rawValue: roleName),
                let content = fields["content"]?.text
            else {
                throw ToolError("\(name)[\(index)] must be {role: user|assistant|system, content: string}")
            }
            result.append(MessageInput(role: role, content: content))
        }
        return result
    }
}

/// A repository named in a tool call; the branch may be left to GitHub's default.
struct RepositoryInput: Sendable, Hashable {
    let remote: String
    let repository: String
    let branch: String?

    init(_ arguments: ToolArguments) throws(ToolError) {
        let remote = try arguments.optionalString("remote")?.lowercased() ?? "github"
        guard remote == "github" || remote == "gitlab" else { throw ToolError("remote must be github or gitlab (got '\(remote.prefix(40))')") }
        let repository = try arguments.string("repository")
        let branch = try arguments.optionalString("branch")
        do {
            try RepositoryName.validate(repository, remote: remote)
            if let branch { try RepositoryName.validateBranch(branch) }
        } catch {
            throw ToolError(error.message)
        }
        self.remote = remote
        self.repository = repository
        self.branch = branch
    }
}
