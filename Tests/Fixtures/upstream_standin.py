#!/usr/bin/env python3
"""A local stand-in for the servers the worker calls upstream, for tests only.

It serves, on one loopback port:
  - generic endpoints for exercising the HTTP client (/echo, /slow, /stream, /big, /status/N);
  - Greptile's API under /v2 and GitHub's API under /github, as their public documentation
    describes them (docs/ARCHITECTURE.md, "Upstream"), checking the auth headers they require;
  - GitHub's OAuth app web flow under /github-web (/login/oauth/authorize, /login/oauth/access_token,
    with PKCE), its person configured by /_control {"github_oauth": {...}}: it approves at once,
    as GitHub does for an app the person authorized before;
  - control endpoints (/_control, /_requests, /_events) with which a test makes it slow or failing
    and reads back what it received.

It prints "listening on http://127.0.0.1:PORT" once ready (port 0 picks a free one).
"""
import argparse
import base64
import hashlib
import json
import os
import select
import signal
import socket
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
    "faults": [],  # queued faults: {"path_prefix", "status", "times", "retry_after", "delay_ms", "hold", "body"}
    "released": set(),  # the holds ({"release": name}) let go: a fault with "hold": name waits for it
    "delay_ms": 0,
    "github_delay_ms": 0,
    "chunk_interval_ms": 50,
    "in_flight": {},  # path prefix -> requests being answered now
    "max_in_flight": {},  # path prefix -> the most answered at once
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

    def client_gone(self):
        """Whether the client has closed its connection (it sent nothing more and hung up)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def pause(self, seconds, path, hold=None):
        """Sleeps (and, with a `hold`, until that hold is released), noticing a client that
        leaves meanwhile; returns False (and records the disconnect) when it did."""
        deadline = time.time() + seconds
        while time.time() < deadline or (hold is not None and hold not in STATE["released"]):
            if self.client_gone():
                with LOCK:
                    STATE["events"].append({"event": "disconnect", "path": path, "time": time.time()})
                return False
            time.sleep(min(0.02, max(0, deadline - time.time())))
        return True

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
                if not self.pause(fault.get("delay_ms", 0) / 1000, path, fault.get("hold")):
                    return None
                if fault.get("status"):
                    headers = {}
                    if "retry_after" in fault:
                        headers["Retry-After"] = str(fault["retry_after"])
                    return self.send_json(fault["status"], fault.get("body", {"error": "injected", "message": "injected fault"}), headers)
            prefix = "/" + path.split("/")[1] if path.count("/") >= 1 else path
            with LOCK:
                STATE["in_flight"][prefix] = STATE["in_flight"].get(prefix, 0) + 1
                STATE["max_in_flight"][prefix] = max(STATE["max_in_flight"].get(prefix, 0), STATE["in_flight"][prefix])
            try:
                delay = STATE["delay_ms"] + (STATE["github_delay_ms"] if path.startswith("/github/") else 0)
                if delay and not self.pause(delay / 1000, path):
                    return None
                if path.startswith("/v2/"):
                    return greptile(self, path[3:], query, body)
                if path.startswith("/github/"):
                    return github(self, path[7:], query)
                if path.startswith("/github-web/"):
                    return github_web(self, path[11:], query, body)
                return self.generic(path, query, body)
            finally:
                with LOCK:
                    STATE["in_flight"][prefix] -= 1
        except (BrokenPipeError, ConnectionResetError):
            with LOCK:
                STATE["events"].append({"event": "disconnect", "path": path, "time": time.time()})

    def generic(self, path, query, body):
        if path == "/echo":
            # close=1 answers "Connection: close"; hangup=1 closes the connection after a
            # keep-alive answer, as a server ending an idle connection does.
            ending = query.get("close") == "1" or query.get("hangup") == "1"
            self.send_json(200, {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1"),
                "length": len(body),
            }, {"Connection": "close"} if query.get("close") == "1" else None)
            self.close_connection = self.close_connection or ending
            return None
        if path == "/slow":
            if not self.pause(int(query.get("ms", "1000")) / 1000, path):
                return None
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
        if path == "/_concurrency":
            with LOCK:
                return self.send_json(200, STATE["max_in_flight"])
        if path == "/_control" and self.command == "POST":
            command = json.loads(body or b"{}")
            with LOCK:
                if command.get("reset"):
                    STATE["requests"].clear()
                    STATE["events"].clear()
                    STATE["faults"].clear()
                    STATE["released"].clear()
                    STATE["delay_ms"] = 0
                    STATE["github_delay_ms"] = 0
                    STATE["index_hold"] = False
                    STATE["max_in_flight"].clear()
                    INDEXED.clear()
                for key in command.get("indexed", []):
                    INDEXED[key] = {"status": "completed", "polls": 3, "numFiles": len(FILES)}
                if "fault" in command:
                    STATE["faults"].append(command["fault"])
                if "release" in command:
                    STATE["released"].add(command["release"])
                if "delay_ms" in command:
                    STATE["delay_ms"] = command["delay_ms"]
                if "github_delay_ms" in command:
                    STATE["github_delay_ms"] = command["github_delay_ms"]
                if "index_hold" in command:
                    STATE["index_hold"] = bool(command["index_hold"])
                if "chunk_interval_ms" in command:
                    STATE["chunk_interval_ms"] = command["chunk_interval_ms"]
                if "github_oauth" in command:
                    GITHUB_OAUTH.update(command["github_oauth"])
            return self.send_json(200, {"ok": True})
        return self.send_json(404, {"error": "not_found"})


# --- Greptile and GitHub ----------------------------------------------------------------------
# The repositories GitHub knows: name -> (default branch, private). Anything else is a 404, as
# GitHub answers for a repository that does not exist or that the token cannot see.
GITHUB_REPOSITORIES = {
    "acme/widgets": ("main", False),
    "acme/private-lib": ("develop", True),
    "octo/empty": ("trunk", False),
}
# Many small repositories, for calls that name several.
GITHUB_REPOSITORIES.update({"acme/r%d" % index: ("main", False) for index in range(1, 13)})
INDEXED = {}  # "remote:branch:owner/name" -> {"status", "polls", "numFiles"}
CREDENTIALS = {"greptile_key": "", "github_token": ""}
FILES = ["src/app.swift", "src/server/router.swift", "docs/README.md"]


def greptile_auth(handler):
    """Greptile requires the API key and forwards the GitHub token; returns True when both fit."""
    if handler.headers.get("Authorization") != "Bearer " + CREDENTIALS["greptile_key"]:
        handler.send_json(401, {"error": "Unauthorized", "message": "Invalid API key"})
        return False
    if handler.headers.get("X-GitHub-Token") != CREDENTIALS["github_token"]:
        handler.send_json(403, {"error": "Forbidden", "message": "The GitHub token cannot read this repository"})
        return False
    return True


def bad_request(handler, message):
    return handler.send_json(400, {"error": "Bad Request", "message": message})


def repository_key(repo):
    return "%s:%s:%s" % (repo.get("remote"), repo.get("branch"), repo.get("repository"))


def check_repositories(handler, repositories):
    """Validates a `repositories` list; answers the error itself and returns None when invalid."""
    if not isinstance(repositories, list) or not repositories:
        bad_request(handler, "repositories must be a non-empty array")
        return None
    for repo in repositories:
        if not isinstance(repo, dict) or not all(isinstance(repo.get(k), str) for k in ("remote", "branch", "repository")):
            bad_request(handler, "each repository needs remote, branch and repository strings")
            return None
        if repository_key(repo) not in INDEXED:
            handler.send_json(404, {"error": "Not Found", "message": "Repository %s not found" % repository_key(repo)})
            return None
    return repositories


def sources_for(repositories, query):
    sources = []
    for repo in repositories:
        for index, filepath in enumerate(FILES):
            sources.append({
                "repository": repo["repository"], "remote": repo["remote"], "branch": repo["branch"],
                "filepath": filepath, "linestart": None if index == 2 else 10 * index + 1,
                "lineend": None if index == 2 else 10 * index + 9, "summary": "Where %s is handled" % query[:40],
            })
    return sources


def greptile(handler, path, query, body):
    """Greptile's API (greptile-api.md): POST /repositories, GET /repositories/{id}, POST /query, POST /search."""
    if not greptile_auth(handler):
        return None
    if path == "/repositories" and handler.command == "POST":
        try:
            request = json.loads(body)
        except ValueError:
            return bad_request(handler, "body is not JSON")
        if not all(isinstance(request.get(k), str) for k in ("remote", "repository", "branch")):
            return bad_request(handler, "remote, repository and branch are required strings")
        if request["remote"] not in ("github", "gitlab"):
            return bad_request(handler, "remote must be github or gitlab")
        if request["remote"] == "github" and request["repository"] not in GITHUB_REPOSITORIES:
            return handler.send_json(404, {"error": "Not Found", "message": "Repository not found on github"})
        key = repository_key(request)
        with LOCK:
            if key not in INDEXED or request.get("reload"):
                INDEXED[key] = {"status": "submitted", "polls": 0, "numFiles": len(FILES)}
        encoded = urllib.parse.quote(key, safe="")
        return handler.send_json(200, {"message": "Indexing job started", "statusEndpoint": CREDENTIALS["base"] + "/v2/repositories/" + encoded})
    if path.startswith("/repositories/") and handler.command == "GET":
        raw = path[len("/repositories/"):]
        if "/" in raw or ":" in raw:
            return bad_request(handler, "the repository id must be URL-encoded (remote%3Abranch%3Aowner%2Fname)")
        key = urllib.parse.unquote(raw)
        with LOCK:
            entry = INDEXED.get(key)
            if entry is None:
                return handler.send_json(404, {"error": "Not Found", "message": "Repository not found"})
            # Indexing progresses with each look: submitted, cloning, processing, completed.
            steps = ["submitted", "cloning", "processing", "completed"]
            # While the test holds indexing, it stays at processing.
            last = len(steps) - (2 if STATE.get("index_hold") else 1)
            entry["polls"] = min(entry["polls"] + 1, max(last, entry["polls"]))
            entry["status"] = steps[min(entry["polls"], len(steps) - 1)]
            done = entry["status"] == "completed"
            remote, branch, repository = key.split(":", 2)
            answer = {
                "repository": repository, "remote": remote, "branch": branch,
                "private": GITHUB_REPOSITORIES.get(repository, ("", False))[1], "status": entry["status"],
                "filesProcessed": entry["numFiles"] if done else entry["polls"], "numFiles": entry["numFiles"],
            }
            if done:
                answer["sha"] = "0123456789abcdef0123456789abcdef01234567"
        return handler.send_json(200, answer)
    if path == "/query" and handler.command == "POST":
        try:
            request = json.loads(body)
        except ValueError:
            return bad_request(handler, "body is not JSON")
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            return bad_request(handler, "messages must be a non-empty array")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant") or not isinstance(message.get("content"), str):
                return bad_request(handler, "each message needs role user|assistant and content")
        repositories = check_repositories(handler, request.get("repositories"))
        if repositories is None:
            return None
        question = messages[-1]["content"]
        earlier = sum(1 for m in messages[:-1] if m["role"] == "user")
        text = "Answer to '%s' (after %d earlier questions) about %s." % (
            question, earlier, ", ".join(r["repository"] for r in repositories))
        sources = sources_for(repositories, question)
        session = request.get("sessionId") or "greptile-session"
        if request.get("stream"):
            handler.start_chunked("text/event-stream")
            words = text.split(" ")
            for index, word in enumerate(words):
                piece = word if index == len(words) - 1 else word + " "
                handler.chunk(("data: %s\n\n" % json.dumps({"type": "text", "content": piece})).encode())
                time.sleep(STATE["chunk_interval_ms"] / 1000)
            for source in sources[:2]:
                citation = {"type": "citation", "file": source["filepath"], "lines": "%s-%s" % (source["linestart"], source["lineend"])}
                handler.chunk(("data: %s\n\n" % json.dumps(citation)).encode())
            handler.chunk(("data: %s\n\n" % json.dumps({"type": "sessionId", "sessionId": session})).encode())
            return handler.end_chunked()
        return handler.send_json(200, {"message": text, "sources": sources})
    if path == "/search" and handler.command == "POST":
        try:
            request = json.loads(body)
        except ValueError:
            return bad_request(handler, "body is not JSON")
        if not isinstance(request.get("query"), str) or not request["query"]:
            return bad_request(handler, "query must be a non-empty string")
        repositories = check_repositories(handler, request.get("repositories"))
        if repositories is None:
            return None
        results = sources_for(repositories, request["query"])
        for index, result in enumerate(results):
            result["distance"] = round(0.1 * (index + 1), 2)
        return handler.send_json(200, results)
    return handler.send_json(404, {"error": "Not Found", "message": "no Greptile route " + path})


