import ServerRuntime
import ServiceMetrics
import Testing

@Suite("Trace context: what a caller's traceparent must look like, and when traces are exported")
struct TraceContextTests {
    @Test("a traceparent is version, 32 and 16 lowercase hex digits and flags; anything else starts a new trace")
    func traceParentShape() {
        #expect(TraceParent.isWellFormed("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
        #expect(TraceParent.isWellFormed("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"))
        for bad in [
            "", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX: y", "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",
        ] {
            #expect(!TraceParent.isWellFormed(bad), "\(bad)")
        }
    }

    @Test("a tracestate is sent on only when it is visible ASCII within 512 bytes: never a line break")
    func traceStateShape() {
        #expect(TraceParent.isWellFormedState("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))
        #expect(TraceParent.isWellFormedState(""))
        #expect(!TraceParent.isWellFormedState("a=b\r\nX-Injected: 1"))
        #expect(!TraceParent.isWellFormedState("a=\u{7F}"))
        #expect(!TraceParent.isWellFormedState("a=é"))
        #expect(!TraceParent.isWellFormedState(String(repeating: "a", count: 513)))
    }

    @Test("traces are exported only when an OTLP endpoint is set, and not when the SDK or the traces exporter is switched off")
    func exportWanted() {
        #expect(!TraceExport.wanted(in: [:]))
        #expect(!TraceExport.wanted(in: ["OTEL_EXPORTER_OTLP_ENDPOINT": " "]))
        #expect(TraceExport.wanted(in: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"]))
        #expect(TraceExport.wanted(in: ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"]))
        #expect(!TraceExport.wanted(in: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"]))
        #expect(!TraceExport.wanted(in: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"]))
        // Only OTLP over HTTP is built in: gRPC is refused with a sentence, not a crash.
        #expect(TraceExport.problem(in: ["OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"]) == nil)
        #expect(TraceExport.problem(in: ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"]) == nil)
        #expect(TraceExport.problem(in: ["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"])?.contains("http/protobuf") == true)
        #expect(TraceExport.problem(in: ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "GRPC"]) != nil)
        // With tracing off (no bootstrap in this process), nothing is sent on.
        #expect(Traces.outgoingHeaders().isEmpty)
        #expect(Traces.incoming(["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]) == nil)
    }
}
