#!/usr/bin/env python3
"""Client ID Metadata Documents over https, for the sign-in tests: what an MCP client would
publish at its `client_id` URL.

    metadata_documents.py --cert PEM --key PEM --redirect-uri URI [--port N]

Serves, on 127.0.0.1:
  /client.json    a good document (client_id is its own URL, PKCE only, the redirect URI given)
  /big.json       a good document padded to 64 KiB (over the worker's limit)
  /slow.json      a good document, after 10 s (over the worker's time limit)
  /stranger.json  a document whose client_id is another URL
Prints "listening on https://127.0.0.1:PORT" once ready.
"""
import argparse
import json
import signal
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Started from a thread that blocks signals, we would inherit the mask and ignore SIGTERM.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *arguments):
            pass

        def do_GET(self):
            base = "https://127.0.0.1:%d" % self.server.server_address[1]
            document = {"client_id": base + self.path, "client_name": "Interop CIMD client", "redirect_uris": [args.redirect_uri],
                        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
                        "response_types": ["code"]}
            if self.path == "/big.json":
                document["padding"] = "x" * 65536
            elif self.path == "/slow.json":
                time.sleep(10)
            elif self.path == "/stranger.json":
                document["client_id"] = "https://client.example/elsewhere.json"
            elif self.path != "/client.json":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", args.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("listening on https://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
