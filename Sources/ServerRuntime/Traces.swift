import Instrumentation
import Synchronization
import Tracing

/// Spans of the servers' work, and the W3C trace context carried between processes.
///
/// Tracing is on only when the process was started with an OTLP endpoint
/// (`TraceExport.bootstrap`); until then every `span` runs its work with `nil` and
/// costs one atomic load. Spans go to whatever tracer `InstrumentationSystem` holds
/// (swift-otel's, exporting over OTLP), each a child of the span in force in the calling task.
///
/// ```swift
/// try await Traces.span("greptile POST /query", kind: .client) { span in
///     span?.attributes["http.response.status_code"] = response.status
/// }
/// ```
public enum Traces {
    private static let on = Atomic<Bool>(false)

    /// Whether spans are recorded (a tracer was installed at start).
    public static var enabled: Bool { on.load(ordering: .relaxed) }

    /// Marks tracing on, once `InstrumentationSystem` holds the tracer.
    public static func markEnabled() { on.store(true, ordering: .relaxed) }

    /// Runs `work` in a span named `name` (built only with tracing on), a child of the span in
    /// force or of `parent`, and current for what `work` calls; with tracing off, runs `work`
    /// with `nil`. A thrown error is recorded on the span.
    public static func span<Result>(
        _ name: @autoclosure () -> String, kind: SpanKind = .internal, parent: InstrumentationContext? = nil,
        isolation: isolated (any Actor)? = #isolation,
        _ work: (_ span: (any Span)?) async throws -> Result
    ) async rethrows -> Result {
        guard enabled else { return try await work(nil) }
        return try await withSpan(name(), context: parent ?? .current ?? .topLevel, ofKind: kind) { span in
            try await work(span)
        }
    }

    /// Like `span`, but only within a trace already under way (a span in force): work done
    /// on nobody's behalf (a ring poll, a health probe) does not start traces of its own.
    public static func childSpan<Result>(
        _ name: @autoclosure () -> String, kind: SpanKind = .internal, isolation: isolated (any Actor)? = #isolation,
        _ work: (_ span: (any Span)?) async throws -> Result
    ) async rethrows -> Result {
        guard InstrumentationContext.current != nil else { return try await work(nil) }
        return try await span(name(), kind: kind, work)
    }

    /// Records that something happened within the trace under way, as a span of no length
    /// (a fallback taken, say); nothing outside a trace or with tracing off.
    public static func mark(_ name: @autoclosure () -> String, _ attributes: @autoclosure () -> [String: String] = [:]) {
        guard enabled, InstrumentationContext.current != nil else { return }
        let span = startSpan(name(), context: .current ?? .topLevel)
        for (key, value) in attributes() { span.attributes[key] = value }
        span.end()
    }

    /// Adds an event to `span` (nothing when tracing is off).
    public static func event(_ span: (any Span)?, _ name: String, _ attributes: [String: String] = [:]) {
        guard let span else { return }
        var recorded = SpanAttributes()
        for (key, value) in attributes { recorded[key] = value }
        span.addEvent(SpanEvent(name: name, attributes: recorded))
    }

    /// Marks `span` as failed, with what went wrong.
    public static func fail(_ span: (any Span)?, _ message: String) {
        span?.setStatus(SpanStatus(code: .error, message: message))
    }

    // MARK: Trace context (W3C `traceparent`, `tracestate`)

    /// The headers that carry the span in force to the next process: `traceparent` (and
    /// `tracestate`); none with tracing off or no span in force.
    public static func outgoingHeaders() -> [(name: String, value: String)] {
        guard enabled, let context = InstrumentationContext.current else { return [] }
        var carrier: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
        return carrier.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
    }

    /// The context a caller sent (`traceparent` and `tracestate`, by their lowercase names), to
    /// continue its trace; nil with tracing off or when it sent none that is well formed.
    public static func incoming(_ fields: [String: String]) -> InstrumentationContext? {
        guard enabled, let parent = fields["traceparent"], TraceParent.isWellFormed(parent) else { return nil }
        var accepted = ["traceparent": parent]
        // A tracestate goes on to the hosts and upstream as a header: only a well-formed one.
        if let state = fields["tracestate"], TraceParent.isWellFormedState(state) { accepted["tracestate"] = state }
        var context = InstrumentationContext.topLevel
        InstrumentationSystem.instrument.extract(accepted, into: &context, using: DictionaryExtractor())
        return context
    }

    private struct DictionaryInjector: Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    }

    private struct DictionaryExtractor: Extractor {
        func extract(key: String, from carrier: [String: String]) -> String? { carrier[key.lowercased()] }
    }
}

/// W3C Trace Context's `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`,
/// ids not all zeros. Anything else a caller sends is ignored (a new trace starts), and so is a
/// `tracestate` that could not be sent on as a header.
public enum TraceParent {
    public static func isWellFormed(_ value: String) -> Bool {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0].count == 2, parts[0] != "ff", parts[1].count == 32, parts[2].count == 16, parts[3].count == 2 else {
            return false
        }
        let hex = parts.allSatisfy { part in part.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) } }
        return hex && parts[1].contains { $0 != "0" } && parts[2].contains { $0 != "0" }
    }

    /// A `tracestate` we may send on: at most 512 bytes of visible ASCII, spaces and tabs
    /// (never a line break).
    public static func isWellFormedState(_ value: String) -> Bool {
        value.utf8.count <= 512 && value.utf8.allSatisfy { (0x20...0x7E).contains($0) || $0 == 0x09 }
    }
}
