#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for the tests: what a collector (Jaeger, Tempo, the OpenTelemetry
Collector) would receive from the servers, decoded with the official `opentelemetry-proto`
messages.

    otlp_receiver.py [--port N] [--discard]

POST /v1/traces takes an `ExportTraceServiceRequest`, protobuf (`application/x-protobuf`, the
exporters' default) or JSON (`application/json`), and keeps every span. GET /spans gives them
as JSON: one object per span with its service, trace and span ids (hex), parent span id, name,
kind, start and end (ns), attributes (a flat object), status and links. POST /reset forgets
them. With --discard (for benchmarks) it keeps nothing: it counts the spans of each export and
GET /count gives {"exports", "spans"}. Prints "listening on http://127.0.0.1:PORT" once it listens.
"""
import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

LOCK = threading.Lock()
SPANS = []
COUNTS = {"exports": 0, "spans": 0}
DISCARD = False


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: value_of(item.value) for item in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


def spans_of(request):
    found = []
    for resource_spans in request.resource_spans:
        resource = {item.key: value_of(item.value) for item in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append({
                    "service": resource.get("service.name"),
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "attributes": {item.key: value_of(item.value) for item in span.attributes},
                    "status": {"code": span.status.code, "message": span.status.message},
                    "events": [event.name for event in span.events],
                    "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()} for link in span.links],
                })
    return found


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/count":
            with LOCK:
                return self.reply(200, json.dumps(COUNTS).encode())
        if self.path != "/spans":
            return self.reply(404, b'{"error":"not found"}')
        with LOCK:
            body = json.dumps(SPANS).encode()
        self.reply(200, body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/reset":
            with LOCK:
                SPANS.clear()
            return self.reply(200, b"{}")
        if self.path != "/v1/traces":
            return self.reply(404, b'{"error":"not found"}')
        request = ExportTraceServiceRequest()
        content_type = self.headers.get("Content-Type", "")
        try:
            if content_type.startswith("application/json"):
                json_format.Parse(body, request)
            else:
                request.ParseFromString(body)
        except Exception as error:  # noqa: BLE001 - a malformed export is answered 400, as a collector would
            return self.reply(400, json.dumps({"error": str(error)}).encode())
        with LOCK:
            COUNTS["exports"] += 1
            if DISCARD:
                COUNTS["spans"] += sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
            else:
                spans = spans_of(request)
                COUNTS["spans"] += len(spans)
                SPANS.extend(spans)
        if content_type.startswith("application/json"):
            return self.reply(200, b"{}")
        self.reply(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--discard", action="store_true", help="count spans, keep none")
    args = parser.parse_args()
    global DISCARD
    DISCARD = args.discard
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
