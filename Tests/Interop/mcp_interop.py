#!/usr/bin/env python3
"""Drives greptile-mcp workers with the official MCP Python SDK client (`pip install mcp`).

Run by the Swift test suite (WorkerProcessTests), which starts the stand-in, the durable host
and the workers. The scenario:
  1. connect through the first worker with the SDK's Streamable HTTP client (initialize handshake);
  2. list the tools and check their names and input schemas;
  3. call every tool; ask a question, then a follow-up in the same conversation;
  4. write PHASE_FILE and wait for GO_FILE: meanwhile the test restarts the first worker;
  5. continue the *same* MCP transport session through the workers GO_FILE names (space-separated):
     a third turn of the conversation through the first, a streamed answer through the last.
Prints one JSON object with what it saw and exits 0, or prints the failure and exits 1.
"""
import argparse
import asyncio
import os
import sys
import time
import urllib.parse

import httpx2
import interop_report
from interop_report import answer_of, check
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

REPOSITORY = {"remote": "github", "repository": "acme/widgets"}  # branch left out: resolved through GitHub


class Router(httpx2.AsyncBaseTransport):
    """Sends every request to the worker currently chosen, whatever URL the SDK asked for."""

    def __init__(self, target):
        self.target = target
        self.inner = httpx2.AsyncHTTPTransport()
        self.seen = []

    async def handle_async_request(self, request):
        target = urllib.parse.urlsplit(self.target)
        request.url = request.url.copy_with(host=target.hostname, port=target.port)
        self.seen.append((request.method, self.target, request.headers.get("mcp-session-id")))
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def wait_for(path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as handle:
                text = handle.read().strip()
            if text:  # the test writes it atomically; an empty read is a file still being written
                return text
        await asyncio.sleep(0.05)
    raise AssertionError("no %s within %ss" % (path, timeout))


async def scenario(args):
    report = {}
    router = Router(args.worker)
    headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
    http = httpx2.AsyncClient(transport=router, headers=headers, timeout=httpx2.Timeout(30, read=120))
    async with http, streamable_http_client(args.worker + "/mcp", http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            report["protocol_version"] = init.protocol_version
            report["server"] = init.server_info.name
            check(init.capabilities.tools is not None, "the server must offer tools")

            tools = (await session.list_tools()).tools
            report["tools"] = sorted(tool.name for tool in tools)
            check(report["tools"] == ["get_repository_info", "index_repository", "list_conversations", "query_repository", "search_repository",
                                      "share_conversation", "unshare_conversation"],
                  "unexpected tools %s" % report["tools"])
            for tool in tools:
                check(tool.input_schema.get("type") == "object", tool.name + " needs an object schema")
                check(tool.description, tool.name + " needs a description")
            query_tool = next(tool for tool in tools if tool.name == "query_repository")
            check(set(query_tool.input_schema["required"]) == {"query", "repositories"}, "query_repository's required parameters")

            indexed = answer_of(await session.call_tool("index_repository", dict(REPOSITORY)))
            check(indexed["branch"] == "main", "default branch resolved through GitHub: %s" % indexed)
            report["index"] = indexed

            info = answer_of(await session.call_tool("get_repository_info", dict(REPOSITORY, branch="main")))
            check(info["repository"] == "acme/widgets" and info["status"] in ("submitted", "cloning", "processing", "completed"),
                  "repository info %s" % info)
            report["info_status"] = info["status"]

            search = answer_of(await session.call_tool("search_repository", {"query": "router", "repositories": [REPOSITORY]}))
            check(search["count"] == len(search["results"]) > 0, "search results %s" % search)
            report["search_count"] = search["count"]

            first = answer_of(await session.call_tool("query_repository", {"query": "How are requests routed?", "repositories": [REPOSITORY]}))
            conversation = first["_session_id"]
            check(conversation and "How are requests routed?" in first["message"], "first answer %s" % first)
            second = answer_of(await session.call_tool(
                "query_repository", {"query": "And the errors?", "repositories": [REPOSITORY], "session_id": conversation}))
            check(second["_session_id"] == conversation, "the follow-up must stay in the conversation")
            check("after 1 earlier questions" in second["message"], "Greptile must see the first turn: %s" % second["message"])
            report["conversation"] = conversation

            bad = await session.call_tool("query_repository", {"query": "?", "repositories": [{"remote": "github", "repository": "acme/missing"}]})
            check(bad.is_error and "not found" in text_of(bad), "a missing repository must be a clear isError: %s" % text_of(bad))
            report["missing_repository_error"] = text_of(bad)

            transport_session = router.seen[-1][2]
            check(transport_session, "the SDK must send MCP-Session-Id")
            report["transport_session"] = transport_session
            report["first_worker"] = router.target

            # The test restarts or swaps the workers now; the same transport session continues
            # through the first worker it names, then through the last.
            if args.phase_file:
                with open(args.phase_file, "w") as handle:
                    handle.write(transport_session)
                targets = (await wait_for(args.go_file, 120)).split()
            else:
                targets = [args.second_worker or args.worker]
            report["later_workers"] = targets
            start = len(router.seen)

            router.target = targets[0]
            await session.send_ping()
            third = answer_of(await session.call_tool(
                "query_repository", {"query": "Where are tests?", "repositories": [REPOSITORY], "session_id": conversation}))
            check("after 2 earlier questions" in third["message"], "the conversation must survive the change of worker: %s" % third["message"])

            router.target = targets[-1]
            streamed = answer_of(await session.call_tool(
                "query_repository",
                {"query": "Streamed please", "repositories": [REPOSITORY], "session_id": conversation, "stream": True}))
            check(streamed["message"].startswith("Answer to 'Streamed please' (after 3 earlier questions)"),
                  "a streamed answer must be assembled from its chunks: %s" % streamed["message"])
            check(len(streamed["sources"]) > 0, "streamed citations must come back as sources")
            report["streamed_message"] = streamed["message"]
            report["exchanges"] = [[question, answer["message"]] for question, answer in (
                ("How are requests routed?", first), ("And the errors?", second), ("Where are tests?", third), ("Streamed please", streamed))]
            later = router.seen[start:]
            check({seen[1] for seen in later} == set(targets), "every later worker must be used: %s" % later)
            check({seen[2] for seen in later} == {transport_session}, "the later workers must serve the same session: %s" % later)
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True, help="base URL of the first worker")
    parser.add_argument("--second-worker", help="continue through this worker")
    parser.add_argument("--phase-file", help="written when the first phase is done")
    parser.add_argument("--go-file", help="holds the base URL to continue through")
    parser.add_argument("--api-key", default="")
    return interop_report.report(scenario, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
