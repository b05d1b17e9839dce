import Foundation
import SessionModel

/// The shape of a tool argument, declared once: what `tools/list` advertises (as JSON Schema)
/// and what a call's value is checked against and normalised to (`check`), so the two can
/// never disagree.
///
/// Checking is lenient where clients are known to be: `null` counts as absent, a blank string
/// as absent, `"true"`/`"false"` as booleans and a whole number written as `3.0` as an integer.
/// It returns the value normalised (defaults filled in, booleans and integers typed), and a
/// refusal names the argument's path (`repositories[1].remote must be github or gitlab`).
indirect enum ArgumentSchema: Sendable {
    case text(Text)
    case flag(description: String, default: Bool)
    case whole(description: String, range: ClosedRange<Int>, default: Int)
    /// A number of seconds greater than 0 and at most `max`.
    case seconds(description: String, max: Double)
    case list(List)
    case record(Record)

    struct Text: Sendable {
        var description: String?
        /// The values allowed (an `enum` in the schema).
        var choices: [String]? = nil
        /// Only for the advertised schema: what a client is told to send.
        var pattern: String? = nil
        var defaultValue: String? = nil
        /// Compared and kept in lower case (`GitHub` is `github`).
        var caseInsensitive = false
        /// A rule beyond the schema's (an id's characters); its message follows the argument's
        /// name (`must be 1 to 64 of ...`).
        var rule: (@Sendable (String) throws(ToolError) -> Void)? = nil
    }

    struct List: Sendable {
        var description: String?
        var items: ArgumentSchema
        var minItems = 0
        var maxItems: Int? = nil
        /// What one item is, for messages (`{remote, repository, branch}`).
        var itemNoun: String
        /// What many items are, for messages (`repositories`).
        var pluralNoun = "items"
    }

    struct Record: Sendable {
        var properties: [(name: String, schema: ArgumentSchema)]
        var required: [String] = []
        /// A rule across properties, given the normalised record; its message follows the record's path.
        var rule: (@Sendable (JSONObject) throws(ToolError) -> Void)? = nil

        /// Checks a tool call's `arguments` (nil or absent: none), returning them normalised.
        func check(_ arguments: JSONObject?) throws(ToolError) -> JSONObject {
            try checkRecord(arguments ?? [:], path: "")
        }

        fileprivate func checkRecord(_ object: JSONObject, path: String) throws(ToolError) -> JSONObject {
            var normalised: JSONObject = [:]
            for (name, schema) in properties {
                let here = path.isEmpty ? name : "\(path).\(name)"
                if let value = try schema.check(object[name], path: here) {
                    normalised[name] = value
                } else if required.contains(name) {
                    throw ToolError(schema.missing(here))
                }
            }
            if let rule {
                do {
                    try rule(normalised)
                } catch {
                    throw ToolError(path.isEmpty ? error.message : "\(path).\(error.message)")
                }
            }
            return normalised
        }
    }

    /// The normalised value, or nil for an argument left out (and without a default).
    func check(_ given: JSONValue?, path: String) throws(ToolError) -> JSONValue? {
        let value: JSONValue? = given == .null ? nil : given
        switch self {
        case .text(let text):
            return try Self.checkText(value, text, path: path)
        case .flag(_, let fallback):
            switch value {
            case nil: return .bool(fallback)
            case .bool(let flag)?: return .bool(flag)
            case .string("true")?: return .bool(true)
            case .string("false")?: return .bool(false)
            default: throw ToolError("\(path) must be true or false")
            }
        case .whole(_, let range, let fallback):
            let number: Int
            switch value {
            case nil: return .int(Int64(fallback))
            case .int(let whole)?: number = Int(clamping: whole)
            case .double(let fraction)? where fraction == fraction.rounded() && abs(fraction) < 1e9: number = Int(fraction)
            default: throw ToolError("\(path) must be a whole number")
            }
            guard range.contains(number) else { throw ToolError("\(path) must be from \(range.lowerBound) to \(range.upperBound)") }
            return .int(Int64(number))
        case .seconds(_, let max):
            guard let value else { return nil }
            guard let number = value.numberValue else { throw ToolError("\(path) must be a number of seconds") }
            guard number > 0, number <= max else { throw ToolError("\(path) must be between 0 and \(Int(max)) seconds") }
            return .double(number)
        case .list(let list):
            return try Self.checkList(value, list, path: path)
        case .record(let record):
            guard let value else { return nil }
            guard case .object(let object) = value else { throw ToolError("\(path) must be an object") }
            return .object(try record.checkRecord(object, path: path))
        }
    }

    private static func checkText(_ value: JSONValue?, _ text: Text, path: String) throws(ToolError) -> JSONValue? {
        guard let value else { return text.defaultValue.map(JSONValue.string) }
        guard case .string(var string) = value else { throw ToolError("\(path) must be a string") }
        if string.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return text.defaultValue.map(JSONValue.string) }
        if text.caseInsensitive { string = string.lowercased() }
        if let choices = text.choices, !choices.contains(string) {
            let options = choices.count == 2 ? choices.joined(separator: " or ") : "one of " + choices.joined(separator: ", ")
            throw ToolError("\(path) must be \(options) (got '\(string.prefix(40))')")
        }
        if let rule = text.rule {
            do {
                try rule(string)
            } catch {
                throw ToolError("\(path) \(error.message)")
            }
        }
        return .string(string)
    }

    private static func checkList(_ value: JSONValue?, _ list: List, path: String) throws(ToolError) -> JSONValue? {
        guard let value else { return nil }
        guard case .array(let items) = value, items.count >= list.minItems else {
            throw ToolError("\(path) must be a\(list.minItems > 0 ? " non-empty" : "") list of \(list.itemNoun)")
        }
        if let most = list.maxItems, items.count > most {
            throw ToolError("\(path) names \(items.count) \(list.pluralNoun); one call may name at most \(most)")
        }
        var checked: [JSONValue] = []
        for (index, item) in items.enumerated() {
            guard let normalised = try list.items.check(item, path: "\(path)[\(index)]") else {
                throw ToolError("\(path)[\(index)] must be \(list.itemNoun)")
            }
            checked.append(normalised)
        }
        return .array(checked)
    }

    /// The refusal of a required argument left out.
    private func missing(_ path: String) -> String {
        if case .list(let list) = self { return "\(path) is required: a list of \(list.itemNoun)" }
        return "\(path) is required"
    }

    // MARK: As JSON Schema

    /// The JSON Schema `tools/list` advertises for this argument.
    var jsonSchema: JSONValue {
        switch self {
        case .text(let text):
            var schema: JSONObject = ["type": "string"]
            if let description = text.description { schema["description"] = .string(description) }
            if let choices = text.choices { schema["enum"] = .array(choices.map(JSONValue.string)) }
            if let pattern = text.pattern { schema["pattern"] = .string(pattern) }
            if let value = text.defaultValue { schema["default"] = .string(value) }
            return .object(schema)
        case .flag(let description, let fallback):
            return ["type": "boolean", "default": .bool(fallback), "description": .string(description)]
        case .whole(let description, let range, let fallback):
            return [
                "type": "integer", "minimum": .int(Int64(range.lowerBound)), "maximum": .int(Int64(range.upperBound)),
                "default": .int(Int64(fallback)), "description": .string(description),
            ]
        case .seconds(let description, let max):
            return ["type": "number", "exclusiveMinimum": 0, "maximum": .double(max), "description": .string(description)]
        case .list(let list):
            var schema: JSONObject = ["type": "array", "items": list.items.jsonSchema]
            if let description = list.description { schema["description"] = .string(description) }
            if list.minItems > 0 { schema["minItems"] = .int(Int64(list.minItems)) }
            if let most = list.maxItems { schema["maxItems"] = .int(Int64(most)) }
            return .object(schema)
        case .record(let record):
            return record.jsonSchema
        }
    }
}

extension ArgumentSchema.Record {
    /// `{"type":"object","properties":{...},"required":[...]}`
    var jsonSchema: JSONValue {
        var properties: JSONObject = [:]
        for (name, schema) in self.properties { properties[name] = schema.jsonSchema }
        return ["type": "object", "properties": .object(properties), "required": .array(required.map(JSONValue.string))]
    }
}
