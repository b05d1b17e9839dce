#!/usr/bin/env python3
"""A local stand-in for the servers the worker calls upstream, for tests only.

It serves, on one loopback port:
  - generic endpoints for exercising the HTTP client (/echo, /slow, /stream, /big, /status/N);
  - Greptile's API under /v2 and GitHub's API under /github (see ../shared/reference/greptile-api.md),
    checking the auth headers the real services require;
  - control endpoints (/_control, /_requests, /_events) with which a test makes it slow or failing
    and reads back what it received.

It prints "listening on http://127.0.0.1:PORT" once ready (port 0 picks a free one).
"""
import argparse
import json
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {
    "connections": 0,
    "requests": [],  # every request received: method, path, headers, body
    "events": [],  # notable happenings: stream disconnects
    "faults": [],  # queued faults: {"path_prefix", "status", "times", "retry_after", "delay_ms", "body"}
    "delay_ms": 0,
    "chunk_interval_ms": 50,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "upstream-standin/1"

    def setup(self):
        super().setup()
        with LOCK:
            STATE["connections"] += 1

    def log_message(self, fmt, *args):
        pass

    # --- plumbing ---------------------------------------------------------------------------
    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status, value, headers=None):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, val in (headers or {}).items():
            self.send_header(name, val)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def start_chunked(self, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def record(self, body):
        with LOCK:
            STATE["requests"].append({
                "method": self.command,
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "time": time.time(),
            })

    def take_fault(self, path):
        with LOCK:
            for fault in STATE["faults"]:
                if path.startswith(fault.get("path_prefix", "")) and fault.get("times", 1) > 0:
                    fault["times"] = fault.get("times", 1) - 1
                    return dict(fault)
        return None

    # --- dispatch ---------------------------------------------------------------------------
    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def dispatch(self):
        body = self.body()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        if not path.startswith("/_"):
            self.record(body)
        try:
            if path.startswith("/_"):
                return self.control(path, body)
            fault = self.take_fault(path)
            if fault:
                time.sleep(fault.get("delay_ms", 0) / 1000)
                if fault.get("status"):
                    headers = {}
                    if "retry_after" in fault:
                        headers["Retry-After"] = str(fault["retry_after"])
                    return self.send_json(fault["status"], fault.get("body", {"error": "injected", "message": "injected fault"}), headers)
            if STATE["delay_ms"]:
                time.sleep(STATE["delay_ms"] / 1000)
            if path.startswith("/v2/"):
                return greptile(self, path[3:], query, body)
            if path.startswith("/github/"):
                return github(self, path[7:], query)
            return self.generic(path, query, body)
        except (BrokenPipeError, ConnectionResetError):
            with LOCK:
                STATE["events"].append({"event": "disconnect", "path": path, "time": time.time()})

    def generic(self, path, query, body):
        if path == "/echo":
            return self.send_json(200, {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1"),
                "length": len(body),
            })
        if path == "/slow":
            time.sleep(int(query.get("ms", "1000")) / 1000)
            return self.send_json(200, {"slept_ms": int(query.get("ms", "1000"))})
        if path.startswith("/status/"):
            return self.send_json(int(path.split("/")[2]), {"status": int(path.split("/")[2])})
        if path == "/big":
            size = int(query.get("bytes", "1048576"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = bytes(range(256)) * 256
            sent = 0
            while sent < size:
                piece = block[: min(len(block), size - sent)]
                self.wfile.write(piece)
                sent += len(piece)
            return
        if path == "/stream":
            count = int(query.get("chunks", "5"))
            interval = int(query.get("interval_ms", "50")) / 1000
            self.start_chunked("text/event-stream")
            for index in range(count if count > 0 else 10**9):
                self.chunk(("id: %d\ndata: {\"index\": %d}\n\n" % (index, index)).encode())
                time.sleep(interval)
            return self.end_chunked()
        return self.send_json(404, {"error": "not_found", "message": "no route " + path})

    def control(self, path, body):
        if path == "/_requests":
            with LOCK:
                return self.send_json(200, STATE["requests"])
        if path == "/_events":
            with LOCK:
                return self.send_json(200, STATE["events"])
        if path == "/_connections":
            with LOCK:
                return self.send_json(200, {"connections": STATE["connections"]})
        if path == "/_control" and self.command == "POST":
            command = json.loads(body or b"{}")
            with LOCK:
                if command.get("reset"):
                    STATE["requests"].clear()
                    STATE["events"].clear()
                    STATE["faults"].clear()
                    STATE["delay_ms"] = 0
                if "fault" in command:
                    STATE["faults"].append(command["fault"])
                if "delay_ms" in command:
                    STATE["delay_ms"] = command["delay_ms"]
                if "chunk_interval_ms" in command:
                    STATE["chunk_interval_ms"] = command["chunk_interval_ms"]
            return self.send_json(200, {"ok": True})
        return self.send_json(404, {"error": "not_found"})


def greptile(handler, path, query, body):
    """Greptile's API (greptile-api.md); filled in by the worker's issue."""
    return handler.send_json(404, {"error": "not_found", "message": "no Greptile route " + path})


def github(handler, path, query):
    """GitHub's API (greptile-api.md); filled in by the worker's issue."""
    return handler.send_json(404, {"message": "Not Found"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default of 5 drops connections under a burst of clients


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Started from a thread that blocks signals, we would inherit the mask and ignore SIGTERM.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
    server = Server(("127.0.0.1", args.port), Handler)
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