def github(handler, path, query):
    """GitHub's API (greptile-api.md): GET /repos/{owner}/{repo}, GET /user."""
    if not handler.headers.get("User-Agent"):
        return handler.send_json(403, {"message": "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"})
    authorization = handler.headers.get("Authorization") or ""
    person = GITHUB_OAUTH["tokens"].get(authorization[len("Bearer "):]) if authorization.startswith("Bearer ") else None
    if person is not None:
        # A person's token from the OAuth flow: who they are, and their organisations.
        if path == "/user":
            return handler.send_json(200, {"login": person["login"], "id": 7})
        if path.startswith("/user/orgs"):
            return handler.send_json(200, [{"login": org, "id": index} for index, org in enumerate(person.get("orgs", []))])
        return handler.send_json(404, {"message": "Not Found"})
    if authorization != "Bearer " + CREDENTIALS["github_token"]:
        return handler.send_json(401, {"message": "Bad credentials"})
    if path == "/user":
        return handler.send_json(200, {"login": "standin-user", "id": 1})
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "repos":
        name = parts[2] + "/" + parts[3]
        if name not in GITHUB_REPOSITORIES:
            return handler.send_json(404, {"message": "Not Found"})
        branch, private = GITHUB_REPOSITORIES[name]
        return handler.send_json(200, {"full_name": name, "default_branch": branch, "private": private})
    return handler.send_json(404, {"message": "Not Found"})


