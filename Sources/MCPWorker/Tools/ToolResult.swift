import SessionModel

/// What a tool call answers: its text, the same as structured JSON where the tool has an
/// object to give, and whether it failed (`isError`: a sentence for the caller to act on).
struct ToolResult: Sendable, Hashable {
    var text: String
    var structured: JSONValue?
    var isError: Bool

    static func success(_ value: JSONValue) -> ToolResult {
        ToolResult(text: value.jsonText(), structured: value.objectValue != nil ? value : nil, isError: false)
    }

    static func failure(_ message: String) -> ToolResult {
        ToolResult(text: message, structured: nil, isError: true)
    }
}
