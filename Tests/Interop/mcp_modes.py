#!/usr/bin/env python3
"""Drives a worker with the official MCP Python SDK's high-level `Client` in each of its modes.

    mcp_modes.py --worker URL --mode auto|legacy|2026-07-28 [--api-key KEY] [--conversation ID]

Lists the tools, calls get_repository_info, and asks two questions in one conversation
(`session_id`), the second of which must see the first. With --stream, the second question
is streamed and the progress notifications the client received are counted. Prints one JSON
object (ok, protocol_version, progress, ...) and exits 0, or prints the failure and exits 1.
"""
import argparse
import sys

import httpx2
import interop_report
from interop_report import answer_of, check

from mcp import Client
from mcp.client.streamable_http import streamable_http_client

REPOSITORY = {"remote": "github", "repository": "acme/widgets"}


async def scenario(args):
    headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
    report = {"mode": args.mode}
    progress = []

    async def on_progress(value, total, message):
        progress.append(message)

    async with http:
        transport = streamable_http_client(args.worker + "/mcp", http_client=http)
        async with Client(transport, mode=args.mode) as client:
            report["protocol_version"] = client.protocol_version
            tools = await client.list_tools()
            names = sorted(tool.name for tool in tools.tools)
            check(names == ["get_repository_info", "index_repository", "list_conversations", "query_repository", "search_repository",
                            "share_conversation", "unshare_conversation"], "tools %s" % names)
            info = answer_of(await client.call_tool("get_repository_info", dict(REPOSITORY, branch="main")))
            check(info["repository"] == "acme/widgets", "info %s" % info)
            first = answer_of(await client.call_tool(
                "query_repository", {"query": "first question", "repositories": [REPOSITORY], "session_id": args.conversation}))
            check("after 0 earlier questions" in first["message"], first["message"])
            second_arguments = {"query": "second question", "repositories": [REPOSITORY], "session_id": args.conversation}
            if args.stream:
                second_arguments["stream"] = True
            second = answer_of(await client.call_tool(
                "query_repository", second_arguments, progress_callback=on_progress if args.stream else None))
            check("after 1 earlier questions" in second["message"], "the conversation must continue: %s" % second["message"])
            report["second_message"] = second["message"]
            report["first_message"] = first["message"]
    report["progress"] = progress
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--conversation", default="modes")
    parser.add_argument("--stream", action="store_true")
    return interop_report.report(scenario, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
