import SessionModel

/// What a tool call answers: its text, the same as structured JSON where the tool has an
/// object to give, and whether it failed (`isError`: a sentence for the caller to act on).
struct ToolResult: Sendable, Hashable {
    var text: String
    var structured: JSONValue?
    var isError: Bool
    /// `resource_link` content items after the text (the files an answer drew on), for the
    /// revisions that have them (2025-06-18 and later).
    var links: [JSONValue] = []

    static func success(_ value: JSONValue, links: [JSONValue] = []) -> ToolResult {
        var result = ToolResult(text: value.jsonText(), structured: value.objectValue != nil ? value : nil, isError: false)
        result.links = links
        return result
    }

    static func failure(_ message: String) -> ToolResult {
        ToolResult(text: message, structured: nil, isError: true)
    }

    init(text: String, structured: JSONValue?, isError: Bool) {
        self.text = text
        self.structured = structured
        self.isError = isError
    }

    /// The `CallToolResult` this is, as `JSONRPC.toolResult` writes it.
    var jsonValue: JSONValue {
        var result: JSONObject = ["content": .array([["type": "text", "text": .string(text)]] + links), "isError": .bool(isError)]
        if let structured { result["structuredContent"] = structured }
        return .object(result)
    }

    /// From a `CallToolResult` this worker wrote (`jsonValue`).
    init?(_ value: JSONValue) {
        guard let fields = value.objectValue, let content = fields["content"]?.arrayValue,
            let text = content.first?.objectValue?["text"]?.stringValue
        else { return nil }
        self.text = text
        structured = fields["structuredContent"]
        isError = fields["isError"]?.boolValue ?? false
        links = Array(content.dropFirst())
    }
}