GITHUB_OAUTH = {"client_id": "", "client_secret": "", "user": {"login": "octocat", "orgs": []}, "codes": {}, "tokens": {}}


def github_web(handler, path, query, body):
    """GitHub's OAuth app web flow: authorize (approved at once for the configured person) and
    the code exchanged for a token, with the client's secret and PKCE's verifier."""
    if path == "/login/oauth/authorize":
        if query.get("client_id") != GITHUB_OAUTH["client_id"] or not query.get("redirect_uri"):
            return handler.send_json(404, {"error": "the client_id is not an OAuth app's"})
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return handler.send_json(400, {"error": "PKCE is required by this stand-in"})
        code = os.urandom(10).hex()
        with LOCK:
            GITHUB_OAUTH["codes"][code] = {"redirect_uri": query["redirect_uri"], "challenge": query["code_challenge"],
                                           "user": dict(GITHUB_OAUTH["user"])}
        separator = "&" if "?" in query["redirect_uri"] else "?"
        location = query["redirect_uri"] + separator + urllib.parse.urlencode({"code": code, "state": query.get("state", "")})
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return None
    if path == "/login/oauth/access_token" and handler.command == "POST":
        form = dict(urllib.parse.parse_qsl(body.decode()))
        with LOCK:
            grant = GITHUB_OAUTH["codes"].pop(form.get("code", ""), None)
        if form.get("client_id") != GITHUB_OAUTH["client_id"] or form.get("client_secret") != GITHUB_OAUTH["client_secret"]:
            return handler.send_json(200, {"error": "incorrect_client_credentials"})
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return handler.send_json(200, {"error": "bad_verification_code"})
        digest = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
        if digest != grant["challenge"]:
            return handler.send_json(200, {"error": "bad_verification_code", "error_description": "code_verifier does not match"})
        token = "gho_" + os.urandom(12).hex()
        with LOCK:
            GITHUB_OAUTH["tokens"][token] = grant["user"]
        return handler.send_json(200, {"access_token": token, "token_type": "bearer", "scope": "read:user,read:org"})
    return handler.send_json(404, {"message": "Not Found"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default of 5 drops connections under a burst of clients


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--greptile-key", default="standin-greptile-key")
    parser.add_argument("--github-token", default="standin-github-token")
    args = parser.parse_args()
    CREDENTIALS["greptile_key"] = args.greptile_key
    CREDENTIALS["github_token"] = args.github_token
    # Started from a thread that blocks signals, we would inherit the mask and ignore SIGTERM.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
    server = Server(("127.0.0.1", args.port), Handler)
    CREDENTIALS["base"] = "http://127.0.0.1:%d" % server.server_address[1]
    print("listening on " + CREDENTIALS["base"], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
