import HTTPTypes

/// The W3C trace context fields of a request (`traceparent`, `tracestate`), by the lowercase
/// names `Traces.incoming` reads.
public enum TraceHeaders {
    static let parent = HTTPField.Name("traceparent")!
    static let state = HTTPField.Name("tracestate")!

    public static func fields(_ headers: HTTPFields) -> [String: String] {
        var fields: [String: String] = [:]
        fields["traceparent"] = headers[parent]
        fields["tracestate"] = headers[state]
        return fields
    }
}
